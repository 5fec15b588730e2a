//! Serving the router with hyper: HTTP/1.1 and HTTP/2 (h2c, so gRPC shares the port), a
//! header read timeout against slow clients, and graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tower::ServiceExt;

use crate::tls::ClientCert;

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

/// Serves `router` until `shutdown` resolves, then stops accepting and gives in-flight
/// requests up to `options.grace` to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> std::io::Result<()> {
    let connections = Connections {
        builder: connection_builder(&options),
        router,
        graceful: GracefulShutdown::new(),
        tls: options.tls.map(TlsAcceptor::from),
        handshake_timeout: options.header_read_timeout,
    };
    accept_until(&listener, shutdown, &connections).await;
    drop(listener);
    drain(connections.graceful, options.grace).await;
    Ok(())
}

/// HTTP/1.1 with keep-alive and the header read timeout, and HTTP/2 (h2c or ALPN).
fn connection_builder(options: &ServeOptions) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    builder
}

/// Accepts connections until `shutdown` resolves; each is served on its own task.
async fn accept_until(
    listener: &TcpListener,
    shutdown: impl Future<Output = ()>,
    connections: &Connections,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => connections.spawn(stream, peer),
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

/// Gives the watched connections up to `grace` to finish their requests, then lets go.
async fn drain(graceful: GracefulShutdown, grace: Duration) {
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("in-flight requests drained"),
        () = tokio::time::sleep(grace) => {
            tracing::warn!(grace_ms = grace.as_millis() as u64, "requests still running after the grace period; closing");
        }
    }
}

/// What every accepted connection is served with.
struct Connections {
    builder: Builder<TokioExecutor>,
    router: Router,
    graceful: GracefulShutdown,
    tls: Option<TlsAcceptor>,
    handshake_timeout: Duration,
}

impl Connections {
    /// Serves one accepted connection on its own task, watched for the drain; with TLS, the
    /// handshake runs in that task, bounded like a header read.
    fn spawn(&self, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            builder: self.builder.clone(),
            router: self.router.clone(),
            watcher: self.graceful.watcher(),
            peer,
        };
        let Some(acceptor) = self.tls.clone() else {
            tokio::spawn(connection.run(stream, None));
            return;
        };
        let timeout = self.handshake_timeout;
        tokio::spawn(async move {
            if let Some(stream) = handshake(&acceptor, stream, peer, timeout).await {
                let cert = crate::tls::client_cert(stream.get_ref().1);
                connection.run(stream, cert).await;
            }
        });
    }
}

/// One accepted connection, ready to be served.
struct Connection {
    builder: Builder<TokioExecutor>,
    router: Router,
    watcher: Watcher,
    peer: SocketAddr,
}

impl Connection {
    /// Serves HTTP on `io` until the client closes it or the drain ends it.
    async fn run<I>(self, io: I, cert: Option<ClientCert>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let peer = self.peer;
        let service = TowerToHyperService::new(tagged(&self.router, peer, cert));
        let connection = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        if let Err(error) = self.watcher.watch(connection).await {
            tracing::debug!(%peer, %error, "connection ended with an error");
        }
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

/// The router with the connection's peer address and client certificate on every request.
fn tagged(
    router: &Router,
    peer: SocketAddr,
    cert: Option<ClientCert>,
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
}
