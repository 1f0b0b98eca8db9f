//! Audit events and their canonical encoding.

use serde::{Deserialize, Serialize};

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done.
    Ok,
    /// Refused by access control (or authentication).
    Denied,
    /// Failed.
    Error,
}

impl Outcome {
    /// The outcome's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Error => "error",
        }
    }
}

/// One audit event. Ids, names of fields and codes only: never a personal value.
///
/// The canonical encoding is this struct as compact JSON, fields in declaration order; the
/// chain hash of event *n* is `SHA-256(hash(n-1) || canonical(n))`, with 32 zero bytes before
/// the first event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the log, from 0, without gaps.
    pub seq: u64,
    /// UTC time, RFC 3339 with microseconds.
    pub time: String,
    /// Principal id of the actor (`-` when unauthenticated).
    pub actor: String,
    /// The actor's user name, as the admin gave it.
    pub actor_name: String,
    /// The actor's role (`-` when unauthenticated).
    pub role: String,
    /// What was done: `subject.read`, `subject.create`, `subject.erase`, `auth.failure`...
    pub action: String,
    /// Subject ids concerned.
    pub subjects: Vec<String>,
    /// Names of fields touched (read, written or refused); never values.
    pub fields: Vec<String>,
    /// Processing purpose, when the operation had one.
    pub purpose: Option<String>,
    /// Request id (HTTP) for correlation with the server log.
    pub request_id: Option<String>,
    /// ok, denied or error.
    pub outcome: Outcome,
    /// A stable reason code for denied and error outcomes (`forbidden`, `not_found`...).
    pub reason: Option<String>,
    /// `cli`, or the peer address of an HTTP request.
    pub source: String,
    /// How many records the operation covered, for exports and segments.
    #[serde(default)]
    pub count: Option<u64>,
}

/// An event before the log gives it a position and a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Principal id.
    pub actor: String,
    /// User name.
    pub actor_name: String,
    /// Role.
    pub role: String,
    /// Action name.
    pub action: String,
    /// Subject ids.
    pub subjects: Vec<String>,
    /// Field names.
    pub fields: Vec<String>,
    /// Purpose.
    pub purpose: Option<String>,
    /// Request id.
    pub request_id: Option<String>,
    /// Outcome.
    pub outcome: Outcome,
    /// Reason code.
    pub reason: Option<String>,
    /// Source.
    pub source: String,
    /// Records covered (exports).
    pub count: Option<u64>,
}

impl NewEvent {
    pub(crate) fn at(self, seq: u64, time: String) -> Event {
        Event {
            seq,
            time,
            actor: self.actor,
            actor_name: self.actor_name,
            role: self.role,
            action: self.action,
            subjects: self.subjects,
            fields: self.fields,
            purpose: self.purpose,
            request_id: self.request_id,
            outcome: self.outcome,
            reason: self.reason,
            source: self.source,
            count: self.count,
        }
    }
}

impl Event {
    /// The canonical bytes that the chain hash covers.
    pub fn canonical(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an event serialises")
    }
}

/// `SHA-256(prev || canonical)`.
pub fn chain_hash(prev: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
    let mut ctx = vault::crypto::Sha256::new();
    ctx.update(prev);
    ctx.update(canonical);
    ctx.finish()
}

pub use domain::{hex, unhex};
