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
//! - `policy`: [`Policy`], casbin's decisions from `policies/model.conf` and `policy.csv`.

mod policy;
mod principals;

pub use policy::{Action, Grant, Policy, PolicyError, OBJECTS};
pub use principals::{Error, Principal, PrincipalId, Principals, Role, LOCAL_ADMIN};

#[cfg(test)]
mod tests;
