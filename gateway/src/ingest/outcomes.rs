//! What a batch came to: the answer to the client (accepted and rejected counts, each
//! rejection's index and reason), and the batch's events and payload bytes by type label and
//! outcome for the metrics, emitted once per batch.

use std::collections::HashMap;

use super::{RejectedEvent, Report};
use crate::metrics as m;

/// The answer being built, and the events and payload bytes of the batch by type label and
/// outcome. Labels borrow the batch's event types (or are `"other"`).
#[derive(Default)]
pub(super) struct Outcomes<'a> {
    pub(super) report: Report,
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
        self.by_type.entry((label, outcome)).or_default().add(bytes);
    }

    /// Emits the batch's counters; `took` is decoded batch to durable append, in seconds.
    pub(super) fn count(&self, tenant: &str, took: f64) {
        let tenant = tenant.to_owned();
        for ((event_type, outcome), tally) in &self.by_type {
            let event_type = (*event_type).to_owned();
            if *outcome == "accepted" {
                metrics::counter!(m::INGEST_EVENT_BYTES_TOTAL, "tenant" => tenant.clone(), "type" => event_type.clone())
                    .increment(tally.bytes);
                metrics::histogram!(m::INGEST_EVENT_LATENCY_SECONDS, "tenant" => tenant.clone(), "type" => event_type.clone())
                    .record(took);
            }
            metrics::counter!(m::INGEST_EVENTS_TOTAL, "tenant" => tenant.clone(), "type" => event_type, "outcome" => *outcome)
                .increment(tally.events);
        }
    }
}

/// Events of one type and outcome in a batch, and their payload bytes.
#[derive(Default)]
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
