//! Erasure with legal holds, erasure certificates, and the retention sweep.

use domain::{FieldId, IndexKind, RecordKind, SubjectId, Value};
use serde::{Deserialize, Serialize};
use time::Date;
use vault::{keyspaces as ks, HoldRequest};

use crate::error::Error;
use crate::policies::PolicyFiles;
use crate::{Action, Actor, Hub};

/// One hold rule from retention.toml.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct HoldRule {
    name: String,
    reason: String,
    applies_when: String,
    fields: Vec<String>,
    gift_when: String,
    gift_fields: Vec<String>,
    years_after_period_end: i32,
    accounting_year_end: String,
}

#[derive(Deserialize)]
struct RetentionFile {
    #[serde(default, rename = "hold")]
    holds: Vec<HoldRule>,
}

/// Parses the hold rules of retention.toml, checking their fields against the schema.
pub(crate) fn hold_rules(
    files: &PolicyFiles,
    schema: &domain::Schema,
) -> Result<Vec<HoldRule>, Error> {
    let file: RetentionFile = toml::from_str(files.text_of("retention.toml"))
        .map_err(|e| Error::Policy(format!("retention.toml: {e}")))?;
    for h in &file.holds {
        let check = |kind, name: &str| {
            schema.field(kind, name).map(|_| ()).ok_or_else(|| {
                Error::Policy(format!(
                    "retention.toml: hold \"{}\" names the unknown field \"{name}\"",
                    h.name
                ))
            })
        };
        check(RecordKind::Subject, &h.applies_when)?;
        check(RecordKind::Gift, &h.gift_when)?;
        for f in &h.fields {
            check(RecordKind::Subject, f)?;
        }
        for f in &h.gift_fields {
            check(RecordKind::Gift, f)?;
        }
        period_end(&h.accounting_year_end, 2000).ok_or_else(|| {
            Error::Policy(format!(
                "retention.toml: hold \"{}\": accounting_year_end is MM-DD",
                h.name
            ))
        })?;
    }
    Ok(file.holds)
}

fn period_end(mm_dd: &str, year: i32) -> Option<Date> {
    let (m, d) = mm_dd.split_once('-')?;
    Date::from_calendar_date(
        year,
        time::Month::try_from(m.parse::<u8>().ok()?).ok()?,
        d.parse().ok()?,
    )
    .ok()
}

/// The end of the accounting period that contains `d`, plus `years`.
fn hold_until(d: Date, year_end: &str, years: i32) -> Date {
    let end_this = period_end(year_end, d.year()).expect("validated");
    let end = if d <= end_this {
        end_this
    } else {
        period_end(year_end, d.year() + 1).expect("validated")
    };
    domain::deadline::add_months(end, (years * 12) as u32)
}

fn day(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// A recipient a subject's data was disclosed to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Recipient {
    /// The organisation (a name, not a person).
    pub recipient: String,
    /// Why it received the data.
    pub purpose: Option<String>,
    /// Since when (YYYY-MM-DD).
    pub since: String,
    /// The field groups that went (exports to a registered recipient).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The last disclosure (YYYY-MM-DD), for exports to a registered recipient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
}

/// Records today as the subject's last activity (in the caller's batch).
pub(crate) fn touch(batch: &mut vault::Batch, id: &SubjectId) {
    let day = (time::OffsetDateTime::now_utc().date()
        - Date::from_calendar_date(1970, time::Month::January, 1).expect("epoch"))
    .whole_days() as u32;
    batch.put(
        ks::ACTIVITY,
        id.as_bytes().to_vec(),
        day.to_le_bytes().to_vec(),
    );
}

/// A subject's last activity: the day in the activity index when it was changed or given to
/// since its creation, else the day it was created (from its id). Creating a subject writes
/// no activity entry: a bulk import of a million people saves a million writes.
fn last_activity_day(id: &SubjectId, touched: Option<u32>) -> u32 {
    touched.unwrap_or((id.unix_ms() / 86_400_000) as u32)
}

fn epoch_day(d: Date) -> u32 {
    (d - Date::from_calendar_date(1970, time::Month::January, 1).expect("epoch"))
        .whole_days()
        .max(0) as u32
}

#[derive(Deserialize)]
struct ClassRule {
    name: String,
    #[serde(default)]
    years: i32,
    /// `review` (list the lapsed subjects) or `erase` (erase them); absent: not swept.
    #[serde(default)]
    lapsed: Option<String>,
}

#[derive(Deserialize)]
struct ClassFile {
    #[serde(default, rename = "class")]
    classes: Vec<ClassRule>,
}

/// The `years` of a retention class, if the class is there.
pub(crate) fn class_years(files: &PolicyFiles, name: &str) -> Result<Option<i32>, Error> {
    let file: ClassFile = toml::from_str(files.text_of("retention.toml"))
        .map_err(|e| Error::Policy(format!("retention.toml: {e}")))?;
    Ok(file
        .classes
        .into_iter()
        .find(|c| c.name == name && c.years > 0)
        .map(|c| c.years))
}

/// The `supporter` class's rule for lapsed supporters: (years, erase?).
pub(crate) fn lapsed_rule(files: &PolicyFiles) -> Result<Option<(i32, bool)>, Error> {
    let file: ClassFile = toml::from_str(files.text_of("retention.toml"))
        .map_err(|e| Error::Policy(format!("retention.toml: {e}")))?;
    for c in file.classes {
        if c.name == "supporter" {
            return match c.lapsed.as_deref() {
                None => Ok(None),
                Some("review") => Ok(Some((c.years, false))),
                Some("erase") => Ok(Some((c.years, true))),
                Some(other) => Err(Error::Policy(format!(
                    "retention.toml: class supporter: lapsed = \"{other}\" is review or erase"
                ))),
            };
        }
    }
    Ok(None)
}

/// What an erasure did, for the DPO.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErasureCertificate {
    /// The subject.
    pub subject: SubjectId,
    /// When (UTC).
    pub erased_at: String,
    /// Names of the fields that were erased (their data key was destroyed).
    pub erased_fields: Vec<String>,
    /// Number of gifts erased.
    pub erased_gifts: usize,
    /// What a legal hold keeps, why, and until when.
    pub held: Option<vault::HoldInfo>,
    /// Recipients the data was disclosed to, to be told of the erasure (Art. 19).
    pub notify: Vec<Recipient>,
    /// In words.
    pub statement: String,
    /// Set when the subject had been erased before: this is the certificate kept then.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub already_erased: bool,
}

impl ErasureCertificate {
    /// The certificate as a letter-like text a DPO can file or send.
    pub fn text(&self) -> String {
        let mut s = String::from("ERASURE CERTIFICATE\n\n");
        if self.already_erased {
            s.push_str(
                "(This subject had already been erased; this is the certificate kept then.)\n\n",
            );
        }
        s.push_str(&format!("Subject:      {}\n", self.subject));
        s.push_str(&format!("Erased at:    {} (UTC)\n", self.erased_at));
        s.push_str(&format!(
            "Erased:       {} field(s){}; {} gift(s)\n",
            self.erased_fields.len(),
            if self.erased_fields.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.erased_fields.join(", "))
            },
            self.erased_gifts
        ));
        match &self.held {
            Some(h) => s.push_str(&format!(
                "Legal hold:   {} keeps {} field(s) and {} gift(s) until {}, because: {}\n",
                h.hold,
                h.fields.len(),
                h.gifts,
                h.until,
                h.reason
            )),
            None => s.push_str("Legal hold:   none; nothing is kept\n"),
        }
        if self.notify.is_empty() {
            s.push_str(
                "Recipients:   none recorded for this subject; nobody to notify under Art. 19\n",
            );
        } else {
            s.push_str("Recipients to notify of the erasure (Art. 19):\n");
            for r in &self.notify {
                s.push_str(&format!(
                    "  - {}{} (since {})\n",
                    r.recipient,
                    r.purpose
                        .as_deref()
                        .map(|p| format!(", for {p}"))
                        .unwrap_or_default(),
                    r.since
                ));
            }
        }
        s.push('\n');
        s.push_str(&self.statement);
        s
    }
}

/// What a retention run did (or would do, dry).
#[derive(Debug, Clone, Serialize)]
pub struct RetentionReport {
    /// True when nothing was changed.
    pub dry_run: bool,
    /// The day the run judged by.
    pub as_of: String,
    /// Subjects whose held data reached its date and was shredded.
    pub holds_ended: Vec<SubjectId>,
    /// Closed request records older than 24 months, purged.
    pub requests_purged: u64,
    /// Subjects checked against the lapsed-supporter rule.
    pub subjects_checked: u64,
    /// Supporters with no activity for the class's years: listed for review (or erased,
    /// when retention.toml says `lapsed = "erase"`).
    pub lapsed: u64,
    /// Up to 100 of them.
    pub lapsed_sample: Vec<SubjectId>,
    /// Lapsed subjects erased by this run.
    pub lapsed_erased: u64,
    /// Interactions older than their class's years, removed (each participant's copy).
    pub interactions_removed: u64,
    /// Art. 19 notifications delivered or done more than 24 months ago, removed.
    pub notifications_purged: u64,
}

impl Hub {
    /// Erases a subject; where a legal hold applies, keeps its minimum until the computed
    /// date. Returns the certificate.
    pub(crate) fn erase_with_rules(
        &self,
        id: &SubjectId,
        extra: vault::Batch,
    ) -> Result<ErasureCertificate, Error> {
        // Every recipient of its data is owed a notice (Art. 19): in the erasure's own batch.
        let mut extra = extra;
        self.stage_notifications(&mut extra, id, "subject.erased", None, None)?;
        let record = match self.vault.read_subject(id, &|_| true) {
            Ok(r) => r,
            // Its data key is already gone (a record brought back from an old copy of the
            // store): nothing is readable to hold; finish the erasure.
            Err(vault::Error::Erased(_)) => {
                self.vault.erase_subject_with(id, extra)?;
                return Ok(ErasureCertificate {
                    subject: *id,
                    erased_at: consent::now(),
                    erased_fields: Vec::new(),
                    erased_gifts: 0,
                    held: None,
                    notify: Vec::new(),
                    statement: format!("Subject {id} was already erased (its data key was destroyed); its leftover records were removed."),
                    already_erased: false,
                });
            }
            Err(e) => return Err(e.into()),
        };
        let gifts = self.vault.list_gifts(id)?;
        let name = |f: FieldId| {
            self.schema
                .field_by_id(RecordKind::Subject, f)
                .map(|d| d.name.clone())
                .unwrap_or_default()
        };
        let truthy = |fields: &[(FieldId, Value)], fid: Option<FieldId>| {
            fields
                .iter()
                .any(|(f, v)| Some(*f) == fid && *v == Value::Bool(true))
        };
        let rule = self.holds.iter().find(|h| {
            truthy(
                &record.fields,
                self.schema
                    .field(RecordKind::Subject, &h.applies_when)
                    .map(|d| d.id),
            )
        });
        let erased_fields: Vec<String> = record.fields.iter().map(|(f, _)| name(*f)).collect();
        let held = match rule {
            None => {
                self.vault.erase_subject_with(id, extra)?;
                None
            }
            Some(h) => {
                let gift_when = self
                    .schema
                    .field(RecordKind::Gift, &h.gift_when)
                    .map(|d| d.id);
                let date_field = self.schema.field(RecordKind::Gift, "date").map(|d| d.id);
                let last_gift = gifts
                    .iter()
                    .filter(|g| truthy(&g.fields, gift_when))
                    .filter_map(|g| {
                        g.fields
                            .iter()
                            .find(|(f, _)| Some(*f) == date_field)
                            .and_then(|(_, v)| v.as_date())
                    })
                    .max();
                let declared = record
                    .fields
                    .iter()
                    .find(|(f, _)| {
                        Some(*f)
                            == self
                                .schema
                                .field(RecordKind::Subject, "gift_aid_declaration_date")
                                .map(|d| d.id)
                    })
                    .and_then(|(_, v)| v.as_date());
                let basis = last_gift
                    .or(declared)
                    .unwrap_or_else(|| time::OffsetDateTime::now_utc().date());
                let until = hold_until(basis, &h.accounting_year_end, h.years_after_period_end);
                let ids = |names: &[String], kind| {
                    names
                        .iter()
                        .filter_map(|n| self.schema.field(kind, n).map(|d| d.id))
                        .collect::<Vec<_>>()
                };
                let request = HoldRequest {
                    hold: h.name.clone(),
                    reason: h.reason.clone(),
                    until: day(until),
                    fields: ids(&h.fields, RecordKind::Subject),
                    gift_fields: ids(&h.gift_fields, RecordKind::Gift),
                    field_names: h
                        .fields
                        .iter()
                        .filter(|n| erased_fields.contains(n))
                        .cloned()
                        .collect(),
                };
                let keep = |g: &[(FieldId, Value)]| truthy(g, gift_when);
                Some(
                    self.vault
                        .erase_subject_with_hold(id, &request, &keep, extra)?,
                )
            }
        };
        let statement = match &held {
            None => format!(
                "Subject {id} was erased: its data key was destroyed, so none of its {} fields and {} gifts can be decrypted from any copy.",
                erased_fields.len(),
                gifts.len()
            ),
            Some(h) => format!(
                "Subject {id} was erased: its data key was destroyed. A legal hold ({}) keeps {} fields and {} gifts, re-encrypted under a separate key, until {}, because: {}. The retention sweep destroys them after that date.",
                h.hold,
                h.fields.len(),
                h.gifts,
                h.until,
                h.reason
            ),
        };
        Ok(ErasureCertificate {
            subject: *id,
            erased_at: consent::now(),
            erased_fields,
            erased_gifts: gifts.len(),
            held,
            notify: self.recipients_of(id)?,
            statement,
            already_erased: false,
        })
    }

    /// Erases many subjects at once (one sync per file for all of them); subjects a legal hold
    /// applies to are erased one by one with their hold. One audit event lists them all.
    pub fn erase_subjects(
        &self,
        actor: &Actor,
        ids: &[SubjectId],
    ) -> Result<Vec<ErasureCertificate>, Error> {
        self.audited(actor, "erase.subject", |trail| {
            for id in ids {
                trail.subject(id);
            }
            trail.count = Some(ids.len() as u64);
            self.require(actor, "subject", Action::Erase)?;
            let mut plain = Vec::new();
            let mut certificates = Vec::new();
            let mut held = Vec::new();
            for id in ids {
                let record = self.vault.read_subject(id, &|_| true)?;
                let applies = self.holds.iter().any(|h| {
                    let fid = self.schema.field(RecordKind::Subject, &h.applies_when).map(|d| d.id);
                    record.fields.iter().any(|(f, v)| Some(*f) == fid && *v == Value::Bool(true))
                });
                if applies {
                    held.push(*id);
                    continue;
                }
                let names: Vec<String> = record
                    .fields
                    .iter()
                    .filter_map(|(f, _)| self.schema.field_by_id(RecordKind::Subject, *f).map(|d| d.name.clone()))
                    .collect();
                let n_gifts = self.vault.list_gifts(id)?.len();
                certificates.push(ErasureCertificate {
                    subject: *id,
                    erased_at: consent::now(),
                    statement: format!(
                        "Subject {id} was erased: its data key was destroyed, so none of its {} fields and {n_gifts} gifts can be decrypted from any copy.",
                        names.len()
                    ),
                    erased_fields: names,
                    erased_gifts: n_gifts,
                    held: None,
                    notify: self.recipients_of(id)?,
                    already_erased: false,
                });
                plain.push(*id);
            }
            self.commit_audited(actor, "erase.subject", trail, |batch| {
                let mut batch = batch;
                // Held subjects first, each with its hold, in their own batches; the audit
                // event goes with the batch of the others.
                for id in &held {
                    certificates.push(self.erase_with_rules(id, vault::Batch::new())?);
                }
                for id in &plain {
                    self.stage_notifications(&mut batch, id, "subject.erased", None, None)?;
                }
                if plain.is_empty() {
                    self.vault.apply_durably(std::mem::take(&mut batch))?;
                } else {
                    self.vault.erase_subjects_with(&plain, batch)?;
                }
                Ok(())
            })?;
            for c in &certificates {
                self.keep_certificate(c)?;
            }
            Ok(certificates)
        })
    }

    /// Keeps an erasure certificate so it can be printed again (`subject certificate ID`).
    pub(crate) fn keep_certificate(&self, c: &ErasureCertificate) -> Result<(), Error> {
        let mut batch = vault::Batch::new();
        batch.put(
            ks::CERTIFICATES,
            c.subject.as_bytes().to_vec(),
            serde_json::to_vec(c).expect("json"),
        );
        self.vault.apply_durably(batch)?;
        Ok(())
    }

    pub(crate) fn kept_certificate(
        &self,
        id: &SubjectId,
    ) -> Result<Option<ErasureCertificate>, Error> {
        Ok(self
            .vault
            .store()
            .get(ks::CERTIFICATES, id.as_bytes())
            .map_err(vault::Error::from)?
            .and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// The erasure certificate kept for an erased subject (a DPO's document).
    pub fn erasure_certificate(
        &self,
        actor: &Actor,
        id: &SubjectId,
    ) -> Result<ErasureCertificate, Error> {
        self.audited(actor, "read.certificate", |trail| {
            trail.subject(id);
            self.require(actor, "subject", Action::Erase)?;
            match self.kept_certificate(id)? {
                Some(c) => Ok(c),
                None if self.vault.is_erased(id)? => Err(Error::BadRequest(format!(
                    "subject {id} was erased before Steward kept certificates: none is kept"
                ))),
                None => Err(Error::NotFound(*id)),
            }
        })
    }

    pub(crate) fn recipients_of(&self, id: &SubjectId) -> Result<Vec<Recipient>, Error> {
        Ok(self
            .vault
            .store()
            .get(ks::RECIPIENTS, id.as_bytes())
            .map_err(vault::Error::from)?
            .and_then(|v| serde_json::from_slice(&v).ok())
            .unwrap_or_default())
    }

    /// Records that a subject's data was disclosed to a recipient (an organisation), so the
    /// DPO can tell it of rectification, erasure or restriction (Art. 19).
    pub fn add_recipient(
        &self,
        actor: &Actor,
        id: &SubjectId,
        recipient: &str,
        purpose: Option<&str>,
    ) -> Result<Vec<Recipient>, Error> {
        self.audited(actor, "update.recipients", |trail| {
            trail.subject(id);
            self.require(actor, "exports", Action::Export)?;
            let name = recipient.trim();
            if name.is_empty() || name.len() > 200 || name.contains('@') || name.contains('\n') {
                return Err(Error::BadRequest(
                    "a recipient is an organisation's name, one line, without email addresses"
                        .into(),
                ));
            }
            if !self.vault.exists(id)? {
                return Err(Error::NotFound(*id));
            }
            let mut list = self.recipients_of(id)?;
            if !list
                .iter()
                .any(|r| r.recipient == name && r.purpose.as_deref() == purpose)
            {
                list.push(Recipient {
                    recipient: name.to_string(),
                    purpose: purpose.map(str::to_string),
                    since: consent::now()[..10].to_string(),
                    groups: Vec::new(),
                    last: None,
                });
            }
            let bytes = serde_json::to_vec(&list).expect("json");
            self.commit_audited(actor, "update.recipients", trail, |mut batch| {
                batch.put(ks::RECIPIENTS, id.as_bytes().to_vec(), bytes);
                self.vault.apply_durably(batch)?;
                Ok(())
            })?;
            Ok(list)
        })
    }

    /// The recipients recorded for a subject.
    pub fn recipients(&self, actor: &Actor, id: &SubjectId) -> Result<Vec<Recipient>, Error> {
        self.audited(actor, "read.recipients", |trail| {
            trail.subject(id);
            self.require(actor, "requests", Action::Read)
                .or_else(|_| self.require(actor, "exports", Action::Export))?;
            self.recipients_of(id)
        })
    }

    /// Legal holds that end on or before `until` (YYYY-MM-DD), soonest first: what the next
    /// retention sweeps will shred (DPO, admin). Hold records are few: this reads them all.
    pub fn holds_due(
        &self,
        actor: &Actor,
        until: &str,
    ) -> Result<Vec<(SubjectId, vault::HoldInfo)>, Error> {
        self.audited(actor, "read.hold", |trail| {
            self.require(actor, "subject", Action::Erase)?;
            let mut due: Vec<_> = self
                .vault
                .holds()?
                .into_iter()
                .filter(|(_, info)| info.until.as_str() <= until)
                .collect();
            due.sort_by(|a, b| a.1.until.cmp(&b.1.until));
            for (id, _) in &due {
                trail.subject(id);
            }
            Ok(due)
        })
    }

    /// The data a legal hold keeps for an erased subject (DPO, admin).
    pub fn held_data(
        &self,
        actor: &Actor,
        id: &SubjectId,
    ) -> Result<Option<(vault::HoldInfo, serde_json::Value)>, Error> {
        self.audited(actor, "read.hold", |trail| {
            trail.subject(id);
            self.require(actor, "subject", Action::Erase)?;
            let Some(held) = self.vault.read_hold(id)? else {
                // Erased with nothing held is an answer, not a missing subject.
                return if self.vault.is_erased(id)? {
                    Ok(None)
                } else if self.vault.exists(id)? {
                    Err(Error::BadRequest(format!(
                        "subject {id} is not erased: a legal hold only keeps what an erasure leaves"
                    )))
                } else {
                    Err(Error::NotFound(*id))
                };
            };
            let fields: serde_json::Map<String, serde_json::Value> = held
                .fields
                .iter()
                .filter_map(|(f, v)| {
                    self.schema
                        .field_by_id(RecordKind::Subject, *f)
                        .map(|d| (d.name.clone(), v.to_json()))
                })
                .collect();
            trail.fields(fields.keys());
            let gifts: Vec<serde_json::Value> = held
                .gifts
                .iter()
                .map(|(_, g)| {
                    serde_json::Value::Object(
                        g.iter()
                            .filter_map(|(f, v)| {
                                self.schema
                                    .field_by_id(RecordKind::Gift, *f)
                                    .map(|d| (d.name.clone(), v.to_json()))
                            })
                            .collect(),
                    )
                })
                .collect();
            Ok(Some((
                held.info,
                serde_json::json!({"fields": fields, "gifts": gifts}),
            )))
        })
    }

    /// The retention sweep: ends legal holds past their date (shredding their key) and purges
    /// request records closed more than 24 months ago. `today` defaults to the current date.
    pub fn retention_run(
        &self,
        actor: &Actor,
        dry_run: bool,
        today: Option<&str>,
    ) -> Result<RetentionReport, Error> {
        self.audited(actor, "run.retention", |trail| {
            self.require(actor, "keys", Action::Admin)
                .or_else(|_| self.require(actor, "subject", Action::Erase))?;
            let today = match today {
                Some(t) => Date::parse(
                    t,
                    &time::macros::format_description!("[year]-[month]-[day]"),
                )
                .map_err(|_| Error::BadRequest("`now` must be a date as YYYY-MM-DD".into()))?,
                None => time::OffsetDateTime::now_utc().date(),
            };
            let as_of = day(today);
            let mut holds_ended = Vec::new();
            for (id, info) in self.vault.holds()? {
                if info.until.as_str() < as_of.as_str() {
                    if !dry_run {
                        self.vault.end_hold(&id)?;
                    }
                    holds_ended.push(id);
                }
            }
            let cutoff = day(domain::deadline::add_months(today, 0) - time::Duration::days(730));
            let mut purge = vault::Batch::new();
            let mut requests_purged = 0;
            for entry in self.vault.store().scan_prefix(ks::REQUESTS, &[]) {
                let (k, v) = entry.map_err(vault::Error::from)?;
                let Ok(r) = serde_json::from_slice::<crate::SubjectRequest>(&v) else {
                    continue;
                };
                let closed_at = r
                    .history
                    .last()
                    .filter(|s| s.state == "completed" || s.state == "refused")
                    .map(|s| s.at[..10].to_string());
                if closed_at.is_some_and(|c| c < cutoff) {
                    purge.delete(ks::REQUESTS, k);
                    requests_purged += 1;
                }
            }
            // Notifications delivered or done as long ago as closed requests go too.
            let notifications_purged = self.stage_notification_purge(&cutoff, &mut purge)?;
            if !dry_run && !purge.is_empty() {
                self.vault.apply_durably(purge)?;
            }
            // Lapsed supporters: one pass over the stored subjects' ids (an id carries its
            // creation time) beside the activity index (the last day of a change or a gift):
            // dates only, no decryption.
            let (mut subjects_checked, mut lapsed_ids) = (0u64, Vec::new());
            if let Some((years, _)) = self.lapsed {
                let years = years.max(0) as u32;
                let cutoff = epoch_day(today).saturating_sub(years * 365 + years / 4);
                let store = self.vault.store();
                let mut activity = store.scan_prefix(ks::ACTIVITY, &[]);
                let mut next_activity = activity.next().transpose().map_err(vault::Error::from)?;
                for entry in store.scan_prefix(ks::SUBJECTS, &[]) {
                    let (k, _) = entry.map_err(vault::Error::from)?;
                    let Some(id) = SubjectId::from_slice(&k) else {
                        continue;
                    };
                    // Entries of subjects no longer stored (erased, merged away) are passed by.
                    let mut touched = None;
                    while let Some((ak, av)) = &next_activity {
                        if ak.as_slice() > k.as_slice() {
                            break;
                        }
                        if ak == &k {
                            touched = av
                                .get(..4)
                                .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")));
                        }
                        next_activity = activity.next().transpose().map_err(vault::Error::from)?;
                    }
                    subjects_checked += 1;
                    if last_activity_day(&id, touched) < cutoff {
                        lapsed_ids.push(id);
                    }
                }
            }
            let lapsed = lapsed_ids.len() as u64;
            let mut lapsed_erased = 0;
            if !dry_run && self.lapsed.is_some_and(|(_, erase)| erase) {
                let present: Vec<SubjectId> = lapsed_ids
                    .iter()
                    .copied()
                    .filter(|id| self.vault.exists(id).unwrap_or(false))
                    .collect();
                for chunk in present.chunks(1000) {
                    lapsed_erased += self.erase_subjects(actor, chunk)?.len() as u64;
                }
            }
            // Interactions past their class's years: each copy's time is inside its
            // encryption, so this pass decrypts that one field per interaction.
            let mut interactions_removed = 0u64;
            if let (Some(years), Some(at)) = (
                self.interaction_years,
                self.schema
                    .field(domain::RecordKind::Interaction, "occurred_at")
                    .map(|d| d.id),
            ) {
                let cutoff = Date::from_calendar_date(
                    today.year() - years,
                    today.month(),
                    today.day().min(28),
                )
                .unwrap_or(today);
                let mut old: Vec<(SubjectId, Vec<domain::InteractionId>)> = Vec::new();
                self.vault
                    .scan_interactions(&|f| f == at, &mut |subject, items| {
                        let ids: Vec<domain::InteractionId> = items
                            .iter()
                            .filter(|i| {
                                i.fields
                                    .iter()
                                    .find(|(f, _)| *f == at)
                                    .and_then(|(_, v)| v.as_date())
                                    .is_some_and(|d| d < cutoff)
                            })
                            .map(|i| i.id)
                            .collect();
                        if !ids.is_empty() {
                            old.push((subject, ids));
                        }
                        Ok(())
                    })?;
                for (subject, ids) in old {
                    interactions_removed += ids.len() as u64;
                    if !dry_run {
                        self.vault
                            .delete_interactions(&subject, &ids, vault::Batch::new())?;
                    }
                }
            }
            for id in &holds_ended {
                trail.subject(id);
            }
            trail.count = Some(
                holds_ended.len() as u64
                    + requests_purged
                    + lapsed_erased
                    + interactions_removed
                    + notifications_purged,
            );
            lapsed_ids.truncate(100);
            Ok(RetentionReport {
                dry_run,
                as_of,
                holds_ended,
                requests_purged,
                subjects_checked,
                lapsed,
                lapsed_sample: lapsed_ids,
                lapsed_erased,
                interactions_removed,
                notifications_purged,
            })
        })
    }

    /// True when an erased person's email or phone is on the suppression list.
    pub fn is_suppressed(&self, kind: IndexKind, term: &str) -> Result<bool, Error> {
        Ok(self.vault.is_suppressed(kind, term)?)
    }
}
