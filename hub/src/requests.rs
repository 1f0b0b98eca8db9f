//! Subject-rights requests: the workflow, the legal clocks, and the access package.

use std::collections::BTreeMap;

use domain::deadline::{gdpr_due, us_state_due, Calendar};
use domain::{RecordKind, SubjectId};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};
use time::Date;
use vault::keyspaces as ks;

use crate::error::Error;
use crate::{Action, Actor, Hub};

/// What the subject asks for.
pub const REQUEST_TYPES: [&str; 7] = [
    "access",
    "erasure",
    "rectification",
    "restriction",
    "objection",
    "portability",
    "opt-out",
];
/// Under which law.
pub const JURISDICTIONS: [&str; 3] = ["gdpr", "uk-gdpr", "ccpa"];

/// One step of a request's history.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RequestStep {
    /// When (UTC).
    pub at: String,
    /// What was done: open, verify, start, extend, pause, resume, complete, refuse.
    pub action: String,
    /// The state it led to.
    pub state: String,
    /// Principal id of whoever did it.
    pub by: String,
    /// The reason given (extend, pause, refuse, an override): a short reference, not
    /// personal content.
    pub reason: Option<String>,
    /// What a fulfilment produced: each file's name and SHA-256.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub produced: Vec<String>,
}

/// A subject-rights request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SubjectRequest {
    /// Its id.
    pub id: SubjectId,
    /// The subject.
    pub subject: SubjectId,
    /// access, erasure, rectification, restriction, objection, portability, opt-out.
    #[serde(rename = "type")]
    pub kind: String,
    /// gdpr, uk-gdpr or ccpa.
    pub jurisdiction: String,
    /// Day of receipt.
    pub received: String,
    /// received, identity-verified, in-progress, extended, paused, completed, refused.
    pub state: String,
    /// The answer deadline.
    pub due: String,
    /// CCPA-style: confirm receipt by.
    pub acknowledge_by: Option<String>,
    /// Extended by the law's further period.
    pub extended: bool,
    /// Days the clock stood still (UK: awaiting identity or clarification).
    pub paused_days: u32,
    /// Since when the clock is stopped, while paused.
    pub paused_since: Option<String>,
    /// Every step.
    pub history: Vec<RequestStep>,
    /// The Art. 19 notifications owed for this subject since the request was received, per
    /// recipient: delivered, pending, failed, a task, or done by a person. Filled when the
    /// request is read, never stored with it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notifications: Vec<crate::Notification>,
}

fn today() -> Date {
    time::OffsetDateTime::now_utc().date()
}

fn parse_day(s: &str, what: &str) -> Result<Date, Error> {
    Date::parse(
        s.trim(),
        &time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map_err(|_| Error::BadRequest(format!("`{what}` must be a date as YYYY-MM-DD")))
}

fn day(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

fn reason_ref(reason: Option<&str>) -> Result<Option<String>, Error> {
    match reason.map(str::trim) {
        None | Some("") => Ok(None),
        Some(r) if r.len() <= 300 && !r.contains('@') && !r.contains('\n') => {
            Ok(Some(r.to_string()))
        }
        Some(_) => Err(Error::BadRequest(
            "a reason is one line of at most 300 characters, without email addresses".into(),
        )),
    }
}

/// What must happen before a request's data may be released (`None`: nothing).
fn fulfil_blocker(r: &SubjectRequest) -> Option<String> {
    let id = r.id;
    let verified = r.history.iter().any(|s| s.action == "verify");
    if matches!(r.state.as_str(), "completed" | "refused") {
        return Some(format!("it is closed ({})", r.state));
    }
    if !verified {
        return Some(format!(
            "the requester's identity has not been verified (it is {}); verify it, then start the request: `steward request update {id} --action verify`, then `--action start`",
            r.state
        ));
    }
    if !matches!(r.state.as_str(), "in-progress" | "extended") {
        return Some(format!(
            "the request is {}, not started; start it: `steward request update {id} --action start`",
            r.state
        ));
    }
    None
}

impl SubjectRequest {
    fn compute_due(&mut self, calendar: &Calendar) -> Result<(), Error> {
        let received = parse_day(&self.received, "received")?;
        if self.jurisdiction == "ccpa" {
            let (ack, due) = us_state_due(received, self.extended, self.paused_days, calendar);
            self.acknowledge_by = Some(day(ack));
            self.due = day(due);
        } else {
            self.due = day(gdpr_due(
                received,
                if self.extended { 2 } else { 0 },
                self.paused_days,
                calendar,
            ));
        }
        Ok(())
    }

    fn open_state(&self) -> bool {
        !matches!(self.state.as_str(), "completed" | "refused")
    }
}

#[derive(Deserialize)]
pub(crate) struct HolidayRule {
    calendar: String,
    #[serde(default)]
    extra: Vec<String>,
}

/// Per jurisdiction: (England and Wales bank holidays?, extra dates).
pub(crate) type HolidayRules = std::collections::HashMap<String, (bool, Vec<Date>)>;

/// Parses holidays.toml: one calendar per jurisdiction.
pub(crate) fn holiday_rules(files: &crate::PolicyFiles) -> Result<HolidayRules, Error> {
    let raw: std::collections::HashMap<String, HolidayRule> =
        toml::from_str(files.text_of("holidays.toml"))
            .map_err(|e| Error::Policy(format!("holidays.toml: {e}")))?;
    let mut out = HolidayRules::new();
    for (j, rule) in raw {
        let england_wales = match rule.calendar.as_str() {
            "england-wales" => true,
            "weekends" => false,
            other => {
                return Err(Error::Policy(format!(
                    "holidays.toml: [{j}] calendar \"{other}\" is england-wales or weekends"
                )))
            }
        };
        let extra = rule
            .extra
            .iter()
            .map(|d| {
                parse_day(d, "extra").map_err(|_| {
                    Error::Policy(format!(
                        "holidays.toml: [{j}] extra date {d} is not YYYY-MM-DD"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.insert(j, (england_wales, extra));
    }
    Ok(out)
}

impl Hub {
    fn calendar(&self, jurisdiction: &str) -> Calendar {
        let y = today().year();
        match self.holidays.get(jurisdiction) {
            Some((true, extra)) => Calendar::england_wales(y - 5..=y + 5, extra),
            Some((false, extra)) => Calendar::weekends_only(extra),
            // No calendar configured: weekends only for US state laws, and England and Wales
            // bank holidays (the UK default) otherwise.
            None if jurisdiction == "ccpa" => Calendar::weekends_only(&[]),
            None => Calendar::england_wales(y - 5..=y + 5, &[]),
        }
    }

    /// Opens a request and computes its deadline.
    pub fn open_request(
        &self,
        actor: &Actor,
        subject: &SubjectId,
        kind: &str,
        jurisdiction: &str,
        received: Option<&str>,
    ) -> Result<SubjectRequest, Error> {
        self.audited(actor, "open.request", |trail| {
            trail.subject(subject);
            self.require(actor, "requests", Action::Write)?;
            if !REQUEST_TYPES.contains(&kind) {
                return Err(Error::BadRequest(format!(
                    "`type` is one of: {}",
                    REQUEST_TYPES.join(", ")
                )));
            }
            if !JURISDICTIONS.contains(&jurisdiction) {
                return Err(Error::BadRequest(format!(
                    "`jurisdiction` is one of: {}",
                    JURISDICTIONS.join(", ")
                )));
            }
            if !self.vault.exists(subject)? {
                return Err(if self.vault.is_erased(subject)? {
                    Error::Erased(*subject)
                } else {
                    Error::NotFound(*subject)
                });
            }
            let received = match received {
                Some(r) => {
                    // Within this century: a date far out is a typing error, and its deadline
                    // would run past the end of the calendar. (Dates ahead of today are
                    // allowed: they check a deadline before a request arrives.)
                    let d = parse_day(r, "received")?;
                    if !(2000..=2099).contains(&d.year()) {
                        return Err(Error::BadRequest(
                            "`received` must be a day between 2000-01-01 and 2099-12-31".into(),
                        ));
                    }
                    day(d)
                }
                None => day(today()),
            };
            let id = self.vault.new_subject_ids(1)?[0];
            let mut r = SubjectRequest {
                id,
                subject: *subject,
                kind: kind.to_string(),
                jurisdiction: jurisdiction.to_string(),
                received,
                state: "received".into(),
                due: String::new(),
                acknowledge_by: None,
                extended: false,
                paused_days: 0,
                paused_since: None,
                notifications: Vec::new(),
                history: vec![RequestStep {
                    at: consent::now(),
                    action: "open".into(),
                    state: "received".into(),
                    by: actor.principal.id.to_string(),
                    reason: None,
                    produced: Vec::new(),
                }],
            };
            r.compute_due(&self.calendar(jurisdiction))?;
            self.store_request(actor, "open.request", trail, &r)?;
            Ok(r)
        })
    }

    /// Writes a request's record with the operation's audit event, in one batch.
    fn store_request(
        &self,
        actor: &Actor,
        action: &str,
        trail: &mut crate::trail::Trail,
        r: &SubjectRequest,
    ) -> Result<(), Error> {
        self.commit_audited(actor, action, trail, |mut batch| {
            batch.put(
                ks::REQUESTS,
                r.id.as_bytes().to_vec(),
                serde_json::to_vec(r).expect("json"),
            );
            self.vault.apply_durably(batch)?;
            Ok(())
        })
    }

    /// Refuses to release data for (or erase on) a request not yet verified and started,
    /// unless a principal with `admin` on `requests` gives a reason.
    fn may_fulfil(
        &self,
        actor: &Actor,
        r: &SubjectRequest,
        override_reason: Option<&str>,
    ) -> Result<(), Error> {
        let Some(missing) = fulfil_blocker(r) else {
            return Ok(());
        };
        match reason_ref(override_reason)? {
            None => Err(Error::Conflict(format!(
                "request {} cannot be fulfilled yet: {missing} (a DPO may override with a stated reason: --override-reason)",
                r.id
            ))),
            Some(_) => self.require(actor, "requests", Action::Admin),
        }
    }

    fn load_request(&self, id: &SubjectId) -> Result<SubjectRequest, Error> {
        let bytes = self
            .vault
            .store()
            .get(ks::REQUESTS, id.as_bytes())
            .map_err(vault::Error::from)?
            .ok_or_else(|| Error::Missing(format!("request with id {id}")))?;
        // Where, not what: a JSON error can quote the value it stopped at (a stated reason).
        serde_json::from_slice(&bytes).map_err(|e| Error::Storage {
            keyspace: "requests",
            detail: format!(
                "request {id} does not read back (line {}, column {})",
                e.line(),
                e.column()
            ),
        })
    }

    /// A request.
    pub fn get_request(&self, actor: &Actor, id: &SubjectId) -> Result<SubjectRequest, Error> {
        self.audited(actor, "read.request", |_| {
            self.require(actor, "requests", Action::Read)?;
            let mut r = self.load_request(id)?;
            r.notifications = self
                .notifications_of(&r.subject)?
                .into_iter()
                .filter(|n| {
                    n.created
                        .get(..10)
                        .is_some_and(|d| d >= r.received.as_str())
                })
                .collect();
            Ok(r)
        })
    }

    /// Open requests due within `days` days from today (all open ones when `None`).
    pub fn list_requests(
        &self,
        actor: &Actor,
        due_within_days: Option<u32>,
    ) -> Result<Vec<SubjectRequest>, Error> {
        self.audited(actor, "list.request", |_| {
            self.require(actor, "requests", Action::Read)?;
            // Saturating: a window past the calendar's end is every open request.
            let limit = due_within_days.map(|d| {
                day(today()
                    .checked_add(time::Duration::days(i64::from(d)))
                    .unwrap_or(time::Date::MAX))
            });
            let mut out = Vec::new();
            for entry in self.vault.store().scan_prefix(ks::REQUESTS, &[]) {
                let (_, v) = entry.map_err(vault::Error::from)?;
                let Ok(r) = serde_json::from_slice::<SubjectRequest>(&v) else {
                    continue;
                };
                if r.open_state() && limit.as_ref().is_none_or(|l| r.due.as_str() <= l.as_str()) {
                    out.push(r);
                }
            }
            out.sort_by(|a, b| a.due.cmp(&b.due));
            Ok(out)
        })
    }

    /// Moves a request along: verify, start, extend, pause, resume, complete, refuse.
    pub fn advance_request(
        &self,
        actor: &Actor,
        id: &SubjectId,
        step: &str,
        reason: Option<&str>,
    ) -> Result<SubjectRequest, Error> {
        self.audited(actor, "update.request", |trail| {
            self.require(actor, "requests", Action::Write)?;
            let mut r = self.load_request(id)?;
            trail.subject(r.subject);
            let reason = reason_ref(reason)?;
            let from = r.state.clone();
            let mut complaint = false;
            let next = match (step, from.as_str()) {
                (_, "completed" | "refused") => return Err(Error::Conflict(format!("request {id} is closed ({from})"))),
                ("verify", "received" | "paused") => "identity-verified",
                ("start", "identity-verified" | "extended") => "in-progress",
                ("extend", "received" | "identity-verified" | "in-progress") => {
                    if reason.is_none() {
                        return Err(Error::BadRequest("an extension needs a reason (it is told to the subject)".into()));
                    }
                    if r.extended {
                        return Err(Error::Conflict("the request was already extended".into()));
                    }
                    r.extended = true;
                    "extended"
                }
                ("pause", "received" | "identity-verified" | "in-progress" | "extended") => {
                    if r.jurisdiction != "uk-gdpr" {
                        return Err(Error::BadRequest("pausing the clock is a UK GDPR rule (awaiting identity or clarification)".into()));
                    }
                    r.paused_since = Some(day(today()));
                    "paused"
                }
                ("resume", "paused") => {
                    if let Some(since) = r.paused_since.take() {
                        let days = (today() - parse_day(&since, "paused_since")?).whole_days().max(0);
                        r.paused_days += days as u32;
                    }
                    // Back to where it was before the pause.
                    r.history.iter().rev().map(|s| s.state.as_str()).find(|s| *s != "paused").unwrap_or("received")
                }
                ("complete", "identity-verified" | "in-progress" | "extended") => "completed",
                ("refuse", _) => {
                    if reason.is_none() {
                        return Err(Error::BadRequest("a refusal needs its reasons (the subject is told them, and of the right to complain)".into()));
                    }
                    complaint = true;
                    "refused"
                }
                (s, f) => {
                    return Err(Error::Conflict(format!("cannot {s} a request that is {f}")));
                }
            };
            let next = next.to_string();
            r.state = next.clone();
            r.history.push(RequestStep {
                at: consent::now(),
                action: step.to_string(),
                state: next,
                by: actor.principal.id.to_string(),
                reason: if complaint {
                    reason.map(|r| {
                        format!("{r} — the subject was told of the right to complain to the supervisory authority")
                    })
                } else {
                    reason
                },
                produced: Vec::new(),
            });
            let cal = self.calendar(&r.jurisdiction);
            r.compute_due(&cal)?;
            self.store_request(actor, "update.request", trail, &r)?;
            Ok(r)
        })
    }

    /// Records in a request's history that it was fulfilled: what was produced (each file's
    /// name and SHA-256, never its content) and the override reason if it went ahead before
    /// verification. The request's state does not change: completing it is the next step.
    pub fn record_fulfilment(
        &self,
        actor: &Actor,
        id: &SubjectId,
        files: &[(String, Vec<u8>)],
        override_reason: Option<&str>,
    ) -> Result<SubjectRequest, Error> {
        self.audited(actor, "update.request", |trail| {
            self.require(actor, "requests", Action::Write)?;
            let mut r = self.load_request(id)?;
            trail.subject(r.subject);
            let overridden = fulfil_blocker(&r).is_some();
            let reason = reason_ref(override_reason)?;
            if overridden && reason.is_none() {
                return Err(Error::Conflict(format!(
                    "request {id} cannot be fulfilled yet"
                )));
            }
            let produced = files
                .iter()
                .map(|(name, body)| {
                    let mut h = vault::crypto::Sha256::new();
                    h.update(body);
                    let hex: String = h.finish().iter().map(|b| format!("{b:02x}")).collect();
                    format!("{name} sha256:{hex}")
                })
                .collect();
            r.history.push(RequestStep {
                at: consent::now(),
                action: "fulfil".into(),
                state: r.state.clone(),
                by: actor.principal.id.to_string(),
                reason: if overridden {
                    reason.map(|x| format!("override before verification: {x}"))
                } else {
                    None
                },
                produced,
            });
            self.store_request(actor, "update.request", trail, &r)?;
            Ok(r)
        })
    }

    /// Carries out an erasure request: erases its subject (as `erase_subject`, with its legal
    /// holds and certificate) and records the fulfilment with the certificate's hash. Only for
    /// a verified, started request, as for access packages: an erasure asked for by someone
    /// whose identity was not checked may be someone else's.
    pub fn fulfil_erasure(
        &self,
        actor: &Actor,
        request: &SubjectId,
        override_reason: Option<&str>,
    ) -> Result<(SubjectRequest, crate::ErasureCertificate), Error> {
        let r = self.audited(actor, "update.request", |trail| {
            self.require(actor, "requests", Action::Write)?;
            let r = self.load_request(request)?;
            trail.subject(r.subject);
            if r.kind != "erasure" {
                return Err(Error::BadRequest(format!(
                    "request {request} is a {} request, not an erasure",
                    r.kind
                )));
            }
            self.may_fulfil(actor, &r, override_reason)?;
            Ok(r)
        })?;
        let certificate = self.erase_subject(actor, &r.subject)?;
        let body = serde_json::to_vec_pretty(&certificate).expect("json");
        let r = self.record_fulfilment(
            actor,
            request,
            &[("erasure-certificate.json".into(), body)],
            override_reason,
        )?;
        Ok((r, certificate))
    }

    /// Gathers the access package of an access or portability request. Only for a request
    /// whose requester's identity was verified and whose work was started: disclosing to
    /// someone unverified is how an access request becomes a breach. `override_reason` lets
    /// a principal allowed to administer requests (a DPO) go ahead all the same, audited with
    /// the reason.
    pub fn access_package(
        &self,
        actor: &Actor,
        request: &SubjectId,
        override_reason: Option<&str>,
    ) -> Result<exporters::AccessPackage, Error> {
        self.audited(actor, "export.access-package", |trail| {
            self.require(actor, "requests", Action::Write)?;
            self.require(actor, "exports", Action::Export)?;
            let r = self.load_request(request)?;
            trail.subject(r.subject);
            if r.kind != "access" && r.kind != "portability" {
                return Err(Error::BadRequest(format!("a {} request has no access package", r.kind)));
            }
            self.may_fulfil(actor, &r, override_reason)?;
            let id = r.subject;
            let record = self.vault.read_subject(&id, &|_| true)?;
            let mut data = BTreeMap::new();
            let mut categories = std::collections::BTreeSet::new();
            let mut retention = std::collections::BTreeSet::new();
            for (f, v) in &record.fields {
                if let Some(def) = self.schema.field_by_id(RecordKind::Subject, *f) {
                    data.insert(def.name.clone(), v.to_json());
                    categories.insert(def.category.clone());
                    retention.insert(def.retention.clone());
                }
            }
            trail.fields(data.keys());
            let gifts: Vec<BTreeMap<String, Json>> = self
                .vault
                .list_gifts(&id)?
                .into_iter()
                .map(|g| {
                    g.fields
                        .iter()
                        .filter_map(|(f, v)| self.schema.field_by_id(RecordKind::Gift, *f).map(|d| (d.name.clone(), v.to_json())))
                        .collect()
                })
                .collect();
            if !gifts.is_empty() {
                categories.insert("user.financial".into());
            }
            let interactions: Vec<BTreeMap<String, Json>> = self
                .vault
                .list_interactions(&id, &|_| true)?
                .into_iter()
                .map(|i| {
                    i.fields
                        .iter()
                        .filter_map(|(f, v)| {
                            let d = self.schema.field_by_id(RecordKind::Interaction, *f)?;
                            categories.insert(d.category.clone());
                            retention.insert(d.retention.clone());
                            Some((d.name.clone(), v.to_json()))
                        })
                        .collect()
                })
                .collect();
            let history = self.ledger.history(&id).map_err(|e| Error::BadRequest(e.to_string()))?;
            let now = consent::now();
            let marketing = |name: &str| self.purposes().get(name).map(|p| p.marketing).unwrap_or(false);
            let purposes: Vec<Json> = self.purposes()
                .all()
                .iter()
                .map(|p| {
                    let d = consent::decide(p, &history, false, &now, &marketing);
                    json!({
                        "purpose": p.name, "description": p.description, "lawful_basis": p.basis,
                        "applies_now": d.allowed, "reason": d.reason,
                        "summary": format!("{}, on the basis of {} ({})", p.description, p.basis.in_words(), if d.allowed { "this applies to you now" } else { "this does not apply to you now" }),
                    })
                })
                .collect();
            let retention: Vec<Json> = self.purposes()
                .all()
                .iter()
                .map(|p| json!({"purpose": p.name, "retention": p.retention, "summary": format!("For {}: {}", p.description.to_lowercase(), p.retention)}))
                .chain(retention.into_iter().map(|c| {
                    let summary = match self.organisation.retention.get(&c) {
                        Some((description, rule)) => format!("{description}: {rule}"),
                        None => format!("Records of the kind \"{c}\": kept as our retention schedule says"),
                    };
                    json!({"retention_class": c, "summary": summary})
                }))
                .collect();
            let (access, _) = self
                .audit
                .query(&audit::Query { subject: Some(id.to_string()), limit: 10_000, ..Default::default() })
                .map_err(|e| Error::Audit(e.to_string()))?;
            let access_history: Vec<Json> = access
                .iter()
                .map(|e| json!({"time": e.time, "who": e.actor_name, "role": e.role, "action": e.action, "outcome": e.outcome.as_str(), "fields": e.fields}))
                .collect();
            let complaint = if r.jurisdiction == "uk-gdpr" {
                "You may complain to the Information Commissioner's Office (ico.org.uk, 0303 123 1113)."
            } else if r.jurisdiction == "ccpa" {
                "You may complain to your state's attorney general or privacy agency."
            } else {
                "You may complain to the data protection supervisory authority of your country."
            };
            let sources: std::collections::BTreeSet<String> = history.iter().map(|e| format!("{} ({})", e.source, e.collection_method)).collect();
            let mut source = vec!["Data you gave us directly, unless listed otherwise below.".to_string()];
            source.extend(sources);
            Ok(exporters::AccessPackage {
                request_id: r.id.to_string(),
                subject_id: id.to_string(),
                generated_at: now.clone(),
                controller: self.organisation.controller.clone(),
                data,
                gifts,
                interactions,
                purposes,
                categories_in_words: {
                    let mut words: Vec<String> = categories.iter().map(|c| crate::ropa::category_in_words(c)).collect();
                    words.dedup();
                    words
                },
                categories: categories.into_iter().collect(),
                recipients: {
                    // Recipients this subject's data went to, then the categories of
                    // recipients the organisation lists for everyone.
                    let list = self.recipients_of(&id)?;
                    let mut all: Vec<String> = list
                        .iter()
                        .map(|r| format!("{}{} (since {})", r.recipient, r.purpose.as_deref().map(|p| format!(", for {p}")).unwrap_or_default(), r.since))
                        .collect();
                    all.extend(self.organisation.recipients.iter().cloned());
                    if all.is_empty() {
                        all.push("No recipients outside the organisation are recorded for your data.".into());
                    }
                    all
                },
                retention,
                rights: vec![
                    "Rectification: ask us to correct inaccurate data (Art. 16).".into(),
                    "Erasure: ask us to erase your data (Art. 17), except what the law obliges us to keep.".into(),
                    "Restriction: ask us to stop using your data except to store it (Art. 18).".into(),
                    "Objection: object to processing on legitimate interests; an objection to direct marketing is always honoured (Art. 21).".into(),
                    "Portability: receive the data you gave us in a machine-readable form (Art. 20).".into(),
                    "Withdraw consent at any time, as easily as you gave it.".into(),
                ],
                complaint: complaint.into(),
                source,
                automated_decisions: "None: no decision about you is made solely by automated means.".into(),
                consent_history: history.iter().map(|e| serde_json::to_value(e).unwrap_or_default()).collect(),
                access_history,
            })
        })
    }
}
