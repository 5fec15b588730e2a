//! Produces in flight on one connection: written in request order, answered in request order
//! once durable, with other requests waiting for the queue ahead of them.

use std::time::Duration;

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use tokio::io::DuplexStream;

use super::*;
use headwater_log::batch::{ProducerFields, encode};
use headwater_log::{FlushMode, FlushPolicy, Record};

/// Produce v8: the last version with a non-flexible header, so a response is its correlation
/// id and body.
const PRODUCE_VERSION: i16 = 8;
/// How long a test waits for the connection to write what it was sent, at most.
const WITHIN: Duration = Duration::from_secs(10);

/// A connection to a broker whose log flushes by `mode` (an hour between `interval` fsyncs:
/// only `LogEngine::flush` makes a write durable), with topic `t` of one partition.
struct Connection {
    client: DuplexStream,
    engine: Arc<LogEngine>,
    _dir: tempfile::TempDir,
}

fn connect(mode: FlushMode) -> Connection {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush: FlushPolicy {
            mode,
            interval_ms: 3_600_000,
            linger_us: 0,
        },
        ..LogConfig::default()
    };
    let engine = LogEngine::open(dir.path(), config).unwrap();
    engine.create_topic_now("t", 1).unwrap();
    let options = KafkaOptions::advertising("127.0.0.1:9092".parse().unwrap());
    let broker = Arc::new(Broker::new(engine.clone(), options));
    let (client, server) = tokio::io::duplex(1024 * 1024);
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let served = serve_connection(broker, server, peer, Principal::anonymous(), stopped);
        let _ = served.await;
        drop(stop);
    });
    Connection {
        client,
        engine,
        _dir: dir,
    }
}

/// A Produce (acks=-1) of one record, `value`, to partition 0 of `t`.
fn produce(correlation_id: i32, value: &str, producer: ProducerFields) -> Vec<u8> {
    let record = Record {
        partition: None,
        key: None,
        value: Some(Bytes::from(value.to_owned())),
        headers: Vec::new(),
        timestamp_ms: 1,
    };
    let batch = encode(&[&record], producer).unwrap().freeze();
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch)),
                ]),
        ]);
    request_frame(ApiKey::Produce, PRODUCE_VERSION, correlation_id, &request)
}

/// Reads one response: its correlation id and body.
async fn answer(client: &mut DuplexStream) -> (i32, Bytes) {
    let mut frame = Bytes::from(response(client).await);
    let correlation_id = i32::from_be_bytes(frame[..4].try_into().unwrap());
    (correlation_id, frame.split_off(4))
}

/// The base offset and error code a Produce response gives partition 0 of `t`.
fn produced(body: Bytes) -> (i64, i16) {
    let response = ProduceResponse::decode(&mut body.clone(), PRODUCE_VERSION).unwrap();
    let p = &response.responses[0].partition_responses[0];
    (p.base_offset, p.error_code)
}

/// Waits (polling, at most [`WITHIN`]) until `engine` holds `records` records in `t`, written
/// whether durable or not.
async fn written(engine: &LogEngine, records: i64) {
    let waited = tokio::time::timeout(WITHIN, async {
        while engine.log_end_offset("t", 0).unwrap() < records {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    waited.await.unwrap_or_else(|_| {
        let end = engine.log_end_offset("t", 0).unwrap();
        panic!("{end} records written, not {records}: the connection waited for durability")
    });
}

#[tokio::test]
async fn a_produce_is_written_while_the_one_before_waits_for_its_fsync() {
    let Connection {
        mut client,
        engine,
        _dir,
    } = connect(FlushMode::Interval);
    let frames = [
        produce(1, "a", ProducerFields::NONE),
        produce(2, "b", ProducerFields::NONE),
    ];
    client.write_all(&frames.concat()).await.unwrap();
    // Nothing is fsynced for an hour: read one at a time, the second batch would wait for
    // the first's fsync before it was read.
    written(&engine, 2).await;
    assert_eq!(engine.partition_offsets("t", 0).unwrap().high_watermark, 0);
    assert!(!has_data(&mut client).await, "answered before the fsync");
    engine.flush().await.unwrap();
    for (id, offset) in [(1, 0), (2, 1)] {
        let (correlation_id, body) = answer(&mut client).await;
        assert_eq!((correlation_id, produced(body)), (id, (offset, 0)));
    }
}

#[tokio::test]
async fn responses_keep_request_order_and_other_requests_wait_for_the_produces_ahead() {
    let Connection {
        mut client,
        engine,
        _dir,
    } = connect(FlushMode::EveryAppend);
    let metadata = MetadataRequest::default().with_topics(None);
    let latest = ListOffsetsRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_topics(vec![
            ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![ListOffsetsPartition::default().with_timestamp(-1)]),
        ]);
    let mut frames = Vec::new();
    frames.extend(produce(1, "a", ProducerFields::NONE));
    frames.extend(produce(2, "b", ProducerFields::NONE));
    frames.extend(request_frame(ApiKey::Metadata, 1, 3, &metadata));
    frames.extend(produce(4, "c", ProducerFields::NONE));
    frames.extend(request_frame(ApiKey::ListOffsets, 4, 5, &latest));
    frames.extend(produce(6, "d", ProducerFields::NONE));
    client.write_all(&frames).await.unwrap();
    let mut order = Vec::new();
    for _ in 0..6 {
        let (correlation_id, mut body) = answer(&mut client).await;
        order.push(correlation_id);
        match correlation_id {
            3 => {
                let topics = MetadataResponse::decode(&mut body, 1).unwrap().topics;
                assert_eq!(topics.len(), 1);
            }
            5 => {
                // Handled once the three Produces ahead were answered: all are readable.
                let response = ListOffsetsResponse::decode(&mut body, 4).unwrap();
                assert_eq!(response.topics[0].partitions[0].offset, 3);
            }
            _ => assert_eq!(produced(body).1, 0),
        }
    }
    assert_eq!(order, [1, 2, 3, 4, 5, 6]);
    assert_eq!(engine.partition_offsets("t", 0).unwrap().high_watermark, 4);
}

#[tokio::test]
async fn pipelined_appends_land_in_request_order() {
    let Connection {
        mut client,
        engine,
        _dir,
    } = connect(FlushMode::EveryAppend);
    let count = 3 * in_flight::MAX_PRODUCES_IN_FLIGHT as i32;
    let frames: Vec<u8> = (0..count)
        .flat_map(|i| produce(i, &i.to_string(), ProducerFields::NONE))
        .collect();
    client.write_all(&frames).await.unwrap();
    for i in 0..count {
        let (correlation_id, body) = answer(&mut client).await;
        assert_eq!((correlation_id, produced(body)), (i, (i64::from(i), 0)));
    }
    // Stored in that order too: record i holds the value "i".
    let stored = engine.read_raw("t", 0, 0, 1 << 20).unwrap().records;
    let values: Vec<String> = headwater_log::batch::split_batches(stored)
        .flat_map(|(_, batch)| headwater_log::batch::decode_records(&batch).unwrap())
        .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
        .collect();
    let expected: Vec<String> = (0..count).map(|i| i.to_string()).collect();
    assert_eq!(values, expected);
}

#[tokio::test]
async fn an_idempotent_producer_with_five_in_flight_is_answered_in_sequence() {
    let Connection {
        mut client,
        engine,
        _dir,
    } = connect(FlushMode::Interval);
    let frames: Vec<u8> = (0..5)
        .flat_map(|sequence| {
            let producer = ProducerFields {
                producer_id: 1000,
                producer_epoch: 0,
                base_sequence: sequence,
            };
            produce(sequence, "x", producer)
        })
        .collect();
    client.write_all(&frames).await.unwrap();
    // All five written before any is durable: each sequence checked after the one before.
    written(&engine, 5).await;
    engine.flush().await.unwrap();
    for sequence in 0..5 {
        let (correlation_id, body) = answer(&mut client).await;
        assert_eq!(
            (correlation_id, produced(body)),
            (sequence, (i64::from(sequence), 0)),
            "no OUT_OF_ORDER_SEQUENCE ({})",
            ResponseError::OutOfOrderSequenceNumber.code()
        );
    }
}

#[tokio::test]
async fn a_bad_frame_after_produces_closes_the_connection_once_they_are_answered() {
    let Connection {
        mut client,
        engine,
        _dir,
    } = connect(FlushMode::Interval);
    // Then API key 999: not served, the connection closes.
    let mut frames = produce(1, "a", ProducerFields::NONE);
    frames.extend(8i32.to_be_bytes());
    frames.extend([0x03, 0xe7, 0, 0, 0, 0, 0, 2]);
    client.write_all(&frames).await.unwrap();
    written(&engine, 1).await;
    engine.flush().await.unwrap();
    let (correlation_id, body) = answer(&mut client).await;
    assert_eq!((correlation_id, produced(body)), (1, (0, 0)));
    let mut byte = [0u8; 1];
    assert_eq!(client.read(&mut byte).await.unwrap(), 0, "closed after it");
}
