//! Shared helpers of the sink integration tests: the service addresses from
//! `scripts/services`, and batches of sample events.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use headwater_schemas::Envelope;
use headwater_sinks::{Batch, OutEvent};

/// The value of a `HEADWATER_TEST_*` variable; fails the test when it is missing.
pub(crate) fn service(var: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{var} is not set: start the real services with `scripts/services start` and \
             `source target/services/env.sh` before `cargo test -p headwater-sinks`"
        ),
    }
}

/// A name unique to this test run, lowercase, for buckets, indexes and topics.
pub(crate) fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

/// `2023-11-14T22:13:20Z` in milliseconds.
pub(crate) const T0: i64 = 1_700_000_000_000;

/// One event with a JSON payload.
pub(crate) fn event(offset: i64, id: &str, payload: &str) -> OutEvent {
    OutEvent {
        topic: Arc::from("events"),
        partition: 3,
        offset,
        key: Some(Bytes::from(format!("device-{}", offset % 4))),
        envelope: Envelope {
            id: id.to_owned(),
            event_type: "playback.start".to_owned(),
            version: 1,
            source: format!("device-{}", offset % 4),
            ts: T0 - 50,
            received_at: T0 + offset,
            tenant: "acme".to_owned(),
            payload: Bytes::from(payload.to_owned()),
            ..Envelope::default()
        },
    }
}

/// A batch of `n` events at offsets `first..first+n` of `events`/3 for `route`.
pub(crate) fn batch(route: &str, first: i64, n: usize) -> Batch {
    let events: Vec<OutEvent> = (0..n as i64)
        .map(|i| {
            let offset = first + i;
            event(
                offset,
                &format!("01HW{offset:022}"),
                &format!(
                    r#"{{"title_id":"t{offset}","position_ms":{}}}"#,
                    offset * 10
                ),
            )
        })
        .collect();
    Batch {
        route: Arc::from(route),
        topic: Arc::from("events"),
        partition: 3,
        first_offset: first,
        last_offset: first + n as i64 - 1,
        events,
    }
}

/// The NDJSON the sinks write for these events.
pub(crate) fn ndjson(events: &[OutEvent]) -> String {
    events
        .iter()
        .map(|e| serde_json::to_string(&e.envelope).expect("envelope serializes") + "\n")
        .collect()
}
