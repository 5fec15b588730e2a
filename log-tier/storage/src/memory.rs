//! `MemoryLog`: an in-memory `Log` for other crates' tests, with the same semantics as the
//! engine (partitioning, offsets, long-poll, auto-creation), a switch to simulate a full disk and
//! one to fail a single partition (an append then stores the partitions before it).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::config::LogConfig;
use crate::engine::now_ms;
use crate::error::{LogError, Result};
use crate::log::{
    AppendError, Appended, Log, PartitionOffsets, Record, StoredRecord, partition_for_key,
};
use crate::topic::check_name;

struct MemPartition {
    records: Vec<StoredRecord>,
    high_watermark: watch::Sender<i64>,
}

struct MemTopic {
    partitions: Vec<MemPartition>,
    round_robin: AtomicU32,
}

impl MemTopic {
    fn new(n: u32) -> Self {
        Self {
            partitions: (0..n)
                .map(|_| MemPartition {
                    records: Vec::new(),
                    high_watermark: watch::Sender::new(0),
                })
                .collect(),
            round_robin: AtomicU32::new(0),
        }
    }
}

#[derive(Default)]
struct Inner {
    topics: BTreeMap<String, MemTopic>,
    offsets: BTreeMap<(String, String, i32), i64>,
}

/// An in-memory [`Log`]. Nothing survives the process; appends are "durable" at once.
pub struct MemoryLog {
    config: LogConfig,
    inner: Mutex<Inner>,
    full: AtomicBool,
    /// A partition whose appends fail, per [`MemoryLog::set_failing_partition`].
    failing: Mutex<Option<(String, i32)>>,
}

impl Default for MemoryLog {
    fn default() -> Self {
        Self::new(LogConfig::default())
    }
}

impl MemoryLog {
    /// A memory log using `config`'s auto-creation and partition settings.
    pub fn new(config: LogConfig) -> Self {
        Self {
            config,
            inner: Mutex::new(Inner::default()),
            full: AtomicBool::new(false),
            failing: Mutex::new(None),
        }
    }

    /// Simulates one failing partition: an append with records for `partition` of `topic`
    /// stores those of lower partitions, as the engine (which writes partitions in order)
    /// would before a failing one, and fails with [`LogError::DiskFull`];
    /// [`Log::append_partial`] says which records were stored. `None` ends it.
    pub fn set_failing_partition(&self, failing: Option<(&str, i32)>) {
        *self.failing.lock().unwrap_or_else(|p| p.into_inner()) =
            failing.map(|(topic, p)| (topic.to_owned(), p));
    }

    fn failing_partition(&self, topic: &str) -> Option<i32> {
        let failing = self.failing.lock().unwrap_or_else(|p| p.into_inner());
        failing
            .as_ref()
            .filter(|(t, _)| t == topic)
            .map(|(_, p)| *p)
    }

    /// Simulates a full disk: appends and `check_writable` fail with [`LogError::DiskFull`].
    pub fn set_disk_full(&self, full: bool) {
        self.full.store(full, Ordering::Relaxed);
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_space(&self) -> Result<()> {
        if self.full.load(Ordering::Relaxed) {
            return Err(LogError::io(
                "appending to the memory log",
                std::io::Error::from_raw_os_error(libc::ENOSPC),
            ));
        }
        Ok(())
    }

    fn ensure_topic<'a>(&self, inner: &'a mut Inner, topic: &str) -> Result<&'a mut MemTopic> {
        if !inner.topics.contains_key(topic) {
            if !self.config.auto_create_topics {
                return Err(LogError::UnknownTopic(topic.to_owned()));
            }
            check_name(topic)?;
            if inner.topics.len() >= self.config.max_topics as usize {
                return Err(LogError::topic_limit(topic, self.config.max_topics));
            }
            let n = self.config.topic_settings(topic).partitions;
            inner.topics.insert(topic.to_owned(), MemTopic::new(n));
        }
        inner
            .topics
            .get_mut(topic)
            .ok_or_else(|| LogError::UnknownTopic(topic.to_owned()))
    }

    fn receiver(&self, topic: &str, partition: i32) -> Result<watch::Receiver<i64>> {
        let inner = self.inner();
        let t = inner
            .topics
            .get(topic)
            .ok_or_else(|| LogError::UnknownTopic(topic.to_owned()))?;
        Ok(part(t, topic, partition)?.high_watermark.subscribe())
    }
}

fn part<'a>(t: &'a MemTopic, topic: &str, partition: i32) -> Result<&'a MemPartition> {
    usize::try_from(partition)
        .ok()
        .and_then(|i| t.partitions.get(i))
        .ok_or_else(|| LogError::UnknownPartition {
            topic: topic.to_owned(),
            partition,
        })
}

#[async_trait]
impl Log for MemoryLog {
    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Appended>> {
        self.append_partial(topic, records)
            .await
            .map_err(|e| e.error)
    }

    async fn append_partial(
        &self,
        topic: &str,
        records: Vec<Record>,
    ) -> std::result::Result<Vec<Appended>, AppendError> {
        self.check_space()?;
        let max = self.config.topic_settings(topic).max_message_bytes as usize;
        let mut inner = self.inner();
        let t = self.ensure_topic(&mut inner, topic)?;
        let n = t.partitions.len() as u32;
        let mut chosen = Vec::with_capacity(records.len());
        for r in &records {
            let size =
                r.key.as_ref().map_or(0, |k| k.len()) + r.value.as_ref().map_or(0, |v| v.len());
            if size > max {
                return Err(LogError::MessageTooLarge { size, max }.into());
            }
            let p = match (r.partition, &r.key) {
                (Some(p), _) => {
                    part(t, topic, p)?;
                    p
                }
                (None, Some(k)) => partition_for_key(k, n),
                (None, None) => (t.round_robin.fetch_add(1, Ordering::Relaxed) % n) as i32,
            };
            chosen.push(p);
        }
        let failing = self.failing_partition(topic).filter(|f| chosen.contains(f));
        let now = now_ms();
        let mut out = Vec::with_capacity(records.len());
        let mut written = Vec::new();
        for (i, (r, p)) in records.into_iter().zip(chosen).enumerate() {
            if failing.is_some_and(|f| p >= f) {
                continue;
            }
            written.push(i);
            let mp = &mut t.partitions[p as usize];
            let offset = mp.records.len() as i64;
            mp.records.push(StoredRecord {
                offset,
                timestamp_ms: if r.timestamp_ms < 0 {
                    now
                } else {
                    r.timestamp_ms
                },
                key: r.key,
                value: r.value,
                headers: r.headers,
            });
            out.push(Appended {
                partition: p,
                offset,
            });
        }
        for t in inner.topics.get(topic).iter() {
            for mp in &t.partitions {
                mp.high_watermark.send_if_modified(|hw| {
                    let new = mp.records.len() as i64;
                    std::mem::replace(hw, new) != new
                });
            }
        }
        if let Some(p) = failing {
            let error = LogError::io(
                format!("appending to partition {p} of `{topic}` in the memory log"),
                std::io::Error::from_raw_os_error(libc::ENOSPC),
            );
            return Err(AppendError { written, error });
        }
        Ok(out)
    }

    async fn read(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        max_wait: Duration,
    ) -> Result<Vec<StoredRecord>> {
        let mut rx = self.receiver(topic, partition)?;
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            let hw = *rx.borrow_and_update();
            if offset < 0 || offset > hw {
                return Err(LogError::OffsetOutOfRange {
                    offset,
                    log_start: 0,
                    high_watermark: hw,
                });
            }
            if offset < hw {
                let inner = self.inner();
                let t = inner
                    .topics
                    .get(topic)
                    .ok_or_else(|| LogError::UnknownTopic(topic.to_owned()))?;
                let mut size = 0usize;
                let out = part(t, topic, partition)?.records[offset as usize..]
                    .iter()
                    .take_while(|r| {
                        let first = size == 0;
                        size += 16
                            + r.key.as_ref().map_or(0, |k| k.len())
                            + r.value.as_ref().map_or(0, |v| v.len());
                        first || size <= max_bytes
                    })
                    .cloned()
                    .collect();
                return Ok(out);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(LogError::UnknownTopic(topic.to_owned())),
                Err(_) => return Ok(Vec::new()),
            }
        }
    }

    async fn offsets(&self, topic: &str, partition: i32) -> Result<PartitionOffsets> {
        let high_watermark = *self.receiver(topic, partition)?.borrow();
        Ok(PartitionOffsets {
            log_start: 0,
            high_watermark,
        })
    }

    async fn commit(&self, group: &str, topic: &str, partition: i32, offset: i64) -> Result<()> {
        self.receiver(topic, partition)?;
        self.inner()
            .offsets
            .insert((group.to_owned(), topic.to_owned(), partition), offset);
        Ok(())
    }

    async fn committed(&self, group: &str, topic: &str, partition: i32) -> Result<Option<i64>> {
        Ok(self
            .inner()
            .offsets
            .get(&(group.to_owned(), topic.to_owned(), partition))
            .copied())
    }

    async fn create_topic(&self, topic: &str, partitions: u32) -> Result<()> {
        check_name(topic)?;
        if partitions == 0 {
            return Err(LogError::InvalidArgument("0 partitions".to_owned()));
        }
        let mut inner = self.inner();
        match inner.topics.get(topic) {
            Some(t) if t.partitions.len() as u32 == partitions => Ok(()),
            Some(_) => Err(LogError::TopicExists(topic.to_owned())),
            None => {
                inner
                    .topics
                    .insert(topic.to_owned(), MemTopic::new(partitions));
                Ok(())
            }
        }
    }

    async fn delete_topic(&self, topic: &str) -> Result<()> {
        let mut inner = self.inner();
        inner
            .topics
            .remove(topic)
            .ok_or_else(|| LogError::UnknownTopic(topic.to_owned()))?;
        inner.offsets.retain(|(_, t, _), _| t != topic);
        Ok(())
    }

    async fn partitions(&self, topic: &str) -> Result<u32> {
        let mut inner = self.inner();
        Ok(self.ensure_topic(&mut inner, topic)?.partitions.len() as u32)
    }

    async fn list_topics(&self) -> Result<Vec<String>> {
        Ok(self.inner().topics.keys().cloned().collect())
    }

    async fn flush(&self) -> Result<()> {
        Ok(())
    }

    async fn check_writable(&self) -> Result<()> {
        self.check_space()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(partition: i32) -> Record {
        Record {
            partition: Some(partition),
            ..Record::default()
        }
    }

    #[tokio::test]
    async fn a_failing_partition_stores_the_lower_partitions_and_says_which() {
        let log = MemoryLog::default();
        log.set_failing_partition(Some(("t", 2)));
        let records = vec![to(3), to(0), to(2), to(1), to(0)];
        let err = log.append_partial("t", records.clone()).await.unwrap_err();
        assert_eq!(err.written, [1, 3, 4]);
        assert!(
            matches!(err.error, LogError::DiskFull { .. }),
            "{:?}",
            err.error
        );
        let mut hws = Vec::new();
        for p in 0..4 {
            hws.push(log.offsets("t", p).await.unwrap().high_watermark);
        }
        assert_eq!(hws, [2, 1, 0, 0]);

        log.set_failing_partition(None);
        assert_eq!(log.append_partial("t", records).await.unwrap().len(), 5);
    }
}
