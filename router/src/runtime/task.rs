//! One consumer task: a route reading one topic partition with its own consumer group, resuming
//! (and re-sending an unfinished batch with its exact bounds), batching by size and age, and
//! stopping gracefully.

use std::sync::Arc;
use std::time::Duration;

use headwater_log::{LogError, StoredRecord};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::batch::{OpenBatch, Outcome};
use super::deliver::Backoff;
use super::{RouteSink, Shared};
use crate::metrics::TaskMetrics;
use crate::rules::Route;

/// What a task is built from.
#[derive(Clone)]
pub(crate) struct TaskParts {
    pub(crate) shared: Arc<Shared>,
    pub(crate) route: Arc<Route>,
    pub(crate) sinks: Arc<[RouteSink]>,
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    pub(crate) stop: watch::Receiver<bool>,
}

/// Batch limits in effect for a route.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_events: usize,
    max_bytes: usize,
    max_age: Duration,
}

/// A route consuming one partition.
pub(crate) struct PartitionTask {
    pub(crate) shared: Arc<Shared>,
    pub(crate) route: Arc<Route>,
    pub(crate) sinks: Arc<[RouteSink]>,
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
    pub(crate) group: String,
    pub(crate) pending_group: String,
    /// Offset committed in `group` (next to read after a restart).
    pub(crate) committed: i64,
    metrics: TaskMetrics,
    limits: Limits,
    stop: watch::Receiver<bool>,
}

/// What one read of the log gave.
type ReadResult = Result<Vec<StoredRecord>, LogError>;

/// Why the read loop ended.
enum Exit {
    /// Graceful stop: deliver the open batch.
    Stop,
    /// The router was dropped: leave at once, as a crash would.
    Abandon,
}

/// Aborts the wrapped task when dropped (so aborting the supervisor aborts the worker).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `task`, restarting it from its committed offsets if it panics (a sink bug must not
/// silently stop a route).
pub(crate) async fn supervise(task: PartitionTask) {
    let parts = task.parts();
    let mut task = Some(task);
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    loop {
        let t = match task.take() {
            Some(t) => t,
            None => PartitionTask::new(parts.clone()),
        };
        let mut worker = AbortOnDrop(tokio::spawn(t.run()));
        match (&mut worker.0).await {
            Ok(()) => return,
            Err(e) if e.is_panic() => {
                let delay = backoff.delay(None);
                tracing::error!(
                    retry_in_ms = delay.as_millis() as u64,
                    "consumer task panicked; restarting it from its committed offset"
                );
                tokio::time::sleep(delay).await;
            }
            Err(_) => return,
        }
    }
}

impl PartitionTask {
    pub(crate) fn new(p: TaskParts) -> Self {
        let o = &p.shared.options;
        let b = p.route.batch;
        let limits = Limits {
            max_events: b.max_events.unwrap_or(o.batch_max_events).max(1),
            max_bytes: b.max_bytes.unwrap_or(o.batch_max_bytes).max(1),
            max_age: b.max_age_ms.map_or(o.batch_max_age, Duration::from_millis),
        };
        Self {
            group: format!("router.{}", p.route.name),
            pending_group: format!("router.{}.pending", p.route.name),
            metrics: TaskMetrics::new(&p.route.name, &p.topic, p.partition),
            committed: 0,
            limits,
            shared: p.shared,
            route: p.route,
            sinks: p.sinks,
            topic: p.topic,
            partition: p.partition,
            stop: p.stop,
        }
    }

    fn parts(&self) -> TaskParts {
        TaskParts {
            shared: Arc::clone(&self.shared),
            route: Arc::clone(&self.route),
            sinks: Arc::clone(&self.sinks),
            topic: Arc::clone(&self.topic),
            partition: self.partition,
            stop: self.stop.clone(),
        }
    }

    /// Resumes, then reads and delivers until stopped.
    pub(crate) async fn run(mut self) {
        let mut position = self.resume().await;
        let mut open: Option<OpenBatch> = None;
        let (initial, max) = (
            self.shared.options.retry_initial,
            self.shared.options.retry_max,
        );
        let mut read_backoff = Backoff::new(initial, max);
        // Records read from `position` while a batch was being sent (read-ahead).
        let mut ahead: Option<ReadResult> = None;
        let exit = loop {
            if *self.stop.borrow() {
                break Exit::Stop;
            }
            let records = match ahead.take() {
                Some(records) => records,
                None => {
                    let wait = self.read_wait(open.as_ref());
                    tokio::select! {
                        r = self.shared.log.read(&self.topic, self.partition, position, self.shared.options.read_max_bytes, wait) => r,
                        changed = self.stop.changed() => match changed {
                            Ok(()) => continue,
                            Err(_) => break Exit::Abandon,
                        },
                    }
                }
            };
            match records {
                Ok(records) => {
                    read_backoff = Backoff::new(initial, max);
                    if let Some(last) = records.last() {
                        position = last.offset + 1;
                    }
                    self.take(records, &mut open, position, &mut ahead).await;
                    self.update_lag().await;
                }
                Err(LogError::OffsetOutOfRange { .. }) => {
                    if let Some(b) = open.take() {
                        self.deliver(b).await;
                    }
                    position = self.reposition(position).await;
                }
                Err(e) if e.resume_at().is_some_and(|r| r > position) => {
                    read_backoff = Backoff::new(initial, max);
                    let resume = e.resume_at().unwrap_or(position);
                    let batch = open.get_or_insert_with(|| self.new_batch());
                    self.skip_unreadable(batch, (position, resume), &e, true);
                    position = resume;
                    let full = batch.items() >= self.limits.max_events
                        || batch.bytes >= self.limits.max_bytes;
                    if full && let Some(b) = open.take() {
                        self.deliver(b).await;
                    }
                }
                Err(e) => {
                    self.metrics.read_errors.increment(1);
                    let delay = read_backoff.delay(None);
                    tracing::warn!(error = %e, position, retry_in_ms = delay.as_millis() as u64, "reading the log failed");
                    tokio::time::sleep(delay).await;
                }
            }
            let due = open.as_ref().is_some_and(|b| b.deadline <= Instant::now());
            if due && let Some(b) = open.take() {
                self.deliver_reading_ahead(b, position, &mut ahead).await;
            }
        };
        if let (Exit::Stop, Some(b)) = (exit, open) {
            self.deliver(b).await;
        }
    }

    /// A batch opening at the committed offset, due after `max_age`.
    fn new_batch(&self) -> OpenBatch {
        let deadline = Instant::now() + self.limits.max_age;
        OpenBatch::new(self.committed, deadline, self.limits.max_events)
    }

    /// How long a read may wait: until the open batch is due, at most `poll_wait`.
    fn read_wait(&self, open: Option<&OpenBatch>) -> Duration {
        let poll = self.shared.options.poll_wait;
        open.map_or(poll, |b| {
            b.deadline
                .saturating_duration_since(Instant::now())
                .min(poll)
        })
    }

    /// Adds records to the open batch (opening one if needed), delivering it whenever full
    /// (reading ahead from `next`, where the records after these start).
    async fn take(
        &mut self,
        records: Vec<StoredRecord>,
        open: &mut Option<OpenBatch>,
        next: i64,
        ahead: &mut Option<ReadResult>,
    ) {
        for rec in records {
            let batch = open.get_or_insert_with(|| self.new_batch());
            self.push(batch, rec);
            let full =
                batch.items() >= self.limits.max_events || batch.bytes >= self.limits.max_bytes;
            if full && let Some(b) = open.take() {
                self.deliver_reading_ahead(b, next, ahead).await;
            }
        }
    }

    /// Delivers `batch` and, meanwhile, reads the records from `next` on (without waiting for
    /// new ones) into `ahead`, unless it holds a read already: a partition's drain does not
    /// stop for each sink round trip. What is read ahead is only taken after the delivery,
    /// in order; if the task stops first it is dropped unrouted and uncommitted.
    async fn deliver_reading_ahead(
        &mut self,
        batch: OpenBatch,
        next: i64,
        ahead: &mut Option<ReadResult>,
    ) {
        if ahead.is_some() {
            self.deliver(batch).await;
            return;
        }
        let (log, topic, partition) = (self.shared.log.clone(), self.topic.clone(), self.partition);
        let max_bytes = self.shared.options.read_max_bytes;
        let read = async move {
            log.read(&topic, partition, next, max_bytes, Duration::ZERO)
                .await
        };
        let ((), read) = tokio::join!(self.deliver(batch), read);
        *ahead = Some(read);
    }

    fn push(&self, batch: &mut OpenBatch, rec: StoredRecord) {
        self.metrics.events_in.increment(1);
        match batch.push(&self.route, &self.topic, self.partition, rec) {
            Outcome::Kept => {}
            Outcome::Filtered => self.metrics.filtered.increment(1),
            Outcome::SampledOut => self.metrics.sampled_out.increment(1),
            Outcome::Undecodable => self.metrics.undecodable.increment(1),
        }
    }

    /// The offsets `first..resume` cannot be read back from the log (`error`, a corrupt
    /// batch): `batch` covers them with a dead letter noting the range, and, with `count`, the
    /// loss is logged at error and counted. The caller goes on at `resume`.
    fn skip_unreadable(
        &self,
        batch: &mut OpenBatch,
        (first, resume): (i64, i64),
        error: &LogError,
        count: bool,
    ) {
        let reason = format!(
            "offsets {first}..={} unreadable, skipped: {}",
            resume - 1,
            headwater_log::error_chain(error)
        );
        if count {
            tracing::error!(
                topic = %self.topic,
                partition = self.partition,
                first,
                last = resume - 1,
                error = %error,
                "records the log cannot read back were skipped; the range is noted in the dead-letter topic"
            );
            self.metrics.unreadable.increment((resume - first) as u64);
        }
        let at = (&*self.topic, self.partition);
        batch.skip_unreadable(&self.route.name, at, (first, resume), &reason);
    }

    /// Where to start: the committed offset (or the log start), after re-sending exactly the
    /// batch `[committed, pending)` if a previous run recorded it but did not commit it.
    async fn resume(&mut self) -> i64 {
        let (log, topic, p) = (self.shared.log.clone(), self.topic.clone(), self.partition);
        let group = self.group.clone();
        let committed = self
            .retry_log("reading the committed offset", || {
                log.committed(&group, &topic, p)
            })
            .await;
        let offsets = self
            .retry_log("reading partition offsets", || log.offsets(&topic, p))
            .await;
        let mut start = committed.unwrap_or(offsets.log_start);
        if start < offsets.log_start {
            tracing::error!(
                committed = start,
                log_start = offsets.log_start,
                "retention removed records this route had not routed"
            );
            self.metrics
                .skipped
                .increment((offsets.log_start - start) as u64);
            start = offsets.log_start;
        } else if start > offsets.high_watermark {
            tracing::warn!(
                committed = start,
                high_watermark = offsets.high_watermark,
                "committed offset beyond the log end; starting at the end"
            );
            start = offsets.high_watermark;
        }
        self.committed = start;
        let pending_group = self.pending_group.clone();
        let pending = self
            .retry_log("reading the pending offset", || {
                log.committed(&pending_group, &topic, p)
            })
            .await;
        if let Some(end) = pending.filter(|end| *end > start && *end <= offsets.high_watermark) {
            tracing::info!(
                first = start,
                last = end - 1,
                "re-sending the batch a previous run did not commit"
            );
            let batch = self.rebuild(start, end).await;
            self.deliver(batch).await;
            start = end;
        }
        self.update_lag().await;
        start
    }

    /// Reads `[first, end)` back into one batch, whatever the limits.
    async fn rebuild(&self, first: i64, end: i64) -> OpenBatch {
        self.read_range(first, end, true).await
    }

    /// Reads `[first, end)` and runs the route over it again: the same events, in the same
    /// order, as when the batch was first built (the route is fixed for a task's lifetime).
    /// With `count`, updates the per-record metrics. Stops early only if the log no longer
    /// holds the range (retention), which it logs.
    pub(crate) async fn read_range(&self, first: i64, end: i64, count: bool) -> OpenBatch {
        let mut batch = OpenBatch::new(first, Instant::now(), self.limits.max_events);
        let mut position = first;
        let mut backoff = Backoff::new(
            self.shared.options.retry_initial,
            self.shared.options.retry_max,
        );
        let max_bytes = self.shared.options.read_max_bytes;
        while position < end {
            let read = self
                .shared
                .log
                .read(
                    &self.topic,
                    self.partition,
                    position,
                    max_bytes,
                    Duration::ZERO,
                )
                .await;
            let records = match read {
                Ok(records) if records.is_empty() => break,
                Ok(records) => records,
                Err(e) if e.is_retryable() => {
                    tracing::warn!(error = %e, "re-reading a batch failed; retrying");
                    tokio::time::sleep(backoff.delay(None)).await;
                    continue;
                }
                // The same damage the batch met when it was built: skipped the same way.
                Err(e) if e.resume_at().is_some_and(|r| r > position) => {
                    let resume = e.resume_at().unwrap_or(position).min(end);
                    self.skip_unreadable(&mut batch, (position, resume), &e, count);
                    position = resume;
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, first, end, "the log no longer holds a batch being re-sent");
                    break;
                }
            };
            for rec in records.into_iter().take_while(|r| r.offset < end) {
                position = rec.offset + 1;
                if count {
                    self.push(&mut batch, rec);
                } else {
                    batch.push(&self.route, &self.topic, self.partition, rec);
                }
            }
        }
        batch.last_offset = end - 1;
        batch
    }

    /// After an out-of-range read: jump to the log start (retention) or end (truncation).
    async fn reposition(&mut self, position: i64) -> i64 {
        let (log, topic, p) = (self.shared.log.clone(), self.topic.clone(), self.partition);
        let o = self
            .retry_log("reading partition offsets", || log.offsets(&topic, p))
            .await;
        let to = position.clamp(o.log_start, o.high_watermark);
        if to > position {
            self.metrics.skipped.increment((to - position) as u64);
        }
        tracing::warn!(
            from = position,
            to,
            "read offset out of range; repositioned"
        );
        self.committed = to;
        to
    }

    /// Sets the lag gauge from the high watermark.
    pub(crate) async fn update_lag(&self) {
        if let Ok(o) = self.shared.log.offsets(&self.topic, self.partition).await {
            self.metrics
                .lag
                .set((o.high_watermark - self.committed).max(0) as f64);
        }
    }
}
