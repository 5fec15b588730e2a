//! The generic `Log` conformance suite: one set of checks run against every backend (the
//! embedded engine and `MemoryLog` here; a Headwater log node and Apache Kafka through `KafkaLog`).
//! Enable with the `testsuite` feature and call [`run_all`] from a `#[tokio::test]`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::error::LogError;
use crate::log::{Header, Log, Record, partition_for_key};

/// Runs every check; topics are named `<prefix>-<check>` so a shared broker can be reused:
/// give each run a fresh prefix (the checks expect new, empty topics).
pub async fn run_all(log: Arc<dyn Log>, prefix: &str) {
    append_then_read_back(&*log, prefix).await;
    keys_pick_kafka_partitions(&*log, prefix).await;
    keyless_records_spread(&*log, prefix).await;
    read_waits_for_new_data(log.clone(), prefix).await;
    offsets_out_of_range(&*log, prefix).await;
    commits_are_kept(&*log, prefix).await;
    topic_admin(&*log, prefix).await;
    concurrent_appends_get_dense_offsets(log.clone(), prefix).await;
    small_max_bytes_returns_a_record(&*log, prefix).await;
    log.flush().await.unwrap();
    log.check_writable().await.unwrap();
}

fn rec(partition: Option<i32>, key: Option<&str>, value: &str) -> Record {
    Record {
        partition,
        key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
        headers: vec![
            Header {
                key: "type".into(),
                value: Some(Bytes::from_static(b"test")),
            },
            Header {
                key: "empty".into(),
                value: None,
            },
        ],
        timestamp_ms: 1_700_000_000_000,
    }
}

/// Reads everything from `from` up to the high watermark.
pub async fn read_all(
    log: &dyn Log,
    topic: &str,
    partition: i32,
    from: i64,
) -> Vec<crate::StoredRecord> {
    let hw = log.offsets(topic, partition).await.unwrap().high_watermark;
    let mut out = Vec::new();
    let mut next = from;
    while next < hw {
        let batch = log
            .read(topic, partition, next, 1 << 20, Duration::from_millis(100))
            .await
            .unwrap();
        assert!(
            !batch.is_empty(),
            "read at {next} below hw {hw} returned nothing"
        );
        next = batch.last().unwrap().offset + 1;
        out.extend(batch);
    }
    out
}

pub async fn append_then_read_back(log: &dyn Log, prefix: &str) {
    let topic = format!("{prefix}-roundtrip");
    log.create_topic(&topic, 3).await.unwrap();
    let before = log.offsets(&topic, 1).await.unwrap();
    let records: Vec<Record> = (0..10)
        .map(|i| rec(Some(1), Some("dev-1"), &format!("v{i}")))
        .collect();
    let appended = log.append(&topic, records.clone()).await.unwrap();
    assert_eq!(appended.len(), 10);
    for (i, a) in appended.iter().enumerate() {
        assert_eq!(a.partition, 1);
        assert_eq!(a.offset, before.high_watermark + i as i64);
    }
    let after = log.offsets(&topic, 1).await.unwrap();
    assert_eq!(after.high_watermark, before.high_watermark + 10);
    let read = read_all(log, &topic, 1, before.high_watermark).await;
    assert_eq!(read.len(), 10);
    for (r, (a, want)) in read.iter().zip(appended.iter().zip(&records)) {
        assert_eq!(r.offset, a.offset);
        assert_eq!(r.key, want.key);
        assert_eq!(r.value, want.value);
        assert_eq!(r.headers, want.headers);
        assert_eq!(r.timestamp_ms, want.timestamp_ms);
    }
    assert_eq!(log.offsets(&topic, 0).await.unwrap().high_watermark, 0);
    let err = log
        .append(&topic, vec![rec(Some(7), None, "x")])
        .await
        .unwrap_err();
    assert!(matches!(err, LogError::UnknownPartition { .. }), "{err}");
}

pub async fn keys_pick_kafka_partitions(log: &dyn Log, prefix: &str) {
    let topic = format!("{prefix}-keys");
    log.create_topic(&topic, 6).await.unwrap();
    let keys = ["sensor-a", "sensor-b", "device-42", "x", ""];
    let records: Vec<Record> = (0..20)
        .map(|i| rec(None, Some(keys[i % keys.len()]), &format!("{i}")))
        .collect();
    let appended = log.append(&topic, records).await.unwrap();
    let mut last = std::collections::HashMap::new();
    for (i, a) in appended.iter().enumerate() {
        let key = keys[i % keys.len()];
        assert_eq!(
            a.partition,
            partition_for_key(key.as_bytes(), 6),
            "key {key}"
        );
        if let Some(prev) = last.insert(key, a.offset) {
            assert!(a.offset > prev, "per-key order");
        }
    }
}

pub async fn keyless_records_spread(log: &dyn Log, prefix: &str) {
    let topic = format!("{prefix}-keyless");
    log.create_topic(&topic, 4).await.unwrap();
    let mut partitions = BTreeSet::new();
    for i in 0..8 {
        let a = log
            .append(&topic, vec![rec(None, None, &format!("{i}"))])
            .await
            .unwrap();
        partitions.insert(a[0].partition);
    }
    assert!(
        partitions.len() > 1,
        "keyless records all went to {partitions:?}"
    );
}

pub async fn read_waits_for_new_data(log: Arc<dyn Log>, prefix: &str) {
    let topic = format!("{prefix}-longpoll");
    log.create_topic(&topic, 1).await.unwrap();
    let hw = log.offsets(&topic, 0).await.unwrap().high_watermark;
    let started = Instant::now();
    let empty = log
        .read(&topic, 0, hw, 1 << 20, Duration::from_millis(200))
        .await
        .unwrap();
    assert!(empty.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "returned after {:?}",
        started.elapsed()
    );
    // Polled once before the append, the read is parked: the engine and `MemoryLog` subscribe
    // to the high watermark within that first poll, so only the append's notification can end
    // the wait early. (A read spawned and given a head start by a sleep may not have begun by
    // then, and would find the record without waiting: the test would pass with no wake-up at
    // all.) `KafkaLog` may not have reached its broker within one poll; for it this checks less.
    let mut reader = std::pin::pin!(log.read(&topic, 0, hw, 1 << 20, Duration::from_secs(10)));
    if let Some(early) = poll_once(&mut reader).await {
        panic!("a read at the high watermark returned before any data: {early:?}");
    }
    let started = Instant::now();
    log.append(&topic, vec![rec(Some(0), None, "wake")])
        .await
        .unwrap();
    let got = reader.await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "long poll did not wake"
    );
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].offset, hw);
    assert_eq!(got[0].value.as_deref(), Some(&b"wake"[..]));
}

/// Polls `fut` once: its output if it is done, `None` if it waits (its waker registered).
async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| match Pin::new(&mut *fut).poll(cx) {
        Poll::Ready(output) => Poll::Ready(Some(output)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

pub async fn offsets_out_of_range(log: &dyn Log, prefix: &str) {
    let topic = format!("{prefix}-range");
    log.create_topic(&topic, 1).await.unwrap();
    log.append(&topic, vec![rec(Some(0), None, "a")])
        .await
        .unwrap();
    let o = log.offsets(&topic, 0).await.unwrap();
    assert_eq!(o.log_start, 0);
    let err = log
        .read(&topic, 0, o.high_watermark + 10, 1024, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(matches!(err, LogError::OffsetOutOfRange { .. }), "{err}");
}

pub async fn commits_are_kept(log: &dyn Log, prefix: &str) {
    let topic = format!("{prefix}-commits");
    log.create_topic(&topic, 2).await.unwrap();
    let group = format!("{prefix}-group");
    assert_eq!(log.committed(&group, &topic, 1).await.unwrap(), None);
    log.commit(&group, &topic, 1, 5).await.unwrap();
    assert_eq!(log.committed(&group, &topic, 1).await.unwrap(), Some(5));
    log.commit(&group, &topic, 1, 7).await.unwrap();
    assert_eq!(log.committed(&group, &topic, 1).await.unwrap(), Some(7));
    assert_eq!(log.committed(&group, &topic, 0).await.unwrap(), None);
    assert_eq!(log.committed("other", &topic, 1).await.unwrap(), None);
}

pub async fn topic_admin(log: &dyn Log, prefix: &str) {
    let topic = format!("{prefix}-admin");
    log.create_topic(&topic, 3).await.unwrap();
    log.create_topic(&topic, 3).await.unwrap();
    assert!(matches!(
        log.create_topic(&topic, 5).await,
        Err(LogError::TopicExists(_))
    ));
    assert_eq!(log.partitions(&topic).await.unwrap(), 3);
    assert!(log.list_topics().await.unwrap().contains(&topic));
    assert!(log.create_topic("bad/name", 1).await.is_err());
    log.append(&topic, vec![rec(Some(2), None, "x")])
        .await
        .unwrap();
    log.delete_topic(&topic).await.unwrap();
    assert!(!log.list_topics().await.unwrap().contains(&topic));
    log.create_topic(&topic, 2).await.unwrap();
    assert_eq!(log.partitions(&topic).await.unwrap(), 2);
    assert_eq!(log.offsets(&topic, 1).await.unwrap().high_watermark, 0);
    log.delete_topic(&topic).await.unwrap();
}

pub async fn concurrent_appends_get_dense_offsets(log: Arc<dyn Log>, prefix: &str) {
    let topic = format!("{prefix}-concurrent");
    log.create_topic(&topic, 1).await.unwrap();
    let start = log.offsets(&topic, 0).await.unwrap().high_watermark;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let (log, topic) = (log.clone(), topic.clone());
        tasks.push(tokio::spawn(async move {
            let mut offsets = Vec::new();
            for i in 0..10 {
                let batch = vec![
                    rec(Some(0), None, &format!("{t}-{i}-a")),
                    rec(Some(0), None, &format!("{t}-{i}-b")),
                ];
                let a = log.append(&topic, batch).await.unwrap();
                assert_eq!(a[1].offset, a[0].offset + 1, "a batch stays contiguous");
                offsets.extend(a.iter().map(|a| a.offset));
            }
            offsets
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    let expected: Vec<i64> = (start..start + 160).collect();
    assert_eq!(all, expected);
    let read = read_all(&*log, &topic, 0, start).await;
    assert_eq!(read.iter().map(|r| r.offset).collect::<Vec<_>>(), expected);
}

pub async fn small_max_bytes_returns_a_record(log: &dyn Log, prefix: &str) {
    let topic = format!("{prefix}-maxbytes");
    log.create_topic(&topic, 1).await.unwrap();
    log.append(&topic, vec![rec(Some(0), None, &"x".repeat(500))])
        .await
        .unwrap();
    log.append(&topic, vec![rec(Some(0), None, &"y".repeat(500))])
        .await
        .unwrap();
    let got = log.read(&topic, 0, 0, 1, Duration::ZERO).await.unwrap();
    assert!(!got.is_empty());
    assert_eq!(got[0].offset, 0);
    let got = log.read(&topic, 0, 1, 1, Duration::ZERO).await.unwrap();
    assert_eq!(got[0].offset, 1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FlushMode, FlushPolicy, LogConfig, LogEngine, MemoryLog};

    #[tokio::test]
    async fn suite_against_memory_log() {
        run_all(Arc::new(MemoryLog::default()), "mem").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn suite_against_engine_every_append() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            flush: FlushPolicy {
                mode: FlushMode::EveryAppend,
                interval_ms: 0,
                linger_us: 0,
            },
            ..LogConfig::default()
        };
        let engine = LogEngine::open_async(dir.path().to_path_buf(), config)
            .await
            .unwrap();
        run_all(engine.clone(), "engine").await;
        engine.close().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn suite_against_engine_interval_small_segments() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            flush: FlushPolicy {
                mode: FlushMode::Interval,
                interval_ms: 5,
                linger_us: 0,
            },
            segment_bytes: 4096,
            index_interval_bytes: 256,
            ..LogConfig::default()
        };
        let engine = LogEngine::open(dir.path(), config.clone()).unwrap();
        run_all(engine.clone(), "engine").await;
        engine.close().await.unwrap();
        // Everything survives a reopen.
        let engine = LogEngine::open(dir.path(), config).unwrap();
        let read = read_all(&*engine, "engine-concurrent", 0, 0).await;
        assert_eq!(read.len(), 160);
        engine.close().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn suite_against_engine_background_flush() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            flush: FlushPolicy {
                mode: FlushMode::Background,
                interval_ms: 5,
                linger_us: 0,
            },
            ..LogConfig::default()
        };
        let engine = LogEngine::open(dir.path(), config).unwrap();
        run_all(engine.clone(), "engine").await;
        engine.close().await.unwrap();
    }

    #[tokio::test]
    async fn suite_against_engine_os_flush_current_thread() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            flush: FlushPolicy {
                mode: FlushMode::Os,
                interval_ms: 0,
                linger_us: 0,
            },
            ..LogConfig::default()
        };
        let engine = LogEngine::open(dir.path(), config).unwrap();
        run_all(engine.clone(), "engine").await;
        engine.close().await.unwrap();
    }
}
