//! The topic sink into the internal log (`MemoryLog`) and into the real Kafka broker from
//! `scripts/services`, read back with an rdkafka consumer.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test (or bench) fails by panicking

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{batch, event, service, unique};
use headwater_log::{Log, LogConfig, MemoryLog, partition_for_key};
use headwater_schemas::Envelope;
use headwater_sinks::{
    Batch, BuildError, Sink, SinkConfig, SinkContext, SinkError, TopicConfig, TopicSink, build,
    error_chain,
};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

#[tokio::test]
async fn into_the_internal_log_with_keys_and_headers() {
    let log = Arc::new(MemoryLog::default());
    let ctx = SinkContext {
        data_dir: std::env::temp_dir(),
        log: Some(log.clone() as Arc<dyn Log>),
    };
    let entry: SinkConfig =
        yaml_serde::from_str("type: topic\ntopic: events.copy\nmax_append_bytes: 2048\n")
            .expect("entry");
    let sink = build(&entry, &ctx).expect("sink");
    sink.healthcheck().await.expect("healthy");
    let b = batch("copy", 0, 30);
    let delivery = sink.send(b.clone()).await.expect("send");
    assert!(delivery.is_complete(), "{delivery:?}");
    sink.flush().await.expect("flush");

    let partitions = log.partitions("events.copy").await.expect("partitions");
    let mut seen = HashMap::new();
    for p in 0..partitions as i32 {
        let records = log
            .read("events.copy", p, 0, 1 << 20, Duration::ZERO)
            .await
            .expect("read");
        for record in records {
            let key = record.key.clone().expect("key kept");
            assert_eq!(p, partition_for_key(&key, partitions), "keyed partition");
            let headers = record
                .headers
                .iter()
                .map(|h| (h.key.clone(), h.value.clone().unwrap_or_default()));
            let env = Envelope::from_headers(headers, record.value.clone().expect("value"))
                .expect("hw.* headers");
            seen.insert(env.id.clone(), (key, env));
        }
    }
    assert_eq!(seen.len(), 30);
    for e in &b.events {
        let (key, env) = &seen[&e.envelope.id];
        assert_eq!(Some(key), e.key.as_ref());
        assert_eq!(env, &e.envelope);
    }
}

#[tokio::test]
async fn oversized_record_is_rejected_alone() {
    let log = Arc::new(MemoryLog::new(LogConfig {
        max_message_bytes: 1024,
        ..LogConfig::default()
    }));
    let cfg = TopicConfig {
        topic: "small".to_owned(),
        ..TopicConfig::default()
    };
    let sink = TopicSink::to_log(&cfg, log.clone()).expect("sink");
    let mut b = batch("copy", 0, 3);
    b.events[1].envelope.payload = Bytes::from(format!(r#"{{"blob":"{}"}}"#, "x".repeat(4000)));
    let delivery = sink.send(b).await.expect("send");
    assert_eq!(delivery.rejected.len(), 1, "{delivery:?}");
    assert_eq!(delivery.rejected[0].0, 1);
    let mut stored = 0;
    for p in 0..log.partitions("small").await.expect("partitions") as i32 {
        stored += log
            .read("small", p, 0, 1 << 20, Duration::ZERO)
            .await
            .expect("read")
            .len();
    }
    assert_eq!(stored, 2);
}

#[tokio::test]
async fn full_disk_is_unavailable() {
    let log = Arc::new(MemoryLog::default());
    log.set_disk_full(true);
    let cfg = TopicConfig {
        topic: "t".to_owned(),
        ..TopicConfig::default()
    };
    let sink = TopicSink::to_log(&cfg, log).expect("sink");
    let err = sink.send(batch("copy", 0, 3)).await.expect_err("full");
    assert!(matches!(err, SinkError::Unavailable { .. }), "{err}");
    assert!(sink.healthcheck().await.is_err());
}

#[test]
fn topic_without_brokers_or_log_is_a_config_error() {
    let entry = SinkConfig::Topic(TopicConfig {
        topic: "t".to_owned(),
        ..TopicConfig::default()
    });
    let err = build(&entry, &SinkContext::default())
        .err()
        .expect("no log, no brokers");
    assert!(
        matches!(err, BuildError::Setup { sink: "topic", .. }),
        "{err}"
    );
    assert_eq!(
        error_chain(&err),
        "cannot set up the topic sink: no `brokers` and no internal log in this process"
    );
}

async fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin");
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("create topics");
    for r in results {
        r.expect("topic created");
    }
}

#[tokio::test]
async fn into_kafka_with_keys_and_headers() {
    let brokers = service("HEADWATER_TEST_KAFKA");
    let topic = unique("hw-sink-out");
    create_topic(&brokers, &topic, 3).await;
    let cfg = TopicConfig {
        topic: topic.clone(),
        brokers: brokers.clone(),
        message_timeout_ms: 20_000,
        ..TopicConfig::default()
    };
    let sink = build(&SinkConfig::Topic(cfg), &SinkContext::default()).expect("sink");
    sink.healthcheck().await.expect("healthy");
    let mut b = batch("copy", 0, 20);
    // A keyless event keeps having no key.
    b.events.push(event(20, "no-key", r#"{"n":20}"#));
    b.events[20].key = None;
    b.last_offset = 20;
    let delivery = sink.send(b.clone()).await.expect("send");
    assert!(delivery.is_complete(), "{delivery:?}");
    sink.flush().await.expect("flush");

    let consumed = consume(&brokers, &topic, 3, b.events.len()).await;
    for e in &b.events {
        let (partition, key, env) = &consumed[&e.envelope.id];
        assert_eq!(key.as_ref(), e.key.as_ref(), "key of {}", e.envelope.id);
        assert_eq!(env, &e.envelope);
        if let Some(key) = key {
            assert_eq!(*partition, partition_for_key(key, 3), "murmur2 partition");
        }
    }
    let per_device: Vec<_> = consumed
        .values()
        .filter(|(_, k, _)| k.as_deref() == Some(&b"device-1"[..]))
        .map(|(p, _, _)| *p)
        .collect();
    assert!(per_device.windows(2).all(|w| w[0] == w[1]));
}

#[tokio::test]
async fn oversized_kafka_record_is_rejected_alone() {
    let brokers = service("HEADWATER_TEST_KAFKA");
    let topic = unique("hw-sink-big");
    create_topic(&brokers, &topic, 1).await;
    let cfg = TopicConfig {
        topic: topic.clone(),
        brokers: brokers.clone(),
        message_timeout_ms: 20_000,
        ..TopicConfig::default()
    };
    let sink = TopicSink::to_kafka(&cfg).expect("sink");
    let mut b = batch("copy", 0, 3);
    b.events[1].envelope.payload =
        Bytes::from(format!(r#"{{"blob":"{}"}}"#, "x".repeat(2 * 1024 * 1024)));
    let delivery = sink.send(b.clone()).await.expect("send");
    assert!(delivery.retry.is_empty(), "{delivery:?}");
    assert_eq!(delivery.rejected.len(), 1, "{delivery:?}");
    assert_eq!(delivery.rejected[0].0, 1);
    let consumed = consume(&brokers, &topic, 1, 2).await;
    assert!(consumed.contains_key(&b.events[0].envelope.id));
    assert!(consumed.contains_key(&b.events[2].envelope.id));
}

type Consumed = HashMap<String, (i32, Option<Bytes>, Envelope)>;

async fn consume(brokers: &str, topic: &str, partitions: i32, want: usize) -> Consumed {
    let brokers = brokers.to_owned();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", unique("hw-sink-test"))
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut assignment = TopicPartitionList::new();
        for p in 0..partitions {
            assignment
                .add_partition_offset(&topic, p, Offset::Beginning)
                .expect("assignment");
        }
        consumer.assign(&assignment).expect("assign");
        let mut out = Consumed::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while out.len() < want {
            if Instant::now() >= deadline {
                // What the broker holds and where the consumer stands, to tell a sink that
                // did not write from a consumer that did not read.
                let watermarks: Vec<_> = (0..partitions)
                    .map(|p| consumer.fetch_watermarks(&topic, p, Duration::from_secs(5)))
                    .collect();
                panic!(
                    "only {} of {want} records in 60 s; watermarks {watermarks:?}; positions {:?}",
                    out.len(),
                    consumer.position()
                );
            }
            match consumer.poll(Duration::from_millis(500)) {
                Some(Ok(m)) => {
                    let headers: Vec<(String, Vec<u8>)> = m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                                .collect()
                        })
                        .unwrap_or_default();
                    let payload = Bytes::copy_from_slice(m.payload().unwrap_or_default());
                    let env = Envelope::from_headers(headers, payload).expect("hw.* headers");
                    let key = m.key().map(Bytes::copy_from_slice);
                    out.insert(env.id.clone(), (m.partition(), key, env));
                }
                Some(Err(e)) => panic!("consume failed: {e}"),
                None => {}
            }
        }
        out
    })
    .await
    .expect("consumer task")
}

#[tokio::test]
async fn unreachable_kafka_is_unavailable() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let cfg = TopicConfig {
        topic: "t".to_owned(),
        brokers: format!("127.0.0.1:{port}"),
        message_timeout_ms: 1_000,
        ..TopicConfig::default()
    };
    let sink = TopicSink::to_kafka(&cfg).expect("sink");
    let err = sink
        .send(Batch {
            route: Arc::from("r"),
            ..batch("r", 0, 2)
        })
        .await
        .expect_err("no broker");
    assert!(err.is_retryable(), "{err}");
}
