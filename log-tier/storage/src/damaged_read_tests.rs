//! Reads of damaged batches in a sealed segment whose index files validate (so recovery trusts
//! it without a CRC scan): the read fails with `Corrupt` and says where a reader may go on.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;

use crate::batch::{BatchHeader, HEADER_LEN};
use crate::config::{FlushMode, FlushPolicy, LogConfig};
use crate::engine::LogEngine;
use crate::error::LogError;
use crate::log::{Log, Record};

fn config() -> LogConfig {
    LogConfig {
        flush: FlushPolicy {
            mode: FlushMode::Os,
            interval_ms: 0,
            linger_us: 0,
        },
        segment_bytes: 4096,
        index_interval_bytes: 4096,
        ..LogConfig::default()
    }
}

/// `(position, base offset, next offset)` of every batch in a segment file.
fn batches(path: &Path) -> Vec<(u64, i64, i64)> {
    let bytes = fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut pos = 0usize;
    while let Some(h) = BatchHeader::parse(&bytes[pos..]) {
        out.push((pos as u64, h.base_offset, h.next_offset()));
        pos += h.total_len();
    }
    out
}

/// The partition's segment files, oldest first (the last one is active).
fn segments(dir: &Path) -> Vec<PathBuf> {
    let pdir = dir.join("topics/t/0");
    let mut logs: Vec<PathBuf> = fs::read_dir(pdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs
}

fn flip(path: &Path, at: u64) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x5a], at).unwrap();
}

async fn read(engine: &LogEngine, offset: i64) -> Result<Vec<i64>, LogError> {
    let records = engine.read("t", 0, offset, 1 << 20, Duration::ZERO).await?;
    Ok(records.into_iter().map(|r| r.offset).collect())
}

/// 60 batches of 5 records over segments of 4 KiB, closed cleanly so every sealed segment's
/// index files are written and trusted at the next open.
async fn engine_with_batches(dir: &Path) {
    let engine = LogEngine::open(dir, config()).unwrap();
    engine.create_topic_now("t", 1).unwrap();
    for b in 0..60 {
        let records = (0..5)
            .map(|i| Record {
                partition: Some(0),
                key: None,
                value: Some(Bytes::from(format!("value-{b}-{i}-{}", "x".repeat(40)))),
                headers: Vec::new(),
                timestamp_ms: -1,
            })
            .collect();
        engine.append("t", records).await.unwrap();
    }
    engine.close().await.unwrap();
}

#[tokio::test]
async fn a_damaged_batch_says_where_to_resume() {
    let dir = tempfile::tempdir().unwrap();
    engine_with_batches(dir.path()).await;
    let sealed = segments(dir.path());
    assert!(sealed.len() >= 3, "expected rolls, got {}", sealed.len());
    // In the first sealed segment: a flipped byte in the records of its third batch (CRC).
    let first = batches(&sealed[0]);
    let (pos, base, next) = first[2];
    flip(&sealed[0], pos + HEADER_LEN as u64 + 3);
    // In the second: the last batch's records (its end is the segment's end).
    let second = batches(&sealed[1]);
    let &(last_pos, last_base, _) = second.last().unwrap();
    flip(&sealed[1], last_pos + HEADER_LEN as u64 + 3);
    let end_of_second = batches(&sealed[2])[0].1;
    // (A damaged header after a sealed segment's last index entry is found by recovery, which
    // quarantines the segment: `recovery_tests.rs`. Before it, see the next test.)
    let engine = LogEngine::open(dir.path(), config()).unwrap();
    // Reading up to the damaged batch serves the batches before it, never the damaged one.
    assert_eq!(
        read(&engine, 0).await.unwrap(),
        (0..base).collect::<Vec<_>>()
    );
    for offset in [base, base + 2] {
        let e = read(&engine, offset).await.unwrap_err();
        assert!(matches!(e, LogError::Corrupt { .. }), "{e}");
        assert_eq!(e.resume_at(), Some(next), "read at {offset}: {e}");
    }
    assert_eq!(read(&engine, next).await.unwrap()[0], next);

    let e = read(&engine, last_base).await.unwrap_err();
    assert_eq!(e.resume_at(), Some(end_of_second), "{e}");
    assert_eq!(
        read(&engine, end_of_second).await.unwrap()[0],
        end_of_second
    );

    engine.close().await.unwrap();
}

#[tokio::test]
async fn an_index_entry_past_damaged_framing_is_a_resume_point() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        index_interval_bytes: 300,
        ..config()
    };
    {
        let engine = LogEngine::open(dir.path(), cfg.clone()).unwrap();
        engine.create_topic_now("t", 1).unwrap();
        for b in 0..40 {
            let value = Bytes::from(format!("value-{b}-{}", "y".repeat(100)));
            let record = Record {
                partition: Some(0),
                key: None,
                value: Some(value),
                headers: Vec::new(),
                timestamp_ms: -1,
            };
            engine.append("t", vec![record]).await.unwrap();
        }
        engine.close().await.unwrap();
    }
    let sealed = segments(dir.path());
    assert!(sealed.len() >= 2, "expected a roll");
    let all = batches(&sealed[0]);
    // The length of batch 1 damaged: neither it nor the next can be framed.
    let (pos, base, _) = all[1];
    flip(&sealed[0], pos + 9);
    let engine = LogEngine::open(dir.path(), cfg).unwrap();
    let e = read(&engine, base).await.unwrap_err();
    let resume = e.resume_at().expect("an index entry past it");
    // The first indexed batch after it: past the damage, before the segment's end.
    assert!(resume > base && resume < all.last().unwrap().2, "{resume}");
    assert!(all.iter().any(|&(_, b, _)| b == resume));
    assert_eq!(read(&engine, resume).await.unwrap()[0], resume);
    engine.close().await.unwrap();
}
