//! Metric names of the router (`headwater_router_*`), their descriptions, and the handles a
//! consumer task updates. Labels: `route` and `sink` (from routes.yaml), `topic`, `partition`.

use metrics::{
    Counter, Gauge, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram,
    gauge, histogram,
};

/// Records read by a route (labels `route`, `topic`).
pub const EVENTS_IN_TOTAL: &str = "headwater_router_events_in_total";
/// Events a route's source selection or filter left out (label `route`).
pub const EVENTS_FILTERED_TOTAL: &str = "headwater_router_events_filtered_total";
/// Events a route's sampling dropped (label `route`).
pub const EVENTS_SAMPLED_OUT_TOTAL: &str = "headwater_router_events_sampled_out_total";
/// Events a sink confirmed (labels `route`, `sink`).
pub const EVENTS_OUT_TOTAL: &str = "headwater_router_events_out_total";
/// Events in sends that failed and will be re-sent (labels `route`, `sink`).
pub const EVENTS_FAILED_TOTAL: &str = "headwater_router_events_failed_total";
/// Events appended to `router.dlq` (labels `route`, `sink`; sink `none` for records whose
/// envelope could not be rebuilt).
pub const EVENTS_DEAD_LETTERED_TOTAL: &str = "headwater_router_events_dead_lettered_total";
/// Offsets a route never routed (labels `route`, `topic`, `reason`: `retention` when retention
/// removed them before the route read them, `corrupt` when the log could not read them back
/// and said where the next readable records start; each such range is also in `router.dlq`).
pub const OFFSETS_SKIPPED_TOTAL: &str = "headwater_router_offsets_skipped_total";
/// Reads of the log that failed and are retried at the same offset (labels `route`, `topic`):
/// growing steadily, a route is stuck (e.g. on corrupt data with no known resume point).
pub const READ_ERRORS_TOTAL: &str = "headwater_router_read_errors_total";
/// Batches confirmed by a sink (labels `route`, `sink`).
pub const BATCHES_TOTAL: &str = "headwater_router_batches_total";
/// Time from handing a batch to a sink to its confirmation, retries included
/// (labels `route`, `sink`).
pub const BATCH_LATENCY_SECONDS: &str = "headwater_router_batch_latency_seconds";
/// 1 while the sink's last send succeeded, 0 while it is failing (labels `route`, `sink`).
pub const SINK_UP: &str = "headwater_router_sink_up";
/// High watermark minus the route's committed offset (labels `route`, `topic`, `partition`).
pub const CONSUMER_LAG: &str = "headwater_router_consumer_lag";
/// Consumer tasks running (label `route`).
pub const TASKS: &str = "headwater_router_tasks";

/// Registers descriptions with the installed recorder; call once at start-up.
pub fn describe() {
    describe_counter!(EVENTS_IN_TOTAL, "Records read from the log by a route");
    describe_counter!(
        EVENTS_FILTERED_TOTAL,
        "Events left out by a route's selection or filter"
    );
    describe_counter!(
        EVENTS_SAMPLED_OUT_TOTAL,
        "Events dropped by a route's sampling"
    );
    describe_counter!(EVENTS_OUT_TOTAL, "Events delivered to a sink");
    describe_counter!(EVENTS_FAILED_TOTAL, "Events in failed sends, to be re-sent");
    describe_counter!(EVENTS_DEAD_LETTERED_TOTAL, "Events sent to router.dlq");
    describe_counter!(
        OFFSETS_SKIPPED_TOTAL,
        "Offsets never routed: removed by retention, or unreadable (corrupt)"
    );
    describe_counter!(
        READ_ERRORS_TOTAL,
        "Failed log reads, retried at the same offset"
    );
    describe_counter!(BATCHES_TOTAL, "Batches confirmed by a sink");
    describe_histogram!(
        BATCH_LATENCY_SECONDS,
        Unit::Seconds,
        "Batch delivery time, retries included"
    );
    describe_gauge!(
        SINK_UP,
        "1 while a route's sink accepts batches, 0 while it fails"
    );
    describe_gauge!(CONSUMER_LAG, "High watermark minus committed offset");
    describe_gauge!(TASKS, "Consumer tasks running");
}

/// Handles of one consumer task (route, topic, partition).
#[derive(Clone)]
pub struct TaskMetrics {
    /// Records read.
    pub events_in: Counter,
    /// Filtered out.
    pub filtered: Counter,
    /// Sampled out.
    pub sampled_out: Counter,
    /// Offsets skipped by retention.
    pub skipped: Counter,
    /// Offsets skipped because the log could not read them back (corrupt).
    pub unreadable: Counter,
    /// Failed reads, retried.
    pub read_errors: Counter,
    /// Dead-lettered because the envelope could not be rebuilt.
    pub undecodable: Counter,
    /// Consumer lag.
    pub lag: Gauge,
}

impl TaskMetrics {
    /// Handles for `route` reading `topic`/`partition`.
    pub fn new(route: &str, topic: &str, partition: i32) -> Self {
        let (r, t) = (route.to_owned(), topic.to_owned());
        Self {
            events_in: counter!(EVENTS_IN_TOTAL, "route" => r.clone(), "topic" => t.clone()),
            filtered: counter!(EVENTS_FILTERED_TOTAL, "route" => r.clone()),
            sampled_out: counter!(EVENTS_SAMPLED_OUT_TOTAL, "route" => r.clone()),
            skipped: counter!(OFFSETS_SKIPPED_TOTAL, "route" => r.clone(), "topic" => t.clone(), "reason" => "retention"),
            unreadable: counter!(OFFSETS_SKIPPED_TOTAL, "route" => r.clone(), "topic" => t.clone(), "reason" => "corrupt"),
            read_errors: counter!(READ_ERRORS_TOTAL, "route" => r.clone(), "topic" => t.clone()),
            undecodable: counter!(EVENTS_DEAD_LETTERED_TOTAL, "route" => r.clone(), "sink" => "none"),
            lag: gauge!(CONSUMER_LAG, "route" => r, "topic" => t, "partition" => partition.to_string()),
        }
    }
}

/// Handles of one sink of a route.
#[derive(Clone)]
pub struct SinkMetrics {
    /// Delivered.
    pub out: Counter,
    /// In failed sends.
    pub failed: Counter,
    /// Dead-lettered.
    pub dead_lettered: Counter,
    /// Confirmed batches.
    pub batches: Counter,
    /// Delivery latency.
    pub latency: Histogram,
    /// Health.
    pub up: Gauge,
}

impl SinkMetrics {
    /// Handles for `sink` (its label) of `route`.
    pub fn new(route: &str, sink: &str) -> Self {
        let l = [("route", route.to_owned()), ("sink", sink.to_owned())];
        Self {
            out: counter!(EVENTS_OUT_TOTAL, &l),
            failed: counter!(EVENTS_FAILED_TOTAL, &l),
            dead_lettered: counter!(EVENTS_DEAD_LETTERED_TOTAL, &l),
            batches: counter!(BATCHES_TOTAL, &l),
            latency: histogram!(BATCH_LATENCY_SECONDS, &l),
            up: gauge!(SINK_UP, &l),
        }
    }
}
