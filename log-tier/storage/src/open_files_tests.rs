//! Tests of the bound on open segment files: many partitions under a small `max_open_files`
//! (appends, reads, reopens after a clean and an unclean stop), and an idle file whose fsync
//! before closing fails.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use crate::config::{FlushMode, FlushPolicy, TopicConfig};
use crate::log::{Log, Record};
use crate::testsuite::read_all;
use crate::{LogConfig, LogEngine, LogError};

const MAX: u32 = 16;
const PARTITIONS: u32 = 100;

/// Two topics of `PARTITIONS` partitions: `ea` fsyncs every append; `bg` acknowledges before
/// its fsync and flushes only every minute, so its files hold unsynced bytes when evicted.
fn config() -> LogConfig {
    let mut cfg = LogConfig {
        max_open_files: Some(MAX),
        segment_bytes: 4096,
        flush: FlushPolicy {
            mode: FlushMode::EveryAppend,
            interval_ms: 0,
            linger_us: 0,
        },
        ..LogConfig::default()
    };
    cfg.topics.insert(
        "bg".to_owned(),
        TopicConfig {
            flush: Some(FlushPolicy {
                mode: FlushMode::Background,
                interval_ms: 60_000,
                linger_us: 0,
            }),
            ..TopicConfig::default()
        },
    );
    cfg
}

fn record(partition: u32, i: usize) -> Record {
    Record {
        partition: Some(partition as i32),
        key: Some(Bytes::from(format!("p{partition}-{i}"))),
        value: Some(Bytes::from(format!("{partition}:{i}:{}", "v".repeat(800)))),
        headers: vec![],
        timestamp_ms: 1,
    }
}

/// Descriptors of this process open on segment files under `dir`, from `/proc/self/fd`
/// (other tests' files live in other directories).
fn fds_under(dir: &Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| {
            target.starts_with(dir.join("topics")) && target.extension().is_some_and(|e| e == "log")
        })
        .count()
}

/// The engine's open segment files never passed the bound, and the descriptors on segment
/// files under `dir` are the engine's (plus `others`, held by an engine dropped unclosed).
fn assert_bounded(engine: &LogEngine, dir: &Path, others: usize, when: &str) {
    let files = &engine.open_files;
    assert!(
        files.peak() <= MAX as usize,
        "{when}: {} segment files open at once, bound {MAX}",
        files.peak()
    );
    let fds = fds_under(dir) - others;
    assert!(
        fds <= MAX as usize,
        "{when}: {fds} descriptors on segment files"
    );
    assert_eq!(
        fds,
        files.open(),
        "{when}: the gauge follows the descriptors"
    );
}

async fn check_all(engine: &LogEngine, rounds: usize) {
    for topic in ["ea", "bg"] {
        for p in 0..PARTITIONS {
            let records = read_all(engine, topic, p as i32, 0).await;
            assert_eq!(records.len(), rounds, "{topic}/{p}");
            for (i, r) in records.iter().enumerate() {
                assert_eq!(r.key, record(p, i).key, "{topic}/{p} offset {i}");
                assert_eq!(r.value, record(p, i).value);
            }
        }
    }
}

#[tokio::test]
async fn many_partitions_share_a_small_bound_of_open_files() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LogEngine::open(dir.path(), config()).unwrap();
    for topic in ["ea", "bg"] {
        engine.create_topic_now(topic, PARTITIONS).unwrap();
    }
    // Round-robin over 200 partitions, 6 rounds of ~870-byte records over 4 KiB segments:
    // every partition rolls once, and every append opens an evicted file.
    let rounds = 6;
    for i in 0..rounds {
        for p in 0..PARTITIONS {
            for topic in ["ea", "bg"] {
                engine.append(topic, vec![record(p, i)]).await.unwrap();
            }
        }
        assert_bounded(&engine, dir.path(), 0, "appending");
    }
    check_all(&engine, rounds).await;
    assert_bounded(&engine, dir.path(), 0, "reading");
    engine.close().await.unwrap();
    drop(engine);
    assert_eq!(
        fds_under(dir.path()),
        0,
        "a closed engine keeps no file open"
    );

    // Clean restart: 300 partitions recovered within the bound.
    let engine = LogEngine::open(dir.path(), config()).unwrap();
    assert_bounded(&engine, dir.path(), 0, "reopening after close");
    check_all(&engine, rounds).await;
    engine.append("bg", vec![record(0, rounds)]).await.unwrap();
    // Unclean stop (no close: every active segment is rescanned) and restart. The dropped
    // engine's pending background flush still holds its partition and open file.
    let crashed = engine.open_files.clone();
    drop(engine);
    let engine = LogEngine::open(dir.path(), config()).unwrap();
    assert_bounded(
        &engine,
        dir.path(),
        crashed.open(),
        "reopening after a crash",
    );
    assert_eq!(read_all(&*engine, "bg", 0, 0).await.len(), rounds + 1);
    engine.close().await.unwrap();
}

#[tokio::test]
async fn a_failed_fsync_before_closing_an_idle_file_fails_its_partition() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.max_open_files = Some(1);
    let engine = LogEngine::open(dir.path(), cfg.clone()).unwrap();
    engine.create_topic_now("bg", 1).unwrap();
    engine.create_topic_now("ea", 4).unwrap();
    let bg_dir = dir.path().join("topics").join("bg").join("0");
    // Acknowledged before its fsync: `bg`'s file holds unsynced bytes.
    let acked = engine.append("bg", vec![record(0, 0)]).await.unwrap();
    assert_eq!(acked[0].offset, 0);
    crate::fault::set_sync_fails(&bg_dir, true);
    // Other partitions' files push `bg`'s out: its fsync before closing fails.
    for p in 0..4 {
        engine.append("ea", vec![record(p, 0)]).await.unwrap();
    }
    crate::fault::set_sync_fails(&bg_dir, false);
    let bg = engine.partition("bg", 0).unwrap();
    assert!(!bg.state().active.holds_file(), "the idle file was closed");
    // The fault is gone, as after a real writeback error: a new descriptor's fsync would
    // succeed, but the failure was recorded and fails the partition at its next flush.
    let err = engine.flush().await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    let refused = engine.append("bg", vec![record(0, 1)]).await.unwrap_err();
    assert!(
        matches!(refused, LogError::Io { .. }) && refused.to_string().contains("fsync failed"),
        "{refused:?}"
    );
    assert!(engine.check_writable_now().is_err());
    // The other partitions go on.
    engine.append("ea", vec![record(0, 1)]).await.unwrap();
    let _ = engine.close().await;
    drop(engine);
    let engine: Arc<LogEngine> = LogEngine::open(dir.path(), cfg).unwrap();
    assert_eq!(read_all(&*engine, "ea", 0, 0).await.len(), 2);
    engine.close().await.unwrap();
}

#[test]
fn the_bound_defaults_to_half_the_soft_descriptor_limit() {
    let (soft, _) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    let want = usize::try_from(soft).unwrap_or(usize::MAX) / 2;
    assert_eq!(
        LogConfig::default().max_open_files(),
        want.clamp(64, 1 << 20)
    );
    let set = LogConfig {
        max_open_files: Some(5),
        ..LogConfig::default()
    };
    assert_eq!(set.max_open_files(), 5);
    assert!(set.validate().is_empty(), "{:?}", set.validate());
    let zero = LogConfig {
        max_open_files: Some(0),
        ..LogConfig::default()
    };
    assert!(
        zero.validate()
            .iter()
            .any(|(key, _)| key == "log.max_open_files"),
        "{:?}",
        zero.validate()
    );
}
