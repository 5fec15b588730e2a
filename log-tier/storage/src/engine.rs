//! `LogEngine`: the embedded durable log. Opens and recovers the data directory, holds the
//! topics, and offers the raw-batch API the Kafka-protocol listener builds on (append a
//! RecordBatch v2, read stored bytes, long-poll, list offsets, topic admin, group offsets).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use tracing::{debug, info, instrument, warn};

use crate::config::LogConfig;
use crate::error::{LogError, Result};
use crate::log::PartitionOffsets;
use crate::offsets::OffsetStore;
use crate::partition::{Partition, PendingAppend};
use crate::topic::Topic;
use data_dir::{CLEAN_SHUTDOWN, free_bytes, lock_dir, write_clean_marker};

/// Which offset `list_offset` looks up (Kafka ListOffsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The high watermark.
    Latest,
    /// The first offset whose record timestamp is at or after this many ms since the epoch.
    Timestamp(i64),
}

/// An answer of `list_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    /// The offset.
    pub offset: i64,
    /// Timestamp of the record found by timestamp; -1 for earliest and latest.
    pub timestamp_ms: i64,
}

/// Limits of a fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchOptions {
    /// Return about this many bytes at most (at least one whole batch when any is readable).
    pub max_bytes: usize,
    /// Wait until at least this many bytes are readable...
    pub min_bytes: usize,
    /// ...or this long has passed.
    pub max_wait: Duration,
}

/// What a fetch returns: stored RecordBatch v2 bytes, ready to hand to Kafka clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Whole batches; the first may start before the requested offset.
    pub records: Bytes,
    /// Log start offset at the time of the read.
    pub log_start: i64,
    /// High watermark at the time of the read.
    pub high_watermark: i64,
}

/// The embedded durable log. See the crate docs for the on-disk layout.
pub struct LogEngine {
    dir: PathBuf,
    topics_dir: PathBuf,
    config: LogConfig,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    admin: Mutex<()>,
    pub(crate) offsets: OffsetStore,
    closed: AtomicBool,
    lock_file: Mutex<Option<File>>,
    /// Permits to decompress batches (append validation, `Log::read` decoding) on blocking
    /// threads: one per CPU, so a flood of compressed batches queues instead of taking every
    /// blocking thread and a decoder window on each.
    inflating: Arc<tokio::sync::Semaphore>,
    /// The bound on open segment files over every partition (`max_open_files`).
    pub(crate) open_files: Arc<crate::open_files::OpenFiles>,
}

/// Wall-clock time in milliseconds since the Unix epoch (0 if the clock is before it): record
/// timestamps, `hw.received_at`, retention ages.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl LogEngine {
    /// Opens the log in `data_dir` (created if missing), recovering every partition, creating the
    /// topics the config declares with a partition count, and starting the retention task when
    /// called inside a tokio runtime.
    pub fn open(data_dir: &Path, config: LogConfig) -> Result<Arc<LogEngine>> {
        crate::metrics::describe();
        let topics_dir = data_dir.join("topics");
        fs::create_dir_all(&topics_dir)
            .map_err(|e| LogError::io(format!("creating {}", topics_dir.display()), e))?;
        let lock_file = lock_dir(data_dir)?;
        let offsets = OffsetStore::open(data_dir)?;
        let open_files = crate::open_files::OpenFiles::new(config.max_open_files());
        let marker = data_dir.join(CLEAN_SHUTDOWN);
        let clean = marker.exists();
        let mut topics = BTreeMap::new();
        let entries = fs::read_dir(&topics_dir)
            .map_err(|e| LogError::io(format!("listing {}", topics_dir.display()), e))?;
        for entry in entries {
            let path = entry.map_err(|e| LogError::io("listing topics", e))?.path();
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".deleted-"))
            {
                let _ = fs::remove_dir_all(&path);
                continue;
            }
            match Topic::load(
                &path,
                |name, own| topic_settings(&config, name, own),
                clean,
                &open_files,
            )? {
                Some(topic) => {
                    topics.insert(topic.name.to_string(), Arc::new(topic));
                }
                None => {
                    warn!(dir = %path.display(), "skipping directory without valid topic metadata")
                }
            }
        }
        if clean {
            // From here on the files change: the next open must not trust the indexes blindly.
            fs::remove_file(&marker)
                .and_then(|()| File::open(data_dir)?.sync_all())
                .map_err(|e| LogError::io("removing the clean-shutdown marker", e))?;
        }
        info!(dir = %data_dir.display(), topics = topics.len(), clean, max_open_files = open_files.max(), "log opened");
        let engine = Arc::new(LogEngine {
            dir: data_dir.to_path_buf(),
            topics_dir,
            config,
            topics: RwLock::new(topics),
            admin: Mutex::new(()),
            offsets,
            closed: AtomicBool::new(false),
            lock_file: Mutex::new(Some(lock_file)),
            inflating: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
            open_files,
        });
        // In a cluster the declared topics are replicated ones, opened by the cluster.
        let declared: Vec<(String, u32)> = engine
            .config
            .topics
            .iter()
            .filter(|_| engine.config.cluster.is_none())
            .filter_map(|(name, t)| t.partitions.map(|p| (name.clone(), p)))
            .collect();
        for (name, partitions) in declared {
            if engine.partition_count(&name).is_none() {
                engine.create_topic_now(&name, partitions)?;
            }
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(retention::retention_loop(Arc::downgrade(&engine)));
        }
        Ok(engine)
    }

    /// [`LogEngine::open`] on a blocking thread: for callers inside a tokio runtime, so a long
    /// recovery does not stall a worker thread.
    pub async fn open_async(data_dir: PathBuf, config: LogConfig) -> Result<Arc<LogEngine>> {
        tokio::task::spawn_blocking(move || Self::open(&data_dir, config))
            .await
            .unwrap_or_else(|e| Err(LogError::io("opening the log", std::io::Error::other(e))))
    }

    /// The configuration the engine was opened with.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(LogError::Closed)
        } else {
            Ok(())
        }
    }

    /// The topic, if it exists.
    pub(crate) fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.check_open()?;
        self.topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| LogError::UnknownTopic(name.to_owned()))
    }

    /// The topic, created with the configured defaults when missing and auto-creation is on,
    /// unless `log.max_topics` topics exist already ([`LogError::topic_limit`], counted and
    /// created under the admin lock, so concurrent creations cannot pass it together).
    pub(crate) fn topic_or_create(&self, name: &str) -> Result<Arc<Topic>> {
        match self.topic(name) {
            Err(LogError::UnknownTopic(_)) if self.config.auto_create_topics => {
                let partitions = self.config.topic_settings(name).partitions;
                let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
                let (exists, count) = {
                    let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
                    (topics.contains_key(name), topics.len())
                };
                if !exists && count >= self.config.max_topics as usize {
                    debug!(
                        topic = name,
                        max_topics = self.config.max_topics,
                        "topic auto-creation refused by log.max_topics"
                    );
                    return Err(LogError::topic_limit(name, self.config.max_topics));
                }
                self.create_topic_locked(name, partitions)?;
                self.topic(name)
            }
            other => other,
        }
    }

    pub(crate) fn partition(&self, topic: &str, partition: i32) -> Result<Arc<Partition>> {
        self.topic(topic)?.partition(partition).cloned()
    }

    /// Creates a topic (blocking file I/O); Ok if it exists with the same partition count.
    pub fn create_topic_now(&self, name: &str, partitions: u32) -> Result<()> {
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        self.create_topic_locked(name, partitions)
    }

    /// [`LogEngine::create_topic_now`] under the admin lock.
    fn create_topic_locked(&self, name: &str, partitions: u32) -> Result<()> {
        self.check_open()?;
        if let Some(existing) = self.partition_count(name) {
            return if existing == partitions {
                Ok(())
            } else {
                Err(LogError::TopicExists(name.to_owned()))
            };
        }
        let meta = crate::topic::TopicMeta {
            partitions,
            replicated: false,
            config: None,
        };
        let topic = Topic::create(
            &self.topics_dir,
            name,
            &meta,
            self.config.topic_settings(name),
            &self.open_files,
        )?;
        info!(topic = name, partitions, "topic created");
        self.topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), Arc::new(topic));
        Ok(())
    }

    /// Creates (if missing) a topic whose partitions are Raft replicas, written only through
    /// [`LogEngine::replica`] (marked `"replicated": true` in `topic.json`, so a restart opens
    /// them in that mode). `settings` override the configured ones for this topic and are kept
    /// in `topic.json`. Idempotent: Ok if it exists, replicated, with the same partition
    /// count; `TopicExists` otherwise.
    pub async fn create_replicated_topic(
        &self,
        name: &str,
        partitions: i32,
        settings: Option<crate::config::TopicConfig>,
    ) -> Result<()> {
        let partitions = u32::try_from(partitions)
            .map_err(|_| LogError::InvalidArgument(format!("{partitions} partitions")))?;
        let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        self.check_open()?;
        if let Ok(existing) = self.topic(name) {
            return if existing.replicated && existing.partitions.len() as u32 == partitions {
                Ok(())
            } else {
                Err(LogError::TopicExists(name.to_owned()))
            };
        }
        let resolved = topic_settings(&self.config, name, settings.as_ref());
        let meta = crate::topic::TopicMeta {
            partitions,
            replicated: true,
            config: settings,
        };
        let topic = Topic::create(&self.topics_dir, name, &meta, resolved, &self.open_files)?;
        info!(topic = name, partitions, "replicated topic created");
        self.topics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), Arc::new(topic));
        Ok(())
    }

    /// The Raft-replica handle of one partition of a replicated topic (`InvalidArgument` if
    /// the topic is not replicated, `UnknownTopic`/`UnknownPartition` if it does not exist).
    pub fn replica(&self, topic: &str, partition: i32) -> Result<crate::replica::ReplicaLog> {
        let t = self.topic(topic)?;
        if !t.replicated {
            return Err(LogError::InvalidArgument(format!(
                "topic {topic} is not replicated"
            )));
        }
        Ok(crate::replica::ReplicaLog::new(
            t.partition(partition)?.clone(),
        ))
    }

    /// Deletes a topic: closes its partitions (waking waiters), removes its files and offsets.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        self.check_open()?;
        let topic = {
            let _admin = self.admin.lock().unwrap_or_else(|p| p.into_inner());
            self.topics
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(name)
                .ok_or_else(|| LogError::UnknownTopic(name.to_owned()))?
        };
        for p in &topic.partitions {
            p.mark_closed();
            p.release();
        }
        let doomed = self
            .topics_dir
            .join(format!(".deleted-{name}-{}", now_ms()));
        fs::rename(&topic.dir, &doomed)
            .map_err(|e| LogError::io(format!("deleting topic {name}"), e))?;
        tokio::task::spawn_blocking(move || fs::remove_dir_all(doomed))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            .map_err(|e| LogError::io(format!("deleting topic {name}"), e))?;
        self.offsets.remove_topic(name).await?;
        info!(topic = name, "topic deleted");
        Ok(())
    }

    /// Partition count of a topic, if it exists (never creates).
    pub fn partition_count(&self, name: &str) -> Option<u32> {
        self.topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .map(|t| t.partitions.len() as u32)
    }

    /// Names of all topics, sorted.
    pub fn topic_names(&self) -> Vec<String> {
        self.topics
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Appends raw RecordBatch v2 bytes (one or more whole batches, uncompressed or compressed,
    /// as a Kafka producer sends them) to a partition: [`LogEngine::write_batch`], then waits
    /// until durable under the topic's flush policy. Resolves with the base offset of the
    /// first batch.
    #[instrument(level = "debug", skip_all, fields(topic = %topic, partition = partition, bytes = batch.len()))]
    pub async fn append_batch(&self, topic: &str, partition: i32, batch: Bytes) -> Result<i64> {
        self.write_batch(topic, partition, batch)
            .await?
            .durable()
            .await
    }

    /// Writes raw RecordBatch v2 bytes to a partition without waiting for durability: when
    /// this resolves the batches are in the log, after every batch written before, and
    /// [`PendingAppend::durable`] waits for the fsync the flush policy asks for. A caller that
    /// must keep its appends in order (a Kafka connection with several Produces in flight)
    /// awaits this for one request before writing the next, and may wait for durability of
    /// many at once.
    ///
    /// Each batch is checked against the topic's `max_message_bytes` as received, and a
    /// compressed one may inflate to at most [`LogEngine::max_inflated_bytes`] (checked while
    /// decompressing, on a blocking thread). Base offsets are rewritten (the CRC does not
    /// cover them); idempotent producers' batches are checked by producer id, epoch and
    /// sequence, and a retried batch answers its original base offset without a second write.
    #[instrument(level = "debug", skip_all, fields(topic = %topic, partition = partition, bytes = batch.len()))]
    pub async fn write_batch(
        &self,
        topic: &str,
        partition: i32,
        batch: Bytes,
    ) -> Result<PendingAppend> {
        let p = self.topic_or_create(topic)?.partition(partition)?.clone();
        let batch = batch
            .try_into_mut()
            .unwrap_or_else(|b| BytesMut::from(&b[..]));
        let batches = if crate::partition::any_compressed(&batch) {
            let settings = p.settings.clone();
            self.run_decompressing(move || crate::partition::validate_batches(batch, &settings))
                .await??
        } else {
            crate::partition::validate_batches(batch, &p.settings)?
        };
        p.write_all(batches)
    }

    /// Most bytes a compressed batch of `topic` may decompress to:
    /// [`crate::compression::inflate_limit`] of its `max_message_bytes` (8 × by default).
    /// Whoever decompresses a batch bound for `topic` (the Kafka listener stamping a tenant's
    /// records) should stop there: `batch::validate_for_append_within`,
    /// `batch::decode_records_within`.
    pub fn max_inflated_bytes(&self, topic: &str) -> usize {
        crate::compression::inflate_limit(self.config.topic_settings(topic).max_message_bytes)
    }

    /// Runs `work` (decompressing record batches) on a blocking thread, once one of the engine's
    /// decompression permits (one per CPU) is free: CPU-heavy decoding stays off the async
    /// workers, and at most that many decoders run at once. The permit goes with the work, so
    /// a caller that gives up (a client that disconnects) does not free it before the work ends.
    pub async fn run_decompressing<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        let permit = Arc::clone(&self.inflating)
            .acquire_owned()
            .await
            .map_err(|_| LogError::Closed)?;
        tokio::task::spawn_blocking(move || {
            let done = work();
            drop(permit);
            done
        })
        .await
        .map_err(|e| LogError::io("decompressing a batch", std::io::Error::other(e)))
    }

    /// Reads stored batch bytes from the batch holding `offset`, about `max_bytes` (at least one
    /// whole batch), never past the high watermark. Does not wait.
    #[instrument(level = "debug", skip(self))]
    pub fn read_raw(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
    ) -> Result<Fetched> {
        let p = self.partition(topic, partition)?;
        let records = p.read(offset, max_bytes)?;
        let (log_start, high_watermark) = p.offsets();
        Ok(Fetched {
            records,
            log_start,
            high_watermark,
        })
    }

    /// Long-poll read: like [`LogEngine::read_raw`], but waits (without polling) until at least
    /// `min_bytes` are readable or `max_wait` passes.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        opts: FetchOptions,
    ) -> Result<Fetched> {
        let p = self.partition(topic, partition)?;
        let deadline = tokio::time::Instant::now() + opts.max_wait;
        loop {
            let seen = p.high_watermark().offset;
            let records = p.read(offset, opts.max_bytes)?;
            let now = tokio::time::Instant::now();
            if records.len() >= opts.min_bytes.max(1) || now >= deadline {
                let (log_start, high_watermark) = p.offsets();
                return Ok(Fetched {
                    records,
                    log_start,
                    high_watermark,
                });
            }
            p.wait_for_data(seen, deadline - now).await?;
        }
    }

    /// Waits until the partition's high watermark passes `offset` or `max_wait` passes; true if
    /// new data is readable.
    pub async fn wait_for_data(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait: Duration,
    ) -> Result<bool> {
        self.partition(topic, partition)?
            .wait_for_data(offset, max_wait)
            .await
    }

    /// Log start and high watermark.
    pub fn partition_offsets(&self, topic: &str, partition: i32) -> Result<PartitionOffsets> {
        let (log_start, high_watermark) = self.partition(topic, partition)?.offsets();
        Ok(PartitionOffsets {
            log_start,
            high_watermark,
        })
    }

    /// The offset the next record written to a partition gets: past every batch written,
    /// durable or not (the high watermark of [`LogEngine::partition_offsets`] may trail it
    /// until the next fsync).
    pub fn log_end_offset(&self, topic: &str, partition: i32) -> Result<i64> {
        Ok(self.partition(topic, partition)?.state().written.offset)
    }

    /// Kafka ListOffsets: earliest, latest, or the first offset at/after a timestamp (`None`
    /// when no readable record is that recent; Kafka answers offset -1 then).
    pub fn list_offset(
        &self,
        topic: &str,
        partition: i32,
        spec: OffsetSpec,
    ) -> Result<Option<ListedOffset>> {
        let p = self.partition(topic, partition)?;
        let (log_start, high_watermark) = p.offsets();
        let at = |offset| ListedOffset {
            offset,
            timestamp_ms: -1,
        };
        Ok(match spec {
            OffsetSpec::Earliest => Some(at(log_start)),
            OffsetSpec::Latest => Some(at(high_watermark)),
            OffsetSpec::Timestamp(ts) => {
                p.offset_for_timestamp(ts)?
                    .map(|(offset, timestamp_ms)| ListedOffset {
                        offset,
                        timestamp_ms,
                    })
            }
        })
    }

    /// Truncates a partition so `offset` is its next offset (for replication).
    pub fn truncate(&self, topic: &str, partition: i32, offset: i64) -> Result<()> {
        self.partition(topic, partition)?.truncate_to(offset)
    }

    /// Stores a consumer group's offset durably.
    pub async fn commit_offset(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<()> {
        self.check_open()?;
        self.partition(topic, partition)?;
        self.offsets.commit(group, topic, partition, offset).await
    }

    /// Stores many offsets of a consumer group durably with one append and one fsync:
    /// `(topic, partition, offset)` each. One result per entry, in order: unknown topics or
    /// partitions are refused (`UnknownTopic`/`UnknownPartition`), as are new entries beyond the
    /// store's limit.
    pub async fn commit_offsets(
        &self,
        group: &str,
        entries: &[(&str, i32, i64)],
    ) -> Vec<Result<()>> {
        if self.check_open().is_err() {
            return entries.iter().map(|_| Err(LogError::Closed)).collect();
        }
        let mut results: Vec<Option<Result<()>>> = Vec::with_capacity(entries.len());
        let mut valid = Vec::with_capacity(entries.len());
        for &(topic, partition, offset) in entries {
            match self.partition(topic, partition) {
                Ok(_) => {
                    valid.push((topic, partition, offset));
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        let mut written = self.offsets.commit_many(group, &valid).await.into_iter();
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| written.next().unwrap_or(Ok(()))))
            .collect()
    }

    /// A consumer group's committed offset.
    pub fn committed_offset(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        self.offsets.get(group, topic, partition)
    }

    /// Every offset a group committed: `(topic, partition, offset)`.
    pub fn committed_offsets(&self, group: &str) -> Vec<(String, i32, i64)> {
        self.offsets.group(group)
    }

    fn all_partitions(&self) -> Vec<Arc<Partition>> {
        let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
        topics
            .values()
            .flat_map(|t| t.partitions.iter().cloned())
            .collect()
    }

    /// fsyncs every partition and advances high watermarks. A partition that fails does not
    /// stop the others; the first error is returned.
    pub async fn flush(&self) -> Result<()> {
        let mut first = Ok(());
        for p in self.all_partitions() {
            if let Err(e) = p.flush().await
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }

    /// Graceful shutdown: flushes everything, closes partitions (waking long-polls), releases the
    /// directory lock. Later calls fail with [`LogError::Closed`].
    pub async fn close(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        let flushed = self.flush().await;
        self.closed.store(true, Ordering::Release);
        // No consumer-offsets compaction may replace a file once the directory is released.
        self.offsets.close().await;
        let partitions = self.all_partitions();
        for p in &partitions {
            p.mark_closed();
        }
        let sealed = flushed.and_then(|()| {
            for p in &partitions {
                p.seal_for_shutdown()?;
            }
            write_clean_marker(&self.dir)
        });
        for p in &partitions {
            p.close_files();
            p.release();
        }
        self.lock_file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        info!(dir = %self.dir.display(), clean = sealed.is_ok(), "log closed");
        sealed
    }

    /// Ok when an append would be accepted now: open, no partition failed by an fsync error,
    /// the directory writable, space free.
    pub fn check_writable_now(&self) -> Result<()> {
        self.check_open()?;
        // A partition failed by an fsync error refuses appends until restart: not ready.
        if let Some(failure) = self.all_partitions().iter().find_map(|p| p.failure()) {
            return Err(failure);
        }
        let probe = self.dir.join(".probe");
        fs::write(&probe, b"ok").map_err(|e| LogError::io("probing the data directory", e))?;
        let _ = fs::remove_file(&probe);
        let free = free_bytes(&self.dir).map_err(|e| LogError::io("checking free space", e))?;
        if free < u64::from(self.config.max_message_bytes) * 2 {
            return Err(LogError::io(
                format!("checking free space ({free} bytes left)"),
                std::io::Error::from_raw_os_error(libc::ENOSPC),
            ));
        }
        Ok(())
    }
}

/// The settings of topic `name`: `own` (given at creation and kept in `topic.json`) over the
/// configured override, over the log-wide defaults.
pub(crate) fn topic_settings(
    config: &LogConfig,
    name: &str,
    own: Option<&crate::config::TopicConfig>,
) -> crate::config::TopicSettings {
    let Some(own) = own else {
        return config.topic_settings(name);
    };
    let base = config.topics.get(name).cloned().unwrap_or_default();
    let merged = crate::config::TopicConfig {
        partitions: own.partitions.or(base.partitions),
        retention_ms: own.retention_ms.or(base.retention_ms),
        retention_bytes: own.retention_bytes.or(base.retention_bytes),
        segment_bytes: own.segment_bytes.or(base.segment_bytes),
        segment_ms: own.segment_ms.or(base.segment_ms),
        flush: own.flush.clone().or(base.flush),
        max_message_bytes: own.max_message_bytes.or(base.max_message_bytes),
    };
    let mut config = config.clone();
    config.topics.insert(name.to_owned(), merged);
    config.topic_settings(name)
}

#[path = "data_dir.rs"]
mod data_dir;

#[path = "retention.rs"]
mod retention;

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "disk_full_tests.rs"]
mod disk_full_tests;

#[cfg(test)]
#[path = "model_tests.rs"]
mod model_tests;

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod lifecycle_tests;
