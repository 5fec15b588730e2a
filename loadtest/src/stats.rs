//! Per-phase measurements: an HDR latency histogram, counters, errors by kind and a
//! per-second timeline; and their serialisable summary.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::time::Instant;

/// Highest latency the histogram tracks (larger values are clamped), in µs.
const MAX_LATENCY_US: u64 = 120_000_000;

/// Requests, events and errors completed in one second of a phase.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Second {
    /// Requests answered 200.
    pub requests: u64,
    /// Events in those answers (accepted + rejected).
    pub events: u64,
    /// Requests that finally failed.
    pub errors: u64,
}

/// What a phase measured, while it runs.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    latency: Histogram<u64>,
    timeline: Vec<Second>,
    last_done: Duration,
    /// Requests answered 200.
    pub requests_ok: u64,
    /// Requests that failed after retries.
    pub requests_failed: u64,
    /// Events accepted.
    pub events_accepted: u64,
    /// Events rejected (answered 200, listed in `errors`).
    pub events_rejected: u64,
    /// Events in failed requests.
    pub events_failed: u64,
    /// Request body bytes of successful requests.
    pub bytes_sent: u64,
    /// Retried attempts.
    pub retries: u64,
    /// Failures and retries by kind (`429`, `timeout`…).
    pub errors: BTreeMap<String, u64>,
}

impl Recorder {
    /// A recorder for a phase that starts at `start`.
    #[allow(clippy::expect_used)] // proven invariant: constant, valid histogram bounds
    pub fn new(start: Instant) -> Recorder {
        Recorder {
            start,
            // Constant bounds within hdrhistogram's limits (1 µs to 120 s, 3 digits): cannot fail.
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("constant histogram bounds are valid"),
            timeline: Vec::new(),
            last_done: Duration::ZERO,
            requests_ok: 0,
            requests_failed: 0,
            events_accepted: 0,
            events_rejected: 0,
            events_failed: 0,
            bytes_sent: 0,
            retries: 0,
            errors: BTreeMap::new(),
        }
    }

    fn second(&mut self, done: Instant) -> &mut Second {
        let since = done.saturating_duration_since(self.start);
        self.last_done = self.last_done.max(since);
        let idx = since.as_secs() as usize;
        if self.timeline.len() <= idx {
            self.timeline.resize(idx + 1, Second::default());
        }
        &mut self.timeline[idx]
    }

    /// A 200 at `done` after `latency`, with its event counts and body size.
    pub fn ok(
        &mut self,
        done: Instant,
        latency: Duration,
        accepted: u64,
        rejected: u64,
        bytes: u64,
    ) {
        let s = self.second(done);
        s.requests += 1;
        s.events += accepted + rejected;
        self.requests_ok += 1;
        self.events_accepted += accepted;
        self.events_rejected += rejected;
        self.bytes_sent += bytes;
        let us = (latency.as_micros() as u64).clamp(1, MAX_LATENCY_US);
        self.latency.saturating_record(us);
    }

    /// A request of `events` events that finally failed with `code`.
    pub fn failed(&mut self, done: Instant, events: u64, code: &str) {
        self.second(done).errors += 1;
        self.requests_failed += 1;
        self.events_failed += events;
        *self.errors.entry(code.to_owned()).or_default() += 1;
    }

    /// An attempt that will be retried.
    pub fn retry(&mut self, code: &str) {
        self.retries += 1;
        *self.errors.entry(format!("retry {code}")).or_default() += 1;
    }

    /// Events answered per second over the last full second, for the progress bar.
    pub fn recent_rate(&self, now: Instant) -> u64 {
        let idx = now.saturating_duration_since(self.start).as_secs() as usize;
        idx.checked_sub(1)
            .and_then(|i| self.timeline.get(i))
            .map_or(0, |s| s.events)
    }

    /// Latency at quantile `q` (0..=1) so far, in ms.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }

    /// The summary of the phase.
    pub fn summary(&self, phase: PhaseInfo) -> PhaseStats {
        let elapsed = self.last_done.as_secs_f64().max(1e-9);
        let events = self.events_accepted + self.events_rejected;
        let q = |q: f64| self.quantile_ms(q);
        PhaseStats {
            info: phase,
            elapsed_s: self.last_done.as_secs_f64(),
            requests_ok: self.requests_ok,
            requests_failed: self.requests_failed,
            events_accepted: self.events_accepted,
            events_rejected: self.events_rejected,
            events_failed: self.events_failed,
            retries: self.retries,
            errors: self.errors.clone(),
            events_per_s: events as f64 / elapsed,
            requests_per_s: self.requests_ok as f64 / elapsed,
            mb_per_s: self.bytes_sent as f64 / elapsed / 1e6,
            latency_ms: Latency {
                p50: q(0.5),
                p90: q(0.9),
                p99: q(0.99),
                p999: q(0.999),
                max: self.latency.max() as f64 / 1000.0,
                mean: self.latency.mean() / 1000.0,
            },
            timeline: self.timeline.clone(),
            spectrum: spectrum(&self.latency),
        }
    }
}

/// (quantile, ms) points from p0 to the max, for the percentile plot.
fn spectrum(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<(f64, f64)> = [
        0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999,
    ]
    .iter()
    .map(|q| (*q, h.value_at_quantile(*q) as f64 / 1000.0))
    .collect();
    out.push((1.0, h.max() as f64 / 1000.0));
    out
}

/// How a phase was driven.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PhaseInfo {
    /// `open` or `closed`.
    pub mode: crate::cli::Mode,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Open loop: the target events per second.
    pub target_events_per_s: Option<f64>,
    /// Seconds the phase was planned for.
    pub planned_s: f64,
}

/// Latency figures in ms.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// The summary of one phase.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PhaseStats {
    /// How it was driven.
    #[serde(flatten)]
    pub info: PhaseInfo,
    /// Seconds from the start to the last answer.
    pub elapsed_s: f64,
    /// Requests answered 200.
    pub requests_ok: u64,
    /// Requests that failed after retries.
    pub requests_failed: u64,
    /// Events accepted.
    pub events_accepted: u64,
    /// Events rejected by validation.
    pub events_rejected: u64,
    /// Events in failed requests.
    pub events_failed: u64,
    /// Retried attempts.
    pub retries: u64,
    /// Failures and retries by kind.
    pub errors: BTreeMap<String, u64>,
    /// Events answered (accepted + rejected) per second.
    pub events_per_s: f64,
    /// Requests answered 200 per second.
    pub requests_per_s: f64,
    /// Request body MB (10^6 bytes) per second (HTTP: bytes on the wire after compression;
    /// gRPC: the encoded message before compression).
    pub mb_per_s: f64,
    /// Latency (open loop: from the intended send time).
    pub latency_ms: Latency,
    /// Per-second counts.
    pub timeline: Vec<Second>,
    /// Latency by quantile.
    pub spectrum: Vec<(f64, f64)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> PhaseInfo {
        PhaseInfo {
            mode: crate::cli::Mode::Closed,
            concurrency: 1,
            target_events_per_s: None,
            planned_s: 2.0,
        }
    }

    #[test]
    fn percentiles_and_rates_come_from_the_recordings() {
        let t0 = Instant::now();
        let mut r = Recorder::new(t0);
        for i in 1..=1000u64 {
            let done = t0 + Duration::from_millis(2 * i);
            r.ok(done, Duration::from_millis(i), 100, 0, 1000);
        }
        r.failed(t0 + Duration::from_millis(10), 100, "503");
        let s = r.summary(info());
        assert!(
            (s.latency_ms.p50 - 500.0).abs() < 1.0,
            "{}",
            s.latency_ms.p50
        );
        assert!((s.latency_ms.p99 - 990.0).abs() < 1.0);
        assert!((s.latency_ms.p999 - 999.0).abs() < 1.0);
        assert!((s.elapsed_s - 2.0).abs() < 1e-9);
        assert!((s.events_per_s - 50_000.0).abs() < 1.0);
        assert_eq!(s.timeline.len(), 3);
        assert_eq!(s.timeline[0].requests, 499);
        assert_eq!(s.timeline[0].errors, 1);
        assert_eq!(s.errors["503"], 1);
        assert_eq!(s.spectrum.last().unwrap().0, 1.0);
    }
}
