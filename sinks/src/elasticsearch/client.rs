//! The HTTP side of the Elasticsearch sink: the reqwest client (auth, TLS, timeouts), one
//! `_bulk` request classified by its answer (no retries here: the router re-sends), and the
//! health probe.

use std::io::Write;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{Client, ClientBuilder, RequestBuilder, Response, StatusCode};

use super::{ElasticsearchConfig, EsError};

/// What a `_bulk` request came to.
pub(crate) enum BulkReply {
    /// 2xx with this body.
    Ok(Bytes),
    /// 413: the body is too large for the server.
    TooLarge,
}

enum Auth {
    None,
    Basic { user: String, password: String },
    Header(HeaderValue),
}

/// Client of one cluster.
pub(crate) struct EsClient {
    http: Client,
    base: String,
    auth: Auth,
    gzip: bool,
}

impl EsClient {
    /// Builds the client; fails on an unreadable CA file or bad API key.
    pub(crate) fn new(config: &ElasticsearchConfig) -> Result<Self, EsError> {
        let timeout = Duration::from_millis(config.request_timeout_ms);
        let builder = Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5).min(timeout))
            .gzip(true);
        let http = with_tls(builder, config)?
            .build()
            .map_err(EsError::Client)?;
        let auth = if !config.api_key.is_empty() {
            let mut value = HeaderValue::from_str(&format!("ApiKey {}", config.api_key))
                .map_err(EsError::ApiKey)?;
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
        })
    }

    fn authorize(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.auth {
            Auth::None => request,
            Auth::Basic { user, password } => request.basic_auth(user, Some(password)),
            Auth::Header(value) => request.header(AUTHORIZATION, value.clone()),
        }
    }

    /// Posts one `_bulk` body once. Returns the reply with the bytes sent (after
    /// compression); a failure is classified by [`EsError`] (429/5xx/connection: retryable).
    pub(crate) async fn bulk(&self, body: &[u8]) -> Result<(BulkReply, usize), EsError> {
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
        let mut request = self
            .http
            .post(url)
            .header(CONTENT_TYPE, "application/x-ndjson")
            .body(payload);
        if self.gzip {
            request = request.header(CONTENT_ENCODING, "gzip");
        }
        let response = send("_bulk", self.authorize(request)).await?;
        if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return Ok((BulkReply::TooLarge, sent));
        }
        let response = success("_bulk", response).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| EsError::ReadBody(without_userinfo(e)))?;
        Ok((BulkReply::Ok(bytes), sent))
    }

    /// GET `/`: Ok on 2xx, else the classified failure (401/403: rejected).
    pub(crate) async fn health(&self) -> Result<(), EsError> {
        let request = self.authorize(self.http.get(format!("{}/", self.base)));
        success("health probe", send("health probe", request).await?).await?;
        Ok(())
    }
}

/// Adds `tls.ca_file`'s certificates and `tls.insecure_skip_verify`.
fn with_tls(
    mut builder: ClientBuilder,
    config: &ElasticsearchConfig,
) -> Result<ClientBuilder, EsError> {
    let path = &config.tls.ca_file;
    if !path.is_empty() {
        let pem = std::fs::read(path).map_err(|source| EsError::CaFile {
            path: path.clone(),
            source,
        })?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| EsError::CaPem {
                path: path.clone(),
                source,
            })?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(builder.danger_accept_invalid_certs(config.tls.insecure_skip_verify))
}

async fn send(request: &'static str, builder: RequestBuilder) -> Result<Response, EsError> {
    builder.send().await.map_err(|source| EsError::Request {
        request,
        source: without_userinfo(source),
    })
}

/// `error` without the userinfo of its URL: reqwest's message ends in `for url (…)`, which
/// would print a password written as `https://user:password@host`.
fn without_userinfo(mut error: reqwest::Error) -> reqwest::Error {
    if let Some(url) = error.url_mut() {
        // Fails only for URLs that cannot have userinfo, which then have none to strip.
        let _ = url.set_password(None);
        let _ = url.set_username("");
    }
    error
}

/// The response if 2xx, else [`EsError::Status`] with the start of its body.
async fn success(request: &'static str, response: Response) -> Result<Response, EsError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = retry_after(response.headers().get(RETRY_AFTER));
    let body = excerpt(response.text().await.unwrap_or_default());
    Err(EsError::Status {
        request,
        status,
        body,
        retry_after,
    })
}

fn gzip(body: &[u8]) -> Result<Bytes, EsError> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder
        .write_all(body)
        .and_then(|()| encoder.finish())
        .map(Bytes::from)
        .map_err(EsError::Gzip)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn request_errors_do_not_print_the_url_password() {
        // A port nothing listens on: bound, then dropped.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let config = ElasticsearchConfig {
            url: format!("http://admin:hunter2@127.0.0.1:{port}"),
            request_timeout_ms: 2_000,
            ..ElasticsearchConfig::default()
        };
        let client = EsClient::new(&config).expect("client");
        let error = client.health().await.expect_err("nothing listens");
        let shown = crate::error_chain(&error);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("127.0.0.1"), "{shown}");
    }

    #[test]
    fn userinfo_is_stripped_from_an_error_url() {
        let url = reqwest::Url::parse("http://admin:hunter2@search:9200/_bulk").expect("url");
        let error = Client::new()
            .get("http://[::1")
            .build()
            .expect_err("bad url")
            .with_url(url);
        assert!(error.to_string().contains("hunter2"), "{error}");
        let shown = without_userinfo(error).to_string();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("admin"), "{shown}");
        assert!(shown.contains("http://search:9200/_bulk"), "{shown}");
    }
}
