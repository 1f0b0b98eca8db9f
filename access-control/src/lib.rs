//! Who may do what: principals, their API tokens, and casbin's authorisation decisions.
//!
//! A principal has a name and a role. Its API token is 256 random bits shown once; only a
//! keyed hash (HMAC-SHA256 under a key derived from the master secret) is stored, so a copy of
//! the data directory does not reveal working tokens. Tokens are checked in constant time.
//!
//! This crate must never see personal data: principals are staff accounts, named by the admin.
//!
//! Layout:
//! - `principals`: [`Principals`], the store of principals and token hashes; [`Role`].
//! - `sessions`: console sign-in sessions ([`Session`]) and their CSRF tokens.
//! - `policy`: [`Policy`], casbin's decisions from `policies/model.conf` and `policy.csv`.
//!
//! Console passwords are argon2id PHC strings (through `vault::crypto`); five failed sign-ins
//! in a row lock an account for 15 minutes. Sessions, like tokens, are stored as keyed hashes.

mod policy;
mod principals;
mod sessions;

pub use policy::{Action, Grant, Policy, PolicyError, OBJECTS};
pub use principals::{
    Error, Principal, PrincipalId, Principals, Role, LOCAL_ADMIN, LOCKOUT_SECONDS,
    MAX_FAILED_SIGN_INS, MAX_PASSWORD, MIN_PASSWORD,
};
pub use sessions::{now, Session, SESSION_ABSOLUTE_SECONDS, SESSION_IDLE_SECONDS};

#[cfg(test)]
mod tests;
