//! Append-only segment files: a log of opaque frames kept outside the store, for data that
//! is only ever appended and read in order (the audit log).
//!
//! ```text
//! DIR/NNNNNNNNNNNNNNNNNNNN.open   the active segment: frame*
//! frame = u32 len (LE) | u32 CRC-32 of payload (LE) | payload
//! DIR/NNNNNNNNNNNNNNNNNNNN.seg    a sealed segment:
//!         "STEWARD-SEGMENT-1\n" | u32 meta len | meta | u64 raw len | u32 CRC-32 of packed
//!         | packed = LZ4 block of the active file's bytes (frame*)
//! ```
//! `NNN` is a number the caller chooses when sealing (the audit log uses the sequence number
//! of the segment's first event), so names sort in log order. An append is one `write` to
//! the active file; [`SegmentLog::sync`] makes everything appended so far durable. Sealing
//! compresses the active file into a `.seg` file (written aside, synced, renamed) and starts
//! a new active file, so a crash leaves either the old active file or the sealed one, never a
//! half-written segment. A torn last frame (a crash in the middle of a write) is cut off when
//! the log is opened.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

use crate::error::{Error, Result};

const MAGIC: &[u8] = b"STEWARD-SEGMENT-1\n";
const OPEN_EXT: &str = "open";
const SEALED_EXT: &str = "seg";
/// Largest frame accepted (a block of audit events is a few kilobytes; an import's block of
/// ten thousand events about 4 MB).
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

/// What appends do. Only tests and benchmarks change it.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendMode {
    /// Write to the file.
    Write = 0,
    /// Fail every append and sync with an I/O error (a full or broken disk).
    Fail = 1,
    /// Accept appends and keep nothing (benchmarks measuring what the write costs).
    Discard = 2,
}

struct Active {
    file: File,
    name: u64,
    len: u64,
    synced: u64,
    /// Files rotated out and not synced yet: the next sync covers them.
    retired: Vec<File>,
    /// A file was created since the directory was last synced.
    dir_dirty: bool,
}

/// One segment of a log, live or in an archive directory.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Its number (the file name).
    pub name: u64,
    /// Its file.
    pub path: PathBuf,
    /// True for a sealed (compressed, read-only) segment.
    pub sealed: bool,
    /// For the active segment: the length of its complete frames when it was listed.
    len: u64,
}

/// A segment's contents, read whole.
pub struct SegmentData {
    /// What the caller stored when sealing it (empty for the active segment).
    pub meta: Vec<u8>,
    /// Its frames, as written (`frame*`); iterate with [`frames`].
    pub raw: Vec<u8>,
}

/// An append-only log of frames in a directory.
pub struct SegmentLog {
    dir: PathBuf,
    active: Mutex<Active>,
    mode: AtomicU8,
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(context, e)
}

fn corrupt(what: String) -> Error {
    Error::Corrupt { what }
}

fn file_name(name: u64, ext: &str) -> String {
    format!("{name:020}.{ext}")
}

/// One frame as read: its payload, and whether it matches its checksum (a frame that does
/// not is still returned, so a reader can say which part of it was damaged).
pub struct RawFrame<'a> {
    /// The frame's bytes.
    pub payload: &'a [u8],
    /// True when the payload matches its CRC-32.
    pub intact: bool,
}

/// The frames of a segment's bytes, in order; an `Err` is the byte offset where a frame's
/// header or declared length no longer fits the data (nothing after it is returned).
pub fn frames(raw: &[u8]) -> impl Iterator<Item = std::result::Result<RawFrame<'_>, u64>> {
    let mut pos = 0usize;
    let mut done = false;
    std::iter::from_fn(move || {
        if done || pos >= raw.len() {
            return None;
        }
        let item = raw.get(pos..pos + 8).and_then(|h| {
            let len = u32::from_le_bytes(h[..4].try_into().ok()?) as usize;
            let crc = u32::from_le_bytes(h[4..].try_into().ok()?);
            let body = raw.get(pos + 8..(pos + 8).checked_add(len)?)?;
            Some((body, crc32fast::hash(body) == crc, 8 + len))
        });
        match item {
            Some((payload, intact, step)) => {
                pos += step;
                Some(Ok(RawFrame { payload, intact }))
            }
            None => {
                done = true;
                Some(Err(pos as u64))
            }
        }
    })
}

/// One frame's bytes (`length | CRC-32 | payload`), as a segment holds it and [`frames`]
/// reads it; refused above the largest frame a segment takes.
pub fn frame(payload: &[u8]) -> Result<Vec<u8>> {
    if payload.len() > MAX_FRAME {
        return Err(corrupt(format!("audit frame of {} bytes", payload.len())));
    }
    let mut frame = Vec::with_capacity(payload.len() + 8);
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    frame.extend_from_slice(payload);
    Ok(frame)
}

/// Where a torn end starts, if the bytes end in one: a frame cut short, or a last frame
/// that fails its checksum (a crash in the middle of a write). Damage before the last
/// frame is not a torn end, and is left for verification to report.
fn torn_end(raw: &[u8]) -> Option<u64> {
    let mut last_start = 0u64;
    let mut last_intact = true;
    let mut pos = 0u64;
    for f in frames(raw) {
        match f {
            Ok(f) => {
                last_start = pos;
                last_intact = f.intact;
                pos += 8 + f.payload.len() as u64;
            }
            Err(at) => return Some(at),
        }
    }
    (!last_intact).then_some(last_start)
}

/// The segments in `dir`, in log order: sealed ones, then the active one if there is one.
/// Works on a live log's directory and on an archive (sealed segments only).
pub fn list(dir: &Path) -> Result<Vec<Segment>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(format!("reading {}", dir.display()), e)),
    };
    for entry in entries {
        let entry = entry.map_err(io(format!("reading {}", dir.display())))?;
        let path = entry.path();
        let (Some(stem), Some(ext)) = (
            path.file_stem().and_then(|s| s.to_str()),
            path.extension().and_then(|s| s.to_str()),
        ) else {
            continue;
        };
        let Ok(name) = stem.parse::<u64>() else {
            continue;
        };
        let sealed = match ext {
            SEALED_EXT => true,
            OPEN_EXT => false,
            _ => continue,
        };
        let len = if sealed {
            0
        } else {
            entry
                .metadata()
                .map_err(io(format!("reading {}", path.display())))?
                .len()
        };
        out.push(Segment {
            name,
            path,
            sealed,
            len,
        });
    }
    out.sort_by_key(|s| (s.name, !s.sealed));
    Ok(out)
}

impl Segment {
    /// Reads the segment: a sealed one is checked against its checksum and unpacked.
    pub fn read(&self) -> Result<SegmentData> {
        let (path, mut bytes) = read_file(&self.path)?;
        if self.sealed || path != self.path {
            return unpack(&bytes, &path.display().to_string());
        }
        // An active file: only the frames that were complete when it was listed.
        bytes.truncate(self.len as usize);
        Ok(SegmentData {
            meta: Vec::new(),
            raw: bytes,
        })
    }

    /// What the caller stored in a sealed segment's header, read without unpacking it
    /// (empty for an active segment).
    pub fn meta(&self) -> Result<Vec<u8>> {
        if !self.sealed {
            return Ok(Vec::new());
        }
        let what = || format!("audit segment {} (header)", self.path.display());
        let mut f =
            File::open(&self.path).map_err(io(format!("opening {}", self.path.display())))?;
        let mut head = vec![0u8; MAGIC.len() + 4];
        f.read_exact(&mut head).map_err(|_| corrupt(what()))?;
        if !head.starts_with(MAGIC) {
            return Err(corrupt(what()));
        }
        let len = u32::from_le_bytes(head[MAGIC.len()..].try_into().expect("4")) as usize;
        if len > MAX_FRAME {
            return Err(corrupt(what()));
        }
        let mut meta = vec![0u8; len];
        f.read_exact(&mut meta).map_err(|_| corrupt(what()))?;
        Ok(meta)
    }
}

/// Reads a file of a segment directory whole. An active segment sealed since it was listed
/// is read in its sealed form: the sealed file is written before the active one is removed.
/// Returns the file actually read.
pub(crate) fn read_file(path: &Path) -> Result<(PathBuf, Vec<u8>)> {
    match fs::read(path) {
        Ok(bytes) => Ok((path.to_path_buf(), bytes)),
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && path.extension().is_some_and(|x| x == OPEN_EXT) =>
        {
            let sealed = path.with_extension(SEALED_EXT);
            match fs::read(&sealed) {
                Ok(bytes) => Ok((sealed, bytes)),
                Err(_) => Err(Error::io(format!("reading {}", path.display()), e)),
            }
        }
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// A sealed segment's bytes: checked against their checksum and unpacked. `name` names the
/// file in errors.
fn unpack(bytes: &[u8], name: &str) -> Result<SegmentData> {
    let what = || format!("audit segment {name}");
    let rest = bytes
        .strip_prefix(MAGIC)
        .ok_or_else(|| corrupt(format!("{} (not a segment file)", what())))?;
    let take = |rest: &[u8], n: usize| -> Result<(Vec<u8>, usize)> {
        rest.get(..n)
            .map(|b| (b.to_vec(), n))
            .ok_or_else(|| corrupt(format!("{} (cut short)", what())))
    };
    let (len, _) = take(rest, 4)?;
    let meta_len = u32::from_le_bytes(len.try_into().expect("4")) as usize;
    let rest = &rest[4..];
    let (meta, _) = take(rest, meta_len)?;
    let rest = &rest[meta_len..];
    let (raw_len, _) = take(rest, 8)?;
    let raw_len = u64::from_le_bytes(raw_len.try_into().expect("8")) as usize;
    let (crc, _) = take(&rest[8..], 4)?;
    let crc = u32::from_le_bytes(crc.try_into().expect("4"));
    let packed = &rest[12..];
    if crc32fast::hash(packed) != crc {
        return Err(corrupt(format!("{} (checksum)", what())));
    }
    // LZ4 expands at most about 255 times: a larger claimed size is damage, and is not
    // allocated.
    if raw_len > packed.len().saturating_mul(255).saturating_add(64) {
        return Err(corrupt(format!("{} (size)", what())));
    }
    let raw = lz4_flex::block::decompress(packed, raw_len)
        .map_err(|_| corrupt(format!("{} (compressed data)", what())))?;
    if raw.len() != raw_len {
        return Err(corrupt(format!("{} (size)", what())));
    }
    Ok(SegmentData { meta, raw })
}

/// Entry point of the `audit_block` fuzz target: bytes read as a sealed segment and as an
/// active one, never a panic out.
#[cfg(feature = "fuzz")]
pub(crate) fn fuzz(bytes: &[u8]) {
    if let Ok(data) = unpack(bytes, "fuzz") {
        for f in frames(&data.raw) {
            let _ = f.map(|f| f.intact);
        }
    }
    for f in frames(bytes) {
        let _ = f.map(|f| f.intact);
    }
    let _ = torn_end(bytes);
}

impl SegmentLog {
    /// Opens (creating if needed) the log in `dir`. Leftovers of an interrupted seal are
    /// cleared, and a torn last frame is cut off; the number of bytes cut is returned.
    pub fn open(dir: &Path) -> Result<(SegmentLog, u64)> {
        fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        for entry in fs::read_dir(dir).map_err(io(format!("reading {}", dir.display())))? {
            let path = entry
                .map_err(io(format!("reading {}", dir.display())))?
                .path();
            if path.extension().and_then(|e| e.to_str()) == Some("tmp") {
                fs::remove_file(&path).map_err(io(format!("removing {}", path.display())))?;
            }
        }
        let segments = list(dir)?;
        // A seal that finished its `.seg` but not the removal of the active file it came from.
        let sealed: Vec<u64> = segments
            .iter()
            .filter(|s| s.sealed)
            .map(|s| s.name)
            .collect();
        let mut open: Vec<&Segment> = Vec::new();
        for s in segments.iter().filter(|s| !s.sealed) {
            if sealed.contains(&s.name) {
                fs::remove_file(&s.path).map_err(io(format!("removing {}", s.path.display())))?;
            } else {
                open.push(s);
            }
        }
        // Files rotated out but not yet sealed stay as they are (complete: nothing is
        // appended to a file after its rotation); the last one is the active file.
        let (name, path) = match open.last() {
            Some(s) if sealed.last().is_none_or(|n| *n < s.name) => (s.name, s.path.clone()),
            _ => {
                let name = sealed
                    .last()
                    .copied()
                    .max(open.last().map(|s| s.name))
                    .map_or(0, |n| n + 1);
                (name, dir.join(file_name(name, OPEN_EXT)))
            }
        };
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io(format!("opening {}", path.display())))?;
        let mut raw = Vec::new();
        file.read_to_end(&mut raw)
            .map_err(io(format!("reading {}", path.display())))?;
        let good = torn_end(&raw).unwrap_or(raw.len() as u64);
        let cut = raw.len() as u64 - good;
        if cut > 0 {
            // The cut bytes are kept beside the segment: if they were not a torn write but
            // damage, they are evidence (and the log's signed head then says events are
            // missing).
            let aside = path.with_extension(format!("torn-at-{good}"));
            write_durably(&aside, &raw[good as usize..])?;
            file.set_len(good)
                .map_err(io(format!("cutting the torn end of {}", path.display())))?;
            file.sync_data()
                .map_err(io(format!("syncing {}", path.display())))?;
        }
        sync_dir(dir)?;
        Ok((
            SegmentLog {
                dir: dir.to_path_buf(),
                active: Mutex::new(Active {
                    file,
                    name,
                    len: good,
                    synced: good,
                    retired: Vec::new(),
                    dir_dirty: false,
                }),
                mode: AtomicU8::new(AppendMode::Write as u8),
            },
            cut,
        ))
    }

    /// Changes what appends do (tests and benchmarks only).
    #[doc(hidden)]
    pub fn set_mode(&self, mode: AppendMode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    fn mode(&self) -> AppendMode {
        match self.mode.load(Ordering::SeqCst) {
            1 => AppendMode::Fail,
            2 => AppendMode::Discard,
            _ => AppendMode::Write,
        }
    }

    fn failing(&self) -> Result<()> {
        match self.mode() {
            AppendMode::Fail => Err(Error::io(
                format!("writing {}", self.dir.display()),
                std::io::Error::other("appends are failing"),
            )),
            _ => Ok(()),
        }
    }

    /// Appends one frame (not yet durable: see [`SegmentLog::sync`]).
    pub fn append(&self, payload: &[u8]) -> Result<()> {
        self.failing()?;
        if self.mode() == AppendMode::Discard {
            return Ok(());
        }
        let frame = frame(payload)?;
        let mut a = self.active.lock().expect("segment");
        if let Err(e) = a.file.write_all(&frame) {
            // Whatever part of the frame reached the file is cut off, so the next append
            // does not follow a torn frame.
            let len = a.len;
            let _ = a.file.set_len(len);
            return Err(Error::io(format!("writing {}", self.dir.display()), e));
        }
        a.len += frame.len() as u64;
        Ok(())
    }

    /// Makes every frame appended so far durable. Appends go on while the disk syncs.
    pub fn sync(&self) -> Result<()> {
        self.failing()?;
        let context = || format!("syncing {}", self.dir.display());
        let (name, target, file, retired, dir_dirty) = {
            let mut a = self.active.lock().expect("segment");
            if a.synced >= a.len && a.retired.is_empty() && !a.dir_dirty {
                return Ok(());
            }
            let file = a.file.try_clone().map_err(io(context()))?;
            let dirty = std::mem::take(&mut a.dir_dirty);
            (a.name, a.len, file, std::mem::take(&mut a.retired), dirty)
        };
        for f in &retired {
            f.sync_data().map_err(io(context()))?;
        }
        file.sync_data().map_err(io(context()))?;
        if dir_dirty {
            sync_dir(&self.dir)?;
        }
        let mut a = self.active.lock().expect("segment");
        if a.name == name {
            a.synced = a.synced.max(target);
        }
        Ok(())
    }

    /// Bytes in the active segment.
    pub fn active_len(&self) -> u64 {
        self.active.lock().expect("segment").len
    }

    /// The segments, in order, the active one with the length of its complete frames now.
    pub fn segments(&self) -> Result<Vec<Segment>> {
        let a = self.active.lock().expect("segment");
        let mut out = list(&self.dir)?;
        for s in out.iter_mut().filter(|s| !s.sealed) {
            s.len = if s.name == a.name { a.len } else { s.len };
        }
        Ok(out)
    }

    /// Starts a new active segment named `next` and returns the one it replaces, synced and
    /// complete, for [`SegmentLog::seal_file`] (which may run on another thread while appends
    /// go on). Nothing happens if the active segment is empty.
    pub fn rotate(&self, next: u64) -> Result<Option<Segment>> {
        self.failing()?;
        let mut a = self.active.lock().expect("segment");
        if a.len == 0 || self.mode() == AppendMode::Discard {
            return Ok(None);
        }
        if next <= a.name {
            return Err(corrupt(format!(
                "audit segment numbering ({next} after {})",
                a.name
            )));
        }
        let next_path = self.dir.join(file_name(next, OPEN_EXT));
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&next_path)
            .map_err(io(format!("opening {}", next_path.display())))?;
        // The new file's name reaches the disk with the next sync, not under this lock.
        a.dir_dirty = true;
        let old = Segment {
            name: a.name,
            path: self.dir.join(file_name(a.name, OPEN_EXT)),
            sealed: false,
            len: a.len,
        };
        let previous = std::mem::replace(&mut a.file, file);
        if a.synced < a.len {
            a.retired.push(previous);
        }
        a.name = next;
        a.len = 0;
        a.synced = 0;
        Ok(Some(old))
    }

    /// Compresses a rotated-out segment into a sealed one carrying `meta` (written aside,
    /// synced, renamed), then removes the uncompressed file.
    pub fn seal_file(&self, segment: &Segment, meta: &[u8]) -> Result<()> {
        self.failing()?;
        let raw = segment.read()?.raw;
        let packed = lz4_flex::block::compress(&raw);
        let mut out = Vec::with_capacity(packed.len() + meta.len() + 64);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
        out.extend_from_slice(meta);
        out.extend_from_slice(&(raw.len() as u64).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&packed).to_le_bytes());
        out.extend_from_slice(&packed);
        write_durably(&self.dir.join(file_name(segment.name, SEALED_EXT)), &out)?;
        let open_path = self.dir.join(file_name(segment.name, OPEN_EXT));
        fs::remove_file(&open_path).map_err(io(format!("removing {}", open_path.display())))?;
        sync_dir(&self.dir)
    }

    /// Copies the sealed segments into `to` (created if needed; each file written aside,
    /// synced and renamed) and returns them. The live copies stay until
    /// [`SegmentLog::remove_sealed`].
    pub fn copy_sealed(&self, to: &Path) -> Result<Vec<Segment>> {
        fs::create_dir_all(to).map_err(io(format!("creating {}", to.display())))?;
        let chosen: Vec<Segment> = self.segments()?.into_iter().filter(|s| s.sealed).collect();
        for s in &chosen {
            let bytes = fs::read(&s.path).map_err(io(format!("reading {}", s.path.display())))?;
            let target = to.join(file_name(s.name, SEALED_EXT));
            match fs::read(&target) {
                Ok(existing) if existing == bytes => continue,
                Ok(_) => {
                    return Err(Error::io(
                        format!("archiving into {}", to.display()),
                        std::io::Error::other(format!(
                            "{} exists there with other contents",
                            target.display()
                        )),
                    ))
                }
                Err(_) => write_durably(&target, &bytes)?,
            }
        }
        Ok(chosen)
    }

    /// Removes sealed segments (after they were archived).
    pub fn remove_sealed(&self, segments: &[Segment]) -> Result<()> {
        for s in segments.iter().filter(|s| s.sealed) {
            fs::remove_file(&s.path).map_err(io(format!("removing {}", s.path.display())))?;
        }
        sync_dir(&self.dir)
    }
}

fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(io(format!("writing {}", tmp.display())))?;
    fs::rename(&tmp, path).map_err(io(format!("renaming {}", tmp.display())))?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("syncing {}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rotates the active segment out and seals it at once.
    fn seal(log: &SegmentLog, meta: &[u8], next: u64) {
        let old = log.rotate(next).unwrap().unwrap();
        log.seal_file(&old, meta).unwrap();
    }

    fn payloads(log: &SegmentLog) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for s in log.segments().unwrap() {
            let data = s.read().unwrap();
            for f in frames(&data.raw) {
                let f = f.unwrap();
                assert!(f.intact);
                out.push(f.payload.to_vec());
            }
        }
        out
    }

    #[test]
    fn frames_survive_sealing_reopening_and_a_torn_end() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("audit");
        let (log, cut) = SegmentLog::open(&dir).unwrap();
        assert_eq!(cut, 0);
        let want: Vec<Vec<u8>> = (0..300u32)
            .map(|i| format!("{{\"seq\":{i},\"action\":\"read.subject\"}}").into_bytes())
            .collect();
        for (i, p) in want.iter().enumerate() {
            log.append(p).unwrap();
            if i == 99 || i == 199 {
                seal(&log, b"meta", i as u64 + 1);
            }
        }
        log.sync().unwrap();
        assert_eq!(payloads(&log), want);
        let sealed = log.segments().unwrap();
        assert_eq!(
            sealed
                .iter()
                .map(|s| (s.name, s.sealed))
                .collect::<Vec<_>>(),
            vec![(0, true), (100, true), (200, false)]
        );
        assert_eq!(sealed[0].read().unwrap().meta, b"meta");
        assert_eq!(sealed[0].meta().unwrap(), b"meta");
        // A sealed segment is smaller than its frames.
        let packed = fs::metadata(&sealed[0].path).unwrap().len();
        assert!(
            packed < sealed[0].read().unwrap().raw.len() as u64,
            "{packed}"
        );
        drop(log);
        // A crash in the middle of a write leaves half a frame: it is cut off on open.
        let active = dir.join(file_name(200, OPEN_EXT));
        let mut f = OpenOptions::new().append(true).open(&active).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2]).unwrap();
        drop(f);
        let (log, cut) = SegmentLog::open(&dir).unwrap();
        assert_eq!(cut, 6);
        let aside = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .find(|n| n.contains("torn-at-"))
            .expect("the cut bytes are kept");
        assert_eq!(fs::read(dir.join(aside)).unwrap(), [200, 0, 0, 0, 1, 2]);
        assert_eq!(payloads(&log), want);
        log.append(b"after").unwrap();
        assert_eq!(payloads(&log).last().unwrap(), b"after");
    }

    #[test]
    fn a_changed_byte_in_a_sealed_segment_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (log, _) = SegmentLog::open(tmp.path()).unwrap();
        for i in 0..50u32 {
            log.append(&i.to_le_bytes()).unwrap();
        }
        seal(&log, b"m", 50);
        let s = &log.segments().unwrap()[0];
        let mut bytes = fs::read(&s.path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&s.path, &bytes).unwrap();
        let err = s.read().err().expect("refused");
        assert!(err.to_string().contains("malformed"), "{err}");
    }

    #[test]
    fn failing_and_discarding_modes_write_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let (log, _) = SegmentLog::open(tmp.path()).unwrap();
        log.set_mode(AppendMode::Fail);
        assert!(log.append(b"x").is_err());
        assert!(log.sync().is_err());
        log.set_mode(AppendMode::Discard);
        log.append(b"x").unwrap();
        log.set_mode(AppendMode::Write);
        assert_eq!(log.active_len(), 0);
        log.append(b"y").unwrap();
        assert_eq!(payloads(&log), vec![b"y".to_vec()]);
    }
}
