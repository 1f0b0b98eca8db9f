//! Data keys: random bytes, wrapping and unwrapping a subject's key in its slot, shredding.

use super::*;

impl Vault {
    pub(crate) fn random(&self, n: usize) -> Result<Zeroizing<Vec<u8>>> {
        let mut buf = Zeroizing::new(vec![0u8; n]);
        self.rng.fill(&mut buf).map_err(|_| Error::Random)?;
        Ok(buf)
    }
    pub(super) fn wrap_dek(
        &self,
        subject: &SubjectId,
        dek: &[u8],
        nonce: &[u8],
        version: u32,
    ) -> [u8; HALF] {
        let kek = self.keys.kek(version);
        let mut half = [0u8; HALF];
        half[..4].copy_from_slice(&version.to_le_bytes());
        half[4..16].copy_from_slice(nonce);
        half[16..48].copy_from_slice(dek);
        let n = Nonce::try_assume_unique_for_key(nonce).expect("12-byte nonce");
        let tag = kek
            .seal_in_place_separate_tag(n, Aad::from(&dek_aad(subject, version)), &mut half[16..48])
            .expect("AES-GCM seal of 32 bytes");
        half[48..].copy_from_slice(tag.as_ref());
        half
    }
    pub(super) fn unwrap_half(
        &self,
        subject: &SubjectId,
        half: &[u8],
    ) -> Option<(u32, Zeroizing<[u8; KEY_LEN]>)> {
        let version = u32::from_le_bytes(half[..4].try_into().ok()?);
        if version == 0 {
            return None;
        }
        let kek = self.keys.kek(version);
        let n = Nonce::try_assume_unique_for_key(&half[4..16]).ok()?;
        let mut buf = Zeroizing::new([0u8; KEY_LEN + TAG_LEN]);
        buf.copy_from_slice(&half[16..64]);
        let plain = kek
            .open_in_place(n, Aad::from(&dek_aad(subject, version)), buf.as_mut())
            .ok()?;
        let mut dek = Zeroizing::new([0u8; KEY_LEN]);
        dek.copy_from_slice(plain);
        Some((version, dek))
    }
    /// Unwraps a slot's data key, preferring the half with the newer KEK version.
    pub(crate) fn unwrap_slot(
        &self,
        subject: &SubjectId,
        slot: &[u8; SLOT],
    ) -> Option<(u32, usize, Zeroizing<[u8; KEY_LEN]>)> {
        if &slot[..16] != subject.as_bytes() {
            return None;
        }
        let va = u32::from_le_bytes(slot[16..20].try_into().ok()?);
        let vb = u32::from_le_bytes(slot[16 + HALF..20 + HALF].try_into().ok()?);
        let order = if vb > va { [1, 0] } else { [0, 1] };
        order.into_iter().find_map(|h| {
            let half = &slot[16 + h * HALF..16 + (h + 1) * HALF];
            self.unwrap_half(subject, half).map(|(v, dek)| (v, h, dek))
        })
    }
    pub(crate) fn dek_for(&self, subject: &SubjectId, slot: u64) -> Result<LessSafeKey> {
        let Some(bytes) = self.slots.get(slot)? else {
            return Err(Error::Tampered {
                subject: *subject,
                what: "data-key slot reference".into(),
            });
        };
        if bytes.iter().all(|&b| b == 0) {
            return Err(Error::Erased(*subject));
        }
        let (_, _, dek) = self
            .unwrap_slot(subject, &bytes)
            .ok_or_else(|| Error::Tampered {
                subject: *subject,
                what: "data key".into(),
            })?;
        Ok(LessSafeKey::new(
            UnboundKey::new(&aead::AES_256_GCM, dek.as_ref()).expect("32-byte key"),
        ))
    }
    pub(crate) fn random_bytes(&self, n: usize) -> Result<Zeroizing<Vec<u8>>> {
        self.random(n)
    }
    pub(crate) fn wrap_dek_pub(&self, subject: &SubjectId, dek: &[u8], nonce: &[u8]) -> [u8; HALF] {
        self.wrap_dek(subject, dek, nonce, self.kek_version.load(Ordering::SeqCst))
    }
    pub(crate) fn slots_ref(&self) -> &Slots {
        &self.slots
    }
    pub(crate) fn hold_dek(&self, subject: &SubjectId, slot: u64) -> Result<LessSafeKey> {
        self.dek_for(subject, slot)
    }
    pub(crate) fn shred_slot_of(&self, subject: &SubjectId, slot: u64) -> Result<()> {
        if let Some(bytes) = self.slots.get(slot)? {
            if &bytes[..16] == subject.as_bytes() {
                self.slots.shred(slot)?;
            }
        }
        Ok(())
    }
}
