//! The key hierarchy: one sealed master secret, and everything else derived from it with
//! HKDF-SHA256 under distinct labels.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use domain::FieldId;
use ring::aead::{self, LessSafeKey, UnboundKey};
use ring::hkdf;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::error::Error;

/// Length of the master secret and of every derived symmetric key, in bytes.
pub(crate) const KEY_LEN: usize = 32;

/// The root of trust: 256 random bits, only ever written sealed with age.
pub struct MasterSecret(Zeroizing<[u8; KEY_LEN]>);

impl MasterSecret {
    /// Draws a fresh secret from the operating system's generator.
    pub fn generate(rng: &SystemRandom) -> Result<MasterSecret, Error> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill(bytes.as_mut()).map_err(|_| Error::Random)?;
        Ok(MasterSecret(bytes))
    }

    /// Wraps bytes just unsealed.
    pub fn from_bytes(bytes: &[u8]) -> Result<MasterSecret, Error> {
        let arr: [u8; KEY_LEN] = bytes.try_into().map_err(|_| {
            Error::CannotUnseal("the sealed master secret has the wrong length".into())
        })?;
        Ok(MasterSecret(Zeroizing::new(arr)))
    }

    /// The raw bytes, for sealing.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for MasterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterSecret(<redacted>)")
    }
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// Keys derived from the master secret, cached after first use.
pub struct KeyRing {
    prk: hkdf::Prk,
    keks: RwLock<HashMap<u32, Arc<LessSafeKey>>>,
    index_keys: RwLock<HashMap<u16, Arc<hmac::Key>>>,
    hash_keys: RwLock<HashMap<String, Arc<hmac::Key>>>,
}

impl KeyRing {
    /// Builds the ring from the master secret.
    pub fn new(master: &MasterSecret) -> KeyRing {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"steward/v1/hkdf-salt");
        KeyRing {
            prk: salt.extract(master.expose()),
            keks: RwLock::new(HashMap::new()),
            index_keys: RwLock::new(HashMap::new()),
            hash_keys: RwLock::new(HashMap::new()),
        }
    }

    /// Derives `len` bytes for a labelled purpose.
    pub fn derive_bytes(&self, label: &str, len: usize) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(vec![0u8; len]);
        let info = [label.as_bytes()];
        // HKDF-SHA256 can produce up to 255 * 32 bytes; callers ask for 32 or 64.
        let okm = self
            .prk
            .expand(&info, Len(len))
            .expect("HKDF output length within limits");
        okm.fill(&mut out)
            .expect("HKDF fill of the requested length");
        out
    }

    /// The key-encryption key of a version (1, 2, ...).
    pub fn kek(&self, version: u32) -> Arc<LessSafeKey> {
        if let Some(k) = self.keks.read().expect("kek cache").get(&version) {
            return k.clone();
        }
        let bytes = self.derive_bytes(&format!("steward/v1/kek/{version}"), KEY_LEN);
        let key = Arc::new(LessSafeKey::new(
            UnboundKey::new(&aead::AES_256_GCM, &bytes).expect("32-byte AES key"),
        ));
        self.keks
            .write()
            .expect("kek cache")
            .insert(version, key.clone());
        key
    }

    /// The blind-index key of one field.
    pub fn index_key(&self, field: FieldId) -> Arc<hmac::Key> {
        if let Some(k) = self
            .index_keys
            .read()
            .expect("index key cache")
            .get(&field.0)
        {
            return k.clone();
        }
        let bytes = self.derive_bytes(
            &format!("steward/v1/blind-index/field/{}", field.0),
            KEY_LEN,
        );
        let key = Arc::new(hmac::Key::new(hmac::HMAC_SHA256, &bytes));
        self.index_keys
            .write()
            .expect("index key cache")
            .insert(field.0, key.clone());
        key
    }

    fn keyed_hash_key(&self, label: &str) -> Arc<hmac::Key> {
        if let Some(k) = self.hash_keys.read().expect("hash key cache").get(label) {
            return k.clone();
        }
        let bytes = self.derive_bytes(&format!("steward/v1/keyed-hash/{label}"), KEY_LEN);
        let key = Arc::new(hmac::Key::new(hmac::HMAC_SHA256, &bytes));
        self.hash_keys
            .write()
            .expect("hash key cache")
            .insert(label.to_string(), key.clone());
        key
    }

    /// Checks `expected` against the keyed hash of `data`, in constant time.
    pub fn verify_keyed_hash(&self, label: &str, data: &[u8], expected: &[u8]) -> bool {
        hmac::verify(&self.keyed_hash_key(label), data, expected).is_ok()
    }

    /// A keyed hash for a labelled purpose (token hashes, suppression entries).
    pub fn keyed_hash(&self, label: &str, data: &[u8]) -> [u8; 32] {
        let tag = hmac::sign(&self.keyed_hash_key(label), data);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }
}

/// A blind-index token: HMAC-SHA256 of the normalised term under the field's key, truncated
/// to 128 bits.
pub fn blind_token(key: &hmac::Key, term: &[u8]) -> [u8; 16] {
    let tag = hmac::sign(key, term);
    let mut out = [0u8; 16];
    out.copy_from_slice(&tag.as_ref()[..16]);
    out
}
