//! Broker-stamped identity: what a tenant produces over the Kafka port carries the tenant the
//! broker authenticated, never one the client claims, and the broker's receive time; records
//! for schema-governed topics are checked like gateway events before anything is stored.
//!
//! The batch is decoded, its records' headers rewritten, and encoded again as one
//! uncompressed batch with the producer's id, epoch and base sequence unchanged, so
//! idempotence works as before. A refusal refuses the whole batch (Kafka's INVALID_RECORD):
//! nothing of it is stored.

use bytes::Bytes;
use headwater_log::batch::{
    ProducerFields, decode_records_within, encode, validate_for_append_within,
};
use headwater_log::{Header, Record};

/// Header the broker sets to the authenticated tenant.
pub const TENANT_HEADER: &str = "hw.tenant";
/// Header the broker sets to its receive time (ms since the Unix epoch, decimal).
pub const RECEIVED_AT_HEADER: &str = "hw.received_at";

/// What the broker checks on records a tenant produces: the schema registry, plugged in by
/// the binary (the log tier does not know schemas).
pub trait ProducePolicy: Send + Sync {
    /// Whether `topic` is governed by a schema (its records are events to validate).
    fn governs(&self, topic: &str) -> bool;

    /// Completes and checks the envelope of one record produced to the governed `topic`
    /// (after the broker stamped `hw.tenant` and `hw.received_at`): `Err` is the reason the
    /// batch is refused.
    fn admit(&self, topic: &str, record: &mut Record) -> Result<(), String>;
}

/// Why a tenant's batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StampError {
    /// The batch itself is malformed (bad CRC, framing, compression).
    #[error("invalid record batch: {0}")]
    Batch(String),
    /// A record claims another tenant than the authenticated one.
    #[error(
        "record {index} claims hw.tenant {claimed:?} but the client authenticated as tenant \
         {tenant:?}"
    )]
    ForeignTenant {
        /// Record index in the batch.
        index: usize,
        /// The tenant the record claims.
        claimed: String,
        /// The authenticated tenant.
        tenant: String,
    },
    /// A record of a governed topic failed its schema.
    #[error("record {index}: {reason}")]
    Invalid {
        /// Record index in the batch.
        index: usize,
        /// Why.
        reason: String,
    },
}

/// Rewrites `batch` (one RecordBatch v2 of a Produce request) as produced by `tenant` to
/// `topic` at `now_ms`: `hw.tenant` and `hw.received_at` set by the broker, then `policy`
/// applied when it governs the topic. A compressed batch may inflate to `max_inflated_bytes`
/// (the topic's limit, `LogEngine::max_inflated_bytes`); CPU work: run it off the async
/// workers (`LogEngine::run_decompressing`).
pub fn stamp_batch(
    batch: &Bytes,
    topic: &str,
    tenant: &str,
    now_ms: i64,
    max_inflated_bytes: usize,
    policy: Option<&dyn ProducePolicy>,
) -> Result<Bytes, StampError> {
    let header = validate_for_append_within(batch, max_inflated_bytes)
        .map_err(|e| StampError::Batch(e.to_string()))?;
    let stored = decode_records_within(batch, max_inflated_bytes)
        .map_err(|e| StampError::Batch(e.to_string()))?;
    let policy = policy.filter(|p| p.governs(topic));
    let received_at = Bytes::from(now_ms.to_string());
    let mut records = Vec::with_capacity(stored.len());
    for (index, record) in stored.into_iter().enumerate() {
        let mut headers = Vec::with_capacity(record.headers.len() + 2);
        for h in record.headers {
            match h.key.as_ref() {
                TENANT_HEADER => {
                    let claimed = h.value.as_deref().unwrap_or_default();
                    if claimed != tenant.as_bytes() {
                        return Err(StampError::ForeignTenant {
                            index,
                            claimed: String::from_utf8_lossy(claimed).into_owned(),
                            tenant: tenant.to_owned(),
                        });
                    }
                }
                RECEIVED_AT_HEADER => {}
                _ => headers.push(h),
            }
        }
        headers.push(Header {
            key: TENANT_HEADER.into(),
            value: Some(Bytes::copy_from_slice(tenant.as_bytes())),
        });
        headers.push(Header {
            key: RECEIVED_AT_HEADER.into(),
            value: Some(received_at.clone()),
        });
        let mut out = Record {
            partition: None,
            key: record.key,
            value: record.value,
            headers,
            timestamp_ms: record.timestamp_ms,
        };
        if let Some(policy) = policy {
            policy
                .admit(topic, &mut out)
                .map_err(|reason| StampError::Invalid { index, reason })?;
        }
        records.push(out);
    }
    let refs: Vec<&Record> = records.iter().collect();
    let producer = ProducerFields {
        producer_id: header.producer_id,
        producer_epoch: header.producer_epoch,
        base_sequence: header.base_sequence,
    };
    encode(&refs, producer)
        .map(|b| b.freeze())
        .map_err(|e| StampError::Batch(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    const LIMIT: usize = 8 << 20;

    fn header(key: &str, value: &str) -> Header {
        Header {
            key: key.to_owned().into(),
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
        }
    }

    fn batch(headers: Vec<Header>, producer: ProducerFields) -> Bytes {
        let records = [
            Record {
                partition: None,
                key: Some(Bytes::from_static(b"device-1")),
                value: Some(Bytes::from_static(b"{\"a\":1}")),
                headers: headers.clone(),
                timestamp_ms: 1_000,
            },
            Record {
                partition: None,
                key: None,
                value: Some(Bytes::from_static(b"{}")),
                headers,
                timestamp_ms: 1_005,
            },
        ];
        let refs: Vec<&Record> = records.iter().collect();
        encode(&refs, producer).unwrap().freeze()
    }

    fn values(records: &[headwater_log::StoredRecord], key: &str) -> Vec<String> {
        records
            .iter()
            .flat_map(|r| r.headers.iter().filter(|h| h.key == key))
            .map(|h| String::from_utf8_lossy(h.value.as_deref().unwrap_or_default()).into_owned())
            .collect()
    }

    #[test]
    fn the_broker_stamps_tenant_and_receive_time_and_keeps_the_rest() {
        let producer = ProducerFields {
            producer_id: 77,
            producer_epoch: 3,
            base_sequence: 10,
        };
        let original = batch(
            vec![header("hw.type", "t"), header(RECEIVED_AT_HEADER, "1")],
            producer,
        );
        let stamped = stamp_batch(&original, "events", "acme", 42, LIMIT, None).unwrap();
        let parsed = validate_for_append_within(&stamped, LIMIT).unwrap();
        assert_eq!(
            (
                parsed.producer_id,
                parsed.producer_epoch,
                parsed.base_sequence
            ),
            (77, 3, 10)
        );
        let records = decode_records_within(&stamped, LIMIT).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(values(&records, TENANT_HEADER), ["acme", "acme"]);
        assert_eq!(values(&records, RECEIVED_AT_HEADER), ["42", "42"]);
        assert_eq!(values(&records, "hw.type"), ["t", "t"]);
        assert_eq!(records[0].key.as_deref(), Some(&b"device-1"[..]));
        assert_eq!(records[1].timestamp_ms, 1_005);
    }

    #[test]
    fn a_claimed_other_tenant_is_refused_and_the_same_one_accepted() {
        let forged = batch(vec![header(TENANT_HEADER, "victim")], ProducerFields::NONE);
        let refused = stamp_batch(&forged, "events", "acme", 1, LIMIT, None).unwrap_err();
        assert!(
            matches!(&refused, StampError::ForeignTenant { claimed, tenant, .. } if claimed == "victim" && tenant == "acme"),
            "{refused}"
        );
        let own = batch(vec![header(TENANT_HEADER, "acme")], ProducerFields::NONE);
        let stamped = stamp_batch(&own, "events", "acme", 1, LIMIT, None).unwrap();
        let records = decode_records_within(&stamped, LIMIT).unwrap();
        assert_eq!(values(&records, TENANT_HEADER), ["acme", "acme"]);
    }

    struct OnlyEvents(Mutex<Vec<String>>);

    impl ProducePolicy for OnlyEvents {
        fn governs(&self, topic: &str) -> bool {
            topic == "events"
        }
        fn admit(&self, topic: &str, record: &mut Record) -> Result<(), String> {
            self.0.lock().unwrap().push(topic.to_owned());
            if record.value.as_deref() == Some(b"{}") {
                return Err("payload: missing field a".to_owned());
            }
            record.headers.push(header("hw.version", "1"));
            Ok(())
        }
    }

    #[test]
    fn a_governed_topic_is_checked_and_one_bad_record_refuses_the_batch() {
        let policy = OnlyEvents(Mutex::new(Vec::new()));
        let original = batch(vec![], ProducerFields::NONE);
        let refused =
            stamp_batch(&original, "events", "acme", 1, LIMIT, Some(&policy)).unwrap_err();
        assert_eq!(
            refused,
            StampError::Invalid {
                index: 1,
                reason: "payload: missing field a".to_owned()
            }
        );
        // Not governed: stamped, not checked.
        let stamped = stamp_batch(&original, "acme.raw", "acme", 1, LIMIT, Some(&policy)).unwrap();
        assert_eq!(decode_records_within(&stamped, LIMIT).unwrap().len(), 2);
        assert_eq!(*policy.0.lock().unwrap(), ["events", "events"]);
    }

    #[test]
    fn a_corrupt_batch_is_refused() {
        let mut bytes = batch(vec![], ProducerFields::NONE).to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        let refused =
            stamp_batch(&Bytes::from(bytes), "events", "acme", 1, LIMIT, None).unwrap_err();
        assert!(matches!(refused, StampError::Batch(_)), "{refused}");
    }
}
