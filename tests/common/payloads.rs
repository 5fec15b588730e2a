//! Request bodies for the ingest port, built by hand as a hostile client would: gzip, gRPC
//! message frames, protobuf fields, `headwater.v1.Event`s, OTLP exports, and the bodies of the
//! hostile-ingest classes of issue 14 (gRPC bombs of empty events, JSON/NDJSON of millions of
//! tiny elements).

use std::process::Command;

/// A valid `playback.start` payload (the shipped schema).
pub(crate) const PAYLOAD: &[u8] = br#"{"title_id":"t","position_ms":1}"#;

/// The gRPC path of `headwater.v1.Ingest/Publish`.
pub(crate) const PUBLISH: &str = "/headwater.v1.Ingest/Publish";
/// The gRPC path of OTLP `LogsService/Export`.
pub(crate) const OTLP_EXPORT: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// The SHA-256 of `text` in hex, as `gateway.auth.keys` stores an API key.
pub(crate) fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// `data` gzipped by the system's `gzip -9` (fast on a debug build, unlike a deflate encoder
/// compiled without optimisation).
pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    std::fs::write(&path, data).unwrap();
    let out = Command::new("gzip")
        .args(["-c", "-9"])
        .arg(&path)
        .output()
        .expect("run gzip");
    assert!(out.status.success(), "gzip failed");
    out.stdout
}

/// `grpc-message` as sent: percent-encoded.
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A gRPC length-prefixed message frame.
pub(crate) fn grpc_frame(compressed: bool, message: &[u8]) -> Vec<u8> {
    let mut frame = vec![u8::from(compressed)];
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(message);
    frame
}

/// Protobuf: a varint.
pub(crate) fn varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Protobuf: a length-delimited field.
pub(crate) fn field(number: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 6);
    varint(u64::from(number) << 3 | 2, &mut out);
    varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}

/// A `headwater.v1.Event` with the given fields (numbers as in the proto).
pub(crate) fn proto_event(
    id: &str,
    event_type: &str,
    source: &str,
    payload: &[u8],
    attributes: &[(&str, &str)],
) -> Vec<u8> {
    let mut event = Vec::new();
    if !id.is_empty() {
        event.extend(field(1, id.as_bytes()));
    }
    event.extend(field(2, event_type.as_bytes()));
    event.extend(field(4, source.as_bytes()));
    event.extend(field(7, payload));
    event.extend(field(8, b"json"));
    for (key, value) in attributes {
        let mut entry = field(1, key.as_bytes());
        entry.extend(field(2, value.as_bytes()));
        event.extend(field(9, &entry));
    }
    event
}

/// Protobuf: an `ExportLogsServiceRequest` of one resource with the attribute `big` (`size`
/// bytes) and `records` empty log records.
pub(crate) fn otlp_export(size: usize, records: usize) -> Vec<u8> {
    let mut value = Vec::new();
    value.extend(field(1, &vec![b'x'; size]));
    let mut attribute = field(1, b"big");
    attribute.extend(field(2, &value));
    let mut name = field(1, b"service.name");
    name.extend(field(2, &field(1, b"player")));
    let mut resource = field(1, &attribute);
    resource.extend(field(1, &name));
    let mut scope_logs = Vec::new();
    for _ in 0..records {
        scope_logs.extend(field(2, &[]));
    }
    let mut resource_logs = field(1, &resource);
    resource_logs.extend(field(2, &scope_logs));
    field(1, &resource_logs)
}

/// `0a 00` × `count`, gzipped: `count` empty `Event`s of a `Batch` (or empty `resource_logs`
/// of an OTLP export) once decoded. 10M of them are about 20 KiB.
pub(crate) fn empty_elements_bomb(count: usize) -> Vec<u8> {
    gzip(&[0x0a, 0x00].repeat(count))
}

/// Gzipped bodies of `count` tiny elements (`0`) as a JSON array, a JSON `{"events": […]}`
/// and NDJSON, each with its content type.
pub(crate) fn tiny_elements_bodies(count: usize) -> Vec<(&'static str, Vec<u8>)> {
    let array = format!("[{}0]", "0,".repeat(count - 1));
    let bodies = vec![
        ("application/json", gzip(array.as_bytes())),
        (
            "application/json",
            gzip(format!(r#"{{"events":{array}}}"#).as_bytes()),
        ),
        ("application/x-ndjson", gzip(&b"0\n".repeat(count))),
    ];
    drop(array);
    bodies
}
