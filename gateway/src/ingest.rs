//! The ingest pipeline shared by every transport: per-event validation with partial
//! acceptance, enrichment, dead-lettering, deduplication and the durable append.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use headwater_log::batch::HeadersWriter;
use headwater_log::log::AppendError;
use headwater_log::{Log, LogError, PreparedRecord, now_ms};
use serde::Serialize;

pub use self::outcomes::BatchMetrics;
use self::outcomes::Outcomes;
use self::records::{BatchHeaders, RecordParts};

use crate::auth::Principal;
use crate::decode::{Decoded, IncomingEvent};
use crate::dedup::{Claim, ClaimId, Claims, InFlight};
use crate::error::IngestError;
use crate::metrics as m;
use crate::validate::Validate;

mod outcomes;
mod records;

/// Record header names of the envelope: the shared `hw.*` names of the schema crate plus the
/// gateway's own enrichment.
pub mod headers {
    pub use headwater_schemas::headers::{
        ERROR, FORMAT, ID, RECEIVED_AT, SOURCE, TENANT, TS, TYPE, VERSION,
    };

    /// Client IP address.
    pub const CLIENT_IP: &str = "hw.client_ip";
    /// Client user agent.
    pub const USER_AGENT: &str = "hw.user_agent";
    /// On a dead letter cut to the event size limit: the original size in bytes.
    pub const TRUNCATED: &str = "hw.truncated";
    /// Prefix of extra attributes (OTLP and protobuf `attributes`).
    pub const ATTRIBUTE_PREFIX: &str = "hw.attr.";
}

/// Who sent a batch, and from where.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    /// The authenticated key.
    pub principal: Principal,
    /// Client address (X-Forwarded-For honoured only from trusted proxies).
    pub client_ip: Option<IpAddr>,
    /// User agent, if sent.
    pub user_agent: Option<String>,
}

/// One rejected event of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RejectedEvent {
    /// Index in the batch.
    pub index: usize,
    /// Why.
    pub reason: String,
}

/// The answer to a batch: counts and every rejection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Events durably appended (or already appended: a retried duplicate).
    pub accepted: usize,
    /// Events refused.
    pub rejected: usize,
    /// Each refused event's index and reason.
    pub errors: Vec<RejectedEvent>,
}

/// What the pipeline needs besides the batch.
pub struct Pipeline {
    /// Where events go.
    pub log: Arc<dyn Log>,
    /// Decides topics and validity.
    pub validator: Arc<dyn Validate>,
    /// Retry suppression.
    pub dedup: crate::dedup::Dedup,
    /// Largest single event payload in bytes.
    pub max_event_bytes: usize,
    /// Longest envelope fields.
    pub fields: FieldLimits,
    /// Dead-letter topic.
    pub dlq_topic: String,
    /// Handles of the per-batch metrics.
    pub metrics: BatchMetrics,
}

/// Longest envelope fields an event may have, in bytes (`gateway.limits.max_*_bytes`): they
/// become record headers and the key, which the log bounds with the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldLimits {
    /// `id`.
    pub id: usize,
    /// `type`.
    pub event_type: usize,
    /// `source`.
    pub source: usize,
}

impl From<&crate::config::Limits> for FieldLimits {
    fn from(limits: &crate::config::Limits) -> Self {
        let bytes = |limit: u32| usize::try_from(limit).unwrap_or(usize::MAX);
        Self {
            id: bytes(limits.max_id_bytes),
            event_type: bytes(limits.max_type_bytes),
            source: bytes(limits.max_source_bytes),
        }
    }
}

/// Event types a batch remembers as registered or not (a batch of many types asks the
/// validator again for the rest, rather than searching a long list).
const KNOWN_TYPES_KEPT: usize = 16;

/// Bytes of encoded headers to make room for per record (an event's ten `hw.*` headers take
/// about 200).
const HEADER_BYTES: usize = 256;

/// One element of a batch as the pipeline decided it: enough to build its record, and to
/// build it again when a topic's records are appended in parts.
struct Planned<'a> {
    /// Index in the batch.
    index: usize,
    fate: Fate<'a>,
    /// A valid event's client id, claimed in the dedup until its append settles.
    pending: Option<ClaimId>,
}

enum Fate<'a> {
    /// Valid: goes to the topic its schema names.
    Valid {
        event: &'a IncomingEvent,
        id: Cow<'a, str>,
        version: u32,
        label: &'a str,
    },
    /// Invalid: rejected, and dead-lettered with its envelope and the reason.
    Invalid {
        event: &'a IncomingEvent,
        id: Cow<'a, str>,
        reason: String,
    },
    /// Not an event: rejected, and dead-lettered as received.
    Malformed { raw: &'a Bytes, reason: &'a str },
}

/// A batch planned: its elements by destination topic, and the outcomes known so far.
#[derive(Default)]
struct Batch<'a> {
    /// Destination topics, each with its elements in batch order (a batch names few topics:
    /// a list is searched faster than a map is hashed).
    by_topic: Vec<(String, Vec<Planned<'a>>)>,
    outcomes: Outcomes<'a>,
    /// The client ids the batch claimed in the dedup: given up, unless appended, once the
    /// batch and its append tasks are done with them.
    claims: Option<Claims>,
    /// Whether each event type seen so far is registered (see [`Batch::label`]).
    known_types: Vec<(&'a str, bool)>,
    /// How many elements the batch has.
    elements: usize,
}

/// A record the log refused on its own as too large for its topic.
struct TooLarge {
    /// Index of its element in the batch.
    index: usize,
    topic: String,
    error: LogError,
}

impl Pipeline {
    /// Validates, enriches and appends a decoded batch; resolves once every accepted and
    /// dead-lettered event is durable. An event whose record the log refuses alone as too
    /// large for its topic is rejected with the reason, the rest accepted. Any other log
    /// failure fails the whole batch: nothing is acknowledged ([`IngestError::from_log`]
    /// decides 503 or 500), and a retry is deduplicated by event id. A retry that finds an
    /// event's append by an earlier attempt still under way waits for it, then plans again:
    /// the event is a duplicate if that append wrote it, and is appended now if it failed.
    pub async fn publish(
        &self,
        meta: &RequestMeta,
        decoded: Vec<Decoded>,
    ) -> Result<Report, IngestError> {
        let started = Instant::now();
        let enrichment = BatchHeaders::new(meta, now_ms());
        let mut batch = loop {
            match self.plan(&meta.principal.tenant, &decoded) {
                Ok(batch) => break batch,
                Err(in_flight) => self.dedup.settled(in_flight).await,
            }
        };
        let claims = batch.claims.as_ref();
        let too_large = match self
            .append_all(&enrichment, claims, &mut batch.by_topic)
            .await
        {
            Ok(too_large) => too_large,
            Err(error) => {
                metrics::counter!(m::INGEST_EVENTS_TOTAL, "tenant" => meta.principal.tenant.to_string(), "type" => "all", "outcome" => error.label())
                    .increment(decoded.len() as u64);
                return Err(error);
            }
        };
        self.settle(&mut batch, too_large);
        let took = started.elapsed().as_secs_f64();
        self.metrics.append_took(took);
        batch
            .outcomes
            .count(&self.metrics, &meta.principal.tenant, took);
        let mut report = batch.outcomes.report;
        report.errors.sort_by_key(|e| e.index);
        Ok(report)
    }

    /// Decides every element: too large, duplicate, valid (to its topic) or dead letter, and
    /// claims the client ids of the others in the dedup, all in one call. A duplicate is an id
    /// already appended from the same `tenant` and source, or given earlier in the batch. `Err`
    /// names an id whose append by another request is under way; the batch then claims none.
    fn plan<'a>(&self, tenant: &str, decoded: &'a [Decoded]) -> Result<Batch<'a>, InFlight> {
        let mut batch = Batch {
            elements: decoded.len(),
            ..Batch::default()
        };
        let mut keys = Vec::with_capacity(decoded.len());
        for element in decoded {
            if let Decoded::Event(event) = element
                && let Some(id) = &event.id
                && self.oversize(event).is_none()
            {
                keys.push(self.dedup.key(tenant, &event.source, id));
            }
        }
        let mut claimed = Vec::new().into_iter();
        if !keys.is_empty() {
            let (found, claims) = self.dedup.claim_batch(&keys)?;
            batch.claims = Some(claims);
            claimed = found.into_iter();
        }
        for (index, element) in decoded.iter().enumerate() {
            match element {
                Decoded::Bad { raw, reason } => {
                    batch
                        .outcomes
                        .reject(index, reason.clone(), "other", "malformed");
                    let fate = Fate::Malformed { raw, reason };
                    batch.push(&self.dlq_topic, Planned::new(index, fate));
                }
                Decoded::Event(event) => {
                    if let Some(reason) = self.too_large(event) {
                        let label = batch.label(&*self.validator, event);
                        batch.outcomes.reject(index, reason, label, "too_large");
                        continue;
                    }
                    let mut pending = None;
                    if event.id.is_some() {
                        match claimed.next() {
                            Some(Claim::New(claim)) => pending = Some(claim),
                            Some(Claim::Off) | None => {}
                            Some(Claim::Seen) => {
                                let label = batch.label(&*self.validator, event);
                                batch.outcomes.accept(label, "duplicate", 0);
                                continue;
                            }
                        }
                    }
                    self.one_event(&mut batch, index, event, pending);
                }
            }
        }
        Ok(batch)
    }

    /// What of `event` is over its limit, if anything: `(what, bytes, limit)`, the payload
    /// first, then the envelope fields; nothing worded yet.
    fn oversize(&self, event: &IncomingEvent) -> Option<(Oversize, usize, usize)> {
        let limits = &self.fields;
        [
            (Oversize::Payload, event.payload.len(), self.max_event_bytes),
            (
                Oversize::Field("id"),
                event.id.as_deref().map_or(0, str::len),
                limits.id,
            ),
            (
                Oversize::Field("type"),
                event.event_type.len(),
                limits.event_type,
            ),
            (Oversize::Field("source"), event.source.len(), limits.source),
        ]
        .into_iter()
        .find(|(_, len, limit)| len > limit)
    }

    /// Why `event` is too large to take, if it is: its payload, or an envelope field.
    fn too_large(&self, event: &IncomingEvent) -> Option<String> {
        self.oversize(event).map(|(what, len, limit)| match what {
            Oversize::Payload => {
                format!("event payload of {len} bytes is over the limit of {limit} bytes")
            }
            Oversize::Field(name) => {
                format!("`{name}` of {len} bytes is over the limit of {limit} bytes")
            }
        })
    }

    /// Validates `event` and plans it for its topic, or for the dead-letter topic (its claim,
    /// if any, given up: only valid events are deduplicated).
    fn one_event<'a>(
        &self,
        batch: &mut Batch<'a>,
        index: usize,
        event: &'a IncomingEvent,
        pending: Option<ClaimId>,
    ) {
        let label = batch.label(&*self.validator, event);
        let id = match &event.id {
            Some(id) => Cow::Borrowed(&**id),
            None => Cow::Owned(ulid::Ulid::new().to_string()),
        };
        // Decoding may have validated it already (a small JSON body parsed once).
        let validated;
        let checked = match &event.verdict {
            Some(verdict) => verdict.as_ref(),
            None => {
                validated = self.validator.validate(event);
                validated.as_ref()
            }
        };
        match checked {
            Ok(verdict) => {
                let fate = Fate::Valid {
                    event,
                    id,
                    version: verdict.version,
                    label,
                };
                let plan = Planned {
                    index,
                    fate,
                    pending,
                };
                batch.push(&verdict.topic, plan);
            }
            Err(invalid) => {
                if let (Some(claim), Some(claims)) = (pending, &batch.claims) {
                    claims.give_up([claim]);
                }
                let reason = invalid.to_string();
                batch
                    .outcomes
                    .reject(index, reason.clone(), label, "invalid");
                let fate = Fate::Invalid { event, id, reason };
                batch.push(&self.dlq_topic, Planned::new(index, fate));
            }
        }
    }

    /// Appends every topic's records, the topics concurrently. `Ok` lists the records refused
    /// alone as too large; any other failure fails the batch, a permanent one before a
    /// retryable one (a retry could not pass it).
    async fn append_all(
        &self,
        enrichment: &BatchHeaders<'_>,
        claims: Option<&Claims>,
        by_topic: &mut [(String, Vec<Planned<'_>>)],
    ) -> Result<Vec<TooLarge>, IngestError> {
        let appends = by_topic
            .iter_mut()
            .map(|(topic, plans)| self.append_topic(enrichment, claims, topic, plans));
        let mut too_large = Vec::new();
        let mut failure: Option<LogError> = None;
        for result in futures::future::join_all(appends).await {
            match result {
                Ok(refused) => too_large.extend(refused),
                Err(error) if failure.as_ref().is_none_or(LogError::is_retryable) => {
                    failure = Some(error);
                }
                Err(_) => {}
            }
        }
        match failure {
            Some(error) => Err(IngestError::from_log(error)),
            None => Ok(too_large),
        }
    }

    /// Appends one topic's records in a task of its own, so that an append under way completes,
    /// and settles the claims of its ids in the dedup, even when the request is dropped (the
    /// request timeout): the client's retry waits for it, and is then deduplicated, not
    /// appended again.
    async fn append_topic(
        &self,
        enrichment: &BatchHeaders<'_>,
        claims: Option<&Claims>,
        topic: &str,
        plans: &mut [Planned<'_>],
    ) -> Result<Vec<TooLarge>, LogError> {
        // Each record's headers encoded once, here, into one buffer the log copies from.
        let mut writer = HeadersWriter::with_capacity(plans.len(), plans.len() * HEADER_BYTES);
        let planned: Vec<_> = plans
            .iter_mut()
            .map(|plan| self.item(&mut writer, enrichment, plan))
            .collect();
        let headers = writer.freeze();
        let (items, records) = planned
            .into_iter()
            .zip(headers.records())
            .map(|((index, parts, pending), encoded)| {
                (Item { index, pending }, parts.prepared(&headers, encoded))
            })
            .unzip();
        let job = TopicAppend {
            log: self.log.clone(),
            topic: topic.to_owned(),
            items,
            records,
            claims: claims.cloned(),
        };
        match tokio::spawn(job.run()).await {
            Ok(result) => result,
            // The task is never aborted: only a panic ends it early.
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        }
    }

    /// A planned element's record, its headers written to `out`: with its index in the batch
    /// and its claim.
    fn item(
        &self,
        out: &mut HeadersWriter,
        enrichment: &BatchHeaders<'_>,
        plan: &mut Planned<'_>,
    ) -> (usize, RecordParts, Option<ClaimId>) {
        let max = self.max_event_bytes;
        let record = match &plan.fate {
            Fate::Valid {
                event, id, version, ..
            } => RecordParts::valid(out, enrichment, event, id, *version),
            Fate::Invalid { event, id, reason } => {
                RecordParts::invalid(out, enrichment, event, id, reason, max)
            }
            Fate::Malformed { raw, reason } => {
                RecordParts::malformed(out, enrichment, raw, reason, max)
            }
        };
        (plan.index, record, plan.pending.take())
    }

    /// Counts what was appended as accepted, and rejects the events refused as too large (the
    /// append tasks settled the claims of the client ids).
    fn settle(&self, batch: &mut Batch<'_>, too_large: Vec<TooLarge>) {
        let mut refused: HashMap<usize, TooLarge> =
            too_large.into_iter().map(|t| (t.index, t)).collect();
        for plan in batch.by_topic.iter().flat_map(|(_, plans)| plans) {
            let refusal = if refused.is_empty() {
                None
            } else {
                refused.remove(&plan.index)
            };
            match (&plan.fate, refusal) {
                (Fate::Valid { event, label, .. }, None) => {
                    batch
                        .outcomes
                        .accept(label, "accepted", event.payload.len());
                }
                (Fate::Valid { label, .. }, Some(TooLarge { topic, error, .. })) => {
                    let reason = format!("topic `{topic}` refused the event: {error}");
                    batch
                        .outcomes
                        .reject(plan.index, reason, label, "too_large");
                }
                (_, Some(TooLarge { topic, error, .. })) => {
                    // The event is already rejected with its reason; only its copy is lost.
                    tracing::warn!(index = plan.index, %topic, %error, "dead letter refused as too large; dropped");
                }
                (_, None) => {}
            }
        }
    }
}

/// One element of a batch as its topic's append task holds it (its record beside it, at the
/// same place in [`TopicAppend::records`]).
struct Item {
    /// Index in the batch.
    index: usize,
    /// A valid event's client id, claimed: recorded as appended once written, given up when
    /// the batch and its tasks are done without writing it.
    pending: Option<ClaimId>,
}

/// One topic's append, owned so that it runs as a task of its own (see
/// [`Pipeline::append_topic`]).
struct TopicAppend {
    log: Arc<dyn Log>,
    topic: String,
    items: Vec<Item>,
    /// The items' records, in order: lent to the log, and kept to append again in parts
    /// when it refuses them together as too large.
    records: Vec<PreparedRecord>,
    /// The batch's claims in the dedup, if it made any.
    claims: Option<Claims>,
}

impl TopicAppend {
    /// Appends the items, records the ids of those written (the others' claims are given up
    /// once the batch and its tasks are done), and returns those the log refused alone as too
    /// large.
    async fn run(self) -> Result<Vec<TooLarge>, LogError> {
        match self.append(0..self.items.len()).await {
            Ok(()) => Ok(Vec::new()),
            Err(error @ LogError::MessageTooLarge { .. }) => self.isolate(error).await,
            Err(error) => Err(error),
        }
    }

    /// Appends the items at `range` in one call and records the ids of those durably written
    /// as appended: all on success, those the log says it wrote on failure (partitions
    /// written before another failed), so the client's retry appends only the rest.
    async fn append(&self, range: Range<usize>) -> Result<(), LogError> {
        let (items, records) = (&self.items[range.clone()], &self.records[range]);
        let (written, result) = match self.log.append_prepared_kept(&self.topic, records).await {
            Ok(_) => (items.iter().collect(), Ok(())),
            Err(AppendError { written, error }) => {
                let written = written.iter().filter_map(|&i| items.get(i)).collect();
                (written, Err(error))
            }
        };
        let written: Vec<&Item> = written;
        if let Some(claims) = &self.claims {
            claims.appended(written.iter().filter_map(|item| item.pending));
        }
        result
    }

    /// After the log refused the items together as too large: appends them again in halves,
    /// first half first (order per key holds), down to single records, and returns those
    /// refused alone. The embedded log refuses such a call with nothing written; a remote log
    /// (`KafkaLog`, record by record) may have written the records before the refused one,
    /// which are then written again: at least once, as after any retry.
    async fn isolate(&self, error: LogError) -> Result<Vec<TooLarge>, LogError> {
        let refused = |item: &Item, error| TooLarge {
            index: item.index,
            topic: self.topic.clone(),
            error,
        };
        match self.items.as_slice() {
            [item] => return Ok(vec![refused(item, error)]),
            [] => return Err(error),
            _ => {}
        }
        let mut too_large = Vec::new();
        let halves = |part: Range<usize>| {
            let middle = part.start + part.len() / 2;
            [middle..part.end, part.start..middle]
        };
        let mut parts = halves(0..self.items.len()).to_vec();
        while let Some(part) = parts.pop() {
            match self.append(part.clone()).await {
                Ok(()) => {}
                Err(error @ LogError::MessageTooLarge { .. }) if part.len() == 1 => {
                    too_large.push(refused(&self.items[part.start], error));
                }
                Err(LogError::MessageTooLarge { .. }) if part.len() > 1 => {
                    parts.extend(halves(part));
                }
                Err(error) => return Err(error),
            }
        }
        Ok(too_large)
    }
}

impl<'a> Planned<'a> {
    /// An element with no claim in the dedup.
    fn new(index: usize, fate: Fate<'a>) -> Self {
        Self {
            index,
            fate,
            pending: None,
        }
    }
}

impl<'a> Batch<'a> {
    /// The metric label of `event`'s type: the type when it is registered, else `"other"`
    /// (labels stay a bounded set). Asked of the validator once per type and batch for the
    /// first [`KNOWN_TYPES_KEPT`] types, every time for the others.
    fn label(&mut self, validator: &dyn Validate, event: &'a IncomingEvent) -> &'a str {
        let event_type: &str = &event.event_type;
        // The label of a type already seen is the first event's string, so that the batch's
        // tallies tell labels apart by address.
        let (event_type, known) = match self.known_types.iter().find(|(t, _)| *t == event_type) {
            Some(&(first, known)) => (first, known),
            None => {
                let known = validator.knows_type(event_type);
                if self.known_types.len() < KNOWN_TYPES_KEPT {
                    self.known_types.push((event_type, known));
                }
                (event_type, known)
            }
        };
        if known { event_type } else { "other" }
    }

    fn push(&mut self, topic: &str, plan: Planned<'a>) {
        match self.by_topic.iter_mut().find(|(t, _)| t == topic) {
            Some((_, plans)) => plans.push(plan),
            None => {
                // Room for the rest of the batch: a topic's list does not grow step by step.
                let mut plans = Vec::with_capacity(self.elements.saturating_sub(plan.index));
                plans.push(plan);
                self.by_topic.push((topic.to_owned(), plans));
            }
        }
    }
}

/// What of an event is over its limit ([`Pipeline::too_large`]).
#[derive(Debug, Clone, Copy)]
enum Oversize {
    Payload,
    /// An envelope field, by its name in the event.
    Field(&'static str),
}
