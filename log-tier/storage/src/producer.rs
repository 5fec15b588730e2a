//! Idempotent-producer state of one partition: per producer id its epoch and the sequences of
//! its last five batches, checked on append so a retried batch is not written twice. Rebuilt
//! from batch headers on recovery, starting from a snapshot written at each segment roll.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::path::Path;

use bytes::{Buf, BufMut};

use crate::batch::BatchHeader;
use crate::error::{LogError, Result};

/// Batches remembered per producer, as in Kafka (`max.in.flight.requests.per.connection` ≤ 5).
const BATCHES_KEPT: usize = 5;
/// File name of the snapshot in a partition directory.
pub(crate) const SNAPSHOT_FILE: &str = "producer.snapshot";

/// One remembered batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchMeta {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
    last_offset: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Entry {
    epoch: i16,
    /// Wall-clock ms of the last batch (or of recovery), for expiry.
    last_seen_ms: i64,
    batches: VecDeque<BatchMeta>,
}

/// Outcome of checking a batch against the producer state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Write it.
    Append,
    /// A retry of a batch already in the log at these offsets; do not write it again.
    Duplicate { base_offset: i64, next_offset: i64 },
}

/// Producer id → state, for one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProducerStates {
    map: HashMap<i64, Entry>,
}

fn next_sequence(seq: i32) -> i32 {
    if seq == i32::MAX { 0 } else { seq + 1 }
}

impl ProducerStates {
    /// Checks a batch (base offset not yet assigned) from an idempotent producer.
    pub(crate) fn check(&self, h: &BatchHeader) -> Result<Check> {
        if h.producer_id < 0 {
            return Ok(Check::Append);
        }
        let Some(entry) = self.map.get(&h.producer_id) else {
            return Ok(Check::Append);
        };
        if h.producer_epoch < entry.epoch {
            return Err(LogError::ProducerFenced {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                current: entry.epoch,
            });
        }
        if h.producer_epoch > entry.epoch {
            return if h.base_sequence == 0 {
                Ok(Check::Append)
            } else {
                Err(self.out_of_order(h, 0))
            };
        }
        let last_seq = h.last_sequence();
        if let Some(b) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == last_seq)
        {
            return Ok(Check::Duplicate {
                base_offset: b.base_offset,
                next_offset: b.last_offset + 1,
            });
        }
        let expected = entry
            .batches
            .back()
            .map_or(0, |b| next_sequence(b.last_seq));
        if h.base_sequence == expected {
            Ok(Check::Append)
        } else {
            Err(self.out_of_order(h, expected))
        }
    }

    fn out_of_order(&self, h: &BatchHeader, expected: i32) -> LogError {
        LogError::OutOfOrderSequence {
            producer_id: h.producer_id,
            sequence: h.base_sequence,
            expected,
        }
    }

    /// Remembers a batch written at its (assigned) base offset, at wall-clock `now_ms`.
    pub(crate) fn record(&mut self, h: &BatchHeader, now_ms: i64) {
        if h.producer_id < 0 {
            return;
        }
        let entry = self.map.entry(h.producer_id).or_default();
        entry.last_seen_ms = now_ms;
        if h.producer_epoch != entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.batches.clear();
        }
        entry.batches.push_back(BatchMeta {
            first_seq: h.base_sequence,
            last_seq: h.last_sequence(),
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
        });
        while entry.batches.len() > BATCHES_KEPT {
            entry.batches.pop_front();
        }
    }

    /// Forgets producers idle for longer than `max_age_ms` (Kafka's
    /// `producer.id.expiration.ms`); returns how many went.
    pub(crate) fn expire(&mut self, now_ms: i64, max_age_ms: u64) -> usize {
        let before = self.map.len();
        let cutoff = now_ms.saturating_sub(max_age_ms.min(i64::MAX as u64) as i64);
        self.map.retain(|_, e| e.last_seen_ms >= cutoff);
        before - self.map.len()
    }

    /// Serialises the state as of log offset `offset`, with a CRC.
    pub(crate) fn encode(&self, offset: i64) -> Vec<u8> {
        let mut buf = Vec::new();
        buf.put_i64(offset);
        buf.put_u32(self.map.len() as u32);
        for (&pid, e) in &self.map {
            buf.put_i64(pid);
            buf.put_i16(e.epoch);
            buf.put_i64(e.last_seen_ms);
            buf.put_u8(e.batches.len() as u8);
            for b in &e.batches {
                buf.put_i32(b.first_seq);
                buf.put_i32(b.last_seq);
                buf.put_i64(b.base_offset);
                buf.put_i64(b.last_offset);
            }
        }
        let crc = crc32c::crc32c(&buf);
        buf.put_u32(crc);
        buf
    }

    /// Parses [`ProducerStates::encode`]'s output: `(offset, state)`; `None` if corrupt.
    pub(crate) fn decode(bytes: &[u8]) -> Option<(i64, Self)> {
        if bytes.len() < 16 {
            return None;
        }
        let (mut body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32c::crc32c(body) != u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]) {
            return None;
        }
        let offset = body.get_i64();
        let count = body.get_u32();
        let mut states = Self::default();
        for _ in 0..count {
            if body.remaining() < 19 {
                return None;
            }
            let pid = body.get_i64();
            let epoch = body.get_i16();
            let last_seen_ms = body.get_i64();
            let n = body.get_u8() as usize;
            if body.remaining() < n * 24 {
                return None;
            }
            let batches = (0..n)
                .map(|_| BatchMeta {
                    first_seq: body.get_i32(),
                    last_seq: body.get_i32(),
                    base_offset: body.get_i64(),
                    last_offset: body.get_i64(),
                })
                .collect();
            states.map.insert(
                pid,
                Entry {
                    epoch,
                    last_seen_ms,
                    batches,
                },
            );
        }
        Some((offset, states))
    }

    /// Writes a snapshot as of `offset` into `dir` (temp file + rename; CRC-checked on load).
    pub(crate) fn write_snapshot(&self, dir: &Path, offset: i64) -> Result<()> {
        let tmp = dir.join(format!("{SNAPSHOT_FILE}.tmp"));
        let path = dir.join(SNAPSHOT_FILE);
        fs::write(&tmp, self.encode(offset))
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(|e| LogError::io(format!("writing {}", path.display()), e))
    }

    /// Loads the snapshot of `dir`, if present and intact.
    pub(crate) fn read_snapshot(dir: &Path) -> Option<(i64, Self)> {
        fs::read(dir.join(SNAPSHOT_FILE))
            .ok()
            .and_then(|b| Self::decode(&b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pid: i64, epoch: i16, seq: i32, base: i64, count: i32) -> BatchHeader {
        BatchHeader {
            base_offset: base,
            batch_length: 49,
            partition_leader_epoch: -1,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: count,
        }
    }

    #[test]
    fn sequences_duplicates_gaps_and_fencing() {
        let mut s = ProducerStates::default();
        let b0 = header(7, 0, 0, 0, 3);
        assert_eq!(s.check(&b0).unwrap(), Check::Append);
        s.record(&b0, 0);
        assert_eq!(
            s.check(&header(7, 0, 0, 99, 3)).unwrap(),
            Check::Duplicate {
                base_offset: 0,
                next_offset: 3
            }
        );
        assert!(matches!(
            s.check(&header(7, 0, 5, 0, 1)),
            Err(LogError::OutOfOrderSequence { expected: 3, .. })
        ));
        assert_eq!(s.check(&header(7, 0, 3, 0, 1)).unwrap(), Check::Append);
        assert!(matches!(
            s.check(&header(7, 1, 4, 0, 1)),
            Err(LogError::OutOfOrderSequence { .. })
        ));
        s.record(&header(7, 1, 0, 3, 1), 0);
        assert!(matches!(
            s.check(&header(7, 0, 3, 0, 1)),
            Err(LogError::ProducerFenced { .. })
        ));
        let (offset, back) = ProducerStates::decode(&s.encode(4)).unwrap();
        assert_eq!((offset, &back), (4, &s));
        s.record(&header(8, 0, 0, 9, 1), 1_000);
        assert_eq!(s.expire(1_200, 500), 1);
        assert_eq!(s.map.len(), 1);
    }

    #[test]
    fn sequence_wraps_at_i32_max() {
        let mut s = ProducerStates::default();
        s.record(&header(1, 0, i32::MAX - 1, 0, 2), 0);
        assert_eq!(s.check(&header(1, 0, 0, 0, 1)).unwrap(), Check::Append);
    }
}
