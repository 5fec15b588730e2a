//! `RouterError`: the one error type of the router, with a retryable/permanent split.

use headwater_log::LogError;
use headwater_sinks::{BuildError, SinkError};

use crate::rules::RouteProblem;

/// Everything that can go wrong in the router.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// The routes file could not be read.
    #[error("cannot read routes file {path}")]
    ReadRoutes {
        /// File path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The routes file has problems; each displays as `LINE:COL: message`.
    #[error("routes file {path} is invalid: {}", join(.problems))]
    InvalidRoutes {
        /// File path (or a description of the text's origin).
        path: String,
        /// Every problem found.
        problems: Vec<RouteProblem>,
    },
    /// The caller's sink factory refused a sink spec.
    #[error("route `{route}`: cannot build sink {sink}")]
    SinkFactory {
        /// Route name.
        route: String,
        /// Sink label.
        sink: String,
        /// Why (an invalid entry, or a sink that cannot be set up).
        #[source]
        source: BuildError,
    },
    /// The log failed (reading, committing offsets, appending dead letters).
    #[error("log error while {context}")]
    Log {
        /// What the router was doing.
        context: String,
        /// The log's error.
        #[source]
        source: LogError,
    },
    /// A sink failed.
    #[error("sink error")]
    Sink(#[source] SinkError),
    /// The router is shutting down.
    #[error("router is shutting down")]
    ShuttingDown,
}

fn join(problems: &[RouteProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl RouterError {
    /// True when the same operation may succeed later unchanged.
    pub fn is_retryable(&self) -> bool {
        match self {
            RouterError::Log { source, .. } => source.is_retryable(),
            RouterError::Sink(e) => e.is_retryable(),
            _ => false,
        }
    }

    /// Shorthand for [`RouterError::Log`].
    pub fn log(context: impl Into<String>, source: LogError) -> Self {
        RouterError::Log {
            context: context.into(),
            source,
        }
    }
}
