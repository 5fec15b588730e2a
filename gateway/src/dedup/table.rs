//! One shard's stored keys: an open-addressed table of `u64`s probed linearly from a key's
//! home slot, so that the slot a key is looked up in is known before the lookup and can be
//! prefetched. The dedup's keys are random, so under load each lookup in a table of a million
//! ids misses the cache; a batch's lookups prefetched together wait for memory once, not once
//! a key (hashbrown's `HashTable`, used before, hides where a key's bucket is).
//!
//! A slot holds 0 (empty) or a stored key: a [`Key`] (never 0: its top bit is set) with its
//! state bits. A removed key's slot is filled by shifting the run after it back, so no
//! tombstones build up under the steady insert-and-forget of a full window.

use super::{Key, STATE};

/// At most this share (as `n / 8`) of the slots hold keys; past it the table doubles.
const MAX_LOAD_EIGHTHS: usize = 6;
/// Slots of a new table.
const FIRST_SLOTS: usize = 16;

pub(super) struct Table {
    /// A power of two long.
    slots: Box<[u64]>,
    /// Keys held.
    len: usize,
}

impl Default for Table {
    fn default() -> Self {
        Self {
            slots: vec![0; FIRST_SLOTS].into_boxed_slice(),
            len: 0,
        }
    }
}

/// Where a probe for a key ended: at the key's slot, or at the empty slot it would take.
pub(super) enum Probe {
    Found(usize),
    Vacant(usize),
}

impl Table {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// The first slot probed for `key`: the top bits of its spread hash.
    fn home(&self, key: Key) -> usize {
        let bits = self.slots.len().trailing_zeros();
        // `bits` is at least 4 (`FIRST_SLOTS`), so the shift is below 64.
        (key.table_hash() >> (64 - bits)) as usize
    }

    /// Starts loading the cache line of `key`'s home slot, for a lookup soon after.
    #[inline]
    pub(super) fn prefetch(&self, key: Key) {
        #[cfg(all(target_arch = "x86_64", target_feature = "sse"))]
        if let Some(slot) = self.slots.get(self.home(key)) {
            safe_arch::prefetch_t0(slot);
        }
        #[cfg(not(all(target_arch = "x86_64", target_feature = "sse")))]
        let _ = key;
    }

    /// Finds `key`'s slot, or the empty slot it would take.
    pub(super) fn probe(&self, key: Key) -> Probe {
        let mask = self.mask();
        let mut at = self.home(key);
        // The load bound keeps an empty slot, so the probe ends.
        loop {
            match self.slots[at] {
                0 => return Probe::Vacant(at),
                stored if key.is(stored) => return Probe::Found(at),
                _ => at = (at + 1) & mask,
            }
        }
    }

    /// `key`'s slot, if it is held.
    pub(super) fn find(&self, key: Key) -> Option<usize> {
        match self.probe(key) {
            Probe::Found(at) => Some(at),
            Probe::Vacant(_) => None,
        }
    }

    /// The stored key (with its state bits) in slot `at`.
    pub(super) fn get(&self, at: usize) -> u64 {
        self.slots[at]
    }

    /// Replaces the stored key in slot `at` (the same key, another state).
    pub(super) fn set(&mut self, at: usize, stored: u64) {
        debug_assert_eq!(stored & !STATE, self.slots[at] & !STATE);
        self.slots[at] = stored;
    }

    /// Makes room for one more key: call before the [`probe`](Self::probe) whose vacant slot
    /// [`fill`](Self::fill) takes (a growth moves every key).
    pub(super) fn reserve_one(&mut self) {
        if (self.len + 1) * 8 > self.slots.len() * MAX_LOAD_EIGHTHS {
            self.grow();
        }
    }

    /// Stores `stored` in the vacant slot `at` a probe for its key just found (after
    /// [`reserve_one`](Self::reserve_one)).
    pub(super) fn fill(&mut self, at: usize, stored: u64) {
        debug_assert!(stored & !STATE != 0 && self.slots[at] == 0);
        self.slots[at] = stored;
        self.len += 1;
    }

    /// Empties slot `at`, moving back each key after it in the run that would otherwise no
    /// longer be found from its home.
    pub(super) fn remove(&mut self, at: usize) {
        let mask = self.mask();
        let mut hole = at;
        let mut next = at;
        loop {
            next = (next + 1) & mask;
            let stored = self.slots[next];
            if stored == 0 {
                break;
            }
            let home = self.home(Key(stored & !STATE));
            // The key may move into the hole if the hole lies on its probe path, from its
            // home up to where it is now (distances taken around the end).
            if next.wrapping_sub(home) & mask >= next.wrapping_sub(hole) & mask {
                self.slots[hole] = stored;
                hole = next;
            }
        }
        self.slots[hole] = 0;
        self.len -= 1;
    }

    /// Doubles the slots and places every key again.
    fn grow(&mut self) {
        let doubled = vec![0; self.slots.len() * 2].into_boxed_slice();
        let old = std::mem::replace(&mut self.slots, doubled);
        for stored in old.iter().copied().filter(|&stored| stored != 0) {
            // The old table held each key once, so the probe ends at a vacant slot.
            let (Probe::Vacant(at) | Probe::Found(at)) = self.probe(Key(stored & !STATE));
            self.slots[at] = stored;
        }
    }

    /// The stored keys, in slot order.
    #[cfg(test)]
    pub(super) fn stored(&self) -> impl Iterator<Item = u64> + '_ {
        self.slots.iter().copied().filter(|&stored| stored != 0)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;
    use crate::dedup::{IN_FLIGHT, TAKEN};

    #[derive(Debug, Clone)]
    enum Op {
        /// Claims key `n` (stored in flight) if absent.
        Insert(u64),
        /// Removes key `n` if present.
        Remove(u64),
        /// Marks key `n` appended if present.
        Settle(u64),
    }

    fn op(keys: u64) -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..keys).prop_map(Op::Insert),
            (0..keys).prop_map(Op::Remove),
            (0..keys).prop_map(Op::Settle),
        ]
    }

    /// Key `n`: distinct for each `n`, state bits clear. With `crowd`, half the keys have
    /// the last slot as their home and half the first (for tables up to 256 slots), so runs
    /// are long and wrap around the end.
    fn key(n: u64, crowd: bool) -> Key {
        if !crowd {
            return Key((n.wrapping_mul(0x2545_f491_4f6c_dd1d) & !STATE) | TAKEN);
        }
        // `table_hash` multiplies by an odd constant: its inverse (Newton's iteration, each
        // step doubling the bits that are right) picks the key whose spread hash is `hash`.
        let odd = Key(1).table_hash();
        let mut inverse = odd;
        for _ in 0..6 {
            inverse = inverse.wrapping_mul(2u64.wrapping_sub(odd.wrapping_mul(inverse)));
        }
        let top = if n.is_multiple_of(2) {
            u64::MAX << 56
        } else {
            0
        };
        let hash = top | ((n + 1) << 8);
        let key = Key(hash.wrapping_mul(inverse));
        assert_eq!(key.table_hash(), hash);
        assert!(key.0 != 0 && key.0 & STATE == 0);
        key
    }

    fn check(ops: &[Op], crowd: bool) {
        let mut table = Table::default();
        let mut model: HashMap<u64, u64> = HashMap::new();
        for op in ops {
            match *op {
                Op::Insert(n) => {
                    let key = key(n, crowd);
                    table.reserve_one();
                    match table.probe(key) {
                        Probe::Found(at) => assert_eq!(Some(&table.get(at)), model.get(&key.0)),
                        Probe::Vacant(at) => {
                            assert!(!model.contains_key(&key.0));
                            table.fill(at, key.0 | IN_FLIGHT);
                            model.insert(key.0, key.0 | IN_FLIGHT);
                        }
                    }
                }
                Op::Remove(n) => {
                    let key = key(n, crowd);
                    match table.find(key) {
                        Some(at) => {
                            assert!(model.remove(&key.0).is_some());
                            table.remove(at);
                        }
                        None => assert!(!model.contains_key(&key.0)),
                    }
                }
                Op::Settle(n) => {
                    let key = key(n, crowd);
                    if let Some(at) = table.find(key) {
                        table.set(at, key.0);
                        model.insert(key.0, key.0);
                    } else {
                        assert!(!model.contains_key(&key.0));
                    }
                }
            }
            assert_eq!(table.len(), model.len());
        }
        // Every key the model holds is found with its state; the table holds no other.
        for (&key, &stored) in &model {
            assert_eq!(table.find(Key(key)).map(|at| table.get(at)), Some(stored));
        }
        let mut held: Vec<u64> = table.stored().collect();
        let mut want: Vec<u64> = model.values().copied().collect();
        held.sort_unstable();
        want.sort_unstable();
        assert_eq!(held, want);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Inserts, removals and settles agree with a map, keys spread or crowded.
        #[test]
        fn agrees_with_a_map(ops in prop::collection::vec(op(64), 0..600), crowd in any::<bool>()) {
            check(&ops, crowd);
        }
    }

    #[test]
    fn a_run_that_wraps_around_the_end_is_kept_whole_through_removals() {
        // 40 crowded keys: homes in the first and last slots, runs that grow the table and
        // wrap around its end.
        let ops: Vec<Op> = (0..40)
            .map(Op::Insert)
            .chain((0..40).step_by(3).map(Op::Remove))
            .chain((0..40).map(Op::Insert))
            .chain((0..40).map(Op::Remove))
            .collect();
        check(&ops, true);
    }
}
