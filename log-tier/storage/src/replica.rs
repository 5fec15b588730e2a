//! Raft-replica storage of one partition (`ReplicaLog`): each Raft log entry is exactly one
//! RecordBatch v2 in the partition's segments (no second log). Data entries are client
//! batches whose base offset and `partitionLeaderEpoch` (= term) are patched on append;
//! blank and membership entries are zero-width control batches (`batch::encode_internal`)
//! that take no Kafka offset. The Raft index of a batch is its segment's base index plus its
//! ordinal in the segment. Beside the segments: the leader-epoch cache
//! (`leader-epoch-checkpoint`) and the purge boundary (`boundary`). See
//! `docs/design/replication.md` sections 2.1-2.5.

use std::fs::{self, File};
use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::batch::{self, BatchHeader, HEADER_LEN, InternalKind};
use crate::config::FlushMode;
use crate::error::{LogError, Result};
use crate::metrics as m;
use crate::partition::{LogPoint, Partition, State};
use crate::producer::ProducerStates;
use crate::segment::Segment;
#[cfg(test)]
pub(crate) use files::EPOCH_FILE;
use files::{BoundaryRecord, trim_epochs, write_boundary, write_epochs};
pub(crate) use files::{read_boundary, recover_meta};

/// Called once when an append is durable under the topic's flush policy (or with the error
/// of the fsync that failed).
pub type OnDurable = Box<dyn FnOnce(Result<()>) + Send + 'static>;

/// What a Raft entry holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryPayload {
    /// A leader's blank entry.
    Blank,
    /// A membership change, opaque to the log.
    Membership(Bytes),
    /// One whole RecordBatch v2 from a client; its base offset and leader epoch are patched.
    Data(BytesMut),
}

/// A Raft entry to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Raft log index (dense from 0).
    pub index: u64,
    /// Raft term (at most `i32::MAX`: it is stored as the batch's leader epoch).
    pub term: u64,
    /// What it holds.
    pub payload: EntryPayload,
}

/// Kind of a stored entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A blank entry.
    Blank,
    /// A membership entry.
    Membership,
    /// A data batch.
    Data,
}

/// An entry read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    /// Raft log index.
    pub index: u64,
    /// Raft term (the batch's `partitionLeaderEpoch`).
    pub term: u64,
    /// What it holds.
    pub kind: EntryKind,
    /// Kafka offset of its first record (for an internal entry: of the next data record).
    pub base_offset: i64,
    /// Kafka offset after its last record (equal to `base_offset` for an internal entry).
    pub next_offset: i64,
    /// The whole stored batch.
    pub bytes: Bytes,
}

impl StoredEntry {
    /// The payload of a membership entry; `None` for other kinds.
    pub fn membership(&self) -> Option<Bytes> {
        match batch::parse_internal(&self.bytes) {
            Some((InternalKind::Membership, payload)) => Some(payload),
            _ => None,
        }
    }
}

/// A Raft log id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntryId {
    /// Raft log index.
    pub index: u64,
    /// Raft term.
    pub term: u64,
}

/// What a purge or a snapshot install leaves behind: the last entry gone and the Kafka offset
/// after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Boundary {
    /// The last purged entry.
    pub last: EntryId,
    /// The Kafka offset after it.
    pub next_offset: i64,
}

/// The state of a replica's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaLogState {
    /// The last purged entry, if any.
    pub purged: Option<EntryId>,
    /// The last entry (the purged one when none follows), if any.
    pub last: Option<EntryId>,
    /// The Kafka offset the next data record gets.
    pub next_offset: i64,
    /// The high watermark: the Kafka offset after the last committed entry.
    pub committed_offset: i64,
}

/// One line of the leader-epoch cache: the first entry of a term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    /// The term.
    pub term: u64,
    /// Raft index of its first entry.
    pub first_index: u64,
    /// Kafka offset at its first entry.
    pub first_offset: i64,
}

/// The Raft-replica handle of one partition of a replicated topic
/// ([`crate::LogEngine::replica`]). Cheap to clone.
#[derive(Clone)]
pub struct ReplicaLog {
    partition: Arc<Partition>,
}

impl std::fmt::Debug for ReplicaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaLog")
            .field("topic", &self.partition.topic)
            .field("partition", &self.partition.id)
            .finish()
    }
}

impl ReplicaLog {
    /// The handle of `partition` (a partition of a replicated topic).
    pub(crate) fn new(partition: Arc<Partition>) -> Self {
        Self { partition }
    }

    /// The partition's topic.
    pub fn topic(&self) -> &str {
        &self.partition.topic
    }

    /// The partition's number.
    pub fn partition_id(&self) -> i32 {
        self.partition.id
    }

    /// Checks a producer batch (as a producer sent it) before the leader proposes it: the
    /// offsets the first copy got when it repeats a batch this log holds from the same
    /// idempotent producer (a retry), `None` for a new batch or one of no idempotent producer,
    /// and the producer errors a single node answers (fenced epoch, out-of-order sequence).
    /// The leader serialises its idempotent proposals so a retry sees the first copy here.
    pub fn duplicate_of(&self, records: &[u8]) -> Result<Option<(i64, i64)>> {
        let header = BatchHeader::parse(records)
            .ok_or_else(|| LogError::InvalidBatch("not a record batch".to_owned()))?;
        if header.producer_id < 0 {
            return Ok(None);
        }
        match self.partition.state().producers.check(&header)? {
            crate::producer::Check::Duplicate {
                base_offset,
                next_offset,
            } => Ok(Some((base_offset, next_offset))),
            _ => Ok(None),
        }
    }

    /// Waits until the high watermark (the commit point) reaches `next_offset`, up to
    /// `max_wait`; true if it did. A leader answers a retried batch with its first copy's
    /// offsets only once that copy is committed.
    pub async fn wait_committed(
        &self,
        next_offset: i64,
        max_wait: std::time::Duration,
    ) -> Result<bool> {
        if next_offset <= 0 {
            return Ok(true);
        }
        self.partition
            .wait_for_data(next_offset - 1, max_wait)
            .await
    }

    /// Purge point, last entry, next Kafka offset and high watermark.
    pub fn state(&self) -> ReplicaLogState {
        let committed_offset = self.partition.high_watermark().offset;
        let st = self.partition.state();
        let purged = st.purged.map(|b| b.last);
        let next = st.active.next_index();
        let first = first_index(&st);
        let last = if next > first {
            Some(EntryId {
                index: next - 1,
                term: term_at(&st, next - 1),
            })
        } else {
            purged
        };
        ReplicaLogState {
            purged,
            last,
            next_offset: st.written.offset,
            committed_offset,
        }
    }

    /// Writes contiguous entries (the first one's index is the log's next index: 0 on an
    /// empty log, the purged index + 1 after a purge) without fsync; returns once they are
    /// readable. `on_durable` runs exactly once, after everything submitted so far (this call
    /// included) is durable under the topic's flush policy: `every_append` after the next
    /// fsync (a flusher task shared by concurrent appends: group commit; append never
    /// waits), `interval` at the next interval fsync, `os`/`background` right after the
    /// write. Callbacks fire in submission order and must not call back into this log. A
    /// failed fsync calls them with `Err` and fails the partition (no rollback). When
    /// `append` itself fails, `on_durable` is dropped uncalled. Data batches update the
    /// producer state (no duplicate check: the leader dedups before proposing).
    pub fn append(&self, entries: Vec<Entry>, on_durable: OnDurable) -> Result<()> {
        let p = &self.partition;
        let mut st = p.state();
        p.check_writable(&st)?;
        let checked = check_entries(p, &st, entries)?;
        let mut schedule = false;
        let mut written = Ok(());
        for (entry, header) in checked {
            match write_entry(p, &mut st, entry, header) {
                Ok(s) => schedule |= s,
                Err(e) => {
                    written = Err(e);
                    break;
                }
            }
        }
        if let Err(e) = written {
            drop(st);
            if schedule {
                p.spawn_interval_flush();
            }
            return Err(e);
        }
        let seq = st.write_seq;
        st.callbacks.push_back((seq, on_durable));
        let mode = p.settings.flush.mode;
        let start_flusher = mode == FlushMode::EveryAppend && !st.flusher_running;
        if start_flusher {
            st.flusher_running = true;
        }
        drop(st);
        if schedule {
            p.spawn_interval_flush();
        }
        match mode {
            FlushMode::Os | FlushMode::Background => p.fire_callbacks(None),
            FlushMode::EveryAppend if start_flusher => spawn_flusher(p.clone()),
            _ => {}
        }
        Ok(())
    }

    /// Stored entries with an index in `range`, in order, stopping once `max_bytes` are
    /// collected (at least one when the range starts inside the log). Error if `range.start`
    /// is purged.
    pub fn entries(&self, range: Range<u64>, max_bytes: usize) -> Result<Vec<StoredEntry>> {
        let segments = {
            let st = self.partition.state();
            let first = first_index(&st);
            if range.start < first {
                return Err(LogError::InvalidArgument(format!(
                    "entry {} is purged (the log starts at {first})",
                    range.start
                )));
            }
            let segments: Vec<(Arc<Segment>, u64)> = st
                .segments
                .values()
                .filter(|s| s.next_index() > range.start)
                .map(|s| (s.clone(), s.size()))
                .collect();
            segments
        };
        let mut out = Vec::new();
        let mut collected = 0usize;
        for (segment, size) in segments {
            let mut index = range.start.max(segment.base_index());
            if index >= range.end {
                break;
            }
            let Some(mut pos) = segment.find_index_position(index, size)? else {
                continue;
            };
            while pos < size && index < range.end {
                let want = max_bytes
                    .saturating_sub(collected)
                    .clamp(1, crate::partition::MAX_READ_BYTES);
                let bytes = segment.read_batches(pos, size, want)?;
                for (h, b) in batch::split_batches(bytes) {
                    if index >= range.end {
                        break;
                    }
                    pos += b.len() as u64;
                    collected += b.len();
                    out.push(stored_entry(index, &h, b));
                    index += 1;
                    if collected >= max_bytes {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Keeps the entries up to and including `last` (`None`: removes everything after the
    /// purge point). The producer state is rebuilt as of the cut, the epoch cache cut, and the
    /// high watermark is never left above the cut. Callbacks still pending fire at the next
    /// fsync (which also makes the cut durable).
    pub fn truncate_after(&self, last: Option<u64>) -> Result<()> {
        let p = &self.partition;
        let mut st = p.state();
        let first = first_index(&st);
        let cut = last.map_or(first, |i| i.saturating_add(1));
        if cut < first {
            return Err(LogError::InvalidArgument(format!(
                "cannot truncate after {cut}: entries before {first} are purged"
            )));
        }
        if cut >= st.active.next_index() {
            return Ok(());
        }
        let keep = st
            .segments
            .values()
            .rev()
            .find(|s| s.base_index() <= cut)
            .cloned()
            .ok_or_else(|| LogError::InvalidArgument(format!("no segment holds entry {cut}")))?;
        let position = keep.find_index_position(cut, keep.size())?.ok_or_else(|| {
            LogError::corrupt(
                keep.path("log").display().to_string(),
                format!("entry {cut} not found"),
            )
        })?;
        p.cut_at(&mut st, &keep, position)?;
        // Durable before the epoch cache forgets the cut terms: a cut lost in a crash would
        // bring back entries the cache no longer describes.
        keep.sync()
            .and_then(|()| File::open(&p.dir)?.sync_all())
            .map_err(|e| LogError::io(format!("syncing {}", keep.path("log").display()), e))?;
        let before = st.epochs.len();
        st.epochs.retain(|e| e.first_index < cut);
        if st.epochs.len() != before {
            write_epochs(&p.dir, &st.epochs)?;
        }
        let written = st.written;
        drop(st);
        p.durable.send_modify(|d| {
            if (d.segment, d.position) > (written.segment, written.position)
                || d.offset > written.offset
            {
                *d = LogPoint {
                    closed: d.closed,
                    generation: d.generation,
                    ..written
                };
            }
        });
        Ok(())
    }

    /// Deletes whole sealed segments whose entries are all at or before `boundary.last` and
    /// durably records the boundary (`<partition>/boundary`, written before anything is
    /// deleted). When `boundary.last` is at or past the log end (a lagging follower installing
    /// a snapshot), deletes every segment and starts an empty one at `boundary.next_offset`
    /// with base index `boundary.last.index + 1`. The log start (Raft and Kafka) moves to the
    /// boundary. A boundary at or before the current purge point changes nothing.
    pub fn purge(&self, boundary: Boundary) -> Result<()> {
        let p = &self.partition;
        let mut st = p.state();
        if st
            .purged
            .is_some_and(|b| b.last.index >= boundary.last.index)
        {
            return Ok(());
        }
        let after = boundary.last.index + 1;
        if after >= st.active.next_index() {
            purge_all(p, &mut st, boundary)?;
        } else {
            let doomed: Vec<Arc<Segment>> = st
                .segments
                .values()
                .filter(|s| !Arc::ptr_eq(s, &st.active) && s.next_index() <= after)
                .cloned()
                .collect();
            let kept = st
                .segments
                .values()
                .find(|s| s.next_index() > after)
                .cloned()
                .unwrap_or_else(|| st.active.clone());
            write_boundary(
                &p.dir,
                &BoundaryRecord {
                    boundary,
                    first_segment: kept.base_offset,
                    first_index: kept.base_index(),
                },
            )?;
            for segment in doomed {
                st.segments.remove(&segment.base_offset);
                st.unsynced.retain(|s| s.base_offset != segment.base_offset);
                segment.delete_files()?;
                metrics::counter!(m::SEGMENTS_DELETED_TOTAL).increment(1);
                metrics::gauge!(m::SEGMENTS).decrement(1.0);
            }
            st.log_start = kept.base_offset.max(boundary.next_offset);
            trim_epochs(&mut st.epochs, boundary);
            write_epochs(&p.dir, &st.epochs)?;
        }
        st.purged = Some(boundary);
        Ok(())
    }

    /// The last Raft index retention lets go at `now_ms` (the partition's `retention_ms` and
    /// `retention_bytes`): the end of the run of oldest sealed, committed segments past
    /// retention, or `None` when none is. Purging up to it through Raft deletes those segments
    /// (`purge`); retention never deletes a replica's segments itself.
    pub fn retention_point(&self, now_ms: i64) -> Option<u64> {
        let p = &self.partition;
        let hw = p.high_watermark();
        let st = p.state();
        let doomed = p.past_retention(&st, hw.offset, now_ms);
        let last = doomed.last()?.next_index().checked_sub(1)?;
        let purged = st.purged.map(|b| b.last.index);
        purged.is_none_or(|purged| last > purged).then_some(last)
    }

    /// The Kafka offset after entry `index`.
    pub fn offset_after(&self, index: u64) -> Result<i64> {
        let st = self.partition.state();
        if let Some(b) = st.purged {
            if index == b.last.index {
                return Ok(b.next_offset);
            }
            if index < b.last.index {
                return Err(LogError::InvalidArgument(format!(
                    "entry {index} is purged"
                )));
            }
        }
        let (_, _, header) = locate(&st, index)?
            .ok_or_else(|| LogError::InvalidArgument(format!("no entry {index}")))?;
        Ok(header.next_offset())
    }

    /// Raft's commit point: the high watermark (what Kafka fetches may read) moves to the
    /// Kafka offset after entry `index` (clamped to the last entry; never backwards). In
    /// replica mode only this moves it, not fsyncs.
    pub fn commit(&self, index: u64) -> Result<()> {
        let p = &self.partition;
        let point = {
            let st = p.state();
            let next = st.active.next_index();
            if next == 0 || next <= first_index(&st) {
                return Ok(());
            }
            let index = index.min(next - 1);
            if st.purged.is_some_and(|b| index <= b.last.index) {
                return Ok(());
            }
            let Some((segment, pos, header)) = locate(&st, index)? else {
                return Ok(());
            };
            LogPoint {
                offset: header.next_offset(),
                segment: segment.base_offset,
                position: pos + header.total_len() as u64,
                generation: st.written.generation,
                closed: st.written.closed,
            }
        };
        p.durable.send_modify(|d| {
            if (point.segment, point.position) > (d.segment, d.position) {
                *d = LogPoint {
                    closed: d.closed,
                    generation: d.generation,
                    ..point
                };
            }
        });
        Ok(())
    }

    /// The leader-epoch cache: the first entry of each term, oldest first.
    pub fn leader_epochs(&self) -> Vec<EpochEntry> {
        self.partition.state().epochs.clone()
    }

    /// fsyncs done on this partition so far (tests).
    #[cfg(test)]
    pub(crate) fn fsyncs(&self) -> u64 {
        self.partition
            .fsyncs
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The partition (tests).
    #[cfg(test)]
    pub(crate) fn partition(&self) -> &Arc<Partition> {
        &self.partition
    }
}

impl Partition {
    /// Runs the `on_durable` callbacks that are due, in order: with `failure`, every pending
    /// one (with the error); else those covered by the last fsync (by the last write in `os`
    /// and `background` mode).
    pub(crate) fn fire_callbacks(&self, failure: Option<&std::io::Error>) {
        let _firing = self.firing.lock().unwrap_or_else(|p| p.into_inner());
        let due: Vec<OnDurable> = {
            let mut st = self.state();
            let limit = match (failure, self.settings.flush.mode) {
                (Some(_), _) => u64::MAX,
                (None, FlushMode::Os | FlushMode::Background) => st.write_seq,
                (None, _) => st.synced_seq,
            };
            let mut due = Vec::new();
            while st.callbacks.front().is_some_and(|(seq, _)| *seq <= limit) {
                if let Some((_, cb)) = st.callbacks.pop_front() {
                    due.push(cb);
                }
            }
            due
        };
        for cb in due {
            cb(match failure {
                None => Ok(()),
                Some(e) => Err(LogError::io(
                    "syncing a segment",
                    std::io::Error::new(e.kind(), e.to_string()),
                )),
            });
        }
    }
}

/// Writes one checked entry at the log end under the state lock: the epoch cache first when
/// it opens a term, then the batch (encoded for an internal entry), base offset and leader
/// epoch patched. Returns whether an interval flush must be scheduled.
fn write_entry(
    p: &Partition,
    st: &mut State,
    entry: Entry,
    header: Option<BatchHeader>,
) -> Result<bool> {
    let term = entry.term as i32;
    let new_epoch = st.epochs.last().is_none_or(|e| entry.term > e.term);
    if new_epoch {
        // Before the batch: a crash may leave an epoch past the log end (trimmed at open),
        // never an entry without its epoch.
        st.epochs.push(EpochEntry {
            term: entry.term,
            first_index: entry.index,
            first_offset: st.written.offset,
        });
        if let Err(e) = write_epochs(&p.dir, &st.epochs) {
            st.epochs.pop();
            return Err(e);
        }
    }
    let base = st.written.offset;
    let now = crate::engine::now_ms();
    let mut bytes = match entry.payload {
        EntryPayload::Blank => batch::encode_internal(InternalKind::Blank, &[], base, term, now)?,
        EntryPayload::Membership(payload) => {
            batch::encode_internal(InternalKind::Membership, &payload, base, term, now)?
        }
        EntryPayload::Data(bytes) => bytes,
    };
    batch::set_leader_epoch(&mut bytes, term);
    let header = match header {
        Some(h) => h,
        None => BatchHeader::parse(&bytes)
            .ok_or_else(|| LogError::InvalidBatch("short internal batch".to_owned()))?,
    };
    let header = BatchHeader {
        partition_leader_epoch: term,
        ..header
    };
    match p.store_locked(st, &mut bytes, header) {
        Ok((_, schedule)) => Ok(schedule),
        Err(e) => {
            if new_epoch {
                st.epochs.pop();
            }
            Err(e)
        }
    }
}

/// `every_append`: fsyncs until no callback waits; appends landing meanwhile share the next
/// fsync. Without a runtime the callbacks wait for the next flush.
fn spawn_flusher(p: Arc<Partition>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        p.state().flusher_running = false;
        return;
    };
    runtime.spawn(async move {
        loop {
            {
                let _turn = p.sync_lock.lock().await;
                // A failure fails the partition and the callbacks (see `flush.rs`).
                let _ = p.sync_now().await;
            }
            {
                let mut st = p.state();
                if st.callbacks.is_empty() || st.failed.is_some() {
                    st.flusher_running = false;
                    return;
                }
            }
            // Writes landed during the fsync: let their appenders go on before the next one.
            tokio::task::yield_now().await;
        }
    });
}

/// Checks entries before any is written: contiguous from the log's next index, terms within
/// `i32::MAX` and never below the last epoch's, data batches whole, CRC-valid, not control
/// batches, within `max_message_bytes`. Returns each with its data header.
fn check_entries(
    p: &Partition,
    st: &State,
    entries: Vec<Entry>,
) -> Result<Vec<(Entry, Option<BatchHeader>)>> {
    let next = st.active.next_index();
    let mut term = st.epochs.last().map_or(0, |e| e.term);
    let max = p.settings.max_message_bytes as usize;
    let mut out = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let expected = next + i as u64;
        if entry.index != expected {
            return Err(LogError::InvalidArgument(format!(
                "entry {} appended where entry {expected} is next",
                entry.index
            )));
        }
        if entry.term > i32::MAX as u64 {
            return Err(LogError::InvalidArgument(format!(
                "term {} does not fit a batch's leader epoch",
                entry.term
            )));
        }
        if entry.term < term {
            return Err(LogError::InvalidArgument(format!(
                "entry {} has term {} below the log's term {term}",
                entry.index, entry.term
            )));
        }
        term = entry.term;
        let header = match &entry.payload {
            EntryPayload::Data(bytes) => Some(check_data(bytes, max)?),
            _ => None,
        };
        out.push((entry, header));
    }
    Ok(out)
}

/// Checks a data entry's batch: one whole RecordBatch v2, CRC-valid, not a control batch.
fn check_data(bytes: &[u8], max: usize) -> Result<BatchHeader> {
    if bytes.len() > max {
        return Err(LogError::MessageTooLarge {
            size: bytes.len(),
            max,
        });
    }
    let header = BatchHeader::parse(bytes)
        .ok_or_else(|| LogError::InvalidBatch("truncated record batch".to_owned()))?;
    header.check().map_err(LogError::InvalidBatch)?;
    if header.total_len() != bytes.len() {
        return Err(LogError::InvalidBatch(format!(
            "batch length field says {} bytes but {} were given",
            header.total_len(),
            bytes.len()
        )));
    }
    if header.attributes & 0x30 != 0 {
        return Err(LogError::InvalidBatch(
            "transactional and control batches are not supported".to_owned(),
        ));
    }
    if !batch::crc_ok(bytes) {
        return Err(LogError::InvalidBatch("crc mismatch".to_owned()));
    }
    Ok(header)
}

fn stored_entry(index: u64, h: &BatchHeader, bytes: Bytes) -> StoredEntry {
    let kind = match batch::parse_internal(&bytes) {
        Some((InternalKind::Blank, _)) => EntryKind::Blank,
        Some((InternalKind::Membership, _)) => EntryKind::Membership,
        None => EntryKind::Data,
    };
    StoredEntry {
        index,
        term: u64::try_from(h.partition_leader_epoch).unwrap_or(0),
        kind,
        base_offset: h.base_offset,
        next_offset: h.next_offset(),
        bytes,
    }
}

/// The first index readable: after the purge point, else the first segment's base index.
fn first_index(st: &State) -> u64 {
    let physical = st.segments.values().next().map_or(0, |s| s.base_index());
    st.purged
        .map_or(physical, |b| (b.last.index + 1).max(physical))
}

/// Term of entry `index`: from the epoch cache, else its batch header, else 0.
fn term_at(st: &State, index: u64) -> u64 {
    if let Some(e) = st.epochs.iter().rev().find(|e| e.first_index <= index) {
        return e.term;
    }
    match locate(st, index) {
        Ok(Some((_, _, h))) => u64::try_from(h.partition_leader_epoch).unwrap_or(0),
        _ => 0,
    }
}

/// The segment, position and header of entry `index`, if stored.
fn locate(st: &State, index: u64) -> Result<Option<(Arc<Segment>, u64, BatchHeader)>> {
    let Some(segment) = st.segments.values().rev().find(|s| s.base_index() <= index) else {
        return Ok(None);
    };
    let Some(pos) = segment.find_index_position(index, segment.size())? else {
        return Ok(None);
    };
    let head = segment.read(pos, HEADER_LEN)?;
    let header = BatchHeader::parse(&head).ok_or_else(|| {
        LogError::corrupt(
            format!("{} at byte {pos}", segment.path("log").display()),
            "short header",
        )
    })?;
    Ok(Some((segment.clone(), pos, header)))
}

/// Purge at or past the log end: record the boundary, delete every segment, start an empty
/// one at the boundary.
fn purge_all(p: &Partition, st: &mut State, boundary: Boundary) -> Result<()> {
    let first_index = boundary.last.index + 1;
    // Segments at or past the boundary's offset first (then a directory fsync): left behind by
    // a crash, recovery could not tell them from the new log that starts there.
    let stale: Vec<i64> = st
        .segments
        .range(boundary.next_offset..)
        .map(|(&b, _)| b)
        .collect();
    for base in stale {
        if let Some(segment) = st.segments.remove(&base) {
            segment.delete_files()?;
            metrics::counter!(m::SEGMENTS_DELETED_TOTAL).increment(1);
            metrics::gauge!(m::SEGMENTS).decrement(1.0);
        }
    }
    File::open(&p.dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LogError::io(format!("syncing {}", p.dir.display()), e))?;
    write_boundary(
        &p.dir,
        &BoundaryRecord {
            boundary,
            first_segment: boundary.next_offset,
            first_index,
        },
    )?;
    let all: Vec<Arc<Segment>> = std::mem::take(&mut st.segments).into_values().collect();
    st.unsynced.clear();
    for segment in all {
        segment.delete_files()?;
        metrics::counter!(m::SEGMENTS_DELETED_TOTAL).increment(1);
        metrics::gauge!(m::SEGMENTS).decrement(1.0);
    }
    let _ = fs::remove_file(p.dir.join(crate::producer::SNAPSHOT_FILE));
    let segment = Arc::new(Segment::create(
        &p.dir,
        boundary.next_offset,
        first_index,
        &p.files,
    )?);
    metrics::gauge!(m::SEGMENTS).increment(1.0);
    st.segments.insert(boundary.next_offset, segment.clone());
    st.active = segment;
    st.producers = ProducerStates::default();
    st.written.offset = boundary.next_offset;
    st.written.segment = boundary.next_offset;
    st.written.position = 0;
    st.write_seq += 1;
    st.dir_dirty = true;
    st.log_start = boundary.next_offset;
    st.epochs.clear();
    write_epochs(&p.dir, &st.epochs)?;
    let written = st.written;
    p.durable.send_modify(|d| {
        *d = LogPoint {
            closed: d.closed,
            generation: d.generation,
            ..written
        };
    });
    Ok(())
}

#[path = "replica_files.rs"]
mod files;

#[cfg(test)]
#[path = "replica_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "replica_model_tests.rs"]
mod model_tests;
