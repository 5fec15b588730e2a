//! Intended send times of the open loop: a fixed schedule computed from the rate alone, never
//! from when earlier requests finished, so a slow server cannot slow the schedule down
//! (no coordinated omission).

use std::time::Duration;

use crate::cli::Arrivals;
use crate::fleet::hash;

/// Offsets of successive batches from the start of the run.
#[derive(Debug, Clone)]
pub struct Schedule {
    arrivals: Arrivals,
    batches_per_s: f64,
    seed: u64,
    n: u64,
    at_s: f64,
}

impl Schedule {
    /// `batches_per_s` batches a second on average, spaced by `arrivals`.
    pub fn new(arrivals: Arrivals, batches_per_s: f64, seed: u64) -> Schedule {
        Schedule {
            arrivals,
            batches_per_s: batches_per_s.max(1e-9),
            seed,
            n: 0,
            at_s: 0.0,
        }
    }
}

impl Iterator for Schedule {
    type Item = Duration;

    /// The intended offset of the next batch (the first is at 0).
    fn next(&mut self) -> Option<Duration> {
        let now = self.at_s;
        let gap = match self.arrivals {
            Arrivals::Uniform => 1.0 / self.batches_per_s,
            Arrivals::Poisson => {
                // U in (0, 1]: 53 random bits, never 0.
                let u = ((hash(self.seed ^ 0x5C, self.n) >> 11) + 1) as f64 / (1u64 << 53) as f64;
                -u.ln() / self.batches_per_s
            }
        };
        self.n += 1;
        self.at_s += gap;
        Some(Duration::from_secs_f64(now))
    }
}

/// Latency of a request counted from its intended send time, not from when it went out.
pub fn latency_from_intended(
    intended: tokio::time::Instant,
    done: tokio::time::Instant,
) -> Duration {
    done.saturating_duration_since(intended)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_is_even() {
        let offs: Vec<Duration> = Schedule::new(Arrivals::Uniform, 4.0, 1).take(5).collect();
        let ms: Vec<u128> = offs.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![0, 250, 500, 750, 1000]);
    }

    #[test]
    fn poisson_keeps_the_mean_rate_and_is_monotonic() {
        let offs: Vec<Duration> = Schedule::new(Arrivals::Poisson, 1000.0, 9)
            .take(100_001)
            .collect();
        assert!(offs.windows(2).all(|w| w[0] <= w[1]));
        let secs = offs.last().unwrap().as_secs_f64();
        assert!((95.0..105.0).contains(&secs), "{secs}");
    }

    #[test]
    fn latency_counts_from_the_intended_time() {
        let t0 = tokio::time::Instant::now();
        let intended = t0;
        // The request could only go out 80 ms late and took 20 ms: latency is 100 ms.
        let done = t0 + Duration::from_millis(100);
        assert_eq!(
            latency_from_intended(intended, done),
            Duration::from_millis(100)
        );
        assert_eq!(latency_from_intended(done, t0), Duration::ZERO);
    }
}
