//! What every `Store` backend must do, checked on each: sled always, PostgreSQL when
//! `STEWARD_TEST_PG` names a server (CI sets it; there its absence is a failure, so the
//! PostgreSQL half cannot be skipped unnoticed).

use crate::store::{keyspaces as ks, Batch, Store};

fn all(store: &dyn Store, space: crate::Keyspace, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    store
        .scan_prefix(space, prefix)
        .collect::<Result<Vec<_>, _>>()
        .expect("scan")
}

/// The contract, on an empty store.
pub(crate) fn check(store: &dyn Store) {
    // One value: put, read, overwrite, delete.
    store.put(ks::META, b"a", b"1").unwrap();
    assert_eq!(store.get(ks::META, b"a").unwrap(), Some(b"1".to_vec()));
    store.put(ks::META, b"a", b"2").unwrap();
    assert_eq!(store.get(ks::META, b"a").unwrap(), Some(b"2".to_vec()));
    store.delete(ks::META, b"a").unwrap();
    assert_eq!(store.get(ks::META, b"a").unwrap(), None);
    // Keyspaces are apart: the same key in two of them.
    store.put(ks::SUBJECTS, b"k", b"subject").unwrap();
    store.put(ks::GIFTS, b"k", b"gift").unwrap();
    assert_eq!(
        store.get(ks::SUBJECTS, b"k").unwrap(),
        Some(b"subject".to_vec())
    );
    assert_eq!(all(store, ks::SUBJECTS, b"").len(), 1);
    // A batch is applied in order: the last write to a key counts.
    let mut b = Batch::new();
    b.put(ks::META, b"x", b"1");
    b.delete(ks::META, b"x");
    b.delete(ks::META, b"y");
    b.put(ks::META, b"y", b"2");
    b.put(ks::META, b"z", b"3");
    b.put(ks::META, b"z", b"4");
    store.apply(b).unwrap();
    assert_eq!(store.get(ks::META, b"x").unwrap(), None);
    assert_eq!(store.get(ks::META, b"y").unwrap(), Some(b"2".to_vec()));
    assert_eq!(store.get(ks::META, b"z").unwrap(), Some(b"4".to_vec()));
    // Ordered scans, byte by byte, across more entries than a page, with 0x00 and 0xFF in
    // keys and prefixes, and not into the next keyspace.
    let mut b = Batch::new();
    for i in 0u32..1300 {
        let mut k = vec![0xFF, (i % 3) as u8];
        k.extend_from_slice(&i.to_be_bytes());
        b.put(ks::INDEX, k, i.to_le_bytes().to_vec());
    }
    b.put(ks::INDEX, vec![0x00], b"low".to_vec());
    b.put(ks::INDEX, vec![0xFF], b"bare".to_vec());
    b.put(ks::INDEX, vec![0xFF, 0xFF, 0xFF], b"high".to_vec());
    b.put(ks::META, vec![0xFF, 0x01], b"other keyspace".to_vec());
    b.put(ks::ERASED, vec![0x00], b"next keyspace".to_vec());
    store.apply(b).unwrap();
    let whole = all(store, ks::INDEX, b"");
    assert_eq!(whole.len(), 1303);
    assert!(whole.windows(2).all(|w| w[0].0 < w[1].0), "ascending");
    assert_eq!(whole[0].0, vec![0x00]);
    assert_eq!(whole.last().unwrap().0, vec![0xFF, 0xFF, 0xFF]);
    let ones = all(store, ks::INDEX, &[0xFF, 0x01]);
    assert_eq!(ones.len(), 433);
    assert!(ones.iter().all(|(k, _)| k.starts_with(&[0xFF, 0x01])));
    assert_eq!(all(store, ks::INDEX, &[0xFF, 0xFF]).len(), 1);
    assert_eq!(all(store, ks::INDEX, &[0xFF]).len(), 1302);
    let from: Vec<_> = store
        .scan_from(ks::INDEX, &[0xFF, 0x02])
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert_eq!(
        from.len(),
        434,
        "the 2s and the 0xFF,0xFF,0xFF key, nothing after the keyspace"
    );
    let last = store
        .last_with_prefix(ks::INDEX, &[0xFF, 0x01])
        .unwrap()
        .unwrap();
    assert_eq!(
        last.0,
        [vec![0xFF, 0x01], 1297u32.to_be_bytes().to_vec()].concat()
    );
    assert_eq!(
        store.last_with_prefix(ks::INDEX, b"").unwrap().unwrap().0,
        vec![0xFF, 0xFF, 0xFF]
    );
    assert!(store
        .last_with_prefix(ks::INDEX, &[0x42])
        .unwrap()
        .is_none());
    // A write during a scan neither breaks it nor repeats a key (whether it sees the
    // deleted key depends on the backend: at most once).
    let mut keys = Vec::new();
    for (n, entry) in store.scan_prefix(ks::INDEX, &[0xFF, 0x00]).enumerate() {
        keys.push(entry.unwrap().0);
        if n == 10 {
            let mut gone = vec![0xFF, 0x00];
            gone.extend_from_slice(&1200u32.to_be_bytes());
            store.delete(ks::INDEX, &gone).unwrap();
        }
    }
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "each key once, in order"
    );
    assert!((433..=434).contains(&keys.len()), "{}", keys.len());
    // Large values and empty ones.
    store.put(ks::AUDIT, b"big", &vec![7u8; 1 << 20]).unwrap();
    assert_eq!(
        store.get(ks::AUDIT, b"big").unwrap().unwrap().len(),
        1 << 20
    );
    store.put(ks::AUDIT, b"empty", b"").unwrap();
    assert_eq!(store.get(ks::AUDIT, b"empty").unwrap(), Some(Vec::new()));
    store.flush().unwrap();
    assert!(store.size_on_disk().unwrap() > 0);
    // Counters: each call gets the value before its step; counters are apart.
    assert_eq!(store.allocate(b"slots", 3).unwrap(), 0);
    assert_eq!(store.allocate(b"slots", 1).unwrap(), 3);
    assert_eq!(store.allocate(b"other", 5).unwrap(), 0);
    assert_eq!(store.allocate(b"slots", 0).unwrap(), 4);
}

#[test]
fn sled_keeps_the_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::SledStore::open(&dir.path().join("db"), &Default::default()).unwrap();
    check(&store);
}

/// A fresh database on the server `STEWARD_TEST_PG` names; `None` when it names none (and
/// not in CI).
pub(crate) fn fresh_pg() -> Option<String> {
    let Ok(url) = std::env::var("STEWARD_TEST_PG") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the PostgreSQL tests: set STEWARD_TEST_PG (see .ci/run)"
        );
        return None;
    };
    let mut bytes = [0u8; 6];
    assert!(crate::crypto::fill_random(&mut bytes));
    let name = format!(
        "steward_test_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).expect("the test server");
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("create a test database");
    let (base, _) = url.rsplit_once('/').expect("a URL with a database");
    Some(format!("{base}/{name}"))
}

#[test]
fn postgres_keeps_the_store_contract() {
    let Some(url) = fresh_pg() else { return };
    let store = crate::pg::PgStore::connect(&url, 2).unwrap();
    check(&store);
    // Another connection sees what one wrote, at once.
    let other = crate::pg::PgStore::connect(&url, 1).unwrap();
    store.put(ks::META, b"shared", b"yes").unwrap();
    assert_eq!(
        other.get(ks::META, b"shared").unwrap(),
        Some(b"yes".to_vec())
    );
    // Counters are shared: the other store's allocation comes after this one's.
    assert_eq!(other.allocate(b"slots", 2).unwrap(), 4);
    assert_eq!(store.allocate(b"slots", 1).unwrap(), 6);
    // A lock taken through one store keeps the other waiting until it is released; a
    // lock of another name does not.
    assert!(store.shared() && other.shared());
    let held = store
        .lock_across(crate::CrossLockName::Records)
        .unwrap()
        .expect("a shared store locks");
    let other = std::sync::Arc::new(other);
    let waiter = {
        let other = other.clone();
        std::thread::spawn(move || {
            let start = std::time::Instant::now();
            let _lock = other.lock_across(crate::CrossLockName::Records).unwrap();
            start.elapsed()
        })
    };
    let _audit = other
        .lock_across(crate::CrossLockName::Audit)
        .unwrap()
        .expect("another name is free");
    std::thread::sleep(std::time::Duration::from_millis(300));
    drop(held);
    let waited = waiter.join().unwrap();
    assert!(
        waited >= std::time::Duration::from_millis(250),
        "the second holder waited only {waited:?}"
    );
}

#[test]
fn an_unreachable_database_is_named_without_its_password() {
    let e = crate::pg::PgStore::connect("postgres://ada:s3cret@127.0.0.1:1/steward", 1)
        .err()
        .expect("nothing listens on port 1");
    let text = e.to_string();
    assert!(
        text.contains("127.0.0.1:1") && !text.contains("s3cret"),
        "{text}"
    );
}
