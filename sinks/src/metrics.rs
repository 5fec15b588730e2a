//! Metric names of the sinks (`headwater_sink_*`), their descriptions, and the one place that
//! records a finished `send` (called by [`crate::Instrumented`]).

use std::time::Instant;

use metrics::{Unit, counter, describe_counter, describe_histogram, histogram};

use crate::{Delivery, SinkError};

/// Events handed to a sink, by outcome (labels `route`, `sink`, `outcome`): `delivered`,
/// `retry` (transient per-event failure), `rejected` (refused for good, sent to the DLQ by the
/// router), `failed` (the whole batch failed: `Unavailable` or `Config`).
pub const EVENTS_TOTAL: &str = "headwater_sink_events_total";
/// Wall time of one `send` (labels `route`, `sink`).
pub const BATCH_DURATION_SECONDS: &str = "headwater_sink_batch_duration_seconds";
/// Bytes written to the destination: compressed object bytes for S3, request body bytes as
/// sent for Elasticsearch, key + value + header bytes for topics (labels `route`, `sink`).
pub const BYTES_TOTAL: &str = "headwater_sink_bytes_total";
/// Sends that ended with something to send again: the whole batch failed, or some events
/// were listed for retry; the router re-sends after its backoff (labels `route`, `sink`).
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
        "Wall time of one sink send"
    );
    describe_counter!(BYTES_TOTAL, Unit::Bytes, "Bytes written by a sink");
    describe_counter!(
        RETRIES_TOTAL,
        "Sink sends that left events to send again (the router retries them)"
    );
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
    let to_retry = match result {
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
            retry > 0
        }
        Err(_) => {
            counter!(EVENTS_TOTAL, &labels(FAILED)).increment(events as u64);
            true
        }
    };
    if to_retry {
        counter!(RETRIES_TOTAL, "route" => route.to_owned(), "sink" => sink.to_owned())
            .increment(1);
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use metrics::{
        Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
        SharedString,
    };

    use super::*;

    #[derive(Default)]
    struct Cell(AtomicU64);

    impl CounterFn for Cell {
        fn increment(&self, value: u64) {
            self.0.fetch_add(value, Ordering::Relaxed);
        }
        fn absolute(&self, value: u64) {
            self.0.store(value, Ordering::Relaxed);
        }
    }

    impl HistogramFn for Cell {
        fn record(&self, _value: f64) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sums per `name{label=value,…}`.
    #[derive(Default)]
    struct Capture(Mutex<BTreeMap<String, Arc<Cell>>>);

    impl Capture {
        fn cell(&self, key: &Key) -> Arc<Cell> {
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let name = format!("{}{{{}}}", key.name(), labels.join(","));
            let mut map = self.0.lock().unwrap();
            map.entry(name).or_default().clone()
        }

        fn get(&self, name: &str) -> u64 {
            let map = self.0.lock().unwrap();
            map.get(name).map_or(0, |c| c.0.load(Ordering::Relaxed))
        }
    }

    impl Recorder for Capture {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(self.cell(key))
        }
        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::from_arc(self.cell(key))
        }
    }

    #[test]
    fn sends_are_counted_by_outcome() {
        let capture = Capture::default();
        metrics::with_local_recorder(&capture, || {
            describe();
            let delivery = Delivery {
                retry: vec![1],
                rejected: vec![(2, "bad".to_owned())],
            };
            observe_send("lake", "s3", 10, Instant::now(), &Ok(delivery));
            let failed = Err(SinkError::Unavailable {
                sink: "s3",
                reason: "down".into(),
                retry_after: None,
            });
            observe_send("lake", "s3", 4, Instant::now(), &failed);
            add_bytes("lake", "s3", 1234);
        });
        let events = |outcome: &str| {
            capture.get(&format!(
                "headwater_sink_events_total{{route=lake,sink=s3,outcome={outcome}}}"
            ))
        };
        assert_eq!(events("delivered"), 8);
        assert_eq!(events("retry"), 1);
        assert_eq!(events("rejected"), 1);
        assert_eq!(events("failed"), 4);
        assert_eq!(
            capture.get("headwater_sink_batch_duration_seconds{route=lake,sink=s3}"),
            2
        );
        assert_eq!(
            capture.get("headwater_sink_bytes_total{route=lake,sink=s3}"),
            1234
        );
        assert_eq!(
            capture.get("headwater_sink_retries_total{route=lake,sink=s3}"),
            2,
            "the send with an event to retry and the failed one"
        );
    }
}
