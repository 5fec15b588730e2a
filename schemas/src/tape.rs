//! JSON payloads validated without building a `serde_json::Value`.
//!
//! simd-json parses a payload into a [`simd_json::Tape`]: one flat vector of nodes, an object or
//! array followed by its members, strings borrowed from the (copied) input. `jsonschema`
//! validates instances in any representation that implements its [`Json`] interface, and
//! [`TapeJson`] is that interface over a tape. Parsing into a tape allocates nothing once a
//! thread's buffers have grown ([`with_tape`]), where a `Value` allocates every object, key and
//! string, then frees them all.
//!
//! Where the two representations could differ, the registry does not let them: a payload
//! simd-json refuses (an integer beyond 64 bits, which serde_json reads as a float, for one) is
//! validated through `serde_json` as before, and an object with a member name given twice
//! ([`repeated_name`]) is refused: which of the two a reader takes is up to the reader, so no
//! validation could speak for both.

use std::borrow::Cow;

use jsonschema::JsonType;
use jsonschema::json::{Array, Json, JsonNumber, Node, NodeIdentity, Object};
use serde_json::{Map, Number, Value};
use simd_json::StaticNode;

/// The tape as a `jsonschema` instance representation.
pub(crate) struct TapeJson;

/// A node of a tape: the nodes from it to the tape's end (the node's own are the first
/// [`span`] of them), or a member name that `propertyNames` validates as a string.
#[derive(Clone, Copy)]
pub(crate) enum TapeNode<'a> {
    At(&'a [simd_json::Node<'a>]),
    Name(&'a str),
}

/// How many nodes `node` and what it holds take on the tape.
pub(crate) fn span(node: &simd_json::Node<'_>) -> usize {
    match node {
        simd_json::Node::Object { count, .. } | simd_json::Node::Array { count, .. } => count + 1,
        _ => 1,
    }
}

impl Json for TapeJson {
    type Node<'a> = TapeNode<'a>;
    type PreparedKey = Box<str>;
    type StringBuffer = ();

    // A lookup scans the object's members, so a pass over them is never dearer than lookups.
    const KEYS_PER_LOOKUP: usize = 64;
    const ACYCLIC: bool = true;

    fn prepare_key(key: &str) -> Box<str> {
        key.into()
    }

    fn with_string_node<T>((): &mut (), string: &str, f: impl FnOnce(TapeNode<'_>) -> T) -> T {
        f(TapeNode::Name(string))
    }
}

impl<'a> TapeNode<'a> {
    fn first(&self) -> Option<&'a simd_json::Node<'a>> {
        match self {
            TapeNode::At(nodes) => nodes.first(),
            TapeNode::Name(_) => None,
        }
    }

    fn scalar(&self) -> Option<StaticNode> {
        match self.first()? {
            simd_json::Node::Static(scalar) => Some(*scalar),
            _ => None,
        }
    }
}

impl<'a> Node<'a, TapeJson> for TapeNode<'a> {
    type Object = Container<'a>;
    type Array = Container<'a>;
    type Number = TapeNumber;

    fn as_object(&self) -> Option<Container<'a>> {
        match (self, self.first()?) {
            (TapeNode::At(nodes), simd_json::Node::Object { len, .. }) => {
                Some(Container { nodes, len: *len })
            }
            _ => None,
        }
    }

    fn as_array(&self) -> Option<Container<'a>> {
        match (self, self.first()?) {
            (TapeNode::At(nodes), simd_json::Node::Array { len, .. }) => {
                Some(Container { nodes, len: *len })
            }
            _ => None,
        }
    }

    fn as_string(&self) -> Option<Cow<'a, str>> {
        match self {
            TapeNode::Name(name) => Some(Cow::Borrowed(name)),
            TapeNode::At(nodes) => match nodes.first()? {
                simd_json::Node::String(string) => Some(Cow::Borrowed(string)),
                _ => None,
            },
        }
    }

    fn as_number(&self) -> Option<TapeNumber> {
        match self.scalar()? {
            StaticNode::I64(n) => Some(TapeNumber::I64(n)),
            StaticNode::U64(n) => Some(TapeNumber::U64(n)),
            StaticNode::F64(n) => Some(TapeNumber::F64(n)),
            StaticNode::Bool(_) | StaticNode::Null => None,
        }
    }

    fn as_boolean(&self) -> Option<bool> {
        match self.scalar()? {
            StaticNode::Bool(b) => Some(b),
            _ => None,
        }
    }

    fn is_null(&self) -> bool {
        matches!(self.scalar(), Some(StaticNode::Null))
    }

    fn json_type(&self) -> JsonType {
        match self {
            TapeNode::Name(_) => JsonType::String,
            TapeNode::At(nodes) => match nodes.first() {
                Some(simd_json::Node::String(_)) => JsonType::String,
                Some(simd_json::Node::Object { .. }) => JsonType::Object,
                Some(simd_json::Node::Array { .. }) => JsonType::Array,
                Some(simd_json::Node::Static(StaticNode::Bool(_))) => JsonType::Boolean,
                Some(simd_json::Node::Static(
                    StaticNode::I64(_) | StaticNode::U64(_) | StaticNode::F64(_),
                )) => JsonType::Number,
                Some(simd_json::Node::Static(StaticNode::Null)) | None => JsonType::Null,
            },
        }
    }

    fn to_value(&self) -> Cow<'a, Value> {
        Cow::Owned(match self {
            TapeNode::Name(name) => Value::String((*name).to_owned()),
            TapeNode::At(nodes) => value_of(nodes),
        })
    }

    fn identity(&self) -> Option<NodeIdentity> {
        match self {
            // Every node of a tape has an element of its own.
            TapeNode::At(nodes) => Some(NodeIdentity::new(nodes.as_ptr() as usize)),
            TapeNode::Name(_) => None,
        }
    }
}

/// The `serde_json::Value` of the node `nodes` starts with (for error messages only).
fn value_of(nodes: &[simd_json::Node<'_>]) -> Value {
    let node = TapeNode::At(nodes);
    if let Some(object) = node.as_object() {
        let mut map = Map::new();
        for (name, member) in object.members() {
            map.insert(name.to_owned(), member.to_value().into_owned());
        }
        return Value::Object(map);
    }
    if let Some(array) = node.as_array() {
        return Value::Array(
            array
                .elements()
                .map(|element| element.to_value().into_owned())
                .collect(),
        );
    }
    match nodes.first() {
        Some(simd_json::Node::String(string)) => Value::String((*string).to_owned()),
        Some(simd_json::Node::Static(StaticNode::Bool(b))) => Value::Bool(*b),
        Some(simd_json::Node::Static(StaticNode::I64(n))) => Value::from(*n),
        Some(simd_json::Node::Static(StaticNode::U64(n))) => Value::from(*n),
        Some(simd_json::Node::Static(StaticNode::F64(n))) => {
            Number::from_f64(*n).map_or(Value::Null, Value::Number)
        }
        _ => Value::Null,
    }
}

/// An object or an array on a tape: its first node and how many members or elements follow.
#[derive(Clone, Copy)]
pub(crate) struct Container<'a> {
    nodes: &'a [simd_json::Node<'a>],
    len: usize,
}

impl<'a> Container<'a> {
    fn children(&self) -> Children<'a> {
        Children {
            rest: self.nodes.get(1..).unwrap_or_default(),
            left: self.len,
        }
    }
}

/// The values of a [`Container`] not yet visited: `left` of them from `rest` on (in an
/// object, each after its name).
pub(crate) struct Children<'a> {
    rest: &'a [simd_json::Node<'a>],
    left: usize,
}

impl<'a> Children<'a> {
    /// The next value, and `rest` moved past it.
    fn value(&mut self) -> Option<TapeNode<'a>> {
        let node = self.rest;
        let first = node.first()?;
        self.rest = &node[span(first).min(node.len())..];
        self.left -= 1;
        Some(TapeNode::At(node))
    }
}

/// The members of an object, in the payload's order.
pub(crate) struct Members<'a>(Children<'a>);

impl<'a> Iterator for Members<'a> {
    type Item = (&'a str, TapeNode<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.left == 0 {
            return None;
        }
        let (simd_json::Node::String(name), after) = self.0.rest.split_first()? else {
            return None;
        };
        self.0.rest = after;
        Some((name, self.0.value()?))
    }
}

/// The elements of an array.
pub(crate) struct Elements<'a>(Children<'a>);

impl<'a> Iterator for Elements<'a> {
    type Item = TapeNode<'a>;

    fn next(&mut self) -> Option<TapeNode<'a>> {
        if self.0.left == 0 {
            return None;
        }
        self.0.value()
    }
}

impl<'a> Object<'a, TapeJson> for Container<'a> {
    type Node = TapeNode<'a>;
    type MemberName = &'a str;
    type MembersIter = Members<'a>;

    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, key: &Box<str>) -> Option<TapeNode<'a>> {
        // The last member of that name, as serde_json keeps it (the registry refuses a payload
        // with a name twice before validating it, but the tape does not know that).
        self.members()
            .filter(|(name, _)| *name == &**key)
            .last()
            .map(|(_, node)| node)
    }

    fn members(&self) -> Members<'a> {
        Members(self.children())
    }
}

impl<'a> Array<'a, TapeJson> for Container<'a> {
    type Node = TapeNode<'a>;
    type ElementsIter = Elements<'a>;

    fn len(&self) -> usize {
        self.len
    }

    fn elements(&self) -> Elements<'a> {
        Elements(self.children())
    }
}

/// A number on a tape, as simd-json read it.
#[derive(Clone, Copy)]
pub(crate) enum TapeNumber {
    I64(i64),
    U64(u64),
    F64(f64),
}

impl JsonNumber for TapeNumber {
    fn as_u64(&self) -> Option<u64> {
        match *self {
            TapeNumber::U64(n) => Some(n),
            TapeNumber::I64(n) => u64::try_from(n).ok(),
            TapeNumber::F64(_) => None,
        }
    }

    fn as_i64(&self) -> Option<i64> {
        match *self {
            TapeNumber::I64(n) => Some(n),
            TapeNumber::U64(n) => i64::try_from(n).ok(),
            TapeNumber::F64(_) => None,
        }
    }

    #[allow(clippy::cast_precision_loss)] // as serde_json's `as_f64` does
    fn as_f64(&self) -> Option<f64> {
        Some(match *self {
            TapeNumber::I64(n) => n as f64,
            TapeNumber::U64(n) => n as f64,
            TapeNumber::F64(n) => n,
        })
    }

    fn as_str(&self) -> Cow<'_, str> {
        Cow::Owned(self.to_number().to_string())
    }

    fn to_number(&self) -> Cow<'_, Number> {
        Cow::Owned(match *self {
            TapeNumber::I64(n) => Number::from(n),
            TapeNumber::U64(n) => Number::from(n),
            // A parsed JSON number is finite.
            TapeNumber::F64(n) => Number::from_f64(n).unwrap_or_else(|| Number::from(0)),
        })
    }

    fn is_integer(&self) -> bool {
        match *self {
            TapeNumber::I64(_) | TapeNumber::U64(_) => true,
            // As jsonschema decides it for serde_json's numbers: `1.0` is one from draft 6 on.
            TapeNumber::F64(n) => n.fract() == 0.0,
        }
    }

    fn is_written_as_integer(&self) -> bool {
        // simd-json reads a number with a fraction or an exponent as a float.
        !matches!(self, TapeNumber::F64(_))
    }
}

/// Objects with at most this many members are checked for a repeated name pair by pair.
const PAIRWISE_MEMBERS: usize = 16;

/// The first member name given twice in one object, anywhere in the value `root` starts.
pub(crate) fn repeated_name<'a>(root: TapeNode<'a>) -> Option<&'a str> {
    let TapeNode::At(nodes) = root else {
        return None;
    };
    // The common payload, a flat object (each value one node: a scalar, or an empty object
    // or array), holds no object but itself, and its names stand at every other node.
    if let Some(&simd_json::Node::Object { len, count }) = nodes.first()
        && count == 2 * len
        && len <= PAIRWISE_MEMBERS
        && let Some(members) = nodes.get(1..=count)
    {
        // A node where a name belongs ends the names (not a tape simd-json builds).
        let names = members.iter().step_by(2).map_while(|node| match node {
            simd_json::Node::String(name) => Some(*name),
            _ => None,
        });
        return repeated_pairwise(names);
    }
    let own = nodes.first().map_or(0, span).min(nodes.len());
    let mut seen = std::collections::HashSet::new();
    for (at, node) in nodes[..own].iter().enumerate() {
        let simd_json::Node::Object { len, .. } = node else {
            continue;
        };
        let object = Container {
            nodes: &nodes[at..],
            len: *len,
        };
        let repeated = if *len <= PAIRWISE_MEMBERS {
            repeated_pairwise(object.members().map(|(name, _)| name))
        } else {
            seen.clear();
            object
                .members()
                .map(|(name, _)| name)
                .find(|&name| !seen.insert(name))
        };
        if repeated.is_some() {
            return repeated;
        }
    }
    None
}

/// The first of at most [`PAIRWISE_MEMBERS`] `names` that an earlier one equals. A name is
/// compared with the earlier ones only when one of them looked alike (length and end bytes),
/// which distinct names seldom do.
fn repeated_pairwise<'a>(names: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let mut earlier: [&'a str; PAIRWISE_MEMBERS] = [""; PAIRWISE_MEMBERS];
    let mut looks = 0u64;
    for (count, name) in names.take(PAIRWISE_MEMBERS).enumerate() {
        let look = 1u64 << (look_of(name) & 63);
        if looks & look != 0 && earlier[..count].contains(&name) {
            return Some(name);
        }
        looks |= look;
        earlier[count] = name;
    }
    None
}

/// A few bits of `name` that equal names share: its length and end bytes.
fn look_of(name: &str) -> u32 {
    let bytes = name.as_bytes();
    let end = |byte: Option<&u8>| u32::from(byte.copied().unwrap_or(0));
    (bytes.len() as u32).wrapping_mul(7) ^ end(bytes.first()).wrapping_mul(13) ^ end(bytes.last())
}

/// Parses `json` into a tape and calls `f` with its root; `None` when simd-json refuses the
/// text (the caller then parses it with serde_json, which decides what it is).
pub(crate) fn with_tape<T>(json: &[u8], f: impl FnOnce(TapeNode<'_>) -> T) -> Option<T> {
    crate::document::with_tape_only(json, |root| f(root.tape()))
}
