//! Durable consumer-group offsets: an in-memory map backed by an append-only log of JSON lines
//! (`consumer-offsets.log`), one write and one fsync per commit request, replayed at open and
//! compacted in the background (`offsets_compact.rs`) once it holds many superseded records.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::error::{LogError, Result};

/// The append-only log of commit records.
const LOG_FILE: &str = "consumer-offsets.log";
/// The whole-map JSON file of earlier versions, migrated into the log at open.
const LEGACY_FILE: &str = "consumer-offsets.json";
/// Most (group, topic, partition) entries held; commits of new keys beyond it are refused.
pub(crate) const MAX_ENTRIES: usize = 1_000_000;
/// Compaction starts once the log holds more than this many records per live entry…
const COMPACT_RATIO: u64 = 4;
/// …and is larger than this.
const COMPACT_MIN_BYTES: u64 = 1 << 20;

/// Limits of a store.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Most (group, topic, partition) keys held.
    pub max_entries: usize,
    /// Compaction waits until the log is at least this large, in bytes.
    pub compact_min_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_entries: MAX_ENTRIES,
            compact_min_bytes: COMPACT_MIN_BYTES,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Entry {
    group: String,
    topic: String,
    partition: i32,
    offset: i64,
}

type Key = (String, String, i32);

/// The log file and what it holds, owned by whoever holds the write turn.
struct LogState {
    /// Opened for appends (`O_APPEND`).
    file: File,
    bytes: u64,
    records: u64,
    /// Bumped each time the file is replaced: a compaction started before gives up.
    epoch: u64,
    /// A rename of the file is not yet known durable: fsync the directory before the next
    /// acknowledgement.
    dir_unsynced: bool,
}

/// Committed offsets by (group, topic, partition).
pub(crate) struct OffsetStore {
    inner: Arc<Inner>,
}

/// What the store and its background compaction share.
struct Inner {
    dir: PathBuf,
    limits: Limits,
    map: Mutex<BTreeMap<Key, i64>>,
    /// Serialises appends and file swaps; the log file lives here.
    log: tokio::sync::Mutex<LogState>,
    /// Held by the compaction running, if any.
    compaction: Arc<tokio::sync::Mutex<()>>,
    /// Set by `close` or drop: no compaction starts, a running one gives up.
    closed: AtomicBool,
    /// fsyncs of the log file (tests count them).
    syncs: AtomicU64,
    /// Compactions completed (tests).
    compactions: AtomicU64,
    /// Test hook: hold the next compaction once its snapshot is written.
    #[cfg(test)]
    pause: Mutex<Option<compact::Pause>>,
}

impl OffsetStore {
    /// Loads the store in `dir` (empty when absent), migrating a legacy JSON file.
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        Self::open_with(dir, Limits::default())
    }

    /// [`Self::open`] with other limits.
    pub(crate) fn open_with(dir: &Path, limits: Limits) -> Result<Self> {
        let io = |what: &str, e| LogError::io(format!("{what} consumer offsets"), e);
        compact::remove_leftovers(dir);
        let mut map = read_legacy(dir)?;
        let legacy = !map.is_empty() || dir.join(LEGACY_FILE).exists();
        let (bytes, records) = replay(&dir.join(LOG_FILE), &mut map)?;
        let mut state = if legacy {
            // Snapshot first: the legacy file is removed only once its entries are durable here.
            let state = write_snapshot(dir, &map).map_err(|e| io("migrating", e))?;
            fs::remove_file(dir.join(LEGACY_FILE))
                .and_then(|()| File::open(dir)?.sync_all())
                .map_err(|e| io("migrating", e))?;
            state
        } else {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(LOG_FILE))
                .map_err(|e| io("opening", e))?;
            LogState {
                file,
                bytes,
                records,
                epoch: 0,
                dir_unsynced: false,
            }
        };
        state
            .file
            .seek(SeekFrom::End(0))
            .map_err(|e| io("opening", e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                limits,
                map: Mutex::new(map),
                log: tokio::sync::Mutex::new(state),
                compaction: Arc::new(tokio::sync::Mutex::new(())),
                closed: AtomicBool::new(false),
                syncs: AtomicU64::new(0),
                compactions: AtomicU64::new(0),
                #[cfg(test)]
                pause: Mutex::new(None),
            }),
        })
    }

    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, i64>> {
        self.inner.map()
    }

    /// Stops compacting: a running compaction gives up (the log stays whole) and this waits
    /// for it, so no file is replaced once the engine has released the data directory.
    pub(crate) async fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        let _idle = self.inner.compaction.lock().await;
    }

    /// The committed offset, if any.
    pub(crate) fn get(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        self.map()
            .get(&(group.to_owned(), topic.to_owned(), partition))
            .copied()
    }

    /// All offsets committed by `group`: `(topic, partition, offset)`.
    pub(crate) fn group(&self, group: &str) -> Vec<(String, i32, i64)> {
        self.map()
            .iter()
            .filter(|((g, _, _), _)| g == group)
            .map(|((_, t, p), o)| (t.clone(), *p, *o))
            .collect()
    }

    /// fsyncs of the log file so far.
    #[cfg(test)]
    pub(crate) fn syncs(&self) -> u64 {
        self.inner.syncs.load(Ordering::Relaxed)
    }

    /// Stores offsets of `group` durably with one append and one fsync: `(topic, partition,
    /// offset)` each. One result per entry, in order: an entry for a new key beyond the entry
    /// limit is refused, the others are written together (or all fail with the write).
    pub(crate) async fn commit_many(
        &self,
        group: &str,
        entries: &[(&str, i32, i64)],
    ) -> Vec<Result<()>> {
        let inner = &self.inner;
        let mut log = inner.log.lock().await;
        let mut results: Vec<Option<LogError>> = Vec::with_capacity(entries.len());
        let mut accepted = Vec::with_capacity(entries.len());
        let mut buf = Vec::new();
        {
            let map = self.map();
            let mut new_keys = std::collections::HashSet::new();
            for &(topic, partition, offset) in entries {
                let known = map.contains_key(&(group.to_owned(), topic.to_owned(), partition))
                    || new_keys.contains(&(topic, partition));
                if !known && map.len() + new_keys.len() >= inner.limits.max_entries {
                    results.push(Some(LogError::InvalidArgument(format!(
                        "too many committed offsets: the store holds at most {} \
                         (group, topic, partition) entries",
                        inner.limits.max_entries
                    ))));
                    continue;
                }
                new_keys.insert((topic, partition));
                encode_line(&mut buf, group, topic, partition, offset);
                accepted.push((topic, partition, offset));
                results.push(None);
            }
        }
        if !accepted.is_empty() {
            let outcome = inner.append(&mut log, buf, accepted.len() as u64).await;
            if let Err(e) = outcome {
                let message = e.to_string();
                return results
                    .into_iter()
                    .map(|r| match r {
                        Some(refused) => Err(refused),
                        None => Err(LogError::io(
                            "writing consumer offsets",
                            std::io::Error::other(message.clone()),
                        )),
                    })
                    .collect();
            }
            let live = {
                let mut map = self.map();
                for (topic, partition, offset) in accepted {
                    map.insert((group.to_owned(), topic.to_owned(), partition), offset);
                }
                map.len() as u64
            };
            // Compact once superseded records dominate a log of some size, in the background.
            if log.bytes >= inner.limits.compact_min_bytes
                && log.records > COMPACT_RATIO * live.max(1)
            {
                compact::start(inner, &log);
            }
        }
        results.into_iter().map(|r| r.map_or(Ok(()), Err)).collect()
    }

    /// Stores one offset durably.
    pub(crate) async fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<()> {
        let mut results = self.commit_many(group, &[(topic, partition, offset)]).await;
        results.pop().unwrap_or(Ok(()))
    }

    /// Forgets every offset of `topic` (rewrites the snapshot under the write turn; a
    /// compaction running gives up).
    pub(crate) async fn remove_topic(&self, topic: &str) -> Result<()> {
        let mut log = self.inner.log.lock().await;
        let snapshot = {
            let mut map = self.map();
            map.retain(|(_, t, _), _| t != topic);
            map.clone()
        };
        let dir = self.inner.dir.clone();
        let epoch = log.epoch + 1;
        *log = tokio::task::spawn_blocking(move || write_snapshot(&dir, &snapshot))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            .map_err(|e| LogError::io("rewriting consumer offsets", e))?;
        log.epoch = epoch;
        Ok(())
    }
}

impl Drop for OffsetStore {
    fn drop(&mut self) {
        // A compaction still running must not replace the file under a later store.
        self.inner.closed.store(true, Ordering::Release);
    }
}

impl Inner {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, i64>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `buf` (`records` records) and fsyncs it once, off the async workers (and the
    /// directory too while a rename is not known durable).
    async fn append(&self, log: &mut LogState, buf: Vec<u8>, records: u64) -> Result<()> {
        let mut file = log
            .file
            .try_clone()
            .map_err(|e| LogError::io("writing consumer offsets", e))?;
        let dir = self.dir.clone();
        let (start, len) = (log.bytes, buf.len() as u64);
        let dir_unsynced = log.dir_unsynced;
        tokio::task::spawn_blocking(move || {
            let written = file
                .write_all(&buf)
                .and_then(|()| match crate::fault::sync_error(&dir) {
                    Some(e) => Err(e),
                    None => file.sync_data(),
                })
                .and_then(|()| match dir_unsynced {
                    true => File::open(&dir)?.sync_all(),
                    false => Ok(()),
                });
            if written.is_err() {
                // Cut what was not acknowledged so later appends do not follow garbage.
                let _ = file.set_len(start);
            }
            written
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        .map_err(|e| LogError::io("writing consumer offsets", e))?;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        log.bytes += len;
        log.records += records;
        log.dir_unsynced = false;
        Ok(())
    }
}

fn encode_line(buf: &mut Vec<u8>, group: &str, topic: &str, partition: i32, offset: i64) {
    let entry = EntryRef {
        group,
        topic,
        partition,
        offset,
    };
    // Serialising strings and integers cannot fail.
    if serde_json::to_writer(&mut *buf, &entry).is_ok() {
        buf.push(b'\n');
    }
}

#[derive(Serialize)]
struct EntryRef<'a> {
    group: &'a str,
    topic: &'a str,
    partition: i32,
    offset: i64,
}

/// The entries of the legacy whole-map file, if present.
fn read_legacy(dir: &Path) -> Result<BTreeMap<Key, i64>> {
    let path = dir.join(LEGACY_FILE);
    match fs::read(&path) {
        Ok(bytes) => Ok(serde_json::from_slice::<Vec<Entry>>(&bytes)
            .map_err(|e| LogError::corrupt(path.display().to_string(), e.to_string()))?
            .into_iter()
            .map(|e| ((e.group, e.topic, e.partition), e.offset))
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(LogError::io(format!("reading {}", path.display()), e)),
    }
}

/// Applies the log's records to `map`; a torn or unreadable tail (a crash mid-append) is cut
/// off. Returns the valid length and record count.
fn replay(path: &Path, map: &mut BTreeMap<Key, i64>) -> Result<(u64, u64)> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(LogError::io(format!("reading {}", path.display()), e)),
    };
    let (mut valid, mut records) = (0usize, 0u64);
    while let Some(end) = bytes[valid..].iter().position(|&b| b == b'\n') {
        let Ok(e) = serde_json::from_slice::<Entry>(&bytes[valid..valid + end]) else {
            break;
        };
        map.insert((e.group, e.topic, e.partition), e.offset);
        valid += end + 1;
        records += 1;
    }
    if valid < bytes.len() {
        warn!(
            file = %path.display(),
            dropped_bytes = bytes.len() - valid,
            "ignoring a torn tail of the consumer offsets log"
        );
        OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|f| {
                f.set_len(valid as u64)?;
                f.sync_all()
            })
            .map_err(|e| LogError::io(format!("truncating {}", path.display()), e))?;
    }
    Ok((valid as u64, records))
}

/// Replaces the log with one record per entry of `map` and returns it opened for appends.
fn write_snapshot(dir: &Path, map: &BTreeMap<Key, i64>) -> std::io::Result<LogState> {
    let mut buf = Vec::new();
    for ((group, topic, partition), offset) in map {
        encode_line(&mut buf, group, topic, *partition, *offset);
    }
    let tmp = dir.join(format!("{LOG_FILE}.tmp"));
    let mut file = File::create(&tmp)?;
    file.write_all(&buf)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, dir.join(LOG_FILE))?;
    File::open(dir)?.sync_all()?;
    let file = OpenOptions::new().append(true).open(dir.join(LOG_FILE))?;
    Ok(LogState {
        file,
        bytes: buf.len() as u64,
        records: map.len() as u64,
        epoch: 0,
        dir_unsynced: false,
    })
}

#[path = "offsets_compact.rs"]
mod compact;

#[cfg(test)]
#[path = "offsets_tests.rs"]
mod tests;
