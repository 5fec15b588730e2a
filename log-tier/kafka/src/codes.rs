//! Kafka error codes for [`LogError`], as the protocol defines them.

use kafka_protocol::ResponseError;

use headwater_log::LogError;

/// The Kafka error code a log error answers with.
pub(crate) fn code(error: &LogError) -> i16 {
    let kind = match error {
        LogError::UnknownTopic(_) | LogError::UnknownPartition { .. } => {
            ResponseError::UnknownTopicOrPartition
        }
        LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        LogError::Corrupt { .. } | LogError::InvalidBatch(_) => ResponseError::CorruptMessage,
        LogError::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
        LogError::TopicExists(_) => ResponseError::TopicAlreadyExists,
        LogError::InvalidTopic(_) => ResponseError::InvalidTopicException,
        LogError::InvalidArgument(_) => ResponseError::InvalidRequest,
        LogError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        LogError::ProducerFenced { .. } => ResponseError::InvalidProducerEpoch,
        LogError::DiskFull { .. } | LogError::Io { .. } => ResponseError::KafkaStorageError,
        LogError::Closed | LogError::Locked(_) => ResponseError::NotLeaderOrFollower,
        // Errors of a remote log (the Kafka client's), which a broker serving its own engine
        // does not meet; mapped so that a new variant must be placed here, not hidden.
        LogError::Unavailable { .. } => ResponseError::LeaderNotAvailable,
        LogError::Refused { .. } => ResponseError::PolicyViolation,
    };
    kind.code()
}

/// No error.
pub(crate) const NONE: i16 = 0;
