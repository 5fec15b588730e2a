//! Mutual TLS between log nodes (`log.cluster.tls`): three `ReplicaNode`s that know each other
//! by host name replicate over it, and a peer that cannot present a certificate of the
//! cluster's CA (plain TCP, or a certificate of another CA) gets no answer to its hello.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::path::Path;
use std::sync::Arc;

use common::nodes::{CLUSTER_ID, WAIT, addresses, append, holds, start_with, stop};
use headwater_raft::net::codec::{self, Hello};
use headwater_raft::net::frame::{FrameReader, Outgoing};
use headwater_raft::net::{DEFAULT_MAX_FRAME_BYTES, Kind, PROTOCOL_VERSION};
use headwater_raft::{PeerTls, TransportConfig};
use headwater_testing::pki::Pki;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Every node presents the PKI's server certificate (for `localhost` and `127.0.0.1`) and
/// trusts its CA.
fn tls(pki: &Pki) -> TransportConfig {
    let file = |name: &str| pki.file(name).display().to_string();
    let server = headwater_tls::server_config(
        Some(&file("server.pem")),
        Some(&file("server.key")),
        headwater_tls::ClientAuth::Required(&file("ca.pem")),
    )
    .unwrap();
    let client =
        headwater_tls::client_config(&file("ca.pem"), &file("server.pem"), &file("server.key"))
            .unwrap();
    TransportConfig {
        tls: Some(PeerTls {
            server: Arc::new(server),
            client: Arc::new(client),
        }),
        ..TransportConfig::default()
    }
}

fn pki(dir: &Path) -> Pki {
    std::fs::create_dir_all(dir).unwrap();
    Pki::generate(dir, "unused").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_over_mutual_tls_by_host_name() {
    let root = tempfile::tempdir().unwrap();
    let pki = pki(&root.path().join("pki"));
    let addrs = addresses("localhost");
    let (n1, n2, n3) = tokio::join!(
        start_with(root.path(), 1, &addrs, tls(&pki)),
        start_with(root.path(), 2, &addrs, tls(&pki)),
        start_with(root.path(), 3, &addrs, tls(&pki))
    );
    let nodes = [&n1, &n2, &n3];
    let expected = append(&nodes, "tls", 5).await;
    holds(&nodes, &expected, || true).await;
    for node in [n1, n2, n3] {
        stop(node).await;
    }
}

/// Sends a hello as node 2 over `stream`; the kind of the answer, `None` when the connection
/// failed or closed instead.
async fn hello<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> Option<Kind> {
    let (read, mut write) = tokio::io::split(stream);
    let body = codec::to_json(
        "hello",
        &Hello {
            cluster_id: CLUSTER_ID.to_owned(),
            node_id: 2,
            protocol_version: PROTOCOL_VERSION,
            identity: 0,
            known_as: None,
        },
    )
    .unwrap();
    let frame = Outgoing::new(Kind::Hello, 0, 0, vec![body], DEFAULT_MAX_FRAME_BYTES).unwrap();
    if frame.write_to(&mut write).await.is_err() || write.flush().await.is_err() {
        return None;
    }
    let mut reader = FrameReader::new(read, DEFAULT_MAX_FRAME_BYTES);
    let answer = tokio::time::timeout(WAIT, reader.next())
        .await
        .expect("an answer or a close");
    answer.ok().flatten().map(|frame| frame.kind)
}

/// A TLS client to `addr` trusting the CA of `trusts` and presenting the client certificate of
/// `presents`.
async fn tls_client(
    trusts: &Pki,
    presents: &Pki,
    addr: &str,
) -> Option<tokio_rustls::client::TlsStream<TcpStream>> {
    let config = headwater_tls::client_config(
        &trusts.file("ca.pem").display().to_string(),
        &presents.file("client.pem").display().to_string(),
        &presents.file("client.key").display().to_string(),
    )
    .unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_a_certificate_of_the_cluster_s_ca_gets_no_answer() {
    let root = tempfile::tempdir().unwrap();
    let cluster = pki(&root.path().join("pki"));
    let rogue = pki(&root.path().join("rogue"));
    let addrs = addresses("localhost");
    let n1 = start_with(root.path(), 1, &addrs, tls(&cluster)).await;
    let addr = addrs[&1].clone();

    // A certificate of the cluster's CA: the hello is answered (the control).
    let good = tls_client(&cluster, &cluster, &addr)
        .await
        .expect("TLS with the cluster's CA");
    assert_eq!(hello(good).await, Some(Kind::Response));

    // Plain TCP: the server's TLS handshake fails on the hello's bytes.
    let plain = TcpStream::connect(&addr).await.unwrap();
    assert_eq!(hello(plain).await, None);

    // A certificate of another CA: the server refuses it (with TLS 1.3 the client's side of
    // the handshake completes first), and nothing is answered.
    let stranger = tls_client(&cluster, &rogue, &addr).await;
    if let Some(stream) = stranger {
        assert_eq!(hello(stream).await, None);
    }
    // A client that does not trust the cluster's CA refuses the server.
    assert!(tls_client(&rogue, &rogue, &addr).await.is_none());

    stop(n1).await;
}
