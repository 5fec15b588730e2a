//! The gateway's Prometheus recorder and the `headwater_*` metrics it declares.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

pub use metrics_exporter_prometheus::PrometheusHandle;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// Requests served, by method, matched path and status.
pub const HTTP_REQUESTS_TOTAL: &str = "headwater_http_requests_total";
/// Request latency in seconds, by method and matched path.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "headwater_http_request_duration_seconds";
/// Constant 1, labelled with the build's version.
pub const BUILD_INFO: &str = "headwater_build_info";
/// Process start time, seconds since the Unix epoch.
pub const PROCESS_START_TIME_SECONDS: &str = "headwater_process_start_time_seconds";

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder once and returns its handle.
///
/// Later calls return the same handle, so tests may build many apps in one process.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let handle = match builder.install_recorder() {
                Ok(handle) => handle,
                // Another recorder is installed (only in odd test set-ups): render an
                // empty local recorder instead of failing.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            };
            describe();
            handle
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(HTTP_REQUESTS_TOTAL, "HTTP requests served");
    metrics::describe_histogram!(
        HTTP_REQUEST_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "HTTP request latency"
    );
    metrics::describe_gauge!(BUILD_INFO, "Build information; always 1");
    metrics::describe_gauge!(
        PROCESS_START_TIME_SECONDS,
        "Process start time since the epoch"
    );
    metrics::describe_counter!(
        INGEST_EVENTS_TOTAL,
        "Events received, by tenant, type and outcome"
    );
    metrics::describe_counter!(
        INGEST_BYTES_TOTAL,
        metrics::Unit::Bytes,
        "Decompressed request bytes"
    );
    metrics::describe_counter!(INGEST_REFUSED_TOTAL, "Batches refused as a whole");
    metrics::describe_histogram!(
        INGEST_APPEND_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "Time from decoded batch to durable append"
    );
    metrics::describe_counter!(
        INGEST_EVENT_BYTES_TOTAL,
        metrics::Unit::Bytes,
        "Payload bytes of accepted events, by tenant and type"
    );
    metrics::describe_histogram!(
        INGEST_EVENT_LATENCY_SECONDS,
        metrics::Unit::Seconds,
        "Time from decoded batch to durable append, by tenant and type"
    );
    metrics::describe_histogram!(
        INGEST_REQUEST_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "Ingest request latency"
    );
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    let start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    metrics::gauge!(PROCESS_START_TIME_SECONDS).set(start);
}

/// Events by tenant, type (registered types, else `other`) and outcome
/// (`accepted`, `duplicate`, `invalid`, `malformed`, `too_large`, `unavailable`).
pub const INGEST_EVENTS_TOTAL: &str = "headwater_ingest_events_total";
/// Request body bytes received, by tenant, after decompression.
pub const INGEST_BYTES_TOTAL: &str = "headwater_ingest_bytes_total";
/// Batches refused as a whole, by transport and reason.
pub const INGEST_REFUSED_TOTAL: &str = "headwater_ingest_refused_total";
/// Time from a decoded batch to its durable append, in seconds.
pub const INGEST_APPEND_DURATION_SECONDS: &str = "headwater_ingest_append_duration_seconds";
/// Payload bytes of accepted events, by tenant and type.
pub const INGEST_EVENT_BYTES_TOTAL: &str = "headwater_ingest_event_bytes_total";
/// Time from a decoded batch to the durable append of its accepted events, by tenant and type
/// (one observation per type present in the batch), in seconds.
pub const INGEST_EVENT_LATENCY_SECONDS: &str = "headwater_ingest_event_latency_seconds";
/// Time to handle an ingest request end to end, by transport, in seconds.
pub const INGEST_REQUEST_DURATION_SECONDS: &str = "headwater_ingest_request_duration_seconds";
/// Schemas loaded now.
pub const SCHEMAS_LOADED: &str = "headwater_schemas_loaded";
/// Schema reloads by outcome (`ok`, `error`).
pub const SCHEMAS_RELOADS_TOTAL: &str = "headwater_schemas_reloads_total";
