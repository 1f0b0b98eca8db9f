//! Interactions: one copy per participant, each sealed under that participant's data key, so
//! erasing one participant takes only that copy. The copies are found by interaction id
//! through an index entry per participant (the keyed hash of the id, like a blind index), and
//! the participants' ids travel inside the encrypted record.

use domain::InteractionId;

use super::*;

/// The field id, inside an interaction's sealed record, that holds its participants' ids.
/// Id 0 is reserved in the field catalogue, so no schema field can take it.
const PARTICIPANTS: FieldId = FieldId(0);

/// The blind-index field id under which an interaction's participants are indexed.
pub(crate) const INTERACTION_FIELD: FieldId = FieldId(0xFFFE);

/// An interaction to add: its participants and its fields.
pub type NewInteraction = (Vec<SubjectId>, Vec<(FieldId, Value)>);

/// One participant's decrypted copy of an interaction.
#[derive(Debug, Clone)]
pub struct InteractionRecord {
    /// The interaction's id (the same in every copy).
    pub id: InteractionId,
    /// Whose copy this is.
    pub subject: SubjectId,
    /// Version, incremented on every update.
    pub version: u32,
    /// The fields asked for and present.
    pub fields: Vec<(FieldId, Value)>,
    /// Ids of fields present but not decrypted.
    pub other_fields: Vec<FieldId>,
    /// Every participant when the interaction was last written (some may be erased since).
    pub participants: Vec<SubjectId>,
}

fn interaction_key(subject: &SubjectId, id: &InteractionId) -> Vec<u8> {
    let mut key = Vec::with_capacity(32);
    key.extend_from_slice(subject.as_bytes());
    key.extend_from_slice(id.as_bytes());
    key
}

impl Vault {
    #[allow(clippy::too_many_arguments)]
    fn seal_interaction(
        &self,
        batch: &mut Batch,
        dek: &LessSafeKey,
        subject: &SubjectId,
        slot: u64,
        id: &InteractionId,
        version: u32,
        nonce_base: [u8; NONCE_LEN],
        participants: &[SubjectId],
        fields: &[(FieldId, Value)],
    ) {
        let mut all = Vec::with_capacity(fields.len() + 1);
        all.push((
            PARTICIPANTS,
            Value::Text(
                domain::Text::parse(
                    &participants
                        .iter()
                        .map(SubjectId::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                )
                .expect("ids are short, printable text"),
            ),
        ));
        all.extend(fields.iter().cloned());
        all.sort_by_key(|(f, _)| *f);
        let header = Header {
            kind: 0,
            slot,
            version,
            nonce_base,
        };
        batch.put(
            ks::INTERACTIONS,
            interaction_key(subject, id),
            record::seal(dek, &header, subject, id.as_bytes(), &all),
        );
    }

    /// Adds interactions, each with its participants (existing subjects, at least one), in
    /// one atomic batch with `extra`; returns their ids in order.
    pub fn add_interactions_with(
        &self,
        items: &[NewInteraction],
        extra: Batch,
    ) -> Result<Vec<InteractionId>> {
        let _gate = self.gate_shared();
        let copies: usize = items.iter().map(|(p, _)| p.len()).sum();
        let random = self.random(items.len() * 10 + copies * NONCE_LEN)?;
        let (ids_random, nonces) = random.split_at(items.len() * 10);
        let mut nonces = nonces.chunks(NONCE_LEN);
        let ms = now_ms();
        let mut keys: std::collections::HashMap<SubjectId, (u64, LessSafeKey)> =
            std::collections::HashMap::new();
        let mut batch = Batch::new();
        let mut out = Vec::with_capacity(items.len());
        for ((participants, fields), r) in items.iter().zip(ids_random.chunks(10)) {
            let mut rr = [0u8; 10];
            rr.copy_from_slice(r);
            let id = InteractionId::from_parts(ms, rr);
            for p in participants {
                if !keys.contains_key(p) {
                    let (_, h, dek) = self.load_subject(p)?;
                    keys.insert(*p, (h.slot, dek));
                }
                let (slot, dek) = &keys[p];
                let nonce: [u8; NONCE_LEN] = nonces
                    .next()
                    .expect("one nonce per copy")
                    .try_into()
                    .expect("12 bytes");
                self.seal_interaction(
                    &mut batch,
                    dek,
                    p,
                    *slot,
                    &id,
                    1,
                    nonce,
                    participants,
                    fields,
                );
                batch.put(
                    ks::INDEX,
                    self.index_key(INTERACTION_FIELD, &id.to_string(), p),
                    Vec::new(),
                );
            }
            out.push(id);
        }
        batch.extend(extra);
        self.apply_durably(batch)?;
        Ok(out)
    }

    fn open_interaction(
        &self,
        subject: &SubjectId,
        id: &InteractionId,
        bytes: &[u8],
        dek: &LessSafeKey,
        wanted: &dyn Fn(FieldId) -> bool,
    ) -> Result<InteractionRecord> {
        let opened = record::open(dek, bytes, subject, id.as_bytes(), &|f| {
            f == PARTICIPANTS || wanted(f)
        })?;
        let mut participants = Vec::new();
        let mut fields = Vec::with_capacity(opened.fields.len());
        for (f, v) in opened.fields {
            if f == PARTICIPANTS {
                if let Value::Text(list) = v {
                    participants = list
                        .expose()
                        .split(',')
                        .filter_map(|t| t.parse().ok())
                        .collect();
                }
            } else {
                fields.push((f, v));
            }
        }
        Ok(InteractionRecord {
            id: *id,
            subject: *subject,
            version: opened.header.version,
            fields,
            other_fields: opened.skipped,
            participants,
        })
    }

    /// A subject's copies of its interactions, and those of the records merged into it (kept
    /// as they were at the merge, under the merged record's key), decrypting only the fields
    /// `wanted` accepts, in id order (which is creation order); one copy per interaction, the
    /// subject's own first.
    pub fn list_interactions(
        &self,
        subject: &SubjectId,
        wanted: &dyn Fn(FieldId) -> bool,
    ) -> Result<Vec<InteractionRecord>> {
        let (_, _, dek) = self.load_subject(subject)?;
        let mut out = self.copies_of(subject, &dek, wanted)?;
        for (slot, key) in self.absorbed(subject)? {
            let Some(gone) = key.get(16..32).and_then(SubjectId::from_slice) else {
                continue;
            };
            if slot == u64::MAX {
                continue;
            }
            let dek = self.dek_for(&gone, slot)?;
            for copy in self.copies_of(&gone, &dek, wanted)? {
                if !out.iter().any(|c| c.id == copy.id) {
                    out.push(copy);
                }
            }
        }
        out.sort_by_key(|c| c.id);
        Ok(out)
    }

    fn copies_of(
        &self,
        subject: &SubjectId,
        dek: &LessSafeKey,
        wanted: &dyn Fn(FieldId) -> bool,
    ) -> Result<Vec<InteractionRecord>> {
        let mut out = Vec::new();
        for entry in self.store.scan_prefix(ks::INTERACTIONS, subject.as_bytes()) {
            let (key, value) = entry?;
            let id = InteractionId::from_slice(&key[16..]).ok_or_else(|| Error::Corrupt {
                what: "interaction key".into(),
            })?;
            out.push(self.open_interaction(subject, &id, &value, dek, wanted)?);
        }
        Ok(out)
    }

    /// Every live subject's interactions, in subject-id order: `sink` gets each subject's
    /// copies (the fields `wanted` accepts) at once.
    pub fn scan_interactions(
        &self,
        wanted: &dyn Fn(FieldId) -> bool,
        sink: &mut dyn FnMut(SubjectId, Vec<InteractionRecord>) -> Result<()>,
    ) -> Result<()> {
        // A subject merged into another has no record of its own: its copies go with the
        // merged record (kept as they were) and are passed by here.
        let mut current: Option<(SubjectId, Option<LessSafeKey>)> = None;
        let mut items = Vec::new();
        for entry in self.store.scan_prefix(ks::INTERACTIONS, b"") {
            let (key, value) = entry?;
            let corrupt = || Error::Corrupt {
                what: "interaction key".into(),
            };
            let subject = SubjectId::from_slice(&key).ok_or_else(corrupt)?;
            let id = InteractionId::from_slice(key.get(16..).ok_or_else(corrupt)?)
                .ok_or_else(corrupt)?;
            if current.as_ref().map(|(s, _)| *s) != Some(subject) {
                if let Some((s, Some(_))) = current.take() {
                    sink(s, std::mem::take(&mut items))?;
                }
                let dek = match self.load_subject(&subject) {
                    Ok((_, _, dek)) => Some(dek),
                    Err(Error::NotFound(_) | Error::Erased(_)) => None,
                    Err(e) => return Err(e),
                };
                current = Some((subject, dek));
            }
            if let Some((_, Some(dek))) = current.as_ref() {
                items.push(self.open_interaction(&subject, &id, &value, dek, wanted)?);
            }
        }
        if let Some((s, Some(_))) = current {
            sink(s, items)?;
        }
        Ok(())
    }

    /// The live subjects holding a copy of an interaction now (erased participants have
    /// none; a participant merged into another keeps its copy in the merged record).
    pub fn interaction_holders(&self, id: &InteractionId) -> Result<Vec<SubjectId>> {
        let mut out = Vec::new();
        for s in self.interaction_copies(id)? {
            if self.store.get(ks::SUBJECTS, s.as_bytes())?.is_some() {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// Every subject with a copy of an interaction under its id, merged-away ones included.
    pub fn interaction_copies(&self, id: &InteractionId) -> Result<Vec<SubjectId>> {
        let token = blind_token(
            &self.keys.index_key(INTERACTION_FIELD),
            id.to_string().as_bytes(),
        );
        let mut prefix = Vec::with_capacity(18);
        prefix.extend_from_slice(&INTERACTION_FIELD.0.to_be_bytes());
        prefix.extend_from_slice(&token);
        let mut out = Vec::new();
        for entry in self.store.scan_prefix(ks::INDEX, &prefix) {
            if let Some(s) = SubjectId::from_slice(&entry?.0[18..]) {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// One participant's copy of an interaction.
    pub fn read_interaction(
        &self,
        subject: &SubjectId,
        id: &InteractionId,
        wanted: &dyn Fn(FieldId) -> bool,
    ) -> Result<InteractionRecord> {
        let (_, _, dek) = self.load_subject(subject)?;
        let bytes = self
            .store
            .get(ks::INTERACTIONS, &interaction_key(subject, id))?
            .ok_or_else(|| Error::NoRecord(format!("interaction {id} of subject {subject}")))?;
        self.open_interaction(subject, id, &bytes, &dek, wanted)
    }

    /// Applies a patch (`None` removes a field) to every remaining copy of an interaction, in
    /// one atomic batch with `extra`; refused when `if_version` is given and differs. Returns
    /// the new version.
    pub fn update_interaction_with(
        &self,
        id: &InteractionId,
        patch: &[(FieldId, Option<Value>)],
        if_version: Option<u32>,
        extra: Batch,
    ) -> Result<u32> {
        let _gate = self.gate_shared();
        let _rmw = self.rmw_lock()?;
        let holders = self.interaction_holders(id)?;
        let random = self.random(holders.len() * NONCE_LEN)?;
        let mut batch = Batch::new();
        let mut version = 0;
        for (holder, nonce) in holders.iter().zip(random.chunks(NONCE_LEN)) {
            let (_, h, dek) = self.load_subject(holder)?;
            let Some(bytes) = self
                .store
                .get(ks::INTERACTIONS, &interaction_key(holder, id))?
            else {
                continue;
            };
            let current = self.open_interaction(holder, id, &bytes, &dek, &|_| true)?;
            if let Some(expected) = if_version {
                if expected != current.version {
                    return Err(Error::Conflict {
                        subject: *holder,
                        expected,
                        found: current.version,
                    });
                }
            }
            let mut fields = current.fields;
            for (f, v) in patch {
                fields.retain(|(g, _)| g != f);
                if let Some(v) = v {
                    fields.push((*f, v.clone()));
                }
            }
            version = current.version + 1;
            self.seal_interaction(
                &mut batch,
                &dek,
                holder,
                h.slot,
                id,
                version,
                nonce.try_into().expect("12 bytes"),
                &current.participants,
                &fields,
            );
        }
        if version == 0 {
            return Err(Error::NoRecord(format!("interaction {id}")));
        }
        batch.extend(extra);
        self.apply_durably(batch)?;
        Ok(version)
    }

    /// Deletes one subject's copies of its interactions and their index entries (erasure,
    /// retention): the other participants keep theirs.
    pub(crate) fn stage_delete_interactions(
        &self,
        subject: &SubjectId,
        batch: &mut Batch,
    ) -> Result<()> {
        for entry in self.store.scan_prefix(ks::INTERACTIONS, subject.as_bytes()) {
            let (k, _) = entry?;
            if let Some(id) = InteractionId::from_slice(&k[16..]) {
                batch.delete(
                    ks::INDEX,
                    self.index_key(INTERACTION_FIELD, &id.to_string(), subject),
                );
            }
            batch.delete(ks::INTERACTIONS, k);
        }
        Ok(())
    }

    /// Deletes some of one subject's copies (the retention sweep's old interactions).
    pub fn delete_interactions(
        &self,
        subject: &SubjectId,
        ids: &[InteractionId],
        extra: Batch,
    ) -> Result<()> {
        let _gate = self.gate_shared();
        let mut batch = Batch::new();
        for id in ids {
            batch.delete(
                ks::INDEX,
                self.index_key(INTERACTION_FIELD, &id.to_string(), subject),
            );
            batch.delete(ks::INTERACTIONS, interaction_key(subject, id));
        }
        batch.extend(extra);
        self.apply_durably(batch)
    }
}
