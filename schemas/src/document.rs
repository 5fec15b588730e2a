//! A JSON text parsed once, each of its values found both on the tape and in the text.
//!
//! simd-json's first stage lists the offset of every structural character of the text (each
//! bracket, brace, colon and comma, and the first byte of each string, number and literal);
//! its second builds the tape from that list. [`with_document`] keeps both and walks them in
//! step, so a caller reads the fields of a batch's envelope from the tape, slices a value's
//! bytes exactly as sent ([`JsonValue::raw`]) and hands the value's tape to the registry
//! ([`Payload::Parsed`](crate::Payload::Parsed)), which validates it without parsing it again.
//!
//! The two walks agree because a value's structurals are known without the tape: a string,
//! number or literal has one (its first byte), an object or array runs from its opening to its
//! matching closing character (strings cannot hide one: their contents are not structural).

use std::cell::RefCell;

use simd_json::{Buffers, Tape};

use crate::tape::{TapeNode, span};

/// A value of a parsed document: its nodes on the tape and its structurals in the text.
#[derive(Clone, Copy)]
pub struct JsonValue<'a> {
    /// From this value's node to the tape's end.
    nodes: &'a [simd_json::Node<'a>],
    /// From this value's first structural to the text's last.
    structurals: &'a [u32],
    /// How many of `structurals` are this value's own.
    own: usize,
    /// The whole text as the caller gave it (the tape's strings point into a copy).
    text: &'a [u8],
}

impl<'a> JsonValue<'a> {
    fn at(nodes: &'a [simd_json::Node<'a>], structurals: &'a [u32], text: &'a [u8]) -> Self {
        JsonValue {
            nodes,
            structurals,
            own: own_structurals(text, structurals),
            text,
        }
    }

    fn first(&self) -> Option<&'a simd_json::Node<'a>> {
        self.nodes.first()
    }

    /// The value's bytes exactly as they stand in the text, without the whitespace around it.
    #[must_use]
    pub fn raw(&self) -> &'a [u8] {
        let Some(&start) = self.structurals.first() else {
            return &[];
        };
        let start = start as usize;
        let end = match self.first() {
            // Through the closing bracket or brace.
            Some(simd_json::Node::Object { .. } | simd_json::Node::Array { .. }) => self
                .structurals
                .get(self.own - 1)
                .map_or(self.text.len(), |&close| close as usize + 1),
            // Up to what follows: a comma, a closing character, or the end of the text.
            _ => self
                .structurals
                .get(1)
                .map_or(self.text.len(), |&next| next as usize),
        };
        let raw = self.text.get(start..end).unwrap_or_default();
        let kept = raw
            .iter()
            .rposition(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .map_or(0, |last| last + 1);
        &raw[..kept]
    }

    /// The string, if the value is one (escapes resolved).
    #[must_use]
    pub fn as_str(&self) -> Option<&'a str> {
        match self.first()? {
            simd_json::Node::String(string) => Some(string),
            _ => None,
        }
    }

    /// The integer, if the value is one within `i64`.
    #[must_use]
    pub fn as_i64(&self) -> Option<i64> {
        match self.first()? {
            simd_json::Node::Static(simd_json::StaticNode::I64(n)) => Some(*n),
            simd_json::Node::Static(simd_json::StaticNode::U64(n)) => i64::try_from(*n).ok(),
            _ => None,
        }
    }

    /// The integer, if the value is one within `u64`.
    #[must_use]
    pub fn as_u64(&self) -> Option<u64> {
        match self.first()? {
            simd_json::Node::Static(simd_json::StaticNode::I64(n)) => u64::try_from(*n).ok(),
            simd_json::Node::Static(simd_json::StaticNode::U64(n)) => Some(*n),
            _ => None,
        }
    }

    /// Whether the value is `null`.
    #[must_use]
    pub fn is_null(&self) -> bool {
        matches!(
            self.first(),
            Some(simd_json::Node::Static(simd_json::StaticNode::Null))
        )
    }

    /// The elements, if the value is an array: how many, and each in turn.
    #[must_use]
    pub fn elements(&self) -> Option<Elements<'a>> {
        match self.first()? {
            simd_json::Node::Array { len, .. } => Some(Elements(self.children(*len))),
            _ => None,
        }
    }

    /// The members, if the value is an object: how many, and each name and value in turn.
    #[must_use]
    pub fn members(&self) -> Option<Members<'a>> {
        match self.first()? {
            simd_json::Node::Object { len, .. } => Some(Members(self.children(*len))),
            _ => None,
        }
    }

    fn children(&self, len: usize) -> Children<'a> {
        Children {
            nodes: self.nodes.get(1..).unwrap_or_default(),
            structurals: self.structurals.get(1..).unwrap_or_default(),
            left: len,
            text: self.text,
        }
    }

    /// The value as the registry's validators read it.
    pub(crate) fn tape(&self) -> TapeNode<'a> {
        TapeNode::At(self.nodes)
    }
}

impl std::fmt::Debug for JsonValue<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("JsonValue")
            .field(&String::from_utf8_lossy(self.raw()))
            .finish()
    }
}

/// How many structurals the value starting at `structurals[0]` takes: one for a string,
/// number or literal, through the matching closing character for an object or array.
fn own_structurals(text: &[u8], structurals: &[u32]) -> usize {
    let mut depth = 0usize;
    for (at, &offset) in structurals.iter().enumerate() {
        match text.get(offset as usize) {
            Some(b'{' | b'[') => depth += 1,
            Some(b'}' | b']') => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth == 0 {
            return at + 1;
        }
    }
    structurals.len()
}

/// The children of an object or array not yet visited: `left` of them from `nodes` and
/// `structurals` on (in an object, each after its name and colon).
struct Children<'a> {
    nodes: &'a [simd_json::Node<'a>],
    structurals: &'a [u32],
    left: usize,
    text: &'a [u8],
}

impl<'a> Children<'a> {
    /// The next value, and both walks moved past it and the comma or closing character after.
    fn value(&mut self) -> Option<JsonValue<'a>> {
        let value = JsonValue::at(self.nodes, self.structurals, self.text);
        let first = value.first()?;
        self.nodes = self.nodes.get(span(first)..).unwrap_or_default();
        self.structurals = self.structurals.get(value.own + 1..).unwrap_or_default();
        self.left -= 1;
        Some(value)
    }
}

/// The elements of an array.
pub struct Elements<'a>(Children<'a>);

impl Elements<'_> {
    /// How many elements are left to visit.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.left
    }

    /// Whether every element has been visited.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.left == 0
    }
}

impl<'a> Iterator for Elements<'a> {
    type Item = JsonValue<'a>;

    fn next(&mut self) -> Option<JsonValue<'a>> {
        if self.0.left == 0 {
            return None;
        }
        self.0.value()
    }
}

/// The members of an object, in the text's order (a name given twice is met twice).
pub struct Members<'a>(Children<'a>);

impl<'a> Iterator for Members<'a> {
    type Item = (&'a str, JsonValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.left == 0 {
            return None;
        }
        let (simd_json::Node::String(name), nodes) = self.0.nodes.split_first()? else {
            return None;
        };
        // The name's structural and the colon's.
        self.0.nodes = nodes;
        self.0.structurals = self.0.structurals.get(2..).unwrap_or_default();
        Some((name, self.0.value()?))
    }
}

/// What a thread keeps between documents, so a parse allocates only while they grow.
struct Scratch {
    input: Vec<u8>,
    buffers: Buffers,
    tape: Option<Tape<'static>>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch {
        input: Vec::new(),
        buffers: Buffers::with_max_depth(4096, MAX_DEPTH),
        tape: None,
    });
}

/// Deepest nesting [`with_document`] parses, below serde_json's limit of 128: a deeper text is
/// left to serde_json, which decides (and words) what it makes of it.
pub const MAX_DEPTH: usize = 100;

/// Largest text whose parse buffers a thread keeps for the next (a larger one gets its own,
/// freed after): a tape takes several times its text.
const KEPT_BYTES: usize = 64 * 1024;

/// Parses `json` and calls `f` with its root value; `None` when simd-json refuses the text or
/// it nests deeper than [`MAX_DEPTH`] (the caller then reads it with serde_json, which decides
/// what it is).
pub fn with_document<T>(json: &[u8], f: impl FnOnce(JsonValue<'_>) -> T) -> Option<T> {
    if json.len() > KEPT_BYTES {
        let mut buffers = Buffers::with_max_depth(json.len(), MAX_DEPTH);
        return parse(&mut json.to_vec(), &mut buffers, Tape(Vec::new()), json, f).0;
    }
    SCRATCH.with(|scratch| {
        // A nested call (there is none) finds fresh buffers, not a panic.
        let Ok(mut scratch) = scratch.try_borrow_mut() else {
            let mut buffers = Buffers::with_max_depth(json.len(), MAX_DEPTH);
            return parse(&mut json.to_vec(), &mut buffers, Tape(Vec::new()), json, f).0;
        };
        let Scratch {
            input,
            buffers,
            tape,
        } = &mut *scratch;
        input.clear();
        input.extend_from_slice(json);
        let empty = tape.take().unwrap_or_else(|| Tape(Vec::new())).reset();
        let (result, used) = parse(input, buffers, empty, json, f);
        *tape = Some(used);
        result
    })
}

/// Parses `input` (a copy of `text`, which simd-json may change in place) and calls `f` with
/// its root; returns the tape emptied for the next parse.
fn parse<'t, T>(
    input: &'t mut [u8],
    buffers: &'t mut Buffers,
    mut tape: Tape<'t>,
    text: &'t [u8],
    f: impl FnOnce(JsonValue<'_>) -> T,
) -> (Option<T>, Tape<'static>) {
    let result = match simd_json::fill_tape(input, buffers, &mut tape) {
        Ok(()) => {
            // One value, so every structural is the root's: no walk to count them.
            let structurals = buffers.structural_indexes();
            let root = JsonValue {
                nodes: &tape.0,
                structurals,
                own: structurals.len(),
                text,
            };
            Some(f(root))
        }
        Err(_) => None,
    };
    (result, tape.reset())
}
