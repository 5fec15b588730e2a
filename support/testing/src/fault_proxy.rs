//! A TCP proxy on loopback that a test puts on one directed link (a client's connections to one
//! server) and breaks on demand: pass, cut, blackhole or delay, for each direction apart. The
//! replication tests put one on every link between log nodes (REPLICATION.md: no root needed,
//! unlike network namespaces).
//!
//! - [`Fault::Pass`]: bytes are forwarded as they arrive.
//! - [`Fault::Cut`]: every open connection is closed (both sockets dropped, the peers see a reset
//!   or an end of stream) and new ones are closed as soon as they are accepted, as a crashed
//!   host or a firewall that rejects would.
//! - [`Fault::Blackhole`]: connections stay open but bytes in that direction are read and
//!   dropped, as a partition that loses packets silently; new connections are accepted and
//!   their bytes dropped too. Only a timeout of the peer notices.
//! - [`Fault::Delay`]: each chunk is held for the given time before it is written (order kept).
//!
//! Changing the fault takes effect for chunks read after the change; a chunk already waiting in
//! a delay is still delivered. Counters say how many bytes each direction forwarded and dropped,
//! so a test can wait for traffic instead of sleeping.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does to the bytes of one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward as they arrive.
    Pass,
    /// Close every connection, and every new one at accept.
    Cut,
    /// Read and drop, keeping connections open.
    Blackhole,
    /// Forward each chunk after this long.
    Delay(Duration),
}

/// A direction of the proxied link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the connecting client to the server.
    ToServer,
    /// From the server back to the client.
    ToClient,
}

/// The faults of both directions. [`Fault::Cut`] in either direction cuts the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Faults {
    to_server: Fault,
    to_client: Fault,
}

impl Faults {
    fn get(&self, direction: Direction) -> Fault {
        match direction {
            Direction::ToServer => self.to_server,
            Direction::ToClient => self.to_client,
        }
    }

    fn cut(&self) -> bool {
        self.to_server == Fault::Cut || self.to_client == Fault::Cut
    }
}

/// Bytes seen by one direction.
#[derive(Debug, Default)]
struct Counters {
    forwarded: AtomicU64,
    dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct Stats {
    to_server: Counters,
    to_client: Counters,
    accepted: AtomicU64,
}

impl Stats {
    fn of(&self, direction: Direction) -> &Counters {
        match direction {
            Direction::ToServer => &self.to_server,
            Direction::ToClient => &self.to_client,
        }
    }
}

/// A running proxy; dropping it stops accepting and closes every connection it holds.
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    faults: watch::Sender<Faults>,
    stats: Arc<Stats>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on an ephemeral loopback port and forwards each connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind((upstream.ip(), 0)).await?;
        let addr = listener.local_addr()?;
        let (faults, watch_faults) = watch::channel(Faults {
            to_server: Fault::Pass,
            to_client: Fault::Pass,
        });
        let stats = Arc::new(Stats::default());
        let accept = tokio::spawn(accept_loop(
            listener,
            upstream,
            watch_faults,
            Arc::clone(&stats),
        ));
        Ok(Self {
            addr,
            upstream,
            faults,
            stats,
            accept,
        })
    }

    /// The address clients connect to instead of the upstream's.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server behind the proxy.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Sets the fault of both directions.
    pub fn set(&self, fault: Fault) {
        self.faults.send_replace(Faults {
            to_server: fault,
            to_client: fault,
        });
    }

    /// Sets the fault of one direction, leaving the other as it is.
    pub fn set_direction(&self, direction: Direction, fault: Fault) {
        self.faults.send_modify(|f| match direction {
            Direction::ToServer => f.to_server = fault,
            Direction::ToClient => f.to_client = fault,
        });
    }

    /// Bytes forwarded in `direction` so far.
    pub fn forwarded(&self, direction: Direction) -> u64 {
        self.stats.of(direction).forwarded.load(Ordering::Relaxed)
    }

    /// Bytes read and dropped (blackholed) in `direction` so far.
    pub fn dropped(&self, direction: Direction) -> u64 {
        self.stats.of(direction).dropped.load(Ordering::Relaxed)
    }

    /// Connections accepted so far (including those closed at once under a cut).
    pub fn accepted(&self) -> u64 {
        self.stats.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        // Connections end when they see the sender gone (`changed` fails).
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    faults: watch::Receiver<Faults>,
    stats: Arc<Stats>,
) {
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(_) => {
                // Out of descriptors and the like: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        if faults.borrow().cut() {
            drop(client);
            continue;
        }
        tokio::spawn(connection(
            client,
            upstream,
            faults.clone(),
            Arc::clone(&stats),
        ));
    }
}

/// Pumps one connection both ways until either side ends or the link is cut.
async fn connection(
    client: TcpStream,
    upstream: SocketAddr,
    faults: watch::Receiver<Faults>,
    stats: Arc<Stats>,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return; // the client sees its connection closed, as with a refused one
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let to_server = pump(
        client_read,
        server_write,
        Direction::ToServer,
        faults.clone(),
        Arc::clone(&stats),
    );
    let to_client = pump(
        server_read,
        client_write,
        Direction::ToClient,
        faults,
        stats,
    );
    // Either direction ending (end of stream, error or cut) ends both: the halves drop here.
    tokio::select! {
        () = to_server => {}
        () = to_client => {}
    }
}

/// Copies `from` to `to` under the direction's fault; returns when the stream ends, fails, or
/// the link is cut (or the proxy dropped).
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    direction: Direction,
    mut faults: watch::Receiver<Faults>,
    stats: Arc<Stats>,
) {
    let counters = stats.of(direction);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if faults.borrow_and_update().cut() {
            return;
        }
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(n) => n,
            },
            changed = faults.changed() => {
                if changed.is_err() {
                    return; // the proxy was dropped
                }
                continue;
            }
        };
        let fault = faults.borrow().get(direction);
        match fault {
            Fault::Cut => return,
            Fault::Blackhole => {
                counters.dropped.fetch_add(n as u64, Ordering::Relaxed);
                continue;
            }
            Fault::Delay(delay) => tokio::time::sleep(delay).await,
            Fault::Pass => {}
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        counters.forwarded.fetch_add(n as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eventually;

    /// An echo server: every connection gets back what it sends.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<Vec<u8>> {
        stream.write_all(bytes).await?;
        let mut back = vec![0u8; bytes.len()];
        stream.read_exact(&mut back).await?;
        Ok(back)
    }

    #[tokio::test]
    async fn passes_bytes_both_ways_and_counts_them() {
        let proxy = FaultProxy::start(echo().await).await.unwrap();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut s, b"hello").await.unwrap(), b"hello");
        assert_eq!(proxy.forwarded(Direction::ToServer), 5);
        assert_eq!(proxy.forwarded(Direction::ToClient), 5);
        assert_eq!(proxy.accepted(), 1);
    }

    #[tokio::test]
    async fn a_cut_closes_open_connections_and_refuses_new_ones_until_healed() {
        let proxy = FaultProxy::start(echo().await).await.unwrap();
        let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
        round_trip(&mut open, b"x").await.unwrap();
        proxy.set(Fault::Cut);
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), open.read(&mut buf))
            .await
            .expect("the cut closes the open connection");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        let mut new = TcpStream::connect(proxy.addr()).await.unwrap();
        let read = tokio::time::timeout(Duration::from_secs(10), new.read(&mut buf))
            .await
            .expect("a new connection is closed at accept");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        proxy.set(Fault::Pass);
        let mut healed = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut healed, b"again").await.unwrap(), b"again");
    }

    #[tokio::test]
    async fn a_blackhole_drops_one_direction_and_keeps_the_connection() {
        let proxy = FaultProxy::start(echo().await).await.unwrap();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        round_trip(&mut s, b"x").await.unwrap();
        proxy.set_direction(Direction::ToClient, Fault::Blackhole);
        s.write_all(b"lost").await.unwrap();
        eventually("the echo dropped on its way back", async || {
            proxy.dropped(Direction::ToClient) == 4
        })
        .await;
        assert_eq!(proxy.forwarded(Direction::ToServer), 5);
        proxy.set(Fault::Pass);
        assert_eq!(round_trip(&mut s, b"kept").await.unwrap(), b"kept");
    }

    #[tokio::test(start_paused = true)]
    async fn a_delay_holds_each_chunk() {
        let proxy = FaultProxy::start(echo().await).await.unwrap();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        proxy.set_direction(Direction::ToServer, Fault::Delay(Duration::from_secs(5)));
        let started = tokio::time::Instant::now();
        assert_eq!(round_trip(&mut s, b"late").await.unwrap(), b"late");
        assert!(started.elapsed() >= Duration::from_secs(5));
    }

    #[tokio::test]
    async fn dropping_the_proxy_closes_its_connections() {
        let proxy = FaultProxy::start(echo().await).await.unwrap();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        round_trip(&mut s, b"x").await.unwrap();
        drop(proxy);
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("closed when the proxy is dropped");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
}
