//! Helpers shared by the black-box and service tests.

#![allow(dead_code)]

/// The address of a real service started by scripts/services; fails loudly when missing.
pub fn service(var: &str) -> String {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!(
            "{var} is not set: this test needs the real service from scripts/services. \
             Run `scripts/services start && . target/services/env.sh` first, or run scripts/test"
        ),
    }
}

/// A name unique to this test run, for topics, buckets and indexes.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos:x}", std::process::id())
}

/// A loopback port free right now (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
