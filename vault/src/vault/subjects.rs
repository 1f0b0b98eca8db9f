//! Subjects: ids, creating, reading, updating, listing; their encrypted records.

use super::*;

impl Vault {
    /// Creates subjects (with their gifts) in one atomic batch and returns their ids, in order.
    pub fn create_subjects(&self, items: &[NewSubject]) -> Result<Vec<SubjectId>> {
        self.create_subjects_with(items, None, Batch::new())
    }
    /// Fresh subject ids, for callers that must name subjects before creating them (the
    /// audit event of a creation is written in the same batch as the records).
    pub fn new_subject_ids(&self, n: usize) -> Result<Vec<SubjectId>> {
        let random = self.random(n * 10)?;
        let ms = now_ms();
        Ok(random
            .chunks(10)
            .map(|r| SubjectId::from_parts(ms, r.try_into().expect("10 bytes")))
            .collect())
    }
    /// [`Vault::create_subjects`] with ids chosen by the caller (from
    /// [`Vault::new_subject_ids`]) and `extra` writes applied in the same atomic batch.
    pub fn create_subjects_with(
        &self,
        items: &[NewSubject],
        given_ids: Option<&[SubjectId]>,
        extra: Batch,
    ) -> Result<Vec<SubjectId>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        if given_ids.is_some_and(|g| g.len() != items.len()) {
            return Err(Error::Corrupt {
                what: "one id per new subject".into(),
            });
        }
        let _gate = self.gate.read().expect("write gate");
        let mut batch = Batch::new();
        let ids = self.stage_creates(items, given_ids, &mut batch)?;
        batch.extend(extra);
        self.store.apply(batch)?;
        self.store.flush()?;
        Ok(ids)
    }
    /// Allocates (durably) the data keys of new subjects and puts their records, index
    /// entries and gifts into `batch`. The caller holds the write gate and applies the batch.
    pub(crate) fn stage_creates(
        &self,
        items: &[NewSubject],
        given_ids: Option<&[SubjectId]>,
        batch: &mut Batch,
    ) -> Result<Vec<SubjectId>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let version = self.kek_version.load(Ordering::SeqCst);
        // One call to the system generator per batch: per subject an id (10), a data key
        // (32), a wrapping nonce (12) and a record nonce base (12); per gift 22.
        let n_gifts: usize = items.iter().map(|s| s.gifts.len()).sum();
        let per_subject = 10 + KEY_LEN + 12 + NONCE_LEN;
        let random = self.random(items.len() * per_subject + n_gifts * (10 + NONCE_LEN))?;
        let ms = now_ms();
        let mut ids = Vec::with_capacity(items.len());
        let mut slot_bytes = Vec::with_capacity(items.len() * SLOT);
        let mut deks = Vec::with_capacity(items.len());
        for (i, _) in items.iter().enumerate() {
            let r = &random[i * per_subject..(i + 1) * per_subject];
            let mut idr = [0u8; 10];
            idr.copy_from_slice(&r[..10]);
            let id = match given_ids {
                Some(given) => given[i],
                None => SubjectId::from_parts(ms, idr),
            };
            let dek = &r[10..10 + KEY_LEN];
            let half = self.wrap_dek(&id, dek, &r[10 + KEY_LEN..22 + KEY_LEN], version);
            slot_bytes.extend_from_slice(id.as_bytes());
            slot_bytes.extend_from_slice(&half);
            slot_bytes.extend_from_slice(&[0u8; HALF]);
            deks.push(LessSafeKey::new(
                UnboundKey::new(&aead::AES_256_GCM, dek).expect("32-byte key"),
            ));
            ids.push(id);
        }
        // Data keys are durable before any record that needs them.
        let first_slot = self.slots.append(&slot_bytes)?;
        // Sealing and keyed hashes are the CPU part of a large create: done on every core,
        // one batch part per subject, joined in order.
        let gift_random = &random[items.len() * per_subject..];
        let mut gift_offsets = Vec::with_capacity(items.len());
        let mut offset = 0;
        for item in items {
            gift_offsets.push(offset);
            offset += item.gifts.len() * (10 + NONCE_LEN);
        }
        let positions: Vec<usize> = (0..items.len()).collect();
        let parts = domain::par_map(&positions, |&i| {
            let item = &items[i];
            let mut part = Batch::new();
            let id = &ids[i];
            let r = &random[i * per_subject..(i + 1) * per_subject];
            let mut fields = item.fields.clone();
            fields.sort_by_key(|(f, _)| *f);
            let header = Header {
                kind: item.kind.code(),
                slot: first_slot + i as u64,
                version: 1,
                nonce_base: r[22 + KEY_LEN..].try_into().expect("12 bytes"),
            };
            part.put(
                ks::SUBJECTS,
                id.as_bytes().to_vec(),
                record::seal(&deks[i], &header, id, &ZERO_ID, &fields),
            );
            for key in self.index_entries(id, &fields) {
                part.put(ks::INDEX, key, Vec::new());
            }
            let mut g = &gift_random[gift_offsets[i]..];
            for gift in &item.gifts {
                let (r, rest) = g.split_at(10 + NONCE_LEN);
                g = rest;
                let gid = self.new_gift_id(ms, r);
                self.put_gift(
                    &mut part,
                    &deks[i],
                    id,
                    header.slot,
                    gid,
                    r[10..].try_into().expect("12 bytes"),
                    gift,
                );
            }
            part
        });
        for part in parts {
            batch.extend(part);
        }
        Ok(ids)
    }
    /// A live subject's stored record, its clear header and its unwrapped DEK; for a
    /// missing subject, the error [`Vault::missing`] chooses.
    pub(crate) fn load_subject(
        &self,
        id: &SubjectId,
    ) -> Result<(Vec<u8>, record::Header, LessSafeKey)> {
        let Some(bytes) = self.store.get(ks::SUBJECTS, id.as_bytes())? else {
            return Err(self.missing(id)?);
        };
        let (h, _) = record::header(&bytes)?;
        let dek = self.dek_for(id, h.slot)?;
        Ok((bytes, h, dek))
    }
    pub(super) fn missing(&self, id: &SubjectId) -> Result<Error> {
        Ok(if self.store.get(ks::ERASED, id.as_bytes())?.is_some() {
            Error::Erased(*id)
        } else {
            Error::NotFound(*id)
        })
    }
    /// Reads a subject, decrypting only the fields `wanted` accepts.
    pub fn read_subject(
        &self,
        id: &SubjectId,
        wanted: &dyn Fn(FieldId) -> bool,
    ) -> Result<SubjectRecord> {
        let (bytes, _, dek) = self.load_subject(id)?;
        let record::Opened {
            header: h,
            fields,
            skipped: mut other_fields,
        } = record::open(&dek, &bytes, id, &ZERO_ID, &|f| {
            f != crate::sources::SOURCES && wanted(f)
        })?;
        other_fields.retain(|f| *f != crate::sources::SOURCES);
        Ok(SubjectRecord {
            id: *id,
            kind: SubjectKind::from_code(h.kind).ok_or_else(|| Error::Corrupt {
                what: format!("kind of subject {id}"),
            })?,
            version: h.version,
            fields,
            other_fields,
        })
    }
    /// A subject's fields with its source records (the reserved [`crate::sources::SOURCES`]
    /// field, absent when none were kept), for the matcher and for whoever replaces the
    /// profile whole and must carry them on.
    pub fn read_with_sources(&self, id: &SubjectId) -> Result<SubjectRecord> {
        let (bytes, _, dek) = self.load_subject(id)?;
        let opened = record::open(&dek, &bytes, id, &ZERO_ID, &|_| true)?;
        Ok(SubjectRecord {
            id: *id,
            kind: SubjectKind::from_code(opened.header.kind).ok_or_else(|| Error::Corrupt {
                what: format!("kind of subject {id}"),
            })?,
            version: opened.header.version,
            fields: opened.fields,
            other_fields: Vec::new(),
        })
    }
    /// True when a subject exists and is not erased.
    pub fn exists(&self, id: &SubjectId) -> Result<bool> {
        Ok(self.store.get(ks::SUBJECTS, id.as_bytes())?.is_some())
    }
    /// Applies a patch (`None` removes a field); returns the new version. With
    /// `expected_version`, refuses if the subject changed since.
    pub fn update_subject(
        &self,
        id: &SubjectId,
        patch: &[(FieldId, Option<Value>)],
        expected_version: Option<u32>,
    ) -> Result<u32> {
        self.update_subject_with(id, patch, expected_version, Batch::new())
    }
    /// [`Vault::update_subject`] with `extra` writes in the same atomic batch.
    pub fn update_subject_with(
        &self,
        id: &SubjectId,
        patch: &[(FieldId, Option<Value>)],
        expected_version: Option<u32>,
        extra: Batch,
    ) -> Result<u32> {
        let _gate = self.gate.read().expect("write gate");
        let _rmw = self.rmw_lock()?;
        let (bytes, _, dek) = self.load_subject(id)?;
        let record::Opened {
            header: h,
            mut fields,
            ..
        } = record::open(&dek, &bytes, id, &ZERO_ID, &|_| true)?;
        if let Some(expected) = expected_version {
            if expected != h.version {
                return Err(Error::Conflict {
                    subject: *id,
                    expected,
                    found: h.version,
                });
            }
        }
        let old_fields = fields.clone();
        for (field, value) in patch {
            fields.retain(|(f, _)| f != field);
            if let Some(v) = value {
                fields.push((*field, v.clone()));
            }
        }
        let mut batch = Batch::new();
        let version = self.stage_record(id, &dek, &h, &old_fields, fields, &mut batch)?;
        batch.extend(extra);
        self.store.apply(batch)?;
        self.store.flush()?;
        Ok(version)
    }
    /// Puts a subject's new record (next version, fresh nonces) and the index entries that
    /// changed between `old_fields` and `fields` into `batch`; returns the new version.
    pub(crate) fn stage_record(
        &self,
        id: &SubjectId,
        dek: &LessSafeKey,
        old: &Header,
        old_fields: &[(FieldId, Value)],
        mut fields: Vec<(FieldId, Value)>,
        batch: &mut Batch,
    ) -> Result<u32> {
        // Source records go on unless the new fields say what they are now.
        let sources = crate::sources::SOURCES;
        if !fields.iter().any(|(f, _)| *f == sources) {
            if let Some(kept) = old_fields.iter().find(|(f, _)| *f == sources) {
                fields.push(kept.clone());
            }
        }
        fields.sort_by_key(|(f, _)| *f);
        let old_index: BTreeSet<Vec<u8>> = self.index_entries(id, old_fields).into_iter().collect();
        let new_index: BTreeSet<Vec<u8>> = self.index_entries(id, &fields).into_iter().collect();
        let nonce = self.random(NONCE_LEN)?;
        let header = Header {
            kind: old.kind,
            slot: old.slot,
            version: old.version + 1,
            nonce_base: nonce.as_slice().try_into().expect("12 bytes"),
        };
        batch.put(
            ks::SUBJECTS,
            id.as_bytes().to_vec(),
            record::seal(dek, &header, id, &ZERO_ID, &fields),
        );
        for gone in old_index.difference(&new_index) {
            batch.delete(ks::INDEX, gone.clone());
        }
        for added in new_index.difference(&old_index) {
            batch.put(ks::INDEX, added.clone(), Vec::new());
        }
        Ok(header.version)
    }
    /// Subject ids in creation order, after `after`, at most `limit`.
    pub fn list_subjects(&self, after: Option<&SubjectId>, limit: usize) -> Result<Vec<SubjectId>> {
        let start = after.map(|a| a.as_bytes().to_vec()).unwrap_or_default();
        let mut out = Vec::with_capacity(limit.min(1024));
        for entry in self.store.scan_from(ks::SUBJECTS, &start) {
            let (k, _) = entry?;
            let id = SubjectId::from_slice(&k).ok_or_else(|| Error::Corrupt {
                what: "subject key".into(),
            })?;
            if Some(&id) == after {
                continue;
            }
            out.push(id);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
    /// True when the subject was erased (a tombstone exists).
    pub fn is_erased(&self, id: &SubjectId) -> Result<bool> {
        Ok(self.store.get(ks::ERASED, id.as_bytes())?.is_some())
    }
    /// Counts for diagnostics.
    pub fn stats(&self) -> Result<VaultStats> {
        Ok(VaultStats {
            key_slots: self.slots.len()?,
            store_bytes: self.store.size_on_disk()?,
            kek_version: self.kek_version.load(Ordering::SeqCst),
        })
    }
}
