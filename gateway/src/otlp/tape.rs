//! A log record's payload as the simd-json tape of its JSON text, built from the decoded record
//! beside the text ([`super::RecordJson`]), so that validation reads the tape and does not
//! parse the text it has just been written as.
//!
//! The tape is exactly what simd-json parses the text into (a test compares the two over
//! generated records): the same members in the same order (names sorted, of a name given twice
//! the last value), strings as they were before escaping, integers as simd-json reads them
//! back (unsigned unless negative), a finite double as the double ryu's shortest text stands
//! for. A value that is written
//! as text made on the spot (bytes as hex) has nothing here to borrow from: such a record gets
//! no tape and is validated from its text as before.

use headwater_schemas::{TapeNode as Node, TapeScalar as Scalar};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;

use super::attribute_order;

/// The hex text of a record's ids, as its payload writes them.
pub(super) struct Ids {
    pub(super) span_id: String,
    pub(super) trace_id: String,
}

impl Ids {
    pub(super) fn of(record: &LogRecord) -> Self {
        Self {
            span_id: hex::encode(&record.span_id),
            trace_id: hex::encode(&record.trace_id),
        }
    }
}

/// The tape of a record's payload: `resource` and `scope` the tapes of the texts copied in
/// (from [`attributes`], and [`scope`]). `None` when a value has no tape here.
pub(super) fn record<'a>(
    record: &'a LogRecord,
    order: &[usize],
    ids: &'a Ids,
    resource: &[Node<'a>],
    scope: &[Node<'a>],
) -> Option<Vec<Node<'a>>> {
    let mut nodes = Vec::with_capacity(24 + resource.len() + scope.len());
    let at = open(&mut nodes);
    nodes.push(Node::String("attributes"));
    ordered(&record.attributes, order, &mut nodes)?;
    nodes.push(Node::String("body"));
    any(record.body.as_ref(), &mut nodes)?;
    nodes.push(Node::String("observed_time_unix_nano"));
    nodes.push(unsigned(record.observed_time_unix_nano));
    nodes.push(Node::String("resource"));
    nodes.extend_from_slice(resource);
    nodes.push(Node::String("scope"));
    nodes.extend_from_slice(scope);
    nodes.push(Node::String("severity_number"));
    nodes.push(integer(i64::from(record.severity_number)));
    nodes.push(Node::String("severity_text"));
    nodes.push(Node::String(&record.severity_text));
    nodes.push(Node::String("span_id"));
    nodes.push(Node::String(&ids.span_id));
    nodes.push(Node::String("time_unix_nano"));
    nodes.push(unsigned(record.time_unix_nano));
    nodes.push(Node::String("trace_id"));
    nodes.push(Node::String(&ids.trace_id));
    close(&mut nodes, at, Container::Object, 10);
    Some(nodes)
}

/// The tape of an instrumentation scope's object (`name`, `version`), or of `null`.
pub(super) fn scope<'a>(scope: Option<(&'a str, &'a str)>) -> Vec<Node<'a>> {
    match scope {
        Some((name, version)) => vec![
            Node::Object { len: 2, count: 4 },
            Node::String("name"),
            Node::String(name),
            Node::String("version"),
            Node::String(version),
        ],
        None => vec![Node::Static(Scalar::Null)],
    }
}

/// Appends the tape of attributes as an object ([`super::Attributes`]).
pub(super) fn attributes<'a>(attributes: &'a [KeyValue], nodes: &mut Vec<Node<'a>>) -> Option<()> {
    ordered(attributes, &attribute_order(attributes), nodes)
}

/// [`attributes`], in the `order` [`attribute_order`] gave ([`super::Ordered`]).
fn ordered<'a>(
    attributes: &'a [KeyValue],
    order: &[usize],
    nodes: &mut Vec<Node<'a>>,
) -> Option<()> {
    let at = open(nodes);
    for &index in order {
        let kv = &attributes[index];
        nodes.push(Node::String(&kv.key));
        any(kv.value.as_ref(), nodes)?;
    }
    close(nodes, at, Container::Object, order.len());
    Some(())
}

/// Appends the tape of an attribute value ([`super::AnyJson`]).
fn any<'a>(value: Option<&'a AnyValue>, nodes: &mut Vec<Node<'a>>) -> Option<()> {
    let node = match value.and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => Node::String(s),
        Some(Any::BoolValue(b)) => Node::Static(Scalar::Bool(*b)),
        Some(Any::IntValue(i)) => integer(*i),
        Some(Any::DoubleValue(d)) if d.is_finite() => Node::Static(Scalar::F64(*d)),
        Some(Any::ArrayValue(array)) => {
            let at = open(nodes);
            for value in &array.values {
                any(Some(value), nodes)?;
            }
            close(nodes, at, Container::Array, array.values.len());
            return Some(());
        }
        Some(Any::KvlistValue(list)) => return attributes(&list.values, nodes),
        // Written as hex made on the spot: nothing to borrow.
        Some(Any::BytesValue(_)) => return None,
        // No value, a double that is not finite, a string table's index: null.
        _ => Node::Static(Scalar::Null),
    };
    nodes.push(node);
    Some(())
}

/// An integer as simd-json reads it back: unsigned unless negative.
fn integer(n: i64) -> Node<'static> {
    Node::Static(u64::try_from(n).map_or(Scalar::I64(n), Scalar::U64))
}

/// An unsigned integer as simd-json reads it back.
fn unsigned(n: u64) -> Node<'static> {
    Node::Static(Scalar::U64(n))
}

/// Opens an object or array at the end of `nodes`, closed by [`close`].
fn open(nodes: &mut Vec<Node<'_>>) -> usize {
    nodes.push(Node::Static(Scalar::Null));
    nodes.len() - 1
}

/// What [`open`] opened.
#[derive(Clone, Copy)]
enum Container {
    Object,
    Array,
}

/// Closes what [`open`] opened at `at`, with `len` members (an object's names not counted):
/// it holds the nodes after it.
fn close(nodes: &mut [Node<'_>], at: usize, container: Container, len: usize) {
    let count = nodes.len() - at - 1;
    nodes[at] = match container {
        Container::Object => Node::Object { len, count },
        Container::Array => Node::Array { len, count },
    };
}

#[cfg(test)]
#[path = "tape_tests.rs"]
mod tests;
