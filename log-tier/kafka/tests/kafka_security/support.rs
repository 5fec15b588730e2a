//! Helpers of the Kafka-listener security tests: an in-process broker, a private CA, kcat and
//! rdkafka client settings, and a raw protocol client for exact wire checks.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use headwater_kafka::{KafkaOptions, StaticCredentials};
use headwater_log::{KafkaTlsConfig, LogConfig, LogEngine};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rdkafka::ClientConfig;
use tokio::sync::watch;

/// The one tenant the test brokers know.
pub(crate) const USER: &str = "acme";
/// Its password (the API key).
pub(crate) const PASSWORD: &str = "secret-key-1";

/// How the test broker secures its listener.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Security {
    /// Neither TLS nor SASL.
    Plain,
    /// SASL/PLAIN over plaintext.
    SaslPlaintext,
    /// TLS only.
    Ssl,
    /// TLS with required client certificates.
    MutualTls,
    /// SASL/PLAIN over TLS.
    SaslSsl,
}

/// A Kafka listener over a temp-dir engine, on its own runtime.
pub(crate) struct TestBroker {
    pub addr: SocketAddr,
    pub pki: PathBuf,
    /// The private CA, to issue more client certificates.
    #[allow(dead_code)] // used by kafka_acl.rs only
    pub ca: headwater_testing::Pki,
    stop: watch::Sender<bool>,
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        let runtime = std::mem::replace(
            &mut self.runtime,
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap(),
        );
        runtime.shutdown_timeout(Duration::from_secs(5));
    }
}

impl TestBroker {
    /// Starts a broker on 127.0.0.1:0.
    pub(crate) fn start(security: Security) -> Self {
        Self::start_with(security, |_| {})
    }

    /// Starts a broker on 127.0.0.1:0 with its options changed by `customize`.
    pub(crate) fn start_with(
        security: Security,
        customize: impl FnOnce(&mut KafkaOptions),
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("pki");
        std::fs::create_dir(&pki).unwrap();
        let ca = headwater_testing::Pki::generate(&pki, "device-7").unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (stop, stopped) = watch::channel(false);
        let log_dir = dir.path().join("log");
        let addr = runtime.block_on(async {
            let engine = LogEngine::open_async(log_dir, LogConfig::default())
                .await
                .unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let mut options = options(addr, &pki, security);
            customize(&mut options);
            tokio::spawn(headwater_kafka::serve(engine, listener, options, stopped));
            addr
        });
        Self {
            addr,
            pki,
            ca,
            stop,
            runtime,
            _dir: dir,
        }
    }

    /// `host:port` for clients.
    pub(crate) fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// A file of the private CA directory (`ca.pem`, `client.pem`, `client.key`).
    pub(crate) fn file(&self, name: &str) -> String {
        self.pki.join(name).display().to_string()
    }
}

fn options(addr: SocketAddr, pki: &Path, security: Security) -> KafkaOptions {
    let mut options = KafkaOptions::advertising(addr);
    let file = |name: &str| Some(pki.join(name).display().to_string());
    let tls = match security {
        Security::Ssl | Security::SaslSsl => Some(KafkaTlsConfig {
            cert_file: file("server.pem"),
            key_file: file("server.key"),
            ..KafkaTlsConfig::default()
        }),
        Security::MutualTls => Some(KafkaTlsConfig {
            cert_file: file("server.pem"),
            key_file: file("server.key"),
            client_ca_file: file("ca.pem"),
            ..KafkaTlsConfig::default()
        }),
        Security::Plain | Security::SaslPlaintext => None,
    };
    options.tls = tls.map(|c| headwater_kafka::tls::server_config(&c).unwrap());
    if matches!(security, Security::SaslPlaintext | Security::SaslSsl) {
        options.sasl = Some(headwater_kafka::SaslOptions {
            store: Arc::new(StaticCredentials::new([(USER, PASSWORD)])),
            mechanisms: headwater_kafka::Mechanism::ALL.to_vec(),
        });
    }
    options
}

/// librdkafka settings (`key=value`) that reach `broker` with `security`, authenticating as
/// `USER` with `password` when SASL is involved.
pub(crate) fn client_settings(
    broker: &TestBroker,
    security: Security,
    password: &str,
) -> Vec<(String, String)> {
    let mut settings = vec![("bootstrap.servers".to_owned(), broker.bootstrap())];
    let mut set = |key: &str, value: String| settings.push((key.to_owned(), value));
    let protocol = match security {
        Security::Plain => "PLAINTEXT",
        Security::SaslPlaintext => "SASL_PLAINTEXT",
        Security::Ssl | Security::MutualTls => "SSL",
        Security::SaslSsl => "SASL_SSL",
    };
    set("security.protocol", protocol.to_owned());
    if matches!(security, Security::SaslPlaintext | Security::SaslSsl) {
        set("sasl.mechanisms", "PLAIN".to_owned());
        set("sasl.username", USER.to_owned());
        set("sasl.password", password.to_owned());
    }
    if matches!(
        security,
        Security::Ssl | Security::MutualTls | Security::SaslSsl
    ) {
        set("ssl.ca.location", broker.file("ca.pem"));
    }
    if security == Security::MutualTls {
        set("ssl.certificate.location", broker.file("client.pem"));
        set("ssl.key.location", broker.file("client.key"));
    }
    settings
}

/// An rdkafka configuration from [`client_settings`].
pub(crate) fn rdkafka_config(settings: &[(String, String)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (key, value) in settings {
        config.set(key, value);
    }
    config.set("socket.timeout.ms", "10000");
    config
}

/// Runs kcat with `settings` (as `-X` options, the bootstrap as `-b`) and `args`, feeding
/// `stdin`; killed after 60 s.
pub(crate) fn kcat(settings: &[(String, String)], args: &[&str], stdin: &[u8]) -> Output {
    let mut command = Command::new("kcat");
    for (key, value) in settings {
        if key == "bootstrap.servers" {
            command.args(["-b", value]);
        } else {
            command.args(["-X", &format!("{key}={value}")]);
        }
    }
    let mut child = command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kcat (scripts/install-deps installs it)");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin).unwrap();
    drop(input);
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// A raw protocol client on one TCP connection.
pub(crate) struct RawClient {
    pub stream: TcpStream,
    correlation_id: i32,
}

impl RawClient {
    /// Connects to `addr` with 10 s read timeouts.
    pub(crate) fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Self {
            stream,
            correlation_id: 0,
        }
    }

    /// Sends a request frame.
    pub(crate) fn send<R: Encodable>(&mut self, api_key: ApiKey, version: i16, body: &R) {
        self.correlation_id += 1;
        let mut header = RequestHeader::default();
        header.request_api_key = api_key as i16;
        header.request_api_version = version;
        header.correlation_id = self.correlation_id;
        header.client_id = Some(StrBytes::from_static_str("raw-test"));
        let mut frame = BytesMut::new();
        header
            .encode(&mut frame, api_key.request_header_version(version))
            .unwrap();
        body.encode(&mut frame, version).unwrap();
        self.send_raw(&frame);
    }

    /// Sends `bytes` as one length-prefixed frame.
    pub(crate) fn send_raw(&mut self, bytes: &[u8]) {
        let mut out = BytesMut::new();
        out.put_i32(i32::try_from(bytes.len()).unwrap());
        out.put_slice(bytes);
        self.stream.write_all(&out).unwrap();
    }

    /// Reads one frame; `None` when the broker closed the connection instead.
    pub(crate) fn read_frame(&mut self) -> Option<Bytes> {
        let mut length = [0u8; 4];
        if self.stream.read_exact(&mut length).is_err() {
            return None;
        }
        let mut frame = vec![0u8; usize::try_from(i32::from_be_bytes(length)).ok()?];
        self.stream.read_exact(&mut frame).ok()?;
        Some(Bytes::from(frame))
    }

    /// Reads the response to the last request, of `api_key` in `version`.
    pub(crate) fn response<T: Decodable>(&mut self, api_key: ApiKey, version: i16) -> T {
        let mut frame = self
            .read_frame()
            .expect("a response, not a closed connection");
        let header_version = api_key.response_header_version(version);
        let header = ResponseHeader::decode(&mut frame, header_version).unwrap();
        assert_eq!(header.correlation_id, self.correlation_id);
        T::decode(&mut frame, version).unwrap()
    }

    /// Whether the broker closes the connection (EOF or reset) within 10 s without sending
    /// a byte.
    pub(crate) fn closed_without_answer(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(error) => error.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }

    /// Everything the broker sends until it closes (at most 10 s of waiting).
    pub(crate) fn read_to_close(&mut self) -> Vec<u8> {
        let mut all = Vec::new();
        let _ = self.stream.read_to_end(&mut all);
        all
    }
}
