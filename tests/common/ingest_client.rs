//! An ingest client over reqwest: `POST`s with an API key and a chosen content type and
//! encoding, and unary gRPC calls over HTTP/2 (h2c) with a hand-built message frame, each
//! returning what the server answered.

use std::net::SocketAddr;

use reqwest::StatusCode;
use serde_json::Value;

use super::payloads::percent_decode;

/// A client of one `headwater` ingest port.
pub(crate) struct IngestClient {
    /// `http://ADDR`.
    pub base: String,
    /// The API key sent with every `POST` (and with gRPC calls that pass it).
    pub key: String,
    http: reqwest::Client,
    h2: reqwest::Client,
}

impl IngestClient {
    pub(crate) fn new(addr: SocketAddr, key: &str) -> Self {
        Self {
            base: format!("http://{addr}"),
            key: key.to_owned(),
            http: reqwest::Client::new(),
            h2: reqwest::Client::builder()
                .http2_prior_knowledge()
                .build()
                .unwrap(),
        }
    }

    /// `POST path` with the key: the status and the answer (JSON, or the text as a string).
    pub(crate) async fn post(
        &self,
        path: &str,
        content_type: &str,
        encoding: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header("content-type", content_type)
            .body(body);
        if let Some(encoding) = encoding {
            request = request.header("content-encoding", encoding);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    /// `POST /v1/events` with the key.
    pub(crate) async fn post_events(
        &self,
        content_type: &str,
        encoding: Option<&str>,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        self.post("/v1/events", content_type, encoding, body).await
    }

    /// A unary gRPC call with one message frame, with `key` if any: the answer's
    /// `grpc-status`, `grpc-message` and response body (frames).
    pub(crate) async fn grpc(
        &self,
        path: &str,
        key: Option<&str>,
        frame: Vec<u8>,
        gzip: bool,
    ) -> (String, String, Vec<u8>) {
        let mut request = self
            .h2
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(frame);
        if gzip {
            request = request.header("grpc-encoding", "gzip");
        }
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        let (status, message) = (
            header("grpc-status"),
            percent_decode(&header("grpc-message")),
        );
        let body = response.bytes().await.unwrap().to_vec();
        (status, message, body)
    }
}
