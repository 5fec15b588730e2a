//! Engine lifecycle tests: group commit, large batches in recovery, the clean-shutdown
//! marker, open segment files within `max_open_files`, truncation with waiters, auto-creation
//! within `max_topics`.

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;

use super::tests::{append_n, config, logs, partition_dir, record};
use super::*;
use crate::config::{FlushMode, FlushPolicy};
use crate::log::{Log, Record};
use crate::testsuite::read_all;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appenders_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LogEngine::open(dir.path(), config(1 << 20)).unwrap();
    engine.create_topic_now("t", 1).unwrap();
    let mut tasks = Vec::new();
    for t in 0..64 {
        let engine = engine.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..5 {
                engine
                    .append("t", vec![record(t * 10 + i, 1)])
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let fsyncs = engine
        .partition("t", 0)
        .unwrap()
        .fsyncs
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        engine.partition_offsets("t", 0).unwrap().high_watermark,
        320
    );
    eprintln!("{fsyncs} fsyncs for 320 appends");
    assert!(
        fsyncs < 160,
        "{fsyncs} fsyncs for 320 appends: no group commit"
    );
    engine.close().await.unwrap();
}

/// An appender whose turn to fsync ends with its future dropped mid-fsync (its request
/// cancelled) hands the turn on: the appenders waiting for that fsync are woken and one of them
/// runs the next, instead of waiting for an fsync nobody runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_fsync_turn_is_handed_on() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LogEngine::open(dir.path(), config(1 << 20)).unwrap();
    assert_eq!(engine.config().flush.mode, FlushMode::EveryAppend);
    engine.create_topic_now("t", 1).unwrap();
    let batch = |i| {
        crate::batch::encode(&[&record(i, 1)], crate::batch::ProducerFields::NONE)
            .unwrap()
            .freeze()
    };
    let first = engine.write_batch("t", 0, batch(0)).await.unwrap();
    let second = engine.write_batch("t", 0, batch(1)).await.unwrap();
    let partition = engine.partition("t", 0).unwrap();
    // An interval flush or explicit flush holding the lock keeps the fsync from running.
    let flushing = partition.sync_lock.lock().await;
    let mut first = Box::pin(first.durable());
    // One poll: the first takes the turn and waits for the lock.
    assert!(
        tokio::time::timeout(Duration::ZERO, first.as_mut())
            .await
            .is_err()
    );
    assert!(partition.syncing.load(std::sync::atomic::Ordering::Acquire));
    drop(first);
    drop(flushing);
    let second = tokio::time::timeout(Duration::from_secs(30), second.durable()).await;
    assert_eq!(
        second.expect("the fsync turn was not handed on").unwrap(),
        1
    );
    engine.close().await.unwrap();
}

/// With `linger_us`, appends arriving a few milliseconds apart, each waiting for its own
/// durability, share the fsync that starts a linger after the one before (without it, each
/// would run its own: an fsync here is far shorter than the gaps).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_within_the_linger_share_one_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(1 << 20);
    cfg.flush.linger_us = 300_000;
    let engine = LogEngine::open(dir.path(), cfg).unwrap();
    engine.create_topic_now("t", 1).unwrap();
    let batch = |i| {
        crate::batch::encode(&[&record(i, 1)], crate::batch::ProducerFields::NONE)
            .unwrap()
            .freeze()
    };
    // The first fsync starts at once: none started before it.
    engine
        .write_batch("t", 0, batch(0))
        .await
        .unwrap()
        .durable()
        .await
        .unwrap();
    let partition = engine.partition("t", 0).unwrap();
    let fsyncs = || partition.fsyncs.load(std::sync::atomic::Ordering::Relaxed);
    let before = fsyncs();
    let mut waiting = Vec::new();
    for i in 1..=10 {
        let pending = engine.write_batch("t", 0, batch(i)).await.unwrap();
        waiting.push(tokio::spawn(pending.durable()));
        // Arrivals spread out, as a client fleet's are.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for (i, w) in waiting.into_iter().enumerate() {
        assert_eq!(w.await.unwrap().unwrap(), i as i64 + 1);
    }
    let shared = fsyncs() - before;
    assert!(
        shared <= 2,
        "{shared} fsyncs for 10 appends within the linger"
    );
    engine.close().await.unwrap();
}

#[tokio::test]
async fn recovery_scans_batches_larger_than_and_straddling_its_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(64 << 20);
    cfg.max_message_bytes = 4 << 20;
    cfg.flush.mode = FlushMode::Os;
    let engine = LogEngine::open(dir.path(), cfg.clone()).unwrap();
    engine.create_topic_now("t", 1).unwrap();
    let big = Bytes::from(vec![7u8; 1_500_000]);
    let mut expected = Vec::new();
    for i in 0..2_500 {
        let value = if i % 1000 == 500 {
            big.clone()
        } else {
            Bytes::from(vec![i as u8; 1000 + i % 77])
        };
        let r = Record {
            partition: Some(0),
            value: Some(value.clone()),
            ..Record::default()
        };
        engine.append("t", vec![r]).await.unwrap();
        expected.push(value);
    }
    engine.close().await.unwrap();
    drop(engine);
    let engine = LogEngine::open(dir.path(), cfg).unwrap();
    let all = read_all(&*engine, "t", 0, 0).await;
    assert_eq!(all.len(), expected.len());
    for (r, v) in all.iter().zip(&expected) {
        assert_eq!(r.value.as_ref(), Some(v));
    }
    engine.close().await.unwrap();
}

#[tokio::test]
async fn clean_shutdown_marker_is_trusted_once() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join(".clean_shutdown");
    let engine = LogEngine::open(dir.path(), config(1 << 20)).unwrap();
    engine.create_topic_now("t", 1).unwrap();
    append_n(&engine, "t", 10, |_| 1).await;
    engine.close().await.unwrap();
    drop(engine);
    assert!(marker.exists());
    let pdir = partition_dir(dir.path(), "t");
    assert!(pdir.join("00000000000000000000.index").exists());
    // Clean open: the marker and the active segment's index files go away at once.
    let engine = LogEngine::open(dir.path(), config(1 << 20)).unwrap();
    assert!(!marker.exists());
    assert!(!pdir.join("00000000000000000000.index").exists());
    assert_eq!(engine.partition_offsets("t", 0).unwrap().high_watermark, 10);
    append_n(&engine, "t", 5, |_| 1).await;
    drop(engine); // a crash: no close
    let log = logs(&pdir).pop().unwrap();
    let mut f = OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(&[1, 2, 3]).unwrap();
    drop(f);
    let engine = LogEngine::open(dir.path(), config(1 << 20)).unwrap();
    assert_eq!(engine.partition_offsets("t", 0).unwrap().high_watermark, 15);
    assert_eq!(read_all(&*engine, "t", 0, 0).await.len(), 15);
    engine.close().await.unwrap();
}

#[tokio::test]
async fn segment_files_stay_open_within_max_open_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(4096);
    cfg.max_open_files = Some(3);
    let engine = LogEngine::open(dir.path(), cfg.clone()).unwrap();
    engine.create_topic_now("t", 1).unwrap();
    append_n(&engine, "t", 300, |_| 1).await;
    let open_handles = |engine: &LogEngine| {
        let p = engine.partition("t", 0).unwrap();
        let st = p.state();
        (
            st.segments.len(),
            st.segments.values().filter(|s| s.holds_file()).count(),
        )
    };
    let (segments, open) = open_handles(&engine);
    assert!(segments >= 8, "{segments}");
    assert!(open <= 2, "{open} of {segments} segments hold a file");
    // Reads of sealed segments open their files within the bound.
    assert_eq!(read_all(&*engine, "t", 0, 0).await.len(), 300);
    assert!(open_handles(&engine).1 <= 3);
    assert!(
        engine.open_files.peak() <= 3,
        "{}",
        engine.open_files.peak()
    );
    engine.close().await.unwrap();
    drop(engine);
    // Recovery opens, scans and closes each sealed segment; the active one stays open.
    let engine = LogEngine::open(dir.path(), cfg).unwrap();
    assert_eq!(open_handles(&engine).1, 1);
    // Truncating back into a sealed segment makes it active and keeps it open.
    engine.truncate("t", 0, 5).unwrap();
    assert_eq!(open_handles(&engine), (1, 1));
    append_n(&engine, "t", 3, |_| 1).await;
    assert_eq!(read_all(&*engine, "t", 0, 0).await.len(), 8);
    engine.close().await.unwrap();
}

// Paused clock: the interval flush (300 ms) cannot run unless this test lets time pass, so the
// waiter can only be ended by the truncation's wake-up (the bound below is 100 virtual ms).
#[tokio::test(start_paused = true)]
async fn truncation_fails_waiters_past_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(1 << 20);
    cfg.flush = FlushPolicy {
        mode: FlushMode::Interval,
        interval_ms: 300,
        linger_us: 0,
    };
    let engine = LogEngine::open(dir.path(), cfg).unwrap();
    engine.create_topic_now("t", 1).unwrap();
    append_n(&engine, "t", 3, |_| 1).await;
    // Polled once, the append has written its record and waits for the flush: truncation in
    // flight.
    let mut waiter = std::pin::pin!(engine.append("t", vec![record(9, 1)]));
    let polled = std::future::poll_fn(|cx| Poll::Ready(waiter.as_mut().poll(cx))).await;
    assert!(polled.is_pending(), "{polled:?}");
    assert_eq!(engine.partition("t", 0).unwrap().state().written.offset, 4);
    engine.truncate("t", 0, 3).unwrap();
    let err = tokio::time::timeout(Duration::from_millis(100), waiter)
        .await
        .expect("the truncation wakes the waiter, before any flush")
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    let a = engine.append("t", vec![record(10, 1)]).await.unwrap();
    assert_eq!(a[0].offset, 3);
    let all = read_all(&*engine, "t", 0, 0).await;
    assert_eq!(all[3].key.as_deref(), Some(&b"key-10"[..]));
    engine.close().await.unwrap();
}

fn background(interval_ms: u64) -> LogConfig {
    LogConfig {
        flush: FlushPolicy {
            mode: FlushMode::Background,
            interval_ms,
            linger_us: 0,
        },
        ..config(1 << 20)
    }
}

fn fsyncs(engine: &LogEngine) -> u64 {
    engine
        .partition("t", 0)
        .unwrap()
        .fsyncs
        .load(std::sync::atomic::Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_mode_acknowledges_before_the_fsync_and_keeps_it_across_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    // An hour between fsyncs: `interval` would hold this append that long.
    let engine = LogEngine::open(dir.path(), background(3_600_000)).unwrap();
    engine.create_topic_now("t", 1).unwrap();
    let appended = engine.append("t", vec![record(7, 1)]).await.unwrap();
    assert_eq!(appended[0].offset, 0);
    assert_eq!(fsyncs(&engine), 0, "acknowledged without an fsync");
    // Readable at once, as in Kafka.
    assert_eq!(engine.partition_offsets("t", 0).unwrap().high_watermark, 1);
    // The process "dies" (no close, no flush): the write is in the OS page cache.
    drop(engine);
    let engine = LogEngine::open(dir.path(), background(3_600_000)).unwrap();
    let read = read_all(&*engine, "t", 0, 0).await;
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].value, record(7, 1).value);
    engine.close().await.unwrap();
}

// Paused clock: virtual time passes only while no task can run, and the fsync runs on a
// blocking thread, which holds the clock until it is done; so "after 30 ms" is exact.
#[tokio::test(start_paused = true)]
async fn background_mode_fsyncs_on_its_interval() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LogEngine::open(dir.path(), background(20)).unwrap();
    engine.create_topic_now("t", 1).unwrap();
    append_n(&engine, "t", 10, |_| 1).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(fsyncs(&engine), 0, "not before the interval");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let settled = fsyncs(&engine);
    assert!(settled > 0, "fsynced once the interval passed");
    // Quiet now: no fsync without new writes, however long.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(fsyncs(&engine), settled, "no fsync without new writes");
    assert_eq!(read_all(&*engine, "t", 0, 0).await.len(), 10);
    engine.close().await.unwrap();
}

/// Auto-creation (an append or `partitions` naming a missing topic) stops at `log.max_topics`,
/// as the Kafka listener's does, in the engine and in `MemoryLog`; explicit creations and
/// topics that exist are not affected, and a deleted topic makes room again.
#[tokio::test]
async fn auto_creation_stops_at_max_topics() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::config::LogConfig {
        max_topics: 3,
        default_partitions: 1,
        ..config(1 << 20)
    };
    let engine = LogEngine::open(dir.path(), cfg.clone()).unwrap();
    let memory: Arc<dyn Log> = Arc::new(crate::memory::MemoryLog::new(cfg));
    let logs: [Arc<dyn Log>; 2] = [engine.clone(), memory];
    for log in logs {
        log.create_topic("a", 1).await.unwrap();
        log.append("b", vec![record(0, 1)]).await.unwrap();
        assert_eq!(log.partitions("c").await.unwrap(), 1);
        for refused in [
            log.append("d", vec![record(1, 1)]).await.unwrap_err(),
            log.partitions("d").await.unwrap_err(),
        ] {
            assert!(matches!(refused, LogError::Refused { .. }), "{refused}");
            assert!(!refused.is_retryable());
            let text = crate::error::error_chain(&refused);
            assert!(text.contains("log.max_topics"), "{text}");
        }
        assert_eq!(log.list_topics().await.unwrap().len(), 3);
        log.append("b", vec![record(2, 1)]).await.unwrap();
        log.delete_topic("c").await.unwrap();
        log.append("d", vec![record(3, 1)]).await.unwrap();
    }
    engine.close().await.unwrap();
}

/// With `preallocate_bytes`, the active segment's tail is filled with zeros ahead of the log
/// end (at most `segment_bytes`), appends overwrite it instead of growing the file, and the
/// tail is cut off when the segment rolls and when the log closes: every file then ends at its
/// last batch, and a clean reopen serves every record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_overwrite_a_tail_filled_ahead_which_is_cut_at_roll_and_close() {
    const AHEAD: u64 = 16 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        preallocate_bytes: Some(AHEAD),
        ..config(64 * 1024)
    };
    let engine = LogEngine::open(dir.path(), config.clone()).unwrap();
    engine.create_topic_now("t", 1).unwrap();
    let pdir = partition_dir(dir.path(), "t");
    let len = |path: &std::path::Path| std::fs::metadata(path).unwrap().len();
    engine.append("t", vec![record(0, 1)]).await.unwrap();
    let active = logs(&pdir).pop().unwrap();
    let size = engine.partition("t", 0).unwrap().state().active.size();
    // Filled on a blocking thread: wait for it, boundedly.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while len(&active) < size + AHEAD {
        assert!(
            std::time::Instant::now() < deadline,
            "the tail was not filled: {} bytes for a log of {size}",
            len(&active)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(len(&active), size + AHEAD);
    let filled = std::fs::read(&active).unwrap();
    assert!(filled[size as usize..].iter().all(|&b| b == 0));
    // Fewer bytes than half the tail: overwritten in place, the file does not grow.
    for i in 1..40 {
        engine.append("t", vec![record(i, 1)]).await.unwrap();
    }
    let size = engine.partition("t", 0).unwrap().state().active.size();
    assert!(size < AHEAD / 2 + 200, "{size}");
    assert_eq!(len(&active), filled.len() as u64, "the file grew");
    // On to several rolls; a sealed segment ends at its last batch.
    for i in 40..1200 {
        engine.append("t", vec![record(i, 1)]).await.unwrap();
    }
    let files = logs(&pdir);
    assert!(files.len() >= 3, "{files:?}");
    let ends_at_a_batch = |path: &std::path::Path| {
        let bytes = Bytes::from(std::fs::read(path).unwrap());
        let batches: usize = crate::batch::split_batches(bytes.clone())
            .map(|(_, b)| b.len())
            .sum();
        batches == bytes.len() && bytes.len() as u64 <= 64 * 1024
    };
    for sealed in &files[..files.len() - 1] {
        assert!(
            ends_at_a_batch(sealed),
            "{} ends in zeros",
            sealed.display()
        );
    }
    engine.close().await.unwrap();
    drop(engine);
    for file in logs(&pdir) {
        assert!(ends_at_a_batch(&file), "{} ends in zeros", file.display());
    }
    let engine = LogEngine::open(dir.path(), config).unwrap();
    let all = read_all(&*engine, "t", 0, 0).await;
    assert_eq!(all.len(), 1200);
    assert!(all.iter().enumerate().all(|(i, r)| r.offset == i as i64));
    engine.close().await.unwrap();
}
