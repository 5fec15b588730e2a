//! [`TopicError`]: what went wrong in the topic sink, and its classification.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::KIND;
use crate::Classify;

/// What went wrong in the topic sink.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// No `brokers`, and this process has no internal log to write to.
    #[error("no `brokers` and no internal log in this process")]
    NoLog,
    /// An append to the internal log failed.
    #[error("appending to `{topic}`")]
    Append {
        /// The topic.
        topic: String,
        /// The log's error.
        #[source]
        source: headwater_log::LogError,
    },
    /// The internal log could not be flushed or is not writable.
    #[error("the internal log is not writable")]
    Log(#[source] headwater_log::LogError),
    /// The Kafka producer cannot be created.
    #[error("cannot create the kafka producer")]
    Producer(#[source] KafkaError),
    /// The producer failed fatally (it has been replaced).
    #[error("kafka producer fatal error {code}: {reason}")]
    Fatal {
        /// librdkafka's code.
        code: RDKafkaErrorCode,
        /// librdkafka's reason.
        reason: String,
    },
    /// A record could not be queued.
    #[error("enqueueing to `{topic}`")]
    Enqueue {
        /// The topic.
        topic: String,
        /// The producer's error.
        #[source]
        source: KafkaError,
    },
    /// No record of the batch was delivered.
    #[error("producing to `{topic}`")]
    Produce {
        /// The topic.
        topic: String,
        /// The last delivery failure.
        #[source]
        source: KafkaError,
    },
    /// The producer dropped a delivery report.
    #[error("producing to `{topic}`: the producer dropped the delivery report")]
    Dropped {
        /// The topic.
        topic: String,
    },
    /// Flushing or fetching metadata failed.
    #[error("kafka {what}")]
    Kafka {
        /// `flush` or `metadata`.
        what: &'static str,
        /// The producer's error.
        #[source]
        source: KafkaError,
    },
    /// A blocking producer task failed.
    #[error("the kafka {what} task failed")]
    Task {
        /// `flush` or `metadata`.
        what: &'static str,
        /// The join error.
        #[source]
        source: tokio::task::JoinError,
    },
    /// The cluster does not know the topic (or refuses it).
    #[error("topic `{topic}`: {code}")]
    Topic {
        /// The topic.
        topic: String,
        /// The broker's code.
        code: RDKafkaErrorCode,
    },
}

impl Classify for TopicError {
    const SINK: &'static str = KIND;

    fn is_retryable(&self) -> bool {
        match self {
            Self::Append { source, .. } | Self::Log(source) => source.is_retryable(),
            Self::NoLog | Self::Producer(_) | Self::Topic { .. } => false,
            Self::Fatal { .. } | Self::Enqueue { .. } | Self::Produce { .. } => true,
            Self::Dropped { .. } | Self::Kafka { .. } | Self::Task { .. } => true,
        }
    }
}
