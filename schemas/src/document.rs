//! A JSON text parsed once, each of its values found both on the tape and in the text.
//!
//! simd-json's first stage lists the offset of every structural character of the text (each
//! bracket, brace, colon and comma, and the first byte of each string, number and literal);
//! its second builds the tape from that list. [`with_document`] keeps both and walks them in
//! step, so a caller reads the fields of a batch's envelope from the tape, slices a value's
//! bytes exactly as sent ([`JsonValue::raw`]) and hands the value's tape to the registry
//! ([`Payload::Parsed`](crate::Payload::Parsed)), which validates it without parsing it again.
//!
//! The two walks agree because a value's structurals are known without walking it: a string,
//! number or literal has one (its first byte), an object or array runs from its opening to its
//! matching closing character (strings cannot hide one: their contents are not structural).
//! Where that match is depends on the tape alone unless the text holds an empty object or
//! array: each node of a container's tape is one structural (a member's name too), and each
//! node after the container's own also has a colon or comma after it but for a container's
//! last, which has the closing character instead; so a container of `count` nodes below it
//! takes `2 * count + 1` structurals, plus one for each empty object or array in it (its
//! closing character follows no node). So the root's count and the number of structurals
//! tell whether the text holds one, and only a text that does has its brackets matched in a
//! pass of their own.

use std::cell::RefCell;

use simd_json::{Buffers, Tape};

use crate::tape::TapeNode;

/// A parsed text: the tape, the structurals, how far each container runs, the text as given.
struct Doc<'a> {
    nodes: &'a [simd_json::Node<'a>],
    /// The offset of each structural in `text`.
    structurals: &'a [u32],
    extents: Extents<'a>,
    /// The whole text as the caller gave it (the tape's strings point into a copy).
    text: &'a [u8],
}

/// How many structurals an object or array of the document takes.
#[derive(Clone, Copy)]
enum Extents<'a> {
    /// `2 * count + 1` for a container of `count` nodes: the text holds no empty object or
    /// array (see the module's notes).
    Counted,
    /// Parallel to the structurals: for an opening bracket or brace, how many structurals on
    /// its match is; else whatever an earlier document left there (never read).
    Matched(&'a [u32]),
    /// Only the root's tape is read ([`with_tape_only`]): the rest of the text.
    Root,
}

/// A value of a parsed document: where its node is on the tape and its first structural.
#[derive(Clone, Copy)]
pub struct JsonValue<'a> {
    doc: &'a Doc<'a>,
    node: usize,
    structural: usize,
}

impl<'a> JsonValue<'a> {
    #[inline]
    fn first(&self) -> Option<&'a simd_json::Node<'a>> {
        self.doc.nodes.get(self.node)
    }

    /// How many structurals the value takes: through its match for an object or array, one
    /// for anything else.
    #[inline]
    fn own(&self) -> usize {
        match self.first() {
            Some(simd_json::Node::Object { count, .. } | simd_json::Node::Array { count, .. }) => {
                self.container_own(*count)
            }
            _ => 1,
        }
    }

    /// [`own`](Self::own) of an object or array of `count` nodes below it: through its match.
    #[inline]
    fn container_own(&self, count: usize) -> usize {
        let rest = self.doc.structurals.len().saturating_sub(self.structural);
        match self.doc.extents {
            Extents::Counted => (2 * count + 1).min(rest),
            Extents::Matched(closes) => closes
                .get(self.structural)
                .map_or(rest, |&to| to as usize + 1),
            Extents::Root => rest,
        }
    }

    /// The value's bytes exactly as they stand in the text, without the whitespace around it.
    #[must_use]
    #[inline]
    pub fn raw(&self) -> &'a [u8] {
        let (structurals, text) = (self.doc.structurals, self.doc.text);
        let Some(&start) = structurals.get(self.structural) else {
            return &[];
        };
        let end = match self.first() {
            // Through the closing bracket or brace.
            Some(simd_json::Node::Object { .. } | simd_json::Node::Array { .. }) => structurals
                .get(self.structural + self.own() - 1)
                .map_or(text.len(), |&close| close as usize + 1),
            // Up to what follows: a comma, a closing character, or the end of the text.
            _ => structurals
                .get(self.structural + 1)
                .map_or(text.len(), |&next| next as usize),
        };
        let raw = text.get(start as usize..end).unwrap_or_default();
        let kept = raw
            .iter()
            .rposition(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .map_or(0, |last| last + 1);
        &raw[..kept]
    }

    /// The string, if the value is one (escapes resolved).
    #[must_use]
    #[inline]
    pub fn as_str(&self) -> Option<&'a str> {
        match self.first()? {
            simd_json::Node::String(string) => Some(string),
            _ => None,
        }
    }

    /// The integer, if the value is one within `i64`.
    #[must_use]
    #[inline]
    pub fn as_i64(&self) -> Option<i64> {
        match self.first()? {
            simd_json::Node::Static(simd_json::StaticNode::I64(n)) => Some(*n),
            simd_json::Node::Static(simd_json::StaticNode::U64(n)) => i64::try_from(*n).ok(),
            _ => None,
        }
    }

    /// The integer, if the value is one within `u64`.
    #[must_use]
    #[inline]
    pub fn as_u64(&self) -> Option<u64> {
        match self.first()? {
            simd_json::Node::Static(simd_json::StaticNode::I64(n)) => u64::try_from(*n).ok(),
            simd_json::Node::Static(simd_json::StaticNode::U64(n)) => Some(*n),
            _ => None,
        }
    }

    /// Whether the value is `null`.
    #[must_use]
    #[inline]
    pub fn is_null(&self) -> bool {
        matches!(
            self.first(),
            Some(simd_json::Node::Static(simd_json::StaticNode::Null))
        )
    }

    /// The elements, if the value is an array: how many, and each in turn.
    #[must_use]
    #[inline]
    pub fn elements(&self) -> Option<Elements<'a>> {
        match self.first()? {
            simd_json::Node::Array { len, .. } => Some(Elements(self.children(*len))),
            _ => None,
        }
    }

    /// The members, if the value is an object: how many, and each name and value in turn.
    #[must_use]
    #[inline]
    pub fn members(&self) -> Option<Members<'a>> {
        match self.first()? {
            simd_json::Node::Object { len, .. } => Some(Members(self.children(*len))),
            _ => None,
        }
    }

    /// The children after the opening node and structural.
    #[inline]
    fn children(&self, len: usize) -> Children<'a> {
        Children {
            next: JsonValue {
                node: self.node + 1,
                structural: self.structural + 1,
                ..*self
            },
            left: len,
        }
    }

    /// The value as the registry's validators read it.
    pub(crate) fn tape(&self) -> TapeNode<'a> {
        TapeNode::At(self.doc.nodes.get(self.node..).unwrap_or_default())
    }
}

impl std::fmt::Debug for JsonValue<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("JsonValue")
            .field(&String::from_utf8_lossy(self.raw()))
            .finish()
    }
}

/// Whether the text holds an empty object or array. Each adds one structural to the
/// `2 * count + 1` of the container that holds it (module notes), so the root's count and the
/// number of structurals tell, with no pass over the tape; a scalar root holds none. Anything
/// but the exact count (an empty container, or a tape simd-json got wrong) has the brackets
/// matched.
fn holds_empty_container(nodes: &[simd_json::Node<'_>], structurals: &[u32]) -> bool {
    match nodes.first() {
        Some(simd_json::Node::Object { count, .. } | simd_json::Node::Array { count, .. }) => {
            Some(structurals.len()) != count.checked_mul(2).and_then(|n| n.checked_add(1))
        }
        _ => false,
    }
}

/// Fills `closes` (parallel to `structurals`) with, for each opening bracket or brace, how
/// many structurals on its matching closing one is: one pass over the text's structurals, so
/// that a value's extent is then known without walking it.
fn match_closes(text: &[u8], structurals: &[u32], closes: &mut Vec<u32>, open: &mut Vec<u32>) {
    // Only the entries of opening characters are read, and each is written below (a text
    // simd-json took has every bracket matched): the rest are not cleared, which took about
    // a quarter of this pass's instructions.
    if closes.len() < structurals.len() {
        closes.resize(structurals.len(), 0);
    }
    open.clear();
    for (at, &offset) in (0u32..).zip(structurals) {
        // `{` and `[` differ only in the bit 0x20, as do `}` and `]`; no other structural
        // byte (`:`, `,`, `"`, a digit, `-`, `t`, `f`, `n`) becomes either with it set.
        match text.get(offset as usize).map(|byte| byte | 0x20) {
            Some(b'{') => open.push(at),
            Some(b'}') => {
                if let Some(start) = open.pop()
                    && let Some(close) = closes.get_mut(start as usize)
                {
                    *close = at - start;
                }
            }
            _ => {}
        }
    }
}

/// The children of an object or array not yet visited: `left` of them from `next` on (in an
/// object, `next` is at a member's name).
struct Children<'a> {
    next: JsonValue<'a>,
    left: usize,
}

impl<'a> Children<'a> {
    /// The next value, and both walks moved past it and the comma or closing character after.
    #[inline]
    fn value(&mut self) -> Option<JsonValue<'a>> {
        let value = self.next;
        // The tape's and the text's steps past the value, its node looked at once.
        let (nodes, structurals) = match value.first()? {
            simd_json::Node::Object { count, .. } | simd_json::Node::Array { count, .. } => {
                (count + 1, value.container_own(*count))
            }
            _ => (1, 1),
        };
        self.next.node += nodes;
        self.next.structural += structurals + 1;
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

    #[inline]
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

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.0.left == 0 {
            return None;
        }
        let simd_json::Node::String(name) = self.0.next.first()? else {
            return None;
        };
        // Past the name's node, and its structural and the colon's.
        self.0.next.node += 1;
        self.0.next.structural += 2;
        Some((name, self.0.value()?))
    }
}

/// What a thread keeps between documents, so a parse allocates only while they grow.
#[derive(Default)]
struct Scratch {
    input: Vec<u8>,
    buffers: Option<Buffers>,
    tape: Option<Tape<'static>>,
    closes: Vec<u32>,
    open: Vec<u32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
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
    with_scratch(json, true, f)
}

/// [`with_document`] for a caller that reads only the root's tape
/// ([`JsonValue::raw`] of a value inside it is then not to be asked).
pub(crate) fn with_tape_only<T>(json: &[u8], f: impl FnOnce(JsonValue<'_>) -> T) -> Option<T> {
    with_scratch(json, false, f)
}

fn with_scratch<T>(json: &[u8], spans: bool, f: impl FnOnce(JsonValue<'_>) -> T) -> Option<T> {
    if json.len() > KEPT_BYTES {
        return parse(json, spans, &mut Scratch::default(), f);
    }
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut scratch) => parse(json, spans, &mut scratch, f),
        // A nested call (there is none) finds fresh buffers, not a panic.
        Err(_) => parse(json, spans, &mut Scratch::default(), f),
    })
}

/// Parses a copy of `text` (simd-json may change it in place) in `scratch` and calls `f` with
/// its root, matching the brackets first if `spans`; leaves the tape empty for the next parse.
fn parse<T>(
    text: &[u8],
    spans: bool,
    scratch: &mut Scratch,
    f: impl FnOnce(JsonValue<'_>) -> T,
) -> Option<T> {
    let Scratch {
        input,
        buffers,
        tape,
        closes,
        open,
    } = scratch;
    // The copy carries the padding simd-json reads past the end, so it parses the copy
    // itself rather than copying it again into a padded buffer of its own.
    input.clear();
    input.reserve(text.len() + simd_json::INPUT_PADDING);
    input.extend_from_slice(text);
    input.resize(text.len() + simd_json::INPUT_PADDING, b' ');
    let buffers = buffers.get_or_insert_with(|| Buffers::with_max_depth(text.len(), MAX_DEPTH));
    let mut filled = tape.take().unwrap_or_else(|| Tape(Vec::new())).reset();
    let result = match simd_json::fill_tape_padded(input, text.len(), buffers, &mut filled) {
        Ok(()) => {
            let structurals = buffers.structural_indexes();
            let extents = if !spans {
                Extents::Root
            } else if holds_empty_container(&filled.0, structurals) {
                match_closes(text, structurals, closes, open);
                Extents::Matched(closes.get(..structurals.len()).unwrap_or_default())
            } else {
                Extents::Counted
            };
            let doc = Doc {
                nodes: &filled.0,
                structurals,
                extents,
                text,
            };
            let root = JsonValue {
                doc: &doc,
                node: 0,
                structural: 0,
            };
            Some(f(root))
        }
        Err(_) => None,
    };
    *tape = Some(filled.reset());
    result
}

#[cfg(test)]
#[path = "document_tests.rs"]
mod tests;
