//! Real Kafka clients against `headwater log-node`: kcat (metadata, 100,000 keyed messages
//! produced and consumed back in order per partition, consume from a timestamp), rdkafka with
//! an idempotent producer and a consumer group, the Java console tools and
//! kafka-consumer-groups, and bad input that must close a connection without hurting others.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Headwater, Listener, metric, service, unique};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Message};

const BIN: &str = env!("CARGO_BIN_EXE_headwater");

/// A `headwater log-node` on ports of its own choosing, killed when dropped.
struct LogNode {
    _process: Headwater,
    bootstrap: String,
    /// Where it serves /healthz and /metrics.
    ops: String,
    _data: tempfile::TempDir,
}

fn log_node() -> LogNode {
    let data = tempfile::tempdir().unwrap();
    let mut command = Command::new(BIN);
    command
        .args(["log-node", "--listen", "127.0.0.1:0"])
        .args(["--kafka-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data.path())
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    let mut process = Headwater::spawn("log-node", command);
    let bootstrap = process.addr(Listener::Kafka).to_string();
    let ops = process.addr(Listener::Ops).to_string();
    let kafka = process.report(Listener::Kafka);
    assert_eq!(
        kafka.get("advertised").and_then(|a| a.as_str()),
        Some(bootstrap.as_str()),
        "clients are told the bound address, not port 0"
    );
    LogNode {
        _process: process,
        bootstrap,
        ops,
        _data: data,
    }
}

fn kcat() -> String {
    service("HEADWATER_TEST_KCAT")
}

fn run(command: &mut Command) -> std::process::Output {
    let output = command.output().expect("spawn client");
    assert!(
        output.status.success(),
        "{:?} failed: {}\n{}",
        command,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn with_stdin(command: &mut Command, input: &[u8]) -> std::process::Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn client");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn kcat_lists_produces_100k_keyed_messages_and_consumes_them_in_order() {
    let node = log_node();
    let topic = unique("kcat");
    run(Command::new(kcat()).args(["-b", &node.bootstrap, "-L"]));
    let create = run(Command::new(kcat()).args(["-b", &node.bootstrap, "-L", "-t", &topic]));
    assert!(
        String::from_utf8_lossy(&create.stdout).contains("4 partitions"),
        "auto-created with 4 partitions"
    );

    let mut input = Vec::new();
    for i in 0..100_000 {
        writeln!(input, "device-{}:{i}", i % 97).unwrap();
    }
    with_stdin(
        Command::new(kcat()).args([
            "-b",
            &node.bootstrap,
            "-P",
            "-t",
            &topic,
            "-K:",
            "-X",
            "linger.ms=5",
        ]),
        &input,
    );

    let out = run(Command::new(kcat()).args([
        "-b",
        &node.bootstrap,
        "-C",
        "-t",
        &topic,
        "-e",
        "-q",
        "-f",
        "%p %o %k %s\n",
    ]));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut count = 0;
    let mut last_value: HashMap<String, i64> = HashMap::new();
    let mut last_offset: HashMap<String, i64> = HashMap::new();
    let mut partition_of: HashMap<String, String> = HashMap::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        let (partition, offset, key, value) = (
            parts[0],
            parts[1].parse::<i64>().unwrap(),
            parts[2],
            parts[3].parse::<i64>().unwrap(),
        );
        count += 1;
        // One partition per key, values in the order sent, offsets dense per partition.
        assert_eq!(
            partition_of
                .entry(key.to_owned())
                .or_insert_with(|| partition.to_owned()),
            partition
        );
        if let Some(previous) = last_value.insert(key.to_owned(), value) {
            assert!(value > previous, "key {key}: {value} after {previous}");
        }
        if let Some(previous) = last_offset.insert(partition.to_owned(), offset) {
            assert_eq!(offset, previous + 1, "partition {partition}");
        }
    }
    assert_eq!(count, 100_000);
    assert_eq!(last_value.len(), 97);

    // Consume from a timestamp in the future: nothing; from the epoch: everything.
    let future = run(Command::new(kcat()).args([
        "-b",
        &node.bootstrap,
        "-C",
        "-t",
        &topic,
        "-e",
        "-q",
        "-o",
        "s@4102444800000",
    ]));
    assert!(future.stdout.is_empty());
    let from_start = run(Command::new(kcat()).args([
        "-b",
        &node.bootstrap,
        "-C",
        "-t",
        &topic,
        "-e",
        "-q",
        "-o",
        "s@0",
    ]));
    assert_eq!(
        String::from_utf8_lossy(&from_start.stdout).lines().count(),
        100_000
    );
}

#[tokio::test]
async fn rdkafka_idempotent_producer_and_group_consumer_with_committed_offsets() {
    let node = log_node();
    let topic = unique("rd");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &node.bootstrap)
        .set("enable.idempotence", "true")
        .set("compression.type", "zstd")
        .create()
        .unwrap();
    // The broker a client is sent to after bootstrapping is the address the node bound.
    let metadata = producer
        .client()
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    let brokers: Vec<String> = metadata
        .brokers()
        .iter()
        .map(|b| format!("{}:{}", b.host(), b.port()))
        .collect();
    assert_eq!(brokers, std::slice::from_ref(&node.bootstrap));
    // All in flight at once: acknowledgements wait for the 100 ms flush, not for each other.
    let keys: Vec<(String, String)> = (0..1_000)
        .map(|i| (format!("k{}", i % 10), format!("v{i}")))
        .collect();
    let sends = keys.iter().map(|(key, value)| {
        producer.send(
            FutureRecord::to(&topic).key(key).payload(value),
            Duration::from_secs(30),
        )
    });
    for delivery in futures::future::join_all(sends).await {
        delivery.expect("delivery");
    }
    // Each answered Produce is timed from its request read to its response written (the
    // series is recorded just after the write, so it may trail the delivery a moment).
    let http = reqwest::Client::new();
    let series = "headwater_log_kafka_produce_seconds_count";
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut produces = metric(&http, &node.ops, series).await;
    while !produces.is_some_and(|n| n >= 1.0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        produces = metric(&http, &node.ops, series).await;
    }
    assert!(
        produces.is_some_and(|n| n >= 1.0),
        "answered Produces are timed in /metrics: {produces:?}"
    );
    let group = unique("g");
    let consume = |expect: usize| {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &node.bootstrap)
            .set("group.id", &group)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        consumer.subscribe(&[&topic]).unwrap();
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(if expect == 0 { 8 } else { 60 });
        while Instant::now() < deadline && (expect == 0 || seen < expect) {
            if let Some(message) = consumer.poll(Duration::from_millis(200)) {
                let message = message.expect("consume");
                assert!(message.payload().is_some());
                seen += 1;
                if seen % 100 == 0 || seen == expect {
                    consumer
                        .commit_message(&message, CommitMode::Sync)
                        .expect("commit");
                }
            }
        }
        seen
    };
    assert_eq!(
        consume(1_000),
        1_000,
        "exactly the messages sent: the idempotent producer wrote no duplicate"
    );
    assert_eq!(
        consume(0),
        0,
        "a restarted member resumes after its committed offsets"
    );
}

#[test]
fn java_console_tools_and_consumer_groups_command_work() {
    let node = log_node();
    let libs = service("HEADWATER_TEST_KAFKA_LIBS");
    let cp = format!("{libs}/*");
    let topic = unique("java");
    let input: Vec<u8> = (0..200)
        .flat_map(|i| format!("line-{i}\n").into_bytes())
        .collect();
    with_stdin(
        Command::new("java")
            .args(["-cp", &cp, "org.apache.kafka.tools.ConsoleProducer"])
            .args(["--bootstrap-server", &node.bootstrap, "--topic", &topic]),
        &input,
    );
    let out = run(Command::new("java")
        .args([
            "-cp",
            &cp,
            "org.apache.kafka.tools.consumer.ConsoleConsumer",
        ])
        .args([
            "--bootstrap-server",
            &node.bootstrap,
            "--topic",
            &topic,
            "--from-beginning",
            "--max-messages",
            "200",
            "--group",
            "java-group",
            "--timeout-ms",
            "60000",
        ]));
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 200);
    assert!(lines.contains(&"line-199".to_owned()));
    let describe = run(Command::new("java")
        .args([
            "-cp",
            &cp,
            "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
        ])
        .args([
            "--bootstrap-server",
            &node.bootstrap,
            "--describe",
            "--group",
            "java-group",
        ]));
    let text = String::from_utf8_lossy(&describe.stdout);
    let committed: i64 = text
        .lines()
        .filter(|l| l.starts_with("java-group"))
        .map(|l| {
            l.split_whitespace()
                .nth(3)
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(committed, 200, "{text}");
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

fn closed(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 64];
    matches!(stream.read(&mut buf), Ok(0) | Err(_))
}

#[test]
fn bad_frames_close_only_their_connection() {
    let node = log_node();
    // Unknown API key 9999.
    let mut s = TcpStream::connect(&node.bootstrap).unwrap();
    s.write_all(&frame(&[0x27, 0x0f, 0, 0, 0, 0, 0, 1, 0xff, 0xff]))
        .unwrap();
    assert!(closed(&mut s));
    // Produce v99 (unsupported version).
    let mut s = TcpStream::connect(&node.bootstrap).unwrap();
    s.write_all(&frame(&[0, 0, 0, 99, 0, 0, 0, 1, 0xff, 0xff]))
        .unwrap();
    assert!(closed(&mut s));
    // A frame claiming 2 GiB.
    let mut s = TcpStream::connect(&node.bootstrap).unwrap();
    s.write_all(&0x7fff_fff0i32.to_be_bytes()).unwrap();
    assert!(closed(&mut s));
    // Garbage after a valid Metadata header.
    let mut s = TcpStream::connect(&node.bootstrap).unwrap();
    s.write_all(&frame(&[
        0, 3, 0, 1, 0, 0, 0, 1, 0, 3, b'c', b'l', b'i', 0xff, 0xff, 0xff, 0x7f,
    ]))
    .unwrap();
    assert!(closed(&mut s));
    // ApiVersions v99 answers UNSUPPORTED_VERSION (35) in v0 instead of closing.
    let mut s = TcpStream::connect(&node.bootstrap).unwrap();
    s.write_all(&frame(&[0, 18, 0, 99, 0, 0, 0, 7, 0xff, 0xff]))
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = [0u8; 10];
    s.read_exact(&mut head).unwrap();
    assert_eq!(
        i32::from_be_bytes([head[4], head[5], head[6], head[7]]),
        7,
        "correlation id"
    );
    assert_eq!(i16::from_be_bytes([head[8], head[9]]), 35);
    // The broker still serves everyone else.
    run(Command::new(kcat()).args(["-b", &node.bootstrap, "-L"]));
}
