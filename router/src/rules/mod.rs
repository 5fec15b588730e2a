//! The routes.yaml model: routes with a source, filter, projection, sampling, batch limits and
//! sinks; [`check_routes`] parses and reports every problem with line and column; and
//! [`Route::decide`], what a route does with one event.

mod check;
pub mod filter;
mod parse;
pub mod projection;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use headwater_schemas::{Envelope, PayloadFormat};

pub use filter::{EventView, Field, Filter, Op};
pub use parse::{SinkCheck, check_routes, check_routes_with};
pub use projection::{Keep, Projection};

/// A parsed, compiled routes file.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    /// Routes in file order; names are unique.
    pub routes: Vec<Arc<Route>>,
}

impl Routes {
    /// The route called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| &*r.name == name)
    }
}

/// One route: which events, how they are shaped, and where they go.
#[derive(Debug, Clone)]
pub struct Route {
    /// Unique name (`[A-Za-z0-9_-]`, up to 100 characters): consumer group `router.<name>`,
    /// metric label, S3 key part.
    pub name: Arc<str>,
    /// Topics, event types and tenants read.
    pub source: Source,
    /// Condition events must meet.
    pub filter: Option<Filter>,
    /// Payload shaping.
    pub projection: Option<Projection>,
    /// Deterministic sampling.
    pub sample: Option<Sample>,
    /// Batch limits overriding the router's defaults.
    pub batch: BatchOverrides,
    /// Destinations (at least one).
    pub sinks: Vec<SinkSpec>,
    /// The route as written, to tell on reload whether it changed.
    pub definition: yaml_serde::Value,
}

/// Which events a route reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Topics consumed (every partition of each).
    pub topics: Vec<String>,
    /// Event types kept (`a.b` exactly, or `a.*` / `*` as a prefix); `None` keeps all.
    pub types: Option<Vec<String>>,
    /// Tenants kept; `None` keeps all.
    pub tenants: Option<Vec<String>>,
}

impl Source {
    fn selects(&self, env: &Envelope) -> bool {
        let type_ok = self.types.as_ref().is_none_or(|types| {
            types.iter().any(|t| match t.strip_suffix('*') {
                Some(prefix) => env.event_type.starts_with(prefix),
                None => *t == env.event_type,
            })
        });
        type_ok
            && self
                .tenants
                .as_ref()
                .is_none_or(|ts| ts.contains(&env.tenant))
    }
}

/// What the sampling decision hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleBy {
    /// The source id (record key): a device is either in or out, with all its events.
    Source,
    /// The event id: each event decided on its own, the same way every time.
    Id,
}

/// Keep a deterministic fraction of events.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Fraction kept, 0 to 1.
    pub rate: f64,
    /// What is hashed.
    pub by: SampleBy,
}

impl Sample {
    /// Whether the event is kept: FNV-1a 64 of the key, mixed, compared with `rate`.
    pub fn keeps(&self, env: &Envelope) -> bool {
        let key = match self.by {
            SampleBy::Source => env.source.as_bytes(),
            SampleBy::Id => env.id.as_bytes(),
        };
        unit_hash(key) < self.rate
    }
}

/// A stable hash of `key` mapped to `[0, 1)`.
pub fn unit_hash(key: &[u8]) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // splitmix64 finaliser: spreads similar keys (tv-1, tv-2…) over the whole range.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Per-route batch limits; unset ones come from the router configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOverrides {
    /// Events per batch.
    pub max_events: Option<usize>,
    /// Payload bytes per batch.
    pub max_bytes: Option<usize>,
    /// Age of an open batch before it is sent, in milliseconds.
    pub max_age_ms: Option<u64>,
}

/// One sink of a route as written; the caller's factory turns it into a `Sink`.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkSpec {
    /// Route the sink belongs to.
    pub route: Arc<str>,
    /// Sink kind, the `type` key (`s3`, `elasticsearch`, `topic`…).
    pub kind: String,
    /// Metric label: the sink's `name` if it has one, else the kind, with `#2`, `#3`… when a
    /// route has several of one kind. Unique within the route.
    pub label: String,
    /// The whole mapping as written, `type` included.
    pub spec: yaml_serde::Value,
}

/// What a route does with one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Not for this route: type or tenant not selected, or the filter said no.
    Filtered,
    /// Dropped by sampling.
    SampledOut,
    /// Sent on, payload projected.
    Keep(Envelope),
}

impl Route {
    /// Applies source selection, filter, sampling and projection, in that order.
    pub fn decide(&self, mut env: Envelope) -> Decision {
        if !self.source.selects(&env) {
            return Decision::Filtered;
        }
        let needs_payload =
            self.projection.is_some() || self.filter.as_ref().is_some_and(Filter::reads_payload);
        let payload: Option<serde_json::Value> =
            if needs_payload && env.payload_format == PayloadFormat::Json {
                serde_json::from_slice(&env.payload).ok()
            } else {
                None
            };
        if let Some(filter) = &self.filter {
            let view = EventView {
                envelope: &env,
                payload: payload.as_ref(),
            };
            if !filter.eval(&view) {
                return Decision::Filtered;
            }
        }
        if self.sample.is_some_and(|s| !s.keeps(&env)) {
            return Decision::SampledOut;
        }
        if let (Some(projection), Some(payload)) = (&self.projection, payload)
            && let Ok(bytes) = serde_json::to_vec(&projection.apply(payload))
        {
            env.payload = Bytes::from(bytes);
        }
        Decision::Keep(env)
    }
}

/// One problem in a routes file, at a line and column (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteProblem {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
    /// Where in the document, e.g. `routes[1].filter.and[0]`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for RouteProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

#[cfg(test)]
mod tests;
