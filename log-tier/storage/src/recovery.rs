//! Opening a partition directory after a clean stop or a crash: trust sealed segments whose
//! indexes check out, CRC-scan the rest (always the active tail), truncate torn writes, keep
//! offsets dense, and rebuild the idempotent-producer state.

use std::fs::{self, File, OpenOptions};
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use tracing::warn;

use crate::batch::{self, BatchHeader, HEADER_LEN};
use crate::error::{LogError, Result};
use crate::index::{OffsetIndex, TimeIndex};
use crate::producer::ProducerStates;
use crate::segment::{Segment, SegmentMeta};

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
/// segment's index files (written by `close`) are trusted like a sealed segment's.
pub(crate) fn recover(dir: &Path, index_interval: u64, clean: bool) -> Result<Recovered> {
    fs::create_dir_all(dir).map_err(|e| LogError::io(format!("creating {}", dir.display()), e))?;
    let bases = segment_bases(dir)?;
    if bases.is_empty() {
        let segment = Arc::new(Segment::create(dir, 0)?);
        return Ok(Recovered {
            segments: vec![segment],
            producers: ProducerStates::default(),
        });
    }
    let mut segments: Vec<Arc<Segment>> = Vec::with_capacity(bases.len());
    for (i, &base) in bases.iter().enumerate() {
        let last = i + 1 == bases.len();
        if let Some(prev) = segments.last()
            && prev.next_offset() != base
        {
            warn!(dir = %dir.display(), base, expected = prev.next_offset(), "offset gap between segments; dropping the rest");
            drop_segments(dir, &bases[i..]);
            break;
        }
        let sealed = if last && !clean {
            None
        } else {
            load_sealed(dir, base)?
        };
        let (segment, truncated) = match sealed {
            Some(s) => (s, false),
            None => scan_segment(dir, base, index_interval)?,
        };
        if !last {
            segment.close_file();
        }
        segments.push(Arc::new(segment));
        if truncated && !last {
            warn!(dir = %dir.display(), base, "corrupt sealed segment truncated; dropping later segments");
            drop_segments(dir, &bases[i + 1..]);
            break;
        }
    }
    let active = segments
        .last()
        .ok_or_else(|| LogError::corrupt(dir.display().to_string(), "no segment"))?;
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

fn drop_segments(dir: &Path, bases: &[i64]) {
    for &base in bases {
        for ext in ["log", "index", "timeindex"] {
            let _ = fs::remove_file(dir.join(crate::segment::file_name(base, ext)));
        }
    }
}

/// Opens a sealed segment from its index files when they match the log file; `None` when they
/// are missing, torn or stale (the caller then rebuilds them by scanning).
fn load_sealed(dir: &Path, base: i64) -> Result<Option<Segment>> {
    let path = dir.join(crate::segment::file_name(base, "log"));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| LogError::io(format!("opening {}", path.display()), e))?;
    let len = file
        .metadata()
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
    if trailer.size != len || trailer.next_offset < base {
        return Ok(None);
    }
    let (_, last_pos) = offset_index.lookup(u32::MAX);
    let meta = SegmentMeta {
        size: len,
        next_offset: trailer.next_offset,
        max_timestamp,
        offset_index,
        time_index,
        bytes_since_index: 0,
        dirty_tail: false,
    };
    let segment = Segment::from_parts(dir, base, Some(file), meta);
    // The tail after the last index entry must be whole batches ending at the recorded offset.
    let mut next = if last_pos == 0 { base } else { -1 };
    let end = segment.scan_headers(u64::from(last_pos), len, |h, _| {
        if next >= 0 && h.base_offset != next {
            return ControlFlow::Break(());
        }
        next = h.next_offset();
        ControlFlow::Continue(())
    });
    match end {
        Ok(end) if end == len && next == trailer.next_offset => Ok(Some(segment)),
        _ => Ok(None),
    }
}

/// Scans a segment's batches with CRC checks from the start, rebuilding its indexes, and
/// truncates it at the first torn, corrupt or out-of-sequence batch. Returns whether it cut.
fn scan_segment(dir: &Path, base: i64, index_interval: u64) -> Result<(Segment, bool)> {
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
    let (mut meta, pos) = valid_prefix(&file, len, base, index_interval)
        .map_err(|e| LogError::io(ctx("reading"), e))?;
    let truncated = pos < len;
    if truncated {
        warn!(file = %path.display(), valid = pos, len, "truncating torn or corrupt segment tail");
        metrics::counter!(crate::metrics::RECOVERY_TRUNCATED_BYTES_TOTAL).increment(len - pos);
        file.set_len(pos)
            .map_err(|e| LogError::io(ctx("truncating"), e))?;
        file.sync_all()
            .map_err(|e| LogError::io(ctx("syncing"), e))?;
    }
    meta.size = pos;
    let segment = Segment::from_parts(dir, base, Some(file), meta);
    segment.remove_indexes();
    Ok((segment, truncated))
}

/// Reads `file` in chunks and returns the indexes of, and the end of, its longest prefix of
/// whole batches with good CRCs and dense offsets starting at `base`.
fn valid_prefix(
    file: &File,
    len: u64,
    base: i64,
    index_interval: u64,
) -> std::io::Result<(SegmentMeta, u64)> {
    let mut meta = SegmentMeta::empty(base);
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

/// Rebuilds producer state: the snapshot, then batch headers after it.
fn rebuild_producers(dir: &Path, segments: &[Arc<Segment>]) -> Result<ProducerStates> {
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
            producers.record(h, now);
            ControlFlow::Continue(())
        })?;
    }
    Ok(producers)
}
