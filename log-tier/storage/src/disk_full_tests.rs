//! Disk-full test: a 1 MiB tmpfs (or, when mounting is not allowed, injected ENOSPC) fills up;
//! appends fail with a retryable `DiskFull`, nothing acknowledged is lost, and appends resume
//! once space returns. A failed fsync fails its partition until restart.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::config::{FlushMode, FlushPolicy};
use crate::log::{Log, Record};
use crate::testsuite::read_all;

struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn try_mount_tmpfs(dir: &Path, size: &str) -> Option<Mount> {
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| Mount(dir.to_path_buf()))
}

fn value(i: usize) -> Bytes {
    Bytes::from(format!("{i:08}-{}", "v".repeat(1000)))
}

fn config() -> LogConfig {
    LogConfig {
        flush: FlushPolicy {
            mode: FlushMode::EveryAppend,
            interval_ms: 0,
            linger_us: 0,
        },
        segment_bytes: 64 * 1024,
        max_message_bytes: 16 * 1024,
        ..LogConfig::default()
    }
}

/// Appends one record at a time until the disk is full (with no tmpfs, injected from append
/// `inject_at` on), checks that the refusal is a retryable `DiskFull`, and returns what was
/// acknowledged.
async fn fill_up(
    engine: &LogEngine,
    data: &Path,
    tmpfs: bool,
    inject_at: usize,
) -> Vec<(i64, Bytes)> {
    let mut acked: Vec<(i64, Bytes)> = Vec::new();
    for i in 0..5000 {
        if !tmpfs && i == inject_at {
            crate::fault::set_disk_full(data, true);
        }
        let r = Record {
            partition: Some(0),
            value: Some(value(i)),
            timestamp_ms: 1,
            ..Record::default()
        };
        match engine.append("t", vec![r]).await {
            Ok(a) => acked.push((a[0].offset, value(i))),
            Err(e) => {
                assert!(
                    matches!(e, LogError::DiskFull { .. }) && e.is_retryable(),
                    "{e:?}"
                );
                return acked;
            }
        }
    }
    panic!("the disk never filled up");
}

/// Gives the space back (the filler removed, or the injection ended), appends once more (the
/// next offset, densely), and checks every acknowledged record before and after a reopen.
async fn resume_and_reopen(
    engine: std::sync::Arc<LogEngine>,
    data: &Path,
    cfg: LogConfig,
    filler: Option<&Path>,
    mut acked: Vec<(i64, Bytes)>,
) {
    match filler {
        Some(filler) => std::fs::remove_file(filler).unwrap(),
        None => crate::fault::set_disk_full(data, false),
    }
    engine.check_writable().await.unwrap();
    let next = acked.last().unwrap().0 + 1;
    let r = Record {
        partition: Some(0),
        value: Some(value(99_999)),
        ..Record::default()
    };
    let a = engine.append("t", vec![r]).await.unwrap();
    assert_eq!(a[0].offset, next, "offsets stay dense after the failure");
    acked.push((next, value(99_999)));
    check_acked(&engine, &acked).await;
    engine.close().await.unwrap();
    drop(engine);
    let engine = LogEngine::open(data, cfg).unwrap();
    check_acked(&engine, &acked).await;
    engine.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_is_retryable_loses_nothing_and_recovers() {
    let base = tempfile::tempdir().unwrap();
    let data = base.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mount = try_mount_tmpfs(&data, "1m");
    eprintln!(
        "disk-full test uses {}",
        if mount.is_some() {
            "a 1 MiB tmpfs"
        } else {
            "injected ENOSPC"
        }
    );
    let filler = data.join("filler");
    if mount.is_some() {
        std::fs::write(&filler, vec![0u8; 128 * 1024]).unwrap();
    }
    let engine = LogEngine::open(&data, config()).unwrap();
    engine.create_topic_now("t", 1).unwrap();
    let acked = fill_up(&engine, &data, mount.is_some(), 300).await;
    assert!(acked.len() > 100, "only {} appends fit", acked.len());
    assert!(engine.check_writable().await.is_err());
    // Still full: still a clean, typed refusal.
    let r = Record {
        partition: Some(0),
        value: Some(value(0)),
        ..Record::default()
    };
    assert!(matches!(
        engine.append("t", vec![r]).await,
        Err(LogError::DiskFull { .. })
    ));
    let filler = mount.is_some().then_some(filler.as_path());
    resume_and_reopen(engine, &data, config(), filler, acked).await;
    drop(mount);
}

/// With zeros written ahead of the log end (`log.preallocate_bytes`, far more than the disk
/// has), the disk fills as it does without them: the zero writes that find no space are cut
/// back, appends land in the zeros that did fit, about as many appends fit as without
/// preallocation, the refusal is the same retryable `DiskFull`, appends resume densely once
/// space returns, and a reopen serves exactly what was acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preallocation_that_finds_the_disk_full_costs_no_appends() {
    let mut fitted = Vec::new();
    for preallocate in [0, 4 << 20] {
        let base = tempfile::tempdir().unwrap();
        let data = base.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let mount = try_mount_tmpfs(&data, "2m");
        let cfg = LogConfig {
            // No roll: one segment's zeros could take the whole disk.
            segment_bytes: 64 << 20,
            preallocate_bytes: Some(preallocate),
            ..config()
        };
        let filler = data.join("filler");
        if mount.is_some() {
            std::fs::write(&filler, vec![0u8; 256 * 1024]).unwrap();
        }
        let engine = LogEngine::open(&data, cfg.clone()).unwrap();
        engine.create_topic_now("t", 1).unwrap();
        let acked = fill_up(&engine, &data, mount.is_some(), 1500).await;
        fitted.push(acked.len());
        let filler = mount.is_some().then_some(filler.as_path());
        resume_and_reopen(engine, &data, cfg, filler, acked).await;
        drop(mount);
    }
    eprintln!("appends that fitted: {fitted:?} (without, with preallocation)");
    assert!(fitted[0] > 1000, "only {} appends fit", fitted[0]);
    assert!(
        fitted[1] * 10 >= fitted[0] * 9,
        "preallocation cost appends at disk full: {fitted:?}"
    );
}

async fn check_acked(engine: &LogEngine, acked: &[(i64, Bytes)]) {
    let all = read_all(engine, "t", 0, 0).await;
    assert_eq!(all.len(), acked.len());
    for (r, (offset, v)) in all.iter().zip(acked) {
        assert_eq!(r.offset, *offset);
        assert_eq!(r.value.as_ref(), Some(v));
    }
    let _ = engine.read("t", 0, 0, 1, Duration::ZERO).await.unwrap();
}

#[tokio::test]
async fn injected_write_errors_are_disk_full_too() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LogEngine::open(dir.path(), config()).unwrap();
    let r = || Record {
        partition: Some(0),
        value: Some(value(1)),
        ..Record::default()
    };
    engine.create_topic_now("t", 1).unwrap();
    engine.append("t", vec![r()]).await.unwrap();
    crate::fault::set_disk_full(dir.path(), true);
    let err = engine.append("t", vec![r()]).await.unwrap_err();
    crate::fault::set_disk_full(dir.path(), false);
    assert!(matches!(err, LogError::DiskFull { .. }) && err.is_retryable());
    assert_eq!(engine.append("t", vec![r()]).await.unwrap()[0].offset, 1);
    engine.close().await.unwrap();
}

/// A failed fsync fails the partition: in `every_append` and `interval` the writes it covered
/// are rolled back and their appenders get a retryable error; in every mode, once the fault is
/// gone (Linux reports a writeback error once, so a second fsync would "succeed" without the
/// lost pages), neither a retried append of the same records nor a flush is acknowledged. A
/// restart recovers the partition from disk: every acknowledged record is there, and appends
/// continue densely.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_fsync_fails_the_partition_until_restart() {
    for mode in [
        FlushMode::EveryAppend,
        FlushMode::Interval,
        FlushMode::Background,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LogConfig {
            flush: FlushPolicy {
                mode,
                // Background: only the explicit flushes below fsync.
                interval_ms: if mode == FlushMode::Background {
                    3_600_000
                } else {
                    5
                },
                linger_us: 0,
            },
            segment_bytes: 8 * 1024,
            ..LogConfig::default()
        };
        let engine = LogEngine::open(dir.path(), cfg.clone()).unwrap();
        engine.create_topic_now("t", 1).unwrap();
        let rec = |i: usize| Record {
            partition: Some(0),
            value: Some(value(i)),
            ..Record::default()
        };
        let mut acked = Vec::new();
        for i in 0..20 {
            acked.push((
                engine.append("t", vec![rec(i)]).await.unwrap()[0].offset,
                value(i),
            ));
        }
        crate::fault::set_sync_fails(dir.path(), true);
        if mode == FlushMode::Background {
            // Acknowledged before their fsync; the background flush is what fails.
            assert!(engine.flush().await.unwrap_err().is_retryable());
        } else {
            let mut tasks = Vec::new();
            for i in 100..108 {
                let engine = engine.clone();
                tasks.push(tokio::spawn(async move {
                    engine.append("t", vec![rec(i)]).await
                }));
            }
            for t in tasks {
                let err = t.await.unwrap().unwrap_err();
                assert!(err.is_retryable(), "{err:?}");
            }
            assert_eq!(engine.partition_offsets("t", 0).unwrap().high_watermark, 20);
        }
        // The fault is gone, as a reported writeback error is: nothing may pretend the lost
        // pages are durable now.
        crate::fault::set_sync_fails(dir.path(), false);
        for i in 100..103 {
            let err = engine.append("t", vec![rec(i)]).await.unwrap_err();
            assert!(err.is_retryable(), "{mode:?}: {err:?}");
            assert!(err.to_string().contains("fsync failed"), "{err}");
        }
        assert!(
            engine.flush().await.is_err(),
            "{mode:?}: a retried fsync succeeded"
        );
        assert!(engine.check_writable().await.is_err(), "{mode:?}");
        check_acked(&engine, &acked).await;
        assert!(engine.close().await.is_err(), "{mode:?}: closed cleanly");
        drop(engine);

        let engine = LogEngine::open(dir.path(), cfg).unwrap();
        check_acked(&engine, &acked).await;
        engine.check_writable().await.unwrap();
        for i in 200..230 {
            let a = engine.append("t", vec![rec(i)]).await.unwrap();
            assert_eq!(a[0].offset, acked.len() as i64, "{mode:?}");
            acked.push((a[0].offset, value(i)));
        }
        engine.flush().await.unwrap();
        check_acked(&engine, &acked).await;
        engine.close().await.unwrap();
    }
}
