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
mod dek;
mod erasure;
mod gifts;
mod indexes;
mod interactions;
pub use interactions::{InteractionRecord, NewInteraction};
mod rotation;
mod secrets;
mod subjects;

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
    /// The audit log's segment files.
    pub const AUDIT: &str = "audit";
    /// Which store holds the data, when it is not sled in `store/` (absent for sled).
    pub const STORE_CONFIG: &str = "store.toml";
}

/// The environment variable that names the store (a `postgres://` URL) for `init`, and
/// overrides the URL in `store.toml` when a directory is opened (to keep a password out of
/// the file).
pub const STORE_ENV: &str = "STEWARD_STORE";

/// Where a data directory keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// sled, in the directory (the default).
    Sled,
    /// A PostgreSQL database, by URL: several processes may share it.
    Postgres(String),
}

impl StoreChoice {
    /// Reads a `--store` value: `sled`, or a `postgres://` / `postgresql://` URL.
    pub fn parse(text: &str) -> Result<StoreChoice> {
        let text = text.trim();
        if text.is_empty() || text == "sled" {
            Ok(StoreChoice::Sled)
        } else if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Ok(StoreChoice::Postgres(text.to_string()))
        } else {
            Err(Error::BadStore(format!(
                "{} is neither `sled` nor a postgres:// URL",
                crate::pg::redact(text)
            )))
        }
    }
}

#[derive(Serialize, Deserialize)]
struct StoreConfig {
    backend: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
}

/// Which store a data directory names (`store.toml`; sled when there is none), with
/// [`STORE_ENV`] overriding a PostgreSQL URL.
pub fn store_choice(dir: &Path) -> Result<StoreChoice> {
    let path = dir.join(layout::STORE_CONFIG);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(StoreChoice::Sled),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    let config: StoreConfig = toml::from_str(&text).map_err(|e| Error::Corrupt {
        what: format!("{}: {e}", path.display()),
    })?;
    match config.backend.as_str() {
        "sled" => Ok(StoreChoice::Sled),
        "postgres" => {
            let url = std::env::var(STORE_ENV)
                .ok()
                .filter(|u| !u.trim().is_empty())
                .or(config.url)
                .ok_or_else(|| {
                    Error::BadStore(format!(
                        "{} names PostgreSQL without a url, and {STORE_ENV} is not set",
                        path.display()
                    ))
                })?;
            StoreChoice::parse(&url)
        }
        other => Err(Error::BadStore(format!(
            "{} names an unknown backend `{other}` (sled or postgres)",
            path.display()
        ))),
    }
}

/// Connections each process keeps to a PostgreSQL store.
const PG_CONNECTIONS: usize = 8;

/// The value a shared store holds to say which data directory it belongs to: a keyed hash
/// under the master secret, so another Steward's directory (another master secret) is told
/// apart, and the database learns nothing.
const STORE_ID_KEY: &[u8] = b"store-id";

fn store_id(keys: &KeyRing) -> [u8; 32] {
    keys.keyed_hash("steward/v1/store-id", b"steward store identity")
}

fn connect_pg(url: &str) -> Result<Arc<dyn Store>> {
    let store = crate::pg::PgStore::connect(url, PG_CONNECTIONS)?;
    Ok(Arc::new(store))
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
        Vault::init_with(dir, seal_to, &StoreChoice::Sled)
    }
    /// [`Vault::init`] with the data in `store`. A PostgreSQL database must hold no other
    /// Steward's data; it is checked before anything is created.
    pub fn init_with(dir: &Path, seal_to: &SealTo, choice: &StoreChoice) -> Result<InitReport> {
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
        // A database must be reachable and hold no Steward's data before anything is made.
        let pg = match choice {
            StoreChoice::Sled => None,
            StoreChoice::Postgres(url) => {
                let store = connect_pg(url)?;
                if store.get(ks::STORE_ID, STORE_ID_KEY)?.is_some() {
                    return Err(Error::BadStore(format!(
                        "the database at {} already holds a Steward data directory's data; init needs an empty database",
                        crate::pg::redact(url)
                    )));
                }
                Some(store)
            }
        };
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
            match choice {
                StoreChoice::Sled => {
                    let store = SledStore::open(&dir.join(layout::STORE), &SledOptions::default())?;
                    store.put(ks::META, META_KEK, &1u32.to_le_bytes())?;
                    store.flush()?;
                    Slots::open(&dir.join(layout::SLOTS))?;
                }
                StoreChoice::Postgres(url) => {
                    let store = pg.as_ref().expect("connected above");
                    let mut batch = Batch::new();
                    batch.put(ks::META, META_KEK, 1u32.to_le_bytes().to_vec());
                    batch.put(
                        ks::STORE_ID,
                        STORE_ID_KEY,
                        store_id(&KeyRing::new(&master)).to_vec(),
                    );
                    store.apply(batch)?;
                    let config = StoreConfig {
                        backend: "postgres".into(),
                        // A URL given in the environment stays there (it may hold a password).
                        url: (std::env::var(STORE_ENV).ok().as_deref() != Some(url.as_str()))
                            .then(|| url.clone()),
                    };
                    let text = toml::to_string(&config).map_err(|e| Error::Corrupt {
                        what: e.to_string(),
                    })?;
                    seal::write_private(&dir.join(layout::STORE_CONFIG), text.as_bytes())?;
                }
            }
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
        if let StoreChoice::Postgres(url) = store_choice(dir)? {
            return Vault::open_backend(dir, unlock, schema, true, |_| connect_pg(&url));
        }
        Vault::open_backend(dir, unlock, schema, false, |dir| {
            let store =
                SledStore::open(&dir.join(layout::STORE), options).map_err(|e| match e {
                    StoreError::Locked => Error::InUse {
                        dir: dir.to_path_buf(),
                        holder: "another process".into(),
                    },
                    other => other.into(),
                })?;
            Ok(Arc::new(store))
        })
    }
    /// [`Vault::open`] on a store the caller built (the data directory still holds the sealed
    /// master secret and its lock): the seam for other backends, and for tests that wrap the
    /// store to watch or slow its writes.
    pub fn open_on(
        dir: &Path,
        unlock: &Unlock,
        schema: Arc<Schema>,
        store: Arc<dyn Store>,
    ) -> Result<Vault> {
        let shared = store.shared();
        Vault::open_backend(dir, unlock, schema, shared, |_| Ok(store))
    }
    /// Opens with the store `store` builds. A store several processes share (`shared`) is
    /// opened under a shared lock of the directory, so that every server on this host may hold
    /// it at once; sled's under an exclusive one.
    fn open_backend(
        dir: &Path,
        unlock: &Unlock,
        schema: Arc<Schema>,
        shared: bool,
        store: impl FnOnce(&Path) -> Result<Arc<dyn Store>>,
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
        let taken = if shared {
            lock.try_lock_shared()
        } else {
            lock.try_lock()
        };
        if let Err(e) = taken {
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
        let store = store(dir)?;
        Vault::assemble(dir, store, &master, schema, lock, seal)
    }
    fn assemble(
        dir: &Path,
        store: Arc<dyn Store>,
        master: &MasterSecret,
        schema: Arc<Schema>,
        lock: fs::File,
        seal: SealInfo,
    ) -> Result<Vault> {
        let slots = if store.shared() {
            match store.get(ks::STORE_ID, STORE_ID_KEY)? {
                Some(id) if id == store_id(&KeyRing::new(master)) => {}
                Some(_) => {
                    return Err(Error::BadStore(
                        "the database belongs to another Steward data directory (its identity does not match this directory's master secret); refusing to use it".into(),
                    ))
                }
                None => {
                    return Err(Error::BadStore(
                        "the database holds no Steward data directory's data (was it initialised with `steward init --store`?); refusing to use it".into(),
                    ))
                }
            }
            Slots::in_store(store.clone())
        } else {
            Slots::open(&dir.join(layout::SLOTS))?
        };
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
            slots,
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
    /// Opens the audit log's segment files (`audit/` in the data directory); a torn last
    /// frame left by a crash is cut off and reported in the log.
    pub fn audit_segments(&self) -> Result<crate::segments::SegmentLog> {
        let (log, cut) = crate::segments::SegmentLog::open(&self.dir.join(layout::AUDIT))?;
        if cut > 0 {
            tracing::warn!(bytes = cut, "cut the torn end of the audit log's active segment (a write interrupted by a crash)");
        }
        Ok(log)
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
        if self.store.shared() {
            // Several servers hold a directory whose data is in a shared store.
            return Ok(());
        }
        let path = self.dir.join(layout::OWNER);
        fs::write(&path, note).map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }
    /// Removes the owner note (on shutdown).
    pub fn clear_owner_note(&self) {
        if self.store.shared() {
            return;
        }
        let _ = fs::remove_file(self.dir.join(layout::OWNER));
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
    /// Serialises read-modify-write sections: in this process, and across every process of
    /// a shared store (whose version checks would otherwise race).
    pub(crate) fn rmw_lock(&self) -> Result<RmwGuard<'_>> {
        self.serialise()
    }
    /// Holds off every other read-modify-write of the vault, in this process and in every
    /// process sharing its store, until the guard drops: for callers that read a position and
    /// write after it (a subject's next consent-ledger number). Take it inside an audited
    /// write (after the audit log's lock), as the vault's own updates do.
    pub fn serialise(&self) -> Result<RmwGuard<'_>> {
        let local = self.rmw.lock().expect("rmw lock");
        let across = self
            .store
            .lock_across(crate::store::CrossLockName::Records)?;
        Ok(RmwGuard {
            _across: across,
            _local: local,
        })
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

/// A read-modify-write section's locks (the cross-process one, if any, released first).
pub struct RmwGuard<'a> {
    _across: Option<crate::store::CrossLock>,
    _local: std::sync::MutexGuard<'a, ()>,
}

impl Drop for Vault {
    fn drop(&mut self) {
        let _ = self.store.flush();
    }
}
