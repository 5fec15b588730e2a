//! Descriptors and generators for the wire check's tests: the schemas checked against, random
//! messages, near-valid wire bytes and their mutations, an OTLP logs request.

use std::collections::HashMap;
use std::sync::OnceLock;

use bytes::Bytes;
use prost::Message;
use prost::encoding::{WireType, encode_varint};
use prost_reflect::{DynamicMessage, Kind, MapKey, MessageDescriptor, Value};

use super::packable;
use crate::proto_compile;

/// Strings, bytes, packed and unpacked numbers of every kind, nested and recursive messages, a
/// oneof, maps (one of message values), an enum.
const RICH: &str = r#"syntax = "proto3";
package t.rich;
enum Color { RED = 0; GREEN = 1; BLUE = 2; }
message Rich {
  string name = 1;
  bytes blob = 2;
  repeated int32 ints = 3;
  repeated sint64 sints = 4 [packed = false];
  repeated fixed32 fixed32s = 5;
  repeated double doubles = 6;
  fixed64 f64 = 7;
  sint32 s32 = 8;
  float ratio = 9;
  double amount = 10;
  Color color = 11;
  repeated Color colors = 12;
  bool flag = 13;
  Rich child = 14;
  repeated Rich children = 15;
  oneof choice {
    string text = 16;
    Inner inner = 17;
    int64 number = 18;
  }
  map<string, Inner> by_name = 19;
  map<int32, string> labels = 20;
  repeated string tags = 21;
  sfixed32 sf32 = 22;
  sfixed64 sf64 = 23;
  uint64 u64 = 24;
  int64 i64 = 25;
  repeated bool bools = 26;
  optional uint32 maybe = 27;
  map<bool, Color> by_flag = 28;
  repeated float floats = 29;
  repeated bytes blobs = 30;
  map<fixed64, Rich> by_id = 31;
  message Inner {
    string label = 1;
    repeated float xs = 2;
    Rich back = 3;
  }
}
"#;

/// proto2: groups (singular and repeated, one holding a message that holds the group again),
/// unpacked and packed numbers, extensions.
const LEGACY: &str = r#"syntax = "proto2";
package t.legacy;
message Old {
  optional int32 id = 1;
  optional group Item = 2 {
    optional string name = 3;
    optional Old nested = 4;
  }
  repeated group Entry = 5 {
    required int64 value = 6;
  }
  repeated int32 unpacked = 7;
  repeated int32 packed = 8 [packed = true];
  optional string text = 9;
  optional bytes raw = 10;
  extensions 100 to 199;
}
extend Old {
  optional string note = 100;
  repeated fixed32 marks = 101;
  optional Old again = 102;
}
"#;

/// Message `name` of `text` (file `file`), compiled by the crate's compiler.
fn compiled(file: &str, text: &str, name: &str) -> MessageDescriptor {
    let pool = proto_compile::compile(file, text).unwrap_or_else(|p| panic!("{file}: {p:?}"));
    pool.get_message_by_name(name).unwrap()
}

/// Message `name` of the shipped schema `file` of `events/`.
fn shipped(file: &str, name: &str) -> MessageDescriptor {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("events")
        .join(file);
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{file}: {e}"));
    compiled(file, &text, name)
}

pub(super) fn telemetry() -> &'static MessageDescriptor {
    &descriptors()[0]
}

pub(super) fn rich() -> &'static MessageDescriptor {
    &descriptors()[1]
}

pub(super) fn legacy() -> &'static MessageDescriptor {
    &descriptors()[2]
}

pub(super) fn otlp() -> &'static MessageDescriptor {
    &descriptors()[3]
}

/// The package of the shipped `otel.logs` schema (OpenTelemetry's logs messages).
const OTLP_PACKAGE: &str = "headwater.events.otel.v1";

/// Every descriptor the properties run over: `device.telemetry` and `otel.logs` as shipped,
/// [`RICH`] and [`LEGACY`].
pub(super) fn descriptors() -> &'static [MessageDescriptor] {
    static ALL: OnceLock<Vec<MessageDescriptor>> = OnceLock::new();
    ALL.get_or_init(|| {
        vec![
            shipped(
                "device.telemetry.v1.proto",
                "headwater.events.device.v1.Telemetry",
            ),
            compiled("rich.proto", RICH, "t.rich.Rich"),
            compiled("legacy.proto", LEGACY, "t.legacy.Old"),
            shipped(
                "otel.logs.v1.proto",
                &format!("{OTLP_PACKAGE}.ExportLogsServiceRequest"),
            ),
        ]
    })
}

/// Choices read off a byte string, zero once it runs out (so every generator ends).
pub(super) struct Entropy<'a>(pub(super) &'a [u8]);

impl Entropy<'_> {
    pub(super) fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&first, rest)) => {
                self.0 = rest;
                first
            }
            None => 0,
        }
    }

    /// 0 to `n - 1` (`n` > 0).
    pub(super) fn below(&mut self, n: usize) -> usize {
        usize::from(self.byte()) % n
    }

    /// A number of 0 to 8 random bytes: small ones often, all 64 bits sometimes.
    pub(super) fn number(&mut self) -> u64 {
        (0..self.below(9)).fold(0, |n, _| n << 8 | u64::from(self.byte()))
    }

    pub(super) fn bytes(&mut self) -> Vec<u8> {
        (0..self.below(6)).map(|_| self.byte()).collect()
    }

    /// Short text, multi-byte characters included.
    pub(super) fn text(&mut self) -> String {
        let chars = ['a', 'Z', 'é', '中', '😀', '\0'];
        (0..self.below(6))
            .map(|_| chars[self.below(chars.len())])
            .collect()
    }
}

/// A random message of `desc`, at most 4 levels deep.
pub(super) fn random_message(
    e: &mut Entropy<'_>,
    desc: &MessageDescriptor,
    depth: u32,
) -> DynamicMessage {
    let mut message = DynamicMessage::new(desc.clone());
    for field in desc.fields() {
        if e.below(3) != 0 {
            continue;
        }
        let kind = field.kind();
        let value = if field.is_map() {
            let Kind::Message(entry) = &kind else {
                unreachable!()
            };
            let key_kind = entry.map_entry_key_field().kind();
            let value_kind = entry.map_entry_value_field().kind();
            let map: HashMap<MapKey, Value> = (0..e.below(4))
                .map(|_| {
                    let key = random_key(e, &key_kind);
                    (key, random_value(e, &value_kind, depth))
                })
                .collect();
            Value::Map(map)
        } else if field.is_list() {
            Value::List(
                (0..e.below(4))
                    .map(|_| random_value(e, &kind, depth))
                    .collect(),
            )
        } else {
            random_value(e, &kind, depth)
        };
        message.set_field(&field, value);
    }
    for ext in desc.extensions() {
        if e.below(3) == 0 {
            let kind = ext.kind();
            let value = if ext.is_list() {
                Value::List(vec![random_value(e, &kind, depth)])
            } else {
                random_value(e, &kind, depth)
            };
            message.set_extension(&ext, value);
        }
    }
    message
}

fn random_value(e: &mut Entropy<'_>, kind: &Kind, depth: u32) -> Value {
    let n = e.number();
    match kind {
        Kind::Double => Value::F64(f64::from_bits(n)),
        Kind::Float => Value::F32(f32::from_bits(n as u32)),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(n as i32),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(n as i64),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(n as u32),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(n),
        Kind::Bool => Value::Bool(n & 1 == 1),
        Kind::String => Value::String(e.text()),
        Kind::Bytes => Value::Bytes(Bytes::from(e.bytes())),
        Kind::Enum(_) => Value::EnumNumber(n as i32),
        Kind::Message(m) if depth >= 4 => Value::Message(DynamicMessage::new(m.clone())),
        Kind::Message(m) => Value::Message(random_message(e, m, depth + 1)),
    }
}

fn random_key(e: &mut Entropy<'_>, kind: &Kind) -> MapKey {
    let n = e.number();
    match kind {
        Kind::Bool => MapKey::Bool(n & 1 == 1),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => MapKey::I32(n as i32),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => MapKey::I64(n as i64),
        Kind::Uint32 | Kind::Fixed32 => MapKey::U32(n as u32),
        Kind::Uint64 | Kind::Fixed64 => MapKey::U64(n),
        _ => MapKey::String(e.text()),
    }
}

/// What the generator puts inside a length-delimited field or a group.
enum Inside {
    /// Fields of a message.
    Message(MessageDescriptor),
    /// Unknown fields.
    Unknown,
    /// Packed numbers of a wire type.
    Packed(WireType),
    /// Text, sometimes not UTF-8.
    Text,
    /// Anything.
    Raw,
}

/// Wire bytes for `desc` (or unknown fields): mostly well-formed, known fields mostly in their
/// own wire type, with wrong wire types, odd lengths, bad end-groups and bad keys mixed in.
pub(super) fn tokens(
    e: &mut Entropy<'_>,
    desc: Option<&MessageDescriptor>,
    depth: u32,
    out: &mut Vec<u8>,
) {
    let known: Vec<_> = desc.map(|d| d.fields().collect()).unwrap_or_default();
    for _ in 0..e.below(6) {
        if !known.is_empty() && e.below(4) != 0 {
            let field = &known[e.below(known.len())];
            let kind = field.kind();
            let (wire, inside) = match &kind {
                _ if field.is_group() => (3, inside_of(&kind)),
                k if field.is_list() && packable(k) && e.below(2) == 0 => {
                    (2, Inside::Packed(k.wire_type()))
                }
                k => (k.wire_type() as u8, inside_of(k)),
            };
            let wire = if e.below(12) == 0 {
                e.below(8) as u8
            } else {
                wire
            };
            one_field(e, field.number(), wire, inside, depth, out);
        } else {
            let number = [1, 2, 3, 7, 15, 16, 99, 2047, 536_870_911][e.below(9)];
            let wire = if e.below(16) == 0 {
                6 + e.below(2) as u8
            } else {
                e.below(6) as u8
            };
            let inside = match e.below(3) {
                0 => Inside::Raw,
                _ => Inside::Unknown,
            };
            one_field(e, number, wire, inside, depth, out);
        }
    }
}

fn inside_of(kind: &Kind) -> Inside {
    match kind {
        Kind::Message(m) => Inside::Message(m.clone()),
        Kind::String => Inside::Text,
        _ => Inside::Raw,
    }
}

/// One field: its key and a value of wire type `wire`.
fn one_field(
    e: &mut Entropy<'_>,
    number: u32,
    wire: u8,
    inside: Inside,
    depth: u32,
    out: &mut Vec<u8>,
) {
    if e.below(64) == 0 {
        // A key beyond 32 bits, or of field 0.
        encode_varint(
            [1 << 32 | u64::from(wire), u64::from(wire)][e.below(2)],
            out,
        );
        return;
    }
    encode_varint(u64::from(number) << 3 | u64::from(wire), out);
    match wire {
        0 => encode_varint(e.number(), out),
        1 => out.extend((0..8).map(|_| e.byte())),
        5 => out.extend((0..4).map(|_| e.byte())),
        2 => {
            let mut body = Vec::new();
            match inside {
                Inside::Message(m) if depth < 5 => tokens(e, Some(&m), depth + 1, &mut body),
                Inside::Unknown if depth < 5 => tokens(e, None, depth + 1, &mut body),
                Inside::Packed(WireType::Varint) => {
                    (0..e.below(4)).for_each(|_| encode_varint(e.number(), &mut body))
                }
                Inside::Packed(WireType::ThirtyTwoBit) => body.extend(e.bytes().repeat(4)),
                Inside::Packed(_) => body.extend(e.bytes().repeat(8)),
                Inside::Text if e.below(8) == 0 => body.extend([0xc3, 0x28]),
                Inside::Text => body.extend(e.text().bytes()),
                _ => body.extend(e.bytes()),
            }
            let len = match e.below(16) {
                0 => body.len() + 1,
                1 => body.len().saturating_sub(1),
                _ => body.len(),
            };
            encode_varint(len as u64, out);
            out.extend(body);
        }
        3 => {
            if depth < 5 {
                match inside {
                    Inside::Message(m) => tokens(e, Some(&m), depth + 1, out),
                    _ => tokens(e, None, depth + 1, out),
                }
            }
            let end = if e.below(16) == 0 { number + 1 } else { number };
            encode_varint(u64::from(end) << 3 | 4, out);
        }
        _ => {}
    }
}

/// Byte flips, interesting bytes, truncations, insertions, deletions and repeats.
pub(super) fn mutate(e: &mut Entropy<'_>, bytes: &mut Vec<u8>) {
    const INTERESTING: [u8; 10] = [0x00, 0x7f, 0x80, 0xff, 0x03, 0x04, 0x06, 0x07, 0x0b, 0x0c];
    for _ in 0..e.below(4) {
        let at = e.below(bytes.len() + 1);
        match e.below(6) {
            0 if at < bytes.len() => bytes[at] ^= 1 << e.below(8),
            1 if at < bytes.len() => bytes[at] = INTERESTING[e.below(INTERESTING.len())],
            2 => bytes.truncate(at),
            3 => bytes.insert(at, e.byte()),
            4 => {
                let end = (at + 1 + e.below(4)).min(bytes.len());
                bytes.drain(at.min(end)..end);
            }
            _ => {
                let tail = bytes[at..].to_vec();
                bytes.extend(tail);
            }
        }
    }
}

pub(super) fn pick(which: usize) -> &'static MessageDescriptor {
    let all = descriptors();
    &all[which % all.len()]
}

/// An OTLP logs export of `records` log records, 4 attributes each, of one resource and scope.
pub(super) fn otlp_request(records: usize) -> Vec<u8> {
    let desc = otlp();
    let pool = desc.parent_pool();
    let message = |name: &str| {
        DynamicMessage::new(
            pool.get_message_by_name(&format!("{OTLP_PACKAGE}.{name}"))
                .unwrap(),
        )
    };
    let text = |s: String| {
        let mut any = message("AnyValue");
        any.set_field_by_name("string_value", Value::String(s));
        Value::Message(any)
    };
    let attribute = |k: &str, v: String| {
        let mut kv = message("KeyValue");
        kv.set_field_by_name("key", Value::String(k.to_owned()));
        kv.set_field_by_name("value", text(v));
        Value::Message(kv)
    };
    let log = |i: usize| {
        let mut record = message("LogRecord");
        record.set_field_by_name("time_unix_nano", Value::U64(1_700_000_000_000_000_000));
        record.set_field_by_name(
            "observed_time_unix_nano",
            Value::U64(1_700_000_000_000_000_100),
        );
        record.set_field_by_name("severity_number", Value::EnumNumber(9));
        record.set_field_by_name("severity_text", Value::String("INFO".to_owned()));
        let body = format!("request {i} served in 12 ms: GET /api/v1/titles/{i} 200 OK");
        record.set_field_by_name("body", text(body));
        let attributes = vec![
            attribute("http.method", "GET".to_owned()),
            attribute("http.route", "/api/v1/titles/{id}".to_owned()),
            attribute("user.id", format!("user-{i:08}")),
            attribute("session.id", format!("{i:032x}")),
        ];
        record.set_field_by_name("attributes", Value::List(attributes));
        record.set_field_by_name("trace_id", Value::Bytes(Bytes::from(vec![7; 16])));
        record.set_field_by_name("span_id", Value::Bytes(Bytes::from(vec![9; 8])));
        Value::Message(record)
    };
    let mut resource = message("Resource");
    let resource_attributes = vec![
        attribute("service.name", "playback-api".to_owned()),
        attribute("host.name", "edge-17".to_owned()),
    ];
    resource.set_field_by_name("attributes", Value::List(resource_attributes));
    let mut scope = message("ScopeLogs");
    scope.set_field_by_name("log_records", Value::List((0..records).map(log).collect()));
    let mut resource_logs = message("ResourceLogs");
    resource_logs.set_field_by_name("resource", Value::Message(resource));
    resource_logs.set_field_by_name("scope_logs", Value::List(vec![Value::Message(scope)]));
    let mut request = DynamicMessage::new(desc.clone());
    request.set_field_by_name(
        "resource_logs",
        Value::List(vec![Value::Message(resource_logs)]),
    );
    request.encode_to_vec()
}
