//! TLS, mTLS and SASL/PLAIN on the Kafka listener, with real clients (rdkafka, and kcat as a
//! subprocess) and a raw protocol client for the exact wire behaviour: round trips over
//! SASL_PLAINTEXT, SASL_SSL, SSL and mTLS; wrong passwords, requests before authentication and
//! plaintext clients on a TLS port end that connection only.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test (or bench) fails by panicking

#[path = "kafka_security/support.rs"]
mod support;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::executor::block_on;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};
use support::{
    PASSWORD, RawClient, Security, TestBroker, USER, client_settings, kcat, rdkafka_config,
};

type Settings = Vec<(String, String)>;

/// Produces `values` to partition 0 of `topic` with rdkafka, keyed `k<i>`, each acknowledged.
fn rdkafka_produce(settings: &Settings, topic: &str, values: &[String]) {
    let producer: FutureProducer = rdkafka_config(settings)
        .set("message.timeout.ms", "30000")
        .create()
        .unwrap();
    let deliveries: Vec<_> = values
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let key = format!("k{i}");
            let record = FutureRecord::to(topic)
                .partition(0)
                .key(&key)
                .payload(value);
            producer.send_result(record).map_err(|(e, _)| e).unwrap()
        })
        .collect();
    for delivery in deliveries {
        let delivered = block_on(delivery).expect("delivery future");
        assert!(delivered.is_ok(), "rdkafka delivery: {delivered:?}");
    }
}

/// Reads `count` values from partition 0 of `topic` with rdkafka (30 s at most).
fn rdkafka_consume(settings: &Settings, topic: &str, count: usize) -> Vec<String> {
    let consumer: BaseConsumer = rdkafka_config(settings)
        .set("group.id", "security-tests")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let mut values = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while values.len() < count && Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("consume");
            let payload = message.payload().unwrap_or_default();
            values.push(String::from_utf8_lossy(payload).into_owned());
        }
    }
    values
}

fn values(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}

/// Produces with kcat (`key:value` lines) and checks it exited 0.
fn kcat_produce(settings: &Settings, topic: &str, values: &[String]) {
    let input: String = values.iter().map(|v| format!("k:{v}\n")).collect();
    let out = kcat(
        settings,
        &["-P", "-t", topic, "-p", "0", "-K:"],
        input.as_bytes(),
    );
    assert!(
        out.status.success(),
        "kcat -P: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Consumes partition 0 of `topic` to its end with kcat.
fn kcat_consume(settings: &Settings, topic: &str) -> Vec<String> {
    let args = ["-C", "-t", topic, "-p", "0", "-e", "-q", "-f", "%s\n"];
    let out = kcat(settings, &args, b"");
    assert!(
        out.status.success(),
        "kcat -C: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// rdkafka writes, kcat reads it back and writes more, rdkafka reads everything.
fn round_trip(security: Security) {
    let broker = TestBroker::start(security);
    let settings = client_settings(&broker, security, PASSWORD);
    let first = values("rdkafka", 20);
    rdkafka_produce(&settings, "secure", &first);
    assert_eq!(kcat_consume(&settings, "secure"), first);
    let second = values("kcat", 20);
    kcat_produce(&settings, "secure", &second);
    let all: Vec<String> = first.iter().chain(&second).cloned().collect();
    assert_eq!(rdkafka_consume(&settings, "secure", all.len()), all);
}

#[test]
fn sasl_plaintext_round_trip_with_rdkafka_and_kcat() {
    round_trip(Security::SaslPlaintext);
}

#[test]
fn sasl_ssl_round_trip_with_a_private_ca() {
    round_trip(Security::SaslSsl);
}

#[test]
fn tls_without_sasl_round_trip() {
    round_trip(Security::Ssl);
}

#[test]
fn mtls_serves_clients_with_a_certificate_and_refuses_others() {
    let broker = TestBroker::start(Security::MutualTls);
    let settings = client_settings(&broker, Security::MutualTls, PASSWORD);
    let sent = values("mtls", 5);
    kcat_produce(&settings, "mtls", &sent);
    assert_eq!(rdkafka_consume(&settings, "mtls", 5), sent);
    let without_cert = client_settings(&broker, Security::Ssl, PASSWORD);
    let out = kcat(&without_cert, &["-L", "-m", "5"], b"");
    assert!(!out.status.success(), "no client certificate, no metadata");
}

/// Records the errors rdkafka reports.
#[derive(Default)]
struct Errors(Mutex<Vec<(Option<RDKafkaErrorCode>, String)>>);

impl ClientContext for Errors {
    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        self.0.lock().unwrap().push((code, reason.to_owned()));
    }
}

impl ConsumerContext for Errors {}

/// A consumer with `settings` fails to fetch metadata; returns what it reported.
fn refused_client(settings: &Settings) -> Vec<(Option<RDKafkaErrorCode>, String)> {
    let consumer: BaseConsumer<Errors> = rdkafka_config(settings)
        .set("group.id", "refused")
        .create_with_context(Errors::default())
        .unwrap();
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(5));
    assert!(metadata.is_err(), "metadata must not be served");
    let deadline = Instant::now() + Duration::from_secs(10);
    while consumer.context().0.lock().unwrap().is_empty() && Instant::now() < deadline {
        let _ = consumer.poll(Duration::from_millis(100));
    }
    consumer.context().0.lock().unwrap().clone()
}

#[test]
fn wrong_password_fails_authentication_and_other_clients_are_unaffected() {
    let broker = TestBroker::start(Security::SaslPlaintext);
    let good = client_settings(&broker, Security::SaslPlaintext, PASSWORD);
    let bad = client_settings(&broker, Security::SaslPlaintext, "wrong");
    // An authenticated raw connection stays open across the failures.
    let mut open = RawClient::connect(broker.addr);
    authenticate(&mut open, PASSWORD);
    rdkafka_produce(&good, "shared", &values("before", 3));

    let errors = refused_client(&bad);
    assert!(
        errors.iter().any(|(code, reason)| {
            *code == Some(RDKafkaErrorCode::Authentication)
                && reason.contains("Authentication failed")
        }),
        "rdkafka reports an authentication failure: {errors:?}"
    );
    let out = kcat(&bad, &["-L", "-m", "5"], b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "kcat with a wrong password fails");
    assert!(stderr.contains("Authentication failed"), "kcat: {stderr}");

    // The broker answers SASL_AUTHENTICATION_FAILED, then closes.
    let mut raw = RawClient::connect(broker.addr);
    handshake(&mut raw, 1);
    let token = format!("\0{USER}\0wrong");
    raw.send(ApiKey::SaslAuthenticate, 2, &sasl_token(&token));
    let answer: SaslAuthenticateResponse = raw.response(ApiKey::SaslAuthenticate, 2);
    assert_eq!(answer.error_code, 58);
    assert!(raw.closed_without_answer(), "closed after the failure");

    rdkafka_produce(&good, "shared", &values("after", 3));
    assert_eq!(rdkafka_consume(&good, "shared", 6).len(), 6);
    open.send(ApiKey::Metadata, 12, &MetadataRequest::default());
    let metadata: MetadataResponse = open.response(ApiKey::Metadata, 12);
    assert_eq!(
        metadata.brokers.len(),
        1,
        "the first connection still works"
    );
}

fn handshake(raw: &mut RawClient, version: i16) {
    let mut request = SaslHandshakeRequest::default();
    request.mechanism = StrBytes::from_static_str("PLAIN");
    raw.send(ApiKey::SaslHandshake, version, &request);
    let answer: SaslHandshakeResponse = raw.response(ApiKey::SaslHandshake, version);
    assert_eq!(answer.error_code, 0);
    let offered: Vec<&str> = answer.mechanisms.iter().map(|m| m.as_str()).collect();
    assert_eq!(offered, ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]);
}

fn sasl_token(token: &str) -> SaslAuthenticateRequest {
    let mut request = SaslAuthenticateRequest::default();
    request.auth_bytes = bytes::Bytes::copy_from_slice(token.as_bytes());
    request
}

/// Handshake v1 and SaslAuthenticate v2 with `password`; asserts success.
fn authenticate(raw: &mut RawClient, password: &str) {
    handshake(raw, 1);
    raw.send(
        ApiKey::SaslAuthenticate,
        2,
        &sasl_token(&format!("\0{USER}\0{password}")),
    );
    let answer: SaslAuthenticateResponse = raw.response(ApiKey::SaslAuthenticate, 2);
    assert_eq!(answer.error_code, 0, "{:?}", answer.error_message);
}

#[test]
fn requests_before_authentication_close_the_connection() {
    let broker = TestBroker::start(Security::SaslPlaintext);
    // Metadata first: closed without an answer.
    let mut raw = RawClient::connect(broker.addr);
    raw.send(ApiKey::Metadata, 12, &MetadataRequest::default());
    assert!(raw.closed_without_answer());
    // ApiVersions is answered, advertising the SASL APIs; Metadata after it is not.
    let mut raw = RawClient::connect(broker.addr);
    raw.send(ApiKey::ApiVersions, 3, &api_versions_request());
    let versions: ApiVersionsResponse = raw.response(ApiKey::ApiVersions, 3);
    let keys: Vec<i16> = versions.api_keys.iter().map(|k| k.api_key).collect();
    assert!(keys.contains(&17) && keys.contains(&36), "{keys:?}");
    raw.send(ApiKey::Metadata, 12, &MetadataRequest::default());
    assert!(raw.closed_without_answer());
    // Between handshake and token, only SaslAuthenticate is allowed.
    let mut raw = RawClient::connect(broker.addr);
    handshake(&mut raw, 1);
    raw.send(ApiKey::Metadata, 12, &MetadataRequest::default());
    assert!(raw.closed_without_answer());
    // Refused before its body is decoded: a Metadata v0 declaring 2^31-1 topics in 14 bytes
    // would make kafka-protocol 0.18 reserve ~150 GB and abort the process.
    let mut raw = RawClient::connect(broker.addr);
    raw.send_raw(&[0, 3, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff]);
    assert!(raw.closed_without_answer());
    // A client without SASL gets nothing served.
    let plain = client_settings(&broker, Security::Plain, PASSWORD);
    refused_client(&plain);
    // The listener still serves a client that authenticates.
    let mut raw = RawClient::connect(broker.addr);
    authenticate(&mut raw, PASSWORD);
    raw.send(ApiKey::Metadata, 12, &MetadataRequest::default());
    let metadata: MetadataResponse = raw.response(ApiKey::Metadata, 12);
    assert_eq!(metadata.brokers.len(), 1);
}

fn api_versions_request() -> ApiVersionsRequest {
    let mut request = ApiVersionsRequest::default();
    request.client_software_name = StrBytes::from_static_str("raw-test");
    request.client_software_version = StrBytes::from_static_str("1");
    request
}

#[test]
fn v0_handshake_takes_a_raw_token_and_unknown_mechanisms_close() {
    let broker = TestBroker::start(Security::SaslPlaintext);
    let mut raw = RawClient::connect(broker.addr);
    handshake(&mut raw, 0);
    raw.send_raw(format!("{USER}\0{USER}\0{PASSWORD}").as_bytes());
    assert_eq!(
        raw.read_frame().as_deref(),
        Some(&[][..]),
        "empty server token"
    );
    raw.send(ApiKey::Metadata, 12, &MetadataRequest::default());
    let metadata: MetadataResponse = raw.response(ApiKey::Metadata, 12);
    assert_eq!(metadata.brokers.len(), 1);

    let mut raw = RawClient::connect(broker.addr);
    handshake(&mut raw, 0);
    raw.send_raw(format!("\0{USER}\0wrong").as_bytes());
    assert!(
        raw.closed_without_answer(),
        "a bad raw token gets no answer"
    );

    let mut raw = RawClient::connect(broker.addr);
    let mut request = SaslHandshakeRequest::default();
    request.mechanism = StrBytes::from_static_str("GSSAPI");
    raw.send(ApiKey::SaslHandshake, 1, &request);
    let answer: SaslHandshakeResponse = raw.response(ApiKey::SaslHandshake, 1);
    assert_eq!(answer.error_code, 33, "UNSUPPORTED_SASL_MECHANISM");
    assert!(raw.closed_without_answer());
}

#[test]
fn without_sasl_the_sasl_apis_are_neither_advertised_nor_served() {
    let broker = TestBroker::start(Security::Plain);
    let mut raw = RawClient::connect(broker.addr);
    raw.send(ApiKey::ApiVersions, 3, &api_versions_request());
    let versions: ApiVersionsResponse = raw.response(ApiKey::ApiVersions, 3);
    let keys: Vec<i16> = versions.api_keys.iter().map(|k| k.api_key).collect();
    assert!(!keys.contains(&17) && !keys.contains(&36), "{keys:?}");
    let mut request = SaslHandshakeRequest::default();
    request.mechanism = StrBytes::from_static_str("PLAIN");
    raw.send(ApiKey::SaslHandshake, 1, &request);
    assert!(raw.closed_without_answer());
    // Open listener: a Metadata v0 declaring 2^31-1 topics closes its connection only (it
    // aborted the process before the vendored kafka-protocol patch).
    let mut raw = RawClient::connect(broker.addr);
    raw.send_raw(&[0, 3, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff]);
    assert!(raw.closed_without_answer());
    let mut raw = RawClient::connect(broker.addr);
    raw.send(ApiKey::Metadata, 12, &MetadataRequest::default());
    let metadata: MetadataResponse = raw.response(ApiKey::Metadata, 12);
    assert_eq!(metadata.brokers.len(), 1);
}

#[test]
fn plaintext_client_on_a_tls_listener_gets_no_answer_and_the_listener_stays_healthy() {
    let broker = TestBroker::start(Security::SaslSsl);
    let mut raw = RawClient::connect(broker.addr);
    raw.send(ApiKey::ApiVersions, 3, &api_versions_request());
    let answer = raw.read_to_close();
    // At most a TLS alert record (content type 21), never a Kafka response frame.
    assert!(
        answer.is_empty() || answer[0] == 0x15,
        "unexpected answer {answer:?}"
    );
    let plain = client_settings(&broker, Security::SaslPlaintext, PASSWORD);
    refused_client(&plain);
    let settings = client_settings(&broker, Security::SaslSsl, PASSWORD);
    rdkafka_produce(&settings, "healthy", &values("v", 2));
    assert_eq!(kcat_consume(&settings, "healthy"), values("v", 2));
}
