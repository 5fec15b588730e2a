//! Opening a partition directory after a clean stop or a crash: trust sealed segments whose
//! indexes check out, CRC-scan the rest (always the active tail), truncate torn writes at the
//! log end, set damaged sealed segments aside (quarantine) while keeping the segments after
//! them, and rebuild the idempotent-producer state.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use tracing::{debug, error, warn};

use crate::batch::{self, BatchHeader, HEADER_LEN};
use crate::error::{LogError, Result};
use crate::index::{OffsetIndex, TimeIndex};
use crate::producer::ProducerStates;
use crate::segment::{Segment, SegmentFiles, SegmentMeta};

/// Bytes read at a time by the CRC scan.
const SCAN_CHUNK: usize = 1 << 20;

/// A recovered partition.
pub(crate) struct Recovered {
    /// Segments in offset order; the last is the active one.
    pub segments: Vec<Arc<Segment>>,
    /// Idempotent-producer state as of the log end.
    pub producers: ProducerStates,
}

/// Recovers (or creates) the partition in `dir`. After a clean shutdown (`clean`), the active
/// segment's index files (written by `close`) are trusted like a sealed segment's. Each file is
/// opened, scanned and closed in turn; what stays open is bounded by `files` (the engine's
/// `max_open_files`), so a start-up with many partitions does not run out of descriptors.
pub(crate) fn recover(
    dir: &Path,
    index_interval: u64,
    clean: bool,
    files: &SegmentFiles,
) -> Result<Recovered> {
    fs::create_dir_all(dir).map_err(|e| LogError::io(format!("creating {}", dir.display()), e))?;
    let boundary = crate::replica::read_boundary(dir);
    let mut bases = segment_bases(dir)?;
    if let Some(b) = &boundary {
        // Segments before the recorded first one: a purge interrupted after it recorded the
        // boundary. Finish it.
        for &base in bases.iter().filter(|&&base| base < b.first_segment) {
            for ext in ["log", "index", "timeindex"] {
                let _ = fs::remove_file(dir.join(crate::segment::file_name(base, ext)));
            }
        }
        bases.retain(|&base| base >= b.first_segment);
    }
    if bases.is_empty() {
        let (base, index) = boundary
            .as_ref()
            .map_or((0, 0), |b| (b.first_segment, b.first_index));
        let segment = Arc::new(Segment::create(dir, base, index, files)?);
        return Ok(Recovered {
            segments: vec![segment],
            producers: ProducerStates::default(),
        });
    }
    let mut segments: Vec<Arc<Segment>> = Vec::with_capacity(bases.len());
    for (i, &base) in bases.iter().enumerate() {
        let last = i + 1 == bases.len();
        // Raft index of the first batch: the predecessor's end, or for the first segment the
        // purge boundary's record (else what its own index trailer says, else 0).
        let expected_index = match segments.last() {
            Some(prev) => Some(prev.next_index()),
            None => boundary
                .as_ref()
                .filter(|b| b.first_segment == base)
                .map(|b| b.first_index),
        };
        if let Some(prev) = segments.last() {
            let expected = prev.next_offset();
            if base < expected {
                // Claims offsets the previous segment holds: never serve two records at one
                // offset. Set it aside whole.
                quarantine(dir, base, 0, "it overlaps the previous segment")?;
                continue;
            }
            if base > expected {
                warn!(dir = %dir.display(), base, expected, "offset gap between segments (records set aside or lost); reads skip it");
            }
        }
        let sealed = if last && !clean {
            None
        } else {
            load_sealed(dir, base, expected_index, files)?
        };
        let segment = match sealed {
            Some(s) => s,
            None => match scan_segment(
                dir,
                base,
                expected_index.unwrap_or(0),
                index_interval,
                last,
                files,
            )? {
                Some(s) => s,
                None => continue,
            },
        };
        if !last {
            segment.close_file();
        }
        segments.push(Arc::new(segment));
    }
    let active = segments
        .last()
        .ok_or_else(|| LogError::corrupt(dir.display().to_string(), "no segment"))?;
    // Usually the last file; a sealed one when the last was set aside.
    active.remove_indexes();
    active
        .sync()
        .map_err(|e| LogError::io(format!("syncing {}", active.path("log").display()), e))?;
    let producers = rebuild_producers(dir, &segments)?;
    Ok(Recovered {
        segments,
        producers,
    })
}

/// Base offsets of the `.log` files in `dir`, sorted; removes leftover temp files.
fn segment_bases(dir: &Path) -> Result<Vec<i64>> {
    let mut bases = Vec::new();
    let entries =
        fs::read_dir(dir).map_err(|e| LogError::io(format!("listing {}", dir.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| LogError::io(format!("listing {}", dir.display()), e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".tmp") {
            let _ = fs::remove_file(entry.path());
        } else if let Some(stem) = name.strip_suffix(".log")
            && let Ok(base) = stem.parse::<i64>()
        {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// Sets a damaged segment aside as `<base>.log.quarantined` (`.quarantined.N` if that exists)
/// and, when `prefix` > 0, puts back a copy of its first `prefix` bytes (whole, valid batches)
/// as `<base>.log`, so the records before the damage stay readable. Never deletes anything:
/// the quarantined file keeps every byte for an operator. The copy is made first (a `.tmp`
/// removed at the next open if a crash interrupts), then both renames, then a directory fsync.
fn quarantine(dir: &Path, base: i64, prefix: u64, why: &str) -> Result<()> {
    let path = dir.join(crate::segment::file_name(base, "log"));
    let ctx = |what: &str| format!("{what} {}", path.display());
    let aside = (0..)
        .map(|n| {
            let name = crate::segment::file_name(base, QUARANTINED);
            dir.join(if n == 0 { name } else { format!("{name}.{n}") })
        })
        .find(|p| !p.exists())
        .unwrap_or_else(|| dir.join(crate::segment::file_name(base, QUARANTINED)));
    let copy = dir.join(crate::segment::file_name(base, "log.tmp"));
    if prefix > 0 {
        let mut from = File::open(&path)
            .map_err(|e| LogError::io(ctx("opening"), e))?
            .take(prefix);
        let mut to = File::create(&copy).map_err(|e| LogError::io(ctx("copying"), e))?;
        std::io::copy(&mut from, &mut to)
            .and_then(|_| to.sync_all())
            .map_err(|e| LogError::io(ctx("copying"), e))?;
    }
    fs::rename(&path, &aside).map_err(|e| LogError::io(ctx("quarantining"), e))?;
    if prefix > 0 {
        fs::rename(&copy, &path).map_err(|e| LogError::io(ctx("restoring the prefix of"), e))?;
    }
    for ext in ["index", "timeindex"] {
        let _ = fs::remove_file(dir.join(crate::segment::file_name(base, ext)));
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LogError::io(format!("syncing {}", dir.display()), e))?;
    metrics::counter!(crate::metrics::QUARANTINED_SEGMENTS_TOTAL).increment(1);
    error!(file = %path.display(), quarantined = %aside.display(), kept_bytes = prefix, reason = why, "damaged segment set aside; the segments after it are kept");
    Ok(())
}

/// Extension of a segment file set aside by recovery.
pub(crate) const QUARANTINED: &str = "log.quarantined";

/// Opens a sealed segment from its index files when they match the log file (and its first
/// Raft index is `expected_index`, when known); `None` when they are missing, torn, stale or
/// of an older layout (the caller then rebuilds them by scanning).
fn load_sealed(
    dir: &Path,
    base: i64,
    expected_index: Option<u64>,
    files: &SegmentFiles,
) -> Result<Option<Segment>> {
    let path = dir.join(crate::segment::file_name(base, "log"));
    let len = fs::metadata(&path)
        .map_err(|e| LogError::io(format!("inspecting {}", path.display()), e))?
        .len();
    let read = |ext: &str| fs::read(dir.join(crate::segment::file_name(base, ext))).ok();
    let Some((offset_index, trailer)) = read("index").and_then(|b| OffsetIndex::decode(&b)) else {
        return Ok(None);
    };
    let Some((time_index, max_timestamp)) = read("timeindex").and_then(|b| TimeIndex::decode(&b))
    else {
        return Ok(None);
    };
    if trailer.size != len
        || trailer.next_offset < base
        || expected_index.is_some_and(|i| i != trailer.base_index)
    {
        return Ok(None);
    }
    let (_, last_rel_index, last_pos) = offset_index.last();
    let meta = SegmentMeta {
        size: len,
        next_offset: trailer.next_offset,
        base_index: trailer.base_index,
        next_index: trailer.next_index,
        max_timestamp,
        offset_index,
        time_index,
        bytes_since_index: 0,
        dirty_tail: false,
        zeroed: 0,
        preallocating: false,
        sealed: false,
    };
    let segment = Segment::from_parts(dir, base, files, None, meta);
    // The tail after the last index entry must be whole batches ending at the recorded offset.
    let mut next = if last_pos == 0 { base } else { -1 };
    let mut next_index = trailer.base_index + u64::from(last_rel_index);
    let end = segment.scan_headers(u64::from(last_pos), len, |h, _| {
        if next >= 0 && h.base_offset != next {
            return ControlFlow::Break(());
        }
        next = h.next_offset();
        next_index += 1;
        ControlFlow::Continue(())
    });
    match end {
        Ok(end)
            if end == len && next == trailer.next_offset && next_index == trailer.next_index =>
        {
            Ok(Some(segment))
        }
        _ => Ok(None),
    }
}

/// Scans a segment's batches with CRC checks from the start, rebuilding its indexes. At the
/// first torn, corrupt or out-of-sequence batch, the `last` (active) segment is truncated (a
/// torn tail after a crash); a sealed one is quarantined with its valid prefix kept, or dropped
/// from the log (`None`) when nothing before the damage is valid.
fn scan_segment(
    dir: &Path,
    base: i64,
    base_index: u64,
    index_interval: u64,
    last: bool,
    files: &SegmentFiles,
) -> Result<Option<Segment>> {
    let path = dir.join(crate::segment::file_name(base, "log"));
    let ctx = |what: &str| format!("{what} {}", path.display());
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| LogError::io(ctx("opening"), e))?;
    let len = file
        .metadata()
        .map_err(|e| LogError::io(ctx("inspecting"), e))?
        .len();
    let (mut meta, pos) = valid_prefix(&file, len, base, base_index, index_interval)
        .map_err(|e| LogError::io(ctx("reading"), e))?;
    meta.size = pos;
    // Zeros after the last batch: the tail filled ahead of appends (`log.preallocate_bytes`),
    // not damage. Cut off, so the file ends at its last batch as a sealed one must.
    if pos < len
        && (pos > 0 || last)
        && zeros_from(&file, pos, len).map_err(|e| LogError::io(ctx("reading"), e))?
    {
        debug!(file = %path.display(), size = pos, len, "cutting the preallocated tail off");
        file.set_len(pos)
            .and_then(|()| file.sync_all())
            .map_err(|e| LogError::io(ctx("truncating"), e))?;
        drop(file);
        let segment = Segment::from_parts(dir, base, files, None, meta);
        segment.remove_indexes();
        return Ok(Some(segment));
    }
    if pos < len && !last {
        drop(file);
        quarantine(
            dir,
            base,
            pos,
            "a sealed segment has a torn or corrupt batch",
        )?;
        if pos == 0 {
            return Ok(None);
        }
        return Ok(Some(Segment::from_parts(dir, base, files, None, meta)));
    }
    if pos < len {
        warn!(file = %path.display(), valid = pos, len, "truncating torn or corrupt segment tail");
        metrics::counter!(crate::metrics::RECOVERY_TRUNCATED_BYTES_TOTAL).increment(len - pos);
        file.set_len(pos)
            .map_err(|e| LogError::io(ctx("truncating"), e))?;
        file.sync_all()
            .map_err(|e| LogError::io(ctx("syncing"), e))?;
    }
    // Closed here: the segment reopens it on demand, within the engine's bound.
    drop(file);
    let segment = Segment::from_parts(dir, base, files, None, meta);
    segment.remove_indexes();
    Ok(Some(segment))
}

/// Reads `file` in chunks and returns the indexes of, and the end of, its longest prefix of
/// whole batches with good CRCs and dense offsets starting at `base` (a zero-width
/// Raft-internal batch's next offset is its base), the first getting Raft index `base_index`.
fn valid_prefix(
    file: &File,
    len: u64,
    base: i64,
    base_index: u64,
    index_interval: u64,
) -> std::io::Result<(SegmentMeta, u64)> {
    let mut meta = SegmentMeta::empty(base, base_index);
    // `pos` is always the end of the last good batch.
    let mut pos = 0u64;
    while pos + HEADER_LEN as u64 <= len {
        let mut buf = vec![0u8; (len - pos).min(SCAN_CHUNK as u64) as usize];
        file.read_exact_at(&mut buf, pos)?;
        let chunk_start = pos;
        let mut cur = 0usize;
        while let Some(h) = BatchHeader::parse(&buf[cur..]) {
            let remaining = len - chunk_start - cur as u64;
            if h.check().is_err()
                || h.base_offset != meta.next_offset
                || h.total_len() as u64 > remaining
            {
                return Ok((meta, pos));
            }
            if cur + h.total_len() > buf.len() {
                if cur > 0 {
                    break; // straddles the chunk: the next chunk starts at it
                }
                // One batch larger than the chunk: read it alone.
                buf = vec![0u8; h.total_len()];
                file.read_exact_at(&mut buf, pos)?;
                continue;
            }
            if !batch::crc_ok(&buf[cur..cur + h.total_len()]) {
                metrics::counter!(crate::metrics::CORRUPT_BATCHES_TOTAL).increment(1);
                return Ok((meta, pos));
            }
            meta.note_batch(base, &h, pos, index_interval);
            cur += h.total_len();
            pos = chunk_start + cur as u64;
        }
        if cur == 0 {
            break;
        }
    }
    Ok((meta, pos))
}

/// Whether `file` holds only zero bytes from `pos` to `len`.
fn zeros_from(file: &File, mut pos: u64, len: u64) -> std::io::Result<bool> {
    let mut buf = vec![0u8; (len - pos).min(SCAN_CHUNK as u64) as usize];
    while pos < len {
        let n = (len - pos).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], pos)?;
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        pos += n as u64;
    }
    Ok(true)
}

/// Rebuilds producer state: the snapshot, then batch headers after it.
pub(crate) fn rebuild_producers(dir: &Path, segments: &[Arc<Segment>]) -> Result<ProducerStates> {
    let now = crate::engine::now_ms();
    let end = segments.last().map_or(0, |s| s.next_offset());
    let start = segments.first().map_or(0, |s| s.base_offset);
    let (from, mut producers) = match ProducerStates::read_snapshot(dir) {
        Some((offset, states)) if offset >= start && offset <= end => (offset, states),
        _ => (start, ProducerStates::default()),
    };
    for segment in segments.iter().filter(|s| s.next_offset() > from) {
        let size = segment.size();
        let begin = segment.find_position(from, size)?.unwrap_or(size);
        segment.scan_headers(begin, size, |h, _| {
            if !h.is_internal() {
                producers.record(h, now);
            }
            ControlFlow::Continue(())
        })?;
    }
    Ok(producers)
}

#[cfg(test)]
#[path = "recovery_tests.rs"]
mod tests;
