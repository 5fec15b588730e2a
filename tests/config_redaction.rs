//! Black-box tests of the `headwater` binary: secrets in the configuration (S3 keys and tokens,
//! Elasticsearch passwords, SASL and SSL passwords in `log.client.properties` and
//! `sinks.kafka.options`) never reach stdout or stderr: `config check` prints them redacted,
//! its errors do not quote them, and `serve` does not log them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails by panicking

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{Headwater, Listener};

const BIN: &str = env!("CARGO_BIN_EXE_headwater");

/// A configuration file with secrets next to values that are not secret.
const CONFIG: &str = "\
log:
  client:
    properties:
      security.protocol: SASL_SSL
      sasl.mechanisms: SCRAM-SHA-512
      sasl.username: gateway-svc
      sasl.password: client-sasl-pa55
      ssl.key.password: client-key-pa55
sinks:
  elasticsearch:
    username: elastic-user
    password: es-pa55word
  kafka:
    brokers: kafka.example:9093
    options:
      sasl.username: router-svc
      sasl.password: sink-sasl-pa55
      sasl.oauthbearer.client.secret: sink-oauth-s3cret
";

/// Secrets given through the environment, as a deployment would.
const ENV: &[(&str, &str)] = &[
    ("HEADWATER_SINKS__S3__SECRET_ACCESS_KEY", "s3cr3t"),
    ("HEADWATER_SINKS__S3__SESSION_TOKEN", "s3-sess10n-t0ken"),
    ("HEADWATER_SINKS__S3__ACCESS_KEY_ID", "AKIDVISIBLE"),
    (
        "HEADWATER_LOG__CLIENT__PROPERTIES__SSL.KEYSTORE.PASSWORD",
        "314159",
    ),
];

/// Every secret above; none may be printed.
const SECRETS: &[&str] = &[
    "client-sasl-pa55",
    "client-key-pa55",
    "es-pa55word",
    "sink-sasl-pa55",
    "sink-oauth-s3cret",
    "s3cr3t",
    "s3-sess10n-t0ken",
    "314159",
];

fn write_config(dir: &Path, text: &str) -> String {
    let file = dir.join("headwater.yaml");
    std::fs::write(&file, text).unwrap();
    file.to_str().unwrap().to_owned()
}

fn config_check(file: &str) -> Output {
    Command::new(BIN)
        .args(["config", "check", file])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("HEADWATER_CONFIG")
        .envs(ENV.iter().copied())
        .output()
        .expect("run headwater")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_no_secret(what: &str, printed: &str) {
    for secret in SECRETS {
        assert!(
            !printed.contains(secret),
            "{what} prints the secret `{secret}`:\n{printed}"
        );
    }
}

#[test]
fn config_check_prints_secrets_redacted_and_the_rest_as_is() {
    let dir = tempfile::tempdir().unwrap();
    let out = config_check(&write_config(dir.path(), CONFIG));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert_no_secret("config check stdout", &stdout);
    assert_no_secret("config check stderr", &stderr);
    for shown in [
        "access_key_id: AKIDVISIBLE",
        "secret_access_key: <redacted>",
        "session_token: <redacted>",
        "password: <redacted>",
        "username: elastic-user",
        "sasl.username: gateway-svc",
        "sasl.username: router-svc",
        "sasl.password: <redacted>",
        "ssl.keystore.password: <redacted>",
        "sasl.oauthbearer.client.secret: <redacted>",
        "security.protocol: SASL_SSL",
        "brokers: kafka.example:9093",
        "listen: 127.0.0.1:8080",
    ] {
        assert!(stdout.contains(shown), "`{shown}` missing:\n{stdout}");
    }
}

#[test]
fn config_check_errors_do_not_quote_secrets() {
    let dir = tempfile::tempdir().unwrap();
    // An Elasticsearch password of digits only is a YAML integer, not the string expected:
    // the error names the key and its line, but not the value.
    let bad = CONFIG.replace("password: es-pa55word", "password: 271828");
    let bad = format!("{bad}gateway:\n  listen: not-an-address\n");
    let out = config_check(&write_config(dir.path(), &bad));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("271828"), "{stderr}");
    assert!(stderr.contains("sinks.elasticsearch.password"), "{stderr}");
    assert!(stderr.contains("expected a string"), "{stderr}");
    assert_no_secret("config check errors", &stderr);
    assert_no_secret("config check errors (stdout)", &text(&out.stdout));
}

#[tokio::test]
async fn serve_logs_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), CONFIG);
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--config", &file])
        .args(["--listen", "127.0.0.1:0", "--kafka-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("HEADWATER_CONFIG")
        .envs(ENV.iter().copied());
    let mut process = Headwater::spawn("serve", command);
    let addr = process.addr(Listener::Ingest);
    // One event through the gateway and the router's S3 sink (a local directory here).
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/v1/events"))
        .header("content-type", "application/json")
        .body(r#"[{"type":"ui.impression","source":"d1","payload":{"screen":"home"}}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "stderr:\n{}", process.stderr());
    let _ = process.child.kill();
    let _ = process.child.wait();
    assert_no_secret("serve's log", &process.stderr());
}
