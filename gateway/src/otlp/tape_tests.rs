//! The tape built beside a record's payload against simd-json's parse of that payload, over
//! generated records: node for node the same, or no tape where the record holds bytes.

use headwater_schemas::TapeNode as Node;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use proptest::prelude::*;
use serde_json::value::RawValue;

use crate::otlp::{Attributes, RecordJson, Scope, attribute_order, json_text, tape};

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z.]{0,12}",
        any::<String>(),
        Just("quote \" backslash \\ tab \t nul \u{0} é 😀 \u{7f}".to_owned()),
    ]
}

fn scalar() -> impl Strategy<Value = Any> {
    prop_oneof![
        text().prop_map(Any::StringValue),
        any::<bool>().prop_map(Any::BoolValue),
        any::<i64>().prop_map(Any::IntValue),
        any::<f64>().prop_map(Any::DoubleValue),
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(-0.0),
            Just(1e300),
            Just(5e-324)
        ]
        .prop_map(Any::DoubleValue),
        prop::collection::vec(any::<u8>(), 0..4).prop_map(Any::BytesValue),
    ]
}

fn value() -> impl Strategy<Value = Option<AnyValue>> {
    let leaf = prop::option::weighted(0.9, scalar()).prop_map(|value| AnyValue { value });
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|values| AnyValue {
                value: Some(Any::ArrayValue(ArrayValue { values })),
            }),
            prop::collection::vec(("[a-c]{1,2}", inner), 0..4).prop_map(|pairs| AnyValue {
                value: Some(Any::KvlistValue(KeyValueList {
                    values: pairs
                        .into_iter()
                        .map(|(key, value)| KeyValue {
                            key,
                            value: Some(value),
                            ..KeyValue::default()
                        })
                        .collect(),
                })),
            }),
        ]
    })
    .prop_map(Some)
}

fn attributes() -> impl Strategy<Value = Vec<KeyValue>> {
    // Few distinct keys, so that some are given twice.
    prop::collection::vec(("[a-d]{1,2}|[a-z.]{3,20}", value()), 0..6).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(key, value)| KeyValue {
                key,
                value,
                ..KeyValue::default()
            })
            .collect()
    })
}

prop_compose! {
    fn log_record()(
        attributes in attributes(),
        body in value(),
        severity_number in any::<i32>(),
        severity_text in text(),
        times in (any::<u64>(), prop_oneof![Just(0u64), any::<u64>(), Just(u64::MAX)]),
        span_id in prop::collection::vec(any::<u8>(), 0..9),
        trace_id in prop::collection::vec(any::<u8>(), 0..17),
    ) -> LogRecord {
        LogRecord {
            attributes,
            body,
            severity_number,
            severity_text,
            time_unix_nano: times.0,
            observed_time_unix_nano: times.1,
            span_id,
            trace_id,
            ..LogRecord::default()
        }
    }
}

/// Whether the payload writes bytes (of a key given twice, only the value kept counts).
fn holds_bytes(value: Option<&AnyValue>) -> bool {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Any::BytesValue(_)) => true,
        Some(Any::ArrayValue(array)) => array.values.iter().any(|v| holds_bytes(Some(v))),
        Some(Any::KvlistValue(list)) => any_bytes(&list.values),
        _ => false,
    }
}

fn any_bytes(attributes: &[KeyValue]) -> bool {
    attribute_order(attributes)
        .into_iter()
        .any(|at| holds_bytes(attributes[at].value.as_ref()))
}

/// A member name some object of `tape` holds twice.
fn repeated_name<'a>(tape: &[Node<'a>]) -> Option<&'a str> {
    tape.iter().enumerate().find_map(|(at, node)| {
        let Node::Object { len, .. } = node else {
            return None;
        };
        // Its members: a name, then its value and all that value holds.
        let mut names = Vec::new();
        let mut next = at + 1;
        for _ in 0..*len {
            let Node::String(name) = tape[next] else {
                panic!("an object member's name is not a string");
            };
            if names.contains(&name) {
                return Some(name);
            }
            names.push(name);
            next += 1;
            next += match tape[next] {
                Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
                _ => 1,
            };
        }
        None
    })
}

/// The record's payload as written, and the tape built beside it (`None`: no tape).
fn check(record: &LogRecord, resource: &[KeyValue], scope: Option<(&str, &str)>) {
    let resource_text = json_text(&Attributes(resource)).unwrap();
    let scope_text: Box<RawValue> = match scope {
        Some((name, version)) => json_text(&Scope { name, version }).unwrap(),
        None => json_text(&()).unwrap(),
    };
    let ids = tape::Ids::of(record);
    let order = attribute_order(&record.attributes);
    let mut text = Vec::new();
    RecordJson {
        record,
        order: &order,
        ids: &ids,
        resource: &resource_text,
        scope: &scope_text,
    }
    .write(&mut text)
    .unwrap();
    // The same text as a serde_json map of the members would be, in their order.
    let value: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&text).unwrap();
    assert_eq!(serde_json::to_vec(&value).unwrap(), text);
    let mut resource_tape = Vec::new();
    let resource_tape = tape::attributes(resource, &mut resource_tape).map(|()| resource_tape);
    let scope_tape = tape::scope(scope);
    let built = resource_tape
        .as_deref()
        .and_then(|resource| tape::record(record, &order, &ids, resource, &scope_tape));
    let bytes_in =
        holds_bytes(record.body.as_ref()) || any_bytes(&record.attributes) || any_bytes(resource);
    let shown = String::from_utf8_lossy(&text).into_owned();
    let parsed = simd_json::to_tape(&mut text).expect("the payload parses");
    match built {
        Some(built) => {
            assert!(!bytes_in, "a tape for a record with bytes: {shown}");
            // Debug, not `==`: simd-json's equality takes 1 and 1.0000000000000002 for one
            // number, and a signed 1 for an unsigned one.
            assert_eq!(format!("{built:?}"), format!("{:?}", parsed.0), "{shown}");
            // Validation on a built tape does not look for a name given twice.
            assert_eq!(repeated_name(&built), None, "{shown}");
        }
        None => assert!(bytes_in, "no tape for {shown}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn the_built_tape_is_simd_jsons_parse_of_the_payload(
        record in log_record(),
        resource in attributes(),
        scope in prop::option::of((text(), text())),
    ) {
        check(&record, &resource, scope.as_ref().map(|(n, v)| (n.as_str(), v.as_str())));
    }
}

#[test]
fn an_empty_record_and_edge_numbers() {
    check(&LogRecord::default(), &[], None);
    let record = LogRecord {
        severity_number: i32::MIN,
        time_unix_nano: u64::MAX,
        observed_time_unix_nano: i64::MAX as u64,
        ..LogRecord::default()
    };
    check(&record, &[], Some(("", "")));
}
