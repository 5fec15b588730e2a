//! Offsets store tests: persistence, torn tail, compaction (in the background: commits during
//! it, crashes between its steps, a topic deleted meanwhile), legacy migration, unknown topics,
//! the entry limit, and one fsync per commit request.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::{LogConfig, LogEngine};

fn engine(dir: &Path) -> std::sync::Arc<LogEngine> {
    let engine = LogEngine::open(dir, LogConfig::default()).unwrap();
    engine.create_topic_now("t", 2).unwrap();
    engine
}

#[tokio::test]
async fn offsets_persist_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    e.commit_offset("g", "t", 0, 5).await.unwrap();
    e.commit_offset("g", "t", 0, 7).await.unwrap();
    e.commit_offset("g", "t", 1, 3).await.unwrap();
    e.close().await.unwrap();
    drop(e);
    let e = engine(dir.path());
    assert_eq!(e.committed_offset("g", "t", 0), Some(7));
    assert_eq!(e.committed_offset("g", "t", 1), Some(3));
    e.close().await.unwrap();
}

#[tokio::test]
async fn unknown_topic_or_partition_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(dir.path());
    assert!(matches!(
        e.commit_offset("g", "nope", 0, 1).await,
        Err(LogError::UnknownTopic(_))
    ));
    let results = e
        .commit_offsets("g", &[("t", 0, 1), ("t", 9, 1), ("nope", 0, 1)])
        .await;
    assert!(results[0].is_ok());
    assert!(matches!(results[1], Err(LogError::UnknownPartition { .. })));
    assert!(matches!(results[2], Err(LogError::UnknownTopic(_))));
    assert_eq!(e.committed_offset("g", "t", 0), Some(1));
    assert_eq!(e.committed_offset("g", "t", 9), None);
    assert_eq!(e.committed_offset("g", "nope", 0), None);
    e.close().await.unwrap();
}

#[tokio::test]
async fn torn_tail_is_ignored_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let store = OffsetStore::open(dir.path()).unwrap();
    store.commit("g", "t", 0, 1).await.unwrap();
    store.commit("g", "t", 0, 2).await.unwrap();
    drop(store);
    let mut f = OpenOptions::new()
        .append(true)
        .open(dir.path().join(LOG_FILE))
        .unwrap();
    f.write_all(br#"{"group":"g","topic":"t","partition":0,"off"#)
        .unwrap();
    drop(f);
    let store = OffsetStore::open(dir.path()).unwrap();
    assert_eq!(store.get("g", "t", 0), Some(2));
    store.commit("g", "t", 1, 9).await.unwrap();
    drop(store);
    let store = OffsetStore::open(dir.path()).unwrap();
    assert_eq!(store.get("g", "t", 0), Some(2));
    assert_eq!(store.get("g", "t", 1), Some(9));
}

#[tokio::test]
async fn compaction_keeps_latest_values() {
    let dir = tempfile::tempdir().unwrap();
    let store = OffsetStore::open(dir.path()).unwrap();
    let entries: Vec<(&str, i32, i64)> = (0..100).map(|p| ("t", p, 0)).collect();
    // ~100 records of ~55 bytes per round: 1 MiB takes ~200 rounds; go well past it.
    for round in 0..400i64 {
        let batch: Vec<(&str, i32, i64)> = entries.iter().map(|&(t, p, _)| (t, p, round)).collect();
        assert!(
            store
                .commit_many("g", &batch)
                .await
                .iter()
                .all(Result::is_ok)
        );
    }
    store.compaction_idle().await;
    assert!(store.compactions() >= 1);
    let len = fs::metadata(dir.path().join(LOG_FILE)).unwrap().len();
    assert!(len < 2 << 20, "log was never compacted: {len} bytes");
    drop(store);
    let store = OffsetStore::open(dir.path()).unwrap();
    for p in 0..100 {
        assert_eq!(store.get("g", "t", p), Some(399));
    }
}

#[tokio::test]
async fn legacy_json_file_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join(LEGACY_FILE),
        br#"[{"group":"g","topic":"t","partition":0,"offset":42},
            {"group":"h","topic":"t","partition":1,"offset":7}]"#,
    )
    .unwrap();
    let store = OffsetStore::open(dir.path()).unwrap();
    assert_eq!(store.get("g", "t", 0), Some(42));
    assert_eq!(store.get("h", "t", 1), Some(7));
    assert!(!dir.path().join(LEGACY_FILE).exists());
    store.commit("g", "t", 0, 43).await.unwrap();
    drop(store);
    let store = OffsetStore::open(dir.path()).unwrap();
    assert_eq!(store.get("g", "t", 0), Some(43));
    assert_eq!(store.get("h", "t", 1), Some(7));
}

#[tokio::test]
async fn entries_beyond_the_limit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_entries: 2,
        ..Limits::default()
    };
    let store = OffsetStore::open_with(dir.path(), limits).unwrap();
    let results = store
        .commit_many("g", &[("t", 0, 1), ("t", 1, 1), ("t", 2, 1), ("t", 0, 5)])
        .await;
    assert!(results[0].is_ok() && results[1].is_ok() && results[3].is_ok());
    let Err(LogError::InvalidArgument(message)) = &results[2] else {
        panic!("expected a limit error, got {:?}", results[2]);
    };
    assert!(message.contains("too many committed offsets"), "{message}");
    assert_eq!(store.get("g", "t", 0), Some(5));
    assert_eq!(store.get("g", "t", 2), None);
}

#[tokio::test]
async fn one_request_of_100k_entries_is_one_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let e = LogEngine::open(dir.path(), LogConfig::default()).unwrap();
    e.create_topic_now("t", 1).unwrap();
    let before = e.offsets.syncs();
    let entries: Vec<(&str, i32, i64)> = (0..100_000).map(|i| ("t", 0, i)).collect();
    let results = e.commit_offsets("g", &entries).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(e.offsets.syncs() - before, 1);
    assert_eq!(e.committed_offset("g", "t", 0), Some(99_999));
    e.close().await.unwrap();
}

/// A store compacting once its log passes 4 KiB (and 4 records per live key).
fn small_store(dir: &Path) -> OffsetStore {
    let limits = Limits {
        compact_min_bytes: 4096,
        ..Limits::default()
    };
    OffsetStore::open_with(dir, limits).unwrap()
}

/// Commits `offset` for partitions `keys` of topic `topic`, failing rather than hanging.
async fn commit_round(store: &OffsetStore, topic: &str, keys: std::ops::Range<i32>, offset: i64) {
    let entries: Vec<(&str, i32, i64)> = keys.map(|p| (topic, p, offset)).collect();
    let results = tokio::time::timeout(Duration::from_secs(30), store.commit_many("g", &entries))
        .await
        .expect("a commit never waits for a compaction's snapshot");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

fn temp_files(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect()
}

fn lines(path: &Path) -> usize {
    fs::read(path)
        .unwrap()
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

/// What a crash now would leave: a copy of the directory, the temp file cut to `keep` of its
/// bytes (a write torn mid-line).
fn crash_image(dir: &Path, keep: impl Fn(u64) -> u64) -> tempfile::TempDir {
    let image = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = fs::read(&path).unwrap();
        let len = if path.to_string_lossy().ends_with(".tmp") {
            keep(bytes.len() as u64) as usize
        } else {
            bytes.len()
        };
        fs::write(image.path().join(path.file_name().unwrap()), &bytes[..len]).unwrap();
    }
    image
}

#[tokio::test]
async fn commits_go_on_while_compaction_runs_and_a_crash_loses_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_store(dir.path());
    let (reached, resume) = store.pause_next_compaction();
    // 10 keys, a round each until the log passes 4 KiB (about 8 rounds).
    let mut last = 0;
    while !store.compacting() {
        last += 1;
        assert!(last < 1000, "no compaction started");
        commit_round(&store, "t", 0..10, last).await;
    }
    tokio::time::timeout(Duration::from_secs(30), reached)
        .await
        .expect("a compaction started")
        .unwrap();
    let before = lines(&dir.path().join(LOG_FILE));
    // Held with its snapshot written: commits of old and new keys go on.
    assert_eq!(temp_files(dir.path()).len(), 1);
    for round in 100..103 {
        commit_round(&store, "t", 5..20, round).await;
    }
    let expect = |store: &OffsetStore, when: &str| {
        for p in 0..20 {
            let want = if p < 5 { last } else { 102 };
            assert_eq!(store.get("g", "t", p), Some(want), "{when}: partition {p}");
        }
    };
    expect(&store, "during the compaction");
    // A crash now: the old log is whole, the snapshot complete or torn; both are dropped.
    for (what, keep) in [("whole", 1.0), ("half-written", 0.5), ("empty", 0.0)] {
        let image = crash_image(dir.path(), |len| (len as f64 * keep) as u64);
        let recovered = small_store(image.path());
        expect(&recovered, &format!("after a crash with a {what} snapshot"));
        assert!(temp_files(image.path()).is_empty(), "{what}");
    }
    resume.send(()).unwrap();
    store.compaction_idle().await;
    assert_eq!(store.compactions(), 1);
    expect(&store, "after the swap");
    let after = lines(&dir.path().join(LOG_FILE));
    // At most 10 snapshot entries plus the 45 records committed while it was held.
    assert!(
        after <= 10 + 45,
        "{after} records after compaction, {before} before"
    );
    assert!(temp_files(dir.path()).is_empty());
    // Appends continue in the new file; a restart reads it back.
    commit_round(&store, "t", 0..1, 7).await;
    drop(store);
    let store = small_store(dir.path());
    assert_eq!(store.get("g", "t", 0), Some(7));
    for p in 1..20 {
        assert_eq!(store.get("g", "t", p), Some(if p < 5 { last } else { 102 }));
    }
}

#[tokio::test]
async fn a_topic_deleted_during_compaction_stays_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = small_store(dir.path());
    let (reached, resume) = store.pause_next_compaction();
    for round in 0..40 {
        commit_round(&store, "t", 0..5, round).await;
        commit_round(&store, "u", 0..5, round).await;
    }
    tokio::time::timeout(Duration::from_secs(30), reached)
        .await
        .expect("a compaction started")
        .unwrap();
    // The snapshot held by the compaction still has `t`.
    store.remove_topic("t").await.unwrap();
    resume.send(()).unwrap();
    store.compaction_idle().await;
    assert_eq!(store.compactions(), 0, "the compaction gave up");
    assert!(temp_files(dir.path()).is_empty());
    drop(store);
    let store = small_store(dir.path());
    assert_eq!(store.get("g", "t", 0), None);
    assert_eq!(store.get("g", "u", 4), Some(39));
}

#[tokio::test]
async fn closing_stops_a_running_compaction_before_its_swap() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(small_store(dir.path()));
    let (reached, resume) = store.pause_next_compaction();
    let mut last = 0;
    while !store.compacting() {
        last += 1;
        assert!(last < 1000, "no compaction started");
        commit_round(&store, "t", 0..10, last).await;
    }
    tokio::time::timeout(Duration::from_secs(30), reached)
        .await
        .expect("a compaction started")
        .unwrap();
    let before = fs::read(dir.path().join(LOG_FILE)).unwrap();
    let closing = tokio::spawn({
        let store = store.clone();
        async move { store.close().await }
    });
    // Resume only once `close` has begun (it marks the store closed before waiting).
    while !store.inner.closed.load(Ordering::Acquire) {
        tokio::task::yield_now().await;
    }
    resume.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), closing)
        .await
        .expect("close waits for the compaction, which gives up")
        .unwrap();
    assert_eq!(store.compactions(), 0);
    assert_eq!(fs::read(dir.path().join(LOG_FILE)).unwrap(), before);
    assert!(temp_files(dir.path()).is_empty());
}
