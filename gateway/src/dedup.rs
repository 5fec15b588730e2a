//! Duplicate suppression: a client-given event id seen from the same tenant and source within
//! the window is not appended twice; another tenant's event with the same source and id is its
//! own event. An id is claimed before its append starts, so a retry that arrives while that
//! append is still under way (the first request timed out) waits for its outcome instead of
//! appending the event again. Memory is bounded: the oldest ids are forgotten first.
//!
//! A batch's ids are claimed together ([`Dedup::claim_batch`]) and settled together
//! ([`Claims::appended`]): each shard's lock is taken once per batch rather than once per id,
//! and an id costs one probe of its shard's table to claim and one to settle, its state kept
//! in the stored key's low bits rather than in a second map. The table's slots for a batch's
//! keys are prefetched together before they are probed ([`table`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::Notify;

use crate::config::DedupConfig;

mod table;

use table::{Probe, Table};

const SHARDS: usize = 16;
// A key's shard is its bits 32 to 35 ([`Key::shard`]).
const _: () = assert!(SHARDS == 16);

/// A stored key's state bits: its append is under way (else it was appended)…
const IN_FLIGHT: u64 = 1;
/// …and a retry waits for it to settle.
const WAITED: u64 = 2;
/// The bits of a key that are its state, not its hash (cleared in every [`Key`]).
const STATE: u64 = IN_FLIGHT | WAITED;
/// Set in every key, so that no stored key is 0, the table's empty slot.
const TAKEN: u64 = 1 << 63;
/// How many of the oldest ids [`Ids::forget_old`] prefetches ahead of the one it removes.
const FORGET_AHEAD: usize = 8;

/// The hash of a `(tenant, source, id)` triple ([`Dedup::key`]), its state bits clear and
/// its top bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key(u64);

impl Key {
    /// The shard that holds the key: bits 32 to 35 (the table's slot is the top bits of
    /// [`table_hash`](Self::table_hash), which all the key's bits move).
    fn shard(self) -> usize {
        ((self.0 >> 32) as usize) % SHARDS
    }

    /// The table's hash of the key: its bits spread by one multiplication, so that the top
    /// bits (the key's first slot) depend on all of them.
    fn table_hash(self) -> u64 {
        self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    /// Whether `stored` (a key with its state bits) is this key.
    fn is(self, stored: u64) -> bool {
        stored & !STATE == self.0
    }
}

/// One shard's ids. An id takes 8 bytes in `table` (whose slots are at most three quarters
/// full), and 8 in `order` once appended, with the append times kept once per millisecond in
/// `times` (a wide map value of state and `Instant` took three times that: at the default
/// million ids, ~77 MB against ~25 MB).
///
/// Invariant: `order` holds exactly the appended keys of `table` (those without
/// [`IN_FLIGHT`]), once each, and `times` their append times in the same order.
#[derive(Default)]
struct Ids {
    /// Keys appended within the window, and keys whose append is under way ([`IN_FLIGHT`],
    /// with [`WAITED`] when a retry waits for them).
    table: Table,
    /// The appended keys, oldest first.
    order: VecDeque<Key>,
    /// `(milliseconds since the dedup began, ids appended in that millisecond)`, oldest first.
    times: VecDeque<(u64, u32)>,
}

/// What a claim found for one id in its shard.
enum Found {
    New,
    Seen,
    InFlight,
}

impl Ids {
    /// Claims `key`: new (now in flight), appended already, or another append's under way.
    fn claim(&mut self, key: Key) -> Found {
        self.table.reserve_one();
        match self.table.probe(key) {
            Probe::Found(at) if self.table.get(at) & IN_FLIGHT != 0 => Found::InFlight,
            Probe::Found(_) => Found::Seen,
            Probe::Vacant(at) => {
                self.table.fill(at, key.0 | IN_FLIGHT);
                Found::New
            }
        }
    }

    /// Settles the claim of `key`: appended at `now_ms` (`Some`), or given up (`None`).
    /// Returns whether a retry waited for it. A key not in flight is left as it is.
    fn settle(&mut self, key: Key, now_ms: Option<u64>) -> bool {
        let Some(at) = self.table.find(key) else {
            return false;
        };
        let state = self.table.get(at) & STATE;
        if state & IN_FLIGHT == 0 {
            return false;
        }
        match now_ms {
            Some(now_ms) => {
                self.table.set(at, key.0);
                self.push(key, now_ms);
            }
            None => self.table.remove(at),
        }
        state & WAITED != 0
    }

    /// Marks `key` as waited for, if its append is under way; `false` when it is not.
    fn wait_for(&mut self, key: Key) -> bool {
        match self.table.find(key) {
            Some(at) if self.table.get(at) & IN_FLIGHT != 0 => {
                self.table.set(at, self.table.get(at) | WAITED);
                true
            }
            _ => false,
        }
    }

    /// Whether `key` was appended within the window.
    fn appended(&self, key: Key) -> bool {
        self.table
            .find(key)
            .is_some_and(|at| self.table.get(at) & IN_FLIGHT == 0)
    }

    /// Records `key` (already in the table) as appended at `now_ms`.
    fn push(&mut self, key: Key, now_ms: u64) {
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
        if let Some(at) = self.table.find(old) {
            self.table.remove(at);
        }
        if let Some((_, count)) = self.times.front_mut() {
            *count -= 1;
            if *count == 0 {
                self.times.pop_front();
            }
        }
    }

    /// Forgets appended ids older than `window_ms` at `now_ms`, and the oldest over `max`.
    /// The ids a few places ahead are prefetched, so that their slots, long cold, are on
    /// their way by the time each is removed.
    fn forget_old(&mut self, now_ms: u64, window_ms: u64, max: usize) {
        let mut ahead = 0;
        while let Some(&(at, _)) = self.times.front() {
            if now_ms.saturating_sub(at) < window_ms && self.order.len() <= max {
                break;
            }
            // The first time round, the first `FORGET_AHEAD` ids; after, one more each.
            while ahead < FORGET_AHEAD {
                if let Some(&key) = self.order.get(ahead) {
                    self.table.prefetch(key);
                }
                ahead += 1;
            }
            ahead -= 1;
            self.pop();
        }
    }

    /// Starts loading the slots of the keys at `places` in `keys` (a shard's run of a batch),
    /// so that their probes right after wait for memory together.
    fn prefetch(&self, keys: &[Key], places: &[usize]) {
        for &at in places {
            self.table.prefetch(keys[at]);
        }
    }
}

/// The places of a batch's keys grouped by shard, in batch order within each shard (a
/// counting sort: two passes over the keys, where sorting them took ~160 instructions a key),
/// so that each shard is locked once per batch.
struct ByShard {
    /// Where each shard's run of `places` begins; the last entry is where the runs end.
    starts: [usize; SHARDS + 1],
    /// Places in the batch, shard after shard.
    places: Vec<usize>,
}

impl ByShard {
    fn of(keys: &[Key]) -> Self {
        let mut starts = [0usize; SHARDS + 1];
        for key in keys {
            starts[key.shard() + 1] += 1;
        }
        for shard in 0..SHARDS {
            starts[shard + 1] += starts[shard];
        }
        let mut next = starts;
        let mut places = vec![0; keys.len()];
        for (at, key) in keys.iter().enumerate() {
            let slot = &mut next[key.shard()];
            places[*slot] = at;
            *slot += 1;
        }
        Self { starts, places }
    }

    /// Each shard with keys, and the range of `places` its keys' places take.
    fn runs(&self) -> impl Iterator<Item = (usize, std::ops::Range<usize>)> + use<> {
        let starts = self.starts;
        (0..SHARDS)
            .map(move |shard| (shard, starts[shard]..starts[shard + 1]))
            .filter(|(_, run)| !run.is_empty())
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
    /// Random keys per process, so clients cannot aim ids at one bucket (or at another's id).
    hasher: ahash::RandomState,
}

/// Remembers `(tenant, source, id)` triples for a window, in at most `max_entries` entries.
/// Clones share the ids (an append task settles its claims in the pipeline's dedup).
#[derive(Clone)]
pub struct Dedup {
    inner: Arc<Inner>,
}

/// What [`Dedup::claim_batch`] found for one id of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Not seen: the caller appends the event and says so with [`Claims::appended`]; a claim
    /// not appended by the time the last clone of its [`Claims`] is dropped is given up (a
    /// failed append), and a retry may take the id.
    New(ClaimId),
    /// Appended within the window, or earlier in the same batch: a duplicate.
    Seen,
    /// Dedup is off (`window_ms == 0`): nothing is remembered.
    Off,
}

/// One id of a batch claimed for an append: its place among the batch's [`Claims`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimId(usize);

/// An id whose append by another request is under way: wait with [`Dedup::settled`], then
/// claim again.
#[derive(Debug, Clone, Copy)]
pub struct InFlight {
    key: Key,
}

/// The ids one batch claimed, shared by the batch and its append tasks. Each is settled as
/// appended by the task that wrote its event ([`Claims::appended`]) or given up
/// ([`Claims::give_up`]); those still open when the last clone is dropped (the append failed,
/// or the request was dropped before its append began) are given up then, so a retry may take
/// them.
#[derive(Clone)]
pub struct Claims {
    inner: Arc<ClaimsInner>,
}

struct ClaimsInner {
    dedup: Dedup,
    /// The claimed keys, by [`ClaimId`]; `None` once settled.
    open: Mutex<Vec<Option<Key>>>,
}

impl std::fmt::Debug for Dedup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dedup")
            .field("window_ms", &self.inner.window_ms)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Claims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claims").finish_non_exhaustive()
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
                hasher: ahash::RandomState::new(),
            }),
        }
    }

    /// The keyed hash of `tenant`, `source` and `id` (each ended with `0xff` as `str`'s `Hash`
    /// ends it, a byte UTF-8 never holds, so no choice of the three spells another triple),
    /// its two state bits cleared and its top bit set (61 bits of hash are left). aHash,
    /// seeded per process: SipHash took ~300 instructions an event here, most of the dedup's
    /// cost.
    pub fn key(&self, tenant: &str, source: &str, id: &str) -> Key {
        Key((self.inner.hasher.hash_one((tenant, source, id)) & !STATE) | TAKEN)
    }

    fn shard(&self, key: Key) -> &Shard {
        &self.inner.shards[key.shard()]
    }

    /// The shard's ids; a panic while one was held leaves them usable (each change is one
    /// table or queue operation).
    fn ids(&self, shard: usize) -> MutexGuard<'_, Ids> {
        self.inner.shards[shard]
            .ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Claims the ids of one batch (`keys`, from [`Dedup::key`], in batch order) for their
    /// appends: each is [`Claim::Seen`] if it came earlier in the batch or was appended within
    /// the window, else new (or [`Claim::Off`], with dedup off). Each shard is locked once.
    /// `Err` names an id whose append by another request is under way; nothing of the batch
    /// stays claimed then.
    pub fn claim_batch(&self, keys: &[Key]) -> Result<(Vec<Claim>, Claims), InFlight> {
        let mut found = vec![Claim::Seen; keys.len()];
        // The batch's places by shard, in batch order within each.
        let mut by_shard = ByShard::of(keys);
        let mut in_flight = None;
        let now_ms = (self.inner.window_ms > 0 && !keys.is_empty()).then(|| self.now_ms());
        for (shard, run) in by_shard.runs() {
            let run = &mut by_shard.places[run];
            // By key, then place: an id's first place comes first, its repeats right after.
            if run.len() > 1 {
                run.sort_unstable_by_key(|&at| (keys[at], at));
            }
            let mut ids = now_ms.map(|now_ms| {
                let mut ids = self.ids(shard);
                ids.prefetch(keys, run);
                ids.forget_old(now_ms, self.inner.window_ms, self.inner.per_shard);
                ids
            });
            let mut previous = None;
            for &at in run.iter() {
                let key = keys[at];
                if previous.replace(key) == Some(key) {
                    continue; // repeated in the batch: `Seen`
                }
                found[at] = match ids.as_mut().map(|ids| ids.claim(key)) {
                    None => Claim::Off,
                    Some(Found::Seen) => Claim::Seen,
                    Some(Found::New) => Claim::New(ClaimId(0)),
                    Some(Found::InFlight) => {
                        in_flight.get_or_insert(InFlight { key });
                        Claim::Seen
                    }
                };
            }
        }
        // Claims numbered in batch order.
        let mut open = Vec::with_capacity(keys.len());
        for (claim, &key) in found.iter_mut().zip(keys) {
            if let Claim::New(id) = claim {
                *id = ClaimId(open.len());
                open.push(Some(key));
            }
        }
        let claims = Claims {
            inner: Arc::new(ClaimsInner {
                dedup: self.clone(),
                open: Mutex::new(open),
            }),
        };
        match in_flight {
            // Dropping the claims gives them up.
            Some(in_flight) => Err(in_flight),
            None => Ok((found, claims)),
        }
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
            if !self.ids(key.shard()).wait_for(key) {
                return;
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
        let mut ids = self.ids(key.shard());
        ids.forget_old(now_ms, self.inner.window_ms, self.inner.per_shard);
        ids.appended(key)
    }

    /// Milliseconds since the dedup began.
    fn now_ms(&self) -> u64 {
        u64::try_from(self.inner.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Settles the claims of `keys`: appended now (`appended`) or given up. Each shard is
    /// locked once, and the retries waiting on a shard are woken once.
    fn settle(&self, keys: &[Key], appended: bool) {
        if keys.is_empty() {
            return;
        }
        let by_shard = ByShard::of(keys);
        let now_ms = appended.then(|| self.now_ms());
        for (shard, run) in by_shard.runs() {
            let woken = {
                let mut ids = self.ids(shard);
                let run = &by_shard.places[run];
                ids.prefetch(keys, run);
                let mut woken = false;
                for &at in run {
                    woken |= ids.settle(keys[at], now_ms);
                }
                if let Some(now_ms) = now_ms {
                    ids.forget_old(now_ms, self.inner.window_ms, self.inner.per_shard);
                }
                woken
            };
            if woken {
                self.inner.shards[shard].settled.notify_waiters();
            }
        }
    }

    /// Ids currently remembered, in flight included.
    pub fn len(&self) -> usize {
        (0..SHARDS).map(|shard| self.ids(shard).table.len()).sum()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Claims {
    /// Records the ids of `claimed` as durably appended now: a retry of any is a duplicate
    /// from here on. Ids already settled are left as they are.
    pub fn appended(&self, claimed: impl IntoIterator<Item = ClaimId>) {
        self.settle(claimed, true);
    }

    /// Gives up the ids of `claimed` (their events will not be appended): a retry may take
    /// them. Ids already settled are left as they are.
    pub fn give_up(&self, claimed: impl IntoIterator<Item = ClaimId>) {
        self.settle(claimed, false);
    }

    fn settle(&self, claimed: impl IntoIterator<Item = ClaimId>, appended: bool) {
        let keys: Vec<Key> = {
            let mut open = self
                .inner
                .open
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            claimed
                .into_iter()
                .filter_map(|ClaimId(at)| open.get_mut(at).and_then(Option::take))
                .collect()
        };
        self.inner.dedup.settle(&keys, appended);
    }
}

impl Drop for ClaimsInner {
    /// Claims not appended by now are given up, so a retry may append their events.
    fn drop(&mut self) {
        let open = self
            .open
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let keys: Vec<Key> = open.iter_mut().filter_map(Option::take).collect();
        self.dedup.settle(&keys, false);
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    use super::*;

    /// Claims one id in a batch of its own.
    fn claim(
        dedup: &Dedup,
        tenant: &str,
        source: &str,
        id: &str,
    ) -> Result<(Claim, Claims), InFlight> {
        let (found, claims) = dedup.claim_batch(&[dedup.key(tenant, source, id)])?;
        Ok((found[0], claims))
    }

    fn appended(dedup: &Dedup, tenant: &str, source: &str, id: &str) {
        match claim(dedup, tenant, source, id) {
            Ok((Claim::New(claimed), claims)) => claims.appended([claimed]),
            other => panic!("{tenant}/{source}/{id} not new: {other:?}"),
        }
    }

    /// Polls `future` once, without a runtime (the dedup's waits need none).
    fn poll_once<F: Future>(future: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        future.poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn a_key_keeps_the_three_strings_apart() {
        let dedup = Dedup::new(&DedupConfig::default());
        assert_eq!(
            dedup.key("acme", "tv-1", "e1"),
            dedup.key("acme", "tv-1", "e1")
        );
        // The ends keep the parts apart.
        assert_ne!(dedup.key("a", "bc", "d"), dedup.key("ab", "c", "d"));
        assert_ne!(dedup.key("a", "b", "cd"), dedup.key("a", "bc", "d"));
        assert_ne!(dedup.key("", "", "ab"), dedup.key("", "a", "b"));
        // Another process (another seed) hashes the same triple to another key.
        let other = Dedup::new(&DedupConfig::default());
        assert_ne!(
            other.key("acme", "tv-1", "e1"),
            dedup.key("acme", "tv-1", "e1")
        );
        // A long triple is remembered too.
        let long = "x".repeat(4096);
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
            claim(&dedup, "acme", "tv-1", "e1"),
            Ok((Claim::Seen, _))
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
    fn claimed_twice(dedup: &Dedup) -> (ClaimId, Claims, InFlight) {
        let Ok((Claim::New(first), claims)) = claim(dedup, "t", "s", "e1") else {
            panic!("a new id")
        };
        let Err(in_flight) = claim(dedup, "t", "s", "e1") else {
            panic!("the first append is under way")
        };
        (first, claims, in_flight)
    }

    #[test]
    fn an_id_in_flight_is_neither_new_nor_seen_until_its_append_settles() {
        let dedup = Dedup::new(&DedupConfig::default());
        let (first, claims, in_flight) = claimed_twice(&dedup);
        assert!(!dedup.seen("t", "s", "e1"));
        let mut waiting = std::pin::pin!(dedup.settled(in_flight));
        assert!(poll_once(waiting.as_mut()).is_pending());
        claims.appended([first]);
        assert!(poll_once(waiting.as_mut()).is_ready());
        assert!(matches!(
            claim(&dedup, "t", "s", "e1"),
            Ok((Claim::Seen, _))
        ));
        // Already appended: neither giving it up nor dropping the claims forgets it.
        claims.give_up([first]);
        drop(claims);
        assert!(dedup.seen("t", "s", "e1"));
    }

    #[test]
    fn a_claim_dropped_unappended_lets_the_retry_take_the_id() {
        let dedup = Dedup::new(&DedupConfig::default());
        let (_, claims, in_flight) = claimed_twice(&dedup);
        let mut waiting = std::pin::pin!(dedup.settled(in_flight));
        assert!(poll_once(waiting.as_mut()).is_pending());
        drop(claims); // the append failed
        assert!(poll_once(waiting.as_mut()).is_ready());
        assert!(matches!(
            claim(&dedup, "t", "s", "e1"),
            Ok((Claim::New(_), _))
        ));
        assert!(dedup.is_empty(), "the retry's claims were dropped too");
    }

    #[test]
    fn claims_settle_once_so_a_late_give_up_leaves_a_retrys_claim_alone() {
        let dedup = Dedup::new(&DedupConfig::default());
        let Ok((Claim::New(first), claims)) = claim(&dedup, "t", "s", "e1") else {
            panic!("a new id")
        };
        let kept = claims.clone();
        claims.give_up([first]);
        // The retry takes the id; the first batch's last clone goes after.
        let Ok((Claim::New(retry), retried)) = claim(&dedup, "t", "s", "e1") else {
            panic!("given up, so new again")
        };
        kept.give_up([first]);
        drop((claims, kept));
        assert!(
            claim(&dedup, "t", "s", "e1").is_err(),
            "the retry's append is still under way"
        );
        retried.appended([retry]);
        assert!(dedup.seen("t", "s", "e1"));
    }

    #[test]
    fn a_batch_that_meets_an_id_in_flight_keeps_none_of_its_claims() {
        let dedup = Dedup::new(&DedupConfig::default());
        let Ok((Claim::New(first), claims)) = claim(&dedup, "t", "s", "a") else {
            panic!("a new id")
        };
        let keys: Vec<Key> = ["b", "a", "c"]
            .iter()
            .map(|id| dedup.key("t", "s", id))
            .collect();
        assert!(dedup.claim_batch(&keys).is_err());
        assert_eq!(dedup.len(), 1, "only the first batch's `a` is claimed");
        claims.appended([first]);
        let (found, _) = dedup.claim_batch(&keys).expect("`a` settled");
        assert!(
            matches!(found[..], [Claim::New(_), Claim::Seen, Claim::New(_)]),
            "{found:?}"
        );
    }

    #[test]
    fn a_batch_across_the_shards_is_claimed_in_its_order_and_settled_in_parts() {
        let dedup = Dedup::new(&DedupConfig::default());
        let ids: Vec<String> = (0..200).map(|i| format!("e{i}")).collect();
        let keys: Vec<Key> = ids.iter().map(|id| dedup.key("t", "s", id)).collect();
        assert!(
            keys.iter()
                .map(|key| key.shard())
                .collect::<std::collections::HashSet<_>>()
                .len()
                == SHARDS,
            "200 ids reach every shard"
        );
        let (found, claims) = dedup.claim_batch(&keys).expect("all new");
        let claimed: Vec<ClaimId> = found
            .iter()
            .map(|claim| match claim {
                Claim::New(claimed) => *claimed,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            claimed,
            (0..200).map(ClaimId).collect::<Vec<_>>(),
            "in batch order"
        );
        // The first half written, the rest failed.
        claims.appended(claimed[..100].iter().copied());
        drop(claims);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(dedup.seen("t", "s", id), i < 100, "{id}");
        }
        assert_eq!(dedup.len(), 100);
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
            let keys = [
                dedup.key("t", "s", "1"),
                dedup.key("t", "s", "1"),
                dedup.key("t", "s2", "1"),
            ];
            let (found, _claims) = dedup.claim_batch(&keys).expect("nothing in flight");
            assert!(!matches!(found[0], Claim::Seen), "{found:?}");
            assert_eq!(found[1], Claim::Seen);
            assert!(!matches!(found[2], Claim::Seen), "{found:?}");
        }
    }

    #[test]
    fn ids_are_forgotten_once_out_of_the_window_or_over_the_bound() {
        let mut ids = Ids::default();
        let key = |n: u64| Key(n << 2);
        for (n, ms) in [(1, 0), (2, 0), (3, 5), (4, 9)] {
            assert!(matches!(ids.claim(key(n)), Found::New));
            assert!(!ids.settle(key(n), Some(ms)));
        }
        assert_eq!(ids.times, [(0, 2), (5, 1), (9, 1)]);
        ids.forget_old(9, 10, 100);
        assert_eq!(
            ids.order,
            [key(1), key(2), key(3), key(4)],
            "all within 10 ms"
        );
        ids.forget_old(10, 10, 100);
        assert_eq!(
            ids.order,
            [key(3), key(4)],
            "both appended at 0 ms are 10 ms old"
        );
        assert!(!ids.appended(key(1)) && !ids.appended(key(2)));
        ids.forget_old(10, 10, 1);
        assert_eq!(ids.order, [key(4)], "over the bound of 1");
        assert_eq!(ids.times, [(9, 1)]);
        assert_eq!(ids.table.len(), 1);
        ids.forget_old(u64::MAX, 10, 1);
        assert!(ids.order.is_empty() && ids.times.is_empty() && ids.table.is_empty());
    }

    #[test]
    fn a_key_in_flight_is_not_forgotten_and_a_waiter_is_told_when_it_settles() {
        let mut ids = Ids::default();
        let (old, new) = (Key(4), Key(8));
        assert!(matches!(ids.claim(old), Found::New));
        ids.settle(old, Some(0));
        assert!(matches!(ids.claim(new), Found::New));
        assert!(ids.wait_for(new));
        assert!(!ids.wait_for(old), "appended: nothing to wait for");
        ids.forget_old(u64::MAX, 10, 0);
        assert!(!ids.appended(old));
        assert!(
            matches!(ids.claim(new), Found::InFlight),
            "in flight is never forgotten"
        );
        assert!(ids.settle(new, None), "its waiter is woken");
        assert!(ids.table.is_empty());
    }

    #[test]
    fn a_zero_window_remembers_nothing() {
        let dedup = Dedup::new(&DedupConfig {
            window_ms: 0,
            max_entries: 10,
        });
        assert!(matches!(claim(&dedup, "t", "s", "1"), Ok((Claim::Off, _))));
        assert!(!dedup.seen("t", "s", "1"));
        assert!(dedup.is_empty());
    }
}
