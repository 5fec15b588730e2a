//! Per-partition replication metrics, labelled by `topic` and `partition` (bounded: the
//! topics of `log.topics`) and, for replica lag, `replica` (a node id of `log.cluster`):
//!
//! - `headwater_raft_leader{topic,partition}`: 1 while this node leads the partition, else 0;
//! - `headwater_raft_term{topic,partition}`: the current term (the Kafka leader epoch);
//! - `headwater_raft_commit_lag{topic,partition}`: entries in this node's log not yet known
//!   committed;
//! - `headwater_raft_replica_lag{topic,partition,replica}`: on the leader, entries a follower
//!   is behind the leader's log (absent elsewhere);
//! - `headwater_raft_elections_total{topic,partition}`: terms this node has seen begin.

use openraft::ServerState;
use openraft::type_config::async_runtime::watch::WatchReceiver;

use crate::net::RaftNode;

/// Whether this node leads.
pub const LEADER: &str = "headwater_raft_leader";
/// The current term.
pub const TERM: &str = "headwater_raft_term";
/// Local entries not yet committed.
pub const COMMIT_LAG: &str = "headwater_raft_commit_lag";
/// A follower's lag behind the leader's log, on the leader.
pub const REPLICA_LAG: &str = "headwater_raft_replica_lag";
/// Terms seen begin.
pub const ELECTIONS_TOTAL: &str = "headwater_raft_elections_total";

/// Least time between two updates of a partition's gauges.
const REFRESH: std::time::Duration = std::time::Duration::from_millis(250);

/// Follows `raft`'s metrics into the gauges of `topic`/`partition` until the group stops.
pub fn spawn_partition_metrics(topic: String, partition: i32, raft: RaftNode) {
    tokio::spawn(async move {
        let p = partition.to_string();
        let labels = [("topic", topic.clone()), ("partition", p.clone())];
        let leader = metrics::gauge!(LEADER, &labels);
        let term = metrics::gauge!(TERM, &labels);
        let commit_lag = metrics::gauge!(COMMIT_LAG, &labels);
        let elections = metrics::counter!(ELECTIONS_TOTAL, &labels);
        let mut watch = raft.metrics();
        let mut last_term = None;
        loop {
            let m = watch.borrow_and_update().clone();
            let is_leader = m.state == ServerState::Leader;
            leader.set(if is_leader { 1.0 } else { 0.0 });
            term.set(m.current_term as f64);
            if last_term.is_some_and(|t| t < m.current_term) {
                elections.increment(m.current_term - last_term.unwrap_or(m.current_term));
            }
            last_term = Some(m.current_term);
            let last = m.last_log_index.unwrap_or(0);
            let committed = m.local_committed.map_or(0, |c| c.index);
            commit_lag.set(last.saturating_sub(committed) as f64);
            if let (true, Some(replication)) = (is_leader, &m.replication) {
                for (replica, matched) in replication.iter() {
                    let behind = last.saturating_sub(matched.as_ref().map_or(0, |l| l.index));
                    metrics::gauge!(
                        REPLICA_LAG,
                        "topic" => topic.clone(),
                        "partition" => p.clone(),
                        "replica" => replica.to_string()
                    )
                    .set(behind as f64);
                }
            }
            if watch.changed().await.is_err() {
                leader.set(0.0);
                return;
            }
            // Metrics change with every append; a scrape needs no more than a few a second.
            tokio::time::sleep(REFRESH).await;
        }
    });
}
