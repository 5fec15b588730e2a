//! Delivering a closed batch: record its end in the pending group, send it to every sink of
//! the route (re-sending failed items and failed batches with capped, jittered backoff),
//! dead-letter what was refused, then commit.

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use headwater_log::LogError;
use headwater_log::Record;
use headwater_sinks::{Batch, Delivery, OutEvent, error_chain};
use tokio::time::Instant;

use super::RouteSink;
use super::batch::{OpenBatch, rejected};
use super::task::PartitionTask;

/// Exponential backoff with "equal jitter", endless: each delay is drawn from `[d/2, d)`, `d`
/// doubling from the initial delay up to the maximum. backon adds up to 100% of its base as
/// jitter, so its base is `d/2`.
pub(crate) struct Backoff {
    delays: ExponentialBackoff,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        let max = max.max(initial);
        let delays = ExponentialBuilder::new()
            .with_min_delay(initial / 2)
            .with_max_delay(max / 2)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build();
        Self { delays, max }
    }

    /// The next delay; `hint` (a server's Retry-After) raises it, up to the maximum.
    pub(crate) fn delay(&mut self, hint: Option<Duration>) -> Duration {
        let jittered = self.delays.next().unwrap_or(self.max).min(self.max);
        jittered.max(hint.unwrap_or_default().min(self.max))
    }
}

impl PartitionTask {
    fn backoff(&self) -> Backoff {
        let o = &self.shared.options;
        Backoff::new(o.retry_initial, o.retry_max)
    }

    /// Retries a log operation until it succeeds (nothing may be lost or skipped).
    pub(crate) async fn retry_log<T, F, Fut>(&self, what: &str, mut op: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, LogError>>,
    {
        let mut backoff = self.backoff();
        loop {
            match op().await {
                Ok(v) => return v,
                Err(e) => {
                    let delay = backoff.delay(None);
                    tracing::warn!(error = %e, what, retry_in_ms = delay.as_millis() as u64, "log operation failed");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Delivers `open` and commits its end. Returns once committed.
    pub(crate) async fn deliver(&mut self, mut open: OpenBatch) {
        if !open.covers_any() {
            return;
        }
        let end = open.last_offset + 1;
        let (log, topic, partition) = (self.shared.log.clone(), self.topic.clone(), self.partition);
        let mut dead = std::mem::take(&mut open.dead);
        if !open.events.is_empty() {
            let pending = self.pending_group.clone();
            self.retry_log("recording the pending batch end", || {
                log.commit(&pending, &topic, partition, end)
            })
            .await;
            let batch = open.take_batch(&self.route.name, &topic, partition);
            dead.extend(self.send_all(batch).await);
        }
        if !dead.is_empty() {
            let dlq = self.shared.options.dlq_topic.clone();
            tracing::warn!(count = dead.len(), "dead-lettering events");
            self.retry_log("appending to the dead-letter topic", || {
                log.append(&dlq, dead.clone())
            })
            .await;
        }
        let group = self.group.clone();
        self.retry_log("committing offsets", || {
            log.commit(&group, &topic, partition, end)
        })
        .await;
        self.committed = end;
        self.update_lag().await;
    }

    /// Sends `batch` to every sink of the route (concurrently); returns the dead letters for
    /// what they refused. The batch is moved into the last send and cloned for the others;
    /// when events are needed again (retries, refusals) they are rebuilt from the log.
    async fn send_all(&self, batch: Batch) -> Vec<Record> {
        tracing::debug!(
            first = batch.first_offset,
            last = batch.last_offset,
            events = batch.events.len(),
            "sending batch"
        );
        let bounds = (batch.first_offset, batch.last_offset, batch.events.len());
        let mut copies: Vec<Batch> = (1..self.sinks.len()).map(|_| batch.clone()).collect();
        copies.push(batch);
        let refused = futures::future::join_all(
            self.sinks
                .iter()
                .zip(copies)
                .map(|(s, b)| self.send_until_done(s, b)),
        )
        .await;
        if refused.iter().all(Vec::is_empty) {
            return Vec::new();
        }
        let events = self.events_of(bounds).await;
        let mut dead = Vec::new();
        for (sink, refused) in self.sinks.iter().zip(refused) {
            sink.metrics.dead_lettered.increment(refused.len() as u64);
            dead.extend(refused.into_iter().filter_map(|(i, reason)| {
                events
                    .get(i)
                    .map(|ev| rejected(ev, &self.route.name, &sink.label, &reason))
            }));
        }
        dead
    }

    /// The events of the batch `(first, last, count)`, rebuilt from the log.
    async fn events_of(&self, (first, last, count): (i64, i64, usize)) -> Vec<OutEvent> {
        let events = self.read_range(first, last + 1, false).await.events;
        if events.len() != count {
            tracing::error!(
                first,
                last,
                expected = count,
                found = events.len(),
                "rebuilt batch differs from the one sent"
            );
        }
        events
    }

    /// Sends `batch` to one sink until every event is delivered or refused; returns the
    /// refused `(index into batch.events, reason)`.
    async fn send_until_done(&self, sink: &RouteSink, batch: Batch) -> Vec<(usize, String)> {
        let started = Instant::now();
        let m = &sink.metrics;
        let mut backoff = self.backoff();
        let bounds = (batch.first_offset, batch.last_offset, batch.events.len());
        let mut shell = Batch {
            events: Vec::new(),
            route: batch.route.clone(),
            topic: batch.topic.clone(),
            ..batch
        };
        let mut next = Some(batch);
        let mut progress = Progress::default();
        loop {
            let to_send = match next.take() {
                Some(b) => b,
                None => {
                    shell.events = progress.select(self.events_of(bounds).await);
                    shell.clone()
                }
            };
            let n = to_send.events.len();
            let delay = match sink.sink.send(to_send).await {
                Ok(delivery) => {
                    m.up.set(1.0);
                    if progress.absorb(delivery, n, sink) {
                        break;
                    }
                    backoff.delay(None)
                }
                Err(e) => {
                    m.up.set(0.0);
                    m.failed.increment(n as u64);
                    let delay = backoff.delay(e.retry_after());
                    tracing::warn!(sink = %sink.label, error = %error_chain(&e), retryable = e.is_retryable(), retry_in_ms = delay.as_millis() as u64, "sink send failed; batch will be re-sent");
                    self.update_lag().await; // lag keeps growing while the sink is down
                    delay
                }
            };
            tokio::time::sleep(delay).await;
        }
        m.batches.increment(1);
        m.latency.record(started.elapsed().as_secs_f64());
        progress.refused
    }
}

/// What is left of a batch being delivered to one sink.
#[derive(Default)]
struct Progress {
    /// Indexes in the original batch of the events still to deliver (`None`: all).
    remaining: Option<Vec<usize>>,
    /// Refused so far: (index in the original batch, reason).
    refused: Vec<(usize, String)>,
}

impl Progress {
    /// The events still to deliver, out of the whole rebuilt batch.
    fn select(&self, all: Vec<OutEvent>) -> Vec<OutEvent> {
        match &self.remaining {
            None => all,
            Some(idx) => idx.iter().filter_map(|i| all.get(*i).cloned()).collect(),
        }
    }

    /// Takes a sink's answer about the `n` events just sent; true when nothing is left.
    fn absorb(&mut self, delivery: Delivery, n: usize, sink: &RouteSink) -> bool {
        let m = &sink.metrics;
        let origin = |i: usize| {
            self.remaining
                .as_ref()
                .map_or(Some(i), |r| r.get(i).copied())
        };
        let retry: Vec<usize> = delivery
            .retry
            .into_iter()
            .filter(|i| *i < n)
            .filter_map(origin)
            .collect();
        let rejected: Vec<(usize, String)> = delivery
            .rejected
            .into_iter()
            .filter(|(i, _)| *i < n)
            .filter_map(|(i, r)| origin(i).map(|o| (o, r)))
            .collect();
        m.out
            .increment(n.saturating_sub(retry.len() + rejected.len()) as u64);
        self.refused.extend(rejected);
        if retry.is_empty() {
            return true;
        }
        m.failed.increment(retry.len() as u64);
        tracing::debug!(retry = retry.len(), sink = %sink.label, "re-sending items");
        self.remaining = Some(retry);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(1000));
        let d1 = b.delay(None);
        assert!(d1 >= ms(50) && d1 <= ms(100), "{d1:?}");
        let d2 = b.delay(None);
        assert!(d2 >= ms(100) && d2 <= ms(200), "{d2:?}");
        for _ in 0..100 {
            let d = b.delay(None);
            assert!(d <= ms(1000), "{d:?}");
        }
        let late: Vec<Duration> = (0..20).map(|_| b.delay(None)).collect();
        assert!(
            late.iter().all(|d| *d >= ms(499)),
            "capped at [max/2, max]: {late:?}"
        );
        assert!(b.delay(Some(Duration::from_secs(60))) == ms(1000));
        assert!(
            b.delay(Some(ms(2))) >= ms(499),
            "a small hint does not shorten the delay"
        );
    }

    #[test]
    fn backoff_never_ends() {
        let mut b = Backoff::new(Duration::from_millis(1), Duration::from_millis(4));
        for _ in 0..10_000 {
            assert!(b.delay(None) <= Duration::from_millis(4));
        }
    }
}
