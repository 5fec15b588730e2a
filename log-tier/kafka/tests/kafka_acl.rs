//! Principals and ACLs on the wire: producer ids are random and owned by the principal that
//! obtained them (no other can bump their epoch or produce with them); a client certificate
//! maps to a principal over mTLS (an unmapped one is anonymous and refused everything);
//! DescribeAcls lists the rules to those who may describe the cluster.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test (or bench) fails by panicking

#[path = "kafka_security/support.rs"]
#[allow(dead_code)] // helpers serve the other test files
mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::executor::block_on;
use headwater_kafka::acl::{Authorizer, AuthorizerOptions};
use headwater_kafka::{KafkaOptions, Principal, Role, SaslOptions, StaticCredentials};
use headwater_log::batch::{ProducerFields, encode};
use headwater_log::{AclEntry, Operation, PatternType, Permission, Record, ResourceType};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, DescribeAclsRequest, DescribeAclsResponse, InitProducerIdRequest,
    InitProducerIdResponse, ProduceRequest, ProduceResponse, ProducerId, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::producer::{FutureProducer, FutureRecord};
use support::{RawClient, Security, TestBroker, client_settings, rdkafka_config};

/// acme and globex (tenants), router (a service), ops (an operator), all with PLAIN
/// password `pw`; ACLs enforced; `events` governed.
fn secured(options: &mut KafkaOptions) {
    let store = StaticCredentials::new([("acme", "pw"), ("globex", "pw")])
        .with_plain("router", "pw", Role::Service)
        .with_plain("ops", "pw", Role::Operator);
    options.sasl = Some(SaslOptions {
        store: Arc::new(store),
        mechanisms: headwater_kafka::Mechanism::ALL.to_vec(),
    });
    options.authorizer = Arc::new(authorizer(true));
}

fn authorizer(enforced: bool) -> Authorizer {
    Authorizer::new(AuthorizerOptions {
        entries: vec![AclEntry {
            principal: "User:acme".to_owned(),
            resource_type: ResourceType::Topic,
            pattern_type: PatternType::Prefixed,
            name: "acme.".to_owned(),
            operations: vec![Operation::Read, Operation::Write],
            permission: Permission::Allow,
            host: "*".to_owned(),
        }],
        enforced,
        governed_topics: Arc::new(|topic| topic == "events"),
        governed_topic_names: Some(Arc::new(|| vec!["events".to_owned()])),
        known_principals: vec![
            Principal::new("acme", Role::Tenant),
            Principal::new("router", Role::Service),
        ],
    })
}

/// A raw connection authenticated as `user` (SASL/PLAIN, password `pw`).
fn login(broker: &TestBroker, user: &str) -> RawClient {
    let mut raw = RawClient::connect(broker.addr);
    let mut handshake = SaslHandshakeRequest::default();
    handshake.mechanism = StrBytes::from_static_str("PLAIN");
    raw.send(ApiKey::SaslHandshake, 1, &handshake);
    let answer: SaslHandshakeResponse = raw.response(ApiKey::SaslHandshake, 1);
    assert_eq!(answer.error_code, 0);
    let mut token = SaslAuthenticateRequest::default();
    token.auth_bytes = Bytes::from(format!("\0{user}\0pw"));
    raw.send(ApiKey::SaslAuthenticate, 2, &token);
    let answer: SaslAuthenticateResponse = raw.response(ApiKey::SaslAuthenticate, 2);
    assert_eq!(answer.error_code, 0, "{:?}", answer.error_message);
    raw
}

fn init_producer_id(raw: &mut RawClient, id: i64, epoch: i16) -> InitProducerIdResponse {
    let mut request = InitProducerIdRequest::default();
    request.transactional_id = None;
    request.transaction_timeout_ms = 60_000;
    request.producer_id = ProducerId(id);
    request.producer_epoch = epoch;
    raw.send(ApiKey::InitProducerId, 4, &request);
    raw.response(ApiKey::InitProducerId, 4)
}

/// Produces one record to `topic` partition 0 with producer `id`/`epoch`, sequence 0.
fn produce(raw: &mut RawClient, topic: &str, id: i64, epoch: i16) -> (i16, Option<String>) {
    let record = Record {
        partition: None,
        key: Some(Bytes::from_static(b"k")),
        value: Some(Bytes::from_static(b"v")),
        headers: Vec::new(),
        timestamp_ms: 1_000,
    };
    let producer = ProducerFields {
        producer_id: id,
        producer_epoch: epoch,
        base_sequence: 0,
    };
    let batch = encode(&[&record], producer).unwrap().freeze();
    let mut partition = PartitionProduceData::default();
    partition.index = 0;
    partition.records = Some(batch);
    let mut data = TopicProduceData::default();
    data.name = TopicName(StrBytes::from_string(topic.to_owned()));
    data.partition_data = vec![partition];
    let mut request = ProduceRequest::default();
    request.acks = -1;
    request.timeout_ms = 10_000;
    request.topic_data = vec![data];
    raw.send(ApiKey::Produce, 9, &request);
    let response: ProduceResponse = raw.response(ApiKey::Produce, 9);
    let answer = &response.responses[0].partition_responses[0];
    (
        answer.error_code,
        answer.error_message.as_ref().map(|m| m.to_string()),
    )
}

#[test]
fn producer_ids_are_unguessable_and_owned_by_their_principal() {
    let broker = TestBroker::start_with(Security::SaslPlaintext, secured);
    let mut router = login(&broker, "router");
    let mut acme = login(&broker, "acme");

    let first = init_producer_id(&mut router, -1, -1);
    let second = init_producer_id(&mut router, -1, -1);
    assert_eq!((first.error_code, second.error_code), (0, 0));
    let (a, b) = (first.producer_id.0, second.producer_id.0);
    assert!(a > 0 && b > 0);
    assert!(
        (a - b).unsigned_abs() > 1 << 20,
        "consecutive ids are not a counter: {a} {b}"
    );

    // acme cannot bump (fence) the router's producer, nor produce with its id.
    let fenced = init_producer_id(&mut acme, a, first.producer_epoch);
    assert_eq!(fenced.error_code, 49, "INVALID_PRODUCER_ID_MAPPING");
    assert_eq!(fenced.producer_id.0, -1);
    let (code, message) = produce(&mut acme, "acme.raw", a, 0);
    assert_eq!(code, 49, "{message:?}");
    assert!(message.unwrap().contains("another principal"));

    // Its owner can, and acme produces with an id of its own.
    let bumped = init_producer_id(&mut router, a, first.producer_epoch);
    assert_eq!((bumped.error_code, bumped.producer_id.0), (0, a));
    assert_eq!(bumped.producer_epoch, first.producer_epoch + 1);
    let own = init_producer_id(&mut acme, -1, -1);
    assert_eq!(own.error_code, 0);
    assert_eq!(produce(&mut acme, "acme.raw", own.producer_id.0, 0).0, 0);
    assert_eq!(produce(&mut router, "acme.raw", own.producer_id.0, 0).0, 49);
}

#[test]
fn describe_acls_lists_the_rules_to_those_who_may_describe_the_cluster() {
    let broker = TestBroker::start_with(Security::SaslPlaintext, secured);
    let mut request = DescribeAclsRequest::default();
    request.resource_type_filter = 1; // any
    request.pattern_type_filter = 1; // any
    request.operation = 1; // any
    request.permission_type = 1; // any
    request.resource_name_filter = None;
    request.principal_filter = None;
    request.host_filter = None;

    let mut acme = login(&broker, "acme");
    acme.send(ApiKey::DescribeAcls, 3, &request);
    let refused: DescribeAclsResponse = acme.response(ApiKey::DescribeAcls, 3);
    assert_eq!(refused.error_code, 31, "CLUSTER_AUTHORIZATION_FAILED");

    let mut ops = login(&broker, "ops");
    ops.send(ApiKey::DescribeAcls, 3, &request);
    let listed: DescribeAclsResponse = ops.response(ApiKey::DescribeAcls, 3);
    assert_eq!(listed.error_code, 0);
    let entries: Vec<(String, String)> = listed
        .resources
        .iter()
        .flat_map(|r| {
            r.acls
                .iter()
                .map(move |a| (a.principal.to_string(), r.resource_name.to_string()))
        })
        .collect();
    assert!(
        entries.contains(&("User:acme".to_owned(), "acme.".to_owned())),
        "the configured entry: {entries:?}"
    );
    assert!(
        entries.contains(&("User:acme".to_owned(), "events".to_owned())),
        "the built-in write to a governed topic: {entries:?}"
    );
}

#[test]
fn a_client_certificate_maps_to_a_principal_and_an_unmapped_one_gets_nothing() {
    let broker = TestBroker::start_with(Security::MutualTls, |options| {
        options.authorizer = Arc::new(authorizer(true));
        options.client_principals.insert(
            "device-7".to_owned(),
            Principal::new("router", Role::Service),
        );
    });
    let mapped = client_settings(&broker, Security::MutualTls, "");
    let producer: FutureProducer = rdkafka_config(&mapped)
        .set("message.timeout.ms", "10000")
        .create()
        .unwrap();
    let sent = block_on(producer.send(
        FutureRecord::to("telemetry").key("k").payload("v"),
        Duration::from_secs(10),
    ));
    assert!(
        sent.is_ok(),
        "the mapped certificate is the router: {sent:?}"
    );

    // Another certificate of the same CA, mapped to no one: anonymous, refused.
    broker.ca.client("device-8", "other-client").unwrap();
    let mut unmapped = client_settings(&broker, Security::MutualTls, "");
    for (key, value) in &mut unmapped {
        if key == "ssl.certificate.location" {
            *value = broker.file("other-client.pem");
        } else if key == "ssl.key.location" {
            *value = broker.file("other-client.key");
        }
    }
    let producer: FutureProducer = rdkafka_config(&unmapped)
        .set("message.timeout.ms", "10000")
        .create()
        .unwrap();
    let refused = block_on(producer.send(
        FutureRecord::to("telemetry").key("k").payload("v"),
        Duration::from_secs(10),
    ))
    .unwrap_err()
    .0;
    assert_eq!(
        refused.rdkafka_error_code(),
        Some(rdkafka::types::RDKafkaErrorCode::TopicAuthorizationFailed),
        "{refused}"
    );
}
