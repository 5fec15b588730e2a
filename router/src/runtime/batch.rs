//! The open batch of a consumer task: the offset range it covers, the events a route kept, and
//! the records to dead-letter because their envelope could not be rebuilt.

use std::sync::Arc;

use bytes::Bytes;
use headwater_log::{Header, Record, StoredRecord};
use headwater_schemas::Envelope;
use headwater_sinks::{Batch, OutEvent};
use tokio::time::Instant;

use crate::rules::{Decision, Route};

/// Header naming the route on a `router.dlq` record.
pub const ROUTE_HEADER: &str = "hw.route";
/// Header naming the sink (label) that refused a `router.dlq` record.
pub const SINK_HEADER: &str = "hw.sink";
/// Header with `topic/partition/offset` of the record a `router.dlq` record came from.
pub const ORIGIN_HEADER: &str = "hw.origin";
/// Header of a `router.dlq` record noting offsets the log could not read back (corrupt):
/// `topic/partition/first-last`, inclusive. Such a record has no key and no value.
pub const SKIPPED_HEADER: &str = "hw.skipped";

/// Rough fixed cost of an event besides its payload and text fields, for `max_bytes`.
const EVENT_OVERHEAD: usize = 64;

/// Most events a new batch reserves room for (a batch limit above it grows the vector).
const RESERVED_EVENTS_MAX: usize = 65_536;

/// What happened to one record.
pub(super) enum Outcome {
    /// Kept in the batch.
    Kept,
    /// Left out by selection or filter.
    Filtered,
    /// Dropped by sampling.
    SampledOut,
    /// Envelope not rebuildable; will be dead-lettered.
    Undecodable,
}

/// A batch being filled: offsets `first_offset..=last_offset` (contiguous with the previous
/// batch), events kept, dead letters pending.
pub(super) struct OpenBatch {
    /// First offset covered: the committed offset when the batch opened.
    pub first_offset: i64,
    /// Last offset covered.
    pub last_offset: i64,
    /// Events kept.
    pub events: Vec<OutEvent>,
    /// Approximate bytes of `events` and `dead`.
    pub bytes: usize,
    /// Records to append to the dead-letter topic before committing.
    pub dead: Vec<Record>,
    /// When the batch must be sent even if not full.
    pub deadline: Instant,
}

impl OpenBatch {
    /// An empty batch starting at `first_offset`, due at `deadline`, with room for
    /// `max_events` events (at most [`RESERVED_EVENTS_MAX`]) so that filling it does not
    /// copy the events again and again.
    pub(super) fn new(first_offset: i64, deadline: Instant, max_events: usize) -> Self {
        Self {
            first_offset,
            last_offset: first_offset - 1,
            events: Vec::with_capacity(max_events.min(RESERVED_EVENTS_MAX)),
            bytes: 0,
            dead: Vec::new(),
            deadline,
        }
    }

    /// Runs `route` over one record and adds the result.
    pub(super) fn push(
        &mut self,
        route: &Route,
        topic: &Arc<str>,
        partition: i32,
        rec: StoredRecord,
    ) -> Outcome {
        self.last_offset = rec.offset;
        let payload = rec.value.clone().unwrap_or_default();
        let headers = rec
            .headers
            .iter()
            .map(|h| (h.key.as_ref(), h.value.as_deref().unwrap_or_default()));
        let envelope = match Envelope::from_headers(headers, payload) {
            Ok(env) => env,
            Err(e) => {
                let origin = format!("{topic}/{partition}/{}", rec.offset);
                let dead = undecodable(rec, &route.name, &origin, &e.to_string());
                self.bytes += record_bytes(&dead);
                self.dead.push(dead);
                return Outcome::Undecodable;
            }
        };
        match route.decide(envelope) {
            Decision::Filtered => Outcome::Filtered,
            Decision::SampledOut => Outcome::SampledOut,
            Decision::Keep(envelope) => {
                self.bytes += envelope.payload.len()
                    + envelope.id.len()
                    + envelope.event_type.len()
                    + envelope.source.len()
                    + envelope.tenant.len()
                    + EVENT_OVERHEAD;
                self.events.push(OutEvent {
                    topic: Arc::clone(topic),
                    partition,
                    offset: rec.offset,
                    key: rec.key,
                    envelope,
                });
                Outcome::Kept
            }
        }
    }

    /// Covers the offsets `first..resume`, which the log could not read back (`reason`):
    /// a dead letter noting the range, no events. Rebuilding the batch from the log meets the
    /// same damage and adds the same dead letter.
    pub(super) fn skip_unreadable(
        &mut self,
        route: &str,
        (topic, partition): (&str, i32),
        (first, resume): (i64, i64),
        reason: &str,
    ) {
        self.last_offset = resume - 1;
        let range = format!("{topic}/{partition}/{first}-{}", resume - 1);
        let dead = Record {
            partition: None,
            key: None,
            value: None,
            headers: vec![
                header(headwater_schemas::headers::ERROR, reason),
                header(ROUTE_HEADER, route),
                header(ORIGIN_HEADER, &format!("{topic}/{partition}/{first}")),
                header(SKIPPED_HEADER, &range),
            ],
            timestamp_ms: -1,
        };
        self.bytes += record_bytes(&dead);
        self.dead.push(dead);
    }

    /// Events kept and dead letters pending: what the batch's `max_events` bounds (a run of
    /// undecodable records fills a batch as events do, so it cannot pile up until `max_age`).
    pub(super) fn items(&self) -> usize {
        self.events.len() + self.dead.len()
    }

    /// Whether any record was added.
    pub(super) fn covers_any(&self) -> bool {
        self.last_offset >= self.first_offset
    }

    /// The sink batch; the events move out of the open batch.
    pub(super) fn take_batch(
        &mut self,
        route: &Arc<str>,
        topic: &Arc<str>,
        partition: i32,
    ) -> Batch {
        Batch {
            route: Arc::clone(route),
            topic: Arc::clone(topic),
            partition,
            first_offset: self.first_offset,
            last_offset: self.last_offset,
            events: std::mem::take(&mut self.events),
        }
    }
}

fn header(key: &'static str, value: &str) -> Header {
    Header {
        key: key.into(),
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
    }
}

/// Approximate bytes a dead letter holds, for `max_bytes`.
fn record_bytes(record: &Record) -> usize {
    let len = |b: &Option<Bytes>| b.as_ref().map_or(0, Bytes::len);
    let headers: usize = record
        .headers
        .iter()
        .map(|h| h.key.len() + len(&h.value))
        .sum();
    len(&record.key) + len(&record.value) + headers + EVENT_OVERHEAD
}

/// A dead letter for a record whose envelope is broken: its own key, value and headers, plus
/// `hw.error`, `hw.route` and `hw.origin`.
fn undecodable(rec: StoredRecord, route: &str, origin: &str, reason: &str) -> Record {
    let mut headers = rec.headers;
    headers.push(header(headwater_schemas::headers::ERROR, reason));
    headers.push(header(ROUTE_HEADER, route));
    headers.push(header(ORIGIN_HEADER, origin));
    Record {
        partition: None,
        key: rec.key,
        value: rec.value,
        headers,
        timestamp_ms: -1,
    }
}

/// A dead letter for an event a sink refused: the envelope headers with `hw.error`, plus
/// `hw.route`, `hw.sink` and `hw.origin`; the (projected) payload as value.
pub(super) fn rejected(ev: &OutEvent, route: &str, sink: &str, reason: &str) -> Record {
    let mut headers: Vec<Header> = ev
        .envelope
        .to_dlq_headers(reason)
        .into_iter()
        .map(|(key, value)| Header {
            key: key.into(),
            value: Some(value),
        })
        .collect();
    headers.push(header(ROUTE_HEADER, route));
    headers.push(header(SINK_HEADER, sink));
    let origin = format!("{}/{}/{}", ev.topic, ev.partition, ev.offset);
    headers.push(header(ORIGIN_HEADER, &origin));
    Record {
        partition: None,
        key: ev.key.clone(),
        value: Some(ev.envelope.payload.clone()),
        headers,
        timestamp_ms: -1,
    }
}
