//! The storage seam: named keyspaces with ordered keys and atomic multi-keyspace batches.
//!
//! Everything the vault writes goes through [`Store`]; the sled backend is the embedded
//! default. A PostgreSQL backend can implement the same trait (one table per keyspace, a
//! transaction per batch, `ORDER BY key` for scans) without changing callers.

use std::path::Path;

/// A named keyspace. The one-byte id prefixes keys in backends that share one key range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Keyspace {
    id: u8,
    name: &'static str,
}

impl Keyspace {
    /// Declares a keyspace. Ids must be unique across the project; see [`keyspaces`].
    pub const fn new(id: u8, name: &'static str) -> Keyspace {
        Keyspace { id, name }
    }

    /// The stable one-byte id.
    pub fn id(&self) -> u8 {
        self.id
    }

    /// The name, for logs and backends that use names (tables).
    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// Every keyspace in the project, declared in one place so ids never collide.
pub mod keyspaces {
    use super::Keyspace;

    /// Encrypted subject records, by subject id.
    pub const SUBJECTS: Keyspace = Keyspace::new(1, "subjects");
    /// Encrypted gift records, by subject id + gift id.
    pub const GIFTS: Keyspace = Keyspace::new(2, "gifts");
    /// Blind-index entries: field id + token + subject id → empty.
    pub const INDEX: Keyspace = Keyspace::new(3, "index");
    /// Vault metadata: current KEK version, rotation progress, counters.
    pub const META: Keyspace = Keyspace::new(4, "meta");
    /// Tombstones of erased subjects: id → erasure time. No personal data.
    pub const ERASED: Keyspace = Keyspace::new(5, "erased");
    /// Principals and their token hashes.
    pub const PRINCIPALS: Keyspace = Keyspace::new(6, "principals");
    /// Token hash → principal id.
    pub const TOKENS: Keyspace = Keyspace::new(7, "tokens");
    /// Audit log blocks: block number → events with their chain hashes.
    pub const AUDIT: Keyspace = Keyspace::new(8, "audit");
    /// Signed audit checkpoints: log size → checkpoint.
    pub const AUDIT_CHECKPOINTS: Keyspace = Keyspace::new(9, "audit_checkpoints");
    /// Consent ledger: subject id + seq → event. Codes, times and references only.
    pub const CONSENT: Keyspace = Keyspace::new(10, "consent");
    /// Subject-rights requests: request id → record (ids, dates, states, reason references).
    pub const REQUESTS: Keyspace = Keyspace::new(11, "requests");
    /// Keyed hashes of erased people's emails and phones: never re-added to marketing.
    pub const SUPPRESSION: Keyspace = Keyspace::new(12, "suppression");
    /// Legal holds: subject id + record id → the held minimum, under its own hold key.
    pub const HOLDS: Keyspace = Keyspace::new(13, "holds");
    /// Legal holds: subject id → what is held, why and until when.
    pub const HOLD_INFO: Keyspace = Keyspace::new(14, "hold_info");
    /// Last activity of each subject: subject id → day (u32, days since 1970-01-01), for
    /// retention classes such as lapsed supporters. A date, no personal value.
    pub const ACTIVITY: Keyspace = Keyspace::new(15, "activity");
    /// Recipients a subject's data was disclosed to (organisation names), for Art. 19 notices.
    pub const RECIPIENTS: Keyspace = Keyspace::new(16, "recipients");
    /// Subjects merged into another: keep id + gone id → the gone subject's records, still
    /// encrypted under its own key, until the merge is undone or the kept subject erased.
    pub const MERGED: Keyspace = Keyspace::new(17, "merged");
    /// Imports, merges and the review queue: plans, per-row outcomes, undo snapshots
    /// (encrypted records), review pairs. Ids, codes and counts; no clear personal value.
    pub const IMPORTS: Keyspace = Keyspace::new(18, "imports");
    /// Erasure certificates: subject id → the certificate (field names, counts, hold and
    /// recipient organisations; no personal value), to be printed again on demand.
    pub const CERTIFICATES: Keyspace = Keyspace::new(19, "certificates");
    /// Console sessions: keyed hash of the session token → principal id and times.
    pub const SESSIONS: Keyspace = Keyspace::new(20, "sessions");
    /// When consents expire: expiry time (RFC 3339 UTC) + subject id + ledger seq → empty.
    /// Hints for the work queue, each checked against the ledger when read.
    pub const CONSENT_EXPIRY: Keyspace = Keyspace::new(21, "consent_expiry");
    /// Interactions: subject id + interaction id → that participant's copy, sealed under
    /// its data key (participants found through `INDEX` entries of the id's keyed hash).
    pub const INTERACTIONS: Keyspace = Keyspace::new(22, "interactions");
    /// The register of recipients (GDPR Art. 30(1)(d)): name → role, purposes, field groups,
    /// basis, contract, country, webhook endpoint and its signing secrets (sealed).
    pub const REGISTER: Keyspace = Keyspace::new(23, "recipient_register");
    /// Art. 19 notifications: subject id + event id → recipient, event type, field groups,
    /// state and attempts. Ids, codes and times only; sent by the delivery worker or done by
    /// a person.
    pub const OUTBOX: Keyspace = Keyspace::new(24, "outbox");
    /// Notifications due: due time (u64 seconds, big-endian) + subject id + event id → empty.
    pub const OUTBOX_DUE: Keyspace = Keyspace::new(25, "outbox_due");
    /// Notifications by id: message id → subject id (to find one without a scan).
    pub const OUTBOX_IDS: Keyspace = Keyspace::new(26, "outbox_ids");
    /// Wrapped data keys, when the store is shared by several processes (PostgreSQL): slot
    /// number (u64, big-endian) → the slot (see `slots`). sled's data directories keep them
    /// in the slot file instead.
    pub const DEK_SLOTS: Keyspace = Keyspace::new(27, "dek_slots");
    /// Identity of a shared store: which Steward data directory it belongs to.
    pub const STORE_ID: Keyspace = Keyspace::new(28, "store_id");
    /// The audit log, when the store is shared by several processes: block number (u64,
    /// big-endian) → the block's frame as a segment file would hold it (signed).
    pub const AUDIT_FRAMES: Keyspace = Keyspace::new(29, "audit_frames");

    /// All keyspaces, for backups and diagnostics.
    pub const ALL: &[Keyspace] = &[
        SUBJECTS,
        GIFTS,
        INDEX,
        META,
        ERASED,
        PRINCIPALS,
        TOKENS,
        AUDIT,
        AUDIT_CHECKPOINTS,
        CONSENT,
        REQUESTS,
        SUPPRESSION,
        HOLDS,
        HOLD_INFO,
        ACTIVITY,
        RECIPIENTS,
        MERGED,
        IMPORTS,
        CERTIFICATES,
        SESSIONS,
        CONSENT_EXPIRY,
        INTERACTIONS,
        REGISTER,
        OUTBOX,
        OUTBOX_DUE,
        OUTBOX_IDS,
        DEK_SLOTS,
        STORE_ID,
        AUDIT_FRAMES,
    ];

    /// Looks a keyspace up by id (backup restore).
    pub fn by_id(id: u8) -> Option<Keyspace> {
        ALL.iter().copied().find(|k| k.id() == id)
    }
}

/// A failure inside the storage backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend reported an error.
    #[error("storage backend error: {0}")]
    Backend(String),
    /// The backend cannot be reached now (a database that is down or lost the connection);
    /// nothing of the operation was written, and it may be tried again.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The directory is locked by another process.
    #[error("the store is locked by another process")]
    Locked,
    /// Stored bytes failed their checksum or do not parse: the files or the disk are damaged.
    #[error("the store's files are damaged ({0}); restore the data directory from a backup (see the README's Backups section)")]
    Corrupt(String),
}

/// One write in a batch: `None` deletes.
pub type Op = (Keyspace, Vec<u8>, Option<Vec<u8>>);

/// A set of writes applied atomically: all or none.
#[derive(Debug, Default)]
pub struct Batch {
    ops: Vec<Op>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Adds a put.
    pub fn put(&mut self, ks: Keyspace, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push((ks, key.into(), Some(value.into())));
    }

    /// Adds a delete.
    pub fn delete(&mut self, ks: Keyspace, key: impl Into<Vec<u8>>) {
        self.ops.push((ks, key.into(), None));
    }

    /// Appends every write of `other`, after this batch's own.
    pub fn extend(&mut self, other: Batch) {
        self.ops.extend(other.ops);
    }

    /// Number of writes.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The writes, in order, without taking them.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// The writes, in order.
    pub fn into_ops(self) -> Vec<Op> {
        self.ops
    }
}

/// A key-value pair read back.
pub type Entry = (Vec<u8>, Vec<u8>);

/// An iterator over entries, in key order.
pub type EntryIter<'a> = Box<dyn Iterator<Item = Result<Entry, StoreError>> + Send + 'a>;

/// Ordered key-value storage with named keyspaces and atomic batches.
pub trait Store: Send + Sync + 'static {
    /// Reads one value.
    fn get(&self, ks: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Entries whose key starts with `prefix`, in ascending key order (keys returned without
    /// the keyspace).
    fn scan_prefix(&self, ks: Keyspace, prefix: &[u8]) -> EntryIter<'_>;

    /// Entries with `start <= key`, in ascending order, within the keyspace.
    fn scan_from(&self, ks: Keyspace, start: &[u8]) -> EntryIter<'_>;

    /// The entry with the greatest key that starts with `prefix`.
    fn last_with_prefix(&self, ks: Keyspace, prefix: &[u8]) -> Result<Option<Entry>, StoreError>;

    /// Applies every write of the batch atomically.
    fn apply(&self, batch: Batch) -> Result<(), StoreError>;

    /// Makes every applied batch durable.
    fn flush(&self) -> Result<(), StoreError>;

    /// Bytes the backend occupies on disk.
    fn size_on_disk(&self) -> Result<u64, StoreError>;

    /// Writes one value (a batch of one).
    fn put(&self, ks: Keyspace, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let mut b = Batch::new();
        b.put(ks, key, value);
        self.apply(b)
    }

    /// Deletes one value (a batch of one).
    fn delete(&self, ks: Keyspace, key: &[u8]) -> Result<(), StoreError> {
        let mut b = Batch::new();
        b.delete(ks, key);
        self.apply(b)
    }

    /// True when several processes may use the store at once (PostgreSQL). What one process
    /// keeps in memory (the audit log's head, the next data-key slot) must then be read back
    /// from the store under [`Store::lock_across`] before it is used.
    fn shared(&self) -> bool {
        false
    }

    /// Adds `n` to the counter `name` and returns its value before, atomically for every
    /// process using the store (counters start at 0).
    fn allocate(&self, name: &[u8], n: u64) -> Result<u64, StoreError> {
        let _ = (name, n);
        Err(StoreError::Backend(
            "this store keeps no shared counters".into(),
        ))
    }

    /// Takes lock `name` in every process using the store, until the guard drops; `None`
    /// for a single-process store, where the caller's own mutex is enough. A caller takes it
    /// while holding an in-process mutex that stands for the same name, so one thread of a
    /// process at a time asks for it.
    fn lock_across(&self, name: CrossLockName) -> Result<Option<CrossLock>, StoreError> {
        let _ = name;
        Ok(None)
    }
}

/// The locks taken across processes, one per kind of read-modify-write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CrossLockName {
    /// The audit log's end (sequence, chain hash, block number, checkpoints).
    Audit,
    /// The vault's read-modify-write sections (updates with If-Match, erasure, merges,
    /// rotation).
    Records,
}

impl CrossLockName {
    /// A stable number for the backend (PostgreSQL advisory lock key).
    pub fn number(self) -> i32 {
        match self {
            CrossLockName::Audit => 1,
            CrossLockName::Records => 2,
        }
    }
}

/// A lock held across processes; released when dropped.
pub struct CrossLock {
    release: Option<Box<dyn FnOnce() + Send>>,
}

impl CrossLock {
    /// A lock whose `release` runs when it is dropped.
    pub fn new(release: impl FnOnce() + Send + 'static) -> CrossLock {
        CrossLock {
            release: Some(Box::new(release)),
        }
    }
}

impl Drop for CrossLock {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release();
        }
    }
}

/// Tuning for the sled backend.
#[derive(Debug, Clone)]
pub struct SledOptions {
    /// Page cache size in bytes.
    pub cache_bytes: u64,
    /// How often sled flushes in the background, in milliseconds.
    pub flush_every_ms: Option<u64>,
}

impl Default for SledOptions {
    fn default() -> Self {
        SledOptions {
            // A bulk import writes random blocking-key and index entries all over the tree,
            // and sled holds several times this figure in memory (it counts pages at their
            // size on disk): 160 MiB keeps a million-row import under 1 GB, and larger sizes
            // save it little time (BENCHMARKS.md, "Imports").
            cache_bytes: 160 * 1024 * 1024,
            flush_every_ms: Some(500),
        }
    }
}

/// The embedded backend: one sled tree, keys prefixed with the keyspace id, so that a batch
/// over several keyspaces is one atomic `apply_batch`.
pub struct SledStore {
    db: sled::Db,
}

fn backend(e: sled::Error) -> StoreError {
    match e {
        sled::Error::Corruption { .. } => StoreError::Corrupt(e.to_string()),
        other => StoreError::Backend(other.to_string()),
    }
}

fn prefixed(ks: Keyspace, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(ks.id);
    k.extend_from_slice(key);
    k
}

impl SledStore {
    /// Opens (or creates) a sled store in `path`.
    ///
    /// sled releases its file lock from a background thread some moments after the last handle
    /// is dropped, so reopening in the same process can briefly find it held. The data
    /// directory's own lock (taken before this) already keeps other processes out, so a held
    /// sled lock here is waited out for up to two seconds.
    pub fn open(path: &Path, options: &SledOptions) -> Result<SledStore, StoreError> {
        let mut waited = 0;
        loop {
            let result = sled::Config::new()
                .path(path)
                .cache_capacity(options.cache_bytes)
                .flush_every_ms(options.flush_every_ms)
                .mode(sled::Mode::HighThroughput)
                .open();
            match result {
                Ok(db) => return Ok(SledStore { db }),
                Err(sled::Error::Io(ref io)) if io.to_string().contains("lock") => {
                    if waited >= 2000 {
                        return Err(StoreError::Locked);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    waited += 20;
                }
                Err(other) => return Err(backend(other)),
            }
        }
    }

    fn iter_to_entries(iter: sled::Iter) -> EntryIter<'static> {
        Box::new(iter.map(|r| {
            r.map(|(k, v)| (k[1..].to_vec(), v.to_vec()))
                .map_err(backend)
        }))
    }
}

impl Store for SledStore {
    fn get(&self, ks: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .db
            .get(prefixed(ks, key))
            .map_err(backend)?
            .map(|v| v.to_vec()))
    }

    fn scan_prefix(&self, ks: Keyspace, prefix: &[u8]) -> EntryIter<'_> {
        Self::iter_to_entries(self.db.scan_prefix(prefixed(ks, prefix)))
    }

    fn scan_from(&self, ks: Keyspace, start: &[u8]) -> EntryIter<'_> {
        let lo = prefixed(ks, start);
        let iter = if ks.id == u8::MAX {
            self.db.range(lo..)
        } else {
            self.db.range(lo..vec![ks.id + 1])
        };
        Self::iter_to_entries(iter)
    }

    fn last_with_prefix(&self, ks: Keyspace, prefix: &[u8]) -> Result<Option<Entry>, StoreError> {
        match self.db.scan_prefix(prefixed(ks, prefix)).next_back() {
            Some(r) => {
                let (k, v) = r.map_err(backend)?;
                Ok(Some((k[1..].to_vec(), v.to_vec())))
            }
            None => Ok(None),
        }
    }

    fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        let ops = batch.ops.len();
        let mut b = sled::Batch::default();
        for (ks, key, value) in batch.ops {
            match value {
                Some(v) => b.insert(prefixed(ks, &key), v),
                None => b.remove(prefixed(ks, &key)),
            }
        }
        self.db.apply_batch(b).map_err(backend)?;
        collect_replaced_nodes(ops);
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(backend)
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.db.size_on_disk().map_err(backend)
    }

    fn allocate(&self, name: &[u8], n: u64) -> Result<u64, StoreError> {
        let mut key = prefixed(keyspaces::META, b"counter/");
        key.extend_from_slice(name);
        let mut before = 0;
        self.db
            .update_and_fetch(key, |old| {
                before = old
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map_or(0, u64::from_be_bytes);
                Some((before + n).to_be_bytes().to_vec())
            })
            .map_err(backend)?;
        Ok(before)
    }
}

/// Frees what sled replaced while applying a batch of `ops` writes.
///
/// sled copies a tree node on each write and hands the old copy to crossbeam-epoch, which
/// frees such garbage a few bags (of 64) at a time, once every 128 pins of some thread. An
/// `apply_batch` pins once for all its writes, so when little else touches the store (a bulk
/// import: one writer, few reads) garbage is made far faster than it is freed: a
/// million-row import grew to 21 GiB. Pinning and flushing here, about once per 64 writes,
/// frees at the rate the batch made it.
fn collect_replaced_nodes(ops: usize) {
    for _ in 0..ops / 64 + 1 {
        crossbeam_epoch::pin().flush();
    }
}

/// A store on which every operation fails, as when its disk is gone. Tests use it to show
/// that what must be written (the audit log) fails closed.
#[derive(Debug, Default)]
pub struct FailingStore;

fn gone() -> StoreError {
    StoreError::Backend("the storage device failed (simulated)".into())
}

impl Store for FailingStore {
    fn get(&self, _: Keyspace, _: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Err(gone())
    }
    fn scan_prefix(&self, _: Keyspace, _: &[u8]) -> EntryIter<'_> {
        Box::new(std::iter::once(Err(gone())))
    }
    fn scan_from(&self, _: Keyspace, _: &[u8]) -> EntryIter<'_> {
        Box::new(std::iter::once(Err(gone())))
    }
    fn last_with_prefix(&self, _: Keyspace, _: &[u8]) -> Result<Option<Entry>, StoreError> {
        Err(gone())
    }
    fn apply(&self, _: Batch) -> Result<(), StoreError> {
        Err(gone())
    }
    fn flush(&self) -> Result<(), StoreError> {
        Err(gone())
    }
    fn size_on_disk(&self) -> Result<u64, StoreError> {
        Err(gone())
    }
}
