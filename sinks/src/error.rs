//! The crate's errors: [`SinkError`] (a send, flush or healthcheck failed, retryable or not),
//! [`BuildError`] and [`ConfigError`] (an entry cannot become a sink), the [`Classify`] trait
//! each sink's own error implements, and [`error_chain`] to print an error with its causes.

use std::error::Error;
use std::fmt;
use std::time::Duration;

/// The typed error a sink failed with, boxed at the seam (downcast it to the sink's own error
/// type, e.g. `S3Error`, `EsError`, `TopicError`, to inspect it).
pub type Cause = Box<dyn Error + Send + Sync + 'static>;

/// Why a sink could not take a batch. The sink classifies; the router retries both variants
/// (nothing may be dropped) with its own backoff.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The destination is unreachable, overloaded or failed (retryable): the whole batch may be
    /// sent again.
    #[error("{sink} unavailable")]
    Unavailable {
        /// Sink kind, e.g. `s3`.
        sink: &'static str,
        /// What happened.
        #[source]
        reason: Cause,
        /// When to try again, if the destination said (`Retry-After`).
        retry_after: Option<Duration>,
    },
    /// The destination refused the request as such (rejected): bad credentials, a missing
    /// bucket, a wrong URL. Retrying will not help until an operator acts, but nothing may be
    /// dropped either.
    #[error("{sink} misconfigured")]
    Config {
        /// Sink kind.
        sink: &'static str,
        /// What is wrong.
        #[source]
        reason: Cause,
    },
}

impl SinkError {
    /// Whether sending the same batch later can succeed without an operator.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// The destination's own hint of when to try again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Unavailable { retry_after, .. } => *retry_after,
            Self::Config { .. } => None,
        }
    }
}

/// A sink's own error type, classified: each sink folder implements it once, and `?` turns the
/// error into a [`SinkError`] (or a [`BuildError`]) of the right variant.
pub trait Classify: Error + Send + Sync + Sized + 'static {
    /// The sink kind the error comes from.
    const SINK: &'static str;

    /// Retryable (a transient failure) rather than rejected (needs an operator).
    fn is_retryable(&self) -> bool;

    /// The destination's hint of when to try again.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

impl<E: Classify> From<E> for SinkError {
    fn from(error: E) -> Self {
        if error.is_retryable() {
            Self::Unavailable {
                sink: E::SINK,
                retry_after: error.retry_after(),
                reason: Box::new(error),
            }
        } else {
            Self::Config {
                sink: E::SINK,
                reason: Box::new(error),
            }
        }
    }
}

/// Why a sink entry could not become a sink.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The entry does not parse or validate.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The sink could not be set up (unusable directory, unreadable CA file, producer creation…).
    #[error("cannot set up the {sink} sink")]
    Setup {
        /// Sink kind.
        sink: &'static str,
        /// The sink's own error.
        #[source]
        reason: Cause,
    },
}

impl<E: Classify> From<E> for BuildError {
    fn from(error: E) -> Self {
        Self::Setup {
            sink: E::SINK,
            reason: Box::new(error),
        }
    }
}

/// Why a routes.yaml sink entry is not a valid configuration. Every message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The entry is not a YAML mapping.
    #[error("a sink entry must be a mapping (`type: s3` and its keys)")]
    NotAMapping,
    /// The entry has no `type`, or it is not a string.
    #[error("missing `type` (one of {})", .kinds.join(", "))]
    MissingType {
        /// The known kinds.
        kinds: &'static [&'static str],
    },
    /// The `type` names no sink.
    #[error("unknown sink type `{kind}`: expected one of {}", .kinds.join(", "))]
    UnknownType {
        /// What the entry said.
        kind: String,
        /// The known kinds.
        kinds: &'static [&'static str],
    },
    /// A key is unknown, or its value has the wrong type (the cause names it when `key` is
    /// the entry itself).
    #[error("invalid {}", key.as_deref().map_or_else(|| "sink entry".to_owned(), |k| format!("`{k}`")))]
    Parse {
        /// The key at fault, `None` for the entry as a whole (e.g. an unknown key).
        key: Option<String>,
        /// The deserializer's message.
        #[source]
        source: yaml_serde::Error,
    },
    /// The deployment defaults of this kind (headwater.yaml `sinks:`) cannot be merged.
    #[error("cannot read the deployment defaults of `{kind}` sinks")]
    Defaults {
        /// Sink kind.
        kind: &'static str,
        /// The serializer's error.
        #[source]
        source: yaml_serde::Error,
    },
    /// The values do not validate.
    #[error("{}", join(problems))]
    Invalid {
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

/// One problem of a sink entry: the key at fault and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path, e.g. `multipart_part_bytes` or `routes[0].sinks[1].url`.
    pub key: String,
    /// What is wrong, lowercase.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

fn join(problems: &[Problem]) -> String {
    let texts: Vec<String> = problems.iter().map(ToString::to_string).collect();
    texts.join("; ")
}

pub use headwater_log::error_chain;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Fake {
        #[error("overloaded")]
        Busy,
        #[error("bad key")]
        Denied(#[source] std::io::Error),
    }

    impl Classify for Fake {
        const SINK: &'static str = "fake";

        fn is_retryable(&self) -> bool {
            matches!(self, Self::Busy)
        }

        fn retry_after(&self) -> Option<Duration> {
            Some(Duration::from_secs(2))
        }
    }

    #[test]
    fn sink_errors_classify_and_chain() {
        let busy = SinkError::from(Fake::Busy);
        assert!(busy.is_retryable());
        assert_eq!(busy.retry_after(), Some(Duration::from_secs(2)));
        assert_eq!(error_chain(&busy), "fake unavailable: overloaded");
        let io = std::io::Error::other("denied by policy");
        let denied = SinkError::from(Fake::Denied(io));
        assert!(!denied.is_retryable());
        assert_eq!(denied.retry_after(), None);
        assert_eq!(
            error_chain(&denied),
            "fake misconfigured: bad key: denied by policy"
        );
        let built = BuildError::from(Fake::Busy);
        assert_eq!(
            error_chain(&built),
            "cannot set up the fake sink: overloaded"
        );
    }

    #[test]
    fn a_cause_already_printed_is_not_repeated() {
        #[derive(Debug, thiserror::Error)]
        #[error("writing x: {0}")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::other("disk full"));
        assert_eq!(error_chain(&e), "writing x: disk full");
    }
}
