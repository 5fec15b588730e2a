//! `KafkaLog`: the [`Log`] trait over the Kafka protocol with rdkafka, so the gateway and the
//! router run unchanged against Headwater log nodes or an Apache Kafka cluster.
//!
//! Appends go through one idempotent producer (`acks=all`), enqueued under a lock so the
//! records of one call stay contiguous in their partition; reads through one assigned
//! consumer per partition read (`reader`); offsets, commits and admin through small clients
//! that are made once; group membership through a subscribed consumer (`members`).

mod errors;
mod members;
mod reader;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KHeader, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

pub use headwater_log::KafkaClientConfig;

use errors::{refused, unavailable};
use headwater_log::LogError;
use headwater_log::check_topic_name as check_name;
use headwater_log::error::Result;
use headwater_log::log::AppendError;
use headwater_log::{
    Appended, GroupMembership, Log, PartitionOffsets, Record, StoredRecord, partition_for_key,
};

/// librdkafka's default `message.max.bytes`.
const LIBRDKAFKA_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// A [`Log`] served by Kafka-protocol brokers (see the module docs).
pub struct KafkaLog {
    config: KafkaClientConfig,
    base: ClientConfig,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    /// Metadata and watermarks (never subscribes, never commits).
    meta: Arc<BaseConsumer>,
    /// Held while one append's records are enqueued.
    enqueue: tokio::sync::Mutex<()>,
    partitions: RwLock<HashMap<String, u32>>,
    round_robin: AtomicU32,
    readers: reader::Readers,
    committers: Mutex<HashMap<String, Arc<BaseConsumer>>>,
    /// The producer's `message.max.bytes`, for the size in [`LogError::MessageTooLarge`].
    max_message_bytes: usize,
}

impl KafkaLog {
    /// Creates the clients; they connect lazily, so this succeeds with the brokers down (use
    /// [`Log::check_writable`] to wait for them).
    pub fn new(config: KafkaClientConfig) -> Result<Self> {
        let problems = config.validate();
        if let Some((key, message)) = problems.first() {
            return Err(LogError::InvalidArgument(format!(
                "log.client.{key} {message}"
            )));
        }
        let mut base = ClientConfig::new();
        base.set("client.id", &config.client_id);
        for (key, value) in &config.properties {
            base.set(key, value);
        }
        base.set("bootstrap.servers", &config.brokers);
        let producer = base
            .clone()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", config.linger_ms.to_string())
            .set("message.timeout.ms", config.message_timeout_ms.to_string())
            .set("queue.buffering.max.kbytes", "262144")
            .create()
            .map_err(|e| refused("creating the producer", e))?;
        let admin = base
            .create()
            .map_err(|e| refused("creating the admin client", e))?;
        let meta = consumer_config(&base, "headwater-metadata")
            .create()
            .map_err(|e| refused("creating the metadata client", e))?;
        let max_message_bytes = config
            .properties
            .get("message.max.bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(LIBRDKAFKA_MESSAGE_MAX_BYTES);
        Ok(Self {
            readers: reader::Readers::new(base.clone()),
            base,
            producer,
            admin,
            meta: Arc::new(meta),
            enqueue: tokio::sync::Mutex::new(()),
            partitions: RwLock::new(HashMap::new()),
            round_robin: AtomicU32::new(0),
            committers: Mutex::new(HashMap::new()),
            max_message_bytes,
            config,
        })
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.request_timeout_ms)
    }

    /// Partition count from metadata (cached); `None` when the topic does not exist.
    async fn lookup(&self, topic: &str) -> Result<Option<u32>> {
        if let Some(n) = self.cached(topic) {
            return Ok(Some(n));
        }
        let meta = self.meta.clone();
        let (name, timeout) = (topic.to_owned(), self.timeout());
        let found = blocking(move || {
            let md = meta
                .fetch_metadata(Some(&name), timeout)
                .map_err(|e| unavailable(format!("reading metadata of `{name}`"), e))?;
            Ok(md
                .topics()
                .iter()
                .find(|t| t.name() == name && t.error().is_none() && !t.partitions().is_empty())
                .map(|t| t.partitions().len() as u32))
        })
        .await?;
        if let Some(n) = found {
            self.remember(topic, n);
        }
        Ok(found)
    }

    fn cached(&self, topic: &str) -> Option<u32> {
        let map = self.partitions.read().unwrap_or_else(|p| p.into_inner());
        map.get(topic).copied()
    }

    fn remember(&self, topic: &str, n: u32) {
        let mut map = self.partitions.write().unwrap_or_else(|p| p.into_inner());
        map.insert(topic.to_owned(), n);
    }

    fn forget(&self, topic: &str) {
        let mut map = self.partitions.write().unwrap_or_else(|p| p.into_inner());
        map.remove(topic);
    }

    /// Partition count, creating the topic first when configured to.
    async fn partition_count(&self, topic: &str) -> Result<u32> {
        if let Some(n) = self.lookup(topic).await? {
            return Ok(n);
        }
        if !self.config.auto_create_topics {
            return Err(LogError::UnknownTopic(topic.to_owned()));
        }
        check_name(topic)?;
        self.create_topic(topic, self.config.default_partitions)
            .await?;
        self.lookup(topic)
            .await?
            .ok_or_else(|| LogError::UnknownTopic(topic.to_owned()))
    }

    async fn check_partition(&self, topic: &str, partition: i32) -> Result<()> {
        let n = self.partition_count(topic).await?;
        if partition < 0 || partition >= n as i32 {
            return Err(LogError::UnknownPartition {
                topic: topic.to_owned(),
                partition,
            });
        }
        Ok(())
    }

    /// Enqueues one append's records back to back; their delivery futures in input order.
    async fn enqueue(
        &self,
        topic: &str,
        records: &[Record],
        n: u32,
    ) -> Result<Vec<DeliveryFuture>> {
        let mut futures = Vec::with_capacity(records.len());
        let _order = self.enqueue.lock().await;
        for r in records {
            let partition = match (r.partition, &r.key) {
                (Some(p), _) if p < 0 || p >= n as i32 => {
                    return Err(LogError::UnknownPartition {
                        topic: topic.to_owned(),
                        partition: p,
                    });
                }
                (Some(p), _) => p,
                (None, Some(key)) => partition_for_key(key, n),
                (None, None) => (self.round_robin.fetch_add(1, Ordering::Relaxed) % n) as i32,
            };
            let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
            for h in &r.headers {
                headers = headers.insert(KHeader {
                    key: &h.key,
                    value: h.value.as_deref(),
                });
            }
            let mut record = FutureRecord::<[u8], [u8]>::to(topic)
                .partition(partition)
                .headers(headers);
            if let Some(key) = &r.key {
                record = record.key(key);
            }
            if let Some(value) = &r.value {
                record = record.payload(value);
            }
            if r.timestamp_ms >= 0 {
                record = record.timestamp(r.timestamp_ms);
            }
            futures.push(self.send_one(record).await?);
        }
        Ok(futures)
    }

    /// Enqueues one record, waiting while the producer queue is full (up to the message
    /// timeout).
    async fn send_one(&self, mut record: FutureRecord<'_, [u8], [u8]>) -> Result<DeliveryFuture> {
        let deadline = Instant::now() + Duration::from_millis(self.config.message_timeout_ms);
        loop {
            match self.producer.send_result(record) {
                Ok(future) => return Ok(future),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if Instant::now() < deadline =>
                {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((e, back)) => {
                    let size =
                        back.key.map_or(0, <[u8]>::len) + back.payload.map_or(0, <[u8]>::len);
                    return Err(errors::produce(back.topic, e, size, self.max_message_bytes));
                }
            }
        }
    }

    /// The consumer that commits and reads committed offsets for `group` (no subscription:
    /// a "simple" consumer, so the group must have no active members).
    fn committer(&self, group: &str) -> Result<Arc<BaseConsumer>> {
        let mut map = self.committers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(group) {
            return Ok(c.clone());
        }
        let consumer: BaseConsumer = consumer_config(&self.base, group)
            .create()
            .map_err(|e| refused(format!("creating a client for group `{group}`"), e))?;
        let consumer = Arc::new(consumer);
        map.insert(group.to_owned(), consumer.clone());
        Ok(consumer)
    }

    /// Waits until metadata agrees on `topic`'s existence (Kafka creates and deletes
    /// asynchronously). Returns the partition count seen, if any.
    async fn settle(&self, topic: &str, exists: bool) -> Result<Option<u32>> {
        let deadline = Instant::now() + self.timeout();
        loop {
            self.forget(topic);
            let seen = self.lookup(topic).await?;
            if seen.is_some() == exists || Instant::now() >= deadline {
                return Ok(seen);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A consumer client for `group` that never commits on its own nor auto-resets offsets.
fn consumer_config(base: &ClientConfig, group: &str) -> ClientConfig {
    let mut c = base.clone();
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "error")
        .set("allow.auto.create.topics", "false");
    c
}

/// Runs a blocking client call off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LogError::Unavailable {
            context: "running a Kafka client call".to_owned(),
            source: Box::new(e),
        })?
}

#[async_trait]
impl Log for KafkaLog {
    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Appended>> {
        self.append_partial(topic, records)
            .await
            .map_err(|e| e.error)
    }

    /// Awaits every record's delivery, so that on error it says which records the cluster
    /// acknowledged (`acks=all`: durable), before or after the one that failed. A failure to
    /// enqueue reports nothing written.
    async fn append_partial(
        &self,
        topic: &str,
        records: Vec<Record>,
    ) -> std::result::Result<Vec<Appended>, AppendError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let n = self.partition_count(topic).await?;
        let futures = self.enqueue(topic, &records, n).await?;
        let mut out = Vec::with_capacity(futures.len());
        let mut written = Vec::new();
        let mut failure = None;
        for (i, future) in futures.into_iter().enumerate() {
            match future.await {
                Ok(Ok(delivery)) => {
                    written.push(i);
                    out.push(Appended {
                        partition: delivery.partition,
                        offset: delivery.offset,
                    });
                }
                Ok(Err((e, message))) => {
                    if e.rdkafka_error_code() == Some(RDKafkaErrorCode::UnknownTopicOrPartition) {
                        self.forget(topic);
                    }
                    let size = message.key().map_or(0, <[u8]>::len)
                        + message.payload().map_or(0, <[u8]>::len);
                    failure.get_or_insert_with(|| {
                        errors::produce(topic, e, size, self.max_message_bytes)
                    });
                }
                Err(_) => {
                    failure.get_or_insert_with(|| errors::gone("appending"));
                }
            }
        }
        match failure {
            None => Ok(out),
            Some(error) => Err(AppendError { written, error }),
        }
    }

    async fn read(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        max_wait: Duration,
    ) -> Result<Vec<StoredRecord>> {
        self.check_partition(topic, partition).await?;
        let reader = self.readers.get(topic, partition)?;
        let meta = self.meta.clone();
        let timeout = self.timeout();
        blocking(move || {
            let mut reader = reader.lock().unwrap_or_else(|p| p.into_inner());
            reader.read(&meta, offset, max_bytes, max_wait, timeout)
        })
        .await
    }

    async fn offsets(&self, topic: &str, partition: i32) -> Result<PartitionOffsets> {
        self.check_partition(topic, partition).await?;
        let meta = self.meta.clone();
        let (topic, timeout) = (topic.to_owned(), self.timeout());
        blocking(move || reader::watermarks(&meta, &topic, partition, timeout)).await
    }

    async fn commit(&self, group: &str, topic: &str, partition: i32, offset: i64) -> Result<()> {
        let consumer = self.committer(group)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
            .map_err(|e| refused("building a commit", e))?;
        let context = format!("committing {group} {topic}/{partition} at {offset}");
        blocking(move || {
            consumer
                .commit(&tpl, CommitMode::Sync)
                .map_err(|e| errors::classify(context, e))
        })
        .await
    }

    async fn committed(&self, group: &str, topic: &str, partition: i32) -> Result<Option<i64>> {
        let consumer = self.committer(group)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition);
        let (context, timeout) = (
            format!("reading the offset of {group} on {topic}/{partition}"),
            self.timeout(),
        );
        blocking(move || {
            let got = consumer
                .committed_offsets(tpl, timeout)
                .map_err(|e| errors::classify(context.clone(), e))?;
            let offset = got.elements().first().map(|e| e.offset());
            Ok(match offset {
                Some(Offset::Offset(n)) if n >= 0 => Some(n),
                _ => None,
            })
        })
        .await
    }

    async fn create_topic(&self, topic: &str, partitions: u32) -> Result<()> {
        check_name(topic)?;
        if partitions == 0 || partitions > i32::MAX as u32 {
            return Err(LogError::InvalidArgument(format!(
                "partition count {partitions} of `{topic}`"
            )));
        }
        let deadline = Instant::now() + self.timeout();
        loop {
            let new = NewTopic::new(
                topic,
                partitions as i32,
                TopicReplication::Fixed(i32::from(self.config.replication_factor)),
            );
            let options = AdminOptions::new().operation_timeout(Some(self.timeout()));
            let results = self
                .admin
                .create_topics([&new], &options)
                .await
                .map_err(|e| unavailable(format!("creating `{topic}`"), e))?;
            let code = results
                .into_iter()
                .find_map(|r| r.err().map(|(_, code)| code));
            match code {
                None => {
                    self.settle(topic, true).await?;
                    self.remember(topic, partitions);
                    return Ok(());
                }
                Some(RDKafkaErrorCode::TopicAlreadyExists) => {
                    match self.settle(topic, true).await? {
                        Some(n) if n == partitions => return Ok(()),
                        Some(_) => return Err(LogError::TopicExists(topic.to_owned())),
                        // Still being deleted: try again.
                        None if Instant::now() < deadline => {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        None => return Err(LogError::TopicExists(topic.to_owned())),
                    }
                }
                Some(code) => return Err(errors::admin(topic, code)),
            }
        }
    }

    async fn delete_topic(&self, topic: &str) -> Result<()> {
        let options = AdminOptions::new().operation_timeout(Some(self.timeout()));
        let results = self
            .admin
            .delete_topics(&[topic], &options)
            .await
            .map_err(|e| unavailable(format!("deleting `{topic}`"), e))?;
        self.readers.forget_topic(topic);
        if let Some(code) = results
            .into_iter()
            .find_map(|r| r.err().map(|(_, code)| code))
        {
            self.forget(topic);
            return Err(errors::admin(topic, code));
        }
        self.settle(topic, false).await?;
        Ok(())
    }

    async fn partitions(&self, topic: &str) -> Result<u32> {
        self.partition_count(topic).await
    }

    async fn list_topics(&self) -> Result<Vec<String>> {
        let meta = self.meta.clone();
        let timeout = self.timeout();
        blocking(move || {
            let md = meta
                .fetch_metadata(None, timeout)
                .map_err(|e| unavailable("listing topics", e))?;
            let mut names: Vec<String> = md
                .topics()
                .iter()
                .filter(|t| t.error().is_none() && !t.name().starts_with("__"))
                .map(|t| t.name().to_owned())
                .collect();
            names.sort();
            Ok(names)
        })
        .await
    }

    async fn flush(&self) -> Result<()> {
        let producer = self.producer.clone();
        let timeout = Duration::from_millis(self.config.message_timeout_ms);
        blocking(move || {
            producer
                .flush(timeout)
                .map_err(|e| unavailable("flushing the producer", e))
        })
        .await
    }

    async fn check_writable(&self) -> Result<()> {
        let meta = self.meta.clone();
        let timeout = self.timeout().min(Duration::from_secs(2));
        blocking(move || {
            let md = meta
                .fetch_metadata(None, timeout)
                .map_err(|e| unavailable("reaching the brokers", e))?;
            if md.brokers().is_empty() {
                return Err(LogError::Unavailable {
                    context: "reaching the brokers".to_owned(),
                    source: "metadata lists no brokers".into(),
                });
            }
            Ok(())
        })
        .await
    }

    async fn join_group(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Option<Box<dyn GroupMembership>>> {
        for topic in topics {
            self.partition_count(topic).await?;
        }
        let member = members::Member::join(&self.base, group, topics)?;
        Ok(Some(Box::new(member)))
    }
}
