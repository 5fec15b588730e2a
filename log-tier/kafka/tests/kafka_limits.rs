//! The listener's limits on the wire: Fetch within `fetch.max.bytes` semantics (a cap for
//! the whole response, one oversized first batch at most, a partition listed many times
//! answered once), topics and partitions capped in CreateTopics, Metadata and Produce, and
//! connections capped in total and per IP address.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

#[path = "kafka_security/support.rs"]
#[allow(dead_code)] // helpers serve the other test files
mod support;

use bytes::Bytes;
use headwater_log::Record;
use headwater_log::batch::{ProducerFields, encode};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, BrokerId, CreateTopicsRequest,
    CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, FetchRequest, FetchResponse,
    MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use support::{RawClient, Security, TestBroker};

const KIB: usize = 1024;

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_owned()))
}

/// CreateTopics v5 of `topic` with `partitions`: the error code and message.
fn create_topic(client: &mut RawClient, topic: &str, partitions: i32) -> (i16, String) {
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(name(topic))
                .with_num_partitions(partitions)
                .with_replication_factor(1),
        ]);
    client.send(ApiKey::CreateTopics, 5, &request);
    let response: CreateTopicsResponse = client.response(ApiKey::CreateTopics, 5);
    let result = &response.topics[0];
    let message = result.error_message.as_ref().map(|m| m.to_string());
    (result.error_code, message.unwrap_or_default())
}

/// Produce v8 (acks all) of one record with a `value_bytes` value to `topic`/`partition`: the
/// error code and message.
fn produce(
    client: &mut RawClient,
    topic: &str,
    partition: i32,
    value_bytes: usize,
) -> (i16, String) {
    let record = Record {
        partition: None,
        key: None,
        value: Some(Bytes::from(vec![b'v'; value_bytes])),
        headers: Vec::new(),
        timestamp_ms: headwater_log::now_ms(),
    };
    let batch = encode(&[&record], ProducerFields::NONE).unwrap().freeze();
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(name(topic))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(batch)),
                ]),
        ]);
    client.send(ApiKey::Produce, 8, &request);
    let response: ProduceResponse = client.response(ApiKey::Produce, 8);
    let answer = &response.responses[0].partition_responses[0];
    let message = answer.error_message.as_ref().map(|m| m.to_string());
    (answer.error_code, message.unwrap_or_default())
}

/// Fetch v11 from offset 0 of each listed partition (in order, all of one topic), no waiting.
fn fetch(client: &mut RawClient, topic: &str, partitions: &[i32], max_bytes: i32) -> FetchResponse {
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_session_epoch(-1)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(name(topic))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|p| {
                            FetchPartition::default()
                                .with_partition(*p)
                                .with_partition_max_bytes(i32::MAX)
                        })
                        .collect(),
                ),
        ]);
    client.send(ApiKey::Fetch, 11, &request);
    client.response(ApiKey::Fetch, 11)
}

/// Record bytes per answered partition, in answer order.
fn record_bytes(response: &FetchResponse) -> Vec<(i32, usize)> {
    response
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| {
            assert_eq!(p.error_code, 0, "partition {}", p.partition_index);
            (p.partition_index, p.records.as_ref().map_or(0, Bytes::len))
        })
        .collect()
}

#[test]
fn a_partition_listed_a_thousand_times_is_read_once_within_the_cap() {
    let cap = 256 * KIB;
    let broker = TestBroker::start_with(Security::Plain, |o| o.limits.fetch_max_bytes = cap);
    let mut client = RawClient::connect(broker.addr);
    assert_eq!(create_topic(&mut client, "wide", 1).0, 0);
    for _ in 0..10 {
        assert_eq!(produce(&mut client, "wide", 0, 64 * KIB).0, 0);
    }
    for max_bytes in [-1, 0, i32::MAX] {
        let response = fetch(&mut client, "wide", &[0; 1000], max_bytes);
        let answered = record_bytes(&response);
        assert_eq!(answered.len(), 1, "answered once (max_bytes {max_bytes})");
        let (_, bytes) = answered[0];
        assert!(
            (3 * 64 * KIB..=cap).contains(&bytes),
            "{bytes} bytes for max_bytes {max_bytes}, cap {cap}"
        );
    }
}

#[test]
fn only_the_first_batch_of_a_response_may_pass_max_bytes() {
    let broker = TestBroker::start(Security::Plain);
    let mut client = RawClient::connect(broker.addr);
    assert_eq!(create_topic(&mut client, "mixed", 2).0, 0);
    for _ in 0..3 {
        assert_eq!(produce(&mut client, "mixed", 0, 60 * KIB).0, 0);
    }
    assert_eq!(produce(&mut client, "mixed", 1, 150 * KIB).0, 0);
    let max = 100 * KIB;

    // Partition 0 first: whole batches within 100 KiB (one), none of partition 1's batch,
    // which is larger than what is left.
    let answered = record_bytes(&fetch(&mut client, "mixed", &[0, 1], max as i32));
    assert_eq!(answered.len(), 2);
    assert!((60 * KIB..max).contains(&answered[0].1), "{answered:?}");
    assert_eq!(answered[1], (1, 0), "{answered:?}");

    // Partition 1 first: its 150 KiB batch whole (so a consumer progresses), then nothing.
    let answered = record_bytes(&fetch(&mut client, "mixed", &[1, 0], max as i32));
    assert!(answered[0].1 > 150 * KIB, "{answered:?}");
    assert_eq!(answered[1], (0, 0), "{answered:?}");
}

#[test]
fn topics_and_partitions_are_capped_in_create_metadata_and_produce() {
    let broker = TestBroker::start_with(Security::Plain, |o| {
        o.limits.max_topics = 2;
        o.limits.max_partitions_per_topic = 16;
    });
    let mut client = RawClient::connect(broker.addr);
    let policy = ResponseError::PolicyViolation.code();

    let (code, message) = create_topic(&mut client, "huge", 10_000);
    assert_eq!(code, ResponseError::InvalidPartitions.code(), "{message}");
    assert!(
        message.contains("log.max_partitions_per_topic"),
        "{message}"
    );
    assert_eq!(create_topic(&mut client, "a", 16).0, 0);
    assert_eq!(create_topic(&mut client, "b", 1).0, 0);
    let (code, message) = create_topic(&mut client, "c", 1);
    assert_eq!(code, policy, "{message}");
    assert!(message.contains("log.max_topics"), "{message}");

    // Auto-creation is refused the same way, in Metadata and in Produce.
    let wanted =
        ["d", "d2", "d3"].map(|t| MetadataRequestTopic::default().with_name(Some(name(t))));
    let request = MetadataRequest::default()
        .with_allow_auto_topic_creation(true)
        .with_topics(Some(wanted.to_vec()));
    client.send(ApiKey::Metadata, 9, &request);
    let response: MetadataResponse = client.response(ApiKey::Metadata, 9);
    let codes: Vec<i16> = response.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(codes, [policy; 3]);
    let (code, message) = produce(&mut client, "e", 0, 10);
    assert_eq!(code, policy, "{message}");
    assert!(message.contains("log.max_topics"), "{message}");

    let request = MetadataRequest::default().with_topics(None);
    client.send(ApiKey::Metadata, 9, &request);
    let response: MetadataResponse = client.response(ApiKey::Metadata, 9);
    let mut names: Vec<String> = response
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
        .collect();
    names.sort();
    assert_eq!(names, ["a", "b"]);

    // Deleting one makes room again.
    let request = DeleteTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topic_names(vec![name("a")]);
    client.send(ApiKey::DeleteTopics, 4, &request);
    let response: DeleteTopicsResponse = client.response(ApiKey::DeleteTopics, 4);
    assert_eq!(response.responses[0].error_code, 0);
    assert_eq!(produce(&mut client, "e", 0, 10).0, 0);
}

/// Whether `client` gets an answer to ApiVersions.
fn answers(client: &mut RawClient) -> bool {
    client.send(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default());
    client.read_frame().is_some()
}

#[test]
fn connections_are_capped_per_ip_address() {
    let broker = TestBroker::start_with(Security::Plain, |o| o.limits.max_connections_per_ip = 2);
    let mut first = RawClient::connect(broker.addr);
    let mut second = RawClient::connect(broker.addr);
    assert!(answers(&mut first) && answers(&mut second));
    let mut third = RawClient::connect(broker.addr);
    assert!(third.closed_without_answer(), "a third from 127.0.0.1");
    assert!(answers(&mut first), "the others go on");
}

#[test]
fn connections_are_capped_in_total() {
    let broker = TestBroker::start_with(Security::Plain, |o| o.limits.max_connections = 1);
    let mut first = RawClient::connect(broker.addr);
    assert!(answers(&mut first));
    let mut second = RawClient::connect(broker.addr);
    assert!(second.closed_without_answer());
    first.send(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default());
    let answer: ApiVersionsResponse = first.response(ApiKey::ApiVersions, 0);
    assert_eq!(answer.error_code, 0, "the first goes on");
}
