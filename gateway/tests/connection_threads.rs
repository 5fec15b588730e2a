//! `gateway.connections.io_threads`: connections served by threads of their own, over HTTP/1.1
//! and HTTP/2 at once, every accepted event in the log, and a clean stop.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use common::{TestGateway, header};
use headwater_gateway::GatewayConfig;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_threads_serve_http1_and_http2_and_lose_nothing() {
    let mut config = GatewayConfig::default();
    config.connections.io_threads = headwater_gateway::IoThreads::Count(2);
    let gw = TestGateway::start(config).await;
    let mut clients: Vec<reqwest::Client> = (0..4)
        .map(|_| reqwest::Client::builder().http1_only().build().unwrap())
        .collect();
    clients.extend((0..2).map(|_| {
        reqwest::Client::builder()
            .http2_prior_knowledge()
            .build()
            .unwrap()
    }));
    let mut requests = tokio::task::JoinSet::new();
    for (c, client) in clients.iter().enumerate() {
        for r in 0..10 {
            let client = client.clone();
            let url = gw.url("/v1/events");
            requests.spawn(async move {
                let events: Vec<Value> = (0..5)
                    .map(|e| json!({"id": format!("c{c}-r{r}-e{e}"), "type": "ok.play", "source": format!("s{c}"), "payload": {"n": e}}))
                    .collect();
                let response = client.post(url).json(&events).send().await.unwrap();
                (response.status().as_u16(), response.json::<Value>().await.unwrap())
            });
        }
    }
    while let Some(done) = requests.join_next().await {
        let (status, answer) = done.unwrap();
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["accepted"], 5, "{answer}");
    }
    // (The server started them before it accepted the first connection.)
    assert_eq!(connection_threads(), ["hw-conn-0", "hw-conn-1"]);
    let mut ids: Vec<String> = gw
        .records("events")
        .await
        .iter()
        .filter_map(|record| header(record, "hw.id"))
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 6 * 10 * 5);
    // The stop ends the threads; the open keep-alive connections do not hold it up.
    tokio::time::timeout(std::time::Duration::from_secs(10), gw.stop())
        .await
        .expect("stopped");
    assert!(connection_threads().is_empty());
}

/// The names of this process's connection threads.
fn connection_threads() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| {
            name.strip_prefix("hw-conn-")
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    names.sort();
    names
}
