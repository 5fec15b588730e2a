//! The Kafka port of `headwater serve` with authentication on, as a hostile tenant would try
//! it, with real clients (rdkafka = librdkafka, kcat): SASL_SSL with SCRAM-SHA-512 (a service),
//! SCRAM-SHA-256 (an operator) and PLAIN (tenants with their API keys); the broker stamps the
//! tenant and receive time, validates what tenants produce to schema-governed topics, and the
//! ACLs keep tenants out of deletes, creates, the router's groups and other tenants' topics.
//! An exposed port without authentication refuses to start.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Headwater, Listener};
use futures::executor::block_on;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

const BIN: &str = env!("CARGO_BIN_EXE_headwater");

const SCHEMA: &str = r#"{"type":"object","properties":{"position_ms":{"type":"integer","minimum":0}},"required":["position_ms"]}"#;

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

fn scram(mechanism: &str, password: &str) -> String {
    let mut child = Command::new(BIN)
        .args(["scram-credential", "--mechanism", mechanism])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(password.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// `headwater serve` with SASL_SSL on the Kafka port.
struct Secured {
    _process: Headwater,
    bootstrap: String,
    pki: PathBuf,
    _dir: tempfile::TempDir,
}

impl Secured {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("pki");
        std::fs::create_dir(&pki).unwrap();
        headwater_testing::Pki::generate(&pki, "device-7").unwrap();
        let schemas = dir.path().join("schemas");
        std::fs::create_dir(&schemas).unwrap();
        std::fs::write(schemas.join("playback.start.v1.schema.json"), SCHEMA).unwrap();
        let file = |name: &str| pki.join(name).display().to_string();
        let config = format!(
            r#"
data_dir: {data}
gateway:
  listen: 127.0.0.1:0
  auth:
    keys:
      - {{tenant: acme, sha256: {acme}}}
      - {{tenant: globex, sha256: {globex}}}
schemas:
  dir: {schemas}
log:
  kafka_listen: 127.0.0.1:0
  kafka_tls: {{cert_file: {cert}, key_file: {key}}}
  kafka_sasl: {{enabled: true}}
  principals:
    - {{name: router, role: service, scram_sha512: "{router}"}}
    - {{name: ops, role: operator, scram_sha256: "{ops}"}}
  acls:
    - {{principal: "User:acme", resource_type: topic, pattern_type: prefixed, name: "acme.", operations: [read, write]}}
    - {{principal: "User:acme", resource_type: group, pattern_type: prefixed, name: "acme.", operations: [read]}}
    - {{principal: "User:acme", resource_type: group, name: "router.lake", operations: [read]}}
    - {{principal: "User:acme", resource_type: group, name: "router.lake.members", operations: [all]}}
"#,
            data = dir.path().join("data").display(),
            acme = sha256_hex("acme-key"),
            globex = sha256_hex("globex-key"),
            schemas = schemas.display(),
            cert = file("server.pem"),
            key = file("server.key"),
            router = scram("SCRAM-SHA-512", "router-secret"),
            ops = scram("SCRAM-SHA-256", "ops-secret"),
        );
        let config_file = dir.path().join("headwater.yaml");
        std::fs::write(&config_file, config).unwrap();
        let mut command = Command::new(BIN);
        command
            .arg("--config")
            .arg(&config_file)
            .arg("serve")
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        let mut process = Headwater::spawn("serve", command);
        let bootstrap = process.addr(Listener::Kafka).to_string();
        process.addr(Listener::Ingest);
        Self {
            _process: process,
            bootstrap,
            pki,
            _dir: dir,
        }
    }

    /// librdkafka settings for `user` with `mechanism` over SASL_SSL.
    fn client(&self, mechanism: &str, user: &str, password: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("security.protocol", "SASL_SSL")
            .set("sasl.mechanisms", mechanism)
            .set("sasl.username", user)
            .set("sasl.password", password)
            .set(
                "ssl.ca.location",
                self.pki.join("ca.pem").display().to_string(),
            )
            .set("socket.timeout.ms", "10000");
        config
    }

    fn acme(&self) -> ClientConfig {
        self.client("PLAIN", "acme", "acme-key")
    }

    fn router(&self) -> ClientConfig {
        self.client("SCRAM-SHA-512", "router", "router-secret")
    }

    fn ops(&self) -> ClientConfig {
        self.client("SCRAM-SHA-256", "ops", "ops-secret")
    }
}

/// Produces one record; the broker's answer.
fn produce(
    config: &ClientConfig,
    topic: &str,
    value: &str,
    headers: &[(&str, &str)],
) -> Result<(i32, i64), KafkaError> {
    let producer: FutureProducer = config
        .clone()
        .set("message.timeout.ms", "20000")
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let mut owned = OwnedHeaders::new();
    for (key, value) in headers {
        owned = owned.insert(Header {
            key,
            value: Some(*value),
        });
    }
    let record = FutureRecord::to(topic)
        .key("tv-1")
        .payload(value)
        .headers(owned);
    block_on(producer.send(record, Duration::from_secs(20)))
        .map(|delivery| (delivery.partition, delivery.offset))
        .map_err(|(e, _)| e)
}

fn code(error: &KafkaError) -> Option<RDKafkaErrorCode> {
    error.rdkafka_error_code()
}

/// The records of partition `partition` of `topic` from `offset`, read as `config` until
/// `count` arrived (20 s at most); the first error instead.
fn consume(
    config: &ClientConfig,
    topic: &str,
    partition: i32,
    count: usize,
) -> Result<Vec<rdkafka::message::OwnedMessage>, KafkaError> {
    let consumer: BaseConsumer = config
        .clone()
        .set("group.id", "unused")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while out.len() < count && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => out.push(message.detach()),
            Some(Err(error)) => return Err(error),
            None => {}
        }
    }
    Ok(out)
}

fn header<'a>(message: &'a rdkafka::message::OwnedMessage, key: &str) -> Option<&'a str> {
    let headers = message.headers()?;
    headers
        .iter()
        .filter(|h| h.key == key)
        .last()
        .and_then(|h| std::str::from_utf8(h.value?).ok())
}

#[test]
fn tenants_produce_stamped_and_validated_events_and_read_only_what_they_are_granted() {
    let hw = Secured::start();
    let valid = r#"{"position_ms":5}"#;

    // A valid event from acme (PLAIN with its API key), claiming no tenant: stamped.
    let (partition, offset) = produce(
        &hw.acme(),
        "events",
        valid,
        &[("hw.type", "playback.start")],
    )
    .unwrap();
    // Claiming its own tenant is fine; claiming another is refused with the reason.
    produce(
        &hw.acme(),
        "events",
        valid,
        &[("hw.type", "playback.start"), ("hw.tenant", "acme")],
    )
    .unwrap();
    let forged = produce(
        &hw.acme(),
        "events",
        valid,
        &[("hw.type", "playback.start"), ("hw.tenant", "victim")],
    )
    .unwrap_err();
    assert_eq!(
        code(&forged),
        Some(RDKafkaErrorCode::InvalidRecord),
        "{forged}"
    );
    // A payload that breaks its schema, and an event without a type, are refused.
    for (value, headers) in [
        (
            r#"{"position_ms":-1}"#,
            &[("hw.type", "playback.start")][..],
        ),
        (valid, &[][..]),
        (valid, &[("hw.type", "no.such.type")][..]),
    ] {
        let refused = produce(&hw.acme(), "events", value, headers).unwrap_err();
        assert_eq!(
            code(&refused),
            Some(RDKafkaErrorCode::InvalidRecord),
            "{value} {headers:?}: {refused}"
        );
    }
    // The dead-letter topic is the gateway's, not the tenants'.
    let dlq = produce(
        &hw.acme(),
        "events.dlq",
        valid,
        &[("hw.type", "playback.start")],
    )
    .unwrap_err();
    assert_eq!(
        code(&dlq),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed),
        "{dlq}"
    );

    // The router (a service, SCRAM-SHA-512) reads the event with the broker's stamps.
    let records = consume(&hw.router(), "events", partition, 2).unwrap();
    let first = records
        .iter()
        .find(|m| m.offset() == offset)
        .expect("the event");
    assert_eq!(header(first, "hw.tenant"), Some("acme"));
    assert_eq!(header(first, "hw.type"), Some("playback.start"));
    assert_eq!(header(first, "hw.version"), Some("1"));
    assert_eq!(header(first, "hw.source"), Some("tv-1"));
    let received: i64 = header(first, "hw.received_at").unwrap().parse().unwrap();
    assert!(received > 1_700_000_000_000, "{received}");
    assert!(
        records
            .iter()
            .all(|m| header(m, "hw.tenant") == Some("acme"))
    );

    // A tenant reads nothing by default, not even the events it wrote.
    let denied = consume(&hw.acme(), "events", partition, 1).unwrap_err();
    assert_eq!(
        code(&denied),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed),
        "{denied}"
    );

    // What an ACL grants works: acme's own topics, stamped but not validated.
    let (p, _) = produce(&hw.acme(), "acme.raw", "free text", &[]).unwrap();
    let own = consume(&hw.acme(), "acme.raw", p, 1).unwrap();
    assert_eq!(own[0].payload(), Some(&b"free text"[..]));
    assert_eq!(header(&own[0], "hw.tenant"), Some("acme"));
    // Another tenant's topic is neither writable nor readable.
    let globex = hw.client("PLAIN", "globex", "globex-key");
    let written = produce(&globex, "acme.raw", "x", &[]).unwrap_err();
    assert_eq!(
        code(&written),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed),
        "{written}"
    );
    // librdkafka reports the refused Metadata of an assigned topic only in its log, so the
    // consumer reads nothing; Metadata names the refusal.
    match consume(&globex, "acme.raw", p, 1) {
        Ok(read) => assert!(read.is_empty(), "globex read acme.raw"),
        Err(error) => assert_eq!(
            code(&error),
            Some(RDKafkaErrorCode::TopicAuthorizationFailed),
            "{error}"
        ),
    }
    let consumer: BaseConsumer = globex.clone().create().unwrap();
    let metadata = consumer
        .fetch_metadata(Some("acme.raw"), Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        metadata.topics()[0].error().map(RDKafkaErrorCode::from),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed)
    );

    // Metadata lists only what a principal may describe.
    let consumer: BaseConsumer = globex.clone().create().unwrap();
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    let names: Vec<&str> = metadata.topics().iter().map(|t| t.name()).collect();
    assert!(!names.contains(&"acme.raw"), "{names:?}");
    assert!(
        names.contains(&"events"),
        "a tenant may describe where it writes: {names:?}"
    );
    let consumer: BaseConsumer = hw.router().create().unwrap();
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    let names: Vec<&str> = metadata.topics().iter().map(|t| t.name()).collect();
    assert!(
        names.contains(&"acme.raw") && names.contains(&"events"),
        "{names:?}"
    );

    // kcat (SCRAM-SHA-512 over TLS) sees the same stamped record.
    let out = Command::new("kcat")
        .args([
            "-b",
            &hw.bootstrap,
            "-C",
            "-t",
            "events",
            "-p",
            &partition.to_string(),
        ])
        .args(["-o", &offset.to_string(), "-c", "1", "-e", "-f", "%h\n"])
        .args([
            "-X",
            "security.protocol=SASL_SSL",
            "-X",
            "sasl.mechanisms=SCRAM-SHA-512",
        ])
        .args([
            "-X",
            "sasl.username=router",
            "-X",
            "sasl.password=router-secret",
        ])
        .args([
            "-X",
            &format!("ssl.ca.location={}", hw.pki.join("ca.pem").display()),
        ])
        .output()
        .expect("kcat (scripts/install-deps installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kcat: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("hw.tenant=acme"), "{text}");
}

#[test]
fn tenants_cannot_administer_topics_or_touch_the_routers_groups() {
    let hw = Secured::start();
    produce(
        &hw.acme(),
        "events",
        r#"{"position_ms":1}"#,
        &[("hw.type", "playback.start")],
    )
    .unwrap();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));

    // DeleteTopics and CreateTopics: operators only.
    let acme: AdminClient<DefaultClientContext> = hw.acme().create().unwrap();
    let deleted = block_on(acme.delete_topics(&["events"], &options)).unwrap();
    assert_eq!(
        deleted[0].as_ref().unwrap_err().1,
        RDKafkaErrorCode::TopicAuthorizationFailed
    );
    let topic = NewTopic::new("acme.new", 1, TopicReplication::Fixed(1));
    let created = block_on(acme.create_topics([&topic], &options)).unwrap();
    assert_eq!(
        created[0].as_ref().unwrap_err().1,
        RDKafkaErrorCode::TopicAuthorizationFailed
    );
    let ops: AdminClient<DefaultClientContext> = hw.ops().create().unwrap();
    let scratch = NewTopic::new("scratch", 1, TopicReplication::Fixed(1));
    let created = block_on(ops.create_topics([&scratch], &options)).unwrap();
    assert!(created[0].is_ok(), "{created:?}");
    let deleted = block_on(ops.delete_topics(&["scratch"], &options)).unwrap();
    assert!(deleted[0].is_ok(), "{deleted:?}");

    // The router's groups are refused to tenants even with an ACL granting them: committing
    // router.lake offsets (which would make the router skip data) and joining
    // router.lake.members (which would stall routing).
    let consumer: BaseConsumer = hw
        .acme()
        .set("group.id", "router.lake")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset("events", 0, Offset::Offset(1_000))
        .unwrap();
    let committed = consumer.commit(&offsets, CommitMode::Sync).unwrap_err();
    assert_eq!(
        code(&committed),
        Some(RDKafkaErrorCode::GroupAuthorizationFailed),
        "{committed}"
    );
    let member: BaseConsumer = hw
        .acme()
        .set("group.id", "router.lake.members")
        .create()
        .unwrap();
    member.subscribe(&["events"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let joined = loop {
        assert!(Instant::now() < deadline, "no answer to the join");
        if let Some(Err(error)) = member.poll(Duration::from_millis(200)) {
            break error;
        }
    };
    assert_eq!(
        code(&joined),
        Some(RDKafkaErrorCode::GroupAuthorizationFailed),
        "{joined}"
    );

    // The router (a service) commits its own offsets.
    let router: BaseConsumer = hw
        .router()
        .set("group.id", "router.lake")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    router.commit(&offsets, CommitMode::Sync).unwrap();
    let committed = router
        .committed_offsets(offsets.clone(), Duration::from_secs(10))
        .unwrap();
    let found = committed.find_partition("events", 0).unwrap();
    assert_eq!(found.offset(), Offset::Offset(1_000));
}

/// Runs `headwater serve` with `env` and waits for it to exit (30 s at most).
fn refuses_to_start(dir: &Path, env: &[(&str, &str)]) -> String {
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .envs(env.iter().copied());
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("headwater serve kept running with {env:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_exposed_kafka_port_without_authentication_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let exposed = [
        ("HEADWATER_LOG__KAFKA_LISTEN", "0.0.0.0:0"),
        ("HEADWATER_LOG__ADVERTISED_LISTENER", "127.0.0.1:9092"),
    ];
    let stderr = refuses_to_start(dir.path(), &exposed);
    assert!(
        stderr.contains("is not a loopback address") && stderr.contains("log.kafka_sasl.enabled"),
        "{stderr}"
    );
    // PLAIN in clear over a non-loopback listener: refused too.
    let config = dir.path().join("plain.yaml");
    std::fs::write(
        &config,
        format!(
            "log:\n  kafka_listen: 0.0.0.0:0\n  advertised_listener: 127.0.0.1:9092\n  \
             kafka_sasl: {{enabled: true}}\n  principals:\n    - {{name: ops, role: operator, \
             plain_sha256: {}}}\n",
            sha256_hex("ops-secret")
        ),
    )
    .unwrap();
    let stderr = refuses_to_start(
        dir.path(),
        &[("HEADWATER_CONFIG", config.to_str().unwrap())],
    );
    assert!(stderr.contains("allow_plaintext_plain"), "{stderr}");
}
