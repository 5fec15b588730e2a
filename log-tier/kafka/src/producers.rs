//! Producer ids: random (63 bits, so another client cannot guess one), and bound to the
//! principal that obtained them, so no other principal can produce with one, bump its epoch
//! or fence it.
//!
//! The bindings live in memory and are bounded: past [`MAX_BINDINGS`] the oldest is
//! forgotten. An id whose binding is gone (forgotten, or from before a restart) is bound again
//! to the first principal that uses it; since ids cannot be guessed, only a principal that was
//! given the id can be that first one.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use rand::Rng;

use crate::principal::Principal;

/// Most producer ids remembered.
pub(crate) const MAX_BINDINGS: usize = 100_000;

/// Which principal owns which producer id.
#[derive(Default)]
pub(crate) struct Producers {
    inner: Mutex<Bindings>,
}

#[derive(Default)]
struct Bindings {
    owners: HashMap<i64, Arc<str>>,
    order: VecDeque<i64>,
}

impl Bindings {
    fn bind(&mut self, id: i64, owner: Arc<str>) {
        if self.owners.insert(id, owner).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > MAX_BINDINGS {
            if let Some(oldest) = self.order.pop_front() {
                self.owners.remove(&oldest);
            }
        }
    }
}

impl Producers {
    /// A new id owned by `principal`: random, positive, not in use.
    pub(crate) fn allocate(&self, principal: &Principal) -> i64 {
        let mut bindings = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut rng = rand::rng();
        let id = loop {
            let candidate = rng.random::<i64>() & i64::MAX;
            if candidate > 0 && !bindings.owners.contains_key(&candidate) {
                break candidate;
            }
        };
        bindings.bind(id, principal.name.clone());
        id
    }

    /// Whether `principal` may use producer id `id` (binding it when nobody owns it).
    pub(crate) fn check(&self, id: i64, principal: &Principal) -> bool {
        if id < 0 {
            return true;
        }
        let mut bindings = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        match bindings.owners.get(&id) {
            Some(owner) => **owner == *principal.name,
            None => {
                bindings.bind(id, principal.name.clone());
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::Role;

    #[test]
    fn ids_are_random_and_bound_to_their_principal() {
        let producers = Producers::default();
        let acme = Principal::new("acme", Role::Tenant);
        let other = Principal::new("other", Role::Tenant);
        let a = producers.allocate(&acme);
        let b = producers.allocate(&acme);
        assert!(a > 0 && b > 0 && a != b);
        assert!(producers.check(a, &acme));
        assert!(!producers.check(a, &other));
        assert!(
            producers.check(-1, &other),
            "no producer id: nothing to own"
        );
        // An unknown id binds to its first user.
        assert!(producers.check(42, &other));
        assert!(!producers.check(42, &acme));
    }

    #[test]
    fn bindings_are_bounded() {
        let producers = Producers::default();
        let acme = Principal::new("acme", Role::Tenant);
        let first = producers.allocate(&acme);
        for _ in 0..MAX_BINDINGS {
            producers.allocate(&acme);
        }
        let bindings = producers.inner.lock().unwrap();
        assert_eq!(bindings.owners.len(), MAX_BINDINGS);
        assert!(!bindings.owners.contains_key(&first));
    }
}
