//! Read-ahead within a partition: while a batch is being sent, the task reads the records that
//! follow, so a partition's drain does not stop for every sink round trip; what it read ahead is
//! routed only after that delivery, in order.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use headwater_log::{Appended, Log, LogError, MemoryLog, PartitionOffsets, Record, StoredRecord};
use headwater_sinks::Delivery;
use support::*;

/// A `MemoryLog` that notes the offset of every read of `events`.
struct Observed {
    inner: MemoryLog,
    reads: Mutex<Vec<i64>>,
}

#[async_trait]
impl Log for Observed {
    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Appended>, LogError> {
        self.inner.append(topic, records).await
    }

    async fn read(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        max_wait: Duration,
    ) -> Result<Vec<StoredRecord>, LogError> {
        if topic == "events" {
            self.reads.lock().unwrap().push(offset);
        }
        self.inner
            .read(topic, partition, offset, max_bytes, max_wait)
            .await
    }

    async fn offsets(&self, topic: &str, partition: i32) -> Result<PartitionOffsets, LogError> {
        self.inner.offsets(topic, partition).await
    }

    async fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<(), LogError> {
        self.inner.commit(group, topic, partition, offset).await
    }

    async fn committed(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<i64>, LogError> {
        self.inner.committed(group, topic, partition).await
    }

    async fn create_topic(&self, topic: &str, partitions: u32) -> Result<(), LogError> {
        self.inner.create_topic(topic, partitions).await
    }

    async fn delete_topic(&self, topic: &str) -> Result<(), LogError> {
        self.inner.delete_topic(topic).await
    }

    async fn partitions(&self, topic: &str) -> Result<u32, LogError> {
        self.inner.partitions(topic).await
    }

    async fn list_topics(&self) -> Result<Vec<String>, LogError> {
        self.inner.list_topics().await
    }

    async fn flush(&self) -> Result<(), LogError> {
        self.inner.flush().await
    }

    async fn check_writable(&self) -> Result<(), LogError> {
        self.inner.check_writable().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_records_are_read_while_a_batch_is_sent_and_routed_after_it() {
    let log = Arc::new(Observed {
        inner: MemoryLog::default(),
        reads: Mutex::new(Vec::new()),
    });
    log.create_topic("events", 1).await.unwrap();
    append(log.as_ref(), "events", &events(100)).await;
    // The first send hangs until the test lets it go; the others are confirmed.
    let sink = TestSink::scripted(|_, n| {
        if n == 0 {
            Action::Block
        } else {
            Action::Deliver(Delivery::all())
        }
    });
    let sinks = Sinks::with(&[("lake", Arc::clone(&sink))]);
    let opts = || headwater_router::RouterOptions {
        batch_max_events: 10,
        // A few records per read, so the first batch leaves records after it to read.
        read_max_bytes: 2048,
        ..options()
    };
    let router = start(&log, LAKE, &sinks, opts()).await;
    sink.wait_blocked().await;
    let first_read = log.reads.lock().unwrap()[0];
    assert_eq!(first_read, 0);
    eventually(
        "the records after the first read are read while its batch hangs in the sink",
        async || log.reads.lock().unwrap().len() >= 2,
    )
    .await;
    let reads = log.reads.lock().unwrap().clone();
    assert!(reads[1] > 0, "{reads:?}");
    // Nothing read ahead was routed or committed while the first batch is unconfirmed.
    assert_eq!(sink.attempts.lock().unwrap().len(), 1);
    assert_eq!(committed(log.as_ref(), "router.lake", "events").await, 0);
    router.shutdown().await;

    // A new router re-sends the unconfirmed batch and routes everything once, in order.
    sink.set_script(|_, _| Action::Deliver(Delivery::all()));
    let router = start(&log, LAKE, &sinks, opts()).await;
    eventually("everything routed", async || {
        committed(log.as_ref(), "router.lake", "events").await == 100
    })
    .await;
    let ids: Vec<String> = sink.delivered_events().into_iter().map(|e| e.id).collect();
    let expected: Vec<String> = events(100).into_iter().map(|e| e.id).collect();
    assert_eq!(ids, expected);
    router.shutdown().await;
}
