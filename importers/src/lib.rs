//! Importers: reading and cleansing legacy CRM exports.
//!
//! This crate works on `impl Read` and plain data, never on the vault: the hub turns what it
//! produces into subjects, consent events and merges. Bad rows come back as data (row number,
//! column, code), never as an early error, and never with the offending value.
//!
//! Layout:
//! - `reader`: [`Reader`] — dialect sniffing (delimiter, encoding, BOM, header row after a
//!   preamble) and streaming rows with ragged rows reported, not fatal.
//! - `profile`: [`Profile`] — the columns of CiviCRM, NPSP (labels and API names), Mailchimp,
//!   Bloomerang and DonorPerfect exports, a generic guesser, and [`MappingFile`]s.
//!
//! Profiles, normalisation, matching and merges are the rest of the importers issue.

pub mod activities;
pub mod dates;
pub mod matching;
pub mod phones;
mod profile;
mod reader;
pub mod survivorship;

pub use profile::{
    legacy_value, restriction, split_address, triggers, MappingEntry, MappingFile, Profile, Target,
    ADDRESS_FIELDS,
};
pub use reader::{sniff, Dialect, Encoding, Reader, Row, RowError};

#[cfg(test)]
mod tests;
