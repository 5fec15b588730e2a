//! The transport against real loopback sockets, without Raft groups behind it: Hello checks,
//! hostile frames, multiplexing, a cut connection and timeouts. (tests/transport.rs runs three
//! real nodes over it.)

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use openraft::BasicNode;
use openraft::error::RPCError;
use openraft::network::{RPCOption, RaftNetworkFactory, v2::RaftNetworkV2};
use openraft::raft::{VoteRequest, VoteResponse};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::codec::{self, ErrorBody, Hello};
use super::frame::{Frame, FrameReader, Kind};
use super::*;
use crate::types::{TypeConfig, typ};

const WAIT: Duration = Duration::from_secs(10);

fn peers(node: u64) -> Peers {
    let peers = Peers::new("test-cluster", node, TransportConfig::default());
    for other in 1..=3 {
        if other != node {
            // Placeholder addresses: the server only needs to know the ids.
            peers.set_addr(other, "127.0.0.1:9");
        }
    }
    peers
}

async fn server(node: u64) -> (RaftServer, Peers) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peers = peers(node);
    let server = RaftServer::spawn(listener, peers.clone(), Groups::default()).unwrap();
    (server, peers)
}

fn hello(cluster_id: &str, node_id: u64, protocol_version: u16) -> Bytes {
    let body = codec::to_json(
        "hello",
        &Hello {
            cluster_id: cluster_id.into(),
            node_id,
            protocol_version,
            identity: 0,
            known_as: None,
        },
    )
    .unwrap();
    Frame {
        kind: Kind::Hello,
        correlation: 0,
        group: 0,
        body,
    }
    .encode()
}

struct Raw {
    reader: FrameReader<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    write: tokio::net::tcp::OwnedWriteHalf,
}

impl Raw {
    async fn connect(addr: std::net::SocketAddr) -> Raw {
        let (read, write) = TcpStream::connect(addr).await.unwrap().into_split();
        Raw {
            reader: FrameReader::new(BufReader::new(read), DEFAULT_MAX_FRAME_BYTES),
            write,
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.write.write_all(bytes).await.unwrap();
    }

    async fn next(&mut self) -> Option<Frame> {
        tokio::time::timeout(WAIT, self.reader.next())
            .await
            .expect("an answer or a close in time")
            .unwrap_or(None)
    }

    /// Connected and through the Hello as node 2.
    async fn hello(addr: std::net::SocketAddr) -> Raw {
        let mut raw = Raw::connect(addr).await;
        raw.send(&hello("test-cluster", 2, PROTOCOL_VERSION)).await;
        let answer = raw.next().await.unwrap();
        assert_eq!(answer.kind, Kind::Response);
        let theirs: Hello = codec::from_json("hello", &answer.body).unwrap();
        assert_eq!(theirs.node_id, 1);
        raw
    }
}

fn error_of(frame: &Frame) -> ErrorBody {
    assert_eq!(frame.kind, Kind::Error, "{frame:?}");
    codec::from_json("error", &frame.body).unwrap()
}

fn vote_frame(correlation: u64, group: u64) -> Bytes {
    let rpc = VoteRequest::<TypeConfig>::new(typ::Vote::new(1, 2), None);
    Frame {
        kind: Kind::Vote,
        correlation,
        group,
        body: codec::to_json("vote", &rpc).unwrap(),
    }
    .encode()
}

#[tokio::test]
async fn a_wrong_hello_is_refused_with_an_error_frame_and_closed() {
    let (server, _) = server(1).await;
    let wrong = [
        hello("other-cluster", 2, PROTOCOL_VERSION),
        hello("test-cluster", 9, PROTOCOL_VERSION),
        hello("test-cluster", 1, PROTOCOL_VERSION),
        hello("test-cluster", 2, PROTOCOL_VERSION + 1),
        vote_frame(5, 1),
        Frame {
            kind: Kind::Hello,
            correlation: 0,
            group: 0,
            body: Bytes::from_static(b"{not json"),
        }
        .encode(),
    ];
    for bytes in wrong {
        let mut raw = Raw::connect(server.local_addr()).await;
        raw.send(&bytes).await;
        let refused = error_of(&raw.next().await.unwrap());
        assert_eq!(refused.code, ErrorCode::BadHello, "{}", refused.message);
        assert_eq!(raw.next().await, None, "closed after the refusal");
    }
    // A right one still gets in.
    Raw::hello(server.local_addr()).await;
}

#[tokio::test]
async fn hostile_frames_get_an_error_and_the_server_keeps_serving() {
    let (server, _) = server(1).await;
    let addr = server.local_addr();
    let mut good = Raw::hello(addr).await;

    // An unknown kind and an unknown group: answered, the connection stays.
    let mut raw = Raw::hello(addr).await;
    let mut unknown = BytesMut::new();
    unknown.put_u32(17 + 3);
    unknown.put_u8(99);
    unknown.put_u64(41);
    unknown.put_u64(1);
    unknown.put_slice(b"abc");
    raw.send(&unknown).await;
    let answer = raw.next().await.unwrap();
    assert_eq!(
        (answer.correlation, error_of(&answer).code),
        (41, ErrorCode::UnknownKind)
    );
    raw.send(&vote_frame(42, 77)).await;
    let answer = raw.next().await.unwrap();
    assert_eq!(
        (answer.correlation, error_of(&answer).code),
        (42, ErrorCode::UnknownGroup)
    );
    // A response sent to the server is not a request.
    raw.send(
        &Frame {
            kind: Kind::Response,
            correlation: 43,
            group: 1,
            body: Bytes::new(),
        }
        .encode(),
    )
    .await;
    assert_eq!(
        error_of(&raw.next().await.unwrap()).code,
        ErrorCode::Unexpected
    );

    // An oversized declared length: refused, closed.
    raw.send(&(100u32 << 20).to_be_bytes()).await;
    assert_eq!(
        error_of(&raw.next().await.unwrap()).code,
        ErrorCode::TooLarge
    );
    assert_eq!(raw.next().await, None);

    // Garbage instead of a frame: a length shorter than a header.
    let mut raw = Raw::hello(addr).await;
    raw.send(&[0, 0, 0, 1, 0xff, 0xff]).await;
    assert_eq!(
        error_of(&raw.next().await.unwrap()).code,
        ErrorCode::Malformed
    );
    assert_eq!(raw.next().await, None);

    // Garbage before any Hello, then the end of the stream.
    let mut raw = Raw::connect(addr).await;
    raw.send(b"GET / HTTP/1.1\r\n\r\n").await;
    raw.write.shutdown().await.unwrap();
    if let Some(frame) = raw.next().await {
        assert_eq!(error_of(&frame).code, ErrorCode::BadHello);
    }

    // The first connection was served all along.
    good.send(&vote_frame(7, 77)).await;
    let answer = good.next().await.unwrap();
    assert_eq!(
        (answer.correlation, error_of(&answer).code),
        (7, ErrorCode::UnknownGroup)
    );
}

#[tokio::test]
async fn forwarded_requests_reach_only_a_group_that_takes_them() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let groups = Groups::default();
    let handler: ForwardHandler = std::sync::Arc::new(|body: Bytes| {
        Box::pin(async move {
            let mut answer = b"seen:".to_vec();
            answer.extend_from_slice(&body);
            Bytes::from(answer)
        })
    });
    groups.accept_forwarded(5, handler);
    let server = RaftServer::spawn(listener, peers(1), groups).unwrap();
    let client = Peers::new("test-cluster", 2, TransportConfig::default());
    client.set_addr(1, addr);
    let answer = client
        .forward(1, 5, Bytes::from_static(b"{not json"), WAIT)
        .await
        .unwrap();
    assert_eq!(&answer[..], b"seen:{not json");
    let refused = client
        .forward(1, 6, Bytes::from_static(b"{}"), WAIT)
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            TransportError::Remote {
                code: ErrorCode::UnknownGroup,
                ..
            }
        ),
        "{refused}"
    );
    drop(server);
}

#[tokio::test]
async fn a_connection_over_the_cap_is_refused_busy() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peers = Peers::new(
        "test-cluster",
        1,
        TransportConfig {
            max_connections: 1,
            ..TransportConfig::default()
        },
    );
    peers.set_addr(2, "127.0.0.1:9");
    let server = RaftServer::spawn(listener, peers, Groups::default()).unwrap();
    let _first = Raw::hello(server.local_addr()).await;
    let mut second = Raw::connect(server.local_addr()).await;
    assert_eq!(
        error_of(&second.next().await.unwrap()).code,
        ErrorCode::Busy
    );
    assert_eq!(second.next().await, None);
}

#[tokio::test]
async fn an_idle_connection_is_closed() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peers = Peers::new(
        "test-cluster",
        1,
        TransportConfig {
            idle_timeout: Duration::from_millis(200),
            ..TransportConfig::default()
        },
    );
    peers.set_addr(2, "127.0.0.1:9");
    let server = RaftServer::spawn(listener, peers, Groups::default()).unwrap();
    let mut raw = Raw::hello(server.local_addr()).await;
    // Nothing sent: the server closes it (well before `WAIT`, which `next` is bounded by).
    assert_eq!(raw.next().await, None);
}

/// A peer that completes the Hello as node 2, then reads `n` vote requests and answers them in
/// reverse order (each with its correlation as the vote's term), then waits for `close` and
/// drops the connection without answering anything more.
async fn fake_peer(n: usize) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (close, closed) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut reader = FrameReader::new(BufReader::new(read), DEFAULT_MAX_FRAME_BYTES);
        let hello_frame = reader.next().await.unwrap().unwrap();
        assert_eq!(hello_frame.kind, Kind::Hello);
        let ours = Hello {
            cluster_id: "test-cluster".into(),
            node_id: 2,
            protocol_version: PROTOCOL_VERSION,
            identity: 0,
            known_as: None,
        };
        let answer = Frame {
            kind: Kind::Response,
            correlation: 0,
            group: 0,
            body: codec::to_json("hello", &ours).unwrap(),
        };
        write.write_all(&answer.encode()).await.unwrap();
        let serve = async {
            let mut requests = Vec::new();
            for _ in 0..n {
                requests.push(reader.next().await.unwrap().unwrap());
            }
            for request in requests.iter().rev() {
                let vote = typ::Vote::new(request.correlation, 2);
                let response = VoteResponse::<TypeConfig>::new(vote, None, true);
                let frame = Frame {
                    kind: Kind::Response,
                    correlation: request.correlation,
                    group: request.group,
                    body: codec::to_json("vote", &response).unwrap(),
                };
                write.write_all(&frame.encode()).await.unwrap();
            }
            // Hold the connection, reading what comes.
            while let Ok(Some(_)) = reader.next().await {}
        };
        // Told to cut: both halves dropped.
        tokio::select! {
            _ = closed => {}
            () = serve => {}
        }
    });
    (addr, close)
}

fn option(ms: u64) -> RPCOption {
    RPCOption::new(Duration::from_millis(ms))
}

fn vote_rpc() -> VoteRequest<TypeConfig> {
    VoteRequest::new(typ::Vote::new(1, 1), None)
}

#[tokio::test]
async fn groups_share_one_connection_and_answers_find_their_requests() {
    let (addr, _close) = fake_peer(6).await;
    let peers = Peers::new("test-cluster", 1, TransportConfig::default());
    peers.set_addr(2, addr);
    let mut calls = Vec::new();
    for group in 0..6u64 {
        let mut network = peers
            .factory(group)
            .new_client(2, &BasicNode::default())
            .await;
        calls.push(tokio::spawn(async move {
            network.vote(vote_rpc(), option(10_000)).await
        }));
    }
    let mut terms = Vec::new();
    for call in calls {
        let response = call.await.unwrap().unwrap();
        assert!(response.vote_granted);
        terms.push(response.vote.leader_id.term);
    }
    // Each answer carries its request's correlation id: all distinct, on one connection.
    terms.sort_unstable();
    terms.dedup();
    assert_eq!(terms.len(), 6, "{terms:?}");
}

#[tokio::test]
async fn a_cut_connection_fails_its_requests_at_once_and_is_redialled() {
    // The fake peer answers nothing (it waits for 100 requests that never all come).
    let (addr, close) = fake_peer(100).await;
    let peers = Peers::new("test-cluster", 1, TransportConfig::default());
    peers.set_addr(2, addr);
    let mut calls = Vec::new();
    for group in 0..3u64 {
        let mut network = peers
            .factory(group)
            .new_client(2, &BasicNode::default())
            .await;
        calls.push(tokio::spawn(async move {
            network.vote(vote_rpc(), option(60_000)).await
        }));
    }
    // Let the requests reach the peer, then cut.
    tokio::time::timeout(WAIT, async {
        while peers.waiting(2).await < 3 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("three requests waiting");
    let started = std::time::Instant::now();
    close.send(()).unwrap();
    for call in calls {
        let err = call.await.unwrap().unwrap_err();
        assert!(matches!(err, RPCError::Unreachable(_)), "{err}");
    }
    assert!(
        started.elapsed() < WAIT,
        "failed at once, not at their 60 s timeout"
    );

    // The listener is gone: the next request redials, fails, and the one after backs off.
    let mut network = peers.factory(0).new_client(2, &BasicNode::default()).await;
    let err = network.vote(vote_rpc(), option(2_000)).await.unwrap_err();
    assert!(matches!(err, RPCError::Unreachable(_)), "{err}");
    let err = network.vote(vote_rpc(), option(2_000)).await.unwrap_err();
    assert!(err.to_string().contains("backing off"), "{err}");

    // A new peer at a new address: dialled on the next request once the backoff passed.
    let (addr, _close) = fake_peer(1).await;
    peers.set_addr(2, addr);
    let answered = tokio::time::timeout(WAIT, async {
        loop {
            match network.vote(vote_rpc(), option(2_000)).await {
                Ok(response) => return response,
                Err(RPCError::Unreachable(_)) => {
                    tokio::time::sleep(Duration::from_millis(20)).await; // the redial backoff
                }
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await
    .expect("redialled");
    assert!(answered.vote_granted);
}

#[tokio::test]
async fn a_request_without_answer_times_out_and_a_wrong_peer_is_unreachable() {
    let (addr, _close) = fake_peer(100).await;
    let peers = Peers::new("test-cluster", 1, TransportConfig::default());
    peers.set_addr(2, addr);
    let mut network = peers.factory(0).new_client(2, &BasicNode::default()).await;
    let err = network.vote(vote_rpc(), option(200)).await.unwrap_err();
    assert!(matches!(err, RPCError::Timeout(_)), "{err}");

    // The fake peer answers as node 2; asked as node 3 it is refused.
    let (addr, _close) = fake_peer(1).await;
    peers.set_addr(3, addr);
    let mut network = peers.factory(0).new_client(3, &BasicNode::default()).await;
    let err = network.vote(vote_rpc(), option(2_000)).await.unwrap_err();
    assert!(matches!(err, RPCError::Unreachable(_)), "{err}");
    assert!(err.to_string().contains("expected node 3"), "{err}");

    // Unknown peer: no address.
    let mut network = peers.factory(0).new_client(9, &BasicNode::default()).await;
    let err = network.vote(vote_rpc(), option(2_000)).await.unwrap_err();
    assert!(err.to_string().contains("no address"), "{err}");
}
