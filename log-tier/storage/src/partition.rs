//! One partition: its segments, the single-writer append path with idempotence checks, segment
//! rolls, reads bounded by the high watermark, long-poll waits, retention and truncation.
//! Durability (group commit, interval flush) lives in `flush.rs`.

use std::collections::{BTreeMap, VecDeque};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;
use tracing::debug;

use crate::batch::{self, BatchHeader};
use crate::config::{FlushMode, TopicSettings};
use crate::error::{LogError, Result};
use crate::metrics as m;
use crate::producer::{Check, ProducerStates};
use crate::recovery;
use crate::segment::{PREALLOCATION_STEP, Segment, SegmentFiles};

/// Cap of one read, whatever `max_bytes` asks (Kafka's broker caps fetches similarly).
pub(crate) const MAX_READ_BYTES: usize = 64 << 20;

/// A point in the log: the offset after the last record and where its bytes end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogPoint {
    /// Offset the next record gets.
    pub offset: i64,
    /// Base offset of the segment holding the end.
    pub segment: i64,
    /// Byte position of the end in that segment.
    pub position: u64,
    /// Bumped each time un-synced writes are rolled back after a failed fsync.
    pub generation: u64,
    /// The partition is closed or deleted.
    pub closed: bool,
}

/// Mutable state under the partition mutex.
pub(crate) struct State {
    pub segments: BTreeMap<i64, Arc<Segment>>,
    pub active: Arc<Segment>,
    /// Log end (written, maybe not yet durable).
    pub written: LogPoint,
    /// Log end at the last successful fsync (the high watermark, except in `background` mode,
    /// where the high watermark follows `written`).
    pub synced: LogPoint,
    pub log_start: i64,
    pub producers: ProducerStates,
    /// Sealed segments whose tail is not yet fsynced.
    pub unsynced: Vec<Arc<Segment>>,
    /// A segment file was created since the last directory fsync.
    pub dir_dirty: bool,
    /// An interval flush is pending.
    pub flush_scheduled: bool,
    /// `truncations[g]`: the offset writes of generation `g` were rolled back to.
    pub truncations: Vec<i64>,
    /// Set when an fsync failed: what failed. Appends and flushes are refused from then on,
    /// until a restart recovers the partition from disk (`flush.rs`).
    pub failed: Option<String>,
    /// Bumped by every write and cut: an fsync has work when it differs from `synced_seq`.
    pub write_seq: u64,
    /// `write_seq` covered by the last successful fsync.
    pub synced_seq: u64,
    /// Replica mode: `on_durable` callbacks waiting for the fsync of `write_seq` (in order).
    pub callbacks: VecDeque<(u64, crate::replica::OnDurable)>,
    /// Replica mode, `every_append`: a flusher task runs and will pick up new writes.
    pub flusher_running: bool,
    /// Replica mode: the leader-epoch cache (`replica.rs`).
    pub epochs: Vec<crate::replica::EpochEntry>,
    /// Replica mode: the last purged entry and the Kafka offset after it.
    pub purged: Option<crate::replica::Boundary>,
}

/// Result of writing one batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Written {
    pub base_offset: i64,
    pub next_offset: i64,
    pub generation: u64,
    pub schedule_flush: bool,
}

/// Batches written to a partition, in the log and in order, maybe not yet durable under its
/// flush policy ([`crate::LogEngine::write_batch`]). Dropping it does not undo the write:
/// the batches become durable (and readable) with the next fsync all the same.
#[must_use = "the append is acknowledged only once `durable` resolves"]
pub struct PendingAppend {
    partition: Arc<Partition>,
    /// Never empty (`Partition::write_all`).
    written: Vec<Written>,
}

impl PendingAppend {
    /// Base offset of the first batch (the original one for a retried idempotent batch).
    pub fn base_offset(&self) -> i64 {
        self.written[0].base_offset
    }

    /// Resolves once every batch is durable under the topic's flush policy, with the base
    /// offset of the first; an error when an fsync failed and the write was rolled back, or
    /// the partition closed first.
    pub async fn durable(self) -> Result<i64> {
        for w in &self.written {
            self.partition.wait_durable(w).await?;
        }
        Ok(self.base_offset())
    }
}

impl std::fmt::Debug for PendingAppend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingAppend")
            .field("topic", &self.partition.topic)
            .field("partition", &self.partition.id)
            .field("written", &self.written)
            .finish()
    }
}

/// One partition of a topic.
pub(crate) struct Partition {
    pub topic: Arc<str>,
    pub id: i32,
    pub dir: PathBuf,
    pub settings: TopicSettings,
    pub(crate) state: Mutex<State>,
    /// The high watermark: everything below it is durable under the flush policy and readable.
    pub(crate) durable: watch::Sender<LogPoint>,
    /// Serialises fsyncs (an appender's, the interval flush's, an explicit flush).
    pub(crate) sync_lock: tokio::sync::Mutex<()>,
    /// An appender's fsync is under way (`every_append`): the others wait for its end on
    /// `sync_ends`, and one of those it did not cover runs the next (group commit).
    pub(crate) syncing: AtomicBool,
    /// Counts the ends of appenders' fsyncs (`every_append`), also failed or cancelled ones.
    pub(crate) sync_ends: watch::Sender<u64>,
    /// When the last appender's fsync started, in microseconds since `created` (the linger).
    pub(crate) last_sync_us: AtomicU64,
    /// The partition's clock origin.
    pub(crate) created: std::time::Instant,
    metrics: m::PartitionMetrics,
    /// fsyncs of segment files so far (group-commit statistics and tests).
    pub(crate) fsyncs: Arc<AtomicU64>,
    /// How segments hold their files (the engine's bound on open files).
    pub(crate) files: SegmentFiles,
    /// A Raft replica (`replica.rs`): written only through `ReplicaLog`, its high watermark
    /// moved by Raft's commit point, not by fsyncs.
    pub(crate) replicated: bool,
    /// Held while `on_durable` callbacks are taken and run, so they fire in order.
    pub(crate) firing: Mutex<()>,
}

impl Partition {
    /// Opens (recovering) or creates the partition stored in `dir`.
    pub(crate) fn open(
        topic: Arc<str>,
        id: i32,
        dir: &Path,
        settings: TopicSettings,
        clean: bool,
        replicated: bool,
        open_files: &Arc<crate::open_files::OpenFiles>,
    ) -> Result<Arc<Self>> {
        let files = SegmentFiles {
            open: open_files.clone(),
            fsync_on_close: settings.flush.mode != FlushMode::Os,
        };
        let recovered = recovery::recover(dir, settings.index_interval_bytes, clean, &files)?;
        let segments: BTreeMap<i64, Arc<Segment>> = recovered
            .segments
            .iter()
            .map(|s| (s.base_offset, s.clone()))
            .collect();
        let active = recovered
            .segments
            .last()
            .cloned()
            .ok_or_else(|| LogError::corrupt(dir.display().to_string(), "no segment"))?;
        let log_start = recovered.segments.first().map_or(0, |s| s.base_offset);
        let end = LogPoint {
            offset: active.next_offset(),
            segment: active.base_offset,
            position: active.size(),
            generation: 0,
            closed: false,
        };
        metrics::gauge!(m::SEGMENTS).increment(segments.len() as f64);
        let (epochs, purged) = if replicated {
            crate::replica::recover_meta(dir, &recovered.segments)?
        } else {
            (Vec::new(), None)
        };
        let log_start = purged.map_or(log_start, |b| b.next_offset.max(log_start));
        let state = State {
            segments,
            active,
            written: end,
            synced: end,
            log_start,
            producers: recovered.producers,
            unsynced: Vec::new(),
            dir_dirty: true,
            flush_scheduled: false,
            truncations: Vec::new(),
            failed: None,
            write_seq: 0,
            synced_seq: 0,
            callbacks: VecDeque::new(),
            flusher_running: false,
            epochs,
            purged,
        };
        // A replica's high watermark starts at its log start: only Raft's commit point (the
        // entries it applies again after a restart) makes entries readable.
        let hw = if replicated {
            LogPoint {
                offset: state.log_start,
                segment: state.segments.keys().next().copied().unwrap_or(end.segment),
                position: 0,
                ..end
            }
        } else {
            end
        };
        Ok(Arc::new(Self {
            id,
            dir: dir.to_path_buf(),
            settings,
            state: Mutex::new(state),
            durable: watch::Sender::new(hw),
            sync_lock: tokio::sync::Mutex::new(()),
            syncing: AtomicBool::new(false),
            sync_ends: watch::Sender::new(0),
            last_sync_us: AtomicU64::new(0),
            created: std::time::Instant::now(),
            metrics: m::PartitionMetrics::new(&topic),
            fsyncs: Arc::new(AtomicU64::new(0)),
            files,
            topic,
            replicated,
            firing: Mutex::new(()),
        }))
    }

    /// Locks the state (a poisoned lock is recovered: every update is completed before unlock
    /// or leaves the previous consistent state).
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current high watermark point.
    pub(crate) fn high_watermark(&self) -> LogPoint {
        *self.durable.borrow()
    }

    /// `(log_start, high_watermark)`.
    pub(crate) fn offsets(&self) -> (i64, i64) {
        let log_start = self.state().log_start;
        (log_start, self.high_watermark().offset)
    }

    /// Writes batches checked by [`validate_batches`] (a Produce request's records for one
    /// partition), rewriting base offsets, without waiting for durability: the batches are in
    /// the log, in order, when this returns; [`PendingAppend::durable`] then waits for them.
    pub(crate) fn write_all(
        self: &Arc<Self>,
        batches: Vec<(BytesMut, BatchHeader)>,
    ) -> Result<PendingAppend> {
        if batches.is_empty() {
            return Err(LogError::InvalidBatch("no record batch".to_owned()));
        }
        let mut written = Vec::with_capacity(batches.len());
        for (batch, header) in batches {
            written.push(self.write(batch, header)?);
        }
        Ok(PendingAppend {
            partition: self.clone(),
            written,
        })
    }

    /// Writes a batch already validated (or encoded by us) without waiting for durability.
    /// In interval mode, the first write after a flush schedules the next flush.
    pub(crate) fn write(self: &Arc<Self>, batch: BytesMut, header: BatchHeader) -> Result<Written> {
        if self.replicated {
            return Err(refused_replicated(&self.topic, self.id));
        }
        let written = self.write_locked(batch, header)?;
        if written.schedule_flush {
            self.spawn_interval_flush();
        }
        Ok(written)
    }

    fn write_locked(&self, mut batch: BytesMut, header: BatchHeader) -> Result<Written> {
        let max = self.settings.max_message_bytes as usize;
        if batch.len() > max {
            return Err(LogError::MessageTooLarge {
                size: batch.len(),
                max,
            });
        }
        let mut st = self.state();
        self.check_writable(&st)?;
        if let Check::Duplicate {
            base_offset,
            next_offset,
        } = st.producers.check(&header)?
        {
            metrics::counter!(m::DUPLICATES_TOTAL).increment(1);
            return Ok(Written {
                base_offset,
                next_offset,
                generation: st.written.generation,
                schedule_flush: false,
            });
        }
        let (header, schedule_flush) = self.store_locked(&mut st, &mut batch, header)?;
        Ok(Written {
            base_offset: header.base_offset,
            next_offset: header.next_offset(),
            generation: st.written.generation,
            schedule_flush,
        })
    }

    /// Refuses writes to a closed or failed partition.
    pub(crate) fn check_writable(&self, st: &State) -> Result<()> {
        if st.written.closed {
            return Err(LogError::Closed);
        }
        if let Some(failure) = &st.failed {
            return Err(crate::flush::failed_error(failure));
        }
        Ok(())
    }

    /// Stores one checked batch at the log end under the state lock: rolls the segment if
    /// needed, patches the base offset, writes, does the bookkeeping. Returns the stored header
    /// and whether an interval flush must be scheduled.
    pub(crate) fn store_locked(
        &self,
        st: &mut State,
        batch: &mut BytesMut,
        header: BatchHeader,
    ) -> Result<(BatchHeader, bool)> {
        let len = batch.len() as u64;
        if self.should_roll(st, len, header.last_offset_delta) {
            self.roll(st)?;
        }
        let base = st.written.offset;
        batch::set_base_offset(batch, base);
        let header = BatchHeader {
            base_offset: base,
            ..header
        };
        let position = match st
            .active
            .append(batch, &header, self.settings.index_interval_bytes)
        {
            Ok(p) => p,
            Err(e) => {
                if matches!(e, LogError::DiskFull { .. }) {
                    metrics::counter!(m::DISK_FULL_TOTAL).increment(1);
                }
                return Err(e);
            }
        };
        let schedule_flush = self.note_written(st, &header, position, len);
        self.preallocate_ahead(st);
        Ok((header, schedule_flush))
    }

    /// Starts filling the active segment's tail with zeros on a blocking thread when
    /// [`PREALLOCATION_STEP`] of `log.preallocate_bytes` (or half, when smaller) is used (one
    /// job at a time). Not in `os` mode, which never fsyncs, nor without a runtime.
    fn preallocate_ahead(&self, st: &State) {
        let ahead = self.settings.preallocate_bytes;
        if ahead == 0 || self.settings.flush.mode == FlushMode::Os {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let low = ahead.saturating_sub(PREALLOCATION_STEP).max(ahead / 2);
        if !st.active.claim_preallocation(low) {
            return;
        }
        let segment = st.active.clone();
        let cap = self.settings.segment_bytes;
        let (topic, id) = (self.topic.clone(), self.id);
        runtime.spawn_blocking(move || match segment.preallocate(ahead, cap) {
            Ok(bytes) => metrics::counter!(m::PREALLOCATED_BYTES_TOTAL).increment(bytes),
            // Appends extend the file themselves meanwhile: slower fsyncs, nothing lost.
            Err(e) => debug!(topic = %topic, partition = id, error = %e, "filling a segment's tail ahead of appends failed"),
        });
    }

    /// Bookkeeping after a batch hit the file: producer state, log end, metrics, and the
    /// flush policy's next step. Returns true when an interval flush must be scheduled.
    fn note_written(&self, st: &mut State, header: &BatchHeader, position: u64, len: u64) -> bool {
        if !header.is_internal() {
            st.producers.record(header, crate::engine::now_ms());
        }
        st.written.offset = header.next_offset();
        st.written.position = position;
        st.written.segment = st.active.base_offset;
        st.write_seq += 1;
        self.metrics.appends.increment(1);
        self.metrics.records.increment(header.records_count as u64);
        self.metrics.append_bytes.increment(len);
        debug!(topic = %self.topic, partition = self.id, base = header.base_offset, records = header.records_count, "appended batch");
        match self.settings.flush.mode {
            // A replica's high watermark moves only with Raft's commit point.
            FlushMode::Os if self.replicated => false,
            FlushMode::Background if self.replicated => {
                let schedule = !st.flush_scheduled;
                st.flush_scheduled = true;
                schedule
            }
            FlushMode::Os => {
                let end = st.written;
                self.durable.send_modify(|d| *d = end);
                false
            }
            FlushMode::Background => {
                let end = st.written;
                self.durable.send_modify(|d| *d = end);
                let schedule = !st.flush_scheduled;
                st.flush_scheduled = true;
                schedule
            }
            FlushMode::Interval if !st.flush_scheduled => {
                st.flush_scheduled = true;
                true
            }
            _ => false,
        }
    }

    fn should_roll(&self, st: &State, len: u64, last_delta: i32) -> bool {
        let active = &st.active;
        // Never roll a segment without a data record: the next one would get the same base
        // offset, hence the same file name (zero-width internal batches take no offset).
        if st.written.offset == active.base_offset {
            return false;
        }
        let size = active.size();
        let rel_end = st.written.offset - active.base_offset + i64::from(last_delta);
        let (base_index, next_index) = {
            let m = active.meta();
            (m.base_index, m.next_index)
        };
        size + len > self.settings.segment_bytes
            || active.age() >= Duration::from_millis(self.settings.segment_ms)
            || rel_end >= i64::from(u32::MAX)
            || next_index - base_index >= u64::from(u32::MAX)
    }

    /// Seals the active segment (index files, producer snapshot) and starts a new one.
    fn roll(&self, st: &mut State) -> Result<()> {
        let next = st.written.offset;
        st.active.seal()?;
        st.active.write_indexes()?;
        st.producers.write_snapshot(&self.dir, next)?;
        let segment = Arc::new(Segment::create(
            &self.dir,
            next,
            st.active.next_index(),
            &self.files,
        )?);
        let old = std::mem::replace(&mut st.active, segment.clone());
        if self.settings.flush.mode == FlushMode::Os {
            old.close_file();
        } else {
            st.unsynced.push(old);
        }
        st.segments.insert(next, segment);
        st.dir_dirty = true;
        st.written.segment = next;
        st.written.position = 0;
        metrics::gauge!(m::SEGMENTS).increment(1.0);
        debug!(topic = %self.topic, partition = self.id, base = next, "rolled segment");
        Ok(())
    }

    /// Reads whole stored batches from the one holding `offset`, about `max_bytes` (at least
    /// one batch), never past the high watermark. Empty at the high watermark.
    pub(crate) fn read(&self, offset: i64, max_bytes: usize) -> Result<Bytes> {
        let hw = self.high_watermark();
        let (log_start, segment, written) = {
            let st = self.state();
            (st.log_start, segment_at(&st, offset), st.written.offset)
        };
        if hw.closed {
            return Err(LogError::Closed);
        }
        // A replica's high watermark may trail its log end (entries not committed yet, or
        // not re-applied since a restart): a reader between them waits, as on Kafka.
        let end = if self.replicated { written } else { hw.offset };
        if offset < log_start || offset > end.max(hw.offset) {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start,
                high_watermark: hw.offset,
            });
        }
        let Some(segment) = segment.filter(|_| offset < hw.offset) else {
            return Ok(Bytes::new());
        };
        let limit = if segment.base_offset == hw.segment {
            hw.position
        } else {
            segment.size()
        };
        let (sealed, end) = if segment.base_offset == hw.segment {
            (false, hw.offset)
        } else {
            (true, segment.next_offset())
        };
        let resume = |pos| segment.resume_point(offset, pos, limit, end, sealed);
        let replicated = self.replicated;
        let position = match segment.find_position(offset, limit).and_then(|p| {
            p.filter(|_| replicated)
                .map(|p| skip_internal(&segment, p, limit))
                .transpose()
                .map(|skipped| skipped.or(p))
        }) {
            Ok(Some(position)) if position < limit => position,
            Ok(_) => return Ok(Bytes::new()),
            Err(e @ LogError::Corrupt { .. }) => return Err(e.resuming_at(resume(None))),
            Err(e) => return Err(e),
        };
        let bytes = match segment.read_batches(position, limit, max_bytes.min(MAX_READ_BYTES)) {
            // A Kafka read stops before a Raft-internal batch; the next read skips it.
            Ok(bytes) if replicated => bytes.slice(..batch::data_prefix_len(&bytes)),
            Ok(bytes) => bytes,
            Err(e @ LogError::Corrupt { .. }) => {
                return Err(e.resuming_at(resume(Some(position))));
            }
            Err(e) => return Err(e),
        };
        self.metrics.read_bytes.increment(bytes.len() as u64);
        Ok(bytes)
    }

    /// Why appends are refused, if an fsync failed (see `flush.rs`).
    pub(crate) fn failure(&self) -> Option<LogError> {
        self.state()
            .failed
            .as_deref()
            .map(crate::flush::failed_error)
    }

    /// Waits until the high watermark passes `offset`, up to `max_wait`. True if it did.
    pub(crate) async fn wait_for_data(&self, offset: i64, max_wait: Duration) -> Result<bool> {
        let mut rx = self.durable.subscribe();
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            let hw = *rx.borrow_and_update();
            if hw.closed {
                return Err(LogError::Closed);
            }
            if hw.offset > offset {
                return Ok(true);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(LogError::Closed),
                Err(_) => return Ok(false),
            }
        }
    }

    /// `(offset, timestamp)` of the first readable record with a timestamp `>= timestamp_ms`.
    pub(crate) fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<(i64, i64)>> {
        let hw = self.high_watermark();
        let segments: Vec<Arc<Segment>> = self.state().segments.values().cloned().collect();
        for segment in segments {
            if segment.base_offset >= hw.offset || segment.meta().max_timestamp < timestamp_ms {
                continue;
            }
            let limit = if segment.base_offset == hw.segment {
                hw.position
            } else {
                segment.size()
            };
            if let Some(found) = segment.find_timestamp(timestamp_ms, limit)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Truncates the log so `offset` is the next offset (rounded down to a batch boundary).
    /// Readers must not be past it: the high watermark is moved back too.
    /// Appenders still waiting for offsets past the cut get an error.
    pub(crate) fn truncate_to(&self, offset: i64) -> Result<()> {
        if self.replicated {
            return Err(refused_replicated(&self.topic, self.id));
        }
        let mut st = self.state();
        if offset >= st.written.offset {
            return Ok(());
        }
        let truncated = self.truncate_locked(&mut st, offset);
        let cut = st.written.offset;
        self.new_generation(&mut st, cut);
        truncated
    }

    /// After writes past `cut` were lost: bump the generation, remember where the old one was
    /// cut, move the high watermark back if needed and wake every waiter.
    pub(crate) fn new_generation(&self, st: &mut State, cut: i64) {
        let generation = st.written.generation;
        st.truncations.push(cut);
        st.written.generation = generation + 1;
        let written = st.written;
        self.durable.send_modify(|d| {
            if d.offset > written.offset {
                *d = written;
            }
            d.generation = generation + 1;
            d.closed |= written.closed;
        });
    }

    /// Cuts the log at `offset` under the state lock.
    pub(crate) fn truncate_locked(&self, st: &mut State, offset: i64) -> Result<()> {
        if offset >= st.written.offset {
            return Ok(());
        }
        let keep = st
            .segments
            .range(..=offset.max(st.log_start))
            .next_back()
            .map(|(_, s)| s.clone())
            .ok_or_else(|| {
                LogError::InvalidArgument(format!("offset {offset} is before the log start"))
            })?;
        let size = keep.size();
        let mut cut = size;
        keep.scan_headers(0, size, |h, pos| {
            if h.next_offset() > offset {
                cut = pos;
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        })?;
        self.cut_at(st, &keep, cut)
    }

    /// Cuts the log at byte `position` of `keep` (a batch boundary): later segments go, `keep`
    /// becomes the active segment, the producer state is rebuilt as of the cut.
    pub(crate) fn cut_at(&self, st: &mut State, keep: &Arc<Segment>, position: u64) -> Result<()> {
        let later: Vec<i64> = st
            .segments
            .range(keep.base_offset + 1..)
            .map(|(&b, _)| b)
            .collect();
        for base in later {
            if let Some(s) = st.segments.remove(&base) {
                s.delete_files()?;
                metrics::gauge!(m::SEGMENTS).decrement(1.0);
            }
        }
        st.unsynced.retain(|s| s.base_offset < keep.base_offset);
        let mut next_offset = keep.base_offset;
        let mut next_index = keep.base_index();
        let mut max_ts = i64::MIN;
        keep.scan_headers(0, position, |h, _| {
            next_offset = h.next_offset();
            next_index += 1;
            if !h.is_internal() {
                max_ts = max_ts.max(h.max_timestamp);
            }
            ControlFlow::Continue(())
        })?;
        keep.truncate(position, next_offset, next_index, max_ts)?;
        // A snapshot taken past the cut would bring back forgotten batches on recovery.
        if ProducerStates::read_snapshot(&self.dir).is_some_and(|(at, _)| at > next_offset) {
            let _ = std::fs::remove_file(self.dir.join(crate::producer::SNAPSHOT_FILE));
        }
        // The state before the cut, rebuilt as recovery does (snapshot, then the headers after
        // it): dropping what was past the cut cannot bring back the earlier batches of a
        // producer whose kept ones were all cut, nor its epoch before them.
        let segments: Vec<Arc<Segment>> = st.segments.values().cloned().collect();
        st.producers = crate::recovery::rebuild_producers(&self.dir, &segments)?;
        st.active = keep.clone();
        st.written.offset = next_offset;
        st.written.segment = keep.base_offset;
        st.written.position = position;
        st.write_seq += 1;
        Ok(())
    }

    /// For a clean shutdown (after a flush): writes the active segment's index files and a
    /// producer snapshot at the log end, so the next open need not scan the tail.
    pub(crate) fn seal_for_shutdown(&self) -> Result<()> {
        let st = self.state();
        st.active.seal()?;
        st.active.write_indexes()?;
        st.producers.write_snapshot(&self.dir, st.written.offset)
    }

    /// Number of segments.
    pub(crate) fn segment_count(&self) -> usize {
        self.state().segments.len()
    }

    /// Marks the partition closed and wakes every waiter.
    pub(crate) fn mark_closed(&self) {
        self.durable.send_modify(|d| d.closed = true);
        self.state().written.closed = true;
    }

    /// Closes the segments' files (after the engine's final flush): tasks still holding the
    /// partition keep no descriptor.
    pub(crate) fn close_files(&self) {
        for segment in self.state().segments.values() {
            segment.close_file();
        }
    }

    /// Forgets this partition's segments in the gauge (topic deleted or engine closed).
    pub(crate) fn release(&self) {
        metrics::gauge!(m::SEGMENTS).decrement(self.segment_count() as f64);
    }
}

/// The first position at or after `position` (a batch boundary below `limit`) that does not
/// hold a Raft-internal batch; `limit` when none does.
fn skip_internal(segment: &Segment, position: u64, limit: u64) -> Result<u64> {
    let mut at = position;
    while at + batch::HEADER_LEN as u64 <= limit {
        let head = segment.read(at, batch::HEADER_LEN)?;
        match BatchHeader::parse(&head) {
            Some(h) if h.is_internal() && h.check().is_ok() => at += h.total_len() as u64,
            _ => return Ok(at),
        }
    }
    Ok(limit.min(at))
}

/// The error the Kafka append path answers for a replicated partition.
pub(crate) fn refused_replicated(topic: &str, partition: i32) -> LogError {
    LogError::InvalidArgument(format!(
        "partition {partition} of topic {topic} is a Raft replica: it is written through Raft, not appended to directly"
    ))
}

/// The segment to read `offset` from: the one holding it, or, when `offset` falls in a hole
/// (records set aside by recovery, see `recovery.rs`), the first one after it.
fn segment_at(st: &State, offset: i64) -> Option<Arc<Segment>> {
    st.segments
        .range(..=offset)
        .next_back()
        .map(|(_, s)| s)
        .filter(|s| Arc::ptr_eq(s, &st.active) || offset < s.next_offset())
        .or_else(|| st.segments.range(offset + 1..).next().map(|(_, s)| s))
        .cloned()
}

/// Splits raw RecordBatch v2 bytes (one or more whole batches) and validates each for a topic
/// with `settings`: no batch larger than `max_message_bytes` as received, and a compressed
/// one inflating to at most [`crate::compression::inflate_limit`] of it. Every batch is
/// validated before any is written. CPU-heavy for compressed batches: the engine runs it on a
/// blocking thread.
pub(crate) fn validate_batches(
    mut records: BytesMut,
    settings: &TopicSettings,
) -> Result<Vec<(BytesMut, BatchHeader)>> {
    let max = settings.max_message_bytes as usize;
    let max_inflated = crate::compression::inflate_limit(settings.max_message_bytes);
    let mut batches = Vec::new();
    while !records.is_empty() {
        let len = BatchHeader::parse(&records)
            .map(|h| h.total_len())
            .filter(|&len| len <= records.len())
            .ok_or_else(|| LogError::InvalidBatch("truncated record batch".to_owned()))?;
        if len > max {
            return Err(LogError::MessageTooLarge { size: len, max });
        }
        let batch = records.split_to(len);
        let header = batch::validate_for_append_within(&batch, max_inflated)?;
        batches.push((batch, header));
    }
    Ok(batches)
}

/// True when any of the whole batches in `records` is compressed (validating it then means
/// decompressing it).
pub(crate) fn any_compressed(records: &[u8]) -> bool {
    let mut rest = records;
    while let Some(h) = BatchHeader::parse(rest) {
        if h.compression() != 0 {
            return true;
        }
        match rest.get(h.total_len()..) {
            Some(next) if h.total_len() > 0 => rest = next,
            _ => return false,
        }
    }
    false
}
