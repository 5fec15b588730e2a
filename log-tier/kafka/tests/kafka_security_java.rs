//! The Java client (Kafka 4.x console tools) over SASL_SSL: SaslHandshake v1 and
//! SaslAuthenticate v2 with PLAIN and SCRAM-SHA-512, a PEM trust store for the private CA, a
//! consumer group, and `kafka-acls --list` (DescribeAcls) as an operator and as a tenant.
//! Needs the Kafka jars of `scripts/install-deps` (`HEADWATER_TEST_KAFKA_LIBS`, written by
//! `scripts/services start` into `target/services/env.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test (or bench) fails by panicking

#[path = "kafka_security/support.rs"]
#[allow(dead_code)] // the raw client, kcat and rdkafka helpers serve the other file
mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use headwater_kafka::acl::{Authorizer, AuthorizerOptions};
use headwater_kafka::scram::{self, StoredCredential};
use headwater_kafka::{KafkaOptions, Principal, Role, SaslOptions, StaticCredentials};
use headwater_log::{AclEntry, Operation, PatternType, Permission, ResourceType};
use support::{PASSWORD, Security, TestBroker, USER};

/// How long one Java tool may run before it is killed.
const JAVA_WITHIN: Duration = Duration::from_secs(120);

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

/// Who a Java client logs in as, and with which SASL mechanism.
struct Login<'a> {
    mechanism: &'a str,
    user: &'a str,
    password: &'a str,
}

/// The test brokers' tenant, with PLAIN and its API key.
const TENANT: Login<'static> = Login {
    mechanism: "PLAIN",
    user: USER,
    password: PASSWORD,
};
/// A service principal with SCRAM-SHA-512.
const ROUTER: Login<'static> = Login {
    mechanism: "SCRAM-SHA-512",
    user: "router",
    password: "router-secret",
};
/// An operator with SCRAM-SHA-512.
const OPS: Login<'static> = Login {
    mechanism: "SCRAM-SHA-512",
    user: "ops",
    password: "ops-secret",
};

impl Login<'_> {
    /// Client properties (`key=value`) for SASL_SSL to `broker`.
    fn properties(&self, broker: &TestBroker) -> Vec<String> {
        let module = match self.mechanism {
            "PLAIN" => "org.apache.kafka.common.security.plain.PlainLoginModule",
            _ => "org.apache.kafka.common.security.scram.ScramLoginModule",
        };
        let jaas = format!(
            "{module} required username=\"{}\" password=\"{}\";",
            self.user, self.password
        );
        vec![
            "security.protocol=SASL_SSL".to_owned(),
            format!("sasl.mechanism={}", self.mechanism),
            format!("sasl.jaas.config={jaas}"),
            "ssl.truststore.type=PEM".to_owned(),
            format!("ssl.truststore.location={}", broker.file("ca.pem")),
        ]
    }

    /// The properties as `flag` options (`--producer-property` …).
    fn flags(&self, broker: &TestBroker, flag: &str) -> Vec<String> {
        self.properties(broker)
            .into_iter()
            .flat_map(|p| [flag.to_owned(), p])
            .collect()
    }

    /// The properties in a file `<user>.properties` of `dir`, for `--command-config`.
    fn file(&self, broker: &TestBroker, dir: &Path) -> PathBuf {
        let path = dir.join(format!("{}.properties", self.user));
        std::fs::write(&path, self.properties(broker).join("\n") + "\n").unwrap();
        path
    }
}

/// Runs `command` with `input` on stdin, killing it after [`JAVA_WITHIN`]; its output.
fn output(command: &mut Command, input: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn java");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let deadline = Instant::now() + JAVA_WITHIN;
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

/// Runs `command` as [`output`] does and asserts it succeeded; its stdout.
fn run(command: &mut Command, input: &[u8]) -> String {
    let out = output(command, input);
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Produces `count` lines `<prefix>-<i>` to `topic` with the console producer, then reads
/// them back in group `group` with the console consumer, both as `login`; asserts every line
/// arrived once.
fn round_trip(broker: &TestBroker, login: &Login<'_>, topic: &str, group: &str) {
    const COUNT: u32 = 50;
    let cp = classpath();
    let input: String = (0..COUNT).map(|i| format!("{topic}-{i}\n")).collect();
    run(
        Command::new("java")
            .args(["-cp", &cp, "org.apache.kafka.tools.ConsoleProducer"])
            .args(["--bootstrap-server", &broker.bootstrap(), "--topic", topic])
            .args(login.flags(broker, "--producer-property")),
        input.as_bytes(),
    );
    let out = run(
        Command::new("java")
            .args([
                "-cp",
                &cp,
                "org.apache.kafka.tools.consumer.ConsoleConsumer",
            ])
            .args(["--bootstrap-server", &broker.bootstrap(), "--topic", topic])
            .args(["--from-beginning", "--max-messages", &COUNT.to_string()])
            .args(["--group", group, "--timeout-ms", "60000"])
            .args(login.flags(broker, "--consumer-property")),
        b"",
    );
    let prefix = format!("{topic}-");
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort_by_key(|l| {
        l.trim_start_matches(prefix.as_str())
            .parse::<u32>()
            .unwrap_or(u32::MAX)
    });
    let expected: Vec<String> = (0..COUNT).map(|i| format!("{topic}-{i}")).collect();
    assert_eq!(lines, expected);
}

/// The tenant `acme` (PLAIN), `router` (a service) and `ops` (an operator), both SCRAM-SHA-512;
/// ACLs enforced with one configured entry (acme may read and write `acme.*`); `events` is
/// governed.
fn secured(options: &mut KafkaOptions) {
    let scram = |password: &str, salt: &[u8]| {
        StoredCredential::derive(scram::Mechanism::Sha512, password, 4096, salt).unwrap()
    };
    let store = StaticCredentials::new([(TENANT.user, TENANT.password)])
        .with_scram(
            ROUTER.user,
            scram(ROUTER.password, b"router-salt"),
            Role::Service,
        )
        .with_scram(OPS.user, scram(OPS.password, b"ops-salt"), Role::Operator);
    options.sasl = Some(SaslOptions {
        store: Arc::new(store),
        mechanisms: headwater_kafka::Mechanism::ALL.to_vec(),
    });
    options.authorizer = Arc::new(Authorizer::new(AuthorizerOptions {
        entries: vec![AclEntry {
            principal: format!("User:{USER}"),
            resource_type: ResourceType::Topic,
            pattern_type: PatternType::Prefixed,
            name: "acme.".to_owned(),
            operations: vec![Operation::Read, Operation::Write],
            permission: Permission::Allow,
            host: "*".to_owned(),
        }],
        enforced: true,
        governed_topics: Arc::new(|topic| topic == "events"),
        governed_topic_names: Some(Arc::new(|| vec!["events".to_owned()])),
        known_principals: vec![
            Principal::new(USER, Role::Tenant),
            Principal::new(ROUTER.user, Role::Service),
            Principal::new(OPS.user, Role::Operator),
        ],
    }));
}

/// `kafka-acls --list` against `broker`, logged in with the properties file `config`.
fn list_acls(broker: &TestBroker, config: &Path) -> Output {
    output(
        Command::new("java")
            .args(["-cp", &classpath(), "org.apache.kafka.tools.AclCommand"])
            .args(["--bootstrap-server", &broker.bootstrap(), "--list"])
            .arg("--command-config")
            .arg(config),
        b"",
    )
}

#[test]
fn java_console_tools_round_trip_over_sasl_ssl() {
    let broker = TestBroker::start(Security::SaslSsl);
    round_trip(&broker, &TENANT, "java", "java");
}

#[test]
fn java_console_tools_round_trip_as_a_service_with_scram_sha512_over_sasl_ssl() {
    let broker = TestBroker::start_with(Security::SaslSsl, secured);
    round_trip(&broker, &ROUTER, "java.scram", "java.scram");

    // The group committed what it read: `kafka-consumer-groups --describe` (OffsetFetch,
    // ListOffsets) shows every partition at its end.
    let dir = tempfile::tempdir().unwrap();
    let described = run(
        Command::new("java")
            .args(["-cp", &classpath()])
            .arg("org.apache.kafka.tools.consumer.group.ConsumerGroupCommand")
            .args(["--bootstrap-server", &broker.bootstrap()])
            .args(["--describe", "--group", "java.scram", "--command-config"])
            .arg(ROUTER.file(&broker, dir.path())),
        b"",
    );
    // GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG …
    let rows: Vec<Vec<&str>> = described
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|row| row.len() >= 6 && row[0] == "java.scram" && row[1] == "java.scram")
        .collect();
    assert!(!rows.is_empty(), "no partitions in:\n{described}");
    let sum = |column: usize| -> u64 {
        rows.iter()
            .map(|row| row[column].parse::<u64>().unwrap())
            .sum()
    };
    assert_eq!((sum(3), sum(4), sum(5)), (50, 50, 0), "{described}");
}

#[test]
fn kafka_acls_lists_configured_and_builtin_entries_to_an_operator_only() {
    let broker = TestBroker::start_with(Security::SaslSsl, secured);
    let dir = tempfile::tempdir().unwrap();

    // The operator (SCRAM-SHA-512) sees the configured entry and the built-in ones.
    let listed = list_acls(&broker, &OPS.file(&broker, dir.path()));
    let stdout = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success(),
        "kafka-acls --list as ops: {stdout}\n{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let section = |pattern: &str| {
        let head = format!("Current ACLs for resource `ResourcePattern({pattern})`:");
        let start = stdout
            .find(&head)
            .unwrap_or_else(|| panic!("no `{head}` in:\n{stdout}"));
        let body = &stdout[start + head.len()..];
        body[..body.find("Current ACLs").unwrap_or(body.len())].to_owned()
    };
    let configured = section("resourceType=TOPIC, name=acme., patternType=PREFIXED");
    for operation in ["READ", "WRITE"] {
        let ace =
            format!("(principal=User:acme, host=*, operation={operation}, permissionType=ALLOW)");
        assert!(configured.contains(&ace), "{ace} in:\n{configured}");
    }
    let governed = section("resourceType=TOPIC, name=events, patternType=LITERAL");
    let ace = "(principal=User:acme, host=*, operation=WRITE, permissionType=ALLOW)";
    assert!(
        governed.contains(ace),
        "the tenant's built-in write:\n{governed}"
    );
    let cluster = section("resourceType=CLUSTER, name=kafka-cluster, patternType=LITERAL");
    let ace = "(principal=User:router, host=*, operation=ALL, permissionType=ALLOW)";
    assert!(
        cluster.contains(ace),
        "the service's built-in all:\n{cluster}"
    );

    // The tenant (PLAIN with its API key) may not describe the cluster's ACLs.
    let refused = list_acls(&broker, &TENANT.file(&broker, dir.path()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&refused.stdout),
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(
        !refused.status.success(),
        "kafka-acls --list as acme: {text}"
    );
    assert!(
        text.contains("ClusterAuthorizationException"),
        "an authorization error: {text}"
    );
    assert!(!text.contains("Current ACLs for resource"), "{text}");

    // A wrong SCRAM password is an authentication error, not an empty list.
    let wrong = Login {
        password: "not-the-secret",
        ..OPS
    };
    let wrong_dir = tempfile::tempdir().unwrap();
    let refused = list_acls(&broker, &wrong.file(&broker, wrong_dir.path()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&refused.stdout),
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(
        !refused.status.success(),
        "kafka-acls --list with a wrong password: {text}"
    );
    assert!(
        text.contains("SaslAuthenticationException"),
        "an authentication error: {text}"
    );
}
