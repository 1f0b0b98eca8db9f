//! Art. 19 notifications: an outbox entry per recipient that received a subject's data,
//! written in the same atomic batch as the rectification, erasure, restriction, objection or
//! consent withdrawal that calls for it, so none can be forgotten.
//!
//! Recipients with a webhook endpoint are sent a signed, thin notice by the delivery worker
//! ([`Hub::deliver_due`]), at least once and idempotently by its id (`webhook-id`), with
//! retries over about a day; the others, and any delivery that finally fails, are tasks for a
//! person (`steward notify pending`, the work queue) who marks them done with a note.

use domain::SubjectId;
use serde::{Deserialize, Serialize};
use vault::keyspaces as ks;

use crate::error::Error;
use crate::recipients::unix_now;
use crate::webhook::{self, Answer};
use crate::{Action, Actor, Channel, Hub};

/// Delays between attempts, in seconds: about 23 hours in all, then the notification fails
/// and becomes a task for a person.
pub const RETRY_DELAYS: [u64; 9] = [10, 60, 300, 900, 3600, 7200, 14_400, 28_800, 28_800];
/// Longest Retry-After honoured (a day); a longer one is cut to this.
const MAX_RETRY_AFTER: u64 = 24 * 3600;
/// Attempts kept on an entry (the oldest are dropped; every attempt is in the audit log).
const KEPT_ATTEMPTS: usize = 12;

/// One attempt to deliver.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attempt {
    /// When (RFC 3339).
    pub at: String,
    /// The HTTP status the endpoint answered, if it answered.
    pub status: Option<u16>,
    /// What went wrong, when it did not answer (no personal value).
    pub error: Option<String>,
}

/// A notification owed to a recipient.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Notification {
    /// Its id: the `webhook-id`, the same on every attempt.
    pub id: String,
    /// The subject it is about.
    pub subject: SubjectId,
    /// The recipient (registered name, or a name recorded by hand).
    pub recipient: String,
    /// The recipient's reference for the subject (what its exports carried as `ref`).
    pub reference: String,
    /// subject.erased, subject.rectified, subject.restricted, subject.objected,
    /// consent.withdrawn.
    pub event: String,
    /// The field groups concerned (of those the recipient received).
    pub groups: Vec<String>,
    /// The purpose, for an objection or a withdrawal.
    pub purpose: Option<String>,
    /// When the change happened (RFC 3339).
    pub created: String,
    /// pending (the worker sends it), delivered, task (a person tells the recipient),
    /// failed (every attempt failed: a person takes over), done (a person did).
    pub state: String,
    /// Attempts so far (the latest ones).
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    /// Attempts in all.
    #[serde(default)]
    pub attempt_count: u32,
    /// When the next attempt is due (unix seconds), while pending.
    pub next_at: Option<u64>,
    /// When it was delivered or done (RFC 3339).
    pub finished: Option<String>,
    /// The note of the person who marked it done.
    pub note: Option<String>,
    /// Who marked it done (a principal id).
    pub done_by: Option<String>,
}

/// What one run of the delivery worker did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeliveryReport {
    /// Delivered (a 2xx answer).
    pub delivered: u64,
    /// Failed this time, to be tried again.
    pub retrying: u64,
    /// Failed for good, or recipient gone or disabled: now tasks for a person.
    pub to_person: u64,
}

fn due_key(at: u64, subject: &SubjectId, id: &[u8; 16]) -> Vec<u8> {
    let mut k = at.to_be_bytes().to_vec();
    k.extend_from_slice(subject.as_bytes());
    k.extend_from_slice(id);
    k
}

fn entry_key(subject: &SubjectId, id: &[u8; 16]) -> Vec<u8> {
    let mut k = subject.as_bytes().to_vec();
    k.extend_from_slice(id);
    k
}

fn id_bytes(id: &str) -> Option<[u8; 16]> {
    let hex = id.strip_prefix("msg_")?;
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn new_id() -> Result<[u8; 16], Error> {
    let mut id = [0u8; 16];
    // Time first (milliseconds), so ids sort by creation; then random bytes.
    let ms = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as u64;
    id[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    if !vault::crypto::fill_random(&mut id[6..]) {
        return Err(Error::Internal(
            "no random bytes for a notification id".into(),
        ));
    }
    Ok(id)
}

fn id_text(id: &[u8; 16]) -> String {
    format!(
        "msg_{}",
        id.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

impl Hub {
    /// Stages, in `batch`, a notification to every recipient that received this subject's
    /// data: for `changed` field groups only (`None`: all it received), and for `purpose`
    /// only when given (a withdrawal or objection concerns the recipients of that purpose).
    /// Returns how many were staged.
    pub(crate) fn stage_notifications(
        &self,
        batch: &mut vault::Batch,
        subject: &SubjectId,
        event: &str,
        changed: Option<&[String]>,
        purpose: Option<&str>,
    ) -> Result<usize, Error> {
        // What went out under this subject's id, and under the ids of records merged into
        // it since (each recipient knows those by their own references).
        let mut sources = vec![*subject];
        let mut i = 0;
        while i < sources.len() && sources.len() < 1000 {
            for gone in self.vault.merged_into(&sources[i])? {
                if !sources.contains(&gone) {
                    sources.push(gone);
                }
            }
            i += 1;
        }
        // One notification per recipient and reference, over all its purposes.
        let mut per: std::collections::BTreeMap<(String, SubjectId), Vec<String>> =
            Default::default();
        for source in &sources {
            for d in self.recipients_of(source)? {
                if let (Some(p), Some(dp)) = (purpose, d.purpose.as_deref()) {
                    if p != dp {
                        continue;
                    }
                }
                per.entry((d.recipient, *source))
                    .or_default()
                    .extend(d.groups);
            }
        }
        if per.is_empty() {
            return Ok(0);
        }
        let now = unix_now().max(0) as u64;
        let mut n = 0;
        for ((recipient, source), mut groups) in per {
            let recipient = recipient.as_str();
            groups.sort();
            groups.dedup();
            if let Some(changed) = changed {
                // Recorded by hand (no groups known): any change concerns it.
                if !groups.is_empty() {
                    groups.retain(|g| changed.contains(g));
                    if groups.is_empty() {
                        continue;
                    }
                }
            }
            let registered = self.registered(recipient)?;
            let sends = registered
                .as_ref()
                .is_some_and(|r| r.endpoint.is_some() && r.disabled.is_none());
            let id = new_id()?;
            let entry = Notification {
                id: id_text(&id),
                subject: *subject,
                recipient: recipient.to_string(),
                reference: self.recipient_ref(recipient, &source),
                event: event.to_string(),
                groups,
                purpose: purpose.map(str::to_string),
                created: consent::now(),
                state: if sends { "pending" } else { "task" }.into(),
                attempts: Vec::new(),
                attempt_count: 0,
                next_at: sends.then_some(now),
                finished: None,
                note: None,
                done_by: None,
            };
            if sends {
                batch.put(ks::OUTBOX_DUE, due_key(now, subject, &id), Vec::new());
            }
            batch.put(
                ks::OUTBOX,
                entry_key(subject, &id),
                serde_json::to_vec(&entry).expect("json"),
            );
            batch.put(ks::OUTBOX_IDS, id.to_vec(), subject.as_bytes().to_vec());
            n += 1;
        }
        Ok(n)
    }

    /// Stages what a consent event owes recipients: a withdrawal or objection concerns those
    /// that received the subject's data for that purpose, a restriction all of them; other
    /// events none.
    pub(crate) fn stage_consent_notifications(
        &self,
        batch: &mut vault::Batch,
        subject: &SubjectId,
        event: &str,
        purpose: &str,
    ) -> Result<usize, Error> {
        match event {
            "withdrawn" => {
                self.stage_notifications(batch, subject, "consent.withdrawn", None, Some(purpose))
            }
            "objected" => {
                self.stage_notifications(batch, subject, "subject.objected", None, Some(purpose))
            }
            "restricted" => {
                self.stage_notifications(batch, subject, "subject.restricted", None, None)
            }
            _ => Ok(0),
        }
    }

    /// A subject's notifications, oldest first (for its requests and the DPO).
    pub(crate) fn notifications_of(&self, subject: &SubjectId) -> Result<Vec<Notification>, Error> {
        let mut out = Vec::new();
        for entry in self
            .vault
            .store()
            .scan_prefix(ks::OUTBOX, subject.as_bytes())
        {
            let (_, v) = entry.map_err(vault::Error::from)?;
            out.push(read_entry(&v)?);
        }
        Ok(out)
    }

    /// Notifications a person must act on (tasks and failed deliveries), oldest first; with
    /// `all`, every notification not yet delivered or done.
    pub fn notifications_pending(
        &self,
        actor: &Actor,
        all: bool,
    ) -> Result<Vec<Notification>, Error> {
        self.audited(actor, "read.notification", |trail| {
            self.require(actor, "recipients", Action::Read)?;
            let out = self.open_notifications(all)?;
            trail.count = Some(out.len() as u64);
            Ok(out)
        })
    }

    /// Unaudited: the work queue's count and the notify command's list.
    pub(crate) fn open_notifications(&self, all: bool) -> Result<Vec<Notification>, Error> {
        let mut out = Vec::new();
        for entry in self.vault.store().scan_prefix(ks::OUTBOX, b"") {
            let (_, v) = entry.map_err(vault::Error::from)?;
            let n = read_entry(&v)?;
            if n.state == "task" || n.state == "failed" || (all && n.state == "pending") {
                out.push(n);
            }
        }
        out.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Marks a task (or a failed delivery) done: a person told the recipient. The note says
    /// how (a ticket, a letter's reference); it is kept with the notification, not in the
    /// audit log.
    pub fn complete_notification(
        &self,
        actor: &Actor,
        id: &str,
        note: &str,
    ) -> Result<Notification, Error> {
        self.audited(actor, "complete.notification", |trail| {
            self.require(actor, "recipients", Action::Write)?;
            let note = crate::recipients::valid_reason(note).map_err(|_| {
                Error::BadRequest(
                    "`note`: say in one line (1 to 500 characters) how the recipient was told"
                        .into(),
                )
            })?;
            let raw = id_bytes(id).ok_or_else(|| {
                Error::BadRequest("a notification id is `msg_` and 32 hex digits".into())
            })?;
            let (key, mut n) = self
                .find_notification(&raw)?
                .ok_or_else(|| Error::Missing(format!("no notification {id}")))?;
            trail.subject(n.subject);
            match n.state.as_str() {
                "task" | "failed" | "pending" => {}
                s => return Err(Error::Conflict(format!("notification {id} is already {s}"))),
            }
            let due = n.next_at.map(|at| due_key(at, &n.subject, &raw));
            n.state = "done".into();
            n.next_at = None;
            n.finished = Some(consent::now());
            n.note = Some(note);
            n.done_by = Some(actor.principal.id.to_string());
            self.commit_audited(actor, "complete.notification", trail, |mut batch| {
                if let Some(d) = due {
                    batch.delete(ks::OUTBOX_DUE, d);
                }
                batch.put(ks::OUTBOX, key, serde_json::to_vec(&n).expect("json"));
                self.vault.apply_durably(batch)?;
                Ok(())
            })?;
            Ok(n)
        })
    }

    fn find_notification(&self, id: &[u8; 16]) -> Result<Option<(Vec<u8>, Notification)>, Error> {
        let store = self.vault.store();
        let Some(subject) = store.get(ks::OUTBOX_IDS, id).map_err(vault::Error::from)? else {
            return Ok(None);
        };
        let mut key = subject;
        key.extend_from_slice(id);
        Ok(
            match store.get(ks::OUTBOX, &key).map_err(vault::Error::from)? {
                Some(v) => Some((key, read_entry(&v)?)),
                None => None,
            },
        )
    }

    /// Stages the removal of notifications delivered or done before `cutoff` (YYYY-MM-DD);
    /// returns how many. Open ones stay, however old.
    pub(crate) fn stage_notification_purge(
        &self,
        cutoff: &str,
        batch: &mut vault::Batch,
    ) -> Result<u64, Error> {
        let mut n = 0;
        for entry in self.vault.store().scan_prefix(ks::OUTBOX, b"") {
            let (k, v) = entry.map_err(vault::Error::from)?;
            let e = read_entry(&v)?;
            let finished = e.finished.as_deref().and_then(|f| f.get(..10));
            if matches!(e.state.as_str(), "delivered" | "done")
                && finished.is_some_and(|f| f < cutoff)
            {
                if k.len() == 32 {
                    batch.delete(ks::OUTBOX_IDS, k[16..].to_vec());
                }
                batch.delete(ks::OUTBOX, k.to_vec());
                n += 1;
            }
        }
        Ok(n)
    }

    /// The delivery worker's one run: sends every notification due now (up to `limit`), each
    /// attempt recorded with its outcome in the same batch as its audit event.
    pub fn deliver_due(&self, limit: usize) -> Result<DeliveryReport, Error> {
        let now = unix_now().max(0) as u64;
        let mut due = Vec::new();
        for entry in self.vault.store().scan_prefix(ks::OUTBOX_DUE, b"") {
            let (k, _) = entry.map_err(vault::Error::from)?;
            if k.len() != 40 {
                continue;
            }
            let at = u64::from_be_bytes(k[..8].try_into().expect("8 bytes"));
            if at > now || due.len() >= limit {
                break;
            }
            due.push(k.to_vec());
        }
        let mut report = DeliveryReport::default();
        for k in due {
            let subject = SubjectId::from_bytes(k[8..24].try_into().expect("16 bytes"));
            let id: [u8; 16] = k[24..40].try_into().expect("16 bytes");
            self.deliver_one(&k, &subject, &id, &mut report)?;
        }
        Ok(report)
    }

    fn deliver_one(
        &self,
        due: &[u8],
        subject: &SubjectId,
        id: &[u8; 16],
        report: &mut DeliveryReport,
    ) -> Result<(), Error> {
        let key = entry_key(subject, id);
        let Some(bytes) = self
            .vault
            .store()
            .get(ks::OUTBOX, &key)
            .map_err(vault::Error::from)?
        else {
            self.vault
                .store()
                .delete(ks::OUTBOX_DUE, due)
                .map_err(vault::Error::from)?;
            return Ok(());
        };
        let mut n = read_entry(&bytes)?;
        if n.state != "pending" {
            self.vault
                .store()
                .delete(ks::OUTBOX_DUE, due)
                .map_err(vault::Error::from)?;
            return Ok(());
        }
        let actor = self.delivery_actor();
        let registered = self.registered(&n.recipient)?;
        let endpoint = registered
            .as_ref()
            .filter(|r| r.disabled.is_none())
            .and_then(|r| r.endpoint.clone());
        let now_s = unix_now();
        let mut gone = false;
        let answer = match endpoint {
            None => Answer::Failed("the recipient has no endpoint now, or is disabled".into()),
            Some(url) => {
                let (keys, reach) = self.signing_keys(&n.recipient)?;
                let body = serde_json::to_vec(&serde_json::json!({
                    "type": n.event,
                    "timestamp": n.created,
                    "data": {
                        "reference": n.reference,
                        "groups": n.groups,
                        "purpose": n.purpose,
                    },
                }))
                .expect("json");
                let headers = [
                    ("webhook-id", n.id.clone()),
                    ("webhook-timestamp", now_s.to_string()),
                    (
                        "webhook-signature",
                        webhook::signature_header(&keys, &n.id, now_s, &body),
                    ),
                ];
                webhook::post(&url, reach, &headers, &body)
            }
        };
        let attempt = Attempt {
            at: consent::now(),
            status: match &answer {
                Answer::Status(s, _) => Some(*s),
                Answer::Failed(_) => None,
            },
            error: match &answer {
                Answer::Failed(e) => Some(e.clone()),
                Answer::Status(s, _) if !(200..300).contains(s) => Some(format!("HTTP {s}")),
                Answer::Status(..) => None,
            },
        };
        n.attempts.push(attempt);
        if n.attempts.len() > KEPT_ATTEMPTS {
            n.attempts.remove(0);
        }
        n.attempt_count += 1;
        let mut next_due = None;
        let outcome: &str = match answer {
            Answer::Status(s, _) if (200..300).contains(&s) => {
                n.state = "delivered".into();
                n.finished = Some(consent::now());
                report.delivered += 1;
                "delivered"
            }
            Answer::Status(410, _) => {
                gone = true;
                n.state = "failed".into();
                report.to_person += 1;
                "endpoint_gone"
            }
            _ if registered
                .as_ref()
                .is_none_or(|r| r.disabled.is_some() || r.endpoint.is_none()) =>
            {
                n.state = "task".into();
                report.to_person += 1;
                "no_endpoint"
            }
            Answer::Status(s @ (429 | 503), Some(after))
                if (n.attempt_count as usize) <= RETRY_DELAYS.len() =>
            {
                next_due = Some(now_s.max(0) as u64 + after.min(MAX_RETRY_AFTER));
                report.retrying += 1;
                if s == 429 {
                    "retry_after_429"
                } else {
                    "retry_after_503"
                }
            }
            _ => match RETRY_DELAYS.get(n.attempt_count as usize - 1) {
                Some(delay) => {
                    next_due = Some(now_s.max(0) as u64 + delay);
                    report.retrying += 1;
                    "retrying"
                }
                None => {
                    n.state = "failed".into();
                    report.to_person += 1;
                    "failed"
                }
            },
        };
        n.next_at = next_due;
        let mut trail = crate::trail::Trail::default();
        trail.subject(n.subject);
        trail.note = Some(format!("{outcome}: {} to {}", n.id, n.recipient));
        self.commit_audited(&actor, "deliver.notification", &mut trail, |mut batch| {
            batch.delete(ks::OUTBOX_DUE, due.to_vec());
            if let Some(at) = next_due {
                batch.put(ks::OUTBOX_DUE, due_key(at, subject, id), Vec::new());
            }
            if gone {
                self.disable_gone(&n.recipient, &mut batch)?;
            }
            batch.put(
                ks::OUTBOX,
                key.clone(),
                serde_json::to_vec(&n).expect("json"),
            );
            self.vault.apply_durably(batch)?;
            Ok(())
        })?;
        if outcome != "delivered" {
            tracing::warn!(notification = %n.id, recipient = %n.recipient, outcome, "webhook not delivered");
        }
        Ok(())
    }

    /// Who the delivery worker acts as in the audit log.
    fn delivery_actor(&self) -> Actor {
        let mut principal = self.local_admin.clone();
        principal.name = "steward-delivery".into();
        Actor {
            principal,
            channel: Channel::Cli,
            request_id: None,
        }
    }

    /// Sends what is due now, for `steward notify deliver` (authorised like the register).
    pub fn deliver_now(&self, actor: &Actor) -> Result<DeliveryReport, Error> {
        self.audited(actor, "deliver.notification", |trail| {
            self.require(actor, "recipients", Action::Write)?;
            let report = self.deliver_due(10_000)?;
            trail.count = Some(report.delivered + report.retrying + report.to_person);
            Ok(report)
        })
    }
}

fn read_entry(v: &[u8]) -> Result<Notification, Error> {
    serde_json::from_slice(v)
        .map_err(|e| Error::Internal(format!("an outbox entry is unreadable: {e}")))
}
