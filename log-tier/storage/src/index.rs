//! Sparse offset and time indexes of one segment, kept in memory and persisted when the segment
//! is sealed (`.index`, `.timeindex`), each file ending in a trailer and a CRC-32C so a torn or
//! stale index is detected and rebuilt from the log.

use bytes::{Buf, BufMut};

/// Sparse map from a relative offset to the byte position of the batch holding it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetIndex {
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    /// Adds an entry; entries must come in increasing order (out-of-order ones are ignored).
    pub fn push(&mut self, relative_offset: u32, position: u32) {
        if self
            .entries
            .last()
            .is_none_or(|&(o, p)| relative_offset > o && position > p)
        {
            self.entries.push((relative_offset, position));
        }
    }

    /// The last entry at or before `relative_offset`, or `(0, 0)`: where to start scanning.
    pub fn lookup(&self, relative_offset: u32) -> (u32, u32) {
        let i = self.entries.partition_point(|&(o, _)| o <= relative_offset);
        if i == 0 { (0, 0) } else { self.entries[i - 1] }
    }

    /// The first entry after `relative_offset`: the nearest batch start known to hold later
    /// offsets (where a reader may go on past damaged bytes).
    pub fn next_after(&self, relative_offset: u32) -> Option<(u32, u32)> {
        let i = self.entries.partition_point(|&(o, _)| o <= relative_offset);
        self.entries.get(i).copied()
    }

    /// Drops entries at or after byte `position`.
    pub fn truncate_to_position(&mut self, position: u64) {
        self.entries.retain(|&(_, p)| u64::from(p) < position);
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True without entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Serialises entries plus a trailer `(next_offset, size)` and a CRC.
    pub fn encode(&self, trailer: IndexTrailer) -> Vec<u8> {
        let mut buf = Vec::with_capacity(self.entries.len() * 8 + 20);
        for &(o, p) in &self.entries {
            buf.put_u32(o);
            buf.put_u32(p);
        }
        buf.put_i64(trailer.next_offset);
        buf.put_u64(trailer.size);
        let crc = crc32c::crc32c(&buf);
        buf.put_u32(crc);
        buf
    }

    /// Parses what [`OffsetIndex::encode`] wrote; `None` if torn, corrupt or not increasing.
    pub fn decode(bytes: &[u8]) -> Option<(Self, IndexTrailer)> {
        let body = checked_body(bytes, 16, 8)?;
        let (mut entries_bytes, mut trailer) = body.split_at(body.len() - 16);
        let mut index = OffsetIndex::default();
        while entries_bytes.has_remaining() {
            let (o, p) = (entries_bytes.get_u32(), entries_bytes.get_u32());
            let before = index.entries.len();
            index.push(o, p);
            if index.entries.len() == before {
                return None;
            }
        }
        let t = IndexTrailer {
            next_offset: trailer.get_i64(),
            size: trailer.get_u64(),
        };
        Some((index, t))
    }
}

/// What a sealed segment's offset index records about the log file it indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexTrailer {
    /// Offset after the segment's last record.
    pub next_offset: i64,
    /// Size of the `.log` file in bytes.
    pub size: u64,
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
    if bytes.len() < trailer + 4 || !(bytes.len() - trailer - 4).is_multiple_of(entry) {
        return None;
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    (crc32c::crc32c(body) == stored).then_some(body)
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
            for (d_o, dp) in steps {
                o += d_o;
                p += dp;
                index.push(o, p);
                model.push((o, p));
            }
            let expected = model.iter().rev().find(|&&(eo, _)| eo <= probe).copied().unwrap_or((0, 0));
            prop_assert_eq!(index.lookup(probe), expected);
            let trailer = IndexTrailer { next_offset: i64::from(o) + 1, size: u64::from(p) + 10 };
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
            index.push(1, 100);
            index.push(7, 900);
            let mut bytes = index.encode(IndexTrailer { next_offset: 9, size: 1000 });
            let i = flip % bytes.len();
            bytes[i] ^= 1 << bit;
            prop_assert!(OffsetIndex::decode(&bytes).is_none());
        }
    }

    #[test]
    fn truncated_index_is_rejected() {
        let mut index = OffsetIndex::default();
        index.push(3, 40);
        let bytes = index.encode(IndexTrailer {
            next_offset: 5,
            size: 80,
        });
        assert!(OffsetIndex::decode(&bytes[..bytes.len() - 1]).is_none());
        assert!(OffsetIndex::decode(&[]).is_none());
    }
}
