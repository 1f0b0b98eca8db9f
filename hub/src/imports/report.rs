//! What an import reports: its counts and one line per row, read from the stored plan.

use super::*;

/// An import's per-row report. A dry run's is held in memory (nothing is stored); a written
/// import's is read from its stored plan one batch at a time, so that a million rows' report
/// (some 100 MB as values) is never held whole.
pub struct ImportReport<'h> {
    pub(super) rows: ReportSource<'h>,
}

pub(super) enum ReportSource<'h> {
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

impl Hub {
    /// The per-row report of an import.
    pub fn import_report(&self, actor: &Actor, id: &str) -> Result<ImportReport<'_>, Error> {
        self.audited(actor, "read.import", |_| {
            self.require(actor, "imports", Action::Read)?;
            let record = self.load_import(id)?;
            Ok(self.stored_report(record))
        })
    }

    pub(super) fn stored_report(&self, record: ImportRecord) -> ImportReport<'_> {
        ImportReport {
            rows: ReportSource::Stored {
                hub: self,
                record: Box::new(record),
            },
        }
    }

    /// The outcome counts of a stored plan, read one batch at a time.
    pub(super) fn count_outcomes(&self, record: &ImportRecord) -> Result<Counts, Error> {
        let mut counts = Counts::outcomes_of(record);
        for b in 0..record.batches {
            counts.tally(&self.plan_chunk(&record.id, b)?.1);
        }
        Ok(counts)
    }

    pub(super) fn row_report(&self, record: &ImportRecord, r: &PlanRow) -> RowReport {
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
}
