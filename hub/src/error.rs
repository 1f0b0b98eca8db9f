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

impl Error {
    /// A stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Unauthenticated => "unauthenticated",
            Error::Forbidden { .. } => "forbidden",
            Error::NotFound(_) | Error::Missing(_) => "not_found",
            Error::Internal(_) => "internal",
            Error::Erased(_) => "erased",
            Error::Invalid { .. } => "invalid_input",
            Error::BadRequest(_) => "bad_request",
            Error::Conflict(_) => "conflict",
            Error::Principal(e) => match e {
                access_control::Error::Unauthenticated => "unauthenticated",
                access_control::Error::UnknownUser(_) => "not_found",
                access_control::Error::NameTaken(_) => "conflict",
                access_control::Error::BadName | access_control::Error::UnknownRole(_) => {
                    "bad_request"
                }
                access_control::Error::BuiltIn => "forbidden",
                access_control::Error::Vault(_) | access_control::Error::Random => "internal",
            },
            Error::Policy(_) => "policy_invalid",
            Error::Audit(_) => "audit_failure",
            Error::ConsentRequired { .. } => "consent_required",
            Error::Storage { .. } => "storage_damaged",
            Error::Vault(e) => match e {
                vault::Error::NotInitialised(_) => "not_initialised",
                vault::Error::AlreadyExists(_) => "already_exists",
                vault::Error::InUse { .. } => "data_dir_in_use",
                vault::Error::CannotUnseal(_) => "cannot_unseal",
                vault::Error::NotFound(_) => "not_found",
                vault::Error::Erased(_) => "erased",
                vault::Error::Tampered { .. } => "integrity_failure",
                vault::Error::Conflict { .. } => "conflict",
                vault::Error::Backup(_) => "backup_invalid",
                vault::Error::Corrupt { .. }
                | vault::Error::Store(vault::StoreError::Corrupt(_)) => "storage_damaged",
                _ => "internal",
            },
        }
    }
}

impl From<vault::Error> for Error {
    fn from(e: vault::Error) -> Self {
        match e {
            vault::Error::NotFound(id) => Error::NotFound(id),
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
