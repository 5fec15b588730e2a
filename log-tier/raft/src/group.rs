//! One Raft group's storage and the settings every group runs with.

use std::path::Path;
use std::sync::Arc;

use headwater_log::ReplicaLog;

use crate::error::ReplicationError;
use crate::sm::StateMachine;
use crate::store::LogStore;

/// The log store and state machine of one group, over the same partition.
pub struct GroupStorage {
    /// openraft's log storage.
    pub log: LogStore,
    /// openraft's state machine.
    pub state_machine: StateMachine,
}

impl GroupStorage {
    /// Opens the storage of the group replicating `log`, its Raft state (vote, snapshot
    /// metadata) in `state_dir`.
    pub fn open(log: ReplicaLog, state_dir: &Path) -> Result<Self, ReplicationError> {
        Ok(Self {
            log: LogStore::open(log.clone(), state_dir)?,
            state_machine: StateMachine::open(log, state_dir)?,
        })
    }
}

/// The Raft settings of a data partition's group (docs/design/replication.md, "Timers for 2
/// shared cores"): heartbeats every 100 ms, elections after 0.8–1.0 s of silence (openraft
/// waits the leader lease, `election_timeout_max`, then the election timeout: 500 + 300..500
/// ms; `log.cluster.election_timeout_ms` changes them), Pre-Vote so an
/// isolated node cannot depose a healthy leader on rejoining, no leader restore without an
/// election, and snapshots only when retention asks (they hold no data), never a purge of its
/// own.
///
/// Follower log reversion is allowed: a follower that comes back with less than it once
/// acknowledged (a damaged disk whose tail recovery cut, or `os`/`background` flush modes after
/// a machine crash) is re-replicated by the leader. Without it openraft panics the *leader's*
/// group on seeing the shorter log, so one damaged follower would stop the partition (found by
/// the torn-tail fault of tests/replication.rs). A damaged follower still counts in elections
/// with its shorter log; rejoining under a new identity (design 2.7) is the remaining fix.
pub fn raft_config(cluster_name: &str) -> Result<Arc<openraft::Config>, openraft::ConfigError> {
    raft_config_with(cluster_name, DEFAULT_ELECTION_TIMEOUT_MS)
}

/// The election timeout of [`raft_config`], in milliseconds (`log.cluster.election_timeout_ms`).
pub const DEFAULT_ELECTION_TIMEOUT_MS: [u64; 2] = [300, 500];

/// [`raft_config`] with elections after `[min, max]` milliseconds of silence (after the leader
/// lease, which is `max`).
pub fn raft_config_with(
    cluster_name: &str,
    [min, max]: [u64; 2],
) -> Result<Arc<openraft::Config>, openraft::ConfigError> {
    let config = openraft::Config {
        cluster_name: cluster_name.to_owned(),
        heartbeat_interval: 100,
        election_timeout_min: min,
        election_timeout_max: max,
        heartbeat_min_interval: Some(100),
        install_snapshot_timeout: 2000,
        enable_pre_vote: Some(true),
        enable_leader_restore: Some(false),
        allow_log_reversion: Some(true),
        snapshot_policy: openraft::SnapshotPolicy::Never,
        // A snapshot holds no data, so openraft must never purge on its own after building
        // one (by default it keeps only the last 1,000 entries): only retention purges, up to
        // the point it names (`node::purge_expired`).
        max_in_snapshot_log_to_keep: u64::MAX,
        ..Default::default()
    };
    config.validate().map(Arc::new)
}
