//! The Java client (Kafka 4.x console tools) over SASL_SSL: SaslHandshake v1 and
//! SaslAuthenticate v2 with PLAIN, a PEM trust store for the private CA, and a consumer group.
//! Needs the Kafka jars of `scripts/install-deps` (`HEADWATER_TEST_KAFKA_LIBS`, written by
//! `scripts/services start` into `target/services/env.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test (or bench) fails by panicking

#[path = "kafka_security/support.rs"]
#[allow(dead_code)] // the raw client, kcat and rdkafka helpers serve the other file
mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{PASSWORD, Security, TestBroker, USER};

/// `-cp` for the Kafka jars.
fn classpath() -> String {
    let libs = std::env::var("HEADWATER_TEST_KAFKA_LIBS").unwrap_or_else(|_| {
        panic!(
            "HEADWATER_TEST_KAFKA_LIBS is not set: run scripts/install-deps and \
             scripts/services start, then . target/services/env.sh"
        )
    });
    format!("{libs}/*")
}

/// Client properties for SASL_SSL as `prefix` flags (`--producer-property` …).
fn properties(broker: &TestBroker, flag: &str) -> Vec<String> {
    let jaas = format!(
        "org.apache.kafka.common.security.plain.PlainLoginModule required \
         username=\"{USER}\" password=\"{PASSWORD}\";"
    );
    [
        "security.protocol=SASL_SSL".to_owned(),
        "sasl.mechanism=PLAIN".to_owned(),
        format!("sasl.jaas.config={jaas}"),
        "ssl.truststore.type=PEM".to_owned(),
        format!("ssl.truststore.location={}", broker.file("ca.pem")),
    ]
    .into_iter()
    .flat_map(|p| [flag.to_owned(), p])
    .collect()
}

/// Runs `command` with `input` on stdin, killing it after 120 s; returns stdout.
fn run(command: &mut Command, input: &[u8]) -> String {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn java");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn java_console_tools_round_trip_over_sasl_ssl() {
    let broker = TestBroker::start(Security::SaslSsl);
    let cp = classpath();
    let input: String = (0..50).map(|i| format!("java-{i}\n")).collect();
    run(
        Command::new("java")
            .args(["-cp", &cp, "org.apache.kafka.tools.ConsoleProducer"])
            .args(["--bootstrap-server", &broker.bootstrap(), "--topic", "java"])
            .args(properties(&broker, "--producer-property")),
        input.as_bytes(),
    );
    let out = run(
        Command::new("java")
            .args([
                "-cp",
                &cp,
                "org.apache.kafka.tools.consumer.ConsoleConsumer",
            ])
            .args(["--bootstrap-server", &broker.bootstrap(), "--topic", "java"])
            .args([
                "--from-beginning",
                "--max-messages",
                "50",
                "--group",
                "java",
            ])
            .args(["--timeout-ms", "60000"])
            .args(properties(&broker, "--consumer-property")),
        b"",
    );
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort_by_key(|l| {
        l.trim_start_matches("java-")
            .parse::<u32>()
            .unwrap_or(u32::MAX)
    });
    let expected: Vec<String> = (0..50).map(|i| format!("java-{i}")).collect();
    assert_eq!(lines, expected);
}
