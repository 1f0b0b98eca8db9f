//! Encrypted, consistent backups of a whole data directory.
//!
//! ```text
//! "STEWARD-BACKUP-1\n"
//! u32 len, header JSON   {format, created, seal, salt}
//! u32 len, sealed master secret (the age file, as sealed at init)
//! chunk*                 u32 len, AES-256-GCM(64 KiB of body); nonce = 0000 || u64 counter;
//!                        additional data "more" or "last" so truncation is detected
//! body   = item* end
//! item   = 1 ks(1) u32 klen key u32 vlen value      one store entry
//!        | 2 u32 len bytes                          next piece of the data-key slot file
//!        | 3 u16 plen path u32 len bytes            one other file (policies, config)
//! end    = 0xFF
//! ```
//! The body key is derived from the master secret and a random salt, so restoring needs the
//! same identity file or passphrase as the directory itself. Every field value inside is
//! already encrypted under its subject's data key: an erased subject stays unreadable in any
//! backup because its key was shredded, not copied.

use domain::hex;
use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::keys::{KeyRing, KEY_LEN};
use crate::seal::{self, SealInfo, Unlock};
use crate::store::{keyspaces, Batch, SledOptions, SledStore, Store};
use crate::vault::{layout, Vault};

const MAGIC: &[u8] = b"STEWARD-BACKUP-1\n";
const CHUNK: usize = 64 * 1024;
const ITEM_ENTRY: u8 = 1;
const ITEM_SLOTS: u8 = 2;
const ITEM_FILE: u8 = 3;
const ITEM_END: u8 = 0xFF;

#[derive(Serialize, Deserialize)]
struct BackupHeader {
    format: u32,
    created: String,
    seal: SealInfo,
    salt: String,
}

/// What a backup or restore covered.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    /// Store entries.
    pub entries: u64,
    /// Data-key slots.
    pub key_slots: u64,
    /// Other files (policies, configuration).
    pub files: u64,
    /// Bytes written or read.
    pub bytes: u64,
}

fn body_key(keys: &KeyRing, salt_hex: &str) -> LessSafeKey {
    let bytes = keys.derive_bytes(&format!("steward/v1/backup/{salt_hex}"), KEY_LEN);
    LessSafeKey::new(UnboundKey::new(&aead::AES_256_GCM, &bytes).expect("32-byte key"))
}

fn chunk_nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

struct ChunkWriter<W: Write> {
    out: W,
    key: LessSafeKey,
    buf: Vec<u8>,
    counter: u64,
    written: u64,
}

impl<W: Write> ChunkWriter<W> {
    fn seal_chunk(&mut self, last: bool) -> io::Result<()> {
        let ad: &[u8] = if last { b"last" } else { b"more" };
        let tag = self
            .key
            .seal_in_place_separate_tag(chunk_nonce(self.counter), Aad::from(ad), &mut self.buf)
            .map_err(|_| io::Error::other("sealing a backup chunk failed"))?;
        let len = (self.buf.len() + tag.as_ref().len()) as u32;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(&self.buf)?;
        self.out.write_all(tag.as_ref())?;
        self.written += 4 + u64::from(len);
        self.counter += 1;
        self.buf.clear();
        Ok(())
    }

    fn finish(mut self) -> io::Result<(W, u64)> {
        self.seal_chunk(true)?;
        self.out.flush()?;
        Ok((self.out, self.written))
    }
}

impl<W: Write> Write for ChunkWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.seal_chunk(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct ChunkReader<R: Read> {
    input: R,
    key: LessSafeKey,
    buf: Vec<u8>,
    pos: usize,
    counter: u64,
    done: bool,
}

impl<R: Read> ChunkReader<R> {
    /// Reads the next chunk, telling the final one apart by its additional data.
    fn next_chunk(&mut self) -> io::Result<bool> {
        let mut len = [0u8; 4];
        self.input
            .read_exact(&mut len)
            .map_err(|_| io::Error::new(io::ErrorKind::UnexpectedEof, "the backup is truncated"))?;
        let len = u32::from_le_bytes(len) as usize;
        if !(16..=CHUNK + 16).contains(&len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the backup is damaged",
            ));
        }
        let mut ct = vec![0u8; len];
        self.input
            .read_exact(&mut ct)
            .map_err(|_| io::Error::new(io::ErrorKind::UnexpectedEof, "the backup is truncated"))?;
        for (ad, last) in [(&b"more"[..], false), (&b"last"[..], true)] {
            let mut attempt = ct.clone();
            if let Ok(p) =
                self.key
                    .open_in_place(chunk_nonce(self.counter), Aad::from(ad), &mut attempt)
            {
                let n = p.len();
                attempt.truncate(n);
                self.buf = attempt;
                self.pos = 0;
                self.counter += 1;
                self.done = last;
                return Ok(true);
            }
        }
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the backup is damaged or was altered",
        ))
    }

    fn fill(&mut self, out: &mut [u8]) -> io::Result<()> {
        let mut filled = 0;
        while filled < out.len() {
            if self.pos == self.buf.len() {
                if self.done {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the backup ends early",
                    ));
                }
                self.next_chunk()?;
                continue;
            }
            let n = (out.len() - filled).min(self.buf.len() - self.pos);
            out[filled..filled + n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
            self.pos += n;
            filled += n;
        }
        Ok(())
    }

    fn u8(&mut self) -> io::Result<u8> {
        let mut b = [0u8; 1];
        self.fill(&mut b)?;
        Ok(b[0])
    }

    fn u16(&mut self) -> io::Result<u16> {
        let mut b = [0u8; 2];
        self.fill(&mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    fn u32(&mut self) -> io::Result<u32> {
        let mut b = [0u8; 4];
        self.fill(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn bytes(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut v = vec![0u8; n];
        self.fill(&mut v)?;
        Ok(v)
    }
}

/// Files of the data directory that a backup carries besides the store and the slots.
fn extra_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in
            fs::read_dir(&d).map_err(|e| Error::io(format!("reading {}", d.display()), e))?
        {
            let entry = entry.map_err(|e| Error::io(format!("reading {}", d.display()), e))?;
            let path = entry.path();
            let rel = path.strip_prefix(dir).expect("under dir").to_path_buf();
            let skip = rel.starts_with(layout::STORE)
                || rel.starts_with("keys")
                || rel == Path::new(layout::LOCK)
                || rel == Path::new(layout::OWNER);
            if skip {
                continue;
            }
            let ft = entry
                .file_type()
                .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            if ft.is_dir() {
                stack.push(path);
            } else if ft.is_file() {
                out.push(rel);
            }
        }
    }
    out.sort();
    Ok(out)
}

impl Vault {
    /// Writes an encrypted snapshot of the whole data directory. Writers wait while it runs,
    /// so the snapshot is consistent; readers do not.
    pub fn backup(&self, out: &mut dyn Write) -> Result<BackupReport> {
        let _exclusive = self.gate_exclusive();
        self.flush()?;
        let mut salt = [0u8; 16];
        SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| Error::Random)?;
        let header = BackupHeader {
            format: 1,
            created: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            seal: self.seal_info().clone(),
            salt: hex(&salt),
        };
        let header_json = serde_json::to_vec(&header).expect("json");
        let sealed = self.sealed_master()?;
        let io_err = |e: io::Error| Error::io("writing the backup", e);
        out.write_all(MAGIC).map_err(io_err)?;
        out.write_all(&(header_json.len() as u32).to_le_bytes())
            .map_err(io_err)?;
        out.write_all(&header_json).map_err(io_err)?;
        out.write_all(&(sealed.len() as u32).to_le_bytes())
            .map_err(io_err)?;
        out.write_all(&sealed).map_err(io_err)?;
        let mut w = ChunkWriter {
            out,
            key: body_key(self.keys(), &header.salt),
            buf: Vec::with_capacity(CHUNK),
            counter: 0,
            written: 0,
        };
        let mut report = BackupReport {
            entries: 0,
            key_slots: 0,
            files: 0,
            bytes: 0,
        };
        for ks in keyspaces::ALL {
            for entry in self.store().scan_prefix(*ks, &[]) {
                let (k, v) = entry?;
                w.write_all(&[ITEM_ENTRY, ks.id()]).map_err(io_err)?;
                w.write_all(&(k.len() as u32).to_le_bytes())
                    .map_err(io_err)?;
                w.write_all(&k).map_err(io_err)?;
                w.write_all(&(v.len() as u32).to_le_bytes())
                    .map_err(io_err)?;
                w.write_all(&v).map_err(io_err)?;
                report.entries += 1;
            }
        }
        let n_slots = self.slots().len()?;
        let per_piece = 4096u64;
        let mut first = 0;
        while first < n_slots {
            let count = per_piece.min(n_slots - first);
            let run = self.slots().read_run(first, count)?;
            w.write_all(&[ITEM_SLOTS]).map_err(io_err)?;
            w.write_all(&(run.len() as u32).to_le_bytes())
                .map_err(io_err)?;
            w.write_all(&run).map_err(io_err)?;
            first += count;
        }
        report.key_slots = n_slots;
        for listed in extra_files(self.dir())? {
            // Audit segments may be sealed while this runs: `read_file` reads the sealed form
            // of one that went.
            let (path, bytes) = crate::segments::read_file(&self.dir().join(&listed))?;
            let rel = path
                .strip_prefix(self.dir())
                .unwrap_or(&listed)
                .to_path_buf();
            let name = rel.to_string_lossy().into_owned();
            w.write_all(&[ITEM_FILE]).map_err(io_err)?;
            w.write_all(&(name.len() as u16).to_le_bytes())
                .map_err(io_err)?;
            w.write_all(name.as_bytes()).map_err(io_err)?;
            w.write_all(&(bytes.len() as u32).to_le_bytes())
                .map_err(io_err)?;
            w.write_all(&bytes).map_err(io_err)?;
            report.files += 1;
        }
        w.write_all(&[ITEM_END]).map_err(io_err)?;
        let (_, written) = w.finish().map_err(io_err)?;
        report.bytes = written;
        Ok(report)
    }

    /// Restores a backup into `dir`, which must be empty or missing. On any error the
    /// partly restored directory is removed: nothing half-written is left.
    pub fn restore(input: &mut dyn Read, dir: &Path, unlock: &Unlock) -> Result<BackupReport> {
        let empty = match fs::read_dir(dir) {
            Ok(mut e) => e.next().is_none(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => true,
            Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
        };
        if !empty {
            return Err(Error::AlreadyExists(dir.to_path_buf()));
        }
        let result = restore_into(input, dir, unlock);
        if result.is_err() {
            let _ = fs::remove_dir_all(dir);
        }
        result
    }
}

/// Largest clear header and sealed master a backup may declare: far above what `backup`
/// writes, low enough that a damaged length cannot make restore allocate gigabytes.
const MAX_HEADER: usize = 1 << 20;
const MAX_SEALED: usize = 64 * 1024;

/// Reads one length-prefixed frame (u32 little-endian length, then the bytes).
fn read_frame(input: &mut dyn Read, max: usize) -> Result<Vec<u8>> {
    let truncated = || Error::Backup("the backup is truncated".into());
    let mut len = [0u8; 4];
    input.read_exact(&mut len).map_err(|_| truncated())?;
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        return Err(Error::Backup("the backup is damaged".into()));
    }
    let mut frame = vec![0u8; len];
    input.read_exact(&mut frame).map_err(|_| truncated())?;
    Ok(frame)
}

fn restore_into(input: &mut dyn Read, dir: &Path, unlock: &Unlock) -> Result<BackupReport> {
    let bad = |what: &str| Error::Backup(what.to_string());
    let mut magic = vec![0u8; MAGIC.len()];
    input
        .read_exact(&mut magic)
        .map_err(|_| bad("not a Steward backup file"))?;
    if magic != MAGIC {
        return Err(bad("not a Steward backup file"));
    }
    let header = read_frame(input, MAX_HEADER)?;
    let header: BackupHeader =
        serde_json::from_slice(&header).map_err(|_| bad("the backup header is damaged"))?;
    let sealed = read_frame(input, MAX_SEALED)?;
    let master = seal::unseal(&sealed, unlock)?;
    let keys = KeyRing::new(&master);
    let mut r = ChunkReader {
        input,
        key: body_key(&keys, &header.salt),
        buf: Vec::new(),
        pos: 0,
        counter: 0,
        done: false,
    };
    fs::create_dir_all(dir.join("keys"))
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    seal::write_private(&dir.join(layout::MASTER), &sealed)?;
    let seal_toml = toml::to_string(&header.seal).map_err(|e| Error::Corrupt {
        what: e.to_string(),
    })?;
    seal::write_private(&dir.join(layout::SEAL), seal_toml.as_bytes())?;
    let store = SledStore::open(&dir.join(layout::STORE), &SledOptions::default())?;
    let mut slots_file = fs::File::create(dir.join(layout::SLOTS))
        .map_err(|e| Error::io("creating the data-key slot file", e))?;
    let mut report = BackupReport {
        entries: 0,
        key_slots: 0,
        files: 0,
        bytes: 0,
    };
    let mut batch = Batch::new();
    let rd = |e: io::Error| Error::Backup(e.to_string());
    loop {
        match r.u8().map_err(rd)? {
            ITEM_ENTRY => {
                let ks = keyspaces::by_id(r.u8().map_err(rd)?)
                    .ok_or_else(|| bad("unknown keyspace in backup"))?;
                let klen = r.u32().map_err(rd)? as usize;
                let k = r.bytes(klen).map_err(rd)?;
                let vlen = r.u32().map_err(rd)? as usize;
                let v = r.bytes(vlen).map_err(rd)?;
                batch.put(ks, k, v);
                report.entries += 1;
                if batch.len() >= 10_000 {
                    store.apply(std::mem::take(&mut batch))?;
                }
            }
            ITEM_SLOTS => {
                let n = r.u32().map_err(rd)? as usize;
                let bytes = r.bytes(n).map_err(rd)?;
                slots_file
                    .write_all(&bytes)
                    .map_err(|e| Error::io("writing data-key slots", e))?;
                report.key_slots += (n / crate::slots::SLOT) as u64;
            }
            ITEM_FILE => {
                let plen = r.u16().map_err(rd)? as usize;
                let name = String::from_utf8(r.bytes(plen).map_err(rd)?)
                    .map_err(|_| bad("bad file name in backup"))?;
                let rel = PathBuf::from(&name);
                if rel.is_absolute()
                    || rel
                        .components()
                        .any(|c| matches!(c, std::path::Component::ParentDir))
                {
                    return Err(bad(
                        "a file in the backup points outside the data directory",
                    ));
                }
                let n = r.u32().map_err(rd)? as usize;
                let bytes = r.bytes(n).map_err(rd)?;
                let path = dir.join(&rel);
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent)
                        .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
                }
                fs::write(&path, bytes)
                    .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
                report.files += 1;
            }
            ITEM_END => break,
            _ => return Err(bad("the backup body is damaged")),
        }
    }
    if r.pos == r.buf.len() && !r.done {
        // The end marker filled the last full chunk; the final chunk follows, empty.
        r.next_chunk().map_err(rd)?;
    }
    if !r.done || r.pos != r.buf.len() {
        return Err(bad("the backup has data after its end marker"));
    }
    store.apply(batch)?;
    store.flush()?;
    slots_file
        .sync_all()
        .map_err(|e| Error::io("syncing data-key slots", e))?;
    Ok(report)
}
