//! What a batch came to: the answer to the client (accepted and rejected counts, each
//! rejection's index and reason), and the batch's events and payload bytes by type label and
//! outcome for the metrics, emitted once per batch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use metrics::{Counter, Histogram};

use super::{RejectedEvent, Report};
use crate::metrics as m;

/// Type labels whose metric handles [`BatchMetrics`] keeps, over all tenants; past it the
/// handles are looked up in the recorder each time, as without the cache.
const HANDLES_KEPT: usize = 4096;

/// The handles of the per-batch metrics by tenant and type label, looked up in the recorder
/// once: a batch then costs a map lookup per type instead of building and hashing labelled
/// keys for three metrics. Tenants and type labels are bounded sets (keys of the
/// configuration; registered types or `"other"`), and the number kept is capped besides.
/// The unlabelled append duration's handle too, registered on first use (in the recorder
/// installed by then, whenever this was made).
#[derive(Default)]
pub struct BatchMetrics {
    by_tenant: Mutex<TenantHandles>,
    append_duration: OnceLock<Histogram>,
}

#[derive(Default)]
struct TenantHandles {
    tenants: HashMap<Arc<str>, HashMap<Box<str>, TypeHandles>>,
    kept: usize,
}

/// One tenant's and type's handles; `events` by outcome, as first used.
struct TypeHandles {
    bytes: Counter,
    latency: Histogram,
    events: Vec<(&'static str, Counter)>,
}

impl TypeHandles {
    fn new(tenant: &str, event_type: &str) -> Self {
        let (tenant, event_type) = (tenant.to_owned(), event_type.to_owned());
        Self {
            bytes: metrics::counter!(m::INGEST_EVENT_BYTES_TOTAL, "tenant" => tenant.clone(), "type" => event_type.clone()),
            latency: metrics::histogram!(m::INGEST_EVENT_LATENCY_SECONDS, "tenant" => tenant, "type" => event_type),
            events: Vec::new(),
        }
    }

    fn events(&mut self, tenant: &str, event_type: &str, outcome: &'static str) -> &Counter {
        let at = match self.events.iter().position(|(o, _)| *o == outcome) {
            Some(at) => at,
            None => {
                let counter = events_counter(tenant, event_type, outcome);
                self.events.push((outcome, counter));
                self.events.len() - 1
            }
        };
        &self.events[at].1
    }
}

fn events_counter(tenant: &str, event_type: &str, outcome: &'static str) -> Counter {
    let (tenant, event_type) = (tenant.to_owned(), event_type.to_owned());
    metrics::counter!(m::INGEST_EVENTS_TOTAL, "tenant" => tenant, "type" => event_type, "outcome" => outcome)
}

impl BatchMetrics {
    /// Records how long a batch took from planning to its durable answer.
    pub(super) fn append_took(&self, seconds: f64) {
        self.append_duration
            .get_or_init(|| metrics::histogram!(m::INGEST_APPEND_DURATION_SECONDS))
            .record(seconds);
    }

    /// Runs `emit` with the handles of `tenant` and `event_type`, kept or (past the cap) new.
    fn with<R>(
        &self,
        tenant: &Arc<str>,
        event_type: &str,
        emit: impl FnOnce(&mut TypeHandles) -> R,
    ) -> R {
        let mut kept = self
            .by_tenant
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let TenantHandles { tenants, kept } = &mut *kept;
        if let Some(handles) = tenants
            .get_mut(&**tenant)
            .and_then(|types| types.get_mut(event_type))
        {
            return emit(handles);
        }
        let mut handles = TypeHandles::new(tenant, event_type);
        if *kept >= HANDLES_KEPT {
            return emit(&mut handles);
        }
        *kept += 1;
        let types = tenants.entry(tenant.clone()).or_default();
        emit(types.entry(event_type.into()).or_insert(handles))
    }
}

/// Tallies a batch keeps in a list before it keeps the rest in a map.
const LISTED: usize = 32;

/// The answer being built, and the events and payload bytes of the batch by type label and
/// outcome. Labels borrow the batch's event types (or are `"other"`); the first [`LISTED`]
/// tallies are found by the label's address and the outcome's, compared in a short list, the
/// rest (a batch of many types) in a map.
#[derive(Default)]
pub(super) struct Outcomes<'a> {
    pub(super) report: Report,
    listed: Vec<(&'a str, &'static str, Tally)>,
    by_type: HashMap<(&'a str, &'static str), Tally>,
}

impl<'a> Outcomes<'a> {
    /// An event refused with `reason`.
    pub(super) fn reject(
        &mut self,
        index: usize,
        reason: String,
        label: &'a str,
        outcome: &'static str,
    ) {
        self.report.rejected += 1;
        self.report.errors.push(RejectedEvent { index, reason });
        self.add(label, outcome, 0);
    }

    /// An event accepted: appended (`"accepted"`, with its payload bytes) or already appended
    /// (`"duplicate"`).
    pub(super) fn accept(&mut self, label: &'a str, outcome: &'static str, bytes: usize) {
        self.report.accepted += 1;
        self.add(label, outcome, bytes);
    }

    fn add(&mut self, label: &'a str, outcome: &'static str, bytes: usize) {
        let same = |(l, o, _): &&mut (&str, &str, Tally)| {
            std::ptr::eq(*l, label) && std::ptr::eq(*o, outcome)
        };
        if let Some((_, _, tally)) = self.listed.iter_mut().find(same) {
            tally.add(bytes);
        } else if self.listed.len() < LISTED && !self.by_type.contains_key(&(label, outcome)) {
            let mut tally = Tally::default();
            tally.add(bytes);
            self.listed.push((label, outcome, tally));
        } else {
            self.by_type.entry((label, outcome)).or_default().add(bytes);
        }
    }

    /// Every tally by type label and outcome, each once: a label listed at two addresses (or
    /// listed and in the map) counted together. A batch whose tallies are all listed (at most
    /// [`LISTED`], the rule) is merged in a list, without a map to build and hash into.
    fn tallies(&self) -> Vec<((&'a str, &'static str), Tally)> {
        if !self.by_type.is_empty() {
            let mut all = self.by_type.clone();
            for (label, outcome, tally) in &self.listed {
                all.entry((*label, *outcome)).or_default().merge(tally);
            }
            return all.into_iter().collect();
        }
        let mut all: Vec<((&'a str, &'static str), Tally)> = Vec::with_capacity(self.listed.len());
        for &(label, outcome, ref tally) in &self.listed {
            match all
                .iter_mut()
                .find(|((l, o), _)| *l == label && *o == outcome)
            {
                Some((_, sum)) => sum.merge(tally),
                None => all.push(((label, outcome), tally.clone())),
            }
        }
        all
    }

    /// Emits the batch's counters through `handles`; `took` is decoded batch to durable
    /// append, in seconds.
    pub(super) fn count(&self, handles: &BatchMetrics, tenant: &Arc<str>, took: f64) {
        for ((event_type, outcome), tally) in self.tallies() {
            handles.with(tenant, event_type, |type_handles| {
                if outcome == "accepted" {
                    type_handles.bytes.increment(tally.bytes);
                    type_handles.latency.record(took);
                }
                type_handles
                    .events(tenant, event_type, outcome)
                    .increment(tally.events);
            });
        }
    }
}

/// Events of one type and outcome in a batch, and their payload bytes.
#[derive(Clone, Default)]
struct Tally {
    events: u64,
    bytes: u64,
}

impl Tally {
    fn add(&mut self, bytes: usize) {
        self.events += 1;
        self.bytes += bytes as u64;
    }

    fn merge(&mut self, other: &Tally) {
        self.events += other.events;
        self.bytes += other.bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_handles_are_kept_once_per_tenant_and_type_up_to_the_cap() {
        let handles = BatchMetrics::default();
        let tenant: Arc<str> = Arc::from("acme");
        for _ in 0..2 {
            handles.with(&tenant, "playback.start", |_| ());
        }
        let kept = |h: &BatchMetrics| h.by_tenant.lock().unwrap().kept;
        assert_eq!(kept(&handles), 1);
        for i in 0..HANDLES_KEPT + 10 {
            let used = handles.with(&tenant, &format!("t{i}"), |_| i);
            assert_eq!(used, i, "past the cap the handles are still used");
        }
        assert_eq!(kept(&handles), HANDLES_KEPT);
    }

    #[test]
    fn tallies_add_up_by_label_text_whatever_its_address() {
        let first = String::from("playback.start");
        let second = String::from("playback.start");
        let many: Vec<String> = (0..LISTED + 5).map(|i| format!("t{i}")).collect();
        let mut outcomes = Outcomes::default();
        outcomes.accept(&first, "accepted", 10);
        outcomes.accept(&second, "accepted", 5);
        for label in &many {
            outcomes.accept(label, "duplicate", 0);
        }
        outcomes.accept(&first, "accepted", 1);
        outcomes.reject(3, "bad".to_owned(), &many[LISTED + 1], "invalid");
        outcomes.accept(&many[LISTED + 2], "duplicate", 0);
        let listed = outcomes.tallies();
        let tallies: HashMap<_, _> = listed.iter().cloned().collect();
        assert_eq!(
            listed.len(),
            tallies.len(),
            "each tally once: {:?}",
            tallies.keys()
        );
        let start = &tallies[&("playback.start", "accepted")];
        assert_eq!((start.events, start.bytes), (3, 16));
        assert_eq!(tallies[&("t0", "duplicate")].events, 1);
        assert_eq!(tallies[&(many[LISTED + 2].as_str(), "duplicate")].events, 2);
        assert_eq!(tallies[&(many[LISTED + 1].as_str(), "invalid")].events, 1);
        assert_eq!(tallies.len(), 1 + many.len() + 1);
        assert_eq!(
            (outcomes.report.accepted, outcomes.report.rejected),
            (3 + many.len() + 1, 1)
        );
    }

    #[test]
    fn a_batch_of_few_labels_is_tallied_without_the_map() {
        let first = String::from("playback.start");
        let second = String::from("playback.start");
        let mut outcomes = Outcomes::default();
        outcomes.accept(&first, "accepted", 10);
        outcomes.accept(&second, "accepted", 5);
        outcomes.accept(&first, "duplicate", 0);
        outcomes.reject(3, "bad".to_owned(), "other", "invalid");
        assert!(outcomes.by_type.is_empty());
        let tallies = outcomes.tallies();
        let find = |label: &str, outcome: &str| {
            let found: Vec<_> = tallies
                .iter()
                .filter(|((l, o), _)| *l == label && *o == outcome)
                .map(|(_, t)| (t.events, t.bytes))
                .collect();
            assert_eq!(found.len(), 1, "{label} {outcome} once");
            found[0]
        };
        assert_eq!(find("playback.start", "accepted"), (2, 15));
        assert_eq!(find("playback.start", "duplicate"), (1, 0));
        assert_eq!(find("other", "invalid"), (1, 0));
        assert_eq!(tallies.len(), 3);
    }
}
