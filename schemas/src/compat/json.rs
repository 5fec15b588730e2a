//! JSON Schema compatibility: does a reader schema accept everything a writer schema accepts?
//!
//! Compared keywords: `type`, `required`, `properties` (recursively), `items` (when a schema),
//! `additionalProperties: false`, `enum`/`const`, numeric, length and size bounds, `pattern`.
//! Composition keywords (`$ref`, `allOf`, `anyOf`, `oneOf`, `not`, `if`) are not compared.

use serde_json::{Map, Value};

use super::{Direction, Pair, directions};
use crate::registry::Compatibility;

/// Keywords whose reader value must not be higher than the writer's.
const LOWER_BOUNDS: [&str; 5] = [
    "minimum",
    "exclusiveMinimum",
    "minLength",
    "minItems",
    "minProperties",
];
/// Keywords whose reader value must not be lower than the writer's.
const UPPER_BOUNDS: [&str; 5] = [
    "maximum",
    "exclusiveMaximum",
    "maxLength",
    "maxItems",
    "maxProperties",
];

/// Every violation of `mode` between `old` and `new`, one line each.
pub(crate) fn check(old: &Value, new: &Value, mode: Compatibility, pair: Pair<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for &direction in directions(mode) {
        let (writer, reader, labels) = match direction {
            Direction::Backward => (
                old,
                new,
                Labels {
                    writer: pair.old,
                    reader: pair.new,
                },
            ),
            Direction::Forward => (
                new,
                old,
                Labels {
                    writer: pair.new,
                    reader: pair.old,
                },
            ),
        };
        let mut found = Vec::new();
        compare(writer, reader, "payload", labels, &mut found);
        out.extend(
            found
                .into_iter()
                .map(|m| format!("not {} compatible: {m}", direction.name())),
        );
    }
    out
}

#[derive(Clone, Copy)]
struct Labels<'a> {
    writer: &'a str,
    reader: &'a str,
}

fn compare(writer: &Value, reader: &Value, path: &str, l: Labels<'_>, out: &mut Vec<String>) {
    let (Some(w), Some(r)) = (writer.as_object(), reader.as_object()) else {
        if reader == &Value::Bool(false) && writer != &Value::Bool(false) {
            out.push(format!(
                "{path}: {} forbids a value that {} allows",
                l.reader, l.writer
            ));
        }
        return;
    };
    compare_types(w, r, path, l, out);
    compare_enums(w, r, path, l, out);
    compare_bounds(w, r, path, l, out);
    if let Some(pattern) = r.get("pattern")
        && w.get("pattern") != Some(pattern)
    {
        out.push(format!(
            "{path}: {} adds pattern {pattern} that {} lacks",
            l.reader, l.writer
        ));
    }
    compare_required(w, r, path, l, out);
    compare_properties(w, r, path, l, out);
    if let (Some(wi), Some(ri)) = (w.get("items"), r.get("items")) {
        compare(wi, ri, &format!("{path}[]"), l, out);
    }
}

fn type_set(schema: &Map<String, Value>) -> Option<Vec<&str>> {
    match schema.get("type")? {
        Value::String(t) => Some(vec![t.as_str()]),
        Value::Array(ts) => Some(ts.iter().filter_map(Value::as_str).collect()),
        _ => None,
    }
}

fn compare_types(
    w: &Map<String, Value>,
    r: &Map<String, Value>,
    path: &str,
    l: Labels<'_>,
    out: &mut Vec<String>,
) {
    let Some(reader_types) = type_set(r) else {
        return;
    };
    let Some(writer_types) = type_set(w) else {
        out.push(format!(
            "{path}: {} restricts the type to {reader_types:?} where {} allows any type",
            l.reader, l.writer
        ));
        return;
    };
    for t in writer_types {
        let accepted =
            reader_types.contains(&t) || (t == "integer" && reader_types.contains(&"number"));
        if !accepted {
            out.push(format!(
                "{path}: {} does not accept type \"{t}\" that {} allows",
                l.reader, l.writer
            ));
        }
    }
}

fn enum_values(schema: &Map<String, Value>) -> Option<Vec<&Value>> {
    if let Some(c) = schema.get("const") {
        return Some(vec![c]);
    }
    schema.get("enum")?.as_array().map(|vs| vs.iter().collect())
}

fn compare_enums(
    w: &Map<String, Value>,
    r: &Map<String, Value>,
    path: &str,
    l: Labels<'_>,
    out: &mut Vec<String>,
) {
    let Some(reader_values) = enum_values(r) else {
        return;
    };
    let Some(writer_values) = enum_values(w) else {
        out.push(format!(
            "{path}: {} adds an enum that {} does not have",
            l.reader, l.writer
        ));
        return;
    };
    for v in writer_values {
        if !reader_values.contains(&v) {
            out.push(format!(
                "{path}: {} does not accept enum value {v} that {} allows",
                l.reader, l.writer
            ));
        }
    }
}

fn compare_bounds(
    w: &Map<String, Value>,
    r: &Map<String, Value>,
    path: &str,
    l: Labels<'_>,
    out: &mut Vec<String>,
) {
    let bounds = LOWER_BOUNDS
        .iter()
        .map(|k| (k, true))
        .chain(UPPER_BOUNDS.iter().map(|k| (k, false)));
    for (keyword, lower) in bounds {
        let Some(reader_bound) = r.get(*keyword).and_then(Value::as_f64) else {
            continue;
        };
        let narrower = match w.get(*keyword).and_then(Value::as_f64) {
            None => true,
            Some(writer_bound) if lower => reader_bound > writer_bound,
            Some(writer_bound) => reader_bound < writer_bound,
        };
        if narrower {
            let was = w
                .get(*keyword)
                .map_or_else(|| "none".to_owned(), Value::to_string);
            out.push(format!(
                "{path}: {keyword} is {} in {} but {was} in {}",
                r[*keyword], l.reader, l.writer
            ));
        }
    }
}

fn required(schema: &Map<String, Value>) -> Vec<&str> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn compare_required(
    w: &Map<String, Value>,
    r: &Map<String, Value>,
    path: &str,
    l: Labels<'_>,
    out: &mut Vec<String>,
) {
    let writer_required = required(w);
    for name in required(r) {
        if !writer_required.contains(&name) {
            out.push(format!(
                "{path}: property \"{name}\" is required in {} but not in {}",
                l.reader, l.writer
            ));
        }
    }
}

fn compare_properties(
    w: &Map<String, Value>,
    r: &Map<String, Value>,
    path: &str,
    l: Labels<'_>,
    out: &mut Vec<String>,
) {
    let empty = Map::new();
    let wp = w
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let rp = r
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let reader_closed = r.get("additionalProperties") == Some(&Value::Bool(false));
    let writer_closed = w.get("additionalProperties") == Some(&Value::Bool(false));
    for (name, writer_schema) in wp {
        match rp.get(name) {
            Some(reader_schema) => {
                compare(writer_schema, reader_schema, &format!("{path}.{name}"), l, out);
            }
            None if reader_closed => out.push(format!(
                "{path}: property \"{name}\" of {} is missing from {}, which forbids additional properties",
                l.writer, l.reader
            )),
            None => {}
        }
    }
    if reader_closed && !writer_closed {
        out.push(format!(
            "{path}: {} forbids additional properties that {} allows",
            l.reader, l.writer
        ));
    }
}

#[cfg(test)]
#[path = "json_tests.rs"]
mod tests;
