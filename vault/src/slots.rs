//! The data-key slot file: where every subject's wrapped data key lives.
//!
//! Wrapped DEKs are deliberately not kept in sled. sled is log-structured: a deleted value
//! stays in its log segments until they are reclaimed, so a DEK deleted there could be read
//! back from the raw files, with the master secret, long after the erasure. Here each subject
//! owns a fixed-size slot in a plain file; erasure overwrites the slot with zeros in place and
//! syncs it. (Copy-on-write file systems and SSD wear levelling may still keep old blocks; the
//! ARCHITECTURE notes say so.)
//!
//! A slot is `subject id (16) | half A (64) | half B (64)`. A half is
//! `KEK version (4, LE) | nonce (12) | wrapped DEK (32) | GCM tag (16)`, version 0 = empty.
//! Rotation writes the new wrapping into the half not in use, so a crash mid-write always
//! leaves one good half.
//!
//! A store shared by several processes (PostgreSQL) keeps the slots in keyspace `dek_slots`
//! instead (slot number → the same 144 bytes), numbered by a counter of the store, so every
//! server allocates from one sequence; erasure overwrites the row with zeros. There the
//! database's own copies (write-ahead log, replicas, base backups) keep old rows: what makes
//! such a copy useless is the key-encryption key, which lives only in the data directory.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::store::{keyspaces as ks, Batch, Store};

/// Bytes in one half-slot.
pub(crate) const HALF: usize = 64;
/// Bytes in one slot.
pub(crate) const SLOT: usize = 16 + 2 * HALF;

/// The store counter that numbers slots kept in a shared store.
const COUNTER: &[u8] = b"dek-slots";

/// Where the slots are.
pub(crate) enum Slots {
    /// The slot file of the data directory.
    File { file: File, next: Mutex<u64> },
    /// Rows of a store that several processes share.
    Store(Arc<dyn Store>),
}

impl Slots {
    pub(crate) fn open(path: &Path) -> Result<Slots> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?
            .len();
        Ok(Slots::File {
            file,
            next: Mutex::new(len.div_ceil(SLOT as u64)),
        })
    }

    /// Slots kept in `store` (a store shared by several processes).
    pub(crate) fn in_store(store: Arc<dyn Store>) -> Slots {
        Slots::Store(store)
    }

    /// Number of slots ever allocated (erased ones included).
    pub(crate) fn len(&self) -> Result<u64> {
        match self {
            Slots::File { next, .. } => Ok(*next.lock().expect("slot counter")),
            Slots::Store(store) => Ok(store.allocate(COUNTER, 0)?),
        }
    }

    /// Appends slots (each `SLOT` bytes, concatenated) and makes them durable; returns the
    /// first slot number.
    pub(crate) fn append(&self, slots: &[u8]) -> Result<u64> {
        debug_assert_eq!(slots.len() % SLOT, 0);
        let n = (slots.len() / SLOT) as u64;
        match self {
            Slots::File { file, next } => {
                let mut next = next.lock().expect("slot counter");
                let first = *next;
                file.write_all_at(slots, first * SLOT as u64)
                    .and_then(|_| file.sync_data())
                    .map_err(|e| Error::io("writing data-key slots", e))?;
                *next += n;
                Ok(first)
            }
            Slots::Store(store) => {
                let first = store.allocate(COUNTER, n)?;
                let mut batch = Batch::new();
                for (i, slot) in slots.chunks_exact(SLOT).enumerate() {
                    batch.put(
                        ks::DEK_SLOTS,
                        (first + i as u64).to_be_bytes().to_vec(),
                        slot,
                    );
                }
                store.apply(batch)?;
                Ok(first)
            }
        }
    }

    /// Reads one slot; `None` when it was never allocated.
    pub(crate) fn get(&self, slot: u64) -> Result<Option<[u8; SLOT]>> {
        match self {
            Slots::File { file, next } => {
                if slot >= *next.lock().expect("slot counter") {
                    return Ok(None);
                }
                let mut buf = [0u8; SLOT];
                file.read_exact_at(&mut buf, slot * SLOT as u64)
                    .map_err(|e| Error::io(format!("reading data-key slot {slot}"), e))?;
                Ok(Some(buf))
            }
            Slots::Store(store) => match store.get(ks::DEK_SLOTS, &slot.to_be_bytes())? {
                None => Ok(None),
                Some(v) => Ok(Some(v.as_slice().try_into().map_err(|_| {
                    Error::Corrupt {
                        what: format!("data-key slot {slot}"),
                    }
                })?)),
            },
        }
    }

    /// Reads one slot that must exist.
    pub(crate) fn read(&self, slot: u64) -> Result<[u8; SLOT]> {
        self.get(slot)?.ok_or_else(|| Error::Corrupt {
            what: format!("data-key slot {slot} is missing"),
        })
    }

    /// Reads a run of slots (a slot missing from a store reads as zeros: erased).
    pub(crate) fn read_run(&self, first: u64, count: u64) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; count as usize * SLOT];
        match self {
            Slots::File { file, .. } => {
                file.read_exact_at(&mut buf, first * SLOT as u64)
                    .map_err(|e| Error::io(format!("reading data-key slots from {first}"), e))?;
            }
            Slots::Store(store) => {
                for entry in store.scan_from(ks::DEK_SLOTS, &first.to_be_bytes()) {
                    let (k, v) = entry?;
                    let no = <[u8; 8]>::try_from(k.as_slice()).map_or(u64::MAX, u64::from_be_bytes);
                    if no >= first + count {
                        break;
                    }
                    let at = (no - first) as usize * SLOT;
                    if v.len() == SLOT {
                        buf[at..at + SLOT].copy_from_slice(&v);
                    }
                }
            }
        }
        Ok(buf)
    }

    /// Overwrites one half of a slot (no sync; call [`Slots::sync`]).
    pub(crate) fn write_half(&self, slot: u64, half: usize, bytes: &[u8; HALF]) -> Result<()> {
        match self {
            Slots::File { file, .. } => {
                let offset = slot * SLOT as u64 + 16 + (half * HALF) as u64;
                file.write_all_at(bytes, offset)
                    .map_err(|e| Error::io(format!("writing data-key slot {slot}"), e))
            }
            Slots::Store(store) => {
                let mut row = self.read(slot)?;
                row[16 + half * HALF..16 + (half + 1) * HALF].copy_from_slice(bytes);
                store.put(ks::DEK_SLOTS, &slot.to_be_bytes(), &row)?;
                Ok(())
            }
        }
    }

    /// Overwrites a whole slot with zeros and makes it durable: the data key is gone.
    pub(crate) fn shred(&self, slot: u64) -> Result<()> {
        self.shred_all(&[slot])
    }

    /// Overwrites several slots with zeros and makes them durable at once.
    pub(crate) fn shred_all(&self, slots: &[u64]) -> Result<()> {
        match self {
            Slots::File { file, .. } => {
                for &slot in slots {
                    file.write_all_at(&[0u8; SLOT], slot * SLOT as u64)
                        .map_err(|e| Error::io(format!("shredding data-key slot {slot}"), e))?;
                }
                self.sync()
            }
            Slots::Store(store) => {
                let mut batch = Batch::new();
                for &slot in slots {
                    batch.put(
                        ks::DEK_SLOTS,
                        slot.to_be_bytes().to_vec(),
                        [0u8; SLOT].to_vec(),
                    );
                }
                store.apply(batch)?;
                Ok(())
            }
        }
    }

    /// Makes earlier writes durable.
    pub(crate) fn sync(&self) -> Result<()> {
        match self {
            Slots::File { file, .. } => file
                .sync_data()
                .map_err(|e| Error::io("syncing data-key slots", e)),
            Slots::Store(_) => Ok(()),
        }
    }
}
