//! Output formats, on `impl Write` and plain data: CSV cells with formula-injection escaping,
//! a small tar writer, the subject-access package (JSON + CSV + a readable HTML page), and age
//! encryption so that the stock `age` tool opens what Steward writes.
//!
//! It must never decide what a person may see: callers (the hub) hand it only what was
//! already authorised and gated.
//!
//! Layout: this file (CSV cells, tar, age), `package` (the access package).

mod formats;
mod package;

use std::io::Write;
use std::path::Path;
use std::str::FromStr;

pub use formats::{
    audit_csv_header, audit_csv_line, csv_line, segment_csv_header, segment_csv_line,
    AUDIT_CSV_COLUMNS,
};
pub use package::{package_files, write_package_dir, write_package_tar, AccessPackage};

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

/// One CSV cell, safe to open in a spreadsheet and still the value it was:
/// - a phone number in E.164 form is written in international format with its groups
///   (`+44 7700 900123`), which spreadsheets keep as text (the bare `+447700900123` becomes
///   the number 447700900123);
/// - a cell starting with `=`, `+`, `-`, `@`, tab or CR gets a leading `'` (spreadsheets
///   would run it as a formula);
/// - a `'` goes before any of those characters that follows a semicolon, tab or line break
///   inside the cell: a spreadsheet that splits this comma-separated file on semicolons
///   starts a new cell there, whatever the quotes say (`a;=1+1` would run `=1+1`);
/// - then the cell is quoted where needed (a comma, quote, line break, semicolon or tab).
pub fn csv_cell(s: &str) -> String {
    if let Some(phone) = domain::phone_display(s) {
        return phone;
    }
    let trigger = |c: char| matches!(c, '=' | '+' | '-' | '@' | '\t' | '\r');
    let mut out = String::with_capacity(s.len() + 2);
    let mut at_cell_start = true;
    for c in s.chars() {
        if at_cell_start && trigger(c) {
            out.push('\'');
        }
        // Spaces before a formula do not stop some spreadsheets from running it.
        at_cell_start = matches!(c, ';' | '\t' | '\n' | '\r') || (at_cell_start && c == ' ');
        out.push(c);
    }
    if out.contains([',', '"', '\n', '\r', ';', '\t']) {
        format!("\"{}\"", out.replace('"', "\"\""))
    } else {
        out
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

/// Writes files as a ZIP archive, stored without compression (every system's file manager
/// opens one; an access package is small). Names are marked UTF-8; dates are left at the
/// format's epoch, 1980-01-01, since the package carries its own generation time.
pub fn write_zip(out: &mut dyn Write, files: &[(String, Vec<u8>)]) -> Result<(), Error> {
    const UTF8_NAMES: u16 = 1 << 11;
    const DOS_DATE_1980_01_01: u16 = (1 << 5) | 1;
    let mut central = Vec::new();
    let mut offset: u32 = 0;
    let too_big = || {
        Error::Io(std::io::Error::other(
            "a ZIP without ZIP64 holds at most 4 GiB",
        ))
    };
    for (name, body) in files {
        let crc = crc32fast::hash(body);
        let size = u32::try_from(body.len()).map_err(|_| too_big())?;
        let name_len = u16::try_from(name.len()).map_err(|_| too_big())?;
        let mut local = Vec::with_capacity(30 + name.len());
        local.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        local.extend_from_slice(&20u16.to_le_bytes()); // version needed: 2.0
        local.extend_from_slice(&UTF8_NAMES.to_le_bytes());
        local.extend_from_slice(&0u16.to_le_bytes()); // stored
        local.extend_from_slice(&0u16.to_le_bytes()); // time
        local.extend_from_slice(&DOS_DATE_1980_01_01.to_le_bytes());
        local.extend_from_slice(&crc.to_le_bytes());
        local.extend_from_slice(&size.to_le_bytes());
        local.extend_from_slice(&size.to_le_bytes());
        local.extend_from_slice(&name_len.to_le_bytes());
        local.extend_from_slice(&0u16.to_le_bytes()); // extra
        local.extend_from_slice(name.as_bytes());
        out.write_all(&local)?;
        out.write_all(body)?;
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&20u16.to_le_bytes()); // made by
        central.extend_from_slice(&local[4..30]);
        central.extend_from_slice(&0u16.to_le_bytes()); // comment
        central.extend_from_slice(&0u16.to_le_bytes()); // disk
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        central.extend_from_slice(&0u32.to_le_bytes()); // external attributes
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
        offset = offset
            .checked_add(local.len() as u32)
            .and_then(|o| o.checked_add(size))
            .ok_or_else(too_big)?;
    }
    let entries = u16::try_from(files.len()).map_err(|_| too_big())?;
    out.write_all(&central)?;
    let mut end = Vec::with_capacity(22);
    end.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    end.extend_from_slice(&[0u8; 4]); // this disk, disk with the directory
    end.extend_from_slice(&entries.to_le_bytes());
    end.extend_from_slice(&entries.to_le_bytes());
    end.extend_from_slice(&(central.len() as u32).to_le_bytes());
    end.extend_from_slice(&offset.to_le_bytes());
    end.extend_from_slice(&0u16.to_le_bytes()); // comment
    out.write_all(&end)?;
    Ok(())
}

/// Writes `body` to a new file only its owner may read (0600 on Unix); `replace` allows an
/// existing file to be overwritten, else it is an error.
pub fn write_private(path: &Path, body: &[u8], replace: bool) -> Result<(), Error> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if replace {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(body)?;
    f.sync_all()?;
    Ok(())
}

/// Writes files into a folder only its owner may open (0700, files 0600 on Unix); `replace`
/// allows the folder to exist already and its files to be overwritten.
pub fn write_private_dir(
    dir: &Path,
    files: &[(String, Vec<u8>)],
    replace: bool,
) -> Result<(), Error> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    match builder.create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && replace => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
            }
        }
        Err(e) => return Err(e.into()),
    }
    for (name, body) in files {
        write_private(&dir.join(name), body, replace)?;
    }
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
        assert_eq!(csv_cell("\tx"), "\"'\tx\"");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("plain"), "plain");
        // After a semicolon, tab or line break: where a spreadsheet splitting on it starts a
        // cell.
        assert_eq!(csv_cell(";=1+1"), "\";'=1+1\"");
        assert_eq!(csv_cell("a;=3+4"), "\"a;'=3+4\"");
        assert_eq!(csv_cell("x\t=1"), "\"x\t'=1\"");
        assert_eq!(csv_cell("a\n@SUM(1)"), "\"a\n'@SUM(1)\"");
        assert_eq!(csv_cell("a;b"), "\"a;b\"");
        assert_eq!(csv_cell("a; =1+1"), "\"a; '=1+1\"");
        assert_eq!(csv_cell(" =1+1"), " '=1+1");
    }

    #[test]
    fn an_e164_phone_is_written_as_people_write_it_not_escaped_and_not_a_number() {
        assert_eq!(csv_cell("+447700900123"), "+44 7700 900123");
        assert_eq!(csv_cell("+12025550143"), "+1 202 555 0143");
        // Not E.164: escaped as any other cell starting with a plus.
        assert_eq!(csv_cell("+4412"), "'+4412");
        assert_eq!(csv_cell("+44 7700 900123"), "'+44 7700 900123");
        assert_eq!(csv_cell("+447700900123=1"), "'+447700900123=1");
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
