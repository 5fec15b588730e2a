//! The topic sink: records into a topic of the internal log or of an external Kafka cluster,
//! key preserved, value = payload, envelope as `hw.*` headers.

mod kafka;
mod log;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use headwater_log::Log;
use tracing::{Instrument, info_span};

pub use log::record_of;

use crate::config::{self, SinkConfig, TopicConfig};
use crate::metrics::{add_bytes, observe_send};
use crate::{Batch, Delivery, Sink, SinkError};
use kafka::KafkaTarget;
use log::LogTarget;

const KIND: &str = "topic";

enum Target {
    Log(LogTarget),
    Kafka(KafkaTarget),
}

/// Writes each event as one record of the configured topic.
///
/// Into the internal log delivery is at-least-once (a re-sent batch is appended again); into
/// Kafka the producer is idempotent, which removes duplicates from its own retries but not
/// from a batch the router sends twice.
pub struct TopicSink {
    target: Target,
    label: Arc<str>,
}

impl TopicSink {
    /// Into `config.topic` of the internal `log` (`config.brokers` is ignored).
    pub fn to_log(config: &TopicConfig, log: Arc<dyn Log>) -> Result<Self, SinkError> {
        check(config)?;
        Ok(Self {
            target: Target::Log(LogTarget {
                log,
                topic: config.topic.clone(),
                max_append_bytes: usize::try_from(config.max_append_bytes).unwrap_or(usize::MAX),
            }),
            label: label(config),
        })
    }

    /// Into `config.topic` of the Kafka cluster at `config.brokers`.
    pub fn to_kafka(config: &TopicConfig) -> Result<Self, SinkError> {
        check(config)?;
        if config.brokers.is_empty() {
            return Err(SinkError::Config {
                sink: KIND,
                reason: "brokers: required for an external Kafka topic".to_owned(),
            });
        }
        Ok(Self {
            target: Target::Kafka(KafkaTarget::new(config)?),
            label: label(config),
        })
    }

    /// The destination topic.
    pub fn topic(&self) -> &str {
        match &self.target {
            Target::Log(t) => &t.topic,
            Target::Kafka(t) => &t.topic,
        }
    }
}

fn check(config: &TopicConfig) -> Result<(), SinkError> {
    config::check(&SinkConfig::Topic(config.clone()))
}

fn label(config: &TopicConfig) -> Arc<str> {
    Arc::from(if config.name.is_empty() {
        KIND
    } else {
        config.name.as_str()
    })
}

#[async_trait]
impl Sink for TopicSink {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn send(&self, batch: Batch) -> Result<Delivery, SinkError> {
        let started = Instant::now();
        let events = batch.events.len();
        let span = info_span!("sink_send", route = %batch.route, sink = %self.label, events);
        let result = async {
            let (delivery, bytes) = match &self.target {
                Target::Log(t) => t.send(&batch).await?,
                Target::Kafka(t) => t.send(&batch).await?,
            };
            add_bytes(&batch.route, &self.label, bytes);
            Ok(delivery)
        }
        .instrument(span)
        .await;
        observe_send(&batch.route, &self.label, events, started, &result);
        result
    }

    async fn flush(&self) -> Result<(), SinkError> {
        match &self.target {
            Target::Log(t) => t.log.flush().await.map_err(|e| SinkError::Unavailable {
                sink: KIND,
                reason: format!("log flush: {e}"),
                retry_after: None,
            }),
            Target::Kafka(t) => t.flush().await,
        }
    }

    async fn healthcheck(&self) -> Result<(), SinkError> {
        match &self.target {
            Target::Log(t) => t
                .log
                .check_writable()
                .await
                .map_err(|e| SinkError::Unavailable {
                    sink: KIND,
                    reason: e.to_string(),
                    retry_after: None,
                }),
            Target::Kafka(t) => t.health().await,
        }
    }
}
