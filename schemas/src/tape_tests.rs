//! The tape path ([`Payload::Json`]) against the `serde_json::Value` path ([`Payload::Value`]):
//! the same payloads get the same answer, word for word.

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::loader::{LoadOptions, SourceFile};
use crate::registry::{Payload, Registry, RejectionKind};
use crate::{document, tape};

/// A schema that uses most keywords, so most of the tape's accessors are exercised.
const RICH: &str = r##"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "$defs": { "tag": { "type": "string", "pattern": "^[a-z]+$", "maxLength": 8 } },
  "properties": {
    "n": { "type": "integer", "minimum": -10, "exclusiveMaximum": 1000, "multipleOf": 3 },
    "x": { "type": "number", "maximum": 2.5 },
    "s": { "type": "string", "minLength": 2, "format": "email" },
    "b": { "type": "boolean" },
    "z": { "type": "null" },
    "e": { "enum": ["a", 1, null, [1, 2], { "k": true }] },
    "c": { "const": { "k": [1, "x"] } },
    "tags": { "type": "array", "items": { "$ref": "#/$defs/tag" }, "uniqueItems": true, "maxItems": 4 },
    "pair": { "type": "array", "prefixItems": [{ "type": "string" }, { "type": "integer" }], "items": false },
    "has": { "type": "array", "contains": { "const": 7 }, "minContains": 1 },
    "o": {
      "type": "object",
      "propertyNames": { "pattern": "^[a-z]{1,3}$" },
      "patternProperties": { "^q": { "type": "integer" } },
      "additionalProperties": { "type": ["string", "array", "object"] },
      "minProperties": 1,
      "maxProperties": 3
    },
    "one": { "oneOf": [{ "type": "integer" }, { "type": "string", "minLength": 3 }] },
    "not": { "not": { "type": "array" } }
  },
  "dependentRequired": { "b": ["n"] },
  "required": ["n"],
  "additionalProperties": false,
  "x-headwater": { "topic": "events", "compatibility": "none" }
}"##;

fn registry() -> Registry {
    let sources = vec![SourceFile {
        name: "rich.v1.schema.json".to_owned(),
        text: RICH.to_owned(),
    }];
    match Registry::from_sources(sources, &LoadOptions::default()) {
        Ok(registry) => registry,
        Err(problems) => panic!("{problems:#?}"),
    }
}

/// The answer as comparable data: the resolved version, or the rejection's kind and reason.
fn answer(registry: &Registry, payload: Payload<'_>) -> Result<u32, (RejectionKind, String)> {
    registry
        .validate("rich", 1, payload)
        .map(|info| info.version)
        .map_err(|rejection| (rejection.kind, rejection.reason))
}

/// [`agree`], for a payload that takes the tape path.
fn both(registry: &Registry, text: &[u8]) -> Result<u32, (RejectionKind, String)> {
    assert!(
        tape::with_tape(text, |_| ()).is_some(),
        "simd-json parses {}",
        String::from_utf8_lossy(text)
    );
    assert!(
        in_a_document(registry, text).is_some(),
        "simd-json parses a batch holding {}",
        String::from_utf8_lossy(text)
    );
    agree(registry, text)
}

/// The answer to `text`, the same whether the registry parses it or is given its `Value`.
fn agree(registry: &Registry, text: &[u8]) -> Result<u32, (RejectionKind, String)> {
    let from_text = answer(registry, Payload::Json(text));
    let value: Value = serde_json::from_slice(text).unwrap();
    let from_value = answer(registry, Payload::Value(&value));
    assert_eq!(
        from_text,
        from_value,
        "tape and Value disagree on {}",
        String::from_utf8_lossy(text)
    );
    // A tape built beside the text (here: simd-json's own) gets the text's answer, when no
    // name is given twice (the caller of `Built` answers for that).
    let mut copy = text.to_vec();
    if let Ok(tape) = simd_json::to_tape(&mut copy)
        && tape::repeated_name(tape::TapeNode::At(&tape.0)).is_none()
    {
        assert_eq!(
            answer(
                registry,
                Payload::Built {
                    text,
                    tape: &tape.0
                }
            ),
            from_text,
            "a built tape and the text disagree on {}",
            String::from_utf8_lossy(text)
        );
    }
    if let Some(from_document) = in_a_document(registry, text) {
        assert_eq!(
            from_document,
            from_text,
            "a document's tape and the payload's own disagree on {}",
            String::from_utf8_lossy(text)
        );
    }
    from_text
}

/// The answer to `text` read as a payload inside a batch parsed whole ([`Payload::Parsed`]),
/// the value's bytes checked to be `text` as written; `None` when simd-json refuses the batch.
fn in_a_document(registry: &Registry, text: &[u8]) -> Option<Result<u32, (RejectionKind, String)>> {
    let mut body = br#"[ {"payload": 1}, {"type": "rich", "payload" :"#.to_vec();
    body.extend_from_slice(b" \n\t");
    body.extend_from_slice(text);
    body.extend_from_slice(br#" , "after": [{"x": "]"}]}, 7 ]"#);
    document::with_document(&body, |root| {
        let mut events = root.elements().expect("an array");
        assert_eq!(events.len(), 3);
        let first = events.next().unwrap();
        assert_eq!(first.raw(), br#"{"payload": 1}"#);
        let second = events.next().unwrap();
        let members: Vec<_> = second.members().expect("an object").collect();
        assert_eq!(members.len(), 3);
        assert_eq!(members[0].0, "type");
        assert_eq!(members[0].1.as_str(), Some("rich"));
        assert_eq!(
            (members[1].0, members[1].1.raw()),
            ("payload", text.trim_ascii())
        );
        assert_eq!(members[2].1.raw(), br#"[{"x": "]"}]"#);
        let last = events.next().unwrap();
        assert_eq!((last.raw(), last.as_u64()), (&b"7"[..], Some(7)));
        assert!(events.next().is_none());
        answer(registry, Payload::Parsed(members[1].1))
    })
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-20i64..1_200).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-5.0f64..5.0).prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        Just(json!(3.0)),
        Just(json!(7)),
        "[a-z]{0,10}".prop_map(Value::from),
        "[a-z]{1,5}@[a-z]{1,5}\\.com".prop_map(Value::from),
        "\\PC{0,6}".prop_map(Value::from),
        Just(json!("tab\there \"quoted\" \\ é ✓ \u{1F600}")),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 48, 6, |inner| {
        let name = prop_oneof![
            Just("n".to_owned()),
            Just("x".to_owned()),
            Just("s".to_owned()),
            Just("b".to_owned()),
            Just("z".to_owned()),
            Just("e".to_owned()),
            Just("c".to_owned()),
            Just("tags".to_owned()),
            Just("pair".to_owned()),
            Just("has".to_owned()),
            Just("o".to_owned()),
            Just("one".to_owned()),
            Just("not".to_owned()),
            Just("k".to_owned()),
            "q[a-z]{0,2}",
            "[a-z]{1,5}",
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::btree_map(name, inner, 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

/// Objects shaped like the schema, so that many pass and the failures are deep.
fn payload() -> impl Strategy<Value = Value> {
    (
        prop_oneof![(-20i64..1_200).prop_map(Value::from), value()],
        proptest::collection::btree_map(
            prop_oneof![
                Just("x"),
                Just("s"),
                Just("b"),
                Just("e"),
                Just("c"),
                Just("tags"),
                Just("pair"),
                Just("has"),
                Just("o"),
                Just("one"),
                Just("not"),
            ],
            value(),
            0..5,
        ),
        any::<bool>(),
    )
        .prop_map(|(n, members, with_n)| {
            let mut object = serde_json::Map::new();
            if with_n {
                object.insert("n".to_owned(), n);
            }
            for (name, member) in members {
                object.insert(name.to_owned(), member);
            }
            Value::Object(object)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn tape_and_value_agree_on_any_payload(payload in prop_oneof![payload(), value()]) {
        let registry = registry();
        let compact = serde_json::to_vec(&payload).unwrap();
        let _ = both(&registry, &compact);
        let pretty = serde_json::to_vec_pretty(&payload).unwrap();
        let _ = both(&registry, &pretty);
    }
}

/// `value` as JSON text, each object whose turn comes up in `repeats` (one bit an object, in
/// the order they are written) given its first member's name once more at its end.
fn with_repeats(value: &Value, repeats: &mut u64, out: &mut String) {
    match value {
        Value::Object(members) => {
            out.push('{');
            for (i, (name, member)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(name).unwrap());
                out.push(':');
                with_repeats(member, repeats, out);
            }
            let repeat = *repeats & 1 == 1;
            *repeats = repeats.rotate_right(1);
            if let (true, Some((name, _))) = (repeat, members.iter().next()) {
                out.push(',');
                out.push_str(&serde_json::to_string(name).unwrap());
                out.push_str(":null");
            }
            out.push('}');
        }
        Value::Array(elements) => {
            out.push('[');
            for (i, element) in elements.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                with_repeats(element, repeats, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Whether an object anywhere on `nodes` (a simd-json tape) has a name twice, the plain way.
fn has_repeat(nodes: &[simd_json::Node<'_>]) -> bool {
    nodes.iter().enumerate().any(|(at, node)| {
        let simd_json::Node::Object { len, .. } = node else {
            return false;
        };
        // The names of the object at `at`: skip each member's value by its node count.
        let mut seen = std::collections::HashSet::new();
        let mut next = at + 1;
        (0..*len).any(|_| {
            let simd_json::Node::String(name) = nodes[next] else {
                unreachable!("a member starts with its name")
            };
            next += 1 + tape::span(&nodes[next + 1]);
            !seen.insert(name)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn a_repeated_name_is_found_wherever_it_is(
        value in prop_oneof![payload(), value()],
        repeats in prop_oneof![Just(0u64), Just(1u64), any::<u64>()],
    ) {
        let mut text = String::new();
        with_repeats(&value, &mut repeats.clone(), &mut text);
        let mut copy = text.clone().into_bytes();
        let tape = simd_json::to_tape(&mut copy).unwrap();
        let found = tape::repeated_name(tape::TapeNode::At(&tape.0));
        prop_assert_eq!(found.is_some(), has_repeat(&tape.0), "{}", text);
    }
}

#[test]
fn tape_and_value_agree_on_chosen_payloads() {
    let registry = registry();
    let valid = [
        r#"{"n": 3}"#,
        r#"{"n": 0, "b": true, "x": 2.5, "s": "a@b.com", "z": null}"#,
        r#"{"n": 3.0}"#,
        r#"{"n": 9, "e": [1, 2], "c": {"k": [1.0, "x"]}, "tags": ["ab", "cd"]}"#,
        r#"{"n": 9, "pair": ["a", 1], "has": [1, 7], "o": {"qa": 1, "ab": "x"}, "one": 5}"#,
        r#"{"n": 9, "e": {"k": true}, "not": {"a": []}}"#,
        r#"{"n": 3, "s": "tab\there \"q\" \u00e9 é ✓ 😀 \ud83d\ude00"}"#,
    ];
    for text in valid {
        assert_eq!(both(&registry, text.as_bytes()), Ok(1), "{text}");
    }
    let invalid = [
        r#"{}"#,
        r#"[]"#,
        r#""n""#,
        r#"{"n": 4}"#,
        r#"{"n": 1000}"#,
        r#"{"n": 1.5}"#,
        r#"{"n": -12}"#,
        r#"{"n": 3, "x": 2.6}"#,
        r#"{"n": 3, "s": "x"}"#,
        r#"{"b": false}"#,
        r#"{"n": 3, "e": [2, 1]}"#,
        r#"{"n": 3, "c": {"k": [1, "y"]}}"#,
        r#"{"n": 3, "tags": ["ab", "ab"]}"#,
        r#"{"n": 3, "tags": ["Ab"]}"#,
        r#"{"n": 3, "pair": ["a", 1, 2]}"#,
        r#"{"n": 3, "has": [1, 2]}"#,
        r#"{"n": 3, "o": {}}"#,
        r#"{"n": 3, "o": {"abcd": "x"}}"#,
        r#"{"n": 3, "o": {"qa": "x"}}"#,
        r#"{"n": 3, "o": {"a": 1}}"#,
        r#"{"n": 3, "one": "ab"}"#,
        r#"{"n": 3, "not": []}"#,
        r#"{"n": 3, "extra": 1}"#,
    ];
    for text in invalid {
        let answer = both(&registry, text.as_bytes());
        assert!(
            matches!(&answer, Err((RejectionKind::Invalid, _))),
            "{text}: {answer:?}"
        );
    }
}

#[test]
fn what_simd_json_refuses_is_decided_by_serde_json() {
    let registry = registry();
    // An integer past 64 bits: simd-json refuses it, serde_json reads it as a float.
    let big = br#"{"n": 123456789012345678901234567890}"#;
    assert!(tape::with_tape(big, |_| ()).is_none());
    let answer = agree(&registry, big);
    assert!(
        matches!(&answer, Err((RejectionKind::Invalid, reason)) if reason.contains("1.2345678901234568e+29")),
        "{answer:?}"
    );
    // Not JSON at all: serde_json's words, as before.
    let (kind, reason) = answer_of(&registry, b"{\"n\": 3,}");
    assert_eq!(kind, RejectionKind::Malformed);
    assert!(reason.starts_with("payload is not JSON: "), "{reason}");
    let (kind, _) = answer_of(&registry, b"{\"n\": 3} {}");
    assert_eq!(kind, RejectionKind::Malformed);
}

fn answer_of(registry: &Registry, text: &[u8]) -> (RejectionKind, String) {
    answer(registry, Payload::Json(text)).unwrap_err()
}

#[test]
fn a_member_name_given_twice_is_refused() {
    let registry = registry();
    for text in [
        r#"{"n": 4, "n": 3}"#,
        r#"{"n": 3, "o": {"a": "x", "b": "y", "a": "x"}}"#,
        r#"{"n": 3, "tags": [], "e": [{"k": 1, "k": 1}]}"#,
    ] {
        let (kind, reason) = answer_of(&registry, text.as_bytes());
        assert_eq!(kind, RejectionKind::Malformed, "{text}");
        assert!(reason.contains("twice"), "{text}: {reason}");
    }
    // Many members (past the pairwise check) and the name repeated far apart.
    let mut wide: String = (0..40).map(|i| format!("\"m{i}\": {i}, ")).collect();
    wide.push_str("\"m7\": 0");
    let text = format!(r#"{{"n": 3, "o": {{{wide}}}}}"#);
    let (kind, reason) = answer_of(&registry, text.as_bytes());
    assert_eq!(
        (kind, reason.as_str()),
        (
            RejectionKind::Malformed,
            "payload has the member name \"m7\" twice in one object"
        )
    );
    // Names that look alike (length and end bytes) but differ are no repeat.
    assert_eq!(
        answer(
            &registry,
            Payload::Json(br#"{"n": 3, "o": {"qab": 1, "qcb": 2}}"#)
        ),
        Ok(1)
    );
    // The same name in two objects is no repeat.
    assert_eq!(
        answer(
            &registry,
            Payload::Json(br#"{"n": 3, "c": {"k": [1, "x"]}, "e": {"k": true}}"#)
        ),
        Ok(1)
    );
}
