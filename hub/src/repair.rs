//! Finding and repairing wrong merges: `match check` lists stored subjects whose source
//! records contradict each other, and a split takes one source record back out as a subject
//! of its own (audited, undoable with `merge undo`).
//!
//! A subject keeps the fields of every record merged into it ([`vault::sources`]). Subjects
//! merged before that was kept have no source records; for those the check compares the
//! profile with the snapshots import journals hold of it (what it was before each import
//! changed it), which shows a survivor that drifted from one person to another.

use std::collections::HashMap;

use access_control::Action;
use consent::now;
use domain::{FieldId, RecordKind, SubjectId, SubjectKind, Value};
use importers::matching;
use serde::{Deserialize, Serialize};
use vault::sources::{self, SourceRecord};
use vault::{keyspaces as ks, Batch, NewSubject, Replace};

use crate::imports::{sources_of, SHARED_ADDRESS};
use crate::{Actor, Error, Hub};

/// A stored subject whose records cannot all be one person.
#[derive(Debug, Clone, Serialize)]
pub struct CheckFinding {
    /// The subject.
    pub subject: SubjectId,
    /// The two records that contradict each other: their numbers among the subject's
    /// source records (1 = the first), for `merge split --record`; 0 when they are not
    /// source records (the profile before and after an import).
    pub records: [usize; 2],
    /// Where each came from (`import:ID#ROW`, `stored`, `before import ID`, `profile`).
    pub sources: [String; 2],
    /// Why they cannot be one person: `given_name` or `birth_date`.
    pub reason: &'static str,
    /// What can be done: `split` (take a record out) or `undo_import` (no source records
    /// were kept: undo the import named, or correct the subject by hand).
    pub repair: &'static str,
}

/// What `match check` found.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// Subjects read.
    pub subjects: u64,
    /// Subjects with more than one source record.
    pub with_sources: u64,
    /// The contradictions, by subject.
    pub findings: Vec<CheckFinding>,
}

/// A split, as the journal keeps it (ids, an encrypted snapshot, consent events moved).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SplitRecord {
    /// Its id (for `merge undo`).
    pub id: String,
    /// The subject a record was taken out of.
    pub subject: SubjectId,
    /// The new subject made of that record.
    pub split_off: SubjectId,
    /// The record's number among the subject's source records, as given.
    pub record: usize,
    /// Where the record came from.
    pub source: String,
    /// Consent events that came with that record (from its import row, or from the subject
    /// it was merged in from), moved with it.
    pub consent_moved: u32,
    /// done or undone.
    pub status: String,
    /// Who split.
    pub by: String,
    /// When.
    pub at: String,
    #[serde(default)]
    version_after: u32,
    #[serde(default)]
    snapshot: Vec<u8>,
    /// (seq in the subject's ledger, stored event) of each event moved.
    #[serde(default)]
    moved: Vec<(u64, Vec<u8>)>,
    #[serde(default)]
    moved_to: Vec<u64>,
}

/// What an undo undid.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Undone {
    /// A merge (both subjects as they were).
    Merge(crate::MergeRecord),
    /// A split (the record back in its subject).
    Split(SplitRecord),
}

fn skey(id: &str) -> Vec<u8> {
    format!("x/{id}/").into_bytes()
}

impl Hub {
    /// Lists stored subjects whose source records contradict each other (ids, record numbers
    /// and reason codes; never a value). Subjects with one record are compared with what
    /// import journals kept of them before each import changed them.
    pub fn match_check(&self, actor: &Actor) -> Result<CheckReport, Error> {
        self.audited(actor, "match.check", |trail| {
            self.require(actor, "subject", Action::Merge)?;
            // Per subject: the imports that kept a snapshot of it before changing it.
            let mut snapshots: HashMap<SubjectId, Vec<(String, Vec<u8>)>> = HashMap::new();
            for entry in self.vault.store().scan_prefix(ks::IMPORTS, b"s/") {
                let (k, v) = entry?;
                let Some(rest) = k.strip_prefix(b"s/") else {
                    continue;
                };
                let Some(slash) = rest.iter().position(|b| *b == b'/') else {
                    continue;
                };
                let import = String::from_utf8_lossy(&rest[..slash]).to_string();
                let Some(id) = SubjectId::from_slice(&rest[slash + 1..]) else {
                    continue;
                };
                snapshots.entry(id).or_default().push((import, v));
            }
            let mut report = CheckReport {
                subjects: 0,
                with_sources: 0,
                findings: Vec::new(),
            };
            let mut after: Option<SubjectId> = None;
            loop {
                let page = self.vault.list_subjects(after.as_ref(), 2_000)?;
                let Some(last) = page.last() else { break };
                after = Some(*last);
                for id in &page {
                    report.subjects += 1;
                    let rec = match self.vault.read_with_sources(id) {
                        Ok(r) => r,
                        Err(vault::Error::Erased(_) | vault::Error::NotFound(_)) => continue,
                        Err(e) => return Err(e.into()),
                    };
                    if rec.kind != SubjectKind::Individual {
                        continue;
                    }
                    if let Some(list) = sources::of_fields(&rec.fields) {
                        report.with_sources += 1;
                        report.findings.extend(self.contradictions(id, &list));
                        continue;
                    }
                    // No source records: the profile against what it was before each import.
                    let now_view = self.match_record(&rec.fields);
                    for (import, raw) in snapshots.get(id).into_iter().flatten() {
                        let Ok(before) = self.vault.open_raw(id, raw) else {
                            continue;
                        };
                        let then = self.match_record(&before);
                        if let Some(reason) = matching::contradiction(&then, &now_view) {
                            report.findings.push(CheckFinding {
                                subject: *id,
                                records: [0, 0],
                                sources: [format!("before import {import}"), "profile".into()],
                                reason,
                                repair: "undo_import",
                            });
                        }
                    }
                }
            }
            trail.count = Some(report.findings.len() as u64);
            Ok(report)
        })
    }

    fn contradictions(&self, id: &SubjectId, list: &[SourceRecord]) -> Vec<CheckFinding> {
        let views: Vec<_> = list.iter().map(|s| self.match_record(&s.fields)).collect();
        let mut out = Vec::new();
        for i in 0..views.len() {
            for j in i + 1..views.len() {
                if let Some(reason) = matching::contradiction(&views[i], &views[j]) {
                    out.push(CheckFinding {
                        subject: *id,
                        records: [i + 1, j + 1],
                        sources: [list[i].label.clone(), list[j].label.clone()],
                        reason,
                        repair: "split",
                    });
                }
            }
        }
        out
    }

    /// The source records kept for a subject: where each came from and which fields it
    /// holds (names only), numbered for `merge split --record`.
    pub fn source_records(
        &self,
        actor: &Actor,
        id: &SubjectId,
    ) -> Result<Vec<(usize, String, Vec<String>)>, Error> {
        self.audited(actor, "read.match", |trail| {
            trail.subject(id);
            self.require(actor, "subject", Action::Merge)?;
            let rec = self.vault.read_with_sources(id)?;
            Ok(sources_of(&rec.fields, "profile")
                .into_iter()
                .enumerate()
                .map(|(i, s)| {
                    let names = s
                        .fields
                        .iter()
                        .filter_map(|(f, _)| self.schema.field_by_id(RecordKind::Subject, *f))
                        .map(|d| d.name.clone())
                        .collect();
                    (i + 1, s.label, names)
                })
                .collect())
        })
    }

    /// Takes source record `record` (1 = the first) out of subject `id` as a new subject: it
    /// gets that record's fields and the consent events its import row brought; the subject
    /// keeps its other records, and each of its fields that only the record taken out held
    /// falls back to the latest other record's value (or goes). Audited; `merge undo ID`
    /// puts everything back. Gifts stay with the subject.
    pub fn split_subject(
        &self,
        actor: &Actor,
        id: &SubjectId,
        record: usize,
    ) -> Result<SplitRecord, Error> {
        self.audited(actor, "merge.split", |trail| {
            trail.subject(id);
            self.require(actor, "subject", Action::Merge)?;
            let rec = self.vault.read_with_sources(id)?;
            let mut list = sources_of(&rec.fields, "profile");
            if list.len() < 2 {
                return Err(Error::Conflict(format!(
                    "subject {id} was made from one record: there is nothing to split off (see `steward match sources {id}`)"
                )));
            }
            if record == 0 || record > list.len() {
                return Err(Error::Missing(format!(
                    "source record {record} in subject {id}: give a number between 1 and {} (the subject's source records; see `steward match sources {id}`)",
                    list.len()
                )));
            }
            let taken = list.remove(record - 1);
            let fields = self.without_record(&rec.fields, &taken, &list);
            let new_id = self.vault.new_subject_ids(1)?[0];
            trail.subject(new_id);
            let split_id = domain::hex(&self.vault.new_subject_ids(1)?[0].as_bytes()[6..14]);
            // Consent events the record's import row brought go with it.
            let mut extra = Batch::new();
            let mut moved = Vec::new();
            let mut moved_to = Vec::new();
            let history = self.ledger.history(id).map_err(crate::consent_ops::consent_error)?;
            // (A record merged in from another subject brought that subject's events.)
            let from_subject = taken
                .label
                .strip_prefix("subject:")
                .and_then(|s| s.parse::<SubjectId>().ok());
            let came_with = |e: &consent::ConsentEvent| {
                e.source == taken.label || (from_subject.is_some() && e.merged_from == from_subject)
            };
            for e in history.iter().filter(|e| came_with(e)) {
                let key = consent::Ledger::key(id, e.seq);
                if let Some(raw) = self.vault.store().get(ks::CONSENT, &key)? {
                    moved.push((e.seq, raw));
                }
                extra.delete(ks::CONSENT, key);
                let seq = moved_to.len() as u64;
                self.ledger.copy_into(e, &new_id, seq, &mut extra);
                moved_to.push(seq);
            }
            let record_out = SplitRecord {
                id: split_id.clone(),
                subject: *id,
                split_off: new_id,
                record,
                source: taken.label.clone(),
                consent_moved: moved.len() as u32,
                status: "done".into(),
                by: actor.principal.id.to_string(),
                at: now(),
                version_after: 0,
                snapshot: self.vault.raw_record(id)?.ok_or(Error::NotFound(*id))?,
                moved,
                moved_to,
            };
            let creates = self.vault.seal_new(
                &[NewSubject {
                    kind: SubjectKind::Individual,
                    fields: taken.fields.clone(),
                    gifts: Vec::new(),
                }],
                &[new_id],
            )?;
            let replaces = [Replace {
                id: *id,
                fields,
                expected_version: Some(rec.version),
            }];
            let done = std::cell::RefCell::new(None);
            self.commit_audited(actor, "merge.split", trail, |audit| {
                extra.extend(audit);
                let journal = |written: &vault::Written| {
                    let mut r = record_out.clone();
                    r.version_after = written.versions[0];
                    let mut b = Batch::new();
                    b.put(ks::IMPORTS, skey(&split_id), serde_json::to_vec(&r).expect("json"));
                    *done.borrow_mut() = Some(r);
                    b
                };
                let writes = vault::Writes {
                    creates,
                    replaces: &replaces,
                    gifts: &[],
                    absorb: None,
                };
                self.vault.write_import(writes, extra, &journal)?;
                Ok(())
            })?;
            let mut out = done.into_inner().unwrap_or(record_out);
            out.snapshot = Vec::new();
            out.moved = Vec::new();
            Ok(out)
        })
    }

    /// A subject's fields once `taken` is no longer one of its records: a field whose value
    /// only `taken` held falls back to the latest of `rest` that has the field (an address
    /// as a whole), or goes; the source records become `rest`.
    fn without_record(
        &self,
        fields: &[(FieldId, Value)],
        taken: &SourceRecord,
        rest: &[SourceRecord],
    ) -> Vec<(FieldId, Value)> {
        let name = |f: &FieldId| {
            self.schema
                .field_by_id(RecordKind::Subject, *f)
                .map_or("", |d| d.name.as_str())
        };
        let held_by_rest = |f: &FieldId, v: &Value| {
            rest.iter()
                .any(|s| s.fields.iter().any(|(g, w)| g == f && w == v))
        };
        let latest = |f: &FieldId| {
            rest.iter()
                .rev()
                .find_map(|s| s.fields.iter().find(|(g, _)| g == f).cloned())
        };
        let mut out: Vec<(FieldId, Value)> = fields
            .iter()
            .filter(|(f, _)| *f != sources::SOURCES)
            .cloned()
            .collect();
        let only_taken = |f: &FieldId, v: &Value| {
            taken.fields.iter().any(|(g, w)| g == f && w == v) && !held_by_rest(f, v)
        };
        // The address moves as a whole: if any part of it is the record's alone, the latest
        // other record's address replaces it.
        let is_address = |f: &FieldId| SHARED_ADDRESS.contains(&name(f));
        if out.iter().any(|(f, v)| is_address(f) && only_taken(f, v)) {
            out.retain(|(f, _)| !is_address(f));
            if let Some(s) = rest
                .iter()
                .rev()
                .find(|s| s.fields.iter().any(|(f, _)| is_address(f)))
            {
                out.extend(s.fields.iter().filter(|(f, _)| is_address(f)).cloned());
            }
        }
        let mut next = Vec::with_capacity(out.len());
        for (f, v) in out {
            if is_address(&f) || !only_taken(&f, &v) {
                next.push((f, v));
            } else if let Some(other) = latest(&f) {
                next.push(other);
            }
        }
        next.push((sources::SOURCES, sources::encode(rest)));
        next
    }

    /// Undoes a merge or a split, whichever `id` names.
    pub fn undo(&self, actor: &Actor, id: &str) -> Result<Undone, Error> {
        match self.split_record(id)? {
            Some(split) => Ok(Undone::Split(self.undo_split(actor, split)?)),
            None => Ok(Undone::Merge(self.undo_merge(actor, id)?)),
        }
    }

    /// A split's record, if `id` names one.
    fn split_record(&self, id: &str) -> Result<Option<SplitRecord>, Error> {
        Ok(match self.vault.store().get(ks::IMPORTS, &skey(id))? {
            Some(v) => Some(
                serde_json::from_slice(&v)
                    .map_err(|_| Error::Internal(format!("split {id} is damaged")))?,
            ),
            None => None,
        })
    }

    /// Undoes a split: the subject gets its exact prior record and consent events back, and
    /// the subject split off goes. Refused if either changed since.
    fn undo_split(&self, actor: &Actor, mut record: SplitRecord) -> Result<SplitRecord, Error> {
        self.audited(actor, "merge.undo", |trail| {
            trail.subject(record.subject);
            trail.subject(record.split_off);
            self.require(actor, "subject", Action::Merge)?;
            if record.status == "undone" {
                return Err(Error::Conflict(format!("split {} is already undone", record.id)));
            }
            if self.vault.version_of(&record.split_off)? != 1
                || self.ledger.next_seq(&record.split_off).map_err(crate::consent_ops::consent_error)?
                    != record.moved_to.len() as u64
            {
                return Err(Error::Conflict(format!(
                    "subject {} changed since the split: undo by hand (merge it back with `steward merge {} {}`)",
                    record.split_off, record.subject, record.split_off
                )));
            }
            let mut batch = Batch::new();
            for (seq, raw) in &record.moved {
                batch.put(ks::CONSENT, consent::Ledger::key(&record.subject, *seq), raw.clone());
            }
            for seq in &record.moved_to {
                batch.delete(ks::CONSENT, consent::Ledger::key(&record.split_off, *seq));
            }
            self.vault.restore_raw(
                &record.subject,
                &record.snapshot,
                Some(record.version_after),
                batch,
            )?;
            record.status = "undone".into();
            record.snapshot = Vec::new();
            record.moved = Vec::new();
            let mut batch = Batch::new();
            batch.put(
                ks::IMPORTS,
                skey(&record.id),
                serde_json::to_vec(&record).expect("json"),
            );
            self.commit_audited(actor, "merge.undo", trail, |audit| {
                batch.extend(audit);
                self.vault.discard_subjects(&[record.split_off], batch)?;
                Ok(())
            })?;
            Ok(record)
        })
    }
}
