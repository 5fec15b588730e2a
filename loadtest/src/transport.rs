//! Sending one batch over HTTP/1.1, HTTP/2 (h2c prior knowledge), gRPC or Kafka Produce, and
//! what came back.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes};
use headwater_schemas::headers;
use headwater_schemas::proto::v1::PublishResponse;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use prost::Message as _;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};
use rdkafka::{ClientConfig, ClientContext};
use tokio::sync::oneshot;
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
    /// Kafka records, one per event.
    Kafka(Arc<[KafkaRecord]>),
}

/// One event as a Kafka record: what the gateway would append for it.
#[derive(Debug)]
pub struct KafkaRecord {
    /// The event id, sent in the `hw.id` header (what the read-back matches on).
    pub id: String,
    /// The key: the event's source, so one device's events keep to one partition.
    pub key: String,
    /// The value: the event's payload (JSON).
    pub value: String,
}

impl KafkaRecord {
    /// Key, value and header bytes.
    pub fn size(&self) -> u64 {
        (self.id.len() + headers::ID.len() + self.key.len() + self.value.len()) as u64
    }
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
    /// Kafka: the topic produced to.
    pub kafka_topic: String,
    /// Kafka: the producer's `linger.ms`.
    pub kafka_linger_ms: u64,
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
    /// librdkafka producers, one per connection (each holds one connection per broker).
    Kafka {
        /// Producers.
        producers: Vec<ThreadedProducer<BatchDeliveries>>,
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
        if options.transport == Transport::Kafka {
            let mut producers = Vec::with_capacity(n);
            for _ in 0..n {
                producers.push(kafka_producer(&options).await?);
            }
            return Ok(Clients::Kafka { producers, options });
        }
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
            Clients::Kafka { .. } => Payload::Kafka(
                events
                    .iter()
                    .map(|e| KafkaRecord {
                        id: e.id.clone(),
                        key: e.source.clone(),
                        value: e.payload.clone(),
                    })
                    .collect(),
            ),
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
            (Clients::Kafka { producers, options }, Payload::Kafka(records)) => {
                let producer = &producers[slot % producers.len()];
                send_kafka(producer, &options.kafka_topic, records).await
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

/// What a batch's records wait on: how many delivery reports are still to come, the first
/// failure, and the batch's sender to wake when the last report arrives.
#[derive(Debug)]
pub struct BatchWait {
    /// Reports still to come, plus one held by the sender until every record is queued.
    remaining: AtomicU32,
    /// The first failure.
    failure: Mutex<Option<KafkaError>>,
    /// Woken once, by whoever brings `remaining` to 0.
    done: Mutex<Option<oneshot::Sender<()>>>,
}

impl BatchWait {
    /// The wait of a batch of `n` records, and what its sender is woken by.
    fn new(n: u32) -> (Arc<BatchWait>, oneshot::Receiver<()>) {
        let (done, delivered) = oneshot::channel();
        let wait = Arc::new(BatchWait {
            remaining: AtomicU32::new(n + 1),
            failure: Mutex::new(None),
            done: Mutex::new(Some(done)),
        });
        (wait, delivered)
    }

    /// Takes `n` off `remaining`; wakes the sender when that was the last.
    fn release(&self, n: u32) {
        if self.remaining.fetch_sub(n, Ordering::AcqRel) == n
            && let Some(done) = lock(&self.done).take()
        {
            let _ = done.send(());
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The producers' context: each record carries its batch's [`BatchWait`], so a batch costs one
/// wake-up, not one per record.
#[derive(Debug, Clone, Copy, Default)]
pub struct BatchDeliveries;

impl ClientContext for BatchDeliveries {}

impl ProducerContext for BatchDeliveries {
    type DeliveryOpaque = Arc<BatchWait>;

    fn delivery(&self, result: &DeliveryResult<'_>, wait: Arc<BatchWait>) {
        if let Err((e, _)) = result {
            lock(&wait.failure).get_or_insert_with(|| e.clone());
        }
        wait.release(1);
    }
}

/// A producer connected to `options.target` that knows the topic's partitions before the
/// clock starts (asking for the topic also creates it on a broker that creates topics on use).
async fn kafka_producer(
    options: &ClientOptions,
) -> Result<ThreadedProducer<BatchDeliveries>, LoadtestError> {
    let producer: ThreadedProducer<BatchDeliveries> = ClientConfig::new()
        .set("bootstrap.servers", &options.target)
        .set("acks", "all")
        .set("linger.ms", options.kafka_linger_ms.to_string())
        .set("enable.idempotence", "false")
        .set(
            "message.timeout.ms",
            options.timeout.as_millis().to_string(),
        )
        // Room for every record in flight: the run's own cap on batches in flight is the limit.
        .set("queue.buffering.max.messages", "2000000")
        .create_with_context(BatchDeliveries)
        .map_err(|e| LoadtestError::Transport(format!("{}: {e}", options.target)))?;
    let (client, topic, timeout) = (
        producer.clone(),
        options.kafka_topic.clone(),
        options.timeout,
    );
    let metadata =
        tokio::task::spawn_blocking(move || client.client().fetch_metadata(Some(&topic), timeout))
            .await
            .map_err(|e| LoadtestError::Transport(e.to_string()))?
            .map_err(|e| LoadtestError::Transport(format!("{}: {e}", options.target)))?;
    match metadata.topics().first() {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(producer),
        Some(t) => Err(LoadtestError::Transport(format!(
            "{}: topic {}: {:?}, {} partitions",
            options.target,
            options.kafka_topic,
            t.error(),
            t.partitions().len()
        ))),
        None => Err(LoadtestError::Transport(format!(
            "{}: no metadata for topic {}",
            options.target, options.kafka_topic
        ))),
    }
}

/// Queues every record, then waits for every delivery report (acks=all: the broker's answer).
async fn send_kafka(
    producer: &ThreadedProducer<BatchDeliveries>,
    topic: &str,
    records: &[KafkaRecord],
) -> Attempt {
    let n = records.len() as u32;
    let (wait, delivered) = BatchWait::new(n);
    let mut queued = 0;
    let mut refused = None;
    for r in records {
        let headers = OwnedHeaders::new_with_capacity(1).insert(Header {
            key: headers::ID,
            value: Some(r.id.as_bytes()),
        });
        let record = BaseRecord::with_opaque_to(topic, Arc::clone(&wait))
            .key(r.key.as_str())
            .payload(r.value.as_str())
            .headers(headers);
        if let Err((e, _)) = producer.send(record) {
            refused = Some(e);
            break;
        }
        queued += 1;
    }
    // The records not queued get no report, and the sender's own share is given up.
    wait.release(n - queued + 1);
    if delivered.await.is_err() {
        return kafka_outcome(&KafkaError::Canceled, queued > 0);
    }
    // The records queued before a refusal may still have been delivered.
    if let Some(e) = refused {
        return kafka_outcome(&e, queued > 0);
    }
    match lock(&wait.failure).take() {
        None => Attempt::Ok {
            accepted: n,
            rejected: Vec::new(),
        },
        Some(e) => kafka_outcome(&e, true),
    }
}

/// A refusal when the broker refused the records for what they are and none may have been
/// appended; otherwise a retry.
fn kafka_outcome(e: &KafkaError, unknown: bool) -> Attempt {
    let code = e.rdkafka_error_code();
    let label = code.map_or_else(|| e.to_string(), |c| format!("kafka {c:?}").to_lowercase());
    let refusal = matches!(
        code,
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::UnknownTopicOrPartition
        )
    );
    if refusal && !unknown {
        return Attempt::Refused { code: label };
    }
    Attempt::Retry {
        after: Duration::from_millis(100),
        code: label,
        unknown,
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
    fn a_batch_is_woken_once_by_the_last_report_or_by_its_sender() {
        // Every report before the sender lets go: the sender's release wakes it.
        let (w, mut delivered) = BatchWait::new(3);
        for _ in 0..3 {
            w.release(1);
        }
        assert!(
            delivered.try_recv().is_err(),
            "woken before the sender let go"
        );
        w.release(1);
        assert!(delivered.try_recv().is_ok());
        // The sender lets go first (two of three queued): the last report wakes it.
        let (w, mut delivered) = BatchWait::new(3);
        w.release(3 - 2 + 1);
        w.release(1);
        assert!(delivered.try_recv().is_err(), "woken with a report to come");
        w.release(1);
        assert!(delivered.try_recv().is_ok());
    }

    #[test]
    fn kafka_refusals_and_retries() {
        let too_large = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        assert!(matches!(
            kafka_outcome(&too_large, false),
            Attempt::Refused { .. }
        ));
        // Records of the batch may have been appended: not a refusal.
        assert!(matches!(
            kafka_outcome(&too_large, true),
            Attempt::Retry { unknown: true, .. }
        ));
        let full = KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull);
        assert!(matches!(
            kafka_outcome(&full, false),
            Attempt::Retry { unknown: false, code, .. } if code == "kafka queuefull"
        ));
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
