//! Every value's bytes as sent ([`JsonValue::raw`]) and the walk of its elements and members,
//! on texts with and without empty objects and arrays: extents counted from the tape and
//! extents from matched brackets give the same spans.

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::Value;

use super::*;

/// Walks `value` beside `expected` (the same text read by serde_json), checking each value's
/// bytes and each container's elements or members.
fn check(value: JsonValue<'_>, expected: &Value) {
    let raw: Value = serde_json::from_slice(value.raw())
        .unwrap_or_else(|error| panic!("{:?}: {error}", String::from_utf8_lossy(value.raw())));
    assert_eq!(&raw, expected);
    match expected {
        Value::Array(items) => {
            let elements = value.elements().unwrap();
            assert_eq!(elements.len(), items.len());
            let mut visited = 0;
            for (element, item) in elements.zip(items) {
                check(element, item);
                visited += 1;
            }
            assert_eq!(visited, items.len());
        }
        Value::Object(map) => {
            let members: Vec<_> = value.members().unwrap().collect();
            assert_eq!(members.len(), map.len());
            for (name, member) in members {
                check(member, &map[name]);
            }
        }
        _ => assert!(value.elements().is_none() && value.members().is_none()),
    }
}

fn agrees(text: &str) {
    let expected: Value = serde_json::from_str(text).unwrap();
    let counted = with_document(text.as_bytes(), |root| {
        check(root, &expected);
        matches!(root.doc.extents, Extents::Counted)
    })
    .unwrap();
    // The brackets are matched only for a text with an empty object or array.
    assert_eq!(counted, !holds_empty(&expected), "{text}");
}

/// Whether `value` is or holds an empty object or array.
fn holds_empty(value: &Value) -> bool {
    match value {
        Value::Array(items) => items.is_empty() || items.iter().any(holds_empty),
        Value::Object(members) => members.is_empty() || members.values().any(holds_empty),
        _ => false,
    }
}

/// A JSON text of nested arrays and objects (distinct names), strings holding brackets,
/// numbers and literals, with whitespace between tokens; an empty array or object only
/// when `empties`.
fn text(empties: bool) -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        select(vec![
            "1",
            "-2.5e3",
            "true",
            "false",
            "null",
            "12345678901234567890"
        ])
        .prop_map(str::to_owned),
        "[a-z\\[\\]{},:\" ]{0,6}".prop_map(|s| serde_json::to_string(&s).unwrap()),
    ];
    let fewest = usize::from(!empties);
    leaf.prop_recursive(4, 48, 5, move |inner| {
        let ws = select(vec!["", " ", "\n  "]);
        prop_oneof![
            (prop::collection::vec(inner.clone(), fewest..5), ws.clone())
                .prop_map(|(items, ws)| format!("[{ws}{}{ws}]", items.join(&format!("{ws},{ws}")))),
            (prop::collection::vec(inner, fewest..5), ws).prop_map(|(values, ws)| {
                let members: Vec<String> = values
                    .iter()
                    .enumerate()
                    .map(|(i, value)| format!("\"k{i}\"{ws}:{ws}{value}"))
                    .collect();
                format!("{{{ws}{}{ws}}}", members.join(&format!("{ws},{ws}")))
            }),
        ]
    })
}

#[test]
fn spans_with_empty_containers_inside() {
    agrees(r#"[{"a":{},"b":[1,[]]},{"c":2},[],{}]"#);
    agrees(r#"{"events":[{"id":"x","payload":{"nested":[{},[[]]]}}],"n":1}"#);
    agrees(r#" [ { "a" : "}]" } , [ ] ] "#);
    agrees("{}");
    agrees("[]");
}

#[test]
fn spans_without_empty_containers() {
    agrees(r#"[{"a":{"x":1},"b":[1,[2]]},{"c":"{[\"]}"}]"#);
    agrees(r#"{"events":[{"id":"x","payload":{"n":[1,{"m":null}]}}],"n":1}"#);
    agrees("\"text\"");
    agrees("7");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn counted_extents_match_the_text(text in text(false)) {
        agrees(&text);
    }

    #[test]
    fn matched_extents_match_the_text(text in text(true)) {
        agrees(&text);
    }
}
