//! Protobuf compatibility between two versions of an event's message.
//!
//! Rules (the same in both directions, so backward, forward and full check them once):
//! a field number keeps its type (scalar kind, message or enum name) and its cardinality
//! (singular, repeated, map); a removed field's number must be reserved in the new version; a
//! new field must not use a number the old version reserved. Message-typed fields whose type
//! keeps its name are compared recursively.

use std::collections::HashSet;

use prost_reflect::{Cardinality, FieldDescriptor, Kind, MessageDescriptor};

use super::Pair;
use crate::registry::Compatibility;

/// Every violation between the `old` and `new` message under `mode`, one line each.
pub(crate) fn check(
    old: &MessageDescriptor,
    new: &MessageDescriptor,
    mode: Compatibility,
    pair: Pair<'_>,
) -> Vec<String> {
    let mut out = Vec::new();
    if mode != Compatibility::None {
        let mut seen = HashSet::new();
        compare(old, new, pair, &mut seen, &mut out);
    }
    out
}

fn compare(
    old: &MessageDescriptor,
    new: &MessageDescriptor,
    pair: Pair<'_>,
    seen: &mut HashSet<(String, String)>,
    out: &mut Vec<String>,
) {
    if !seen.insert((old.full_name().to_owned(), new.full_name().to_owned())) {
        return;
    }
    let message = new.name();
    for old_field in old.fields() {
        let number = old_field.number();
        match new.get_field(number) {
            Some(new_field) => {
                let (was, now) = (type_name(&old_field), type_name(&new_field));
                if was != now {
                    let reused = if old_field.name() == new_field.name() {
                        String::new()
                    } else {
                        format!(" (reused: \"{}\" became \"{}\")", old_field.name(), new_field.name())
                    };
                    out.push(format!(
                        "{message}: field {number} changed type from {was} in {} to {now} in {}{reused}",
                        pair.old, pair.new
                    ));
                } else if let (Kind::Message(o), Kind::Message(n)) = (old_field.kind(), new_field.kind())
                {
                    compare(&o, &n, pair, seen, out);
                }
            }
            None if !is_reserved(new, number) => out.push(format!(
                "{message}: field {number} \"{}\" of {} was removed in {} without reserving its number",
                old_field.name(),
                pair.old,
                pair.new
            )),
            None => {}
        }
    }
    for new_field in new.fields() {
        if old.get_field(new_field.number()).is_none() && is_reserved(old, new_field.number()) {
            out.push(format!(
                "{message}: field {} \"{}\" of {} uses a number reserved in {}",
                new_field.number(),
                new_field.name(),
                pair.new,
                pair.old
            ));
        }
    }
}

fn is_reserved(message: &MessageDescriptor, number: u32) -> bool {
    message.reserved_ranges().any(|r| r.contains(&number))
}

/// `int32`, `repeated string`, `map<string, int64>`, `pkg.Msg`, `enum pkg.E`.
fn type_name(field: &FieldDescriptor) -> String {
    if field.is_map()
        && let Kind::Message(entry) = field.kind()
    {
        let key = entry.map_entry_key_field();
        let value = entry.map_entry_value_field();
        return format!(
            "map<{}, {}>",
            kind_name(&key.kind()),
            kind_name(&value.kind())
        );
    }
    let base = kind_name(&field.kind());
    match field.cardinality() {
        Cardinality::Repeated => format!("repeated {base}"),
        _ => base,
    }
}

fn kind_name(kind: &Kind) -> String {
    let scalar = match kind {
        Kind::Double => "double",
        Kind::Float => "float",
        Kind::Int32 => "int32",
        Kind::Int64 => "int64",
        Kind::Uint32 => "uint32",
        Kind::Uint64 => "uint64",
        Kind::Sint32 => "sint32",
        Kind::Sint64 => "sint64",
        Kind::Fixed32 => "fixed32",
        Kind::Fixed64 => "fixed64",
        Kind::Sfixed32 => "sfixed32",
        Kind::Sfixed64 => "sfixed64",
        Kind::Bool => "bool",
        Kind::String => "string",
        Kind::Bytes => "bytes",
        Kind::Message(m) => return m.full_name().to_owned(),
        Kind::Enum(e) => return format!("enum {}", e.full_name()),
    };
    scalar.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto_compile;

    fn message(body: &str) -> MessageDescriptor {
        let text = format!("syntax = \"proto3\";\npackage t;\n{body}\n");
        let pool = proto_compile::compile("t.v1.proto", &text).unwrap();
        pool.get_message_by_name("t.M").unwrap()
    }

    fn violations(old: &str, new: &str, mode: Compatibility) -> Vec<String> {
        check(
            &message(old),
            &message(new),
            mode,
            Pair {
                old: "v1",
                new: "v2",
            },
        )
    }

    /// Asserts the same verdict for backward, forward and full, and none for `none`.
    fn assert_both_ways(old: &str, new: &str, broken: bool) -> Vec<String> {
        let found = violations(old, new, Compatibility::Backward);
        assert_eq!(!found.is_empty(), broken, "{found:?}");
        for mode in [Compatibility::Forward, Compatibility::Full] {
            assert_eq!(violations(old, new, mode), found);
        }
        assert!(violations(old, new, Compatibility::None).is_empty());
        found
    }

    #[test]
    fn added_field_is_compatible() {
        assert_both_ways(
            "message M { int32 a = 1; }",
            "message M { int32 a = 1; string b = 2; }",
            false,
        );
    }

    #[test]
    fn changed_type_breaks() {
        let found = assert_both_ways(
            "message M { int32 a = 1; }",
            "message M { string a = 1; }",
            true,
        );
        assert_eq!(
            found,
            ["M: field 1 changed type from int32 in v1 to string in v2"]
        );
        assert_both_ways(
            "message M { int32 a = 1; }",
            "message M { repeated int32 a = 1; }",
            true,
        );
        assert_both_ways(
            "message M { map<string, int32> a = 1; }",
            "message M { map<string, int64> a = 1; }",
            true,
        );
    }

    #[test]
    fn reused_number_breaks() {
        let found = assert_both_ways(
            "message M { int32 a = 1; }",
            "message M { string b = 1; }",
            true,
        );
        assert!(found[0].contains("reused: \"a\" became \"b\""), "{found:?}");
        // Renaming with the same type is wire compatible.
        assert_both_ways(
            "message M { int32 a = 1; }",
            "message M { int32 b = 1; }",
            false,
        );
    }

    #[test]
    fn removed_field_must_be_reserved() {
        let found = assert_both_ways(
            "message M { int32 a = 1; int32 b = 2; }",
            "message M { int32 a = 1; }",
            true,
        );
        assert!(
            found[0].contains("field 2 \"b\" of v1 was removed in v2 without reserving"),
            "{found:?}"
        );
        assert_both_ways(
            "message M { int32 a = 1; int32 b = 2; }",
            "message M { int32 a = 1; reserved 2; reserved \"b\"; }",
            false,
        );
    }

    #[test]
    fn reserved_number_must_not_come_back() {
        let found = assert_both_ways(
            "message M { int32 a = 1; reserved 2 to 4; }",
            "message M { int32 a = 1; string c = 3; }",
            true,
        );
        assert!(
            found[0].contains("uses a number reserved in v1"),
            "{found:?}"
        );
    }

    #[test]
    fn nested_messages_are_compared() {
        let found = assert_both_ways(
            "message M { N n = 1; } message N { int32 x = 1; }",
            "message M { N n = 1; } message N { bool x = 1; }",
            true,
        );
        assert_eq!(
            found,
            ["N: field 1 changed type from int32 in v1 to bool in v2"]
        );
    }
}
