//! The S3 sink: one NDJSON object (zstd or gzip) per batch, keyed by route, hour and offset
//! range, through object_store (AmazonS3 or a local directory).

mod config;
mod encode;
mod store;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tracing::debug;

pub use config::{Compression, S3Config};
pub use encode::{encode_body, object_key};
pub use store::S3Error;

use crate::config::{SinkContext, check, label_of};
use crate::metrics::add_bytes;
use crate::{Batch, BuildError, Delivery, Sink, SinkError};

const KIND: &str = "s3";

/// Writes each batch as one object; re-sending a batch overwrites the same key.
pub struct S3Sink {
    store: Arc<dyn ObjectStore>,
    label: Arc<str>,
    prefix: String,
    compression: Compression,
    level: i32,
    multipart_threshold: u64,
    part_bytes: usize,
    concurrency: usize,
    describe: String,
}

impl S3Sink {
    /// Opens the store `config` names: AmazonS3 when `bucket` is set, else a local directory
    /// (`local_dir`, default `{ctx.data_dir}/lake`, created if missing).
    pub fn new(config: &S3Config, ctx: &SinkContext) -> Result<Self, BuildError> {
        check(config)?;
        let (store, describe) = store::open(config, ctx)?;
        let mut sink = Self::with_store(store, config);
        sink.describe = describe;
        Ok(sink)
    }

    /// A sink over an existing store (tests, or a store the caller configured itself); the
    /// connection fields of `config` are ignored.
    pub fn with_store(store: Arc<dyn ObjectStore>, config: &S3Config) -> Self {
        Self {
            store,
            label: label_of(&config.name, KIND),
            prefix: config.prefix.trim_matches('/').to_owned(),
            compression: config.compression,
            level: config.compression_level,
            multipart_threshold: config.multipart_threshold_bytes,
            part_bytes: usize::try_from(config.multipart_part_bytes).unwrap_or(usize::MAX),
            concurrency: config.multipart_concurrency.max(1),
            describe: "object store".to_owned(),
        }
    }

    /// The key a batch is written to.
    pub fn key_for(&self, batch: &Batch) -> Path {
        object_key(&self.prefix, batch, self.compression)
    }

    /// Where this sink writes (for logs), e.g. `s3://bucket (http://127.0.0.1:9000)`.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    async fn write(&self, batch: Batch) -> Result<Delivery, S3Error> {
        if batch.events.is_empty() {
            return Ok(Delivery::all());
        }
        let key = self.key_for(&batch);
        let (compression, level) = (self.compression, self.level);
        let events = batch.events;
        let (body, raw) =
            tokio::task::spawn_blocking(move || encode_body(&events, compression, level))
                .await
                .map_err(S3Error::EncoderTask)?
                .map_err(S3Error::Encode)?;
        let size = body.len();
        let body = Bytes::from(body);
        if size as u64 > self.multipart_threshold {
            self.put_multipart(&key, body).await?;
        } else {
            self.store
                .put(&key, PutPayload::from_bytes(body))
                .await
                .map_err(|source| S3Error::Write {
                    key: key.clone(),
                    source,
                })?;
        }
        add_bytes(&batch.route, &self.label, size);
        debug!(key = %key, bytes = size, raw_bytes = raw, "object written");
        Ok(Delivery::all())
    }

    async fn put_multipart(&self, key: &Path, mut body: Bytes) -> Result<(), S3Error> {
        let write = |source| S3Error::Write {
            key: key.clone(),
            source,
        };
        let upload = self.store.put_multipart(key).await.map_err(write)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.part_bytes);
        while !body.is_empty() {
            if let Err(e) = writer.wait_for_capacity(self.concurrency).await {
                // Best effort: the parts are garbage until completed; S3 lifecycle rules or a
                // later retry of the same key clean up.
                let _ = writer.abort().await;
                return Err(write(e));
            }
            let n = body.len().min(self.part_bytes);
            writer.put(body.split_to(n));
        }
        writer.finish().await.map_err(write)?;
        Ok(())
    }
}

#[async_trait]
impl Sink for S3Sink {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn send(&self, batch: Batch) -> Result<Delivery, SinkError> {
        Ok(self.write(batch).await?)
    }

    async fn flush(&self) -> Result<(), SinkError> {
        // Every send writes its object before returning: nothing is buffered here.
        Ok(())
    }

    async fn healthcheck(&self) -> Result<(), SinkError> {
        let prefix = (!self.prefix.is_empty()).then(|| Path::from(self.prefix.as_str()));
        self.store
            .list_with_delimiter(prefix.as_ref())
            .await
            .map_err(|source| S3Error::List {
                prefix: self.prefix.clone(),
                source,
            })?;
        Ok(())
    }
}
