//! The collector: everything a transport needs to turn a request into a durable batch
//! (authentication, rate limits, client identity, limits and the pipeline).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};

use axum::http::HeaderMap;
use axum::http::header::USER_AGENT;
use headwater_log::Log;
use metrics::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::Authenticator;
use crate::config::{GatewayConfig, Limits};
use crate::decode::Decoded;
use crate::dedup::Dedup;
use crate::error::IngestError;
use crate::ingest::{BatchMetrics, FieldLimits, Pipeline, Report, RequestMeta};
use crate::metrics::RequestHandles;
use crate::ratelimit::RateLimits;
use crate::tls::ClientCert;
use crate::validate::Validate;

/// What builds a [`Collector`].
pub struct CollectorParts {
    /// The gateway's configuration.
    pub config: GatewayConfig,
    /// Where events go.
    pub log: Arc<dyn Log>,
    /// Schema validation.
    pub validator: Arc<dyn Validate>,
    /// Dead-letter topic.
    pub dlq_topic: String,
}

/// Shared by the HTTP, gRPC and OTLP transports.
pub struct Collector {
    /// Key checks.
    pub auth: Authenticator,
    /// Per-key rate limits.
    pub rate: RateLimits,
    /// Validation and append.
    pub pipeline: Pipeline,
    /// Body and batch limits.
    pub limits: Limits,
    /// Default event type of OTLP log records.
    pub otlp_default_type: String,
    /// Event type of an OTLP request kept whole, if requests are (`gateway.otlp_request_type`).
    pub otlp_request_type: Option<String>,
    /// Handles of the per-request metrics.
    pub requests: RequestHandles,
    trusted_proxies: Vec<IpAddr>,
    /// Request bytes handled at once (`max_in_flight_bytes`).
    budget: Budget,
    /// Ingest requests handled at once (`max_concurrent_requests`).
    slots: Arc<Semaphore>,
}

/// One ingest request's place in `max_concurrent_requests`, given back when dropped (the
/// request answered).
#[must_use = "the place is given back when this is dropped"]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

/// Room for request bytes in flight: a semaphore of one permit per byte (FIFO, so a large
/// request waiting is not starved by small ones).
struct Budget {
    permits: Arc<Semaphore>,
    total: u32,
    /// `headwater_ingest_in_flight_bytes`, registered on first use (in the recorder installed
    /// by then, whenever the collector was made).
    in_flight: OnceLock<Gauge>,
}

/// One request's bytes held in the collector's budget until dropped (the request answered).
#[must_use = "the bytes are given back when this is dropped"]
pub struct Reserved {
    permit: Option<OwnedSemaphorePermit>,
    in_flight: Gauge,
}

impl Reserved {
    /// Bytes held.
    pub fn bytes(&self) -> u32 {
        self.permit.as_ref().map_or(0, |p| p.num_permits() as u32)
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        // The gauge moves by what each request takes and gives back: added and subtracted, it
        // cannot be left at a value a racing request read before another gave its bytes back.
        if let Some(permit) = self.permit.take() {
            self.in_flight
                .decrement(f64::from(permit.num_permits() as u32));
        }
    }
}

impl Collector {
    /// Builds the collector; the configuration was validated at start-up.
    pub fn new(parts: CollectorParts) -> Self {
        let config = parts.config;
        let auth = Authenticator::new(&config.auth, &config.tls);
        let rate = RateLimits::new(&config.rate_limit, auth.slots());
        Self {
            rate,
            auth,
            pipeline: Pipeline {
                log: parts.log,
                validator: parts.validator,
                dedup: Dedup::new(&config.dedup),
                max_event_bytes: usize::try_from(config.limits.max_event_bytes)
                    .unwrap_or(usize::MAX),
                fields: FieldLimits::from(&config.limits),
                dlq_topic: parts.dlq_topic,
                metrics: BatchMetrics::default(),
            },
            budget: {
                let total = u32::try_from(config.limits.max_in_flight_bytes)
                    .unwrap_or(u32::MAX)
                    .max(1);
                Budget {
                    permits: Arc::new(Semaphore::new(total as usize)),
                    total,
                    in_flight: OnceLock::new(),
                }
            },
            slots: Arc::new(Semaphore::new(
                usize::try_from(config.limits.max_concurrent_requests)
                    .unwrap_or(usize::MAX)
                    .min(Semaphore::MAX_PERMITS),
            )),
            limits: config.limits,
            otlp_default_type: config.otlp_default_type,
            otlp_request_type: config.otlp_request_type,
            requests: RequestHandles::default(),
            trusted_proxies: config
                .trusted_proxies
                .iter()
                .filter_map(|p| p.parse().ok())
                .collect(),
        }
    }

    /// Takes one of the `max_concurrent_requests` places of ingest requests, held until the
    /// returned guard is dropped; when all are taken the request is shed at once
    /// ([`IngestError::Overloaded`]), unread.
    pub fn take_slot(&self) -> Result<Slot, IngestError> {
        self.slots
            .clone()
            .try_acquire_owned()
            .map(|permit| Slot { _permit: permit })
            .map_err(|_| IngestError::Overloaded)
    }

    /// Authenticates, takes a request token, and identifies the client.
    pub fn admit(
        &self,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
        cert: Option<&ClientCert>,
    ) -> Result<RequestMeta, IngestError> {
        let principal = self.auth.authenticate(headers, cert)?;
        self.rate.check_request(principal.key_index)?;
        Ok(RequestMeta {
            principal,
            client_ip: self.client_ip(headers, peer.map(|p| p.ip())),
            user_agent: headers
                .get(USER_AGENT)
                .and_then(|v| v.to_str().ok())
                // `to_str` holds visible ASCII only: 256 bytes are 256 characters.
                .map(|v| v.get(..256).unwrap_or(v).to_owned()),
        })
    }

    /// Holds `bytes` of a request (its body, read and decompressed) in the budget
    /// (`max_in_flight_bytes`) until the returned guard is dropped, waiting in turn until they
    /// fit; more than the whole budget is held as the whole budget. A request reserves once,
    /// so no request waits while holding part of the budget.
    pub async fn reserve(&self, bytes: usize) -> Reserved {
        let budget = &self.budget;
        let want = u32::try_from(bytes).unwrap_or(u32::MAX).min(budget.total);
        let permit = match budget.permits.clone().try_acquire_many_owned(want) {
            Ok(permit) => Some(permit),
            Err(_) => {
                metrics::counter!(crate::metrics::INGEST_BUDGET_WAITS_TOTAL).increment(1);
                // Only a closed semaphore refuses, and this one is never closed.
                budget.permits.clone().acquire_many_owned(want).await.ok()
            }
        };
        let in_flight = budget
            .in_flight
            .get_or_init(|| metrics::gauge!(crate::metrics::INGEST_IN_FLIGHT_BYTES));
        let reserved = Reserved {
            permit,
            in_flight: in_flight.clone(),
        };
        in_flight.increment(f64::from(reserved.bytes()));
        reserved
    }

    /// Checks the batch against the limits and the key's event rate, then publishes it.
    pub async fn publish(
        &self,
        meta: &RequestMeta,
        decoded: Vec<Decoded>,
    ) -> Result<Report, IngestError> {
        crate::decode::check_count(decoded.len(), self.limits.max_events_per_batch as usize)?;
        self.rate
            .check_events(meta.principal.key_index, decoded.len())?;
        self.pipeline.publish(meta, decoded).await
    }

    /// The client's address: the peer, or, when the peer is a trusted proxy, the right-most
    /// address of `X-Forwarded-For` that is not itself a trusted proxy.
    pub fn client_ip(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Option<IpAddr> {
        let peer = peer?;
        if !self.trusted_proxies.contains(&peer) {
            return Some(peer);
        }
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|v| v.trim().parse().ok())
            .collect();
        forwarded
            .into_iter()
            .rev()
            .find(|ip| !self.trusted_proxies.contains(ip))
            .or(Some(peer))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use bytes::Bytes;
    use headwater_log::MemoryLog;

    use super::*;
    use crate::auth::Principal;
    use crate::decode::{IncomingEvent, PayloadFormat};
    use crate::validate::AcceptAll;

    fn collector(trusted: &[&str]) -> Collector {
        collector_on(Arc::new(MemoryLog::default()), trusted)
    }

    fn collector_on(log: Arc<MemoryLog>, trusted: &[&str]) -> Collector {
        Collector::new(CollectorParts {
            config: GatewayConfig {
                trusted_proxies: trusted.iter().map(|s| (*s).to_owned()).collect(),
                ..GatewayConfig::default()
            },
            log,
            validator: Arc::new(AcceptAll {
                topic: "events".into(),
            }),
            dlq_topic: "events.dlq".into(),
        })
    }

    fn with_budget(bytes: u64) -> Collector {
        let mut config = GatewayConfig::default();
        config.limits.max_in_flight_bytes = bytes;
        Collector::new(CollectorParts {
            config,
            log: Arc::new(MemoryLog::default()),
            validator: Arc::new(AcceptAll {
                topic: "events".into(),
            }),
            dlq_topic: "events.dlq".into(),
        })
    }

    /// Polls `future` once, without a runtime (the semaphore's waits need none).
    fn poll_once<F: std::future::Future>(
        future: std::pin::Pin<&mut F>,
    ) -> std::task::Poll<F::Output> {
        future.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    }

    fn ready<F: std::future::Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        match poll_once(future.as_mut()) {
            std::task::Poll::Ready(out) => out,
            std::task::Poll::Pending => panic!("waited with room in the budget"),
        }
    }

    #[test]
    fn a_request_waits_for_room_in_the_budget() {
        let collector = with_budget(100);
        let first = ready(collector.reserve(60));
        assert_eq!(first.bytes(), 60);
        let mut second = std::pin::pin!(collector.reserve(50));
        assert!(poll_once(second.as_mut()).is_pending(), "60 + 50 > 100");
        drop(first);
        let std::task::Poll::Ready(second) = poll_once(second.as_mut()) else {
            panic!("room was given back")
        };
        assert_eq!(second.bytes(), 50);
        // More than the whole budget is held as all of it, once alone.
        let mut huge = std::pin::pin!(collector.reserve(1_000));
        assert!(poll_once(huge.as_mut()).is_pending());
        drop(second);
        let std::task::Poll::Ready(huge) = poll_once(huge.as_mut()) else {
            panic!("alone now")
        };
        assert_eq!(huge.bytes(), 100);
    }

    fn meta(tenant: &str) -> RequestMeta {
        RequestMeta {
            principal: Principal {
                tenant: Arc::from(tenant),
                key_index: 0,
            },
            client_ip: None,
            user_agent: None,
        }
    }

    fn event(source: &str, id: &str) -> Decoded {
        Decoded::Event(IncomingEvent {
            id: Some(id.into()),
            event_type: "playback.start".into(),
            version: None,
            source: source.into(),
            ts: None,
            payload: Bytes::from_static(b"{}"),
            format: PayloadFormat::Json,
            attributes: Vec::new(),
            verdict: None,
        })
    }

    /// Records in every partition of `topic`.
    async fn records_in(log: &MemoryLog, topic: &str) -> i64 {
        let mut total = 0;
        for p in 0..log.partitions(topic).await.unwrap() {
            total += log.offsets(topic, p as i32).await.unwrap().high_watermark;
        }
        total
    }

    #[tokio::test]
    async fn two_tenants_with_the_same_source_and_id_are_both_appended() {
        let log = Arc::new(MemoryLog::default());
        let collector = collector_on(log.clone(), &[]);
        for tenant in ["acme", "globex"] {
            let report = collector
                .publish(&meta(tenant), vec![event("tv-42", "e1")])
                .await
                .unwrap();
            assert_eq!(report.accepted, 1, "{tenant}");
        }
        assert_eq!(records_in(&log, "events").await, 2);
        // A tenant's retry is still a duplicate of its own event.
        let report = collector
            .publish(&meta("globex"), vec![event("tv-42", "e1")])
            .await
            .unwrap();
        assert_eq!(report.accepted, 1);
        assert_eq!(records_in(&log, "events").await, 2);
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.9, 10.0.0.2"),
        );
        let untrusted = collector(&[]);
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(untrusted.client_ip(&headers, Some(peer)), Some(peer));
        let trusted = collector(&["10.0.0.1", "10.0.0.2"]);
        assert_eq!(
            trusted.client_ip(&headers, Some(peer)),
            Some("203.0.113.9".parse().unwrap())
        );
    }

    #[test]
    fn a_user_agent_is_kept_to_256_characters() {
        let collector = collector(&[]);
        let peer = Some("127.0.0.1:9".parse().unwrap());
        for (agent, kept) in [
            ("tv-app/1.0", 10),
            (&*"a".repeat(256), 256),
            (&*"b".repeat(300), 256),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(USER_AGENT, HeaderValue::from_str(agent).unwrap());
            let meta = collector.admit(&headers, peer, None).unwrap();
            assert_eq!(meta.user_agent.as_deref(), Some(&agent[..kept]));
        }
        // A value that is not visible ASCII is not kept at all.
        let mut headers = HeaderMap::new();
        headers.insert(
            USER_AGENT,
            HeaderValue::from_bytes("télé/1".as_bytes()).unwrap(),
        );
        let meta = collector.admit(&headers, peer, None).unwrap();
        assert_eq!(meta.user_agent, None);
    }
}
