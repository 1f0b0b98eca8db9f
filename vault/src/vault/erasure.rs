//! Erasure by crypto-shredding, the erasure journal, and erasure under a legal hold.

use super::*;

impl Vault {
    /// Erases a subject: shreds its data key first (so no copy of its data stays readable,
    /// wherever the ciphertext lingers), then deletes its records and index entries and leaves
    /// a tombstone holding only the id and the time.
    pub fn erase_subject(&self, id: &SubjectId) -> Result<()> {
        self.erase_subject_with(id, Batch::new())
    }
    /// [`Vault::erase_subject`] with `extra` writes in the same atomic batch as the deletions.
    pub fn erase_subject_with(&self, id: &SubjectId, extra: Batch) -> Result<()> {
        self.erase_subjects_with(std::slice::from_ref(id), extra)
    }
    /// Erases several subjects with one sync of the slot file, one of the journal and one
    /// store batch: the same guarantees as one by one, at a fraction of the syncs.
    pub fn erase_subjects_with(&self, ids: &[SubjectId], extra: Batch) -> Result<()> {
        let _gate = self.gate.read().expect("write gate");
        let _rmw = self.rmw_lock()?;
        let mut batch = Batch::new();
        let mut to_shred = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(bytes) = self.store.get(ks::SUBJECTS, id.as_bytes())? else {
                return Err(self.missing(id)?);
            };
            let (h, _) = record::header(&bytes)?;
            let index_keys: Vec<Vec<u8>> = match self
                .dek_for(id, h.slot)
                .and_then(|dek| record::open(&dek, &bytes, id, &ZERO_ID, &|_| true))
            {
                Ok(opened) => {
                    // Keyed hashes of the contact points, so the person is not re-added to
                    // marketing by a later import; no value is kept.
                    for (f, v) in &opened.fields {
                        let kind = self
                            .schema
                            .field_by_id(RecordKind::Subject, *f)
                            .map(|d| d.index);
                        if let (Some(kind @ (IndexKind::Email | IndexKind::Phone)), Some(term)) =
                            (kind, v.index_term())
                        {
                            batch.put(
                                ks::SUPPRESSION,
                                self.suppression_key(kind, term).to_vec(),
                                Vec::new(),
                            );
                        }
                    }
                    self.index_entries(id, &opened.fields)
                }
                // Unreadable record (already shredded, or damaged): find its index entries the
                // slow way, by the subject id at the end of every index key.
                Err(_) => self
                    .store
                    .scan_prefix(ks::INDEX, &[])
                    .filter_map(|e| e.ok())
                    .filter(|(k, _)| k.ends_with(id.as_bytes()))
                    .map(|(k, _)| k)
                    .collect(),
            };
            if self
                .slots
                .get(h.slot)?
                .is_some_and(|bytes| &bytes[..16] == id.as_bytes())
            {
                to_shred.push(h.slot);
            }
            // Subjects merged into this one go with it.
            for (slot, key) in self.absorbed(id)? {
                if self.slots.get(slot)?.is_some() {
                    to_shred.push(slot);
                }
                if let Some(gone) = key.get(16..32).and_then(SubjectId::from_slice) {
                    self.stage_delete_interactions(&gone, &mut batch)?;
                }
                batch.delete(ks::MERGED, key);
            }
            batch.delete(ks::SUBJECTS, id.as_bytes().to_vec());
            for k in index_keys {
                batch.delete(ks::INDEX, k);
            }
            for entry in self.store.scan_prefix(ks::GIFTS, id.as_bytes()) {
                let (k, _) = entry?;
                batch.delete(ks::GIFTS, k);
            }
            self.stage_delete_interactions(id, &mut batch)?;
            batch.put(
                ks::ERASED,
                id.as_bytes().to_vec(),
                now_ms().to_le_bytes().to_vec(),
            );
        }
        // The keys go first, synced: from here on no copy of these subjects' data decrypts.
        self.slots.shred_all(&to_shred)?;
        self.journal_erasures(ids)?;
        batch.extend(extra);
        self.store.apply(batch)?;
        self.store.flush()?;
        Ok(())
    }
    /// Appends an erasure to the journal (`erasures.journal`: time and id per line, nothing
    /// personal) and syncs it. The journal is what lets erasures made after a backup be
    /// applied again when that backup is restored.
    pub(super) fn journal_erasures(&self, ids: &[SubjectId]) -> Result<()> {
        Vault::journal_erasures_in(&self.dir, ids)
    }
    /// Appends erasures to the journal of data directory `dir` (not open): they are applied
    /// when it is next opened (a restore uses it for erasures made after its backup).
    pub fn journal_erasures_in(dir: &Path, ids: &[SubjectId]) -> Result<()> {
        use std::io::Write;
        if ids.is_empty() {
            return Ok(());
        }
        let path = dir.join(layout::JOURNAL);
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let ms = now_ms();
        let text: String = ids.iter().map(|id| format!("{ms} {id}\n")).collect();
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_data())
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }
    /// Every subject the erasure journal lists, each once, in the order erased (ids only).
    pub fn journaled_erasures(&self) -> Result<Vec<SubjectId>> {
        let path = self.dir.join(layout::JOURNAL);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        let mut seen = std::collections::HashSet::new();
        Ok(text
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<SubjectId>().ok())
            .filter(|id| seen.insert(*id))
            .collect())
    }
    /// Subjects the journal lists as erased that are present again (after a restore from a
    /// backup older than some erasures): the hub erases them again, holds included.
    pub fn pending_erasures(&self) -> Result<Vec<SubjectId>> {
        let path = self.dir.join(layout::JOURNAL);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        let mut out = Vec::new();
        for line in text.lines() {
            let Some(id) = line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse::<SubjectId>().ok())
            else {
                continue;
            };
            if self.exists(&id)? && !out.contains(&id) {
                out.push(id);
            }
        }
        Ok(out)
    }
    /// Erases a subject, keeping under a legal hold the minimum `hold` names (profile fields,
    /// and the gifts `keep_gift` accepts), re-encrypted under a fresh hold key, in the same
    /// batch as the erasure. Returns what is held.
    pub fn erase_subject_with_hold(
        &self,
        id: &SubjectId,
        hold: &HoldRequest,
        keep_gift: &crate::holds::KeepGift<'_>,
        extra: Batch,
    ) -> Result<HoldInfo> {
        let record = self.read_subject(id, &|_| true)?;
        let gifts: Vec<(GiftId, Vec<(FieldId, Value)>)> = self
            .list_gifts(id)?
            .into_iter()
            .map(|g| (g.id, g.fields))
            .collect();
        let mut batch = Batch::new();
        let info = self.place_hold(id, &record.fields, &gifts, hold, keep_gift, &mut batch)?;
        batch.extend(extra);
        self.erase_subject_with(id, batch)?;
        Ok(info)
    }
}
