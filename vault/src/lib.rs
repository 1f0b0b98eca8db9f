//! The encrypted record vault: the only crate that touches storage and ciphers.
//!
//! It owns the data directory's layout, the key hierarchy (a master secret sealed with age;
//! HKDF-SHA256-derived key-encryption keys, blind-index keys and keyed hashes), one random data
//! key per subject wrapped by the current KEK, AES-256-GCM for every field value, blind indexes
//! for exact lookups, crypto-shredding erasure, resumable KEK rotation and encrypted backups.
//!
//! It must never write a personal value in clear (store, slot file, logs, errors), and never
//! decide who may read what: access control, consent and audit happen in `hub` before a call
//! gets here.
//!
//! Layout:
//! - `store`: the [`Store`] trait (keyspaces, ordered scans, atomic batches) and [`SledStore`].
//! - `keys`: [`MasterSecret`], [`KeyRing`] and blind tokens.
//! - `seal`: sealing the master secret with age (X25519 identity or passphrase).
//! - `slots`: the data-key slot file, overwritten in place on erasure.
//! - `record`: the encrypted record format.
//! - `vault`: [`Vault`], its lifecycle and locks; its operations one module per concern
//!   (subjects, gifts, indexes and the suppression list, data keys, erasure, rotation).
//! - `backup`: encrypted snapshots and restore.
//! - `sources`: the source records merged into a subject, kept in its profile.
//! - `segments`: append-only segment files outside the store (the audit log's events).

mod backup;
pub mod crypto;
mod error;
mod holds;
mod keys;
mod merge;
pub mod pg;
mod record;
mod seal;
pub mod segments;
mod slots;
pub mod sources;
mod store;
mod vault;

pub use backup::BackupReport;
pub use error::{Error, Result};
pub use holds::{HeldData, HoldInfo, HoldRequest, KeepGift};
pub use keys::{blind_token, KeyRing, MasterSecret};
pub use merge::{GiftsFor, Replace, Sealed, Writes, Written};
pub use seal::{read_passphrase_file, SealInfo, SealTo, Unlock};
pub use store::{
    keyspaces, Batch, CrossLock, CrossLockName, Entry, EntryIter, FailingStore, Keyspace, Op,
    SledOptions, SledStore, Store, StoreError,
};
pub use vault::{
    layout, read_seal_info, store_choice, GiftRecord, InitReport, InteractionRecord, MatchKeys,
    NewInteraction as NewInteractionCopy, NewSubject, RmwGuard, RotationOptions, RotationReport,
    StoreChoice, SubjectRecord, SuppressionList, Vault, VaultStats, STORE_ENV,
};

/// Re-exported so callers can hold passphrases without depending on age directly.
pub use age::secrecy::SecretString;

#[cfg(test)]
mod store_contract;
#[cfg(test)]
mod tests;

/// Entry points for the fuzz targets under `fuzz/` (feature `fuzz` only): stored bytes in,
/// never a panic out.
#[cfg(feature = "fuzz")]
#[doc(hidden)]
pub mod fuzz {
    /// Reads an encrypted record's framing (header, each field's id and length) and a field
    /// value's encoding, as a read of stored bytes does.
    pub fn record(bytes: &[u8]) {
        crate::record::fuzz_framing(bytes);
        let _ = domain::Value::decode(bytes);
    }

    /// Reads bytes as an audit segment file (sealed and active), as opening the log and
    /// `audit verify` do.
    pub fn segment(bytes: &[u8]) {
        crate::segments::fuzz(bytes);
    }
}
