//! Unit tests of the connection loop over in-memory pipes.

use proptest::prelude::*;

use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;

use super::frame::{SMALL_FRAME_BYTES, read_body};
use super::*;
use crate::{KafkaOptions, StaticCredentials};
use headwater_log::LogConfig;
use headwater_log::LogEngine;

fn broker(dir: &std::path::Path, sasl: bool) -> Broker {
    let engine = LogEngine::open(dir, LogConfig::default()).unwrap();
    let mut options = KafkaOptions::advertising("127.0.0.1:9092".parse().unwrap());
    if sasl {
        options.sasl = Some(crate::SaslOptions {
            store: Arc::new(StaticCredentials::new([("acme", "pw")])),
            mechanisms: crate::Mechanism::ALL.to_vec(),
        });
    }
    Broker::new(engine, options)
}

fn api_versions_frame(correlation_id: i32) -> Vec<u8> {
    use kafka_protocol::messages::{ApiVersionsRequest, RequestHeader};
    let mut header = RequestHeader::default();
    header.request_api_key = ApiKey::ApiVersions as i16;
    header.request_api_version = 0;
    header.correlation_id = correlation_id;
    let mut body = BytesMut::new();
    header.encode(&mut body, 1).unwrap();
    ApiVersionsRequest::default().encode(&mut body, 0).unwrap();
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

/// A request frame (length prefix, header, body) of `api_key` in `version`.
fn frame_of(api_key: ApiKey, version: i16, body: &impl Encodable) -> Vec<u8> {
    request_frame(api_key, version, 1, body)
}

/// A request frame of `api_key` in `version` with `correlation_id`.
fn request_frame(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &impl Encodable,
) -> Vec<u8> {
    use kafka_protocol::messages::RequestHeader;
    let mut header = RequestHeader::default();
    header.request_api_key = api_key as i16;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    let mut out = BytesMut::new();
    header
        .encode(&mut out, api_key.request_header_version(version))
        .unwrap();
    body.encode(&mut out, version).unwrap();
    let mut frame = (out.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&out);
    frame
}

/// Whether `client` has a byte to read now (consuming it).
async fn has_data(client: &mut tokio::io::DuplexStream) -> bool {
    let mut byte = [0u8; 1];
    let read = client.read(&mut byte);
    tokio::pin!(read);
    matches!(futures::poll!(&mut read), std::task::Poll::Ready(Ok(1)))
}

/// Reads the rest of a response whose first byte [`has_data`] consumed.
async fn drain(client: &mut tokio::io::DuplexStream, first: u8) {
    let mut length = [first, 0, 0, 0];
    client.read_exact(&mut length[1..]).await.unwrap();
    let mut rest = vec![0u8; i32::from_be_bytes(length) as usize];
    client.read_exact(&mut rest).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn fetch_responses_nobody_reads_hold_the_fetch_budget() {
    use headwater_log::Record;
    use headwater_log::batch::{ProducerFields, encode};
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let dir = tempfile::tempdir().unwrap();
    let engine = LogEngine::open(dir.path(), LogConfig::default()).unwrap();
    engine.create_topic_now("t", 1).unwrap();
    let record = Record {
        partition: None,
        key: None,
        value: Some(Bytes::from(vec![b'v'; 100 * 1024])),
        headers: Vec::new(),
        timestamp_ms: 1,
    };
    let batch = encode(&[&record], ProducerFields::NONE).unwrap().freeze();
    for _ in 0..4 {
        engine.append_batch("t", 0, batch.clone()).await.unwrap();
    }
    // Each Fetch answers one ~100 KiB batch (128 KiB allowed); the budget of
    // FETCH_RESPONSES_IN_FLIGHT × 128 KiB holds four such answers, not a fifth.
    let mut options = KafkaOptions::advertising("127.0.0.1:9092".parse().unwrap());
    options.limits.fetch_max_bytes = 128 * 1024;
    let broker = Arc::new(Broker::new(engine, options));
    let fetch = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_bytes(-1)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![
                    FetchPartition::default().with_partition_max_bytes(i32::MAX),
                ]),
        ]);
    let fetch = frame_of(ApiKey::Fetch, 11, &fetch);
    let (_stop, stopped) = watch::channel(false);
    let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let mut clients = Vec::new();
    for _ in 0..5 {
        // A 16 KiB pipe: an answer nobody reads stays in the server's hands.
        let (mut client, server) = tokio::io::duplex(16 * 1024);
        let anonymous = Principal::anonymous();
        tokio::spawn(serve_connection(
            broker.clone(),
            server,
            peer,
            anonymous,
            stopped.clone(),
        ));
        client.write_all(&fetch).await.unwrap();
        clients.push(client);
    }
    // Virtual time moves only once every task is idle: all that can be answered was.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut answered = Vec::new();
    let mut waiting = Vec::new();
    for (i, client) in clients.iter_mut().enumerate() {
        if has_data(client).await {
            answered.push(i);
        } else {
            waiting.push(i);
        }
    }
    assert_eq!((answered.len(), waiting.len()), (4, 1), "{answered:?}");
    // One answer read: its share goes back, and the waiting Fetch is answered.
    drain(&mut clients[answered[0]], 0).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(has_data(&mut clients[waiting[0]]).await);
}

/// Reads one response frame from `client`.
async fn response(client: &mut tokio::io::DuplexStream) -> Vec<u8> {
    let length = client.read_i32().await.unwrap();
    let mut frame = vec![0; length as usize];
    client.read_exact(&mut frame).await.unwrap();
    frame
}

#[tokio::test(start_paused = true)]
async fn a_connection_without_a_request_for_the_idle_timeout_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Arc::new(broker(dir.path(), false));
    let idle = broker.options.limits.idle_timeout;
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let (_stop, stopped) = watch::channel(false);
    let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let served = tokio::spawn(serve_connection(
        broker,
        server,
        peer,
        Principal::anonymous(),
        stopped,
    ));
    // Requests just inside the idle timeout keep it open.
    for id in 1..=3 {
        tokio::time::advance(idle - Duration::from_secs(1)).await;
        client.write_all(&api_versions_frame(id)).await.unwrap();
        assert!(!response(&mut client).await.is_empty());
    }
    // Then silence: closed once the idle timeout passed, not before.
    let quiet = Instant::now();
    let mut byte = [0u8; 1];
    assert_eq!(
        client.read(&mut byte).await.unwrap(),
        0,
        "closed, no answer"
    );
    assert!(
        quiet.elapsed() >= idle,
        "closed after {:?}",
        quiet.elapsed()
    );
    served.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_frame_buffer_grows_with_the_bytes_that_arrived() {
    let declared = 100 * 1024 * 1024;
    let sent = vec![1u8; 20 * 1024];
    let mut body = Vec::new();
    let error = read_body(&mut &sent[..], declared, &mut body, None, &mut None)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    assert_eq!(body.len(), sent.len());
    assert!(body.capacity() <= 2 * sent.len(), "{}", body.capacity());

    let mut whole = Vec::new();
    let frame = vec![2u8; 300 * 1024];
    read_body(&mut &frame[..], frame.len(), &mut whole, None, &mut None)
        .await
        .unwrap();
    assert_eq!((whole.len(), whole.capacity()), (frame.len(), frame.len()));
}

#[tokio::test]
async fn a_large_frame_waits_unread_for_room_in_the_request_budget() {
    let large = SMALL_FRAME_BYTES + 1;
    let budget = Semaphore::new(large + 100);
    let held = budget.acquire_many(200).await.unwrap();
    let frame = |length: usize| {
        let mut frame = (length as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&vec![3u8; length]);
        frame
    };
    let idle = Duration::from_secs(60);
    let large_frame = frame(large);
    let mut stream = &large_frame[..];
    let read = read_frame(&mut stream, large, idle, &budget);
    tokio::pin!(read);
    assert!(
        futures::poll!(&mut read).is_pending(),
        "200 + large > budget"
    );

    // A small frame does not queue behind it.
    let small_frame = frame(SMALL_FRAME_BYTES);
    match read_frame(&mut &small_frame[..], large, idle, &budget).await {
        Ok(Frame::Request(bytes, None)) => assert_eq!(bytes.len(), SMALL_FRAME_BYTES),
        _ => panic!("a small frame, outside the budget"),
    }

    drop(held);
    match read.await.unwrap() {
        Frame::Request(bytes, Some(permit)) => {
            assert_eq!((bytes.len(), permit.num_permits()), (large, large));
            assert_eq!(budget.available_permits(), 100);
        }
        _ => panic!("a large frame within the budget"),
    }
    assert_eq!(budget.available_permits(), large + 100, "given back");
}

#[tokio::test]
async fn a_declared_length_holds_only_the_bytes_that_arrived() {
    const MIB: usize = 1024 * 1024;
    let limit = 100 * MIB;
    let budget = Semaphore::new(limit + MIB);
    let frame = |length: usize, sent: usize| {
        let mut frame = (length as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&vec![4u8; sent]);
        frame
    };
    let idle = Duration::from_secs(60);
    // A client declares 100 MiB, sends 64 KiB and stops (the connection stays open).
    let (mut client, mut server) = tokio::io::duplex(MIB);
    client
        .write_all(&frame(100 * MIB, 64 * 1024))
        .await
        .unwrap();
    let stalled = read_frame(&mut server, limit, idle, &budget);
    tokio::pin!(stalled);
    assert!(futures::poll!(&mut stalled).is_pending());
    // The 64 KiB that arrived, and at most as much again for the read waiting for more.
    let held = limit + MIB - budget.available_permits();
    assert!(
        (64 * 1024..=128 * 1024).contains(&held),
        "{held} bytes held"
    );

    // Another connection's 2 MiB frame is read at once: the 100 MiB were never claimed.
    let other = frame(2 * MIB, 2 * MIB);
    match read_frame(&mut &other[..], limit, idle, &budget).await {
        Ok(Frame::Request(bytes, Some(permit))) => {
            assert_eq!((bytes.len(), permit.num_permits()), (2 * MIB, 2 * MIB));
        }
        _ => panic!("a 2 MiB frame within the budget"),
    }
    drop(client);
    assert!(stalled.await.is_err(), "closed before the end of its frame");
    assert_eq!(budget.available_permits(), limit + MIB, "all given back");
}

#[tokio::test]
async fn frames_larger_together_than_the_budget_are_read_in_turn_without_a_stall() {
    const MIB: usize = 1024 * 1024;
    // Three 3 MiB frames sent at once through small pipes, a 5 MiB budget. Taken as bytes
    // arrived, all three held a share and waited for more until the body timeout (30 s);
    // past WHOLE_AFTER a frame takes its rest at once, so they finish one after another.
    let length = 3 * MIB;
    let budget = Semaphore::new(5 * MIB);
    let idle = Duration::from_secs(60);
    let mut frame = (length as i32).to_be_bytes().to_vec();
    frame.resize(4 + length, 5);
    let reads = (0..3).map(|_| {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        let frame = frame.clone();
        tokio::spawn(async move { client.write_all(&frame).await });
        let budget = &budget;
        async move {
            match read_frame(&mut server, length, idle, budget).await {
                Ok(Frame::Request(bytes, Some(permit))) => {
                    assert_eq!((bytes.len(), permit.num_permits()), (length, length));
                }
                _ => panic!("a 3 MiB frame within the budget"),
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), futures::future::join_all(reads))
        .await
        .expect("read without waiting for the body timeout");
    assert_eq!(budget.available_permits(), 5 * MIB, "all given back");
}

mod pipelined;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]
    /// Any bytes after a served API key and version decode to an answer or a refusal,
    /// never a panic.
    #[test]
    fn arbitrary_frames_never_panic(key in 0usize..(versions::SUPPORTED.len() + versions::SASL.len()), version in -1i16..20, sasl: bool, body in proptest::collection::vec(any::<u8>(), 4..256)) {
        let dir = tempfile::tempdir().unwrap();
        let broker = broker(dir.path(), sasl);
        let mut state = SaslState::new(sasl);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (api, _, _) = versions::SUPPORTED.iter().chain(versions::SASL).nth(key).copied().unwrap();
        let mut frame = (api as i16).to_be_bytes().to_vec();
        frame.extend_from_slice(&version.to_be_bytes());
        frame.extend_from_slice(&body);
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        // A panic fails the test; a decoded request may legitimately wait (a long poll), so
        // the answer is only awaited briefly.
        let _ = runtime.block_on(async {
            let anonymous = Principal::anonymous();
            let request = Request { frame: Bytes::from(frame), peer, certified: &anonymous };
            tokio::time::timeout(Duration::from_millis(50), handle_frame(&broker, &mut state, request, &mut None)).await
        });
    }
}
