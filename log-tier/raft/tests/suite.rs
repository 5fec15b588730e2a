//! openraft's own storage conformance suite (`openraft::testing::log::Suite`) against our log
//! store and state machine over a real `headwater-log` partition on disk.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

use std::io;
use std::sync::Arc;

use headwater_log::{FlushMode, FlushPolicy, LogConfig, LogEngine};
use headwater_raft::{GroupStorage, LogStore, ReplicationError, StateMachine, TypeConfig};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::{ErrorSubject, ErrorVerb, StorageError};

/// Keeps a store's data directory and engine alive while the suite uses it.
struct Guard {
    _engine: Arc<LogEngine>,
    _dir: tempfile::TempDir,
}

struct Builder {
    flush: FlushPolicy,
}

fn storage_error(e: ReplicationError) -> StorageError<TypeConfig> {
    StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Write, io::Error::from(e))
}

impl StoreBuilder<TypeConfig, LogStore, StateMachine, Guard> for Builder {
    async fn build(&self) -> Result<(Guard, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir()
            .map_err(|e| StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Write, e))?;
        let config = LogConfig {
            flush: self.flush.clone(),
            ..LogConfig::default()
        };
        let engine = LogEngine::open(&dir.path().join("log"), config)
            .map_err(|e| storage_error(e.into()))?;
        engine
            .create_replicated_topic("t", 1, None)
            .await
            .map_err(|e| storage_error(e.into()))?;
        let log = engine
            .replica("t", 0)
            .map_err(|e| storage_error(e.into()))?;
        let storage =
            GroupStorage::open(log, &dir.path().join("raft/t-0")).map_err(storage_error)?;
        let guard = Guard {
            _engine: engine,
            _dir: dir,
        };
        Ok((guard, storage.log, storage.state_machine))
    }
}

type TheSuite = Suite<TypeConfig, LogStore, StateMachine, Builder, Guard>;

/// Runs one of the suite's checks on fresh stores, fsync per append.
async fn check<F, Fu>(name: &str, test: F)
where
    F: Fn(LogStore, StateMachine) -> Fu,
    Fu: std::future::Future<Output = Result<(), io::Error>>,
{
    let builder = Builder {
        flush: FlushPolicy {
            mode: FlushMode::EveryAppend,
            interval_ms: 100,
            linger_us: 0,
        },
    };
    let (_guard, store, sm) = builder.build().await.unwrap();
    if let Err(e) = test(store, sm).await {
        panic!("openraft suite check {name} failed: {e}");
    }
}

/// One test per check of the suite, so a failure names the check.
macro_rules! suite_checks {
    ($($name:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                check(stringify!($name), TheSuite::$name).await;
            }
        )*
    };
}

suite_checks! {
    last_membership_in_log_initial,
    last_membership_in_log,
    last_membership_in_log_multi_step,
    get_membership_initial,
    get_membership_from_log_and_empty_sm,
    get_membership_from_empty_log_and_sm,
    get_membership_from_log_le_sm_last_applied,
    get_membership_from_log_gt_sm_last_applied_1,
    get_membership_from_log_gt_sm_last_applied_2,
    get_initial_state_without_init,
    get_initial_state_membership_from_empty_log_and_sm,
    get_initial_state_membership_from_sm_inlog_is_smaller,
    get_initial_state_membership_from_log_insm_is_smaller,
    get_initial_state_with_state,
    get_initial_state_last_log_gt_sm,
    get_initial_state_last_log_lt_sm,
    get_initial_state_inverted_log_order,
    get_initial_state_conflict_at_same_index,
    get_initial_state_log_ids,
    get_initial_state_re_apply_committed,
    save_vote,
    get_log_entries,
    limited_get_log_entries,
    leader_bounded_stream,
    entries_stream,
    try_get_log_entry,
    log_reader_reads_new_entries,
    initial_logs,
    get_log_state,
    get_log_id,
    last_id_in_log,
    last_applied_state,
    purge_logs_upto_0,
    purge_logs_upto_5,
    purge_logs_upto_20,
    delete_logs_after_11,
    delete_logs_after_5,
    delete_logs_after_0,
    delete_logs_after_none,
    append_to_log,
    snapshot_meta,
    snapshot_meta_optional,
    apply_single,
    apply_multiple,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_built_on_one_store_installs_on_another() {
    let builder = Builder {
        flush: FlushPolicy {
            mode: FlushMode::EveryAppend,
            interval_ms: 100,
            linger_us: 0,
        },
    };
    TheSuite::transfer_snapshot(&builder).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_suite_passes_with_interval_flushes() {
    TheSuite::test_all(Builder {
        flush: FlushPolicy {
            mode: FlushMode::Interval,
            interval_ms: 5,
            linger_us: 0,
        },
    })
    .await
    .unwrap();
}
