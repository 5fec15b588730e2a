//! Serving the router with hyper: HTTP/1.1 and HTTP/2 (h2c, so gRPC shares the port), caps on
//! open connections (in total and per client address, enforced at accept), a header read
//! timeout against slow clients, an idle timeout, HTTP/2 keep-alive and stream limits, and
//! graceful shutdown.
//!
//! hyper closes an HTTP/1 connection that takes too long to send request headers (the wait
//! for the next request on a kept-alive connection included), but has no idle timeout for
//! HTTP/2, nor for a connection that never sends a byte. So each connection counts its
//! requests in flight ([`Activity`]), and one that has none for `idle_timeout_ms` is shut
//! down gracefully: HTTP/2 with a GOAWAY, HTTP/1 at once, one still silent unserved.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tower::ServiceExt;

use crate::config::{ConnectionsConfig, GatewayConfig};
use crate::metrics::{
    HTTP_CONNECTIONS_IDLE_CLOSED_TOTAL, HTTP_CONNECTIONS_OPEN, HTTP_CONNECTIONS_REFUSED_TOTAL,
};
use crate::tls::ClientCert;

mod linger;
mod threads;

use linger::{Home, Homing};
use threads::ConnectionThreads;

/// How the server treats connections.
#[derive(Clone)]
pub struct ServeOptions {
    /// Time a client may take to send request headers (and finish the TLS handshake) before
    /// the connection is closed.
    pub header_read_timeout: Duration,
    /// Time in-flight requests get after shutdown begins.
    pub grace: Duration,
    /// TLS, when configured.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl ServeOptions {
    /// These options with the connection caps and timeouts of `gateway.connections`; the
    /// addresses of `gateway.trusted_proxies` count only toward the total cap.
    pub fn with_connections(self, gateway: &GatewayConfig) -> Serving {
        Serving {
            options: self,
            connections: gateway.connections.clone(),
            exempt: gateway
                .trusted_proxies
                .iter()
                .filter_map(|proxy| proxy.parse::<IpAddr>().ok())
                .map(|ip| ip.to_canonical())
                .collect(),
        }
    }
}

/// What [`serve`] runs with: the [`ServeOptions`] and the connection limits. A bare
/// `ServeOptions` stands for the default `gateway.connections` and no trusted proxies.
#[derive(Clone)]
pub struct Serving {
    options: ServeOptions,
    connections: ConnectionsConfig,
    exempt: HashSet<IpAddr>,
}

impl From<ServeOptions> for Serving {
    fn from(options: ServeOptions) -> Self {
        options.with_connections(&GatewayConfig::default())
    }
}

/// Serves `router` until `shutdown` resolves, then stops accepting and gives in-flight
/// requests up to the grace period to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    serving: impl Into<Serving>,
) -> std::io::Result<()> {
    let Serving {
        options,
        connections: limits,
        exempt,
    } = serving.into();
    let (drain, _) = watch::channel(false);
    let threads = match limits.io_threads.threads() {
        0 => None,
        count => Some(ConnectionThreads::start(count)?),
    };
    let connections = Connections {
        builder: connection_builder(&options, &limits),
        router,
        drain,
        slots: Arc::new(Slots::new(&limits, exempt)),
        tls: options.tls.map(TlsAcceptor::from),
        handshake_timeout: options.header_read_timeout,
        idle_timeout: Duration::from_millis(limits.idle_timeout_ms),
        threads,
    };
    accept_until(&listener, shutdown, &connections).await;
    drop(listener);
    drain_connections(connections.drain, options.grace).await;
    if let Some(threads) = connections.threads {
        threads.stop().await;
    }
    Ok(())
}

/// HTTP/1.1 with keep-alive and the header read timeout, and HTTP/2 (h2c or ALPN) with
/// keep-alive PINGs and a cap on concurrent streams.
fn connection_builder(
    options: &ServeOptions,
    limits: &ConnectionsConfig,
) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .keep_alive(true);
    let mut http2 = builder.http2();
    http2
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_concurrent_streams);
    if limits.http2_keep_alive_interval_ms > 0 {
        http2
            .keep_alive_interval(Duration::from_millis(limits.http2_keep_alive_interval_ms))
            .keep_alive_timeout(Duration::from_millis(limits.http2_keep_alive_timeout_ms));
    }
    builder
}

/// Accepts connections until `shutdown` resolves; each is served on its own task, or closed
/// at once when it would go over a cap.
async fn accept_until(
    listener: &TcpListener,
    shutdown: impl Future<Output = ()>,
    connections: &Connections,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => match connections.slots.take(peer.ip()) {
                    Ok(slot) => connections.spawn(stream, peer, slot),
                    Err(refused) => refuse(stream, peer, refused),
                },
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown => return,
        }
    }
}

/// Closes a connection over a cap with a reset (no TIME_WAIT left on the server), and counts
/// it.
fn refuse(stream: TcpStream, peer: SocketAddr, refused: Refused) {
    let _ = stream.set_zero_linger();
    drop(stream);
    metrics::counter!(HTTP_CONNECTIONS_REFUSED_TOTAL, "reason" => refused.label()).increment(1);
    tracing::debug!(%peer, reason = refused.label(), "connection over the cap closed");
}

/// Tells every connection to finish (`drain` flips to true) and gives them up to `grace` to
/// do so: each holds a receiver of `drain` until it ends.
async fn drain_connections(drain: watch::Sender<bool>, grace: Duration) {
    drain.send_replace(true);
    tokio::select! {
        () = drain.closed() => tracing::info!("in-flight requests drained"),
        () = tokio::time::sleep(grace) => {
            tracing::warn!(grace_ms = grace.as_millis() as u64, "requests still running after the grace period; closing");
        }
    }
}

/// What every accepted connection is served with.
struct Connections {
    builder: Builder<TokioExecutor>,
    router: Router,
    drain: watch::Sender<bool>,
    slots: Arc<Slots>,
    tls: Option<TlsAcceptor>,
    handshake_timeout: Duration,
    idle_timeout: Duration,
    /// The connection threads, when `io_threads` asks for them; else connections are served
    /// on the runtime that accepts them.
    threads: Option<ConnectionThreads>,
}

impl Connections {
    /// Serves one accepted connection on its own task (on a connection thread, when there are
    /// any), watched for the drain; with TLS, the handshake runs in that task, bounded like a
    /// header read.
    fn spawn(&self, stream: TcpStream, peer: SocketAddr, slot: Slot) {
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            builder: self.builder.clone(),
            router: self.router.clone(),
            drain: self.drain.subscribe(),
            idle_timeout: self.idle_timeout,
            peer,
            slot,
        };
        let acceptor = self.tls.clone();
        let timeout = self.handshake_timeout;
        // Boxed: the connection's future (hyper's HTTP/1 and HTTP/2 states, TLS) is some
        // kilobytes, which spawning would otherwise copy several times over.
        let serve = move |stream: TcpStream| {
            Box::pin(async move {
                let Some(acceptor) = acceptor else {
                    return connection.run(stream, None).await;
                };
                if let Some(stream) = handshake(&acceptor, stream, peer, timeout).await {
                    let cert = crate::tls::client_cert(stream.get_ref().1);
                    connection.run(stream, cert).await;
                }
            })
        };
        match &self.threads {
            Some(threads) => threads.spawn(stream, serve),
            None => {
                tokio::spawn(serve(stream));
            }
        }
    }
}

/// One accepted connection, ready to be served; it holds its place under the caps until it
/// ends.
struct Connection {
    builder: Builder<TokioExecutor>,
    router: Router,
    drain: watch::Receiver<bool>,
    idle_timeout: Duration,
    peer: SocketAddr,
    slot: Slot,
}

/// Why a connection is being shut down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    /// The server is draining.
    Drain,
    /// No request in flight for the idle timeout.
    Idle,
}

impl Connection {
    /// Serves HTTP on `io` until the client closes it, or it idles, or the drain ends it.
    async fn run<I>(self, io: I, cert: Option<ClientCert>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Self {
            builder,
            router,
            drain,
            idle_timeout,
            peer,
            slot,
        } = self;
        let activity = Activity::default();
        let service = TowerToHyperService::new(tagged(&router, peer, cert, activity.clone()));
        let home = Home::default();
        let mut draining = drain.clone();
        let connection =
            builder.serve_connection_with_upgrades(TokioIo::new(Homing::new(io, &home)), service);
        let close = close_when(drain, &activity, idle_timeout);
        // After an idle shutdown, another idle period without a request: an HTTP/2 client
        // that never answers the GOAWAY's PING (hyper waits for it) is dropped.
        let stuck = activity.idle_after(idle_timeout);
        // In a block of its own: the connection, and the stream hyper holds, are dropped at
        // its end.
        let served = {
            tokio::pin!(connection, close, stuck);
            let mut closing = None;
            loop {
                tokio::select! {
                    served = connection.as_mut() => break served.map_err(Some),
                    reason = &mut close, if closing.is_none() => {
                        closing = Some(reason);
                        if reason == Close::Idle {
                            metrics::counter!(HTTP_CONNECTIONS_IDLE_CLOSED_TOTAL).increment(1);
                            tracing::debug!(%peer, "idle connection shut down");
                        }
                        connection.as_mut().graceful_shutdown();
                    }
                    () = &mut stuck, if closing == Some(Close::Idle) => {
                        tracing::debug!(%peer, "idle connection still open after its shutdown; dropped");
                        break Err(None);
                    }
                }
            }
        };
        if let Err(Some(error)) = &served {
            tracing::debug!(%peer, %error, "connection ended with an error");
        }
        // hyper has dropped the stream. If it closed the connection itself (not on a timeout
        // or an error, after which it answers nothing) and the client had not closed its side,
        // the client may still be sending: what it sends is read and dropped before the socket
        // closes, so that it reads the answer hyper wrote rather than a reset. The slot is held
        // meanwhile.
        let lingering = home.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let (Ok(()), Some(io)) = (served, lingering) {
            let dropped = linger::linger(io, &mut draining).await;
            if dropped > 0 {
                tracing::debug!(%peer, dropped, "read and dropped what the client sent after the close");
            }
        }
        drop(slot);
    }
}

/// Resolves when the connection should shut down: the server drains, or no request has been in
/// flight on it for `idle_timeout`.
async fn close_when(
    mut drain: watch::Receiver<bool>,
    activity: &Activity,
    idle_timeout: Duration,
) -> Close {
    tokio::select! {
        // An error means the server is gone: shut down as for a drain.
        _ = drain.wait_for(|draining| *draining) => Close::Drain,
        () = activity.idle_after(idle_timeout) => Close::Idle,
    }
}

/// Requests in flight on one connection and when the last one ended: what the idle timeout
/// watches. Counting a request wakes nothing: the requests are counted inside the connection's
/// own task, so a wake-up there would poll the task a second time and, the scheduler handing
/// such a task to the back of its queue, wake the other worker too — twice per request. The
/// idle timer reads the count when it fires instead ([`Activity::idle_after`]).
#[derive(Clone)]
struct Activity(Arc<Busy>);

struct Busy {
    /// Requests in flight.
    in_flight: AtomicUsize,
    /// When the last request ended (or the connection opened), in microseconds after `opened`.
    idle_since_us: AtomicU64,
    opened: Instant,
}

impl Default for Activity {
    fn default() -> Self {
        Activity(Arc::new(Busy {
            in_flight: AtomicUsize::new(0),
            idle_since_us: AtomicU64::new(0),
            opened: Instant::now(),
        }))
    }
}

impl Activity {
    /// Counts a request from now until the returned guard drops (when its response head is
    /// ready, or it is cancelled).
    fn begin(&self) -> InFlight {
        self.0.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.0.clone())
    }

    /// When the connection became idle, or `None` while a request is in flight.
    fn idle_since(&self) -> Option<Instant> {
        if self.0.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = Duration::from_micros(self.0.idle_since_us.load(Ordering::Acquire));
        Some(self.0.opened + since)
    }

    /// Resolves once no request has been in flight, nor started, for `idle`. The timer is set
    /// for `idle` after the last request ended and looked at when it fires: a request since
    /// (ended, or still in flight) sets it again, for `idle` after that one's end (or, while
    /// one is in flight, for another `idle` from now).
    ///
    /// The period counts from the first poll at the earliest, so that the idle timer of a
    /// connection already shut down for idleness gives it another period.
    async fn idle_after(&self, idle: Duration) {
        let from = Instant::now();
        loop {
            let deadline = match self.idle_since() {
                Some(since) => since.max(from) + idle,
                None => Instant::now() + idle,
            };
            tokio::time::sleep_until(deadline).await;
            if self
                .idle_since()
                .is_some_and(|since| Instant::now() >= since.max(from) + idle)
            {
                return;
            }
        }
    }
}

/// One request in flight on a connection; dropping it ends the count.
struct InFlight(Arc<Busy>);

impl Drop for InFlight {
    fn drop(&mut self) {
        // Stamped before the count falls, so that a timer that sees no request in flight sees
        // this end; the latest of concurrent ends wins.
        let ended = Instant::now().saturating_duration_since(self.0.opened);
        let ended = u64::try_from(ended.as_micros()).unwrap_or(u64::MAX);
        self.0.idle_since_us.fetch_max(ended, Ordering::AcqRel);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a connection was closed at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    /// `max_connections` are open.
    Total,
    /// `max_connections_per_ip` are open from the client's address.
    PerIp,
}

impl Refused {
    /// The `reason` label of `headwater_http_connections_refused_total`.
    fn label(self) -> &'static str {
        match self {
            Self::Total => "total",
            Self::PerIp => "per_ip",
        }
    }
}

/// Open connections, in total and per client address, against their caps.
struct Slots {
    max_total: usize,
    max_per_client: usize,
    /// Trusted proxies: many clients behind one address, counted only in the total.
    exempt: HashSet<IpAddr>,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

impl Slots {
    fn new(limits: &ConnectionsConfig, exempt: HashSet<IpAddr>) -> Self {
        let size = |n: u32| usize::try_from(n).unwrap_or(usize::MAX);
        Self {
            max_total: size(limits.max_connections),
            max_per_client: size(limits.max_connections_per_ip),
            exempt,
            open: Mutex::new(Open::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for a connection from `peer`, or why there is none.
    fn take(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, Refused> {
        let peer = peer.to_canonical();
        let client = (!self.exempt.contains(&peer)).then(|| client_key(peer));
        let mut open = self.lock();
        if open.total >= self.max_total {
            return Err(Refused::Total);
        }
        if let Some(client) = client {
            let count = open.per_client.entry(client).or_default();
            if *count >= self.max_per_client {
                return Err(Refused::PerIp);
            }
            *count += 1;
        }
        open.total += 1;
        metrics::gauge!(HTTP_CONNECTIONS_OPEN).increment(1.0);
        Ok(Slot {
            slots: self.clone(),
            client,
        })
    }

    /// Gives back the place of a connection from `client` (`None`: an exempt address).
    fn give_back(&self, client: Option<IpAddr>) {
        let mut open = self.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(client) = client
            && let Some(count) = open.per_client.get_mut(&client)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.per_client.remove(&client);
            }
        }
        metrics::gauge!(HTTP_CONNECTIONS_OPEN).decrement(1.0);
    }
}

/// One open connection's place under the caps, given back when dropped.
struct Slot {
    slots: Arc<Slots>,
    client: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.give_back(self.client);
    }
}

/// The address a per-client cap counts: an IPv4 address, or the /64 of an IPv6 one (one
/// host usually holds a whole /64).
fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::from(u64::MAX)))),
        v4 => v4,
    }
}

/// The TLS handshake within `timeout`; `None` (and a debug line) when it fails or times out.
async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    timeout: Duration,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// The router with the connection's peer address and client certificate on every request,
/// each request counted in `activity` until its response head is ready.
fn tagged(
    router: &Router,
    peer: SocketAddr,
    cert: Option<ClientCert>,
    activity: Activity,
) -> impl tower::Service<
    hyper::Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    router
        .clone()
        .map_request(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            if let Some(cert) = &cert {
                request.extensions_mut().insert(cert.clone());
            }
            request
        })
        .map_future(move |response| {
            let in_flight = activity.begin();
            async move {
                let response = response.await;
                drop(in_flight);
                response
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(total: u32, per_ip: u32, exempt: &[&str]) -> Arc<Slots> {
        let limits = ConnectionsConfig {
            max_connections: total,
            max_connections_per_ip: per_ip,
            ..ConnectionsConfig::default()
        };
        let exempt = exempt.iter().map(|ip| ip.parse().unwrap()).collect();
        Arc::new(Slots::new(&limits, exempt))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_per_ip_cap_counts_each_address_and_gives_back_on_drop() {
        let slots = slots(10, 2, &[]);
        let first = slots.take(ip("10.0.0.1")).unwrap();
        let _second = slots.take(ip("10.0.0.1")).unwrap();
        assert_eq!(slots.take(ip("10.0.0.1")).err(), Some(Refused::PerIp));
        // The IPv4-mapped form is the same client.
        assert_eq!(
            slots.take(ip("::ffff:10.0.0.1")).err(),
            Some(Refused::PerIp)
        );
        let _other = slots.take(ip("10.0.0.2")).unwrap();
        drop(first);
        let _again = slots.take(ip("10.0.0.1")).unwrap();
        assert_eq!(slots.lock().total, 3);
    }

    #[test]
    fn the_total_cap_holds_across_addresses_and_proxies() {
        let slots = slots(3, 3, &["10.9.9.9"]);
        let held: Vec<Slot> = ["10.0.0.1", "10.0.0.2", "10.9.9.9"]
            .iter()
            .map(|a| slots.take(ip(a)).unwrap())
            .collect();
        assert_eq!(slots.take(ip("10.0.0.3")).err(), Some(Refused::Total));
        assert_eq!(slots.take(ip("10.9.9.9")).err(), Some(Refused::Total));
        drop(held);
        let open = slots.lock();
        assert_eq!(open.total, 0);
        assert!(open.per_client.is_empty());
    }

    #[test]
    fn a_trusted_proxy_counts_only_toward_the_total() {
        let slots = slots(10, 1, &["10.9.9.9"]);
        let _a = slots.take(ip("10.9.9.9")).unwrap();
        let _b = slots.take(ip("10.9.9.9")).unwrap();
        let _c = slots.take(ip("10.0.0.1")).unwrap();
        assert_eq!(slots.take(ip("10.0.0.1")).err(), Some(Refused::PerIp));
    }

    #[test]
    fn an_ipv6_client_is_its_64() {
        let slots = slots(10, 1, &[]);
        let _a = slots.take(ip("2001:db8:1:2::1")).unwrap();
        assert_eq!(
            slots.take(ip("2001:db8:1:2:ffff::9")).err(),
            Some(Refused::PerIp)
        );
        let _b = slots.take(ip("2001:db8:1:3::1")).unwrap();
    }

    /// Polls `future` once, after letting the runtime's (paused) clock move by `by`.
    async fn after<F: Future + Unpin>(by: Duration, future: &mut F) -> Option<F::Output> {
        use futures::FutureExt;
        tokio::time::advance(by).await;
        future.now_or_never()
    }

    const IDLE: Duration = Duration::from_secs(10);

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_the_end_of_the_last_request() {
        let activity = Activity::default();
        let request = activity.begin();
        let idle = activity.idle_after(IDLE);
        tokio::pin!(idle);
        assert_eq!(after(secs(0), &mut idle).await, None);
        // Not idle while a request is in flight, however long it takes.
        assert_eq!(after(secs(25), &mut idle).await, None);
        assert_eq!(after(secs(2), &mut idle).await, None);
        drop(request); // at 27 s
        assert_eq!(after(secs(9), &mut idle).await, None);
        assert_eq!(
            after(secs(1), &mut idle).await,
            Some(()),
            "10 s after the end"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_request_restarts_the_idle_timer() {
        let activity = Activity::default();
        let idle = activity.idle_after(IDLE);
        tokio::pin!(idle);
        assert_eq!(after(secs(0), &mut idle).await, None);
        assert_eq!(after(secs(6), &mut idle).await, None);
        drop(activity.begin()); // at 6 s
        assert_eq!(
            after(secs(4), &mut idle).await,
            None,
            "the request restarted it"
        );
        assert_eq!(after(secs(5), &mut idle).await, None);
        assert_eq!(
            after(secs(1), &mut idle).await,
            Some(()),
            "10 s after the request"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_requests_end_idleness_at_the_last_end() {
        let activity = Activity::default();
        let idle = activity.idle_after(IDLE);
        tokio::pin!(idle);
        let first = activity.begin();
        let second = activity.begin();
        assert_eq!(after(secs(3), &mut idle).await, None);
        drop(second); // at 3 s: one still in flight
        assert_eq!(after(secs(20), &mut idle).await, None);
        drop(first); // at 23 s
        assert_eq!(after(secs(9), &mut idle).await, None);
        assert_eq!(after(secs(1), &mut idle).await, Some(()));
    }

    /// A waker that counts its wake-ups.
    struct CountingWaker(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn counting_a_request_wakes_no_one() {
        // The requests are counted inside the connection's own task, which polls the idle
        // timer: a wake-up per start or end would poll that task again and wake the other
        // worker.
        let activity = Activity::default();
        let idle = activity.idle_after(IDLE);
        tokio::pin!(idle);
        let counter = Arc::new(CountingWaker(std::sync::atomic::AtomicUsize::new(0)));
        let waker = std::task::Waker::from(counter.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(idle.as_mut().poll(&mut cx).is_pending());
        for _ in 0..3 {
            drop(activity.begin());
        }
        let held = activity.begin();
        drop(held);
        assert_eq!(counter.0.load(Ordering::SeqCst), 0);
        assert!(idle.as_mut().poll(&mut cx).is_pending());
    }

    #[tokio::test(start_paused = true)]
    async fn the_period_counts_from_the_first_poll() {
        // The timer of a connection already shut down for idleness: another whole period.
        let activity = Activity::default();
        let idle = activity.idle_after(IDLE);
        tokio::pin!(idle);
        tokio::time::advance(secs(20)).await;
        assert_eq!(after(secs(0), &mut idle).await, None);
        assert_eq!(after(secs(9), &mut idle).await, None);
        assert_eq!(after(secs(1), &mut idle).await, Some(()));
    }
}
