//! The Elasticsearch/OpenSearch sink: `_bulk` `index` actions with `_id` = event id (so a
//! re-sent batch overwrites instead of duplicating), index names from a per-route pattern,
//! gzip bodies, per-item results, bounded retries.

mod bulk;
mod client;
mod index;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use tracing::{Instrument, debug, info_span};

pub use bulk::{BulkBody, ItemOutcome, parse_response};
pub use index::IndexPattern;

use crate::config::{ElasticsearchConfig, SinkConfig, check};
use crate::metrics::{add_bytes, observe_send};
use crate::{Batch, Delivery, Sink, SinkError};
use client::{BulkReply, EsClient, config_error, unavailable};

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
    pub fn new(config: &ElasticsearchConfig) -> Result<Self, SinkError> {
        check(&SinkConfig::Elasticsearch(config.clone()))?;
        let pattern =
            IndexPattern::parse(&config.index).map_err(|e| config_error(format!("index: {e}")))?;
        let label = if config.name.is_empty() {
            KIND
        } else {
            &config.name
        };
        Ok(Self {
            client: EsClient::new(config)?,
            pattern,
            label: Arc::from(label),
            max_bulk_bytes: usize::try_from(config.max_bulk_bytes).unwrap_or(usize::MAX),
        })
    }

    async fn index(&self, batch: &Batch) -> Result<Delivery, SinkError> {
        let mut delivery = Delivery::all();
        if batch.events.is_empty() {
            return Ok(delivery);
        }
        let bulk = BulkBody::encode(&batch.route, &self.pattern, &batch.events)
            .map_err(|e| unavailable(format!("encoding documents: {e}"), None))?;
        let mut queue: VecDeque<_> = bulk.chunks(self.max_bulk_bytes).into();
        while let Some(range) = queue.pop_front() {
            let (reply, sent) = self
                .client
                .bulk(&batch.route, &self.label, bulk.slice(&range))
                .await?;
            add_bytes(&batch.route, &self.label, sent);
            let body = match reply {
                BulkReply::Ok(body) => body,
                BulkReply::TooLarge if range.len() > 1 => {
                    let mid = range.start + range.len() / 2;
                    queue.push_front(mid..range.end);
                    queue.push_front(range.start..mid);
                    continue;
                }
                BulkReply::TooLarge => {
                    delivery.rejected.push((
                        range.start,
                        "document too large for the cluster (413)".to_owned(),
                    ));
                    continue;
                }
            };
            let outcomes = parse_response(&body, range.len()).map_err(|e| unavailable(e, None))?;
            for (i, outcome) in range.clone().zip(outcomes) {
                match outcome {
                    ItemOutcome::Ok => {}
                    ItemOutcome::Retry => delivery.retry.push(i),
                    ItemOutcome::Rejected(reason) => delivery.rejected.push((i, reason)),
                }
            }
            debug!(items = range.len(), bytes = sent, "bulk request done");
        }
        Ok(delivery)
    }
}

#[async_trait]
impl Sink for ElasticsearchSink {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn send(&self, batch: Batch) -> Result<Delivery, SinkError> {
        let started = Instant::now();
        let events = batch.events.len();
        let span = info_span!("sink_send", route = %batch.route, sink = %self.label, events);
        let result = self.index(&batch).instrument(span).await;
        observe_send(&batch.route, &self.label, events, started, &result);
        result
    }

    async fn flush(&self) -> Result<(), SinkError> {
        // `_bulk` answers after the documents are in the translog: nothing is buffered here.
        Ok(())
    }

    async fn healthcheck(&self) -> Result<(), SinkError> {
        self.client.health().await
    }
}
