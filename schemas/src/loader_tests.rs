//! Tests of loading (every problem class) and of validation against the shipped schemas.

use prost::Message;
use prost_reflect::{DynamicMessage, Value as PValue};

use super::*;
use crate::registry::{Payload, RejectionKind};

/// The shipped schemas of `events/` (the crate reads no files; its tests may).
fn shipped_sources() -> Vec<SourceFile> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("events");
    let mut sources: Vec<SourceFile> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            SourceFile { name, text }
        })
        .collect();
    sources.sort_by(|a, b| a.name.cmp(&b.name));
    sources
}

fn shipped() -> Registry {
    match Registry::from_sources(shipped_sources(), &LoadOptions::default()) {
        Ok(registry) => registry,
        Err(problems) => panic!("{problems:#?}"),
    }
}

fn source(name: &str, text: &str) -> SourceFile {
    SourceFile {
        name: name.to_owned(),
        text: text.to_owned(),
    }
}

fn problems(sources: &[SourceFile]) -> Vec<String> {
    match Registry::from_sources(sources.to_vec(), &LoadOptions::default()) {
        Ok(_) => Vec::new(),
        Err(found) => found.iter().map(ToString::to_string).collect(),
    }
}

fn reject(registry: &Registry, t: &str, v: u32, payload: Payload<'_>) -> (RejectionKind, String) {
    let r = registry.validate(t, v, payload).unwrap_err();
    (r.kind, r.reason)
}

const START_V1: &str = r#"{"type": "object",
 "properties": {"title_id": {"type": "string"}, "position_ms": {"type": "integer", "minimum": 0}},
 "required": ["title_id", "position_ms"]}"#;

#[test]
fn registry_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Registry>();
}

#[test]
fn shipped_schemas_load_without_problems() {
    let registry = shipped();
    let listed: Vec<(String, u32)> = registry
        .list()
        .iter()
        .map(|i| (i.event_type.clone(), i.version))
        .collect();
    for expected in [
        "playback.start",
        "playback.pause",
        "playback.stop",
        "playback.seek",
        "device.telemetry",
        "ui.impression",
        "search.query",
        "client.error",
        "otel.log",
        "otel.logs",
    ] {
        assert!(
            listed.iter().any(|(t, _)| t == expected),
            "{expected} missing from {listed:?}"
        );
    }
    assert_eq!(registry.versions("playback.start"), [1, 2]);
    let telemetry = registry.info("device.telemetry", 1).unwrap();
    assert_eq!(telemetry.format, SchemaFormat::Protobuf);
    assert_eq!(telemetry.topic, "telemetry");
    assert_eq!(
        telemetry.message.as_deref(),
        Some("headwater.events.device.v1.Telemetry")
    );
    let logs = registry.info("otel.logs", 1).unwrap();
    assert_eq!(logs.format, SchemaFormat::Protobuf);
    assert_eq!(logs.topic, "otlp_logs");
    assert_eq!(
        logs.message.as_deref(),
        Some("headwater.events.otel.v1.ExportLogsServiceRequest")
    );
    assert_eq!(
        registry.info("client.error", 1).unwrap().compatibility,
        Compatibility::Full
    );
    let json = serde_json::to_value(registry.list()).unwrap();
    assert_eq!(
        json[0],
        serde_json::json!({"type": "client.error", "version": 1, "format": "json",
                           "topic": "events", "compatibility": "full"})
    );
}

#[test]
fn json_payloads_validate_with_one_line_reasons() {
    let registry = shipped();
    let ok = br#"{"title_id": "t1", "position_ms": 0}"#;
    assert_eq!(
        registry
            .validate("playback.start", 1, Payload::Json(ok))
            .unwrap()
            .version,
        1
    );
    let value = serde_json::json!({"title_id": "t1", "position_ms": 5});
    assert!(
        registry
            .validate("playback.start", 1, Payload::Value(&value))
            .is_ok()
    );

    let negative = br#"{"title_id": "t1", "position_ms": -5}"#;
    assert_eq!(
        reject(&registry, "playback.start", 1, Payload::Json(negative)),
        (
            RejectionKind::Invalid,
            "payload.position_ms: -5 is less than the minimum of 0".to_owned()
        )
    );
    let missing = br#"{"position_ms": 1}"#;
    assert_eq!(
        reject(&registry, "playback.start", 1, Payload::Json(missing)).1,
        "payload: \"title_id\" is a required property"
    );
    let wrong_type = br#"{"title_id": 7, "position_ms": 1}"#;
    assert_eq!(
        reject(&registry, "playback.start", 1, Payload::Json(wrong_type)).1,
        "payload.title_id: 7 is not of type \"string\""
    );
    let not_object = br#"[1, 2]"#;
    assert_eq!(
        reject(&registry, "playback.start", 1, Payload::Json(not_object)).0,
        RejectionKind::Invalid
    );
    let nested = br#"{"code": "E1", "severity": "error", "stack": ["a", 3]}"#;
    assert_eq!(
        reject(&registry, "client.error", 1, Payload::Json(nested)).1,
        "payload.stack[1]: 3 is not of type \"string\""
    );
    let (kind, reason) = reject(
        &registry,
        "playback.start",
        1,
        Payload::Json(b"{\"title_id\":"),
    );
    assert_eq!(kind, RejectionKind::Malformed);
    assert!(reason.starts_with("payload is not JSON"), "{reason}");
    let (kind, _) = reject(
        &registry,
        "playback.start",
        1,
        Payload::Protobuf(b"\x08\x01"),
    );
    assert_eq!(kind, RejectionKind::Malformed);
}

#[test]
fn long_reasons_stay_on_one_short_line() {
    let registry = shipped();
    let long = format!(
        r#"{{"title_id": "t", "position_ms": "{}\n{}"}}"#,
        "x".repeat(500),
        "y"
    );
    let (_, reason) = reject(
        &registry,
        "playback.start",
        1,
        Payload::Json(long.as_bytes()),
    );
    assert!(!reason.contains('\n') && reason.len() <= 250, "{reason}");
}

#[test]
fn version_zero_means_latest_and_unknowns_are_rejected() {
    let registry = shipped();
    let ok = br#"{"title_id": "t1", "position_ms": 0, "autoplay": true}"#;
    assert_eq!(
        registry
            .validate("playback.start", 0, Payload::Json(ok))
            .unwrap()
            .version,
        2
    );
    assert_eq!(
        registry.get("playback.start", 0),
        registry.get("playback.start", 2)
    );
    assert!(
        registry
            .get("playback.start", 2)
            .unwrap()
            .contains("autoplay")
    );
    assert_eq!(
        reject(&registry, "nope", 1, Payload::Json(ok)),
        (
            RejectionKind::UnknownType,
            "unknown event type \"nope\"".to_owned()
        )
    );
    assert_eq!(
        reject(&registry, "playback.start", 9, Payload::Json(ok)),
        (
            RejectionKind::UnknownVersion,
            "unknown version 9 of event type \"playback.start\"".to_owned()
        )
    );
    assert!(registry.get("playback.start", 9).is_none());
    assert_eq!(
        reject(&Registry::empty(), "x", 0, Payload::Json(ok)).0,
        RejectionKind::UnknownType
    );
}

fn telemetry_bytes(registry: &Registry) -> Vec<u8> {
    let Checker::Proto(checker) = &registry.types["device.telemetry"][&1].checker else {
        panic!("device.telemetry is not protobuf")
    };
    let mut message = DynamicMessage::new(checker.descriptor().clone());
    message.set_field_by_name("cpu_percent", PValue::F32(42.5));
    message.set_field_by_name("player_version", PValue::String("7.12.0".repeat(4)));
    message.set_field_by_name("bitrate_kbps", PValue::U32(5800));
    message.encode_to_vec()
}

#[test]
fn protobuf_payloads_decode_or_are_rejected() {
    let registry = shipped();
    let bytes = telemetry_bytes(&registry);
    let info = registry
        .validate("device.telemetry", 1, Payload::Protobuf(&bytes))
        .unwrap();
    assert_eq!(info.topic, "telemetry");
    let truncated = &bytes[..bytes.len() - 3];
    let (kind, reason) = reject(
        &registry,
        "device.telemetry",
        1,
        Payload::Protobuf(truncated),
    );
    assert_eq!(kind, RejectionKind::Malformed);
    assert!(
        reason.starts_with("payload does not decode as headwater.events.device.v1.Telemetry"),
        "{reason}"
    );
}

#[test]
fn json_payloads_of_protobuf_types_are_checked() {
    let registry = shipped();
    let ok = br#"{"cpuPercent": 12.5, "droppedFrames": 3, "resolution": {"width": 1920}}"#;
    assert!(
        registry
            .validate("device.telemetry", 1, Payload::Json(ok))
            .is_ok()
    );
    let value = serde_json::json!({"bitrate_kbps": 3000});
    assert!(
        registry
            .validate("device.telemetry", 1, Payload::Value(&value))
            .is_ok()
    );
    let wrong = br#"{"droppedFrames": "many"}"#;
    assert_eq!(
        reject(&registry, "device.telemetry", 1, Payload::Json(wrong)).0,
        RejectionKind::Invalid
    );
    let unknown = br#"{"gpu": 1}"#;
    assert_eq!(
        reject(&registry, "device.telemetry", 1, Payload::Json(unknown)).0,
        RejectionKind::Invalid
    );
    let broken = br#"{"cpuPercent": "#;
    assert_eq!(
        reject(&registry, "device.telemetry", 1, Payload::Json(broken)).0,
        RejectionKind::Malformed
    );
}

#[test]
fn file_names_follow_the_convention() {
    let ok = parse_file_name("playback.start.v12.schema.json").unwrap();
    assert_eq!(
        (ok.event_type.as_str(), ok.version, ok.format),
        ("playback.start", 12, SchemaFormat::Json)
    );
    assert_eq!(
        parse_file_name("device.telemetry.v1.proto").unwrap().format,
        SchemaFormat::Protobuf
    );
    for bad in [
        "playback.start.schema.json",
        "playback.start.v0.schema.json",
        "playback.start.v01.schema.json",
        "Playback.v1.schema.json",
        "playback..start.v1.schema.json",
        "playback.start.v1.json",
        "1playback.v1.proto",
        "playback.vx.proto",
        "notes.txt",
    ] {
        assert!(parse_file_name(bad).is_err(), "{bad}");
    }
}

#[test]
fn every_problem_is_reported_with_file_and_line() {
    let found = problems(&[
        source(
            "a.v1.schema.json",
            "{\n  \"type\": \"object\",\n  \"properties\": {,}\n}",
        ),
        source("b.v1.schema.json", "{\n  \"type\": 5\n}"),
        source("c.schema.json", "{}"),
        source(
            "d.v1.schema.json",
            "{\"x-headwater\": {\n \"compatibility\": \"sideways\"}}",
        ),
        source(
            "e.v1.schema.json",
            "{\"x-headwater\": {\"topic\": \"bad topic\", \"color\": 1}}",
        ),
        source(
            "f.v1.schema.json",
            "{\"$schema\": \"http://json-schema.org/draft-07/schema#\"}",
        ),
        source(
            "g.v1.proto",
            "syntax = \"proto3\";\nmessage M {\n  int32 a = 1\n}\n",
        ),
        source(
            "h.v1.proto",
            "syntax = \"proto3\";\nmessage M { int32 a = 1; }\nmessage N { int32 b = 1; }\n",
        ),
        source(
            "i.v1.proto",
            "// headwater: message=Nope mood=happy\nsyntax = \"proto3\";\nmessage M {}\n",
        ),
        source("j.v1.schema.json", "{}"),
        source("j.v1.proto", "syntax = \"proto3\";\nmessage M {}\n"),
        source("k.v1.schema.json", "[]"),
    ]);
    let expect = [
        "a.v1.schema.json:3: invalid JSON: ",
        "b.v1.schema.json:2: invalid JSON Schema at /type: ",
        "c.schema.json: bad file name, no version",
        "d.v1.schema.json:2: x-headwater.compatibility: unknown compatibility \"sideways\"",
        "e.v1.schema.json:1: x-headwater.topic \"bad topic\" is not a topic name",
        "e.v1.schema.json:1: unknown x-headwater key \"color\"",
        "f.v1.schema.json:1: $schema must be",
        "g.v1.proto:4: expected ';' or '[', but found '}' (column 1)",
        "h.v1.proto: the file defines several messages",
        "i.v1.proto:1: unknown headwater option \"mood\"",
        "i.v1.proto:1: message \"Nope\" is not defined in this file",
        "j.v1.proto: duplicate schema for j v1 (also in j.v1.schema.json)",
        "k.v1.schema.json:1: a JSON Schema file must hold a JSON object",
    ];
    for prefix in expect {
        assert!(
            found.iter().any(|p| p.starts_with(prefix)),
            "no {prefix:?} in {found:#?}"
        );
    }
    assert_eq!(found.len(), expect.len(), "{found:#?}");
}

#[test]
fn remote_refs_are_not_fetched() {
    let found = problems(&[source(
        "r.v1.schema.json",
        r#"{"$ref": "https://example.com/schemas/thing.json"}"#,
    )]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("r.v1.schema.json: invalid JSON Schema"),
        "{found:?}"
    );
}

#[test]
fn incompatible_versions_are_reported() {
    let v2 = START_V1.replace(r#""minimum": 0"#, r#""minimum": 10"#);
    let found = problems(&[
        source("s.v1.schema.json", START_V1),
        source("s.v2.schema.json", &v2),
    ]);
    assert_eq!(
        found,
        [
            "s.v2.schema.json: s v2 vs v1: not backward compatible: payload.position_ms: minimum is 10 in v2 but 0 in v1"
        ]
    );
    let v2_none = v2.replacen('{', r#"{"x-headwater": {"compatibility": "none"},"#, 1);
    assert!(
        problems(&[
            source("s.v1.schema.json", START_V1),
            source("s.v2.schema.json", &v2_none)
        ])
        .is_empty()
    );
    // Versions may skip numbers; v3 is compared with v1.
    let found = problems(&[
        source("s.v1.schema.json", START_V1),
        source("s.v3.schema.json", &v2),
    ]);
    assert!(found[0].contains("s v3 vs v1"), "{found:?}");
}

#[test]
fn protobuf_versions_are_compared() {
    let v1 = "syntax = \"proto3\";\npackage p;\nmessage M { int32 a = 1; string b = 2; }\n";
    let v2 = "syntax = \"proto3\";\npackage p;\nmessage M { int64 a = 1; }\n";
    let found = problems(&[source("p.v1.proto", v1), source("p.v2.proto", v2)]);
    assert_eq!(found.len(), 2, "{found:?}");
    let switched = problems(&[source("p.v1.proto", v1), source("p.v2.schema.json", "{}")]);
    assert!(
        switched[0].contains("changes the schema format from protobuf to json"),
        "{switched:?}"
    );
}

#[test]
fn default_topic_comes_from_the_options() {
    let options = LoadOptions {
        default_topic: "raw".into(),
        ..LoadOptions::default()
    };
    let registry =
        Registry::from_sources([source("s.v1.schema.json", START_V1)], &options).unwrap();
    assert_eq!(registry.info("s", 1).unwrap().topic, "raw");
    let from_config = LoadOptions::from(&SchemasConfig::default());
    assert_eq!(from_config, LoadOptions::default());
}

#[test]
#[ignore = "timing only: cargo test --release -p headwater-schemas -- --ignored --nocapture"]
fn validation_throughput() {
    let registry = shipped();
    let json = br#"{"title_id":"tt0000001","position_ms":123456,"profile_id":"p-1234567890","session_id":"s-0123456789abcdef0123456789abcd","audio_language":"en-US","autoplay":true}"#;
    let proto = telemetry_bytes(&registry);
    let rounds = 200_000u32;
    for (name, t, payload) in [
        ("json", "playback.start", Payload::Json(json)),
        ("protobuf", "device.telemetry", Payload::Protobuf(&proto)),
    ] {
        let start = std::time::Instant::now();
        for _ in 0..rounds {
            assert!(registry.validate(t, 0, payload).is_ok());
        }
        let per_event = start.elapsed() / rounds;
        eprintln!(
            "{name}: {per_event:?} per event ({} bytes)",
            payload_len(payload)
        );
    }
}

fn payload_len(payload: Payload<'_>) -> usize {
    match payload {
        Payload::Json(b) | Payload::Protobuf(b) | Payload::Built { text: b, .. } => b.len(),
        Payload::Parsed(value) => value.raw().len(),
        Payload::Value(_) => 0,
    }
}
