//! The loaded schema registry: lookup by event type and version, and per-event validation.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use prost_reflect::{DynamicMessage, MessageDescriptor};
use serde::Serialize;
use serde_json::Value;

use crate::document::JsonValue;
use crate::proto_check::WireChecker;
use crate::proto_json::JsonPlan;
use crate::tape::{self, TapeJson};
use crate::tape_de::TapeDeserializer;

/// Longest rejection reason, in bytes; longer ones are cut with `…`.
const MAX_REASON_BYTES: usize = 240;

/// The kind of schema file a schema came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SchemaFormat {
    /// JSON Schema draft 2020-12 (`*.schema.json`).
    Json,
    /// A protobuf message (`*.proto`).
    Protobuf,
}

impl SchemaFormat {
    /// `json` or `protobuf`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Protobuf => "protobuf",
        }
    }
}

/// How consecutive versions of one event type must relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compatibility {
    /// The new version reads data written for the previous one (the default).
    #[default]
    Backward,
    /// The previous version reads data written for the new one.
    Forward,
    /// Both backward and forward.
    Full,
    /// No check.
    None,
}

impl Compatibility {
    /// The lowercase name used in schema files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Backward => "backward",
            Self::Forward => "forward",
            Self::Full => "full",
            Self::None => "none",
        }
    }
}

impl FromStr for Compatibility {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "backward" => Ok(Self::Backward),
            "forward" => Ok(Self::Forward),
            "full" => Ok(Self::Full),
            "none" => Ok(Self::None),
            other => Err(format!(
                "unknown compatibility {other:?} (expected backward, forward, full or none)"
            )),
        }
    }
}

impl fmt::Display for Compatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `GET /v1/schemas` lists about one schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaInfo {
    /// Event type, e.g. `playback.start`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Version, 1 or more.
    pub version: u32,
    /// JSON Schema or protobuf.
    pub format: SchemaFormat,
    /// Topic valid events of this type and version are appended to.
    pub topic: String,
    /// Compatibility mode this version was checked with against the previous one.
    pub compatibility: Compatibility,
    /// Fully qualified protobuf message name (protobuf schemas only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// An event payload to validate.
#[derive(Debug, Clone, Copy)]
pub enum Payload<'a> {
    /// JSON text as received.
    Json(&'a [u8]),
    /// JSON the caller has already parsed.
    Value(&'a Value),
    /// A value of a JSON text the caller parsed with [`with_document`](crate::document::with_document):
    /// validated on that parse's tape, not parsed again.
    Parsed(JsonValue<'a>),
    /// Protobuf binary.
    Protobuf(&'a [u8]),
    /// JSON text the caller wrote, with the tape that simd-json would parse it into, built by
    /// the caller alongside the text (so it is not parsed): a JSON Schema validates the tape,
    /// a protobuf type the text. The caller answers for the two agreeing, and for no object
    /// holding a member name twice (which [`Payload::Json`] and [`Payload::Parsed`] refuse,
    /// and which is not looked for here).
    Built {
        /// The JSON text.
        text: &'a [u8],
        /// Its tape: an object or array followed by its members (an object's names and
        /// values alternating), as [`crate::TapeNode`].
        tape: &'a [crate::TapeNode<'a>],
    },
}

/// Why an event was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectionKind {
    /// No schema is registered for the event type.
    UnknownType,
    /// The type is known but not that version.
    UnknownVersion,
    /// The payload does not parse (bad JSON, undecodable protobuf, wrong format for the schema).
    Malformed,
    /// The payload parses but breaks the schema.
    Invalid,
}

/// A per-event validation failure: a kind and a one-line human reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// What went wrong, for status codes and metrics.
    pub kind: RejectionKind,
    /// One line, e.g. `payload.position_ms: -5 is less than the minimum of 0`.
    pub reason: String,
}

impl Rejection {
    fn new(kind: RejectionKind, reason: impl fmt::Display) -> Self {
        Self {
            kind,
            reason: one_line(&reason.to_string()),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Rejection {}

/// How a compiled schema checks a payload.
pub(crate) enum Checker {
    Json(Box<JsonChecker>),
    /// The event message, planned for protobuf payloads and for JSON ones.
    Proto(ProtoChecker),
}

/// A protobuf message type, planned for its payloads in both forms: the wire check, and the
/// quick yes to JSON in the plain part of protobuf's JSON mapping.
pub(crate) struct ProtoChecker {
    wire: WireChecker,
    json: JsonPlan,
}

impl ProtoChecker {
    pub(crate) fn new(desc: &MessageDescriptor) -> Self {
        let wire = WireChecker::new(desc);
        let json = JsonPlan::new(wire.message_types());
        Self { wire, json }
    }

    /// The checked message type.
    pub(crate) fn descriptor(&self) -> &MessageDescriptor {
        self.wire.descriptor()
    }
}

/// One JSON Schema compiled twice: for a payload as JSON text (parsed into a simd-json tape)
/// and for one the caller has already parsed into a `serde_json::Value`.
pub(crate) struct JsonChecker {
    pub(crate) tape: jsonschema::Validator<TapeJson>,
    pub(crate) value: jsonschema::Validator,
}

impl JsonChecker {
    /// Validates a payload on its tape. A member name given twice in one object is refused
    /// first: which of the two a reader takes is up to the reader, so no answer could hold.
    fn validate_tape(&self, root: tape::TapeNode<'_>) -> Result<(), Rejection> {
        if let Some(name) = tape::repeated_name(root) {
            return Err(Rejection::new(
                RejectionKind::Malformed,
                format!("payload has the member name {name:?} twice in one object"),
            ));
        }
        check(&self.tape, root)
    }
}

/// Whether prost-reflect reads the JSON value on `root`'s tape as a message of the checker's
/// type (protobuf's JSON mapping), without parsing its text again ([`TapeDeserializer`]);
/// `false` leaves the answer, and its wording, to [`proto_from_json`] on the text. A payload in
/// the plain part of the mapping is taken without building the message ([`JsonPlan`]).
fn proto_on_tape(checker: &ProtoChecker, root: tape::TapeNode<'_>) -> bool {
    if checker.json.accepts(root) {
        return true;
    }
    let tape::TapeNode::At(nodes) = root else {
        return false;
    };
    DynamicMessage::deserialize(checker.descriptor().clone(), TapeDeserializer::new(nodes)).is_ok()
}

/// Checks JSON text against a protobuf message (protobuf's JSON mapping).
fn proto_from_json(checker: &ProtoChecker, bytes: &[u8]) -> Result<(), Rejection> {
    let desc = checker.descriptor();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    DynamicMessage::deserialize(desc.clone(), &mut de)
        .and_then(|_| de.end())
        .map_err(|e| proto_json_rejection(desc, &e))
}

/// One schema ready for validation.
pub(crate) struct Compiled {
    pub(crate) info: SchemaInfo,
    /// The schema file's text, served by `GET /v1/schemas/{type}/versions/{v}`.
    pub(crate) raw: String,
    pub(crate) checker: Checker,
}

/// All schemas, by event type then version. Immutable once built; share it behind an `Arc`
/// (the gateway swaps a new one in on reload).
#[derive(Default)]
pub struct Registry {
    /// By type. The operator's files set the keys and clients only look them up (one lookup an
    /// event), so foldhash serves (seeded per process, several times cheaper than SipHash).
    pub(crate) types: foldhash::HashMap<String, BTreeMap<u32, Compiled>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.list()).finish()
    }
}

impl Registry {
    /// A registry with no schemas (every event is rejected as of unknown type).
    pub fn empty() -> Self {
        Self::default()
    }

    /// Number of schemas (type and version pairs).
    pub fn len(&self) -> usize {
        self.types.values().map(BTreeMap::len).sum()
    }

    /// True when no schema is registered.
    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    fn lookup(&self, event_type: &str, version: u32) -> Result<&Compiled, Rejection> {
        let versions = self.types.get(event_type).ok_or_else(|| {
            Rejection::new(
                RejectionKind::UnknownType,
                format!("unknown event type {event_type:?}"),
            )
        })?;
        let found = if version == 0 {
            versions.values().next_back()
        } else {
            versions.get(&version)
        };
        found.ok_or_else(|| {
            Rejection::new(
                RejectionKind::UnknownVersion,
                format!("unknown version {version} of event type {event_type:?}"),
            )
        })
    }

    /// Validates `payload` against the schema of `event_type` at `version`; version 0 means the
    /// latest registered version. On success returns the schema's info (its `version` is the
    /// resolved one, its `topic` where the event goes).
    pub fn validate(
        &self,
        event_type: &str,
        version: u32,
        payload: Payload<'_>,
    ) -> Result<&SchemaInfo, Rejection> {
        let schema = self.lookup(event_type, version)?;
        match (&schema.checker, payload) {
            (Checker::Json(checker), Payload::Json(bytes)) => {
                // What simd-json refuses, serde_json decides (and words the error).
                let checked = tape::with_tape(bytes, |root| checker.validate_tape(root));
                match checked {
                    Some(checked) => checked,
                    None => {
                        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
                            Rejection::new(
                                RejectionKind::Malformed,
                                format!("payload is not JSON: {e}"),
                            )
                        })?;
                        check(&checker.value, &value)
                    }
                }
            }
            (Checker::Json(checker), Payload::Parsed(value)) => checker.validate_tape(value.tape()),
            (Checker::Json(checker), Payload::Built { tape, .. }) => {
                check(&checker.tape, tape::TapeNode::At(tape))
            }
            (Checker::Json(checker), Payload::Value(value)) => check(&checker.value, value),
            (Checker::Json(_), Payload::Protobuf(_)) => Err(Rejection::new(
                RejectionKind::Malformed,
                "payload_format protobuf does not match the JSON Schema of this type",
            )),
            (Checker::Proto(checker), Payload::Protobuf(bytes)) => {
                // Walks the wire format, builds nothing; accepts what DynamicMessage::decode does.
                checker.wire.check(bytes).map_err(|e| {
                    let name = checker.descriptor().full_name();
                    Rejection::new(
                        RejectionKind::Malformed,
                        format!("payload does not decode as {name}: {e}"),
                    )
                })
            }
            (Checker::Proto(checker), Payload::Json(bytes)) => {
                match tape::with_tape(bytes, |root| proto_on_tape(checker, root)) {
                    Some(true) => Ok(()),
                    _ => proto_from_json(checker, bytes),
                }
            }
            (Checker::Proto(checker), Payload::Built { text, .. }) => {
                proto_from_json(checker, text)
            }
            (Checker::Proto(checker), Payload::Parsed(value)) => {
                match proto_on_tape(checker, value.tape()) {
                    true => Ok(()),
                    false => proto_from_json(checker, value.raw()),
                }
            }
            (Checker::Proto(checker), Payload::Value(value)) => {
                let desc = checker.descriptor();
                DynamicMessage::deserialize(desc.clone(), value)
                    .map(|_| ())
                    .map_err(|e| proto_json_rejection(desc, &e))
            }
        }?;
        Ok(&schema.info)
    }

    /// Every schema, sorted by type then version.
    pub fn list(&self) -> Vec<&SchemaInfo> {
        let mut all: Vec<&SchemaInfo> = self
            .types
            .values()
            .flat_map(|versions| versions.values().map(|c| &c.info))
            .collect();
        all.sort_by(|a, b| (&a.event_type, a.version).cmp(&(&b.event_type, b.version)));
        all
    }

    /// Info of one schema; version 0 means the latest.
    pub fn info(&self, event_type: &str, version: u32) -> Option<&SchemaInfo> {
        self.lookup(event_type, version).ok().map(|c| &c.info)
    }

    /// The raw text of one schema file; version 0 means the latest.
    pub fn get(&self, event_type: &str, version: u32) -> Option<&str> {
        self.lookup(event_type, version)
            .ok()
            .map(|c| c.raw.as_str())
    }

    /// The registered versions of a type, ascending (empty if the type is unknown).
    pub fn versions(&self, event_type: &str) -> Vec<u32> {
        self.types
            .get(event_type)
            .map(|v| v.keys().copied().collect())
            .unwrap_or_default()
    }
}

/// A JSON Schema validation's first error as a rejection.
/// `instance` checked by `validator`: `is_valid` first, jsonschema's faster path (it builds no
/// error and tracks no location), then, only for an instance it finds invalid, `validate` for
/// the first error's words; `validate` has the last word, as it had alone.
fn check<F: jsonschema::json::Json>(
    validator: &jsonschema::Validator<F>,
    instance: F::Node<'_>,
) -> Result<(), Rejection> {
    if validator.is_valid(instance.clone()) {
        return Ok(());
    }
    first_error(validator.validate(instance))
}

fn first_error(checked: Result<(), jsonschema::ValidationError<'_>>) -> Result<(), Rejection> {
    checked.map_err(|e| {
        let path = instance_path(e.instance_path());
        Rejection::new(RejectionKind::Invalid, format!("{path}: {e}"))
    })
}

fn proto_json_rejection(desc: &MessageDescriptor, e: &serde_json::Error) -> Rejection {
    let kind = if e.is_syntax() || e.is_eof() {
        RejectionKind::Malformed
    } else {
        RejectionKind::Invalid
    };
    Rejection::new(
        kind,
        format!("payload is not a valid JSON {}: {e}", desc.full_name()),
    )
}

/// `/a/0/b` → `payload.a[0].b`.
fn instance_path(location: &jsonschema::paths::Location) -> String {
    let mut out = String::from("payload");
    for segment in location.segments() {
        match segment {
            jsonschema::paths::LocationSegment::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
            jsonschema::paths::LocationSegment::Property(p) => {
                out.push('.');
                out.push_str(&p);
            }
        }
    }
    out
}

/// Collapses whitespace runs (including newlines) and cuts at [`MAX_REASON_BYTES`].
pub(crate) fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_REASON_BYTES + 4));
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
        if out.len() > MAX_REASON_BYTES {
            let mut cut = MAX_REASON_BYTES;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push('…');
            break;
        }
    }
    out
}
