//! The bound on open segment files over the whole engine: an LRU of the segments holding a
//! file descriptor. A segment opens its file on demand through its [`FileSlot`]; once more than
//! `max_open_files` are open, the least recently used idle ones are closed (clean ones first).
//!
//! Durability: a file holding bytes written but not yet fsynced (in every flush mode but `os`)
//! is fsynced before it is closed, so no writeback error can slip between two descriptors. A
//! failed fsync is recorded on the slot and never retried: every later `sync` of that segment
//! answers it, so the partition's next flush (always pending while it holds unsynced bytes)
//! fails the partition as any failed fsync does (`flush.rs`).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::metrics as m;

/// Least-recently-used victims looked at per eviction (bounds the work of one open).
const EVICTION_SCAN: usize = 64;

/// The engine-wide bound on open segment files.
#[derive(Debug)]
pub(crate) struct OpenFiles {
    max: usize,
    lru: Mutex<Lru>,
    open: AtomicUsize,
    peak: AtomicUsize,
}

#[derive(Debug, Default)]
struct Lru {
    clock: u64,
    /// Open slots by the stamp of their last use, oldest first.
    order: BTreeMap<u64, Weak<FileSlot>>,
}

impl OpenFiles {
    /// A bound of `max` open segment files (at least 1).
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            lru: Mutex::new(Lru::default()),
            open: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        })
    }

    /// The bound.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// Segment files open now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Most segment files open at once since the engine opened.
    #[cfg(test)]
    pub(crate) fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    fn lru(&self) -> MutexGuard<'_, Lru> {
        self.lru.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves (or adds) `slot` to the most recent end; returns its new stamp.
    fn touch(&self, slot: &Arc<FileSlot>, old: Option<u64>) -> u64 {
        let mut lru = self.lru();
        if let Some(old) = old {
            lru.order.remove(&old);
        }
        lru.clock += 1;
        let stamp = lru.clock;
        lru.order.insert(stamp, Arc::downgrade(slot));
        stamp
    }

    fn opened(&self) {
        let now = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(now, Ordering::Relaxed);
        metrics::gauge!(m::OPEN_SEGMENT_FILES).increment(1.0);
    }

    fn closed(&self, stamp: u64) {
        self.lru().order.remove(&stamp);
        self.open.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!(m::OPEN_SEGMENT_FILES).decrement(1.0);
    }

    /// Before opening a file: closes least recently used idle files until fewer than `max` are
    /// open, clean ones first, then ones holding unsynced bytes (fsynced first). Files in use
    /// (a read, a write or an fsync holds the handle or the slot) are skipped, so the bound
    /// holds unless more than `max` files are in use or being opened at once.
    fn make_room(&self) {
        if self.open() < self.max {
            return;
        }
        let candidates: Vec<(u64, Arc<FileSlot>)> = {
            let lru = self.lru();
            lru.order
                .iter()
                .take(EVICTION_SCAN)
                .filter_map(|(&stamp, w)| w.upgrade().map(|s| (stamp, s)))
                .collect()
        };
        let (clean, dirty): (Vec<_>, Vec<_>) = candidates
            .into_iter()
            .partition(|(_, s)| !s.needs_fsync_to_close());
        for (stamp, slot) in clean.into_iter().chain(dirty) {
            if self.open() < self.max {
                break;
            }
            slot.close_idle(Some(stamp));
        }
    }
}

/// The process's descriptor limit (`RLIMIT_NOFILE`) before and after
/// [`raise_open_files_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorLimit {
    /// Soft limit before.
    pub soft_before: u64,
    /// Soft limit now.
    pub soft: u64,
    /// Hard limit (the most an unprivileged process may raise its soft limit to).
    pub hard: u64,
}

/// Raises the process's soft `RLIMIT_NOFILE` to its hard limit, as Kafka and Elasticsearch
/// advise (a soft limit of 1024 is a common default, the hard one often 2^19 or more). Call it
/// once at start-up, before [`crate::LogEngine::open`], whose default `max_open_files` is half
/// the soft limit. Fails only if the limit cannot be read or set; the soft limit is then
/// unchanged.
pub fn raise_open_files_limit() -> io::Result<DescriptorLimit> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft_before, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    if soft_before < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(io::Error::from)?;
    }
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    Ok(DescriptorLimit {
        soft_before,
        soft,
        hard,
    })
}

/// Default bound: half the process's soft `RLIMIT_NOFILE` (read from `/proc/self/limits`), at
/// least 64; 512 when the limit cannot be read.
pub(crate) fn default_max_open_files() -> usize {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_owned))
        })
        .map(|soft| soft.parse::<usize>().unwrap_or(usize::MAX));
    match soft {
        Some(soft) => (soft / 2).clamp(64, 1 << 20),
        None => 512,
    }
}

/// The file of one segment: open on demand, closed when evicted or released.
#[derive(Debug)]
pub(crate) struct FileSlot {
    path: PathBuf,
    dir: PathBuf,
    files: Arc<OpenFiles>,
    /// Bytes written since the last fsync must be fsynced before closing (not in `os` mode).
    fsync_on_close: bool,
    /// Bytes were written since the last fsync (a hint for choosing victims without the lock).
    dirty: AtomicBool,
    inner: Mutex<SlotInner>,
}

#[derive(Debug, Default)]
struct SlotInner {
    file: Option<Arc<File>>,
    stamp: u64,
    /// An fsync of this file failed: never retried, answered by every later `sync`.
    failed: Option<String>,
}

impl FileSlot {
    /// The slot of the file at `path` in `dir`; `file` when the caller opened it already.
    pub(crate) fn new(
        files: &Arc<OpenFiles>,
        dir: &Path,
        path: PathBuf,
        fsync_on_close: bool,
        file: Option<File>,
    ) -> Arc<Self> {
        let slot = Arc::new(Self {
            path,
            dir: dir.to_path_buf(),
            files: files.clone(),
            fsync_on_close,
            dirty: AtomicBool::new(false),
            inner: Mutex::new(SlotInner::default()),
        });
        if let Some(file) = file {
            files.make_room();
            let mut inner = slot.lock();
            inner.file = Some(Arc::new(file));
            inner.stamp = files.touch(&slot, None);
            files.opened();
        }
        slot
    }

    fn lock(&self) -> MutexGuard<'_, SlotInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn needs_fsync_to_close(&self) -> bool {
        self.fsync_on_close && self.dirty.load(Ordering::Relaxed)
    }

    /// The open handle (marked most recently used), opening the file (after making room) if
    /// needed. Eviction only ever `try_lock`s other slots, so holding this one is safe.
    fn handle(self: &Arc<Self>, inner: &mut SlotInner) -> io::Result<Arc<File>> {
        if let Some(f) = &inner.file {
            let f = f.clone();
            inner.stamp = self.files.touch(self, Some(inner.stamp));
            return Ok(f);
        }
        self.files.make_room();
        let f = Arc::new(OpenOptions::new().read(true).write(true).open(&self.path)?);
        inner.file = Some(f.clone());
        inner.stamp = self.files.touch(self, None);
        self.files.opened();
        Ok(f)
    }

    /// Runs `f` on the file (for reads and size changes that need no fsync tracking).
    pub(crate) fn with<T>(
        self: &Arc<Self>,
        f: impl FnOnce(&File) -> io::Result<T>,
    ) -> io::Result<T> {
        let file = self.handle(&mut self.lock())?;
        f(&file)
    }

    /// Runs `f`, which writes to the file: the bytes count as unsynced until the next `sync`.
    pub(crate) fn write<T>(
        self: &Arc<Self>,
        f: impl FnOnce(&File) -> io::Result<T>,
    ) -> io::Result<T> {
        let file = {
            let mut inner = self.lock();
            let file = self.handle(&mut inner)?;
            // Set while the handle is held: an eviction cannot close the file before the write.
            self.dirty.store(true, Ordering::Relaxed);
            file
        };
        f(&file)
    }

    /// fsyncs the file's data. A failure (now or by an earlier eviction) is final.
    pub(crate) fn sync(self: &Arc<Self>) -> io::Result<()> {
        let file = {
            let mut inner = self.lock();
            if let Some(failed) = &inner.failed {
                return Err(io::Error::other(format!(
                    "an earlier fsync failed: {failed}"
                )));
            }
            let file = self.handle(&mut inner)?;
            self.dirty.store(false, Ordering::Relaxed);
            file
        };
        let synced = match crate::fault::sync_error(&self.dir) {
            Some(e) => Err(e),
            None => file.sync_data(),
        };
        if let Err(e) = &synced {
            self.lock().failed = Some(e.to_string());
        }
        synced
    }

    /// Closes the file unless it is in use or (an eviction, with `stamp`) was used since or
    /// its slot is busy: fsynced first if it holds unsynced bytes; a failed fsync is recorded
    /// (see the module docs). True when the file is closed now.
    pub(crate) fn close_idle(&self, stamp: Option<u64>) -> bool {
        let mut inner = if stamp.is_some() {
            match self.inner.try_lock() {
                Ok(inner) => inner,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return false,
            }
        } else {
            self.lock()
        };
        let Some(file) = &inner.file else {
            return true;
        };
        if stamp.is_some_and(|s| s != inner.stamp) || Arc::strong_count(file) > 1 {
            return false;
        }
        if self.needs_fsync_to_close() && inner.failed.is_none() {
            let synced = match crate::fault::sync_error(&self.dir) {
                Some(e) => Err(e),
                None => file.sync_data(),
            };
            metrics::counter!(m::FSYNCS_TOTAL).increment(1);
            if let Err(e) = synced {
                tracing::error!(file = %self.path.display(), error = %e, "fsync before closing an idle segment file failed; its partition fails at its next flush");
                inner.failed = Some(e.to_string());
            }
        }
        self.dirty.store(false, Ordering::Relaxed);
        inner.file = None;
        self.files.closed(inner.stamp);
        true
    }

    /// Closes the file without fsyncing it (its segment is being deleted). Holders of the
    /// handle keep it until they drop it.
    pub(crate) fn discard(&self) {
        let mut inner = self.lock();
        if inner.file.take().is_some() {
            self.files.closed(inner.stamp);
        }
    }

    /// Whether the file is open (tests).
    #[cfg(test)]
    pub(crate) fn is_open(&self) -> bool {
        self.lock().file.is_some()
    }
}

impl Drop for FileSlot {
    fn drop(&mut self) {
        let inner = self.inner.get_mut().unwrap_or_else(|p| p.into_inner());
        if inner.file.take().is_some() {
            self.files.closed(inner.stamp);
        }
    }
}

#[cfg(test)]
#[path = "open_files_tests.rs"]
mod tests;
