//! `_bulk` bodies (one `index` action + document per event, contiguous so that any run of
//! items is one slice) and reading the per-item results.

use std::ops::Range;

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::OutEvent;
use crate::elasticsearch::{IndexPattern, document_id};
use crate::envelope_json::write_envelope;

/// The NDJSON of a whole batch; item `i` is `body[items[i].clone()]`.
pub struct BulkBody {
    /// Every item's action and document lines.
    pub body: Vec<u8>,
    /// Byte range of each event's two lines, in event order.
    pub items: Vec<Range<usize>>,
}

impl BulkBody {
    /// Encodes every event as `{"index":{"_index":..,"_id":..}}\n{envelope}\n`, the `_id` from
    /// [`document_id`] (tenant, source and event id). Events without an id get one from
    /// Elasticsearch (then a re-send can duplicate them).
    pub fn encode(
        route: &str,
        pattern: &IndexPattern,
        events: &[OutEvent],
    ) -> serde_json::Result<Self> {
        let mut body = Vec::with_capacity(events.len() * 320);
        let mut items = Vec::with_capacity(events.len());
        for event in events {
            let start = body.len();
            let index = pattern.render(route, &event.envelope);
            let id = document_id(&event.envelope);
            serde_json::to_writer(
                &mut body,
                &Action {
                    index: ActionMeta {
                        index: &index,
                        id: id.as_deref(),
                    },
                },
            )?;
            body.push(b'\n');
            write_envelope(&mut body, &event.envelope)?;
            body.push(b'\n');
            items.push(start..body.len());
        }
        Ok(Self { body, items })
    }

    /// Splits items `0..n` into consecutive runs whose bodies stay within `max_bytes` (an item
    /// bigger than that goes alone).
    pub fn chunks(&self, max_bytes: usize) -> Vec<Range<usize>> {
        let mut chunks = Vec::new();
        let mut start = 0;
        for (i, item) in self.items.iter().enumerate() {
            if i > start && item.end - self.items[start].start > max_bytes {
                chunks.push(start..i);
                start = i;
            }
        }
        if start < self.items.len() {
            chunks.push(start..self.items.len());
        }
        chunks
    }

    /// The body bytes of items `range`.
    pub fn slice(&self, range: &Range<usize>) -> &[u8] {
        match (self.items.get(range.start), self.items.get(range.end - 1)) {
            (Some(first), Some(last)) if !range.is_empty() => &self.body[first.start..last.end],
            _ => &[],
        }
    }
}

#[derive(serde::Serialize)]
struct Action<'a> {
    index: ActionMeta<'a>,
}

#[derive(serde::Serialize)]
struct ActionMeta<'a> {
    #[serde(rename = "_index")]
    index: &'a str,
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
}

/// What became of one item of a `_bulk` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    /// Indexed.
    Ok,
    /// 429 or 5xx: send again.
    Retry,
    /// Refused for good, with the reason (e.g. `mapper_parsing_exception: ...`).
    Rejected(String),
}

#[derive(Deserialize)]
struct ErrorsOnly {
    errors: bool,
    #[serde(default)]
    items: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Full {
    #[serde(default)]
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    #[serde(alias = "create", alias = "update", alias = "delete")]
    index: ItemResult,
}

#[derive(Deserialize)]
struct ItemResult {
    status: u16,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// Why a `_bulk` response could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BulkResponseError {
    /// Not the JSON of a bulk response.
    #[error("not a _bulk response")]
    Json(#[source] serde_json::Error),
    /// Not one result per action.
    #[error("_bulk response has {got} items for {expected} actions")]
    Count {
        /// Results in the response.
        got: usize,
        /// Actions sent.
        expected: usize,
    },
}

/// Reads a `_bulk` response for `expected` items. Fails when the body is not a bulk response
/// or does not have one result per item.
pub fn parse_response(body: &[u8], expected: usize) -> Result<Vec<ItemOutcome>, BulkResponseError> {
    let head: ErrorsOnly = serde_json::from_slice(body).map_err(BulkResponseError::Json)?;
    let _ = head.items;
    if !head.errors {
        return Ok(vec![ItemOutcome::Ok; expected]);
    }
    let full: Full = serde_json::from_slice(body).map_err(BulkResponseError::Json)?;
    if full.items.len() != expected {
        return Err(BulkResponseError::Count {
            got: full.items.len(),
            expected,
        });
    }
    Ok(full
        .items
        .into_iter()
        .map(|item| {
            let r = item.index;
            match (r.status, r.error) {
                (429 | 500..=599, _) => ItemOutcome::Retry,
                (200..=299, None) => ItemOutcome::Ok,
                (status, error) => ItemOutcome::Rejected(reason(status, error.as_ref())),
            }
        })
        .collect())
}

/// `type: reason (caused by: type: reason)` of an item error.
fn reason(status: u16, error: Option<&serde_json::Value>) -> String {
    let Some(error) = error else {
        return format!("status {status}");
    };
    let describe = |e: &serde_json::Value| {
        let kind = e.get("type").and_then(|v| v.as_str()).unwrap_or("error");
        let text = e.get("reason").and_then(|v| v.as_str()).unwrap_or("");
        format!("{kind}: {text}")
    };
    let mut out = describe(error);
    if let Some(cause) = error.get("caused_by") {
        out.push_str(&format!(" (caused by {})", describe(cause)));
    }
    out
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use headwater_schemas::Envelope;

    use super::*;

    fn events(n: usize) -> Vec<OutEvent> {
        (0..n)
            .map(|i| OutEvent {
                topic: "events".into(),
                partition: 0,
                offset: i as i64,
                key: None,
                envelope: Envelope {
                    id: if i == 1 {
                        String::new()
                    } else {
                        format!("e{i}")
                    },
                    event_type: "t".into(),
                    payload: Bytes::from_static(b"{\"a\":1}"),
                    ..Envelope::default()
                },
            })
            .collect()
    }

    #[test]
    fn body_and_chunks() {
        let pattern = IndexPattern::parse("i-{type}").unwrap();
        let bulk = BulkBody::encode("r", &pattern, &events(5)).unwrap();
        let text = String::from_utf8(bulk.body.clone()).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 10);
        assert_eq!(
            lines[0],
            r#"{"index":{"_index":"i-t","_id":"7:default:0::e0"}}"#
        );
        assert_eq!(lines[2], r#"{"index":{"_index":"i-t"}}"#);
        assert!(lines[1].contains(r#""payload":{"a":1}"#));
        let one = bulk.items[0].len();
        let chunks = bulk.chunks(one * 2);
        assert_eq!(chunks.first(), Some(&(0..2)));
        assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), 5);
        assert_eq!(bulk.chunks(1).len(), 5);
        assert_eq!(bulk.slice(&(0..5)), &bulk.body[..]);
    }

    #[test]
    fn item_results() {
        let ok = br#"{"took":3,"errors":false,"items":[{"index":{"status":201}}]}"#;
        assert_eq!(parse_response(ok, 1).unwrap(), vec![ItemOutcome::Ok]);
        let mixed = br#"{"errors":true,"items":[
            {"index":{"status":200}},
            {"index":{"status":429,"error":{"type":"es_rejected_execution_exception"}}},
            {"index":{"status":400,"error":{"type":"mapper_parsing_exception",
              "reason":"failed to parse field [p]","caused_by":{"type":"number_format_exception",
              "reason":"For input string: \"x\""}}}},
            {"create":{"status":503}}]}"#;
        let out = parse_response(mixed, 4).unwrap();
        assert_eq!(out[0], ItemOutcome::Ok);
        assert_eq!(out[1], ItemOutcome::Retry);
        assert_eq!(out[3], ItemOutcome::Retry);
        let ItemOutcome::Rejected(reason) = &out[2] else {
            panic!("{out:?}")
        };
        assert!(reason.starts_with("mapper_parsing_exception: failed to parse field [p]"));
        assert!(reason.contains("number_format_exception"));
        assert!(parse_response(mixed, 3).is_err());
        assert!(parse_response(b"<html>", 1).is_err());
    }
}
