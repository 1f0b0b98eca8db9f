//! Auditing every operation: the wrapper each use case runs in.
//!
//! Reads append their event after acting and before returning anything: if the append fails
//! the data is dropped and the caller gets an error. Writes put their event in the same atomic
//! store batch as the change ([`Hub::commit_audited`]): both are stored, or neither. Refusals
//! and failures are recorded too (outcome `denied` or `error` with the error's code).

use audit::{NewEvent, Outcome};
use vault::Batch;

use crate::error::Error;
use crate::{Actor, Channel, Hub};

/// What an operation touched, filled in as it runs.
#[derive(Debug, Default)]
pub(crate) struct Trail {
    pub(crate) subjects: Vec<String>,
    pub(crate) fields: Vec<String>,
    /// The processing purpose, for purpose-scoped operations.
    pub(crate) purpose: Option<String>,
    /// Records covered, for exports.
    pub(crate) count: Option<u64>,
    /// A code saying why, for an `ok` event (a reveal's reason); refusals carry their error
    /// code instead.
    pub(crate) note: Option<String>,
    /// Set once the operation's own event went into its write batch.
    recorded: bool,
}

impl Trail {
    pub(crate) fn subject(&mut self, id: impl ToString) {
        self.subjects.push(id.to_string());
    }

    pub(crate) fn fields<I: IntoIterator<Item = S>, S: ToString>(&mut self, names: I) {
        self.fields.extend(names.into_iter().map(|n| n.to_string()));
    }
}

/// Every action an audit event names, in order: what an auditor may filter on (an action, its
/// first word such as `read`, or its last such as `subject`). Debug builds check each event
/// against it, so the tests find an action missing here.
pub const ACTIONS: &[&str] = &[
    "archive.audit",
    "authenticate",
    "complete.notification",
    "create.backup",
    "create.gift",
    "create.interaction",
    "create.recipient",
    "create.session",
    "create.subject",
    "create.user",
    "deliver.notification",
    "end.session",
    "erase.subject",
    "export.access-package",
    "export.checkpoint",
    "export.segment",
    "household.link",
    "import",
    "import.authorize",
    "import.dry_run",
    "import.interactions",
    "import.rows",
    "import.undo",
    "list.request",
    "list.subject",
    "list.user",
    "mapping.list",
    "mapping.put",
    "match.check",
    "match.reindex",
    "merge",
    "merge.split",
    "merge.undo",
    "open.request",
    "read.analytics",
    "read.audit",
    "read.certificate",
    "read.consent",
    "read.gift",
    "read.hold",
    "read.import",
    "read.interaction",
    "read.match",
    "read.notification",
    "read.policy",
    "read.recipients",
    "read.request",
    "read.review",
    "read.subject",
    "reissue.token",
    "replay.erasure",
    "review.reject",
    "revoke.user",
    "rotate.keys",
    "run.retention",
    "search.subject",
    "update.consent",
    "update.interaction",
    "update.password",
    "update.policy",
    "update.recipient",
    "update.recipients",
    "update.request",
    "update.subject",
    "update.user",
    "verify.audit",
];

/// What an audit query may filter on: every action, and every first and last word of one,
/// sorted, each once.
pub fn action_filters() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = ACTIONS
        .iter()
        .flat_map(|a| {
            [
                *a,
                a.split('.').next().unwrap_or(a),
                a.rsplit('.').next().unwrap_or(a),
            ]
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// True when `filter` names an action, or the first or last word of one.
pub(crate) fn known_action(filter: &str) -> bool {
    ACTIONS.iter().any(|a| {
        *a == filter || a.split('.').next() == Some(filter) || a.rsplit('.').next() == Some(filter)
    })
}

impl Hub {
    pub(crate) fn new_event(
        &self,
        actor: &Actor,
        action: &str,
        trail: &Trail,
        outcome: Outcome,
        reason: Option<&str>,
    ) -> NewEvent {
        debug_assert!(
            ACTIONS.contains(&action),
            "audit action {action} is missing from hub::ACTIONS"
        );
        let mut fields = trail.fields.clone();
        fields.sort();
        fields.dedup();
        NewEvent {
            actor: actor.principal.id.to_string(),
            actor_name: actor.principal.name.clone(),
            role: actor.principal.role.to_string(),
            action: action.to_string(),
            subjects: trail.subjects.clone(),
            fields,
            purpose: trail.purpose.clone(),
            request_id: actor.request_id.clone(),
            outcome,
            reason: reason.map(str::to_string).or_else(|| trail.note.clone()),
            source: match &actor.channel {
                Channel::Cli => "cli".into(),
                Channel::Http(addr) => addr.clone(),
            },
            count: trail.count,
        }
    }

    /// Runs `op` and records its event: `ok` with what it touched, or `denied`/`error` with
    /// the error's code. If the event cannot be written the result is replaced by an error.
    pub(crate) fn audited<T>(
        &self,
        actor: &Actor,
        action: &str,
        op: impl FnOnce(&mut Trail) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut trail = Trail::default();
        let result = op(&mut trail);
        if trail.recorded && result.is_ok() {
            return result;
        }
        let (outcome, reason) = match &result {
            Ok(_) => (Outcome::Ok, None),
            Err(Error::Audit(_)) => return result,
            Err(e) if matches!(e.code(), "forbidden" | "unauthenticated") => {
                (Outcome::Denied, Some(e.code()))
            }
            Err(e) => (Outcome::Error, Some(e.code())),
        };
        let event = self.new_event(actor, action, &trail, outcome, reason);
        match self.audit.append(event) {
            Ok(_) => result,
            Err(e) => {
                tracing::error!(error = %e, action, "audit append failed; operation refused");
                Err(Error::Audit(e.to_string()))
            }
        }
    }

    /// Applies a write together with its `ok` event in one atomic batch: `write` gets the
    /// audit entries and must include them in the batch it applies.
    pub(crate) fn commit_audited<T>(
        &self,
        actor: &Actor,
        action: &str,
        trail: &mut Trail,
        write: impl FnOnce(Batch) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let event = self.new_event(actor, action, trail, Outcome::Ok, None);
        match self.audit.append_with(vec![event], write) {
            Err(e) => {
                tracing::error!(error = %e, action, "audit append failed; write not applied");
                Err(Error::Audit(e.to_string()))
            }
            Ok(Ok(v)) => {
                trail.recorded = true;
                Ok(v)
            }
            Ok(Err(e)) => Err(e),
        }
    }

    /// Records a failed authentication (no principal is known).
    pub fn audit_auth_failure(&self, source: &str, request_id: Option<&str>) -> Result<(), Error> {
        self.append_auth_event(source, request_id, "unauthenticated", None)
    }

    /// Records, as one event, the requests from one source that were refused without their
    /// token being looked at because it had failed to authenticate too often (`count`).
    pub fn audit_auth_refusals(&self, source: &str, count: u64) -> Result<(), Error> {
        self.append_auth_event(source, None, "too_many_failed_authentications", Some(count))
    }

    fn append_auth_event(
        &self,
        source: &str,
        request_id: Option<&str>,
        reason: &str,
        count: Option<u64>,
    ) -> Result<(), Error> {
        let event = NewEvent {
            actor: "-".into(),
            actor_name: "-".into(),
            role: "-".into(),
            action: "authenticate".into(),
            subjects: Vec::new(),
            fields: Vec::new(),
            purpose: None,
            request_id: request_id.map(str::to_string),
            outcome: Outcome::Denied,
            reason: Some(reason.into()),
            source: source.to_string(),
            count,
        };
        self.audit
            .append(event)
            .map(|_| ())
            .map_err(|e| Error::Audit(e.to_string()))
    }
}
