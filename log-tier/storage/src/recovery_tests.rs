//! Recovery tests: a damaged sealed segment is set aside (quarantined) with its valid prefix
//! kept, the segments after it stay readable, reads skip the hole, and it is counted.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

use crate::config::{FlushMode, FlushPolicy, LogConfig};
use crate::engine::LogEngine;
use crate::log::{Log, Record};
use crate::testsuite::read_all;

/// Counter totals by name.
#[derive(Default)]
struct Counters(Mutex<BTreeMap<String, Arc<AtomicU64>>>);

impl Counters {
    fn get(&self, name: &str) -> u64 {
        let map = self.0.lock().unwrap();
        map.get(name).map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

impl Recorder for Counters {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut map = self.0.lock().unwrap();
        Counter::from_arc(map.entry(key.name().to_owned()).or_default().clone())
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

fn config() -> LogConfig {
    LogConfig {
        flush: FlushPolicy {
            mode: FlushMode::EveryAppend,
            interval_ms: 0,
            linger_us: 0,
        },
        segment_bytes: 4096,
        index_interval_bytes: 200,
        ..LogConfig::default()
    }
}

fn record(i: i64) -> Record {
    Record {
        partition: Some(0),
        key: Some(Bytes::from(format!("key-{i}"))),
        value: Some(Bytes::from(format!("value-{i}-{}", "x".repeat(50)))),
        headers: vec![],
        timestamp_ms: 1000 + i,
    }
}

fn key(i: i64) -> Option<Bytes> {
    Some(Bytes::from(format!("key-{i}")))
}

/// The segment files of partition 0 of `topic`, in offset order.
fn segment_files(dir: &Path, topic: &str) -> Vec<PathBuf> {
    let pdir = dir.join("topics").join(topic).join("0");
    let mut v: Vec<_> = fs::read_dir(&pdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

fn base_of(path: &Path) -> i64 {
    path.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

/// Opens the engine and counts what recovery reported.
fn open_with_counters(dir: &Path) -> (Arc<LogEngine>, Counters) {
    let counters = Counters::default();
    let engine =
        metrics::with_local_recorder(&counters, || LogEngine::open(dir, config())).unwrap();
    (engine, counters)
}

/// Opens the engine and counts the quarantines recovery reported.
fn open_counting(dir: &Path) -> (Arc<LogEngine>, u64) {
    let (engine, counters) = open_with_counters(dir);
    (
        engine,
        counters.get(crate::metrics::QUARANTINED_SEGMENTS_TOTAL),
    )
}

#[tokio::test]
async fn corrupt_sealed_segment_is_quarantined_and_later_segments_kept() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LogEngine::open(dir.path(), config()).unwrap();
    engine.create_topic_now("t", 1).unwrap();
    for i in 0..200 {
        engine.append("t", vec![record(i)]).await.unwrap();
    }
    engine.close().await.unwrap();
    drop(engine);
    let segments = segment_files(dir.path(), "t");
    assert!(
        segments.len() >= 5,
        "expected rolls, got {}",
        segments.len()
    );
    let (damaged, next) = (&segments[1], base_of(&segments[2]));
    let damaged_base = base_of(damaged);

    // Bit rot in the middle of a sealed segment whose index no longer validates either.
    let len = fs::metadata(damaged).unwrap().len();
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(damaged)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, len / 2).unwrap();
    f.write_all_at(&[b[0] ^ 0xff], len / 2).unwrap();
    drop(f);
    let original = fs::read(damaged).unwrap();
    fs::write(damaged.with_extension("index"), b"garbage").unwrap();

    let (engine, quarantined) = open_counting(dir.path());
    assert_eq!(quarantined, 1);
    let aside = damaged.with_extension("log.quarantined");
    assert_eq!(fs::read(&aside).unwrap(), original, "every byte kept aside");
    assert_eq!(
        engine.partition_offsets("t", 0).unwrap().high_watermark,
        200,
        "the segments after the damaged one are kept"
    );

    // Every record after the damaged segment is there.
    let after = read_all(&*engine, "t", 0, next).await;
    assert_eq!(after.len() as i64, 200 - next);
    for r in &after {
        assert_eq!(r.key, key(r.offset));
    }
    // The damaged segment's valid prefix is still readable; the rest of it is a hole that
    // reads skip.
    let all = read_all(&*engine, "t", 0, 0).await;
    let offsets: Vec<i64> = all.iter().map(|r| r.offset).collect();
    let hole: Vec<i64> = (0..200).filter(|o| !offsets.contains(o)).collect();
    assert!(!hole.is_empty() && hole.len() < 40, "hole {hole:?}");
    assert!(
        hole.iter().all(|&o| o > damaged_base && o < next),
        "only the damaged segment's tail is missing: {hole:?}"
    );
    for r in &all {
        assert_eq!(r.key, key(r.offset));
    }
    let skipped = engine
        .read("t", 0, hole[0], 1, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(skipped[0].offset, next, "a read in the hole skips it");

    // Appends continue at the log end, and a second open finds nothing more to set aside.
    assert_eq!(
        engine.append("t", vec![record(200)]).await.unwrap()[0].offset,
        200
    );
    engine.close().await.unwrap();
    drop(engine);
    let (engine, quarantined) = open_counting(dir.path());
    assert_eq!(quarantined, 0);
    assert_eq!(read_all(&*engine, "t", 0, 0).await.len(), all.len() + 1);
    engine.close().await.unwrap();
}

/// A sealed segment damaged at its first batch keeps nothing but its quarantined copy; a
/// segment whose offsets overlap the previous one's is set aside whole. Neither loses the
/// segments after it.
#[tokio::test]
async fn unreadable_and_overlapping_segments_are_set_aside_whole() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LogEngine::open(dir.path(), config()).unwrap();
    engine.create_topic_now("t", 1).unwrap();
    for i in 0..200 {
        engine.append("t", vec![record(i)]).await.unwrap();
    }
    engine.close().await.unwrap();
    drop(engine);
    let segments = segment_files(dir.path(), "t");
    // The first batch of segment 1 is corrupt (its CRC-covered attributes flipped).
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&segments[1])
        .unwrap();
    f.write_all_at(&[0x7f], 21).unwrap();
    drop(f);
    fs::remove_file(segments[1].with_extension("index")).unwrap();
    // Segment 3 also reappears under a base inside segment 2 (an overlap).
    let overlap_base = base_of(&segments[2]) + 1;
    let overlap = segments[2]
        .parent()
        .unwrap()
        .join(crate::segment::file_name(overlap_base, "log"));
    fs::copy(&segments[3], &overlap).unwrap();

    let (engine, quarantined) = open_counting(dir.path());
    assert_eq!(quarantined, 2);
    assert!(!segments[1].exists(), "nothing valid to keep");
    assert!(segments[1].with_extension("log.quarantined").exists());
    assert!(!overlap.exists());
    let all = read_all(&*engine, "t", 0, 0).await;
    let offsets: Vec<i64> = all.iter().map(|r| r.offset).collect();
    let expected: Vec<i64> = (0..200)
        .filter(|&o| o < base_of(&segments[1]) || o >= base_of(&segments[2]))
        .collect();
    assert_eq!(offsets, expected);
    for r in &all {
        assert_eq!(r.key, key(r.offset));
    }
    engine.close().await.unwrap();
}

/// Appends `bytes` to the end of `path`.
fn append_bytes(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

/// Zeros after the last batch are a tail filled ahead of appends (`log.preallocate_bytes`)
/// whose cut at a roll or a close did not reach the disk before a crash: recovery cuts them off
/// without counting them as torn or setting the segment aside, and loses no record. Zeros
/// followed by anything else are still damage.
#[tokio::test]
async fn a_zero_filled_tail_is_cut_off_not_taken_for_damage() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LogEngine::open(dir.path(), config()).unwrap();
    engine.create_topic_now("t", 1).unwrap();
    for i in 0..200 {
        engine.append("t", vec![record(i)]).await.unwrap();
    }
    drop(engine); // a crash: no close
    let segments = segment_files(dir.path(), "t");
    assert!(segments.len() >= 3, "expected rolls");
    let (sealed, active) = (&segments[1], segments.last().unwrap());
    let lens: Vec<u64> = segments
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .collect();
    // The active segment's tail may be filled already; the sealed one's was cut at its roll.
    assert!(lens[1] <= 4096);
    append_bytes(sealed, &[0; 3000]);
    append_bytes(active, &[0; 5000]);

    let (engine, counters) = open_with_counters(dir.path());
    assert_eq!(counters.get(crate::metrics::QUARANTINED_SEGMENTS_TOTAL), 0);
    assert_eq!(
        counters.get(crate::metrics::RECOVERY_TRUNCATED_BYTES_TOTAL),
        0
    );
    assert_eq!(
        engine.partition_offsets("t", 0).unwrap().high_watermark,
        200
    );
    let all = read_all(&*engine, "t", 0, 0).await;
    assert_eq!(all.len(), 200);
    for r in &all {
        assert_eq!(r.key, key(r.offset));
    }
    assert_eq!(fs::metadata(sealed).unwrap().len(), lens[1], "cut back");
    engine.close().await.unwrap();
    drop(engine);

    // Zeros, then a byte that is not: a damaged sealed segment, set aside with its batches kept.
    let mut tail = vec![0; 3000];
    tail.push(1);
    append_bytes(sealed, &tail);
    let (engine, quarantined) = open_counting(dir.path());
    assert_eq!(quarantined, 1);
    assert_eq!(read_all(&*engine, "t", 0, 0).await.len(), 200);
    engine.close().await.unwrap();
}
