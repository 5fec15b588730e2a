//! The load drivers: open loop at a constant rate (latency from each batch's intended send
//! time) and closed loop at fixed concurrency, with retries, a live progress bar and the
//! ledger of every batch for verification.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::cli::{Arrivals, Mode};
use crate::fleet::{Fleet, GenEvent};
use crate::ledger::{BatchRecord, Final};
use crate::schedule::{Schedule, latency_from_intended};
use crate::stats::{PhaseInfo, PhaseStats, Recorder};
use crate::transport::{Attempt, Clients, Payload};

/// Something batches can be sent through (the real clients, or a fake in tests).
pub trait Sender: Send + Sync + 'static {
    /// A prepared request, reused by retries.
    type Payload: Send + Sync + 'static;
    /// Builds the request of `events`.
    fn prepare(&self, events: &[GenEvent]) -> Self::Payload;
    /// Body bytes of a request.
    fn size(payload: &Self::Payload) -> u64;
    /// One attempt on connection slot `slot`.
    fn send(&self, slot: usize, payload: &Self::Payload) -> impl Future<Output = Attempt> + Send;
}

impl Sender for Clients {
    type Payload = Payload;
    fn prepare(&self, events: &[GenEvent]) -> Payload {
        Clients::prepare(self, events)
    }
    fn size(payload: &Payload) -> u64 {
        match payload {
            Payload::Http(b, _) => b.len() as u64,
            Payload::Grpc(b) => prost::Message::encoded_len(b) as u64,
            Payload::Kafka(records) => records.iter().map(|r| r.size()).sum(),
        }
    }
    fn send(&self, slot: usize, payload: &Payload) -> impl Future<Output = Attempt> + Send {
        Clients::send(self, slot, payload)
    }
}

/// How one phase is driven.
#[derive(Debug, Clone)]
pub struct Phase {
    /// Open or closed loop.
    pub mode: Mode,
    /// In-flight requests at most.
    pub concurrency: usize,
    /// Open loop: events per second.
    pub rate: f64,
    /// Open loop: spacing.
    pub arrivals: Arrivals,
    /// Length.
    pub duration: Duration,
    /// Closed loop: requests after which the phase ends, if before `duration`.
    pub requests: Option<u64>,
    /// Attempts after the first.
    pub retries: u32,
    /// Show a progress bar.
    pub progress: bool,
    /// Progress bar prefix.
    pub name: String,
}

/// State shared by every phase of a run.
pub struct Run<S: Sender> {
    /// The fleet.
    pub fleet: Arc<Fleet>,
    /// Where batches go.
    pub sender: Arc<S>,
    next_batch: AtomicU64,
    ledger: Mutex<Vec<BatchRecord>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl<S: Sender> Run<S> {
    /// A run over `fleet` through `sender`.
    pub fn new(fleet: Fleet, sender: S) -> Arc<Run<S>> {
        Arc::new(Run {
            fleet: Arc::new(fleet),
            sender: Arc::new(sender),
            next_batch: AtomicU64::new(0),
            ledger: Mutex::new(Vec::new()),
        })
    }

    /// Every batch sent so far and how it ended.
    pub fn ledger(&self) -> Vec<BatchRecord> {
        lock(&self.ledger).clone()
    }

    /// Runs one phase to completion and returns its summary.
    pub async fn phase(self: &Arc<Self>, phase: &Phase) -> PhaseStats {
        let start = Instant::now();
        let rec = Arc::new(Mutex::new(Recorder::new(start)));
        let bar = progress_bar(phase);
        let ticker = tokio::spawn(tick(bar.clone(), rec.clone(), start));
        match phase.mode {
            Mode::Open => self.clone().open_loop(phase, start, &rec).await,
            Mode::Closed => self.clone().closed_loop(phase, start, &rec).await,
        }
        ticker.abort();
        bar.finish_and_clear();
        let info = PhaseInfo {
            mode: phase.mode,
            concurrency: phase.concurrency,
            target_events_per_s: (phase.mode == Mode::Open).then_some(phase.rate),
            planned_s: phase.duration.as_secs_f64(),
        };
        lock(&rec).summary(info)
    }

    async fn open_loop(self: Arc<Self>, phase: &Phase, start: Instant, rec: &Arc<Mutex<Recorder>>) {
        let batches_per_s = phase.rate / f64::from(self.fleet.spec().batch_size);
        let slots = Arc::new(Semaphore::new(phase.concurrency.max(1)));
        let mut tasks = JoinSet::new();
        for offset in Schedule::new(phase.arrivals, batches_per_s, self.fleet.spec().seed) {
            if offset >= phase.duration {
                break;
            }
            let intended = start + offset;
            tokio::time::sleep_until(intended).await;
            // Waiting for a free slot delays the send, never the schedule: latency still
            // counts from `intended`.
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            let (run, rec) = (self.clone(), rec.clone());
            let batch = self.next_batch.fetch_add(1, Ordering::Relaxed);
            let retries = phase.retries;
            tasks.spawn(async move {
                run.one_batch(batch, intended, retries, &rec).await;
                drop(permit);
            });
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
    }

    async fn closed_loop(
        self: Arc<Self>,
        phase: &Phase,
        start: Instant,
        rec: &Arc<Mutex<Recorder>>,
    ) {
        let deadline = start + phase.duration;
        // Batch numbers run on across phases: this phase's end, when it has a request count.
        let first = self.next_batch.load(Ordering::Relaxed);
        let end = phase.requests.map_or(u64::MAX, |n| first.saturating_add(n));
        let mut tasks = JoinSet::new();
        for _ in 0..phase.concurrency.max(1) {
            let (run, rec, retries) = (self.clone(), rec.clone(), phase.retries);
            tasks.spawn(async move {
                while Instant::now() < deadline {
                    let batch = run.next_batch.fetch_add(1, Ordering::Relaxed);
                    if batch >= end {
                        break;
                    }
                    run.one_batch(batch, Instant::now(), retries, &rec).await;
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        // Numbers taken past the end were not sent: the next phase starts right after it.
        self.next_batch.fetch_min(end, Ordering::Relaxed);
    }

    /// Builds, sends (with retries) and records batch `batch`, intended at `intended`.
    async fn one_batch(&self, batch: u64, intended: Instant, retries: u32, rec: &Mutex<Recorder>) {
        let events = self.fleet.batch(batch, now_ms());
        let payload = self.sender.prepare(&events);
        let n = events.len() as u64;
        drop(events);
        let (outcome, answer) = self.send_with_retries(batch, &payload, retries, rec).await;
        let done = Instant::now();
        let latency = latency_from_intended(intended, done);
        let mut r = lock(rec);
        match (&outcome, answer) {
            (Final::Acked(rejected), Ok(accepted)) => {
                let rejected = rejected.len() as u64;
                r.ok(
                    done,
                    latency,
                    u64::from(accepted),
                    rejected,
                    S::size(&payload),
                );
            }
            (_, Err(code)) => r.failed(done, n, &code),
            (_, Ok(_)) => {}
        }
        drop(r);
        lock(&self.ledger).push(BatchRecord { batch, outcome });
    }

    /// Attempts until a 200, a refusal or the last retry: the batch's ending, and the accepted
    /// count or the last error's label.
    async fn send_with_retries(
        &self,
        batch: u64,
        payload: &S::Payload,
        retries: u32,
        rec: &Mutex<Recorder>,
    ) -> (Final, Result<u32, String>) {
        let mut unknown = false;
        let failed = |unknown: bool| {
            if unknown {
                Final::Unknown
            } else {
                Final::Refused
            }
        };
        for attempt in 0..=retries {
            match self.sender.send(batch as usize, payload).await {
                Attempt::Ok { accepted, rejected } => {
                    return (Final::Acked(rejected), Ok(accepted));
                }
                Attempt::Refused { code } => return (failed(unknown), Err(code)),
                Attempt::Retry {
                    after,
                    code,
                    unknown: u,
                } => {
                    unknown |= u;
                    if attempt == retries {
                        return (failed(unknown), Err(code));
                    }
                    lock(rec).retry(&code);
                    tokio::time::sleep(after).await;
                }
            }
        }
        (failed(unknown), Err("no attempt".into()))
    }
}

fn progress_bar(phase: &Phase) -> ProgressBar {
    if !phase.progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(phase.duration.as_secs().max(1));
    let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} s  {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(phase.name.clone());
    bar
}

async fn tick(bar: ProgressBar, rec: Arc<Mutex<Recorder>>, start: Instant) {
    let mut every = tokio::time::interval(Duration::from_millis(500));
    loop {
        every.tick().await;
        let now = Instant::now();
        let r = lock(&rec);
        bar.set_position(now.saturating_duration_since(start).as_secs());
        bar.set_message(format!(
            "{} events/s  {} ok  {} errors  {} retries  p99 {:.1} ms",
            r.recent_rate(now),
            r.requests_ok,
            r.requests_failed,
            r.retries,
            r.quantile_ms(0.99)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::tests::spec;

    /// Answers every batch after a fixed delay, one at a time per slot.
    struct Slow(Duration);

    impl Sender for Slow {
        type Payload = usize;
        fn prepare(&self, events: &[GenEvent]) -> usize {
            events.len()
        }
        fn size(payload: &usize) -> u64 {
            *payload as u64
        }
        fn send(&self, _slot: usize, payload: &usize) -> impl Future<Output = Attempt> + Send {
            let (delay, n) = (self.0, *payload as u32);
            async move {
                tokio::time::sleep(delay).await;
                Attempt::Ok {
                    accepted: n,
                    rejected: Vec::new(),
                }
            }
        }
    }

    fn phase(mode: Mode, concurrency: usize, rate: f64) -> Phase {
        Phase {
            mode,
            concurrency,
            rate,
            arrivals: Arrivals::Uniform,
            duration: Duration::from_millis(600),
            requests: None,
            retries: 0,
            progress: false,
            name: "t".into(),
        }
    }

    #[tokio::test]
    async fn a_closed_loop_with_a_request_count_sends_exactly_that_many() {
        let run = Run::new(
            Fleet::new(spec(0.0)).unwrap(),
            Slow(Duration::from_millis(1)),
        );
        let counted = Phase {
            requests: Some(7),
            duration: Duration::from_secs(600),
            ..phase(Mode::Closed, 3, 0.0)
        };
        assert_eq!(run.phase(&counted).await.requests_ok, 7);
        assert_eq!(run.phase(&counted).await.requests_ok, 7);
        let mut batches: Vec<u64> = run.ledger().iter().map(|r| r.batch).collect();
        batches.sort_unstable();
        assert_eq!(
            batches,
            (0..14).collect::<Vec<u64>>(),
            "the second step goes on from the first's last batch"
        );
    }

    #[tokio::test]
    async fn open_loop_counts_queueing_and_closed_loop_does_not() {
        // 20 ms per request, one in flight, scheduled every 10 ms: the server keeps up with
        // half the schedule, so open-loop latency grows with the backlog (up to ~300 ms),
        // while closed loop sees only the 20 ms service time.
        let run = Run::new(
            Fleet::new(spec(0.0)).unwrap(),
            Slow(Duration::from_millis(20)),
        );
        let batch = f64::from(run.fleet.spec().batch_size);
        let open = run.phase(&phase(Mode::Open, 1, 100.0 * batch)).await;
        assert!(
            (60..=61).contains(&open.requests_ok),
            "{}",
            open.requests_ok
        );
        assert!(open.latency_ms.max > 400.0, "{:?}", open.latency_ms);
        let closed = run.phase(&phase(Mode::Closed, 1, 0.0)).await;
        assert!(closed.latency_ms.p99 < 100.0, "{:?}", closed.latency_ms);
        let ledger = run.ledger();
        assert_eq!(ledger.len() as u64, open.requests_ok + closed.requests_ok);
        let mut batches: Vec<u64> = ledger.iter().map(|r| r.batch).collect();
        batches.sort_unstable();
        batches.dedup();
        assert_eq!(
            batches.len(),
            ledger.len(),
            "batch numbers are unique across phases"
        );
    }
}
