//! A value on a simd-json tape as a serde `Deserializer`, so that prost-reflect reads a
//! protobuf type's JSON payload from the parse the gateway already made of the body, instead
//! of parsing its text again with serde_json.
//!
//! It hands prost-reflect's visitors what `serde_json::Deserializer` hands them for the same
//! text: a non-negative integer as `u64`, a negative one as `i64`, `-0` and any number with a
//! fraction or an exponent as `f64` (simd-json keeps `-0` as the integer 0 with its sign, the
//! only `i64` that is not negative), strings with their escapes resolved, an object's members
//! and an array's elements in order; `deserialize_str`, `_map`, `_seq` and `_unit` accept only
//! their own type, as serde_json's do. One difference is kept: simd-json rounds every number
//! correctly, serde_json (without `float_roundtrip`) can miss by one unit in the last place on
//! numbers of more than 19 digits. Its errors carry no wording: a payload it refuses is
//! decided, and its refusal worded, by the serde_json path ([`crate::registry`]).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Unexpected, Visitor};
use simd_json::{Node, StaticNode};

use crate::tape::span;

/// A refusal, unworded (see the module's documentation).
#[derive(Debug)]
pub(crate) struct Refused;

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("refused on the tape")
    }
}

impl std::error::Error for Refused {}

impl de::Error for Refused {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Refused
    }
}

/// The value whose nodes start `nodes` (its own are the first [`span`] of them).
pub(crate) struct TapeDeserializer<'a> {
    nodes: &'a [Node<'a>],
}

impl<'a> TapeDeserializer<'a> {
    pub(crate) fn new(nodes: &'a [Node<'a>]) -> Self {
        Self { nodes }
    }

    fn first(&self) -> Result<&'a Node<'a>, Refused> {
        self.nodes.first().ok_or(Refused)
    }

    /// What serde's "invalid type" error names for the value.
    fn unexpected(&self) -> Unexpected<'a> {
        match self.nodes.first() {
            Some(Node::String(s)) => Unexpected::Str(s),
            Some(Node::Object { .. }) => Unexpected::Map,
            Some(Node::Array { .. }) => Unexpected::Seq,
            Some(Node::Static(StaticNode::Bool(b))) => Unexpected::Bool(*b),
            Some(Node::Static(StaticNode::I64(n))) => Unexpected::Signed(*n),
            Some(Node::Static(StaticNode::U64(n))) => Unexpected::Unsigned(*n),
            Some(Node::Static(StaticNode::F64(n))) => Unexpected::Float(*n),
            Some(Node::Static(StaticNode::Null)) | None => Unexpected::Unit,
        }
    }

    fn invalid<V: Visitor<'a>, T>(&self, visitor: &V) -> Result<T, Refused> {
        Err(de::Error::invalid_type(self.unexpected(), visitor))
    }

    /// The children after the opening node: `len` values (in an object, each after its name).
    fn children(&self, len: usize) -> Children<'a> {
        Children {
            rest: self.nodes.get(1..).unwrap_or_default(),
            left: len,
        }
    }
}

impl<'a> Deserializer<'a> for TapeDeserializer<'a> {
    type Error = Refused;

    fn deserialize_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Refused> {
        match self.first()? {
            Node::Static(StaticNode::Null) => visitor.visit_unit(),
            Node::Static(StaticNode::Bool(b)) => visitor.visit_bool(*b),
            // Non-negative integers are `U64` on the tape; an `I64` of 0 is `-0`, which
            // serde_json reads as a float.
            Node::Static(StaticNode::I64(0)) => visitor.visit_f64(-0.0),
            Node::Static(StaticNode::I64(n)) => visitor.visit_i64(*n),
            Node::Static(StaticNode::U64(n)) => visitor.visit_u64(*n),
            Node::Static(StaticNode::F64(n)) => visitor.visit_f64(*n),
            Node::String(s) => visitor.visit_borrowed_str(s),
            Node::Array { len, .. } => {
                let mut elements = self.children(*len);
                let value = visitor.visit_seq(&mut elements)?;
                elements.done(value)
            }
            Node::Object { len, .. } => {
                let mut members = self.children(*len);
                let value = visitor.visit_map(&mut members)?;
                members.done(value)
            }
        }
    }

    fn deserialize_option<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Refused> {
        match self.first()? {
            Node::Static(StaticNode::Null) => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_str<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Refused> {
        match self.first()? {
            Node::String(s) => visitor.visit_borrowed_str(s),
            _ => self.invalid(&visitor),
        }
    }

    fn deserialize_string<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Refused> {
        self.deserialize_str(visitor)
    }

    fn deserialize_map<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Refused> {
        match self.first()? {
            Node::Object { .. } => self.deserialize_any(visitor),
            _ => self.invalid(&visitor),
        }
    }

    fn deserialize_seq<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Refused> {
        match self.first()? {
            Node::Array { .. } => self.deserialize_any(visitor),
            _ => self.invalid(&visitor),
        }
    }

    fn deserialize_unit<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Refused> {
        match self.first()? {
            Node::Static(StaticNode::Null) => visitor.visit_unit(),
            _ => self.invalid(&visitor),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Refused> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Refused> {
        visitor.visit_newtype_struct(self)
    }

    // prost-reflect asks for none of these; what serde_json does with them is not mirrored
    // (a string asked for as bytes, say), so they refuse and the serde_json path decides.
    fn deserialize_bytes<V: Visitor<'a>>(self, _: V) -> Result<V::Value, Refused> {
        Err(Refused)
    }

    fn deserialize_byte_buf<V: Visitor<'a>>(self, _: V) -> Result<V::Value, Refused> {
        Err(Refused)
    }

    fn deserialize_enum<V: Visitor<'a>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Refused> {
        Err(Refused)
    }

    serde::forward_to_deserialize_any! {
        <W: Visitor<'a>>
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char
        unit_struct tuple tuple_struct struct identifier
    }
}

/// The values of an object or array not yet visited: `left` of them from `rest` on.
struct Children<'a> {
    rest: &'a [Node<'a>],
    left: usize,
}

impl<'a> Children<'a> {
    /// The next value, and `rest` moved past it.
    fn value(&mut self) -> Result<TapeDeserializer<'a>, Refused> {
        let nodes = self.rest;
        let own = span(nodes.first().ok_or(Refused)?);
        self.rest = nodes.get(own..).ok_or(Refused)?;
        self.left -= 1;
        Ok(TapeDeserializer { nodes })
    }

    /// `value`, unless the visitor left members or elements unread (serde_json refuses that:
    /// "trailing characters").
    fn done<T>(self, value: T) -> Result<T, Refused> {
        match self.left {
            0 => Ok(value),
            _ => Err(Refused),
        }
    }
}

impl<'a> SeqAccess<'a> for Children<'a> {
    type Error = Refused;

    fn next_element_seed<T: DeserializeSeed<'a>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Refused> {
        if self.left == 0 {
            return Ok(None);
        }
        seed.deserialize(self.value()?).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}

impl<'a> MapAccess<'a> for Children<'a> {
    type Error = Refused;

    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Refused> {
        if self.left == 0 {
            return Ok(None);
        }
        let (Node::String(name), after) = self.rest.split_first().ok_or(Refused)? else {
            return Err(Refused);
        };
        self.rest = after;
        seed.deserialize(de::value::BorrowedStrDeserializer::new(name))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> Result<V::Value, Refused> {
        seed.deserialize(self.value()?)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left)
    }
}
