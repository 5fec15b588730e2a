//! The topic sink: records into a topic of the internal log or of an external Kafka cluster,
//! key preserved, value = payload, envelope as `hw.*` headers.

mod config;
mod error;
mod kafka;
mod log;

use std::sync::Arc;

use async_trait::async_trait;
use headwater_log::Log;

pub use config::TopicConfig;
pub use error::TopicError;
pub use log::record_of;

use crate::config::{SinkContext, check, label_of};
use crate::metrics::add_bytes;
use crate::{Batch, BuildError, ConfigError, Delivery, Problem, Sink, SinkError};
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
    /// Into Kafka when `config.brokers` is set, else into the internal log of `ctx`.
    pub fn new(config: &TopicConfig, ctx: &SinkContext) -> Result<Self, BuildError> {
        if !config.brokers.is_empty() {
            return Self::to_kafka(config);
        }
        check(config)?;
        match &ctx.log {
            Some(log) => Self::to_log(config, Arc::clone(log)),
            None => Err(TopicError::NoLog.into()),
        }
    }

    /// Into `config.topic` of the internal `log` (`config.brokers` is ignored).
    pub fn to_log(config: &TopicConfig, log: Arc<dyn Log>) -> Result<Self, BuildError> {
        check(config)?;
        Ok(Self {
            target: Target::Log(LogTarget {
                log,
                topic: config.topic.clone(),
                max_append_bytes: usize::try_from(config.max_append_bytes).unwrap_or(usize::MAX),
            }),
            label: label_of(&config.name, KIND),
        })
    }

    /// Into `config.topic` of the Kafka cluster at `config.brokers`.
    pub fn to_kafka(config: &TopicConfig) -> Result<Self, BuildError> {
        check(config)?;
        if config.brokers.is_empty() {
            let problems = vec![Problem {
                key: "brokers".to_owned(),
                message: "required for an external Kafka topic".to_owned(),
            }];
            return Err(ConfigError::Invalid { problems }.into());
        }
        Ok(Self {
            target: Target::Kafka(KafkaTarget::new(config)?),
            label: label_of(&config.name, KIND),
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

#[async_trait]
impl Sink for TopicSink {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn send(&self, batch: Batch) -> Result<Delivery, SinkError> {
        let (delivery, bytes) = match &self.target {
            Target::Log(t) => t.send(&batch).await?,
            Target::Kafka(t) => t.send(&batch).await?,
        };
        add_bytes(&batch.route, &self.label, bytes);
        Ok(delivery)
    }

    async fn flush(&self) -> Result<(), SinkError> {
        match &self.target {
            Target::Log(t) => t.log.flush().await.map_err(TopicError::Log)?,
            Target::Kafka(t) => t.flush().await?,
        }
        Ok(())
    }

    async fn healthcheck(&self) -> Result<(), SinkError> {
        match &self.target {
            Target::Log(t) => t.log.check_writable().await.map_err(TopicError::Log)?,
            Target::Kafka(t) => t.health().await?,
        }
        Ok(())
    }
}
