//! An envelope's JSON line, written straight into a byte buffer: the same bytes as
//! `serde_json::to_writer(out, envelope)` (the schema crate's `Serialize`), without serde's
//! per-field machinery on the common case (a JSON payload, field text without escapes).

use headwater_schemas::{Envelope, PayloadFormat};
use serde_json::value::RawValue;

/// Appends `env` as JSON to `out`, byte for byte what `serde_json::to_writer(out, env)` writes
/// (the tests compare both). A payload that is not valid JSON, or a protobuf one, goes
/// through serde as before.
pub(crate) fn write_envelope(out: &mut Vec<u8>, env: &Envelope) -> serde_json::Result<()> {
    let raw = match env.payload_format {
        PayloadFormat::Json => serde_json::from_slice::<&RawValue>(&env.payload).ok(),
        PayloadFormat::Protobuf => None,
    };
    let Some(raw) = raw else {
        return serde_json::to_writer(out, env);
    };
    out.extend_from_slice(br#"{"id":"#);
    write_str(out, &env.id)?;
    out.extend_from_slice(br#","type":"#);
    write_str(out, &env.event_type)?;
    out.extend_from_slice(br#","version":"#);
    serde_json::to_writer(&mut *out, &env.version)?;
    out.extend_from_slice(br#","source":"#);
    write_str(out, &env.source)?;
    out.extend_from_slice(br#","ts":"#);
    serde_json::to_writer(&mut *out, &env.ts)?;
    out.extend_from_slice(br#","received_at":"#);
    serde_json::to_writer(&mut *out, &env.received_at)?;
    out.extend_from_slice(br#","tenant":"#);
    write_str(out, &env.tenant)?;
    out.extend_from_slice(br#","payload_format":"json","payload":"#);
    out.extend_from_slice(raw.get().as_bytes());
    out.push(b'}');
    Ok(())
}

/// A JSON string: quoted as is when nothing in it needs escaping, else by serde_json.
fn write_str(out: &mut Vec<u8>, s: &str) -> serde_json::Result<()> {
    // Without an early exit the check is one branch-free (vectorised) pass over the bytes.
    let plain = s.bytes().fold(true, |plain, b| {
        plain & (b >= 0x20) & (b != b'"') & (b != b'\\')
    });
    if plain {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        Ok(())
    } else {
        serde_json::to_writer(out, s)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use rand::Rng;

    use super::*;

    fn same_as_serde(env: &Envelope) {
        let mut ours = Vec::new();
        write_envelope(&mut ours, env).unwrap();
        let theirs = serde_json::to_vec(env).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&theirs),
            "{env:?}"
        );
    }

    fn envelope(payload: &[u8], format: PayloadFormat) -> Envelope {
        Envelope {
            id: "01J00000000000000000000042".into(),
            event_type: "playback.start".into(),
            version: 3,
            source: "tv-7".into(),
            ts: 1_700_000_000_000,
            received_at: 1_700_000_000_123,
            tenant: "acme".into(),
            payload: Bytes::copy_from_slice(payload),
            payload_format: format,
        }
    }

    #[test]
    fn payloads_as_serde_writes_them() {
        let payloads: [&[u8]; 12] = [
            br#"{"a":1,"b":[true,null,"x"]}"#,
            b"  {\"padded\": 1}\n ",
            b"42",
            b"\"text\"",
            b"",
            b"{\"a\":",
            b"not json",
            b"{\"a\":1} trailing",
            b"\xff\xfe invalid utf-8",
            b"{\"bad\":\"\xff\"}",
            b"line\nbreak \"quoted\" \\ \x01",
            br#"{"emoji":"\ud83d\ude00","s":"\u00e9"}"#,
        ];
        for p in payloads {
            same_as_serde(&envelope(p, PayloadFormat::Json));
            same_as_serde(&envelope(p, PayloadFormat::Protobuf));
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        same_as_serde(&envelope(deep.as_bytes(), PayloadFormat::Json));
    }

    #[test]
    fn fields_as_serde_writes_them() {
        let texts = [
            "",
            "plain",
            "quote\"d",
            "back\\slash",
            "tab\tnew\nline\r\x08\x0c",
            "\x00\x1f\x7f",
            "é ü 😀 \u{2028}",
            "/slash/",
        ];
        let numbers = [0, 1, -1, 9, 10, -10, i64::MIN, i64::MAX, 1_700_000_000_000];
        for (i, t) in texts.iter().enumerate() {
            let mut env = envelope(b"{}", PayloadFormat::Json);
            env.id = (*t).into();
            env.event_type = texts[(i + 1) % texts.len()].into();
            env.source = texts[(i + 2) % texts.len()].into();
            env.tenant = texts[(i + 3) % texts.len()].into();
            env.version = [0, 1, u32::MAX][i % 3];
            env.ts = numbers[i % numbers.len()];
            env.received_at = numbers[(i + 4) % numbers.len()];
            same_as_serde(&env);
        }
    }

    #[test]
    fn random_envelopes_as_serde_writes_them() {
        let mut rng = rand::rng();
        let alphabet = b"a\"\\\n\x01 {}[]:,0-9e.tfn\xc3\xa9";
        for _ in 0..2_000 {
            let valid_payload = rng.random_bool(0.5);
            let mut text = || {
                let n = rng.random_range(0..12);
                let bytes: Vec<u8> = (0..n)
                    .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                    .collect();
                String::from_utf8_lossy(&bytes).into_owned()
            };
            let (id, event_type, source, tenant) = (text(), text(), text(), text());
            // Half the payloads valid JSON (a string), half whatever the bytes make.
            let payload = match valid_payload {
                true => serde_json::to_string(&text()).unwrap(),
                false => text(),
            };
            let env = Envelope {
                id,
                event_type,
                version: rng.random(),
                source,
                ts: rng.random(),
                received_at: rng.random(),
                tenant,
                payload: Bytes::from(payload),
                payload_format: PayloadFormat::Json,
            };
            same_as_serde(&env);
        }
    }
}
