//! The few primitives other crates need (a hash, random bytes, signatures), so that the vault
//! is the only crate that names a cryptographic library.

use ring::rand::SecureRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

/// SHA-256, fed in pieces.
pub struct Sha256(ring::digest::Context);

impl Default for Sha256 {
    fn default() -> Self {
        Sha256(ring::digest::Context::new(&ring::digest::SHA256))
    }
}

impl Sha256 {
    /// A fresh hash.
    pub fn new() -> Sha256 {
        Sha256::default()
    }

    /// Adds bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest.
    pub fn finish(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.0.finish().as_ref());
        out
    }
}

/// Fills `buf` from the operating system's secure random source; false if it failed.
pub fn fill_random(buf: &mut [u8]) -> bool {
    ring::rand::SystemRandom::new().fill(buf).is_ok()
}

/// HMAC-SHA256 of `message` under `key` (webhook signatures, Standard Webhooks `v1`).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::hmac::sign(&k, message).as_ref());
    out
}

/// An Ed25519 signing key.
pub struct SigningKey(Ed25519KeyPair);

impl SigningKey {
    /// The key of a 32-byte seed.
    pub fn from_seed(seed: &[u8]) -> Option<SigningKey> {
        Ed25519KeyPair::from_seed_unchecked(seed)
            .ok()
            .map(SigningKey)
    }

    /// Its public key.
    pub fn public_key(&self) -> &[u8] {
        self.0.public_key().as_ref()
    }

    /// Signs a message.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.0.sign(message).as_ref().to_vec()
    }
}

/// True when `signature` is `public_key`'s Ed25519 signature of `message`.
pub fn verify_signature(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(message, signature)
        .is_ok()
}

/// Argon2id's cost for console passwords: 19 MiB, two passes, one lane (RFC 9106's second
/// recommended option scaled to a small server; about 30 ms here).
fn argon2id() -> argon2::Argon2<'static> {
    let params = argon2::Params::new(19 * 1024, 2, 1, None).expect("fixed argon2 parameters");
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
}

/// Hashes a password with argon2id and a fresh random salt, as a PHC string
/// (`$argon2id$v=19$m=...`); `None` if the random source failed.
pub fn hash_password(password: &str) -> Option<String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    if !fill_random(&mut salt) {
        return None;
    }
    let salt = SaltString::encode_b64(&salt).ok()?;
    argon2id()
        .hash_password(password.as_bytes(), &salt)
        .ok()
        .map(|h| h.to_string())
}

/// True when `password` matches the PHC string `stored` (made by [`hash_password`]; its own
/// parameters are used). A malformed `stored` matches nothing.
pub fn verify_password(password: &str, stored: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    match PasswordHash::new(stored) {
        Ok(parsed) => argon2id()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A new random passphrase for a file handed to a person (an encrypted access package): 25
/// characters in five groups, from an alphabet without look-alikes (no 0/O, 1/I/L), read
/// aloud or typed without doubt; about 124 bits. `None` if the random source failed.
pub fn new_passphrase() -> Option<String> {
    const ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
    let mut out = String::new();
    let mut bytes = [0u8; 64];
    if !fill_random(&mut bytes) {
        return None;
    }
    // Rejection sampling keeps every character equally likely.
    let limit = 256 - 256 % ALPHABET.len();
    for b in bytes.iter().filter(|b| usize::from(**b) < limit) {
        if out.len() == 29 {
            break;
        }
        if out.len() % 6 == 5 {
            out.push('-');
        }
        out.push(ALPHABET[usize::from(*b) % ALPHABET.len()] as char);
    }
    (out.len() == 29).then_some(out)
}

#[cfg(test)]
mod password_tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_own_hash_only() {
        let a = hash_password("correct horse battery staple").unwrap();
        let b = hash_password("correct horse battery staple").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(verify_password("correct horse battery staple", &a));
        assert!(verify_password("correct horse battery staple", &b));
        assert!(!verify_password("correct horse battery stapler", &a));
        assert!(!verify_password("", &a));
        assert!(!verify_password(
            "correct horse battery staple",
            "not a hash"
        ));
    }
}
