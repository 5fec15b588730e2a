//! Unit tests of the JSON Schema compatibility rules, each in both directions.

use serde_json::{Value, json};

use super::check;
use crate::compat::Pair;
use crate::registry::Compatibility::{self, Backward, Forward, Full, None as NoCheck};

const PAIR: Pair<'static> = Pair {
    old: "v1",
    new: "v2",
};

fn violations(old: &Value, new: &Value, mode: Compatibility) -> Vec<String> {
    check(old, new, mode, PAIR)
}

/// Asserts which directions break: `(backward_breaks, forward_breaks)`.
fn assert_breaks(old: Value, new: Value, backward: bool, forward: bool) {
    let b = violations(&old, &new, Backward);
    let f = violations(&old, &new, Forward);
    assert_eq!(
        !b.is_empty(),
        backward,
        "backward: {b:?}\nold {old}\nnew {new}"
    );
    assert_eq!(
        !f.is_empty(),
        forward,
        "forward: {f:?}\nold {old}\nnew {new}"
    );
    let full = violations(&old, &new, Full);
    assert_eq!(full.len(), b.len() + f.len());
    assert!(violations(&old, &new, NoCheck).is_empty());
}

fn object(props: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": props, "required": required})
}

#[test]
fn identical_schemas_are_compatible() {
    let s = object(json!({"a": {"type": "string"}}), &["a"]);
    assert_breaks(s.clone(), s, false, false);
}

#[test]
fn new_required_property_breaks_backward_only() {
    let old = object(json!({"a": {"type": "string"}}), &[]);
    let new = object(json!({"a": {"type": "string"}}), &["a"]);
    assert_breaks(old.clone(), new.clone(), true, false);
    let msg = &violations(&old, &new, Backward)[0];
    assert_eq!(
        msg,
        "not backward compatible: payload: property \"a\" is required in v2 but not in v1"
    );
    // Dropping a requirement is the mirror image.
    assert_breaks(new, old, false, true);
}

#[test]
fn added_optional_property_is_compatible_both_ways() {
    let old = object(json!({"a": {"type": "string"}}), &["a"]);
    let new = object(
        json!({"a": {"type": "string"}, "b": {"type": "integer"}}),
        &["a"],
    );
    assert_breaks(old, new, false, false);
}

#[test]
fn type_narrowing_breaks_backward_widening_breaks_forward() {
    let number = object(json!({"x": {"type": "number"}}), &[]);
    let integer = object(json!({"x": {"type": "integer"}}), &[]);
    assert_breaks(number.clone(), integer.clone(), true, false);
    assert_breaks(integer, number, false, true);
    let string = object(json!({"x": {"type": "string"}}), &[]);
    let either = object(json!({"x": {"type": ["string", "null"]}}), &[]);
    assert_breaks(string.clone(), either.clone(), false, true);
    assert_breaks(either, string, true, false);
}

#[test]
fn type_change_breaks_both() {
    let old = object(json!({"x": {"type": "string"}}), &[]);
    let new = object(json!({"x": {"type": "integer"}}), &[]);
    assert_breaks(old.clone(), new.clone(), true, true);
    let msg = &violations(&old, &new, Backward)[0];
    assert!(
        msg.contains("payload.x: v2 does not accept type \"string\" that v1 allows"),
        "{msg}"
    );
}

#[test]
fn adding_a_type_where_there_was_none_narrows() {
    let old = object(json!({"x": {}}), &[]);
    let new = object(json!({"x": {"type": "string"}}), &[]);
    assert_breaks(old, new, true, false);
}

#[test]
fn enum_value_removed_breaks_backward_added_breaks_forward() {
    let old = object(json!({"e": {"enum": ["a", "b"]}}), &[]);
    let new = object(json!({"e": {"enum": ["a"]}}), &[]);
    assert_breaks(old.clone(), new.clone(), true, false);
    assert_breaks(new, old, false, true);
    let open = object(json!({"e": {"type": "string"}}), &[]);
    let closed = object(json!({"e": {"type": "string", "const": "a"}}), &[]);
    assert_breaks(open, closed, true, false);
}

#[test]
fn raised_minimum_breaks_backward_lowered_breaks_forward() {
    let zero = object(json!({"n": {"type": "integer", "minimum": 0}}), &[]);
    let ten = object(json!({"n": {"type": "integer", "minimum": 10}}), &[]);
    assert_breaks(zero.clone(), ten.clone(), true, false);
    assert_breaks(ten, zero.clone(), false, true);
    let unbounded = object(json!({"n": {"type": "integer"}}), &[]);
    assert_breaks(unbounded.clone(), zero.clone(), true, false);
    assert_breaks(zero, unbounded, false, true);
}

#[test]
fn lowered_maximum_breaks_backward_raised_breaks_forward() {
    let high = object(json!({"s": {"type": "string", "maxLength": 64}}), &[]);
    let low = object(json!({"s": {"type": "string", "maxLength": 8}}), &[]);
    assert_breaks(high.clone(), low.clone(), true, false);
    assert_breaks(low, high, false, true);
    let hi = object(json!({"n": {"type": "number", "maximum": 100}}), &[]);
    let lo = object(
        json!({"n": {"type": "number", "exclusiveMaximum": 50, "maximum": 50}}),
        &[],
    );
    assert_breaks(hi, lo, true, false);
}

#[test]
fn removed_property_with_closed_schema_breaks_backward() {
    let closed = |props: Value| json!({"type": "object", "properties": props, "additionalProperties": false});
    let old = closed(json!({"a": {"type": "string"}, "b": {"type": "string"}}));
    let new = closed(json!({"a": {"type": "string"}}));
    assert_breaks(old.clone(), new.clone(), true, false);
    // Adding an optional property to a closed schema breaks forward.
    assert_breaks(new, old, false, true);
    // With an open new schema the removal is fine.
    let open = object(json!({"a": {"type": "string"}}), &[]);
    let old_closed = closed(json!({"a": {"type": "string"}, "b": {"type": "string"}}));
    assert_breaks(old_closed, open, false, true);
}

#[test]
fn closing_an_open_schema_breaks_backward() {
    let open = object(json!({"a": {"type": "string"}}), &[]);
    let mut closed = open.clone();
    closed["additionalProperties"] = json!(false);
    assert_breaks(open, closed, true, false);
}

#[test]
fn added_pattern_breaks_backward() {
    let old = object(json!({"s": {"type": "string"}}), &[]);
    let new = object(json!({"s": {"type": "string", "pattern": "^[a-z]+$"}}), &[]);
    assert_breaks(old, new, true, false);
}

#[test]
fn nested_objects_and_items_are_compared() {
    let old = object(
        json!({"o": {"type": "object", "properties": {"n": {"type": "integer"}}},
               "l": {"type": "array", "items": {"type": "integer"}}}),
        &[],
    );
    let new = object(
        json!({"o": {"type": "object", "properties": {"n": {"type": "string"}}},
               "l": {"type": "array", "items": {"type": "integer", "minimum": 1}}}),
        &[],
    );
    let found = violations(&old, &new, Backward);
    assert!(
        found.iter().any(|m| m.contains("payload.o.n:")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|m| m.contains("payload.l[]: minimum is 1 in v2 but none in v1")),
        "{found:?}"
    );
}
