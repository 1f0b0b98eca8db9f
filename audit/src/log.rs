//! The log itself: appends, checkpoints, verification and queries.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use vault::crypto::{verify_signature, SigningKey};
use vault::{keyspaces as ks, Batch, KeyRing, Store};

use crate::event::{chain_hash, hex, unhex, Event, NewEvent, Outcome};

const META_HEAD: &[u8] = b"audit.head";
const SIGN_DOMAIN: &[u8] = b"steward-audit-checkpoint\n";
const SIGN_DOMAIN_V2: &[u8] = b"steward-audit-checkpoint-v2\n";
const HEAD_DOMAIN: &[u8] = b"steward-audit-head\n";
const ATTACH_DOMAIN: &[u8] = b"steward-audit-attachment\n";

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

/// When checkpoints are written.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Every this many events.
    pub checkpoint_every: u64,
    /// Or when this many seconds passed since the last one (checked on append).
    pub checkpoint_seconds: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            checkpoint_every: 1000,
            checkpoint_seconds: 60,
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
/// by someone without the log's key.
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
}

#[derive(Default)]
struct Queue {
    pending: Vec<(u64, NewEvent)>,
    next_ticket: u64,
    results: HashMap<u64, Result<u64, String>>,
    leader: bool,
}

/// The audit log of one data directory.
pub struct AuditLog {
    store: RwLock<Arc<dyn Store>>,
    key: SigningKey,
    config: AuditConfig,
    state: Mutex<State>,
    queue: Mutex<Queue>,
    wake: Condvar,
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

impl AuditLog {
    /// Opens the log kept in `store`, with its signing key derived from the master secret.
    pub fn open(
        store: Arc<dyn Store>,
        keys: &KeyRing,
        config: AuditConfig,
    ) -> Result<AuditLog, Error> {
        let seed = keys.derive_bytes("steward/v1/audit/ed25519-seed", 32);
        let key = SigningKey::from_seed(&seed)
            .ok_or_else(|| Error::Read("cannot derive the signing key".into()))?;
        let recorded: Option<Head> = store
            .get(ks::META, META_HEAD)
            .map_err(read_error)?
            .and_then(|b| serde_json::from_slice(&b).ok());
        // The real end of the log is its last block.
        let (mut next_seq, mut head, mut next_block) = (0u64, [0u8; 32], 0u64);
        if let Some((k, v)) = store.last_with_prefix(ks::AUDIT, &[]).map_err(read_error)? {
            next_block = u64::from_be_bytes(
                k.as_slice()
                    .try_into()
                    .map_err(|_| Error::Read("bad block key".into()))?,
            ) + 1;
            if let Some(events) = split_block(&v) {
                if let Some((body, hash)) = events.last() {
                    next_seq = seq_of(body).map(|s| s + 1).unwrap_or(0);
                    head.copy_from_slice(&hash[..32]);
                }
            }
        }
        let mut truncated = None;
        if let Some(r) = &recorded {
            if r.next_seq > next_seq {
                truncated = Some((r.next_seq, next_seq));
            }
            if r.next_seq == next_seq {
                if let Some(h) = unhex(&r.head) {
                    head.copy_from_slice(&h[..32.min(h.len())]);
                }
                next_block = next_block.max(r.next_block);
            }
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
        let log = AuditLog {
            store: RwLock::new(store),
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
            }),
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
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
            let mut batch = Batch::new();
            let recorded = Head {
                next_seq: state.next_seq,
                head: hex(&state.head),
                next_block: state.next_block,
                checkpoints: state.checkpoints,
                last_checkpoint: state.last_checkpoint.clone(),
                unvouched_before: state.unvouched_before,
                signature: String::new(),
            };
            log.put_head(recorded, &mut batch);
            log.store()
                .apply(batch)
                .map_err(|e| Error::Append(e.to_string()))?;
        }
        Ok(log)
    }

    pub(crate) fn store(&self) -> Arc<dyn Store> {
        self.store.read().expect("audit store").clone()
    }

    /// Replaces the store the log writes to (tests use it to make the store fail).
    #[doc(hidden)]
    pub fn set_store(&self, store: Arc<dyn Store>) {
        *self.store.write().expect("audit store") = store;
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

    /// Builds the block for `events` on top of `state` into `batch`; returns the new state
    /// values (next seq, head, whether a checkpoint was written).
    fn build(
        &self,
        state: &State,
        events: Vec<NewEvent>,
        batch: &mut Batch,
    ) -> Result<(u64, [u8; 32], Option<String>), Error> {
        if let Some((expected, found)) = state.truncated {
            return Err(Error::Truncated { expected, found });
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
        batch.put(ks::AUDIT, state.next_block.to_be_bytes().to_vec(), block);
        let due = seq - state.last_checkpoint_size >= self.config.checkpoint_every
            || state.last_checkpoint_at.elapsed().as_secs() >= self.config.checkpoint_seconds;
        let checkpoint = if due {
            let cp = self.checkpoint_for(state, seq, &head);
            batch.put(
                ks::AUDIT_CHECKPOINTS,
                seq.to_be_bytes().to_vec(),
                serde_json::to_vec(&cp).expect("json"),
            );
            Some(cp.digest())
        } else {
            None
        };
        let (count, last) = match &checkpoint {
            Some(d) => (state.checkpoints + 1, d.clone()),
            None => (state.checkpoints, state.last_checkpoint.clone()),
        };
        let recorded = Head {
            next_seq: seq,
            head: hex(&head),
            next_block: state.next_block + 1,
            checkpoints: count,
            last_checkpoint: last,
            unvouched_before: state.unvouched_before,
            signature: String::new(),
        };
        self.put_head(recorded, batch);
        Ok((seq, head, checkpoint))
    }

    /// Signs `recorded` and puts it into `batch`.
    fn put_head(&self, mut recorded: Head, batch: &mut Batch) {
        recorded.signature = hex(self.key.sign(&recorded.message()).as_ref());
        batch.put(
            ks::META,
            META_HEAD,
            serde_json::to_vec(&recorded).expect("json"),
        );
    }

    fn advance(state: &mut State, seq: u64, head: [u8; 32], checkpoint: Option<String>) {
        state.next_seq = seq;
        state.head = head;
        state.next_block += 1;
        if let Some(digest) = checkpoint {
            state.last_checkpoint_size = seq;
            state.last_checkpoint_at = Instant::now();
            state.checkpoints += 1;
            state.last_checkpoint = digest;
        }
    }

    fn commit(&self, events: Vec<NewEvent>) -> Result<u64, Error> {
        let mut state = self.state.lock().expect("audit state");
        let first = state.next_seq;
        let mut batch = Batch::new();
        let (seq, head, cp) = self.build(&state, events, &mut batch)?;
        self.store()
            .apply(batch)
            .map_err(|e| Error::Append(e.to_string()))?;
        Self::advance(&mut state, seq, head, cp);
        Ok(first)
    }

    /// Appends one event and returns its sequence number once it is in the store. Concurrent
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
    /// the audit entries, must add its own and apply them all at once. Either both the
    /// change and its events are stored, or neither.
    pub fn append_with<T, E>(
        &self,
        events: Vec<NewEvent>,
        write: impl FnOnce(Batch) -> Result<T, E>,
    ) -> Result<Result<T, E>, Error> {
        let mut state = self.state.lock().expect("audit state");
        let mut batch = Batch::new();
        let (seq, head, cp) = self.build(&state, events, &mut batch)?;
        let result = write(batch);
        if result.is_ok() {
            Self::advance(&mut state, seq, head, cp);
        }
        Ok(result)
    }

    /// Writes a checkpoint of the log as it is now and returns it.
    pub fn checkpoint(&self) -> Result<Checkpoint, Error> {
        let mut state = self.state.lock().expect("audit state");
        // A checkpoint of this size exists already: it is the answer (a second one would
        // take its place in the store and break the chain).
        if state.checkpoints > 0 && state.last_checkpoint_size == state.next_seq {
            if let Some(cp) = self.latest_checkpoint()? {
                if cp.size == state.next_seq {
                    return Ok(cp);
                }
            }
        }
        let cp = self.checkpoint_for(&state, state.next_seq, &state.head);
        let digest = cp.digest();
        let mut batch = Batch::new();
        batch.put(
            ks::AUDIT_CHECKPOINTS,
            state.next_seq.to_be_bytes().to_vec(),
            serde_json::to_vec(&cp).expect("json"),
        );
        let recorded = Head {
            next_seq: state.next_seq,
            head: hex(&state.head),
            next_block: state.next_block,
            checkpoints: state.checkpoints + 1,
            last_checkpoint: digest.clone(),
            unvouched_before: state.unvouched_before,
            signature: String::new(),
        };
        self.put_head(recorded, &mut batch);
        self.store()
            .apply(batch)
            .map_err(|e| Error::Append(e.to_string()))?;
        state.last_checkpoint_size = state.next_seq;
        state.last_checkpoint_at = Instant::now();
        state.checkpoints += 1;
        state.last_checkpoint = digest;
        Ok(cp)
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

    /// Events matching `q`, in order, and the cursor for the next page.
    pub fn query(&self, q: &Query) -> Result<(Vec<Event>, Option<u64>), Error> {
        let limit = q.limit.clamp(1, 10_000);
        let mut out = Vec::new();
        for entry in self.store().scan_prefix(ks::AUDIT, &[]) {
            let (_, block) = entry.map_err(read_error)?;
            let events = split_block(&block).ok_or_else(|| {
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
                        let next = out.last().map(|e| e.seq);
                        return Ok((out, next));
                    }
                }
            }
        }
        Ok((out, None))
    }

    /// Recomputes the chain, checks every checkpoint's signature and head, the recorded head,
    /// and optionally an exported checkpoint kept elsewhere; reports the first problem.
    pub fn verify(&self, against: Option<&Checkpoint>) -> Result<Verification, Error> {
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
        let mut wanted: HashMap<u64, Option<[u8; 32]>> =
            checkpoints.iter().map(|c| (c.size, None)).collect();
        if let Some(a) = against {
            wanted.insert(a.size, None);
        }
        let mut problems: Vec<VerifyProblem> = Vec::new();
        let mut expected = 0u64;
        let mut prev = [0u8; 32];
        if let Some(slot) = wanted.get_mut(&0) {
            *slot = Some(prev);
        }
        let mut chain_broken = false;
        'blocks: for entry in store.scan_prefix(ks::AUDIT, &[]) {
            let (_, block) = entry.map_err(read_error)?;
            for item in events_of(&block) {
                let Some((body, stored)) = item else {
                    problems.push(VerifyProblem {
                        seq: expected,
                        kind: "malformed".into(),
                        detail: format!("event {expected} cannot be read: its framing is damaged"),
                    });
                    chain_broken = true;
                    break 'blocks;
                };
                let Some(seq) = seq_of(body) else {
                    problems.push(VerifyProblem {
                        seq: expected,
                        kind: "malformed".into(),
                        detail: format!("event {expected} cannot be read"),
                    });
                    chain_broken = true;
                    break 'blocks;
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
                    problems.push(VerifyProblem {
                        seq: expected,
                        kind: kind.into(),
                        detail,
                    });
                    chain_broken = true;
                    break 'blocks;
                }
                let computed = chain_hash(&prev, body);
                if computed.as_slice() != stored {
                    problems.push(VerifyProblem {
                        seq,
                        kind: "hash_mismatch".into(),
                        detail: format!("event {seq} does not match its chain hash: it, or its hash, was altered"),
                    });
                    chain_broken = true;
                    break 'blocks;
                }
                prev = computed;
                expected += 1;
                if let Some(slot) = wanted.get_mut(&expected) {
                    *slot = Some(prev);
                }
            }
        }
        let events = expected;
        if !chain_broken {
            let public_key = self.public_key();
            for cp in &checkpoints {
                if cp.public_key != public_key || !cp.signature_valid() {
                    problems.push(VerifyProblem {
                        seq: cp.size.saturating_sub(1),
                        kind: "bad_signature".into(),
                        detail: format!(
                            "the checkpoint at size {} is not signed by this log's key",
                            cp.size
                        ),
                    });
                    continue;
                }
                match wanted.get(&cp.size).copied().flatten() {
                    None => problems.push(VerifyProblem {
                        seq: events,
                        kind: "truncated".into(),
                        detail: format!(
                            "a checkpoint covers {} events but the log ends at {events}",
                            cp.size
                        ),
                    }),
                    Some(h) if hex(&h) != cp.head => problems.push(VerifyProblem {
                        seq: cp.size.saturating_sub(1),
                        kind: "checkpoint_mismatch".into(),
                        detail: format!(
                            "the log's hash at size {} differs from its signed checkpoint",
                            cp.size
                        ),
                    }),
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
                        problems.push(VerifyProblem {
                            seq: cp.size.saturating_sub(1),
                            kind: "checkpoint_missing".into(),
                            detail: format!(
                                "the checkpoint at size {} is number {} of the chain but follows {} stored one(s) that do not lead to it: a checkpoint was removed or replaced",
                                cp.size, cp.index, i
                            ),
                        });
                    }
                }
                before = Some(cp);
            }
            let recorded: Option<Head> = store
                .get(ks::META, META_HEAD)
                .map_err(read_error)?
                .and_then(|b| serde_json::from_slice(&b).ok());
            if recorded.as_ref().is_none_or(|r| r.signature.is_empty()) && events > 0 {
                problems.push(VerifyProblem {
                    seq: events.saturating_sub(1),
                    kind: "head_unsigned".into(),
                    detail: "the log's recorded head is missing or not signed: it was replaced (a log written before heads were signed is signed when Steward next opens it)".into(),
                });
            }
            if let Some(r) = recorded.as_ref().filter(|r| !r.signature.is_empty()) {
                let signed = unhex(&r.signature)
                    .is_some_and(|sig| verify_signature(self.key.public_key(), &r.message(), &sig));
                if !signed {
                    problems.push(VerifyProblem {
                        seq: events.saturating_sub(1),
                        kind: "bad_signature".into(),
                        detail: "the log's recorded head is not signed by this log's key: it was rewritten".into(),
                    });
                } else {
                    if r.unvouched_before > 0 {
                        problems.push(VerifyProblem {
                            seq: 0,
                            kind: "unvouched".into(),
                            detail: format!(
                                "the first {} events were written before heads were signed and no signed checkpoint covered them when this version first opened the log: nothing vouches for them (compare with an exported checkpoint: --against)",
                                r.unvouched_before
                            ),
                        });
                    }
                    let last = checkpoints
                        .last()
                        .map(Checkpoint::digest)
                        .unwrap_or_default();
                    if r.checkpoints != checkpoints.len() as u64 || r.last_checkpoint != last {
                        problems.push(VerifyProblem {
                            seq: checkpoints.last().map_or(0, |c| c.size.saturating_sub(1)),
                            kind: "checkpoint_missing".into(),
                            detail: format!(
                                "the signed head records {} checkpoint(s) but {} are stored, or the last one differs: checkpoints were removed or replaced",
                                r.checkpoints,
                                checkpoints.len()
                            ),
                        });
                    }
                    if r.next_seq == events && r.head != hex(&prev) {
                        problems.push(VerifyProblem {
                            seq: events.saturating_sub(1),
                            kind: "hash_mismatch".into(),
                            detail: "the log's last events differ from its signed head: they were rewritten".into(),
                        });
                    }
                }
            }
            if let Some(r) = recorded {
                if r.next_seq > events {
                    problems.push(VerifyProblem {
                        seq: events,
                        kind: "truncated".into(),
                        detail: format!(
                            "the log's head records {} events but only {events} are stored",
                            r.next_seq
                        ),
                    });
                }
            }
            if let Some(a) = against {
                if !a.signature_valid() {
                    return Err(Error::BadCheckpoint("its signature does not verify".into()));
                }
                if a.public_key != public_key {
                    problems.push(VerifyProblem {
                        seq: a.size.saturating_sub(1),
                        kind: "bad_signature".into(),
                        detail: "the given checkpoint was signed by another log's key".into(),
                    });
                } else {
                    match wanted.get(&a.size).copied().flatten() {
                        None => problems.push(VerifyProblem {
                            seq: events,
                            kind: "rollback".into(),
                            detail: format!("the given checkpoint covers {} events but the log has only {events}: it was truncated or rolled back", a.size),
                        }),
                        Some(h) if hex(&h) != a.head => problems.push(VerifyProblem {
                            seq: a.size.saturating_sub(1),
                            kind: "rollback".into(),
                            detail: format!("the log's first {} events differ from the given checkpoint: it was rewritten or rolled back", a.size),
                        }),
                        Some(_) => {}
                    }
                }
            }
        }
        problems.sort_by_key(|p| p.seq);
        let problem = problems.into_iter().next();
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
