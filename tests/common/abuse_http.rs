//! The abuse run's classes on the ingest port (tests/abuse.rs): gRPC bombs of empty events,
//! JSON/NDJSON of millions of tiny elements, OTLP expansion, oversized envelope fields, a
//! connection flood from one address, an idle h2c connection, and a flood of request methods
//! and event types into the metric labels. Each records the answers it got in the report.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;

use crate::common::http_raw::{
    H2_PREFACE, connect_from, h2_answered, h2_get_healthz, refused, series, try_connect_from,
};
use crate::common::ingest_client::IngestClient;
use crate::common::payloads::{
    OTLP_EXPORT, PAYLOAD, PUBLISH, empty_elements_bomb, field, grpc_frame, gzip, otlp_export,
    proto_event, tiny_elements_bodies,
};
use crate::{KEY, Target};

/// The per-address connection cap of the ingest port (`gateway.connections`, default).
const PER_IP_CAP: usize = 1000;

/// Starts every class of the ingest port, each in a task of its own.
pub(crate) fn spawn(target: &Arc<Target>) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(grpc_bombs(Arc::clone(target))),
        tokio::spawn(tiny_elements(Arc::clone(target))),
        tokio::spawn(otlp_expansion(Arc::clone(target))),
        tokio::spawn(envelope_fields(Arc::clone(target))),
        tokio::spawn(connection_flood(Arc::clone(target))),
        tokio::spawn(idle_h2c(Arc::clone(target))),
        tokio::spawn(label_flood(Arc::clone(target))),
        tokio::spawn(readyz_flood(Arc::clone(target))),
    ]
}

/// Class 1: a ~20 KiB gzip frame of 10M empty events, without a key and with one.
async fn grpc_bombs(target: Arc<Target>) {
    let client = IngestClient::new(target.ingest, KEY);
    let bomb = tokio::task::spawn_blocking(|| grpc_frame(true, &empty_elements_bomb(10_000_000)))
        .await
        .unwrap();
    let class = "1 gRPC Publish: gzip frame of 10M empty events";
    for _ in 0..target.profile.ingest_rounds {
        let (anonymous, message, _) = client.grpc(PUBLISH, None, bomb.clone(), true).await;
        let expected = anonymous == "16" && message.contains("missing API key");
        let (keyed, message_keyed, _) = client.grpc(PUBLISH, Some(KEY), bomb.clone(), true).await;
        let answer = format!(
            "no key: grpc-status {anonymous} ({message}); key: grpc-status {keyed} ({message_keyed})"
        );
        let expected = expected && keyed == "8" && message_keyed.contains("over the limit");
        target.report.row(class, answer, expected);
    }
}

/// Class 2: JSON array, `{"events": […]}` and NDJSON of 10M tiny elements, gzipped.
async fn tiny_elements(target: Arc<Target>) {
    let client = IngestClient::new(target.ingest, KEY);
    let bodies = tokio::task::spawn_blocking(|| tiny_elements_bodies(10_000_000))
        .await
        .unwrap();
    for _ in 0..target.profile.ingest_rounds {
        for (content_type, body) in &bodies {
            let (status, answer) = client
                .post_events(content_type, Some("gzip"), body.clone())
                .await;
            let class = format!("2 POST /v1/events {content_type}: 10M tiny elements");
            let expected = status == StatusCode::PAYLOAD_TOO_LARGE;
            target
                .report
                .row(&class, format!("{status} {}", answer["error"]), expected);
        }
    }
}

/// Class 3: a 4 MiB resource attribute × 100 records (HTTP and gRPC), and an export of 10M
/// empty `resource_logs`.
async fn otlp_expansion(target: Arc<Target>) {
    let client = IngestClient::new(target.ingest, KEY);
    let (copies, bomb) = tokio::task::spawn_blocking(|| {
        (
            gzip(&otlp_export(4 << 20, 100)),
            empty_elements_bomb(10_000_000),
        )
    })
    .await
    .unwrap();
    for _ in 0..target.profile.ingest_rounds {
        let (status, answer) = client
            .post(
                "/v1/logs",
                "application/x-protobuf",
                Some("gzip"),
                copies.clone(),
            )
            .await;
        target.report.row(
            "3 POST /v1/logs: 4 MiB resource x 100 records",
            format!("{status} {}", answer["error"]),
            status == StatusCode::PAYLOAD_TOO_LARGE,
        );
        let frame = grpc_frame(true, &copies);
        let (status, message, _) = client.grpc(OTLP_EXPORT, Some(KEY), frame, true).await;
        target.report.row(
            "3 gRPC OTLP Export: 4 MiB resource x 100 records",
            format!("grpc-status {status} ({message})"),
            status == "8",
        );
        let frame = grpc_frame(true, &bomb);
        let (status, message, _) = client.grpc(OTLP_EXPORT, Some(KEY), frame, true).await;
        target.report.row(
            "3 gRPC OTLP Export: 10M empty resource_logs",
            format!("grpc-status {status} ({message})"),
            status == "8",
        );
    }
}

/// Class 11: one event each with an oversized `source`, `id`, `type`, too many attributes or
/// too long ones, among valid events.
async fn envelope_fields(target: Arc<Target>) {
    let client = IngestClient::new(target.ingest, KEY);
    let event = |id: &str, event_type: &str, source: &str| {
        serde_json::json!({"id": id, "type": event_type, "source": source,
            "payload": {"title_id": "t", "position_ms": 1}})
    };
    let keys: Vec<String> = (0..65).map(|i| format!("k{i}")).collect();
    let many: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "v")).collect();
    let long = "v".repeat(9000);
    for round in 0..target.profile.ingest_rounds {
        let batch = serde_json::json!([
            event(&format!("env-ok-{round}"), "playback.start", "tv-1"),
            event("big-source", "playback.start", &"s".repeat(1_100_000)),
            event(&"i".repeat(129), "playback.start", "tv-1"),
            event("big-type", &"t".repeat(129), "tv-1"),
        ]);
        let body = serde_json::to_vec(&batch).unwrap();
        let (status, answer) = client.post_events("application/json", None, body).await;
        let expected = status == StatusCode::OK && answer["accepted"] == 1;
        let answer = format!(
            "{status} accepted {} rejected {}",
            answer["accepted"], answer["rejected"]
        );
        target.report.row(
            "11 JSON: 1.1 MB source, 129 B id and type",
            answer,
            expected,
        );
        let mut batch = field(
            1,
            &proto_event("", "playback.start", "tv-1", PAYLOAD, &many),
        );
        batch.extend(field(
            1,
            &proto_event("", "playback.start", "tv-1", PAYLOAD, &[("k", &long)]),
        ));
        batch.extend(field(
            1,
            &proto_event("", "playback.start", "tv-1", PAYLOAD, &many[..64]),
        ));
        let (status, answer) = client
            .post_events("application/x-protobuf", None, batch)
            .await;
        let expected = status == StatusCode::OK && answer["accepted"] == 1;
        let answer = format!(
            "{status} accepted {} rejected {}",
            answer["accepted"], answer["rejected"]
        );
        target.report.row(
            "11 protobuf: 65 attributes, 9 KB of attributes",
            answer,
            expected,
        );
    }
}

/// Class 6 (HTTP): from each of `http_addresses` addresses (127.0.0.3, …), connections with
/// half a request head up to the per-address cap, then 10 more: those are closed at accept.
async fn connection_flood(target: Arc<Target>) {
    let started = Instant::now();
    let floods = (0..target.profile.http_addresses).map(|n| {
        let from = [127, 0, 0, 3 + u8::try_from(n).unwrap()];
        flood_from(from, target.ingest)
    });
    let results = futures::future::join_all(floods).await;
    let took = started.elapsed();
    let held: usize = results.iter().map(|r| r.0).sum();
    let refusals: usize = results.iter().map(|r| r.1).sum();
    let over = 10 * results.len();
    let answer = format!(
        "{held} connections held with half a request head from {} addresses; of {over} past \
         the cap of {PER_IP_CAP} per address, {refusals} closed without an answer ({:.1}s)",
        results.len(),
        took.as_secs_f64()
    );
    // Past the header timeout the first connections are closed and make room: then the
    // refusals say nothing (the cap itself is tested alone in tests/hostile_http.rs).
    let expected =
        held == PER_IP_CAP * results.len() && (refusals == over || took > HEADER_TIMEOUT);
    target
        .report
        .row("6 HTTP connection flood", answer, expected);
}

/// `gateway.header_read_timeout_ms` (default): a half-sent request head is closed after it.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// [`PER_IP_CAP`] connections from `from`, each with half a request head, then 10 more: the
/// connections held and how many of the 10 were refused.
async fn flood_from(from: [u8; 4], server: SocketAddr) -> (usize, usize) {
    let mut held = Vec::with_capacity(PER_IP_CAP);
    for _ in 0..PER_IP_CAP {
        if let Ok(mut stream) = try_connect_from(from, server).await {
            let head = b"POST /v1/events HTTP/1.1\r\nhost: h\r\nx-slow: ";
            if stream.write_all(head).await.is_ok() {
                held.push(stream);
            }
        }
    }
    let mut refusals = 0;
    for _ in 0..10 {
        refusals += usize::from(refused(from, server, "a connection over the cap").await);
    }
    (held.len(), refusals)
}

/// Class 6 (HTTP/2): an h2c connection answered once, then idle.
async fn idle_h2c(target: Arc<Target>) {
    let mut stream = connect_from([127, 0, 0, 1], target.ingest).await;
    stream.write_all(H2_PREFACE).await.unwrap();
    stream.write_all(&h2_get_healthz()).await.unwrap();
    let answered = h2_answered(&mut stream).await;
    let idle = Instant::now();
    let class = "6 idle h2c connection (idle timeout 60 s)";
    match target.profile.idle_h2c_wait {
        None => {
            let answer = format!("answered: {answered}; held idle to the end of the quick run");
            target.report.row(class, answer, answered);
            target.hold(stream);
        }
        Some(within) => {
            let closed = wait_close(&mut stream, within).await;
            let answer = format!(
                "answered: {answered}; closed by the server: {closed} after {:.1}s idle",
                idle.elapsed().as_secs_f64()
            );
            target.report.row(class, answer, answered && closed);
        }
    }
}

/// Whether the server closes `stream` within `within`.
async fn wait_close(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// Class 10: request methods `M1…` and events of many types, then the label sets in /metrics.
async fn label_flood(target: Arc<Target>) {
    let http = reqwest::Client::new();
    let base = format!("http://{}", target.ingest);
    let mut client_errors = 0;
    for n in 1..=target.profile.methods {
        let method = reqwest::Method::from_bytes(format!("M{n}").as_bytes()).unwrap();
        let response = http.request(method, format!("{base}/healthz")).send().await;
        client_errors += usize::from(response.unwrap().status().is_client_error());
    }
    let mut accepted = 0;
    for event_type in &target.types {
        let body = format!(r#"[{{"type":"{event_type}","source":"d1","payload":{{}}}}]"#);
        let response = http
            .post(format!("{base}/v1/events"))
            .bearer_auth(KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        accepted += usize::from(response.status() == StatusCode::OK);
    }
    let text = http.get(format!("{base}/metrics")).send().await.unwrap();
    let text = text.text().await.unwrap();
    let requests = series(&text, "headwater_http_requests_total");
    let events = series(&text, "headwater_ingest_events_total");
    let flooded = requests.iter().any(|l| l.contains("method=\"M"));
    let abuse_types = events
        .iter()
        .filter(|l| l.contains("type=\"abuse.t"))
        .count();
    let other = events.iter().any(|l| l.contains("type=\"other\""));
    let answer = format!(
        "{client_errors}/{} methods answered 4xx, {accepted}/{} types accepted; /metrics: {} \
         request series (none by method M…: {}), {} event series, {abuse_types} of them \
         abuse types, `other` present: {other}",
        target.profile.methods,
        target.types.len(),
        requests.len(),
        !flooded,
        events.len()
    );
    let expected =
        client_errors == target.profile.methods && !flooded && abuse_types <= 100 && other;
    target.report.row(
        "10 metric labels: methods and event types",
        answer,
        expected,
    );
}

/// Also in issue 14: `/readyz` probes a write; a flood of them at once must cost the log at
/// most a probe at a time and answer every one.
async fn readyz_flood(target: Arc<Target>) {
    let http = reqwest::Client::new();
    let url = format!("http://{}/readyz", target.ingest);
    let count = target.profile.methods;
    let answers = futures::future::join_all((0..count).map(|_| http.get(&url).send())).await;
    let mut statuses: std::collections::BTreeMap<u16, usize> = Default::default();
    for answer in answers {
        *statuses
            .entry(answer.map_or(0, |a| a.status().as_u16()))
            .or_default() += 1;
    }
    target.report.row(
        "readyz flood (issue 14, also)",
        format!("{count} GET /readyz at once: statuses {statuses:?} (0: no answer)"),
        statuses.keys().all(|s| [200, 503].contains(s)),
    );
}
