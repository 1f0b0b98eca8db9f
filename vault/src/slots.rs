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

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

use crate::error::{Error, Result};

/// Bytes in one half-slot.
pub(crate) const HALF: usize = 64;
/// Bytes in one slot.
pub(crate) const SLOT: usize = 16 + 2 * HALF;

/// The slot file, opened for reading and writing.
pub(crate) struct Slots {
    file: File,
    next: Mutex<u64>,
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
        Ok(Slots {
            file,
            next: Mutex::new(len.div_ceil(SLOT as u64)),
        })
    }

    /// Number of slots ever allocated (erased ones included).
    pub(crate) fn len(&self) -> u64 {
        *self.next.lock().expect("slot counter")
    }

    /// Appends slots (each `SLOT` bytes, concatenated) and syncs them; returns the first
    /// slot number.
    pub(crate) fn append(&self, slots: &[u8]) -> Result<u64> {
        debug_assert_eq!(slots.len() % SLOT, 0);
        let mut next = self.next.lock().expect("slot counter");
        let first = *next;
        self.file
            .write_all_at(slots, first * SLOT as u64)
            .and_then(|_| self.file.sync_data())
            .map_err(|e| Error::io("writing data-key slots", e))?;
        *next += (slots.len() / SLOT) as u64;
        Ok(first)
    }

    /// Reads one slot.
    pub(crate) fn read(&self, slot: u64) -> Result<[u8; SLOT]> {
        let mut buf = [0u8; SLOT];
        self.file
            .read_exact_at(&mut buf, slot * SLOT as u64)
            .map_err(|e| Error::io(format!("reading data-key slot {slot}"), e))?;
        Ok(buf)
    }

    /// Reads a run of slots.
    pub(crate) fn read_run(&self, first: u64, count: u64) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; count as usize * SLOT];
        self.file
            .read_exact_at(&mut buf, first * SLOT as u64)
            .map_err(|e| Error::io(format!("reading data-key slots from {first}"), e))?;
        Ok(buf)
    }

    /// Overwrites one half of a slot (no sync; call [`Slots::sync`]).
    pub(crate) fn write_half(&self, slot: u64, half: usize, bytes: &[u8; HALF]) -> Result<()> {
        let offset = slot * SLOT as u64 + 16 + (half * HALF) as u64;
        self.file
            .write_all_at(bytes, offset)
            .map_err(|e| Error::io(format!("writing data-key slot {slot}"), e))
    }

    /// Overwrites a whole slot with zeros and syncs: the data key is gone.
    pub(crate) fn shred(&self, slot: u64) -> Result<()> {
        self.file
            .write_all_at(&[0u8; SLOT], slot * SLOT as u64)
            .and_then(|_| self.file.sync_data())
            .map_err(|e| Error::io(format!("shredding data-key slot {slot}"), e))
    }

    /// Overwrites several slots with zeros and syncs once.
    pub(crate) fn shred_all(&self, slots: &[u64]) -> Result<()> {
        for &slot in slots {
            self.file
                .write_all_at(&[0u8; SLOT], slot * SLOT as u64)
                .map_err(|e| Error::io(format!("shredding data-key slot {slot}"), e))?;
        }
        self.sync()
    }

    /// Makes earlier writes durable.
    pub(crate) fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io("syncing data-key slots", e))
    }
}
