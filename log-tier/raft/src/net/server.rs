//! The server side of the transport: [`RaftServer`] accepts peers' connections, checks each
//! one's Hello, and runs every request concurrently against the local Raft of its group (found
//! in [`Groups`]), answering with the request's correlation id. Bounded: a cap on connections,
//! on requests in flight per connection (beyond it the connection is not read), and idle
//! connections are closed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::client::Peers;
use openraft::raft::AppendEntriesResponse;

use super::codec::{self, ErrorBody, Hello, SnapshotRequest};
use super::error::{ErrorCode, TransportError};
use super::frame::{Frame, FrameReader, Kind, Outgoing, write_loop};
use super::metrics::{self, ConnectionGauge, Side};
use super::{GroupId, PROTOCOL_VERSION, TransportConfig};
use crate::sm::StateMachine;
use crate::types::{TypeConfig, typ};

/// A local Raft node of one group.
pub type RaftNode = openraft::Raft<TypeConfig, StateMachine>;

/// Answers a request a peer forwarded to a group ([`Groups::accept_forwarded`]): the request's
/// body in, the answer's body out.
pub type ForwardHandler =
    Arc<dyn Fn(Bytes) -> futures::future::BoxFuture<'static, Bytes> + Send + Sync>;

/// The Raft groups open on this node, by group id: the node inserts a group's handle when it
/// opens it and removes it when it closes it. Cheap to clone (shared).
///
/// A group may be *rejoining* ([`Groups::set_rejoining`]): its state was pristine when this
/// node opened it, which on a running cluster means this node lost its disk. Such a node has
/// forgotten entries it acknowledged as part of a majority, so until it holds what a leader
/// says is committed it must neither vote (with a lagging node it would elect a leader missing
/// committed entries) nor stand for election: votes and pre-votes from candidates past the
/// bootstrap entry are refused ([`ErrorCode::Rejoining`]), and its own (pre-)vote requests are
/// not sent once its log is past that entry ([`super::client::Network`]). In a new cluster
/// every follower is pristine and votes for the bootstrapping node, whose log holds only the
/// initial membership (index 0).
#[derive(Clone, Default)]
pub struct Groups {
    inner: Arc<RwLock<HashMap<GroupId, RaftNode>>>,
    rejoining: Arc<RwLock<HashMap<GroupId, Arc<Rejoin>>>>,
    /// When each group last received an AppendEntries (a leader's replication or heartbeat).
    heard: Arc<RwLock<HashMap<GroupId, std::time::Instant>>>,
    /// The groups that take requests forwarded by peers (the metadata group), and who answers.
    forwarded: Arc<RwLock<HashMap<GroupId, ForwardHandler>>>,
}

/// What a rejoining group has learnt from leaders: the highest commit index one announced;
/// and the durable marker that keeps it rejoining across a restart in the middle of catching up
/// (its log is no longer pristine then).
#[derive(Debug, Default)]
struct Rejoin {
    leader_commit: std::sync::Mutex<Option<u64>>,
    marker: Option<crate::state::DurableValue>,
    votes_refused: std::sync::atomic::AtomicU64,
}

impl Rejoin {
    fn saw_commit(&self, index: u64) {
        let mut commit = self
            .leader_commit
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *commit = Some(commit.map_or(index, |c| c.max(index)));
    }

    /// Whether a log ending at `last_index` holds every entry a leader said is committed.
    fn caught_up(&self, last_index: Option<u64>) -> bool {
        let commit = *self
            .leader_commit
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        matches!((commit, last_index), (Some(c), Some(last)) if last >= c)
    }
}

impl Groups {
    /// Lets peers forward requests for `group` ([`super::frame::Kind::Propose`]): `handler`
    /// answers each.
    pub fn accept_forwarded(&self, group: GroupId, handler: ForwardHandler) {
        self.forwarded
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(group, handler);
    }

    fn forward_handler(&self, group: GroupId) -> Option<ForwardHandler> {
        self.forwarded
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&group)
            .cloned()
    }

    /// Registers the Raft of `group`; returns the one it replaces.
    pub fn insert(&self, group: GroupId, raft: RaftNode) -> Option<RaftNode> {
        self.inner
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(group, raft)
    }

    /// Marks `group` as rejoining (see [`Groups`]) until it has caught up; `marker` is then
    /// set to false.
    pub(crate) fn set_rejoining(&self, group: GroupId, marker: Option<crate::state::DurableValue>) {
        let rejoin = Rejoin {
            leader_commit: std::sync::Mutex::new(None),
            marker,
            votes_refused: std::sync::atomic::AtomicU64::new(0),
        };
        self.rejoining
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(group, Arc::new(rejoin));
    }

    /// The groups rejoining now.
    pub(crate) fn rejoining_groups(&self) -> Vec<GroupId> {
        self.rejoining
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .copied()
            .collect()
    }

    /// Whether `group` is rejoining.
    pub fn is_rejoining(&self, group: GroupId) -> bool {
        self.rejoin(group).is_some()
    }

    /// Votes and pre-votes `group` refused while rejoining (`None` once it is not rejoining).
    pub fn votes_refused(&self, group: GroupId) -> Option<u64> {
        self.rejoin(group)
            .map(|r| r.votes_refused.load(std::sync::atomic::Ordering::Relaxed))
    }

    fn rejoin(&self, group: GroupId) -> Option<Arc<Rejoin>> {
        self.rejoining
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&group)
            .cloned()
    }

    pub(crate) fn rejoined(&self, group: GroupId) {
        let was = self
            .rejoining
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&group);
        if let Some(rejoin) = was {
            if let Some(marker) = &rejoin.marker
                && let Err(e) = marker.store(&false)
            {
                tracing::warn!(group, error = %e, "the rejoining marker could not be cleared");
            }
            tracing::info!(
                group,
                "caught up with the leader's commit point; voting again"
            );
        }
    }

    /// When `group` last received an AppendEntries from a leader (`None`: not since it opened).
    pub fn leader_heard(&self, group: GroupId) -> Option<std::time::Instant> {
        self.heard
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&group)
            .copied()
    }

    fn heard_from_leader(&self, group: GroupId) {
        self.heard
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(group, std::time::Instant::now());
    }

    /// Unregisters `group`; requests for it are refused from now on.
    pub fn remove(&self, group: GroupId) -> Option<RaftNode> {
        self.heard
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&group);
        self.rejoining
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&group);
        self.inner
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&group)
    }

    /// The Raft of `group`, if open.
    pub fn get(&self, group: GroupId) -> Option<RaftNode> {
        self.inner
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&group)
            .cloned()
    }
}

/// A running server; dropping it (or [`RaftServer::shutdown`]) stops accepting and closes every
/// connection it holds.
pub struct RaftServer {
    addr: SocketAddr,
    accept: JoinHandle<()>,
    stop: watch::Sender<()>,
}

/// What every connection of a server shares.
struct Shared {
    peers: Peers,
    groups: Groups,
    config: TransportConfig,
    connections: Arc<Semaphore>,
}

impl RaftServer {
    /// Serves `listener`: peers known to `peers` (which also gives this node's cluster id, node
    /// id and the transport settings) reach the groups in `groups`.
    pub fn spawn(
        listener: TcpListener,
        peers: Peers,
        groups: Groups,
    ) -> Result<Self, TransportError> {
        let addr = listener.local_addr()?;
        let config = peers.config().clone();
        let shared = Arc::new(Shared {
            connections: Arc::new(Semaphore::new(config.max_connections)),
            peers,
            groups,
            config,
        });
        let (stop, stopped) = watch::channel(());
        let span = tracing::info_span!("raft_server", %addr, node = shared.peers.node_id());
        let accept = tokio::spawn(accept_loop(listener, shared, stopped).instrument(span));
        Ok(Self { addr, accept, stop })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and closes every connection.
    pub async fn shutdown(self) {
        self.stop.send_replace(());
        self.accept.abort();
        tokio::task::yield_now().await;
    }
}

impl Drop for RaftServer {
    fn drop(&mut self) {
        self.accept.abort();
        // Connections end when they see the stop sender gone.
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stopped: watch::Receiver<()>) {
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                metrics::error_reason("accept");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = Arc::clone(&shared.connections).try_acquire_owned() else {
            metrics::error_reason("busy");
            // A TLS peer could not read a plain Error frame: it sees the connection close.
            if shared.config.tls.is_none() {
                tokio::spawn(refuse_busy(stream, shared.config.max_frame_bytes));
            }
            continue;
        };
        let span = tracing::debug_span!("raft_connection", %remote);
        tokio::spawn(
            serve_connection(stream, Arc::clone(&shared), stopped.clone(), permit).instrument(span),
        );
    }
}

/// Answers a connection over the cap with an Error frame and closes it.
async fn refuse_busy(stream: TcpStream, max_frame_bytes: usize) {
    let (_, write) = stream.into_split();
    let (tx, rx) = mpsc::channel(1);
    if let Ok(frame) = error_frame(
        0,
        0,
        ErrorCode::Busy,
        "too many connections",
        max_frame_bytes,
    ) {
        let _ = tx.send(frame).await;
    }
    drop(tx);
    let _ = write_loop(write, rx).await;
}

fn error_frame(
    correlation: u64,
    group: u64,
    code: ErrorCode,
    message: impl ToString,
    max_frame_bytes: usize,
) -> Result<Outgoing, TransportError> {
    let body = codec::to_json(
        "error",
        &ErrorBody {
            code,
            message: message.to_string(),
        },
    )?;
    Outgoing::new(Kind::Error, correlation, group, vec![body], max_frame_bytes)
}

/// Reads one connection: the Hello, then requests until it ends, fails, idles out or the server
/// stops.
async fn serve_connection(
    stream: TcpStream,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<()>,
    _permit: OwnedSemaphorePermit,
) {
    let _gauge = ConnectionGauge::open(Side::Server);
    let config = &shared.config;
    let (read, write) = match &config.tls {
        None => super::split(stream),
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&tls.server));
            match tokio::time::timeout(config.handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => super::split(stream),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "peer refused: TLS handshake failed");
                    metrics::error_reason("tls");
                    return;
                }
                Err(_) => {
                    metrics::error_reason("handshake_timeout");
                    return;
                }
            }
        }
    };
    let mut reader = FrameReader::new(BufReader::new(read), config.max_frame_bytes);
    let (tx, rx) = mpsc::channel(config.max_in_flight_per_connection + 2);
    let writer = tokio::spawn(write_loop(write, rx));
    let reply = Reply {
        tx,
        max_frame_bytes: config.max_frame_bytes,
    };
    if handshake(&mut reader, &shared, &reply).await {
        read_requests(&mut reader, &shared, &reply, &mut stopped).await;
    }
    drop(reply);
    // The writer ends once every request task has answered (or failed to); bounded so that a
    // peer that stopped reading cannot hold the connection.
    let mut writer = writer;
    if tokio::time::timeout(config.handshake_timeout, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

/// Sends frames to the connection's writer.
#[derive(Clone)]
struct Reply {
    tx: mpsc::Sender<Outgoing>,
    max_frame_bytes: usize,
}

impl Reply {
    async fn error(&self, correlation: u64, group: u64, code: ErrorCode, message: impl ToString) {
        metrics::error_reason(code.as_str());
        if let Ok(frame) = error_frame(correlation, group, code, message, self.max_frame_bytes) {
            let _ = self.tx.send(frame).await;
        }
    }

    async fn response(&self, correlation: u64, group: u64, body: Bytes) {
        match Outgoing::new(
            Kind::Response,
            correlation,
            group,
            vec![body],
            self.max_frame_bytes,
        ) {
            Ok(frame) => {
                let _ = self.tx.send(frame).await;
            }
            Err(e) => self.error(correlation, group, ErrorCode::TooLarge, e).await,
        }
    }
}

/// Reads and checks the peer's Hello and answers with ours; false when the connection must
/// close (after an Error frame).
async fn handshake<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
    shared: &Shared,
    reply: &Reply,
) -> bool {
    let first = tokio::time::timeout(shared.config.handshake_timeout, reader.next()).await;
    let frame = match first {
        Ok(Ok(Some(frame))) => frame,
        Ok(Ok(None)) => return false,
        Ok(Err(e)) => {
            metrics::error(&e);
            reply.error(0, 0, ErrorCode::BadHello, e).await;
            return false;
        }
        Err(_) => {
            metrics::error_reason("handshake_timeout");
            return false;
        }
    };
    match check_hello(&frame, &shared.peers) {
        Ok(hello) => {
            tracing::debug!(peer = hello.node_id, "peer connected");
            // Answered with what this node knew the peer as before this Hello.
            let ours = shared.peers.hello(hello.node_id);
            if let Some(identity) = shared.peers.identity() {
                identity.met(hello.node_id, hello.identity, hello.known_as);
            }
            match codec::to_json("hello", &ours) {
                Ok(body) => {
                    reply.response(frame.correlation, 0, body).await;
                    true
                }
                Err(_) => false,
            }
        }
        Err(reason) => {
            tracing::warn!(%reason, "peer refused");
            reply
                .error(frame.correlation, 0, ErrorCode::BadHello, reason)
                .await;
            false
        }
    }
}

/// The peer's Hello, if it is one this node accepts.
fn check_hello(frame: &Frame, peers: &Peers) -> Result<Hello, String> {
    if frame.kind != Kind::Hello {
        return Err(format!("expected hello, got {}", frame.kind.as_str()));
    }
    let hello: Hello = codec::from_json("hello", &frame.body).map_err(|e| e.to_string())?;
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err(format!(
            "protocol version {} (this node speaks {PROTOCOL_VERSION})",
            hello.protocol_version
        ));
    }
    if hello.cluster_id != peers.cluster_id() {
        return Err(format!("cluster {:?} is not this node's", hello.cluster_id));
    }
    if hello.node_id == peers.node_id() || !peers.contains(hello.node_id) {
        return Err(format!("node {} is not a known peer", hello.node_id));
    }
    Ok(hello)
}

/// Reads requests and runs each in its own task, at most `max_in_flight_per_connection` at once.
async fn read_requests<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut FrameReader<R>,
    shared: &Shared,
    reply: &Reply,
    stopped: &mut watch::Receiver<()>,
) {
    let limit = shared.config.max_in_flight_per_connection;
    let in_flight = Arc::new(Semaphore::new(limit));
    loop {
        let next = tokio::select! {
            _ = stopped.changed() => return,
            next = tokio::time::timeout(shared.config.idle_timeout, reader.next()) => next,
        };
        let frame = match next {
            Err(_) if in_flight.available_permits() == limit => {
                tracing::debug!("idle connection closed");
                return;
            }
            Err(_) => continue,
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) => return,
            Ok(Err(TransportError::UnknownKind {
                kind,
                correlation,
                group,
            })) => {
                reply
                    .error(
                        correlation,
                        group,
                        ErrorCode::UnknownKind,
                        format!("kind {kind}"),
                    )
                    .await;
                continue;
            }
            Ok(Err(e)) => {
                metrics::error(&e);
                let code = match e {
                    TransportError::FrameTooLarge { .. } => ErrorCode::TooLarge,
                    _ => ErrorCode::Malformed,
                };
                reply.error(0, 0, code, e).await;
                return;
            }
        };
        let permit = tokio::select! {
            _ = stopped.changed() => return,
            permit = Arc::clone(&in_flight).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        tokio::spawn(handle_request(
            frame,
            shared.groups.clone(),
            reply.clone(),
            permit,
        ));
    }
}

/// Runs one request against its group's Raft and answers it.
async fn handle_request(frame: Frame, groups: Groups, reply: Reply, _permit: OwnedSemaphorePermit) {
    let (correlation, group) = (frame.correlation, frame.group);
    if !matches!(
        frame.kind,
        Kind::AppendEntries | Kind::Vote | Kind::PreVote | Kind::InstallSnapshot | Kind::Propose
    ) {
        let message = format!("{} is not a request", frame.kind.as_str());
        return reply
            .error(correlation, group, ErrorCode::Unexpected, message)
            .await;
    }
    if frame.kind == Kind::Propose {
        // Answered by the group's handler (the metadata group's checks, places and commits).
        return match groups.forward_handler(group) {
            Some(handler) => {
                let answer = handler(frame.body).await;
                reply.response(correlation, group, answer).await
            }
            None => {
                let message = format!("group {group} takes no forwarded requests here");
                reply
                    .error(correlation, group, ErrorCode::UnknownGroup, message)
                    .await
            }
        };
    }
    let Some(raft) = groups.get(group) else {
        let message = format!("group {group} is not open here");
        return reply
            .error(correlation, group, ErrorCode::UnknownGroup, message)
            .await;
    };
    match dispatch(frame, &groups, raft).await {
        Ok(body) => reply.response(correlation, group, body).await,
        Err(Failure::Rejoining(message)) => {
            reply
                .error(correlation, group, ErrorCode::Rejoining, message)
                .await;
        }
        Err(Failure::Decode(e)) => {
            reply
                .error(correlation, group, ErrorCode::Malformed, e)
                .await;
        }
        Err(Failure::Raft(message)) => {
            reply
                .error(correlation, group, ErrorCode::Raft, message)
                .await;
        }
    }
}

enum Failure {
    Decode(TransportError),
    Raft(String),
    Rejoining(String),
}

async fn dispatch(frame: Frame, groups: &Groups, raft: RaftNode) -> Result<Bytes, Failure> {
    let raft_failed = |e: &dyn std::error::Error| Failure::Raft(e.to_string());
    let rejoin = groups.rejoin(frame.group);
    match frame.kind {
        Kind::AppendEntries => {
            let rpc = codec::decode_append_entries(frame.body).map_err(Failure::Decode)?;
            groups.heard_from_leader(frame.group);
            if let (Some(rejoin), Some(commit)) = (&rejoin, &rpc.leader_commit) {
                rejoin.saw_commit(commit.index);
            }
            // What the log holds once this request succeeds: its last entry (or, for a
            // heartbeat, the entry it follows). Not the metrics' last log index, which is
            // published later: under steady writes each request's commit index passed the
            // published index, and a rejoining follower never counted as caught up (then,
            // with the leader gone, refused every vote: found by tests/silent_leader.rs).
            let holds = rpc
                .entries
                .last()
                .map(|entry| entry.log_id.index)
                .or(rpc.prev_log_id.map(|id| id.index));
            let response = raft
                .append_entries(rpc)
                .await
                .map_err(|e| raft_failed(&e))?;
            let held = match &response {
                AppendEntriesResponse::Success => holds,
                AppendEntriesResponse::PartialSuccess(matched) => matched.map(|id| id.index),
                _ => None,
            };
            if let Some(rejoin) = rejoin
                && rejoin.caught_up(held)
            {
                groups.rejoined(frame.group);
            }
            codec::to_json("append entries response", &response).map_err(Failure::Decode)
        }
        Kind::Vote | Kind::PreVote => {
            let rpc: openraft::raft::VoteRequest<TypeConfig> =
                codec::from_json("vote", &frame.body).map_err(Failure::Decode)?;
            if let Some(rejoin) = &rejoin
                && rpc.last_log_id.is_some_and(|l| l.index > 0)
            {
                rejoin
                    .votes_refused
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Err(Failure::Rejoining(
                    "this node lost its log and is catching up: it votes once it holds what \
                     the leader has committed"
                        .to_owned(),
                ));
            }
            let response = if frame.kind == Kind::Vote {
                raft.vote(rpc).await
            } else {
                raft.pre_vote(rpc).await
            };
            let response = response.map_err(|e| raft_failed(&e))?;
            codec::to_json("vote response", &response).map_err(Failure::Decode)
        }
        _ => {
            let rpc: SnapshotRequest =
                codec::from_json("snapshot", &frame.body).map_err(Failure::Decode)?;
            let snapshot = typ::Snapshot {
                meta: rpc.meta,
                snapshot: rpc.data,
            };
            let response = raft
                .install_full_snapshot(rpc.vote, snapshot)
                .await
                .map_err(|e| raft_failed(&e))?;
            codec::to_json("snapshot response", &response).map_err(Failure::Decode)
        }
    }
}
