//! Background compaction of the consumer-offsets log. Commits go on while it runs:
//!
//! 1. Under the write turn, only where the log stands is noted (bytes, records, epoch).
//! 2. Without it, the map is written to `consumer-offsets.log.compact-N.tmp` a chunk of
//!    entries per hold of the map lock, and fsynced. Values newer than the noted point may be
//!    in it: the records after that point are appended next, in order, so replaying the file
//!    still ends on each key's last value.
//! 3. Without the turn, the records appended since the noted point are copied after the
//!    snapshot.
//! 4. Under the turn (commits wait for this step only): the few records appended during step 3
//!    are copied, the file fsynced and renamed over `consumer-offsets.log`, the directory
//!    fsynced; appends go to the new file from then on.
//!
//! A crash at any step leaves the old log whole (the temp file is removed at the next open)
//! or the new one whole, so every acknowledged commit is recovered. A compaction gives up
//! (and removes its temp file) when the store is closed or dropped, or when `remove_topic`
//! replaced the file meanwhile (the epoch moved).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::ops::Bound;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::{debug, warn};

use super::{Inner, Key, LOG_FILE, LogState, encode_line};

/// Entries serialised per hold of the map lock.
const CHUNK: usize = 4096;
/// Bytes copied at a time from the old log.
const COPY_CHUNK: u64 = 1 << 20;

/// Distinguishes the temp files of compactions in this process.
static NEXT_TMP: AtomicU64 = AtomicU64::new(0);

/// Where the log stood when a compaction started.
#[derive(Debug, Clone, Copy)]
struct Start {
    epoch: u64,
    bytes: u64,
    records: u64,
}

/// Test hook: the compaction reports `reached` once its snapshot is written and fsynced, then
/// waits for `resume`.
#[cfg(test)]
pub(super) struct Pause {
    pub reached: tokio::sync::oneshot::Sender<()>,
    pub resume: tokio::sync::oneshot::Receiver<()>,
}

/// Removes temp files of interrupted snapshots and compactions (`consumer-offsets.log.*.tmp`).
pub(super) fn remove_leftovers(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let prefix = format!("{LOG_FILE}.");
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix) && name.ends_with(".tmp") {
            warn!(file = %entry.path().display(), "removing an interrupted consumer-offsets snapshot");
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Starts a compaction in the background unless one runs, the store is closed, or there is no
/// runtime. The caller holds the write turn (`log`).
pub(super) fn start(inner: &Arc<Inner>, log: &LogState) {
    if inner.closed.load(Ordering::Acquire) {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let Ok(turn) = inner.compaction.clone().try_lock_owned() else {
        return;
    };
    let start = Start {
        epoch: log.epoch,
        bytes: log.bytes,
        records: log.records,
    };
    let inner = inner.clone();
    runtime.spawn(async move {
        let n = NEXT_TMP.fetch_add(1, Ordering::Relaxed);
        let tmp = inner.dir.join(format!("{LOG_FILE}.compact-{n}.tmp"));
        match run(&inner, start, &tmp).await {
            Ok(true) => {
                inner.compactions.fetch_add(1, Ordering::Relaxed);
                debug!("consumer offsets compacted");
            }
            Ok(false) => {
                let _ = fs::remove_file(&tmp);
                debug!("consumer offsets compaction gave up (store closed or file replaced)");
            }
            Err(_) if inner.closed.load(Ordering::Acquire) => {
                let _ = fs::remove_file(&tmp);
                debug!("consumer offsets compaction stopped: the store was closed");
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                warn!(error = %e, "compacting consumer offsets failed; the log keeps growing");
            }
        }
        drop(turn);
    });
}

/// Runs on a blocking thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)))
}

fn gave_up(inner: &Inner, log: &LogState, start: Start) -> bool {
    inner.closed.load(Ordering::Acquire) || log.epoch != start.epoch
}

/// The steps of the module docs; false when it gave up.
async fn run(inner: &Arc<Inner>, start: Start, tmp: &Path) -> io::Result<bool> {
    let (file, entries) = {
        let (inner, tmp) = (inner.clone(), tmp.to_path_buf());
        blocking(move || write_snapshot(&inner, &tmp)).await?
    };
    #[cfg(test)]
    hold(inner).await;
    let copied = {
        let log = inner.log.lock().await;
        if gave_up(inner, &log, start) {
            return Ok(false);
        }
        log.bytes
    };
    let dir = inner.dir.clone();
    let file = {
        let dir = dir.clone();
        blocking(move || copy_records(&dir, file, start.bytes, copied)).await?
    };
    let mut log = inner.log.lock().await;
    if gave_up(inner, &log, start) {
        return Ok(false);
    }
    let end = log.bytes;
    let (file, bytes) = {
        let (dir, tmp) = (dir.clone(), tmp.to_path_buf());
        blocking(move || {
            let file = copy_records(&dir, file, copied, end)?;
            if let Some(e) = crate::fault::sync_error(&dir) {
                return Err(e);
            }
            file.sync_all()?;
            let bytes = file.metadata()?.len();
            fs::rename(&tmp, dir.join(LOG_FILE))?;
            Ok((file, bytes))
        })
        .await?
    };
    // Renamed: this is the log from now on. Until the directory fsync succeeds, appends fsync
    // the directory before acknowledging (a crash before it may bring back the old name).
    let dir_synced = blocking(move || File::open(&dir)?.sync_all()).await;
    *log = LogState {
        file,
        bytes,
        records: entries + (log.records - start.records),
        epoch: log.epoch + 1,
        dir_unsynced: dir_synced.is_err(),
    };
    Ok(true)
}

/// Writes every entry of the map to a new temp file opened for appends, a chunk per hold of
/// the map lock, and fsyncs it. Returns it and the number of entries; stops early when the
/// store is closed.
fn write_snapshot(inner: &Inner, tmp: &PathBuf) -> io::Result<(File, u64)> {
    let file = OpenOptions::new().append(true).create_new(true).open(tmp)?;
    let mut out = BufWriter::with_capacity(1 << 20, &file);
    let mut after: Option<Key> = None;
    let mut entries = 0u64;
    let mut buf = Vec::new();
    loop {
        if inner.closed.load(Ordering::Acquire) {
            return Err(io::Error::other("the store was closed"));
        }
        buf.clear();
        let mut n = 0;
        {
            let map = inner.map();
            let bounds: (Bound<&Key>, Bound<&Key>) = match &after {
                None => (Bound::Unbounded, Bound::Unbounded),
                Some(key) => (Bound::Excluded(key), Bound::Unbounded),
            };
            let mut last = None;
            for (key, offset) in map.range(bounds).take(CHUNK) {
                encode_line(&mut buf, &key.0, &key.1, key.2, *offset);
                last = Some(key);
                n += 1;
            }
            after = last.cloned();
        }
        out.write_all(&buf)?;
        entries += n as u64;
        if n < CHUNK {
            break;
        }
    }
    out.flush()?;
    drop(out);
    file.sync_all()?;
    Ok((file, entries))
}

/// Appends bytes `[from, to)` of the current log (whole records) to `file`.
fn copy_records(dir: &Path, mut file: File, from: u64, to: u64) -> io::Result<File> {
    if from >= to {
        return Ok(file);
    }
    let log = File::open(dir.join(LOG_FILE))?;
    let mut pos = from;
    while pos < to {
        let mut buf = vec![0u8; (to - pos).min(COPY_CHUNK) as usize];
        log.read_exact_at(&mut buf, pos)?;
        file.write_all(&buf)?;
        pos += buf.len() as u64;
    }
    Ok(file)
}

#[cfg(test)]
async fn hold(inner: &Inner) {
    let pause = inner.pause.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(pause) = pause {
        let _ = pause.reached.send(());
        let _ = pause.resume.await;
    }
}

#[cfg(test)]
impl super::OffsetStore {
    /// Holds the next compaction once its snapshot is written: returns (reached, resume).
    pub(crate) fn pause_next_compaction(
        &self,
    ) -> (
        tokio::sync::oneshot::Receiver<()>,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let (reached_tx, reached) = tokio::sync::oneshot::channel();
        let (resume, resume_rx) = tokio::sync::oneshot::channel();
        *self.inner.pause.lock().unwrap_or_else(|p| p.into_inner()) = Some(Pause {
            reached: reached_tx,
            resume: resume_rx,
        });
        (reached, resume)
    }

    /// Whether a compaction runs.
    pub(crate) fn compacting(&self) -> bool {
        self.inner.compaction.try_lock().is_err()
    }

    /// Waits until no compaction runs.
    pub(crate) async fn compaction_idle(&self) {
        let _idle = self.inner.compaction.lock().await;
    }

    /// Compactions completed.
    pub(crate) fn compactions(&self) -> u64 {
        self.inner.compactions.load(Ordering::Relaxed)
    }
}
