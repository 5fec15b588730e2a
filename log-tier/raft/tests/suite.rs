//! openraft's own storage conformance suite (`openraft::testing::log::Suite`) against our log
//! store and state machine over a real `headwater-log` partition on disk.

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
        let dir = tempfile::tempdir().map_err(|e| {
            StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Write, e)
        })?;
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
        let log = engine.replica("t", 0).map_err(|e| storage_error(e.into()))?;
        let storage =
            GroupStorage::open(log, &dir.path().join("raft/t-0")).map_err(storage_error)?;
        let guard = Guard {
            _engine: engine,
            _dir: dir,
        };
        Ok((guard, storage.log, storage.state_machine))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_store_passes_openraft_s_suite_with_fsync_per_append() {
    Suite::test_all(Builder {
        flush: FlushPolicy {
            mode: FlushMode::EveryAppend,
            interval_ms: 100,
        },
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_store_passes_openraft_s_suite_with_interval_flushes() {
    Suite::test_all(Builder {
        flush: FlushPolicy {
            mode: FlushMode::Interval,
            interval_ms: 5,
        },
    })
    .await
    .unwrap();
}
