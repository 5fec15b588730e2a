//! Duplicate suppression: a client-given event id seen from the same tenant and source within
//! the window is not appended twice; another tenant's event with the same source and id is its
//! own event. An id is claimed before its append starts, so a retry that arrives while that
//! append is still under way (the first request timed out) waits for its outcome instead of
//! appending the event again. Memory is bounded: the oldest ids are forgotten first.

use std::collections::hash_map::Entry;
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::Notify;

use crate::config::DedupConfig;

const SHARDS: usize = 16;

/// Bytes of tenant, source and id (with their three ends) that [`Dedup::key`] hashes in one
/// write from the stack.
const KEY_BUFFER: usize = 256;

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

/// One shard's ids. Appended ids take 8 bytes in `appended` and 8 in `order`, with their
/// times kept once per millisecond in `times` (a wide map value of state and `Instant` took
/// three times that: at the default million ids, ~77 MB against ~27 MB).
///
/// Invariant: `order` holds exactly the ids of `appended`, once each, and `times` their
/// append times in the same order; `in_flight` and `appended` share no id.
#[derive(Default)]
struct Ids {
    /// Appended within the window.
    appended: HashSet<u64, BuildHasherDefault<Prehashed>>,
    /// Appends under way, and whether a retry waits for one to settle.
    in_flight: HashMap<u64, bool, BuildHasherDefault<Prehashed>>,
    /// The ids of `appended`, oldest first.
    order: VecDeque<u64>,
    /// `(milliseconds since the dedup began, ids appended in that millisecond)`, oldest first.
    times: VecDeque<(u64, u32)>,
}

impl Ids {
    /// Records `key` as appended at `now_ms`.
    fn push(&mut self, key: u64, now_ms: u64) {
        self.appended.insert(key);
        self.order.push_back(key);
        match self.times.back_mut() {
            Some((at, count)) if *at == now_ms && *count < u32::MAX => *count += 1,
            _ => self.times.push_back((now_ms, 1)),
        }
    }

    /// Forgets the oldest appended id.
    fn pop(&mut self) {
        let Some(old) = self.order.pop_front() else {
            return;
        };
        self.appended.remove(&old);
        if let Some((_, count)) = self.times.front_mut() {
            *count -= 1;
            if *count == 0 {
                self.times.pop_front();
            }
        }
    }

    /// Forgets appended ids older than `window_ms` at `now_ms`, and the oldest over `max`.
    fn forget_old(&mut self, now_ms: u64, window_ms: u64, max: usize) {
        while let Some(&(at, _)) = self.times.front() {
            if now_ms.saturating_sub(at) < window_ms && self.order.len() <= max {
                break;
            }
            self.pop();
        }
    }
}

#[derive(Default)]
struct Shard {
    ids: Mutex<Ids>,
    /// Woken when an id some retry waits for is settled.
    settled: Notify,
}

struct Inner {
    /// When the dedup began: append times are milliseconds since.
    epoch: Instant,
    window_ms: u64,
    per_shard: usize,
    shards: [Shard; SHARDS],
    /// Random keys per process, so clients cannot aim ids at one bucket.
    hasher: RandomState,
}

/// Remembers `(tenant, source, id)` triples for a window, in at most `max_entries` entries.
/// Clones share the ids (an append task settles its claims in the pipeline's dedup).
#[derive(Clone)]
pub struct Dedup {
    inner: Arc<Inner>,
}

/// The ids of one batch (their keys), so that an id repeated within the batch is a duplicate,
/// with dedup off too; and the batch's time in the window, read once at its first claim (a
/// clock read per event cost more than the map's probe).
#[derive(Default)]
pub struct BatchIds {
    keys: HashSet<u64, BuildHasherDefault<Prehashed>>,
    now_ms: Option<u64>,
}

/// What [`Dedup::claim`] found for an id.
#[derive(Debug)]
pub enum Claim {
    /// Not seen: the caller appends the event, and says so with [`Pending::appended`]; a
    /// `Pending` dropped before that gives the id up (a failed append), and a retry may take it.
    New(Pending),
    /// Appended within the window, or earlier in the same batch: a duplicate.
    Seen,
    /// Another request's append of it is under way: wait with [`Dedup::settled`], then claim
    /// again.
    InFlight(InFlight),
    /// Dedup is off (`window_ms == 0`): nothing is remembered.
    Off,
}

/// An id claimed for an append (see [`Claim::New`]).
#[derive(Debug)]
#[must_use = "dropping a claim gives the id up at once"]
pub struct Pending {
    dedup: Dedup,
    key: u64,
    appended: AtomicBool,
}

/// An id whose append by another request is under way (see [`Claim::InFlight`]).
#[derive(Debug, Clone, Copy)]
pub struct InFlight {
    key: u64,
}

impl std::fmt::Debug for Dedup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dedup")
            .field("window_ms", &self.inner.window_ms)
            .finish_non_exhaustive()
    }
}

impl Dedup {
    /// A window per configuration; `window_ms == 0` remembers nothing.
    pub fn new(config: &DedupConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                epoch: Instant::now(),
                window_ms: config.window_ms,
                per_shard: config.max_entries.div_ceil(SHARDS).max(1),
                shards: std::array::from_fn(|_| Shard::default()),
                hasher: RandomState::new(),
            }),
        }
    }

    /// The SipHash of `tenant`, `source` and `id`, each ended with `0xff` as `str`'s `Hash`
    /// ends it (a byte UTF-8 never holds, so no choice of the three spells another triple).
    /// SipHash is a streaming hash, so this equals hashing the three strings one after the
    /// other; written as one slice when they fit in [`KEY_BUFFER`] bytes, since each write
    /// costs a call's handling of the last partial word (the six writes took ~450
    /// instructions an event, most of the dedup's cost).
    fn key(&self, tenant: &str, source: &str, id: &str) -> u64 {
        let mut hasher = self.inner.hasher.build_hasher();
        let len = tenant.len() + source.len() + id.len() + 3;
        if len <= KEY_BUFFER {
            let mut joined = [0u8; KEY_BUFFER];
            let mut at = 0;
            for part in [tenant, source, id] {
                joined[at..at + part.len()].copy_from_slice(part.as_bytes());
                joined[at + part.len()] = 0xff;
                at += part.len() + 1;
            }
            hasher.write(&joined[..len]);
        } else {
            tenant.hash(&mut hasher);
            source.hash(&mut hasher);
            id.hash(&mut hasher);
        }
        hasher.finish()
    }

    fn shard(&self, key: u64) -> &Shard {
        // Bits the shard's map uses neither for the bucket (low) nor for the tag (top 7).
        &self.inner.shards[((key >> 32) as usize) % SHARDS]
    }

    /// The shard's ids; a panic while one was held leaves them usable (each change is one
    /// map or queue operation).
    fn ids(&self, key: u64) -> MutexGuard<'_, Ids> {
        self.shard(key)
            .ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Claims `(tenant, source, id)` for an append, unless it came earlier in `batch`, was
    /// appended within the window, or another append of it is under way.
    pub fn claim(&self, batch: &mut BatchIds, tenant: &str, source: &str, id: &str) -> Claim {
        let key = self.key(tenant, source, id);
        if !batch.keys.insert(key) {
            return Claim::Seen;
        }
        if self.inner.window_ms == 0 {
            return Claim::Off;
        }
        let now_ms = *batch.now_ms.get_or_insert_with(|| self.now_ms());
        let mut ids = self.ids(key);
        ids.forget_old(now_ms, self.inner.window_ms, self.inner.per_shard);
        if ids.appended.contains(&key) {
            return Claim::Seen;
        }
        // One probe of the in-flight map, which holds only the requests under way.
        match ids.in_flight.entry(key) {
            Entry::Occupied(_) => return Claim::InFlight(InFlight { key }),
            Entry::Vacant(new) => {
                new.insert(false);
            }
        }
        drop(ids);
        Claim::New(Pending {
            dedup: self.clone(),
            key,
            appended: AtomicBool::new(false),
        })
    }

    /// Resolves once the append `in_flight` names has settled: appended (a new claim finds it
    /// [`Claim::Seen`]) or given up (a new claim may take it).
    pub async fn settled(&self, in_flight: InFlight) {
        let key = in_flight.key;
        let shard = self.shard(key);
        loop {
            let notified = shard.settled.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the check, so a settlement right after it is not missed.
            notified.as_mut().enable();
            match self.ids(key).in_flight.get_mut(&key) {
                Some(waited) => *waited = true,
                None => return,
            }
            notified.await;
        }
    }

    /// Whether `(tenant, source, id)` was appended within the window.
    pub fn seen(&self, tenant: &str, source: &str, id: &str) -> bool {
        if self.inner.window_ms == 0 {
            return false;
        }
        let key = self.key(tenant, source, id);
        let now_ms = self.now_ms();
        let mut ids = self.ids(key);
        ids.forget_old(now_ms, self.inner.window_ms, self.inner.per_shard);
        ids.appended.contains(&key)
    }

    /// Milliseconds since the dedup began.
    fn now_ms(&self) -> u64 {
        u64::try_from(self.inner.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Settles a claim: the id as appended at `now_ms` (read here when `None`, and kept for
    /// the next claim the caller settles), or given up.
    fn settle(&self, key: u64, appended: bool, now_ms: &mut Option<u64>) {
        let now_ms = appended.then(|| *now_ms.get_or_insert_with(|| self.now_ms()));
        let woken = {
            let mut ids = self.ids(key);
            let Some(waited) = ids.in_flight.remove(&key) else {
                return;
            };
            if let Some(now_ms) = now_ms {
                ids.push(key, now_ms);
                ids.forget_old(now_ms, self.inner.window_ms, self.inner.per_shard);
            }
            waited
        };
        if woken {
            self.shard(key).settled.notify_waiters();
        }
    }

    /// Ids currently remembered, in flight included.
    pub fn len(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| {
                s.ids
                    .lock()
                    .map(|ids| ids.appended.len() + ids.in_flight.len())
                    .unwrap_or(0)
            })
            .sum()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Pending {
    /// Records the id as durably appended now: a retry of it is a duplicate from here on.
    pub fn appended(&self) {
        self.appended_at(&mut None);
    }

    /// [`appended`](Self::appended), at the time in `now_ms` (read and kept there when
    /// `None`): the claims of one append settle with one clock read.
    pub fn appended_at(&self, now_ms: &mut Option<u64>) {
        if !self.appended.swap(true, Ordering::Relaxed) {
            self.dedup.settle(self.key, true, now_ms);
        }
    }
}

impl Drop for Pending {
    /// A claim not appended is given up, so a retry may append the event.
    fn drop(&mut self) {
        if !*self.appended.get_mut() {
            self.dedup.settle(self.key, false, &mut None);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    use super::*;

    fn appended(dedup: &Dedup, tenant: &str, source: &str, id: &str) {
        match dedup.claim(&mut BatchIds::default(), tenant, source, id) {
            Claim::New(pending) => pending.appended(),
            other => panic!("{tenant}/{source}/{id} not new: {other:?}"),
        }
    }

    /// Polls `future` once, without a runtime (the dedup's waits need none).
    fn poll_once<F: Future>(future: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        future.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn a_key_is_the_hash_of_the_three_strings_in_one_write_or_three() {
        let dedup = Dedup::new(&DedupConfig::default());
        let streamed = |tenant: &str, source: &str, id: &str| {
            dedup.inner.hasher.hash_one((tenant, source, id))
        };
        let long = "x".repeat(KEY_BUFFER);
        for (tenant, source, id) in [
            ("acme", "tv-1", "e1"),
            ("", "", ""),
            ("acme", "tv-1", &long[..KEY_BUFFER - 3 - 8]),
            ("acme", "tv-1", &long[..KEY_BUFFER - 3 - 7]),
            ("acme", &long, "e1"),
        ] {
            assert_eq!(dedup.key(tenant, source, id), streamed(tenant, source, id));
        }
        // The ends keep the parts apart.
        assert_ne!(dedup.key("a", "bc", "d"), dedup.key("ab", "c", "d"));
        assert_ne!(dedup.key("a", "b", "cd"), dedup.key("a", "bc", "d"));
        // A triple too long for the buffer is remembered too.
        appended(&dedup, "acme", &long, "e1");
        assert!(dedup.seen("acme", &long, "e1"));
        assert!(!dedup.seen("acme", &long, "e2"));
    }

    #[test]
    fn an_id_is_seen_per_source() {
        let dedup = Dedup::new(&DedupConfig::default());
        assert!(!dedup.seen("acme", "tv-1", "e1"));
        appended(&dedup, "acme", "tv-1", "e1");
        assert!(dedup.seen("acme", "tv-1", "e1"));
        assert!(matches!(
            dedup.claim(&mut BatchIds::default(), "acme", "tv-1", "e1"),
            Claim::Seen
        ));
        assert!(!dedup.seen("acme", "tv-2", "e1"));
    }

    #[test]
    fn an_id_is_seen_per_tenant() {
        let dedup = Dedup::new(&DedupConfig::default());
        appended(&dedup, "acme", "tv-1", "e1");
        // Another tenant's event with the same source and id is not a duplicate.
        assert!(!dedup.seen("globex", "tv-1", "e1"));
        appended(&dedup, "globex", "tv-1", "e1");
        assert!(dedup.seen("globex", "tv-1", "e1"));
        assert!(dedup.seen("acme", "tv-1", "e1"));
        // The boundaries between the parts cannot be moved.
        assert!(!dedup.seen("acmetv-1", "", "e1"));
        assert!(!dedup.seen("acme", "tv-1e1", ""));
        assert!(!dedup.seen("", "acmetv-1", "e1"));
    }

    /// Claims `t/s/e1` for a first append, and claims it again as its retry: in flight.
    fn claimed_twice(dedup: &Dedup) -> (Pending, InFlight) {
        let Claim::New(first) = dedup.claim(&mut BatchIds::default(), "t", "s", "e1") else {
            panic!("a new id")
        };
        let Claim::InFlight(in_flight) = dedup.claim(&mut BatchIds::default(), "t", "s", "e1")
        else {
            panic!("the first append is under way")
        };
        (first, in_flight)
    }

    #[test]
    fn an_id_in_flight_is_neither_new_nor_seen_until_its_append_settles() {
        let dedup = Dedup::new(&DedupConfig::default());
        let (first, in_flight) = claimed_twice(&dedup);
        assert!(!dedup.seen("t", "s", "e1"));
        let mut waiting = std::pin::pin!(dedup.settled(in_flight));
        assert!(poll_once(waiting.as_mut()).is_pending());
        first.appended();
        assert!(poll_once(waiting.as_mut()).is_ready());
        assert!(matches!(
            dedup.claim(&mut BatchIds::default(), "t", "s", "e1"),
            Claim::Seen
        ));
        drop(first); // already appended: dropping it gives nothing up
        assert!(dedup.seen("t", "s", "e1"));
    }

    #[test]
    fn a_claim_dropped_unappended_lets_the_retry_take_the_id() {
        let dedup = Dedup::new(&DedupConfig::default());
        let (first, in_flight) = claimed_twice(&dedup);
        let mut waiting = std::pin::pin!(dedup.settled(in_flight));
        assert!(poll_once(waiting.as_mut()).is_pending());
        drop(first); // the append failed
        assert!(poll_once(waiting.as_mut()).is_ready());
        assert!(matches!(
            dedup.claim(&mut BatchIds::default(), "t", "s", "e1"),
            Claim::New(_)
        ));
        assert!(dedup.is_empty(), "the retry's claim was dropped too");
    }

    #[test]
    fn memory_stays_bounded() {
        let dedup = Dedup::new(&DedupConfig {
            window_ms: 600_000,
            max_entries: 1_000,
        });
        for i in 0..100_000 {
            appended(&dedup, "t", "s", &i.to_string());
        }
        assert!(dedup.len() <= 1_000 + SHARDS, "{}", dedup.len());
        assert!(dedup.seen("t", "s", "99999"));
        assert!(!dedup.seen("t", "s", "0"));
    }

    #[test]
    fn an_id_repeated_in_a_batch_is_a_duplicate_with_dedup_on_or_off() {
        for window_ms in [0, 600_000] {
            let dedup = Dedup::new(&DedupConfig {
                window_ms,
                max_entries: 10,
            });
            let mut batch = BatchIds::default();
            let first = dedup.claim(&mut batch, "t", "s", "1");
            assert!(
                !matches!(first, Claim::Seen | Claim::InFlight(_)),
                "{first:?}"
            );
            assert!(matches!(
                dedup.claim(&mut batch, "t", "s", "1"),
                Claim::Seen
            ));
            assert!(!matches!(
                dedup.claim(&mut batch, "t", "s2", "1"),
                Claim::Seen | Claim::InFlight(_)
            ));
        }
    }

    #[test]
    fn ids_are_forgotten_once_out_of_the_window_or_over_the_bound() {
        let mut ids = Ids::default();
        for (key, ms) in [(1, 0), (2, 0), (3, 5), (4, 9)] {
            ids.push(key, ms);
        }
        assert_eq!(ids.times, [(0, 2), (5, 1), (9, 1)]);
        ids.forget_old(9, 10, 100);
        assert_eq!(ids.order, [1, 2, 3, 4], "all within 10 ms");
        ids.forget_old(10, 10, 100);
        assert_eq!(ids.order, [3, 4], "both appended at 0 ms are 10 ms old");
        assert!(!ids.appended.contains(&1) && !ids.appended.contains(&2));
        ids.forget_old(10, 10, 1);
        assert_eq!(ids.order, [4], "over the bound of 1");
        assert_eq!(ids.times, [(9, 1)]);
        assert_eq!(ids.appended.len(), 1);
        ids.forget_old(u64::MAX, 10, 1);
        assert!(ids.order.is_empty() && ids.times.is_empty() && ids.appended.is_empty());
    }

    #[test]
    fn a_zero_window_remembers_nothing() {
        let dedup = Dedup::new(&DedupConfig {
            window_ms: 0,
            max_entries: 10,
        });
        assert!(matches!(
            dedup.claim(&mut BatchIds::default(), "t", "s", "1"),
            Claim::Off
        ));
        assert!(!dedup.seen("t", "s", "1"));
        assert!(dedup.is_empty());
    }
}
