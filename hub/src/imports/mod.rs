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

use importers::survivorship::parse_rule;
pub use importers::survivorship::{default_rule, Survivorship};

use crate::{Actor, Error, Hub};

mod journal;
mod plan;
mod report;
mod rows;
mod undo;
mod write;

pub(crate) use journal::rejected_key;
use journal::*;
use report::ReportSource;
pub use report::{ImportReport, ReportRows};
use rows::*;

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

/// The header of an import report as CSV (the checks rely on these names and this order).
pub const REPORT_CSV_HEADER: &str = "row,outcome,subject_id,matched_subject_id,error_code";

impl RowReport {
    /// The row as a line of the report's CSV, without its line ending. Ids, outcomes and
    /// codes only: nothing in it needs quoting.
    pub fn csv_line(&self) -> String {
        format!(
            "{},{},{},{},{}",
            self.row,
            self.outcome,
            self.subject_id.map(|i| i.to_string()).unwrap_or_default(),
            self.matched_subject_id
                .map(|i| i.to_string())
                .unwrap_or_default(),
            self.error_code.as_deref().unwrap_or("")
        )
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

impl Hub {
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
}
