//! The state machine of a data partition. Applying a committed data entry only moves the
//! partition's high watermark (what Kafka consumers may read) past its records and answers the
//! producer with the offsets they got; the records themselves are already in the log.
//! Snapshots carry no data: only where the log was purged (see [`BoundarySnapshot`]).
//!
//! A partition whose entries mean something to the node (the consumer-offsets partition,
//! [`crate::offsets`]) has an [`ApplyHook`], run on each committed data entry after the high
//! watermark moved past it and before the proposer is answered.

use std::io;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use headwater_log::batch::BatchHeader;
use headwater_log::{Boundary, EntryId, ReplicaLog};
use openraft::OptionalSend;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use serde::{Deserialize, Serialize};

use crate::error::ReplicationError;
use crate::state::DurableValue;
use crate::types::{Applied, BoundarySnapshot, TypeConfig, typ};

/// The last snapshot built or installed, as kept on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SavedSnapshot {
    meta: typ::SnapshotMeta,
    data: BoundarySnapshot,
}

/// What the state machine and its snapshot builders share.
struct Shared {
    file: DurableValue,
    current: Mutex<Option<SavedSnapshot>>,
}

impl Shared {
    fn save(&self, snapshot: SavedSnapshot) -> Result<(), ReplicationError> {
        self.file.store(&snapshot)?;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(snapshot);
        Ok(())
    }

    fn current(&self) -> Option<SavedSnapshot> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// What a node does with each committed data entry of a partition, beyond moving its high
/// watermark: entries are given in log order, each once per start of the node (a restart
/// applies the log again from the last snapshot, so applying must be repeatable). An error
/// stops the partition's group on this node.
pub trait ApplyHook: Send + Sync + 'static {
    /// Applies the committed entry `index`, a RecordBatch as stored.
    fn apply<'a>(
        &'a self,
        index: u64,
        batch: &'a Bytes,
    ) -> BoxFuture<'a, Result<(), ReplicationError>>;
}

/// The state machine of one replicated partition.
pub struct StateMachine {
    log: ReplicaLog,
    hook: Option<Arc<dyn ApplyHook>>,
    applied: Option<typ::LogId>,
    membership: typ::StoredMembership,
    /// The Kafka offset after the last applied data entry.
    next_offset: i64,
    shared: Arc<Shared>,
}

impl StateMachine {
    /// The state machine of `log`, keeping its snapshot metadata in `state_dir`.
    pub fn open(log: ReplicaLog, state_dir: &std::path::Path) -> Result<Self, ReplicationError> {
        let file = DurableValue::new(state_dir, "snapshot")?;
        let saved = file.load::<SavedSnapshot>()?;
        let (applied, membership, next_offset) = match &saved {
            Some(s) => (
                s.meta.last_log_id,
                s.meta.last_membership.clone(),
                s.data.next_offset,
            ),
            None => (None, typ::StoredMembership::default(), 0),
        };
        // After a restart nothing of a replica is readable until a commit point is given:
        // what the snapshot covers is committed.
        if let Some(last) = applied
            && let Err(e) = log.commit(last.index)
        {
            tracing::warn!(index = last.index, error = %e, "snapshot point not committed at open");
        }
        Ok(Self {
            log,
            hook: None,
            applied,
            membership,
            next_offset,
            shared: Arc::new(Shared {
                file,
                current: Mutex::new(saved),
            }),
        })
    }

    /// Runs `hook` on every committed data entry from now on.
    pub fn set_apply_hook(&mut self, hook: Arc<dyn ApplyHook>) {
        self.hook = Some(hook);
    }

    async fn apply_one(&mut self, entry: &typ::Entry) -> Result<Applied, ReplicationError> {
        let index = entry.log_id.index;
        let applied = match &entry.payload {
            typ::EntryPayload::Blank => Applied::Internal,
            typ::EntryPayload::Membership(m) => {
                self.membership = typ::StoredMembership::new(Some(entry.log_id), m.clone());
                Applied::Internal
            }
            typ::EntryPayload::Normal(batch) => {
                let header =
                    BatchHeader::parse(&batch.0).ok_or_else(|| ReplicationError::Entry {
                        index,
                        reason: "not a record batch".to_owned(),
                    })?;
                self.log.commit(index)?;
                let next_offset = self.log.offset_after(index)?;
                let base_offset = next_offset - (i64::from(header.last_offset_delta) + 1);
                self.next_offset = next_offset;
                if let Some(hook) = &self.hook {
                    hook.apply(index, &batch.0).await?;
                }
                Applied::Data {
                    base_offset,
                    next_offset,
                }
            }
        };
        Ok(applied)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = BoundarySnapshot;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<typ::LogId>, typ::StoredMembership), io::Error> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            let applied = self.apply_one(&entry).await?;
            self.applied = Some(entry.log_id);
            if let Some(responder) = responder {
                responder.send(applied);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            snapshot: SavedSnapshot {
                meta: typ::SnapshotMeta {
                    last_log_id: self.applied,
                    last_membership: self.membership.clone(),
                },
                data: BoundarySnapshot {
                    next_offset: self.next_offset,
                },
            },
            shared: self.shared.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &typ::SnapshotMeta,
        snapshot: BoundarySnapshot,
    ) -> Result<(), io::Error> {
        if let Some(last) = meta.last_log_id {
            self.log
                .purge(Boundary {
                    last: EntryId {
                        index: last.index,
                        term: last.leader_id.term,
                    },
                    next_offset: snapshot.next_offset,
                })
                .map_err(ReplicationError::from)?;
        }
        self.shared.save(SavedSnapshot {
            meta: meta.clone(),
            data: snapshot,
        })?;
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.next_offset = snapshot.next_offset;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<typ::Snapshot>, io::Error> {
        Ok(self.shared.current().map(|s| typ::Snapshot {
            meta: s.meta,
            snapshot: s.data,
        }))
    }
}

/// Builds the (data-free) snapshot of the state when it was asked for.
pub struct SnapshotBuilder {
    snapshot: SavedSnapshot,
    shared: Arc<Shared>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = BoundarySnapshot;

    async fn build_snapshot(&mut self) -> Result<typ::Snapshot, io::Error> {
        self.shared.save(self.snapshot.clone())?;
        Ok(typ::Snapshot {
            meta: self.snapshot.meta.clone(),
            snapshot: self.snapshot.data,
        })
    }
}
