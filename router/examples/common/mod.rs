//! What the router examples share: a benchmark event as the gateway would have logged it.

use bytes::Bytes;
use headwater_log::{Header, Record};
use headwater_schemas::{Envelope, PayloadFormat};

/// Event `i` with `payload`, as a log record of partition 0 (key = source, envelope headers).
pub(crate) fn record(i: u64, payload: String) -> Record {
    let env = Envelope {
        id: format!("01J{i:023}"),
        event_type: "playback.start".into(),
        version: 1,
        source: format!("tv-{}", i % 1000),
        ts: 1_700_000_000_000,
        received_at: 1_700_000_000_000,
        tenant: "acme".into(),
        payload: Bytes::from(payload),
        payload_format: PayloadFormat::Json,
    };
    Record {
        partition: Some(0),
        key: Some(Bytes::from(env.source.clone())),
        value: Some(env.payload.clone()),
        headers: env.to_headers().into_iter().map(Header::from).collect(),
        timestamp_ms: -1,
    }
}
