//! Smoke tests proving each real service of scripts/services from Rust: a record through the
//! Kafka broker with rdkafka, a document through OpenSearch over HTTP, an object through the
//! S3 server with object_store's AmazonS3.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::time::{Duration, Instant};

use common::{service, unique};
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::json;

#[tokio::test]
async fn kafka_broker_round_trips_a_record_with_rdkafka() {
    let brokers = service("HEADWATER_TEST_KAFKA");
    let topic = unique("smoke");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer");
    let delivered = producer
        .send(
            FutureRecord::to(&topic)
                .key("device-1")
                .payload("hello kafka"),
            Duration::from_secs(30),
        )
        .await
        .expect("delivery");
    assert_eq!(delivered.offset, 0);

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", unique("smoke-group"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(&topic, delivered.partition, Offset::Beginning)
        .expect("assignment");
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "no record consumed within 30 s");
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(message)) => {
                assert_eq!(message.key(), Some(&b"device-1"[..]));
                assert_eq!(message.payload(), Some(&b"hello kafka"[..]));
                assert_eq!(message.offset(), 0);
                break;
            }
            Some(Err(error)) => panic!("consume failed: {error}"),
            None => {}
        }
    }
}

#[tokio::test]
async fn opensearch_indexes_and_searches_a_document() {
    let base = service("HEADWATER_TEST_OPENSEARCH");
    let index = unique("smoke");
    let client = reqwest::Client::new();
    let bulk = format!(
        "{}\n{}\n",
        json!({"index": {"_index": index, "_id": "ev-1"}}),
        json!({"type": "playback.start", "source": "tv-42", "title_id": "t-1"})
    );
    let response = client
        .post(format!("{base}/_bulk?refresh=true"))
        .header("content-type", "application/x-ndjson")
        .body(bulk)
        .send()
        .await
        .expect("bulk request");
    assert!(
        response.status().is_success(),
        "bulk: {}",
        response.status()
    );
    let body: serde_json::Value = response.json().await.expect("bulk json");
    assert_eq!(body["errors"], json!(false), "{body}");

    let response = client
        .post(format!("{base}/{index}/_search"))
        .json(&json!({"query": {"match": {"source": "tv-42"}}}))
        .send()
        .await
        .expect("search request");
    assert!(
        response.status().is_success(),
        "search: {}",
        response.status()
    );
    let body: serde_json::Value = response.json().await.expect("search json");
    assert_eq!(body["hits"]["total"]["value"], json!(1), "{body}");
    assert_eq!(body["hits"]["hits"][0]["_id"], json!("ev-1"), "{body}");
    assert_eq!(
        body["hits"]["hits"][0]["_source"]["title_id"],
        json!("t-1"),
        "{body}"
    );
}

#[tokio::test]
async fn s3_server_puts_lists_and_gets_through_object_store() {
    let endpoint = service("HEADWATER_TEST_S3");
    let bucket = unique("smoke").to_lowercase();
    let created = reqwest::Client::new()
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .expect("create bucket");
    assert!(
        created.status().is_success(),
        "create bucket: {}",
        created.status()
    );

    let store = AmazonS3Builder::new()
        .with_endpoint(&endpoint)
        .with_bucket_name(&bucket)
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .build()
        .expect("s3 store");
    let path = Path::from("lake/dt=2026-11-23/events-0-0-9.ndjson");
    store
        .put(&path, PutPayload::from_static(b"{\"id\":\"1\"}\n"))
        .await
        .expect("put");
    let listed: Vec<_> = store
        .list(Some(&Path::from("lake")))
        .try_collect()
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].location, path);
    let bytes = store
        .get(&path)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    assert_eq!(&bytes[..], b"{\"id\":\"1\"}\n");
}
