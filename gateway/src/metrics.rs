//! The gateway's Prometheus recorder and the `headwater_*` metrics it declares.
//!
//! The recorder bounds the label values that come from clients, wherever a series is
//! recorded: a `tenant` label is one of the configured tenants ([`admit_tenants`]) or `other`;
//! a `type` label is one of the first [`MAX_TYPE_LABELS`] event types seen, then `other`. The
//! HTTP `method` label is bounded where it is recorded (`http::metrics_layer`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use metrics::{
    Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, Recorder, SharedString, Unit,
};
pub use metrics_exporter_prometheus::PrometheusHandle;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};

/// Requests served, by method, matched path and status.
pub const HTTP_REQUESTS_TOTAL: &str = "headwater_http_requests_total";
/// Request latency in seconds, by method and matched path.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "headwater_http_request_duration_seconds";
/// Connections open on the HTTP port.
pub const HTTP_CONNECTIONS_OPEN: &str = "headwater_http_connections_open";
/// Connections closed at accept because a cap was reached, by reason (`total`, `per_ip`).
pub const HTTP_CONNECTIONS_REFUSED_TOTAL: &str = "headwater_http_connections_refused_total";
/// Connections closed after `gateway.connections.idle_timeout_ms` without a request.
pub const HTTP_CONNECTIONS_IDLE_CLOSED_TOTAL: &str = "headwater_http_connections_idle_closed_total";
/// Constant 1, labelled with the build's version.
pub const BUILD_INFO: &str = "headwater_build_info";
/// Request bytes held in `gateway.limits.max_in_flight_bytes`.
pub const INGEST_IN_FLIGHT_BYTES: &str = "headwater_ingest_in_flight_bytes";
/// Requests that waited for room in `gateway.limits.max_in_flight_bytes`.
pub const INGEST_BUDGET_WAITS_TOTAL: &str = "headwater_ingest_budget_waits_total";
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
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            let bounded = Bounded {
                inner: recorder,
                labels: &LABELS,
            };
            let handle = match metrics::set_global_recorder(bounded) {
                Ok(()) => handle,
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
    metrics::describe_gauge!(
        INGEST_IN_FLIGHT_BYTES,
        Unit::Bytes,
        "Request bytes being handled, within gateway.limits.max_in_flight_bytes"
    );
    metrics::describe_counter!(
        INGEST_BUDGET_WAITS_TOTAL,
        "Requests that waited for room in gateway.limits.max_in_flight_bytes"
    );
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
    metrics::describe_gauge!(HTTP_CONNECTIONS_OPEN, "Connections open on the HTTP port");
    metrics::describe_counter!(
        HTTP_CONNECTIONS_REFUSED_TOTAL,
        "Connections closed at accept over a cap, by reason (total, per_ip)"
    );
    metrics::describe_counter!(
        HTTP_CONNECTIONS_IDLE_CLOSED_TOTAL,
        "Connections closed after the idle timeout"
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

/// The transport an ingest request came over: the `transport` label of its metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `POST /v1/events`.
    Http,
    /// `POST /v1/logs`.
    OtlpHttp,
    /// gRPC.
    Grpc,
}

impl Transport {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::OtlpHttp => "otlp_http",
            Self::Grpc => "grpc",
        }
    }
}

/// Tenants whose request-bytes counter [`RequestHandles`] keeps; past it the counter is
/// looked up in the recorder each time, as without the cache.
const TENANTS_KEPT: usize = 1024;

/// The handles of the per-request ingest metrics, each looked up in the recorder once (in the
/// recorder installed by then, whenever this was made): a request then costs no labelled key
/// built, hashed and bounded ([`Bounded`]) for its duration and bytes. Transports are three
/// and tenants a bounded set (the configured ones), whose number kept is capped besides.
/// Refusals, rarer, are counted without a kept handle.
#[derive(Default)]
pub struct RequestHandles {
    durations: [OnceLock<Histogram>; 3],
    bytes: Mutex<HashMap<Arc<str>, Counter>>,
}

impl RequestHandles {
    /// Records a request's duration (`started` until now) under its transport, and its
    /// refusal's reason label if it was refused.
    pub fn observe(&self, transport: Transport, started: Instant, refused: Option<&'static str>) {
        self.durations[transport as usize]
            .get_or_init(|| {
                metrics::histogram!(INGEST_REQUEST_DURATION_SECONDS, "transport" => transport.label())
            })
            .record(started.elapsed().as_secs_f64());
        if let Some(reason) = refused {
            metrics::counter!(INGEST_REFUSED_TOTAL, "transport" => transport.label(), "reason" => reason)
                .increment(1);
        }
    }

    /// Counts a request's body bytes (after decompression) under its tenant.
    pub fn received(&self, tenant: &Arc<str>, bytes: usize) {
        let counter =
            |tenant: &str| metrics::counter!(INGEST_BYTES_TOTAL, "tenant" => tenant.to_owned());
        let mut kept = self.bytes.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(handle) = kept.get(tenant) {
            return handle.increment(bytes as u64);
        }
        let handle = counter(tenant);
        handle.increment(bytes as u64);
        if kept.len() < TENANTS_KEPT {
            kept.insert(tenant.clone(), handle);
        }
    }
}

/// Most distinct event types that label series; the series of later types are counted under
/// `type="other"`.
pub const MAX_TYPE_LABELS: usize = 100;

/// The label value that stands for every value past a bound.
const OTHER: &str = "other";

static LABELS: LazyLock<LabelBounds> = LazyLock::new(|| LabelBounds::new(MAX_TYPE_LABELS));

/// Lets `tenants` label series (the configured ones: the gateway calls this when it builds
/// its app); any other `tenant` label value is recorded as `other`.
pub fn admit_tenants<T: AsRef<str>>(tenants: impl IntoIterator<Item = T>) {
    LABELS.admit_tenants(tenants);
}

/// The label values let through: tenants admitted from configuration, and the first event
/// types seen up to a cap.
struct LabelBounds {
    tenants: RwLock<HashSet<String>>,
    types: RwLock<HashSet<String>>,
    max_types: usize,
}

impl LabelBounds {
    fn new(max_types: usize) -> Self {
        Self {
            tenants: RwLock::default(),
            types: RwLock::default(),
            max_types,
        }
    }

    fn admit_tenants<T: AsRef<str>>(&self, tenants: impl IntoIterator<Item = T>) {
        let mut admitted = self.tenants.write().unwrap_or_else(PoisonError::into_inner);
        admitted.extend(tenants.into_iter().map(|t| t.as_ref().to_owned()));
    }

    /// `key` with its bounded labels past their bound set to `other`; `None` when it is
    /// within bounds as it is (the common case, which allocates nothing).
    fn bound(&self, key: &Key) -> Option<Key> {
        if key.labels().all(|label| self.admits(label)) {
            return None;
        }
        let labels: Vec<Label> = key
            .labels()
            .map(|label| {
                if self.admits(label) {
                    label.clone()
                } else {
                    Label::new(label.key().to_owned(), OTHER)
                }
            })
            .collect();
        Some(Key::from_parts(key.name_shared(), labels))
    }

    /// Whether `label` may keep its value; admitting a new event type while there is room.
    fn admits(&self, label: &Label) -> bool {
        let value = label.value();
        match label.key() {
            "tenant" => {
                value == OTHER
                    || self
                        .tenants
                        .read()
                        .unwrap_or_else(PoisonError::into_inner)
                        .contains(value)
            }
            "type" => value == OTHER || value == "all" || self.admit_type(value),
            _ => true,
        }
    }

    fn admit_type(&self, value: &str) -> bool {
        let known = self.types.read().unwrap_or_else(PoisonError::into_inner);
        if known.contains(value) {
            return true;
        }
        let room = known.len() < self.max_types;
        drop(known);
        if !room {
            return false;
        }
        let mut known = self.types.write().unwrap_or_else(PoisonError::into_inner);
        if known.len() < self.max_types {
            known.insert(value.to_owned());
            return true;
        }
        known.contains(value)
    }
}

/// The Prometheus recorder behind the label bounds.
struct Bounded {
    inner: PrometheusRecorder,
    labels: &'static LabelBounds,
}

impl Recorder for Bounded {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        match self.labels.bound(key) {
            Some(key) => self.inner.register_counter(&key, metadata),
            None => self.inner.register_counter(key, metadata),
        }
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        match self.labels.bound(key) {
            Some(key) => self.inner.register_gauge(&key, metadata),
            None => self.inner.register_gauge(key, metadata),
        }
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        match self.labels.bound(key) {
            Some(key) => self.inner.register_histogram(&key, metadata),
            None => self.inner.register_histogram(key, metadata),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(labels: &[(&'static str, String)]) -> Key {
        let labels: Vec<Label> = labels
            .iter()
            .map(|(k, v)| Label::new(*k, v.clone()))
            .collect();
        Key::from_parts(INGEST_EVENTS_TOTAL, labels)
    }

    fn values(key: &Key) -> Vec<(String, String)> {
        key.labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect()
    }

    #[test]
    fn tenants_outside_the_configured_set_are_other() {
        let bounds = LabelBounds::new(10);
        bounds.admit_tenants(["acme", "default"]);
        let acme = key(&[("tenant", "acme".into()), ("outcome", "accepted".into())]);
        assert!(bounds.bound(&acme).is_none());
        let stranger = key(&[("tenant", "mallory".into()), ("outcome", "accepted".into())]);
        let bounded = bounds.bound(&stranger).unwrap();
        assert_eq!(bounded.name(), INGEST_EVENTS_TOTAL);
        assert_eq!(
            values(&bounded),
            [
                ("tenant".to_owned(), "other".to_owned()),
                ("outcome".to_owned(), "accepted".to_owned())
            ]
        );
    }

    #[test]
    fn event_types_past_the_cap_are_other() {
        let bounds = LabelBounds::new(3);
        for n in 0..3 {
            assert!(bounds.bound(&key(&[("type", format!("t{n}"))])).is_none());
        }
        let late = bounds.bound(&key(&[("type", "t3".into())])).unwrap();
        assert_eq!(values(&late), [("type".to_owned(), "other".to_owned())]);
        // The admitted ones stay, and `all` and `other` never count.
        assert!(bounds.bound(&key(&[("type", "t1".into())])).is_none());
        assert!(bounds.bound(&key(&[("type", "all".into())])).is_none());
        assert!(bounds.bound(&key(&[("type", "other".into())])).is_none());
    }

    #[test]
    fn other_labels_pass_unchanged() {
        let bounds = LabelBounds::new(0);
        let key = key(&[("transport", "http".into()), ("reason", "x".into())]);
        assert!(bounds.bound(&key).is_none());
    }
}
