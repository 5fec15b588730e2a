//! The ingest pipeline shared by every transport: per-event validation with partial
//! acceptance, enrichment, dead-lettering, deduplication and the durable append.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use headwater_log::{Header, Log, Record};
use headwater_schemas::Envelope;
use serde::Serialize;

use crate::auth::Principal;
use crate::decode::{Decoded, IncomingEvent};
use crate::error::IngestError;
use crate::metrics as m;
use crate::validate::Validate;

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
    /// Dead-letter topic.
    pub dlq_topic: String,
}

struct Batch {
    by_topic: HashMap<String, Vec<Record>>,
    dedup_ids: Vec<(String, String)>,
    report: Report,
    /// Events and their payload bytes, by type label and outcome.
    outcomes: HashMap<(String, &'static str), Tally>,
}

impl Pipeline {
    /// Validates, enriches and appends a decoded batch; resolves once every accepted and
    /// dead-lettered event is durable. A log failure fails the whole batch (503): nothing is
    /// acknowledged, and a retry is deduplicated by event id.
    pub async fn publish(
        &self,
        meta: &RequestMeta,
        decoded: Vec<Decoded>,
    ) -> Result<Report, IngestError> {
        let started = Instant::now();
        let received_at = now_ms();
        let mut batch = Batch {
            by_topic: HashMap::new(),
            dedup_ids: Vec::new(),
            report: Report::default(),
            outcomes: HashMap::new(),
        };
        let mut in_batch: HashSet<(&str, &str)> = HashSet::new();
        for (index, element) in decoded.iter().enumerate() {
            match element {
                Decoded::Bad { raw, reason } => {
                    self.dead_letter(&mut batch, meta, received_at, None, raw.clone(), reason);
                    batch.reject(index, reason.clone(), "other", "malformed");
                }
                Decoded::Event(event) => {
                    if let Some(id) = &event.id {
                        let duplicate = !in_batch.insert((event.source.as_str(), id.as_str()))
                            || self.dedup.seen(&event.source, id);
                        if duplicate {
                            batch.report.accepted += 1;
                            batch
                                .outcomes
                                .entry((self.type_label(event), "duplicate"))
                                .or_default()
                                .add(0);
                            continue;
                        }
                    }
                    self.one_event(&mut batch, meta, received_at, index, event);
                }
            }
        }
        let Batch {
            by_topic,
            dedup_ids,
            report,
            outcomes,
        } = batch;
        let appends = by_topic
            .into_iter()
            .map(|(topic, records)| async move { self.log.append(&topic, records).await });
        for result in futures::future::join_all(appends).await {
            if let Err(error) = result {
                metrics::counter!(m::INGEST_EVENTS_TOTAL, "tenant" => meta.principal.tenant.to_string(), "type" => "all", "outcome" => "unavailable")
                    .increment(decoded.len() as u64);
                return Err(IngestError::Unavailable(error));
            }
        }
        for (source, id) in &dedup_ids {
            self.dedup.record(source, id);
        }
        let took = started.elapsed().as_secs_f64();
        metrics::histogram!(m::INGEST_APPEND_DURATION_SECONDS).record(took);
        let tenant = meta.principal.tenant.to_string();
        for ((event_type, outcome), tally) in outcomes {
            if outcome == "accepted" {
                metrics::counter!(m::INGEST_EVENT_BYTES_TOTAL, "tenant" => tenant.clone(), "type" => event_type.clone())
                    .increment(tally.bytes);
                metrics::histogram!(m::INGEST_EVENT_LATENCY_SECONDS, "tenant" => tenant.clone(), "type" => event_type.clone())
                    .record(took);
            }
            metrics::counter!(m::INGEST_EVENTS_TOTAL, "tenant" => tenant.clone(), "type" => event_type, "outcome" => outcome)
                .increment(tally.events);
        }
        Ok(report)
    }

    fn type_label(&self, event: &IncomingEvent) -> String {
        if self.validator.knows_type(&event.event_type) {
            event.event_type.clone()
        } else {
            "other".to_owned()
        }
    }

    fn one_event(
        &self,
        batch: &mut Batch,
        meta: &RequestMeta,
        received_at: i64,
        index: usize,
        event: &IncomingEvent,
    ) {
        let label = self.type_label(event);
        if event.payload.len() > self.max_event_bytes {
            let reason = format!(
                "event payload of {} bytes is over the limit of {} bytes",
                event.payload.len(),
                self.max_event_bytes
            );
            batch.reject(index, reason, &label, "too_large");
            return;
        }
        let id = event
            .id
            .clone()
            .unwrap_or_else(|| ulid::Ulid::new().to_string());
        match self.validator.validate(event) {
            Ok(verdict) => {
                let headers =
                    envelope_headers(meta, received_at, &id, event, Some(verdict.version));
                batch
                    .by_topic
                    .entry(verdict.topic)
                    .or_default()
                    .push(Record {
                        partition: None,
                        key: Some(Bytes::copy_from_slice(event.source.as_bytes())),
                        value: Some(event.payload.clone()),
                        headers,
                        timestamp_ms: received_at,
                    });
                if event.id.is_some() {
                    batch.dedup_ids.push((event.source.clone(), id));
                }
                batch.report.accepted += 1;
                batch
                    .outcomes
                    .entry((label, "accepted"))
                    .or_default()
                    .add(event.payload.len());
            }
            Err(reason) => {
                let headers = envelope_headers(meta, received_at, &id, event, event.version);
                self.dead_letter(
                    batch,
                    meta,
                    received_at,
                    Some((event, headers)),
                    event.payload.clone(),
                    &reason,
                );
                batch.reject(index, reason, &label, "invalid");
            }
        }
    }

    fn dead_letter(
        &self,
        batch: &mut Batch,
        meta: &RequestMeta,
        received_at: i64,
        event: Option<(&IncomingEvent, Vec<Header>)>,
        value: Bytes,
        reason: &str,
    ) {
        let (key, mut headers) = match event {
            Some((event, headers)) => (
                Some(Bytes::copy_from_slice(event.source.as_bytes())),
                headers,
            ),
            None => (
                None,
                vec![
                    header(headers::RECEIVED_AT, received_at.to_string()),
                    header(headers::TENANT, meta.principal.tenant.to_string()),
                ],
            ),
        };
        headers.push(header(headers::ERROR, reason.to_owned()));
        // Keep the dead letter within what the log takes: an oversized element is cut, and
        // says so, rather than failing the whole batch.
        let value = if value.len() > self.max_event_bytes {
            headers.push(header(headers::TRUNCATED, value.len().to_string()));
            value.slice(..self.max_event_bytes)
        } else {
            value
        };
        batch
            .by_topic
            .entry(self.dlq_topic.clone())
            .or_default()
            .push(Record {
                partition: None,
                key,
                value: Some(value),
                headers,
                timestamp_ms: received_at,
            });
    }
}

impl Batch {
    fn reject(&mut self, index: usize, reason: String, label: &str, outcome: &'static str) {
        self.report.rejected += 1;
        self.report.errors.push(RejectedEvent { index, reason });
        self.outcomes
            .entry((label.to_owned(), outcome))
            .or_default()
            .add(0);
    }
}

/// Events of one type and outcome in a batch, and their payload bytes.
#[derive(Default)]
struct Tally {
    events: u64,
    bytes: u64,
}

impl Tally {
    fn add(&mut self, bytes: usize) {
        self.events += 1;
        self.bytes += bytes as u64;
    }
}

fn header(key: &str, value: String) -> Header {
    Header {
        key: key.to_owned(),
        value: Some(Bytes::from(value)),
    }
}

/// The envelope of an event as record headers: the schema crate's `hw.*` set (so the router
/// and sinks rebuild it with `Envelope::from_headers`), then the gateway's enrichment. An event
/// without client time gets `ts` = `received_at`; one not yet validated gets version 0.
fn envelope_headers(
    meta: &RequestMeta,
    received_at: i64,
    id: &str,
    event: &IncomingEvent,
    version: Option<u32>,
) -> Vec<Header> {
    let envelope = Envelope {
        id: id.to_owned(),
        event_type: event.event_type.clone(),
        version: version.unwrap_or(0),
        source: event.source.clone(),
        ts: event.ts.unwrap_or(received_at),
        received_at,
        tenant: meta.principal.tenant.to_string(),
        payload: Bytes::new(),
        payload_format: event.format,
    };
    let mut out: Vec<Header> = envelope
        .to_headers()
        .into_iter()
        .map(Header::from)
        .collect();
    if let Some(ip) = meta.client_ip {
        out.push(header(headers::CLIENT_IP, ip.to_string()));
    }
    if let Some(agent) = &meta.user_agent {
        out.push(header(headers::USER_AGENT, agent.clone()));
    }
    for (key, value) in &event.attributes {
        out.push(header(
            &format!("{}{key}", headers::ATTRIBUTE_PREFIX),
            value.clone(),
        ));
    }
    out
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
