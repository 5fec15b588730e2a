//! The S3 object of a batch: its key (from route, first event's hour and the offset range) and
//! its body (one envelope JSON per line, zstd or gzip).

use std::io::Write;

use object_store::path::{Path, PathPart};

use crate::config::Compression;
use crate::envelope_json::write_envelope;
use crate::time::UtcHour;
use crate::{Batch, OutEvent};

/// Uncompressed bytes gathered before they are handed to the compressor.
const CHUNK_BYTES: usize = 256 * 1024;

/// The object key of a batch:
/// `{prefix}/{route}/dt=YYYY-MM-DD/hr=HH/{topic}-{partition}-{first}-{last}.ndjson.{zst|gz}`,
/// the hour from the first event's `received_at` in UTC. Re-sending the same batch gives the
/// same key. Each part is escaped by object_store (`/` inside a route or topic name included).
pub fn object_key(prefix: &str, batch: &Batch, compression: Compression) -> Path {
    let received_at = batch.events.first().map_or(0, |e| e.envelope.received_at);
    let hour = UtcHour::from_epoch_ms(received_at);
    let ext = match compression {
        Compression::Zstd => "zst",
        Compression::Gzip => "gz",
    };
    let file = format!(
        "{}-{}-{}-{}.ndjson.{ext}",
        batch.topic, batch.partition, batch.first_offset, batch.last_offset
    );
    let parts = prefix
        .split('/')
        .filter(|p| !p.is_empty())
        .map(PathPart::from)
        .chain([
            PathPart::from(batch.route.as_ref()),
            PathPart::from(format!("dt={}", hour.date())),
            PathPart::from(format!("hr={:02}", hour.hour)),
            PathPart::from(file),
        ]);
    Path::from_iter(parts)
}

/// NDJSON of the events (one envelope per line, `\n`-terminated), compressed. Returns the body
/// and the uncompressed size.
pub fn encode_body(
    events: &[OutEvent],
    compression: Compression,
    level: i32,
) -> std::io::Result<(Vec<u8>, usize)> {
    match compression {
        Compression::Zstd => {
            let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), level)?;
            let raw = write_lines(events, &mut encoder)?;
            Ok((encoder.finish()?, raw))
        }
        Compression::Gzip => {
            let level = if level == 0 { 6 } else { level.unsigned_abs() };
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
            let raw = write_lines(events, &mut encoder)?;
            Ok((encoder.finish()?, raw))
        }
    }
}

fn write_lines(events: &[OutEvent], out: &mut impl Write) -> std::io::Result<usize> {
    let mut chunk = Vec::with_capacity(CHUNK_BYTES + 4096);
    let mut total = 0;
    for event in events {
        write_envelope(&mut chunk, &event.envelope)?;
        chunk.push(b'\n');
        if chunk.len() >= CHUNK_BYTES {
            out.write_all(&chunk)?;
            total += chunk.len();
            chunk.clear();
        }
    }
    out.write_all(&chunk)?;
    Ok(total + chunk.len())
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::sync::Arc;

    use bytes::Bytes;
    use headwater_schemas::Envelope;

    use super::*;

    fn batch(route: &str) -> Batch {
        let events = (0..3)
            .map(|i| OutEvent {
                topic: "events".into(),
                partition: 2,
                offset: 10 + i,
                key: Some(Bytes::from_static(b"tv-1")),
                envelope: Envelope {
                    id: format!("id-{i}"),
                    event_type: "playback.start".into(),
                    received_at: 1_700_000_000_000 + i,
                    payload: Bytes::from(format!(r#"{{"n":{i}}}"#)),
                    ..Envelope::default()
                },
            })
            .collect();
        Batch {
            route: Arc::from(route),
            topic: "events".into(),
            partition: 2,
            first_offset: 10,
            last_offset: 12,
            events,
        }
    }

    #[test]
    fn key_layout() {
        let key = object_key("lake/raw", &batch("all"), Compression::Zstd);
        assert_eq!(
            key.as_ref(),
            "lake/raw/all/dt=2023-11-14/hr=22/events-2-10-12.ndjson.zst"
        );
        let key = object_key("", &batch("a/b"), Compression::Gzip);
        assert_eq!(
            key.as_ref(),
            "a%2Fb/dt=2023-11-14/hr=22/events-2-10-12.ndjson.gz"
        );
    }

    #[test]
    fn bodies_decompress_to_ndjson() {
        let b = batch("r");
        let expected: String = b
            .events
            .iter()
            .map(|e| serde_json::to_string(&e.envelope).unwrap() + "\n")
            .collect();
        let (zst, raw) = encode_body(&b.events, Compression::Zstd, 0).unwrap();
        assert_eq!(raw, expected.len());
        assert_eq!(zstd::decode_all(&zst[..]).unwrap(), expected.as_bytes());
        let (gz, _) = encode_body(&b.events, Compression::Gzip, 0).unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, expected);
    }
}
