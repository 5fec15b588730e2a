//! `LogError`: the one error type of the log tier, with a retryable/permanent split.

use std::io;

/// Everything that can go wrong in the log tier.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The filesystem holding the data directory is full (ENOSPC/EDQUOT). Retryable: nothing
    /// acknowledged was lost, and appends resume once space returns.
    #[error("disk full while {context}")]
    DiskFull {
        /// What the engine was doing.
        context: String,
        /// The underlying OS error.
        #[source]
        source: io::Error,
    },
    /// Any other I/O error.
    #[error("i/o error while {context}")]
    Io {
        /// What the engine was doing.
        context: String,
        /// The underlying OS error.
        #[source]
        source: io::Error,
    },
    /// Stored bytes failed validation (bad CRC, torn or malformed batch); never served.
    #[error("corrupt data in {location}: {reason}")]
    Corrupt {
        /// File and position.
        location: String,
        /// What was wrong.
        reason: String,
        /// On a read: the first offset after the unreadable records, where a reader may go on
        /// (the records from the offset it asked for up to this one are lost); `None` when no
        /// such point is known (the read fails the same way until the data is repaired). See
        /// [`LogError::resume_at`].
        resume_at: Option<i64>,
    },
    /// A record batch given to append is not a valid RecordBatch v2.
    #[error("invalid record batch: {0}")]
    InvalidBatch(String),
    /// A record batch is larger than the topic's `max_message_bytes`.
    #[error("record batch of {size} bytes exceeds the limit of {max} bytes")]
    MessageTooLarge {
        /// Size of the batch.
        size: usize,
        /// The topic's limit.
        max: usize,
    },
    /// The topic does not exist (and auto-creation is off).
    #[error("unknown topic `{0}`")]
    UnknownTopic(String),
    /// The partition does not exist in the topic.
    #[error("unknown partition {partition} of topic `{topic}`")]
    UnknownPartition {
        /// Topic name.
        topic: String,
        /// Partition asked for.
        partition: i32,
    },
    /// `create_topic` of a topic that exists with another partition count.
    #[error("topic `{0}` already exists")]
    TopicExists(String),
    /// Topic name not allowed (Kafka rules: 1-249 of `[a-zA-Z0-9._-]`, not `.` or `..`).
    #[error("invalid topic name `{0}`")]
    InvalidTopic(String),
    /// An argument out of its range (partition count, byte limit…).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Fetch offset outside `[log_start, high_watermark]`.
    #[error("offset {offset} out of range [{log_start}, {high_watermark}]")]
    OffsetOutOfRange {
        /// Offset asked for.
        offset: i64,
        /// First offset held.
        log_start: i64,
        /// Offset the next durable record gets.
        high_watermark: i64,
    },
    /// An idempotent producer's sequence has a gap or goes backwards.
    #[error("out of order sequence {sequence} from producer {producer_id} (expected {expected})")]
    OutOfOrderSequence {
        /// Producer id.
        producer_id: i64,
        /// Base sequence received.
        sequence: i32,
        /// Base sequence expected.
        expected: i32,
    },
    /// An idempotent producer used an epoch older than the one the partition knows.
    #[error("producer {producer_id} epoch {epoch} is fenced by epoch {current}")]
    ProducerFenced {
        /// Producer id.
        producer_id: i64,
        /// Epoch received.
        epoch: i16,
        /// Epoch known.
        current: i16,
    },
    /// The engine is closed or closing.
    #[error("log engine is closed")]
    Closed,
    /// The data directory is in use by another process.
    #[error("data directory {0} is locked by another process")]
    Locked(String),
    /// The remote log tier (Kafka-protocol brokers) could not be reached or did not answer in
    /// time. Retryable: nothing was acknowledged.
    #[error("log brokers unavailable while {context}")]
    Unavailable {
        /// What the client was doing.
        context: String,
        /// The client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The log refused a request for good: the remote log tier (Kafka-protocol brokers), or
    /// the engine declining to auto-create a topic past `log.max_topics` (as a Kafka listener
    /// answers POLICY_VIOLATION, which the client turns into this too).
    #[error("log brokers refused {context}")]
    Refused {
        /// What the client was doing.
        context: String,
        /// The client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// An error and its causes on one line, `a: b: c`, for logs and
/// answers. A cause whose message its parent
/// already printed is skipped.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut last = text.clone();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !last.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        last = message;
        source = cause.source();
    }
    text
}

impl LogError {
    /// True when the same request may succeed later unchanged (disk full, transient I/O, an
    /// fsync that failed and was rolled back); false for bad input and missing things.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            LogError::DiskFull { .. } | LogError::Io { .. } | LogError::Unavailable { .. }
        )
    }

    /// Classifies an I/O error: ENOSPC and EDQUOT become [`LogError::DiskFull`].
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        let context = context.into();
        match source.raw_os_error() {
            Some(code) if code == libc::ENOSPC || code == libc::EDQUOT => {
                LogError::DiskFull { context, source }
            }
            _ if source.kind() == io::ErrorKind::StorageFull => {
                LogError::DiskFull { context, source }
            }
            _ => LogError::Io { context, source },
        }
    }

    /// The refusal to auto-create topic `name` because `max` topics exist (`log.max_topics`).
    pub fn topic_limit(name: &str, max: u32) -> Self {
        LogError::Refused {
            context: format!(
                "auto-creating topic `{name}`: {max} topics exist, the most log.max_topics allows"
            ),
            source: "topic limit reached (log.max_topics)".into(),
        }
    }

    /// Shorthand for a [`LogError::Corrupt`].
    pub fn corrupt(location: impl Into<String>, reason: impl Into<String>) -> Self {
        LogError::Corrupt {
            location: location.into(),
            reason: reason.into(),
            resume_at: None,
        }
    }

    /// Where a reader that got this error may go on: for a [`LogError::Corrupt`] read that
    /// knows where the next readable batch starts, that offset (always past the offset read);
    /// `None` otherwise.
    pub fn resume_at(&self) -> Option<i64> {
        match self {
            LogError::Corrupt { resume_at, .. } => *resume_at,
            _ => None,
        }
    }

    /// This error with `resume_at` set, if it is a [`LogError::Corrupt`] (others unchanged).
    pub(crate) fn resuming_at(mut self, offset: Option<i64>) -> Self {
        if let LogError::Corrupt { resume_at, .. } = &mut self {
            *resume_at = offset;
        }
        self
    }
}

/// Result alias of the crate.
pub type Result<T, E = LogError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_is_disk_full_and_retryable() {
        let e = LogError::io("appending", io::Error::from_raw_os_error(libc::ENOSPC));
        assert!(matches!(e, LogError::DiskFull { .. }));
        assert!(e.is_retryable());
        assert!(!LogError::UnknownTopic("x".into()).is_retryable());
        assert_eq!(e.to_string(), "disk full while appending");
    }
}
