//! The validation seam: decides for each event its topic, or why it is rejected.

use compact_str::CompactString;
use headwater_schemas::Rejection;
use headwater_schemas::document::JsonValue;

use crate::decode::IncomingEvent;

/// Where a valid event goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Destination topic named by the event's schema: up to 24 bytes held in place, so a
    /// verdict per event allocates nothing for the usual topic name.
    pub topic: CompactString,
    /// The schema version the event was validated against.
    pub version: u32,
}

/// Why a validator refused an event. Its text is the event's rejection reason in the
/// response and the `hw.error` header of its dead letter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// The schemas refused it: unknown type or version, a payload that does not parse, or one
    /// that breaks the schema (`Rejection::kind` says which).
    #[error(transparent)]
    Schema(#[from] Rejection),
}

/// Validates events against registered schemas. Implemented over the schema registry (with
/// hot reload) and by simple fakes in tests.
pub trait Validate: Send + Sync + 'static {
    /// The event's destination, or why it is invalid.
    fn validate(&self, event: &IncomingEvent) -> Result<Verdict, Invalid>;

    /// [`validate`](Self::validate), for an event with a JSON payload that is `payload`, a
    /// value of the body already parsed, so a validator that reads parsed JSON need not parse
    /// it again. The answer is the one `validate` gives.
    fn validate_parsed(
        &self,
        event: &IncomingEvent,
        payload: JsonValue<'_>,
    ) -> Result<Verdict, Invalid> {
        let _ = payload;
        self.validate(event)
    }

    /// [`validate`](Self::validate), for an event with a JSON payload whose simd-json tape the
    /// caller built while writing it (`tape`: what simd-json would parse `event.payload`
    /// into), so a validator that reads parsed JSON need not parse it. The answer is the one
    /// `validate` gives.
    fn validate_built(
        &self,
        event: &IncomingEvent,
        tape: &[headwater_schemas::TapeNode<'_>],
    ) -> Result<Verdict, Invalid> {
        let _ = tape;
        self.validate(event)
    }

    /// Whether `event_type` is registered (bounds the `type` metric label).
    fn knows_type(&self, event_type: &str) -> bool;
}

/// Accepts every event into one topic; for tests and schema-less set-ups.
#[derive(Debug, Clone)]
pub struct AcceptAll {
    /// The topic every event goes to.
    pub topic: String,
}

impl Validate for AcceptAll {
    fn validate(&self, event: &IncomingEvent) -> Result<Verdict, Invalid> {
        Ok(Verdict {
            topic: self.topic.as_str().into(),
            version: event.version.unwrap_or(1),
        })
    }

    fn knows_type(&self, _event_type: &str) -> bool {
        false
    }
}
