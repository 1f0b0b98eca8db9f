use std::path::PathBuf;
use std::sync::Arc;

use vault::{keyspaces as ks, SealTo, Unlock, Vault};

use super::*;

struct Fixture {
    _tmp: tempfile::TempDir,
    vault: Vault,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let id = tmp.path().join("id.txt");
    Vault::init(&dir, &SealTo::Identity(id.clone())).unwrap();
    let schema =
        Arc::new(domain::Schema::from_toml(include_str!("../../policies/schema.toml")).unwrap());
    let vault = Vault::open(&dir, &Unlock::Identity(id), schema).unwrap();
    Fixture { _tmp: tmp, vault }
}

fn log(f: &Fixture, every: u64) -> AuditLog {
    log_of(f, every)
}

/// A log with checkpoints every 100 events whose segments are sealed at 16 KiB.
fn sealing_log(f: &Fixture) -> AuditLog {
    AuditLog::open(
        f.vault.store().clone(),
        f.vault.audit_segments().unwrap(),
        f.vault.keys(),
        AuditConfig {
            checkpoint_every: 100,
            checkpoint_seconds: 3600,
            seal_bytes: 16 * 1024,
        },
    )
    .unwrap()
}

fn log_of(f: &Fixture, every: u64) -> AuditLog {
    AuditLog::open(
        f.vault.store().clone(),
        f.vault.audit_segments().unwrap(),
        f.vault.keys(),
        AuditConfig {
            checkpoint_every: every,
            checkpoint_seconds: 3600,
            ..AuditConfig::default()
        },
    )
    .unwrap()
}

/// The active segment file of the log.
fn active(f: &Fixture) -> PathBuf {
    std::fs::read_dir(f.vault.dir().join(vault::layout::AUDIT))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "open"))
        .unwrap()
}

/// The files of the log's directory and the store entries that make up the log, to put
/// back after tampering.
struct Snapshot {
    files: Vec<(PathBuf, Vec<u8>)>,
    entries: Vec<(vault::Keyspace, Vec<u8>, Vec<u8>)>,
}

fn snapshot(f: &Fixture) -> Snapshot {
    let dir = f.vault.dir().join(vault::layout::AUDIT);
    let files = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    let store = f.vault.store();
    let mut entries: Vec<_> = [ks::AUDIT, ks::AUDIT_CHECKPOINTS]
        .iter()
        .flat_map(|k| {
            store
                .scan_prefix(*k, &[])
                .map(move |e| e.unwrap())
                .map(move |(a, b)| (*k, a, b))
        })
        .collect();
    entries.push((
        ks::META,
        b"audit.head".to_vec(),
        store.get(ks::META, b"audit.head").unwrap().unwrap(),
    ));
    Snapshot { files, entries }
}

fn put_back(f: &Fixture, s: &Snapshot) {
    let dir = f.vault.dir().join(vault::layout::AUDIT);
    for e in std::fs::read_dir(&dir).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    for (p, b) in &s.files {
        std::fs::write(p, b).unwrap();
    }
    let store = f.vault.store();
    for k in [ks::AUDIT, ks::AUDIT_CHECKPOINTS] {
        let keys: Vec<_> = store.scan_prefix(k, &[]).map(|e| e.unwrap().0).collect();
        for key in keys {
            store.delete(k, &key).unwrap();
        }
    }
    for (k, a, b) in &s.entries {
        store.put(*k, a, b).unwrap();
    }
}

/// The frames of a segment file: (offset of the payload in the file, payload).
fn frames_in(bytes: &[u8]) -> Vec<(usize, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        out.push((pos + 8, bytes[pos + 8..pos + 8 + len].to_vec()));
        pos += 8 + len;
    }
    out
}

/// A segment file made of `payloads`, with lengths and checksums recomputed (as anyone
/// with write access to the files could).
fn framed(payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in payloads {
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(p).to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}

fn event(i: u64) -> NewEvent {
    NewEvent {
        actor: format!("actor-{}", i % 7),
        actor_name: format!("user{}", i % 7),
        role: "fundraiser".into(),
        action: if i.is_multiple_of(3) {
            "subject.read".into()
        } else {
            "subject.update".into()
        },
        subjects: vec![format!("S{:024}", i % 50)],
        fields: vec!["given_name".into()],
        purpose: None,
        request_id: Some(format!("req-{i}")),
        outcome: Outcome::Ok,
        reason: None,
        source: "127.0.0.1".into(),
        count: None,
    }
}

/// Builds a log of `n` events in blocks of varying sizes (1 to 9 events).
fn build(log: &AuditLog, n: u64, seed: u64) {
    let mut rng = seed;
    let mut i = 0;
    while i < n {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let k = (1 + (rng >> 33) % 9).min(n - i);
        let events: Vec<NewEvent> = (i..i + k).map(event).collect();
        log.append_with(events, |b| log.store().apply(b))
            .unwrap()
            .unwrap();
        i += k;
    }
}

/// (frame index, offset of the event in the file, event length incl. framing) per event.
fn layout(file: &[u8]) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    for (b, (at, payload)) in frames_in(file).iter().enumerate() {
        let block = &payload[8..payload.len() - 64];
        let mut pos = 0;
        while pos < block.len() {
            let len = u32::from_le_bytes(block[pos..pos + 4].try_into().unwrap()) as usize;
            out.push((b, at + 8 + pos, 36 + len));
            pos += 36 + len;
        }
    }
    out
}

#[test]
fn an_untouched_log_verifies_and_checkpoints_are_signed() {
    let f = fixture();
    let log = log(&f, 100);
    build(&log, 1000, 1);
    let v = log.verify(None).unwrap();
    assert!(v.ok, "{v:?}");
    assert_eq!(v.events, 1000);
    assert!(v.checkpoints >= 9, "{v:?}");
    let cp = log.latest_checkpoint().unwrap().unwrap();
    assert!(cp.signature_valid());
    let mut forged = cp.clone();
    forged.size += 1;
    assert!(!forged.signature_valid());
}

#[test]
fn every_single_byte_flip_deletion_swap_and_truncation_is_found_at_the_damaged_event() {
    let f = fixture();
    let log = log(&f, 250);
    build(&log, 3000, 7);
    // As when Steward stops: the signed head records where the log ends.
    log.close().unwrap();
    let path = active(&f);
    let original = std::fs::read(&path).unwrap();
    let lay = layout(&original);
    assert_eq!(lay.len(), 3000);
    let frames = frames_in(&original);
    let payloads: Vec<Vec<u8>> = frames.iter().map(|(_, p)| p.clone()).collect();
    let restore = || std::fs::write(&path, &original).unwrap();
    let mut rng: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    // Byte flips anywhere in an event: its length, its body or its stored hash; with the
    // frame's checksum left as it is, and recomputed.
    for round in 0..300 {
        let seq = (next() % 3000) as usize;
        let (b, off, len) = lay[seq];
        let at = off + (next() as usize % len);
        let bit = 1 << (next() % 8);
        let bytes = if round % 2 == 0 {
            let mut v = original.clone();
            v[at] ^= bit;
            v
        } else {
            let mut p = payloads.clone();
            p[b][at - frames[b].0] ^= bit;
            framed(&p)
        };
        std::fs::write(&path, &bytes).unwrap();
        let r = log.verify(None).unwrap();
        assert!(!r.ok, "flip at event {seq} byte {} not detected", at - off);
        let p = r.problem.unwrap();
        assert_eq!(
            p.seq,
            seq as u64,
            "flip at event {seq} (byte {} of {len}) reported at {}: {}",
            at - off,
            p.seq,
            p.detail
        );
        restore();
    }
    // Deleting one event (the frame rewritten around it).
    for _ in 0..50 {
        let seq = (next() % 2999) as usize;
        let (b, off, len) = lay[seq];
        let mut p = payloads.clone();
        let start = off - frames[b].0;
        p[b].drain(start..start + len);
        if p[b].len() == 72 {
            p.remove(b);
        }
        std::fs::write(&path, framed(&p)).unwrap();
        let problem = log
            .verify(None)
            .unwrap()
            .problem
            .expect("deletion detected");
        assert_eq!(
            (problem.seq, problem.kind.as_str()),
            (seq as u64, "gap"),
            "{}",
            problem.detail
        );
        restore();
    }
    // Swapping two events within a block.
    let mut swaps = 0;
    while swaps < 50 {
        let seq = (next() % 2999) as usize;
        let (b, off, len) = lay[seq];
        let (b2, off2, len2) = lay[seq + 1];
        if b2 != b {
            continue;
        }
        let base = frames[b].0;
        let (off, off2) = (off - base, off2 - base);
        let v = &payloads[b];
        let mut w = v[..off].to_vec();
        w.extend_from_slice(&v[off2..off2 + len2]);
        w.extend_from_slice(&v[off..off + len]);
        w.extend_from_slice(&v[off2 + len2..]);
        let mut p = payloads.clone();
        p[b] = w;
        std::fs::write(&path, framed(&p)).unwrap();
        let problem = log.verify(None).unwrap().problem.expect("swap detected");
        assert_eq!(problem.seq, seq as u64, "{}", problem.detail);
        restore();
        swaps += 1;
    }
    // Truncating the tail: whole blocks removed from the end.
    for _ in 0..20 {
        let keep_blocks = (next() as usize % (payloads.len() - 1)) + 1;
        std::fs::write(&path, framed(&payloads[..keep_blocks])).unwrap();
        let first_missing = lay.iter().position(|(b, _, _)| *b >= keep_blocks).unwrap() as u64;
        let problem = log
            .verify(None)
            .unwrap()
            .problem
            .expect("truncation detected");
        assert_eq!(
            (problem.seq, problem.kind.as_str()),
            (first_missing, "truncated"),
            "{}",
            problem.detail
        );
        restore();
    }
    assert!(log.verify(None).unwrap().ok);
}

#[test]
fn a_rollback_of_the_whole_log_is_found_against_a_later_exported_checkpoint() {
    let f = fixture();
    let log1 = log(&f, 1_000_000);
    build(&log1, 500, 3);
    log1.close().unwrap();
    // An attacker copies the whole log (segments, checkpoints and head) as it is now...
    let old = snapshot(&f);
    build(&log1, 300, 4);
    let exported = log1.checkpoint().unwrap();
    let text = serde_json::to_string(&exported).unwrap();
    drop(log1);
    // ...and later puts the old copy back: internally consistent, so plain verify passes.
    put_back(&f, &old);
    let log2 = log(&f, 1_000_000);
    assert!(
        log2.verify(None).unwrap().ok,
        "the rolled-back copy is self-consistent"
    );
    let against = Checkpoint::from_json(&text).unwrap();
    let p = log2
        .verify(Some(&against))
        .unwrap()
        .problem
        .expect("rollback detected");
    assert_eq!((p.seq, p.kind.as_str()), (500, "rollback"), "{}", p.detail);
    // A checkpoint from another log is refused as such.
    let other = fixture();
    let log3 = log(&other, 10);
    build(&log3, 20, 1);
    let foreign = log3.checkpoint().unwrap();
    assert_eq!(
        log2.verify(Some(&foreign)).unwrap().problem.unwrap().kind,
        "bad_signature"
    );
}

#[test]
fn group_commit_numbers_concurrent_appends_without_gaps_and_failures_leave_no_trace() {
    let f = fixture();
    let log = Arc::new(log(&f, 500));
    std::thread::scope(|s| {
        for t in 0..8 {
            let log = log.clone();
            s.spawn(move || {
                for i in 0..250 {
                    log.append(event(t * 1000 + i)).unwrap();
                }
            });
        }
    });
    assert_eq!(log.len(), 2000);
    let v = log.verify(None).unwrap();
    assert!(v.ok && v.events == 2000, "{v:?}");
    log.segments().set_mode(vault::segments::AppendMode::Fail);
    let err = log.append(event(1)).unwrap_err();
    assert!(err.to_string().contains("not carried out"), "{err}");
    log.segments().set_mode(vault::segments::AppendMode::Write);
    assert_eq!(
        log.append(event(2)).unwrap(),
        2000,
        "the failed append used no number"
    );
    assert!(log.verify(None).unwrap().ok);
}

#[test]
fn queries_filter_by_subject_actor_action_outcome_and_time_with_paging() {
    let f = fixture();
    let log = log(&f, 1000);
    build(&log, 700, 9);
    let q = Query {
        subject: Some(format!("S{:024}", 3)),
        action: Some("read".into()),
        limit: 1000,
        ..Query::default()
    };
    let (events, next) = log.query(&q).unwrap();
    let expected: Vec<u64> = (0..700u64)
        .filter(|i| i % 50 == 3 && i.is_multiple_of(3))
        .collect();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), expected);
    assert!(next.is_none());
    let q = Query {
        actor: Some("user2".into()),
        limit: 10,
        ..Query::default()
    };
    let (page1, next) = log.query(&q).unwrap();
    assert_eq!(page1.len(), 10);
    let (page2, _) = log
        .query(&Query {
            after: next,
            ..q.clone()
        })
        .unwrap();
    assert!(page2[0].seq > page1[9].seq);
    assert!(page1.iter().chain(&page2).all(|e| e.actor_name == "user2"));
    let (none, _) = log
        .query(&Query {
            from: Some("2999-01-01".into()),
            limit: 10,
            ..Query::default()
        })
        .unwrap();
    assert!(none.is_empty());
    let (all, _) = log
        .query(&Query {
            from: Some("2000-01-01".into()),
            to: Some("2999-01-01".into()),
            limit: 10_000,
            ..Query::default()
        })
        .unwrap();
    assert_eq!(all.len(), 700);
}

/// Rewrites event `target` (one byte of its body) and every chain hash after it, as someone
/// with write access to the files but without the log's key would (blocks keep their old
/// signatures). Returns the new chain hash after the last event.
fn rewrite_from(path: &std::path::Path, target: u64) -> [u8; 32] {
    let mut prev = [0u8; 32];
    let mut seq = 0u64;
    let mut payloads = Vec::new();
    for (_, payload) in frames_in(&std::fs::read(path).unwrap()) {
        let v = &payload[8..payload.len() - 64];
        let mut out = payload[..8].to_vec();
        let mut pos = 0;
        while pos < v.len() {
            let len = u32::from_le_bytes(v[pos..pos + 4].try_into().unwrap()) as usize;
            let mut body = v[pos + 4..pos + 4 + len].to_vec();
            if seq == target {
                let at = body.iter().position(|b| *b == b'a').unwrap();
                body[at] = b'b';
            }
            let hash = crate::event::chain_hash(&prev, &body);
            out.extend_from_slice(&(len as u32).to_le_bytes());
            out.extend_from_slice(&body);
            out.extend_from_slice(&hash);
            prev = hash;
            pos += 36 + len;
            seq += 1;
        }
        out.extend_from_slice(&payload[payload.len() - 64..]);
        payloads.push(out);
    }
    std::fs::write(path, framed(&payloads)).unwrap();
    prev
}

/// Replaces the recorded head with one naming `hash`, without a signature (as a log from
/// before heads were signed has it).
fn unsigned_head(f: &Fixture, hash: &[u8; 32]) {
    let store = f.vault.store();
    let head = store.get(ks::META, b"audit.head").unwrap().unwrap();
    let mut h: serde_json::Value = serde_json::from_slice(&head).unwrap();
    h["head"] = serde_json::json!(domain::hex(hash));
    h.as_object_mut().unwrap().remove("signature");
    store
        .put(ks::META, b"audit.head", &serde_json::to_vec(&h).unwrap())
        .unwrap();
}

#[test]
fn a_rewritten_log_with_a_recomputed_head_and_deleted_checkpoints_is_found() {
    let f = fixture();
    let store = f.vault.store().clone();
    let log = log(&f, 100);
    build(&log, 450, 3);
    let v = log.verify(None).unwrap();
    assert!(v.ok, "{v:?}");
    // 450 events, checkpoints every 100: the 50 after the last one are the unsigned tail.
    assert!(v.unsigned_tail > 0 && v.unsigned_tail < 100, "{v:?}");
    let good = snapshot(&f);
    let path = active(&f);
    // An event in the tail rewritten and the chain recomputed: its block's signature cannot
    // be made, with or without a head to match.
    let hash = rewrite_from(&path, 440);
    let v = log.verify(None).unwrap();
    let p = v.problem.as_ref().unwrap();
    assert_eq!(p.kind, "bad_signature", "{v:?}");
    assert!(p.seq <= 440, "{v:?}");
    unsigned_head(&f, &hash);
    assert!(!log.verify(None).unwrap().ok);
    put_back(&f, &good);
    assert!(log.verify(None).unwrap().ok);
    // An event before the last checkpoint rewritten, every checkpoint deleted, an unsigned
    // head: the blocks' signatures give it away.
    drop(log);
    let hash = rewrite_from(&path, 120);
    unsigned_head(&f, &hash);
    let checkpoints: Vec<Vec<u8>> = store
        .scan_prefix(ks::AUDIT_CHECKPOINTS, &[])
        .map(|e| e.unwrap().0)
        .collect();
    for k in &checkpoints {
        store.delete(ks::AUDIT_CHECKPOINTS, k).unwrap();
    }
    // Reopened (as a new version would open an old log), it is not signed as if it were
    // good: nothing signed covers it, and the head says so for good.
    let reopened = log_of(&f, 100);
    let v = reopened.verify(None).unwrap();
    assert_eq!(
        v.problem.as_ref().map(|p| p.kind.as_str()),
        Some("unvouched"),
        "{v:?}"
    );
    drop(reopened);
    put_back(&f, &good);
    // One checkpoint taken out of the middle: the chain and the signed head miss it.
    let log = log_of(&f, 100);
    store
        .delete(ks::AUDIT_CHECKPOINTS, &checkpoints[1])
        .unwrap();
    let v = log.verify(None).unwrap();
    assert_eq!(
        v.problem.as_ref().map(|p| p.kind.as_str()),
        Some("checkpoint_missing"),
        "{v:?}"
    );
}

#[test]
fn sealed_segments_move_to_an_archive_and_verify_from_it_and_on_their_own() {
    let f = fixture();
    let log = sealing_log(&f);
    build(&log, 2000, 5);
    // Sealing happens on the log's writer thread; a checkpoint waits for what it was given.
    log.checkpoint().unwrap();
    let dir = f.vault.dir().join(vault::layout::AUDIT);
    let sealed = vault::segments::list(&dir)
        .unwrap()
        .iter()
        .filter(|s| s.sealed)
        .count();
    assert!(sealed >= 5, "{sealed} sealed segments");
    // A sealed segment keeps an event in far fewer bytes than the active file.
    assert!(log.verify(None).unwrap().ok);
    let archive = f._tmp.path().join("archive");
    let (moved, events) = log.archive(&archive).unwrap();
    assert_eq!(moved as usize, sealed);
    assert!(events > 0 && events < 2000, "{events}");
    // The live log now starts after the archive, and still verifies on its own...
    let live = log.verify(None).unwrap();
    assert!(live.ok && live.events == 2000, "{live:?}");
    // ...with the archive read first...
    let whole = log.verify_with_archive(None, Some(&archive)).unwrap();
    assert!(whole.ok && whole.events == 2000, "{whole:?}");
    // ...and the archive alone, with nothing but the log's public key.
    let alone = crate::verify_archive(&archive, &log.public_key()).unwrap();
    assert!(alone.ok && alone.events == events, "{alone:?}");
    // Appends go on after archiving; queries see the live part.
    log.append(event(9999)).unwrap();
    let (page, _) = log
        .query(&Query {
            limit: 10_000,
            ..Query::default()
        })
        .unwrap();
    assert_eq!(page.first().map(|e| e.seq), Some(events));
    assert_eq!(page.last().map(|e| e.seq), Some(2000));
    // A changed byte in an archived segment, or a missing one, is found.
    let mut files: Vec<_> = std::fs::read_dir(&archive)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let bytes = std::fs::read(&files[1]).unwrap();
    let mut flipped = bytes.clone();
    let at = flipped.len() / 2;
    flipped[at] ^= 4;
    std::fs::write(&files[1], &flipped).unwrap();
    let v = log.verify_with_archive(None, Some(&archive)).unwrap();
    assert_eq!(v.problem.map(|p| p.kind), Some("malformed".to_string()));
    assert!(
        !crate::verify_archive(&archive, &log.public_key())
            .unwrap()
            .ok
    );
    std::fs::remove_file(&files[1]).unwrap();
    let v = log.verify_with_archive(None, Some(&archive)).unwrap();
    assert_eq!(v.problem.map(|p| p.kind), Some("gap".to_string()));
    std::fs::write(&files[1], &bytes).unwrap();
    assert!(log.verify_with_archive(None, Some(&archive)).unwrap().ok);
    // Deleting live segments and claiming they were archived needs the log's key.
    let store = f.vault.store();
    let mut marker: serde_json::Value =
        serde_json::from_slice(&store.get(ks::META, b"audit.archived").unwrap().unwrap()).unwrap();
    marker["next_seq"] = serde_json::json!(events + 1);
    store
        .put(
            ks::META,
            b"audit.archived",
            &serde_json::to_vec(&marker).unwrap(),
        )
        .unwrap();
    let v = log.verify(None).unwrap();
    assert_eq!(v.problem.map(|p| p.kind), Some("bad_signature".to_string()));
}

#[test]
fn a_writes_block_that_a_crash_kept_from_its_segment_is_moved_there_on_open() {
    let f = fixture();
    let log = log(&f, 1_000_000);
    build(&log, 40, 2);
    // A crash after the store took a write (and its block) but before the block reached
    // the segment file: the file loses its last frame, the store keeps the block.
    let path = active(&f);
    let frames = frames_in(&std::fs::read(&path).unwrap());
    let payloads: Vec<Vec<u8>> = frames.iter().map(|(_, p)| p.clone()).collect();
    std::mem::forget(log);
    std::fs::write(&path, framed(&payloads[..payloads.len() - 1])).unwrap();
    let reopened = log_of(&f, 1_000_000);
    assert_eq!(reopened.len(), 40);
    let v = reopened.verify(None).unwrap();
    assert!(v.ok, "{v:?}");
    assert!(
        f.vault.store().scan_prefix(ks::AUDIT, &[]).next().is_none(),
        "blocks leave the store once the segment holds them"
    );
    reopened.append(event(40)).unwrap();
    assert!(reopened.verify(None).unwrap().ok);
}

#[test]
fn a_log_kept_in_the_store_by_an_earlier_version_moves_into_segments_of_the_usual_size() {
    let f = fixture();
    // Blocks only in the store, as Steward wrote them before segment files: the segment
    // file keeps nothing and no checkpoint or close moves them out.
    let old = log_of(&f, 1_000_000);
    old.segments()
        .set_mode(vault::segments::AppendMode::Discard);
    build(&old, 2000, 11);
    std::mem::forget(old);
    assert!(f.vault.store().scan_prefix(ks::AUDIT, &[]).count() > 200);
    let log = sealing_log(&f);
    assert_eq!(log.len(), 2000);
    log.checkpoint().unwrap();
    let sealed = vault::segments::list(&f.vault.dir().join(vault::layout::AUDIT))
        .unwrap()
        .iter()
        .filter(|s| s.sealed)
        .count();
    assert!(sealed >= 10, "{sealed} sealed segments");
    assert!(f.vault.store().scan_prefix(ks::AUDIT, &[]).next().is_none());
    let v = log.verify(None).unwrap();
    assert!(v.ok && v.events == 2000, "{v:?}");
    let archive = f._tmp.path().join("archive");
    log.archive(&archive).unwrap();
    assert!(
        crate::verify_archive(&archive, &log.public_key())
            .unwrap()
            .ok
    );
}

#[test]
fn a_log_whose_last_block_is_unreadable_goes_on_from_the_last_readable_one() {
    let f = fixture();
    let log = log(&f, 1_000_000);
    build(&log, 40, 2);
    drop(log);
    // The last block replaced by bytes that are framed (length and checksum right) but are
    // not a block: someone wrote into the file.
    let path = active(&f);
    let mut payloads: Vec<Vec<u8>> = frames_in(&std::fs::read(&path).unwrap())
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    let last = payloads.pop().unwrap();
    let before: u64 = layout(&framed(&payloads)).len() as u64;
    assert!(before < 40 && before > 1, "{before}");
    payloads.push(last[..10].to_vec());
    std::fs::write(&path, framed(&payloads)).unwrap();
    let reopened = log_of(&f, 1_000_000);
    // The log goes on where its readable part stops, and verification names the damage.
    assert_eq!(reopened.len(), before);
    let v = reopened.verify(None).unwrap();
    assert_eq!(
        v.problem.as_ref().map(|p| (p.seq, p.kind.as_str())),
        Some((before, "malformed")),
        "{v:?}"
    );
}
