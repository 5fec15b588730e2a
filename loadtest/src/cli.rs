//! Command-line options of `headwater-loadtest` (every option documented for `--help`).

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// Simulates a fleet of devices posting telemetry batches to a Headwater gateway, measures
/// throughput and latency (HDR histograms), writes JSON and Markdown reports and PNG plots, and
/// optionally verifies by event id that every acknowledged event reached the log, the lake
/// (S3 or local) and OpenSearch exactly once. Exits 1 when verification finds loss or
/// duplicates, 2 on a usage or setup error.
#[derive(Debug, Clone, Parser)]
#[command(name = "headwater-loadtest", version)]
pub struct Args {
    /// Gateway address (host:port) serving `POST /v1/events` and gRPC on one port; with
    /// `--transport kafka`, the Kafka bootstrap address.
    #[arg(
        long,
        default_value = "127.0.0.1:8080",
        env = "HEADWATER_LOADTEST_TARGET"
    )]
    pub target: String,
    /// Transport: HTTP/1.1 keep-alive, HTTP/2 with prior knowledge (h2c), or gRPC
    /// `headwater.v1.Ingest/Publish`.
    #[arg(long, value_enum, default_value_t = Transport::Http1)]
    pub transport: Transport,
    /// Open loop sends at `--rate` on a fixed schedule and measures latency from each
    /// request's intended send time; closed loop keeps `--concurrency` requests in flight
    /// back to back to find peak throughput.
    #[arg(long, value_enum, default_value_t = Mode::Closed)]
    pub mode: Mode,
    /// Open loop: target rate in events per second over the whole fleet.
    #[arg(long, default_value_t = 10_000.0)]
    pub rate: f64,
    /// Open loop: spacing of the intended send times, `poisson` (exponential gaps, as a large
    /// independent fleet produces) or `uniform` (exactly even).
    #[arg(long, value_enum, default_value_t = Arrivals::Poisson)]
    pub arrivals: Arrivals,
    /// Requests in flight at most. Closed loop: a comma-separated list runs one step per
    /// value (e.g. `16,64,256`) and reports the peak; open loop: the first value caps
    /// in-flight requests (a request waiting for a slot still counts from its intended time).
    #[arg(long, value_delimiter = ',', default_value = "64")]
    pub concurrency: Vec<usize>,
    /// Connections (HTTP/1.1: separate connection pools; HTTP/2 and gRPC: multiplexed
    /// connections the in-flight requests are spread over).
    #[arg(long, default_value_t = 8)]
    pub connections: usize,
    /// Seconds each step (closed loop) or the schedule (open loop) lasts.
    #[arg(long, default_value_t = 10.0)]
    pub duration_secs: f64,
    /// Closed loop: end each step after this many requests (batches) as well, a fixed request
    /// mix (with `--seed` and `--run-id`) for counting the server's instructions per event;
    /// `--duration-secs` still caps the step.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Simulated devices; each batch comes from one device, and devices take turns in a
    /// fixed random order so each posts about every `devices × batch / rate` seconds.
    #[arg(long, default_value_t = 10_000)]
    pub devices: u32,
    /// Events per request.
    #[arg(long, default_value_t = 100)]
    pub batch_size: u32,
    /// Approximate size of one event as JSON in bytes (envelope and payload); payloads are
    /// padded with an `x_pad` string to reach it.
    #[arg(long, default_value_t = 200)]
    pub event_bytes: usize,
    /// Event mix as `type=weight,...` over the example schemas (schemas/events/); default a
    /// streaming-service mix of impressions, playback, search, errors, OTel logs and device
    /// telemetry (the protobuf type, sent in its proto3 JSON form).
    #[arg(long)]
    pub mix: Option<String>,
    /// Share of events (0 to 1) made invalid on purpose (required payload fields left out);
    /// they must come back in the response's rejected count and go to the dead-letter topic.
    #[arg(long, default_value_t = 0.0)]
    pub invalid_share: f64,
    /// Request body compression (`Content-Encoding` for HTTP, `grpc-encoding` for gRPC).
    #[arg(long, value_enum, default_value_t = Compression::None)]
    pub compression: Compression,
    /// HTTP body format: JSON array, NDJSON, or protobuf `Batch` (ignored for gRPC).
    #[arg(long, value_enum, default_value_t = BodyFormat::Json)]
    pub body: BodyFormat,
    /// API key sent as `Authorization: Bearer KEY` (none by default).
    #[arg(long, env = "HEADWATER_LOADTEST_API_KEY")]
    pub api_key: Option<String>,
    /// Attempts after a 429, 503 or transport error, each with the same event ids (the
    /// gateway deduplicates them); waits for Retry-After, at most 1 s.
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
    /// Per-request timeout in milliseconds (Kafka: the producer's `message.timeout.ms`).
    #[arg(long, default_value_t = 30_000)]
    pub timeout_ms: u64,
    /// `--transport kafka`: the topic produced to.
    #[arg(long, default_value = "events")]
    pub kafka_topic: String,
    /// `--transport kafka`: the producer's `linger.ms` (0: a batch is sent as soon as the
    /// producer's connection can take it).
    #[arg(long, default_value_t = 0)]
    pub kafka_linger_ms: u64,
    /// Run id, the prefix of every event id (`RUN-SEQ`, SEQ counting from 0); default a
    /// random 8-hex-digit id.
    #[arg(long)]
    pub run_id: Option<String>,
    /// Seed of the event contents and schedule.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Directory for report.json, report.md and the PNG plots.
    #[arg(long, default_value = "target/loadtest")]
    pub out: PathBuf,
    /// Label of this run in the reports (e.g. `gateway http1 closed`).
    #[arg(long)]
    pub label: Option<String>,
    /// TTF font for plot text; plots are skipped with a warning when it cannot be read.
    #[arg(
        long,
        default_value = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
    )]
    pub font: PathBuf,
    /// Do not draw the PNG plots.
    #[arg(long)]
    pub no_plots: bool,
    /// Do not show the live progress bar (it is hidden anyway when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
    /// Where to verify delivery (log, S3, OpenSearch) after the run.
    #[command(flatten)]
    pub verify: VerifyArgs,
}

/// Read-back verification after the run.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// Kafka bootstrap (host:port) of the log to read back every partition of the topics,
    /// from the high watermarks taken before the run (the beginning for `--verify-ledger`),
    /// matching records by the `hw.id` header; e.g. `headwater serve`'s `--kafka-listen`.
    #[arg(long)]
    pub verify_kafka: Option<String>,
    /// Log topics valid events go to (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "events,telemetry")]
    pub verify_topics: Vec<String>,
    /// Dead-letter topic the rejected events must reach (empty: not checked).
    #[arg(long, default_value = "events.dlq")]
    pub verify_dlq_topic: String,
    /// Local lake directory (what `headwater serve` writes under {data_dir}/lake/) to read
    /// `*.ndjson.zst|gz` objects from and match envelopes by `id`.
    #[arg(long)]
    pub verify_lake_dir: Option<PathBuf>,
    /// S3 bucket to read the lake objects from instead (with `--s3-endpoint`).
    #[arg(long)]
    pub verify_s3_bucket: Option<String>,
    /// S3 endpoint override, e.g. `http://127.0.0.1:9000` (moto, MinIO).
    #[arg(long, env = "HEADWATER_TEST_S3")]
    pub s3_endpoint: Option<String>,
    /// Key prefix of the lake objects in the directory or bucket.
    #[arg(long, default_value = "")]
    pub verify_lake_prefix: String,
    /// OpenSearch URL to read documents back from (document `_id` = event id).
    #[arg(long)]
    pub verify_opensearch: Option<String>,
    /// OpenSearch index (or pattern) the events are written to.
    #[arg(long, default_value = "events*")]
    pub verify_opensearch_index: String,
    /// Skip the load: verify the run saved in this `ledger.json` (every run writes one into
    /// `--out`) against the stores given, and write `verify.json` into `--out`.
    #[arg(long)]
    pub verify_ledger: Option<PathBuf>,
    /// Seconds to wait for every expected event to appear in the lake and OpenSearch (they lag
    /// the log by the router's batch age); for the log, the longest pause without a record
    /// while reading back (the whole read is capped at 30 min).
    #[arg(long, default_value_t = 60)]
    pub verify_wait_secs: u64,
}

/// How requests reach the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// HTTP/1.1 keep-alive.
    Http1,
    /// HTTP/2 cleartext with prior knowledge.
    Http2,
    /// gRPC `headwater.v1.Ingest/Publish`.
    Grpc,
    /// OTLP/HTTP logs (`POST /v1/logs`, protobuf, HTTP/1.1 keep-alive): each event a log
    /// record with its id in `log.record.uid`, its payload as the body, one resource per
    /// source. Any OTLP receiver can take it (an OpenTelemetry Collector too).
    OtlpHttp,
    /// Kafka Produce through librdkafka with `acks=all` to the bootstrap address `--target`:
    /// each event a record of `--kafka-topic`, its payload the value, its source the key, its
    /// id in the `hw.id` header (what `--verify-kafka` matches). A batch is answered when
    /// every record's delivery is reported. Any Kafka broker can take it (Apache Kafka too).
    Kafka,
}

/// Open or closed loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Constant rate, latency from the intended send time.
    Open,
    /// Fixed concurrency, back to back.
    Closed,
}

/// Spacing of intended send times in open loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arrivals {
    /// Exponential gaps.
    Poisson,
    /// Even gaps.
    Uniform,
}

/// Request compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Identity.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

/// HTTP body format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BodyFormat {
    /// A JSON array of events.
    Json,
    /// One event per line.
    Ndjson,
    /// A protobuf `headwater.v1.Batch`.
    Protobuf,
}
