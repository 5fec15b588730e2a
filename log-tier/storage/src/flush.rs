//! Durability of a partition: group commit (appenders queued behind one fsync share the next),
//! interval flushes, and what a failed fsync does.
//!
//! A failed fsync is never retried. Linux reports a writeback error once per file: after EIO
//! the dirty pages may be gone (or marked clean) while the page cache still serves them, and
//! a second fsync of the same file "succeeds" without writing them. So the first failure fails
//! the partition: un-synced writes are rolled back (in `every_append` and `interval`, where
//! nobody was acknowledged for them), and from then on appends and flushes answer a retryable
//! I/O error until the process restarts and recovery rebuilds the partition from what the disk
//! holds (Kafka takes the log directory offline the same way; PostgreSQL panics).

use std::fs::File;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tracing::error;

use crate::config::FlushMode;
use crate::error::{LogError, Result};
use crate::metrics as m;
use crate::partition::{LogPoint, Partition, Written};

impl Partition {
    /// Resolves once the written batch is durable under the topic's flush policy.
    pub(crate) async fn wait_durable(self: &Arc<Self>, w: &Written) -> Result<()> {
        match self.settings.flush.mode {
            FlushMode::Os | FlushMode::Background => Ok(()),
            FlushMode::EveryAppend => {
                // Subscribed before the first check, so no fsync's end slips in between.
                let mut ends = self.sync_ends.subscribe();
                loop {
                    if let Some(done) = self.check_durable(w, &self.high_watermark()) {
                        return done;
                    }
                    if self.syncing.swap(true, Ordering::AcqRel) {
                        // Another appender's fsync is under way: when it ends, every waiter
                        // wakes at once, and one not covered by it runs the next. (Queueing
                        // on `sync_lock` instead hands the turn on one waiter at a time, each
                        // behind the runtime's whole run queue: under a burst of appends the
                        // last waited for hundreds of fsyncs in a row.)
                        ends.changed().await.map_err(|_| LogError::Closed)?;
                        continue;
                    }
                    let turn = SyncTurn(self);
                    self.linger().await;
                    let synced = {
                        let _lock = self.sync_lock.lock().await;
                        self.sync_now().await
                    };
                    drop(turn);
                    synced?;
                    // The fsync covered everything written before it: this write too.
                    return self
                        .check_durable(w, &self.high_watermark())
                        .unwrap_or_else(|| Err(sync_lost()));
                }
            }
            FlushMode::Interval => {
                let mut rx = self.durable.subscribe();
                loop {
                    // Copy the point out: holding the watch's read guard while `check_durable`
                    // takes the state lock could deadlock with `rollback`.
                    let hw = *rx.borrow_and_update();
                    if let Some(done) = self.check_durable(w, &hw) {
                        return done;
                    }
                    rx.changed().await.map_err(|_| LogError::Closed)?;
                }
            }
        }
    }

    /// `every_append` with `linger_us`: waits until that long after the last appender's fsync
    /// started (at once when it started longer ago), and notes this one's start.
    async fn linger(&self) {
        let linger = self.settings.flush.linger_us;
        let now = || u64::try_from(self.created.elapsed().as_micros()).unwrap_or(u64::MAX);
        if linger > 0 {
            let last = self.last_sync_us.load(Ordering::Relaxed);
            let wait = (last.saturating_add(linger)).saturating_sub(now());
            if wait > 0 && last > 0 {
                tokio::time::sleep(Duration::from_micros(wait)).await;
            }
        }
        self.last_sync_us.store(now().max(1), Ordering::Relaxed);
    }

    /// `Some(Ok)` when `w` is durable, `Some(Err)` when it was rolled back, `None` while pending.
    fn check_durable(&self, w: &Written, hw: &LogPoint) -> Option<Result<()>> {
        if hw.generation == w.generation {
            if hw.offset >= w.next_offset {
                return Some(Ok(()));
            }
            return hw.closed.then_some(Err(LogError::Closed));
        }
        let cut = self.state().truncations.get(w.generation as usize).copied();
        match cut {
            Some(cut) if w.next_offset <= cut => Some(Ok(())),
            _ => Some(Err(sync_lost())),
        }
    }

    /// Schedules one flush `interval_ms` from now (called by the write that found none pending).
    pub(crate) fn spawn_interval_flush(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime (a blocking caller): nobody could wait anyway; flush at the next write.
            self.state().flush_scheduled = false;
            return;
        };
        let partition = self.clone();
        let interval = Duration::from_millis(self.settings.flush.interval_ms.max(1));
        runtime.spawn(async move {
            tokio::time::sleep(interval).await;
            let _turn = partition.sync_lock.lock().await;
            partition.state().flush_scheduled = false;
            // A failure has failed the partition (and been logged): nothing to retry.
            let _ = partition.sync_now().await;
        });
    }

    /// fsyncs everything written so far and advances the high watermark. Holds the sync lock.
    pub(crate) async fn flush(&self) -> Result<()> {
        let _turn = self.sync_lock.lock().await;
        self.sync_now().await
    }

    /// The fsync itself; the caller holds `sync_lock`. On failure fails the partition (and
    /// rolls back un-synced writes nobody was acknowledged for).
    pub(crate) async fn sync_now(&self) -> Result<()> {
        let (target, segments, dir_dirty) = {
            let mut st = self.state();
            if let Some(failure) = &st.failed {
                return Err(failed_error(failure));
            }
            let synced = st.synced;
            // A zero-width internal batch adds bytes but no offset: compare positions too.
            if st.written.offset == synced.offset
                && st.written.segment == synced.segment
                && st.written.position == synced.position
                && st.written.generation == synced.generation
                && st.write_seq == st.synced_seq
                && !st.dir_dirty
            {
                drop(st);
                self.fire_callbacks(None);
                return Ok(());
            }
            let mut segments: Vec<_> = st.unsynced.drain(..).collect();
            segments.push(st.active.clone());
            (
                (st.written, st.write_seq),
                segments,
                std::mem::take(&mut st.dir_dirty),
            )
        };
        let (target, target_seq) = target;
        let dir = self.dir.clone();
        let fsyncs = self.fsyncs.clone();
        let synced = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            if let Some(e) = crate::fault::sync_error(&dir) {
                return Err(e);
            }
            for segment in &segments {
                let started = Instant::now();
                segment.sync()?;
                metrics::counter!(m::FSYNCS_TOTAL).increment(1);
                fsyncs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                metrics::histogram!(m::FSYNC_SECONDS).record(started.elapsed().as_secs_f64());
            }
            if dir_dirty {
                File::open(&dir)?.sync_all()?;
            }
            // Sealed segments now durable need no open handle (the last is the active one).
            for segment in segments.iter().rev().skip(1) {
                segment.close_file();
            }
            Ok(())
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        match synced {
            Ok(()) => {
                {
                    let mut st = self.state();
                    st.synced = target;
                    st.synced_seq = st.synced_seq.max(target_seq);
                }
                if self.replicated {
                    // Only Raft's commit point moves a replica's high watermark.
                    self.fire_callbacks(None);
                    return Ok(());
                }
                self.durable.send_modify(|hw| {
                    if hw.generation == target.generation && hw.offset <= target.offset {
                        *hw = LogPoint {
                            closed: hw.closed,
                            ..target
                        };
                    }
                });
                Ok(())
            }
            Err(e) => {
                self.fail(&e);
                if self.replicated {
                    self.fire_callbacks(Some(&e));
                }
                Err(LogError::io("syncing a segment", e))
            }
        }
    }

    /// After a failed fsync: refuse appends and flushes until restart, and, unless writes were
    /// acknowledged before their fsync (`os`, `background`), cut the log back to the high
    /// watermark and start a new generation, so appenders waiting on the lost writes get an
    /// error and nobody acknowledges them.
    fn fail(&self, e: &std::io::Error) {
        let acknowledged = matches!(
            self.settings.flush.mode,
            FlushMode::Os | FlushMode::Background
        );
        error!(topic = %self.topic, partition = self.id, error = %e, "fsync failed; the partition refuses appends until a restart recovers it from disk");
        metrics::counter!(m::FSYNC_FAILURES_TOTAL).increment(1);
        metrics::gauge!(m::FAILED_PARTITIONS).increment(1.0);
        let hw = self.high_watermark();
        let mut st = self.state();
        st.failed = Some(e.to_string());
        // A replica never rolls back by itself: Raft would not know (`replica.rs`).
        if acknowledged || self.replicated {
            return;
        }
        if let Err(e) = self.truncate_locked(&mut st, hw.offset) {
            error!(topic = %self.topic, partition = self.id, error = %e, "rollback failed; closing partition");
            st.written.closed = true;
        }
        self.new_generation(&mut st, hw.offset);
    }
}

/// The error appends and flushes of a partition whose fsync failed answer: retryable (the
/// gateway answers 503, the Kafka listener KAFKA_STORAGE_ERROR), as a restart or another
/// replica may take the data.
pub(crate) fn failed_error(failure: &str) -> LogError {
    LogError::io(
        "writing to a partition whose fsync failed (restart to recover it from disk)",
        std::io::Error::other(format!("fsync failed earlier: {failure}")),
    )
}

fn sync_lost() -> LogError {
    LogError::io(
        "syncing a segment",
        std::io::Error::other("fsync failed; the append was rolled back"),
    )
}

/// An appender's turn to fsync (`every_append`). Ending it, also by the appender's future being
/// dropped mid-fsync, frees the turn and wakes the appenders waiting on `sync_ends`: they find
/// their writes durable, or one of them takes the next turn.
struct SyncTurn<'a>(&'a Partition);

impl Drop for SyncTurn<'_> {
    fn drop(&mut self) {
        self.0.syncing.store(false, Ordering::Release);
        self.0.sync_ends.send_modify(|n| *n = n.wrapping_add(1));
    }
}
