//! The middleware that counts every HTTP request by method, matched path and status, and
//! times it. Every label comes from a bounded set: the method is a standard one or `other`,
//! the path a route's pattern or `unmatched`, the status a number.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use crate::metrics::{HTTP_REQUEST_DURATION_SECONDS, HTTP_REQUESTS_TOTAL};

/// Counts and times the request; the path label is the route's pattern (bounded), or
/// `unmatched`.
pub(super) async fn record_metrics(request: Request, next: Next) -> Response {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(HTTP_REQUESTS_TOTAL, "method" => method, "path" => path.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(HTTP_REQUEST_DURATION_SECONDS, "method" => method, "path" => path)
        .record(started.elapsed().as_secs_f64());
    response
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
    fn unknown_methods_are_other() {
        assert_eq!(method_label(&Method::POST), "POST");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let custom = Method::from_bytes(b"M17").unwrap();
        assert_eq!(method_label(&custom), "other");
        let lookalike = Method::from_bytes(b"get").unwrap();
        assert_eq!(method_label(&lookalike), "other");
    }
}
