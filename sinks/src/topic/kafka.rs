//! Topic sink target: a topic of an external Kafka cluster through rdkafka's idempotent
//! `FutureProducer` (keys kept, envelope as `hw.*` headers, Kafka's murmur2 partitioner).

use std::sync::RwLock;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use tracing::error;

use super::{TopicConfig, TopicError};
use crate::{Batch, Delivery, OutEvent};

/// Produces to one topic of an external cluster.
pub(crate) struct KafkaTarget {
    /// Replaced after a fatal error (an idempotent producer that lost its sequence state
    /// cannot be used again).
    producer: RwLock<FutureProducer>,
    client: ClientConfig,
    pub(super) topic: String,
    timeout: Duration,
}

impl KafkaTarget {
    /// Creates the producer (`enable.idempotence=true`, `acks=all`, murmur2 partitioner so keys
    /// land where Java clients and the internal log put them); connects lazily.
    pub(crate) fn new(config: &TopicConfig) -> Result<Self, TopicError> {
        let mut client = ClientConfig::new();
        client
            .set("client.id", "headwater-sink")
            .set("linger.ms", "5")
            .set("partitioner", "murmur2_random");
        for (key, value) in &config.options {
            client.set(key, value);
        }
        client
            .set("bootstrap.servers", &config.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", config.message_timeout_ms.to_string());
        let producer = create(&client)?;
        Ok(Self {
            producer: RwLock::new(producer),
            client,
            topic: config.topic.clone(),
            timeout: Duration::from_millis(config.message_timeout_ms),
        })
    }

    /// Enqueues every event, then waits for every delivery report. Events the broker refused
    /// as too large are rejected; other failures are listed for retry, or fail the batch when
    /// nothing was delivered. Returns the bytes produced.
    pub(crate) async fn send(&self, batch: &Batch) -> Result<(Delivery, usize), TopicError> {
        let producer = self.producer();
        let result = self.produce(&producer, batch).await;
        if let Some((code, reason)) = producer.client().fatal_error() {
            error!(%code, %reason, "kafka producer failed fatally; creating a new one");
            let fresh = create(&self.client)?;
            *self.producer.write().unwrap_or_else(|p| p.into_inner()) = fresh;
            return Err(TopicError::Fatal { code, reason });
        }
        result
    }

    fn producer(&self) -> FutureProducer {
        self.producer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The record of an event (key kept, value = payload, `hw.*` headers) and its size.
    fn record<'a>(&'a self, event: &'a OutEvent) -> (FutureRecord<'a, [u8], [u8]>, usize) {
        let env = &event.envelope;
        let mut bytes = env.payload.len() + event.key.as_ref().map_or(0, |k| k.len());
        let mut headers = OwnedHeaders::new_with_capacity(8);
        for (key, value) in env.to_headers() {
            bytes += key.len() + value.len();
            headers = headers.insert(Header {
                key: &key,
                value: Some(value.as_ref()),
            });
        }
        let mut record = FutureRecord::to(&self.topic)
            .payload(env.payload.as_ref())
            .headers(headers)
            .timestamp(env.received_at);
        if let Some(key) = &event.key {
            record = record.key(key.as_ref());
        }
        (record, bytes)
    }

    async fn produce(
        &self,
        producer: &FutureProducer,
        batch: &Batch,
    ) -> Result<(Delivery, usize), TopicError> {
        let mut delivery = Delivery::all();
        let mut pending = Vec::with_capacity(batch.events.len());
        let mut bytes = 0;
        for (i, event) in batch.events.iter().enumerate() {
            let (mut record, size) = self.record(event);
            loop {
                match producer.send_result(record) {
                    Ok(future) => {
                        bytes += size;
                        break pending.push((i, future));
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    // librdkafka checks `message.max.bytes` before queueing.
                    Err((e, _)) if is_too_large(&e) => {
                        break delivery.rejected.push((i, e.to_string()));
                    }
                    Err((source, _)) => {
                        return Err(TopicError::Enqueue {
                            topic: self.topic.clone(),
                            source,
                        });
                    }
                }
            }
        }
        let mut last_error = None;
        for (i, future) in pending {
            match future.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) if is_too_large(&e) => delivery.rejected.push((i, e.to_string())),
                Ok(Err((e, _))) => {
                    delivery.retry.push(i);
                    last_error = Some(e);
                }
                Err(_) => delivery.retry.push(i),
            }
        }
        if !delivery.retry.is_empty()
            && delivery.retry.len() + delivery.rejected.len() == batch.events.len()
        {
            let topic = self.topic.clone();
            return Err(match last_error {
                Some(source) => TopicError::Produce { topic, source },
                None => TopicError::Dropped { topic },
            });
        }
        Ok((delivery, bytes))
    }

    /// Waits until everything enqueued is delivered (or the message timeout passes).
    pub(crate) async fn flush(&self) -> Result<(), TopicError> {
        let producer = self.producer();
        let timeout = self.timeout;
        let what = "flush";
        tokio::task::spawn_blocking(move || producer.flush(Timeout::After(timeout)))
            .await
            .map_err(|source| TopicError::Task { what, source })?
            .map_err(|source| TopicError::Kafka { what, source })
    }

    /// Fetches the topic's metadata: `Unavailable` when the cluster does not answer, `Config`
    /// when the topic is unknown.
    pub(crate) async fn health(&self) -> Result<(), TopicError> {
        let producer = self.producer();
        let topic = self.topic.clone();
        let what = "metadata";
        let metadata = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), Timeout::After(Duration::from_secs(5)))
        })
        .await
        .map_err(|source| TopicError::Task { what, source })?
        .map_err(|source| TopicError::Kafka { what, source })?;
        match metadata.topics().first().and_then(|t| t.error()) {
            None => Ok(()),
            Some(code) => Err(TopicError::Topic {
                topic: self.topic.clone(),
                code: RDKafkaErrorCode::from(code),
            }),
        }
    }
}

fn create(client: &ClientConfig) -> Result<FutureProducer, TopicError> {
    client.create().map_err(TopicError::Producer)
}

fn is_too_large(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize)
    )
}
