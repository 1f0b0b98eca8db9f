//! The PostgreSQL backend of [`Store`]: one table of (keyspace, key, value), keys ordered
//! byte by byte (bytea), a batch applied in one transaction.
//!
//! The database sees what sled sees: ciphertext, keyed hashes and opaque ids. Connections
//! come from a small pool of blocking clients; scans page through the key order (keyset
//! pagination), so a long scan holds no connection between pages and sees writes made while
//! it runs the way a sled iterator may.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::store::{CrossLock, CrossLockName};

use crate::store::{Batch, Entry, EntryIter, Keyspace, Store, StoreError};

/// Rows fetched per page of a scan.
const PAGE: i64 = 512;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS steward_kv (
    ks smallint NOT NULL,
    k bytea NOT NULL,
    v bytea NOT NULL,
    PRIMARY KEY (ks, k)
);
CREATE TABLE IF NOT EXISTS steward_counters (
    name bytea PRIMARY KEY,
    v bigint NOT NULL
)";

/// The first key of Steward's advisory locks (`pg_advisory_lock(int, int)`): "St".
const LOCK_CLASS: i32 = 0x5374;

type LockClients = Mutex<HashMap<i32, Arc<Mutex<postgres::Client>>>>;

/// A PostgreSQL store.
pub struct PgStore {
    pool: Vec<Mutex<postgres::Client>>,
    config: postgres::Config,
    /// One connection per lock name, which holds the advisory lock while it is taken.
    locks: Arc<LockClients>,
    /// Where it is, without a password (for messages).
    shown: String,
}

/// The URL with any password replaced, for messages and logs.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or_default();
                let hidden = if userinfo.contains(':') { ":***" } else { "" };
                format!("{scheme}://{user}{hidden}@{host}")
            }
            None => url.to_string(),
        },
        None => "(not a postgres:// URL)".into(),
    }
}

fn db_error(shown: &str, e: postgres::Error) -> StoreError {
    // The server's message names tables and constraints, never values: ours are bytes
    // passed as parameters.
    match e.as_db_error() {
        // Shutting down, or too many connections: the server is there but not serving.
        Some(db)
            if db.code().code().starts_with("57P")
                || db.code().code().starts_with("08")
                || db.code().code() == "53300" =>
        {
            StoreError::Unavailable(format!(
                "PostgreSQL at {shown}: {} ({})",
                db.message(),
                db.code().code()
            ))
        }
        Some(db) => StoreError::Backend(format!(
            "PostgreSQL at {shown}: {} ({})",
            db.message(),
            db.code().code()
        )),
        None if e.is_closed() => StoreError::Unavailable(format!(
            "PostgreSQL at {shown}: the connection to the database was lost"
        )),
        None => StoreError::Unavailable(format!("PostgreSQL at {shown}: {e}")),
    }
}

/// Runs `f` where the blocking client may run: here, or, when called from a thread of an
/// async runtime (a server's handler), on a thread of its own for the length of the call.
/// The blocking client drives a runtime of its own, which cannot start inside another.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// Drops lock `name`'s connection: closing it releases whatever it held.
fn forget(locks: &LockClients, name: i32) {
    locks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&name);
}

/// The smallest key greater than every key starting with `prefix`; `None` if there is none
/// (the prefix is empty or all 0xFF).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl PgStore {
    /// Connects (`connections` clients) and creates the table if it is missing.
    pub fn connect(url: &str, connections: usize) -> Result<PgStore, StoreError> {
        let shown = redact(url);
        let config: postgres::Config = url.parse().map_err(|_| {
            StoreError::Backend(format!(
                "{shown} is not a PostgreSQL connection URL (postgres://USER@HOST:PORT/DB)"
            ))
        })?;
        let mut pool = Vec::with_capacity(connections.max(1));
        for _ in 0..connections.max(1) {
            let client = config.connect(postgres::NoTls).map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot reach PostgreSQL at {shown}: {}",
                    e.as_db_error()
                        .map(|d| d.message().to_string())
                        .unwrap_or_else(|| e.to_string())
                ))
            })?;
            pool.push(Mutex::new(client));
        }
        let store = PgStore {
            pool,
            config,
            locks: Arc::new(Mutex::new(HashMap::new())),
            shown,
        };
        store.with(|c| c.batch_execute(SCHEMA))?;
        Ok(store)
    }

    /// Runs `f` on a free connection (the first one not in use, else waits for one).
    fn with<T: Send>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<T, postgres::Error> + Send,
    ) -> Result<T, StoreError> {
        off_runtime(|| {
            for m in &self.pool {
                if let Ok(mut c) = m.try_lock() {
                    return f(&mut c).map_err(|e| db_error(&self.shown, e));
                }
            }
            let mut c = self.pool[0].lock().unwrap_or_else(|p| p.into_inner());
            f(&mut c).map_err(|e| db_error(&self.shown, e))
        })
    }

    /// The connection that holds lock `name`, made when first needed (and again after a
    /// failure).
    fn lock_client(&self, name: i32) -> Result<Arc<Mutex<postgres::Client>>, StoreError> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = locks.get(&name) {
            return Ok(c.clone());
        }
        let client = off_runtime(|| self.config.connect(postgres::NoTls))
            .map_err(|e| db_error(&self.shown, e))?;
        let client = Arc::new(Mutex::new(client));
        locks.insert(name, client.clone());
        Ok(client)
    }

    fn forget_lock_client(&self, name: i32) {
        forget(&self.locks, name);
    }

    fn page(
        &self,
        ks: Keyspace,
        from: &[u8],
        inclusive: bool,
        to: Option<&[u8]>,
    ) -> Result<Vec<Entry>, StoreError> {
        let ks = i16::from(ks.id());
        let op = if inclusive { ">=" } else { ">" };
        self.with(|c| {
            let rows = match to {
                Some(to) => c.query(
                    &format!("SELECT k, v FROM steward_kv WHERE ks = $1 AND k {op} $2 AND k < $3 ORDER BY k LIMIT $4"),
                    &[&ks, &from, &to, &PAGE],
                )?,
                None => c.query(
                    &format!("SELECT k, v FROM steward_kv WHERE ks = $1 AND k {op} $2 ORDER BY k LIMIT $3"),
                    &[&ks, &from, &PAGE],
                )?,
            };
            Ok(rows.into_iter().map(|r| (r.get::<_, Vec<u8>>(0), r.get::<_, Vec<u8>>(1))).collect())
        })
    }

    fn scan(&self, ks: Keyspace, from: Vec<u8>, to: Option<Vec<u8>>) -> EntryIter<'_> {
        Box::new(Scan {
            store: self,
            ks,
            next: from,
            inclusive: true,
            to,
            buffer: VecDeque::new(),
            done: false,
        })
    }
}

/// A scan, one page at a time.
struct Scan<'a> {
    store: &'a PgStore,
    ks: Keyspace,
    next: Vec<u8>,
    inclusive: bool,
    to: Option<Vec<u8>>,
    buffer: VecDeque<Entry>,
    done: bool,
}

impl Iterator for Scan<'_> {
    type Item = Result<Entry, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buffer.is_empty() && !self.done {
            match self
                .store
                .page(self.ks, &self.next, self.inclusive, self.to.as_deref())
            {
                Ok(rows) => {
                    self.done = (rows.len() as i64) < PAGE;
                    if let Some((k, _)) = rows.last() {
                        self.next = k.clone();
                        self.inclusive = false;
                    }
                    self.buffer.extend(rows);
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        self.buffer.pop_front().map(Ok)
    }
}

impl Store for PgStore {
    fn get(&self, ks: Keyspace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let ks = i16::from(ks.id());
        self.with(|c| {
            Ok(c.query_opt(
                "SELECT v FROM steward_kv WHERE ks = $1 AND k = $2",
                &[&ks, &key],
            )?
            .map(|r| r.get::<_, Vec<u8>>(0)))
        })
    }

    fn scan_prefix(&self, ks: Keyspace, prefix: &[u8]) -> EntryIter<'_> {
        self.scan(ks, prefix.to_vec(), prefix_end(prefix))
    }

    fn scan_from(&self, ks: Keyspace, start: &[u8]) -> EntryIter<'_> {
        self.scan(ks, start.to_vec(), None)
    }

    fn last_with_prefix(&self, ks: Keyspace, prefix: &[u8]) -> Result<Option<Entry>, StoreError> {
        let id = i16::from(ks.id());
        let end = prefix_end(prefix);
        self.with(|c| {
            let row = match &end {
                Some(end) => c.query_opt(
                    "SELECT k, v FROM steward_kv WHERE ks = $1 AND k >= $2 AND k < $3 ORDER BY k DESC LIMIT 1",
                    &[&id, &prefix, end],
                )?,
                None => c.query_opt(
                    "SELECT k, v FROM steward_kv WHERE ks = $1 AND k >= $2 ORDER BY k DESC LIMIT 1",
                    &[&id, &prefix],
                )?,
            };
            Ok(row.map(|r| (r.get::<_, Vec<u8>>(0), r.get::<_, Vec<u8>>(1))))
        })
    }

    fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        // The last write to a key is the one that counts: one statement for the puts and one
        // for the deletes, in one transaction.
        let mut last: HashMap<(u8, Vec<u8>), Option<Vec<u8>>> = HashMap::new();
        let mut order = Vec::new();
        for (ks, key, value) in batch.into_ops() {
            let k = (ks.id(), key);
            if !last.contains_key(&k) {
                order.push(k.clone());
            }
            last.insert(k, value);
        }
        let (mut put_ks, mut put_k, mut put_v) = (Vec::new(), Vec::new(), Vec::new());
        let (mut del_ks, mut del_k) = (Vec::new(), Vec::new());
        for k in order {
            let value = last.remove(&k).flatten();
            match value {
                Some(v) => {
                    put_ks.push(i16::from(k.0));
                    put_k.push(k.1);
                    put_v.push(v);
                }
                None => {
                    del_ks.push(i16::from(k.0));
                    del_k.push(k.1);
                }
            }
        }
        self.with(|c| {
            let mut tx = c.transaction()?;
            if !del_k.is_empty() {
                tx.execute(
                    "DELETE FROM steward_kv d USING unnest($1::smallint[], $2::bytea[]) AS x(ks, k) WHERE d.ks = x.ks AND d.k = x.k",
                    &[&del_ks, &del_k],
                )?;
            }
            if !put_k.is_empty() {
                tx.execute(
                    "INSERT INTO steward_kv (ks, k, v) SELECT * FROM unnest($1::smallint[], $2::bytea[], $3::bytea[]) ON CONFLICT (ks, k) DO UPDATE SET v = EXCLUDED.v",
                    &[&put_ks, &put_k, &put_v],
                )?;
            }
            tx.commit()
        })
    }

    fn flush(&self) -> Result<(), StoreError> {
        // A committed transaction is durable (synchronous_commit, PostgreSQL's default).
        Ok(())
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.with(|c| {
            let row = c.query_one("SELECT pg_total_relation_size('steward_kv')", &[])?;
            Ok(row.get::<_, i64>(0).max(0) as u64)
        })
    }

    fn shared(&self) -> bool {
        true
    }

    fn allocate(&self, name: &[u8], n: u64) -> Result<u64, StoreError> {
        let n =
            i64::try_from(n).map_err(|_| StoreError::Backend("counter step too large".into()))?;
        self.with(|c| {
            let row = c.query_one(
                "INSERT INTO steward_counters (name, v) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET v = steward_counters.v + EXCLUDED.v RETURNING v",
                &[&name, &n],
            )?;
            Ok((row.get::<_, i64>(0) - n) as u64)
        })
    }

    fn lock_across(&self, name: CrossLockName) -> Result<Option<CrossLock>, StoreError> {
        let key = name.number();
        let client = self.lock_client(key)?;
        let taken = off_runtime(|| {
            client
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .execute("SELECT pg_advisory_lock($1, $2)", &[&LOCK_CLASS, &key])
        });
        if let Err(e) = taken {
            self.forget_lock_client(key);
            return Err(db_error(&self.shown, e));
        }
        let locks = self.locks.clone();
        Ok(Some(CrossLock::new(move || {
            let released = off_runtime(|| {
                client
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .execute("SELECT pg_advisory_unlock($1, $2)", &[&LOCK_CLASS, &key])
            });
            if released.is_err() {
                // Closing the session releases its advisory locks: the connection goes once
                // the last handle to it does.
                forget(&locks, key);
            }
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_and_redaction() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF, 0xFF]), None);
        assert_eq!(prefix_end(b""), None);
        assert_eq!(
            redact("postgres://ada:s3cret@db:5432/steward"),
            "postgres://ada:***@db:5432/steward"
        );
        assert_eq!(
            redact("postgres://ada@db/steward"),
            "postgres://ada@db/steward"
        );
        assert!(!redact("postgres://a:b:c@h/d").contains('b'));
    }
}
