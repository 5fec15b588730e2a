//! The files beside a replica's segments: the leader-epoch cache (`leader-epoch-checkpoint`,
//! Kafka's checkpoint text format) and the purge boundary (`boundary`), both written
//! atomically (temp file, fsync, rename, directory fsync), and their recovery at open.

use std::fs::{self, File};
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;

use bytes::{Buf, BufMut};
use tracing::warn;

use super::{Boundary, EntryId, EpochEntry};
use crate::error::{LogError, Result};
use crate::segment::Segment;

/// File of the leader-epoch cache in a partition directory.
pub(crate) const EPOCH_FILE: &str = "leader-epoch-checkpoint";
/// File of the purge boundary in a partition directory.
pub(crate) const BOUNDARY_FILE: &str = "boundary";

/// Drops the epochs wholly before the boundary; the one in force at it moves to its first
/// kept entry (as Kafka's `truncateFromStart`).
pub(crate) fn trim_epochs(epochs: &mut Vec<EpochEntry>, boundary: Boundary) {
    let start = boundary.last.index + 1;
    let in_force = epochs.iter().rposition(|e| e.first_index <= start);
    if let Some(i) = in_force {
        epochs.drain(..i);
        if let Some(e) = epochs.first_mut() {
            e.first_index = start;
            e.first_offset = boundary.next_offset;
        }
    }
}

/// The content of the `boundary` file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BoundaryRecord {
    /// The last purged entry and the offset after it.
    pub boundary: Boundary,
    /// Base offset of the first segment kept.
    pub first_segment: i64,
    /// Raft index of that segment's first batch.
    pub first_index: u64,
}

/// Writes `path` atomically: temp file, fsync, rename, directory fsync.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let path = dir.join(name);
    let write = || -> std::io::Result<()> {
        fs::write(&tmp, bytes)?;
        File::open(&tmp)?.sync_all()?;
        fs::rename(&tmp, &path)?;
        File::open(dir)?.sync_all()
    };
    write().map_err(|e| LogError::io(format!("writing {}", path.display()), e))
}

/// Writes the purge boundary record.
pub(crate) fn write_boundary(dir: &Path, record: &BoundaryRecord) -> Result<()> {
    let mut buf = Vec::with_capacity(44);
    buf.put_u64(record.boundary.last.index);
    buf.put_u64(record.boundary.last.term);
    buf.put_i64(record.boundary.next_offset);
    buf.put_i64(record.first_segment);
    buf.put_u64(record.first_index);
    let crc = crc32c::crc32c(&buf);
    buf.put_u32(crc);
    write_atomic(dir, BOUNDARY_FILE, &buf)
}

/// The boundary recorded in `dir`, if present and intact.
pub(crate) fn read_boundary(dir: &Path) -> Option<BoundaryRecord> {
    let bytes = fs::read(dir.join(BOUNDARY_FILE)).ok()?;
    if bytes.len() != 44 {
        return None;
    }
    let (body, crc) = bytes.split_at(40);
    if crc32c::crc32c(body) != u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        warn!(dir = %dir.display(), "corrupt purge boundary ignored");
        return None;
    }
    let mut b = body;
    Some(BoundaryRecord {
        boundary: Boundary {
            last: EntryId {
                index: b.get_u64(),
                term: b.get_u64(),
            },
            next_offset: b.get_i64(),
        },
        first_segment: b.get_i64(),
        first_index: b.get_u64(),
    })
}

/// Writes the leader-epoch cache (Kafka's checkpoint format: version, count, one
/// `term first_index first_offset` line per epoch).
pub(crate) fn write_epochs(dir: &Path, epochs: &[EpochEntry]) -> Result<()> {
    let mut text = format!("0\n{}\n", epochs.len());
    for e in epochs {
        text.push_str(&format!(
            "{} {} {}\n",
            e.term, e.first_index, e.first_offset
        ));
    }
    write_atomic(dir, EPOCH_FILE, text.as_bytes())
}

/// Parses the leader-epoch cache; `None` if missing, malformed or not increasing.
fn read_epochs(dir: &Path) -> Option<Vec<EpochEntry>> {
    let text = fs::read_to_string(dir.join(EPOCH_FILE)).ok()?;
    let mut lines = text.lines();
    if lines.next()? != "0" {
        return None;
    }
    let count: usize = lines.next()?.parse().ok()?;
    let mut epochs: Vec<EpochEntry> = Vec::with_capacity(count.min(1024));
    for line in lines {
        let mut fields = line.split(' ');
        let e = EpochEntry {
            term: fields.next()?.parse().ok()?,
            first_index: fields.next()?.parse().ok()?,
            first_offset: fields.next()?.parse().ok()?,
        };
        if fields.next().is_some()
            || epochs
                .last()
                .is_some_and(|l| l.term >= e.term || l.first_index >= e.first_index)
        {
            return None;
        }
        epochs.push(e);
    }
    (epochs.len() == count).then_some(epochs)
}

/// Rebuilds the epoch cache from the batch headers of `segments`.
fn scan_epochs(segments: &[Arc<Segment>]) -> Result<Vec<EpochEntry>> {
    let mut epochs: Vec<EpochEntry> = Vec::new();
    for segment in segments {
        let mut index = segment.base_index();
        segment.scan_headers(0, segment.size(), |h, _| {
            if let Ok(term) = u64::try_from(h.partition_leader_epoch)
                && epochs.last().is_none_or(|e| term > e.term)
            {
                epochs.push(EpochEntry {
                    term,
                    first_index: index,
                    first_offset: h.base_offset,
                });
            }
            index += 1;
            ControlFlow::Continue(())
        })?;
    }
    Ok(epochs)
}

/// At open: the epoch cache (loaded, cut at the log end, or rebuilt by scanning when missing
/// or corrupt) and the purge boundary of a replicated partition.
pub(crate) fn recover_meta(
    dir: &Path,
    segments: &[Arc<Segment>],
) -> Result<(Vec<EpochEntry>, Option<Boundary>)> {
    let boundary = read_boundary(dir).map(|r| r.boundary);
    let next = segments.last().map_or(0, |s| s.next_index());
    let loaded = read_epochs(dir).map(|mut epochs| {
        let before = epochs.len();
        epochs.retain(|e| e.first_index < next);
        (epochs.len() != before, epochs)
    });
    // The newest epoch must name the term its first entry's batch carries (else the cache is
    // stale: rebuilt).
    let loaded = match loaded {
        Some((cut, epochs)) if last_epoch_matches(&epochs, segments)? => Some((cut, epochs)),
        _ => None,
    };
    let (epochs, dirty) = match loaded {
        Some((cut, epochs)) => (epochs, cut),
        None => {
            warn!(dir = %dir.display(), "leader-epoch cache missing or stale; rebuilt from the log");
            let mut epochs = scan_epochs(segments)?;
            if let Some(b) = boundary {
                trim_epochs(&mut epochs, b);
            }
            (epochs, true)
        }
    };
    if dirty {
        write_epochs(dir, &epochs)?;
    }
    Ok((epochs, boundary))
}

/// True when the newest epoch's first entry is stored with that term (or is not stored
/// here: purged, or the cache is empty).
fn last_epoch_matches(epochs: &[EpochEntry], segments: &[Arc<Segment>]) -> Result<bool> {
    let Some(last) = epochs.last() else {
        return Ok(true);
    };
    let Some(segment) = segments
        .iter()
        .rev()
        .find(|s| s.base_index() <= last.first_index)
    else {
        return Ok(true);
    };
    let Some(pos) = segment.find_index_position(last.first_index, segment.size())? else {
        return Ok(false);
    };
    let head = segment.read(pos, crate::batch::HEADER_LEN)?;
    Ok(crate::batch::BatchHeader::parse(&head)
        .is_some_and(|h| i64::from(h.partition_leader_epoch) == last.term as i64))
}
