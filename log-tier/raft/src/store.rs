//! openraft's log storage over a replica partition of `headwater-log`: each Raft entry is one
//! RecordBatch in the partition's segments (no second write-ahead log), Raft-internal entries
//! are zero-width control batches that take no Kafka offset, and the term is the batch's
//! `partitionLeaderEpoch`. Flushes are reported through the partition's group commit.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use headwater_log::{Boundary, Entry, EntryId, EntryKind, EntryPayload, ReplicaLog, StoredEntry};
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};

use crate::error::ReplicationError;
use crate::state::DurableValue;
use crate::types::{Batch, TypeConfig, log_id, typ};

/// Bytes of entries one `limited_get_log_entries` returns at most (at least one entry): bounds
/// every AppendEntries a leader sends.
pub const MAX_READ_BYTES: usize = 1 << 20;

/// The log store of one Raft group: the partition's log plus the group's durable vote.
#[derive(Clone)]
pub struct LogStore {
    log: ReplicaLog,
    vote_file: DurableValue,
    vote: Arc<Mutex<Option<typ::Vote>>>,
}

impl LogStore {
    /// The store over `log`, keeping the vote in `state_dir`.
    pub fn open(log: ReplicaLog, state_dir: &std::path::Path) -> Result<Self, ReplicationError> {
        let vote_file = DurableValue::new(state_dir, "vote")?;
        let vote = vote_file.load::<typ::Vote>()?;
        Ok(Self {
            log,
            vote_file,
            vote: Arc::new(Mutex::new(vote)),
        })
    }

    /// The partition's log.
    pub fn log(&self) -> &ReplicaLog {
        &self.log
    }

    fn read(&self, start: u64, end: u64, max_bytes: usize) -> Result<Vec<typ::Entry>, io::Error> {
        let state = self.log.state();
        let first = state.purged.map_or(0, |p| p.index + 1).max(start);
        let last = state.last.map_or(first, |l| l.index + 1).min(end);
        let mut entries = Vec::new();
        let mut next = first;
        let mut budget = max_bytes;
        while next < last {
            let batch = self
                .log
                .entries(next..last, budget)
                .map_err(ReplicationError::from)?;
            if batch.is_empty() {
                return Err(hole(next));
            }
            for stored in batch {
                if stored.index != next {
                    return Err(hole(next));
                }
                budget = budget.saturating_sub(stored.bytes.len());
                entries.push(to_raft(stored)?);
                next += 1;
            }
            if budget == 0 {
                break;
            }
        }
        Ok(entries)
    }
}

impl LogStore {
    /// A pristine log (no entry, nothing purged) given a first entry past index 0 starts there:
    /// the entries before it are recorded as purged (openraft never does this itself: a log
    /// starts at 0, where `initialize` writes, or after an installed snapshot; its storage
    /// suite does).
    fn start_at(&self, first: Option<u64>) -> Result<(), ReplicationError> {
        let state = self.log.state();
        match first {
            Some(index) if index > 0 && state.last.is_none() && state.purged.is_none() => {
                self.log.purge(Boundary {
                    last: EntryId {
                        index: index - 1,
                        term: 0,
                    },
                    next_offset: state.next_offset,
                })?;
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

fn hole(index: u64) -> io::Error {
    io::Error::other(format!("log entry {index} is missing"))
}

/// A stored batch as an openraft entry.
pub(crate) fn to_raft(stored: StoredEntry) -> Result<typ::Entry, ReplicationError> {
    let payload = match stored.kind {
        EntryKind::Blank => typ::EntryPayload::Blank,
        EntryKind::Data => typ::EntryPayload::Normal(Batch(stored.bytes.clone())),
        EntryKind::Membership => {
            let bytes = stored.membership().ok_or_else(|| ReplicationError::Entry {
                index: stored.index,
                reason: "membership entry without membership".to_owned(),
            })?;
            let membership: typ::Membership =
                serde_json::from_slice(&bytes).map_err(|e| ReplicationError::Entry {
                    index: stored.index,
                    reason: format!("membership does not decode: {e}"),
                })?;
            typ::EntryPayload::Membership(membership)
        }
    };
    Ok(typ::Entry {
        log_id: log_id(stored.term, stored.index),
        payload,
    })
}

/// An openraft entry as the partition stores it.
pub(crate) fn to_stored(entry: typ::Entry) -> Result<Entry, ReplicationError> {
    let index = entry.log_id.index;
    let term = entry.log_id.leader_id.term;
    let payload = match entry.payload {
        typ::EntryPayload::Blank => EntryPayload::Blank,
        typ::EntryPayload::Normal(Batch(bytes)) => EntryPayload::Data(into_mut(bytes)),
        typ::EntryPayload::Membership(m) => {
            let json = serde_json::to_vec(&m).map_err(|e| ReplicationError::Entry {
                index,
                reason: format!("membership does not encode: {e}"),
            })?;
            EntryPayload::Membership(Bytes::from(json))
        }
    };
    Ok(Entry {
        index,
        term,
        payload,
    })
}

/// The batch as a mutable buffer (its header gets the offset and epoch): without a copy when
/// nothing else holds it.
fn into_mut(bytes: Bytes) -> BytesMut {
    bytes
        .try_into_mut()
        .unwrap_or_else(|shared| BytesMut::from(&shared[..]))
}

fn bounds<RB: RangeBounds<u64>>(range: &RB) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    (start, end)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<typ::Entry>, io::Error> {
        let (start, end) = bounds(&range);
        self.read(start, end, usize::MAX)
    }

    async fn read_vote(&mut self) -> Result<Option<typ::Vote>, io::Error> {
        Ok(*self.vote.lock().unwrap_or_else(|p| p.into_inner()))
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<typ::Entry>, io::Error> {
        self.read(start, end, MAX_READ_BYTES)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let state = self.log.state();
        let purged = state.purged.map(|p| log_id(p.term, p.index));
        let last = state.last.map(|l| log_id(l.term, l.index)).or(purged);
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &typ::Vote) -> Result<(), io::Error> {
        self.vote_file.store(vote)?;
        *self.vote.lock().unwrap_or_else(|p| p.into_inner()) = Some(*vote);
        Ok(())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = typ::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries = entries
            .into_iter()
            .map(to_stored)
            .collect::<Result<Vec<_>, _>>()?;
        self.start_at(entries.first().map(|e| e.index))?;
        self.log
            .append(
                entries,
                Box::new(move |result| {
                    callback.io_completed(
                        result.map_err(|e| io::Error::other(headwater_log::error_chain(&e))),
                    )
                }),
            )
            .map_err(ReplicationError::from)?;
        Ok(())
    }

    async fn truncate_after(&mut self, last: Option<typ::LogId>) -> Result<(), io::Error> {
        self.log
            .truncate_after(last.map(|l| l.index))
            .map_err(ReplicationError::from)?;
        Ok(())
    }

    async fn purge(&mut self, upto: typ::LogId) -> Result<(), io::Error> {
        let state = self.log.state();
        if state.purged.is_some_and(|p| p.index >= upto.index) {
            return Ok(());
        }
        // Past the log's end (nothing of it here): the log ends where the purge starts it.
        let next_offset = match state.last {
            Some(last) if upto.index <= last.index => self
                .log
                .offset_after(upto.index)
                .map_err(ReplicationError::from)?,
            _ => state.next_offset,
        };
        self.log
            .purge(Boundary {
                last: EntryId {
                    index: upto.index,
                    term: upto.leader_id.term,
                },
                next_offset,
            })
            .map_err(ReplicationError::from)?;
        Ok(())
    }
}
