//! Imports: read a legacy export, normalise and validate each row, match the rows against
//! each other and against the vault, then write new subjects and merges in durable batches,
//! each with its journal entries, so that an import can be resumed after a crash and undone.
//!
//! The stages:
//! 1. read: the file is streamed; every row is mapped (profile, mapping file) and parsed by
//!    the schema. A row with any invalid cell is an error row (row, column, code) and is not
//!    imported; nothing of it is kept.
//! 2. match: blocking keys of every good row (and, through their keyed hashes, of vault
//!    subjects sharing one), Fellegi-Sunter scores with m/u estimated on this data, clusters.
//! 3. plan: each row's outcome and target subject, stored before anything is written.
//! 4. write: the file is read again and the plan applied in batches of [`BATCH_ROWS`] rows;
//!    each batch (records, gifts, consent events, undo snapshots, the batch's outcomes and
//!    its audit event) is one atomic store batch. A re-run of an interrupted import loads
//!    the plan and goes on from the first batch not written. While one batch is written on
//!    a second thread, the next is read and worked out; what the batch in flight writes is
//!    read from its [`Overlay`], as the store does not have it yet.
//!
//! Nothing here stores a clear personal value outside the vault's encrypted records: the
//! journal keeps ids, codes, counts and encrypted snapshots.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Read;
use std::time::Instant;

use access_control::Action;
use consent::NewConsent;
use domain::{FieldId, RecordKind, SubjectId, SubjectKind, Value};
use importers::matching::{self, MatchRecord, Params, Thresholds};
use importers::{MappingFile, Profile, Reader, Target};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use vault::{keyspaces as ks, Batch, NewSubject, Replace};

use crate::{Actor, Error, Hub};

/// Rows per durable write batch.
pub const BATCH_ROWS: usize = 4_096;

/// A gift's fields, sorted by field id (as `Schema::parse_object` returns them), so that two
/// exports of one gift compare equal.
type GiftFields = Vec<(FieldId, Value)>;

/// What the batch being written leaves behind, for preparing the next one while it is
/// applied: the subjects it creates or changes with their fields after it, the gifts it
/// knows of per subject, and the next consent-event number of subjects it adds events to.
#[derive(Default)]
struct Overlay {
    fields: HashMap<SubjectId, Vec<(FieldId, Value)>>,
    gifts: HashMap<SubjectId, Vec<GiftFields>>,
    seqs: HashMap<SubjectId, u64>,
    /// Consent events the batch holds: (subject, purpose, event, time given by the file).
    consents: HashSet<ConsentKey>,
}

/// What makes two imported consent events the same: subject, purpose, event and the time the
/// file gave (none for a flag column such as "Do Not Email").
type ConsentKey = (SubjectId, String, String, Option<String>);

/// Subjects an undo takes back per atomic write.
const UNDO_CHUNK: usize = 2048;

/// Review items written per durable batch.
const ITEM_CHUNK: usize = 20_000;

/// Tests hold each batch's commit back this long, so that the next batch is surely prepared
/// while the one before is still in flight.
#[cfg(test)]
pub(crate) static COMMIT_DELAY_MS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);

/// One batch, worked out and ready to be written.
struct Prepared {
    import: String,
    extra: Batch,
    creates: vault::Sealed,
    replaces: Vec<Replace>,
    gifts: Vec<(SubjectId, Vec<GiftFields>)>,
    trail: crate::trail::Trail,
}

/// Opens the import's bytes (called twice: to read, then to write).
pub type Source<'a> = &'a (dyn Fn() -> std::io::Result<Box<dyn Read>> + Sync);

/// How to import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The legacy system; detected from the header when absent.
    pub profile: Option<Profile>,
    /// A mapping file, over the profile.
    pub mapping: Option<MappingFile>,
    /// The mapping file's text (part of the import's fingerprint).
    pub mapping_text: String,
    /// Work out and report, write nothing.
    pub dry_run: bool,
    /// Band thresholds.
    pub thresholds: Thresholds,
    /// The file's name, for the record and for consent sources.
    pub name: String,
    /// The id a new import gets (from [`Hub::new_import_id`]); fresh when absent.
    pub id: Option<String>,
    /// The order of every date column (`--date-order`), over what the file, the profile and
    /// the schema say.
    pub date_order: Option<domain::DateOrder>,
    /// Write nothing when more than this share of the rows would be refused (the CLI's
    /// default is one half; `--accept-errors` lifts it).
    pub max_error_share: Option<f64>,
}

/// A problem with one row: never the value.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Problem {
    /// Spreadsheet row number.
    pub row: u64,
    /// Column (header name) or field, when known.
    pub column: Option<String>,
    /// Stable code.
    pub code: String,
    /// What is wrong, in words.
    pub message: String,
    /// `error` (row not imported) or `warning` (imported, check it).
    pub severity: String,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RowReport {
    /// Spreadsheet row number.
    pub row: u64,
    /// new, merged, review, error or unchanged.
    pub outcome: &'static str,
    /// The subject the row now is (or would be, in a dry run of a merge).
    pub subject_id: Option<SubjectId>,
    /// The subject it was matched to (merged into, or put beside for review).
    pub matched_subject_id: Option<SubjectId>,
    /// For error rows: the first problem's code.
    pub error_code: Option<String>,
}

/// An import's per-row report. A dry run's is held in memory (nothing is stored); a written
/// import's is read from its stored plan one batch at a time, so that a million rows' report
/// (some 100 MB as values) is never held whole.
pub struct ImportReport<'h> {
    rows: ReportSource<'h>,
}

enum ReportSource<'h> {
    Planned(Vec<RowReport>),
    Stored {
        hub: &'h Hub,
        record: Box<ImportRecord>,
    },
}

impl ImportReport<'_> {
    /// The report's rows, in file order.
    pub fn rows(&self) -> ReportRows<'_> {
        ReportRows {
            rows: &self.rows,
            batch: 0,
            at: 0,
            chunk: Vec::new(),
        }
    }

    /// Every row at once (for reports small enough to hold, and for tests).
    pub fn to_vec(&self) -> Result<Vec<RowReport>, Error> {
        self.rows().collect()
    }
}

/// The rows of an [`ImportReport`], read as they are needed.
pub struct ReportRows<'r> {
    rows: &'r ReportSource<'r>,
    /// The next stored batch to read.
    batch: u32,
    /// Position in the planned rows, or in `chunk`.
    at: usize,
    chunk: Vec<PlanRow>,
}

impl Iterator for ReportRows<'_> {
    type Item = Result<RowReport, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.rows {
            ReportSource::Planned(rows) => {
                self.at += 1;
                rows.get(self.at - 1).cloned().map(Ok)
            }
            ReportSource::Stored { hub, record } => {
                while self.at >= self.chunk.len() {
                    if self.batch >= record.batches {
                        return None;
                    }
                    match hub.plan_chunk(&record.id, self.batch) {
                        Ok((_, rows)) => self.chunk = rows,
                        Err(e) => {
                            self.batch = record.batches;
                            return Some(Err(e));
                        }
                    }
                    self.batch += 1;
                    self.at = 0;
                }
                self.at += 1;
                Some(Ok(hub.row_report(record, &self.chunk[self.at - 1])))
            }
        }
    }
}

/// Time and rate of one stage.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Stage {
    /// read, match, write.
    pub stage: String,
    /// Seconds.
    pub seconds: f64,
    /// Rows per second.
    pub rows_per_second: f64,
}

/// Counts of an import.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct Counts {
    /// Data rows read.
    pub rows_read: u64,
    /// Rows that created a subject.
    pub new: u64,
    /// Rows merged into a subject (existing or created by an earlier row).
    pub merged: u64,
    /// Rows put in the review queue beside a likely duplicate.
    pub review: u64,
    /// Rows not imported.
    pub errors: u64,
    /// Rows that changed nothing.
    pub unchanged: u64,
    /// Rows imported with a warning.
    pub warnings: u64,
}

impl Counts {
    /// Rows read and warnings of `record`, no outcome counted yet.
    fn outcomes_of(record: &ImportRecord) -> Counts {
        Counts {
            rows_read: record.counts.rows_read,
            warnings: record.counts.warnings,
            ..Default::default()
        }
    }

    /// Counts the outcomes of plan rows.
    fn tally(&mut self, plan: &[PlanRow]) {
        for r in plan {
            match r.outcome {
                O_NEW => self.new += 1,
                O_MERGED => self.merged += 1,
                O_REVIEW => self.review += 1,
                O_UNCHANGED => self.unchanged += 1,
                _ => self.errors += 1,
            }
        }
    }
}

/// The stored record of an import (and the summary the CLI prints).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImportRecord {
    /// Its id.
    pub id: String,
    /// planned, running, completed, undone; `dry_run` for a dry run (never stored).
    pub status: String,
    /// The file's name.
    pub file: String,
    /// Profile used.
    pub profile: String,
    /// Who ran it.
    pub by: String,
    /// When it started, when it finished.
    pub started: String,
    /// When it finished.
    pub finished: Option<String>,
    /// Counts.
    #[serde(flatten)]
    pub counts: Counts,
    /// Candidate pairs compared.
    pub compared_pairs: u64,
    /// Vault subjects considered as candidates.
    pub vault_candidates: u64,
    /// Estimated share of candidate pairs that match, and EM iterations.
    pub lambda: f64,
    /// EM iterations.
    pub em_iterations: u32,
    /// Write batches in the plan and how many are written.
    pub batches: u32,
    /// Batches written.
    pub batches_done: u32,
    /// Review items opened (imports before counts were kept listed them here).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub review_items: Vec<String>,
    /// Duplicate pairs put in the review queue.
    #[serde(default)]
    pub review_count: u64,
    /// Households proposed in the review queue (one item per house).
    #[serde(default)]
    pub household_proposals: u64,
    /// Pairs of rows alike enough to look at twice that are two people by their given names
    /// or birth dates (members of one household, twins, namesakes): never merged, not put
    /// to review.
    #[serde(default)]
    pub household_pairs: u64,
    /// The first problems (all are in the report's error codes).
    pub problems: Vec<Problem>,
    /// Number of problems.
    pub problems_total: u64,
    /// Stage timings of the last run.
    pub stages: Vec<Stage>,
    /// True when this run went on from an interrupted one.
    #[serde(default)]
    pub resumed: bool,
    /// True when the same file was imported before and nothing was done.
    #[serde(default)]
    pub already_imported: bool,
    #[serde(default)]
    fingerprint: String,
    #[serde(default)]
    codes: Vec<String>,
    #[serde(default)]
    header_targets: Vec<Option<Target>>,
    /// Each date column's order and what decided it.
    #[serde(default)]
    pub date_columns: Vec<importers::dates::DateColumn>,
    /// Columns of the file that no profile or mapping entry gives a home: not imported.
    #[serde(default)]
    pub unmapped_columns: Vec<String>,
    /// Columns the profile or mapping reads and deliberately leaves out (`ignore`).
    #[serde(default)]
    pub ignored_columns: Vec<String>,
    #[serde(default)]
    params: Option<Params>,
}

/// Progress of a running stage.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// read, match, write.
    pub stage: &'static str,
    /// Rows done.
    pub done: u64,
    /// Rows in all, when known.
    pub total: Option<u64>,
}

const MAX_PROBLEMS: usize = 1000;

// Outcome codes in stored plans.
const O_ERROR: u8 = 0;
const O_NEW: u8 = 1;
const O_MERGED: u8 = 2;
const O_REVIEW: u8 = 3;
const O_UNCHANGED: u8 = 4;

fn outcome_name(o: u8) -> &'static str {
    match o {
        O_NEW => "new",
        O_MERGED => "merged",
        O_REVIEW => "review",
        O_UNCHANGED => "unchanged",
        _ => "error",
    }
}

/// One row of a plan.
#[derive(Debug, Clone, Copy, PartialEq)]
struct PlanRow {
    row: u64,
    outcome: u8,
    target: Option<SubjectId>,
    matched: Option<SubjectId>,
    /// Contact2's subject (NPSP households) and whether the row creates it.
    c2: Option<(SubjectId, bool)>,
    /// Household subject created by this row.
    household: Option<SubjectId>,
    /// Index into the record's code table (errors), 0 = none.
    code: u16,
}

const ZERO: [u8; 16] = [0; 16];

/// A review-band pair: the two subjects, the probability, the two records compared.
type ReviewPair = (Option<SubjectId>, Option<SubjectId>, f64, u32, u32);

fn put_id(out: &mut Vec<u8>, id: Option<SubjectId>) {
    out.extend_from_slice(id.as_ref().map(|i| i.as_bytes()).unwrap_or(&ZERO));
}

fn get_id(b: &[u8]) -> Option<SubjectId> {
    (b != ZERO).then(|| SubjectId::from_slice(b)).flatten()
}

fn encode_plan(rows: &[PlanRow], done: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + rows.len() * 78);
    out.push(done as u8);
    for r in rows {
        out.extend_from_slice(&r.row.to_be_bytes());
        out.push(r.outcome);
        put_id(&mut out, r.target);
        put_id(&mut out, r.matched);
        put_id(&mut out, r.c2.map(|c| c.0));
        out.push(r.c2.map(|c| c.1 as u8).unwrap_or(0));
        put_id(&mut out, r.household);
        out.extend_from_slice(&r.code.to_be_bytes());
    }
    out
}

fn decode_plan(b: &[u8]) -> Option<(bool, Vec<PlanRow>)> {
    let done = *b.first()? == 1;
    let mut rows = Vec::new();
    for c in b[1..].chunks(8 + 1 + 16 * 4 + 1 + 2) {
        if c.len() != 76 {
            return None;
        }
        let c2 = get_id(&c[41..57]).map(|id| (id, c[57] == 1));
        rows.push(PlanRow {
            row: u64::from_be_bytes(c[..8].try_into().ok()?),
            outcome: c[8],
            target: get_id(&c[9..25]),
            matched: get_id(&c[25..41]),
            c2,
            household: get_id(&c[58..74]),
            code: u16::from_be_bytes(c[74..76].try_into().ok()?),
        });
    }
    Some((done, rows))
}

/// The mark a rejected review pair leaves (either order).
pub(crate) fn rejected_key(a: &SubjectId, b: &SubjectId) -> Vec<u8> {
    let (x, y) = if a < b { (a, b) } else { (b, a) };
    let mut k = b"x/".to_vec();
    k.extend_from_slice(x.as_bytes());
    k.extend_from_slice(y.as_bytes());
    k
}

fn key(kind: &str, import: &str, rest: &[u8]) -> Vec<u8> {
    let mut k = format!("{kind}/{import}/").into_bytes();
    k.extend_from_slice(rest);
    k
}

/// A parsed good row.
struct Parsed {
    row: u64,
    person: Vec<(FieldId, Value)>,
    contact2: Option<Vec<(FieldId, Value)>>,
    gift: Option<Vec<(FieldId, Value)>>,
    /// (purpose, event, effective time already in the ledger's form; none: now).
    consents: Vec<(String, String, Option<String>)>,
    warnings: Vec<Problem>,
}

/// Field names whose values are shared by both people of an NPSP household row.
pub(crate) const SHARED_ADDRESS: &[&str] = importers::ADDRESS_FIELDS;

/// How a field's value survives when two records merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Survivorship {
    /// The more recent record wins (the import over the vault, a later row over an earlier).
    MostRecent,
    /// The longer, more complete value wins (an initial gives way to a full name).
    MostComplete,
    /// Source priority: the record already in Steward wins; the other fills gaps only.
    ExistingFirst,
    /// Multi-valued: union.
    Union,
}

/// The default rule of a field.
pub fn default_rule(field: &str) -> Survivorship {
    match field {
        "given_name" | "middle_name" | "family_name" | "preferred_name" | "organisation_name"
        | "suffix" | "title" => Survivorship::MostComplete,
        "tags" => Survivorship::Union,
        "email" | "email_secondary" | "phone" | "mobile" | "street" | "street2" | "city"
        | "region" | "postal_code" | "country" | "preferred_language" | "employer"
        | "occupation" => Survivorship::MostRecent,
        _ => Survivorship::ExistingFirst,
    }
}

/// The blocking keys the vault stores (as keyed hashes) for every subject, so imports find
/// their candidates among the subjects already in Steward.
/// Keys of every source record merged into a subject are kept, not only the profile's; an
/// email, phone or external id of a source record that the profile no longer holds (a second
/// address a merge did not keep) is kept as a key too, since the blind indexes hold only the
/// profile's.
pub(crate) fn match_keys(schema: std::sync::Arc<domain::Schema>) -> vault::MatchKeys {
    std::sync::Arc::new(move |fields: &[(FieldId, Value)]| {
        let own = match_record_of(&schema, fields).blocking_keys();
        let mut keys: Vec<String> = own
            .iter()
            .filter(|k| STORED_KEYS.iter().any(|p| k.starts_with(p)))
            .cloned()
            .collect();
        for s in vault::sources::of_fields(fields).unwrap_or_default() {
            for k in match_record_of(&schema, &s.fields).blocking_keys() {
                let stored = STORED_KEYS.iter().any(|p| k.starts_with(p));
                let contact = INDEXED_KEYS.iter().any(|p| k.starts_with(p)) && !own.contains(&k);
                if stored || contact {
                    keys.push(k);
                }
            }
        }
        keys.sort();
        keys.dedup();
        keys
    })
}

/// The matcher's views of a stored subject: one per source record merged into it, or its
/// profile when it came from one record (or was stored before source records were kept).
pub(crate) fn stored_views(
    schema: &domain::Schema,
    fields: &[(FieldId, Value)],
) -> Vec<MatchRecord> {
    match vault::sources::of_fields(fields) {
        Some(list) if !list.is_empty() => list
            .iter()
            .map(|s| match_record_of(schema, &s.fields))
            .collect(),
        _ => vec![match_record_of(schema, fields)],
    }
}

/// A subject's source records: those kept, or its profile as the one record it came from.
pub(crate) fn sources_of(
    fields: &[(FieldId, Value)],
    label: &str,
) -> Vec<vault::sources::SourceRecord> {
    vault::sources::of_fields(fields).unwrap_or_else(|| {
        vec![vault::sources::SourceRecord {
            label: label.to_string(),
            fields: fields
                .iter()
                .filter(|(f, _)| *f != vault::sources::SOURCES)
                .cloned()
                .collect(),
        }]
    })
}

/// Adds `row` as a source record of a subject: `before` are its fields (with its sources)
/// before the row was merged in, `after` its fields once merged, which get the list. A record
/// with the same fields as one kept is not kept twice; `first` labels the profile when no
/// source records were kept yet. True when it was added.
pub(crate) fn add_source(
    before: &[(FieldId, Value)],
    after: &mut Vec<(FieldId, Value)>,
    first: &str,
    row: &[(FieldId, Value)],
    label: String,
) -> bool {
    let mut list = sources_of(before, first);
    let new = vault::sources::SourceRecord {
        label,
        fields: row.to_vec(),
    };
    if list.iter().any(|s| s.same_fields(&new)) || list.len() >= vault::sources::MAX_SOURCES {
        return false;
    }
    list.push(new);
    after.retain(|(f, _)| *f != vault::sources::SOURCES);
    after.push((vault::sources::SOURCES, vault::sources::encode(&list)));
    true
}

/// The matcher's view of a subject's fields (the vault's hook and the import use the same).
fn match_record_of(schema: &domain::Schema, fields: &[(FieldId, Value)]) -> MatchRecord {
    let named: Vec<(&str, String)> = fields
        .iter()
        .filter_map(|(f, v)| {
            let name = schema.field_by_id(RecordKind::Subject, *f)?.name.as_str();
            let text = v
                .index_term()
                .map(str::to_string)
                .or_else(|| v.as_date().map(|d| d.to_string()))?;
            Some((name, text))
        })
        .collect();
    MatchRecord::from_named(named.iter().map(|(k, v)| (*k, v.as_str())))
}

/// The blocking keys the vault keeps per subject (as keyed hashes): family name with the
/// birth date, and postcode with the house number. Email, phone and external id are found
/// through the blind indexes the vault has anyway; the keys meant for typos within one file
/// (phonetic pairs, transposed names) are not kept, nor initial+family with a year or place:
/// on a file imported in two halves it found 0.03% more of the true pairs and cost a fifth
/// of the write time (BENCHMARKS.md, "Imports").
const STORED_KEYS: &[&str] = &["fb:", "ph:"];

/// Keys the vault finds through its blind indexes (the profile's email, phone, external id),
/// and through stored keys for a source record's that the profile does not hold.
const INDEXED_KEYS: &[&str] = &["e:", "p:", "x:"];

/// Vault subjects sharing a blocking key (`None` when the key's block is too large to say
/// anything).
fn vault_candidates(vault: &vault::Vault, key: &str) -> Result<Option<Vec<SubjectId>>, Error> {
    let by_index = |kind: domain::IndexKind, term: &str| vault.lookup(kind, term);
    let indexed = if let Some(t) = key.strip_prefix("e:") {
        Some(by_index(domain::IndexKind::Email, t)?)
    } else if let Some(t) = key.strip_prefix("p:") {
        Some(by_index(domain::IndexKind::Phone, t)?)
    } else if let Some(t) = key.strip_prefix("x:") {
        Some(by_index(domain::IndexKind::ExternalId, t)?)
    } else {
        None
    };
    let ids = if let Some(mut ids) = indexed {
        for id in vault.match_candidates(key, matching::MAX_BLOCK)? {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    } else if STORED_KEYS.iter().any(|p| key.starts_with(p)) {
        vault.match_candidates(key, matching::MAX_BLOCK)?
    } else {
        return Ok(None);
    };
    Ok((ids.len() <= matching::MAX_BLOCK).then_some(ids))
}

impl Hub {
    fn name_of(&self, record: RecordKind, f: FieldId) -> &str {
        self.schema
            .field_by_id(record, f)
            .map(|d| d.name.as_str())
            .unwrap_or("")
    }

    /// The matcher's view of a subject's fields.
    pub(crate) fn match_record(&self, fields: &[(FieldId, Value)]) -> MatchRecord {
        match_record_of(&self.schema, fields)
    }

    /// Merges `incoming` into `base` by the survivorship rules; returns the fields after.
    pub(crate) fn survive(
        &self,
        base: &[(FieldId, Value)],
        incoming: &[(FieldId, Value)],
        rules: &BTreeMap<String, Survivorship>,
    ) -> Vec<(FieldId, Value)> {
        let mut out: Vec<(FieldId, Value)> = base.to_vec();
        // An address moves as a whole: parts of two addresses make no address. A less
        // complete one (a street alone) never replaces a more complete one; one at least as
        // complete replaces it unless the street's rule keeps what is stored.
        let is_address =
            |f: &FieldId| SHARED_ADDRESS.contains(&self.name_of(RecordKind::Subject, *f));
        let parts =
            |fields: &[(FieldId, Value)]| fields.iter().filter(|(f, _)| is_address(f)).count();
        let (stored, offered) = (parts(base), parts(incoming));
        let address_incoming = offered > 0;
        let keep_stored = stored > 0
            && (offered < stored
                || rules
                    .get("street")
                    .copied()
                    .unwrap_or_else(|| default_rule("street"))
                    == Survivorship::ExistingFirst);
        let incoming: Vec<&(FieldId, Value)> = if address_incoming && keep_stored {
            incoming.iter().filter(|(f, _)| !is_address(f)).collect()
        } else {
            if address_incoming {
                out.retain(|(f, _)| !is_address(f));
            }
            incoming.iter().collect()
        };
        for (f, v) in incoming {
            let name = self.name_of(RecordKind::Subject, *f);
            let rule = rules
                .get(name)
                .copied()
                .unwrap_or_else(|| default_rule(name));
            let current = out.iter().position(|(g, _)| g == f);
            let Some(i) = current else {
                out.push((*f, v.clone()));
                continue;
            };
            let suspect = |v: &Value| matches!(v, Value::Email(e) if domain::email_domain_suspect(e.expose()));
            let replace = match rule {
                // A likely mistyped email does not push out one that looks right.
                Survivorship::MostRecent if suspect(v) && !suspect(&out[i].1) => false,
                Survivorship::MostRecent => true,
                Survivorship::ExistingFirst => false,
                Survivorship::MostComplete => {
                    let old = out[i].1.index_term().unwrap_or_default();
                    let n = v.index_term().unwrap_or_default();
                    let o = old.trim_end_matches('.');
                    n.len() > old.len() && n.to_lowercase().starts_with(&o.to_lowercase())
                }
                Survivorship::Union => {
                    if let (Value::Tags(a), Value::Tags(b)) = (&out[i].1, v) {
                        let mut all = a.clone();
                        for t in b {
                            if !all.iter().any(|x| x.expose() == t.expose()) {
                                all.push(t.clone());
                            }
                        }
                        out[i].1 = Value::Tags(all);
                    }
                    false
                }
            };
            if replace {
                out[i].1 = v.clone();
            }
        }
        out.sort_by_key(|(f, _)| *f);
        out
    }

    /// Phone columns whose numbers, read in the default region for want of a country, are
    /// mostly not in use there but would be elsewhere: a warning per column, from the file's
    /// first rows ([`importers::phones::column_doubt`]).
    fn phone_doubts(
        &self,
        header: &[String],
        targets: &[Option<Target>],
        mapping: Option<&MappingFile>,
        rows: &[Result<importers::Row, importers::RowError>],
    ) -> Vec<Problem> {
        if mapping.is_some_and(|m| m.constants.contains_key("country")) {
            return Vec::new();
        }
        let country = targets
            .iter()
            .position(|t| matches!(t, Some(Target::Field { field }) if field == "country"));
        let region = &self.schema.default_region;
        let mut out = Vec::new();
        for (i, t) in targets.iter().enumerate() {
            let (Some(Target::Field { field }) | Some(Target::Contact2 { field })) = t else {
                continue;
            };
            let is_phone = self
                .schema
                .field(RecordKind::Subject, field)
                .is_some_and(|d| d.ty == domain::FieldType::Phone);
            if !is_phone {
                continue;
            }
            let cells = rows.iter().flatten().filter_map(|r| {
                let has_country = country
                    .and_then(|c| r.cells.get(c))
                    .is_some_and(|c| domain::country_code(c).is_some());
                let cell = r.cells.get(i)?;
                (!has_country).then_some((r.number, cell.as_str()))
            });
            let Some(d) = importers::phones::column_doubt(cells, region) else {
                continue;
            };
            out.push(Problem {
                row: d.first_row,
                column: header.get(i).cloned(),
                code: "phone_region_unsure".into(),
                message: format!(
                    "{} of the first {} numbers in this column are not in use in {region} (the schema's default_region, used for rows without a country) but would be in {}: give the rows a country (a column, or the mapping's [constants] country)",
                    d.doubtful,
                    d.checked,
                    d.regions.join(", ")
                ),
                severity: "warning".into(),
            });
        }
        out
    }

    fn parse_row(
        &self,
        row: u64,
        header: &[String],
        targets: &[Option<Target>],
        mapping: Option<&MappingFile>,
        dates: &[importers::dates::DateColumn],
        cells: &[String],
    ) -> Result<Parsed, Problem> {
        let empty = BTreeMap::new();
        let constants = mapping.map(|m| &m.constants).unwrap_or(&empty);
        let lenient: &[String] = mapping.map(|m| m.drop_invalid.as_slice()).unwrap_or(&[]);
        let mut warnings = Vec::new();
        let problem = |column: Option<String>, code: &str, message: String| Problem {
            row,
            column,
            code: code.to_string(),
            message,
            severity: "error".into(),
        };
        let mut person = Map::new();
        let mut c2 = Map::new();
        let mut gift = Map::new();
        let mut columns: HashMap<(u8, String), String> = HashMap::new();
        let mut consents = Vec::new();
        for (i, cell) in cells.iter().enumerate() {
            let value = cell.trim();
            let Some(Some(t)) = targets.get(i) else {
                continue;
            };
            let column = header.get(i).cloned().unwrap_or_default();
            let (map, which, field) = match t {
                Target::Field { field } => (&mut person, 0u8, field),
                Target::Contact2 { field } => (&mut c2, 1, field),
                Target::Gift { field } => (&mut gift, 2, field),
                Target::Consent {
                    purpose,
                    event,
                    when,
                } => {
                    if importers::triggers(when, value) {
                        // A column whose cell is the event's time (Mailchimp's OPTIN_TIME).
                        let at = if when.is_empty() {
                            Some(legacy_time(value).ok_or_else(|| {
                                problem(
                                    Some(column),
                                    "invalid_value",
                                    "the consent time is not a date and time".into(),
                                )
                            })?)
                        } else {
                            None
                        };
                        consents.push((purpose.clone(), event.clone(), at));
                    }
                    continue;
                }
                Target::Restrictions => {
                    for word in value.split([',', ';', '|']) {
                        if let Some((p, e)) = importers::restriction(word) {
                            consents.push((p.to_string(), e.to_string(), None));
                        }
                    }
                    continue;
                }
                Target::Address => {
                    if value.is_empty() {
                        continue;
                    }
                    match importers::split_address(value) {
                        Some(parts) => {
                            for (name, part) in parts {
                                if !person.contains_key(name) {
                                    person.insert(name.to_string(), Json::String(part));
                                    columns.insert((0, name.to_string()), column.clone());
                                }
                            }
                        }
                        None => {
                            warnings.push(Problem {
                                row,
                                column: Some(column.clone()),
                                code: "address_not_split".into(),
                                message: "the address does not have its parts separated by two spaces (street, city, region, postcode, country); kept whole as the street".into(),
                                severity: "warning".into(),
                            });
                            person
                                .entry("street".to_string())
                                .or_insert_with(|| Json::String(value.to_string()));
                            columns.insert((0, "street".into()), column.clone());
                        }
                    }
                    continue;
                }
                Target::Ignore => continue,
            };
            if value.is_empty() {
                continue;
            }
            let mut cleaned = importers::legacy_value(which == 2, field, value);
            // A date in a column whose order was worked out is read in that order, and goes
            // on as an ISO date; one that reads only the other way is refused.
            if let Some(order) = dates
                .iter()
                .find(|d| d.index == i)
                .and_then(|d| d.date_order())
            {
                match importers::dates::read_in_order(&cleaned, order) {
                    Ok(date) => cleaned = date.to_string(),
                    Err(reason) => {
                        return Err(problem(
                            Some(column),
                            "invalid_value",
                            format!("{field}: {reason}"),
                        ))
                    }
                }
            }
            let value = cleaned.as_str();
            let record = if which == 2 {
                RecordKind::Gift
            } else {
                RecordKind::Subject
            };
            match map.get_mut(field.as_str()) {
                // Two columns into one field: text is joined (house number + street, two tag
                // columns); anything else keeps the first column's value.
                Some(Json::String(s)) => match self.schema.field(record, field).map(|d| &d.ty) {
                    Some(domain::FieldType::Tags) => {
                        s.push(',');
                        s.push_str(value);
                    }
                    Some(domain::FieldType::Text) => {
                        s.push(' ');
                        s.push_str(value);
                    }
                    _ => {}
                },
                _ => {
                    map.insert(field.clone(), Json::String(value.to_string()));
                    columns.insert((which, field.clone()), column);
                }
            }
        }
        if person.is_empty() && c2.is_empty() && gift.is_empty() && consents.is_empty() {
            return Err(problem(
                None,
                "empty_row",
                "the row has no value in any mapped column".into(),
            ));
        }
        for (k, v) in constants {
            person
                .entry(k.clone())
                .or_insert_with(|| Json::String(v.clone()));
        }
        // The row's country (a column or a mapping constant) decides the region its phone
        // numbers are read in: an Australian 04xx mobile is +61, whatever the default region.
        // (Without one they are read in the default region; `phone_doubts` says when that
        // looks wrong for a column.)
        let localise_phones = |map: &mut Map<String, Json>| {
            let country = map
                .get("country")
                .and_then(Json::as_str)
                .and_then(domain::country_code);
            for (name, v) in map.iter_mut() {
                let is_phone = self
                    .schema
                    .field(RecordKind::Subject, name)
                    .is_some_and(|d| d.ty == domain::FieldType::Phone);
                let (true, Json::String(s)) = (is_phone, v) else {
                    continue;
                };
                let reading = importers::phones::read_phone(
                    s,
                    country.as_deref(),
                    &self.schema.default_region,
                );
                if let (Some(region), true) = (reading.region, reading.from_row) {
                    if let Ok(e164) = domain::normalise_phone(s, &region) {
                        *s = e164;
                    }
                }
            }
        };
        localise_phones(&mut person);
        // Fields the mapping file lets go when invalid: dropped with a warning, the row stays.
        let mut drop_invalid = |record: RecordKind, which: u8, map: &mut Map<String, Json>| {
            if lenient.is_empty() {
                return;
            }
            if let Err(domain::Error::Fields(errs)) = self.schema.parse_object(record, map) {
                if errs.iter().all(|e| lenient.contains(&e.field)) {
                    for e in errs {
                        map.remove(&e.field);
                        warnings.push(Problem {
                            row,
                            column: columns.get(&(which, e.field.clone())).cloned(),
                            code: e.problem.code().to_string(),
                            message: format!(
                                "{}: not imported (the mapping file's drop_invalid lets the row in without it)",
                                e.field
                            ),
                            severity: "warning".into(),
                        });
                    }
                }
            }
        };
        drop_invalid(RecordKind::Subject, 0, &mut person);
        if !c2.is_empty() {
            drop_invalid(RecordKind::Subject, 1, &mut c2);
        }
        let parse = |record: RecordKind, which: u8, map: &Map<String, Json>| {
            self.schema.parse_object(record, map).map_err(|e| match e {
                domain::Error::Fields(errs) => {
                    let first = &errs[0];
                    let column = columns
                        .get(&(which, first.field.clone()))
                        .cloned()
                        .unwrap_or_else(|| first.field.clone());
                    let message = match &first.problem {
                        domain::FieldProblem::Invalid { reason } => {
                            format!("{}: {reason}", first.field)
                        }
                        domain::FieldProblem::AmbiguousDate => format!(
                            "{}: the date reads both day-first and month-first, and nothing decides this column's order; import with --date-order day-first or month-first, or write it as YYYY-MM-DD",
                            first.field
                        ),
                        other => format!("{}: {}", first.field, other.code()),
                    };
                    problem(Some(column), first.problem.code(), message)
                }
                other => problem(None, "invalid_value", other.to_string()),
            })
        };
        let mut c2_fields = None;
        if !c2.is_empty() {
            for name in SHARED_ADDRESS {
                if let Some(v) = person.get(*name) {
                    c2.entry(name.to_string()).or_insert_with(|| v.clone());
                }
            }
            localise_phones(&mut c2);
            c2_fields = Some(parse(RecordKind::Subject, 1, &c2)?);
        }
        let person = parse(RecordKind::Subject, 0, &person)?;
        let gift = if gift.is_empty() {
            None
        } else {
            Some(parse(RecordKind::Gift, 2, &gift)?)
        };
        let has_identity = |fields: &[(FieldId, Value)]| {
            fields.iter().any(|(f, _)| {
                matches!(
                    self.name_of(RecordKind::Subject, *f),
                    "given_name"
                        | "family_name"
                        | "organisation_name"
                        | "email"
                        | "phone"
                        | "mobile"
                        | "external_id"
                )
            })
        };
        if !has_identity(&person) {
            return Err(problem(
                None,
                "no_identity",
                "the row has no name, email, phone or id to know the person by".into(),
            ));
        }
        for (f, v) in &person {
            if let Value::Email(e) = v {
                if domain::email_domain_suspect(e.expose()) {
                    warnings.push(Problem {
                        row,
                        column: columns
                            .get(&(0, self.name_of(RecordKind::Subject, *f).to_string()))
                            .cloned(),
                        code: "email_domain_typo".into(),
                        message: "the email's domain is one letter away from a common mail domain; imported as written, check it".into(),
                        severity: "warning".into(),
                    });
                }
            }
        }
        Ok(Parsed {
            row,
            person,
            contact2: c2_fields.filter(|f| has_identity(f)),
            gift,
            consents,
            warnings,
        })
    }

    /// Works out the order of each date column from the whole file (one pass reading the
    /// file again), the `--date-order` option, the profile's habit and the schema.
    fn date_columns(
        &self,
        source: Source<'_>,
        header: &[String],
        targets: &[Option<Target>],
        profile: Profile,
        option: Option<domain::DateOrder>,
    ) -> Result<Vec<importers::dates::DateColumn>, Error> {
        let mut evidence = importers::dates::DateEvidence::for_targets(&self.schema, targets);
        if evidence.is_empty() {
            return Ok(Vec::new());
        }
        if option.is_none() {
            let f =
                source().map_err(|e| Error::BadRequest(format!("cannot read the file: {e}")))?;
            let reader = Reader::new(f, None).map_err(|e| {
                Error::BadRequest(format!("the file: {}", row_error_message(&e.code)))
            })?;
            for row in reader.flatten() {
                evidence.observe(&row.cells);
            }
        }
        Ok(evidence.decide(header, option, profile.date_order(), self.schema.date_order))
    }

    fn fingerprint(source: Source<'_>, options: &ImportOptions) -> Result<String, Error> {
        let mut ctx = vault::crypto::Sha256::new();
        let mut r =
            source().map_err(|e| Error::BadRequest(format!("cannot read the file: {e}")))?;
        // Over the rows, not the line endings: the same rows saved with CRLF (a spreadsheet
        // on Windows) or with a byte-order mark are the same file.
        let mut buf = vec![0u8; 1 << 16];
        let mut out = Vec::with_capacity(1 << 16);
        let mut first = true;
        let mut carriage = false;
        loop {
            let n = r
                .read(&mut buf)
                .map_err(|e| Error::BadRequest(format!("cannot read the file: {e}")))?;
            if n == 0 {
                break;
            }
            let mut bytes = &buf[..n];
            if first {
                first = false;
                bytes = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF][..]).unwrap_or(bytes);
            }
            out.clear();
            for &b in bytes {
                if carriage && b != b'\n' {
                    out.push(b'\r');
                }
                carriage = b == b'\r';
                if !carriage {
                    out.push(b);
                }
            }
            ctx.update(&out);
        }
        if carriage {
            ctx.update(b"\r");
        }
        ctx.update(format!("{:?}", options.profile).as_bytes());
        ctx.update(options.mapping_text.as_bytes());
        ctx.update(format!("{:?}", options.thresholds).as_bytes());
        if let Some(order) = options.date_order {
            ctx.update(format!("{order:?}").as_bytes());
        }
        Ok(domain::hex(&ctx.finish()))
    }

    fn store_get_json<T: for<'de> Deserialize<'de>>(&self, k: &[u8]) -> Result<Option<T>, Error> {
        Ok(match self.vault.store().get(ks::IMPORTS, k)? {
            Some(v) => serde_json::from_slice(&v).ok(),
            None => None,
        })
    }

    /// A fresh import id (16 hex digits).
    pub fn new_import_id(&self) -> Result<String, Error> {
        Ok(domain::hex(
            &self.vault.new_subject_ids(1)?[0].as_bytes()[6..14],
        ))
    }

    /// Refuses (and audits the refusal) unless the actor may import.
    pub fn authorize_import(&self, actor: &Actor) -> Result<(), Error> {
        self.audited(actor, "import.authorize", |_| {
            self.require(actor, "imports", Action::Import)
        })
        .map(|_| ())
    }

    /// Refuses (and audits the refusal) unless the actor may read imports.
    pub fn authorize_import_read(&self, actor: &Actor) -> Result<(), Error> {
        if self.allows(actor.principal.role, "imports", Action::Read) {
            return Ok(());
        }
        self.audited(actor, "read.import", |_| {
            self.require(actor, "imports", Action::Read)
        })
    }

    /// An import's record.
    pub fn import_record(&self, actor: &Actor, id: &str) -> Result<ImportRecord, Error> {
        self.audited(actor, "read.import", |_| {
            self.require(actor, "imports", Action::Read)?;
            self.load_import(id)
        })
    }

    fn load_import(&self, id: &str) -> Result<ImportRecord, Error> {
        self.store_get_json(&key("i", id, b""))?
            .ok_or_else(|| Error::Missing(format!("import {id}")))
    }

    /// All imports, newest first.
    pub fn list_imports(&self, actor: &Actor) -> Result<Vec<ImportRecord>, Error> {
        self.audited(actor, "read.import", |_| {
            self.require(actor, "imports", Action::Read)?;
            let mut out: Vec<ImportRecord> = Vec::new();
            for entry in self.vault.store().scan_prefix(ks::IMPORTS, b"i/") {
                let (_, v) = entry?;
                if let Ok(r) = serde_json::from_slice(&v) {
                    out.push(r);
                }
            }
            out.sort_by(|a, b| b.started.cmp(&a.started));
            Ok(out)
        })
    }

    /// The per-row report of an import.
    pub fn import_report(&self, actor: &Actor, id: &str) -> Result<ImportReport<'_>, Error> {
        self.audited(actor, "read.import", |_| {
            self.require(actor, "imports", Action::Read)?;
            let record = self.load_import(id)?;
            Ok(self.stored_report(record))
        })
    }

    fn stored_report(&self, record: ImportRecord) -> ImportReport<'_> {
        ImportReport {
            rows: ReportSource::Stored {
                hub: self,
                record: Box::new(record),
            },
        }
    }

    /// The outcome counts of a stored plan, read one batch at a time.
    fn count_outcomes(&self, record: &ImportRecord) -> Result<Counts, Error> {
        let mut counts = Counts::outcomes_of(record);
        for b in 0..record.batches {
            counts.tally(&self.plan_chunk(&record.id, b)?.1);
        }
        Ok(counts)
    }

    fn row_report(&self, record: &ImportRecord, r: &PlanRow) -> RowReport {
        // The same file again changes nothing: each row that was imported is unchanged.
        let outcome = match r.outcome {
            O_ERROR => O_ERROR,
            _ if record.already_imported => O_UNCHANGED,
            o => o,
        };
        RowReport {
            row: r.row,
            outcome: outcome_name(outcome),
            subject_id: r.target,
            matched_subject_id: r.matched,
            error_code: (r.code > 0).then(|| {
                record
                    .codes
                    .get(r.code as usize - 1)
                    .cloned()
                    .unwrap_or_default()
            }),
        }
    }

    fn plan_chunk(&self, id: &str, b: u32) -> Result<(bool, Vec<PlanRow>), Error> {
        let k = key("p", id, &b.to_be_bytes());
        let v = self
            .vault
            .store()
            .get(ks::IMPORTS, &k)?
            .ok_or_else(|| Error::Internal(format!("import {id}: plan batch {b} missing")))?;
        decode_plan(&v)
            .ok_or_else(|| Error::Internal(format!("import {id}: plan batch {b} damaged")))
    }

    /// Runs an import (or a dry run) from `source`; `progress` is called as rows go by.
    /// Returns the record (the summary) and the per-row report.
    pub fn import(
        &self,
        actor: &Actor,
        source: Source<'_>,
        options: &ImportOptions,
        progress: &dyn Fn(Progress),
    ) -> Result<(ImportRecord, ImportReport<'_>), Error> {
        let action = if options.dry_run {
            "import.dry_run"
        } else {
            "import"
        };
        self.audited(actor, action, |trail| {
            self.require(actor, "imports", Action::Import)?;
            let fingerprint = Self::fingerprint(source, options)?;
            if !options.dry_run {
                if let Some(prev) = self.store_get_json::<String>(&key("f", &fingerprint, b""))? {
                    let mut record = self.load_import(&prev)?;
                    match record.status.as_str() {
                        "completed" => {
                            // The same file again: nothing to do; every row is unchanged.
                            let mut counts = self.count_outcomes(&record)?;
                            counts.unchanged += counts.new + counts.merged + counts.review;
                            (counts.new, counts.merged, counts.review, counts.warnings) =
                                (0, 0, 0, 0);
                            record.counts = counts;
                            record.already_imported = true;
                            trail.count = Some(0);
                            return Ok((record.clone(), self.stored_report(record)));
                        }
                        "running" => {
                            trail.count = Some(record.counts.rows_read);
                            return self
                                .write_stage(actor, source, options, record, true, progress);
                        }
                        _ => {}
                    }
                }
            }
            let (record, report) =
                self.plan_import(actor, source, options, &fingerprint, progress)?;
            trail.count = Some(record.counts.rows_read);
            if options.dry_run {
                return Ok((
                    record,
                    ImportReport {
                        rows: ReportSource::Planned(report),
                    },
                ));
            }
            // The written import reports from its stored plan; a million rows' report is
            // 100 MB not to hold through the write.
            drop(report);
            self.write_stage(actor, source, options, record, false, progress)
        })
    }

    fn plan_import(
        &self,
        actor: &Actor,
        source: Source<'_>,
        options: &ImportOptions,
        fingerprint: &str,
        progress: &dyn Fn(Progress),
    ) -> Result<(ImportRecord, Vec<RowReport>), Error> {
        let t0 = Instant::now();
        let f = source().map_err(|e| Error::BadRequest(format!("cannot read the file: {e}")))?;
        let mut reader = Reader::new(f, None).map_err(|e| {
            Error::BadRequest(format!("{}: {}", options.name, row_error_message(&e.code)))
        })?;
        let header = reader.header().to_vec();
        let profile = options.profile.unwrap_or_else(|| Profile::detect(&header));
        let mut targets = profile.map(&header);
        if let Some(m) = &options.mapping {
            targets = m.map(&header, &targets);
        }
        self.check_targets(&header, &targets)?;
        let date_columns =
            self.date_columns(source, &header, &targets, profile, options.date_order)?;
        let mut problems: Vec<Problem> = Vec::new();
        let mut problems_total = 0u64;
        let mut codes: Vec<String> = Vec::new();
        // Per row: (row number, Ok(index of its person record) or Err(code index)).
        let mut rows: Vec<(u64, Result<usize, u16>)> = Vec::new();
        let mut records: Vec<MatchRecord> = Vec::new();
        // Per record: (row position, is contact2).
        let mut owner: Vec<(usize, bool)> = Vec::new();
        let mut c2_of: HashMap<usize, usize> = HashMap::new();
        let mut counts = Counts::default();
        for dup in reader.duplicate_columns() {
            problems_total += 1;
            problems.push(Problem {
                row: 1 + reader.dialect().preamble_rows as u64,
                column: Some(dup.clone()),
                code: "duplicated_column".into(),
                message: "two columns have this name: the first one's value is used (text columns are joined)".into(),
                severity: "warning".into(),
            });
        }
        let code_index = |codes: &mut Vec<String>, code: &str| -> u16 {
            match codes.iter().position(|c| c == code) {
                Some(i) => i as u16 + 1,
                None => {
                    codes.push(code.to_string());
                    codes.len() as u16
                }
            }
        };
        // Rows are read in chunks; each chunk is parsed on every core, then taken in order.
        type Checked = Result<(u64, MatchRecord, Option<MatchRecord>, Vec<Problem>), Problem>;
        let check = |item: &Result<importers::Row, importers::RowError>| -> Checked {
            match item {
                Err(e) => Err(Problem {
                    row: e.row,
                    column: e.column.clone(),
                    code: e.code.to_string(),
                    message: row_error_message(&e.code),
                    severity: "error".into(),
                }),
                Ok(row) if profile.is_header_row(&row.cells) => Err(Problem {
                    row: row.number,
                    column: None,
                    code: "header_row".into(),
                    message: "a second header row (column names, not a person); skipped".into(),
                    severity: "error".into(),
                }),
                Ok(row) => self
                    .parse_row(
                        row.number,
                        &header,
                        &targets,
                        options.mapping.as_ref(),
                        &date_columns,
                        &row.cells,
                    )
                    .map(|p| {
                        (
                            p.row,
                            self.match_record(&p.person),
                            p.contact2.as_ref().map(|c| self.match_record(c)),
                            p.warnings,
                        )
                    }),
            }
        };
        let mut first_chunk = true;
        loop {
            let chunk: Vec<_> = reader.by_ref().take(16_384).collect();
            if chunk.is_empty() {
                break;
            }
            if std::mem::take(&mut first_chunk) {
                for p in self.phone_doubts(&header, &targets, options.mapping.as_ref(), &chunk) {
                    problems_total += 1;
                    problems.push(p);
                }
            }
            let before = counts.rows_read;
            counts.rows_read += chunk.len() as u64;
            if before / 50_000 != counts.rows_read / 50_000 {
                progress(Progress {
                    stage: "read",
                    done: counts.rows_read,
                    total: None,
                });
            }
            for checked in matching::par_map(&chunk, check) {
                match checked {
                    Err(p) => {
                        counts.errors += 1;
                        problems_total += 1;
                        let c = code_index(&mut codes, &p.code);
                        rows.push((p.row, Err(c)));
                        if problems.len() < MAX_PROBLEMS {
                            problems.push(p);
                        }
                    }
                    Ok((row, person, c2, warnings)) => {
                        if !warnings.is_empty() {
                            counts.warnings += 1;
                        }
                        for w in warnings {
                            problems_total += 1;
                            if problems.len() < MAX_PROBLEMS {
                                problems.push(w);
                            }
                        }
                        let pos = rows.len();
                        rows.push((row, Ok(records.len())));
                        records.push(person);
                        owner.push((pos, false));
                        if let Some(c2) = c2 {
                            c2_of.insert(pos, records.len());
                            records.push(c2);
                            owner.push((pos, true));
                        }
                    }
                }
            }
        }
        if counts.rows_read == 0 {
            problems_total += 1;
            problems.push(Problem {
                row: 1 + reader.dialect().preamble_rows as u64,
                column: None,
                code: "no_rows".into(),
                message: "the file has a header and no rows under it: nothing to import".into(),
                severity: "warning".into(),
            });
        }
        let read_s = t0.elapsed().as_secs_f64();
        progress(Progress {
            stage: "match",
            done: 0,
            total: Some(records.len() as u64),
        });
        // Vault subjects sharing a blocking key with a row.
        let t1 = Instant::now();
        let n_file = records.len();
        let mut existing_ids: Vec<SubjectId> = Vec::new();
        let mut existing_household: Vec<Option<SubjectId>> = Vec::new();
        // Per stored record (a subject's source records, or its profile): its subject.
        let mut existing_of: Vec<SubjectId> = Vec::new();
        let mut together: Vec<(u32, u32)> = Vec::new();
        if !self.vault.list_subjects(None, 1)?.is_empty() {
            let mut seen_keys = HashSet::new();
            let mut seen_ids = HashSet::new();
            for r in &records[..n_file] {
                for k in r.blocking_keys() {
                    if !seen_keys.insert(k.clone()) {
                        continue;
                    }
                    let Some(ids) = vault_candidates(&self.vault, &k)? else {
                        continue;
                    };
                    for id in ids {
                        if seen_ids.insert(id) {
                            existing_ids.push(id);
                        }
                    }
                }
            }
            let household_field = self
                .schema
                .field(RecordKind::Subject, "household")
                .map(|d| d.id);
            for id in &existing_ids {
                let rec = self.vault.read_with_sources(id)?;
                let household = rec.fields.iter().find_map(|(f, v)| match v {
                    Value::Ref(h) if Some(*f) == household_field => Some(*h),
                    _ => None,
                });
                let first = records.len() as u32;
                for view in stored_views(&self.schema, &rec.fields) {
                    if records.len() as u32 > first {
                        together.push((first, records.len() as u32));
                    }
                    records.push(view);
                    existing_of.push(*id);
                    existing_household.push(household);
                }
            }
        }
        let mut existing = vec![false; n_file];
        existing.resize(records.len(), true);
        let cannot_link: Vec<(u32, u32)> = c2_of
            .iter()
            .map(|(pos, j)| (rows[*pos].1.unwrap_or(0) as u32, *j as u32))
            .collect();
        let matched = matching::run(
            &mut records,
            &existing,
            &cannot_link,
            &together,
            options.thresholds,
        );
        let match_s = t1.elapsed().as_secs_f64();
        // Targets: existing subjects, or a new id per new cluster.
        let new_clusters: BTreeSet<u32> = (0..n_file as u32)
            .filter(|i| !existing[matched.reps[*i as usize] as usize])
            .map(|i| matched.reps[i as usize])
            .collect();
        let fresh = if options.dry_run {
            Vec::new()
        } else {
            self.vault.new_subject_ids(new_clusters.len())?
        };
        let cluster_id: HashMap<u32, Option<SubjectId>> = new_clusters
            .iter()
            .enumerate()
            .map(|(i, c)| (*c, fresh.get(i).copied()))
            .collect();
        let target_of = |i: usize| -> Option<SubjectId> {
            let rep = matched.reps[i];
            if existing[rep as usize] {
                Some(existing_of[rep as usize - n_file])
            } else {
                cluster_id.get(&rep).copied().flatten()
            }
        };
        let creates = |i: usize| -> bool {
            let rep = matched.reps[i] as usize;
            !existing[rep] && rep == i
        };
        // Review pairs: between the subjects two records end up in.
        let mut review_rows: HashMap<usize, Option<SubjectId>> = HashMap::new();
        let mut review_pairs: Vec<ReviewPair> = Vec::new();
        let mut pair_seen = HashSet::new();
        for (s, _) in &matched.review {
            let (a, b) = (s.a as usize, s.b as usize);
            let (ta, tb) = (target_of(a), target_of(b));
            if !pair_seen.insert((matched.reps[a], matched.reps[b])) {
                continue;
            }
            // The row of the later record is flagged (b > a; b is a file record).
            if b < n_file && !owner[b].1 {
                review_rows.entry(owner[b].0).or_insert(ta);
            }
            review_pairs.push((ta, tb, s.probability, s.a, s.b));
        }
        // Contact2 is matched within the household its Contact1 is in: a vault subject outside
        // that household is not merged into; the two are put side by side for review.
        let mut c2_apart: HashMap<usize, Option<SubjectId>> = HashMap::new();
        for (pos, j) in &c2_of {
            let Ok(i) = rows[*pos].1 else { continue };
            let (ri, rj) = (matched.reps[i] as usize, matched.reps[*j] as usize);
            let household_of = |r: usize| {
                if existing[r] {
                    existing_household[r - n_file]
                } else {
                    None
                }
            };
            let h1 = household_of(ri);
            if !existing[rj] || h1.is_none() || household_of(rj) == h1 {
                continue;
            }
            let fresh = if options.dry_run {
                None
            } else {
                Some(self.vault.new_subject_ids(1)?[0])
            };
            c2_apart.insert(*pos, fresh);
            let g = matching::compare(&records[*j], &records[rj]);
            review_pairs.push((
                Some(existing_of[rj - n_file]),
                fresh,
                matched.params.probability(&g),
                rj as u32,
                *j as u32,
            ));
        }
        // Two people alike who share a house: proposed as one household, never merged.
        let mut household_links: Vec<ReviewPair> = Vec::new();
        for s in &matched.households {
            let (a, b) = (s.a as usize, s.b as usize);
            if !matching::same_house(&matching::compare(&records[a], &records[b])) {
                continue;
            }
            let household_of = |r: usize| {
                let rep = matched.reps[r] as usize;
                if existing[rep] {
                    existing_household[rep - n_file]
                } else {
                    None
                }
            };
            let (ha, hb) = (household_of(a), household_of(b));
            if ha.is_some() && ha == hb {
                continue;
            }
            if !pair_seen.insert((matched.reps[a], matched.reps[b])) {
                continue;
            }
            household_links.push((target_of(a), target_of(b), s.probability, s.a, s.b));
        }
        // One proposal per house: the pairs that share one are grouped (a household of five
        // is one question, not ten).
        let household_groups = group_pairs(&household_links);
        let mut plan = Vec::with_capacity(rows.len());
        for (pos, (row, res)) in rows.iter().enumerate() {
            let p = match res {
                Err(code) => PlanRow {
                    row: *row,
                    outcome: O_ERROR,
                    target: None,
                    matched: None,
                    c2: None,
                    household: None,
                    code: *code,
                },
                Ok(i) => {
                    let target = target_of(*i);
                    let (mut outcome, mut matched_id) = if creates(*i) {
                        (O_NEW, None)
                    } else {
                        let rep = matched.reps[*i] as usize;
                        let m = if existing[rep] {
                            Some(existing_of[rep - n_file])
                        } else {
                            target
                        };
                        (O_MERGED, m)
                    };
                    if let Some(other) = review_rows.get(&pos) {
                        if outcome == O_NEW {
                            outcome = O_REVIEW;
                            matched_id = *other;
                        }
                    }
                    let c2 = c2_of.get(&pos).map(|j| match c2_apart.get(&pos) {
                        Some(fresh) => (*fresh, true),
                        None => (target_of(*j), creates(*j)),
                    });
                    PlanRow {
                        row: *row,
                        outcome,
                        target,
                        matched: matched_id,
                        c2: c2.and_then(|(t, c)| t.map(|t| (t, c))),
                        household: None,
                        code: 0,
                    }
                }
            };
            match p.outcome {
                O_NEW => counts.new += 1,
                O_MERGED => counts.merged += 1,
                O_REVIEW => counts.review += 1,
                _ => {}
            }
            plan.push(p);
        }
        // A household per NPSP row with two people (unless one already has one).
        let households = plan.iter().filter(|p| p.c2.is_some()).count();
        if !options.dry_run && households > 0 {
            let ids = self.vault.new_subject_ids(households)?;
            for (p, id) in plan.iter_mut().filter(|p| p.c2.is_some()).zip(ids) {
                p.household = Some(id);
            }
        }
        let id = match &options.id {
            Some(id) => id.clone(),
            None => self.new_import_id()?,
        };
        let record = ImportRecord {
            id: id.clone(),
            status: if options.dry_run {
                "dry_run"
            } else {
                "running"
            }
            .into(),
            file: options.name.clone(),
            profile: serde_json::to_value(profile)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            by: actor.principal.id.to_string(),
            started: consent::now(),
            finished: None,
            counts,
            compared_pairs: matched.compared as u64,
            vault_candidates: existing_ids.len() as u64,
            lambda: matched.params.lambda,
            em_iterations: matched.params.iterations,
            batches: plan.len().div_ceil(BATCH_ROWS) as u32,
            batches_done: 0,
            review_items: Vec::new(),
            review_count: 0,
            household_proposals: 0,
            household_pairs: matched.households.len() as u64,
            problems,
            problems_total,
            stages: vec![
                stage("read", read_s, rows.len()),
                stage("match", match_s, rows.len()),
            ],
            resumed: false,
            already_imported: false,
            fingerprint: fingerprint.to_string(),
            codes,
            unmapped_columns: header
                .iter()
                .zip(&targets)
                .filter(|(h, t)| t.is_none() && !h.is_empty())
                .map(|(h, _)| h.clone())
                .collect(),
            ignored_columns: header
                .iter()
                .zip(&targets)
                .filter(|(_, t)| matches!(t, Some(Target::Ignore)))
                .map(|(h, _)| h.clone())
                .collect(),
            header_targets: targets,
            date_columns,
            params: Some(matched.params.clone()),
        };
        if options.dry_run {
            let report = plan.iter().map(|p| self.row_report(&record, p)).collect();
            return Ok((record, report));
        }
        let (errors, read) = (record.counts.errors, record.counts.rows_read);
        if let Some(max) = options.max_error_share {
            if read > 0 && errors as f64 > max * read as f64 {
                return Err(Error::BadRequest(format!(
                    "{errors} of {read} rows ({:.0}%) would be refused, more than the {:.0}% allowed; nothing was written. See which rows and why with --dry-run --report R.csv, or import the others anyway with --accept-errors",
                    100.0 * errors as f64 / read as f64,
                    100.0 * max
                )));
            }
        }
        // The plan is durable before any subject is written.
        let mut batch = Batch::new();
        for (b, chunk) in plan.chunks(BATCH_ROWS).enumerate() {
            batch.put(
                ks::IMPORTS,
                key("p", &id, &(b as u32).to_be_bytes()),
                encode_plan(chunk, false),
            );
        }
        let mut record = record;
        // Pairs already waiting in the queue are not queued twice.
        let mut queued: HashSet<Vec<u8>> = HashSet::new();
        for entry in self.vault.store().scan_prefix(ks::IMPORTS, b"q/") {
            let (_, v) = entry?;
            if let Ok(item) = serde_json::from_slice::<ReviewItem>(&v) {
                if item.status == "open" {
                    queued.insert(rejected_key(&item.a, &item.b));
                }
            }
        }
        let kinds = review_pairs
            .into_iter()
            .map(|p| (p, Vec::new()))
            .chain(household_groups);
        let mut items = Batch::new();
        let mut in_items = 0;
        for ((a, b, probability, ra, rb), members) in kinds {
            let kind = if members.is_empty() {
                "duplicate"
            } else {
                "household"
            };
            let (Some(a), Some(b)) = (a, b) else { continue };
            if a == b {
                continue;
            }
            // A pair a person already said are two people is not asked again.
            if !queued.insert(rejected_key(&a, &b))
                || self
                    .vault
                    .store()
                    .get(ks::IMPORTS, &rejected_key(&a, &b))?
                    .is_some()
            {
                continue;
            }
            let rid = domain::hex(&self.vault.new_subject_ids(1)?[0].as_bytes()[6..14]);
            let item = ReviewItem {
                id: rid.clone(),
                import: Some(id.clone()),
                a,
                b,
                probability,
                levels: matching::compare(&records[ra as usize], &records[rb as usize]).to_vec(),
                status: "open".into(),
                decided_by: None,
                decided_at: None,
                merge: None,
                kind: kind.into(),
                members,
            };
            items.put(
                ks::IMPORTS,
                key("q", &rid, b""),
                serde_json::to_vec(&item).expect("json"),
            );
            if kind == "household" {
                record.household_proposals += 1;
            } else {
                record.review_count += 1;
            }
            // Written a chunk at a time, ahead of the plan: a million-row file opens hundreds
            // of thousands. Were the import cut short before its record is written, a re-run
            // finds them open and does not queue them twice.
            in_items += 1;
            if in_items == ITEM_CHUNK {
                self.vault.apply_durably(std::mem::take(&mut items))?;
                in_items = 0;
            }
        }
        batch.extend(items);
        batch.put(
            ks::IMPORTS,
            key("i", &id, b""),
            serde_json::to_vec(&record).expect("json"),
        );
        batch.put(
            ks::IMPORTS,
            key("f", fingerprint, b""),
            serde_json::to_vec(&id).expect("json"),
        );
        batch.put(
            ks::META,
            b"match.params".to_vec(),
            serde_json::to_vec(&matched.params).expect("json"),
        );
        self.vault.apply_durably(batch)?;
        Ok((record, Vec::new()))
    }

    fn check_targets(&self, header: &[String], targets: &[Option<Target>]) -> Result<(), Error> {
        for (h, t) in header.iter().zip(targets) {
            let (record, field) = match t {
                Some(Target::Field { field }) | Some(Target::Contact2 { field }) => {
                    (RecordKind::Subject, field)
                }
                Some(Target::Gift { field }) => (RecordKind::Gift, field),
                Some(Target::Consent { purpose, event, .. }) => {
                    self.purposes.get(purpose).map_err(|_| {
                        Error::BadRequest(format!(
                            "column \"{h}\" maps to purpose \"{purpose}\", which policies/purposes.toml does not define"
                        ))
                    })?;
                    if consent::EventKind::parse(event).is_none() {
                        return Err(Error::BadRequest(format!(
                            "column \"{h}\" maps to consent event \"{event}\", which is not an event kind"
                        )));
                    }
                    continue;
                }
                _ => continue,
            };
            if self.schema.field(record, field).is_none() {
                return Err(Error::BadRequest(format!(
                    "column \"{h}\" maps to field \"{field}\", which the schema does not have"
                )));
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn write_stage(
        &self,
        actor: &Actor,
        source: Source<'_>,
        options: &ImportOptions,
        mut record: ImportRecord,
        resumed: bool,
        progress: &dyn Fn(Progress),
    ) -> Result<(ImportRecord, ImportReport<'_>), Error> {
        let t0 = Instant::now();
        let rules: BTreeMap<String, Survivorship> = options
            .mapping
            .as_ref()
            .map(|m| {
                m.survivorship
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), parse_rule(v)?)))
                    .collect()
            })
            .unwrap_or_default();
        let f = source().map_err(|e| Error::BadRequest(format!("cannot read the file: {e}")))?;
        let mut reader = Reader::new(f, None).map_err(|e| {
            Error::BadRequest(format!("{}: {}", options.name, row_error_message(&e.code)))
        })?;
        let header = reader.header().to_vec();
        let targets = record.header_targets.clone();
        let mut written_rows = 0u64;
        let total = record.counts.rows_read;
        let created = self.planned_creations(&record)?;
        // Each batch's final outcomes (a merge that changed nothing is `unchanged`), counted
        // as the batch is prepared or, for one written before a resume, as its plan is read.
        let mut outcomes = Counts::outcomes_of(&record);
        // Read once: an erasure made while this import runs is not seen by it, as it would
        // not be by a batch already prepared.
        let suppressed = self.vault.suppression_list()?;
        // One batch is written (audited, applied) by a writer thread while this one reads,
        // parses and prepares the next: sled applies a batch on one core, and the preparation
        // would otherwise wait for it. The batch in flight lands before the next is handed
        // over, so batches land in order, at most one behind; the next batch reads the
        // subjects the one in flight writes from its overlay, not from the store. One writer
        // for the whole stage: memory a thread allocated is best freed while it lives.
        std::thread::scope(|scope| -> Result<(), Error> {
            let (jobs, job_rx) = std::sync::mpsc::sync_channel::<Prepared>(1);
            let (done_tx, landings) = std::sync::mpsc::channel::<Result<(), Error>>();
            scope.spawn(move || {
                for job in job_rx {
                    let result = self.commit_batch(actor, job);
                    let failed = result.is_err();
                    if done_tx.send(result).is_err() || failed {
                        break;
                    }
                }
            });
            let mut overlay = Overlay::default();
            // The batch in flight: its number and rows.
            let mut in_flight: Option<(u32, u64)> = None;
            let landed = |(b, rows): (u32, u64), written_rows: &mut u64| -> Result<(), Error> {
                landings
                    .recv()
                    .map_err(|_| Error::Internal("the import's writer thread stopped".into()))??;
                *written_rows += rows;
                progress(Progress {
                    stage: "write",
                    done: ((b + 1) as u64 * BATCH_ROWS as u64).min(total),
                    total: Some(total),
                });
                Ok(())
            };
            // Plan chunks are read while no batch is being applied (sled holds reads back
            // until an applied batch is in), each one batch ahead.
            let mut next_chunk = if record.batches > 0 {
                Some(self.plan_chunk(&record.id, 0)?)
            } else {
                None
            };
            for b in 0..record.batches {
                let (done, mut plan) = next_chunk.take().expect("read one batch ahead");
                if done && b + 1 < record.batches {
                    next_chunk = Some(self.plan_chunk(&record.id, b + 1)?);
                }
                // Rows of this batch, read again (the plan keeps no values).
                let last_row = plan.last().map(|p| p.row).unwrap_or(0);
                let mut rows = Vec::with_capacity(plan.len());
                for item in reader.by_ref() {
                    match item {
                        Ok(row) => {
                            let n = row.number;
                            rows.push(row);
                            if n >= last_row {
                                break;
                            }
                        }
                        Err(e) if e.row >= last_row => break,
                        Err(_) => {}
                    }
                }
                // A batch marked done in its own atomic write is skipped on a re-run.
                if done {
                    outcomes.tally(&plan);
                    continue;
                }
                // On this thread only: the other core is sled's, applying the batch before.
                let parsed: HashMap<u64, Parsed> = rows
                    .iter()
                    .filter_map(|row| {
                        self.parse_row(
                            row.number,
                            &header,
                            &targets,
                            options.mapping.as_ref(),
                            &record.date_columns,
                            &row.cells,
                        )
                        .ok()
                    })
                    .map(|p| (p.row, p))
                    .collect();
                // The batch in flight lands before this one reads the store (its rows about
                // stored subjects, after those about new ones): sled holds reads back while
                // it applies a batch, so a read would wait for the landing anyway, pinned
                // inside sled.
                let (import_id, batches) = (record.id.clone(), record.batches);
                let mut land = || -> Result<(), Error> {
                    if let Some(flight) = in_flight.take() {
                        landed(flight, &mut written_rows)?;
                    }
                    if b + 1 < batches {
                        next_chunk = Some(self.plan_chunk(&import_id, b + 1)?);
                    }
                    Ok(())
                };
                let (prepared, next) = self.prepare_batch(
                    actor,
                    &mut record,
                    b,
                    &mut plan,
                    &parsed,
                    &rules,
                    options,
                    &created,
                    &suppressed,
                    &overlay,
                    &mut land,
                )?;
                overlay = next;
                outcomes.tally(&plan);
                let rows = plan.len() as u64;
                jobs.send(prepared)
                    .map_err(|_| Error::Internal("the import's writer thread stopped".into()))?;
                in_flight = Some((b, rows));
            }
            if let Some(flight) = in_flight.take() {
                landed(flight, &mut written_rows)?;
            }
            Ok(())
        })?;
        drop(created);
        let write_s = t0.elapsed().as_secs_f64();
        record
            .stages
            .push(stage("write", write_s, written_rows as usize));
        record.status = "completed".into();
        record.finished = Some(consent::now());
        record.resumed = resumed;
        record.counts = outcomes;
        self.vault.apply_durably({
            let mut batch = Batch::new();
            batch.put(
                ks::IMPORTS,
                key("i", &record.id, b""),
                serde_json::to_vec(&record).expect("json"),
            );
            batch
        })?;
        Ok((record.clone(), self.stored_report(record)))
    }

    /// True when this import already recorded this consent event for a stored subject (an
    /// earlier batch's row of the same person).
    fn imported_already(
        &self,
        subject: &SubjectId,
        import: &str,
        purpose: &str,
        event: &str,
        at: &Option<String>,
    ) -> Result<bool, Error> {
        let prefix = format!("import:{import}#");
        let at = at.as_deref().and_then(consent::normalise_time);
        Ok(self
            .ledger
            .history(subject)
            .map_err(crate::consent_ops::consent_error)?
            .iter()
            .any(|e| {
                e.purpose == purpose
                    && e.event.as_str() == event
                    && match &at {
                        Some(t) => &e.time == t,
                        None => e.source.starts_with(&prefix),
                    }
            }))
    }

    /// Works out one batch's writes: new subjects, changed ones, gifts, consent events,
    /// households, undo snapshots, the batch's outcomes. Subjects the batch in flight writes
    /// are read from its `overlay`; the returned overlay is this batch's, for the next one.
    #[allow(clippy::too_many_arguments)]
    fn prepare_batch(
        &self,
        actor: &Actor,
        record: &mut ImportRecord,
        b: u32,
        plan: &mut [PlanRow],
        parsed: &HashMap<u64, Parsed>,
        rules: &BTreeMap<String, Survivorship>,
        options: &ImportOptions,
        created: &HashSet<SubjectId>,
        suppressed: &vault::SuppressionList,
        overlay: &Overlay,
        before_reads: &mut dyn FnMut() -> Result<(), Error>,
    ) -> Result<(Prepared, Overlay), Error> {
        let import = record.id.clone();
        let file = &options.name;
        // New subjects of this batch, by id: (kind, fields, gifts).
        let mut news: BTreeMap<SubjectId, NewSubject> = BTreeMap::new();
        let mut news_order: Vec<SubjectId> = Vec::new();
        // Subjects stored before this batch that it changes: their fields now.
        let mut olds: BTreeMap<SubjectId, (Vec<(FieldId, Value)>, bool)> = BTreeMap::new();
        let mut old_gifts: BTreeMap<SubjectId, Vec<Vec<(FieldId, Value)>>> = BTreeMap::new();
        let mut consents: Vec<(SubjectId, NewConsent)> = Vec::new();
        let mut consent_keys: HashSet<ConsentKey> = HashSet::new();
        let jurisdiction = options
            .mapping
            .as_ref()
            .and_then(|m| m.jurisdiction.clone());
        let mut households: Vec<(SubjectId, Vec<SubjectId>)> = Vec::new();
        let mut gift_cache: HashMap<SubjectId, Vec<Vec<(FieldId, Value)>>> = HashMap::new();
        let household_field = self
            .schema
            .field(RecordKind::Subject, "household")
            .map(|d| d.id);
        // Two passes over the rows: first those about subjects this batch creates, which need
        // nothing from the store; then, after the new subjects are sealed, those about stored
        // subjects. The batch before may still be being applied, and sled holds reads back
        // until it is: reading last lets the work before overlap it. A batch with NPSP
        // households (a row with two people) is done in the second pass only.
        let has_households = plan.iter().any(|p| p.c2.is_some());
        let mut handled = vec![false; plan.len()];
        let mut in_batch: HashSet<SubjectId> = HashSet::new();
        let mut sealed: Option<vault::Sealed> = None;
        // The row each new subject of this batch was created from.
        let mut first_label: HashMap<SubjectId, String> = HashMap::new();
        for pass in 0..2 {
            if pass == 1 {
                before_reads()?;
            }
            let mut apply = |this: &Hub,
                             target: SubjectId,
                             creates: bool,
                             fields: &[(FieldId, Value)],
                             gift: Option<&Vec<(FieldId, Value)>>,
                             label: String|
             -> Result<bool, Error> {
                // A resumed run skips written batches, so a planned creation is always new here.
                if creates && !news.contains_key(&target) {
                    first_label.insert(target, label);
                    news.insert(
                        target,
                        NewSubject {
                            kind: SubjectKind::Individual,
                            fields: fields.to_vec(),
                            gifts: gift.cloned().into_iter().collect(),
                        },
                    );
                    news_order.push(target);
                    return Ok(true);
                }
                let gift = gift.cloned();
                if let Some(n) = news.get_mut(&target) {
                    let mut after = this.survive(&n.fields, fields, rules);
                    let first = first_label.get(&target).map_or("stored", String::as_str);
                    add_source(&n.fields, &mut after, first, fields, label);
                    n.fields = after;
                    // The same gift twice (two exports of one donation) is one gift.
                    if let Some(g) = gift {
                        if !n.gifts.contains(&g) {
                            n.gifts.push(g);
                        }
                    }
                    return Ok(true);
                }
                if let std::collections::btree_map::Entry::Vacant(e) = olds.entry(target) {
                    let current = match overlay.fields.get(&target) {
                        Some(fields) => fields.clone(),
                        None => this.vault.read_with_sources(&target)?.fields,
                    };
                    e.insert((current, false));
                }
                let entry = olds.get_mut(&target).expect("present");
                let mut after = this.survive(&entry.0, fields, rules);
                add_source(&entry.0, &mut after, "stored", fields, label);
                let mut changed = after != entry.0;
                if changed {
                    entry.0 = after;
                    entry.1 = true;
                }
                if let Some(g) = gift {
                    if let std::collections::hash_map::Entry::Vacant(e) = gift_cache.entry(target) {
                        let stored = match overlay.gifts.get(&target) {
                            Some(known) => known.clone(),
                            None => this
                                .vault
                                .list_gifts(&target)?
                                .into_iter()
                                .map(|r| {
                                    let mut f = r.fields;
                                    f.sort_by_key(|(id, _)| *id);
                                    f
                                })
                                .collect(),
                        };
                        e.insert(stored);
                    }
                    let known = gift_cache.get_mut(&target).expect("cached");
                    if !known.contains(&g) {
                        known.push(g.clone());
                        old_gifts.entry(target).or_default().push(g);
                        changed = true;
                    }
                }
                Ok(changed)
            };
            for (i, p) in plan.iter_mut().enumerate() {
                if handled[i] {
                    continue;
                }
                let (Some(row), Some(target)) = (parsed.get(&p.row), p.target) else {
                    handled[i] = true;
                    continue;
                };
                let creates = matches!(p.outcome, O_NEW | O_REVIEW);
                if pass == 0 {
                    if has_households || !(creates || in_batch.contains(&target)) {
                        continue;
                    }
                    in_batch.insert(target);
                }
                handled[i] = true;
                let label = format!("import:{import}#{}", p.row);
                let mut changed = apply(
                    self,
                    target,
                    creates,
                    &row.person,
                    row.gift.as_ref(),
                    label.clone(),
                )?;
                if let Some((c2, c2_creates)) = p.c2 {
                    if let Some(fields) = &row.contact2 {
                        apply(self, c2, c2_creates, fields, None, format!("{label}/2"))?;
                    }
                    if let (Some(h), Some(_)) = (p.household, household_field) {
                        households.push((h, vec![target, c2]));
                    }
                }
                for (purpose, event, at) in &row.consents {
                    // The same event from this import is recorded once per subject (two
                    // merged rows of one person often carry the same opt-in).
                    let same = (target, purpose.clone(), event.clone(), at.clone());
                    // (Kept for the next batch even when skipped: the batch that recorded
                    // it may still be in flight then.)
                    if !consent_keys.insert(same.clone())
                        || overlay.consents.contains(&same)
                        || (!creates
                            && self.imported_already(&target, &import, purpose, event, at)?)
                    {
                        continue;
                    }
                    consents.push((
                        target,
                        NewConsent {
                            purpose: purpose.clone(),
                            event: event.clone(),
                            at: at.clone(),
                            jurisdiction: jurisdiction.clone(),
                            method: Some("import".into()),
                            source: format!("import:{import}#{}", p.row),
                            ..Default::default()
                        },
                    ));
                    changed = true;
                }
                if p.outcome == O_MERGED && !changed {
                    p.outcome = O_UNCHANGED;
                }
            }
            if pass == 0 && !has_households {
                sealed = Some(self.seal_news(&news, &news_order)?);
            }
        }
        // Households: a household subject linked from both people.
        if let Some(hf) = household_field {
            for (h, members) in &households {
                if overlay.fields.contains_key(h) || self.vault.raw_record(h)?.is_some() {
                    continue;
                }
                // A member already in a household brings the other one into it.
                let current = members.iter().find_map(|m| {
                    let fields = news
                        .get(m)
                        .map(|n| &n.fields)
                        .or(olds.get(m).map(|o| &o.0))?;
                    fields.iter().find_map(|(f, v)| match v {
                        Value::Ref(r) if *f == hf => Some(*r),
                        _ => None,
                    })
                });
                let h = &current.unwrap_or(*h);
                if current.is_none() {
                    news.insert(
                        *h,
                        NewSubject {
                            kind: SubjectKind::Household,
                            fields: Vec::new(),
                            gifts: Vec::new(),
                        },
                    );
                    news_order.push(*h);
                }
                for m in members {
                    if let Some(n) = news.get_mut(m) {
                        n.fields.retain(|(f, _)| *f != hf);
                        n.fields.push((hf, Value::Ref(*h)));
                    } else if let Some(o) = olds.get_mut(m) {
                        if !o.0.iter().any(|(f, _)| *f == hf) {
                            o.0.push((hf, Value::Ref(*h)));
                            o.1 = true;
                        }
                    }
                }
            }
        }
        // The journal: snapshots of subjects stored before the import, the first time this
        // import touches them.
        let mut extra = Batch::new();
        let replaces: Vec<Replace> = olds
            .iter()
            .filter(|(_, (_, changed))| *changed)
            .map(|(id, (fields, _))| Replace {
                id: *id,
                fields: fields.clone(),
                expected_version: None,
            })
            .collect();
        let mut touched: Vec<SubjectId> = news_order.clone();
        for id in olds.keys().chain(old_gifts.keys()) {
            if !touched.contains(id) {
                touched.push(*id);
            }
            // A subject the batch in flight touched has its snapshot in that batch.
            let snap = key("s", &import, id.as_bytes());
            if !overlay.fields.contains_key(id)
                && !created.contains(id)
                && self.vault.store().get(ks::IMPORTS, &snap)?.is_none()
            {
                if let Some(raw) = self.vault.raw_record(id)? {
                    extra.put(ks::IMPORTS, snap, raw);
                }
            }
        }
        // Consent events, counted on per subject.
        let mut seqs: HashMap<SubjectId, u64> = HashMap::new();
        for (subject, new) in &consents {
            let seq = match seqs.get(subject).or(overlay.seqs.get(subject)) {
                Some(s) => *s,
                None if news.contains_key(subject) => 0,
                None => self
                    .ledger
                    .next_seq(subject)
                    .map_err(crate::consent_ops::consent_error)?,
            };
            seqs.insert(*subject, seq + 1);
            self.ledger
                .prepare_seq(
                    &self.purposes,
                    subject,
                    new,
                    &actor.principal.id.to_string(),
                    seq,
                    &mut extra,
                )
                .map_err(|e| Error::BadRequest(format!("{file}: {e}")))?;
            if !news.contains_key(subject) {
                extra.put(
                    ks::IMPORTS,
                    key("c", &import, &consent::Ledger::key(subject, seq)),
                    Vec::new(),
                );
            }
        }
        // People erased at their request are not re-added to marketing.
        self.stage_suppression(
            news.iter().map(|(id, n)| (id, n.fields.as_slice())),
            &|k, t| Ok(self.vault.listed(suppressed, k, t)),
            &mut seqs,
            &mut extra,
        )?;
        extra.put(
            ks::IMPORTS,
            key("p", &import, &b.to_be_bytes()),
            encode_plan(plan, true),
        );
        record.batches_done = b + 1;
        extra.put(
            ks::IMPORTS,
            key("i", &import, b""),
            serde_json::to_vec(&*record).expect("json"),
        );
        let creates = match sealed {
            Some(sealed) => sealed,
            None => self.seal_news(&news, &news_order)?,
        };
        // What the next batch must read from here rather than from the store (this batch's
        // subjects move there: nothing below needs them).
        let mut next = Overlay {
            seqs,
            consents: consent_keys,
            gifts: gift_cache,
            ..Default::default()
        };
        for (id, n) in news {
            next.gifts.insert(id, n.gifts);
            next.fields.insert(id, n.fields);
        }
        // (A subject given a gift is among `olds` too: its fields are read first.)
        for (id, (fields, _)) in olds {
            next.fields.insert(id, fields);
        }
        let gifts: Vec<_> = old_gifts.into_iter().collect();
        let mut trail = crate::trail::Trail::default();
        for id in &touched {
            trail.subject(id);
        }
        trail.count = Some(plan.len() as u64);
        let prepared = Prepared {
            import,
            extra,
            creates,
            replaces,
            gifts,
            trail,
        };
        Ok((prepared, next))
    }

    /// Seals a batch's new subjects (in the order they were first met).
    fn seal_news(
        &self,
        news: &BTreeMap<SubjectId, NewSubject>,
        order: &[SubjectId],
    ) -> Result<vault::Sealed, Error> {
        let creates: Vec<NewSubject> = order.iter().map(|id| news[id].clone()).collect();
        Ok(self.vault.seal_new(&creates, order)?)
    }

    /// Writes a prepared batch (its new subjects already sealed) with its journal and audit
    /// event, in one atomic, durable batch.
    fn commit_batch(&self, actor: &Actor, prepared: Prepared) -> Result<(), Error> {
        #[cfg(test)]
        std::thread::sleep(std::time::Duration::from_millis(
            COMMIT_DELAY_MS.load(std::sync::atomic::Ordering::Relaxed),
        ));
        let Prepared {
            import,
            extra,
            creates,
            replaces,
            gifts,
            mut trail,
        } = prepared;
        self.commit_audited(actor, "import.rows", &mut trail, |audit| {
            let mut extra = extra;
            extra.extend(audit);
            // The journal needs the new versions and gift ids: the vault hands them over
            // before it applies, so they land in the same atomic batch.
            let journal = |written: &vault::Written| {
                let mut journal = Batch::new();
                for ((subject, _), ids) in gifts.iter().zip(&written.gift_ids) {
                    for g in ids {
                        let mut k = subject.as_bytes().to_vec();
                        k.extend_from_slice(g.as_bytes());
                        journal.put(ks::IMPORTS, key("g", &import, &k), Vec::new());
                    }
                }
                for (r, v) in replaces.iter().zip(&written.versions) {
                    journal.put(
                        ks::IMPORTS,
                        key("v", &import, r.id.as_bytes()),
                        v.to_le_bytes().to_vec(),
                    );
                }
                journal
            };
            let writes = vault::Writes {
                creates,
                replaces: &replaces,
                gifts: &gifts,
                absorb: None,
            };
            self.vault.write_import(writes, extra, &journal)?;
            Ok(())
        })
    }

    /// The subjects an import's plan creates (households it planned included; one that was
    /// not needed was never written).
    fn planned_creations(&self, record: &ImportRecord) -> Result<HashSet<SubjectId>, Error> {
        let mut out = HashSet::new();
        for b in 0..record.batches {
            for r in self.plan_chunk(&record.id, b)?.1 {
                if matches!(r.outcome, O_NEW | O_REVIEW) {
                    out.extend(r.target);
                }
                if let Some((c2, true)) = r.c2 {
                    out.insert(c2);
                }
                out.extend(r.household);
            }
        }
        Ok(out)
    }

    /// Undoes an import: subjects it created are taken back (keys shredded), subjects it
    /// changed get their exact prior record back, its gifts and consent events go, its review
    /// items close. Refused if a changed subject was changed again since.
    pub fn undo_import(&self, actor: &Actor, id: &str) -> Result<ImportRecord, Error> {
        self.audited(actor, "import.undo", |trail| {
            self.require(actor, "imports", Action::Import)?;
            let mut record = self.load_import(id)?;
            if record.status == "undone" {
                return Err(Error::Conflict(format!("import {id} is already undone")));
            }
            let store = self.vault.store().clone();
            let list = |kind: &str| -> Result<Vec<Vec<u8>>, Error> {
                let prefix = key(kind, id, b"");
                let mut out = Vec::new();
                for e in store.scan_prefix(ks::IMPORTS, &prefix) {
                    let (k, _) = e?;
                    out.push(k[prefix.len()..].to_vec());
                }
                Ok(out)
            };
            let created: Vec<SubjectId> = self
                .planned_creations(&record)?
                .into_iter()
                .filter(|id| self.vault.raw_record(id).ok().flatten().is_some())
                .collect();
            let snapshots: Vec<SubjectId> =
                list("s")?.iter().filter_map(|k| SubjectId::from_slice(k)).collect();
            // Changed since? Compare versions before touching anything.
            let mut expected = HashMap::new();
            for s in &snapshots {
                let v = store
                    .get(ks::IMPORTS, &key("v", id, s.as_bytes()))?
                    .and_then(|b| b.try_into().ok().map(u32::from_le_bytes));
                if let Some(v) = v {
                    if self.vault.version_of(s)? != v {
                        return Err(Error::Conflict(format!(
                            "subject {s} was changed after import {id}; undo it by hand or undo the later change first"
                        )));
                    }
                    expected.insert(*s, v);
                }
            }
            for s in &created {
                trail.subject(s);
            }
            for s in &snapshots {
                trail.subject(s);
            }
            let gifts = list("g")?;
            let consents = list("c")?;
            for s in &snapshots {
                let raw = store
                    .get(ks::IMPORTS, &key("s", id, s.as_bytes()))?
                    .ok_or_else(|| Error::Internal("snapshot missing".into()))?;
                let mut batch = Batch::new();
                for g in gifts.iter().filter(|g| &g[..16] == s.as_bytes()) {
                    if let Some(gid) = domain::GiftId::from_slice(&g[16..]) {
                        self.vault.delete_gifts(s, &[gid], &mut batch);
                    }
                }
                for c in consents.iter().filter(|c| &c[..16] == s.as_bytes()) {
                    batch.delete(ks::CONSENT, c.clone());
                }
                // Its snapshot goes with the restore: an undo cut short and run again does not
                // find it changed (by this very restore) and carries on with the rest.
                batch.delete(ks::IMPORTS, key("s", id, s.as_bytes()));
                batch.delete(ks::IMPORTS, key("v", id, s.as_bytes()));
                self.vault.restore_raw(s, &raw, expected.get(s).copied(), batch)?;
            }
            // Subjects the import created go a chunk at a time, each chunk one atomic write,
            // so that memory stays bounded however large the import (an undo cut short and
            // run again finds the rest: `created` holds only subjects still stored).
            let mut created_sorted: Vec<SubjectId> = created.clone();
            created_sorted.sort();
            let chunks: Vec<&[SubjectId]> = created_sorted.chunks(UNDO_CHUNK).collect();
            let (last, before) = chunks.split_last().map(|(l, b)| (*l, b)).unwrap_or((&[], &[]));
            let leave = |chunk: &[SubjectId], batch: &mut Batch| -> Result<(), Error> {
                for s in chunk {
                    for e in store.scan_prefix(ks::CONSENT, s.as_bytes()) {
                        batch.delete(ks::CONSENT, e?.0);
                    }
                    batch.delete(ks::ACTIVITY, s.as_bytes().to_vec());
                }
                Ok(())
            };
            if !before.is_empty() && record.status != "undoing" {
                // Said before the first chunk goes, so a cut-short undo is not shown as a
                // completed import.
                record.status = "undoing".into();
                let mut batch = Batch::new();
                batch.put(ks::IMPORTS, key("i", id, b""), serde_json::to_vec(&record).expect("json"));
                self.vault.apply_durably(batch)?;
            }
            for chunk in before {
                let mut batch = Batch::new();
                leave(chunk, &mut batch)?;
                self.vault.discard_subjects(chunk, batch)?;
            }
            // Subjects with gifts or consent but no field change have no snapshot.
            let mut batch = Batch::new();
            for g in &gifts {
                if let (Some(s), Some(gid)) = (SubjectId::from_slice(&g[..16]), domain::GiftId::from_slice(&g[16..])) {
                    self.vault.delete_gifts(&s, &[gid], &mut batch);
                }
            }
            for c in &consents {
                batch.delete(ks::CONSENT, c.clone());
            }
            leave(last, &mut batch)?;
            for r in &record.review_items {
                batch.delete(ks::IMPORTS, key("q", r, b""));
            }
            for entry in self.vault.store().scan_prefix(ks::IMPORTS, b"q/") {
                let (k, v) = entry?;
                if let Ok(item) = serde_json::from_slice::<ReviewItem>(&v) {
                    if item.import.as_deref() == Some(id) && item.status == "open" {
                        batch.delete(ks::IMPORTS, k);
                    }
                }
            }
            for kind in ["s", "v", "g", "c"] {
                for k in list(kind)? {
                    batch.delete(ks::IMPORTS, key(kind, id, &k));
                }
            }
            batch.delete(ks::IMPORTS, key("f", &record.fingerprint, b""));
            record.status = "undone".into();
            record.finished = Some(consent::now());
            batch.put(ks::IMPORTS, key("i", id, b""), serde_json::to_vec(&record).expect("json"));
            trail.count = Some(created.len() as u64 + snapshots.len() as u64);
            self.commit_audited(actor, "import.undo", trail, |audit| {
                batch.extend(audit);
                self.vault.discard_subjects(last, batch)?;
                Ok(())
            })?;
            Ok(record)
        })
    }
}

fn stage(name: &str, seconds: f64, rows: usize) -> Stage {
    Stage {
        stage: name.into(),
        seconds,
        rows_per_second: if seconds > 0.0 {
            rows as f64 / seconds
        } else {
            0.0
        },
    }
}

fn parse_rule(s: &str) -> Option<Survivorship> {
    Some(match s {
        "most_recent" => Survivorship::MostRecent,
        "most_complete" => Survivorship::MostComplete,
        "existing_first" | "source_priority" => Survivorship::ExistingFirst,
        "union" => Survivorship::Union,
        _ => return None,
    })
}

/// A pair of subjects the matcher was unsure about.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReviewItem {
    /// Its id.
    pub id: String,
    /// The import that raised it.
    pub import: Option<String>,
    /// The subject that would be kept.
    pub a: SubjectId,
    /// The subject that would be merged into it.
    pub b: SubjectId,
    /// Match probability.
    pub probability: f64,
    /// Comparison level per field (see `steward match explain`).
    pub levels: Vec<u8>,
    /// open, accepted, rejected.
    pub status: String,
    /// Who decided.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<String>,
    /// The merge an acceptance made.
    pub merge: Option<String>,
    /// `duplicate` (one person twice: accept merges) or `household` (two people who share
    /// an address and its contact points: accept links both into one household).
    #[serde(default = "duplicate")]
    pub kind: String,
    /// For a household proposal, everyone proposed as its members (`a` and `b` among them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<SubjectId>,
}

fn duplicate() -> String {
    "duplicate".into()
}

/// Groups household pairs into one proposal per set of subjects they connect: the group's
/// first pair (as the item's `a`, `b` and levels), its best probability, and its members in
/// id order.
fn group_pairs(pairs: &[ReviewPair]) -> Vec<(ReviewPair, Vec<SubjectId>)> {
    let mut index: HashMap<SubjectId, usize> = HashMap::new();
    let mut parent: Vec<usize> = Vec::new();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    let mut slot = |id: SubjectId, parent: &mut Vec<usize>| -> usize {
        *index.entry(id).or_insert_with(|| {
            parent.push(parent.len());
            parent.len() - 1
        })
    };
    let mut known = Vec::new();
    for p in pairs {
        let (Some(a), Some(b)) = (p.0, p.1) else {
            continue;
        };
        if a == b {
            continue;
        }
        let (x, y) = (slot(a, &mut parent), slot(b, &mut parent));
        let (rx, ry) = (find(&mut parent, x), find(&mut parent, y));
        if rx != ry {
            parent[rx.max(ry)] = rx.min(ry);
        }
        known.push((*p, x));
    }
    let mut groups: BTreeMap<usize, (ReviewPair, BTreeSet<SubjectId>)> = BTreeMap::new();
    let ids: HashMap<usize, SubjectId> = index.iter().map(|(id, i)| (*i, *id)).collect();
    for (p, x) in known {
        let root = find(&mut parent, x);
        let entry = groups.entry(root).or_insert((p, BTreeSet::new()));
        if p.2 > entry.0 .2 {
            entry.0 .2 = p.2;
        }
        entry.1.insert(ids[&x]);
        if let Some(b) = p.1 {
            entry.1.insert(b);
        }
    }
    groups
        .into_values()
        .map(|(p, members)| (p, members.into_iter().collect()))
        .collect()
}

/// A time as legacy exports write it (`2023-01-05 09:00:00`, taken as UTC; RFC 3339; a
/// date), in the ledger's form.
fn legacy_time(s: &str) -> Option<String> {
    consent::normalise_time(s)
        .or_else(|| consent::normalise_time(&format!("{}Z", s.trim().replace(' ', "T"))))
}

fn row_error_message(code: &str) -> String {
    match code {
        "ragged_row" => "the row has a different number of cells than the header".into(),
        "invalid_text" => "a cell is not text: a byte that is not valid in the file's encoding, or a control character such as NUL (a damaged or binary file); the row is not imported".into(),
        "malformed_csv" => "the row's quoting is broken (an unbalanced quote)".into(),
        "field_too_long" => "a cell is longer than 1 MiB".into(),
        "unbalanced_quote" => "a quote in this row is never closed: the row is not imported (the rows after it are read as they are); close or remove the quote".into(),
        "no_header" => "the file is empty: there is no header row".into(),
        other => other.replace('_', " "),
    }
}
