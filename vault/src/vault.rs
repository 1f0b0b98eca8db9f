//! The vault: subjects and gifts encrypted under per-subject data keys, blind indexes,
//! crypto-shredding and KEK rotation, over a [`Store`].

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use domain::{FieldId, GiftId, IndexKind, RecordKind, Schema, SubjectId, SubjectKind, Value};
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::holds::{HoldInfo, HoldRequest};
use crate::keys::{blind_token, KeyRing, MasterSecret, KEY_LEN};
use crate::record::{self, Header, TAG_LEN};
use crate::seal::{self, SealInfo, SealTo, Unlock};
use crate::slots::{Slots, HALF, SLOT};
use crate::store::{keyspaces as ks, Batch, SledOptions, SledStore, Store, StoreError};

pub(crate) const ZERO_ID: [u8; 16] = [0u8; 16];
const META_KEK: &[u8] = b"kek.current";
const META_ROTATION: &[u8] = b"kek.rotation";

/// File names inside a data directory.
pub mod layout {
    /// Sealed master secret.
    pub const MASTER: &str = "keys/master.age";
    /// How the master secret is sealed.
    pub const SEAL: &str = "keys/seal.toml";
    /// Wrapped data keys.
    pub const SLOTS: &str = "keys/deks.slots";
    /// sled's directory.
    pub const STORE: &str = "store";
    /// Advisory lock held by the process that has the directory open.
    pub const LOCK: &str = "steward.lock";
    /// Who holds the lock, written by that process.
    pub const OWNER: &str = "steward.owner";
    /// Every erasure, one line each (time, subject id): replayed after a restore.
    pub const JOURNAL: &str = "erasures.journal";
}

/// What `init` did.
#[derive(Debug, Clone, Serialize)]
pub struct InitReport {
    /// The data directory.
    pub data_dir: PathBuf,
    /// How the master secret is sealed.
    pub seal: SealInfo,
    /// True when `init` generated a new identity file.
    pub identity_created: bool,
}

/// A subject to create.
#[derive(Debug, Clone)]
pub struct NewSubject {
    /// Individual, household or organisation.
    pub kind: SubjectKind,
    /// Profile fields, each at most once.
    pub fields: Vec<(FieldId, Value)>,
    /// Gifts to create with it.
    pub gifts: Vec<Vec<(FieldId, Value)>>,
}

/// A decrypted subject profile.
#[derive(Debug, Clone)]
pub struct SubjectRecord {
    /// Its id.
    pub id: SubjectId,
    /// Its kind.
    pub kind: SubjectKind,
    /// Version, incremented on every update.
    pub version: u32,
    /// The fields that were asked for and are present.
    pub fields: Vec<(FieldId, Value)>,
    /// Ids of fields present but not decrypted (not asked for).
    pub other_fields: Vec<FieldId>,
}

/// A decrypted gift.
#[derive(Debug, Clone)]
pub struct GiftRecord {
    /// Its id.
    pub id: GiftId,
    /// The fields.
    pub fields: Vec<(FieldId, Value)>,
}

/// What a KEK rotation did.
#[derive(Debug, Clone, Serialize)]
pub struct RotationReport {
    /// The KEK version every data key is being moved to.
    pub target_version: u32,
    /// True when this call continued an interrupted rotation.
    pub resumed: bool,
    /// Data keys rewrapped by this call.
    pub rewrapped: u64,
    /// Slots skipped (erased, or already on the target version).
    pub skipped: u64,
    /// True when every slot now uses the target version.
    pub complete: bool,
}

/// Options for [`Vault::rotate`].
#[derive(Debug, Clone)]
pub struct RotationOptions {
    /// Slots per durable step.
    pub batch_size: u64,
    /// Stop after this many batches (tests use it to interrupt a rotation).
    pub max_batches: Option<u64>,
}

impl Default for RotationOptions {
    fn default() -> Self {
        RotationOptions {
            batch_size: 4096,
            max_batches: None,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct RotationState {
    target: u32,
    next_slot: u64,
}

/// Counts for `/metrics` and `status`.
#[derive(Debug, Clone, Serialize)]
pub struct VaultStats {
    /// Data-key slots ever allocated (erased subjects included).
    pub key_slots: u64,
    /// Bytes used by the store on disk.
    pub store_bytes: u64,
    /// Current KEK version.
    pub kek_version: u32,
}

/// The encrypted record vault of one data directory.
pub struct Vault {
    dir: PathBuf,
    store: Arc<dyn Store>,
    keys: KeyRing,
    slots: Slots,
    schema: Arc<Schema>,
    rng: SystemRandom,
    kek_version: AtomicU32,
    /// Writers share it; a backup takes it alone, so its snapshot is consistent.
    gate: RwLock<()>,
    /// Serialises read-modify-write operations (update, erase, rotation).
    rmw: Mutex<()>,
    _lock: fs::File,
    seal: SealInfo,
    /// Blocking keys of a subject's fields for record matching (set by the hub); stored as
    /// keyed hashes beside the blind indexes, so they follow every create, update and erase.
    match_keys: RwLock<Option<MatchKeys>>,
}

/// Computes a subject's blocking keys (plain text, never stored) from its fields.
pub type MatchKeys = Arc<dyn Fn(&[(FieldId, Value)]) -> Vec<String> + Send + Sync>;

/// The index "field" under which blocking keys are stored.
pub(crate) const MATCH_FIELD: FieldId = FieldId(0xFFFF);

/// The suppression list as read at one moment: keyed hashes of erased people's emails and
/// phones, nothing else.
#[derive(Debug, Default)]
pub struct SuppressionList {
    keys: std::collections::HashSet<Vec<u8>>,
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn dek_aad(subject: &SubjectId, version: u32) -> [u8; 31] {
    let mut a = [0u8; 31];
    a[..11].copy_from_slice(b"steward-dek");
    a[11..27].copy_from_slice(subject.as_bytes());
    a[27..].copy_from_slice(&version.to_le_bytes());
    a
}

/// Reads how a data directory is sealed (to find the identity file `init` recorded).
pub fn read_seal_info(dir: &Path) -> Result<SealInfo> {
    let path = dir.join(layout::SEAL);
    let text = fs::read_to_string(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NotInitialised(dir.to_path_buf())
        } else {
            Error::io(format!("reading {}", path.display()), e)
        }
    })?;
    toml::from_str(&text).map_err(|e| Error::Corrupt {
        what: format!("{}: {e}", path.display()),
    })
}

fn dir_is_empty_or_missing(dir: &Path) -> Result<bool> {
    match fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(Error::io(format!("reading {}", dir.display()), e)),
    }
}

impl Vault {
    /// Creates a new data directory: a fresh master secret sealed as asked, an empty store and
    /// an empty slot file. Refuses, changing nothing, when `dir` exists and is not empty.
    pub fn init(dir: &Path, seal_to: &SealTo) -> Result<InitReport> {
        if !dir_is_empty_or_missing(dir)? {
            return Err(Error::AlreadyExists(dir.to_path_buf()));
        }
        if let SealTo::Identity(identity) = seal_to {
            let abs_dir = std::path::absolute(dir)
                .map_err(|e| Error::io("resolving the data directory", e))?;
            let abs_id = std::path::absolute(identity)
                .map_err(|e| Error::io("resolving the identity path", e))?;
            if abs_id.starts_with(&abs_dir) {
                return Err(Error::CannotUnseal(
                    "the identity file must not live inside the data directory: whoever copies the directory would hold its key".into(),
                ));
            }
        }
        let rng = SystemRandom::new();
        let master = MasterSecret::generate(&rng)?;
        let (sealed, info, identity_created) = seal::seal(&master, seal_to)?;
        let created_dir = !dir.exists();
        let result = (|| {
            fs::create_dir_all(dir.join("keys"))
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            seal::write_private(&dir.join(layout::MASTER), &sealed)?;
            let toml = toml::to_string(&info).map_err(|e| Error::Corrupt {
                what: e.to_string(),
            })?;
            seal::write_private(&dir.join(layout::SEAL), toml.as_bytes())?;
            let store = SledStore::open(&dir.join(layout::STORE), &SledOptions::default())?;
            store.put(ks::META, META_KEK, &1u32.to_le_bytes())?;
            store.flush()?;
            Slots::open(&dir.join(layout::SLOTS))?;
            Ok(())
        })();
        if let Err(e) = result {
            // Leave nothing half-made behind.
            if created_dir {
                let _ = fs::remove_dir_all(dir);
            }
            return Err(e);
        }
        Ok(InitReport {
            data_dir: dir.to_path_buf(),
            seal: info,
            identity_created,
        })
    }

    /// Opens a data directory: takes its lock, unseals the master secret, opens the store.
    pub fn open(dir: &Path, unlock: &Unlock, schema: Arc<Schema>) -> Result<Vault> {
        Vault::open_with(dir, unlock, schema, &SledOptions::default())
    }

    /// [`Vault::open`] with backend tuning.
    pub fn open_with(
        dir: &Path,
        unlock: &Unlock,
        schema: Arc<Schema>,
        options: &SledOptions,
    ) -> Result<Vault> {
        let seal = read_seal_info(dir)?;
        // Unseal before creating anything, so a wrong key leaves the directory untouched.
        let sealed = fs::read(dir.join(layout::MASTER))
            .map_err(|e| Error::io(format!("reading {}", dir.join(layout::MASTER).display()), e))?;
        let master = seal::unseal(&sealed, unlock)?;
        let lock_path = dir.join(layout::LOCK);
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(format!("opening {}", lock_path.display()), e))?;
        if let Err(e) = lock.try_lock() {
            return Err(match e {
                fs::TryLockError::WouldBlock => Error::InUse {
                    dir: dir.to_path_buf(),
                    holder: fs::read_to_string(dir.join(layout::OWNER))
                        .ok()
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| "another Steward process".into()),
                },
                fs::TryLockError::Error(e) => {
                    Error::io(format!("locking {}", lock_path.display()), e)
                }
            });
        }
        let store = SledStore::open(&dir.join(layout::STORE), options).map_err(|e| match e {
            StoreError::Locked => Error::InUse {
                dir: dir.to_path_buf(),
                holder: "another process".into(),
            },
            other => other.into(),
        })?;
        Vault::assemble(dir, Arc::new(store), &master, schema, lock, seal)
    }

    fn assemble(
        dir: &Path,
        store: Arc<dyn Store>,
        master: &MasterSecret,
        schema: Arc<Schema>,
        lock: fs::File,
        seal: SealInfo,
    ) -> Result<Vault> {
        let kek_version = match store.get(ks::META, META_KEK)? {
            Some(v) => u32::from_le_bytes(v.as_slice().try_into().map_err(|_| Error::Corrupt {
                what: "KEK version".into(),
            })?),
            None => 1,
        };
        Ok(Vault {
            dir: dir.to_path_buf(),
            store,
            keys: KeyRing::new(master),
            slots: Slots::open(&dir.join(layout::SLOTS))?,
            schema,
            rng: SystemRandom::new(),
            kek_version: AtomicU32::new(kek_version),
            gate: RwLock::new(()),
            rmw: Mutex::new(()),
            _lock: lock,
            seal,
            match_keys: RwLock::new(None),
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The field catalogue the vault was opened with.
    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    /// The store, for crates that keep their own keyspaces (principals, audit, consent).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Derived keys, for crates that need keyed hashes (token hashes, suppression lists).
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// How the master secret is sealed.
    pub fn seal_info(&self) -> &SealInfo {
        &self.seal
    }

    /// Records who holds the directory, so that a second process can say so.
    pub fn set_owner_note(&self, note: &str) -> Result<()> {
        let path = self.dir.join(layout::OWNER);
        fs::write(&path, note).map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }

    /// Removes the owner note (on shutdown).
    pub fn clear_owner_note(&self) {
        let _ = fs::remove_file(self.dir.join(layout::OWNER));
    }

    pub(crate) fn random(&self, n: usize) -> Result<Zeroizing<Vec<u8>>> {
        let mut buf = Zeroizing::new(vec![0u8; n]);
        self.rng.fill(&mut buf).map_err(|_| Error::Random)?;
        Ok(buf)
    }

    fn wrap_dek(&self, subject: &SubjectId, dek: &[u8], nonce: &[u8], version: u32) -> [u8; HALF] {
        let kek = self.keys.kek(version);
        let mut half = [0u8; HALF];
        half[..4].copy_from_slice(&version.to_le_bytes());
        half[4..16].copy_from_slice(nonce);
        half[16..48].copy_from_slice(dek);
        let n = Nonce::try_assume_unique_for_key(nonce).expect("12-byte nonce");
        let tag = kek
            .seal_in_place_separate_tag(n, Aad::from(&dek_aad(subject, version)), &mut half[16..48])
            .expect("AES-GCM seal of 32 bytes");
        half[48..].copy_from_slice(tag.as_ref());
        half
    }

    fn unwrap_half(
        &self,
        subject: &SubjectId,
        half: &[u8],
    ) -> Option<(u32, Zeroizing<[u8; KEY_LEN]>)> {
        let version = u32::from_le_bytes(half[..4].try_into().ok()?);
        if version == 0 {
            return None;
        }
        let kek = self.keys.kek(version);
        let n = Nonce::try_assume_unique_for_key(&half[4..16]).ok()?;
        let mut buf = Zeroizing::new([0u8; KEY_LEN + TAG_LEN]);
        buf.copy_from_slice(&half[16..64]);
        let plain = kek
            .open_in_place(n, Aad::from(&dek_aad(subject, version)), buf.as_mut())
            .ok()?;
        let mut dek = Zeroizing::new([0u8; KEY_LEN]);
        dek.copy_from_slice(plain);
        Some((version, dek))
    }

    /// Unwraps a slot's data key, preferring the half with the newer KEK version.
    pub(crate) fn unwrap_slot(
        &self,
        subject: &SubjectId,
        slot: &[u8; SLOT],
    ) -> Option<(u32, usize, Zeroizing<[u8; KEY_LEN]>)> {
        if &slot[..16] != subject.as_bytes() {
            return None;
        }
        let va = u32::from_le_bytes(slot[16..20].try_into().ok()?);
        let vb = u32::from_le_bytes(slot[16 + HALF..20 + HALF].try_into().ok()?);
        let order = if vb > va { [1, 0] } else { [0, 1] };
        order.into_iter().find_map(|h| {
            let half = &slot[16 + h * HALF..16 + (h + 1) * HALF];
            self.unwrap_half(subject, half).map(|(v, dek)| (v, h, dek))
        })
    }

    pub(crate) fn dek_for(&self, subject: &SubjectId, slot: u64) -> Result<LessSafeKey> {
        if slot >= self.slots.len() {
            return Err(Error::Tampered {
                subject: *subject,
                what: "data-key slot reference".into(),
            });
        }
        let bytes = self.slots.read(slot)?;
        if bytes.iter().all(|&b| b == 0) {
            return Err(Error::Erased(*subject));
        }
        let (_, _, dek) = self
            .unwrap_slot(subject, &bytes)
            .ok_or_else(|| Error::Tampered {
                subject: *subject,
                what: "data key".into(),
            })?;
        Ok(LessSafeKey::new(
            UnboundKey::new(&aead::AES_256_GCM, dek.as_ref()).expect("32-byte key"),
        ))
    }

    fn index_key(&self, field: FieldId, term: &str, subject: &SubjectId) -> Vec<u8> {
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
                if def.index == IndexKind::None {
                    return None;
                }
                Some(self.index_key(*id, v.index_term()?, subject))
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

    pub(crate) fn new_gift_id(&self, ms: u64, random: &[u8]) -> GiftId {
        let mut r = [0u8; 10];
        r.copy_from_slice(&random[..10]);
        GiftId::from_parts(ms, r)
    }

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

    fn missing(&self, id: &SubjectId) -> Result<Error> {
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
        let _rmw = self.rmw.lock().expect("rmw lock");
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
        let _rmw = self.rmw.lock().expect("rmw lock");
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
            if h.slot < self.slots.len() && &self.slots.read(h.slot)?[..16] == id.as_bytes() {
                to_shred.push(h.slot);
            }
            // Subjects merged into this one go with it.
            for (slot, key) in self.absorbed(id)? {
                if slot < self.slots.len() {
                    to_shred.push(slot);
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

    fn suppression_key(&self, kind: IndexKind, term: &str) -> [u8; 32] {
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

    /// Appends an erasure to the journal (`erasures.journal`: time and id per line, nothing
    /// personal) and syncs it. The journal is what lets erasures made after a backup be
    /// applied again when that backup is restored.
    fn journal_erasures(&self, ids: &[SubjectId]) -> Result<()> {
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

    pub(crate) fn random_bytes(&self, n: usize) -> Result<Zeroizing<Vec<u8>>> {
        self.random(n)
    }

    pub(crate) fn wrap_dek_pub(&self, subject: &SubjectId, dek: &[u8], nonce: &[u8]) -> [u8; HALF] {
        self.wrap_dek(subject, dek, nonce, self.kek_version.load(Ordering::SeqCst))
    }

    pub(crate) fn slots_ref(&self) -> &Slots {
        &self.slots
    }

    pub(crate) fn hold_dek(&self, subject: &SubjectId, slot: u64) -> Result<LessSafeKey> {
        self.dek_for(subject, slot)
    }

    pub(crate) fn shred_slot_of(&self, subject: &SubjectId, slot: u64) -> Result<()> {
        if slot < self.slots.len() {
            let bytes = self.slots.read(slot)?;
            if &bytes[..16] == subject.as_bytes() {
                self.slots.shred(slot)?;
            }
        }
        Ok(())
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
            key_slots: self.slots.len(),
            store_bytes: self.store.size_on_disk()?,
            kek_version: self.kek_version.load(Ordering::SeqCst),
        })
    }

    /// Rotates to a new KEK version (or resumes an interrupted rotation): every wrapped data
    /// key is rewrapped in durable batches; field ciphertext is untouched. Safe to interrupt
    /// at any point; run again to finish.
    pub fn rotate(&self, options: &RotationOptions) -> Result<RotationReport> {
        let _gate = self.gate.read().expect("write gate");
        let _rmw = self.rmw.lock().expect("rmw lock");
        let (mut state, resumed) = match self.store.get(ks::META, META_ROTATION)? {
            Some(bytes) => (
                serde_json::from_slice::<RotationState>(&bytes).map_err(|_| Error::Corrupt {
                    what: "rotation progress".into(),
                })?,
                true,
            ),
            None => {
                let target = self.kek_version.load(Ordering::SeqCst) + 1;
                let state = RotationState {
                    target,
                    next_slot: 0,
                };
                let mut b = Batch::new();
                b.put(
                    ks::META,
                    META_ROTATION,
                    serde_json::to_vec(&state).expect("json"),
                );
                b.put(ks::META, META_KEK, target.to_le_bytes().to_vec());
                self.store.apply(b)?;
                self.store.flush()?;
                // From now on new data keys are wrapped with the new version.
                self.kek_version.store(target, Ordering::SeqCst);
                (state, false)
            }
        };
        let mut report = RotationReport {
            target_version: state.target,
            resumed,
            rewrapped: 0,
            skipped: 0,
            complete: false,
        };
        let total = self.slots.len();
        let mut batches = 0;
        while state.next_slot < total {
            if options.max_batches.is_some_and(|m| batches >= m) {
                return Ok(report);
            }
            let count = options.batch_size.max(1).min(total - state.next_slot);
            let run = self.slots.read_run(state.next_slot, count)?;
            let nonces = self.random(count as usize * NONCE_LEN)?;
            for i in 0..count as usize {
                let slot: &[u8; SLOT] =
                    run[i * SLOT..(i + 1) * SLOT].try_into().expect("slot size");
                let Some(subject) =
                    SubjectId::from_slice(&slot[..16]).filter(|s| s.as_bytes() != &ZERO_ID)
                else {
                    report.skipped += 1;
                    continue;
                };
                match self.unwrap_slot(&subject, slot) {
                    Some((v, _, _)) if v == state.target => report.skipped += 1,
                    Some((_, half, dek)) => {
                        let nonce = &nonces[i * NONCE_LEN..(i + 1) * NONCE_LEN];
                        let new_half = self.wrap_dek(&subject, dek.as_ref(), nonce, state.target);
                        self.slots
                            .write_half(state.next_slot + i as u64, 1 - half, &new_half)?;
                        report.rewrapped += 1;
                    }
                    None => {
                        tracing::warn!(
                            slot = state.next_slot + i as u64,
                            "data-key slot unreadable during rotation; left as is"
                        );
                        report.skipped += 1;
                    }
                }
            }
            self.slots.sync()?;
            state.next_slot += count;
            self.store.put(
                ks::META,
                META_ROTATION,
                &serde_json::to_vec(&state).expect("json"),
            )?;
            self.store.flush()?;
            batches += 1;
        }
        self.store.delete(ks::META, META_ROTATION)?;
        self.store.flush()?;
        report.complete = true;
        Ok(report)
    }

    /// Writes `batch` atomically and makes it durable before returning: the commit step of
    /// every change that must survive a crash once acknowledged (users, requests, holds...).
    pub fn apply_durably(&self, batch: Batch) -> Result<()> {
        self.store.apply(batch)?;
        self.store.flush()?;
        Ok(())
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> Result<()> {
        self.store.flush()?;
        Ok(())
    }

    pub(crate) fn gate_shared(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.gate.read().expect("write gate")
    }

    pub(crate) fn rmw_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.rmw.lock().expect("rmw lock")
    }

    pub(crate) fn gate_exclusive(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.gate.write().expect("write gate")
    }

    pub(crate) fn slots(&self) -> &Slots {
        &self.slots
    }

    pub(crate) fn sealed_master(&self) -> Result<Vec<u8>> {
        fs::read(self.dir.join(layout::MASTER))
            .map_err(|e| Error::io("reading the sealed master secret", e))
    }
}

impl Drop for Vault {
    fn drop(&mut self) {
        let _ = self.store.flush();
    }
}
