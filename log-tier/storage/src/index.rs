//! Sparse offset and time indexes of one segment, kept in memory and persisted when the segment
//! is sealed (`.index`, `.timeindex`), each file ending in a trailer and a CRC-32C so a torn or
//! stale index is detected and rebuilt from the log.

use bytes::{Buf, BufMut};

/// Sparse map from a relative offset and a relative Raft index (the batch's ordinal in the
/// segment) to the byte position of the batch. Relative offsets never decrease (zero-width
/// Raft-internal batches share their offset with the next data batch); relative indexes and
/// positions strictly increase.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetIndex {
    entries: Vec<(u32, u32, u32)>,
}

/// Tag mixed into the CRC of an offset index file, so a file of an older layout never decodes.
const OFFSET_INDEX_TAG: &[u8] = b"headwater offset index v2";

impl OffsetIndex {
    /// Adds an entry; entries must come in increasing order (out-of-order ones are ignored).
    pub fn push(&mut self, relative_offset: u32, relative_index: u32, position: u32) {
        if self
            .entries
            .last()
            .is_none_or(|&(o, i, p)| relative_offset >= o && relative_index > i && position > p)
        {
            self.entries
                .push((relative_offset, relative_index, position));
        }
    }

    /// The last entry at or before `relative_offset`, or `(0, 0)`: `(relative offset,
    /// position)` where to start scanning.
    pub fn lookup(&self, relative_offset: u32) -> (u32, u32) {
        let i = self
            .entries
            .partition_point(|&(o, _, _)| o <= relative_offset);
        if i == 0 {
            (0, 0)
        } else {
            let (o, _, p) = self.entries[i - 1];
            (o, p)
        }
    }

    /// The last entry at or before `relative_index`, or `(0, 0)`: `(relative index,
    /// position)` where to start counting batches.
    pub fn lookup_index(&self, relative_index: u32) -> (u32, u32) {
        let i = self
            .entries
            .partition_point(|&(_, x, _)| x <= relative_index);
        if i == 0 {
            (0, 0)
        } else {
            let (_, x, p) = self.entries[i - 1];
            (x, p)
        }
    }

    /// The last entry, or `(0, 0, 0)`: `(relative offset, relative index, position)`.
    pub fn last(&self) -> (u32, u32, u32) {
        self.entries.last().copied().unwrap_or((0, 0, 0))
    }

    /// The first entry after `relative_offset`: the nearest batch start known to hold later
    /// offsets (where a reader may go on past damaged bytes), as `(relative offset, position)`.
    pub fn next_after(&self, relative_offset: u32) -> Option<(u32, u32)> {
        let i = self
            .entries
            .partition_point(|&(o, _, _)| o <= relative_offset);
        self.entries.get(i).map(|&(o, _, p)| (o, p))
    }

    /// Drops entries at or after byte `position`.
    pub fn truncate_to_position(&mut self, position: u64) {
        self.entries.retain(|&(_, _, p)| u64::from(p) < position);
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True without entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Serialises entries (12 bytes each) plus the trailer and a CRC (seeded with a layout
    /// tag: an index file of the older 8-byte layout fails to decode and is rebuilt by
    /// scanning).
    pub fn encode(&self, trailer: IndexTrailer) -> Vec<u8> {
        let mut buf = Vec::with_capacity(self.entries.len() * 12 + TRAILER_LEN + 4);
        for &(o, i, p) in &self.entries {
            buf.put_u32(o);
            buf.put_u32(i);
            buf.put_u32(p);
        }
        buf.put_i64(trailer.next_offset);
        buf.put_u64(trailer.size);
        buf.put_u64(trailer.base_index);
        buf.put_u64(trailer.next_index);
        let crc = crc32c::crc32c_append(crc32c::crc32c(OFFSET_INDEX_TAG), &buf);
        buf.put_u32(crc);
        buf
    }

    /// Parses what [`OffsetIndex::encode`] wrote; `None` if torn, corrupt, of another layout
    /// or not increasing.
    pub fn decode(bytes: &[u8]) -> Option<(Self, IndexTrailer)> {
        let seed = crc32c::crc32c(OFFSET_INDEX_TAG);
        let body = checked_body_seeded(bytes, TRAILER_LEN, 12, seed)?;
        let (mut entries_bytes, mut trailer) = body.split_at(body.len() - TRAILER_LEN);
        let mut index = OffsetIndex::default();
        while entries_bytes.has_remaining() {
            let (o, i, p) = (
                entries_bytes.get_u32(),
                entries_bytes.get_u32(),
                entries_bytes.get_u32(),
            );
            let before = index.entries.len();
            index.push(o, i, p);
            if index.entries.len() == before {
                return None;
            }
        }
        let t = IndexTrailer {
            next_offset: trailer.get_i64(),
            size: trailer.get_u64(),
            base_index: trailer.get_u64(),
            next_index: trailer.get_u64(),
        };
        (t.next_index >= t.base_index).then_some((index, t))
    }
}

/// Bytes of an encoded [`IndexTrailer`].
const TRAILER_LEN: usize = 32;

/// What a sealed segment's offset index records about the log file it indexes (layout v2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexTrailer {
    /// Offset after the segment's last record.
    pub next_offset: i64,
    /// Size of the `.log` file in bytes.
    pub size: u64,
    /// Raft index of the segment's first batch (its ordinal in a non-replicated partition).
    pub base_index: u64,
    /// Raft index after the segment's last batch.
    pub next_index: u64,
}

/// Sparse map from a timestamp to the first relative offset whose batch reached it; timestamps
/// strictly increase (each entry is the running maximum).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeIndex {
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    /// Adds an entry when `timestamp` exceeds the last one.
    pub fn push(&mut self, timestamp: i64, relative_offset: u32) {
        if self
            .entries
            .last()
            .is_none_or(|&(t, o)| timestamp > t && relative_offset > o)
        {
            self.entries.push((timestamp, relative_offset));
        }
    }

    /// Relative offset to start scanning for the first record with a timestamp `>= target`:
    /// every batch up to the returned entry's batch has timestamps `< target`... except the
    /// entry's own batch may hold the answer, so scanning starts there.
    pub fn lookup(&self, target: i64) -> u32 {
        let i = self.entries.partition_point(|&(t, _)| t < target);
        if i == 0 { 0 } else { self.entries[i - 1].1 }
    }

    /// Drops entries at or after `relative_offset`.
    pub fn truncate_to_offset(&mut self, relative_offset: u32) {
        self.entries.retain(|&(_, o)| o < relative_offset);
    }

    /// Serialises entries, the segment's max timestamp and a CRC.
    pub fn encode(&self, max_timestamp: i64) -> Vec<u8> {
        let mut buf = Vec::with_capacity(self.entries.len() * 12 + 12);
        for &(t, o) in &self.entries {
            buf.put_i64(t);
            buf.put_u32(o);
        }
        buf.put_i64(max_timestamp);
        let crc = crc32c::crc32c(&buf);
        buf.put_u32(crc);
        buf
    }

    /// Parses what [`TimeIndex::encode`] wrote, with the max timestamp.
    pub fn decode(bytes: &[u8]) -> Option<(Self, i64)> {
        let body = checked_body(bytes, 8, 12)?;
        let (mut entries_bytes, mut trailer) = body.split_at(body.len() - 8);
        let mut index = TimeIndex::default();
        while entries_bytes.has_remaining() {
            let (t, o) = (entries_bytes.get_i64(), entries_bytes.get_u32());
            let before = index.entries.len();
            index.push(t, o);
            if index.entries.len() == before {
                return None;
            }
        }
        Some((index, trailer.get_i64()))
    }
}

/// Checks length and CRC; returns the bytes before the CRC.
fn checked_body(bytes: &[u8], trailer: usize, entry: usize) -> Option<&[u8]> {
    checked_body_seeded(bytes, trailer, entry, 0)
}

/// [`checked_body`] with the CRC computed from `seed` (`crc32c_append`).
fn checked_body_seeded(bytes: &[u8], trailer: usize, entry: usize, seed: u32) -> Option<&[u8]> {
    if bytes.len() < trailer + 4 || !(bytes.len() - trailer - 4).is_multiple_of(entry) {
        return None;
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    (crc32c::crc32c_append(seed, body) == stored).then_some(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn offset_lookup_finds_last_entry_at_or_before(
            steps in proptest::collection::vec((1u32..50, 1u32..5000), 0..200),
            probe in 0u32..12_000,
        ) {
            let mut index = OffsetIndex::default();
            let (mut o, mut p) = (0u32, 0u32);
            let mut model = vec![];
            for (n, (d_o, dp)) in steps.into_iter().enumerate() {
                o += d_o;
                p += dp;
                index.push(o, n as u32 + 1, p);
                model.push((o, p));
            }
            let expected = model.iter().rev().find(|&&(eo, _)| eo <= probe).copied().unwrap_or((0, 0));
            prop_assert_eq!(index.lookup(probe), expected);
            let trailer = IndexTrailer { next_offset: i64::from(o) + 1, size: u64::from(p) + 10, base_index: 3, next_index: 500 };
            let (back, t) = OffsetIndex::decode(&index.encode(trailer)).unwrap();
            prop_assert_eq!(&back, &index);
            prop_assert_eq!(t, trailer);
        }

        #[test]
        fn time_lookup_never_skips_an_answer(
            batches in proptest::collection::vec((-5i64..50, 1u32..5), 1..100),
            target in -10i64..60,
        ) {
            // Model: batches with (max timestamp, record count); index every batch.
            let mut index = TimeIndex::default();
            let mut rel = 0u32;
            let mut running = i64::MIN;
            let mut starts = vec![];
            for &(ts, n) in &batches {
                running = running.max(ts);
                index.push(running, rel);
                starts.push((rel, ts));
                rel += n;
            }
            let start = index.lookup(target);
            // The first batch whose max timestamp reaches the target must be at or after `start`.
            if let Some(&(first, _)) = starts.iter().find(|&&(_, ts)| ts >= target) {
                prop_assert!(start <= first);
            }
            let (back, max) = TimeIndex::decode(&index.encode(running)).unwrap();
            prop_assert_eq!(back, index);
            prop_assert_eq!(max, running);
        }

        #[test]
        fn corrupt_index_bytes_are_rejected(flip in 0usize..36, bit in 0u8..8) {
            let mut index = OffsetIndex::default();
            index.push(1, 1, 100);
            index.push(7, 2, 900);
            let mut bytes = index.encode(IndexTrailer { next_offset: 9, size: 1000, base_index: 0, next_index: 3 });
            let i = flip % bytes.len();
            bytes[i] ^= 1 << bit;
            prop_assert!(OffsetIndex::decode(&bytes).is_none());
        }
    }

    #[test]
    fn old_layout_index_files_do_not_decode() {
        // The 8-byte-entry layout before Raft indexes: (offset, position)… then (next offset,
        // size) and a plain CRC-32C. Two entries make its length a valid v2 length.
        let mut old = Vec::new();
        for (o, p) in [(1u32, 100u32), (7, 900)] {
            old.put_u32(o);
            old.put_u32(p);
        }
        old.put_i64(9);
        old.put_u64(1000);
        let crc = crc32c::crc32c(&old);
        old.put_u32(crc);
        assert_eq!((old.len() - 4 - TRAILER_LEN) % 12, 0);
        assert!(OffsetIndex::decode(&old).is_none());
    }

    #[test]
    fn index_lookup_by_relative_index_and_shared_offsets() {
        let mut index = OffsetIndex::default();
        index.push(4, 2, 100); // an internal batch at offset 4…
        index.push(4, 3, 200); // …and the data batch holding offset 4 after it
        index.push(9, 5, 400);
        assert_eq!(index.lookup(4), (4, 200));
        assert_eq!(index.lookup_index(4), (3, 200));
        assert_eq!(index.lookup_index(1), (0, 0));
        assert_eq!(index.last(), (9, 5, 400));
    }

    #[test]
    fn truncated_index_is_rejected() {
        let mut index = OffsetIndex::default();
        index.push(3, 1, 40);
        let bytes = index.encode(IndexTrailer {
            next_offset: 5,
            size: 80,
            base_index: 0,
            next_index: 2,
        });
        assert!(OffsetIndex::decode(&bytes[..bytes.len() - 1]).is_none());
        assert!(OffsetIndex::decode(&[]).is_none());
    }
}
