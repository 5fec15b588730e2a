//! Engine tests: recovery, corruption, indexes, idempotence, retention, list offsets, fetch.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::batch::{self, ProducerFields};
use crate::config::{FlushMode, FlushPolicy};
use crate::log::{Header, Log, Record, partition_for_key};
use crate::testsuite::read_all;

pub(super) fn config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        flush: FlushPolicy {
            mode: FlushMode::EveryAppend,
            interval_ms: 0,
            linger_us: 0,
        },
        segment_bytes,
        index_interval_bytes: 200,
        ..LogConfig::default()
    }
}

pub(super) fn record(i: i64, ts: i64) -> Record {
    Record {
        partition: Some(0),
        key: Some(Bytes::from(format!("key-{i}"))),
        value: Some(Bytes::from(format!("value-{i}-{}", "x".repeat(50)))),
        headers: vec![],
        timestamp_ms: ts,
    }
}

pub(super) async fn append_n(engine: &LogEngine, topic: &str, n: i64, ts: impl Fn(i64) -> i64) {
    for i in 0..n {
        engine.append(topic, vec![record(i, ts(i))]).await.unwrap();
    }
}

pub(super) fn partition_dir(dir: &Path, topic: &str) -> std::path::PathBuf {
    dir.join("topics").join(topic).join("0")
}

pub(super) fn logs(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn recovery_truncates_a_torn_tail_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LogEngine::open(dir.path(), config(1 << 20)).unwrap();
    engine.create_topic_now("t", 1).unwrap();
    append_n(&engine, "t", 10, |_| 1000).await;
    engine.close().await.unwrap();
    drop(engine);
    // A torn write: the first 70 bytes of a valid batch at the end of the active segment.
    let torn = batch::encode(&[&record(99, 1)], ProducerFields::NONE).unwrap();
    let log = logs(&partition_dir(dir.path(), "t")).pop().unwrap();
    let mut f = OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(&torn[..70]).unwrap();
    drop(f);
    let engine = LogEngine::open(dir.path(), config(1 << 20)).unwrap();
    assert_eq!(engine.partition_offsets("t", 0).unwrap().high_watermark, 10);
    let a = engine.append("t", vec![record(10, 1000)]).await.unwrap();
    assert_eq!(a[0].offset, 10);
    let all = read_all(&*engine, "t", 0, 0).await;
    assert_eq!(all.len(), 11);
    assert_eq!(all[10].key.as_deref(), Some(&b"key-10"[..]));
    engine.close().await.unwrap();
}

#[tokio::test]
async fn corrupt_bytes_are_detected_and_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LogEngine::open(dir.path(), config(4096)).unwrap();
    engine.create_topic_now("t", 1).unwrap();
    append_n(&engine, "t", 200, |_| 1000).await;
    let pdir = partition_dir(dir.path(), "t");
    let segments = logs(&pdir);
    assert!(segments.len() > 3, "expected rolls, got {}", segments.len());
    // Flip a byte inside the value of a batch in the first (sealed) segment, engine running.
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&segments[0])
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, 300).unwrap();
    f.write_all_at(&[b[0] ^ 0xff], 300).unwrap();
    drop(f);
    let err = engine.read("t", 0, 0, 1 << 20, Duration::ZERO).await;
    let records = err.as_ref().map(|r| r.len()).unwrap_or(0);
    // Either the first batches (before the flipped one) come back, or the read fails.
    if let Ok(r) = &err {
        assert!(
            r.iter()
                .all(|r| r.value.as_ref().unwrap().starts_with(b"value-"))
        );
        let next = r.last().unwrap().offset + 1;
        let e = engine
            .read("t", 0, next, 1 << 20, Duration::ZERO)
            .await
            .unwrap_err();
        assert!(matches!(e, LogError::Corrupt { .. }), "{e}");
    } else {
        assert!(matches!(err, Err(LogError::Corrupt { .. })));
    }
    assert!(records < 200);
    engine.close().await.unwrap();
    drop(engine);
    // Corruption in the active tail: recovery cuts the log before the corrupt batch.
    let last = logs(&pdir).pop().unwrap();
    let len = fs::metadata(&last).unwrap().len();
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&last)
        .unwrap();
    f.write_all_at(&[0xAA, 0xBB], len - 5).unwrap();
    drop(f);
    // After a clean close the tail is trusted at open, but the read still catches it.
    let engine = LogEngine::open(dir.path(), config(4096)).unwrap();
    let e = engine
        .read("t", 0, 199, 1 << 20, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(matches!(e, LogError::Corrupt { .. }), "{e}");
    engine.close().await.unwrap();
    drop(engine);
    // After a crash (no clean-shutdown marker) recovery cuts the log before it.
    fs::remove_file(dir.path().join(".clean_shutdown")).unwrap();
    let engine = LogEngine::open(dir.path(), config(4096)).unwrap();
    assert_eq!(
        engine.partition_offsets("t", 0).unwrap().high_watermark,
        199
    );
    engine.close().await.unwrap();
}

#[tokio::test]
async fn missing_or_corrupt_indexes_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LogEngine::open(dir.path(), config(4096)).unwrap();
    engine.create_topic_now("t", 1).unwrap();
    append_n(&engine, "t", 150, |i| 10_000 + i * 10).await;
    engine.close().await.unwrap();
    drop(engine);
    let pdir = partition_dir(dir.path(), "t");
    let segs = logs(&pdir);
    fs::remove_file(segs[0].with_extension("index")).unwrap();
    fs::write(segs[1].with_extension("timeindex"), b"garbage").unwrap();
    let idx = segs[2].with_extension("index");
    let mut bytes = fs::read(&idx).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 1;
    fs::write(&idx, bytes).unwrap();
    let engine = LogEngine::open(dir.path(), config(4096)).unwrap();
    for offset in [0, 1, 37, 74, 75, 120, 149] {
        let r = engine
            .read("t", 0, offset, 1, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(r[0].offset, offset);
        assert_eq!(r[0].key, Some(Bytes::from(format!("key-{offset}"))));
    }
    for (ts, want) in [
        (0, Some(0)),
        (10_000, Some(0)),
        (10_005, Some(1)),
        (10_500, Some(50)),
        (11_490, Some(149)),
        (11_491, None),
    ] {
        let found = engine
            .list_offset("t", 0, OffsetSpec::Timestamp(ts))
            .unwrap();
        assert_eq!(found.map(|f| f.offset), want, "ts {ts}");
        if let (Some(f), Some(o)) = (found, want) {
            assert_eq!(f.timestamp_ms, 10_000 + o * 10);
        }
    }
    assert_eq!(
        engine
            .list_offset("t", 0, OffsetSpec::Earliest)
            .unwrap()
            .map(|l| l.offset),
        Some(0)
    );
    assert_eq!(
        engine
            .list_offset("t", 0, OffsetSpec::Latest)
            .unwrap()
            .map(|l| l.offset),
        Some(150)
    );
    engine.close().await.unwrap();
}

fn producer_batch(pid: i64, epoch: i16, seq: i32, n: usize) -> Bytes {
    let records: Vec<Record> = (0..n).map(|i| record(i as i64, 5)).collect();
    let refs: Vec<&Record> = records.iter().collect();
    let producer = ProducerFields {
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: seq,
    };
    batch::encode(&refs, producer).unwrap().freeze()
}

#[tokio::test]
async fn truncation_rolls_idempotent_producer_state_back_to_the_cut() {
    // One segment (no snapshot), then small segments (snapshots past the cut, removed by it).
    for segment_bytes in [1 << 20, 256] {
        let dir = tempfile::tempdir().unwrap();
        let engine = LogEngine::open(dir.path(), config(segment_bytes)).unwrap();
        engine.create_topic_now("t", 1).unwrap();
        // Producer 9: ten batches of 3 (offsets 0..30); the state keeps the last five.
        for i in 0..10 {
            let base = engine
                .append_batch("t", 0, producer_batch(9, 0, i * 3, 3))
                .await
                .unwrap();
            assert_eq!(base, i64::from(i) * 3);
        }
        // Cut after the third batch: every batch the state kept is gone.
        engine.truncate("t", 0, 9).unwrap();
        assert_eq!(engine.partition_offsets("t", 0).unwrap().high_watermark, 9);
        assert_eq!(
            engine
                .append_batch("t", 0, producer_batch(9, 0, 6, 3))
                .await
                .unwrap(),
            6,
            "the third batch, kept by the cut, is still a duplicate ({segment_bytes})"
        );
        let gap = engine
            .append_batch("t", 0, producer_batch(9, 0, 12, 3))
            .await
            .unwrap_err();
        assert!(
            matches!(gap, LogError::OutOfOrderSequence { expected: 9, .. }),
            "{gap}"
        );
        assert_eq!(
            engine
                .append_batch("t", 0, producer_batch(9, 0, 9, 3))
                .await
                .unwrap(),
            9,
            "the fourth batch goes again where it was cut"
        );
        engine.close().await.unwrap();
    }
}

#[tokio::test]
async fn idempotent_producer_dedups_across_restart_and_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LogEngine::open(dir.path(), config(4096)).unwrap();
    engine.create_topic_now("t", 1).unwrap();
    let mut seq = 0;
    let mut bases = vec![];
    for _ in 0..40 {
        bases.push(
            engine
                .append_batch("t", 0, producer_batch(9, 0, seq, 3))
                .await
                .unwrap(),
        );
        seq += 3;
    }
    assert_eq!(
        engine
            .append_batch("t", 0, producer_batch(9, 0, seq - 3, 3))
            .await
            .unwrap(),
        bases[39]
    );
    assert_eq!(
        engine.partition_offsets("t", 0).unwrap().high_watermark,
        120
    );
    let gap = engine
        .append_batch("t", 0, producer_batch(9, 0, seq + 1, 1))
        .await
        .unwrap_err();
    assert!(
        matches!(gap, LogError::OutOfOrderSequence { expected: 120, .. }),
        "{gap}"
    );
    engine.close().await.unwrap();
    drop(engine);
    for remove_snapshot in [false, true] {
        if remove_snapshot {
            fs::remove_file(partition_dir(dir.path(), "t").join("producer.snapshot")).unwrap();
        }
        let engine = LogEngine::open(dir.path(), config(4096)).unwrap();
        assert_eq!(
            engine
                .append_batch("t", 0, producer_batch(9, 0, seq - 6, 3))
                .await
                .unwrap(),
            bases[38]
        );
        assert_eq!(
            engine.partition_offsets("t", 0).unwrap().high_watermark,
            120
        );
        let fenced = engine
            .append_batch("t", 0, producer_batch(9, -1, 0, 1))
            .await
            .unwrap_err();
        assert!(
            matches!(fenced, LogError::ProducerFenced { .. }),
            "{fenced}"
        );
        engine.close().await.unwrap();
    }
    let engine = LogEngine::open(dir.path(), config(4096)).unwrap();
    assert_eq!(
        engine
            .append_batch("t", 0, producer_batch(9, 0, seq, 2))
            .await
            .unwrap(),
        120
    );
    assert_eq!(
        engine
            .append_batch("t", 0, producer_batch(9, 1, 0, 1))
            .await
            .unwrap(),
        122
    );
    let mut two = producer_batch(9, 1, 1, 2).to_vec();
    two.extend_from_slice(&producer_batch(9, 1, 3, 1));
    assert_eq!(
        engine
            .append_batch("t", 0, Bytes::from(two.clone()))
            .await
            .unwrap(),
        123
    );
    assert_eq!(
        engine.partition_offsets("t", 0).unwrap().high_watermark,
        126
    );
    two.pop();
    assert!(engine.append_batch("t", 0, Bytes::from(two)).await.is_err());
    assert_eq!(
        engine.partition_offsets("t", 0).unwrap().high_watermark,
        126
    );
    let bad = engine
        .append_batch("t", 0, Bytes::from_static(b"not a batch"))
        .await
        .unwrap_err();
    assert!(matches!(bad, LogError::InvalidBatch(_)));
    engine.close().await.unwrap();
}

#[tokio::test]
async fn retention_deletes_whole_segments_by_bytes_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(4096);
    cfg.retention_bytes = Some(3 * 4096);
    let engine = LogEngine::open(dir.path(), cfg.clone()).unwrap();
    engine.create_topic_now("t", 1).unwrap();
    append_n(&engine, "t", 300, |_| now_ms()).await;
    let before = engine.partition("t", 0).unwrap().segment_count();
    let deleted = engine.enforce_retention().unwrap();
    assert!(deleted > 0);
    let p = engine.partition("t", 0).unwrap();
    assert_eq!(p.segment_count(), before - deleted);
    let total: u64 = p.state().segments.values().map(|s| s.size()).sum();
    assert!(total <= 4 * 4096, "{total}");
    let offsets = engine.partition_offsets("t", 0).unwrap();
    assert!(offsets.log_start > 0);
    assert_eq!(
        logs(&partition_dir(dir.path(), "t")).len(),
        p.segment_count()
    );
    let err = engine
        .read("t", 0, 0, 100, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(matches!(err, LogError::OffsetOutOfRange { .. }));
    let r = engine
        .read("t", 0, offsets.log_start, 100, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(r[0].offset, offsets.log_start);
    engine.close().await.unwrap();
    drop(engine);

    // By time: records stamped long ago go, the active segment stays.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(4096);
    cfg.retention_ms = 60_000;
    let engine = LogEngine::open(dir.path(), cfg).unwrap();
    engine.create_topic_now("t", 1).unwrap();
    append_n(&engine, "t", 100, |_| 1_000).await;
    let count = engine.partition("t", 0).unwrap().segment_count();
    assert_eq!(engine.enforce_retention().unwrap(), count - 1);
    assert_eq!(
        engine.partition_offsets("t", 0).unwrap().high_watermark,
        100
    );
    engine.close().await.unwrap();
}

#[tokio::test]
async fn compressed_batches_from_kafka_clients_are_stored_and_read() {
    use kafka_protocol::records::{
        Compression, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let dir = tempfile::tempdir().unwrap();
    let engine = LogEngine::open(dir.path(), config(1 << 20)).unwrap();
    for (i, compression) in [
        Compression::Gzip,
        Compression::Zstd,
        Compression::Lz4,
        Compression::Snappy,
    ]
    .into_iter()
    .enumerate()
    {
        let records: Vec<_> = (0..5)
            .map(|j| kafka_protocol::records::Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: j,
                sequence: j as i32 - 1,
                timestamp: 42 + j,
                key: None,
                value: Some(Bytes::from(format!("compressed-{i}-{j}"))),
                headers: Default::default(),
            })
            .collect();
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        let base = engine.append_batch("kafka", 0, buf.freeze()).await.unwrap();
        assert_eq!(base, i as i64 * 5);
    }
    let all = read_all(&*engine, "kafka", 0, 0).await;
    assert_eq!(all.len(), 20);
    assert_eq!(all[17].value.as_deref(), Some(&b"compressed-3-2"[..]));
    assert_eq!(all[17].timestamp_ms, 44);
    // A read from the middle of a compressed batch skips the earlier records.
    let r = engine.read("kafka", 0, 7, 1, Duration::ZERO).await.unwrap();
    assert_eq!(r[0].offset, 7);
    engine.close().await.unwrap();
}

#[tokio::test]
async fn fetch_waits_for_min_bytes_or_max_wait() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LogEngine::open(dir.path(), config(1 << 20)).unwrap();
    engine.create_topic_now("t", 1).unwrap();
    append_n(&engine, "t", 1, |_| 1).await;
    let opts = FetchOptions {
        max_bytes: 1 << 20,
        min_bytes: 10_000,
        max_wait: Duration::from_millis(200),
    };
    let started = Instant::now();
    let f = engine.fetch("t", 0, 0, opts).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(190));
    assert_eq!(f.high_watermark, 1);
    assert!(!f.records.is_empty());
    // The waiter must be parked before the append, or it would find the data without being
    // woken. The signal: it subscribed to the partition's high watermark. (This runtime has one
    // thread, so the waiter runs to its first `await` between two yields of this task.)
    let partition = engine.partition("t", 0).unwrap();
    let subscribed = partition.durable.receiver_count();
    let waiter = {
        let engine = engine.clone();
        tokio::spawn(async move {
            engine
                .wait_for_data("t", 0, 1, Duration::from_secs(10))
                .await
        })
    };
    while partition.durable.receiver_count() == subscribed {
        assert!(!waiter.is_finished(), "the waiter returned without waiting");
        tokio::task::yield_now().await;
    }
    append_n(&engine, "t", 1, |_| 1).await;
    assert!(
        waiter.await.unwrap().unwrap(),
        "woken by the append, not ended by its 10 s bound"
    );
    engine.close().await.unwrap();
    assert!(matches!(
        engine.read_raw("t", 0, 0, 10),
        Err(LogError::Closed)
    ));
}

#[tokio::test]
async fn data_dir_is_locked_and_closed_engine_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LogEngine::open(dir.path(), config(1 << 20)).unwrap();
    assert!(matches!(
        LogEngine::open(dir.path(), config(1 << 20)),
        Err(LogError::Locked(_))
    ));
    engine.check_writable().await.unwrap();
    engine.close().await.unwrap();
    assert!(matches!(
        engine.append("t", vec![record(1, 1)]).await,
        Err(LogError::Closed)
    ));
    let again = LogEngine::open(dir.path(), config(1 << 20)).unwrap();
    again.close().await.unwrap();
}

#[tokio::test]
async fn segments_roll_by_age_and_truncate_moves_the_end_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(1 << 20);
    cfg.segment_ms = 0;
    let engine = LogEngine::open(dir.path(), cfg).unwrap();
    engine.create_topic_now("t", 1).unwrap();
    append_n(&engine, "t", 5, |_| 1).await;
    assert_eq!(engine.partition("t", 0).unwrap().segment_count(), 5);
    engine.truncate("t", 0, 3).unwrap();
    assert_eq!(engine.partition_offsets("t", 0).unwrap().high_watermark, 3);
    assert_eq!(
        engine.append("t", vec![record(7, 1)]).await.unwrap()[0].offset,
        3
    );
    let all = read_all(&*engine, "t", 0, 0).await;
    assert_eq!(
        all.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    assert_eq!(all[3].key.as_deref(), Some(&b"key-7"[..]));
    engine.close().await.unwrap();
}

#[tokio::test]
async fn commits_survive_restart_and_topics_from_config_exist() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(1 << 20);
    cfg.auto_create_topics = false;
    cfg.topics.insert(
        "declared".into(),
        crate::TopicConfig {
            partitions: Some(3),
            ..Default::default()
        },
    );
    let engine = LogEngine::open(dir.path(), cfg.clone()).unwrap();
    assert_eq!(engine.partitions("declared").await.unwrap(), 3);
    assert!(matches!(
        engine.partitions("other").await,
        Err(LogError::UnknownTopic(_))
    ));
    engine.commit("g", "declared", 2, 41).await.unwrap();
    engine.close().await.unwrap();
    drop(engine);
    let engine: Arc<LogEngine> = LogEngine::open(dir.path(), cfg).unwrap();
    assert_eq!(
        engine.committed("g", "declared", 2).await.unwrap(),
        Some(41)
    );
    assert_eq!(
        engine.committed_offsets("g"),
        vec![("declared".to_owned(), 2, 41)]
    );
    engine.close().await.unwrap();
}

#[tokio::test]
async fn a_record_too_large_refuses_the_whole_append_with_nothing_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(1 << 20);
    cfg.max_message_bytes = 1_000;
    let engine = LogEngine::open(dir.path(), cfg).unwrap();
    engine.create_topic_now("t", 2).unwrap();
    let small = |p: i32, i: i64| Record {
        partition: Some(p),
        ..record(i, 1)
    };
    let huge = Record {
        partition: Some(1),
        value: Some(Bytes::from(vec![b'x'; 5_000])),
        ..record(9, 1)
    };
    // Partition 0 comes first and would fit: it must not be written either.
    let error = engine
        .append("t", vec![small(0, 0), small(0, 1), small(1, 2), huge])
        .await
        .unwrap_err();
    assert!(
        matches!(error, LogError::MessageTooLarge { .. }),
        "{error:?}"
    );
    // Nothing of the refused call was written: the next record of each partition is its first
    // (a write left behind would become durable with the next append's fsync).
    for p in 0..2 {
        let appended = engine.append("t", vec![small(p, 3)]).await.unwrap();
        assert_eq!(appended[0].offset, 0, "partition {p}");
    }
    engine.close().await.unwrap();
}

#[tokio::test]
async fn prepared_records_are_stored_as_their_header_lists_would_be() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LogEngine::open(dir.path(), config(1 << 20)).unwrap();
    engine.create_topic_now("t", 3).unwrap();
    let records: Vec<Record> = (0..12)
        .map(|i| Record {
            partition: None,
            headers: vec![
                Header {
                    key: "hw.id".into(),
                    value: Some(Bytes::from(format!("e{i}"))),
                },
                Header {
                    key: format!("x-{i}").into(),
                    value: None,
                },
            ],
            // One "now".
            ..record(i, if i == 5 { -1 } else { 1_000 + i })
        })
        .collect();
    let prepared = crate::batch::tests::prepared(&records);
    let appended = engine.append_prepared("t", prepared).await.unwrap();
    assert_eq!(appended.len(), records.len());
    for (r, at) in records.iter().zip(&appended) {
        assert_eq!(
            at.partition,
            partition_for_key(r.key.as_deref().unwrap(), 3)
        );
        let stored = read_all(engine.as_ref(), "t", at.partition, at.offset).await;
        let got = &stored[0];
        assert_eq!(got.offset, at.offset);
        assert_eq!((&got.key, &got.value), (&r.key, &r.value));
        assert_eq!(got.headers, r.headers);
        if r.timestamp_ms < 0 {
            assert!(got.timestamp_ms > 0, "now, not {}", got.timestamp_ms);
        } else {
            assert_eq!(got.timestamp_ms, r.timestamp_ms);
        }
    }
    engine.close().await.unwrap();
}
