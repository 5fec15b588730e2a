//! A quick yes for the JSON payload of a protobuf-typed event, read on its simd-json tape.
//!
//! prost-reflect decides what protobuf's JSON mapping accepts ([`crate::tape_de`] feeds it
//! the tape), building the message as it goes: a hashed lookup per member name, a value and a
//! map insert per field. Most payloads keep to a plain part of the mapping: known member names,
//! strings, booleans, numbers in their field's range, enum value names, messages and lists of
//! these. [`JsonPlan::accepts`] walks that part on the tape with the message types planned
//! ahead, and says `true` only where prost-reflect reads the same JSON without an error. It
//! says `false` for everything else (`null`, a number written as a string or with a fraction
//! for an integer field, bytes, maps, well-known types, an unknown name, a name given twice,
//! two fields of one oneof), and the caller asks prost-reflect, which decides and words the
//! error; so this never changes an answer, it only skips building the message.

use std::collections::HashMap;

use jsonschema::json::{Array, Node as _, Object};
use prost_reflect::{Kind, MessageDescriptor};
use simd_json::{Node, StaticNode};

use crate::tape::TapeNode;

/// Message types with more fields than this are not planned (their payloads go to
/// prost-reflect): one bit per field marks those seen.
const MAX_FIELDS: usize = 64;

/// The checked message type and every message type it holds, planned.
#[derive(Debug)]
pub(crate) struct JsonPlan {
    /// The checked message first; a message's fields refer to others by index.
    messages: Box<[Option<Box<[FieldPlan]>>]>,
}

/// One field: the member names prost-reflect reads as it, and the values it takes here.
#[derive(Debug)]
struct FieldPlan {
    json_name: Box<str>,
    name: Box<str>,
    value: ValuePlan,
    list: bool,
    /// The index of its oneof in the message (proto3 `optional` fields included).
    oneof: Option<u32>,
}

/// The JSON values a field takes on the quick path.
#[derive(Debug)]
enum ValuePlan {
    Double,
    Float,
    Int32,
    Int64,
    Uint32,
    Uint64,
    Bool,
    String,
    /// An enum's value names (its numbers are left to prost-reflect).
    Enum(Box<[Box<str>]>),
    /// A message type of [`JsonPlan::messages`].
    Message(usize),
    /// Bytes, maps, well-known types, `google.protobuf.NullValue`: prost-reflect's.
    Other,
}

impl JsonPlan {
    /// Plans the message types of `types`: the checked one first, then every type it holds,
    /// numbered as the wire check numbers them
    /// ([`message_types`](crate::proto_check::WireChecker::message_types)); a message field
    /// refers to its value's type by that number.
    pub(crate) fn new<'a>(types: impl Iterator<Item = &'a MessageDescriptor> + Clone) -> Self {
        let index: HashMap<&str, usize> = types
            .clone()
            .enumerate()
            .map(|(at, desc)| (desc.full_name(), at))
            .collect();
        Self {
            messages: types.map(|desc| plan_message(desc, &index)).collect(),
        }
    }

    /// Whether prost-reflect reads the value on `root`'s tape as a message of the planned type;
    /// `false` also when the answer is left to prost-reflect.
    pub(crate) fn accepts(&self, root: TapeNode<'_>) -> bool {
        self.message(0, root)
    }

    fn message(&self, at: usize, node: TapeNode<'_>) -> bool {
        let (Some(Some(fields)), Some(object)) = (self.messages.get(at), node.as_object()) else {
            return false;
        };
        let (mut seen, mut oneofs) = (0u64, 0u64);
        for (name, value) in object.members() {
            // prost-reflect looks a name up as a JSON name first, then as a field name.
            let found = fields
                .iter()
                .position(|f| *f.json_name == *name)
                .or_else(|| fields.iter().position(|f| *f.name == *name));
            let Some(index) = found else {
                return false;
            };
            let field = &fields[index];
            if seen & (1 << index) != 0 {
                return false;
            }
            seen |= 1 << index;
            if let Some(oneof) = field.oneof {
                if oneofs & (1 << oneof) != 0 {
                    return false;
                }
                oneofs |= 1 << oneof;
            }
            let taken = if field.list {
                value
                    .as_array()
                    .is_some_and(|list| list.elements().all(|e| self.value(&field.value, e)))
            } else {
                self.value(&field.value, value)
            };
            if !taken {
                return false;
            }
        }
        true
    }

    fn value(&self, plan: &ValuePlan, node: TapeNode<'_>) -> bool {
        let TapeNode::At(nodes) = node else {
            return false;
        };
        match (plan, nodes.first()) {
            (ValuePlan::String, Some(Node::String(_)))
            | (ValuePlan::Bool, Some(Node::Static(StaticNode::Bool(_)))) => true,
            (ValuePlan::Enum(names), Some(Node::String(name))) => {
                names.iter().any(|known| **known == **name)
            }
            (ValuePlan::Message(at), _) => self.message(*at, node),
            (_, Some(Node::Static(scalar))) => number(plan, *scalar),
            _ => false,
        }
    }
}

/// Whether prost-reflect takes `scalar` for a number field of `plan`, as the tape feeds it:
/// a non-negative integer as `u64`, a negative one as `i64`, `-0` (an `i64` of 0 on the tape)
/// and any number with a fraction or an exponent as `f64`, which no integer field takes here.
fn number(plan: &ValuePlan, scalar: StaticNode) -> bool {
    let float = |n: f64| (f64::from(f32::MIN)..=f64::from(f32::MAX)).contains(&n);
    match (plan, scalar) {
        (ValuePlan::Double, StaticNode::I64(_) | StaticNode::U64(_) | StaticNode::F64(_)) => true,
        (ValuePlan::Float, StaticNode::I64(_) | StaticNode::U64(_)) => true,
        (ValuePlan::Float, StaticNode::F64(n)) => float(n),
        (_, StaticNode::I64(0)) => false,
        (ValuePlan::Int32, StaticNode::I64(n)) => i32::try_from(n).is_ok(),
        (ValuePlan::Int32, StaticNode::U64(n)) => i32::try_from(n).is_ok(),
        (ValuePlan::Int64, StaticNode::I64(_)) => true,
        (ValuePlan::Int64, StaticNode::U64(n)) => i64::try_from(n).is_ok(),
        (ValuePlan::Uint32, StaticNode::U64(n)) => u32::try_from(n).is_ok(),
        (ValuePlan::Uint64, StaticNode::U64(_)) => true,
        _ => false,
    }
}

/// The fields of `desc` (`None` past [`MAX_FIELDS`]); `index` numbers the message types.
fn plan_message(
    desc: &MessageDescriptor,
    index: &HashMap<&str, usize>,
) -> Option<Box<[FieldPlan]>> {
    if desc.fields().len() > MAX_FIELDS {
        return None;
    }
    let oneofs: Vec<String> = desc.oneofs().map(|o| o.name().to_owned()).collect();
    let fields = desc
        .fields()
        .map(|field| {
            let value = if field.is_map() {
                ValuePlan::Other
            } else {
                value_plan(&field.kind(), index)
            };
            FieldPlan {
                json_name: field.json_name().into(),
                name: field.name().into(),
                value,
                list: field.is_list(),
                // A message has no more oneofs than fields.
                oneof: field.containing_oneof().and_then(|oneof| {
                    let index = oneofs.iter().position(|name| name == oneof.name())?;
                    u32::try_from(index).ok()
                }),
            }
        })
        .collect();
    Some(fields)
}

fn value_plan(kind: &Kind, index: &HashMap<&str, usize>) -> ValuePlan {
    match kind {
        Kind::Double => ValuePlan::Double,
        Kind::Float => ValuePlan::Float,
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => ValuePlan::Int32,
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => ValuePlan::Int64,
        Kind::Uint32 | Kind::Fixed32 => ValuePlan::Uint32,
        Kind::Uint64 | Kind::Fixed64 => ValuePlan::Uint64,
        Kind::Bool => ValuePlan::Bool,
        Kind::String => ValuePlan::String,
        Kind::Bytes => ValuePlan::Other,
        Kind::Enum(desc) if desc.full_name() == "google.protobuf.NullValue" => ValuePlan::Other,
        Kind::Enum(desc) => ValuePlan::Enum(desc.values().map(|v| v.name().into()).collect()),
        // The well-known types have JSON forms of their own.
        Kind::Message(desc) if desc.package_name() == "google.protobuf" => ValuePlan::Other,
        Kind::Message(desc) => index
            .get(desc.full_name())
            .map_or(ValuePlan::Other, |&at| ValuePlan::Message(at)),
    }
}
