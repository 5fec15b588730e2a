//! Topic sink target: a topic of the internal log (`headwater_log::Log`), appended in chunks
//! that fit one RecordBatch.

use std::sync::Arc;

use headwater_log::{Header, Log, LogError, Record};

use super::TopicError;
use crate::{Batch, Delivery, OutEvent};

/// Appends to one topic of the internal log.
pub(crate) struct LogTarget {
    pub(super) log: Arc<dyn Log>,
    pub(super) topic: String,
    pub(super) max_append_bytes: usize,
}

/// The record of an event: key kept, value = payload, envelope as `hw.*` headers.
pub fn record_of(event: &OutEvent) -> Record {
    Record {
        partition: None,
        key: event.key.clone(),
        value: Some(event.envelope.payload.clone()),
        headers: event
            .envelope
            .to_headers()
            .into_iter()
            .map(Header::from)
            .collect(),
        timestamp_ms: event.envelope.received_at,
    }
}

/// Approximate encoded size of a record.
pub(crate) fn record_bytes(record: &Record) -> usize {
    let headers: usize = record
        .headers
        .iter()
        .map(|h| h.key.len() + h.value.as_ref().map_or(0, |v| v.len()) + 4)
        .sum();
    record.key.as_ref().map_or(0, |k| k.len())
        + record.value.as_ref().map_or(0, |v| v.len())
        + headers
        + 24
}

impl LogTarget {
    /// Appends the batch in order, in chunks of at most `max_append_bytes`. A transient
    /// failure before anything was appended fails the batch; after, that chunk and the rest
    /// are listed for retry (order kept). A record too large for the topic is rejected alone.
    pub(crate) async fn send(&self, batch: &Batch) -> Result<(Delivery, usize), TopicError> {
        let mut delivery = Delivery::all();
        let mut written = 0;
        let records: Vec<Record> = batch.events.iter().map(record_of).collect();
        let sizes: Vec<usize> = records.iter().map(record_bytes).collect();
        let mut start = 0;
        // After a run was refused as too large, go one record at a time up to here.
        let mut singles_until = 0;
        while start < records.len() {
            let mut end = start + 1;
            let mut bytes = sizes[start];
            while end < records.len()
                && start >= singles_until
                && bytes + sizes[end] <= self.max_append_bytes
            {
                bytes += sizes[end];
                end += 1;
            }
            let result = self
                .log
                .append(&self.topic, records[start..end].to_vec())
                .await;
            match result {
                Ok(_) => written += bytes,
                Err(LogError::MessageTooLarge { .. }) if end - start > 1 => {
                    // Find the culprit: one record at a time for this run.
                    singles_until = end;
                    continue;
                }
                Err(e @ LogError::MessageTooLarge { .. }) => {
                    delivery.rejected.push((start, e.to_string()));
                }
                Err(e) if e.is_retryable() && written > 0 => {
                    delivery.retry.extend(start..records.len());
                    return Ok((delivery, written));
                }
                Err(source) => {
                    return Err(TopicError::Append {
                        topic: self.topic.clone(),
                        source,
                    });
                }
            }
            start = end;
        }
        Ok((delivery, written))
    }
}
