//! Blind indexes, match keys and the suppression list: exact lookups by keyed hashes.

use super::*;

impl Vault {
    pub(super) fn index_key(&self, field: FieldId, term: &str, subject: &SubjectId) -> Vec<u8> {
        let token = blind_token(&self.keys.index_key(field), term.as_bytes());
        let mut k = Vec::with_capacity(34);
        k.extend_from_slice(&field.0.to_be_bytes());
        k.extend_from_slice(&token);
        k.extend_from_slice(subject.as_bytes());
        k
    }
    pub(crate) fn index_entries(
        &self,
        subject: &SubjectId,
        fields: &[(FieldId, Value)],
    ) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = fields
            .iter()
            .filter_map(|(id, v)| {
                let def = self.schema.field_by_id(RecordKind::Subject, *id)?;
                match def.index {
                    IndexKind::None => None,
                    // Names are looked up by their search key, not as written.
                    IndexKind::Name => {
                        let key = domain::name_key(v.index_term()?);
                        (!key.is_empty()).then(|| self.index_key(*id, &key, subject))
                    }
                    IndexKind::Ref => match v {
                        Value::Ref(target) => {
                            Some(self.index_key(*id, &target.to_string(), subject))
                        }
                        _ => None,
                    },
                    _ => Some(self.index_key(*id, v.index_term()?, subject)),
                }
            })
            .collect();
        if let Some(keys) = self.match_keys.read().expect("match keys").as_ref() {
            for k in keys(fields) {
                out.push(self.index_key(MATCH_FIELD, &k, subject));
            }
        }
        out.sort();
        out.dedup();
        out
    }
    /// Sets how blocking keys are computed from a subject's fields (the hub's matcher).
    pub fn set_match_keys(&self, keys: MatchKeys) {
        *self.match_keys.write().expect("match keys") = Some(keys);
    }
    /// Subjects holding a blocking key (looked up by its keyed hash), at most `limit + 1` so
    /// the caller can tell an over-full block.
    pub fn match_candidates(&self, key: &str, limit: usize) -> Result<Vec<SubjectId>> {
        let token = blind_token(&self.keys.index_key(MATCH_FIELD), key.as_bytes());
        let mut prefix = Vec::with_capacity(18);
        prefix.extend_from_slice(&MATCH_FIELD.0.to_be_bytes());
        prefix.extend_from_slice(&token);
        let mut out = Vec::new();
        for entry in self.store.scan_prefix(ks::INDEX, &prefix) {
            let (k, _) = entry?;
            if let Some(id) = SubjectId::from_slice(&k[18..]) {
                out.push(id);
            }
            if out.len() > limit {
                break;
            }
        }
        Ok(out)
    }
    pub(super) fn suppression_key(&self, kind: IndexKind, term: &str) -> [u8; 32] {
        self.keys.keyed_hash(
            "suppression",
            format!("{}:{term}", kind.as_str()).as_bytes(),
        )
    }
    /// The whole suppression list (keyed hashes), read once for a bulk import: one lookup per
    /// new subject in a store of a million would cost more than the list's few entries.
    pub fn suppression_list(&self) -> Result<SuppressionList> {
        let mut keys = std::collections::HashSet::new();
        for entry in self.store.scan_prefix(ks::SUPPRESSION, b"") {
            keys.insert(entry?.0);
        }
        Ok(SuppressionList { keys })
    }
    /// True when `list` (read by [`Vault::suppression_list`]) holds this email or phone.
    pub fn listed(&self, list: &SuppressionList, kind: IndexKind, term: &str) -> bool {
        !list.keys.is_empty()
            && list
                .keys
                .contains(self.suppression_key(kind, term).as_slice())
    }
    /// True when an erased subject had this normalised email or phone: the person asked to be
    /// forgotten and must not be re-added to marketing.
    pub fn is_suppressed(&self, kind: IndexKind, term: &str) -> Result<bool> {
        Ok(self
            .store
            .get(ks::SUPPRESSION, &self.suppression_key(kind, term))?
            .is_some())
    }
    /// Subjects whose indexed fields of this kind hold `term` (already normalised).
    pub fn lookup(&self, kind: IndexKind, term: &str) -> Result<Vec<SubjectId>> {
        let mut out = BTreeSet::new();
        for def in self.schema.indexed_fields(kind) {
            let token = blind_token(&self.keys.index_key(def.id), term.as_bytes());
            let mut prefix = Vec::with_capacity(18);
            prefix.extend_from_slice(&def.id.0.to_be_bytes());
            prefix.extend_from_slice(&token);
            for entry in self.store.scan_prefix(ks::INDEX, &prefix) {
                let (k, _) = entry?;
                if let Some(id) = SubjectId::from_slice(&k[18..]) {
                    out.insert(id);
                }
            }
        }
        Ok(out.into_iter().collect())
    }
}
