//! Consent: recording events, current state, explanations, and purpose-scoped segments.

use std::collections::BTreeMap;
use std::sync::Arc;

use consent::{decide, ConsentEvent, Decision, NewConsent, Purpose};
use domain::{FieldId, RecordKind, SubjectId};
use serde::Serialize;
use serde_json::Value as Json;

use crate::error::Error;
use crate::{Action, Actor, Hub};

/// A subject's consent state: one decision per purpose.
#[derive(Debug, Clone, Serialize)]
pub struct ConsentState {
    /// The subject.
    pub subject: SubjectId,
    /// When the state was computed for (UTC).
    pub at: String,
    /// Purpose name → decision.
    pub purposes: BTreeMap<String, Decision>,
}

/// A consent in force that will expire.
#[derive(Debug, Clone, Serialize)]
pub struct ExpiringConsent {
    /// The subject.
    pub subject: SubjectId,
    /// The purpose it was given for.
    pub purpose: String,
    /// When it expires (UTC).
    pub expires: String,
}

/// Why a purpose may or may not process a subject.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The purpose.
    pub purpose: String,
    /// Its lawful basis.
    pub basis: consent::Basis,
    /// The decision, with the deciding event.
    pub decision: Decision,
    /// Every event of the subject's ledger, for context.
    pub history: Vec<ConsentEvent>,
}

/// One subject of a segment: its id and the purpose's fields.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentRow {
    /// The subject.
    pub id: SubjectId,
    /// The recipient's own reference for the subject, in an export to a registered
    /// recipient: its notifications name the subject by it.
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The purpose's fields that the subject has (and the caller may read).
    #[serde(flatten)]
    pub fields: BTreeMap<String, Json>,
}

use consent::now;

fn at_or_now(at: Option<&str>) -> Result<String, Error> {
    match at {
        None => Ok(now()),
        Some(t) => consent::normalise_time(t)
            .ok_or_else(|| Error::BadRequest("`at` is not an RFC 3339 time or a date".into())),
    }
}

pub(crate) fn consent_error(e: consent::Error) -> Error {
    match e {
        consent::Error::Store(s) => Error::Vault(vault::Error::Store(s)),
        other => Error::BadRequest(other.to_string()),
    }
}

impl Hub {
    fn marketing(&self) -> impl Fn(&str) -> bool {
        let purposes = self.purposes();
        move |name: &str| purposes.get(name).map(|p| p.marketing).unwrap_or(false)
    }

    pub(crate) fn purpose(&self, name: &str) -> Result<Purpose, Error> {
        self.purposes().get(name).cloned().map_err(consent_error)
    }

    /// The gate's decision for one subject and purpose, now.
    pub(crate) fn gate(&self, subject: &SubjectId, purpose: &str) -> Result<Decision, Error> {
        let p = self.purpose(purpose)?;
        let history = self.ledger.history(subject).map_err(consent_error)?;
        Ok(decide(
            &p,
            &history,
            self.vault.is_erased(subject)?,
            &now(),
            &self.marketing(),
        ))
    }

    /// The processing purposes in force (a snapshot: an administrator's change applies to
    /// the next call).
    pub fn purposes(&self) -> Arc<consent::Purposes> {
        self.purposes.read().expect("purposes lock").clone()
    }

    /// Records a consent event (given, withdrawn, objected, restricted...) for a subject.
    /// Withdrawing is the same call as giving, with another event name.
    pub fn record_consent(
        &self,
        actor: &Actor,
        subject: &SubjectId,
        new: NewConsent,
    ) -> Result<ConsentEvent, Error> {
        self.record_consent_as(actor, subject, new, true)
    }

    /// Records a consent event; `check` is false only for opt-outs the subject signals
    /// directly (Global Privacy Control), which any caller relays.
    fn record_consent_as(
        &self,
        actor: &Actor,
        subject: &SubjectId,
        mut new: NewConsent,
        check: bool,
    ) -> Result<ConsentEvent, Error> {
        // Unless told how it was collected, say how it was recorded: by a person at the
        // command line, or by a system over the API.
        if new.method.is_none() {
            new.method = Some(match actor.channel {
                crate::Channel::Cli => "cli".into(),
                crate::Channel::Http(_) => "api".into(),
            });
        }
        self.audited(actor, "update.consent", |trail| {
            trail.subject(subject);
            trail.purpose = Some(new.purpose.clone());
            if check {
                self.require(actor, "consent", Action::Write)?;
            }
            if !self.vault.exists(subject)? {
                return Err(if self.vault.is_erased(subject)? {
                    Error::Erased(*subject)
                } else {
                    Error::NotFound(*subject)
                });
            }
            // The ledger's next number is read and written with no other writer between
            // (another request, or another server on the same database).
            self.commit_audited(actor, "update.consent", trail, |audit| {
                let _one = self.vault.serialise()?;
                let mut batch = vault::Batch::new();
                let event = self
                    .ledger
                    .prepare(
                        &self.purposes(),
                        subject,
                        &new,
                        &actor.principal.id.to_string(),
                        &mut batch,
                    )
                    .map_err(consent_error)?;
                self.stage_consent_notifications(
                    &mut batch,
                    subject,
                    event.event.as_str(),
                    &new.purpose,
                )?;
                batch.extend(audit);
                self.vault.apply_durably(batch)?;
                Ok(event)
            })
        })
    }

    /// Records an opt-out of sale/sharing from a Global Privacy Control signal, unless the
    /// subject is already opted out.
    pub fn record_gpc(&self, actor: &Actor, subject: &SubjectId) -> Result<(), Error> {
        // Only a caller who may read the subject relays its signal. Anyone else changes
        // nothing and learns nothing here: the read that follows refuses them (audited), and
        // says 404 or 410 only to those who may read subjects.
        if !self.allows(
            actor.principal.role,
            domain::AccessGroup::Identity.object(),
            Action::Read,
        ) || !self.vault.exists(subject)?
        {
            return Ok(());
        }
        let purposes = self.purposes();
        let Ok(purpose) = purposes.get("data-sharing") else {
            return Ok(());
        };
        let history = self.ledger.history(subject).map_err(consent_error)?;
        let d = decide(purpose, &history, false, &now(), &self.marketing());
        if d.reason == "consent_withdrawn"
            || (d.reason == "no_consent" && history.iter().any(|e| e.collection_method == "gpc"))
        {
            return Ok(());
        }
        let new = NewConsent {
            purpose: "data-sharing".into(),
            event: "withdrawn".into(),
            method: Some("gpc".into()),
            source: "sec-gpc-header".into(),
            ..Default::default()
        };
        self.record_consent_as(actor, subject, new, false)
            .map(|_| ())
    }

    /// Records an objection to direct marketing for a subject whose contact points belong to
    /// someone erased at their request (the suppression list).
    /// Stages, into `batch` (the same atomic write that creates the subjects), an objection
    /// to direct marketing for each new subject whose email or phone `listed` says is on the
    /// suppression list: people erased at their request are not re-added to marketing.
    /// `seqs` holds each subject's next consent-event number (0 when absent) and is advanced.
    pub(crate) fn stage_suppression<'a>(
        &self,
        news: impl IntoIterator<Item = (&'a SubjectId, &'a [(domain::FieldId, domain::Value)])>,
        listed: &dyn Fn(domain::IndexKind, &str) -> Result<bool, Error>,
        seqs: &mut std::collections::HashMap<SubjectId, u64>,
        batch: &mut vault::Batch,
    ) -> Result<(), Error> {
        let purposes = self.purposes();
        let Some(p) = purposes.all().iter().find(|p| p.marketing && p.opt_out) else {
            return Ok(());
        };
        for (id, fields) in news {
            let mut suppressed = false;
            for (kind, term) in self.contact_terms(fields) {
                suppressed = suppressed || listed(kind, term)?;
            }
            if !suppressed {
                continue;
            }
            let seq = seqs.get(id).copied().unwrap_or(0);
            seqs.insert(*id, seq + 1);
            let new = NewConsent {
                purpose: p.name.clone(),
                event: "objected".into(),
                method: Some("system".into()),
                source: "suppression-list".into(),
                ..Default::default()
            };
            self.ledger
                .prepare_seq(&self.purposes(), id, &new, "system", seq, batch)
                .map_err(consent_error)?;
        }
        Ok(())
    }

    /// A subject's whole ledger.
    pub fn consent_history(
        &self,
        actor: &Actor,
        subject: &SubjectId,
    ) -> Result<Vec<ConsentEvent>, Error> {
        self.audited(actor, "read.consent", |trail| {
            trail.subject(subject);
            self.require(actor, "consent", Action::Read)?;
            self.ledger.history(subject).map_err(consent_error)
        })
    }

    /// The decision of every purpose for a subject at a time (now by default).
    pub fn consent_state(
        &self,
        actor: &Actor,
        subject: &SubjectId,
        at: Option<&str>,
    ) -> Result<ConsentState, Error> {
        self.audited(actor, "read.consent", |trail| {
            trail.subject(subject);
            self.require(actor, "consent", Action::Read)?;
            let at = at_or_now(at)?;
            let erased = self.vault.is_erased(subject)?;
            if !erased && !self.vault.exists(subject)? {
                return Err(Error::NotFound(*subject));
            }
            let history = self.ledger.history(subject).map_err(consent_error)?;
            let purposes = self
                .purposes()
                .all()
                .iter()
                .map(|p| {
                    (
                        p.name.clone(),
                        decide(p, &history, erased, &at, &self.marketing()),
                    )
                })
                .collect();
            Ok(ConsentState {
                subject: *subject,
                at,
                purposes,
            })
        })
    }

    /// Consents in force now that expire at or after `from` and before `to` (dates or RFC
    /// 3339 times), soonest first, at most `limit`: each is checked against the ledger, so a
    /// consent already withdrawn or renewed is not listed.
    pub fn consents_expiring(
        &self,
        actor: &Actor,
        from: &str,
        to: &str,
        limit: usize,
    ) -> Result<Vec<ExpiringConsent>, Error> {
        self.audited(actor, "read.consent", |trail| {
            self.require(actor, "consent", Action::Read)?;
            let (Some(from), Some(to)) =
                (consent::normalise_time(from), consent::normalise_time(to))
            else {
                return Err(Error::BadRequest(
                    "from and to are dates (YYYY-MM-DD) or RFC 3339 times".into(),
                ));
            };
            let mut out: Vec<ExpiringConsent> = Vec::new();
            // Read more hints than wanted: some are superseded.
            for (subject, seq, expires) in self
                .ledger
                .expiring(&from, &to, limit.saturating_mul(4).max(64))
                .map_err(consent_error)?
            {
                if out.len() >= limit {
                    break;
                }
                let history = self.ledger.history(&subject).map_err(consent_error)?;
                let Some(event) = history.iter().find(|e| e.seq == seq) else {
                    continue;
                };
                let Ok(p) = self.purpose(&event.purpose) else {
                    continue;
                };
                if out
                    .iter()
                    .any(|x| x.subject == subject && x.purpose == p.name)
                {
                    continue;
                }
                let decision = decide(
                    &p,
                    &history,
                    self.vault.is_erased(&subject)?,
                    &now(),
                    &self.marketing(),
                );
                let current = decision.allowed
                    && decision
                        .deciding_event
                        .as_ref()
                        .is_some_and(|d| d.seq == seq);
                if current {
                    trail.subject(subject);
                    out.push(ExpiringConsent {
                        subject,
                        purpose: p.name.clone(),
                        expires,
                    });
                }
            }
            Ok(out)
        })
    }

    /// Why `purpose` may or may not process `subject`: the decision and the deciding event.
    pub fn consent_explain(
        &self,
        actor: &Actor,
        subject: &SubjectId,
        purpose: &str,
        at: Option<&str>,
    ) -> Result<Explanation, Error> {
        self.audited(actor, "read.consent", |trail| {
            trail.subject(subject);
            trail.purpose = Some(purpose.to_string());
            self.require(actor, "consent", Action::Read)?;
            let p = self.purpose(purpose)?;
            let at = at_or_now(at)?;
            let erased = self.vault.is_erased(subject)?;
            if !erased && !self.vault.exists(subject)? {
                return Err(Error::NotFound(*subject));
            }
            let history = self.ledger.history(subject).map_err(consent_error)?;
            Ok(Explanation {
                purpose: p.name.clone(),
                basis: p.basis,
                decision: decide(&p, &history, erased, &at, &self.marketing()),
                history,
            })
        })
    }

    /// Every subject the purpose may process at `at` (now by default), with the purpose's
    /// fields only (and only those the caller's role may read), passed to `sink` one by one.
    /// One audit event records the purpose, the fields and the number of subjects.
    pub fn segment(
        &self,
        actor: &Actor,
        purpose: &str,
        at: Option<&str>,
        sink: &mut dyn FnMut(SegmentRow) -> Result<(), Error>,
    ) -> Result<u64, Error> {
        self.segment_for(actor, purpose, at, None, sink)
    }

    /// A segment, to a registered recipient when `recipient` names one: only if the register
    /// allows it the purpose, with only the field groups it allows, each row carrying the
    /// recipient's reference for the subject; what went to it is recorded per subject (the
    /// rows handed to `sink`, also when the export stops early) in the batch of the audit
    /// event.
    pub fn segment_for(
        &self,
        actor: &Actor,
        purpose: &str,
        at: Option<&str>,
        recipient: Option<&str>,
        sink: &mut dyn FnMut(SegmentRow) -> Result<(), Error>,
    ) -> Result<u64, Error> {
        self.audited(actor, "export.segment", |trail| {
            trail.purpose = Some(purpose.to_string());
            self.require(actor, "exports", Action::Export)?;
            let p = self.purpose(purpose)?;
            let at = at_or_now(at)?;
            let allowed_groups = match recipient {
                Some(r) => {
                    trail.note = Some(format!("to {r}"));
                    Some(self.export_allowed(r, purpose)?)
                }
                None => None,
            };
            let role = actor.principal.role;
            let defs: Vec<&domain::FieldDef> = p
                .fields
                .iter()
                .filter_map(|name| self.schema.field(RecordKind::Subject, name))
                .filter(|d| self.allows(role, d.group.object(), Action::Read))
                .filter(|d| match &allowed_groups {
                    Some(gs) if !gs.is_empty() => gs
                        .iter()
                        .any(|g| g == crate::recipients::group_name(d.group)),
                    _ => true,
                })
                .collect();
            let fields: Vec<FieldId> = defs.iter().map(|d| d.id).collect();
            let mut groups: Vec<String> = defs
                .iter()
                .map(|d| crate::recipients::group_name(d.group).to_string())
                .collect();
            groups.sort();
            groups.dedup();
            trail.fields(fields.iter().map(|f| self.field_name_of(*f)));
            let mut sent: Vec<SubjectId> = Vec::new();
            let result = self.segment_rows(&p, &at, &fields, recipient, &mut |row| {
                let id = row.id;
                sink(row)?;
                if recipient.is_some() {
                    sent.push(id);
                }
                Ok(())
            });
            let count = result.as_ref().map(|n| *n).unwrap_or(sent.len() as u64);
            trail.count = Some(count);
            if let Some(r) = recipient {
                // What went out is recorded whether or not the export ran to its end.
                let mut batch = vault::Batch::new();
                self.stage_disclosures(r, purpose, &groups, &sent, &mut batch)?;
                if result.is_err() {
                    self.vault.apply_durably(batch)?;
                } else {
                    self.commit_audited(actor, "export.segment", trail, |audit| {
                        batch.extend(audit);
                        self.vault.apply_durably(batch)?;
                        Ok(())
                    })?;
                }
            }
            result
        })
    }

    fn segment_rows(
        &self,
        p: &consent::Purpose,
        at: &str,
        fields: &[FieldId],
        recipient: Option<&str>,
        sink: &mut dyn FnMut(SegmentRow) -> Result<(), Error>,
    ) -> Result<u64, Error> {
        let marketing = self.marketing();
        let mut ledger = self.ledger.scan().peekable();
        let mut after: Option<SubjectId> = None;
        let mut count = 0u64;
        loop {
            let page = self.vault.list_subjects(after.as_ref(), 1000)?;
            for id in &page {
                // Merge: the ledger is in subject-id order, like the subjects.
                while let Some(Ok((s, _))) = ledger.peek() {
                    if s >= id {
                        break;
                    }
                    ledger.next();
                }
                let events: Vec<consent::GateEvent> = match ledger.peek() {
                    Some(Ok((s, ev))) if s == id => ev.clone(),
                    Some(Err(_)) => {
                        return Err(ledger
                            .next()
                            .and_then(|r| r.err())
                            .map(consent_error)
                            .unwrap_or_else(|| Error::BadRequest("ledger".into())))
                    }
                    _ => Vec::new(),
                };
                if !consent::verdict(p, &events, false, at, &marketing).0 {
                    continue;
                }
                let record = self.vault.read_subject(id, &|f| fields.contains(&f))?;
                let row = SegmentRow {
                    id: *id,
                    reference: recipient.map(|r| self.recipient_ref(r, id)),
                    fields: record
                        .fields
                        .iter()
                        .map(|(f, v)| (self.field_name_of(*f), v.to_json()))
                        .collect(),
                };
                sink(row)?;
                count += 1;
            }
            match page.last() {
                Some(last) if page.len() == 1000 => after = Some(*last),
                _ => break,
            }
        }
        Ok(count)
    }

    fn field_name_of(&self, f: FieldId) -> String {
        self.schema
            .field_by_id(RecordKind::Subject, f)
            .map(|d| d.name.clone())
            .unwrap_or_else(|| format!("field_{}", f.0))
    }
}
