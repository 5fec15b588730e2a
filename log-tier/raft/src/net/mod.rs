//! The replication transport (docs/design/replication.md, section 4): openraft's RPCs between
//! log nodes over TCP, every group of a node multiplexed on one connection per peer.
//!
//! - [`frame`]: the framing, `u32 length | u8 kind | u64 correlation | u64 group | body`, read
//!   under a frame cap with buffers that grow only as bytes arrive;
//! - [`codec`]: the bodies: AppendEntries in binary with each batch as raw bytes, small
//!   messages (Hello, votes, responses, snapshot metadata, errors) as JSON;
//! - [`server`]: [`RaftServer`], which accepts peers and routes each request by group id to the
//!   local Raft handle in [`Groups`];
//! - [`client`]: [`Peers`] (one multiplexed connection per peer, redialled with backoff) and
//!   [`NetworkFactory`] / [`Network`], openraft's network for one group;
//! - [`metrics`]: the transport's counters and gauges.
//!
//! Peers: with [`PeerTls`] (`log.cluster.tls`) every connection is mutual TLS, both ends
//! presenting a certificate that chains to the cluster's CA, and the dialling side checking the
//! name it dialled against the server's certificate; only then is the Hello (cluster id, node id
//! in the known peer set, protocol version) exchanged. Any holder of a certificate of the
//! cluster's CA is a cluster member, as with Kafka's inter-broker mTLS. Without TLS, peers are
//! known by their Hello alone, which is why the configuration keeps such a cluster on loopback.
//! Peer addresses are `host:port`, resolved at every dial (a restarted pod has a new address).

pub mod client;
pub mod codec;
mod conn;
pub mod error;
pub mod frame;
pub mod metrics;
pub mod server;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

pub use client::{Network, NetworkFactory, Peers};
pub use error::{ErrorCode, TransportError};
pub use frame::{DEFAULT_MAX_FRAME_BYTES, Frame, Kind};
pub use server::{ForwardHandler, Groups, RaftNode, RaftServer};

/// The id of a Raft group on the wire (one replicated partition); the node maps it to its
/// partition. Every node must agree on the mapping.
pub type GroupId = u64;

/// The version of this protocol, sent in Hello; a peer speaking another is refused.
pub const PROTOCOL_VERSION: u16 = 1;

/// The reading half of a connection, TCP or TLS over it.
pub(crate) type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// The writing half of a connection, TCP or TLS over it.
pub(crate) type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// Splits a stream into boxed halves.
pub(crate) fn split<S: AsyncRead + AsyncWrite + Send + 'static>(
    stream: S,
) -> (ReadHalf, WriteHalf) {
    let (read, write) = tokio::io::split(stream);
    (Box::new(read), Box::new(write))
}

/// Mutual TLS between peers: the server side (asks for and verifies a client certificate) and
/// the client side (verifies the server, presents its own certificate), both trusting the
/// cluster's CA.
#[derive(Clone)]
pub struct PeerTls {
    /// For accepted connections.
    pub server: Arc<rustls::ServerConfig>,
    /// For dialled connections.
    pub client: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PeerTls { .. }")
    }
}

/// The host of a `host:port` peer address (brackets of an IPv6 literal removed).
pub(crate) fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Settings of the transport, for the server and the client side of one node.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// The largest frame accepted or sent, header included, in bytes. Default 2 MiB + 64 KiB:
    /// an AppendEntries read holds at most ~1 MiB of entries (`store::MAX_READ_BYTES`) but always
    /// one whole entry.
    pub max_frame_bytes: usize,
    /// Connections the server holds at once; one more is refused with an Error frame.
    /// Default 256.
    pub max_connections: usize,
    /// Requests of one connection the server runs at once; beyond it the server stops reading
    /// that connection until one finishes. Default 64.
    pub max_in_flight_per_connection: usize,
    /// A server connection with nothing received and nothing in flight for this long is closed.
    /// Default 60 s.
    pub idle_timeout: Duration,
    /// The time a new connection has to complete its Hello, on either side. Default 2 s.
    pub handshake_timeout: Duration,
    /// The time a dial (connect and Hello) may take. Default 2 s.
    pub connect_timeout: Duration,
    /// A client connection on which requests time out while nothing at all arrived for this long
    /// is considered dead (a blackholed link) and closed, so the next request redials.
    /// Default 3 s.
    pub silence_timeout: Duration,
    /// The first delay before redialling a peer whose dial failed. Default 50 ms.
    pub redial_min_delay: Duration,
    /// The largest delay between redials of a peer. Default 2 s.
    pub redial_max_delay: Duration,
    /// Frames queued for one connection's writer before senders wait. Default 128.
    pub write_queue: usize,
    /// Mutual TLS between peers; `None`: plain TCP. Default `None`.
    pub tls: Option<PeerTls>,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_connections: 256,
            max_in_flight_per_connection: 64,
            idle_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            silence_timeout: Duration::from_secs(3),
            redial_min_delay: Duration::from_millis(50),
            redial_max_delay: Duration::from_secs(2),
            write_queue: 128,
            tls: None,
        }
    }
}
