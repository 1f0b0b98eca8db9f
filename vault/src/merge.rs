//! Writes for imports and merges, and the raw snapshots that make them undoable.
//!
//! A snapshot is a subject's stored record as it was (still encrypted under the subject's own
//! data key), so an undo restores it bit for bit and an erasure of the subject still makes it
//! unreadable. A merged-away subject keeps its data key and its records in the `merged`
//! keyspace until the merge is undone; erasing the subject it was merged into shreds both keys.

use std::collections::BTreeSet;

use domain::{FieldId, GiftId, SubjectId, Value};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::record;
use crate::store::{keyspaces as ks, Batch};
use crate::vault::{NewSubject, Vault, MATCH_FIELD, ZERO_ID};

/// A subject replaced whole by an import or a merge: the fields it must have afterwards and,
/// optionally, the version it must still be at.
#[derive(Debug, Clone)]
pub struct Replace {
    /// The subject.
    pub id: SubjectId,
    /// All its fields afterwards.
    pub fields: Vec<(FieldId, Value)>,
    /// Refuse (conflict) unless the subject is at this version.
    pub expected_version: Option<u32>,
}

/// Gifts to add to existing subjects: per subject, each gift's fields.
pub type GiftsFor = [(SubjectId, Vec<Vec<(FieldId, Value)>>)];

/// New subjects sealed ahead of their write by [`Vault::seal_new`]: their records, index
/// entries and gifts, encrypted, with their data keys already durable in the slot file.
/// Nothing in it is clear personal data.
#[derive(Debug, Default)]
pub struct Sealed {
    batch: Batch,
}

/// What [`Vault::write_import`] writes.
#[derive(Debug)]
pub struct Writes<'a> {
    /// Subjects to create, sealed.
    pub creates: Sealed,
    /// Subjects replaced whole.
    pub replaces: &'a [Replace],
    /// Gifts added to existing subjects.
    pub gifts: &'a GiftsFor,
    /// (keep, gone): move `gone` into the merged keyspace under `keep`.
    pub absorb: Option<(SubjectId, SubjectId)>,
}

/// What [`Vault::write_import`] wrote.
#[derive(Debug, Clone, Default)]
pub struct Written {
    /// New version of each replaced subject, in order.
    pub versions: Vec<u32>,
    /// Ids of the gifts added to existing subjects, in order.
    pub gift_ids: Vec<Vec<GiftId>>,
}

#[derive(Serialize, Deserialize)]
struct Stash {
    record: Vec<u8>,
    gifts: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Vault {
    /// Seals new subjects (with the ids given) for a later [`Vault::write_import`]: the
    /// CPU-heavy part of a large write, done while an earlier batch is still being applied.
    /// Their data keys are made durable now; if the batch is never written they are keys of
    /// nothing.
    pub fn seal_new(&self, creates: &[NewSubject], ids: &[SubjectId]) -> Result<Sealed> {
        if creates.len() != ids.len() {
            return Err(Error::Corrupt {
                what: "one id per new subject".into(),
            });
        }
        let _gate = self.gate_shared();
        let mut batch = Batch::new();
        self.stage_creates(creates, Some(ids), &mut batch)?;
        Ok(Sealed { batch })
    }

    /// A subject's stored record as it is (encrypted), for an undo journal.
    pub fn raw_record(&self, id: &SubjectId) -> Result<Option<Vec<u8>>> {
        Ok(self.store().get(ks::SUBJECTS, id.as_bytes())?)
    }

    /// The fields of a snapshot taken by [`Vault::raw_record`] (source records included), for
    /// comparing a subject with what it was.
    pub fn open_raw(&self, id: &SubjectId, raw: &[u8]) -> Result<Vec<(FieldId, Value)>> {
        let (_, _, dek) = self.load_subject(id)?;
        Ok(record::open(&dek, raw, id, &ZERO_ID, &|_| true)?.fields)
    }

    /// The version of a live subject.
    pub fn version_of(&self, id: &SubjectId) -> Result<u32> {
        let (_, h, _) = self.load_subject(id)?;
        Ok(h.version)
    }

    /// Creates subjects, replaces others, adds gifts to existing ones and (for a merge) moves
    /// one subject into the merged keyspace, in one atomic, durable batch with `extra` and
    /// with what `journal` returns once the new versions and gift ids are known (an import's
    /// or a merge's undo journal): nothing of it is written without the rest.
    pub fn write_import(
        &self,
        writes: Writes<'_>,
        extra: Batch,
        journal: &dyn Fn(&Written) -> Batch,
    ) -> Result<Written> {
        let Writes {
            creates,
            replaces,
            gifts,
            absorb,
        } = writes;
        let _gate = self.gate_shared();
        let _rmw = self.rmw_lock()?;
        let mut batch = Batch::new();
        let mut out = Written::default();
        for r in replaces {
            let (bytes, _, dek) = self.load_subject(&r.id)?;
            let opened = record::open(&dek, &bytes, &r.id, &ZERO_ID, &|_| true)?;
            if let Some(expected) = r.expected_version {
                if expected != opened.header.version {
                    return Err(Error::Conflict {
                        subject: r.id,
                        expected,
                        found: opened.header.version,
                    });
                }
            }
            let v = self.stage_record(
                &r.id,
                &dek,
                &opened.header,
                &opened.fields,
                r.fields.clone(),
                &mut batch,
            )?;
            out.versions.push(v);
        }
        for (id, list) in gifts {
            let (_, h, dek) = self.load_subject(id)?;
            let random = self.random(list.len() * 22)?;
            let ms = crate::vault::now_ms();
            let mut added = Vec::with_capacity(list.len());
            for (gift, r) in list.iter().zip(random.chunks(22)) {
                let gid = self.new_gift_id(ms, r);
                let nonce: [u8; 12] = r[10..].try_into().expect("12 bytes");
                self.put_gift(&mut batch, &dek, id, h.slot, gid, nonce, gift);
                added.push(gid);
            }
            out.gift_ids.push(added);
        }
        batch.extend(creates.batch);
        if let Some((keep, gone)) = absorb {
            self.stage_absorb(&keep, &gone, &mut batch)?;
        }
        batch.extend(extra);
        batch.extend(journal(&out));
        self.apply_durably(batch)?;
        Ok(out)
    }

    /// Puts a snapshot back: the subject's record becomes `raw` again (with its index
    /// entries), refusing unless the subject is now at `expected_version`.
    pub fn restore_raw(
        &self,
        id: &SubjectId,
        raw: &[u8],
        expected_version: Option<u32>,
        extra: Batch,
    ) -> Result<()> {
        let _gate = self.gate_shared();
        let _rmw = self.rmw_lock()?;
        let (bytes, h, dek) = self.load_subject(id)?;
        if let Some(expected) = expected_version {
            if expected != h.version {
                return Err(Error::Conflict {
                    subject: *id,
                    expected,
                    found: h.version,
                });
            }
        }
        let now = record::open(&dek, &bytes, id, &ZERO_ID, &|_| true)?;
        let then = record::open(&dek, raw, id, &ZERO_ID, &|_| true)?;
        let old: BTreeSet<Vec<u8>> = self.index_entries(id, &now.fields).into_iter().collect();
        let new: BTreeSet<Vec<u8>> = self.index_entries(id, &then.fields).into_iter().collect();
        let mut batch = Batch::new();
        batch.put(ks::SUBJECTS, id.as_bytes().to_vec(), raw.to_vec());
        for k in old.difference(&new) {
            batch.delete(ks::INDEX, k.clone());
        }
        for k in new.difference(&old) {
            batch.put(ks::INDEX, k.clone(), Vec::new());
        }
        batch.extend(extra);
        self.apply_durably(batch)
    }

    /// Removes gifts (added by an import being undone).
    pub fn delete_gifts(&self, subject: &SubjectId, gifts: &[GiftId], batch: &mut Batch) {
        for g in gifts {
            let mut key = subject.as_bytes().to_vec();
            key.extend_from_slice(g.as_bytes());
            batch.delete(ks::GIFTS, key);
        }
    }

    /// Takes back subjects an import created: their keys are shredded and their records,
    /// gifts, interactions and index entries deleted, with no tombstone and no suppression entry (the
    /// people did not ask for anything; the import is simply undone).
    pub fn discard_subjects(&self, ids: &[SubjectId], extra: Batch) -> Result<()> {
        let _gate = self.gate_shared();
        let _rmw = self.rmw_lock()?;
        let mut batch = Batch::new();
        let mut slots = Vec::new();
        for id in ids {
            let Some(bytes) = self.store().get(ks::SUBJECTS, id.as_bytes())? else {
                continue;
            };
            let (h, _) = record::header(&bytes)?;
            let dek = self.dek_for(id, h.slot)?;
            let opened = record::open(&dek, &bytes, id, &ZERO_ID, &|_| true)?;
            for k in self.index_entries(id, &opened.fields) {
                batch.delete(ks::INDEX, k);
            }
            batch.delete(ks::SUBJECTS, id.as_bytes().to_vec());
            for entry in self.store().scan_prefix(ks::GIFTS, id.as_bytes()) {
                batch.delete(ks::GIFTS, entry?.0);
            }
            self.stage_delete_interactions(id, &mut batch)?;
            slots.push(h.slot);
        }
        self.slots_ref().shred_all(&slots)?;
        batch.extend(extra);
        self.apply_durably(batch)
    }

    /// Moves `gone` into the merged keyspace under `keep`: its record and gifts, still
    /// encrypted under its own key (so the merge can be undone), leave the subject list and the
    /// indexes. Part of [`Vault::write_import`]'s batch, after `keep` got the merged fields.
    fn stage_absorb(&self, keep: &SubjectId, gone: &SubjectId, batch: &mut Batch) -> Result<()> {
        let (bytes, _, dek) = self.load_subject(gone)?;
        let opened = record::open(&dek, &bytes, gone, &ZERO_ID, &|_| true)?;
        for k in self.index_entries(gone, &opened.fields) {
            batch.delete(ks::INDEX, k);
        }
        let mut gifts = Vec::new();
        for entry in self.store().scan_prefix(ks::GIFTS, gone.as_bytes()) {
            let (k, v) = entry?;
            batch.delete(ks::GIFTS, k.clone());
            gifts.push((k, v));
        }
        batch.delete(ks::SUBJECTS, gone.as_bytes().to_vec());
        let stash = Stash {
            record: bytes,
            gifts,
        };
        batch.put(
            ks::MERGED,
            merged_key(keep, gone),
            serde_json::to_vec(&stash).expect("stash serialises"),
        );
        Ok(())
    }

    /// The subjects merged into `keep` and not taken back out (by a merge's undo).
    pub fn merged_into(&self, keep: &SubjectId) -> Result<Vec<SubjectId>> {
        let mut out = Vec::new();
        for entry in self.store().scan_prefix(ks::MERGED, keep.as_bytes()) {
            let (k, _) = entry?;
            if let Some(gone) = k.get(16..32).and_then(SubjectId::from_slice) {
                out.push(gone);
            }
        }
        Ok(out)
    }

    /// Undoes a merge's move of `gone` (see [`Writes::absorb`]): `gone` comes back exactly as it was.
    pub fn unabsorb(&self, keep: &SubjectId, gone: &SubjectId, extra: Batch) -> Result<()> {
        let _gate = self.gate_shared();
        let _rmw = self.rmw_lock()?;
        let key = merged_key(keep, gone);
        let Some(v) = self.store().get(ks::MERGED, &key)? else {
            return Err(Error::NotFound(*gone));
        };
        let stash: Stash = serde_json::from_slice(&v).map_err(|_| Error::Corrupt {
            what: "merged subject".into(),
        })?;
        let (h, _) = record::header(&stash.record)?;
        let dek = self.dek_for(gone, h.slot)?;
        let opened = record::open(&dek, &stash.record, gone, &ZERO_ID, &|_| true)?;
        let mut batch = Batch::new();
        batch.put(ks::SUBJECTS, gone.as_bytes().to_vec(), stash.record.clone());
        for k in self.index_entries(gone, &opened.fields) {
            batch.put(ks::INDEX, k, Vec::new());
        }
        for (k, v) in stash.gifts {
            batch.put(ks::GIFTS, k, v);
        }
        batch.delete(ks::MERGED, key);
        batch.extend(extra);
        self.apply_durably(batch)
    }

    /// Writes every live subject's index entries again (blind indexes and blocking keys),
    /// in durable steps of `step` subjects: for subjects stored before the blocking keys
    /// existed, or after the keys' definition changed. Blocking-key entries are first all
    /// removed (also those of keys no longer kept, which an erasure could not find again);
    /// blind-index entries are only added. Returns the number of subjects read.
    pub fn reindex(&self, step: usize) -> Result<u64> {
        let step = step.max(1);
        let prefix = MATCH_FIELD.0.to_be_bytes();
        loop {
            let _gate = self.gate_shared();
            let mut batch = Batch::new();
            for entry in self.store().scan_prefix(ks::INDEX, &prefix).take(step * 4) {
                batch.delete(ks::INDEX, entry?.0);
            }
            if batch.is_empty() {
                break;
            }
            self.apply_durably(batch)?;
        }
        let mut after: Option<SubjectId> = None;
        let mut done = 0u64;
        loop {
            let ids = self.list_subjects(after.as_ref(), step)?;
            if ids.is_empty() {
                return Ok(done);
            }
            let _gate = self.gate_shared();
            let mut batch = Batch::new();
            for id in &ids {
                let (bytes, _, dek) = match self.load_subject(id) {
                    Ok(x) => x,
                    Err(Error::NotFound(_)) | Err(Error::Erased(_)) => continue,
                    Err(e) => return Err(e),
                };
                let opened = record::open(&dek, &bytes, id, &ZERO_ID, &|_| true)?;
                for k in self.index_entries(id, &opened.fields) {
                    batch.put(ks::INDEX, k, Vec::new());
                }
            }
            self.apply_durably(batch)?;
            done += ids.len() as u64;
            after = ids.last().copied();
        }
    }

    /// Slots of subjects merged into `keep`, and their stash keys: an erasure of `keep`
    /// shreds them too.
    pub(crate) fn absorbed(&self, keep: &SubjectId) -> Result<Vec<(u64, Vec<u8>)>> {
        let mut out = Vec::new();
        for entry in self.store().scan_prefix(ks::MERGED, keep.as_bytes()) {
            let (k, v) = entry?;
            if let Ok(stash) = serde_json::from_slice::<Stash>(&v) {
                if let Ok((h, _)) = record::header(&stash.record) {
                    out.push((h.slot, k));
                    continue;
                }
            }
            out.push((u64::MAX, k));
        }
        Ok(out)
    }
}

fn merged_key(keep: &SubjectId, gone: &SubjectId) -> Vec<u8> {
    let mut k = keep.as_bytes().to_vec();
    k.extend_from_slice(gone.as_bytes());
    k
}
