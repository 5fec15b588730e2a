//! What a batch came to: the answer to the client (accepted and rejected counts, each
//! rejection's index and reason), and the batch's events and payload bytes by type label and
//! outcome for the metrics, emitted once per batch.

use std::collections::HashMap;

use super::{RejectedEvent, Report};
use crate::metrics as m;

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

    /// Every tally by type label and outcome: a label listed at two addresses (or listed and
    /// in the map) counted once.
    fn tallies(&self) -> HashMap<(&'a str, &'static str), Tally> {
        let mut all = self.by_type.clone();
        for (label, outcome, tally) in &self.listed {
            let sum = all.entry((*label, *outcome)).or_default();
            sum.events += tally.events;
            sum.bytes += tally.bytes;
        }
        all
    }

    /// Emits the batch's counters; `took` is decoded batch to durable append, in seconds.
    pub(super) fn count(&self, tenant: &str, took: f64) {
        let tenant = tenant.to_owned();
        for ((event_type, outcome), tally) in self.tallies() {
            let event_type = event_type.to_owned();
            if outcome == "accepted" {
                metrics::counter!(m::INGEST_EVENT_BYTES_TOTAL, "tenant" => tenant.clone(), "type" => event_type.clone())
                    .increment(tally.bytes);
                metrics::histogram!(m::INGEST_EVENT_LATENCY_SECONDS, "tenant" => tenant.clone(), "type" => event_type.clone())
                    .record(took);
            }
            metrics::counter!(m::INGEST_EVENTS_TOTAL, "tenant" => tenant.clone(), "type" => event_type, "outcome" => outcome)
                .increment(tally.events);
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let tallies = outcomes.tallies();
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
}
