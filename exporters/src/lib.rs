//! Output formats, on `impl Write` and plain data: CSV cells with formula-injection escaping,
//! a small tar writer, the subject-access package (JSON + CSV + a readable HTML page), and age
//! encryption so that the stock `age` tool opens what Steward writes.
//!
//! It must never decide what a person may see: callers (the hub) hand it only what was
//! already authorised and gated.
//!
//! Layout: this file (CSV cells, tar, age), `package` (the access package).

mod package;

use std::io::Write;
use std::str::FromStr;

pub use package::{write_package_dir, write_package_tar, AccessPackage};

/// Errors of the exporters.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Writing failed.
    #[error("writing the export failed: {0}")]
    Io(#[from] std::io::Error),
    /// The age recipient is not one.
    #[error("not an age recipient (expected age1...): {0}")]
    Recipient(String),
    /// Encryption failed.
    #[error("age encryption failed: {0}")]
    Encrypt(String),
}

/// One CSV cell: cells starting with `=`, `+`, `-`, `@`, tab or CR are neutralised with a
/// leading `'` (spreadsheets would run them as formulas), then quoted where needed.
pub fn csv_cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// Text for HTML, escaped.
pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Writes files as a POSIX ustar archive.
pub fn write_tar(out: &mut dyn Write, files: &[(String, Vec<u8>)]) -> Result<(), Error> {
    for (name, body) in files {
        let mut h = [0u8; 512];
        let n = name.as_bytes();
        h[..n.len().min(100)].copy_from_slice(&n[..n.len().min(100)]);
        h[100..108].copy_from_slice(b"0000644\0");
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        h[124..136].copy_from_slice(format!("{:011o}\0", body.len()).as_bytes());
        h[136..148].copy_from_slice(b"00000000000\0");
        h[148..156].copy_from_slice(b"        ");
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.write_all(&h)?;
        out.write_all(body)?;
        let pad = (512 - body.len() % 512) % 512;
        out.write_all(&vec![0u8; pad])?;
    }
    out.write_all(&[0u8; 1024])?;
    Ok(())
}

/// Encrypts `plain` to an age X25519 recipient (`age1...`), as the stock `age` tool reads it.
pub fn age_encrypt(recipient: &str, plain: &[u8]) -> Result<Vec<u8>, Error> {
    let r = age::x25519::Recipient::from_str(recipient.trim())
        .map_err(|e| Error::Recipient(e.to_string()))?;
    age::encrypt(&r, plain).map_err(|e| Error::Encrypt(e.to_string()))
}

/// Encrypts `plain` with a passphrase (age scrypt); the stock `age -d` asks for it.
pub fn age_encrypt_passphrase(passphrase: &str, plain: &[u8]) -> Result<Vec<u8>, Error> {
    let recipient =
        age::scrypt::Recipient::new(age::secrecy::SecretString::from(passphrase.to_string()));
    age::encrypt(&recipient, plain).map_err(|e| Error::Encrypt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised() {
        assert_eq!(csv_cell("=cmd|' /C calc'!A0"), "'=cmd|' /C calc'!A0");
        assert_eq!(csv_cell("+1"), "'+1");
        assert_eq!(csv_cell("-2"), "'-2");
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_cell("\tx"), "'\tx");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("plain"), "plain");
    }

    #[test]
    fn passphrase_encryption_round_trips_and_a_wrong_passphrase_fails() {
        let sealed = age_encrypt_passphrase("a long passphrase", b"segment").unwrap();
        assert!(sealed.starts_with(b"age-encryption.org/v1"));
        let ok = age::scrypt::Identity::new(age::secrecy::SecretString::from(
            "a long passphrase".to_string(),
        ));
        assert_eq!(age::decrypt(&ok, &sealed).unwrap(), b"segment");
        let wrong =
            age::scrypt::Identity::new(age::secrecy::SecretString::from("nope".to_string()));
        assert!(age::decrypt(&wrong, &sealed).is_err());
        assert!(matches!(
            age_encrypt("age1notarecipient", b"x"),
            Err(Error::Recipient(_))
        ));
    }

    #[test]
    fn tar_headers_carry_a_valid_checksum() {
        let mut buf = Vec::new();
        write_tar(&mut buf, &[("a.txt".into(), b"hello".to_vec())]).unwrap();
        assert_eq!(buf.len(), 512 + 512 + 1024);
        let mut h = buf[..512].to_vec();
        let stored = u32::from_str_radix(std::str::from_utf8(&h[148..154]).unwrap(), 8).unwrap();
        h[148..156].copy_from_slice(b"        ");
        assert_eq!(stored, h.iter().map(|&b| u32::from(b)).sum::<u32>());
        assert_eq!(&buf[512..517], b"hello");
    }
}
