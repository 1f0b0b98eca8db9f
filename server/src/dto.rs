//! Request and response shapes as the OpenAPI document describes them. The hub's own types
//! stay free of HTTP and schema concerns; these mirror them for the wire.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// The one error shape.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    pub(crate) error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorDetail {
    /// Stable machine code, e.g. `invalid_input`, `forbidden`, `rate_limited`.
    pub(crate) code: String,
    /// What is wrong and how to fix it; never contains a personal value.
    pub(crate) message: String,
    /// The fields concerned (invalid or refused), when there are any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) fields: Option<Value>,
    /// Position in a batch, when the request was a batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) item: Option<usize>,
}

/// Liveness.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    /// Always `ok` when the server answers.
    pub(crate) status: String,
}

/// A new subject: `kind`, optional `gifts`, and field names from the catalogue with values.
// Schema only: handlers read the raw JSON so that each problem is reported by field.
#[allow(dead_code)]
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"kind": "individual", "given_name": "Ada", "family_name": "Lovelace", "email": "ada@example.org", "gifts": [{"amount": "25.00", "currency": "GBP", "date": "2024-05-01"}]}))]
pub(crate) struct NewSubject {
    /// individual (default), household or organisation.
    #[serde(default)]
    #[schema(pattern = "^(individual|person|household|organisation|organization)$")]
    pub(crate) kind: Option<String>,
    /// Gifts to create with the subject.
    #[serde(default)]
    pub(crate) gifts: Option<Vec<BTreeMap<String, Value>>>,
    /// Field name → value, as in `policies/schema.toml`.
    #[serde(flatten)]
    #[schema(value_type = Object, additional_properties = true)]
    pub(crate) fields: BTreeMap<String, Value>,
}

/// A batch of new subjects, created all or none.
// Schema only: handlers read the raw JSON so that each problem is reported by field.
#[allow(dead_code)]
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct NewSubjectBatch {
    /// Up to 10,000 subjects.
    pub(crate) subjects: Vec<NewSubject>,
}

/// The id of what was created.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Created {
    /// Opaque id (26 characters of Crockford base32).
    pub(crate) id: String,
}

/// The ids of what was created, in request order.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedMany {
    pub(crate) ids: Vec<String>,
}

/// A page of ids.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct IdPage {
    /// Subject ids in creation order.
    pub(crate) items: Vec<String>,
    /// Pass as `after` for the next page; null on the last page.
    pub(crate) next: Option<String>,
}

/// Exactly one of the three.
// Schema only: handlers read the raw JSON so that each problem is reported by field.
#[allow(dead_code)]
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"email": "ada@example.org"}))]
#[schema(min_properties = 1, max_properties = 1)]
pub(crate) struct LookupRequest {
    pub(crate) email: Option<String>,
    pub(crate) phone: Option<String>,
    pub(crate) external_id: Option<String>,
    /// A family name, matched by its search key (case, accents, spaces, hyphens and
    /// apostrophes set aside).
    pub(crate) family_name: Option<String>,
}

/// Matching subject ids.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct IdList {
    pub(crate) ids: Vec<String>,
}

/// A subject as the caller may see it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SubjectView {
    pub(crate) id: String,
    /// individual, household or organisation.
    pub(crate) kind: String,
    /// Incremented on every update; send it as `If-Match` to update safely.
    pub(crate) version: u32,
    /// The fields the caller's role may read.
    #[schema(value_type = Object, additional_properties = true)]
    pub(crate) fields: BTreeMap<String, Value>,
    /// Names of fields present but held back from this caller (never their values).
    pub(crate) withheld: Vec<String>,
}

/// Field name → new value; null removes the field.
// Schema only: handlers read the raw JSON so that each problem is reported by field.
#[allow(dead_code)]
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"city": "Leeds", "notes": null}))]
pub(crate) struct Patch {
    #[serde(flatten)]
    #[schema(value_type = Object, additional_properties = true)]
    pub(crate) fields: BTreeMap<String, Value>,
}

/// The subject's new version.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Updated {
    pub(crate) id: String,
    pub(crate) version: u32,
}

/// Confirmation of an erasure.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Erased {
    pub(crate) id: String,
    pub(crate) erased: bool,
    /// The erasure certificate in words: what was erased, what a legal hold keeps and until when.
    pub(crate) statement: String,
    /// The day a legal hold ends, when one keeps part of the data.
    pub(crate) held_until: Option<String>,
}

/// A gift.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Gift {
    pub(crate) id: String,
    #[schema(value_type = Object, additional_properties = true)]
    pub(crate) fields: BTreeMap<String, Value>,
}

/// A subject's gifts.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct GiftList {
    pub(crate) items: Vec<Gift>,
}

/// A gift: field name → value (a single object is accepted too).
// Schema only: handlers read the raw JSON so that each problem is reported by field.
#[allow(dead_code)]
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"amount": "25.00", "currency": "GBP", "date": "2024-05-01", "campaign": "Spring Appeal"}))]
pub(crate) struct NewGift {
    /// The amount, as in "25.00": required.
    pub(crate) amount: String,
    /// Other gift fields, as in `policies/schema.toml`.
    #[serde(flatten)]
    #[schema(value_type = Object, additional_properties = true)]
    pub(crate) fields: BTreeMap<String, Value>,
}

/// One gift, or a list of them.
// Schema only: the handler reads the raw JSON so that each problem is reported by field.
#[allow(dead_code)]
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum GiftBody {
    /// One gift.
    One(NewGift),
    /// Several, written all or none.
    Many(Vec<NewGift>),
}

/// A user (principal). Tokens are never shown again after creation.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct User {
    pub(crate) id: String,
    pub(crate) name: String,
    /// admin, fundraiser, volunteer, data-manager, dpo or auditor.
    pub(crate) role: String,
    pub(crate) created: String,
    pub(crate) revoked: bool,
    /// True when the user can sign in to the console with a password.
    pub(crate) console_password: bool,
}

/// Users.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct UserList {
    pub(crate) items: Vec<User>,
}

/// A user to create.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct NewUser {
    /// 1 to 64 letters, digits, `.`, `-` and `_`.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub(crate) name: String,
    #[schema(pattern = "^(admin|fundraiser|volunteer|data-manager|dpo|auditor)$")]
    pub(crate) role: String,
    /// A console password (12 to 256 characters), if the user is to sign in to the console.
    #[serde(default)]
    #[schema(min_length = 12, max_length = 256)]
    pub(crate) password: Option<String>,
}

/// A new console password.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct NewPassword {
    /// 12 to 256 characters.
    #[schema(min_length = 12, max_length = 256)]
    pub(crate) password: String,
}

/// A role change.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct RoleChange {
    #[schema(pattern = "^(admin|fundraiser|volunteer|data-manager|dpo|auditor)$")]
    pub(crate) role: String,
}

/// A new user with its token (shown this once).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NewUserToken {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) role: String,
    pub(crate) token: String,
}

impl From<hub::Principal> for User {
    fn from(p: hub::Principal) -> Self {
        User {
            console_password: p.has_password(),
            id: p.id.to_string(),
            name: p.name,
            role: p.role.to_string(),
            created: p.created,
            revoked: p.revoked,
        }
    }
}

impl From<hub::SubjectView> for SubjectView {
    fn from(v: hub::SubjectView) -> Self {
        SubjectView {
            id: v.id.to_string(),
            kind: v.kind.as_str().to_string(),
            version: v.version,
            fields: v.fields,
            withheld: v.withheld,
        }
    }
}

/// One audit event: ids, field names and codes only.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditEvent {
    pub(crate) seq: u64,
    /// UTC, RFC 3339.
    pub(crate) time: String,
    /// Principal id (`-` when unauthenticated).
    pub(crate) actor: String,
    pub(crate) actor_name: String,
    pub(crate) role: String,
    /// verb.object, e.g. `read.subject`, `create.subject`, `erase.subject`, `authenticate`.
    pub(crate) action: String,
    pub(crate) subjects: Vec<String>,
    /// Names of the fields touched; never values.
    pub(crate) fields: Vec<String>,
    pub(crate) purpose: Option<String>,
    pub(crate) request_id: Option<String>,
    /// ok, denied or error.
    pub(crate) outcome: String,
    pub(crate) reason: Option<String>,
    /// `cli` or the client's address.
    pub(crate) source: String,
}

impl From<hub::audit_log::Event> for AuditEvent {
    fn from(e: hub::audit_log::Event) -> Self {
        AuditEvent {
            seq: e.seq,
            time: e.time,
            actor: e.actor,
            actor_name: e.actor_name,
            role: e.role,
            action: e.action,
            subjects: e.subjects,
            fields: e.fields,
            purpose: e.purpose,
            request_id: e.request_id,
            outcome: e.outcome.as_str().to_string(),
            reason: e.reason,
            source: e.source,
        }
    }
}

/// A page of audit events.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditPage {
    pub(crate) items: Vec<AuditEvent>,
    /// Pass as `after` for the next page; null on the last page.
    pub(crate) next: Option<u64>,
}

/// The result of verifying the audit log.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditVerification {
    /// True when the chain, every checkpoint (each chained to the one before) and the
    /// signed head agree.
    pub(crate) ok: bool,
    pub(crate) events: u64,
    pub(crate) checkpoints: u64,
    /// Chain hash after the last event (hex).
    pub(crate) head: String,
    /// Events after the last signed checkpoint: covered by the signed head only, so a
    /// rollback of them shows only against a later exported checkpoint.
    pub(crate) unsigned_tail: u64,
    /// The first problem found, by sequence number.
    pub(crate) problem: Option<AuditProblem>,
}

/// What is wrong, and where.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditProblem {
    /// The first bad sequence number.
    pub(crate) seq: u64,
    /// hash_mismatch, gap, out_of_order, malformed, bad_signature, checkpoint_mismatch,
    /// checkpoint_missing, head_unsigned, unvouched, truncated or rollback.
    pub(crate) kind: String,
    pub(crate) detail: String,
}

impl From<hub::audit_log::Verification> for AuditVerification {
    fn from(v: hub::audit_log::Verification) -> Self {
        AuditVerification {
            ok: v.ok,
            events: v.events,
            checkpoints: v.checkpoints,
            head: v.head,
            unsigned_tail: v.unsigned_tail,
            problem: v.problem.map(|p| AuditProblem {
                seq: p.seq,
                kind: p.kind,
                detail: p.detail,
            }),
        }
    }
}

/// A signed checkpoint of the audit log, to keep off the host.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AuditCheckpoint {
    pub(crate) size: u64,
    pub(crate) head: String,
    pub(crate) time: String,
    pub(crate) public_key: String,
    pub(crate) signature: String,
    /// Its number in the log's chain of checkpoints (0 for checkpoints made before they
    /// were chained).
    pub(crate) index: u64,
    /// The digest of the checkpoint before it (empty for the first).
    pub(crate) prev: String,
}

impl From<hub::audit_log::Checkpoint> for AuditCheckpoint {
    fn from(c: hub::audit_log::Checkpoint) -> Self {
        AuditCheckpoint {
            size: c.size,
            head: c.head,
            time: c.time,
            public_key: c.public_key,
            signature: c.signature,
            index: c.index,
            prev: c.prev,
        }
    }
}

/// A consent event to record. Withdrawing is the same call with `"event": "withdrawn"`.
#[allow(dead_code)]
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"purpose": "newsletter-email", "event": "given", "source": "signup-form", "method": "form", "notice_version": "v3"}))]
pub(crate) struct NewConsentBody {
    pub(crate) purpose: String,
    /// given, refused, withdrawn, expired, objected, renewed, restricted, unrestricted.
    pub(crate) event: String,
    /// A reference: form name, campaign code, `email-link`.
    pub(crate) source: String,
    /// RFC 3339; default now.
    pub(crate) at: Option<String>,
    pub(crate) method: Option<String>,
    pub(crate) jurisdiction: Option<String>,
    pub(crate) notice_version: Option<String>,
    pub(crate) notice_hash: Option<String>,
    pub(crate) evidence: Option<String>,
    pub(crate) expires: Option<String>,
    pub(crate) contact_point: Option<String>,
    pub(crate) pecr_basis: Option<String>,
    pub(crate) pecr_conditions: Option<Vec<String>>,
}

/// A recorded ledger event (ids, codes, times and references only).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ConsentEventView {
    #[schema(value_type = Object, additional_properties = true)]
    #[serde(flatten)]
    pub(crate) event: Value,
}

/// A subject's consent: the decision of every purpose, and the ledger.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ConsentView {
    pub(crate) subject: String,
    pub(crate) at: String,
    /// Purpose → {allowed, reason, deciding_event}.
    #[schema(value_type = Object, additional_properties = true)]
    pub(crate) purposes: Value,
    #[schema(value_type = Vec<Object>)]
    pub(crate) history: Value,
}

/// Why a purpose may or may not process the subject.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ExplainView {
    #[schema(value_type = Object, additional_properties = true)]
    #[serde(flatten)]
    pub(crate) explanation: Value,
}

/// The Global Privacy Control support statement.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct GpcSupport {
    pub(crate) gpc: bool,
    #[serde(rename = "lastUpdate")]
    pub(crate) last_update: String,
}

/// An interaction (one participant's copy, with the fields the caller may read).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Interaction {
    pub(crate) id: String,
    /// For `If-Match` on updates.
    pub(crate) version: u32,
    /// The subjects it involved.
    pub(crate) participants: Vec<String>,
    /// Field name → value, as in `[[interaction_field]]` of `policies/schema.toml`.
    #[schema(value_type = Object, additional_properties = true)]
    pub(crate) fields: BTreeMap<String, Value>,
    /// Names of fields present but held back from this caller.
    pub(crate) withheld: Vec<String>,
}

impl From<hub::InteractionView> for Interaction {
    fn from(v: hub::InteractionView) -> Self {
        Interaction {
            id: v.id.to_string(),
            version: v.version,
            participants: v.participants.iter().map(ToString::to_string).collect(),
            fields: v.fields,
            withheld: v.withheld,
        }
    }
}

/// A subject's interactions, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct InteractionList {
    pub(crate) items: Vec<Interaction>,
}

/// A new interaction: `kind` is required; other fields as in `policies/schema.toml`;
/// `participants` adds other subjects to the path's subject.
// Schema only: handlers read the raw JSON so that each problem is reported by field.
#[allow(dead_code)]
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"kind": "call", "direction": "outbound", "occurred_at": "2026-03-01T10:00:00Z", "summary": "Thanked for the spring gift"}))]
pub(crate) struct NewInteractionBody {
    /// call, email, meeting, letter, event, note or task (extendable in schema.toml).
    pub(crate) kind: String,
    /// Other participants' subject ids.
    pub(crate) participants: Option<Vec<String>>,
    /// Other interaction fields.
    #[serde(flatten)]
    #[schema(value_type = Object, additional_properties = true)]
    pub(crate) fields: BTreeMap<String, Value>,
}

/// Marking a task done.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct Complete {
    /// What came of it.
    pub(crate) outcome: Option<String>,
}

/// A subject's timeline, oldest first; kinds the role may not see are named in `omitted`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TimelineBody {
    pub(crate) subject: String,
    #[schema(value_type = Vec<Object>)]
    pub(crate) items: Vec<Value>,
    pub(crate) omitted: Vec<String>,
}

/// Analytics figures with their `coverage` (donors counted, left out, suppression).
#[derive(Debug, Serialize, ToSchema)]
#[schema(value_type = Object)]
pub(crate) struct AnalyticsBody(pub(crate) Value);
