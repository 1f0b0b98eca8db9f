//! The tamper-evident audit log: every operation of the hub leaves one event here.
//!
//! Events are hash-chained (SHA-256 over the previous hash and the event's canonical bytes) and
//! stored in blocks: one store entry holds the events of one commit, each with its chain hash,
//! so appends cost one write per commit rather than one per event. Concurrent appends are
//! group-committed: whoever finds the log idle writes every waiting event in one block. Every
//! N events or T seconds a checkpoint (size, head hash, time) is signed with an Ed25519 key
//! derived from the master secret; checkpoints can be exported and later used to detect a
//! truncated or rolled-back log.
//!
//! It must never hold a personal value: events carry ids, field names, codes and counts. An
//! erased subject's id stays in the log, where it no longer links to any readable data.
//!
//! Layout:
//! - `event`: [`Event`], [`NewEvent`], [`Outcome`], the canonical encoding and chain hash.
//! - `log`: [`AuditLog`]: append (group commit, or inside a caller's atomic batch),
//!   checkpoints, queries, verification.

mod event;
mod log;

pub use event::{chain_hash, hex, unhex, Event, NewEvent, Outcome};
#[cfg(feature = "fuzz")]
#[doc(hidden)]
pub use log::fuzz;
pub use log::{
    verify_archive, AuditConfig, AuditLog, Checkpoint, Error, Query, Verification, VerifyProblem,
};

#[cfg(test)]
mod tests;
