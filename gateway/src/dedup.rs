//! Duplicate suppression: a client-given event id seen from the same tenant and source within
//! the window is not appended twice; another tenant's event with the same source and id is its
//! own event. Memory is bounded: the oldest ids are forgotten first.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::DedupConfig;

const SHARDS: usize = 16;

/// The map's keys are already SipHash outputs (with this process's random keys): hashing them
/// again would only cost time.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Default)]
struct Shard {
    seen: HashMap<u64, Instant, BuildHasherDefault<Prehashed>>,
    order: VecDeque<(u64, Instant)>,
}

/// Remembers `(tenant, source, id)` triples for a window, in at most `max_entries` entries.
/// Clones share the ids (an append task records into the pipeline's dedup).
#[derive(Clone)]
pub struct Dedup {
    window: Duration,
    per_shard: usize,
    shards: Arc<[Mutex<Shard>]>,
    /// Random keys per process, so clients cannot aim ids at one bucket.
    hasher: RandomState,
}

impl Dedup {
    /// A window per configuration; `window_ms == 0` remembers nothing.
    pub fn new(config: &DedupConfig) -> Self {
        Self {
            window: Duration::from_millis(config.window_ms),
            per_shard: config.max_entries.div_ceil(SHARDS).max(1),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: RandomState::new(),
        }
    }

    /// `str`'s `Hash` ends each string with `0xff`, a byte UTF-8 never holds, so no choice of
    /// tenant, source and id spells another triple.
    fn key(&self, tenant: &str, source: &str, id: &str) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        tenant.hash(&mut hasher);
        source.hash(&mut hasher);
        id.hash(&mut hasher);
        hasher.finish()
    }

    fn shard(&self, key: u64) -> &Mutex<Shard> {
        // Bits the shard's map uses neither for the bucket (low) nor for the tag (top 7).
        &self.shards[((key >> 32) as usize) % SHARDS]
    }

    /// Whether `(tenant, source, id)` was recorded within the window.
    pub fn seen(&self, tenant: &str, source: &str, id: &str) -> bool {
        if self.window.is_zero() {
            return false;
        }
        let key = self.key(tenant, source, id);
        let Ok(shard) = self.shard(key).lock() else {
            return false;
        };
        shard
            .seen
            .get(&key)
            .is_some_and(|at| at.elapsed() < self.window)
    }

    /// Records `(tenant, source, id)` as appended now.
    pub fn record(&self, tenant: &str, source: &str, id: &str) {
        if self.window.is_zero() {
            return;
        }
        let key = self.key(tenant, source, id);
        let Ok(mut shard) = self.shard(key).lock() else {
            return;
        };
        let now = Instant::now();
        // Forget what is out of the window or over the size bound, oldest first.
        while let Some(&(old, at)) = shard.order.front() {
            if now.duration_since(at) < self.window && shard.order.len() < self.per_shard {
                break;
            }
            shard.order.pop_front();
            if shard.seen.get(&old) == Some(&at) {
                shard.seen.remove(&old);
            }
        }
        shard.seen.insert(key, now);
        shard.order.push_back((key, now));
    }

    /// Ids currently remembered.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|s| s.seen.len()).unwrap_or(0))
            .sum()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_seen_per_source() {
        let dedup = Dedup::new(&DedupConfig::default());
        assert!(!dedup.seen("acme", "tv-1", "e1"));
        dedup.record("acme", "tv-1", "e1");
        assert!(dedup.seen("acme", "tv-1", "e1"));
        assert!(!dedup.seen("acme", "tv-2", "e1"));
    }

    #[test]
    fn an_id_is_seen_per_tenant() {
        let dedup = Dedup::new(&DedupConfig::default());
        dedup.record("acme", "tv-1", "e1");
        // Another tenant's event with the same source and id is not a duplicate.
        assert!(!dedup.seen("globex", "tv-1", "e1"));
        dedup.record("globex", "tv-1", "e1");
        assert!(dedup.seen("globex", "tv-1", "e1"));
        assert!(dedup.seen("acme", "tv-1", "e1"));
        // The boundaries between the parts cannot be moved.
        assert!(!dedup.seen("acmetv-1", "", "e1"));
        assert!(!dedup.seen("acme", "tv-1e1", ""));
        assert!(!dedup.seen("", "acmetv-1", "e1"));
    }

    #[test]
    fn memory_stays_bounded() {
        let dedup = Dedup::new(&DedupConfig {
            window_ms: 600_000,
            max_entries: 1_000,
        });
        for i in 0..100_000 {
            dedup.record("t", "s", &i.to_string());
        }
        assert!(dedup.len() <= 1_000 + SHARDS, "{}", dedup.len());
        assert!(dedup.seen("t", "s", "99999"));
        assert!(!dedup.seen("t", "s", "0"));
    }

    #[test]
    fn a_zero_window_remembers_nothing() {
        let dedup = Dedup::new(&DedupConfig {
            window_ms: 0,
            max_entries: 10,
        });
        dedup.record("t", "s", "1");
        assert!(!dedup.seen("t", "s", "1"));
        assert!(dedup.is_empty());
    }
}
