//! Crash test: a child process (this test binary re-executed) appends with acknowledgements
//! written to a file and is SIGKILLed at random moments, 22 times. After every kill the log is
//! reopened: each acknowledged offset reads back byte-identical, offsets are dense and ordered,
//! and every visible record is whole (nothing unacknowledged is half-visible).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test (or bench) fails by panicking

mod common;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use headwater_log::{FlushMode, FlushPolicy, Log, LogConfig, LogEngine, Record, TopicConfig};
use rand::{Rng, SeedableRng};

const DIR_ENV: &str = "HEADWATER_CRASH_CHILD_DIR";
const KILLS: usize = 22;

fn config() -> LogConfig {
    let mut config = LogConfig {
        segment_bytes: 16 * 1024,
        index_interval_bytes: 512,
        ..LogConfig::default()
    };
    let topic = |mode, partitions| TopicConfig {
        partitions: Some(partitions),
        flush: Some(FlushPolicy {
            mode,
            interval_ms: 5,
            linger_us: 0,
        }),
        ..TopicConfig::default()
    };
    config
        .topics
        .insert("every".into(), topic(FlushMode::EveryAppend, 2));
    config
        .topics
        .insert("interval".into(), topic(FlushMode::Interval, 1));
    config
}

/// The value of record `j` of batch `seed`: derived, so any visible record can be checked.
fn value(seed: u64, j: usize) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (j as u64 + 1);
    let len = (seed % 700) as usize + j;
    let mut v = format!("{seed}:{j}:").into_bytes();
    for _ in 0..len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x as u8);
    }
    Bytes::from(v)
}

fn key(seed: u64, j: usize) -> Bytes {
    Bytes::from(format!("{seed}:{j}"))
}

/// The child: appends forever from 4 tasks, logging each acknowledged record.
#[test]
#[ignore = "run by crash_recovery_keeps_every_acknowledged_record as a child process"]
fn crash_child() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let engine = LogEngine::open(Path::new(&dir).join("data").as_path(), config()).unwrap();
        let acks = Arc::new(std::sync::Mutex::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(Path::new(&dir).join("acks"))
                .unwrap(),
        ));
        let mut tasks = Vec::new();
        for task in 0..4u64 {
            let (engine, acks) = (engine.clone(), acks.clone());
            tasks.push(tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::from_os_rng();
                loop {
                    let seed: u64 = rng.random::<u64>() >> 4 << 2 | task;
                    let topic = if task == 3 { "interval" } else { "every" };
                    let n = rng.random_range(1..6);
                    let records: Vec<Record> = (0..n)
                        .map(|j| Record {
                            partition: Some((seed % 2) as i32 * i32::from(topic == "every")),
                            key: Some(key(seed, j)),
                            value: Some(value(seed, j)),
                            headers: vec![],
                            timestamp_ms: -1,
                        })
                        .collect();
                    let appended = engine.append(topic, records).await?;
                    let mut lines = String::new();
                    for (j, a) in appended.iter().enumerate() {
                        lines.push_str(&format!(
                            "{topic} {} {} {seed} {j}\n",
                            a.partition, a.offset
                        ));
                    }
                    acks.lock().unwrap().write_all(lines.as_bytes()).unwrap();
                }
                #[allow(unreachable_code)]
                Ok::<(), headwater_log::LogError>(())
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
    });
}

#[test]
fn crash_recovery_keeps_every_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let total_acked = common::kill_loop("crash_child", DIR_ENV, dir.path(), KILLS, || {
        rt.block_on(verify(dir.path()))
    });
    assert!(
        total_acked > 100,
        "children acknowledged only {total_acked} records"
    );
    eprintln!("{KILLS} kills, {total_acked} acknowledged records verified");
}

/// Reopens the log and checks it against the acknowledgements; returns how many were checked.
async fn verify(dir: &Path) -> usize {
    let engine = LogEngine::open(&dir.join("data"), config()).unwrap();
    let acks = std::fs::read_to_string(dir.join("acks")).unwrap_or_default();
    let mut acked: BTreeMap<(String, i32, i64), (u64, usize)> = BTreeMap::new();
    // A line torn by the kill has no newline: ignore it.
    for line in acks.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        let f: Vec<&str> = line.split_whitespace().collect();
        acked.insert(
            (
                f[0].to_owned(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            ),
            (f[3].parse().unwrap(), f[4].parse().unwrap()),
        );
    }
    for (topic, partition) in [("every", 0), ("every", 1), ("interval", 0)] {
        let o = engine.offsets(topic, partition).await.unwrap();
        assert_eq!(o.log_start, 0);
        let mut next = 0;
        while next < o.high_watermark {
            let records = engine
                .read(topic, partition, next, 256 * 1024, Duration::ZERO)
                .await
                .unwrap();
            assert!(!records.is_empty());
            for r in records {
                assert_eq!(
                    r.offset, next,
                    "offsets dense and ordered in {topic}/{partition}"
                );
                let k = String::from_utf8(r.key.clone().unwrap().to_vec()).unwrap();
                let (seed, j) = k.split_once(':').unwrap();
                let (seed, j): (u64, usize) = (seed.parse().unwrap(), j.parse().unwrap());
                assert_eq!(
                    r.value.as_ref(),
                    Some(&value(seed, j)),
                    "record {next} is whole"
                );
                if let Some(&(s, jj)) = acked.get(&(topic.to_owned(), partition, r.offset)) {
                    assert_eq!(
                        (s, jj),
                        (seed, j),
                        "acknowledged offset {topic}/{partition}/{next} holds its record"
                    );
                }
                next += 1;
            }
        }
        let lost: Vec<_> = acked
            .keys()
            .filter(|(t, p, off)| t == topic && *p == partition && *off >= o.high_watermark)
            .collect();
        assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    }
    engine.close().await.unwrap();
    acked.len()
}
