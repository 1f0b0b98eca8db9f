//! Gifts: ids, adding and listing a subject's gifts under its key.

use super::*;

impl Vault {
    pub(crate) fn new_gift_id(&self, ms: u64, random: &[u8]) -> GiftId {
        let mut r = [0u8; 10];
        r.copy_from_slice(&random[..10]);
        GiftId::from_parts(ms, r)
    }
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn put_gift(
        &self,
        batch: &mut Batch,
        dek: &LessSafeKey,
        subject: &SubjectId,
        slot: u64,
        gift: GiftId,
        nonce_base: [u8; NONCE_LEN],
        fields: &[(FieldId, Value)],
    ) {
        let mut fields = fields.to_vec();
        fields.sort_by_key(|(f, _)| *f);
        let header = Header {
            kind: 0,
            slot,
            version: 1,
            nonce_base,
        };
        let mut key = Vec::with_capacity(32);
        key.extend_from_slice(subject.as_bytes());
        key.extend_from_slice(gift.as_bytes());
        batch.put(
            ks::GIFTS,
            key,
            record::seal(dek, &header, subject, gift.as_bytes(), &fields),
        );
    }
    /// Adds gifts to an existing subject; returns their ids.
    pub fn add_gifts(
        &self,
        id: &SubjectId,
        gifts: &[Vec<(FieldId, Value)>],
    ) -> Result<Vec<GiftId>> {
        self.add_gifts_with(id, gifts, Batch::new())
    }
    /// [`Vault::add_gifts`] with `extra` writes in the same atomic batch.
    pub fn add_gifts_with(
        &self,
        id: &SubjectId,
        gifts: &[Vec<(FieldId, Value)>],
        extra: Batch,
    ) -> Result<Vec<GiftId>> {
        let _gate = self.gate.read().expect("write gate");
        let (_, h, dek) = self.load_subject(id)?;
        let random = self.random(gifts.len() * (10 + NONCE_LEN))?;
        let ms = now_ms();
        let mut batch = Batch::new();
        let mut out = Vec::with_capacity(gifts.len());
        for (gift, r) in gifts.iter().zip(random.chunks(10 + NONCE_LEN)) {
            let gid = self.new_gift_id(ms, r);
            self.put_gift(
                &mut batch,
                &dek,
                id,
                h.slot,
                gid,
                r[10..].try_into().expect("12 bytes"),
                gift,
            );
            out.push(gid);
        }
        batch.extend(extra);
        self.store.apply(batch)?;
        self.store.flush()?;
        Ok(out)
    }
    /// All gifts of a subject, oldest first.
    pub fn list_gifts(&self, id: &SubjectId) -> Result<Vec<GiftRecord>> {
        let (_, _, dek) = self.load_subject(id)?;
        let mut out = Vec::new();
        for entry in self.store.scan_prefix(ks::GIFTS, id.as_bytes()) {
            let (key, value) = entry?;
            let gid = GiftId::from_slice(&key[16..]).ok_or_else(|| Error::Corrupt {
                what: "gift key".into(),
            })?;
            let opened = record::open(&dek, &value, id, gid.as_bytes(), &|_| true)?;
            out.push(GiftRecord {
                id: gid,
                fields: opened.fields,
            });
        }
        Ok(out)
    }
}

impl Vault {
    /// Every gift of every live subject, in subject-id order: `sink` gets each subject's
    /// gifts (the fields `wanted` accepts) at once. One data key is unwrapped per subject.
    pub fn scan_gifts(
        &self,
        wanted: &dyn Fn(FieldId) -> bool,
        sink: &mut dyn FnMut(SubjectId, Vec<GiftRecord>) -> Result<()>,
    ) -> Result<()> {
        let mut current: Option<(SubjectId, LessSafeKey)> = None;
        let mut gifts: Vec<GiftRecord> = Vec::new();
        for entry in self.store.scan_prefix(ks::GIFTS, b"") {
            let (key, value) = entry?;
            let corrupt = || Error::Corrupt {
                what: "gift key".into(),
            };
            let subject = SubjectId::from_slice(&key).ok_or_else(corrupt)?;
            let gid = GiftId::from_slice(key.get(16..).ok_or_else(corrupt)?).ok_or_else(corrupt)?;
            if current.as_ref().map(|(s, _)| *s) != Some(subject) {
                if let Some((s, _)) = current.take() {
                    sink(s, std::mem::take(&mut gifts))?;
                }
                let (_, _, dek) = self.load_subject(&subject)?;
                current = Some((subject, dek));
            }
            let (_, dek) = current.as_ref().expect("set above");
            let opened = record::open(dek, &value, &subject, gid.as_bytes(), wanted)?;
            gifts.push(GiftRecord {
                id: gid,
                fields: opened.fields,
            });
        }
        if let Some((s, _)) = current {
            sink(s, gifts)?;
        }
        Ok(())
    }
}
