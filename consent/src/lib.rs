//! Processing purposes, the consent ledger and the purpose gate.
//!
//! `policies/purposes.toml` names each purpose with its lawful basis, channel, fields and
//! whether the subject may opt out ([`Purposes`]). The ledger ([`Ledger`]) is append-only:
//! events per subject × purpose (given, refused, withdrawn, expired, objected, renewed,
//! restricted, unrestricted), never rewritten. The gate ([`decide`]) is a fold over a subject's
//! events answering "may this purpose process this subject at this time?", with the events
//! that decided it.
//!
//! It must never hold a personal value: events carry ids, codes, times and references
//! (evidence references are checked to be references, not content).
//!
//! Layout:
//! - `purposes`: [`Purposes`], [`Purpose`], [`Basis`].
//! - `ledger`: [`ConsentEvent`], [`EventKind`], [`Ledger`] on the vault's store.
//! - `gate`: [`decide`], [`Decision`].

mod gate;
mod ledger;
mod purposes;

pub use gate::{decide, verdict, Decision, GateEvent, GateFacts};
pub use ledger::{
    normalise_time, now, ConsentEvent, EventKind, Ledger, NewConsent, CHARITABLE_SOFT_OPT_IN,
};
pub use purposes::{Basis, Purpose, Purposes};

/// Errors of the consent crate; messages name purposes, fields and codes, never values.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// purposes.toml is not valid.
    #[error("purposes.toml: {0}")]
    Purposes(String),
    /// No such purpose: its name, and the purposes there are.
    #[error("unknown purpose \"{0}\"; the purposes in policies/purposes.toml are: {1}")]
    UnknownPurpose(String, String),
    /// An event that cannot be recorded as given.
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] vault::StoreError),
}

#[cfg(test)]
mod tests;
