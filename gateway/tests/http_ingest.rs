//! The HTTP ingest contract against a served gateway over a real log engine: every status code
//! of DESIGN.md, partial acceptance with the dead-letter topic, durability, and bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::io::Write;
use std::time::Duration;

use common::{TestGateway, header};
use headwater_gateway::GatewayConfig;
use headwater_gateway::config::{ApiKey, AuthConfig, RateLimitConfig};
use serde_json::{Value, json};

async fn post(
    gw: &TestGateway,
    body: impl Into<reqwest::Body>,
    headers: &[(&str, &str)],
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut request = reqwest::Client::new().post(gw.url("/v1/events")).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body, headers)
}

const JSON: (&str, &str) = ("content-type", "application/json");

fn event(i: usize, event_type: &str) -> Value {
    json!({"id": format!("e-{i}"), "type": event_type, "version": 1, "source": format!("tv-{}", i % 3), "ts": 1_700_000_000_000i64 + i as i64, "payload": {"title_id": format!("t-{i}"), "position_ms": i}})
}

#[tokio::test]
async fn accepted_events_are_durable_with_envelope_headers_and_payload_bytes_as_sent() {
    let gw = TestGateway::start(GatewayConfig::default()).await;
    let body = r#"[{"id":"a1","type":"ok.play","version":2,"source":"tv-1","ts":1700000000000,"payload":{"title_id" : "x",  "position_ms":5}},
                   {"type":"ok.play","source":"tv-2","payload":[1, 2,3]}]"#;
    let (status, answer, _) = post(&gw, body, &[JSON, ("user-agent", "tv-app/1.0")]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, json!({"accepted": 2, "rejected": 0, "errors": []}));
    let records = gw.records("events").await;
    assert_eq!(records.len(), 2);
    let first = records
        .iter()
        .find(|r| header(r, "hw.id").as_deref() == Some("a1"))
        .unwrap();
    assert_eq!(first.key.as_deref(), Some(&b"tv-1"[..]));
    assert_eq!(
        first.value.as_deref(),
        Some(&br#"{"title_id" : "x",  "position_ms":5}"#[..])
    );
    assert_eq!(header(first, "hw.type").as_deref(), Some("ok.play"));
    assert_eq!(header(first, "hw.version").as_deref(), Some("2"));
    assert_eq!(header(first, "hw.source").as_deref(), Some("tv-1"));
    assert_eq!(header(first, "hw.ts").as_deref(), Some("1700000000000"));
    assert_eq!(header(first, "hw.tenant").as_deref(), Some("default"));
    assert_eq!(header(first, "hw.format").as_deref(), Some("json"));
    assert_eq!(header(first, "hw.client_ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(
        header(first, "hw.user_agent").as_deref(),
        Some("tv-app/1.0")
    );
    assert!(
        header(first, "hw.received_at")
            .unwrap()
            .parse::<i64>()
            .unwrap()
            > 1_700_000_000_000
    );
    let second = records
        .iter()
        .find(|r| r.key.as_deref() == Some(&b"tv-2"[..]))
        .unwrap();
    let assigned = header(second, "hw.id").unwrap();
    assert_eq!(assigned.len(), 26, "a ULID: {assigned}");
    assert_eq!(second.value.as_deref(), Some(&b"[1, 2,3]"[..]));
    // Every stored record rebuilds its envelope, as the router and sinks do; without client
    // time, ts is the receive time.
    for record in &records {
        let pairs = record
            .headers
            .iter()
            .map(|h| (h.key.clone(), h.value.clone().unwrap_or_default()));
        let envelope =
            headwater_schemas::Envelope::from_headers(pairs, record.value.clone().unwrap())
                .expect("envelope from stored headers");
        assert_eq!(envelope.tenant, "default");
    }
    assert_eq!(header(second, "hw.ts"), header(second, "hw.received_at"));
    gw.stop().await;
}

#[tokio::test]
async fn every_body_form_and_encoding_is_accepted() {
    let gw = TestGateway::start(GatewayConfig::default()).await;
    let events: Vec<Value> = (0..10).map(|i| event(i, "ok.play")).collect();
    let array = serde_json::to_vec(&events).unwrap();
    let object = serde_json::to_vec(&json!({"events": events})).unwrap();
    let ndjson: Vec<u8> = events
        .iter()
        .flat_map(|e| format!("{e}\n").into_bytes())
        .collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&array).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(&ndjson[..], 3).unwrap();
    type Case<'a> = (Vec<u8>, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case<'_>> = vec![
        (array.clone(), vec![JSON]),
        (
            object,
            vec![("content-type", "application/json; charset=utf-8")],
        ),
        (ndjson, vec![("content-type", "application/x-ndjson")]),
        (gz, vec![JSON, ("content-encoding", "gzip")]),
        (
            zst,
            vec![
                ("content-type", "application/x-ndjson"),
                ("content-encoding", "zstd"),
            ],
        ),
    ];
    for (i, (body, headers)) in cases.into_iter().enumerate() {
        // Distinct ids per case so dedup does not fold them.
        let body = String::from_utf8(body.clone())
            .map(|t| t.replace("\"e-", &format!("\"c{i}-")).into_bytes())
            .unwrap_or(body);
        let (status, answer, _) = post(&gw, body, &headers).await;
        assert_eq!(status, 200, "case {i}: {answer}");
        assert_eq!(answer["accepted"], 10, "case {i}: {answer}");
    }
    // The compressed cases keep ids e-*: new for gzip, then deduplicated for zstd.
    assert_eq!(gw.records("events").await.len(), 40);
    gw.stop().await;
}

#[tokio::test]
async fn invalid_events_go_to_the_dead_letter_topic_and_the_rest_are_accepted() {
    let gw = TestGateway::start(GatewayConfig::default()).await;
    let body = json!([event(0, "ok.play"), event(1, "nope.play"), 42, {"type": "ok.play", "payload": {}}, event(4, "ok.play")]);
    let (status, answer, _) = post(&gw, body.to_string(), &[JSON]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], 2);
    assert_eq!(answer["rejected"], 3);
    let errors = answer["errors"].as_array().unwrap();
    assert_eq!(
        errors[0],
        json!({"index": 1, "reason": "unknown event type `nope.play`"})
    );
    assert_eq!(errors[1]["index"], 2);
    assert_eq!(errors[2], json!({"index": 3, "reason": "missing `source`"}));
    assert_eq!(gw.records("events").await.len(), 2);
    let dlq = gw.records("events.dlq").await;
    assert_eq!(dlq.len(), 3);
    let reasons: Vec<String> = dlq.iter().filter_map(|r| header(r, "hw.error")).collect();
    assert!(
        reasons.contains(&"unknown event type `nope.play`".to_owned()),
        "{reasons:?}"
    );
    let raw42 = dlq.iter().find(|r| r.value.as_deref() == Some(&b"42"[..]));
    assert!(raw42.is_some(), "the non-object element is kept as sent");
    gw.stop().await;
}

#[tokio::test]
async fn malformed_bodies_and_unknown_types_are_refused_with_400_and_415() {
    let gw = TestGateway::start(GatewayConfig::default()).await;
    for body in ["[{\"type\":", "not json", "{\"events\": 1}", ""] {
        let (status, answer, _) = post(&gw, body, &[JSON]).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .starts_with("malformed body"),
            "{answer}"
        );
    }
    let (status, _, _) = post(&gw, "[]", &[("content-type", "text/csv")]).await;
    assert_eq!(status, 415);
    let (status, answer, _) = post(&gw, "[]", &[JSON, ("content-encoding", "br")]).await;
    assert_eq!(status, 415, "{answer}");
    let (status, answer, _) = post(
        &gw,
        "definitely not gzip",
        &[JSON, ("content-encoding", "gzip")],
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(gw.records("events").await.is_empty());
    gw.stop().await;
}

#[tokio::test]
async fn oversize_bodies_bombs_and_batches_get_413() {
    let gw = TestGateway::start(GatewayConfig::default()).await;
    // A 10 MB body declared: over the 5 MiB body limit, refused before it is sent (a client
    // that sends it anyway: `an_early_413_reaches_a_client_that_sends_its_whole_body`).
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: 10000000\r\nexpect: 100-continue\r\n\r\n",
        gw.addr
    );
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, head.as_bytes())
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut answer),
    )
    .await
    .expect("the server answers and closes")
    .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    // A gzip bomb: 64 MiB of spaces in about 64 KiB, stopped at 20 MiB inflated.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let chunk = vec![b' '; 1 << 20];
    gz.write_all(b"[").unwrap();
    for _ in 0..64 {
        gz.write_all(&chunk).unwrap();
    }
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 1 << 20, "{}", bomb.len());
    let (status, answer, _) = post(&gw, bomb, &[JSON, ("content-encoding", "gzip")]).await;
    assert_eq!(status, 413, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("decompressed"),
        "{answer}"
    );
    // 100,000 events: over the 10,000-event batch limit.
    let many: Vec<Value> = (0..100_000)
        .map(|i| json!({"type":"ok.a","source":"s","payload":i}))
        .collect();
    let (status, answer, _) = post(&gw, serde_json::to_vec(&many).unwrap(), &[JSON]).await;
    assert_eq!(status, 413, "{answer}");
    // A single event over max_event_bytes inside an acceptable body: rejected alone.
    let one = format!(
        "[{{\"type\":\"ok.a\",\"source\":\"s\",\"payload\":\"{}\"}},{{\"type\":\"ok.a\",\"source\":\"s\",\"payload\":1}}]",
        "y".repeat(600 * 1024)
    );
    let (status, answer, _) = post(&gw, one, &[JSON]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["accepted"].as_u64(), answer["rejected"].as_u64()),
        (Some(1), Some(1))
    );
    let health = reqwest::get(gw.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    gw.stop().await;
}

/// A connection with a request head sent: `content-length` over the 5 MiB body limit, no
/// `expect`, so the server answers 413 before reading the body.
async fn oversize_post(gw: &TestGateway) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: 10000000\r\n\r\n",
        gw.addr
    );
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// What the server sends until it closes, which must be a close, not a reset.
async fn read_to_close(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the server closes")
        .expect("with a close, not a reset");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn an_early_413_reaches_a_client_that_sends_its_whole_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = TestGateway::start(GatewayConfig::default()).await;
    let body = vec![b' '; 10_000_000];
    // The client sends its body only after the answer came: the server has ended the request
    // by then, and what it still gets is read and dropped, not left unread under a reset. The
    // client's writes all succeed and the connection ends with a close.
    for _ in 0..2 {
        let mut stream = oversize_post(&gw).await;
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            let n = stream.read(&mut byte).await.unwrap();
            assert_eq!(n, 1, "closed before the answer's head: {head:?}");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        assert!(head.starts_with("HTTP/1.1 413 "), "{head}");
        stream.write_all(&body).await.expect("the body is taken");
        read_to_close(&mut stream).await;
    }
    // A client that writes all of its body before it reads gets the 413.
    for _ in 0..2 {
        let mut stream = oversize_post(&gw).await;
        stream.write_all(&body).await.expect("the body is taken");
        let answer = read_to_close(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    }
    gw.stop().await;
}

fn keyed_config() -> GatewayConfig {
    GatewayConfig {
        auth: AuthConfig {
            keys: vec![
                ApiKey {
                    tenant: "acme".into(),
                    sha256: headwater_gateway::auth::hash_key("k-acme"),
                    disabled: false,
                },
                ApiKey {
                    tenant: "old".into(),
                    sha256: headwater_gateway::auth::hash_key("k-old"),
                    disabled: true,
                },
            ],
            ..AuthConfig::default()
        },
        ..GatewayConfig::default()
    }
}

#[tokio::test]
async fn keys_are_checked_with_401_and_403() {
    let gw = TestGateway::start(keyed_config()).await;
    let body = json!([event(0, "ok.play")]).to_string();
    let (status, answer, _) = post(&gw, body.clone(), &[JSON]).await;
    assert_eq!(status, 401, "{answer}");
    let (status, _, _) = post(
        &gw,
        body.clone(),
        &[JSON, ("authorization", "Bearer wrong")],
    )
    .await;
    assert_eq!(status, 401);
    let (status, _, _) = post(&gw, body.clone(), &[JSON, ("x-api-key", "k-old")]).await;
    assert_eq!(status, 403);
    let (status, _, _) = post(&gw, body, &[JSON, ("authorization", "Bearer k-acme")]).await;
    assert_eq!(status, 200);
    let records = gw.records("events").await;
    assert_eq!(records.len(), 1);
    assert_eq!(header(&records[0], "hw.tenant").as_deref(), Some("acme"));
    gw.stop().await;
}

#[tokio::test]
async fn a_flood_gets_429_with_retry_after_and_the_gateway_stays_healthy() {
    let config = GatewayConfig {
        rate_limit: RateLimitConfig {
            requests_per_second: 5,
            events_per_second: 1_000,
            burst_seconds: 1,
        },
        ..keyed_config()
    };
    let gw = TestGateway::start(config).await;
    // Twenty at once: the bucket holds five.
    let answers = futures::future::join_all((0..20).map(|i| {
        let body = json!([event(i, "ok.play")]).to_string();
        let gw = &gw;
        async move { post(gw, body, &[JSON, ("x-api-key", "k-acme")]).await }
    }))
    .await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    let retry_after = answers
        .iter()
        .find(|a| a.0 == 429)
        .and_then(|a| a.2.get("retry-after"))
        .map(|v| v.to_str().unwrap().to_owned());
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert!((5..=7).contains(&ok) && ok + limited == 20, "{statuses:?}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(
        gw.records("events").await.len(),
        ok,
        "only admitted batches are appended"
    );
    assert_eq!(
        reqwest::get(gw.url("/healthz")).await.unwrap().status(),
        200
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_retried_event_id_is_appended_once() {
    let gw = TestGateway::start(GatewayConfig::default()).await;
    let body = json!([event(7, "ok.play"), event(7, "ok.play")]).to_string();
    for _ in 0..3 {
        let (status, answer, _) = post(&gw, body.clone(), &[JSON]).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["accepted"], 2);
    }
    assert_eq!(gw.records("events").await.len(), 1);
    gw.stop().await;
}

/// A gateway whose clients get 300 ms to send a request's headers.
async fn impatient_gateway() -> TestGateway {
    let config = GatewayConfig {
        header_read_timeout_ms: 300,
        ..GatewayConfig::default()
    };
    TestGateway::start(config).await
}

#[tokio::test]
async fn a_client_still_sending_when_its_headers_time_out_is_closed_at_the_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = impatient_gateway().await;
    let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    writer
        .write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Header bytes keep coming, too slowly: the timeout ends the connection, and what still
    // comes does not hold it open (only a connection closed after an answer lingers).
    let trickle = tokio::spawn(async move {
        for _ in 0..200 {
            if writer.write_all(b"x").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut seen = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), reader.read_to_end(&mut seen)).await;
    assert!(read.is_ok(), "still open 3 s after a 300 ms header timeout");
    trickle.abort();
    gw.stop().await;
}

#[tokio::test]
async fn a_slow_client_is_disconnected_and_others_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = impatient_gateway().await;
    let mut slow = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    slow.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Others are served while the slow client dawdles.
    assert_eq!(
        reqwest::get(gw.url("/healthz")).await.unwrap().status(),
        200
    );
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the slow connection was not closed within 5 s"
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    assert_eq!(
        reqwest::get(gw.url("/healthz")).await.unwrap().status(),
        200
    );
    gw.stop().await;
}
