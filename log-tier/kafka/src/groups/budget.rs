//! The bytes the coordinator stores for clients (group ids, member ids, protocol metadata,
//! assignments), over every group: each holder takes a [`Charge`] and gives it back when
//! dropped, so every way a member or group goes (leave, expiry, replacement) is counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Most bytes stored for clients over all groups: room for 10,000 groups of a few members
/// with ordinary subscriptions many times over, and far below what a flood of JoinGroups
/// could otherwise pin.
pub(crate) const MAX_STORED_BYTES: usize = 128 * 1024 * 1024;
/// Most bytes one member stores (its protocol metadata and assignment). Kafka bounds a whole
/// group's metadata by the offsets topic's 1 MiB message size; one member gets as much.
pub(crate) const MAX_MEMBER_BYTES: usize = 1024 * 1024;
/// Bytes counted for a member beyond what the client sent (maps, timers, channels).
pub(crate) const MEMBER_OVERHEAD: usize = 256;
/// Bytes counted for a group or a pending member id beyond its id.
pub(crate) const ENTRY_OVERHEAD: usize = 128;

/// The coordinator's byte budget.
#[derive(Debug)]
pub(crate) struct Budget {
    used: AtomicUsize,
    max: usize,
}

/// A share of the [`Budget`], given back when dropped.
#[derive(Debug)]
pub(crate) struct Charge {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Budget {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicUsize::new(0),
            max,
        })
    }

    /// Takes `bytes` from the budget; `None` when it has not that much room.
    pub(crate) fn charge(self: &Arc<Self>, bytes: usize) -> Option<Charge> {
        self.take(bytes).then(|| Charge {
            budget: Arc::clone(self),
            bytes,
        })
    }

    /// Bytes taken now.
    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.max)
            })
            .is_ok()
    }

    fn give(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

impl Charge {
    /// Grows or shrinks this charge to `bytes`; false, and unchanged, when growing does not
    /// fit the budget. Shrinking always succeeds.
    pub(crate) fn resize(&mut self, bytes: usize) -> bool {
        if bytes > self.bytes {
            if !self.budget.take(bytes - self.bytes) {
                return false;
            }
        } else {
            self.budget.give(self.bytes - bytes);
        }
        self.bytes = bytes;
        true
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.give(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_are_given_back_when_dropped_or_shrunk() {
        let budget = Budget::new(100);
        let mut a = budget.charge(60).expect("room for 60");
        assert!(budget.charge(41).is_none(), "over the budget");
        let b = budget.charge(40).expect("room for 40");
        assert_eq!(budget.used(), 100);
        assert!(!a.resize(61), "growing past the budget");
        assert!(a.resize(10));
        assert_eq!(budget.used(), 50);
        drop(b);
        drop(a);
        assert_eq!(budget.used(), 0);
    }
}
