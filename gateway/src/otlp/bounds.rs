//! Sizing an OTLP export request on its encoded form, before prost or serde decode it: how many
//! log records it holds and about how much memory its decoded form takes. An empty element
//! costs 2 bytes of protobuf (`0a 00`) or 3 of JSON (`{},`) and a whole struct once decoded
//! (up to 184 bytes), so a body within `max_decompressed_bytes` can decode to gigabytes.
//!
//! The estimate is the encoded size (strings and bytes are decoded into at most that much) plus
//! the struct of every element of a repeated field. Protobuf is walked along the OTLP logs
//! schema ([`wire::Fields`], nothing decoded); JSON is scanned for its arrays, each element of
//! an array costing the largest struct the array's key can hold.

use std::mem::size_of;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;

use crate::decode::wire::{Fields, Value};

/// Deepest nesting walked; prost and serde_json refuse deeper messages themselves.
const MAX_DEPTH: usize = 128;

/// What an export request will take once decoded, measured on its encoded form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Size {
    /// Log records in the request.
    pub(super) records: u64,
    /// Estimated bytes of the decoded request.
    pub(super) decoded_bytes: u64,
}

/// The most a body can take once decoded, per encoded byte: the encoded bytes themselves plus
/// the largest struct for every 2 bytes (an empty element, the least an element can take).
/// A body for which this stays within the limit needs no walk ([`worst_case`]).
const MAX_EXPANSION: u64 = 1 + MAX_STRUCT.div_ceil(2);

/// The largest struct of the OTLP logs messages.
const MAX_STRUCT: u64 = {
    let sizes = [
        size_of::<ExportLogsServiceRequest>(),
        size_of::<ResourceLogs>(),
        size_of::<Resource>(),
        size_of::<EntityRef>(),
        size_of::<ScopeLogs>(),
        size_of::<InstrumentationScope>(),
        size_of::<LogRecord>(),
        size_of::<KeyValue>(),
        size_of::<AnyValue>(),
        size_of::<ArrayValue>(),
        size_of::<KeyValueList>(),
    ];
    let mut max = 0;
    let mut i = 0;
    while i < sizes.len() {
        if sizes[i] > max {
            max = sizes[i];
        }
        i += 1;
    }
    max as u64
};

/// The most a body of `len` encoded bytes can decode to, whatever it holds.
pub(super) fn worst_case(len: usize) -> u64 {
    (len as u64).saturating_mul(MAX_EXPANSION)
}

/// The messages of an OTLP logs request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Message {
    Request,
    ResourceLogs,
    Resource,
    EntityRef,
    ScopeLogs,
    Scope,
    LogRecord,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
}

impl Message {
    /// Its decoded struct, in bytes.
    fn size(self) -> u64 {
        let size = match self {
            Self::Request => size_of::<ExportLogsServiceRequest>(),
            Self::ResourceLogs => size_of::<ResourceLogs>(),
            Self::Resource => size_of::<Resource>(),
            Self::EntityRef => size_of::<EntityRef>(),
            Self::ScopeLogs => size_of::<ScopeLogs>(),
            Self::Scope => size_of::<InstrumentationScope>(),
            Self::LogRecord => size_of::<LogRecord>(),
            Self::KeyValue => size_of::<KeyValue>(),
            Self::AnyValue => size_of::<AnyValue>(),
            Self::ArrayValue => size_of::<ArrayValue>(),
            Self::KeyValueList => size_of::<KeyValueList>(),
        };
        size as u64
    }

    /// What field `number` holds: the fields that are messages or repeated strings.
    fn field(self, number: u32) -> Option<Field> {
        use Field::{Many, One, Strings};
        let field = match (self, number) {
            (Self::Request, 1) => Many(Self::ResourceLogs),
            (Self::ResourceLogs, 1) => One(Self::Resource),
            (Self::ResourceLogs, 2) => Many(Self::ScopeLogs),
            (Self::Resource, 1) | (Self::Scope, 3) | (Self::LogRecord, 6) => Many(Self::KeyValue),
            (Self::KeyValueList, 1) => Many(Self::KeyValue),
            (Self::Resource, 3) => Many(Self::EntityRef),
            (Self::EntityRef, 3 | 4) => Strings,
            (Self::ScopeLogs, 1) => One(Self::Scope),
            (Self::ScopeLogs, 2) => Many(Self::LogRecord),
            (Self::LogRecord, 5) | (Self::KeyValue, 2) => One(Self::AnyValue),
            (Self::AnyValue, 5) => One(Self::ArrayValue),
            (Self::AnyValue, 6) => One(Self::KeyValueList),
            (Self::ArrayValue, 1) => Many(Self::AnyValue),
            _ => return None,
        };
        Some(field)
    }
}

/// A field of a message that the walk follows.
enum Field {
    /// A singular message: decoded in place in its parent.
    One(Message),
    /// A repeated message: one more struct per occurrence.
    Many(Message),
    /// A repeated string: one more `String` per occurrence.
    Strings,
}

/// Sizes a protobuf `ExportLogsServiceRequest`; `Err` when it is not one.
pub(super) fn protobuf(body: &[u8]) -> Result<Size, String> {
    let mut size = Size {
        records: 0,
        decoded_bytes: body.len() as u64 + Message::Request.size(),
    };
    walk(body, Message::Request, 0, &mut size)?;
    Ok(size)
}

/// The log records of a protobuf request, counted on the wire without entering them: the
/// request's `ResourceLogs`, their `ScopeLogs` and the `LogRecord`s those hold, nothing deeper
/// (what the records themselves hold is for validation to check). `Err` when those three
/// levels are not well framed.
pub(super) fn count_records(body: &[u8]) -> Result<u64, String> {
    let mut records = 0u64;
    for_each_message(body, 1, |resource_logs| {
        for_each_message(resource_logs, 2, |scope_logs| {
            records += Fields::new(scope_logs)
                .count_len(2)
                .map_err(|e| e.to_string())?;
            Ok(())
        })
    })?;
    Ok(records)
}

/// Calls `f` with the bytes of each length-delimited field `number` of `message`.
fn for_each_message<'a>(
    message: &'a [u8],
    number: u32,
    mut f: impl FnMut(&'a [u8]) -> Result<(), String>,
) -> Result<(), String> {
    for field in Fields::new(message) {
        if let (n, Value::Len(bytes)) = field.map_err(|e| e.to_string())?
            && n == number
        {
            f(bytes)?;
        }
    }
    Ok(())
}

/// The encoded occurrences of the `Resource` of a protobuf request's first `ResourceLogs` (one,
/// as a rule; prost merges several): none when it has none, or the body is not a message.
pub(super) fn first_resource(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    let resource_logs = Fields::new(body)
        .map_while(Result::ok)
        .find_map(|(number, value)| match (number, value) {
            (1, Value::Len(bytes)) => Some(bytes),
            _ => None,
        });
    Fields::new(resource_logs.unwrap_or_default())
        .map_while(Result::ok)
        .filter_map(|(number, value)| match (number, value) {
            (1, Value::Len(bytes)) => Some(bytes),
            _ => None,
        })
}

fn walk(buf: &[u8], message: Message, depth: usize, size: &mut Size) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("nested deeper than {MAX_DEPTH} messages"));
    }
    for field in Fields::new(buf) {
        let (number, value) = field.map_err(|e| e.to_string())?;
        // A known field of the wrong wire type is prost's to refuse.
        let (Some(field), Value::Len(bytes)) = (message.field(number), value) else {
            continue;
        };
        match field {
            Field::One(child) => walk(bytes, child, depth + 1, size)?,
            Field::Many(child) => {
                size.decoded_bytes += child.size();
                if child == Message::LogRecord {
                    size.records += 1;
                }
                walk(bytes, child, depth + 1, size)?;
            }
            Field::Strings => size.decoded_bytes += size_of::<String>() as u64,
        }
    }
    Ok(())
}

/// What the elements of a JSON array become, told by the array's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Array {
    /// `logRecords`: log records.
    Records,
    /// `resourceLogs`.
    ResourceLogs,
    /// `scopeLogs`.
    ScopeLogs,
    /// Any other key (`attributes`, `values`, `entityRefs`, `idKeys`, …): the largest of what
    /// those hold.
    Other,
    /// A key written with escapes: it could be any of the above.
    Unknown,
}

impl Array {
    fn of_key(key: &[u8], escaped: bool) -> Self {
        match key {
            _ if escaped => Self::Unknown,
            b"logRecords" | b"log_records" => Self::Records,
            b"resourceLogs" | b"resource_logs" => Self::ResourceLogs,
            b"scopeLogs" | b"scope_logs" => Self::ScopeLogs,
            _ => Self::Other,
        }
    }

    /// The struct an object element of the array becomes.
    fn object_size(self) -> u64 {
        match self {
            Self::Records | Self::Unknown => Message::LogRecord.size(),
            Self::ResourceLogs => Message::ResourceLogs.size(),
            Self::ScopeLogs => Message::ScopeLogs.size(),
            Self::Other => Message::KeyValue
                .size()
                .max(Message::EntityRef.size())
                .max(Message::AnyValue.size()),
        }
    }
}

/// A JSON scanner that tracks only what sizing needs: open arrays and the last key read.
struct Scan<'a> {
    body: &'a [u8],
    pos: usize,
    /// Open containers, innermost last: `Some` for an array, `None` for an object.
    open: Vec<Option<Array>>,
    /// The key of the value about to be read.
    key: Option<Array>,
    /// Whether the next value read is an element of the innermost array.
    element: bool,
    size: Size,
}

/// Sizes a JSON `ExportLogsServiceRequest`; `Err` for JSON broken in a way the scan sees.
/// Records are counted as the objects of `logRecords` arrays.
pub(super) fn json(body: &[u8]) -> Result<Size, String> {
    let mut scan = Scan {
        body,
        pos: 0,
        open: Vec::new(),
        key: None,
        element: false,
        size: Size {
            records: 0,
            decoded_bytes: body.len() as u64 + Message::Request.size(),
        },
    };
    while let Some(&byte) = scan.body.get(scan.pos) {
        scan.pos += 1;
        scan.byte(byte)?;
    }
    Ok(scan.size)
}

impl Scan<'_> {
    fn byte(&mut self, byte: u8) -> Result<(), String> {
        if byte.is_ascii_whitespace() {
            return Ok(());
        }
        let array = self.open.last().copied().flatten();
        if self.element && byte != b']' {
            self.element = false;
            if let Some(array) = array {
                self.size.decoded_bytes += match byte {
                    b'{' => array.object_size(),
                    _ => size_of::<String>() as u64,
                };
                if byte == b'{' && array == Array::Records {
                    self.size.records += 1;
                }
            }
        }
        match byte {
            b'"' => self.string(),
            b'{' | b'[' => {
                if self.open.len() >= MAX_DEPTH {
                    return Err(format!("nested deeper than {MAX_DEPTH} levels"));
                }
                let key = self.key.take();
                let opened = (byte == b'[').then(|| key.unwrap_or(Array::Other));
                self.open.push(opened);
                self.element = opened.is_some();
                Ok(())
            }
            b'}' | b']' => {
                self.open.pop();
                self.element = false;
                Ok(())
            }
            b',' => {
                self.element = array.is_some();
                self.key = None;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Reads a string whose opening quote was just read; a key sets `self.key`.
    fn string(&mut self) -> Result<(), String> {
        let start = self.pos;
        let mut escaped = false;
        loop {
            match self.body.get(self.pos) {
                None => return Err("unterminated string".to_owned()),
                Some(b'\\') => {
                    escaped = true;
                    self.pos += 2;
                }
                Some(b'"') => break,
                Some(_) => self.pos += 1,
            }
        }
        let text = &self.body[start..self.pos];
        self.pos += 1;
        let rest = self.body.get(self.pos..).unwrap_or_default();
        let is_key = rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b':');
        if is_key {
            self.key = Some(Array::of_key(text, escaped));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    use prost::Message as _;

    use super::*;

    fn kv(key: &str) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue {
                value: Some(Any::StringValue("v".to_owned())),
            }),
            ..KeyValue::default()
        }
    }

    fn request(records: usize, attributes: usize) -> ExportLogsServiceRequest {
        let record = LogRecord {
            attributes: (0..attributes).map(|i| kv(&format!("k{i}"))).collect(),
            ..LogRecord::default()
        };
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![kv("service.name")],
                    ..Resource::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![record; records],
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        }
    }

    #[test]
    fn protobuf_and_json_count_records_and_structs() {
        let request = request(3, 2);
        let expected = 3 * (Message::LogRecord.size() + 2 * Message::KeyValue.size())
            + Message::KeyValue.size()
            + Message::ResourceLogs.size()
            + Message::ScopeLogs.size()
            + Message::Request.size();
        let bytes = request.encode_to_vec();
        let size = protobuf(&bytes).unwrap();
        assert_eq!(size.records, 3);
        assert_eq!(size.decoded_bytes, expected + bytes.len() as u64);
        let text = serde_json::to_vec(&request).unwrap();
        let size = json(&text).unwrap();
        assert_eq!(size.records, 3);
        // JSON sizes every `attributes` element as the largest struct such an array holds.
        assert!(
            size.decoded_bytes >= expected + text.len() as u64,
            "{size:?}"
        );
    }

    #[test]
    fn records_are_counted_without_entering_them() {
        let mut request = request(3, 2);
        let mut second = request.resource_logs[0].clone();
        second.scope_logs.push(second.scope_logs[0].clone());
        request.resource_logs.push(second);
        let bytes = request.encode_to_vec();
        assert_eq!(count_records(&bytes), Ok(9));
        assert_eq!(protobuf(&bytes).unwrap().records, 9);
        assert_eq!(count_records(&[]), Ok(0));
        // Broken framing down to the records is refused; inside a record it is not looked at.
        assert!(count_records(&bytes[..bytes.len() - 1]).is_err());
        let record = LogRecord {
            severity_text: "x".into(),
            ..LogRecord::default()
        };
        let mut inside = request.clone();
        inside.resource_logs[0].scope_logs[0].log_records = vec![record];
        let mut bytes = inside.encode_to_vec();
        let at = bytes.iter().position(|&b| b == b'x').unwrap();
        bytes[at - 1] = 0x7f; // the string's length now runs past its record
        assert!(protobuf(&bytes).is_err());
        assert_eq!(count_records(&bytes), Ok(7));
    }

    #[test]
    fn empty_elements_are_sized_as_the_structs_they_become() {
        let bomb = [0x0a, 0x00].repeat(1_000_000);
        let size = protobuf(&bomb).unwrap();
        assert_eq!(size.records, 0);
        assert!(size.decoded_bytes > 1_000_000 * Message::ResourceLogs.size());
        let records = format!(
            r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{}{{}}]}}]}}]}}"#,
            "{},".repeat(999_999)
        );
        let size = json(records.as_bytes()).unwrap();
        assert_eq!(size.records, 1_000_000);
        assert!(size.decoded_bytes > 1_000_000 * Message::LogRecord.size());
        // A key spelled with escapes is sized as the largest struct.
        let escaped = format!(
            r#"{{"resourceLogs":[{{"scope\u004cogs":[{}{{}}]}}]}}"#,
            "{},".repeat(999)
        );
        let size = json(escaped.as_bytes()).unwrap();
        assert!(size.decoded_bytes > 1_000 * Message::LogRecord.size());
        // Strings in arrays become `String`s.
        let keys = format!(r#"{{"idKeys":[{}""]}}"#, r#""","#.repeat(999));
        let size = json(keys.as_bytes()).unwrap();
        assert!(size.decoded_bytes >= 1_000 * size_of::<String>() as u64);
    }

    #[test]
    fn no_body_decodes_past_its_worst_case() {
        let empty_records = format!(
            r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[{}{{}}]}}]}}]}}"#,
            "{},".repeat(9_999)
        );
        let mut attributes = Vec::new();
        for _ in 0..10_000 {
            // LogRecord { attributes: [KeyValue {}] } in a ScopeLogs.
            prost::encoding::bytes::encode(6, &Vec::new(), &mut attributes);
        }
        let mut scope = Vec::new();
        prost::encoding::bytes::encode(2, &attributes, &mut scope);
        let mut resource = Vec::new();
        prost::encoding::bytes::encode(2, &scope, &mut resource);
        let mut request = Vec::new();
        prost::encoding::bytes::encode(1, &resource, &mut request);
        for body in [
            [0x0a, 0x00].repeat(10_000),
            [0x0a, 0x02, 0x12, 0x00].repeat(10_000),
            request,
        ] {
            let size = protobuf(&body).unwrap();
            assert!(size.decoded_bytes <= worst_case(body.len()), "{size:?}");
        }
        for body in [empty_records.as_bytes(), br#"{"resourceLogs":[{},{},{}]}"#] {
            let size = json(body).unwrap();
            assert!(size.decoded_bytes <= worst_case(body.len()), "{size:?}");
        }
    }

    #[test]
    fn strings_hide_nothing_and_depth_is_bounded() {
        let text = br#"{"body":{"stringValue":"[{},{},{}] \"[{}]"}}"#;
        let size = json(text).unwrap();
        assert_eq!(
            size.decoded_bytes,
            text.len() as u64 + Message::Request.size()
        );
        assert!(json(&b"[".repeat(MAX_DEPTH + 1)).is_err());
        assert!(json(br#"{"a":"#).is_ok());
        assert!(json(br#"{"a":"x"#).is_err());
        let mut nested = Vec::new();
        for _ in 0..=MAX_DEPTH {
            // AnyValue { array_value: ArrayValue { values: [ ... ] } }, ever deeper.
            let mut array = Vec::new();
            prost::encoding::bytes::encode(1, &nested, &mut array);
            let mut value = Vec::new();
            prost::encoding::bytes::encode(5, &array, &mut value);
            nested = value;
        }
        let mut record = Vec::new();
        prost::encoding::bytes::encode(5, &nested, &mut record);
        let mut scope = Vec::new();
        prost::encoding::bytes::encode(2, &record, &mut scope);
        let mut resource = Vec::new();
        prost::encoding::bytes::encode(2, &scope, &mut resource);
        let mut request = Vec::new();
        prost::encoding::bytes::encode(1, &resource, &mut request);
        assert!(protobuf(&request).unwrap_err().contains("nested deeper"));
    }
}
