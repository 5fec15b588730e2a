//! The middleware that counts every HTTP request by method, matched path and status, and
//! times it. Every label comes from a bounded set: the method is a standard one or `other`,
//! the path a route's pattern or `unmatched`, the status a number.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::response::Response;
use metrics::{Counter, Histogram};
use tower::{Layer, Service};

use crate::metrics::{HTTP_REQUEST_DURATION_SECONDS, HTTP_REQUESTS_TOTAL};

/// The path label of a request that matched no route.
const UNMATCHED: &str = "unmatched";

/// Series whose handles [`RequestMetrics`] keeps; past it, the handles are looked up in the
/// recorder each time, as without the cache.
const SERIES_KEPT: usize = 256;

/// The handles of the request metrics by method, path and status, looked up in the recorder
/// once each: a request then costs a short scan instead of building and hashing two labelled
/// keys. A server sees a handful of these (its routes, the methods and statuses they answer);
/// the labels are bounded sets, and the number kept is capped besides.
#[derive(Clone, Default)]
pub(super) struct RequestMetrics {
    series: Arc<Mutex<Vec<Series>>>,
}

/// One method's, path's and status's handles.
struct Series {
    method: &'static str,
    status: u16,
    path: Box<str>,
    requests: Counter,
    duration: Histogram,
}

impl Series {
    fn new(method: &'static str, path: &str, status: u16) -> Self {
        Self {
            method,
            status,
            path: path.into(),
            requests: metrics::counter!(HTTP_REQUESTS_TOTAL, "method" => method, "path" => path.to_owned(), "status" => status.to_string()),
            duration: metrics::histogram!(HTTP_REQUEST_DURATION_SECONDS, "method" => method, "path" => path.to_owned()),
        }
    }

    fn record(&self, seconds: f64) {
        self.requests.increment(1);
        self.duration.record(seconds);
    }
}

impl RequestMetrics {
    /// Counts a request and records its duration.
    fn record(&self, method: &'static str, path: &str, status: u16, seconds: f64) {
        let mut series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        let kept = series
            .iter()
            .find(|s| s.status == status && s.method == method && *s.path == *path);
        if let Some(kept) = kept {
            return kept.record(seconds);
        }
        let new = Series::new(method, path, status);
        new.record(seconds);
        if series.len() < SERIES_KEPT {
            series.push(new);
        }
    }
}

/// The layer that counts and times every request with [`RequestMetrics`]; the path label is
/// the route's pattern (bounded), or `unmatched`. Put on a router's routes (and its
/// fallback), where the pattern the request matched is known. Its service and future are
/// plain types: a request costs no boxed service or future of its own.
#[derive(Clone, Default)]
pub(super) struct MetricsLayer {
    handles: RequestMetrics,
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metered<S>;

    fn layer(&self, inner: S) -> Metered<S> {
        Metered {
            inner,
            handles: self.handles.clone(),
        }
    }
}

/// A service whose requests [`MetricsLayer`] counts and times.
#[derive(Clone)]
pub(super) struct Metered<S> {
    inner: S,
    handles: RequestMetrics,
}

impl<S> Service<Request> for Metered<S>
where
    S: Service<Request, Response = Response>,
    S::Future: Unpin,
{
    type Response = Response;
    type Error = S::Error;
    type Future = MeteredFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let path = request.extensions().get::<MatchedPath>().cloned();
        let method = method_label(request.method());
        MeteredFuture {
            inner: self.inner.call(request),
            handles: self.handles.clone(),
            method,
            path,
            started: Instant::now(),
        }
    }
}

/// A metered request's answer: recorded when it is ready.
pub(super) struct MeteredFuture<F> {
    inner: F,
    handles: RequestMetrics,
    method: &'static str,
    path: Option<MatchedPath>,
    started: Instant,
}

impl<F, E> Future for MeteredFuture<F>
where
    F: Future<Output = Result<Response, E>> + Unpin,
{
    type Output = Result<Response, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let result = std::task::ready!(Pin::new(&mut this.inner).poll(cx));
        if let Ok(response) = &result {
            this.handles.record(
                this.method,
                this.path.as_ref().map_or(UNMATCHED, MatchedPath::as_str),
                response.status().as_u16(),
                this.started.elapsed().as_secs_f64(),
            );
        }
        Poll::Ready(result)
    }
}

/// The `method` label: one of the nine methods of RFC 9110 and RFC 5789, else `other` (a
/// client may send any token as a method).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_handles_count_what_the_recorder_would() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let rendered = recorder.handle();
        let kept = RequestMetrics::default();
        metrics::with_local_recorder(&recorder, || {
            for _ in 0..3 {
                kept.record("POST", "/v1/events", 200, 0.001);
            }
            kept.record("POST", "/v1/events", 503, 0.001);
            kept.record("GET", "/v1/events", 200, 0.001);
            // Past the cap every request is still counted, its handles not kept.
            for status in 0..SERIES_KEPT as u16 {
                kept.record("GET", UNMATCHED, status, 0.0);
            }
            kept.record("GET", UNMATCHED, 999, 0.0);
            kept.record("GET", UNMATCHED, 999, 0.0);
        });
        assert_eq!(kept.series.lock().unwrap().len(), SERIES_KEPT);
        let text = rendered.render();
        for line in [
            r#"headwater_http_requests_total{method="POST",path="/v1/events",status="200"} 3"#,
            r#"headwater_http_requests_total{method="POST",path="/v1/events",status="503"} 1"#,
            r#"headwater_http_requests_total{method="GET",path="/v1/events",status="200"} 1"#,
            r#"headwater_http_requests_total{method="GET",path="unmatched",status="999"} 2"#,
            r#"headwater_http_request_duration_seconds_count{method="POST",path="/v1/events"} 4"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
    }

    #[test]
    fn unknown_methods_are_other() {
        assert_eq!(method_label(&Method::POST), "POST");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let custom = Method::from_bytes(b"M17").unwrap();
        assert_eq!(method_label(&custom), "other");
        let lookalike = Method::from_bytes(b"get").unwrap();
        assert_eq!(method_label(&lookalike), "other");
    }
}
