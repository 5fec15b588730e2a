//! The Elasticsearch sink against the real OpenSearch from `scripts/services`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test (or bench) fails by panicking

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{batch, event, service, unique};
use headwater_sinks::elasticsearch::document_id;
use headwater_sinks::{
    Batch, ElasticsearchConfig, ElasticsearchSink, OutEvent, Sink, SinkError, error_chain,
};
use serde_json::{Value, json};

fn config(index: &str) -> ElasticsearchConfig {
    ElasticsearchConfig {
        url: service("HEADWATER_TEST_OPENSEARCH"),
        index: index.to_owned(),
        ..ElasticsearchConfig::default()
    }
}

async fn get(path: &str) -> Value {
    let url = format!("{}/{path}", service("HEADWATER_TEST_OPENSEARCH"));
    let response = reqwest::get(&url).await.expect("opensearch answers");
    response.json().await.expect("json")
}

async fn refresh_and_count(index: &str) -> u64 {
    let base = service("HEADWATER_TEST_OPENSEARCH");
    let client = reqwest::Client::new();
    client
        .post(format!("{base}/{index}/_refresh"))
        .send()
        .await
        .expect("refresh");
    let count = get(&format!("{index}/_count")).await;
    count["count"].as_u64().unwrap_or_else(|| panic!("{count}"))
}

/// The batch of `events`/3 holding `events`, for `route`.
fn batch_of(route: &str, events: Vec<OutEvent>) -> Batch {
    Batch {
        route: Arc::from(route),
        topic: Arc::from("events"),
        partition: 3,
        first_offset: events.first().map_or(0, |e| e.offset),
        last_offset: events.last().map_or(0, |e| e.offset),
        events,
    }
}

/// The same event (id, source, payload) as sent by `tenant`.
fn as_tenant(offset: i64, tenant: &str) -> OutEvent {
    let mut e = event(offset, "01HWSAMEID", r#"{"title_id":"t1"}"#);
    e.envelope.source = "tv-42".to_owned();
    e.envelope.tenant = tenant.to_owned();
    e
}

#[tokio::test]
async fn documents_are_indexed_once_by_event_id() {
    let prefix = unique("hwtest");
    let sink = ElasticsearchSink::new(&config(&format!("{prefix}-{{type}}-{{yyyy.MM.dd}}")))
        .expect("sink");
    sink.healthcheck().await.expect("healthy");
    let b = batch("search", 0, 40);
    let delivery = sink.send(b.clone()).await.expect("send");
    assert!(delivery.is_complete(), "{delivery:?}");

    let index = format!("{prefix}-playback.start-2023.11.14");
    assert_eq!(refresh_and_count(&index).await, 40);
    let id = document_id(&b.events[7].envelope).expect("an id");
    assert_eq!(id, format!("4:acme:8:device-3:{}", b.events[7].envelope.id));
    let doc = get(&format!("{index}/_doc/{id}")).await;
    assert_eq!(doc["found"], json!(true), "{doc}");
    assert_eq!(doc["_source"]["payload"]["title_id"], json!("t7"));
    assert_eq!(doc["_source"]["source"], json!("device-3"));

    // Sent again after a crash: same ids, no duplicates.
    assert!(sink.send(b).await.expect("resend").is_complete());
    assert_eq!(refresh_and_count(&index).await, 40);
}

#[tokio::test]
async fn two_tenants_with_the_same_event_id_and_source_both_land() {
    // One shared index (the default pattern has no `{tenant}`): the `_id` keeps them apart.
    let index = unique("hwtest-tenants");
    let sink = ElasticsearchSink::new(&config(&index)).expect("sink");
    let b = batch_of("search", vec![as_tenant(0, "acme"), as_tenant(1, "globex")]);
    assert!(sink.send(b.clone()).await.expect("send").is_complete());
    assert_eq!(refresh_and_count(&index).await, 2);
    for e in &b.events {
        let id = document_id(&e.envelope).expect("an id");
        let doc = get(&format!("{index}/_doc/{id}")).await;
        assert_eq!(doc["found"], json!(true), "{doc}");
        assert_eq!(doc["_source"]["tenant"], json!(e.envelope.tenant));
    }

    // Re-delivered (e.g. after a crash), in any order: each overwrites itself only.
    let again = batch_of("search", b.events.iter().rev().cloned().collect());
    assert!(sink.send(again).await.expect("resend").is_complete());
    assert_eq!(refresh_and_count(&index).await, 2);
}

#[tokio::test]
async fn tenant_placeholder_gives_each_tenant_its_index() {
    let prefix = unique("hwtest-tidx");
    let sink = ElasticsearchSink::new(&config(&format!("{prefix}-{{tenant}}"))).expect("sink");
    let b = batch_of(
        "search",
        vec![
            as_tenant(0, "Acme"),
            as_tenant(1, "globex"),
            as_tenant(2, "globex"),
            as_tenant(3, ""),
        ],
    );
    let delivery = sink.send(b).await.expect("send");
    assert!(delivery.is_complete(), "{delivery:?}");
    // globex's two copies of one event are one document; no tenant is the `default` tenant.
    assert_eq!(refresh_and_count(&format!("{prefix}-acme")).await, 1);
    assert_eq!(refresh_and_count(&format!("{prefix}-globex")).await, 1);
    assert_eq!(refresh_and_count(&format!("{prefix}-default")).await, 1);
}

#[tokio::test]
async fn large_batches_are_split_and_bodies_may_be_plain() {
    let prefix = unique("hwtest-split");
    let cfg = ElasticsearchConfig {
        max_bulk_bytes: 4 * 1024,
        gzip: false,
        ..config(&format!("{prefix}-{{route}}"))
    };
    let sink = ElasticsearchSink::new(&cfg).expect("sink");
    let delivery = sink.send(batch("Split Route", 0, 200)).await.expect("send");
    assert!(delivery.is_complete(), "{delivery:?}");
    assert_eq!(
        refresh_and_count(&format!("{prefix}-split_route")).await,
        200
    );
}

#[tokio::test]
async fn mapping_conflict_rejects_only_that_item() {
    let index = unique("hwtest-conflict");
    let base = service("HEADWATER_TEST_OPENSEARCH");
    let created = reqwest::Client::new()
        .put(format!("{base}/{index}"))
        .json(
            &json!({"mappings": {"properties": {"payload": {"properties": {
            "position_ms": {"type": "integer"}}}}}}),
        )
        .send()
        .await
        .expect("create index");
    assert!(created.status().is_success(), "{created:?}");

    let events = vec![
        event(0, "ok-0", r#"{"position_ms":10}"#),
        event(1, "bad-1", r#"{"position_ms":"not a number"}"#),
        event(2, "ok-2", r#"{"position_ms":30}"#),
    ];
    let b = Batch {
        route: Arc::from("search"),
        topic: Arc::from("events"),
        partition: 3,
        first_offset: 0,
        last_offset: 2,
        events,
    };
    let sink = ElasticsearchSink::new(&config(&index)).expect("sink");
    let delivery = sink.send(b).await.expect("send");
    assert!(delivery.retry.is_empty(), "{delivery:?}");
    assert_eq!(delivery.rejected.len(), 1, "{delivery:?}");
    let (i, reason) = &delivery.rejected[0];
    assert_eq!(*i, 1);
    assert!(reason.contains("position_ms"), "{reason}");
    assert!(reason.contains("exception"), "{reason}");
    assert_eq!(refresh_and_count(&index).await, 2);
}

#[tokio::test]
async fn dead_endpoint_is_unavailable_at_once() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let cfg = ElasticsearchConfig {
        url: format!("http://127.0.0.1:{port}"),
        ..ElasticsearchConfig::default()
    };
    let sink = ElasticsearchSink::new(&cfg).expect("sink");
    let started = Instant::now();
    let err = sink.send(batch("search", 0, 5)).await.expect_err("dead");
    assert!(matches!(err, SinkError::Unavailable { .. }), "{err}");
    let text = error_chain(&err);
    assert!(
        text.starts_with("elasticsearch unavailable: _bulk request failed: "),
        "{text}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "one request, no retries in the sink"
    );
    assert!(sink.healthcheck().await.expect_err("dead").is_retryable());
}

#[tokio::test]
async fn overloaded_cluster_is_retryable_with_its_retry_after() {
    // A stand-in that answers 429 (Retry-After: 7) twice, then passes requests on to the real
    // OpenSearch. The sink sends once per call; the router would wait and send again.
    let upstream = service("HEADWATER_TEST_OPENSEARCH");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let heads = Arc::new(Mutex::new(Vec::new()));
    let proxy = tokio::spawn(common_proxy::serve(listener, upstream, 2, heads.clone()));
    let prefix = unique("hwtest-429");
    let cfg = ElasticsearchConfig {
        url: format!("http://{addr}"),
        ..config(&prefix)
    };
    let sink = ElasticsearchSink::new(&cfg).expect("sink");
    for _ in 0..2 {
        let err = sink.send(batch("search", 0, 5)).await.expect_err("429");
        assert!(err.is_retryable(), "{err}");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
        assert!(error_chain(&err).contains("_bulk answered 429"), "{err}");
    }
    let delivery = sink.send(batch("search", 0, 5)).await.expect("send");
    assert!(delivery.is_complete());
    assert_eq!(refresh_and_count(&prefix).await, 5);
    assert_eq!(
        heads.lock().expect("heads").len(),
        3,
        "two 429s, then delivered"
    );
    proxy.abort();
}

#[tokio::test]
async fn credentials_are_sent() {
    let upstream = service("HEADWATER_TEST_OPENSEARCH");
    for (cfg, expected) in [
        (
            ElasticsearchConfig {
                api_key: "a2V5OnNlY3JldA==".to_owned(),
                ..config("unused")
            },
            "authorization: ApiKey a2V5OnNlY3JldA==",
        ),
        (
            ElasticsearchConfig {
                username: "user".to_owned(),
                password: "pass".to_owned(),
                ..config("unused")
            },
            "authorization: Basic dXNlcjpwYXNz",
        ),
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let heads = Arc::new(Mutex::new(Vec::new()));
        let proxy = tokio::spawn(common_proxy::serve(
            listener,
            upstream.clone(),
            0,
            heads.clone(),
        ));
        let prefix = unique("hwtest-auth");
        let cfg = ElasticsearchConfig {
            url: format!("http://{addr}"),
            index: prefix,
            ..cfg
        };
        let sink = ElasticsearchSink::new(&cfg).expect("sink");
        assert!(
            sink.send(batch("r", 0, 2))
                .await
                .expect("send")
                .is_complete()
        );
        let heads = heads.lock().expect("heads").clone();
        assert!(
            heads
                .iter()
                .all(|h| h.lines().any(|l| l.eq_ignore_ascii_case(expected))),
            "{heads:?}"
        );
        assert!(
            heads
                .iter()
                .all(|h| h.to_ascii_lowercase().contains("content-encoding: gzip"))
        );
        proxy.abort();
    }
}

#[tokio::test]
async fn https_with_a_private_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = headwater_testing::Pki::generate(dir.path(), "client").expect("pki");
    let ca_file = pki.file("ca.pem");

    let certs = vec![pki.server_der.clone().into()];
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(pki.server_key_der.clone()).expect("key der");
    let tls = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let heads = Arc::new(Mutex::new(Vec::new()));
    let upstream = service("HEADWATER_TEST_OPENSEARCH");
    let proxy = tokio::spawn(common_proxy::serve_with(
        listener,
        Some(acceptor),
        upstream,
        0,
        heads.clone(),
    ));
    let index = unique("hwtest-tls");
    let base = ElasticsearchConfig {
        url: format!("https://{addr}"),
        ..config(&index)
    };

    // Without the CA the server is not trusted: a connection error, so `Unavailable`.
    let untrusted = ElasticsearchSink::new(&base).expect("sink");
    let err = untrusted
        .send(batch("r", 0, 2))
        .await
        .expect_err("untrusted");
    assert!(err.is_retryable(), "{err}");

    let mut trusted = base.clone();
    trusted.tls.ca_file = ca_file.display().to_string();
    let sink = ElasticsearchSink::new(&trusted).expect("sink");
    assert!(
        sink.send(batch("r", 0, 3))
            .await
            .expect("send")
            .is_complete()
    );
    assert_eq!(refresh_and_count(&index).await, 3);

    let mut insecure = base;
    insecure.tls.insecure_skip_verify = true;
    let sink = ElasticsearchSink::new(&insecure).expect("sink");
    assert!(
        sink.send(batch("r", 3, 2))
            .await
            .expect("send")
            .is_complete()
    );
    assert_eq!(refresh_and_count(&index).await, 5);
    proxy.abort();
}

/// A tiny HTTP/1.1 proxy that refuses the first `n` requests with 429 (`Retry-After: 7`).
mod common_proxy {
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;

    pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
    impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

    pub(crate) async fn serve(
        listener: TcpListener,
        upstream: String,
        refuse: usize,
        heads: Arc<Mutex<Vec<String>>>,
    ) {
        serve_with(listener, None, upstream, refuse, heads).await;
    }

    /// [`serve`], over TLS when `tls` is given.
    pub(crate) async fn serve_with(
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
        upstream: String,
        mut refuse: usize,
        heads: Arc<Mutex<Vec<String>>>,
    ) {
        let client = reqwest::Client::new();
        while let Ok((tcp, _)) = listener.accept().await {
            let mut socket: Box<dyn Stream> = match &tls {
                None => Box::new(tcp),
                Some(acceptor) => match acceptor.accept(tcp).await {
                    Ok(stream) => Box::new(stream),
                    Err(_) => continue,
                },
            };
            let Some((head, body)) = read_request(&mut socket).await else {
                continue;
            };
            heads.lock().expect("heads").push(head.clone());
            let reply = if refuse > 0 {
                refuse -= 1;
                "HTTP/1.1 429 Too Many Requests\r\ncontent-length: 0\r\nretry-after: 7\r\n\
                 connection: close\r\n\r\n"
                    .as_bytes()
                    .to_vec()
            } else {
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let mut request = client
                    .post(format!("{upstream}{path}"))
                    .header("content-type", "application/x-ndjson")
                    .body(body);
                if head.to_ascii_lowercase().contains("content-encoding: gzip") {
                    request = request.header("content-encoding", "gzip");
                }
                let response = request.send().await.expect("upstream");
                let status = response.status().as_u16();
                let bytes = response.bytes().await.expect("upstream body");
                let mut out = format!(
                    "HTTP/1.1 {status} OK\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n",
                    bytes.len()
                )
                .into_bytes();
                out.extend_from_slice(&bytes);
                out
            };
            let _ = socket.write_all(&reply).await;
            let _ = socket.shutdown().await;
        }
    }

    async fn read_request(socket: &mut Box<dyn Stream>) -> Option<(String, Vec<u8>)> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let n = socket.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                let mut body = buf[end + 4..].to_vec();
                while body.len() < length {
                    let n = socket.read(&mut chunk).await.ok()?;
                    if n == 0 {
                        return None;
                    }
                    body.extend_from_slice(&chunk[..n]);
                }
                return Some((head, body));
            }
        }
    }
}
