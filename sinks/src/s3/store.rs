//! Opening the object store an [`S3Config`] names (AmazonS3 or a local directory), and
//! [`S3Error`], the S3 sink's errors with their classification.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use super::{KIND, S3Config};
use crate::Classify;
use crate::config::SinkContext;

/// What went wrong in the S3 sink.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The local directory cannot be created.
    #[error("cannot create {}", .path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The store cannot be opened (bad endpoint, region, credentials…).
    #[error("cannot open the object store")]
    Open(#[source] object_store::Error),
    /// An object could not be written (after object_store's own retries of each request).
    #[error("writing `{key}`")]
    Write {
        /// The object key.
        key: Path,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
    /// The health probe could not list the prefix.
    #[error("listing `{prefix}`")]
    List {
        /// The key prefix.
        prefix: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
    /// NDJSON or compression failed.
    #[error("encoding the object body")]
    Encode(#[source] std::io::Error),
    /// The blocking encoder task panicked or was cancelled.
    #[error("the encoder task failed")]
    EncoderTask(#[source] tokio::task::JoinError),
}

impl Classify for S3Error {
    const SINK: &'static str = KIND;

    /// A missing bucket (404), bad credentials (401/403), an unsupported operation and a store
    /// that cannot be opened need an operator; everything else (5xx after object_store's own
    /// retries, connection errors, local I/O such as a full disk) may pass.
    fn is_retryable(&self) -> bool {
        match self {
            Self::CreateDir { .. } | Self::Open(_) => false,
            Self::Write { source, .. } | Self::List { source, .. } => !needs_operator(source),
            Self::Encode(_) | Self::EncoderTask(_) => true,
        }
    }
}

/// The store of `config`: AmazonS3 when `bucket` is set, else the local filesystem under
/// `local_dir` (default `{data_dir}/lake`, created if missing). Returns the store and a
/// description for logs.
pub(crate) fn open(
    config: &S3Config,
    ctx: &SinkContext,
) -> Result<(Arc<dyn ObjectStore>, String), S3Error> {
    if config.bucket.is_empty() {
        let dir = if config.local_dir.is_empty() {
            ctx.data_dir.join("lake")
        } else {
            PathBuf::from(&config.local_dir)
        };
        std::fs::create_dir_all(&dir).map_err(|source| S3Error::CreateDir {
            path: dir.clone(),
            source,
        })?;
        let store = LocalFileSystem::new_with_prefix(&dir)
            .map_err(S3Error::Open)?
            .with_fsync(config.local_fsync);
        return Ok((Arc::new(store), format!("file://{}", dir.display())));
    }
    let store = s3_builder(config).build().map_err(S3Error::Open)?;
    let endpoint = if config.endpoint.is_empty() {
        "aws"
    } else {
        &config.endpoint
    };
    Ok((
        Arc::new(store),
        format!("s3://{} ({endpoint})", config.bucket),
    ))
}

/// The AmazonS3 client of `config`: object_store's request-level retries (its HTTP client's,
/// within one send), timeouts, endpoint and credentials.
fn s3_builder(config: &S3Config) -> AmazonS3Builder {
    let retry = RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: config.max_retries,
        retry_timeout: Duration::from_millis(config.retry_timeout_ms),
    };
    let options = ClientOptions::new()
        .with_allow_http(config.allow_http)
        .with_timeout(Duration::from_millis(config.request_timeout_ms))
        .with_connect_timeout(Duration::from_secs(5));
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(&config.bucket)
        .with_region(&config.region)
        .with_virtual_hosted_style_request(!config.path_style)
        .with_allow_http(config.allow_http)
        .with_retry(retry)
        .with_client_options(options);
    if !config.endpoint.is_empty() {
        builder = builder.with_endpoint(&config.endpoint);
    }
    if !config.access_key_id.is_empty() {
        builder = builder
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(&config.secret_access_key);
    }
    if !config.session_token.is_empty() {
        builder = builder.with_token(&config.session_token);
    }
    builder
}

/// Whether an object_store error needs an operator: a missing bucket, bad credentials, an
/// unsupported operation, or a `Generic` error whose text says so.
fn needs_operator(e: &object_store::Error) -> bool {
    use object_store::Error as E;
    match e {
        E::NotFound { .. }
        | E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::NotSupported { .. }
        | E::NotImplemented { .. }
        | E::InvalidPath { .. }
        | E::UnknownConfigurationKey { .. } => true,
        // Listing and some other requests report client errors as `Generic`.
        other => is_client_error(&other.to_string()),
    }
}

/// Whether a `Generic` error is one an operator must fix (missing bucket, bad credentials).
fn is_client_error(text: &str) -> bool {
    const MARKERS: [&str; 8] = [
        "NoSuchBucket",
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "400 Bad Request",
        "401 Unauthorized",
        "403 Forbidden",
        "404 Not Found",
    ];
    MARKERS.iter().any(|m| text.contains(m))
}
