//! The client side of the transport. [`Peers`] is per node: the addresses of the peer nodes and
//! one connection to each, shared by every group (requests are multiplexed by correlation id: a
//! writer task, a reader task and a table of waiting requests). A connection that breaks fails
//! all its waiting requests at once; the next request redials, with backoff after failed dials.
//! [`NetworkFactory`] (one per group) and [`Network`] (one per group and target) are openraft's
//! network over it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use bytes::Bytes;
use openraft::BasicNode;
use openraft::error::{
    NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetworkFactory, v2::RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::Instrument;

use super::codec::{self, ErrorBody, Hello, SnapshotRequest};
use super::conn::Conn;
use super::error::TransportError;
use super::frame::{FrameReader, Kind, Outgoing};
use super::metrics;
use super::server::Groups;
use super::{GroupId, PROTOCOL_VERSION, TransportConfig, host_of};
use crate::identity::Identity;
use crate::types::{BoundarySnapshot, NodeId, TypeConfig, typ};

/// This node's identity and its peers' addresses, with one connection per peer shared by every
/// group. Cheap to clone (shared).
#[derive(Clone)]
pub struct Peers {
    shared: Arc<Shared>,
    links: Arc<Mutex<HashMap<NodeId, Arc<Link>>>>,
}

struct Shared {
    cluster_id: String,
    node_id: NodeId,
    config: TransportConfig,
    addrs: RwLock<HashMap<NodeId, String>>,
    /// This node's identity, told to peers in every Hello (none: 0, unknown).
    identity: Option<Arc<Identity>>,
}

impl Shared {
    fn hello(&self, peer: NodeId) -> Hello {
        Hello {
            cluster_id: self.cluster_id.clone(),
            node_id: self.node_id,
            protocol_version: PROTOCOL_VERSION,
            identity: self.identity.as_ref().map_or(0, |i| i.own()),
            known_as: self.identity.as_ref().and_then(|i| i.known_as(peer)),
        }
    }

    fn addr(&self, node: NodeId) -> Option<String> {
        self.addrs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&node)
            .cloned()
    }
}

impl Peers {
    /// The peers of node `node_id` of cluster `cluster_id`, none known yet.
    pub fn new(cluster_id: impl Into<String>, node_id: NodeId, config: TransportConfig) -> Self {
        Self::build(cluster_id.into(), node_id, config, None)
    }

    /// Likewise, telling peers `identity` and learning from theirs ([`crate::identity`]).
    pub fn with_identity(
        cluster_id: impl Into<String>,
        node_id: NodeId,
        config: TransportConfig,
        identity: Arc<Identity>,
    ) -> Self {
        Self::build(cluster_id.into(), node_id, config, Some(identity))
    }

    fn build(
        cluster_id: String,
        node_id: NodeId,
        config: TransportConfig,
        identity: Option<Arc<Identity>>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                cluster_id,
                node_id,
                config,
                addrs: RwLock::new(HashMap::new()),
                identity,
            }),
            links: Arc::default(),
        }
    }

    /// Opens a connection to `node` if none is open (exchanging Hellos): how a node on a new
    /// data directory meets peers it has nothing to send to yet.
    pub async fn greet(&self, node: NodeId) -> Result<(), TransportError> {
        self.link(node).connection().await.map(|_| ())
    }

    /// This node's identity, if it tells one.
    pub(crate) fn identity(&self) -> Option<&Arc<Identity>> {
        self.shared.identity.as_ref()
    }

    /// Sets the address of peer `node`, `host:port` (resolved at every dial), and makes it a
    /// known peer. A connection to an older address is closed at its next use.
    pub fn set_addr(&self, node: NodeId, addr: impl ToString) {
        self.shared
            .addrs
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(node, addr.to_string());
    }

    /// Forgets peer `node`: its connections are refused by the server and no longer dialled.
    pub fn remove(&self, node: NodeId) {
        self.shared
            .addrs
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&node);
        self.links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&node);
    }

    /// Whether `node` is a known peer.
    pub fn contains(&self, node: NodeId) -> bool {
        self.shared.addr(node).is_some()
    }

    /// This node's cluster id.
    pub fn cluster_id(&self) -> &str {
        &self.shared.cluster_id
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.shared.node_id
    }

    /// The transport's settings.
    pub fn config(&self) -> &TransportConfig {
        &self.shared.config
    }

    /// openraft's network factory for group `group`.
    pub fn factory(&self, group: GroupId) -> NetworkFactory {
        NetworkFactory {
            peers: self.clone(),
            group,
            groups: None,
        }
    }

    /// Forwards a request for `group` to peer `node` ([`Kind::Propose`]), where the group's
    /// [`super::ForwardHandler`] answers it; waits at most `ttl` for the answer's body. A
    /// timeout is [`TransportError::Timeout`].
    pub async fn forward(
        &self,
        node: NodeId,
        group: GroupId,
        body: Bytes,
        ttl: Duration,
    ) -> Result<Bytes, TransportError> {
        let answer = self
            .link(node)
            .request(Kind::Propose, group, vec![body], ttl)
            .await;
        match answer {
            Ok(body) => Ok(body),
            Err(CallError::Timeout(after)) => Err(TransportError::Timeout(after)),
            Err(CallError::Transport(e)) => Err(e),
        }
    }

    /// This node's Hello to `peer`: who it is, and what it knows `peer` as.
    pub(crate) fn hello(&self, peer: NodeId) -> Hello {
        self.shared.hello(peer)
    }

    /// Requests waiting for an answer from `node` on its open connection (tests).
    #[cfg(test)]
    pub(super) async fn waiting(&self, node: NodeId) -> usize {
        let link = self.link(node);
        let state = link.state.lock().await;
        state
            .conn
            .as_ref()
            .and_then(|c| c.pending.lock().as_ref().map(HashMap::len))
            .unwrap_or(0)
    }

    fn link(&self, node: NodeId) -> Arc<Link> {
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(links.entry(node).or_insert_with(|| {
            Arc::new(Link {
                peer: node,
                shared: Arc::clone(&self.shared),
                state: tokio::sync::Mutex::new(LinkState {
                    conn: None,
                    backoff: backoff(&self.shared.config),
                    retry_at: None,
                }),
            })
        }))
    }
}

fn backoff(config: &TransportConfig) -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(config.redial_min_delay)
        .with_max_delay(config.redial_max_delay)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Why a request got no answer.
enum CallError {
    /// No answer within the request's time.
    Timeout(Duration),
    /// Connection trouble or a refusal.
    Transport(TransportError),
}

impl From<TransportError> for CallError {
    fn from(e: TransportError) -> Self {
        CallError::Transport(e)
    }
}

/// The connection to one peer, dialled when needed.
struct Link {
    peer: NodeId,
    shared: Arc<Shared>,
    state: tokio::sync::Mutex<LinkState>,
}

struct LinkState {
    conn: Option<Arc<Conn>>,
    backoff: ExponentialBackoff,
    /// No dial before this, after a failed one.
    retry_at: Option<Instant>,
}

impl Link {
    /// Sends a request and waits for its answer's body, all within `ttl`.
    async fn request(
        &self,
        kind: Kind,
        group: GroupId,
        parts: Vec<Bytes>,
        ttl: Duration,
    ) -> Result<Bytes, CallError> {
        let deadline = Instant::now() + ttl;
        let conn = tokio::time::timeout_at(deadline, self.connection())
            .await
            .map_err(|_| CallError::Timeout(ttl))??;
        let answer = match tokio::time::timeout_at(deadline, conn.call(kind, group, parts)).await {
            Ok(answer) => answer?,
            Err(_) => {
                // Requests time out and nothing at all arrives: a dead (blackholed) link.
                if conn.silent_for() > self.shared.config.silence_timeout {
                    tracing::debug!(peer = self.peer, "silent connection closed");
                    metrics::error_reason("silent_connection");
                    conn.close();
                }
                return Err(CallError::Timeout(ttl));
            }
        };
        match answer.kind {
            Kind::Response => Ok(answer.body),
            Kind::Error => {
                let error: ErrorBody = codec::from_json("error", &answer.body)?;
                Err(CallError::Transport(TransportError::Remote {
                    code: error.code,
                    message: error.message,
                }))
            }
            other => Err(CallError::Transport(TransportError::malformed(
                "answer",
                format!("a {} frame", other.as_str()),
            ))),
        }
    }

    /// The open connection, dialled if there is none (unless a recent dial failed).
    async fn connection(&self) -> Result<Arc<Conn>, TransportError> {
        let mut state = self.state.lock().await;
        let addr = self
            .shared
            .addr(self.peer)
            .ok_or(TransportError::NoAddress(self.peer))?;
        if let Some(conn) = &state.conn {
            if !conn.is_closed() && conn.addr == addr {
                return Ok(Arc::clone(conn));
            }
            conn.close();
            state.conn = None;
        }
        if state.retry_at.is_some_and(|at| Instant::now() < at) {
            return Err(TransportError::BackingOff(self.peer));
        }
        let config = &self.shared.config;
        let dialled = tokio::time::timeout(config.connect_timeout, self.dial(&addr))
            .await
            .unwrap_or_else(|_| {
                Err(TransportError::Io(std::io::Error::from(
                    std::io::ErrorKind::TimedOut,
                )))
            });
        match dialled {
            Ok(conn) => {
                state.backoff = backoff(config);
                state.retry_at = None;
                state.conn = Some(Arc::clone(&conn));
                Ok(conn)
            }
            Err(e) => {
                metrics::error(&e);
                let delay = state.backoff.next().unwrap_or(config.redial_max_delay);
                state.retry_at = Some(Instant::now() + delay);
                tracing::debug!(peer = self.peer, error = %e, ?delay, "dial failed");
                Err(e)
            }
        }
    }

    /// Connects, exchanges Hellos and starts the connection's reader and writer.
    async fn dial(&self, addr: &str) -> Result<Arc<Conn>, TransportError> {
        let config = &self.shared.config;
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (read, mut write) = match &config.tls {
            None => super::split(stream),
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from(host_of(addr).to_owned())
                    .map_err(|e| TransportError::Tls(format!("{addr}: {e}")))?;
                let connector = tokio_rustls::TlsConnector::from(Arc::clone(&tls.client));
                let stream = connector
                    .connect(name, stream)
                    .await
                    .map_err(|e| TransportError::Tls(format!("{addr}: {e}")))?;
                super::split(stream)
            }
        };
        let mut reader = FrameReader::new(BufReader::new(read), config.max_frame_bytes);
        let ours = self.shared.hello(self.peer);
        let hello = codec::to_json("hello", &ours)?;
        Outgoing::new(Kind::Hello, 0, 0, vec![hello], config.max_frame_bytes)?
            .write_to(&mut write)
            .await?;
        write.flush().await?;
        let answer = reader
            .next()
            .await?
            .ok_or(TransportError::ConnectionClosed)?;
        match answer.kind {
            Kind::Response => {
                let theirs: Hello = codec::from_json("hello", &answer.body)?;
                if theirs.cluster_id != ours.cluster_id
                    || theirs.node_id != self.peer
                    || theirs.protocol_version != PROTOCOL_VERSION
                {
                    return Err(TransportError::Hello(format!(
                        "{addr} answered as node {} of cluster {:?} (protocol {}), expected node {}",
                        theirs.node_id, theirs.cluster_id, theirs.protocol_version, self.peer
                    )));
                }
                if let Some(identity) = &self.shared.identity {
                    identity.met(self.peer, theirs.identity, theirs.known_as);
                }
            }
            Kind::Error => {
                let error: ErrorBody = codec::from_json("error", &answer.body)?;
                return Err(TransportError::Remote {
                    code: error.code,
                    message: error.message,
                });
            }
            other => {
                return Err(TransportError::Hello(format!(
                    "hello answered with a {} frame",
                    other.as_str()
                )));
            }
        }
        Ok(Conn::start(
            addr.to_owned(),
            self.peer,
            reader,
            write,
            config.write_queue,
        ))
    }
}

/// openraft's network factory for one group of this node.
pub struct NetworkFactory {
    peers: Peers,
    group: GroupId,
    groups: Option<Groups>,
}

impl NetworkFactory {
    /// Consults `groups` before each (pre-)vote request: a rejoining group whose log is past
    /// the bootstrap entry does not stand for election (see [`Groups`]).
    pub fn guarded_by(mut self, groups: Groups) -> Self {
        self.groups = Some(groups);
        self
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Network;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Network {
        Network {
            link: self.peers.link(target),
            group: self.group,
            local: self.peers.node_id(),
            target,
            groups: self.groups.clone(),
        }
    }
}

/// openraft's network from one group of this node to one target node.
pub struct Network {
    link: Arc<Link>,
    group: GroupId,
    local: NodeId,
    target: NodeId,
    groups: Option<Groups>,
}

impl Network {
    /// Refuses to send a (pre-)vote request of a rejoining group whose log is past the
    /// bootstrap entry: it may lack committed entries, and a lagging voter could elect it.
    fn check_candidacy(&self, rpc: &VoteRequest<TypeConfig>) -> Result<(), RPCError<TypeConfig>> {
        let rejoining = self
            .groups
            .as_ref()
            .is_some_and(|groups| groups.is_rejoining(self.group));
        if rejoining && rpc.last_log_id.as_ref().is_some_and(|l| l.index > 0) {
            let e = TransportError::Rejoining;
            metrics::error(&e);
            return Err(RPCError::Unreachable(Unreachable::new(&e)));
        }
        Ok(())
    }

    /// Sends a request and decodes its answer, mapping failures to openraft's kinds: a timeout
    /// is `Timeout`, anything else `Unreachable` (openraft backs off). A failure of the remote
    /// Raft cannot be a `RemoteError` here (`RPCError<C>` has `Infallible` remote errors) and is
    /// `Unreachable` as well.
    async fn rpc<T: DeserializeOwned>(
        &self,
        kind: Kind,
        action: RPCTypes,
        parts: Vec<Bytes>,
        option: &RPCOption,
    ) -> Result<T, RPCError<TypeConfig>> {
        let span = tracing::debug_span!(
            "raft_rpc",
            group = self.group,
            target = self.target,
            kind = kind.as_str()
        );
        let ttl = option.soft_ttl();
        let answer = self
            .link
            .request(kind, self.group, parts, ttl)
            .instrument(span)
            .await;
        let body = match answer {
            Ok(body) => body,
            Err(CallError::Timeout(timeout)) => {
                metrics::error_reason("timeout");
                return Err(RPCError::Timeout(Timeout {
                    action,
                    id: self.local,
                    target: self.target,
                    timeout,
                }));
            }
            Err(CallError::Transport(e)) => {
                if !matches!(e, TransportError::BackingOff(_)) {
                    metrics::error(&e);
                }
                return Err(RPCError::Unreachable(Unreachable::new(&e)));
            }
        };
        codec::from_json(kind.as_str(), &body).map_err(|e| {
            metrics::error(&e);
            RPCError::Network(NetworkError::new(&e))
        })
    }
}

impl RaftNetworkV2<TypeConfig> for Network {
    type SnapshotData = BoundarySnapshot;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let parts = codec::encode_append_entries(&rpc)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        self.rpc(Kind::AppendEntries, RPCTypes::AppendEntries, parts, &option)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.check_candidacy(&rpc)?;
        let body = codec::to_json("vote", &rpc)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        self.rpc(Kind::Vote, RPCTypes::Vote, vec![body], &option)
            .await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.check_candidacy(&rpc)?;
        let body = codec::to_json("vote", &rpc)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        self.rpc(Kind::PreVote, RPCTypes::Vote, vec![body], &option)
            .await
    }

    async fn full_snapshot(
        &mut self,
        vote: typ::Vote,
        snapshot: typ::Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let request = SnapshotRequest {
            vote,
            meta: snapshot.meta,
            data: snapshot.snapshot,
        };
        let body = codec::to_json("snapshot", &request)
            .map_err(|e| StreamingError::Unreachable(Unreachable::new(&e)))?;
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            answer = self.rpc(Kind::InstallSnapshot, RPCTypes::InstallSnapshot, vec![body], &option) => {
                answer.map_err(StreamingError::from)
            }
        }
    }
}
