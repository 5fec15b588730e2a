//! rdkafka errors as [`LogError`]s: missing topics and partitions, oversize records and
//! offset ranges by kind; broker trouble retryable (`Unavailable`); the rest `Refused`.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use headwater_log::LogError;

/// A retryable failure of the brokers.
pub(super) fn unavailable(context: impl Into<String>, e: KafkaError) -> LogError {
    LogError::Unavailable {
        context: context.into(),
        source: Box::new(e),
    }
}

/// A permanent refusal.
pub(super) fn refused(context: impl Into<String>, e: KafkaError) -> LogError {
    LogError::Refused {
        context: context.into(),
        source: Box::new(e),
    }
}

/// The client went away under a pending call (it is being dropped).
pub(super) fn gone(context: &str) -> LogError {
    LogError::Unavailable {
        context: context.to_owned(),
        source: "the Kafka client was closed".into(),
    }
}

/// Codes that no retry of the same request can fix.
fn permanent(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::InvalidTopic
            | C::TopicAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::SaslAuthenticationFailed
            | C::Authentication
            | C::InvalidRecord
            | C::InvalidMessage
            | C::InvalidRequest
            | C::UnsupportedVersion
            | C::PolicyViolation
            | C::InvalidPartitions
            | C::InvalidReplicationFactor
            | C::InvalidConfig
            | C::InvalidArgument
            | C::UnsupportedFeature
            | C::OutOfOrderSequenceNumber
            | C::InvalidProducerEpoch
            | C::Fatal
    )
}

/// Any client error, by its code.
pub(super) fn classify(context: String, e: KafkaError) -> LogError {
    match e.rdkafka_error_code() {
        Some(code) if permanent(code) => refused(context, e),
        _ => unavailable(context, e),
    }
}

/// A failed produce of a record of `size` key and value bytes to `topic`, whose producer takes
/// records up to `max` bytes.
pub(super) fn produce(topic: &str, e: KafkaError, size: usize, max: usize) -> LogError {
    use RDKafkaErrorCode as C;
    match e.rdkafka_error_code() {
        Some(C::UnknownTopicOrPartition | C::UnknownTopic) => {
            LogError::UnknownTopic(topic.to_owned())
        }
        Some(C::MessageSizeTooLarge | C::MessageBatchTooLarge) => {
            LogError::MessageTooLarge { size, max }
        }
        _ => classify(format!("appending to `{topic}`"), e),
    }
}

/// A failed topic create or delete.
pub(super) fn admin(topic: &str, code: RDKafkaErrorCode) -> LogError {
    use RDKafkaErrorCode as C;
    match code {
        C::UnknownTopicOrPartition | C::UnknownTopic => LogError::UnknownTopic(topic.to_owned()),
        C::TopicAlreadyExists => LogError::TopicExists(topic.to_owned()),
        C::InvalidTopic => LogError::InvalidTopic(topic.to_owned()),
        C::InvalidPartitions | C::InvalidReplicationFactor => {
            LogError::InvalidArgument(format!("`{topic}`: {code}"))
        }
        code => classify(
            format!("administering `{topic}`"),
            KafkaError::AdminOp(code),
        ),
    }
}
