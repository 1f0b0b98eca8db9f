//! Legal holds: the minimum of an erased subject's data that the law obliges the controller
//! to keep (e.g. Gift Aid declarations and the donations they cover), re-encrypted under a
//! fresh hold key of its own until a computed date, then shredded by the retention sweep.
//!
//! The hold key lives in the slot file like any data key, so shredding it is the same
//! overwrite in place; the held record carries the record id `HOLD` in its additional data,
//! so it cannot be passed off as the subject's profile.

use domain::{FieldId, GiftId, SubjectId, Value};
use ring::aead::{self, LessSafeKey, UnboundKey, NONCE_LEN};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::record::{self, Header};
use crate::slots::{HALF, SLOT};
use crate::store::{keyspaces as ks, Batch};
use crate::vault::Vault;

const HOLD_ID: [u8; 16] = *b"HOLD\0\0\0\0\0\0\0\0\0\0\0\0";

/// What a hold keeps, and until when.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HoldInfo {
    /// The hold's name (from retention.toml).
    pub hold: String,
    /// Why (the legal basis, in words).
    pub reason: String,
    /// Kept until this day (YYYY-MM-DD); the sweep shreds it after.
    pub until: String,
    /// The slot of the hold key.
    slot: u64,
    /// Names of the fields kept (for certificates).
    pub fields: Vec<String>,
    /// Number of gifts kept.
    pub gifts: usize,
}

/// Held data, decrypted.
#[derive(Debug, Clone)]
pub struct HeldData {
    /// What and until when.
    pub info: HoldInfo,
    /// The held profile fields.
    pub fields: Vec<(FieldId, Value)>,
    /// The held gifts.
    pub gifts: Vec<(GiftId, Vec<(FieldId, Value)>)>,
}

/// Chooses the gifts a hold covers, from their fields.
pub type KeepGift<'a> = dyn Fn(&[(FieldId, Value)]) -> bool + 'a;

/// A hold to place at erasure.
#[derive(Debug, Clone)]
pub struct HoldRequest {
    /// Name.
    pub hold: String,
    /// Legal basis in words.
    pub reason: String,
    /// Until (YYYY-MM-DD).
    pub until: String,
    /// Profile fields to keep.
    pub fields: Vec<FieldId>,
    /// Gift fields to keep; only gifts `keep_gift` accepts are kept.
    pub gift_fields: Vec<FieldId>,
    /// Names for the certificate.
    pub field_names: Vec<String>,
}

impl Vault {
    /// Re-encrypts the held minimum of a subject under a fresh hold key, in `batch` (applied
    /// with the erasure). `keep_gift` chooses the gifts the hold covers.
    pub(crate) fn place_hold(
        &self,
        id: &SubjectId,
        fields: &[(FieldId, Value)],
        gifts: &[(GiftId, Vec<(FieldId, Value)>)],
        hold: &HoldRequest,
        keep_gift: &KeepGift<'_>,
        batch: &mut Batch,
    ) -> Result<HoldInfo> {
        let random = self.random_bytes(32 + 12 + NONCE_LEN * (1 + gifts.len()))?;
        let dek_bytes = &random[..32];
        let half = self.wrap_dek_pub(id, dek_bytes, &random[32..44]);
        let mut slot = Vec::with_capacity(SLOT);
        slot.extend_from_slice(id.as_bytes());
        slot.extend_from_slice(&half);
        slot.extend_from_slice(&[0u8; HALF]);
        let slot_no = self.slots_ref().append(&slot)?;
        let dek =
            LessSafeKey::new(UnboundKey::new(&aead::AES_256_GCM, dek_bytes).expect("32-byte key"));
        let kept: Vec<(FieldId, Value)> = fields
            .iter()
            .filter(|(f, _)| hold.fields.contains(f))
            .cloned()
            .collect();
        let nonce = |i: usize| -> [u8; NONCE_LEN] {
            random[44 + i * NONCE_LEN..44 + (i + 1) * NONCE_LEN]
                .try_into()
                .expect("12 bytes")
        };
        let header = Header {
            kind: 0,
            slot: slot_no,
            version: 1,
            nonce_base: nonce(0),
        };
        batch.put(
            ks::HOLDS,
            hold_key(id, &HOLD_ID),
            record::seal(&dek, &header, id, &HOLD_ID, &kept),
        );
        let mut n_gifts = 0;
        for (i, (gid, gfields)) in gifts.iter().enumerate() {
            if !keep_gift(gfields) {
                continue;
            }
            let kept: Vec<(FieldId, Value)> = gfields
                .iter()
                .filter(|(f, _)| hold.gift_fields.contains(f))
                .cloned()
                .collect();
            let header = Header {
                kind: 0,
                slot: slot_no,
                version: 1,
                nonce_base: nonce(1 + i),
            };
            batch.put(
                ks::HOLDS,
                hold_key(id, gid.as_bytes()),
                record::seal(&dek, &header, id, gid.as_bytes(), &kept),
            );
            n_gifts += 1;
        }
        let info = HoldInfo {
            hold: hold.hold.clone(),
            reason: hold.reason.clone(),
            until: hold.until.clone(),
            slot: slot_no,
            fields: hold.field_names.clone(),
            gifts: n_gifts,
        };
        batch.put(
            ks::HOLD_INFO,
            id.as_bytes().to_vec(),
            serde_json::to_vec(&info).expect("json"),
        );
        Ok(info)
    }

    /// The held data of an erased subject, if a hold is in force.
    pub fn read_hold(&self, id: &SubjectId) -> Result<Option<HeldData>> {
        let Some(info) = self.hold_info(id)? else {
            return Ok(None);
        };
        let dek = self.hold_dek(id, info.slot)?;
        let mut fields = Vec::new();
        let mut gifts = Vec::new();
        for entry in self.store().scan_prefix(ks::HOLDS, id.as_bytes()) {
            let (k, v) = entry?;
            let rid: [u8; 16] = k[16..32].try_into().map_err(|_| Error::Corrupt {
                what: "hold key".into(),
            })?;
            let opened = record::open(&dek, &v, id, &rid, &|_| true)?;
            if rid == HOLD_ID {
                fields = opened.fields;
            } else {
                gifts.push((GiftId::from_bytes(rid), opened.fields));
            }
        }
        Ok(Some(HeldData {
            info,
            fields,
            gifts,
        }))
    }

    /// The hold of a subject, if any (no decryption).
    pub fn hold_info(&self, id: &SubjectId) -> Result<Option<HoldInfo>> {
        Ok(self
            .store()
            .get(ks::HOLD_INFO, id.as_bytes())?
            .and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// Every hold in force: (subject, info).
    pub fn holds(&self) -> Result<Vec<(SubjectId, HoldInfo)>> {
        let mut out = Vec::new();
        for entry in self.store().scan_prefix(ks::HOLD_INFO, &[]) {
            let (k, v) = entry?;
            if let (Some(id), Ok(info)) = (SubjectId::from_slice(&k), serde_json::from_slice(&v)) {
                out.push((id, info));
            }
        }
        Ok(out)
    }

    /// Ends a hold: shreds the hold key, then deletes the held records.
    pub fn end_hold(&self, id: &SubjectId) -> Result<()> {
        let Some(info) = self.hold_info(id)? else {
            return Ok(());
        };
        self.shred_slot_of(id, info.slot)?;
        let mut batch = Batch::new();
        for entry in self.store().scan_prefix(ks::HOLDS, id.as_bytes()) {
            let (k, _) = entry?;
            batch.delete(ks::HOLDS, k);
        }
        batch.delete(ks::HOLD_INFO, id.as_bytes().to_vec());
        self.store().apply(batch)?;
        self.flush()
    }
}

fn hold_key(id: &SubjectId, record: &[u8; 16]) -> Vec<u8> {
    let mut k = id.as_bytes().to_vec();
    k.extend_from_slice(record);
    k
}
