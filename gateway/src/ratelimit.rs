//! Per-key rate limits (requests/s and events/s) with governor token buckets.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{Quota, RateLimiter};

use crate::config::RateLimitConfig;
use crate::error::IngestError;

type Limiter = RateLimiter<governor::state::NotKeyed, governor::state::InMemoryState, DefaultClock>;

struct Slot {
    requests: Option<Limiter>,
    events: Option<Limiter>,
}

/// One pair of buckets per API key.
pub struct RateLimits {
    slots: Vec<Slot>,
    clock: DefaultClock,
}

fn limiter(rate: u32, burst_seconds: u32) -> Option<Limiter> {
    let rate = NonZeroU32::new(rate)?;
    let burst = NonZeroU32::new(rate.get().saturating_mul(burst_seconds.max(1))).unwrap_or(rate);
    Some(RateLimiter::direct(
        Quota::per_second(rate).allow_burst(burst),
    ))
}

impl RateLimits {
    /// Buckets for `slots` keys.
    pub fn new(config: &RateLimitConfig, slots: usize) -> Self {
        let slots = (0..slots.max(1))
            .map(|_| Slot {
                requests: limiter(config.requests_per_second, config.burst_seconds),
                events: limiter(config.events_per_second, config.burst_seconds),
            })
            .collect();
        Self {
            slots,
            clock: DefaultClock::default(),
        }
    }

    /// Takes one request token for `key_index`.
    pub fn check_request(&self, key_index: usize) -> Result<(), IngestError> {
        let Some(limiter) = self.slots.get(key_index).and_then(|s| s.requests.as_ref()) else {
            return Ok(());
        };
        limiter
            .check()
            .map_err(|not_until| IngestError::RateLimited {
                what: "requests per second",
                retry_after: not_until.wait_time_from(self.clock.now()),
            })
    }

    /// Takes `count` event tokens for `key_index`.
    pub fn check_events(&self, key_index: usize, count: usize) -> Result<(), IngestError> {
        let Some(limiter) = self.slots.get(key_index).and_then(|s| s.events.as_ref()) else {
            return Ok(());
        };
        let Some(n) = NonZeroU32::new(u32::try_from(count).unwrap_or(u32::MAX)) else {
            return Ok(());
        };
        match limiter.check_n(n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(IngestError::RateLimited {
                what: "events per second",
                retry_after: not_until.wait_time_from(self.clock.now()),
            }),
            // More events in one batch than the bucket can ever hold.
            Err(_) => Err(IngestError::RateLimited {
                what: "events per second (batch larger than the burst)",
                retry_after: Duration::from_secs(1),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_refused_with_a_retry_time() {
        let limits = RateLimits::new(
            &RateLimitConfig {
                requests_per_second: 5,
                events_per_second: 100,
                burst_seconds: 1,
            },
            1,
        );
        for _ in 0..5 {
            limits.check_request(0).unwrap();
        }
        match limits.check_request(0) {
            Err(IngestError::RateLimited { retry_after, .. }) => {
                assert!(retry_after <= Duration::from_secs(1))
            }
            other => panic!("expected a rate limit, got {other:?}"),
        }
        limits.check_events(0, 100).unwrap();
        assert!(limits.check_events(0, 1).is_err());
        assert!(limits.check_events(0, 1000).is_err());
    }

    #[test]
    fn zero_switches_a_limit_off() {
        let limits = RateLimits::new(
            &RateLimitConfig {
                requests_per_second: 0,
                events_per_second: 0,
                burst_seconds: 1,
            },
            1,
        );
        for _ in 0..10_000 {
            limits.check_request(0).unwrap();
        }
        limits.check_events(0, 1_000_000).unwrap();
    }
}
