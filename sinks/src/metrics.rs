//! Metric names of the sinks (`headwater_sink_*`), their descriptions, and the one place that
//! records a finished `send`.

use std::time::Instant;

use metrics::{Unit, counter, describe_counter, describe_histogram, histogram};

use crate::{Delivery, SinkError};

/// Events handed to a sink, by outcome (labels `route`, `sink`, `outcome`): `delivered`,
/// `retry` (transient per-event failure), `rejected` (refused for good, sent to the DLQ by the
/// router), `failed` (the whole batch failed: `Unavailable` or `Config`).
pub const EVENTS_TOTAL: &str = "headwater_sink_events_total";
/// Wall time of one `send`, retries inside the sink included (labels `route`, `sink`).
pub const BATCH_DURATION_SECONDS: &str = "headwater_sink_batch_duration_seconds";
/// Bytes written to the destination: compressed object bytes for S3, request body bytes as
/// sent for Elasticsearch, key + value + header bytes for topics (labels `route`, `sink`).
pub const BYTES_TOTAL: &str = "headwater_sink_bytes_total";
/// Requests the sink retried by itself after a transient failure (labels `route`, `sink`).
pub const RETRIES_TOTAL: &str = "headwater_sink_retries_total";

/// Outcome label: delivered.
pub const DELIVERED: &str = "delivered";
/// Outcome label: to be sent again.
pub const RETRY: &str = "retry";
/// Outcome label: refused for good.
pub const REJECTED: &str = "rejected";
/// Outcome label: the whole batch failed.
pub const FAILED: &str = "failed";

/// Registers descriptions with the installed recorder; call once at start-up.
pub fn describe() {
    describe_counter!(
        EVENTS_TOTAL,
        "Events handed to a sink, by outcome (delivered, retry, rejected, failed)"
    );
    describe_histogram!(
        BATCH_DURATION_SECONDS,
        Unit::Seconds,
        "Wall time of one sink send, retries included"
    );
    describe_counter!(BYTES_TOTAL, Unit::Bytes, "Bytes written by a sink");
    describe_counter!(RETRIES_TOTAL, "Requests a sink retried by itself");
}

/// Records the outcome of one `send` of `events` events that started at `started`.
pub(crate) fn observe_send(
    route: &str,
    sink: &str,
    events: usize,
    started: Instant,
    result: &Result<Delivery, SinkError>,
) {
    let labels = |outcome: &'static str| {
        [
            ("route", route.to_owned()),
            ("sink", sink.to_owned()),
            ("outcome", outcome.to_owned()),
        ]
    };
    match result {
        Ok(delivery) => {
            let retry = delivery.retry.len();
            let rejected = delivery.rejected.len();
            let delivered = events.saturating_sub(retry + rejected);
            counter!(EVENTS_TOTAL, &labels(DELIVERED)).increment(delivered as u64);
            if retry > 0 {
                counter!(EVENTS_TOTAL, &labels(RETRY)).increment(retry as u64);
            }
            if rejected > 0 {
                counter!(EVENTS_TOTAL, &labels(REJECTED)).increment(rejected as u64);
            }
        }
        Err(_) => counter!(EVENTS_TOTAL, &labels(FAILED)).increment(events as u64),
    }
    histogram!(
        BATCH_DURATION_SECONDS,
        "route" => route.to_owned(),
        "sink" => sink.to_owned()
    )
    .record(started.elapsed().as_secs_f64());
}

/// Adds `bytes` written by `sink` for `route`.
pub(crate) fn add_bytes(route: &str, sink: &str, bytes: usize) {
    counter!(BYTES_TOTAL, "route" => route.to_owned(), "sink" => sink.to_owned())
        .increment(bytes as u64);
}

/// Counts one retry made inside a sink.
pub(crate) fn add_retry(route: &str, sink: &str) {
    counter!(RETRIES_TOTAL, "route" => route.to_owned(), "sink" => sink.to_owned()).increment(1);
}
