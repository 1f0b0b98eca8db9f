use std::sync::Arc;

use vault::{keyspaces as ks, SealTo, Store, Unlock, Vault};

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
    AuditLog::open(
        f.vault.store().clone(),
        f.vault.keys(),
        AuditConfig {
            checkpoint_every: every,
            checkpoint_seconds: 3600,
        },
    )
    .unwrap()
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

fn blocks(store: &Arc<dyn Store>) -> Vec<(Vec<u8>, Vec<u8>)> {
    store
        .scan_prefix(ks::AUDIT, &[])
        .map(|e| e.unwrap())
        .collect()
}

/// (block index, offset of the event in the block, event length incl. framing) per event.
fn layout(store: &Arc<dyn Store>) -> Vec<(usize, usize, usize)> {
    let mut out = Vec::new();
    for (b, (_, v)) in blocks(store).iter().enumerate() {
        let mut pos = 0;
        while pos < v.len() {
            let len = u32::from_le_bytes(v[pos..pos + 4].try_into().unwrap()) as usize;
            out.push((b, pos, 36 + len));
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
    let store = f.vault.store().clone();
    let lay = layout(&store);
    assert_eq!(lay.len(), 3000);
    let original = blocks(&store);
    let restore = || {
        for (k, v) in &original {
            store.put(ks::AUDIT, k, v).unwrap();
        }
    };
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
    // Byte flips anywhere in an event: its length, its body or its stored hash.
    for _ in 0..300 {
        let seq = (next() % 3000) as usize;
        let (b, off, len) = lay[seq];
        let at = off + (next() as usize % len);
        let mut v = original[b].1.clone();
        v[at] ^= 1 << (next() % 8);
        store.put(ks::AUDIT, &original[b].0, &v).unwrap();
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
    // Deleting one event.
    for _ in 0..50 {
        let seq = (next() % 2999) as usize;
        let (b, off, len) = lay[seq];
        let mut v = original[b].1.clone();
        v.drain(off..off + len);
        if v.is_empty() {
            store.delete(ks::AUDIT, &original[b].0).unwrap();
        } else {
            store.put(ks::AUDIT, &original[b].0, &v).unwrap();
        }
        let p = log
            .verify(None)
            .unwrap()
            .problem
            .expect("deletion detected");
        assert_eq!(
            (p.seq, p.kind.as_str()),
            (seq as u64, "gap"),
            "{}",
            p.detail
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
        let v = &original[b].1;
        let mut w = v[..off].to_vec();
        w.extend_from_slice(&v[off2..off2 + len2]);
        w.extend_from_slice(&v[off..off + len]);
        w.extend_from_slice(&v[off2 + len2..]);
        store.put(ks::AUDIT, &original[b].0, &w).unwrap();
        let p = log.verify(None).unwrap().problem.expect("swap detected");
        assert_eq!(p.seq, seq as u64, "{}", p.detail);
        restore();
        swaps += 1;
    }
    // Truncating the tail: whole blocks removed from the end.
    for _ in 0..20 {
        let keep_blocks = (next() as usize % (original.len() - 1)) + 1;
        for (k, _) in &original[keep_blocks..] {
            store.delete(ks::AUDIT, k).unwrap();
        }
        let first_missing = lay.iter().position(|(b, _, _)| *b >= keep_blocks).unwrap() as u64;
        let p = log
            .verify(None)
            .unwrap()
            .problem
            .expect("truncation detected");
        assert_eq!(
            (p.seq, p.kind.as_str()),
            (first_missing, "truncated"),
            "{}",
            p.detail
        );
        restore();
    }
    assert!(log.verify(None).unwrap().ok);
}

#[test]
fn a_rollback_of_the_whole_log_is_found_against_a_later_exported_checkpoint() {
    let f = fixture();
    let store = f.vault.store().clone();
    let log1 = log(&f, 1_000_000);
    build(&log1, 500, 3);
    // An attacker copies the whole log (blocks, checkpoints and head) as it is now...
    let snapshot: Vec<_> = [ks::AUDIT, ks::AUDIT_CHECKPOINTS]
        .iter()
        .flat_map(|k| store.scan_prefix(*k, &[]).map(move |e| (*k, e.unwrap())))
        .collect();
    let head = store.get(ks::META, b"audit.head").unwrap().unwrap();
    build(&log1, 300, 4);
    let exported = log1.checkpoint().unwrap();
    let text = serde_json::to_string(&exported).unwrap();
    // ...and later puts the old copy back: internally consistent, so plain verify passes.
    for k in [ks::AUDIT, ks::AUDIT_CHECKPOINTS] {
        let keys: Vec<_> = store.scan_prefix(k, &[]).map(|e| e.unwrap().0).collect();
        for key in keys {
            store.delete(k, &key).unwrap();
        }
    }
    for (k, (key, v)) in &snapshot {
        store.put(*k, key, v).unwrap();
    }
    store.put(ks::META, b"audit.head", &head).unwrap();
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
    let real = f.vault.store().clone();
    log.set_store(Arc::new(vault::FailingStore));
    let err = log.append(event(1)).unwrap_err();
    assert!(err.to_string().contains("not carried out"), "{err}");
    log.set_store(real);
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
/// with write access to the store but without the log's key would.
fn rewrite_from(store: &Arc<dyn Store>, target: u64) {
    let mut prev = [0u8; 32];
    let mut seq = 0u64;
    for (k, v) in blocks(store) {
        let mut out = Vec::with_capacity(v.len());
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
        store.put(ks::AUDIT, &k, &out).unwrap();
    }
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
    let head = store.get(ks::META, b"audit.head").unwrap().unwrap();
    let checkpoints: Vec<(Vec<u8>, Vec<u8>)> = store
        .scan_prefix(ks::AUDIT_CHECKPOINTS, &[])
        .map(|e| e.unwrap())
        .collect();
    let original = blocks(&store);
    let put_back = || {
        for (k, v) in &original {
            store.put(ks::AUDIT, k, v).unwrap();
        }
        store.put(ks::META, b"audit.head", &head).unwrap();
        for (k, v) in &checkpoints {
            store.put(ks::AUDIT_CHECKPOINTS, k, v).unwrap();
        }
    };
    // An event in the tail rewritten, the chain recomputed, the head updated to match (its
    // signature cannot be made), checkpoints left alone.
    let recompute_head = |unsigned: bool| {
        let mut h: serde_json::Value = serde_json::from_slice(&head).unwrap();
        let last = blocks(&store).last().unwrap().1.clone();
        h["head"] = serde_json::json!(domain::hex(&last[last.len() - 32..]));
        if unsigned {
            h.as_object_mut().unwrap().remove("signature");
        }
        store
            .put(ks::META, b"audit.head", &serde_json::to_vec(&h).unwrap())
            .unwrap();
    };
    rewrite_from(&store, 440);
    recompute_head(false);
    let v = log.verify(None).unwrap();
    assert_eq!(
        v.problem.as_ref().map(|p| p.kind.as_str()),
        Some("bad_signature"),
        "{v:?}"
    );
    recompute_head(true);
    let v = log.verify(None).unwrap();
    assert_eq!(
        v.problem.as_ref().map(|p| p.kind.as_str()),
        Some("head_unsigned"),
        "{v:?}"
    );
    put_back();
    assert!(log.verify(None).unwrap().ok);
    // An event before the last checkpoint rewritten, every checkpoint deleted, an unsigned
    // head: the head gives it away.
    rewrite_from(&store, 120);
    recompute_head(true);
    for (k, _) in &checkpoints {
        store.delete(ks::AUDIT_CHECKPOINTS, k).unwrap();
    }
    assert!(!log.verify(None).unwrap().ok);
    // Reopened (as a new version would open an old log), it is not signed as if it were
    // good: nothing signed covers it, and the head says so for good.
    drop(log);
    let reopened = super::AuditLog::open(
        store.clone(),
        f.vault.keys(),
        AuditConfig {
            checkpoint_every: 100,
            checkpoint_seconds: 3600,
        },
    )
    .unwrap();
    let v = reopened.verify(None).unwrap();
    assert_eq!(
        v.problem.as_ref().map(|p| p.kind.as_str()),
        Some("unvouched"),
        "{v:?}"
    );
    put_back();
    // One checkpoint taken out of the middle: the chain and the signed head miss it.
    let log = reopened;
    store.put(ks::META, b"audit.head", &head).unwrap();
    store
        .delete(ks::AUDIT_CHECKPOINTS, &checkpoints[1].0)
        .unwrap();
    let v = log.verify(None).unwrap();
    assert_eq!(
        v.problem.as_ref().map(|p| p.kind.as_str()),
        Some("checkpoint_missing"),
        "{v:?}"
    );
}
