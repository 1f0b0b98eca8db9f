use std::path::PathBuf;

use domain::SubjectId;

use crate::store::StoreError;

/// Everything that can go wrong in the vault. Messages name ids, fields and files, never a
/// personal value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No vault at that path.
    #[error("{} is not a Steward data directory (run `steward init --data {}` first)", .0.display(), .0.display())]
    NotInitialised(PathBuf),
    /// `init` on a directory that already holds something.
    #[error("{} already exists and is not empty; init changes nothing there (choose a new directory)", .0.display())]
    AlreadyExists(PathBuf),
    /// Another process (usually a running server) holds the directory.
    #[error("the data directory {} is in use by {holder}; stop it first, or use its HTTP API", .dir.display())]
    InUse {
        /// The data directory.
        dir: PathBuf,
        /// Who holds it, as far as known ("a running Steward server at http://...").
        holder: String,
    },
    /// The master secret could not be unsealed.
    #[error("cannot unseal the master secret: {0}")]
    CannotUnseal(String),
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the file.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The storage backend failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No such subject.
    #[error("no subject with id {0}")]
    NotFound(SubjectId),
    /// No such record other than a subject (an interaction): the words say which.
    #[error("no {0}")]
    NoRecord(String),
    /// The subject was erased.
    #[error("subject {0} was erased; its data is no longer readable")]
    Erased(SubjectId),
    /// A ciphertext failed authentication: altered, or moved from another subject or field.
    #[error("stored data of subject {subject} failed its integrity check ({what}); it was altered or moved")]
    Tampered {
        /// The subject.
        subject: SubjectId,
        /// Which part: a field id, the data key, the record header.
        what: String,
    },
    /// Stored bytes that do not parse.
    #[error("stored {what} is malformed")]
    Corrupt {
        /// What was being read.
        what: String,
    },
    /// The record changed since the caller read it.
    #[error("subject {subject} changed since version {expected} (now {found}); read it again")]
    Conflict {
        /// The subject.
        subject: SubjectId,
        /// Version the caller expected.
        expected: u32,
        /// Version found.
        found: u32,
    },
    /// The operating system's random generator failed.
    #[error("the system random generator failed")]
    Random,
    /// The store named for a data directory cannot be used: a malformed URL, or a database
    /// that belongs to another data directory.
    #[error("store: {0}")]
    BadStore(String),
    /// A backup file is unreadable or not a Steward backup.
    #[error("backup: {0}")]
    Backup(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result with the vault's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
