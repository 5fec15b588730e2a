//! One segment: a `.log` file of RecordBatches named by its base offset
//! (`00000000000000000000.log`), its in-memory sparse indexes, positional appends by the single
//! writer and positional reads by anyone.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;

use crate::batch::{self, BatchHeader, HEADER_LEN};
use crate::error::{LogError, Result};
use crate::index::{IndexTrailer, OffsetIndex, TimeIndex};

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
    /// Largest record timestamp, or `i64::MIN` when empty.
    pub max_timestamp: i64,
    /// Sparse offset index.
    pub offset_index: OffsetIndex,
    /// Sparse time index.
    pub time_index: TimeIndex,
    /// Bytes appended since the last index entry.
    pub bytes_since_index: u64,
    /// A failed write could not be truncated away; retry before the next write.
    pub dirty_tail: bool,
}

impl SegmentMeta {
    /// Meta of an empty segment at `base_offset`.
    pub(crate) fn empty(base_offset: i64) -> Self {
        Self {
            size: 0,
            next_offset: base_offset,
            max_timestamp: i64::MIN,
            offset_index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            bytes_since_index: 0,
            dirty_tail: false,
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
        self.max_timestamp = self.max_timestamp.max(header.max_timestamp);
        if self.size == 0 || self.bytes_since_index >= index_interval {
            if position > 0 {
                self.offset_index.push(rel, position as u32);
            }
            self.time_index.push(self.max_timestamp, rel);
            self.bytes_since_index = 0;
        }
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
    /// The open handle, kept while the segment is active or not yet fsynced; sealed segments
    /// open their file per read, so file descriptors do not grow with the number of segments.
    file: Mutex<Option<Arc<File>>>,
    meta: Mutex<SegmentMeta>,
    /// Whether `file()` caches a handle it had to open.
    keep: AtomicBool,
    created: Instant,
}

impl Segment {
    /// Creates a new empty segment file; fails if it exists.
    pub(crate) fn create(dir: &Path, base_offset: i64) -> Result<Self> {
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
            Some(file),
            SegmentMeta::empty(base_offset),
        ))
    }

    /// Wraps recovered meta and, for a segment to keep open, its file.
    pub(crate) fn from_parts(
        dir: &Path,
        base_offset: i64,
        file: Option<File>,
        meta: SegmentMeta,
    ) -> Self {
        Self {
            base_offset,
            dir: dir.to_path_buf(),
            keep: AtomicBool::new(file.is_some()),
            file: Mutex::new(file.map(Arc::new)),
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

    /// The file: the kept handle, or a fresh one for a sealed segment.
    fn file(&self) -> io::Result<Arc<File>> {
        let mut kept = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = kept.as_ref() {
            return Ok(f.clone());
        }
        let f = Arc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(self.path("log"))?,
        );
        if self.keep.load(std::sync::atomic::Ordering::Relaxed) {
            *kept = Some(f.clone());
        }
        Ok(f)
    }

    /// Keeps the file open from now on (the segment is, or becomes again, the active one).
    pub(crate) fn keep_open(&self) {
        self.keep.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Drops the kept handle (a sealed segment, fsynced): later reads open the file anew.
    pub(crate) fn close_file(&self) {
        self.keep.store(false, std::sync::atomic::Ordering::Relaxed);
        self.file.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Whether a file handle is kept open (tests).
    #[cfg(test)]
    pub(crate) fn holds_file(&self) -> bool {
        self.file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Bytes held.
    pub(crate) fn size(&self) -> u64 {
        self.meta().size
    }

    /// Offset after the last record.
    pub(crate) fn next_offset(&self) -> i64 {
        self.meta().next_offset
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
        let file = self
            .file()
            .map_err(|e| LogError::io(format!("opening {}", self.path("log").display()), e))?;
        if m.dirty_tail {
            file.set_len(pos)
                .map_err(|e| LogError::io("truncating a failed write", e))?;
            m.dirty_tail = false;
        }
        let written = match crate::fault::write_error(&self.dir) {
            Some(e) => Err(e),
            None => file.write_all_at(batch, pos),
        };
        if let Err(e) = written {
            m.dirty_tail = file.set_len(pos).is_err();
            return Err(LogError::io(
                format!("appending to {}", self.path("log").display()),
                e,
            ));
        }
        m.note_batch(self.base_offset, header, pos, index_interval);
        Ok(m.size)
    }

    /// fsyncs the file's data.
    pub(crate) fn sync(&self) -> io::Result<()> {
        self.file()?.sync_data()
    }

    /// Reads `len` bytes at `pos` (fewer if the file is shorter).
    pub(crate) fn read(&self, pos: u64, len: usize) -> Result<Bytes> {
        let file = self
            .file()
            .map_err(|e| LogError::io(format!("opening {}", self.path("log").display()), e))?;
        let mut buf = vec![0u8; len];
        let mut filled = 0;
        while filled < len {
            match file.read_at(&mut buf[filled..], pos + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(LogError::io(
                        format!("reading {}", self.path("log").display()),
                        e,
                    ));
                }
            }
        }
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
            if h.max_timestamp >= target {
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

    /// Truncates the log to `position`, which must be a batch boundary with `next_offset` after it.
    pub(crate) fn truncate(
        &self,
        position: u64,
        next_offset: i64,
        max_timestamp: i64,
    ) -> Result<()> {
        let mut m = self.meta();
        self.file()
            .and_then(|f| f.set_len(position))
            .map_err(|e| LogError::io(format!("truncating {}", self.path("log").display()), e))?;
        m.size = position;
        m.next_offset = next_offset;
        m.max_timestamp = max_timestamp;
        m.offset_index.truncate_to_position(position);
        m.time_index.truncate_to_offset(
            (next_offset - self.base_offset).clamp(0, i64::from(u32::MAX)) as u32,
        );
        m.bytes_since_index = u64::MAX / 2;
        m.dirty_tail = false;
        drop(m);
        self.remove_indexes();
        Ok(())
    }

    /// Deletes this segment's files; open readers keep their handle.
    pub(crate) fn delete_files(&self) -> Result<()> {
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
