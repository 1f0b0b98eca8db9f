//! Sealing the master secret with age: to an X25519 identity kept outside the data directory,
//! or to a passphrase (scrypt).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::keys::MasterSecret;

/// How a data directory's master secret is sealed, as recorded in `keys/seal.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SealInfo {
    /// `x25519` or `passphrase`.
    pub method: String,
    /// The X25519 recipient (public key), when sealed to an identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// Where `init` put the identity file; later commands fall back to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_path: Option<PathBuf>,
}

/// What to seal to, at `init`.
pub enum SealTo {
    /// An age X25519 identity file; created if it does not exist.
    Identity(PathBuf),
    /// A passphrase (age scrypt).
    Passphrase(SecretString),
}

/// How to unseal, on open.
#[derive(Clone)]
pub enum Unlock {
    /// An age identity file.
    Identity(PathBuf),
    /// A passphrase.
    Passphrase(SecretString),
}

impl std::fmt::Debug for Unlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unlock::Identity(p) => write!(f, "Unlock::Identity({})", p.display()),
            Unlock::Passphrase(_) => f.write_str("Unlock::Passphrase(<redacted>)"),
        }
    }
}

/// Work factor for passphrase sealing (scrypt log2 N). age's own default is calibrated to
/// about a second; this fixed value keeps every CLI command that unseals under that.
const SCRYPT_LOG_N: u8 = 16;

/// Reads a passphrase file: the first line, without its line ending.
pub fn read_passphrase_file(path: &Path) -> Result<SecretString> {
    let text = fs::read_to_string(path)
        .map_err(|e| Error::io(format!("reading passphrase file {}", path.display()), e))?;
    let line = text.lines().next().unwrap_or_default();
    if line.is_empty() {
        return Err(Error::CannotUnseal(format!(
            "the passphrase file {} is empty",
            path.display()
        )));
    }
    Ok(SecretString::from(line.to_string()))
}

/// Loads an X25519 identity from an age identity file, or creates one there.
pub(crate) fn load_or_create_identity(path: &Path) -> Result<(age::x25519::Identity, bool)> {
    if path.exists() {
        return Ok((load_identity(path)?, false));
    }
    let identity = age::x25519::Identity::generate();
    let created = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let text = format!(
        "# created: {created}\n# public key: {}\n{}\n",
        identity.to_public(),
        identity.to_string().expose_secret()
    );
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
    }
    write_private(path, text.as_bytes())?;
    Ok((identity, true))
}

fn load_identity(path: &Path) -> Result<age::x25519::Identity> {
    let text = fs::read_to_string(path).map_err(|e| {
        Error::CannotUnseal(format!("cannot read identity file {}: {e}", path.display()))
    })?;
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .and_then(|l| age::x25519::Identity::from_str(l).ok())
        .ok_or_else(|| {
            Error::CannotUnseal(format!(
                "{} is not an age X25519 identity file",
                path.display()
            ))
        })
}

/// Writes a file readable only by its owner.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

/// Seals the master secret; returns the sealed bytes and what to record.
pub(crate) fn seal(master: &MasterSecret, to: &SealTo) -> Result<(Vec<u8>, SealInfo, bool)> {
    match to {
        SealTo::Identity(path) => {
            let (identity, created) = load_or_create_identity(path)?;
            let recipient = identity.to_public();
            let sealed = age::encrypt(&recipient, master.expose())
                .map_err(|e| Error::CannotUnseal(format!("sealing failed: {e}")))?;
            let abs = std::path::absolute(path)
                .map_err(|e| Error::io(format!("resolving {}", path.display()), e))?;
            Ok((
                sealed,
                SealInfo {
                    method: "x25519".into(),
                    recipient: Some(recipient.to_string()),
                    identity_path: Some(abs),
                },
                created,
            ))
        }
        SealTo::Passphrase(pass) => {
            let mut recipient = age::scrypt::Recipient::new(pass.clone());
            recipient.set_work_factor(SCRYPT_LOG_N);
            let sealed = age::encrypt(&recipient, master.expose())
                .map_err(|e| Error::CannotUnseal(format!("sealing failed: {e}")))?;
            Ok((
                sealed,
                SealInfo {
                    method: "passphrase".into(),
                    recipient: None,
                    identity_path: None,
                },
                false,
            ))
        }
    }
}

/// Unseals the master secret.
pub(crate) fn unseal(sealed: &[u8], unlock: &Unlock) -> Result<MasterSecret> {
    let plain = match unlock {
        Unlock::Identity(path) => {
            let identity = load_identity(path)?;
            age::decrypt(&identity, sealed).map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => Error::CannotUnseal(format!(
                    "the identity in {} is not the one this data directory was sealed to",
                    path.display()
                )),
                other => Error::CannotUnseal(other.to_string()),
            })?
        }
        Unlock::Passphrase(pass) => {
            let mut identity = age::scrypt::Identity::new(pass.clone());
            identity.set_max_work_factor(22);
            age::decrypt(&identity, sealed).map_err(|e| match e {
                age::DecryptError::DecryptionFailed | age::DecryptError::NoMatchingKeys => {
                    Error::CannotUnseal(
                        "wrong passphrase, or the directory is sealed to an identity file".into(),
                    )
                }
                other => Error::CannotUnseal(other.to_string()),
            })?
        }
    };
    let master = MasterSecret::from_bytes(&plain);
    let mut plain = plain;
    zeroize::Zeroize::zeroize(&mut plain);
    master
}
