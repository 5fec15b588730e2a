//! The Kafka surface of a broker in a cluster, over a real engine and a stand-in `Cluster`
//! (the replication itself is tested in headwater-raft and tests/replication.rs): Metadata
//! names every broker and each replicated partition's leader, epoch, replicas and ISR; Produce
//! goes to the cluster's leader path; Fetch and ListOffsets are served only by the leader and
//! check the client's leader epoch (KIP-320); topics are created and deleted through the
//! cluster (auto-creations waiting on it bounded), never by the local engine.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::BoxFuture;
use headwater_log::{LogConfig, LogEngine};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    CreateTopicsRequest, FetchRequest, ListOffsetsRequest, MetadataRequest, ProduceRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::{Cluster, ClusterBroker, ClusterError, ReplicaState};
use crate::principal::Principal;
use crate::{Broker, KafkaOptions};

/// Topic `r` has two replicated partitions: 0 led by this broker (node 1) in epoch 5, 1 led by
/// node 2; appends to partition 0 are recorded and answered at offset 42.
struct StandIn {
    appended: Mutex<Vec<(String, i32, usize)>>,
}

impl Cluster for StandIn {
    fn brokers(&self) -> Vec<ClusterBroker> {
        (1..=3)
            .map(|id| ClusterBroker {
                node_id: id,
                host: "127.0.0.1".to_owned(),
                port: 9090 + id,
            })
            .collect()
    }

    fn controller(&self) -> i32 {
        1
    }

    fn partition(&self, topic: &str, partition: i32) -> Option<ReplicaState> {
        (topic == "r").then(|| ReplicaState {
            leader: Some(if partition == 0 { 1 } else { 2 }),
            leader_epoch: 5,
            replicas: vec![1, 2, 3],
            in_sync: vec![1, 3],
        })
    }

    fn leader_epochs(&self, topic: &str, partition: i32) -> Option<(Vec<(i32, i64)>, i64)> {
        (topic == "r" && partition == 0).then(|| (vec![(2, 0), (5, 10)], 25))
    }

    fn append<'a>(
        &'a self,
        topic: &'a str,
        partition: i32,
        records: Bytes,
    ) -> BoxFuture<'a, Result<i64, ClusterError>> {
        Box::pin(async move {
            if partition != 0 {
                return Err(ClusterError::NotLeader);
            }
            self.appended
                .lock()
                .unwrap()
                .push((topic.to_owned(), partition, records.len()));
            Ok(42)
        })
    }
}

fn broker(dir: &std::path::Path) -> (Broker, Arc<StandIn>) {
    let engine = LogEngine::open(dir, LogConfig::default()).unwrap();
    let stand_in = Arc::new(StandIn {
        appended: Mutex::new(Vec::new()),
    });
    let mut options = KafkaOptions::advertising("127.0.0.1:9091".parse().unwrap());
    options.node_id = 1;
    options.cluster = Some(stand_in.clone());
    (Broker::new(engine, options), stand_in)
}

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

fn one_record_batch() -> Bytes {
    let record = headwater_log::Record {
        partition: Some(0),
        key: None,
        value: Some(Bytes::from_static(b"v")),
        headers: Vec::new(),
        timestamp_ms: 1,
    };
    headwater_log::batch::encode(&[&record], headwater_log::batch::ProducerFields::NONE)
        .unwrap()
        .freeze()
}

#[tokio::test]
async fn metadata_names_every_broker_and_each_partition_s_leader_epoch_and_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, _) = broker(dir.path());
    broker
        .engine
        .create_replicated_topic("r", 2, None)
        .await
        .unwrap();
    let mut request = MetadataRequest::default();
    let mut topic = MetadataRequestTopic::default();
    topic.name = Some(name("r"));
    request.topics = Some(vec![topic]);
    let response = super::metadata(&broker, &Principal::anonymous(), request, 9);
    let ids: Vec<i32> = response.brokers.iter().map(|b| b.node_id.0).collect();
    assert_eq!(ids, vec![1, 2, 3]);
    assert_eq!(response.controller_id.0, 1);
    let partitions = &response.topics[0].partitions;
    assert_eq!(partitions.len(), 2);
    assert_eq!(partitions[0].leader_id.0, 1);
    assert_eq!(partitions[1].leader_id.0, 2);
    assert_eq!(partitions[0].leader_epoch, 5);
    let replicas: Vec<i32> = partitions[0].replica_nodes.iter().map(|b| b.0).collect();
    let isr: Vec<i32> = partitions[0].isr_nodes.iter().map(|b| b.0).collect();
    assert_eq!((replicas, isr), (vec![1, 2, 3], vec![1, 3]));
}

#[tokio::test]
async fn produce_goes_through_the_leader_path_and_elsewhere_is_not_leader() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, stand_in) = broker(dir.path());
    broker
        .engine
        .create_replicated_topic("r", 2, None)
        .await
        .unwrap();
    let mut request = ProduceRequest::default();
    request.acks = -1;
    let mut topic = TopicProduceData::default();
    topic.name = name("r");
    for index in 0..2 {
        let mut p = PartitionProduceData::default();
        p.index = index;
        p.records = Some(one_record_batch());
        topic.partition_data.push(p);
    }
    request.topic_data.push(topic);
    let response = super::produce(&broker, &Principal::anonymous(), request)
        .await
        .durable(&broker)
        .await
        .unwrap();
    let answers = &response.responses[0].partition_responses;
    assert_eq!((answers[0].error_code, answers[0].base_offset), (0, 42));
    assert_eq!(
        answers[1].error_code,
        ResponseError::NotLeaderOrFollower.code()
    );
    assert_eq!(stand_in.appended.lock().unwrap().len(), 1);
}

fn fetch_of(partition: i32, epoch: i32) -> FetchRequest {
    let mut request = FetchRequest::default();
    request.max_bytes = 1 << 20;
    let mut topic = FetchTopic::default();
    topic.topic = name("r");
    let mut p = FetchPartition::default();
    p.partition = partition;
    p.current_leader_epoch = epoch;
    p.partition_max_bytes = 1 << 20;
    topic.partitions.push(p);
    request.topics.push(topic);
    request
}

#[tokio::test]
async fn fetch_is_served_by_the_leader_in_the_client_s_epoch_only() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, _) = broker(dir.path());
    broker
        .engine
        .create_replicated_topic("r", 2, None)
        .await
        .unwrap();
    let code = |partition, epoch| {
        let broker = &broker;
        async move {
            let (response, _) =
                super::fetch(broker, &Principal::anonymous(), fetch_of(partition, epoch)).await;
            response.responses[0].partitions[0].error_code
        }
    };
    assert_eq!(code(0, 5).await, 0, "the leader, same epoch");
    assert_eq!(code(0, -1).await, 0, "no epoch given");
    assert_eq!(code(0, 4).await, ResponseError::FencedLeaderEpoch.code());
    assert_eq!(code(0, 6).await, ResponseError::UnknownLeaderEpoch.code());
    assert_eq!(code(1, 5).await, ResponseError::NotLeaderOrFollower.code());
}

#[tokio::test]
async fn list_offsets_checks_leader_and_epoch_and_answers_the_epoch_of_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, _) = broker(dir.path());
    broker
        .engine
        .create_replicated_topic("r", 2, None)
        .await
        .unwrap();
    let request = |partition: i32, epoch: i32| {
        let mut request = ListOffsetsRequest::default();
        let mut topic = ListOffsetsTopic::default();
        topic.name = name("r");
        let mut p = ListOffsetsPartition::default();
        p.partition_index = partition;
        p.current_leader_epoch = epoch;
        p.timestamp = -1;
        topic.partitions.push(p);
        request.topics.push(topic);
        request
    };
    let answer = |partition, epoch| {
        super::list_offsets(&broker, &Principal::anonymous(), request(partition, epoch)).topics[0]
            .partitions[0]
            .clone()
    };
    let latest = answer(0, 5);
    assert_eq!(
        (latest.error_code, latest.offset, latest.leader_epoch),
        (0, 0, 5)
    );
    assert_eq!(
        answer(0, 3).error_code,
        ResponseError::FencedLeaderEpoch.code()
    );
    assert_eq!(
        answer(1, -1).error_code,
        ResponseError::NotLeaderOrFollower.code()
    );
}

#[tokio::test]
async fn a_cluster_that_takes_no_new_topics_refuses_creation() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, _) = broker(dir.path());
    let mut request = CreateTopicsRequest::default();
    let mut topic = CreatableTopic::default();
    topic.name = name("new");
    topic.num_partitions = 1;
    topic.replication_factor = -1;
    request.topics.push(topic);
    let response = super::create_topics(&broker, &Principal::anonymous(), request).await;
    assert_eq!(
        response.topics[0].error_code,
        ResponseError::PolicyViolation.code()
    );
    assert!(broker.engine.partition_count("new").is_none());
}

#[tokio::test]
async fn offset_for_leader_epoch_answers_where_an_epoch_ended_at_the_leader_only() {
    use kafka_protocol::messages::OffsetForLeaderEpochRequest;
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    let dir = tempfile::tempdir().unwrap();
    let (broker, _) = broker(dir.path());
    broker
        .engine
        .create_replicated_topic("r", 2, None)
        .await
        .unwrap();
    let ask = |partition: i32, current: i32, epoch: i32| {
        let mut request = OffsetForLeaderEpochRequest::default();
        let mut topic = OffsetForLeaderTopic::default();
        topic.topic = name("r");
        let mut p = OffsetForLeaderPartition::default();
        p.partition = partition;
        p.current_leader_epoch = current;
        p.leader_epoch = epoch;
        topic.partitions.push(p);
        request.topics.push(topic);
        let answer = super::offset_for_leader_epoch(&broker, &Principal::anonymous(), request);
        let a = &answer.topics[0].partitions[0];
        (a.error_code, a.leader_epoch, a.end_offset)
    };
    assert_eq!(
        ask(0, 5, 5),
        (0, 5, 25),
        "the current epoch ends at the log end"
    );
    assert_eq!(ask(0, 5, 2), (0, 2, 10), "epoch 2 ends where 5 began");
    assert_eq!(
        ask(0, 5, 4),
        (0, 2, 10),
        "an epoch that never led: the one before it"
    );
    assert_eq!(ask(0, 5, 1), (0, -1, -1), "before the first epoch");
    assert_eq!(ask(0, 4, 2).0, ResponseError::FencedLeaderEpoch.code());
    assert_eq!(ask(1, -1, 2).0, ResponseError::NotLeaderOrFollower.code());
}

/// A cluster that auto-creates topics, whose metadata leader never answers: each creation it
/// is asked for is counted and pends.
struct NeverCreates {
    asked: std::sync::atomic::AtomicUsize,
}

impl Cluster for NeverCreates {
    fn brokers(&self) -> Vec<ClusterBroker> {
        Vec::new()
    }

    fn controller(&self) -> i32 {
        1
    }

    fn partition(&self, _: &str, _: i32) -> Option<ReplicaState> {
        None
    }

    fn append<'a>(
        &'a self,
        _: &'a str,
        _: i32,
        _: Bytes,
    ) -> BoxFuture<'a, Result<i64, ClusterError>> {
        Box::pin(async { Err(ClusterError::NotLeader) })
    }

    fn auto_create_topics(&self) -> bool {
        true
    }

    fn create_topic<'a>(
        &'a self,
        _: &'a str,
        _: u32,
        _: Option<u16>,
    ) -> BoxFuture<'a, Result<(), crate::cluster::TopicRefusal>> {
        self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(futures::future::pending())
    }
}

#[tokio::test]
async fn auto_creations_waiting_on_the_cluster_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let engine = LogEngine::open(dir.path(), LogConfig::default()).unwrap();
    let cluster = Arc::new(NeverCreates {
        asked: std::sync::atomic::AtomicUsize::new(0),
    });
    let mut options = KafkaOptions::advertising("127.0.0.1:9091".parse().unwrap());
    options.cluster = Some(cluster.clone());
    let broker = Broker::new(engine, options);
    let mut request = MetadataRequest::default();
    request.allow_auto_topic_creation = true;
    request.topics = Some(
        (0..200)
            .map(|i| {
                let mut topic = MetadataRequestTopic::default();
                topic.name = Some(name(&format!("new-{i}")));
                topic
            })
            .collect(),
    );
    let response = super::metadata(&broker, &Principal::anonymous(), request, 9);
    assert_eq!(response.topics.len(), 200);
    assert!(
        response
            .topics
            .iter()
            .all(|t| t.error_code == ResponseError::LeaderNotAvailable.code())
    );
    // Each of the first 64 took a permit before the answer; the rest asked nothing.
    assert_eq!(broker.pending_creations.available_permits(), 0);
    let asked = || cluster.asked.load(std::sync::atomic::Ordering::SeqCst);
    for _ in 0..10_000 {
        if asked() == crate::MAX_PENDING_CREATIONS {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(asked(), crate::MAX_PENDING_CREATIONS);
    assert!(
        broker.engine.topic_names().is_empty(),
        "nothing created locally"
    );
}
