//! The Elasticsearch/OpenSearch sink: `_bulk` `index` actions with an `_id` made of tenant,
//! source and event id (so a re-sent batch overwrites itself instead of duplicating, and one
//! tenant never overwrites another's documents), index names from a per-route pattern, gzip
//! bodies, per-item results. Each request is sent once and its failure classified; the router
//! owns retries.

mod bulk;
mod client;
mod config;
mod doc_id;
mod error;
mod index;

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use tracing::debug;

pub use bulk::{BulkBody, BulkResponseError, ItemOutcome, parse_response};
pub use config::{ElasticsearchConfig, TlsConfig};
pub use doc_id::{MAX_ID_BYTES, NO_TENANT, document_id, tenant_of};
pub use error::EsError;
pub use index::{IndexPattern, IndexPatternError};

use crate::config::{check, label_of};
use crate::metrics::add_bytes;
use crate::{Batch, BuildError, Classify, Delivery, Sink, SinkError};
use client::{BulkReply, EsClient};

const KIND: &str = "elasticsearch";

/// Indexes each event as one document; see the module docs.
pub struct ElasticsearchSink {
    client: EsClient,
    pattern: IndexPattern,
    label: Arc<str>,
    max_bulk_bytes: usize,
}

impl ElasticsearchSink {
    /// Builds the sink (no request is made; see [`Sink::healthcheck`]).
    pub fn new(config: &ElasticsearchConfig) -> Result<Self, BuildError> {
        check(config)?;
        let pattern = IndexPattern::parse(&config.index).map_err(EsError::Index)?;
        Ok(Self {
            client: EsClient::new(config)?,
            pattern,
            label: label_of(&config.name, KIND),
            max_bulk_bytes: usize::try_from(config.max_bulk_bytes).unwrap_or(usize::MAX),
        })
    }

    /// Sends the batch as `_bulk` requests of at most `max_bulk_bytes`. A request that fails
    /// fails the batch if nothing was indexed yet; after that, a retryable failure lists its
    /// items and the rest for retry (the router re-sends them).
    async fn index(&self, batch: &Batch) -> Result<Delivery, EsError> {
        let mut delivery = Delivery::all();
        if batch.events.is_empty() {
            return Ok(delivery);
        }
        let bulk = BulkBody::encode(&batch.route, &self.pattern, &batch.events)
            .map_err(EsError::Encode)?;
        let mut queue: VecDeque<_> = bulk.chunks(self.max_bulk_bytes).into();
        let mut indexed_any = false;
        while let Some(range) = queue.pop_front() {
            let reply = match self.client.bulk(bulk.slice(&range)).await {
                Ok((reply, sent)) => {
                    add_bytes(&batch.route, &self.label, sent);
                    reply
                }
                Err(e) if indexed_any && e.is_retryable() => {
                    debug!(error = %e, "bulk request failed after others were indexed");
                    delivery
                        .retry
                        .extend(range.chain(queue.into_iter().flatten()));
                    return Ok(delivery);
                }
                Err(e) => return Err(e),
            };
            match reply {
                BulkReply::Ok(body) => {
                    let outcomes = parse_response(&body, range.len()).map_err(EsError::Response)?;
                    absorb(&mut delivery, range.clone(), outcomes);
                    indexed_any = true;
                    debug!(items = range.len(), "bulk request done");
                }
                BulkReply::TooLarge if range.len() > 1 => {
                    let mid = range.start + range.len() / 2;
                    queue.push_front(mid..range.end);
                    queue.push_front(range.start..mid);
                }
                BulkReply::TooLarge => delivery.rejected.push((
                    range.start,
                    "document too large for the cluster (413)".to_owned(),
                )),
            }
        }
        Ok(delivery)
    }
}

/// Adds the per-item results of the items `range` to `delivery`.
fn absorb(delivery: &mut Delivery, range: Range<usize>, outcomes: Vec<ItemOutcome>) {
    for (i, outcome) in range.zip(outcomes) {
        match outcome {
            ItemOutcome::Ok => {}
            ItemOutcome::Retry => delivery.retry.push(i),
            ItemOutcome::Rejected(reason) => delivery.rejected.push((i, reason)),
        }
    }
}

#[async_trait]
impl Sink for ElasticsearchSink {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn send(&self, batch: Batch) -> Result<Delivery, SinkError> {
        Ok(self.index(&batch).await?)
    }

    async fn flush(&self) -> Result<(), SinkError> {
        // `_bulk` answers after the documents are in the translog: nothing is buffered here.
        Ok(())
    }

    async fn healthcheck(&self) -> Result<(), SinkError> {
        Ok(self.client.health().await?)
    }
}
