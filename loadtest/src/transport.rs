//! Sending one batch over HTTP/1.1, HTTP/2 (h2c prior knowledge) or gRPC, and what came back.

use std::time::Duration;

use bytes::{BufMut, Bytes};
use headwater_schemas::proto::v1::PublishResponse;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use prost::Message as _;
use tonic::client::Grpc;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;

use crate::body;
use crate::cli::{BodyFormat, Compression, Transport};
use crate::error::LoadtestError;
use crate::fleet::GenEvent;

/// The longest Retry-After honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(1);

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// 200: every accepted event durable; `rejected` holds the batch indexes of the rejected.
    Ok {
        /// Accepted count.
        accepted: u32,
        /// Indexes of rejected events.
        rejected: Vec<u32>,
    },
    /// 429/503 or a transport error: may be retried with the same ids after `after`.
    Retry {
        /// How long to wait first.
        after: Duration,
        /// Short label (`429`, `503`, `timeout`, `unavailable`…).
        code: String,
        /// Whether the events may have been appended anyway (transport errors).
        unknown: bool,
    },
    /// A definitive refusal (4xx other than 429): nothing was appended.
    Refused {
        /// Short label (`400`, `413`…).
        code: String,
    },
}

/// A prepared request body, reused by retries.
#[derive(Debug, Clone)]
pub enum Payload {
    /// HTTP body bytes (already compressed), and how many events they hold.
    Http(Bytes, u32),
    /// A gRPC `Batch` message, encoded once (as the HTTP bodies are), not per attempt.
    Grpc(Bytes),
}

/// The path of `headwater.v1.Ingest/Publish`.
const PUBLISH: &str = "/headwater.v1.Ingest/Publish";

/// Sends a message already encoded and decodes a `PublishResponse`.
#[derive(Debug, Clone, Copy, Default)]
struct Preencoded;

impl Codec for Preencoded {
    type Encode = Bytes;
    type Decode = PublishResponse;
    type Encoder = Preencoded;
    type Decoder = Preencoded;

    fn encoder(&mut self) -> Self::Encoder {
        Preencoded
    }

    fn decoder(&mut self) -> Self::Decoder {
        Preencoded
    }
}

impl Encoder for Preencoded {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Preencoded {
    type Item = PublishResponse;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<PublishResponse>, Self::Error> {
        PublishResponse::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("decoding the response: {e}")))
    }
}

/// Settings of the clients.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Transport.
    pub transport: Transport,
    /// host:port.
    pub target: String,
    /// Connections.
    pub connections: usize,
    /// HTTP body format.
    pub body: BodyFormat,
    /// Compression.
    pub compression: Compression,
    /// API key.
    pub api_key: Option<String>,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// A pool of clients of one transport.
#[derive(Clone)]
pub enum Clients {
    /// reqwest clients (HTTP/1.1 or HTTP/2), one per connection slot.
    Http {
        /// Clients.
        clients: Vec<reqwest::Client>,
        /// Full ingest URL, parsed once.
        url: reqwest::Url,
        /// Options.
        options: ClientOptions,
    },
    /// tonic clients, one per connection.
    Grpc {
        /// Clients.
        clients: Vec<Grpc<Channel>>,
        /// Options.
        options: ClientOptions,
    },
}

/// The gRPC compression encoding, if any.
fn grpc_encoding(compression: Compression) -> Option<CompressionEncoding> {
    match compression {
        Compression::None => None,
        Compression::Gzip => Some(CompressionEncoding::Gzip),
        Compression::Zstd => Some(CompressionEncoding::Zstd),
    }
}

impl Clients {
    /// Builds (and for gRPC connects) `connections` clients.
    pub async fn connect(options: ClientOptions) -> Result<Clients, LoadtestError> {
        let n = options.connections.max(1);
        if options.transport == Transport::Grpc {
            let mut clients = Vec::with_capacity(n);
            for _ in 0..n {
                let channel =
                    tonic::transport::Endpoint::from_shared(format!("http://{}", options.target))
                        .map_err(|e| LoadtestError::Transport(e.to_string()))?
                        .tcp_nodelay(true)
                        .connect()
                        .await
                        .map_err(|e| {
                            LoadtestError::Transport(format!("{}: {e}", options.target))
                        })?;
                let mut client = Grpc::new(channel)
                    .max_decoding_message_size(64 << 20)
                    .max_encoding_message_size(64 << 20);
                if let Some(enc) = grpc_encoding(options.compression) {
                    client = client.send_compressed(enc);
                }
                clients.push(client);
            }
            return Ok(Clients::Grpc { clients, options });
        }
        let mut clients = Vec::with_capacity(n);
        for _ in 0..n {
            let builder = reqwest::Client::builder()
                .no_proxy()
                .tcp_nodelay(true)
                .timeout(options.timeout);
            let builder = match options.transport {
                Transport::Http2 => builder.http2_prior_knowledge(),
                _ => builder.http1_only(),
            };
            clients.push(
                builder
                    .build()
                    .map_err(|e| LoadtestError::Transport(e.to_string()))?,
            );
        }
        let path = match options.transport {
            Transport::OtlpHttp => "/v1/logs",
            _ => "/v1/events",
        };
        let url = reqwest::Url::parse(&format!("http://{}{path}", options.target))
            .map_err(|e| LoadtestError::Transport(format!("{}: {e}", options.target)))?;
        Ok(Clients::Http {
            clients,
            url,
            options,
        })
    }

    /// The body of a batch for this transport (compressed for HTTP).
    pub fn prepare(&self, events: &[GenEvent]) -> Payload {
        match self {
            Clients::Grpc { .. } => Payload::Grpc(body::proto_batch(events).encode_to_vec().into()),
            Clients::Http { options, .. } => {
                let raw = if options.transport == Transport::OtlpHttp {
                    prost::Message::encode_to_vec(&body::otlp_request(events))
                } else {
                    body::encode(events, options.body)
                };
                let compressed = body::compress(raw, options.compression).unwrap_or_default();
                Payload::Http(Bytes::from(compressed), events.len() as u32)
            }
        }
    }

    /// One attempt at sending `payload` on connection slot `slot`.
    pub async fn send(&self, slot: usize, payload: &Payload) -> Attempt {
        match (self, payload) {
            (
                Clients::Http {
                    clients,
                    url,
                    options,
                },
                Payload::Http(bytes, events),
            ) => {
                let client = &clients[slot % clients.len()];
                send_http(client, url, options, bytes.clone(), *events).await
            }
            (Clients::Grpc { clients, options }, Payload::Grpc(batch)) => {
                let mut client = clients[slot % clients.len()].clone();
                send_grpc(&mut client, options, batch.clone()).await
            }
            _ => Attempt::Refused {
                code: "payload does not match transport".into(),
            },
        }
    }
}

#[derive(serde::Deserialize)]
struct HttpReport {
    accepted: u32,
    #[serde(default)]
    errors: Vec<HttpRejection>,
}

#[derive(serde::Deserialize)]
struct HttpRejection {
    index: u32,
}

async fn send_http(
    client: &reqwest::Client,
    url: &reqwest::Url,
    options: &ClientOptions,
    bytes: Bytes,
    events: u32,
) -> Attempt {
    let otlp = options.transport == Transport::OtlpHttp;
    let content_type = if otlp {
        "application/x-protobuf"
    } else {
        body::content_type(options.body)
    };
    let mut req = client
        .post(url.clone())
        .header("content-type", content_type)
        .body(bytes);
    match options.compression {
        Compression::None => {}
        Compression::Gzip => req = req.header("content-encoding", "gzip"),
        Compression::Zstd => req = req.header("content-encoding", "zstd"),
    }
    if let Some(key) = &options.api_key {
        req = req.bearer_auth(key);
    }
    let resp = match req.send().await {
        Ok(resp) => resp,
        Err(e) => return transport_error(&e),
    };
    let status = resp.status().as_u16();
    let after = retry_after(resp.headers());
    match status {
        200 if otlp => match resp.bytes().await {
            Ok(body) => otlp_outcome(events, &body),
            Err(e) => transport_error(&e),
        },
        200 => match resp.json::<HttpReport>().await {
            Ok(report) => Attempt::Ok {
                accepted: report.accepted,
                rejected: report.errors.iter().map(|e| e.index).collect(),
            },
            Err(e) => transport_error(&e),
        },
        429 | 503 => Attempt::Retry {
            after,
            code: status.to_string(),
            unknown: false,
        },
        400..=499 => Attempt::Refused {
            code: status.to_string(),
        },
        _ => Attempt::Retry {
            after,
            code: status.to_string(),
            unknown: true,
        },
    }
}

/// The OTLP answer to `records` log records: a partial success counts the rejected, and
/// names them (`record N: reason`, as Headwater writes them, up to five) in its message.
fn otlp_outcome(records: u32, body: &[u8]) -> Attempt {
    let Ok(answer) = ExportLogsServiceResponse::decode(body) else {
        return Attempt::Refused {
            code: "otlp answer".into(),
        };
    };
    let Some(partial) = answer.partial_success else {
        return Attempt::Ok {
            accepted: records,
            rejected: Vec::new(),
        };
    };
    let rejected: Vec<u32> = partial
        .error_message
        .split("; ")
        .filter_map(|part| {
            part.strip_prefix("record ")?
                .split(':')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    let count = u32::try_from(partial.rejected_log_records).unwrap_or(u32::MAX);
    if rejected.len() as u32 != count {
        // Which records were refused is not known: the run cannot be verified by id.
        return Attempt::Refused {
            code: "otlp partial".into(),
        };
    }
    Attempt::Ok {
        accepted: records - count.min(records),
        rejected,
    }
}

fn transport_error(e: &reqwest::Error) -> Attempt {
    let code = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "transport"
    };
    Attempt::Retry {
        after: Duration::from_millis(100),
        code: code.into(),
        // A connect error means nothing was sent; anything later may have been appended.
        unknown: !e.is_connect(),
    }
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Duration {
    headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::from_millis(100), Duration::from_secs)
        .min(MAX_RETRY_AFTER)
}

async fn send_grpc(client: &mut Grpc<Channel>, options: &ClientOptions, batch: Bytes) -> Attempt {
    let mut request = tonic::Request::new(batch);
    request.set_timeout(options.timeout);
    if let Some(key) = &options.api_key
        && let Ok(value) = format!("Bearer {key}").parse()
    {
        request.metadata_mut().insert("authorization", value);
    }
    if let Err(e) = client.ready().await {
        return grpc_outcome(&tonic::Status::unavailable(e.to_string()));
    }
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(PUBLISH);
    match client.unary(request, path, Preencoded).await {
        Ok(resp) => {
            let resp = resp.into_inner();
            Attempt::Ok {
                accepted: resp.accepted,
                rejected: resp.errors.iter().map(|e| e.index).collect(),
            }
        }
        Err(status) => grpc_outcome(&status),
    }
}

fn grpc_outcome(status: &tonic::Status) -> Attempt {
    use tonic::Code;
    let code = format!("grpc {:?}", status.code()).to_lowercase();
    match status.code() {
        Code::ResourceExhausted | Code::Unavailable => Attempt::Retry {
            after: Duration::from_millis(100),
            code,
            // Unavailable is also what a broken connection gives.
            unknown: status.code() == Code::Unavailable,
        },
        Code::InvalidArgument
        | Code::Unauthenticated
        | Code::PermissionDenied
        | Code::OutOfRange
        | Code::Unimplemented => Attempt::Refused { code },
        _ => Attempt::Retry {
            after: Duration::from_millis(100),
            code,
            unknown: true,
        },
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsPartialSuccess;

    use super::*;

    fn answer(partial: Option<(i64, &str)>) -> Vec<u8> {
        ExportLogsServiceResponse {
            partial_success: partial.map(|(n, message)| ExportLogsPartialSuccess {
                rejected_log_records: n,
                error_message: message.to_owned(),
            }),
        }
        .encode_to_vec()
    }

    #[test]
    fn otlp_answers_count_and_name_the_rejected() {
        assert_eq!(
            otlp_outcome(5, &answer(None)),
            Attempt::Ok {
                accepted: 5,
                rejected: vec![]
            }
        );
        assert_eq!(
            otlp_outcome(5, &answer(Some((2, "record 1: bad; record 4: worse: why")))),
            Attempt::Ok {
                accepted: 3,
                rejected: vec![1, 4]
            }
        );
        // Rejected but not named: the run cannot say which.
        assert!(matches!(
            otlp_outcome(5, &answer(Some((1, "")))),
            Attempt::Refused { .. }
        ));
        assert!(matches!(
            otlp_outcome(5, b"\xff\xff"),
            Attempt::Refused { .. }
        ));
    }
}
