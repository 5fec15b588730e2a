//! Errors of the replication layer.

use std::io;
use std::path::PathBuf;

use headwater_log::LogError;

/// Why a replication operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// The partition's log refused or failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// A file of the group's Raft state could not be read or written.
    #[error("{context} {}: {source}", path.display())]
    Io {
        /// What was being done.
        context: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A file of the group's Raft state holds something we cannot decode.
    #[error("{} is damaged: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The replication transport or a Raft group could not start.
    #[error("replication: {0}")]
    Transport(String),
    /// Retention could not cut a partition's log through its Raft group.
    #[error("retention of {topic}/{partition}: {reason}")]
    Retention {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// What stopped it.
        reason: String,
    },
    /// A stored entry cannot be turned into a Raft entry (or back).
    #[error("entry {index}: {reason}")]
    Entry {
        /// The entry's Raft index.
        index: u64,
        /// What is wrong with it.
        reason: String,
    },
}

impl From<ReplicationError> for io::Error {
    /// openraft's storage traits speak `io::Error`; the message keeps the whole chain.
    fn from(e: ReplicationError) -> Self {
        let kind = match &e {
            ReplicationError::Io { source, .. } => source.kind(),
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, headwater_log::error_chain(&e))
    }
}
