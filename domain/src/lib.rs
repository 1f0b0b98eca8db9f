//! The domain model of Steward: what a constituent record is made of.
//!
//! This crate owns the opaque identifiers ([`SubjectId`], [`GiftId`]), the field catalogue that
//! `policies/schema.toml` declares ([`Schema`]), the typed values a field may hold ([`Value`],
//! with one newtype per kind of personal value whose `Debug` never prints the value), and the
//! normalisers that turn what people type into canonical forms (email, E.164 phone, dates,
//! postcodes).
//!
//! It must never do IO, spawn threads or touch cryptography: callers hand it strings and bytes.
//! Errors name the field and the problem, never the value.
//!
//! Layout:
//! - `id`: subject and gift identifiers (time-ordered, 128 bits, Crockford base32).
//! - `schema`: the field catalogue, parsed and validated from TOML.
//! - `value`: typed values, their compact binary encoding and their JSON form.
//! - `normalise`: email, phone, date, postcode and name normalisers.
//! - `deadline`: legal clocks for subject requests (calendar months, working days, holidays).

pub mod deadline;
mod error;
mod id;
mod normalise;
mod par;
mod schema;
mod text;
mod value;

pub use error::{Error, FieldError, FieldProblem};
pub use id::{GiftId, IdParseError, InteractionId, SubjectId};
pub use normalise::{
    compose, email_domain_suspect, name_key, normalise_email, normalise_external_id,
    normalise_name, normalise_phone, normalise_postcode, parse_date, phone_display,
    phone_is_assigned, DateOrder, ParsedDate,
};
pub use par::par_map;
pub use schema::{
    AccessGroup, FieldDef, FieldId, FieldType, IndexKind, RecordKind, Schema, SubjectKind,
    INTERACTION_RESERVED, RESERVED_NAMES,
};
pub use text::{format_utc, hex, unhex};
pub use value::{country_code, Email, Money, Phone, Text, Value, MAX_TAGS};
pub use value::{format_timestamp, parse_timestamp};

#[cfg(test)]
mod tests;
