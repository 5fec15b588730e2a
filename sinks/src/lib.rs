//! Headwater's sinks: the [`Sink`] trait and its S3, Elasticsearch/OpenSearch and topic
//! implementations, one folder each. Pure mechanism: routing policy (what goes where,
//! batching, offsets, retries) lives in the router; a sink delivers once and classifies what
//! failed ([`SinkError`]).

mod build;
pub mod config;
#[cfg(test)]
mod config_tests;
pub mod elasticsearch;
mod envelope_json;
mod error;
mod instrumented;
pub mod memory;
pub mod metrics;
pub mod s3;
mod time;
pub mod topic;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use headwater_schemas::Envelope;

pub use build::build;
pub use config::{KafkaDefaults, SinkConfig, SinkContext, SinksConfig};
pub use elasticsearch::{ElasticsearchConfig, ElasticsearchSink, EsError, TlsConfig};
pub use error::{BuildError, Cause, Classify, ConfigError, Problem, SinkError, error_chain};
pub use instrumented::Instrumented;
pub use memory::MemorySink;
pub use s3::{Compression, S3Config, S3Error, S3Sink};
pub use topic::{TopicConfig, TopicError, TopicSink};

/// One event on its way out, with where it came from in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutEvent {
    /// Source topic.
    pub topic: Arc<str>,
    /// Source partition.
    pub partition: i32,
    /// Offset in the source partition.
    pub offset: i64,
    /// Record key as stored (the source id), kept for topic sinks.
    pub key: Option<Bytes>,
    /// The event; `envelope.payload` is the payload after the route's projection.
    pub envelope: Envelope,
}

/// A batch for one sink: events of one route from ONE source partition, in offset order, with
/// deterministic bounds (`first_offset..=last_offset`), so that a batch re-sent after a crash
/// is the same batch (S3 derives its object key from these bounds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Route name (bounded label set, from routes.yaml).
    pub route: Arc<str>,
    /// Source topic.
    pub topic: Arc<str>,
    /// Source partition.
    pub partition: i32,
    /// First log offset the batch covers (events may skip offsets that were filtered out).
    pub first_offset: i64,
    /// Last log offset the batch covers.
    pub last_offset: i64,
    /// The events.
    pub events: Vec<OutEvent>,
}

/// What became of a batch that was not refused as a whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Indexes into `Batch::events` that failed transiently and should be sent again.
    pub retry: Vec<usize>,
    /// Indexes that the destination refused for good, with the reason; the router sends them
    /// to its dead-letter topic (`router.dlq`). Every other event is delivered.
    pub rejected: Vec<(usize, String)>,
}

impl Delivery {
    /// Everything delivered.
    pub fn all() -> Self {
        Self::default()
    }

    /// Whether every event was delivered.
    pub fn is_complete(&self) -> bool {
        self.retry.is_empty() && self.rejected.is_empty()
    }
}

/// A destination for routed events. Implementations deliver a batch idempotently: sending the
/// same batch twice (after a crash, before the router committed its offsets) must not create
/// duplicates where the destination allows it (S3 key from the batch bounds, Elasticsearch
/// `_id` = event id, idempotent Kafka producer).
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// Sink kind for metrics and logs: `s3`, `elasticsearch`, `topic`, `memory`.
    fn kind(&self) -> &'static str;

    /// Delivers a batch. `Ok` means every event not listed in the [`Delivery`] is durable at
    /// the destination; the router commits offsets only after that.
    async fn send(&self, batch: Batch) -> Result<Delivery, SinkError>;

    /// Makes anything the sink buffers durable (called on shutdown).
    async fn flush(&self) -> Result<(), SinkError>;

    /// Ok when the destination answers (for readiness and the router's backoff).
    async fn healthcheck(&self) -> Result<(), SinkError>;
}
