//! The once-parsed JSON path ([`decode_json_validated`]) against the serde_json path
//! ([`decode_json`], then the validator event by event): the same events, payload bytes and
//! answers for every body, whichever path a body takes.

use proptest::prelude::*;
use proptest::sample::select;

use super::*;
use crate::registry::SchemaRegistry;

const COUNT: &str =
    r#"{"type":"object","properties":{"n":{"type":"integer","minimum":0}},"required":["n"]}"#;

fn registry() -> (tempfile::TempDir, SchemaRegistry) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.count.v1.schema.json"), COUNT).unwrap();
    let registry =
        SchemaRegistry::load(dir.path(), headwater_schemas::LoadOptions::default()).unwrap();
    (dir, registry)
}

/// Decodes `body` both ways and checks they agree; the answer of the once-parsed path.
fn agree(registry: &SchemaRegistry, body: &str, max: usize) -> Result<Vec<Decoded>, IngestError> {
    let body = Bytes::from(body.to_owned());
    let once = decode_json_validated(&body, max, registry);
    let twice = decode_json(&body, max);
    let (once, twice) = match (once, twice) {
        (Err(once), Err(twice)) => {
            assert_eq!(once.to_string(), twice.to_string());
            return Err(once);
        }
        (Ok(once), Ok(twice)) => (once, twice),
        (once, twice) => panic!("{body:?}: once {once:?}, twice {twice:?}"),
    };
    assert_eq!(once.len(), twice.len(), "{body:?}");
    for (once, twice) in once.iter().zip(&twice) {
        match (once, twice) {
            (Decoded::Event(once), Decoded::Event(twice)) => {
                let mut unchecked = once.clone();
                let verdict = unchecked.verdict.take();
                assert_eq!(&unchecked, twice, "{body:?}");
                // Payload bytes are the body's own, not a copy.
                let inside = body.as_ptr_range();
                assert!(inside.contains(&once.payload.as_ptr()) || once.payload.is_empty());
                if let Some(verdict) = verdict {
                    assert_eq!(verdict, registry.validate(twice), "{body:?}");
                }
            }
            (once, twice) => assert_eq!(once, twice, "{body:?}"),
        }
    }
    Ok(once)
}

fn verdicts(decoded: &[Decoded]) -> Vec<Option<Result<u32, String>>> {
    decoded
        .iter()
        .map(|d| match d {
            Decoded::Event(e) => e.verdict.as_ref().map(|v| match v {
                Ok(verdict) => Ok(verdict.version),
                Err(invalid) => Err(invalid.to_string()),
            }),
            Decoded::Bad { .. } => None,
        })
        .collect()
}

#[test]
fn a_body_of_plain_events_is_validated_as_it_is_decoded() {
    let (_dir, registry) = registry();
    let body = concat!(
        " [ {\"type\":\"t.count\", \"source\" : \"s\\u00e9\", \"payload\" :\n{ \"n\" : 1 } },",
        "{\"id\":\"e2\",\"type\":\"t.count\",\"version\":1,\"source\":\"s\",\"ts\":-5,",
        "\"payload\":{\"n\":-1},\"extra\":[\"}\"]},",
        "{\"type\":\"t.count\",\"source\":\"s\",\"payload\":{\"n\":1,\"n\":2}},",
        "{\"type\":\"nope\",\"source\":\"s\",\"payload\":\"x\"} ]\t"
    );
    let decoded = agree(&registry, body, 10).unwrap();
    let events = decoded
        .iter()
        .map(|d| match d {
            Decoded::Event(e) => std::str::from_utf8(&e.payload).unwrap(),
            Decoded::Bad { .. } => panic!("{d:?}"),
        })
        .collect::<Vec<_>>();
    assert_eq!(
        events,
        [
            r#"{ "n" : 1 }"#,
            r#"{"n":-1}"#,
            r#"{"n":1,"n":2}"#,
            r#""x""#
        ]
    );
    let answers = verdicts(&decoded);
    assert_eq!(answers[0], Some(Ok(1)));
    assert!(
        matches!(&answers[1], Some(Err(e)) if e.contains("minimum")),
        "{answers:?}"
    );
    assert!(
        matches!(&answers[2], Some(Err(e)) if e.contains("twice")),
        "{answers:?}"
    );
    assert!(
        matches!(&answers[3], Some(Err(e)) if e.contains("unknown event type")),
        "{answers:?}"
    );
    // The object form takes the same path.
    let object = format!(r#"{{"other":[1],"events":{}}}"#, body.trim());
    assert_eq!(verdicts(&agree(&registry, &object, 10).unwrap()), answers);
}

#[test]
fn any_other_body_is_decoded_then_validated_as_before() {
    let (_dir, registry) = registry();
    let plain = r#"{"type":"t.count","source":"s","payload":{"n":1}}"#;
    for body in [
        // An element that is not an event, or lacks a field, or has one twice or of a type
        // serde reads otherwise.
        format!("[{plain}, 42]"),
        format!(r#"[{plain}, {{"type":"t.count","payload":1}}]"#),
        format!(r#"[{plain}, {{"type":"t.count","type":"t.count","source":"s","payload":1}}]"#),
        format!(r#"[{plain}, {{"type":"t.count","source":"s","version":1.0,"payload":1}}]"#),
        format!(r#"[{plain}, {{"type":"t.count","source":"s","payload":null}}]"#),
        // A number simd-json does not read, nesting deeper than the document's limit.
        format!(r#"[{plain}, {{"type":"t.count","source":"s","payload":{{"n":1e999}}}}]"#),
        format!(
            r#"[{plain}, {{"type":"t.count","source":"s","payload":{}1{}}}]"#,
            "[".repeat(document::MAX_DEPTH),
            "]".repeat(document::MAX_DEPTH)
        ),
        // `events` twice; more elements than allowed; larger than is parsed once.
        format!(r#"{{"events":[{plain}],"events":[{plain}]}}"#),
        format!("[{plain},{plain},{plain}]"),
        format!("[{}{plain}]", " ".repeat(INLINE_DECODE_BYTES)),
    ] {
        match agree(&registry, &body, 2) {
            Ok(decoded) => assert!(
                verdicts(&decoded).iter().all(Option::is_none),
                "{body:.200}: {decoded:?}"
            ),
            Err(error) => assert!(matches!(
                error,
                IngestError::Malformed(_) | IngestError::TooManyEvents { .. }
            )),
        }
    }
}

/// A member of an element: a field the envelope knows, with a value of its type or not.
fn member() -> impl Strategy<Value = (&'static str, &'static str)> {
    prop_oneof![
        (
            Just("id"),
            select(vec![r#""e1""#, r#""""#, "null", "42", r#""e\u0031""#])
        ),
        (
            Just("type"),
            select(vec![r#""t.count""#, r#""t.other""#, r#""""#, "null", "[]"])
        ),
        (
            Just("version"),
            select(vec!["1", "0", "2", "null", "-1", "1.5", "4294967296"])
        ),
        (
            Just("source"),
            select(vec![r#""s""#, r#""""#, r#""\"q\"""#, "null", "7"])
        ),
        (
            Just("ts"),
            select(vec!["5", "-3", "null", "1e3", "9223372036854775808"])
        ),
        (Just("payload"), payload()),
        (Just("payload"), Just(r#"{"n":18446744073709551616}"#)),
        (
            Just("extra"),
            select(vec!["[1,{\"y\":\"]\"}]", "null", "\"payload\""])
        ),
    ]
}

fn payload() -> impl Strategy<Value = &'static str> {
    select(vec![
        r#"{"n":1}"#,
        r#"{ "n" : 0 , "x" : [ 1 , { "y" : "}" } ] }"#,
        r#"{"n":-1}"#,
        r#"{"n":1,"n":2}"#,
        r#"{"n":"1"}"#,
        r#""text \u00e9\n""#,
        "[1, 2.5e3, true]",
        "12",
        "-0.5",
        "true",
        "null",
        "{}",
        "[]",
    ])
}

/// An element most likely plainly an event (its fields each once, of their types), else
/// anything [`member`] makes, or not an object at all.
fn element() -> impl Strategy<Value = String> {
    let optional = |name: &'static str, values: Vec<&'static str>| {
        prop::option::of(select(values)).prop_map(move |value| value.map(|v| (name, v)))
    };
    let plain = (
        select(vec![r#""t.count""#, r#""t.other""#]),
        payload(),
        optional("id", vec![r#""e1""#, r#""""#, "null", r#""e\u0031""#]),
        optional("version", vec!["1", "0", "2", "null"]),
        optional("ts", vec!["5", "-3", "null"]),
        optional("extra", vec!["[1,{\"y\":\"]\"}]", "\"payload\""]),
    )
        .prop_map(|(event_type, payload, id, version, ts, extra)| {
            let mut members = vec![("type", event_type), ("source", r#""tv-1""#)];
            members.extend([id, version, ts, extra].into_iter().flatten());
            members.push(("payload", payload));
            members
        });
    let messy = (
        select(vec![r#""t.count""#, r#""t.other""#]),
        payload(),
        prop::collection::vec(member(), 0..3),
    )
        .prop_map(|(event_type, payload, mut extra)| {
            extra.push(("type", event_type));
            extra.push(("source", r#""tv-1""#));
            extra.push(("payload", payload));
            extra
        });
    let object = prop_oneof![6 => plain, 2 => messy]
        .prop_shuffle()
        .prop_flat_map(|members| (Just(members), select(vec!["", " ", "\n\t "])))
        .prop_map(|(members, ws)| {
            let members: Vec<String> = members
                .into_iter()
                .map(|(name, value)| format!("{ws}\"{name}\"{ws}:{ws}{value}{ws}"))
                .collect();
            format!("{{{}}}", members.join(","))
        });
    prop_oneof![
        12 => object,
        1 => select(vec!["42", "null", "[]", "\"event\"", "{}"]).prop_map(str::to_owned),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn both_paths_agree_on_any_body(
        elements in prop::collection::vec(element(), 0..6),
        object in any::<bool>(),
        ws in select(vec!["", " ", "\r\n"]),
        max in 1usize..7,
    ) {
        let (_dir, registry) = registry();
        let array = format!("{ws}[{ws}{}{ws}]{ws}", elements.join(&format!("{ws},{ws}")));
        let body = if object { format!(r#"{{"events":{array},"n":1}}"#) } else { array };
        let _ = agree(&registry, &body, max);

    }
}
