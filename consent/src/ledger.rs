use std::sync::Arc;

use domain::SubjectId;
use serde::{Deserialize, Serialize};
use vault::{keyspaces as ks, Batch, Store};

use crate::purposes::{Basis, Purposes};
use crate::Error;

/// What happened to a subject's consent or objection for a purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Consent given.
    Given,
    /// Consent asked for and refused.
    Refused,
    /// Consent withdrawn.
    Withdrawn,
    /// Consent lapsed.
    Expired,
    /// The subject objected (Art. 21); to direct marketing it is absolute.
    Objected,
    /// Consent renewed (also lifts an earlier objection to this purpose).
    Renewed,
    /// Processing restricted (Art. 18): storage only, for every purpose.
    Restricted,
    /// The restriction lifted.
    Unrestricted,
}

impl EventKind {
    /// Parses the CLI/API spelling.
    pub fn parse(s: &str) -> Option<EventKind> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }

    /// The spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Given => "given",
            EventKind::Refused => "refused",
            EventKind::Withdrawn => "withdrawn",
            EventKind::Expired => "expired",
            EventKind::Objected => "objected",
            EventKind::Renewed => "renewed",
            EventKind::Restricted => "restricted",
            EventKind::Unrestricted => "unrestricted",
        }
    }
}

/// One ledger event (field names after ISO/IEC TS 27560 and the Kantara consent receipt where
/// they overlap). Times are UTC RFC 3339 with microseconds, so they compare as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentEvent {
    /// Position in the subject's ledger, in recording order.
    pub seq: u64,
    /// The subject.
    pub subject: SubjectId,
    /// The purpose.
    pub purpose: String,
    /// What happened.
    pub event: EventKind,
    /// When it took effect.
    pub time: String,
    /// When Steward recorded it.
    pub recorded_at: String,
    /// The purpose's lawful basis at the time.
    pub lawful_basis: Basis,
    /// gdpr, uk-gdpr, ccpa, us-state...
    pub jurisdiction: String,
    /// How it was collected: form, phone, paper, email-link, import, api, gpc...
    pub collection_method: String,
    /// Where: a form name, a campaign code, `import:FILE#ROW`.
    pub source: String,
    /// The privacy notice or consent wording shown (version).
    pub notice_version: Option<String>,
    /// Hash of that wording.
    pub notice_hash: Option<String>,
    /// Principal id of whoever recorded it.
    pub recorded_by: String,
    /// A reference to evidence kept elsewhere (a document id), never the content.
    pub evidence: Option<String>,
    /// When the consent stops counting.
    pub expires: Option<String>,
    /// The contact point (field name, e.g. `email`) for channel purposes.
    pub contact_point: Option<String>,
    /// For email/SMS: consent, soft_opt_in or charitable_soft_opt_in.
    pub pecr_basis: Option<String>,
    /// The conditions recorded for a soft opt-in.
    pub pecr_conditions: Vec<String>,
    /// Set on an event copied from another subject's ledger when that subject was merged into
    /// this one: the evidence of both records is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_from: Option<SubjectId>,
}

/// An event to record.
#[derive(Debug, Clone, Default)]
pub struct NewConsent {
    /// Purpose name.
    pub purpose: String,
    /// Event kind (`given`, `withdrawn`...).
    pub event: String,
    /// Effective time (RFC 3339); now when absent.
    pub at: Option<String>,
    /// Jurisdiction; the ledger's (the organisation's) when absent.
    pub jurisdiction: Option<String>,
    /// Collection method; `api` when absent.
    pub method: Option<String>,
    /// Source reference (required).
    pub source: String,
    /// Notice version.
    pub notice_version: Option<String>,
    /// Notice hash.
    pub notice_hash: Option<String>,
    /// Evidence reference.
    pub evidence: Option<String>,
    /// Expiry (RFC 3339).
    pub expires: Option<String>,
    /// Contact point field.
    pub contact_point: Option<String>,
    /// PECR basis.
    pub pecr_basis: Option<String>,
    /// PECR conditions.
    pub pecr_conditions: Vec<String>,
}

/// The conditions a charitable soft opt-in needs, all of them (PECR, from 5 February 2026).
pub const CHARITABLE_SOFT_OPT_IN: [&str; 5] = [
    "registered_charity",
    "obtained_directly",
    "interest_shown",
    "opt_out_offered",
    "charity_purposes_only",
];

/// The current time in the ledger's UTC form.
pub fn now() -> String {
    utc(time::OffsetDateTime::now_utc())
}

/// Parses RFC 3339 (or a date) and returns it in the ledger's UTC form.
pub fn normalise_time(s: &str) -> Option<String> {
    let t = if s.len() == 10 {
        let d = time::Date::parse(
            s,
            &time::macros::format_description!("[year]-[month]-[day]"),
        )
        .ok()?;
        d.midnight().assume_utc()
    } else {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?
    };
    Some(utc(t))
}

fn utc(t: time::OffsetDateTime) -> String {
    domain::format_utc(t)
}

/// A reference: short, no `@`, no line breaks; so that no email or note lands in the ledger.
fn reference(what: &str, s: &str) -> Result<String, Error> {
    let t = s.trim();
    let ok = !t.is_empty()
        && t.len() <= 200
        && !t.contains('@')
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || " ._:/#-+=".contains(c));
    if ok {
        Ok(t.to_string())
    } else {
        Err(Error::Invalid(format!(
            "{what} must be a short reference (letters, digits, spaces and ._:/#-+=, no @), not content"
        )))
    }
}

/// [`reference`] for the slots people are tempted to write notes in (`source`, `evidence`):
/// one word, and no phone-like number (nine digits or more, counting across `+`, `-` and
/// `.`, not inside a word such as a hex id). The ledger is not encrypted under the person's
/// key, so a name or number written there would outlive their erasure.
fn reference_only(what: &str, s: &str) -> Result<String, Error> {
    let t = reference(what, s)?;
    if t.contains(' ') || phone_like(&t) {
        return Err(Error::Invalid(format!(
            "{what} must be a reference to where the record is kept (one word of letters, digits and ._:/#-+=, such as web-form:2024-spring or doc:8f3a2c), not text about the person: no spaces, no @, no phone numbers. The consent ledger is not encrypted under the person's key, so a name, number or note written in {what} would outlive their erasure; keep such notes on the subject itself"
        )));
    }
    Ok(t)
}

/// True when `s` holds nine or more digits in one run (across `+`, `-`, `.`) that is not
/// part of a word (no letter right before or after it).
fn phone_like(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !(b[i].is_ascii_digit()
            || (b[i] == b'+' && b.get(i + 1).is_some_and(u8::is_ascii_digit)))
        {
            i += 1;
            continue;
        }
        let start = i;
        let mut digits = 0;
        while i < b.len() && (b[i].is_ascii_digit() || b"+-.".contains(&b[i])) {
            digits += usize::from(b[i].is_ascii_digit());
            i += 1;
        }
        let letter_before = start > 0 && b[start - 1].is_ascii_alphabetic();
        let letter_after = i < b.len() && b[i].is_ascii_alphabetic();
        if digits >= 9 && !letter_before && !letter_after {
            return true;
        }
    }
    false
}

/// The ledger, in the vault's store: `subject id || seq` → event.
#[derive(Clone)]
pub struct Ledger {
    store: Arc<dyn Store>,
    jurisdiction: String,
}

impl Ledger {
    /// The ledger over a store; events that name no jurisdiction are `uk-gdpr`.
    pub fn new(store: Arc<dyn Store>) -> Ledger {
        Ledger {
            store,
            jurisdiction: "uk-gdpr".into(),
        }
    }

    /// The jurisdiction recorded on events that name none (the organisation's).
    pub fn with_jurisdiction(mut self, jurisdiction: &str) -> Ledger {
        self.jurisdiction = jurisdiction.to_string();
        self
    }

    /// Validates an event and puts it into `batch` (the caller applies the batch, with its
    /// audit event). Returns the event.
    pub fn prepare(
        &self,
        purposes: &Purposes,
        subject: &SubjectId,
        new: &NewConsent,
        recorded_by: &str,
        batch: &mut Batch,
    ) -> Result<ConsentEvent, Error> {
        let seq = self.next_seq(subject)?;
        self.prepare_seq(purposes, subject, new, recorded_by, seq, batch)
    }

    /// [`Ledger::prepare`] at a given position, for callers putting several events of one
    /// subject into one batch (imports); they count on from [`Ledger::next_seq`].
    pub fn prepare_seq(
        &self,
        purposes: &Purposes,
        subject: &SubjectId,
        new: &NewConsent,
        recorded_by: &str,
        seq: u64,
        batch: &mut Batch,
    ) -> Result<ConsentEvent, Error> {
        let purpose = purposes.get(&new.purpose)?;
        let kind = EventKind::parse(&new.event).ok_or_else(|| {
            Error::Invalid(format!(
                "event \"{}\" is not one of given, refused, withdrawn, expired, objected, renewed, restricted, unrestricted",
                new.event
            ))
        })?;
        if kind == EventKind::Objected && !purpose.opt_out {
            return Err(Error::Invalid(format!(
                "the subject cannot object to \"{}\": it rests on {:?} and has no opt-out",
                purpose.name, purpose.basis
            )));
        }
        let now = utc(time::OffsetDateTime::now_utc());
        let at = match &new.at {
            Some(t) => normalise_time(t)
                .ok_or_else(|| Error::Invalid("`at` is not an RFC 3339 time".into()))?,
            None => now.clone(),
        };
        let expires = new
            .expires
            .as_deref()
            .map(|t| {
                normalise_time(t)
                    .ok_or_else(|| Error::Invalid("`expires` is not an RFC 3339 time".into()))
            })
            .transpose()?;
        if let Some(cp) = &new.contact_point {
            if !purpose.fields.contains(cp) {
                return Err(Error::Invalid(format!(
                    "contact point \"{cp}\" is not a field of \"{}\"",
                    purpose.name
                )));
            }
        }
        let pecr_basis = match (&purpose.channel, &new.pecr_basis) {
            (_, Some(b))
                if !["consent", "soft_opt_in", "charitable_soft_opt_in"].contains(&b.as_str()) =>
            {
                return Err(Error::Invalid(
                    "pecr_basis is consent, soft_opt_in or charitable_soft_opt_in".into(),
                ))
            }
            (Some(c), b)
                if (c == "email" || c == "sms")
                    && matches!(kind, EventKind::Given | EventKind::Renewed) =>
            {
                Some(b.clone().unwrap_or_else(|| "consent".into()))
            }
            (_, b) => b.clone(),
        };
        if pecr_basis.as_deref() == Some("charitable_soft_opt_in") {
            let missing: Vec<&str> = CHARITABLE_SOFT_OPT_IN
                .iter()
                .copied()
                .filter(|c| !new.pecr_conditions.iter().any(|x| x == c))
                .collect();
            if !missing.is_empty() {
                return Err(Error::Invalid(format!(
                    "a charitable soft opt-in needs every condition recorded; missing: {}",
                    missing.join(", ")
                )));
            }
        }
        let event = ConsentEvent {
            seq,
            subject: *subject,
            purpose: purpose.name.clone(),
            event: kind,
            time: at,
            recorded_at: now,
            lawful_basis: purpose.basis,
            jurisdiction: reference(
                "jurisdiction",
                new.jurisdiction.as_deref().unwrap_or(&self.jurisdiction),
            )?,
            collection_method: reference("method", new.method.as_deref().unwrap_or("api"))?,
            source: reference_only("source", &new.source)?,
            notice_version: new
                .notice_version
                .as_deref()
                .map(|v| reference("notice version", v))
                .transpose()?,
            notice_hash: new
                .notice_hash
                .as_deref()
                .map(|v| reference("notice hash", v))
                .transpose()?,
            recorded_by: recorded_by.to_string(),
            evidence: new
                .evidence
                .as_deref()
                .map(|v| reference_only("evidence", v))
                .transpose()?,
            expires,
            contact_point: new.contact_point.clone(),
            pecr_basis,
            pecr_conditions: new
                .pecr_conditions
                .iter()
                .map(|c| reference("PECR condition", c))
                .collect::<Result<_, _>>()?,
            merged_from: None,
        };
        let mut key = subject.as_bytes().to_vec();
        key.extend_from_slice(&seq.to_be_bytes());
        batch.put(
            ks::CONSENT,
            key,
            serde_json::to_vec(&event).expect("event serialises"),
        );
        Self::note_expiry(&event, batch);
        Ok(event)
    }

    /// Indexes an event's expiry (if it has one) by time, for [`Ledger::expiring`].
    fn note_expiry(event: &ConsentEvent, batch: &mut Batch) {
        if let Some(expires) = &event.expires {
            let mut key = expires.as_bytes().to_vec();
            key.extend_from_slice(event.subject.as_bytes());
            key.extend_from_slice(&event.seq.to_be_bytes());
            batch.put(ks::CONSENT_EXPIRY, key, Vec::new());
        }
    }

    /// Events that expire at or after `from` and before `to` (ledger UTC times), as (subject,
    /// seq, expiry), soonest first, at most `limit`. Hints only: a later event may have
    /// superseded one, and the caller checks the ledger.
    pub fn expiring(
        &self,
        from: &str,
        to: &str,
        limit: usize,
    ) -> Result<Vec<(SubjectId, u64, String)>, Error> {
        let mut out = Vec::new();
        for entry in self.store.scan_from(ks::CONSENT_EXPIRY, from.as_bytes()) {
            let (k, _) = entry?;
            if k.len() < 24 {
                continue;
            }
            let (time, rest) = k.split_at(k.len() - 24);
            let time = String::from_utf8_lossy(time).to_string();
            if time.as_str() >= to || out.len() >= limit {
                break;
            }
            let (Some(subject), Ok(seq)) = (
                SubjectId::from_slice(&rest[..16]),
                <[u8; 8]>::try_from(&rest[16..24]),
            ) else {
                continue;
            };
            out.push((subject, u64::from_be_bytes(seq), time));
        }
        Ok(out)
    }

    /// Builds the expiry index from the whole ledger (once, for ledgers written before it
    /// existed); returns how many events with an expiry it found.
    pub fn index_expiries(&self) -> Result<u64, Error> {
        let mut batch = Batch::new();
        let mut n = 0;
        for entry in self.store.scan_prefix(ks::CONSENT, &[]) {
            let (_, v) = entry?;
            if let Ok(event) = serde_json::from_slice::<ConsentEvent>(&v) {
                if event.expires.is_some() {
                    Self::note_expiry(&event, &mut batch);
                    n += 1;
                }
            }
            if batch.len() >= 10_000 {
                self.store.apply(std::mem::take(&mut batch))?;
            }
        }
        if !batch.is_empty() {
            self.store.apply(batch)?;
        }
        self.store.flush()?;
        Ok(n)
    }

    /// Puts a copy of another subject's event into `to`'s ledger at `seq`, unchanged except
    /// for its subject, position and `merged_from`; returns the key written.
    pub fn copy_into(
        &self,
        event: &ConsentEvent,
        to: &SubjectId,
        seq: u64,
        batch: &mut Batch,
    ) -> Vec<u8> {
        let mut copy = event.clone();
        copy.merged_from = Some(event.merged_from.unwrap_or(event.subject));
        copy.subject = *to;
        copy.seq = seq;
        let key = Self::key(to, seq);
        batch.put(
            ks::CONSENT,
            key.clone(),
            serde_json::to_vec(&copy).expect("event serialises"),
        );
        Self::note_expiry(&copy, batch);
        key
    }

    /// The store key of a subject's event.
    pub fn key(subject: &SubjectId, seq: u64) -> Vec<u8> {
        let mut key = subject.as_bytes().to_vec();
        key.extend_from_slice(&seq.to_be_bytes());
        key
    }

    /// The position the subject's next event takes.
    pub fn next_seq(&self, subject: &SubjectId) -> Result<u64, Error> {
        Ok(
            match self
                .store
                .last_with_prefix(ks::CONSENT, subject.as_bytes())?
            {
                Some((k, _)) => u64::from_be_bytes(k[16..24].try_into().unwrap_or([0; 8])) + 1,
                None => 0,
            },
        )
    }

    /// A subject's whole history, in recording order.
    pub fn history(&self, subject: &SubjectId) -> Result<Vec<ConsentEvent>, Error> {
        let mut out = Vec::new();
        for entry in self.store.scan_prefix(ks::CONSENT, subject.as_bytes()) {
            let (_, v) = entry?;
            if let Ok(e) = serde_json::from_slice(&v) {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Every subject's history, grouped by subject, in subject-id order (one pass over the
    /// ledger; segments merge it with the subjects, which are in the same order). Only the
    /// fields the gate reads are parsed.
    pub fn scan(
        &self,
    ) -> impl Iterator<Item = Result<(SubjectId, Vec<crate::GateEvent>), Error>> + '_ {
        let mut iter = self.store.scan_prefix(ks::CONSENT, &[]).peekable();
        std::iter::from_fn(move || {
            let first = match iter.next()? {
                Ok((k, v)) => (k, v),
                Err(e) => return Some(Err(e.into())),
            };
            let subject = SubjectId::from_slice(&first.0)?;
            let mut events: Vec<crate::GateEvent> =
                serde_json::from_slice(&first.1).into_iter().collect();
            while let Some(Ok((k, _))) = iter.peek() {
                if &k[..16] != subject.as_bytes() {
                    break;
                }
                if let Some(Ok((_, v))) = iter.next() {
                    events.extend(serde_json::from_slice::<crate::GateEvent>(&v));
                }
            }
            Some(Ok((subject, events)))
        })
    }
}
