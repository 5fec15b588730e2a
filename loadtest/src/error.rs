//! The crate's one error type.

/// Everything that can go wrong in a load-test run, verification or report.
#[derive(Debug, thiserror::Error)]
pub enum LoadtestError {
    /// A command-line value that cannot be used.
    #[error("invalid option: {0}")]
    Config(String),
    /// The target could not be reached or set up (client build, connect).
    #[error("transport setup: {0}")]
    Transport(String),
    /// Reading back from the Kafka protocol failed.
    #[error("kafka verification: {0}")]
    Kafka(#[source] rdkafka::error::KafkaError),
    /// Reading back from S3 or the local lake failed.
    #[error("lake verification: {0}")]
    Lake(#[source] object_store::Error),
    /// Reading back from OpenSearch failed.
    #[error("opensearch verification: {0}")]
    OpenSearch(String),
    /// A store could not be read back completely in time.
    #[error("verification: {0}")]
    Verify(String),
    /// Writing a report or a plot failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file being written.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Drawing a plot failed.
    #[error("plot {path}: {reason}")]
    Plot {
        /// The PNG being drawn.
        path: String,
        /// What plotters said.
        reason: String,
    },
}

impl LoadtestError {
    /// An I/O error while writing `path`.
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        LoadtestError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
