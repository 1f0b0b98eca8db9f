//! The log itself: appends, checkpoints, verification and queries.

use std::collections::HashMap;
use std::sync::{mpsc, Arc, Condvar, Mutex, RwLock};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use vault::crypto::{verify_signature, SigningKey};
use vault::segments::SegmentLog;
use vault::{keyspaces as ks, Batch, KeyRing, Store};

use crate::event::{chain_hash, hex, unhex, Event, NewEvent, Outcome};

const META_HEAD: &[u8] = b"audit.head";
const SIGN_DOMAIN: &[u8] = b"steward-audit-checkpoint\n";
const SIGN_DOMAIN_V2: &[u8] = b"steward-audit-checkpoint-v2\n";
const HEAD_DOMAIN: &[u8] = b"steward-audit-head\n";
const ATTACH_DOMAIN: &[u8] = b"steward-audit-attachment\n";
const FRAME_DOMAIN: &[u8] = b"steward-audit-block\n";
const META_ARCHIVED: &[u8] = b"audit.archived";
const ARCHIVED_DOMAIN: &[u8] = b"steward-audit-archived\n";

/// Errors of the audit log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The event could not be written: the operation it records must not happen.
    #[error("the audit log could not be written ({0}); the operation was not carried out")]
    Append(String),
    /// The stored log is shorter than its recorded head: someone removed events.
    #[error("the audit log ends at event {found} but its head says {expected}; run `steward audit verify`")]
    Truncated {
        /// Events the head records.
        expected: u64,
        /// Events found.
        found: u64,
    },
    /// Reading the log failed.
    #[error("reading the audit log failed: {0}")]
    Read(String),
    /// The log's stored bytes failed their checksum or do not parse: the disk or the files
    /// are damaged.
    #[error("the audit log's storage is damaged: {0}")]
    Damaged(String),
    /// A checkpoint file that is not one.
    #[error("not a Steward audit checkpoint: {0}")]
    BadCheckpoint(String),
}

/// A store error met while reading the log: damage is [`Error::Damaged`], the rest
/// [`Error::Read`].
fn read_error(e: vault::StoreError) -> Error {
    match e {
        vault::StoreError::Corrupt(detail) => Error::Damaged(detail),
        other => Error::Read(other.to_string()),
    }
}

/// A segment file error met while reading the log.
fn read_error_v(e: vault::Error) -> Error {
    match e {
        vault::Error::Corrupt { what } => Error::Damaged(what),
        vault::Error::Store(s) => read_error(s),
        other => Error::Read(other.to_string()),
    }
}

/// An error writing the log: the operation it records must not happen.
fn append_error(e: impl std::fmt::Display) -> Error {
    Error::Append(e.to_string())
}

/// When checkpoints are written.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Every this many events.
    pub checkpoint_every: u64,
    /// Or when this many seconds passed since the last one (checked on append).
    pub checkpoint_seconds: u64,
    /// The active segment file is sealed (compressed) once it holds this many bytes.
    pub seal_bytes: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            checkpoint_every: 1000,
            checkpoint_seconds: 60,
            seal_bytes: 4 << 20,
        }
    }
}

/// A signed statement: "the log had `size` events and its head hash was `head` at `time`".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Number of events covered.
    pub size: u64,
    /// Chain hash after the last covered event (hex).
    pub head: String,
    /// When it was made (RFC 3339, UTC).
    pub time: String,
    /// The Ed25519 public key that signs this log's checkpoints (hex).
    pub public_key: String,
    /// Ed25519 signature over the domain, size, head and time, and for chained checkpoints
    /// their number and the previous one's digest (hex).
    pub signature: String,
    /// Its number in the log's chain of checkpoints (1 = the first); 0 for checkpoints made
    /// before they were chained.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub index: u64,
    /// The digest of the checkpoint before it ([`Checkpoint::digest`], hex; empty for the
    /// first): deleting one breaks the chain.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prev: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Checkpoint {
    fn message(&self, head: &[u8; 32]) -> Vec<u8> {
        let chained = self.index > 0;
        let mut m = if chained {
            SIGN_DOMAIN_V2.to_vec()
        } else {
            SIGN_DOMAIN.to_vec()
        };
        m.extend_from_slice(&self.size.to_be_bytes());
        m.extend_from_slice(head);
        m.extend_from_slice(self.time.as_bytes());
        if chained {
            m.extend_from_slice(&self.index.to_be_bytes());
            m.push(b'\n');
            m.extend_from_slice(self.prev.as_bytes());
        }
        m
    }

    fn attachment_message(&self, what: &str, bytes: &[u8]) -> Vec<u8> {
        let mut h = vault::crypto::Sha256::new();
        h.update(bytes);
        let mut m = ATTACH_DOMAIN.to_vec();
        m.extend_from_slice(what.as_bytes());
        m.push(b'\n');
        m.extend_from_slice(self.digest().as_bytes());
        m.push(b'\n');
        m.extend_from_slice(&h.finish());
        m
    }

    /// True when `signature` is this checkpoint's key signing `bytes` as its attachment
    /// `what` (see [`AuditLog::sign_attachment`]).
    pub fn attachment_valid(&self, what: &str, bytes: &[u8], signature: &str) -> bool {
        let (Some(pk), Some(sig)) = (unhex(&self.public_key), unhex(signature)) else {
            return false;
        };
        verify_signature(&pk, &self.attachment_message(what, bytes), &sig)
    }

    /// SHA-256 of its signature (hex): what the next checkpoint and the signed head name.
    pub fn digest(&self) -> String {
        let mut h = vault::crypto::Sha256::new();
        h.update(self.signature.as_bytes());
        hex(&h.finish())
    }

    /// Checks the signature against the key the checkpoint names.
    pub fn signature_valid(&self) -> bool {
        let (Some(pk), Some(sig), Some(head)) = (
            unhex(&self.public_key),
            unhex(&self.signature),
            unhex(&self.head),
        ) else {
            return false;
        };
        let Ok(head) = <[u8; 32]>::try_from(head.as_slice()) else {
            return false;
        };
        verify_signature(&pk, &self.message(&head), &sig)
    }
}

/// What verification found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// True when nothing is wrong.
    pub ok: bool,
    /// Events read.
    pub events: u64,
    /// Checkpoints checked.
    pub checkpoints: u64,
    /// Chain hash after the last event (hex).
    pub head: String,
    /// Events after the last signed checkpoint: covered by the signed head, so they cannot
    /// be altered unseen, but a rollback of them to an earlier head shows only against an
    /// exported checkpoint (`--against`).
    pub unsigned_tail: u64,
    /// The first problem, by sequence number.
    pub problem: Option<VerifyProblem>,
}

/// The first thing wrong with a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyProblem {
    /// The first bad sequence number.
    pub seq: u64,
    /// `hash_mismatch`, `gap`, `out_of_order`, `malformed`, `bad_signature`,
    /// `checkpoint_mismatch`, `checkpoint_missing`, `head_unsigned`, `unvouched`,
    /// `truncated` or `rollback`.
    pub kind: String,
    /// In words.
    pub detail: String,
}

/// Filters for [`AuditLog::query`]. All given filters must match.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Events that concern this subject id.
    pub subject: Option<String>,
    /// Events by this actor (principal id or user name).
    pub actor: Option<String>,
    /// Events whose action is this, or starts with this followed by a dot, or ends with `.` +
    /// this (`subject.read`, `subject`, `read`).
    pub action: Option<String>,
    /// Events with this outcome.
    pub outcome: Option<Outcome>,
    /// Events at or after this time (RFC 3339 or a date).
    pub from: Option<String>,
    /// Events before this time (RFC 3339 or a date).
    pub to: Option<String>,
    /// Only events with a greater sequence number (paging).
    pub after: Option<u64>,
    /// Page size.
    pub limit: usize,
}

impl Query {
    fn matches(&self, e: &Event) -> bool {
        if let Some(s) = &self.subject {
            if !e.subjects.iter().any(|x| x == s) {
                return false;
            }
        }
        if let Some(a) = &self.actor {
            if &e.actor != a && &e.actor_name != a {
                return false;
            }
        }
        if let Some(a) = &self.action {
            let ok = &e.action == a
                || e.action.starts_with(&format!("{a}."))
                || e.action.ends_with(&format!(".{a}"));
            if !ok {
                return false;
            }
        }
        if self.outcome.is_some_and(|o| o != e.outcome) {
            return false;
        }
        if self.from.as_deref().is_some_and(|f| e.time.as_str() < f) {
            return false;
        }
        if self.to.as_deref().is_some_and(|t| e.time.as_str() >= t) {
            return false;
        }
        true
    }
}

/// The log's recorded end, signed: how many events and checkpoints it has and the last
/// checkpoint's digest, so neither events nor checkpoints can be removed or rewritten unseen
/// by someone without the log's key. Kept in the store, rewritten at every checkpoint, seal
/// and close (the events themselves are in segment files, each block signed on its own).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Head {
    next_seq: u64,
    head: String,
    next_block: u64,
    #[serde(default)]
    checkpoints: u64,
    #[serde(default)]
    last_checkpoint: String,
    /// Events before this one were written before heads were signed and were not covered by
    /// a signed checkpoint when this version first opened the log: nothing vouches for them
    /// (0 when everything is vouched for).
    #[serde(default)]
    unvouched_before: u64,
    #[serde(default)]
    signature: String,
}

impl Head {
    fn message(&self) -> Vec<u8> {
        let mut m = HEAD_DOMAIN.to_vec();
        m.extend_from_slice(&self.next_seq.to_be_bytes());
        m.extend_from_slice(self.head.as_bytes());
        m.push(b'\n');
        m.extend_from_slice(&self.next_block.to_be_bytes());
        m.extend_from_slice(&self.checkpoints.to_be_bytes());
        m.extend_from_slice(self.last_checkpoint.as_bytes());
        m.push(b'\n');
        m.extend_from_slice(&self.unvouched_before.to_be_bytes());
        m
    }
}

/// Where the live log starts when its first segments were moved to an archive
/// (`steward audit archive`): signed, so live segments cannot be deleted and passed off as
/// archived.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Archived {
    next_seq: u64,
    next_block: u64,
    head: String,
    signature: String,
}

impl Archived {
    fn message(&self) -> Vec<u8> {
        let mut m = ARCHIVED_DOMAIN.to_vec();
        m.extend_from_slice(&self.next_seq.to_be_bytes());
        m.extend_from_slice(&self.next_block.to_be_bytes());
        m.extend_from_slice(self.head.as_bytes());
        m
    }
}

/// What a sealed segment says about itself (its `meta`): where it starts and ends, so an
/// archive can be verified on its own (its last block's signature vouches for the end).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SegmentMeta {
    first_seq: u64,
    next_seq: u64,
    first_block: u64,
    next_block: u64,
    /// Chain hash before its first event (hex).
    start: String,
    /// Chain hash after its last event (hex).
    end: String,
}

struct State {
    next_seq: u64,
    head: [u8; 32],
    next_block: u64,
    last_checkpoint_size: u64,
    last_checkpoint_at: Instant,
    /// Checkpoints written and the last one's digest (for the next one and the head).
    checkpoints: u64,
    last_checkpoint: String,
    /// See [`Head::unvouched_before`].
    unvouched_before: u64,
    /// Set when the stored log is shorter than its head: appends are refused.
    truncated: Option<(u64, u64)>,
    /// Set when a write's block reached the store but not the segment file: appends are
    /// refused until the log is opened again (which moves the block over).
    broken: bool,
    /// First event and block of the active segment, and the chain hash before it.
    segment_first: (u64, u64, [u8; 32]),
    /// Blocks of writes kept in the store until the segment holding them is synced.
    pending: Vec<u64>,
    /// The last checkpoint made by this process.
    last_cp: Option<Checkpoint>,
}

#[derive(Default)]
struct Queue {
    pending: Vec<(u64, NewEvent)>,
    next_ticket: u64,
    results: HashMap<u64, Result<u64, String>>,
    leader: bool,
}

/// What the log's background writer does, in order: checkpoints (sync the segment, then
/// store the checkpoint, the signed head and the deletion of writes' blocks) and seals.
/// Appends never wait for it; an explicit checkpoint does.
enum Job {
    Checkpoint {
        checkpoint: Option<Checkpoint>,
        head: Vec<u8>,
        pending: Vec<u64>,
        done: Option<mpsc::Sender<Result<(), String>>>,
    },
    Seal {
        segment: vault::segments::Segment,
        meta: Vec<u8>,
    },
}

/// What the appenders and the background writer share.
struct Shared {
    store: RwLock<Arc<dyn Store>>,
    segments: SegmentLog,
    /// The store is shared by several processes (PostgreSQL): the log lives in it, in
    /// `audit_frames`, and every append takes the store's audit lock and reads the log's end
    /// back first (see [`AuditLog::open`]).
    multi: bool,
    /// Set when a checkpoint could not be stored: appends are refused (fail closed).
    failed: std::sync::OnceLock<String>,
}

impl Shared {
    fn store(&self) -> Arc<dyn Store> {
        self.store.read().expect("audit store").clone()
    }

    /// Syncs the segment, then stores `checkpoint`, the signed `head` and the deletion of
    /// the writes' blocks the segment now holds, in one batch: the head never names events
    /// the files might lose.
    fn store_head(
        &self,
        checkpoint: Option<&Checkpoint>,
        head: Vec<u8>,
        pending: &[u64],
    ) -> Result<(), Error> {
        if !self.multi {
            self.segments.sync().map_err(append_error)?;
        }
        let mut batch = Batch::new();
        if let Some(cp) = checkpoint {
            batch.put(
                ks::AUDIT_CHECKPOINTS,
                cp.size.to_be_bytes().to_vec(),
                serde_json::to_vec(cp).expect("json"),
            );
        }
        batch.put(ks::META, META_HEAD, head);
        for no in pending {
            batch.delete(ks::AUDIT, no.to_be_bytes().to_vec());
        }
        self.store().apply(batch).map_err(append_error)
    }

    fn work(&self, jobs: mpsc::Receiver<Job>) {
        for job in jobs {
            match job {
                Job::Checkpoint {
                    checkpoint,
                    head,
                    pending,
                    done,
                } => {
                    let r = self.store_head(checkpoint.as_ref(), head, &pending);
                    if let Err(e) = &r {
                        tracing::error!(error = %e, "an audit checkpoint could not be stored; audited operations are refused until Steward restarts");
                        let _ = self.failed.set(e.to_string());
                    }
                    if let Some(done) = done {
                        let _ = done.send(r.map_err(|e| e.to_string()));
                    }
                }
                Job::Seal { segment, meta } => {
                    if let Err(e) = self.segments.seal_file(&segment, &meta) {
                        tracing::warn!(error = %e, "an audit segment was not sealed; it is sealed when Steward next opens the log");
                    }
                }
            }
        }
    }
}

/// The audit log of one data directory.
pub struct AuditLog {
    shared: Arc<Shared>,
    key: SigningKey,
    config: AuditConfig,
    state: Mutex<State>,
    queue: Mutex<Queue>,
    wake: Condvar,
    worker: Mutex<Option<(mpsc::Sender<Job>, std::thread::JoinHandle<()>)>>,
}

/// Current UTC time, RFC 3339 with microseconds and `Z`.
pub(crate) fn now_rfc3339() -> String {
    domain::format_utc(time::OffsetDateTime::now_utc())
}

/// One stored event: its canonical bytes and its chain hash.
type Stored<'a> = (&'a [u8], &'a [u8]);

/// The events of a block, as (canonical bytes, stored hash) pairs, in order; the last item
/// is `None` when the framing breaks there (the events before it are still returned).
fn events_of(block: &[u8]) -> Vec<Option<Stored<'_>>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < block.len() {
        let item = block.get(pos..pos + 4).and_then(|b| {
            let len = u32::from_le_bytes(b.try_into().ok()?) as usize;
            let body = block.get(pos + 4..pos.checked_add(4 + len)?)?;
            let hash = block.get(pos + 4 + len..pos + 36 + len)?;
            Some((body, hash, 36 + len))
        });
        match item {
            Some((body, hash, step)) => {
                out.push(Some((body, hash)));
                pos += step;
            }
            None => {
                out.push(None);
                break;
            }
        }
    }
    out
}

/// [`events_of`], failing on broken framing.
fn split_block(block: &[u8]) -> Option<Vec<Stored<'_>>> {
    events_of(block).into_iter().collect()
}

/// The `seq` of canonical bytes, read without a full parse (`{"seq":N,...`).
fn seq_of(canonical: &[u8]) -> Option<u64> {
    let rest = canonical.strip_prefix(b"{\"seq\":")?;
    let end = rest.iter().position(|b| !b.is_ascii_digit())?;
    if end == 0 || rest.get(end) != Some(&b',') {
        return None;
    }
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// A frame of a segment: `block number (u64 BE) | block | Ed25519 signature (64)` where the
/// signature covers the block number, the next sequence number and the chain hash after the
/// block, so the events after the last checkpoint cannot be rewritten without the key.
struct Frame<'a> {
    block_no: u64,
    block: &'a [u8],
    signature: &'a [u8],
}

fn frame_of(payload: &[u8]) -> Option<Frame<'_>> {
    if payload.len() < 8 + 64 {
        return None;
    }
    let (no, rest) = payload.split_at(8);
    let (block, signature) = rest.split_at(rest.len() - 64);
    Some(Frame {
        block_no: u64::from_be_bytes(no.try_into().ok()?),
        block,
        signature,
    })
}

fn frame_message(block_no: u64, next_seq: u64, head: &[u8]) -> Vec<u8> {
    let mut m = FRAME_DOMAIN.to_vec();
    m.extend_from_slice(&block_no.to_be_bytes());
    m.extend_from_slice(&next_seq.to_be_bytes());
    m.extend_from_slice(head);
    m
}

/// The last event of a block: its sequence number and chain hash.
fn block_end(block: &[u8]) -> Option<(u64, [u8; 32])> {
    let events = split_block(block)?;
    let (body, hash) = events.last()?;
    Some((seq_of(body)?, (*hash).try_into().ok()?))
}

/// A chain hash from hex (zeros when it is not one: verification then reports the break).
fn hash_of(text: &str) -> [u8; 32] {
    unhex(text)
        .and_then(|h| h.try_into().ok())
        .unwrap_or([0; 32])
}

/// The first event and block of a segment's frames, and its last event, block and chain
/// hash: `Some(None)` for an empty segment, `None` when its first or last frame is unreadable.
#[allow(clippy::type_complexity)]
fn segment_ends(raw: &[u8]) -> Option<Option<((u64, u64), (u64, u64, [u8; 32]))>> {
    let mut frames = vault::segments::frames(raw);
    let Some(first) = frames.next() else {
        return Some(None);
    };
    let first = frame_of(first.ok()?.payload)?;
    let first_seq = seq_of(split_block(first.block)?.first()?.0)?;
    let last = match vault::segments::frames(raw).last()? {
        Ok(f) => frame_of(f.payload)?,
        Err(_) => return None,
    };
    let (end_seq, end) = block_end(last.block)?;
    Some(Some((
        (first_seq, first.block_no),
        (end_seq, last.block_no, end),
    )))
}

/// A sealed segment's header, read without unpacking the segment.
fn segment_meta(segment: &vault::segments::Segment) -> Result<SegmentMeta, Error> {
    serde_json::from_slice(&segment.meta().map_err(read_error_v)?)
        .map_err(|_| Error::Damaged(format!("{} has no readable header", segment.path.display())))
}

/// Adds the events of `raw`'s frames that `q` selects to `out`; true once `out` holds
/// `limit` events.
fn query_frames(q: &Query, raw: &[u8], limit: usize, out: &mut Vec<Event>) -> Result<bool, Error> {
    for payload in vault::segments::frames(raw) {
        let frame = payload
            .ok()
            .and_then(|f| frame_of(f.payload))
            .ok_or_else(|| {
                Error::Read("a block is malformed; run `steward audit verify`".into())
            })?;
        let events = split_block(frame.block).ok_or_else(|| {
            Error::Read("a block is malformed; run `steward audit verify`".into())
        })?;
        for (body, _) in events {
            if q.after
                .is_some_and(|a| seq_of(body).is_some_and(|s| s <= a))
            {
                continue;
            }
            let e: Event = serde_json::from_slice(body).map_err(|_| {
                Error::Read("an event is malformed; run `steward audit verify`".into())
            })?;
            if q.matches(&e) {
                out.push(e);
                if out.len() == limit {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

/// A block built and not yet stored.
struct Built {
    block_no: u64,
    block: Vec<u8>,
    next_seq: u64,
    head: [u8; 32],
}

impl AuditLog {
    /// Opens the log: its events in the segment files of `segments`, its checkpoints, signed
    /// head and the blocks of writes not yet moved to a segment in `store`, its signing key
    /// derived from the master secret. Blocks of writes that a crash kept from their segment
    /// are moved there now.
    pub fn open(
        store: Arc<dyn Store>,
        segments: SegmentLog,
        keys: &KeyRing,
        config: AuditConfig,
    ) -> Result<AuditLog, Error> {
        let seed = keys.derive_bytes("steward/v1/audit/ed25519-seed", 32);
        let key = SigningKey::from_seed(&seed)
            .ok_or_else(|| Error::Read("cannot derive the signing key".into()))?;
        if store.shared() {
            return AuditLog::open_multi(store, segments, key, config);
        }
        let recorded: Option<Head> = store
            .get(ks::META, META_HEAD)
            .map_err(read_error)?
            .and_then(|b| serde_json::from_slice(&b).ok());
        let archived: Option<Archived> = store
            .get(ks::META, META_ARCHIVED)
            .map_err(read_error)?
            .and_then(|b| serde_json::from_slice(&b).ok());
        // Walk the segments' ends in order: each one's start is the end before it; the last
        // end is the end of the log. Segments rotated out but not sealed (a crash, or Steward
        // stopped before the writer got to them) are sealed once the log is open.
        let (mut next_seq, mut head, mut next_block) = match &archived {
            Some(a) => (a.next_seq, hash_of(&a.head), a.next_block),
            None => (0, [0u8; 32], 0),
        };
        let listed = segments.segments().map_err(read_error_v)?;
        let last = listed.len().saturating_sub(1);
        let mut to_seal = Vec::new();
        let mut segment_first = (next_seq, next_block, head);
        for (i, segment) in listed.iter().enumerate() {
            let start = (next_seq, next_block, head);
            if segment.sealed {
                let meta = segment_meta(segment)?;
                (next_seq, next_block, head) = (meta.next_seq, meta.next_block, hash_of(&meta.end));
                continue;
            }
            let data = segment.read().map_err(read_error_v)?;
            let ends = segment_ends(&data.raw).ok_or_else(|| {
                Error::Damaged(format!(
                    "the first or last block of {} cannot be read; run `steward audit verify`",
                    segment.path.display()
                ))
            });
            match ends {
                Ok(Some(((first_seq, first_block), (end_seq, end_block, end)))) => {
                    if i < last {
                        let meta = SegmentMeta {
                            first_seq,
                            next_seq: end_seq + 1,
                            first_block,
                            next_block: end_block + 1,
                            start: hex(&start.2),
                            end: hex(&end),
                        };
                        to_seal.push((segment.clone(), meta));
                    } else {
                        segment_first = (first_seq, first_block, start.2);
                    }
                    (next_seq, next_block, head) = (end_seq + 1, end_block + 1, end);
                }
                Ok(None) => segment_first = start,
                // A damaged active segment: the log's end is where its readable part stops;
                // verification says what is wrong.
                Err(e) if i == last => {
                    tracing::error!(error = %e, "the audit log's active segment is damaged");
                    let readable = vault::segments::frames(&data.raw)
                        .map_while(|f| f.ok())
                        .map_while(|f| frame_of(f.payload))
                        .map_while(|f| Some((f.block_no, block_end(f.block)?)))
                        .last();
                    if let Some((no, (seq, end))) = readable {
                        (next_seq, head, next_block) = (seq + 1, end, no + 1);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        // Blocks of writes still in the store: the ones the segments lack go there now, in
        // order, if they continue the log.
        let mut moved = Vec::new();
        let mut gap = None;
        for entry in store.scan_prefix(ks::AUDIT, &[]) {
            let (k, block) = entry.map_err(read_error)?;
            let no = u64::from_be_bytes(
                k.as_slice()
                    .try_into()
                    .map_err(|_| Error::Damaged("a stored block key is malformed".into()))?,
            );
            if no < next_block {
                moved.push(k);
                continue;
            }
            let first = split_block(&block).and_then(|e| e.first().and_then(|(b, _)| seq_of(b)));
            let Some(((end_seq, end_hash), first)) = block_end(&block).zip(first) else {
                gap = Some(no);
                break;
            };
            if no != next_block || first != next_seq {
                gap = Some(no);
                break;
            }
            let mut payload = no.to_be_bytes().to_vec();
            payload.extend_from_slice(&block);
            payload.extend_from_slice(
                key.sign(&frame_message(no, end_seq + 1, &end_hash))
                    .as_ref(),
            );
            segments.append(&payload).map_err(append_error)?;
            (next_seq, head, next_block) = (end_seq + 1, end_hash, no + 1);
            moved.push(k);
            // A log moved over from the store (written before segment files) is cut into
            // segments of the usual size as it goes.
            if config.seal_bytes > 0 && segments.active_len() >= config.seal_bytes {
                if let Some(segment) = segments.rotate(next_seq).map_err(append_error)? {
                    let (first_seq, first_block, start) = segment_first;
                    let meta = SegmentMeta {
                        first_seq,
                        next_seq,
                        first_block,
                        next_block,
                        start: hex(&start),
                        end: hex(&head),
                    };
                    to_seal.push((segment, meta));
                    segment_first = (next_seq, next_block, head);
                }
            }
        }
        if !moved.is_empty() {
            segments.sync().map_err(append_error)?;
            let mut batch = Batch::new();
            for k in moved {
                batch.delete(ks::AUDIT, k);
            }
            store.apply(batch).map_err(append_error)?;
        }
        let mut truncated = None;
        if let Some(r) = &recorded {
            if r.next_seq > next_seq {
                truncated = Some((r.next_seq, next_seq));
            }
        }
        if let (None, Some(no)) = (truncated, gap) {
            truncated = Some((next_seq + 1, next_seq));
            tracing::error!(
                block = no,
                "an audit block in the store does not continue the log"
            );
        }
        let last = store
            .last_with_prefix(ks::AUDIT_CHECKPOINTS, &[])
            .map_err(read_error)?;
        let last_checkpoint_size = last
            .as_ref()
            .map(|(k, _)| u64::from_be_bytes(k.as_slice().try_into().unwrap_or([0; 8])))
            .unwrap_or(0);
        let last_cp: Option<Checkpoint> = last.and_then(|(_, v)| serde_json::from_slice(&v).ok());
        // The chain goes on from the last checkpoint (numbered after the ones stored, which
        // for a log from before the chain are counted here once).
        let checkpoints = match &last_cp {
            Some(cp) if cp.index > 0 => cp.index,
            Some(_) => store.scan_prefix(ks::AUDIT_CHECKPOINTS, &[]).count() as u64,
            None => 0,
        };
        let last_checkpoint = last_cp.map(|cp| cp.digest()).unwrap_or_default();
        let shared = Arc::new(Shared {
            store: RwLock::new(store),
            segments,
            multi: false,
            failed: std::sync::OnceLock::new(),
        });
        let log = AuditLog {
            shared,
            key,
            config,
            state: Mutex::new(State {
                next_seq,
                head,
                next_block,
                last_checkpoint_size,
                last_checkpoint_at: Instant::now(),
                checkpoints,
                last_checkpoint,
                unvouched_before: recorded.as_ref().map_or(0, |r| r.unvouched_before),
                truncated,
                broken: false,
                segment_first,
                pending: Vec::new(),
                last_cp: None,
            }),
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            worker: Mutex::new(None),
        };
        // A log last written before heads were signed: its head is signed now, if its events
        // verify against a signed checkpoint; if nothing signed covers them, the head says
        // so for good (`unvouched`), so a log rewritten with its checkpoints deleted cannot
        // pass for an old one.
        let unsigned = recorded.as_ref().is_none_or(|r| r.signature.is_empty());
        if unsigned && next_seq > 0 && truncated.is_none() {
            let v = log.verify(None)?;
            let fine = v.problem.as_ref().is_none_or(|p| p.kind == "head_unsigned");
            let mut state = log.state.lock().expect("audit state");
            if !(fine && v.checkpoints > 0) {
                state.unvouched_before = state.next_seq;
            }
        }
        let stale = recorded
            .as_ref()
            .is_none_or(|r| r.next_seq != next_seq || r.signature.is_empty());
        if truncated.is_none() && stale {
            let state = log.state.lock().expect("audit state");
            log.shared
                .store_head(None, log.head_bytes(&state, None), &[])?;
        }
        let (jobs, receiver) = mpsc::channel();
        let shared = log.shared.clone();
        let handle = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || shared.work(receiver))
            .map_err(|e| Error::Read(format!("cannot start the audit writer: {e}")))?;
        for (segment, meta) in to_seal {
            let meta = serde_json::to_vec(&meta).expect("json");
            let _ = jobs.send(Job::Seal { segment, meta });
        }
        *log.worker.lock().expect("audit worker") = Some((jobs, handle));
        Ok(log)
    }

    /// Opens the log of a store that several processes share. Its blocks are frames in the
    /// store (`audit_frames`, by block number), not segment files: every server writes the
    /// one chain. An append takes the store's audit lock, reads the log's end (last block,
    /// last checkpoint) back, builds its block on it and stores the block, the signed head
    /// and any checkpoint due in one batch (a write's: in the batch of the write itself)
    /// before it lets go, so the chain never forks and the signed head always covers the
    /// last event.
    fn open_multi(
        store: Arc<dyn Store>,
        segments: SegmentLog,
        key: SigningKey,
        config: AuditConfig,
    ) -> Result<AuditLog, Error> {
        let recorded: Option<Head> = store
            .get(ks::META, META_HEAD)
            .map_err(read_error)?
            .and_then(|b| serde_json::from_slice(&b).ok());
        let log = AuditLog {
            shared: Arc::new(Shared {
                store: RwLock::new(store),
                segments,
                multi: true,
                failed: std::sync::OnceLock::new(),
            }),
            key,
            config,
            state: Mutex::new(State {
                next_seq: 0,
                head: [0; 32],
                next_block: 0,
                last_checkpoint_size: 0,
                last_checkpoint_at: Instant::now(),
                checkpoints: 0,
                last_checkpoint: String::new(),
                unvouched_before: recorded.as_ref().map_or(0, |r| r.unvouched_before),
                truncated: None,
                broken: false,
                segment_first: (0, 0, [0; 32]),
                pending: Vec::new(),
                last_cp: None,
            }),
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            worker: Mutex::new(None),
        };
        {
            let mut state = log.state.lock().expect("audit state");
            log.refresh(&mut state)?;
            if let Some(r) = &recorded {
                if r.next_seq > state.next_seq {
                    state.truncated = Some((r.next_seq, state.next_seq));
                }
            }
        }
        Ok(log)
    }

    /// The end of a shared log as the store has it now (another server may have appended
    /// or checkpointed since): the last block's sequence, chain hash and number, and the
    /// last checkpoint. Called under the store's audit lock.
    fn refresh(&self, state: &mut State) -> Result<(), Error> {
        let store = self.store();
        let last = store
            .last_with_prefix(ks::AUDIT_FRAMES, &[])
            .map_err(read_error)?;
        (state.next_seq, state.head, state.next_block) = match last {
            None => (0, [0; 32], 0),
            Some((_, frame)) => {
                let end = vault::segments::frames(&frame)
                    .next()
                    .and_then(|f| f.ok())
                    .and_then(|f| frame_of(f.payload))
                    .and_then(|f| Some((f.block_no, block_end(f.block)?)));
                let Some((no, (seq, hash))) = end else {
                    return Err(Error::Damaged(
                        "the audit log's last block in the database cannot be read; run `steward audit verify`".into(),
                    ));
                };
                (seq + 1, hash, no + 1)
            }
        };
        let cp = store
            .last_with_prefix(ks::AUDIT_CHECKPOINTS, &[])
            .map_err(read_error)?
            .and_then(|(_, v)| serde_json::from_slice::<Checkpoint>(&v).ok());
        if let Some(cp) = cp {
            if state.last_checkpoint_size != cp.size {
                state.last_checkpoint_at = Instant::now();
            }
            state.last_checkpoint_size = cp.size;
            state.checkpoints = cp.index;
            state.last_checkpoint = cp.digest();
            state.last_cp = Some(cp);
        }
        Ok(())
    }

    /// In a shared log: takes the store's audit lock and brings `state` up to date.
    fn lock_multi(&self, state: &mut State) -> Result<Option<vault::CrossLock>, Error> {
        let lock = self
            .store()
            .lock_across(vault::CrossLockName::Audit)
            .map_err(append_error)?;
        self.refresh(state)?;
        Ok(lock)
    }

    /// In a shared log: what goes into the batch with a block: the block's frame, a
    /// checkpoint when one is due, and the signed head after them. `state` moves on.
    fn stage_multi(
        &self,
        state: &mut State,
        built: &Built,
        batch: &mut Batch,
    ) -> Result<(), Error> {
        let framed = vault::segments::frame(&self.frame(built)).map_err(append_error)?;
        batch.put(
            ks::AUDIT_FRAMES,
            built.block_no.to_be_bytes().to_vec(),
            framed,
        );
        state.next_seq = built.next_seq;
        state.head = built.head;
        state.next_block = built.block_no + 1;
        let due = state.next_seq - state.last_checkpoint_size >= self.config.checkpoint_every
            || state.last_checkpoint_at.elapsed().as_secs() >= self.config.checkpoint_seconds;
        let cp = due.then(|| self.checkpoint_for(state, state.next_seq, &state.head));
        batch.put(ks::META, META_HEAD, self.head_bytes(state, cp.as_ref()));
        if let Some(cp) = cp {
            batch.put(
                ks::AUDIT_CHECKPOINTS,
                cp.size.to_be_bytes().to_vec(),
                serde_json::to_vec(&cp).expect("json"),
            );
            state.last_checkpoint_size = cp.size;
            state.last_checkpoint_at = Instant::now();
            state.checkpoints += 1;
            state.last_checkpoint = cp.digest();
            state.last_cp = Some(cp);
        }
        Ok(())
    }

    fn commit_multi(&self, events: Vec<NewEvent>) -> Result<u64, Error> {
        let mut state = self.state.lock().expect("audit state");
        let _lock = self.lock_multi(&mut state)?;
        let first = state.next_seq;
        let built = self.build(&state, events)?;
        let mut batch = Batch::new();
        self.stage_multi(&mut state, &built, &mut batch)?;
        self.store().apply(batch).map_err(append_error)?;
        Ok(first)
    }

    fn archived(&self) -> Result<Option<Archived>, Error> {
        Ok(self
            .store()
            .get(ks::META, META_ARCHIVED)
            .map_err(read_error)?
            .and_then(|b| serde_json::from_slice(&b).ok()))
    }

    pub(crate) fn store(&self) -> Arc<dyn Store> {
        self.shared.store()
    }

    /// Replaces the store that keeps checkpoints, the head and writes' blocks (tests use it
    /// to make the store fail).
    #[doc(hidden)]
    pub fn set_store(&self, store: Arc<dyn Store>) {
        *self.shared.store.write().expect("audit store") = store;
    }

    /// The segment files (tests and benchmarks make their appends fail or vanish).
    #[doc(hidden)]
    pub fn segments(&self) -> &SegmentLog {
        &self.shared.segments
    }

    /// The public key that verifies this log's checkpoints (hex).
    pub fn public_key(&self) -> String {
        hex(self.key.public_key())
    }

    /// Number of events in the log.
    pub fn len(&self) -> u64 {
        self.state.lock().expect("audit state").next_seq
    }

    /// True when the log has no event.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn checkpoint_for(&self, state: &State, size: u64, head: &[u8; 32]) -> Checkpoint {
        let mut cp = Checkpoint {
            size,
            head: hex(head),
            time: now_rfc3339(),
            public_key: self.public_key(),
            signature: String::new(),
            index: state.checkpoints + 1,
            prev: state.last_checkpoint.clone(),
        };
        cp.signature = hex(self.key.sign(&cp.message(head)).as_ref());
        cp
    }

    /// Builds the block for `events` on top of `state`.
    fn build(&self, state: &State, events: Vec<NewEvent>) -> Result<Built, Error> {
        if let Some((expected, found)) = state.truncated {
            return Err(Error::Truncated { expected, found });
        }
        if let Some(e) = self.shared.failed.get() {
            return Err(Error::Append(format!(
                "a checkpoint could not be stored ({e}); restart Steward"
            )));
        }
        if state.broken {
            return Err(Error::Append(
                "an earlier write's event did not reach the log's files; restart Steward, which moves it there".into(),
            ));
        }
        let time = now_rfc3339();
        let mut block = Vec::with_capacity(events.len() * 320);
        let mut seq = state.next_seq;
        let mut head = state.head;
        for e in events {
            let event = e.at(seq, time.clone());
            let canonical = event.canonical();
            head = chain_hash(&head, &canonical);
            block.extend_from_slice(&(canonical.len() as u32).to_le_bytes());
            block.extend_from_slice(&canonical);
            block.extend_from_slice(&head);
            seq += 1;
        }
        Ok(Built {
            block_no: state.next_block,
            block,
            next_seq: seq,
            head,
        })
    }

    fn frame(&self, built: &Built) -> Vec<u8> {
        let mut payload = Vec::with_capacity(built.block.len() + 72);
        payload.extend_from_slice(&built.block_no.to_be_bytes());
        payload.extend_from_slice(&built.block);
        let message = frame_message(built.block_no, built.next_seq, &built.head);
        payload.extend_from_slice(self.key.sign(&message).as_ref());
        payload
    }

    /// The signed head as `state` has it, with `checkpoint` counted if given.
    fn head_bytes(&self, state: &State, checkpoint: Option<&Checkpoint>) -> Vec<u8> {
        let (count, last) = match checkpoint {
            Some(cp) => (state.checkpoints + 1, cp.digest()),
            None => (state.checkpoints, state.last_checkpoint.clone()),
        };
        let mut recorded = Head {
            next_seq: state.next_seq,
            head: hex(&state.head),
            next_block: state.next_block,
            checkpoints: count,
            last_checkpoint: last,
            unvouched_before: state.unvouched_before,
            signature: String::new(),
        };
        recorded.signature = hex(self.key.sign(&recorded.message()).as_ref());
        serde_json::to_vec(&recorded).expect("json")
    }

    /// Hands a job to the background writer (or does it here when the writer is gone) and,
    /// with `wait`, returns once it is done.
    fn submit(&self, job: Job, wait: bool) -> Result<(), Error> {
        let worker = self.worker.lock().expect("audit worker");
        let Some((jobs, _)) = worker.as_ref() else {
            drop(worker);
            return match job {
                Job::Checkpoint {
                    checkpoint,
                    head,
                    pending,
                    ..
                } => self.shared.store_head(checkpoint.as_ref(), head, &pending),
                Job::Seal { segment, meta } => self
                    .shared
                    .segments
                    .seal_file(&segment, &meta)
                    .map_err(append_error),
            };
        };
        let (done, answer) = mpsc::channel();
        let mut job = job;
        if let Job::Checkpoint { done: slot, .. } = &mut job {
            *slot = wait.then_some(done);
        }
        jobs.send(job)
            .map_err(|_| Error::Append("the audit writer stopped".into()))?;
        drop(worker);
        if wait {
            return answer
                .recv()
                .map_err(|_| Error::Append("the audit writer stopped".into()))?
                .map_err(Error::Append);
        }
        Ok(())
    }

    /// Stores the signed head as `state` has it, once the writer has done everything it was
    /// given before (checkpoints stored, rotated segments sealed).
    fn settle(&self, state: &mut State) -> Result<(), Error> {
        let head = self.head_bytes(state, None);
        let pending = std::mem::take(&mut state.pending);
        let job = Job::Checkpoint {
            checkpoint: None,
            head,
            pending,
            done: None,
        };
        self.submit(job, true)
    }

    /// Records a checkpoint of the log as `state` has it (signed now; stored by the
    /// background writer, and waited for with `wait`).
    fn record_checkpoint(&self, state: &mut State, wait: bool) -> Result<Checkpoint, Error> {
        let cp = self.checkpoint_for(state, state.next_seq, &state.head);
        let head = self.head_bytes(state, Some(&cp));
        let pending = std::mem::take(&mut state.pending);
        state.last_checkpoint_size = state.next_seq;
        state.last_checkpoint_at = Instant::now();
        state.checkpoints += 1;
        state.last_checkpoint = cp.digest();
        state.last_cp = Some(cp.clone());
        let job = Job::Checkpoint {
            checkpoint: Some(cp.clone()),
            head,
            pending,
            done: None,
        };
        self.submit(job, wait)?;
        Ok(cp)
    }

    /// After a block reached the segment: the state moves on; a checkpoint is made when one
    /// is due, and the active segment rotated out (and sealed by the writer) when it is full.
    fn advance(&self, state: &mut State, built: &Built) {
        state.next_seq = built.next_seq;
        state.head = built.head;
        state.next_block = built.block_no + 1;
        if self.config.seal_bytes > 0 && self.shared.segments.active_len() >= self.config.seal_bytes
        {
            match self.shared.segments.rotate(state.next_seq) {
                Ok(Some(segment)) => {
                    let (first_seq, first_block, start) = state.segment_first;
                    let meta = SegmentMeta {
                        first_seq,
                        next_seq: state.next_seq,
                        first_block,
                        next_block: state.next_block,
                        start: hex(&start),
                        end: hex(&state.head),
                    };
                    state.segment_first = (state.next_seq, state.next_block, state.head);
                    let meta = serde_json::to_vec(&meta).expect("json");
                    if let Err(e) = self.submit(Job::Seal { segment, meta }, false) {
                        tracing::warn!(error = %e, "an audit segment was not handed over for sealing");
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "the audit segment was not rotated; tried again later")
                }
            }
        }
        let due = state.next_seq - state.last_checkpoint_size >= self.config.checkpoint_every
            || state.last_checkpoint_at.elapsed().as_secs() >= self.config.checkpoint_seconds;
        if due {
            if let Err(e) = self.record_checkpoint(state, false) {
                tracing::warn!(error = %e, "audit checkpoint not written");
            }
        }
    }

    fn commit(&self, events: Vec<NewEvent>) -> Result<u64, Error> {
        if self.shared.multi {
            return self.commit_multi(events);
        }
        let mut state = self.state.lock().expect("audit state");
        let first = state.next_seq;
        let built = self.build(&state, events)?;
        self.shared
            .segments
            .append(&self.frame(&built))
            .map_err(append_error)?;
        self.advance(&mut state, &built);
        Ok(first)
    }

    /// Appends one event and returns its sequence number once it is in the log. Concurrent
    /// callers are committed together in one block (group commit). On error nothing of the
    /// event was written, and the caller must not carry out the operation.
    pub fn append(&self, event: NewEvent) -> Result<u64, Error> {
        let mut q = self.queue.lock().expect("audit queue");
        let ticket = q.next_ticket;
        q.next_ticket += 1;
        q.pending.push((ticket, event));
        loop {
            if let Some(r) = q.results.remove(&ticket) {
                return r.map_err(Error::Append);
            }
            if q.leader {
                q = self.wake.wait(q).expect("audit queue");
                continue;
            }
            q.leader = true;
            // Give callers that are about to append a moment to join this block: one yield
            // costs far less than the store write each of them would otherwise wait for.
            // (A dedicated writer thread was measured too, and was slower on 2 cores.)
            // While others keep arriving, yield a few more times: the block grows, and each
            // arrival saves a store write of its own.
            let mut seen = q.pending.len();
            drop(q);
            for _ in 0..4 {
                std::thread::yield_now();
                let now = self.queue.lock().expect("audit queue").pending.len();
                if now == seen {
                    break;
                }
                seen = now;
            }
            q = self.queue.lock().expect("audit queue");
            let batch: Vec<(u64, NewEvent)> = std::mem::take(&mut q.pending);
            drop(q);
            let tickets: Vec<u64> = batch.iter().map(|(t, _)| *t).collect();
            let result = self.commit(batch.into_iter().map(|(_, e)| e).collect());
            q = self.queue.lock().expect("audit queue");
            for (i, t) in tickets.into_iter().enumerate() {
                let r = match &result {
                    Ok(first) => Ok(first + i as u64),
                    Err(e) => Err(e.to_string()),
                };
                q.results.insert(t, r);
            }
            q.leader = false;
            self.wake.notify_all();
        }
    }

    /// Appends events in the same atomic store batch as a caller's write: `write` receives
    /// the audit entries (the block), must add its own and apply them all at once. Either
    /// both the change and its events are stored, or neither. The block then goes to the
    /// segment files too, and leaves the store once they are synced; the events before it
    /// are synced first, so a crash cannot keep the write and lose what came before it.
    pub fn append_with<T, E>(
        &self,
        events: Vec<NewEvent>,
        write: impl FnOnce(Batch) -> Result<T, E>,
    ) -> Result<Result<T, E>, Error> {
        let mut state = self.state.lock().expect("audit state");
        if self.shared.multi {
            let _lock = self.lock_multi(&mut state)?;
            let built = self.build(&state, events)?;
            let mut batch = Batch::new();
            self.stage_multi(&mut state, &built, &mut batch)?;
            // A failed write leaves `state` ahead of the store: the next append reads the
            // end back anyway.
            return Ok(write(batch));
        }
        let built = self.build(&state, events)?;
        self.shared.segments.sync().map_err(append_error)?;
        let mut batch = Batch::new();
        batch.put(
            ks::AUDIT,
            built.block_no.to_be_bytes().to_vec(),
            built.block.clone(),
        );
        let result = write(batch);
        if result.is_ok() {
            if let Err(e) = self.shared.segments.append(&self.frame(&built)) {
                // The write and its block are in the store; the next open moves the block to
                // the segments. Until then nothing may be appended after it.
                tracing::error!(error = %e, "a write's audit block did not reach the segment file");
                state.broken = true;
                state.next_seq = built.next_seq;
                state.head = built.head;
                state.next_block = built.block_no + 1;
                return Ok(result);
            }
            state.pending.push(built.block_no);
            self.advance(&mut state, &built);
        }
        Ok(result)
    }

    /// Writes a checkpoint of the log as it is now and returns it.
    pub fn checkpoint(&self) -> Result<Checkpoint, Error> {
        let mut state = self.state.lock().expect("audit state");
        if self.shared.multi {
            let _lock = self.lock_multi(&mut state)?;
            if let Some(cp) = state.last_cp.clone().filter(|cp| cp.size == state.next_seq) {
                return Ok(cp);
            }
            let cp = self.checkpoint_for(&state, state.next_seq, &state.head);
            let mut batch = Batch::new();
            batch.put(
                ks::AUDIT_CHECKPOINTS,
                cp.size.to_be_bytes().to_vec(),
                serde_json::to_vec(&cp).expect("json"),
            );
            batch.put(ks::META, META_HEAD, self.head_bytes(&state, Some(&cp)));
            self.store().apply(batch).map_err(append_error)?;
            state.last_checkpoint_size = cp.size;
            state.last_checkpoint_at = Instant::now();
            state.checkpoints += 1;
            state.last_checkpoint = cp.digest();
            state.last_cp = Some(cp.clone());
            return Ok(cp);
        }
        // A checkpoint of this size exists already: it is the answer (a second one would
        // take its place in the store and break the chain), once it is stored.
        if let Some(cp) = state.last_cp.clone().filter(|cp| cp.size == state.next_seq) {
            self.settle(&mut state)?;
            return Ok(cp);
        }
        self.record_checkpoint(&mut state, true)
    }

    /// Stops the background writer once it has done what it was given, and stores the
    /// signed head as the log is now (Steward does it when it stops, so a later removal of
    /// the last events shows as truncation). Appends after it are stored without the writer.
    pub fn close(&self) -> Result<(), Error> {
        let worker = self.worker.lock().expect("audit worker").take();
        if let Some((jobs, handle)) = worker {
            drop(jobs);
            let _ = handle.join();
        }
        let mut state = self.state.lock().expect("audit state");
        if state.truncated.is_some() || state.broken || self.shared.multi {
            // A shared log's head is stored with each block.
            return Ok(());
        }
        let head = self.head_bytes(&state, None);
        self.shared.store_head(None, head, &state.pending)?;
        state.pending.clear();
        Ok(())
    }

    /// Signs `bytes` as attachment `what` of checkpoint `cp` (an exported checkpoint's list
    /// of erased subjects): bound to that checkpoint, verified with
    /// [`Checkpoint::attachment_valid`].
    pub fn sign_attachment(&self, cp: &Checkpoint, what: &str, bytes: &[u8]) -> String {
        hex(self.key.sign(&cp.attachment_message(what, bytes)).as_ref())
    }

    /// The latest stored checkpoint, if any.
    pub fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, Error> {
        Ok(self
            .store()
            .last_with_prefix(ks::AUDIT_CHECKPOINTS, &[])
            .map_err(read_error)?
            .and_then(|(_, v)| serde_json::from_slice(&v).ok()))
    }

    /// Events matching `q`, in order, and the cursor for the next page. Archived segments are
    /// not searched.
    pub fn query(&self, q: &Query) -> Result<(Vec<Event>, Option<u64>), Error> {
        let limit = q.limit.clamp(1, 10_000);
        let mut out = Vec::new();
        let segments = self.shared.segments.segments().map_err(read_error_v)?;
        for (i, segment) in segments.iter().enumerate() {
            // A segment is named by its first event: skip it whole when the next one starts
            // at or before the cursor.
            let next_start = segments.get(i + 1).map(|s| s.name);
            if q.after
                .is_some_and(|a| next_start.is_some_and(|n| n <= a + 1))
            {
                continue;
            }
            let data = segment.read().map_err(read_error_v)?;
            if query_frames(q, &data.raw, limit, &mut out)? {
                let next = out.last().map(|e| e.seq);
                return Ok((out, next));
            }
        }
        if self.shared.multi {
            for entry in self.store().scan_prefix(ks::AUDIT_FRAMES, &[]) {
                let (_, frame) = entry.map_err(read_error)?;
                if query_frames(q, &frame, limit, &mut out)? {
                    let next = out.last().map(|e| e.seq);
                    return Ok((out, next));
                }
            }
        }
        Ok((out, None))
    }

    /// Moves the sealed segments to `to` (an archive directory, e.g. on other storage): they
    /// are copied and synced there, the live log records (signed) where it now starts, and
    /// only then are the live copies removed. Returns how many segments and events moved.
    /// `steward audit verify --archive DIR` verifies the archive and the live log together;
    /// [`verify_archive`] verifies an archive on its own.
    pub fn archive(&self, to: &std::path::Path) -> Result<(u64, u64), Error> {
        if self.shared.multi {
            return Err(Error::Append(
                "the audit log lives in the shared database; archive it with the database's own backups".into(),
            ));
        }
        // What the writer was given is done first (segments rotated out are sealed).
        self.settle(&mut self.state.lock().expect("audit state"))?;
        // Appends may go on: only sealed segments move.
        let moved = self
            .shared
            .segments
            .copy_sealed(to)
            .map_err(|e| Error::Append(e.to_string()))?;
        let Some(last) = moved.last() else {
            return Ok((0, 0));
        };
        let meta = segment_meta(last)?;
        let before = self.archived()?.map_or(0, |a| a.next_seq);
        let mut marker = Archived {
            next_seq: meta.next_seq,
            next_block: meta.next_block,
            head: meta.end.clone(),
            signature: String::new(),
        };
        marker.signature = hex(self.key.sign(&marker.message()).as_ref());
        let mut batch = Batch::new();
        batch.put(
            ks::META,
            META_ARCHIVED,
            serde_json::to_vec(&marker).expect("json"),
        );
        self.store().apply(batch).map_err(append_error)?;
        self.store().flush().map_err(append_error)?;
        self.shared
            .segments
            .remove_sealed(&moved)
            .map_err(|e| Error::Append(e.to_string()))?;
        Ok((moved.len() as u64, meta.next_seq - before))
    }

    /// Recomputes the chain, checks every checkpoint's signature and head, the recorded head,
    /// and optionally an exported checkpoint kept elsewhere; reports the first problem. Events
    /// moved to an archive are taken on the signed word of the live log's start unless
    /// [`AuditLog::verify_with_archive`] is given the archive.
    pub fn verify(&self, against: Option<&Checkpoint>) -> Result<Verification, Error> {
        self.verify_with_archive(against, None)
    }

    /// [`AuditLog::verify`], reading the archived segments from `archive` first.
    pub fn verify_with_archive(
        &self,
        against: Option<&Checkpoint>,
        archive: Option<&std::path::Path>,
    ) -> Result<Verification, Error> {
        let store = self.store();
        let mut checkpoints: Vec<Checkpoint> = Vec::new();
        for entry in store.scan_prefix(ks::AUDIT_CHECKPOINTS, &[]) {
            let (k, v) = entry.map_err(read_error)?;
            match serde_json::from_slice::<Checkpoint>(&v) {
                Ok(cp) => checkpoints.push(cp),
                Err(_) => {
                    let size = u64::from_be_bytes(k.as_slice().try_into().unwrap_or([0; 8]));
                    checkpoints.push(Checkpoint {
                        size,
                        head: String::new(),
                        time: String::new(),
                        public_key: String::new(),
                        signature: String::new(),
                        index: 0,
                        prev: String::new(),
                    });
                }
            }
        }
        let recorded: Option<Head> = store
            .get(ks::META, META_HEAD)
            .map_err(read_error)?
            .and_then(|b| serde_json::from_slice(&b).ok());
        let mut walk = Walk::new(self.key.public_key().to_vec(), &checkpoints, against);
        if let Some(r) = &recorded {
            walk.wanted.entry(r.next_seq).or_insert(None);
        }
        let marker = self.archived()?;
        if let Some(m) = &marker {
            let signed = unhex(&m.signature)
                .is_some_and(|sig| verify_signature(self.key.public_key(), &m.message(), &sig));
            if !signed {
                walk.problem(m.next_seq, "bad_signature", "the record of where the live log starts after archiving is not signed by this log's key: segments were removed".into());
                walk.broken = true;
            }
        }
        match (&marker, archive) {
            (Some(m), Some(dir)) => {
                for segment in vault::segments::list(dir)
                    .map_err(read_error_v)?
                    .into_iter()
                    .filter(|s| s.sealed)
                {
                    walk.segment(&segment)?;
                }
                if !walk.broken && (walk.expected != m.next_seq || hex(&walk.prev) != m.head) {
                    let detail = format!(
                        "the archive ends at event {} but the live log starts at {}: a segment is missing or differs",
                        walk.expected, m.next_seq
                    );
                    walk.problem(walk.expected.min(m.next_seq), "gap", detail);
                    walk.broken = true;
                }
            }
            (Some(m), None) => {
                walk.start_at(m.next_seq, &m.head);
            }
            (None, _) => {}
        }
        for segment in self.shared.segments.segments().map_err(read_error_v)? {
            if walk.broken {
                break;
            }
            walk.segment(&segment)?;
        }
        if self.shared.multi {
            // A shared log's blocks, a few hundred frames at a time.
            let mut raw = Vec::new();
            let mut count = 0;
            for entry in store.scan_prefix(ks::AUDIT_FRAMES, &[]) {
                let (_, frame) = entry.map_err(read_error)?;
                raw.extend_from_slice(&frame);
                count += 1;
                if count == 256 {
                    walk.segment_data("the database", &raw)?;
                    (raw, count) = (Vec::new(), 0);
                    if walk.broken {
                        break;
                    }
                }
            }
            if !walk.broken && !raw.is_empty() {
                walk.segment_data("the database", &raw)?;
            }
        }
        let events = walk.expected;
        let prev = walk.prev;
        if !walk.broken {
            let public_key = self.public_key();
            for cp in &checkpoints {
                if cp.public_key != public_key || !cp.signature_valid() {
                    walk.problem(
                        cp.size.saturating_sub(1),
                        "bad_signature",
                        format!(
                            "the checkpoint at size {} is not signed by this log's key",
                            cp.size
                        ),
                    );
                    continue;
                }
                if cp.size < walk.start {
                    continue;
                }
                match walk.wanted.get(&cp.size).copied().flatten() {
                    None => walk.problem(
                        events,
                        "truncated",
                        format!(
                            "a checkpoint covers {} events but the log ends at {events}",
                            cp.size
                        ),
                    ),
                    Some(h) if hex(&h) != cp.head => walk.problem(
                        cp.size.saturating_sub(1),
                        "checkpoint_mismatch",
                        format!(
                            "the log's hash at size {} differs from its signed checkpoint",
                            cp.size
                        ),
                    ),
                    Some(_) => {}
                }
            }
            // The chain of checkpoints: each chained one names the one before it, so none
            // can be taken out unseen.
            let mut before: Option<&Checkpoint> = None;
            for (i, cp) in checkpoints.iter().enumerate() {
                if cp.index > 0 {
                    let prev_ok = cp.prev == before.map(Checkpoint::digest).unwrap_or_default();
                    if cp.index != i as u64 + 1 || !prev_ok {
                        walk.problem(
                            cp.size.saturating_sub(1),
                            "checkpoint_missing",
                            format!(
                                "the checkpoint at size {} is number {} of the chain but follows {} stored one(s) that do not lead to it: a checkpoint was removed or replaced",
                                cp.size, cp.index, i
                            ),
                        );
                    }
                }
                before = Some(cp);
            }
            if recorded.as_ref().is_none_or(|r| r.signature.is_empty()) && events > 0 {
                walk.problem(
                    events.saturating_sub(1),
                    "head_unsigned",
                    "the log's recorded head is missing or not signed: it was replaced (a log written before heads were signed is signed when Steward next opens it)".into(),
                );
            }
            if let Some(r) = recorded.as_ref().filter(|r| !r.signature.is_empty()) {
                let signed = unhex(&r.signature)
                    .is_some_and(|sig| verify_signature(self.key.public_key(), &r.message(), &sig));
                if !signed {
                    walk.problem(
                        events.saturating_sub(1),
                        "bad_signature",
                        "the log's recorded head is not signed by this log's key: it was rewritten"
                            .into(),
                    );
                } else {
                    if r.unvouched_before > 0 {
                        walk.problem(
                            0,
                            "unvouched",
                            format!(
                                "the first {} events were written before heads were signed and no signed checkpoint covered them when this version first opened the log: nothing vouches for them (compare with an exported checkpoint: --against)",
                                r.unvouched_before
                            ),
                        );
                    }
                    // The head is written at checkpoints, so the checkpoints it names are the
                    // stored ones, or one fewer when a checkpoint's own write is what failed.
                    let stored = checkpoints.len() as u64;
                    let names_last = r.last_checkpoint
                        == checkpoints
                            .last()
                            .map(Checkpoint::digest)
                            .unwrap_or_default();
                    if r.checkpoints > stored || (r.checkpoints == stored && !names_last) {
                        walk.problem(
                            checkpoints.last().map_or(0, |c| c.size.saturating_sub(1)),
                            "checkpoint_missing",
                            format!(
                                "the signed head records {} checkpoint(s) but {} are stored, or the last one differs: checkpoints were removed or replaced",
                                r.checkpoints, stored
                            ),
                        );
                    }
                    if r.next_seq <= events && r.next_seq >= walk.start {
                        let at = walk.wanted.get(&r.next_seq).copied().flatten();
                        if at.is_some_and(|h| hex(&h) != r.head) {
                            walk.problem(
                                r.next_seq.saturating_sub(1),
                                "hash_mismatch",
                                "the log's events differ from its signed head: they were rewritten"
                                    .into(),
                            );
                        }
                    }
                }
            }
            if let Some(r) = recorded {
                if r.next_seq > events {
                    walk.problem(
                        events,
                        "truncated",
                        format!(
                            "the log's head records {} events but only {events} are stored",
                            r.next_seq
                        ),
                    );
                }
            }
            if let Some(a) = against {
                if !a.signature_valid() {
                    return Err(Error::BadCheckpoint("its signature does not verify".into()));
                }
                if a.public_key != public_key {
                    walk.problem(
                        a.size.saturating_sub(1),
                        "bad_signature",
                        "the given checkpoint was signed by another log's key".into(),
                    );
                } else if a.size >= walk.start {
                    match walk.wanted.get(&a.size).copied().flatten() {
                        None => walk.problem(
                            events,
                            "rollback",
                            format!("the given checkpoint covers {} events but the log has only {events}: it was truncated or rolled back", a.size),
                        ),
                        Some(h) if hex(&h) != a.head => walk.problem(
                            a.size.saturating_sub(1),
                            "rollback",
                            format!("the log's first {} events differ from the given checkpoint: it was rewritten or rolled back", a.size),
                        ),
                        Some(_) => {}
                    }
                }
            }
        }
        let problem = walk.first_problem();
        let signed_up_to = checkpoints.last().map_or(0, |c| c.size).min(events);
        Ok(Verification {
            ok: problem.is_none(),
            events,
            checkpoints: checkpoints.len() as u64,
            head: hex(&prev),
            unsigned_tail: events - signed_up_to,
            problem,
        })
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::warn!(error = %e, "the audit log's head was not written on close");
        }
    }
}

/// Verifies an archive of sealed segments on its own (no data directory needed): each
/// segment's chain, the signature of its last block (which vouches for where the chain
/// stands at its end), and that each continues the one before. `public_key` (hex) is the log's, as an exported checkpoint names it.
pub fn verify_archive(dir: &std::path::Path, public_key: &str) -> Result<Verification, Error> {
    let pk = unhex(public_key)
        .ok_or_else(|| Error::BadCheckpoint("the public key is not hex".into()))?;
    let mut walk = Walk::new(pk, &[], None);
    // Only each segment's last block signature is checked (the chain links the rest).
    walk.signed_up_to = u64::MAX;
    // Each segment's signed end counts as a checkpoint of the archive.
    let mut checkpoints = 0;
    let mut first = true;
    for segment in vault::segments::list(dir)
        .map_err(read_error_v)?
        .into_iter()
        .filter(|s| s.sealed)
    {
        let Some(data) = walk.read(&segment)? else {
            break;
        };
        let Ok(meta) = serde_json::from_slice::<SegmentMeta>(&data.meta) else {
            walk.problem(
                walk.expected,
                "malformed",
                format!("{} has no readable header", segment.path.display()),
            );
            break;
        };
        if first {
            walk.start_at(meta.first_seq, &meta.start);
            first = false;
        }
        walk.segment_data(&segment.path.display().to_string(), &data.raw)?;
        if walk.broken {
            break;
        }
        // The segment's last block is signed over where the chain stands after it: the
        // segment's end cannot be rewritten or cut without the log's key.
        let signed = walk.last_block.take().is_some_and(|(block_no, sig)| {
            verify_signature(
                &walk.public_key,
                &frame_message(block_no, walk.expected, &walk.prev),
                &sig,
            )
        });
        if !signed || walk.expected != meta.next_seq || hex(&walk.prev) != meta.end {
            walk.problem(
                walk.expected.saturating_sub(1),
                "bad_signature",
                format!(
                    "the end of {} is not signed by this log's key, or differs from its header",
                    segment.path.display()
                ),
            );
            break;
        }
        checkpoints += 1;
    }
    let (events, head) = (walk.expected - walk.start, hex(&walk.prev));
    let problem = walk.first_problem();
    Ok(Verification {
        ok: problem.is_none(),
        events,
        checkpoints,
        head,
        unsigned_tail: 0,
        problem,
    })
}

/// The chain as verification walks it, one segment at a time (memory stays that of one
/// segment, whatever the log's length).
struct Walk {
    public_key: Vec<u8>,
    /// The first event walked (after an archive not given, where the live log starts).
    start: u64,
    expected: u64,
    prev: [u8; 32],
    /// Chain hashes wanted at these sizes (checkpoints, the exported one, the head).
    wanted: HashMap<u64, Option<[u8; 32]>>,
    /// Frames ending after this size are not covered by a checkpoint: their signatures are
    /// checked.
    signed_up_to: u64,
    /// The number and signature of the last block walked (an archive checks each segment's).
    last_block: Option<(u64, [u8; 64])>,
    problems: Vec<VerifyProblem>,
    /// The first block whose signature fails (first and last event): the chain goes on
    /// being checked after it.
    unsigned_block: Option<(u64, u64, VerifyProblem)>,
    broken: bool,
}

impl Walk {
    fn new(public_key: Vec<u8>, checkpoints: &[Checkpoint], against: Option<&Checkpoint>) -> Walk {
        let mut wanted: HashMap<u64, Option<[u8; 32]>> =
            checkpoints.iter().map(|c| (c.size, None)).collect();
        if let Some(a) = against {
            wanted.insert(a.size, None);
        }
        if let Some(slot) = wanted.get_mut(&0) {
            *slot = Some([0; 32]);
        }
        Walk {
            public_key,
            start: 0,
            expected: 0,
            prev: [0; 32],
            wanted,
            signed_up_to: checkpoints.last().map_or(0, |c| c.size),
            last_block: None,
            problems: Vec::new(),
            unsigned_block: None,
            broken: false,
        }
    }

    fn start_at(&mut self, seq: u64, head: &str) {
        self.start = seq;
        self.expected = seq;
        self.prev = hash_of(head);
        if let Some(slot) = self.wanted.get_mut(&seq) {
            *slot = Some(self.prev);
        }
    }

    /// The first problem by sequence number. A block whose signature fails is reported only
    /// when nothing more precise was found in it or right after it (a deleted last event
    /// shows as the gap it leaves).
    fn first_problem(self) -> Option<VerifyProblem> {
        let mut problems = self.problems;
        if let Some((first, last, p)) = self.unsigned_block {
            if !problems.iter().any(|q| q.seq >= first && q.seq <= last + 1) {
                problems.push(p);
            }
        }
        problems.into_iter().min_by_key(|p| p.seq)
    }

    fn problem(&mut self, seq: u64, kind: &str, detail: String) {
        self.problems.push(VerifyProblem {
            seq,
            kind: kind.into(),
            detail,
        });
    }

    /// Reads a segment; one that cannot be read is the problem where the walk stands.
    fn read(
        &mut self,
        segment: &vault::segments::Segment,
    ) -> Result<Option<vault::segments::SegmentData>, Error> {
        match segment.read() {
            Ok(data) => Ok(Some(data)),
            Err(vault::Error::Corrupt { what }) => {
                self.problem(
                    self.expected,
                    "malformed",
                    format!("{what} cannot be read: it was altered or damaged"),
                );
                self.broken = true;
                Ok(None)
            }
            Err(e) => Err(read_error_v(e)),
        }
    }

    fn segment(&mut self, segment: &vault::segments::Segment) -> Result<(), Error> {
        match self.read(segment)? {
            Some(data) => self.segment_data(&segment.path.display().to_string(), &data.raw),
            None => Ok(()),
        }
    }

    /// Walks frames (`raw`, from the file or place `place`).
    fn segment_data(&mut self, place: &str, raw: &[u8]) -> Result<(), Error> {
        for payload in vault::segments::frames(raw) {
            let block_first = self.expected;
            let raw = payload.ok();
            let Some(frame) = raw.as_ref().and_then(|f| frame_of(f.payload)) else {
                let expected = self.expected;
                self.problem(
                    expected,
                    "malformed",
                    format!("event {expected} cannot be read: its framing in {place} is damaged"),
                );
                self.broken = true;
                return Ok(());
            };
            let intact = raw.is_some_and(|f| f.intact);
            self.last_block = frame
                .signature
                .try_into()
                .ok()
                .map(|sig| (frame.block_no, sig));
            for item in events_of(frame.block) {
                let expected = self.expected;
                let Some((body, stored)) = item else {
                    self.problem(
                        expected,
                        "malformed",
                        format!("event {expected} cannot be read: its framing is damaged"),
                    );
                    self.broken = true;
                    return Ok(());
                };
                let Some(seq) = seq_of(body) else {
                    self.problem(
                        expected,
                        "malformed",
                        format!("event {expected} cannot be read"),
                    );
                    self.broken = true;
                    return Ok(());
                };
                if seq != expected {
                    let (kind, detail) = if seq > expected {
                        (
                            "gap",
                            format!("event {expected} is missing (found {seq} in its place)"),
                        )
                    } else {
                        (
                            "out_of_order",
                            format!("event {seq} appears where {expected} belongs"),
                        )
                    };
                    self.problem(expected, kind, detail);
                    self.broken = true;
                    return Ok(());
                }
                let computed = chain_hash(&self.prev, body);
                if computed.as_slice() != stored {
                    self.problem(seq, "hash_mismatch", format!("event {seq} does not match its chain hash: it, or its hash, was altered"));
                    self.broken = true;
                    return Ok(());
                }
                self.prev = computed;
                self.expected += 1;
                if let Some(slot) = self.wanted.get_mut(&self.expected) {
                    *slot = Some(self.prev);
                }
            }
            if !intact {
                // Every event of the block matched its hash: the damage is in the block's
                // number or signature.
                let first = block_first;
                self.problem(first, "malformed", format!("the block of events from {first} fails its checksum: its number or signature was altered"));
                self.broken = true;
                return Ok(());
            }
            // Blocks after the last checkpoint are checked against their signatures, until
            // one fails (every later one then fails too).
            let unchecked = self.unsigned_block.is_none()
                && self.expected > self.signed_up_to
                && self.expected > block_first;
            if unchecked
                && !verify_signature(
                    &self.public_key,
                    &frame_message(frame.block_no, self.expected, &self.prev),
                    frame.signature,
                )
            {
                let (first, last) = (block_first, self.expected - 1);
                self.unsigned_block = Some((first, last, VerifyProblem {
                    seq: first,
                    kind: "bad_signature".into(),
                    detail: format!("the block of events {first} to {last} is not signed by this log's key: one of them, or one before them, was rewritten"),
                }));
            }
        }
        Ok(())
    }
}

impl Checkpoint {
    /// Parses an exported checkpoint (JSON).
    pub fn from_json(text: &str) -> Result<Checkpoint, Error> {
        serde_json::from_str(text).map_err(|e| Error::BadCheckpoint(e.to_string()))
    }
}

/// Entry points for the fuzz targets under `fuzz/` (feature `fuzz` only): stored bytes in,
/// never a panic out.
#[cfg(feature = "fuzz")]
#[doc(hidden)]
pub mod fuzz {
    /// Decodes one stored block of events as a query or a verification would: its framing,
    /// each event's sequence number and its JSON; an event that parses must serialise back to
    /// the canonical bytes it was read from or be reported malformed by `verify`.
    pub fn block(bytes: &[u8]) {
        // The same bytes as a segment file's frames: each frame's number, block and
        // signature as the log reads them.
        for f in vault::segments::frames(bytes).flatten() {
            if let Some(frame) = super::frame_of(f.payload) {
                let _ = super::block_end(frame.block);
                let _ = super::events_of(frame.block);
            }
        }
        let Some(events) = super::split_block(bytes) else {
            return;
        };
        for (body, _) in events {
            let _ = super::seq_of(body);
            if let Ok(e) = serde_json::from_slice::<crate::Event>(body) {
                let again = e.canonical();
                let back: crate::Event = serde_json::from_slice(&again).expect("canonical parses");
                assert_eq!(back.canonical(), again, "canonical bytes are stable");
            }
        }
    }
}
