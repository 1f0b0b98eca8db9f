//! Small secrets Steward keeps for others (webhook signing keys): sealed with AES-256-GCM
//! under a key derived from the master secret for their label, so the store holds only
//! ciphertext and a stolen store without the sealed key ring opens none of them.

use super::*;

impl Vault {
    fn secret_key(&self, label: &str) -> LessSafeKey {
        let bytes = self
            .keys
            .derive_bytes(&format!("steward/v1/sealed-secret/{label}"), KEY_LEN);
        LessSafeKey::new(UnboundKey::new(&aead::AES_256_GCM, &bytes).expect("32-byte AES key"))
    }

    /// Seals `plain` for `label` (the label is bound to the ciphertext: a secret sealed for
    /// one label does not open under another). Output: nonce, ciphertext, tag.
    pub fn seal_secret(&self, label: &str, plain: &[u8]) -> Result<Vec<u8>> {
        let nonce = self.random(NONCE_LEN)?;
        let mut out = nonce.to_vec();
        let mut body = plain.to_vec();
        let n = Nonce::try_assume_unique_for_key(&nonce).expect("12-byte nonce");
        let tag = self
            .secret_key(label)
            .seal_in_place_separate_tag(n, Aad::from(label.as_bytes()), &mut body)
            .map_err(|_| Error::Random)?;
        out.extend_from_slice(&body);
        out.extend_from_slice(tag.as_ref());
        zeroize::Zeroize::zeroize(&mut body);
        Ok(out)
    }

    /// Opens what [`Vault::seal_secret`] sealed for `label`; `None` if it was altered or
    /// sealed for another label or master secret.
    pub fn open_secret(&self, label: &str, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let n = Nonce::try_assume_unique_for_key(&sealed[..NONCE_LEN]).ok()?;
        let mut buf = Zeroizing::new(sealed[NONCE_LEN..].to_vec());
        let len = self
            .secret_key(label)
            .open_in_place(n, Aad::from(label.as_bytes()), buf.as_mut_slice())
            .ok()?
            .len();
        buf.truncate(len);
        Some(buf)
    }
}
