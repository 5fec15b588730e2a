//! The cluster's metadata: topics created at run time, where their partitions live, and who
//! leads them, replicated through the internal topic [`METADATA_TOPIC`] (one partition, every
//! node a voter: Kafka's KRaft metadata log, as Redpanda's controller log). Every node applies
//! the committed commands, in log order, to its [`Table`]; the node then opens the groups of the
//! partitions it holds (see [`crate::node`]).
//!
//! A command is one record whose value is JSON ([`Command`]):
//!
//! ```text
//! {"create_topic": {"name": "orders", "replicas": [[1, 2, 3], [2, 3, 1]]}}
//! {"delete_topic": {"name": "orders"}}
//! {"leader": {"topic": "orders", "partition": 0, "incarnation": 12, "term": 3, "node": 2}}
//! ```
//!
//! A topic's *incarnation* is the metadata index of the entry that created it: the same on
//! every node, so a topic deleted and created again under the same name is another topic (other
//! Raft groups, [`crate::node::group_id_of`]). Creating a name that exists and deleting one
//! that does not are skipped, so concurrent requests cannot disagree on the outcome; the
//! metadata leader checks first and answers the client.
//!
//! Nothing is compacted yet: a restarted node applies the whole metadata log again, which
//! rebuilds the same table.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures::future::BoxFuture;
use headwater_log::batch::{self, ProducerFields};
use headwater_log::{LogError, Record};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::error::ReplicationError;
use crate::sm::ApplyHook;
use crate::types::{NodeId, Term};

/// The internal replicated topic holding the cluster's metadata. It lives in an engine of its
/// own (never offered to Kafka clients) on every node.
pub const METADATA_TOPIC: &str = "__cluster_metadata";

/// One change of the cluster's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// A topic created at run time: partition `p` is replicated on `replicas[p]`.
    CreateTopic {
        /// The topic.
        name: String,
        /// Each partition's replicas, the preferred leader first.
        replicas: Vec<Vec<NodeId>>,
    },
    /// A topic deleted.
    DeleteTopic {
        /// The topic.
        name: String,
    },
    /// A partition's leader, as nodes that do not hold the partition tell clients.
    Leader(Leadership),
}

/// `node` leads a partition of a topic created at run time in `term`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leadership {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The topic's incarnation (a leader of an older one is ignored).
    pub incarnation: u64,
    /// The partition's Raft term.
    pub term: Term,
    /// The leader.
    pub node: NodeId,
}

/// Commands as one RecordBatch, one record each. `InvalidArgument` for none.
pub fn encode(commands: &[Command]) -> Result<Bytes, LogError> {
    let records: Vec<Record> = commands
        .iter()
        .map(|command| Record {
            partition: None,
            key: None,
            value: Some(Bytes::from(serde_json::to_vec(command).unwrap_or_default())),
            headers: Vec::new(),
            timestamp_ms: headwater_log::now_ms(),
        })
        .collect();
    let refs: Vec<&Record> = records.iter().collect();
    batch::encode(&refs, ProducerFields::NONE).map(|b| b.freeze())
}

/// The commands of a batch written by [`encode`], in order.
pub fn decode(batch: &Bytes) -> Result<Vec<Command>, String> {
    batch::decode_records(batch)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|r| {
            let value = r.value.ok_or("a record without value")?;
            serde_json::from_slice(&value).map_err(|e| e.to_string())
        })
        .collect()
}

/// A change asked of the metadata leader, by this node or forwarded by a peer
/// ([`crate::net::Kind::Propose`], JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Create a topic; `replication` `None` for the cluster's default (3, or fewer nodes).
    CreateTopic {
        /// The topic.
        name: String,
        /// Its partition count.
        partitions: u32,
        /// Replicas per partition.
        replication: Option<u16>,
    },
    /// Delete a topic created at run time.
    DeleteTopic {
        /// The topic.
        name: String,
    },
    /// Publish a partition's leader ([`Command::Leader`]).
    Leader(Leadership),
    /// Asked of any node, not only the leader: answer [`Answer::Applied`] once this node has
    /// applied the metadata up to `index`, or after a short wait with what it has applied.
    AwaitApplied {
        /// The [`Table::applied`] index to reach.
        index: u64,
    },
}

/// The metadata leader's answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// Done: committed on a majority and applied on the leader.
    Done,
    /// The receiver does not lead the metadata group; `leader` is the one it knows.
    NotLeader {
        /// The leader the receiver knows, if any.
        leader: Option<NodeId>,
    },
    /// Refused.
    Refused(AdminError),
    /// The answer to [`Request::AwaitApplied`]: the index the node has applied.
    Applied {
        /// Its [`Table::applied`].
        index: u64,
    },
}

/// Why a topic was not created or deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum AdminError {
    /// The topic exists (created at run time, or configured in `log.topics`).
    #[error("topic {0} exists")]
    TopicExists(String),
    /// No topic of that name was created at run time.
    #[error("{0}")]
    UnknownTopic(String),
    /// The name is not a valid or allowed topic name.
    #[error("{0}")]
    InvalidTopic(String),
    /// Zero partitions, or too many.
    #[error("{0}")]
    InvalidPartitions(String),
    /// More replicas than nodes, or none.
    #[error("{0}")]
    InvalidReplicationFactor(String),
    /// The topic is configured (`log.topics`), not created at run time.
    #[error("{0}")]
    Policy(String),
    /// No metadata leader answered in time; nothing was changed, or the change's outcome is
    /// unknown (a retry tells).
    #[error("the cluster's metadata is unavailable: {0}")]
    Unavailable(String),
}

/// A topic created at run time, as the metadata says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPlacement {
    /// The metadata index of the entry that created it.
    pub incarnation: u64,
    /// Each partition's replicas, the preferred leader first.
    pub replicas: Vec<Vec<NodeId>>,
    /// Each partition's last published leader, `(term, node)`.
    pub leaders: Vec<Option<(Term, NodeId)>>,
}

impl TopicPlacement {
    /// The partition count.
    pub fn partitions(&self) -> i32 {
        i32::try_from(self.replicas.len()).unwrap_or(i32::MAX)
    }

    /// Whether `node` holds any partition.
    pub fn holds(&self, node: NodeId) -> bool {
        self.replicas.iter().any(|r| r.contains(&node))
    }
}

/// The metadata as a node has applied it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    /// Topics created at run time, by name.
    pub topics: BTreeMap<String, TopicPlacement>,
    /// Topics deleted, by name: the metadata index of the last deletion. A node holding an
    /// incarnation older than that deletes its copy.
    pub deleted: BTreeMap<String, u64>,
    /// The index of the last applied entry.
    pub applied: u64,
}

impl Table {
    /// Applies one committed command of entry `index`.
    pub fn apply(&mut self, index: u64, command: Command) {
        self.applied = self.applied.max(index);
        match command {
            Command::CreateTopic { name, replicas } => {
                if replicas.is_empty() || replicas.iter().any(Vec::is_empty) {
                    tracing::warn!(index, topic = name, "a topic without replicas; skipped");
                    return;
                }
                self.topics.entry(name).or_insert_with(|| TopicPlacement {
                    incarnation: index,
                    leaders: vec![None; replicas.len()],
                    replicas,
                });
            }
            Command::DeleteTopic { name } => {
                if self.topics.remove(&name).is_some() {
                    self.deleted.insert(name, index);
                }
            }
            Command::Leader(Leadership {
                topic,
                partition,
                incarnation,
                term,
                node,
            }) => {
                let Some(placement) = self.topics.get_mut(&topic) else {
                    return;
                };
                if placement.incarnation != incarnation {
                    return;
                }
                let Some(slot) = usize::try_from(partition)
                    .ok()
                    .and_then(|p| placement.leaders.get_mut(p))
                else {
                    return;
                };
                if slot.is_none_or(|(known, _)| known <= term) {
                    *slot = Some((term, node));
                }
            }
        }
    }

    /// Whether a local copy of `topic` of `incarnation` is out of date: the topic was deleted
    /// since, or another incarnation replaced it.
    pub fn is_stale(&self, topic: &str, incarnation: u64) -> bool {
        match self.topics.get(topic) {
            Some(placement) => placement.incarnation != incarnation,
            None => self.deleted.get(topic).is_some_and(|&at| at > incarnation),
        }
    }
}

/// Replicas for a new topic of `partitions` partitions and `replication` replicas each:
/// partition `p` starts with the `p`-th live node (its preferred leader, so leadership is
/// spread), then the other live nodes in turn, then nodes not heard from lately. Every live
/// node holds partitions when there are enough of them.
pub fn place(
    live: &[NodeId],
    down: &[NodeId],
    partitions: u32,
    replication: usize,
) -> Vec<Vec<NodeId>> {
    (0..partitions as usize)
        .map(|p| {
            let rotate = |nodes: &[NodeId]| -> Vec<NodeId> {
                if nodes.is_empty() {
                    return Vec::new();
                }
                let start = p % nodes.len();
                nodes[start..]
                    .iter()
                    .chain(&nodes[..start])
                    .copied()
                    .collect()
            };
            rotate(live)
                .into_iter()
                .chain(rotate(down))
                .take(replication)
                .collect()
        })
        .collect()
}

/// Applies committed metadata entries to the node's [`Table`], published through a watch
/// channel so that the node reacts to each change.
pub struct MetadataHook {
    table: watch::Sender<Table>,
}

impl MetadataHook {
    /// Applies into `table`.
    pub fn new(table: watch::Sender<Table>) -> Self {
        Self { table }
    }
}

impl ApplyHook for MetadataHook {
    fn apply<'a>(
        &'a self,
        index: u64,
        batch: &'a Bytes,
    ) -> BoxFuture<'a, Result<(), ReplicationError>> {
        Box::pin(async move {
            match decode(batch) {
                Ok(commands) => self.table.send_modify(|table| {
                    for command in commands {
                        table.apply(index, command);
                    }
                }),
                Err(reason) => {
                    tracing::warn!(index, %reason, "metadata entry does not decode; skipped");
                    self.table
                        .send_modify(|table| table.applied = table.applied.max(index));
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_through_one_batch_as_documented() {
        let commands = vec![
            Command::CreateTopic {
                name: "orders".into(),
                replicas: vec![vec![1, 2, 3], vec![2, 3, 1]],
            },
            Command::DeleteTopic {
                name: "orders".into(),
            },
            Command::Leader(Leadership {
                topic: "orders".into(),
                partition: 0,
                incarnation: 12,
                term: 3,
                node: 2,
            }),
        ];
        let batch = encode(&commands).unwrap();
        assert_eq!(decode(&batch).unwrap(), commands);
        let first = batch::decode_records(&batch).unwrap().remove(0);
        assert_eq!(
            &first.value.unwrap()[..],
            br#"{"create_topic":{"name":"orders","replicas":[[1,2,3],[2,3,1]]}}"#
        );
        let last = batch::decode_records(&batch).unwrap().remove(2);
        assert_eq!(
            &last.value.unwrap()[..],
            br#"{"leader":{"topic":"orders","partition":0,"incarnation":12,"term":3,"node":2}}"#
        );
        assert!(encode(&[]).is_err());
        assert!(decode(&Bytes::from_static(b"garbage")).is_err());
    }

    #[test]
    fn the_first_creation_wins_and_a_deletion_makes_older_copies_stale() {
        let mut table = Table::default();
        let create = |replicas: Vec<Vec<NodeId>>| Command::CreateTopic {
            name: "t".into(),
            replicas,
        };
        table.apply(5, create(vec![vec![1, 2]]));
        table.apply(6, create(vec![vec![3], vec![3]]));
        assert_eq!(table.topics["t"].incarnation, 5);
        assert_eq!(table.topics["t"].partitions(), 1);
        assert!(!table.is_stale("t", 5));
        assert!(table.is_stale("t", 2));
        table.apply(7, Command::DeleteTopic { name: "t".into() });
        table.apply(8, Command::DeleteTopic { name: "t".into() });
        assert!(table.topics.is_empty());
        assert_eq!(table.deleted["t"], 7);
        assert!(table.is_stale("t", 5));
        assert!(
            !table.is_stale("t", 9),
            "a copy newer than the deletion is not its victim"
        );
        assert!(!table.is_stale("other", 1), "unknown topics are left alone");
        table.apply(9, create(vec![vec![2]]));
        assert_eq!(table.topics["t"].incarnation, 9);
        assert!(table.is_stale("t", 5));
        assert_eq!(table.applied, 9);
    }

    #[test]
    fn leaders_move_forward_in_term_only_for_the_right_incarnation() {
        let mut table = Table::default();
        table.apply(
            3,
            Command::CreateTopic {
                name: "t".into(),
                replicas: vec![vec![1, 2, 3]; 2],
            },
        );
        let leader = |partition, incarnation, term, node| {
            Command::Leader(Leadership {
                topic: "t".into(),
                partition,
                incarnation,
                term,
                node,
            })
        };
        table.apply(4, leader(1, 3, 2, 2));
        table.apply(5, leader(1, 3, 1, 1));
        table.apply(6, leader(1, 2, 9, 3));
        table.apply(7, leader(7, 3, 9, 3));
        table.apply(8, leader(-1, 3, 9, 3));
        assert_eq!(table.topics["t"].leaders, vec![None, Some((2, 2))]);
        table.apply(9, leader(1, 3, 4, 3));
        assert_eq!(table.topics["t"].leaders[1], Some((4, 3)));
    }

    #[test]
    fn placement_spreads_leaders_over_live_nodes_and_uses_them_first() {
        assert_eq!(
            place(&[1, 2, 3], &[], 4, 3),
            vec![vec![1, 2, 3], vec![2, 3, 1], vec![3, 1, 2], vec![1, 2, 3]]
        );
        assert_eq!(
            place(&[1, 3], &[2], 3, 3),
            vec![vec![1, 3, 2], vec![3, 1, 2], vec![1, 3, 2]]
        );
        assert_eq!(
            place(&[1, 2, 3], &[], 3, 1),
            vec![vec![1], vec![2], vec![3]]
        );
        assert_eq!(place(&[2], &[1, 3], 2, 2), vec![vec![2, 1], vec![2, 3]]);
    }
}
