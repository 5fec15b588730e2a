//! The HTTP side of the Elasticsearch sink: the reqwest client (auth, TLS, timeouts), one
//! `_bulk` request with exponential backoff and jitter, and the health probe.

use std::io::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{Client, RequestBuilder, StatusCode};
use tracing::warn;

use crate::SinkError;
use crate::config::ElasticsearchConfig;
use crate::metrics::add_retry;

const KIND: &str = "elasticsearch";

/// What a `_bulk` request came to, once retries are over.
pub enum BulkReply {
    /// 2xx with this body.
    Ok(Bytes),
    /// 413: the body is too large for the server.
    TooLarge,
}

/// One attempt's outcome.
enum Attempt {
    /// Final answer.
    Done(BulkReply),
    /// Transient: the reason and the server's `Retry-After`.
    Retry(String, Option<Duration>),
    /// Permanent.
    Fail(SinkError),
}

enum Auth {
    None,
    Basic { user: String, password: String },
    Header(HeaderValue),
}

/// Client of one cluster.
pub struct EsClient {
    http: Client,
    base: String,
    auth: Auth,
    gzip: bool,
    max_attempts: u32,
    budget: Duration,
    initial_backoff: Duration,
    max_backoff: Duration,
}

impl EsClient {
    /// Builds the client; fails on an unreadable CA file or bad API key.
    pub fn new(config: &ElasticsearchConfig) -> Result<Self, SinkError> {
        let mut builder = Client::builder()
            .timeout(Duration::from_millis(config.request_timeout_ms))
            .connect_timeout(
                Duration::from_secs(5).min(Duration::from_millis(config.request_timeout_ms)),
            )
            .gzip(true);
        if !config.tls.ca_file.is_empty() {
            let pem = std::fs::read(&config.tls.ca_file)
                .map_err(|e| config_error(format!("cannot read {}: {e}", config.tls.ca_file)))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| config_error(format!("bad CA file {}: {e}", config.tls.ca_file)))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        if config.tls.insecure_skip_verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        let http = builder
            .build()
            .map_err(|e| config_error(format!("http client: {e}")))?;
        let auth = if !config.api_key.is_empty() {
            let mut value = HeaderValue::from_str(&format!("ApiKey {}", config.api_key))
                .map_err(|_| config_error("api_key is not a valid header value".to_owned()))?;
            value.set_sensitive(true);
            Auth::Header(value)
        } else if !config.username.is_empty() {
            Auth::Basic {
                user: config.username.clone(),
                password: config.password.clone(),
            }
        } else {
            Auth::None
        };
        Ok(Self {
            http,
            base: config.url.trim_end_matches('/').to_owned(),
            auth,
            gzip: config.gzip,
            max_attempts: config.max_attempts.max(1),
            budget: Duration::from_millis(config.retry_budget_ms),
            initial_backoff: Duration::from_millis(config.initial_backoff_ms),
            max_backoff: Duration::from_millis(config.max_backoff_ms),
        })
    }

    fn authorize(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.auth {
            Auth::None => request,
            Auth::Basic { user, password } => request.basic_auth(user, Some(password)),
            Auth::Header(value) => request.header(AUTHORIZATION, value.clone()),
        }
    }

    /// Posts one `_bulk` body, retrying 429, 5xx and connection errors with exponential
    /// backoff and jitter within `max_attempts` and the time budget. Returns the bytes sent
    /// (after compression) with the reply.
    pub async fn bulk(
        &self,
        route: &str,
        label: &str,
        body: &[u8],
    ) -> Result<(BulkReply, usize), SinkError> {
        let payload = if self.gzip {
            gzip(body)?
        } else {
            Bytes::copy_from_slice(body)
        };
        let sent = payload.len();
        let url = format!(
            "{}/_bulk?filter_path=errors,items.*.status,items.*.error",
            self.base
        );
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (reason, retry_after) = match self.attempt(&url, payload.clone()).await {
                Attempt::Done(reply) => return Ok((reply, sent)),
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry(reason, retry_after) => (reason, retry_after),
            };
            let delay = self.backoff(attempt).max(retry_after.unwrap_or_default());
            if attempt >= self.max_attempts || started.elapsed() + delay > self.budget {
                return Err(unavailable(
                    format!("{reason} (gave up after {attempt} attempts)"),
                    retry_after,
                ));
            }
            warn!(attempt, delay_ms = delay.as_millis() as u64, %reason, "retrying _bulk");
            add_retry(route, label);
            tokio::time::sleep(delay).await;
        }
    }

    /// One POST of a `_bulk` body, classified.
    async fn attempt(&self, url: &str, payload: Bytes) -> Attempt {
        let mut request = self
            .http
            .post(url)
            .header(CONTENT_TYPE, "application/x-ndjson")
            .body(payload);
        if self.gzip {
            request = request.header(CONTENT_ENCODING, "gzip");
        }
        let response = match self.authorize(request).send().await {
            Ok(response) => response,
            Err(e) if e.is_builder() => return Attempt::Fail(config_error(format!("_bulk: {e}"))),
            Err(e) => {
                return Attempt::Retry(format!("_bulk request failed: {}", error_chain(&e)), None);
            }
        };
        let status = response.status();
        let retry_after = retry_after(response.headers().get(RETRY_AFTER));
        if status.is_success() {
            return match response.bytes().await {
                Ok(bytes) => Attempt::Done(BulkReply::Ok(bytes)),
                Err(e) => Attempt::Retry(format!("reading _bulk response: {e}"), None),
            };
        }
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return Attempt::Done(BulkReply::TooLarge);
        }
        let reason = format!(
            "_bulk answered {status}: {}",
            excerpt(response.text().await.unwrap_or_default())
        );
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            Attempt::Retry(reason, retry_after)
        } else {
            Attempt::Fail(config_error(reason))
        }
    }

    /// `initial * 2^(attempt-1)`, capped, with "equal jitter" (uniform in `[d/2, d]`).
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.max_backoff);
        let half = exp / 2;
        let jitter_ms = rand::rng().random_range(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter_ms)
    }

    /// GET `/`: Ok on 2xx, `Config` on 401/403, else `Unavailable`.
    pub async fn health(&self) -> Result<(), SinkError> {
        let request = self.authorize(self.http.get(format!("{}/", self.base)));
        match request.send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) if matches!(r.status(), StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => Err(
                config_error(format!("authentication failed: {}", r.status())),
            ),
            Ok(r) => Err(unavailable(
                format!("health probe answered {}", r.status()),
                None,
            )),
            Err(e) => Err(unavailable(
                format!("health probe failed: {}", error_chain(&e)),
                None,
            )),
        }
    }
}

fn gzip(body: &[u8]) -> Result<Bytes, SinkError> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder
        .write_all(body)
        .and_then(|()| encoder.finish())
        .map(Bytes::from)
        .map_err(|e| unavailable(format!("gzip failed: {e}"), None))
}

fn retry_after(value: Option<&HeaderValue>) -> Option<Duration> {
    let secs: u64 = value?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(300)))
}

fn excerpt(mut text: String) -> String {
    if text.len() > 300 {
        let mut end = 300;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

pub(crate) fn config_error(reason: String) -> SinkError {
    SinkError::Config { sink: KIND, reason }
}

pub(crate) fn unavailable(reason: String, retry_after: Option<Duration>) -> SinkError {
    SinkError::Unavailable {
        sink: KIND,
        reason,
        retry_after,
    }
}
