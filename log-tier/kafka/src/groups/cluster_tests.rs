//! The group coordinator of a broker in a cluster that replicates offsets, over a real engine
//! and a stand-in `Cluster` whose coordinator tests move (the replication itself is tested in
//! headwater-raft and tests/replicated_groups.rs): FindCoordinator names the offsets
//! partition's leader; every group API elsewhere answers NOT_COORDINATOR (or
//! COORDINATOR_LOAD_IN_PROGRESS / COORDINATOR_NOT_AVAILABLE); OffsetCommit at the coordinator
//! goes through the cluster; groups are dropped when the coordinator moves away.

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use headwater_log::{LogConfig, LogEngine};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    DescribeGroupsRequest, FindCoordinatorRequest, GroupId, HeartbeatRequest, LeaveGroupRequest,
    OffsetCommitRequest, OffsetFetchRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::tests::join_request;
use crate::cluster::{Cluster, ClusterBroker, ClusterError, GroupCoordinator, ReplicaState};
use crate::{Broker, KafkaOptions};

/// Brokers 1–3 (this one is 1); commits are recorded and applied to the engine, as the
/// offsets partition's state machine would, unless `fail` says otherwise.
struct StandIn {
    engine: Arc<LogEngine>,
    coordinator: Mutex<GroupCoordinator>,
    fail: Mutex<Option<ClusterError>>,
    commits: Mutex<Vec<Vec<(String, i32, i64)>>>,
}

impl Cluster for StandIn {
    fn brokers(&self) -> Vec<ClusterBroker> {
        (1..=3)
            .map(|id| ClusterBroker {
                node_id: id,
                host: format!("node-{id}"),
                port: 9090 + id,
            })
            .collect()
    }

    fn controller(&self) -> i32 {
        1
    }

    fn partition(&self, _topic: &str, _partition: i32) -> Option<ReplicaState> {
        None
    }

    fn append<'a>(
        &'a self,
        _topic: &'a str,
        _partition: i32,
        _records: bytes::Bytes,
    ) -> BoxFuture<'a, Result<i64, ClusterError>> {
        Box::pin(async { Err(ClusterError::NotLeader) })
    }

    fn group_coordinator(&self) -> GroupCoordinator {
        *self.coordinator.lock().unwrap()
    }

    fn commit_offsets<'a>(
        &'a self,
        group: &'a str,
        offsets: &'a [(&'a str, i32, i64)],
    ) -> BoxFuture<'a, Result<(), ClusterError>> {
        Box::pin(async move {
            if let Some(error) = self.fail.lock().unwrap().take() {
                return Err(error);
            }
            self.commits.lock().unwrap().push(
                offsets
                    .iter()
                    .map(|&(t, p, o)| (t.to_owned(), p, o))
                    .collect(),
            );
            for r in self.engine.commit_offsets(group, offsets).await {
                r.unwrap();
            }
            Ok(())
        })
    }
}

fn broker(dir: &std::path::Path) -> (Broker, Arc<StandIn>) {
    let engine = LogEngine::open(dir, LogConfig::default()).unwrap();
    engine.create_topic_now("t", 2).unwrap();
    let stand_in = Arc::new(StandIn {
        engine: engine.clone(),
        coordinator: Mutex::new(GroupCoordinator::Here),
        fail: Mutex::new(None),
        commits: Mutex::new(Vec::new()),
    });
    let mut options = KafkaOptions::advertising("127.0.0.1:9091".parse().unwrap());
    options.node_id = 1;
    options.cluster = Some(stand_in.clone());
    (Broker::new(engine, options), stand_in)
}

fn group() -> GroupId {
    GroupId(StrBytes::from_static_str("g"))
}

fn commit(partitions: &[(&str, i32, i64)]) -> OffsetCommitRequest {
    let topics = partitions
        .iter()
        .map(|&(topic, partition, offset)| {
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(partition)
                        .with_committed_offset(offset),
                ])
        })
        .collect();
    OffsetCommitRequest::default()
        .with_group_id(group())
        .with_generation_id_or_member_epoch(-1)
        .with_topics(topics)
}

fn fetch() -> OffsetFetchRequest {
    OffsetFetchRequest::default()
        .with_group_id(group())
        .with_topics(Some(vec![
            OffsetFetchRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partition_indexes(vec![0, 1]),
        ]))
}

async fn commit_codes(broker: &Broker, request: OffsetCommitRequest) -> Vec<i16> {
    let response = broker.groups.offset_commit(request).await;
    response
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect()
}

#[tokio::test]
async fn find_coordinator_names_the_offsets_leader_in_every_version() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, stand_in) = broker(dir.path());
    let keys = FindCoordinatorRequest::default().with_coordinator_keys(vec![
        StrBytes::from_static_str("a"),
        StrBytes::from_static_str("b"),
    ]);
    *stand_in.coordinator.lock().unwrap() = GroupCoordinator::Elsewhere(3);
    let v3 = super::find_coordinator(&broker, FindCoordinatorRequest::default(), 3);
    assert_eq!((v3.error_code, v3.node_id.0, v3.port), (0, 3, 9093));
    assert_eq!(v3.host.as_str(), "node-3");
    let v4 = super::find_coordinator(&broker, keys.clone(), 4);
    let answers: Vec<(&str, i32, i16)> = v4
        .coordinators
        .iter()
        .map(|c| (c.key.as_str(), c.node_id.0, c.error_code))
        .collect();
    assert_eq!(answers, [("a", 3, 0), ("b", 3, 0)]);

    for here in [GroupCoordinator::Here, GroupCoordinator::Loading] {
        *stand_in.coordinator.lock().unwrap() = here;
        let v0 = super::find_coordinator(&broker, FindCoordinatorRequest::default(), 0);
        assert_eq!((v0.error_code, v0.node_id.0, v0.port), (0, 1, 9091));
        assert_eq!(v0.host.as_str(), "node-1");
    }

    *stand_in.coordinator.lock().unwrap() = GroupCoordinator::Unknown;
    let unavailable = ResponseError::CoordinatorNotAvailable.code();
    let v1 = super::find_coordinator(&broker, FindCoordinatorRequest::default(), 1);
    assert_eq!((v1.error_code, v1.node_id.0), (unavailable, -1));
    let v4 = super::find_coordinator(&broker, keys, 4);
    assert!(v4.coordinators.iter().all(|c| c.error_code == unavailable));
}

#[tokio::test]
async fn every_group_api_elsewhere_answers_that_this_broker_does_not_coordinate() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, stand_in) = broker(dir.path());
    for (state, error) in [
        (
            GroupCoordinator::Elsewhere(2),
            ResponseError::NotCoordinator,
        ),
        (
            GroupCoordinator::Loading,
            ResponseError::CoordinatorLoadInProgress,
        ),
        (
            GroupCoordinator::Unknown,
            ResponseError::CoordinatorNotAvailable,
        ),
    ] {
        *stand_in.coordinator.lock().unwrap() = state;
        let code = error.code();
        let groups = &broker.groups;
        let join = groups
            .join(join_request("g", "", 10), 5, "client", "127.0.0.1")
            .await;
        assert_eq!(join.error_code, code, "{state:?}");
        let sync = groups
            .sync(SyncGroupRequest::default().with_group_id(group()))
            .await;
        assert_eq!(sync.error_code, code);
        let heartbeat = groups.heartbeat(HeartbeatRequest::default().with_group_id(group()));
        assert_eq!(heartbeat.error_code, code);
        let leave = groups.leave(LeaveGroupRequest::default().with_group_id(group()), 4);
        assert_eq!(leave.error_code, code);
        let described =
            groups.describe_groups(DescribeGroupsRequest::default().with_groups(vec![group()]));
        assert_eq!(described.groups[0].error_code, code);
        assert_eq!(commit_codes(&broker, commit(&[("t", 0, 5)])).await, [code]);
        let fetched = groups.offset_fetch(fetch(), 7);
        assert_eq!(fetched.error_code, code);
        let partition_codes: Vec<i16> = fetched.topics[0]
            .partitions
            .iter()
            .map(|p| p.error_code)
            .collect();
        assert_eq!(partition_codes, [code, code]);
    }
    assert!(stand_in.commits.lock().unwrap().is_empty());
    assert_eq!(broker.engine.committed_offset("g", "t", 0), None);
}

#[tokio::test]
async fn the_coordinator_commits_through_the_cluster_and_reads_its_store() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, stand_in) = broker(dir.path());
    let codes = commit_codes(&broker, commit(&[("t", 0, 5), ("t", 7, 1), ("nope", 0, 2)])).await;
    let unknown = ResponseError::UnknownTopicOrPartition.code();
    assert_eq!(codes, [0, unknown, unknown]);
    assert_eq!(
        *stand_in.commits.lock().unwrap(),
        [vec![("t".to_owned(), 0, 5)]]
    );
    let fetched = broker.groups.offset_fetch(fetch(), 7);
    let offsets: Vec<(i64, i16)> = fetched.topics[0]
        .partitions
        .iter()
        .map(|p| (p.committed_offset, p.error_code))
        .collect();
    assert_eq!(offsets, [(5, 0), (-1, 0)]);

    // Nothing known: nothing proposed.
    assert_eq!(
        commit_codes(&broker, commit(&[("nope", 0, 2)])).await,
        [unknown]
    );
    assert_eq!(stand_in.commits.lock().unwrap().len(), 1);

    for (error, code) in [
        (ClusterError::NotLeader, ResponseError::NotCoordinator),
        (ClusterError::OutcomeUnknown, ResponseError::NotCoordinator),
        (
            ClusterError::Stopped("gone".to_owned()),
            ResponseError::CoordinatorNotAvailable,
        ),
    ] {
        *stand_in.fail.lock().unwrap() = Some(error);
        assert_eq!(
            commit_codes(&broker, commit(&[("t", 1, 9)])).await,
            [code.code()]
        );
    }
    assert_eq!(broker.engine.committed_offset("g", "t", 1), None);
}

#[tokio::test]
async fn groups_are_dropped_once_the_coordinator_moves_away() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, stand_in) = broker(dir.path());
    let joined = broker
        .groups
        .join(join_request("g", "", 10), 3, "client", "127.0.0.1")
        .await;
    assert_eq!(joined.error_code, 0);
    assert_eq!(broker.groups.list_groups().groups.len(), 1);
    *stand_in.coordinator.lock().unwrap() = GroupCoordinator::Loading;
    broker.groups.reap();
    assert_eq!(broker.groups.list_groups().groups.len(), 1);
    *stand_in.coordinator.lock().unwrap() = GroupCoordinator::Elsewhere(2);
    broker.groups.reap();
    assert!(broker.groups.list_groups().groups.is_empty());
    *stand_in.coordinator.lock().unwrap() = GroupCoordinator::Here;
    let heartbeat = broker.groups.heartbeat(
        HeartbeatRequest::default()
            .with_group_id(group())
            .with_member_id(joined.member_id)
            .with_generation_id(joined.generation_id),
    );
    assert_eq!(heartbeat.error_code, ResponseError::UnknownMemberId.code());
}

/// After a takeover (this broker saw another coordinate first), a group's first rebalance
/// waits one session timeout for the previous coordinator's members, and takes in every member
/// that joins meanwhile; a first election (nobody coordinated before) waits for nobody.
#[tokio::test(start_paused = true)]
async fn after_a_takeover_the_first_rebalance_waits_for_the_old_members() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, stand_in) = broker(dir.path());
    *stand_in.coordinator.lock().unwrap() = GroupCoordinator::Elsewhere(2);
    broker.groups.reap();
    *stand_in.coordinator.lock().unwrap() = GroupCoordinator::Here;
    broker.groups.reap();
    let session = std::time::Duration::from_secs(10);
    let first = broker
        .groups
        .join(join_request("g", "", 10), 3, "first", "127.0.0.1");
    let second = broker
        .groups
        .join(join_request("g", "", 10), 3, "second", "127.0.0.1");
    tokio::pin!(first, second);
    assert!(futures::poll!(&mut first).is_pending());
    tokio::time::advance(session / 2).await;
    assert!(futures::poll!(&mut second).is_pending());
    tokio::time::advance(session / 2 - std::time::Duration::from_millis(10)).await;
    broker.groups.reap();
    assert!(
        futures::poll!(&mut first).is_pending(),
        "completed before the hold"
    );
    tokio::time::advance(std::time::Duration::from_millis(20)).await;
    broker.groups.reap();
    let (first, second) = (first.await, second.await);
    assert_eq!((first.error_code, second.error_code), (0, 0));
    assert_eq!(first.generation_id, 1);
    assert_eq!(second.generation_id, 1);
    let leader = if first.members.is_empty() {
        &second
    } else {
        &first
    };
    assert_eq!(
        leader.members.len(),
        2,
        "both members in the first generation"
    );

    // A broker whose first coordination is a first election holds nothing.
    let dir = tempfile::tempdir().unwrap();
    let (fresh, _stand_in) = self::broker(dir.path());
    let joined = fresh
        .groups
        .join(join_request("h", "", 10), 3, "client", "127.0.0.1");
    tokio::pin!(joined);
    match futures::poll!(&mut joined) {
        std::task::Poll::Ready(joined) => assert_eq!(joined.generation_id, 1),
        std::task::Poll::Pending => panic!("a first election held the rebalance"),
    }
}
