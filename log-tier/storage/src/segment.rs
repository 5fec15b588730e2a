//! One segment: a `.log` file of RecordBatches named by its base offset
//! (`00000000000000000000.log`), its in-memory sparse indexes, positional appends by the single
//! writer and positional reads by anyone.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;

use crate::batch::{self, BatchHeader, HEADER_LEN};
use crate::error::{LogError, Result};
use crate::index::{IndexTrailer, OffsetIndex, TimeIndex};
use crate::open_files::{FileSlot, OpenFiles};

/// How a partition's segments hold their files: through the engine's bound on open files,
/// fsynced before an idle one is closed unless the topic's flush mode is `os`.
#[derive(Debug, Clone)]
pub(crate) struct SegmentFiles {
    /// The engine-wide bound.
    pub open: Arc<OpenFiles>,
    /// Unsynced bytes are fsynced before an idle file is closed.
    pub fsync_on_close: bool,
}

/// Zeros written ahead at a time once the tail is that much short of `log.preallocate_bytes`,
/// as one write under the segment's meta lock (what an append may wait behind). The fsync that
/// makes them durable (with the file's new size) is the partition's next one, slower by their
/// writing: 256 KiB kept that one near the others' p99 in `scripts/fsync-probe --preallocate`
/// (2 MiB at a time put it at 2–3× their p99).
pub(crate) const PREALLOCATION_STEP: u64 = 256 * 1024;

/// Bytes read at a time when scanning batch headers.
const SCAN_WINDOW: usize = 64 * 1024;

/// File name of a segment file: the base offset in 20 digits and an extension.
pub(crate) fn file_name(base_offset: i64, ext: &str) -> String {
    format!("{base_offset:020}.{ext}")
}

/// Mutable state of a segment, guarded by its mutex.
#[derive(Debug, Clone)]
pub(crate) struct SegmentMeta {
    /// Bytes of valid batches in the `.log` file.
    pub size: u64,
    /// Offset after the last record.
    pub next_offset: i64,
    /// Raft index of the first batch (each batch is one entry; see `replica.rs`).
    pub base_index: u64,
    /// Raft index after the last batch.
    pub next_index: u64,
    /// Largest record timestamp (data batches only), or `i64::MIN` when empty.
    pub max_timestamp: i64,
    /// Sparse offset index.
    pub offset_index: OffsetIndex,
    /// Sparse time index.
    pub time_index: TimeIndex,
    /// Bytes appended since the last index entry.
    pub bytes_since_index: u64,
    /// A failed write could not be truncated away; retry before the next write.
    pub dirty_tail: bool,
    /// End of the zero-filled tail written ahead of the log end (`log.preallocate_bytes`),
    /// the file's length while it is past `size`: appends overwrite it, so their fsyncs
    /// write the data alone, not the file's size and newly allocated blocks as well.
    pub zeroed: u64,
    /// A background job is filling the tail.
    pub preallocating: bool,
    /// Sealed (rolled or shut down): no more tail is filled.
    pub sealed: bool,
}

impl SegmentMeta {
    /// Meta of an empty segment at `base_offset` whose first batch gets Raft index `base_index`.
    pub(crate) fn empty(base_offset: i64, base_index: u64) -> Self {
        Self {
            size: 0,
            next_offset: base_offset,
            base_index,
            next_index: base_index,
            max_timestamp: i64::MIN,
            offset_index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            bytes_since_index: 0,
            dirty_tail: false,
            zeroed: 0,
            preallocating: false,
            sealed: false,
        }
    }

    /// Records a batch written at `position` in the indexes.
    pub(crate) fn note_batch(
        &mut self,
        base: i64,
        header: &BatchHeader,
        position: u64,
        index_interval: u64,
    ) {
        let rel = (header.base_offset - base) as u32;
        let rel_index = (self.next_index - self.base_index) as u32;
        if !header.is_internal() {
            self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
        }
        if self.size == 0 || self.bytes_since_index >= index_interval {
            if position > 0 {
                self.offset_index.push(rel, rel_index, position as u32);
            }
            if !header.is_internal() {
                self.time_index.push(self.max_timestamp, rel);
            }
            self.bytes_since_index = 0;
        }
        self.next_index += 1;
        let len = header.total_len() as u64;
        self.bytes_since_index += len;
        self.size = position + len;
        self.next_offset = header.next_offset();
    }
}

/// A segment of a partition.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Offset of the first record.
    pub base_offset: i64,
    dir: PathBuf,
    /// The file, opened on demand and closed when idle under the engine's `max_open_files`.
    file: Arc<FileSlot>,
    meta: Mutex<SegmentMeta>,
    created: Instant,
}

impl Segment {
    /// Creates a new empty segment file whose first batch gets Raft index `base_index`; fails
    /// if it exists.
    pub(crate) fn create(
        dir: &Path,
        base_offset: i64,
        base_index: u64,
        files: &SegmentFiles,
    ) -> Result<Self> {
        let path = dir.join(file_name(base_offset, "log"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| LogError::io(format!("creating {}", path.display()), e))?;
        Ok(Self::from_parts(
            dir,
            base_offset,
            files,
            Some(file),
            SegmentMeta::empty(base_offset, base_index),
        ))
    }

    /// Wraps recovered meta and, when the caller has it open, its file (which then counts
    /// against the bound like any other).
    pub(crate) fn from_parts(
        dir: &Path,
        base_offset: i64,
        files: &SegmentFiles,
        file: Option<File>,
        meta: SegmentMeta,
    ) -> Self {
        let path = dir.join(file_name(base_offset, "log"));
        Self {
            base_offset,
            dir: dir.to_path_buf(),
            file: FileSlot::new(&files.open, dir, path, files.fsync_on_close, file),
            meta: Mutex::new(meta),
            created: Instant::now(),
        }
    }

    /// Path of this segment's file with extension `ext`.
    pub(crate) fn path(&self, ext: &str) -> PathBuf {
        self.dir.join(file_name(self.base_offset, ext))
    }

    /// Locks the meta; a poisoned lock still holds consistent data (updates are single steps).
    pub(crate) fn meta(&self) -> MutexGuard<'_, SegmentMeta> {
        self.meta.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes the file now unless it is in use (a sealed segment, fsynced, or a recovered
    /// one): it is reopened on demand. Unsynced bytes are fsynced first (see `open_files.rs`).
    pub(crate) fn close_file(&self) {
        self.file.close_idle(None);
    }

    /// Whether the file is open (tests).
    #[cfg(test)]
    pub(crate) fn holds_file(&self) -> bool {
        self.file.is_open()
    }

    /// Bytes held.
    pub(crate) fn size(&self) -> u64 {
        self.meta().size
    }

    /// Offset after the last record.
    pub(crate) fn next_offset(&self) -> i64 {
        self.meta().next_offset
    }

    /// Raft index of the first batch.
    pub(crate) fn base_index(&self) -> u64 {
        self.meta().base_index
    }

    /// Raft index after the last batch.
    pub(crate) fn next_index(&self) -> u64 {
        self.meta().next_index
    }

    /// Position of the batch with Raft index `index` (which must be in this segment), scanning
    /// below `limit`; `None` when past the end.
    pub(crate) fn find_index_position(&self, index: u64, limit: u64) -> Result<Option<u64>> {
        let (base, start) = {
            let m = self.meta();
            if index < m.base_index || index >= m.next_index {
                return Ok(None);
            }
            let rel = (index - m.base_index).min(u64::from(u32::MAX)) as u32;
            let (rel_found, pos) = m.offset_index.lookup_index(rel);
            (m.base_index + u64::from(rel_found), pos)
        };
        let mut at = base;
        let mut found = None;
        self.scan_headers(u64::from(start), limit, |_, pos| {
            if at == index {
                found = Some(pos);
                return ControlFlow::Break(());
            }
            at += 1;
            ControlFlow::Continue(())
        })?;
        Ok(found)
    }

    /// When this segment was created or opened.
    pub(crate) fn age(&self) -> std::time::Duration {
        self.created.elapsed()
    }

    /// Appends one batch whose base offset is already set. On failure nothing stays behind.
    pub(crate) fn append(
        &self,
        batch: &[u8],
        header: &BatchHeader,
        index_interval: u64,
    ) -> Result<u64> {
        let mut m = self.meta();
        let pos = m.size;
        let dir = &self.dir;
        let m = &mut *m;
        let written = self.file.write(|file| {
            if m.dirty_tail {
                file.set_len(pos)?;
                m.dirty_tail = false;
                m.zeroed = 0;
            }
            let written = match crate::fault::write_error(dir) {
                Some(e) => Err(e),
                None => file.write_all_at(batch, pos),
            };
            if written.is_err() {
                m.dirty_tail = file.set_len(pos).is_err();
                m.zeroed = 0;
            }
            written
        });
        if let Err(e) = written {
            return Err(LogError::io(
                format!("appending to {}", self.path("log").display()),
                e,
            ));
        }
        m.note_batch(self.base_offset, header, pos, index_interval);
        Ok(m.size)
    }

    /// Claims the job of filling the tail when less than `low` bytes of it are left past the
    /// log end; the claimer runs [`Segment::preallocate`].
    pub(crate) fn claim_preallocation(&self, low: u64) -> bool {
        let mut m = self.meta();
        let claim = !m.sealed && !m.preallocating && m.zeroed.saturating_sub(m.size) < low;
        m.preallocating |= claim;
        claim
    }

    /// Fills the tail with zeros up to `ahead` bytes past the log end (at most `cap`, the
    /// segment's roll size), one [`PREALLOCATION_STEP`] at a time under the meta lock, so an
    /// append never writes where zeros land after it; ends the claim. Not fsynced here: the partition's
    /// next fsync makes the zeros and the file's new size durable, and a failed fsync stays
    /// the partition's to see (Linux reports a writeback error once). On failure the file is
    /// cut back to where the failed piece started.
    pub(crate) fn preallocate(&self, ahead: u64, cap: u64) -> io::Result<u64> {
        const PIECE: usize = PREALLOCATION_STEP as usize;
        static ZEROS: [u8; PIECE] = [0; PIECE];
        let mut filled = 0;
        let result = loop {
            let mut m = self.meta();
            let start = m.size.max(m.zeroed);
            let end = m.size.saturating_add(ahead).min(cap);
            if m.sealed || start >= end {
                break Ok(filled);
            }
            let n = (end - start).min(PIECE as u64);
            let m = &mut *m;
            let dir = &self.dir;
            let written = self.file.write(|file| {
                let written = match crate::fault::write_error(dir) {
                    Some(e) => Err(e),
                    None => file.write_all_at(&ZEROS[..n as usize], start),
                };
                if written.is_err() && file.set_len(start).is_ok() {
                    m.zeroed = start;
                }
                written
            });
            if let Err(e) = written {
                break Err(e);
            }
            m.zeroed = start + n;
            filled += n;
        };
        self.meta().preallocating = false;
        result
    }

    /// Seals the segment: no more tail is filled, and a filled one is cut off, so the file
    /// ends at the last batch (the index trailer's size). Not fsynced here.
    pub(crate) fn seal(&self) -> Result<()> {
        let mut m = self.meta();
        m.sealed = true;
        if m.zeroed > m.size {
            let size = m.size;
            self.file
                .write(|f| f.set_len(size))
                .map_err(|e| LogError::io(format!("sealing {}", self.path("log").display()), e))?;
            m.zeroed = 0;
        }
        Ok(())
    }

    /// fsyncs the file's data.
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file.sync()
    }

    /// Reads `len` bytes at `pos` (fewer if the file is shorter).
    pub(crate) fn read(&self, pos: u64, len: usize) -> Result<Bytes> {
        let mut buf = vec![0u8; len];
        let filled = self
            .file
            .with(|file| {
                let mut filled = 0;
                while filled < len {
                    match file.read_at(&mut buf[filled..], pos + filled as u64) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(filled)
            })
            .map_err(|e| LogError::io(format!("reading {}", self.path("log").display()), e))?;
        buf.truncate(filled);
        Ok(Bytes::from(buf))
    }

    /// Calls `f` with each batch header from byte `from` up to `limit`, until it breaks.
    /// Returns the position where scanning stopped. Headers are checked, not CRCs.
    pub(crate) fn scan_headers(
        &self,
        from: u64,
        limit: u64,
        mut f: impl FnMut(&BatchHeader, u64) -> ControlFlow<()>,
    ) -> Result<u64> {
        let mut pos = from;
        while pos + HEADER_LEN as u64 <= limit {
            let window = (limit - pos).min(SCAN_WINDOW as u64) as usize;
            let buf = self.read(pos, window)?;
            let mut cur = 0usize;
            while let Some(h) = BatchHeader::parse(&buf[cur.min(buf.len())..]) {
                if let Err(reason) = h.check() {
                    return Err(self.corrupt(pos + cur as u64, reason));
                }
                if f(&h, pos + cur as u64).is_break() {
                    return Ok(pos + cur as u64);
                }
                cur += h.total_len();
                if cur >= buf.len() {
                    break;
                }
            }
            if cur == 0 {
                break;
            }
            pos += cur as u64;
        }
        Ok(pos.min(limit))
    }

    /// Position of the batch holding `offset`, scanning below `limit`; `None` when past the end.
    pub(crate) fn find_position(&self, offset: i64, limit: u64) -> Result<Option<u64>> {
        let rel = (offset - self.base_offset).clamp(0, i64::from(u32::MAX)) as u32;
        let (_, start) = self.meta().offset_index.lookup(rel);
        let mut found = None;
        self.scan_headers(u64::from(start), limit, |h, pos| {
            if h.next_offset() > offset {
                found = Some(pos);
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        })?;
        Ok(found)
    }

    /// Reads whole batches from `pos` below `limit`: about `max_bytes`, at least the first batch.
    /// Every batch's CRC is checked; a corrupt first batch is an error, a later one ends the read.
    pub(crate) fn read_batches(&self, pos: u64, limit: u64, max_bytes: usize) -> Result<Bytes> {
        if pos + HEADER_LEN as u64 > limit {
            return Ok(Bytes::new());
        }
        let head = self.read(pos, HEADER_LEN)?;
        let first = BatchHeader::parse(&head).ok_or_else(|| self.corrupt(pos, "short header"))?;
        first.check().map_err(|r| self.corrupt(pos, r))?;
        let want = (max_bytes.max(first.total_len()) as u64).min(limit - pos) as usize;
        let buf = self.read(pos, want)?;
        let mut good = 0usize;
        for (h, b) in batch::split_batches(buf.clone()) {
            if !batch::crc_ok(&b) {
                metrics::counter!(crate::metrics::CORRUPT_BATCHES_TOTAL).increment(1);
                if good == 0 {
                    return Err(self.corrupt(
                        pos,
                        format!("crc mismatch in batch at offset {}", h.base_offset),
                    ));
                }
                break;
            }
            good += b.len();
        }
        if good == 0 {
            return Err(self.corrupt(pos, "batch extends past the end of the segment"));
        }
        Ok(buf.slice(..good))
    }

    /// Where a reader of `offset` may go on when the bytes holding it are unreadable (a batch
    /// failing its CRC at `pos`, or, with `pos` unknown, a damaged header before it), among the
    /// batches below `limit`, whose end is offset `end`. In order: the batch after the one at
    /// `pos`, when that one's header still checks and the next one's does too (or it ends at
    /// `limit`); else the first offset-index entry past `offset`; else, for a `sealed` segment,
    /// its end. `None` when none is known (the active segment with neither): then the caller
    /// keeps failing until more is known. The answer depends only on bytes and index entries
    /// that no longer change, so every reader of `offset` gets the same one. Always past
    /// `offset`.
    pub(crate) fn resume_point(
        &self,
        offset: i64,
        pos: Option<u64>,
        limit: u64,
        end: i64,
        sealed: bool,
    ) -> Option<i64> {
        let after = |next: i64| next > offset && next <= end;
        if let Some(next) = pos.and_then(|pos| self.batch_after(pos, limit, end))
            && after(next)
        {
            return Some(next);
        }
        let rel = (offset - self.base_offset).clamp(0, i64::from(u32::MAX)) as u32;
        let indexed = self.meta().offset_index.next_after(rel);
        if let Some((rel, position)) = indexed
            && u64::from(position) < limit
            && after(self.base_offset + i64::from(rel))
        {
            return Some(self.base_offset + i64::from(rel));
        }
        (sealed && after(end)).then_some(end)
    }

    /// Base offset of the batch after the one at `pos`, when both headers check (the first's
    /// length and the second's framing agree), or `end` when the one at `pos` ends at `limit`.
    fn batch_after(&self, pos: u64, limit: u64, end: i64) -> Option<i64> {
        let header = |at: u64| {
            let bytes = self.read(at, HEADER_LEN).ok()?;
            BatchHeader::parse(&bytes).filter(|h| h.check().is_ok())
        };
        let damaged = header(pos)?;
        let next_pos = pos + damaged.total_len() as u64;
        if next_pos == limit {
            return Some(end);
        }
        if next_pos + HEADER_LEN as u64 > limit {
            return None;
        }
        let next = header(next_pos)?;
        (next.base_offset > damaged.base_offset).then_some(next.base_offset)
    }

    /// `(offset, timestamp)` of the first record with timestamp `>= target`, below `limit`.
    pub(crate) fn find_timestamp(&self, target: i64, limit: u64) -> Result<Option<(i64, i64)>> {
        let start_rel = self.meta().time_index.lookup(target);
        let Some(mut pos) = self.find_position(self.base_offset + i64::from(start_rel), limit)?
        else {
            return Ok(None);
        };
        while pos < limit {
            let bytes = self.read_batches(pos, limit, 1)?;
            let Some((h, b)) = batch::split_batches(bytes).next() else {
                return Ok(None);
            };
            if !h.is_internal() && h.max_timestamp >= target {
                let records = batch::decode_records(&b)?;
                if let Some(r) = records.iter().find(|r| r.timestamp_ms >= target) {
                    return Ok(Some((r.offset, r.timestamp_ms)));
                }
            }
            pos += h.total_len() as u64;
        }
        Ok(None)
    }

    /// Writes the `.index` and `.timeindex` files of this (sealed) segment.
    pub(crate) fn write_indexes(&self) -> Result<()> {
        let m = self.meta().clone();
        let trailer = IndexTrailer {
            next_offset: m.next_offset,
            size: m.size,
            base_index: m.base_index,
            next_index: m.next_index,
        };
        for (ext, bytes) in [
            ("index", m.offset_index.encode(trailer)),
            ("timeindex", m.time_index.encode(m.max_timestamp)),
        ] {
            let path = self.path(ext);
            fs::write(&path, bytes)
                .map_err(|e| LogError::io(format!("writing {}", path.display()), e))?;
        }
        Ok(())
    }

    /// Removes the index files (they go stale when the segment becomes active again).
    pub(crate) fn remove_indexes(&self) {
        for ext in ["index", "timeindex"] {
            let _ = fs::remove_file(self.path(ext));
        }
    }

    /// Truncates the log to `position`, which must be a batch boundary with `next_offset` and
    /// Raft index `next_index` after it.
    pub(crate) fn truncate(
        &self,
        position: u64,
        next_offset: i64,
        next_index: u64,
        max_timestamp: i64,
    ) -> Result<()> {
        let mut m = self.meta();
        self.file
            .write(|f| f.set_len(position))
            .map_err(|e| LogError::io(format!("truncating {}", self.path("log").display()), e))?;
        m.size = position;
        m.next_offset = next_offset;
        m.next_index = next_index;
        m.max_timestamp = max_timestamp;
        m.offset_index.truncate_to_position(position);
        m.time_index.truncate_to_offset(
            (next_offset - self.base_offset).clamp(0, i64::from(u32::MAX)) as u32,
        );
        m.bytes_since_index = u64::MAX / 2;
        m.dirty_tail = false;
        // The log end again (a sealed segment becomes the active one after a cut into it).
        m.zeroed = 0;
        m.sealed = false;
        drop(m);
        self.remove_indexes();
        Ok(())
    }

    /// Deletes this segment's files and closes its handle; readers in flight keep theirs.
    pub(crate) fn delete_files(&self) -> Result<()> {
        self.file.discard();
        self.remove_indexes();
        let path = self.path("log");
        fs::remove_file(&path).map_err(|e| LogError::io(format!("deleting {}", path.display()), e))
    }

    fn corrupt(&self, pos: u64, reason: impl Into<String>) -> LogError {
        LogError::corrupt(
            format!("{} at byte {pos}", self.path("log").display()),
            reason,
        )
    }
}

#[cfg(test)]
#[path = "damaged_read_tests.rs"]
mod damaged_read_tests;
