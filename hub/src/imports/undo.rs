//! Undoing an import: created subjects taken back, changed ones given their prior record.

use super::*;

impl Hub {
    /// The subjects an import's plan creates (households it planned included; one that was
    /// not needed was never written).
    pub(super) fn planned_creations(
        &self,
        record: &ImportRecord,
    ) -> Result<HashSet<SubjectId>, Error> {
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
                // Put back as it was: a change for whoever received the imported version.
                self.stage_notifications(&mut batch, s, "subject.rectified", None, None)?;
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
                    // Taken back is erased, for whoever received it meanwhile (Art. 19).
                    self.stage_notifications(batch, s, "subject.erased", None, None)?;
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
