use domain::{FieldError, SubjectId};

/// Errors of hub operations, each with a stable machine code for APIs and exit codes.
/// Messages carry ids, field names and counts, never personal values.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No valid credentials.
    #[error("authentication failed: the API token is missing, unknown or revoked")]
    Unauthenticated,
    /// Authenticated, but the role may not do this.
    #[error("{}", forbidden_message(.action, .object, .fields))]
    Forbidden {
        /// The action refused.
        action: &'static str,
        /// The object (`subject:special`, `users`...).
        object: String,
        /// Fields the request named that the role may not touch.
        fields: Vec<String>,
    },
    /// No such subject.
    #[error("no subject with id {0}")]
    NotFound(SubjectId),
    /// No such thing (an import, a review item, a merge): the words say which.
    #[error("no {0}")]
    Missing(String),
    /// Something Steward wrote is not as it left it.
    #[error("internal error: {0}")]
    Internal(String),
    /// The subject was erased.
    #[error("subject {0} was erased")]
    Erased(SubjectId),
    /// Some fields were rejected; nothing was written.
    #[error("invalid input{}: {}", .item.map(|i| format!(" in item {i}")).unwrap_or_default(), join(.errors))]
    Invalid {
        /// Position in a batch, when the request was a batch.
        item: Option<usize>,
        /// The rejected fields.
        errors: Vec<FieldError>,
    },
    /// A malformed request (wrong shape, a missing parameter).
    #[error("{0}")]
    BadRequest(String),
    /// The record changed since the caller read it.
    #[error("{0}")]
    Conflict(String),
    /// A user-management error (unknown user, name taken...).
    #[error(transparent)]
    Principal(access_control::Error),
    /// The policy files are invalid.
    #[error("{0}")]
    Policy(String),
    /// The consent gate does not allow this purpose for this subject.
    #[error("the purpose \"{purpose}\" may not process this subject ({reason})")]
    ConsentRequired {
        /// The purpose asked for.
        purpose: String,
        /// The gate's reason code (no_consent, consent_withdrawn, objected, restricted...).
        reason: String,
    },
    /// The audit log could not record the operation, so it was not carried out.
    #[error("{0}")]
    Audit(String),
    /// The vault failed (IO, storage, integrity, sealing).
    #[error(transparent)]
    Vault(vault::Error),
    /// Stored bytes could not be read back (a checksum or format failure in the store):
    /// damage to the disk or the files, not anything the caller sent.
    #[error("the stored {keyspace} is damaged and cannot be read ({detail}); restore the data directory from a backup (see the README's Backups section)")]
    Storage {
        /// Which part of the store: `audit log`, `vault`...
        keyspace: &'static str,
        /// What the storage engine said (offsets and checksums, never values).
        detail: String,
    },
}

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

fn forbidden_message(action: &str, object: &str, fields: &[String]) -> String {
    if fields.is_empty() {
        format!("your role may not {action} {object}")
    } else {
        format!(
            "your role may not {action} {object}; refused field(s): {}",
            fields.join(", ")
        )
    }
}

/// What kind of failure an [`Error`] is: the one list each adapter maps once, the server to
/// an HTTP status and the CLI to an exit code, with no catch-all, so a new kind cannot be
/// left unmapped by either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No valid credentials.
    Unauthenticated,
    /// The role may not do this.
    Forbidden,
    /// The consent gate refused this purpose for this subject.
    ConsentRequired,
    /// No such subject, user, import, review item or file.
    NotFound,
    /// The subject was erased.
    Erased,
    /// Fields were rejected.
    Invalid,
    /// The request was malformed.
    BadRequest,
    /// The policy files are invalid.
    PolicyInvalid,
    /// The record changed, or the name is taken.
    Conflict,
    /// The data directory (or file) already exists.
    AlreadyExists,
    /// Another process holds the data directory.
    InUse,
    /// The key ring could not be unsealed.
    CannotUnseal,
    /// The data directory was never initialised.
    NotInitialised,
    /// Stored data failed its integrity check (tampering or damage caught by a MAC).
    Integrity,
    /// Stored bytes could not be read back (checksum or format failure).
    StorageDamaged,
    /// The audit log could not record the operation, so it was not carried out.
    AuditFailure,
    /// A backup file is not one Steward wrote, or is damaged.
    BackupInvalid,
    /// The store named for the data directory is not this directory's (another Steward's
    /// database, an empty one, a malformed URL).
    StoreRefused,
    /// The store cannot be reached now (the database is down); nothing was written, and the
    /// operation may be tried again.
    StoreUnavailable,
    /// Anything else: a fault of Steward's or of the machine.
    Internal,
}

impl ErrorKind {
    /// Every kind, for tests and documentation.
    pub const ALL: [ErrorKind; 20] = [
        ErrorKind::Unauthenticated,
        ErrorKind::Forbidden,
        ErrorKind::ConsentRequired,
        ErrorKind::NotFound,
        ErrorKind::Erased,
        ErrorKind::Invalid,
        ErrorKind::BadRequest,
        ErrorKind::PolicyInvalid,
        ErrorKind::Conflict,
        ErrorKind::AlreadyExists,
        ErrorKind::InUse,
        ErrorKind::CannotUnseal,
        ErrorKind::NotInitialised,
        ErrorKind::Integrity,
        ErrorKind::StorageDamaged,
        ErrorKind::AuditFailure,
        ErrorKind::BackupInvalid,
        ErrorKind::StoreRefused,
        ErrorKind::StoreUnavailable,
        ErrorKind::Internal,
    ];

    /// The stable machine code, as the API's `error.code` and the CLI's JSON errors carry it.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::ConsentRequired => "consent_required",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Erased => "erased",
            ErrorKind::Invalid => "invalid_input",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::PolicyInvalid => "policy_invalid",
            ErrorKind::Conflict => "conflict",
            ErrorKind::AlreadyExists => "already_exists",
            ErrorKind::InUse => "data_dir_in_use",
            ErrorKind::CannotUnseal => "cannot_unseal",
            ErrorKind::NotInitialised => "not_initialised",
            ErrorKind::Integrity => "integrity_failure",
            ErrorKind::StorageDamaged => "storage_damaged",
            ErrorKind::AuditFailure => "audit_failure",
            ErrorKind::BackupInvalid => "backup_invalid",
            ErrorKind::StoreRefused => "store_refused",
            ErrorKind::StoreUnavailable => "store_unavailable",
            ErrorKind::Internal => "internal",
        }
    }

    /// The kind a code names (a server's answer read by the CLI); `None` for a code this
    /// version does not know.
    pub fn from_code(code: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.code() == code)
    }
}

impl Error {
    /// The key ring cannot be unsealed with what was given; `why` says what to give instead.
    pub fn cannot_unseal(why: impl Into<String>) -> Error {
        Error::Vault(vault::Error::CannotUnseal(why.into()))
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Unauthenticated => ErrorKind::Unauthenticated,
            Error::Forbidden { .. } => ErrorKind::Forbidden,
            Error::NotFound(_) | Error::Missing(_) => ErrorKind::NotFound,
            Error::Internal(_) => ErrorKind::Internal,
            Error::Erased(_) => ErrorKind::Erased,
            Error::Invalid { .. } => ErrorKind::Invalid,
            Error::BadRequest(_) => ErrorKind::BadRequest,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::Principal(e) => match e {
                access_control::Error::Unauthenticated
                | access_control::Error::BadCredentials
                | access_control::Error::Locked { .. } => ErrorKind::Unauthenticated,
                access_control::Error::WeakPassword => ErrorKind::Invalid,
                access_control::Error::UnknownUser(_) => ErrorKind::NotFound,
                access_control::Error::NameTaken(_) => ErrorKind::Conflict,
                access_control::Error::BadName | access_control::Error::UnknownRole(_) => {
                    ErrorKind::BadRequest
                }
                access_control::Error::BuiltIn => ErrorKind::Forbidden,
                access_control::Error::Vault(_) | access_control::Error::Random => {
                    ErrorKind::Internal
                }
            },
            Error::Policy(_) => ErrorKind::PolicyInvalid,
            Error::Audit(_) => ErrorKind::AuditFailure,
            Error::ConsentRequired { .. } => ErrorKind::ConsentRequired,
            Error::Storage { .. } => ErrorKind::StorageDamaged,
            Error::Vault(e) => match e {
                vault::Error::NotInitialised(_) => ErrorKind::NotInitialised,
                vault::Error::AlreadyExists(_) => ErrorKind::AlreadyExists,
                vault::Error::InUse { .. } => ErrorKind::InUse,
                vault::Error::CannotUnseal(_) => ErrorKind::CannotUnseal,
                vault::Error::NotFound(_) => ErrorKind::NotFound,
                vault::Error::Erased(_) => ErrorKind::Erased,
                vault::Error::Tampered { .. } => ErrorKind::Integrity,
                vault::Error::Conflict { .. } => ErrorKind::Conflict,
                vault::Error::Backup(_) => ErrorKind::BackupInvalid,
                vault::Error::BadStore(_) => ErrorKind::StoreRefused,
                vault::Error::Store(vault::StoreError::Unavailable(_)) => {
                    ErrorKind::StoreUnavailable
                }
                vault::Error::Corrupt { .. }
                | vault::Error::Store(vault::StoreError::Corrupt(_)) => ErrorKind::StorageDamaged,
                _ => ErrorKind::Internal,
            },
        }
    }

    /// A stable machine code ([`ErrorKind::code`]).
    pub fn code(&self) -> &'static str {
        self.kind().code()
    }
}

impl From<vault::Error> for Error {
    fn from(e: vault::Error) -> Self {
        match e {
            vault::Error::NotFound(id) => Error::NotFound(id),
            vault::Error::NoRecord(what) => Error::Missing(what),
            vault::Error::Erased(id) => Error::Erased(id),
            vault::Error::Conflict { .. } => Error::Conflict(e.to_string()),
            other => Error::Vault(other),
        }
    }
}

impl From<access_control::Error> for Error {
    fn from(e: access_control::Error) -> Self {
        match e {
            access_control::Error::Unauthenticated => Error::Unauthenticated,
            access_control::Error::Vault(v) => Error::from(v),
            other => Error::Principal(other),
        }
    }
}

impl From<vault::StoreError> for Error {
    fn from(e: vault::StoreError) -> Self {
        Error::Vault(vault::Error::from(e))
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorKind;

    #[test]
    fn every_kind_has_its_own_code_and_is_read_back_from_it() {
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::from_code(kind.code()), Some(kind), "{kind:?}");
        }
        let mut codes: Vec<_> = ErrorKind::ALL.iter().map(|k| k.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), ErrorKind::ALL.len());
        assert_eq!(ErrorKind::from_code("no_such_code"), None);
    }
}
