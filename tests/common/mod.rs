//! Helpers shared by the black-box and service tests: real services' addresses, unique names,
//! and `headwater` child processes that bind port 0 and report the addresses they got; raw
//! clients and hostile payloads in the submodules.

#![allow(dead_code)]

pub(crate) mod http_raw;
pub(crate) mod ingest_client;
pub(crate) mod kafka_wire;
pub(crate) mod log_cluster;
pub(crate) mod payloads;
pub(crate) mod record_batch;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

/// The address of a real service started by scripts/services; fails loudly when missing.
pub(crate) fn service(var: &str) -> String {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!(
            "{var} is not set: this test needs the real service from scripts/services. \
             Run `scripts/services start && . target/services/env.sh` first, or run scripts/test"
        ),
    }
}

/// A name unique to this test run, for topics, buckets and indexes.
pub(crate) fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

/// Valid `playback.start` events with the ids `ids` (sources `dev-0` … `dev-16`), as
/// `POST /v1/events` takes them.
pub(crate) fn playback_events(ids: &[String]) -> Vec<Value> {
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            serde_json::json!({
                "id": id, "type": "playback.start", "source": format!("dev-{}", i % 17),
                "payload": {"title_id": "t1", "position_ms": i},
            })
        })
        .collect()
}

/// The value of the series `line_start` (name and labels) in the Prometheus text that
/// `GET http://{ops}/metrics` answers; `None` when unreachable or absent.
pub(crate) async fn metric(http: &reqwest::Client, ops: &str, line_start: &str) -> Option<f64> {
    let text = http
        .get(format!("http://{ops}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The stored SCRAM credential of `password` for `mechanism` (`SCRAM-SHA-256` or
/// `SCRAM-SHA-512`), as `headwater scram-credential` prints it for `log.principals`.
pub(crate) fn scram_credential(mechanism: &str, password: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_headwater"))
        .args(["scram-credential", "--mechanism", mechanism])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn headwater scram-credential");
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin
        .write_all(password.as_bytes())
        .expect("write the password");
    drop(stdin);
    let out = child
        .wait_with_output()
        .expect("headwater scram-credential");
    assert!(out.status.success(), "headwater scram-credential failed");
    String::from_utf8(out.stdout)
        .expect("a UTF-8 credential")
        .trim()
        .to_owned()
}

/// A listener that `headwater` reports at info level once bound (src/serve.rs): the log
/// message and the field holding the bound address.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Listener {
    /// `gateway.listen` of `serve` and `gateway`: ingest, probes and metrics.
    Ingest,
    /// `gateway.listen` of `log-node` and `router`: probes and metrics only.
    Ops,
    /// `log.kafka_listen` of `serve` and `log-node` (the field `advertised` is what clients
    /// are told to connect to).
    Kafka,
}

impl Listener {
    fn message(self) -> &'static str {
        match self {
            Self::Ingest => "ingest listening",
            Self::Ops => "probes and metrics listening",
            Self::Kafka => "kafka protocol listening",
        }
    }

    fn field(self) -> &'static str {
        match self {
            Self::Ingest => "addr",
            Self::Ops => "ops",
            Self::Kafka => "kafka",
        }
    }
}

/// How long a child may take to report a listener (it opens and recovers its log first).
const REPORT_WITHIN: Duration = Duration::from_secs(60);

/// A `headwater` child process, killed when dropped. It logs JSON lines on a piped stderr; a
/// thread reads that pipe until the child exits (so the child never blocks on a full pipe),
/// keeps every line for failure messages, and hands over each "… listening" line, so tests
/// pass `127.0.0.1:0` and use the address the child itself bound instead of a port that was
/// free a moment before and may have gone to someone else since.
pub(crate) struct Headwater {
    /// The process.
    pub child: Child,
    name: String,
    stderr: Arc<Mutex<String>>,
    reports: Receiver<(String, Map<String, Value>)>,
    reported: HashMap<String, Map<String, Value>>,
}

impl Headwater {
    /// Spawns `command` (a `headwater` command line) with JSON logs at info level at least,
    /// stdout discarded. `name` is for messages.
    pub(crate) fn spawn(name: &str, mut command: Command) -> Self {
        // Keep a developer's RUST_LOG, but never lose the listening lines.
        let filter = match std::env::var("RUST_LOG") {
            Ok(filter) if !filter.is_empty() => format!("{filter},headwater::serve=info"),
            _ => "info".to_owned(),
        };
        let mut child = command
            .env("HEADWATER_LOGGING__FORMAT", "json")
            .env("RUST_LOG", filter)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn headwater {name}: {e}"));
        let pipe = child.stderr.take().expect("stderr is piped");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (sender, reports) = mpsc::channel();
        let kept = Arc::clone(&stderr);
        std::thread::spawn(move || drain(pipe, &kept, &sender));
        Self {
            child,
            name: name.to_owned(),
            stderr,
            reports,
            reported: HashMap::new(),
        }
    }

    /// The fields of the line reporting `listener` (waiting up to 60 s for it); fails the test
    /// with the child's stderr when the child exits or stays silent instead.
    pub(crate) fn report(&mut self, listener: Listener) -> Map<String, Value> {
        let deadline = Instant::now() + REPORT_WITHIN;
        loop {
            if let Some(fields) = self.reported.get(listener.message()) {
                return fields.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.reports.recv_timeout(left) {
                Ok((message, fields)) => {
                    self.reported.entry(message).or_insert(fields);
                }
                Err(RecvTimeoutError::Timeout) => self.fail(&format!(
                    "did not report `{}` within {REPORT_WITHIN:?}",
                    listener.message()
                )),
                Err(RecvTimeoutError::Disconnected) => self.fail(&format!(
                    "closed its stderr before reporting `{}`",
                    listener.message()
                )),
            }
        }
    }

    /// The address `listener` is bound to, as the child reported it (see [`Self::report`]).
    pub(crate) fn addr(&mut self, listener: Listener) -> SocketAddr {
        let fields = self.report(listener);
        let addr = fields.get(listener.field()).and_then(Value::as_str);
        match addr.map(str::parse::<SocketAddr>) {
            Some(Ok(addr)) if addr.port() != 0 => addr,
            _ => self.fail(&format!(
                "reported `{}` without a bound address: {fields:?}",
                listener.message()
            )),
        }
    }

    /// Everything the child wrote on stderr so far, one readable line per log line.
    pub(crate) fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether the child writes a stderr line containing `needle` within `within` (checked
    /// every 50 ms).
    pub(crate) fn wait_for_stderr(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.stderr().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn fail(&mut self, why: &str) -> ! {
        // A child that closed its stderr is exiting: give it a moment to say how.
        let deadline = Instant::now() + Duration::from_secs(2);
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status.to_string(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Ok(None) => break "still running".to_owned(),
                Err(e) => break format!("status unknown: {e}"),
            }
        };
        panic!(
            "headwater {} {why} ({status}); its stderr:\n{}",
            self.name,
            self.stderr()
        );
    }
}

impl Drop for Headwater {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the child's stderr to its end: keeps each line (JSON made readable) and sends the
/// fields of every "… listening" line.
fn drain(pipe: ChildStderr, kept: &Mutex<String>, reports: &Sender<(String, Map<String, Value>)>) {
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        let parsed: Option<Value> = serde_json::from_str(text).ok();
        let shown = parsed.as_ref().map_or_else(|| text.to_owned(), readable);
        {
            let mut kept = kept.lock().unwrap_or_else(PoisonError::into_inner);
            kept.push_str(&shown);
            kept.push('\n');
        }
        let Some(Value::Object(mut fields)) =
            parsed.and_then(|mut v| v.get_mut("fields").map(Value::take))
        else {
            continue;
        };
        if let Some(Value::String(message)) = fields.remove("message")
            && message.ends_with(" listening")
        {
            // The receiver is gone once the test stopped waiting; keep draining anyway.
            let _ = reports.send((message, fields));
        }
    }
}

/// A JSON log line as `LEVEL target: message key=value …`.
fn readable(line: &Value) -> String {
    let text = |key: &str| line.get(key).and_then(Value::as_str).unwrap_or_default();
    let mut out = format!("{} {}:", text("level"), text("target"));
    if let Some(Value::Object(fields)) = line.get("fields") {
        if let Some(Value::String(message)) = fields.get("message") {
            out.push(' ');
            out.push_str(message);
        }
        for (key, value) in fields.iter().filter(|(key, _)| *key != "message") {
            match value {
                Value::String(s) => out.push_str(&format!(" {key}={s}")),
                other => out.push_str(&format!(" {key}={other}")),
            }
        }
    }
    out
}

/// The peak resident set size of process `pid` (`VmHWM` in `/proc/PID/status`), in bytes.
#[allow(dead_code)] // used by the hostile-input tests only
pub(crate) fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .unwrap_or_else(|| panic!("no VmHWM in /proc/{pid}/status"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unreadable {line}"));
    kib * 1024
}
