//! Opening the object store an [`S3Config`] names (AmazonS3 or a local directory) and mapping
//! object_store errors to [`SinkError`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use crate::SinkError;
use crate::config::{S3Config, SinkContext};

const KIND: &str = "s3";

/// The store of `config`: AmazonS3 when `bucket` is set, else the local filesystem under
/// `local_dir` (default `{data_dir}/lake`, created if missing). Returns the store and a
/// description for logs.
pub fn open(
    config: &S3Config,
    ctx: &SinkContext,
) -> Result<(Arc<dyn ObjectStore>, String), SinkError> {
    if config.bucket.is_empty() {
        let dir = if config.local_dir.is_empty() {
            ctx.data_dir.join("lake")
        } else {
            PathBuf::from(&config.local_dir)
        };
        std::fs::create_dir_all(&dir).map_err(|e| SinkError::Config {
            sink: KIND,
            reason: format!("cannot create {}: {e}", dir.display()),
        })?;
        let store = LocalFileSystem::new_with_prefix(&dir)
            .map_err(config_error)?
            .with_fsync(config.local_fsync);
        return Ok((Arc::new(store), format!("file://{}", dir.display())));
    }
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
    let store = builder.build().map_err(config_error)?;
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

fn config_error(e: object_store::Error) -> SinkError {
    SinkError::Config {
        sink: KIND,
        reason: e.to_string(),
    }
}

/// Maps an object_store error: a missing bucket (404), bad credentials (401/403) and
/// unsupported operations need an operator ([`SinkError::Config`]); everything else (5xx
/// after object_store's own retries, connection errors, local I/O) may pass
/// ([`SinkError::Unavailable`]).
pub fn map_error(e: object_store::Error) -> SinkError {
    use object_store::Error as E;
    match e {
        E::NotFound { .. }
        | E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::NotSupported { .. }
        | E::NotImplemented { .. }
        | E::InvalidPath { .. }
        | E::UnknownConfigurationKey { .. } => config_error(e),
        // Listing and some other requests report client errors as `Generic`.
        other if is_client_error(&other.to_string()) => config_error(other),
        other => SinkError::Unavailable {
            sink: KIND,
            reason: other.to_string(),
            retry_after: None,
        },
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
