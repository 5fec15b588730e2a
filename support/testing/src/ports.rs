//! Loopback ports for test clusters whose addresses must be known before any node starts.

use std::net::TcpListener;

/// A loopback port nobody listens on right now, below the kernel's ephemeral range. A port of
/// that range (what binding port 0 gives) could be taken before its node binds it, or while
/// the node is down between a stop and a restart, by any process binding port 0 or by an
/// outgoing connection's source port; below the range only another explicit bind can take it.
/// Drawn at random, so concurrent tests rarely meet.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let (first, span) = (10_000u16, u64::from(low.saturating_sub(10_000).max(1)));
    for _ in 0..1_000 {
        // A random draw (std's hasher keys are random).
        let draw = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let port = first + (draw % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port below {low} in 1,000 draws");
}
