//! Whether this node is new to the cluster or replaces one that lost its disk (design 2.7, in
//! part): every data directory gets a random *identity* when it is first used, kept in
//! `<state dir>/identity`; nodes tell each other theirs, and what they know the other as, in
//! the Hello of every replication connection, and remember their peers' (`peer-identities`).
//!
//! A node starting on an existing data directory is [`Verdict::Known`]: a group pristine on it
//! is a new group (a topic created at run time, a topic added to `log.topics`), which it may
//! vote in at once. A node starting on an empty data directory is [`Verdict::Deciding`]: its
//! pristine groups are *rejoining* ([`crate::net::Groups`]) until
//! - a peer knows this node id under another identity: it is a [`Verdict::Replacement`] (it
//!   lost a disk whose entries may have counted in commits), and its groups stay rejoining
//!   until each has caught up with a leader;
//! - or every other node has answered without knowing an older identity of it: it is
//!   [`Verdict::New`] (a new cluster, or a node added), and its groups vote at once. Without
//!   that, a new group whose first leader died before the followers learnt a commit index
//!   never elected another one (every follower refused to vote).
//!
//! Two nodes that lost their disks together cannot tell each other apart from new ones; a
//! cluster that lost two disks of three has lost data anyway.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::error::ReplicationError;
use crate::state::DurableValue;
use crate::types::NodeId;

/// What this node knows about its own past.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The data directory was in use before this start.
    Known,
    /// A new data directory; not every peer has answered yet.
    Deciding,
    /// A new data directory, and no peer knew this node before.
    New,
    /// A new data directory for a node id a peer knew under another identity.
    Replacement,
}

#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    identity: u64,
    /// `Deciding` until decided (a restart continues deciding).
    verdict: Verdict,
}

struct State {
    /// The identity each peer last presented.
    peers: BTreeMap<NodeId, u64>,
    /// Peers that answered without knowing an older identity of this node.
    unaware: BTreeSet<NodeId>,
}

/// This node's identity and what it learnt from its peers.
pub struct Identity {
    own: u64,
    others: usize,
    file: DurableValue,
    peers_file: DurableValue,
    state: Mutex<State>,
    verdict: watch::Sender<Verdict>,
}

impl Identity {
    /// The identity kept in `state_dir` (created with a random one if missing) of a node whose
    /// cluster has `others` other nodes.
    pub fn open(state_dir: &Path, others: usize) -> Result<Self, ReplicationError> {
        let file = DurableValue::new(state_dir, "identity")?;
        let peers_file = DurableValue::new(state_dir, "peer-identities")?;
        let (own, verdict) = match file.load::<Saved>()? {
            Some(Saved {
                identity,
                verdict: Verdict::Deciding,
            }) => (identity, Verdict::Deciding),
            Some(saved) => (saved.identity, Verdict::Known),
            None => {
                let identity = rand::random::<u64>().max(1);
                file.store(&Saved {
                    identity,
                    verdict: Verdict::Deciding,
                })?;
                (identity, Verdict::Deciding)
            }
        };
        let verdict = if verdict == Verdict::Deciding && others == 0 {
            Verdict::New
        } else {
            verdict
        };
        let peers = peers_file_load(&peers_file)?;
        Ok(Self {
            own,
            others,
            file,
            peers_file,
            state: Mutex::new(State {
                peers,
                unaware: BTreeSet::new(),
            }),
            verdict: watch::Sender::new(verdict),
        })
    }

    /// This node's identity.
    pub fn own(&self) -> u64 {
        self.own
    }

    /// The identity `peer` last presented, if it ever did.
    pub fn known_as(&self, peer: NodeId) -> Option<u64> {
        self.lock().peers.get(&peer).copied()
    }

    /// What this node knows of its past now.
    pub fn verdict(&self) -> Verdict {
        *self.verdict.borrow()
    }

    /// Follows the verdict.
    pub fn subscribe(&self) -> watch::Receiver<Verdict> {
        self.verdict.subscribe()
    }

    /// `peer` presented `theirs` (0: a peer that does not tell) and knows this node as
    /// `knows_me_as`: remembers the peer's identity and decides this node's verdict when it
    /// can.
    pub fn met(&self, peer: NodeId, theirs: u64, knows_me_as: Option<u64>) {
        if theirs == 0 {
            return;
        }
        let mut state = self.lock();
        if state.peers.insert(peer, theirs) != Some(theirs)
            && let Err(e) = self.peers_file.store(&state.peers)
        {
            tracing::warn!(peer, error = %e, "a peer's identity could not be saved");
        }
        if self.verdict() != Verdict::Deciding {
            return;
        }
        let decided = match knows_me_as {
            Some(known) if known != self.own => Some(Verdict::Replacement),
            _ => {
                state.unaware.insert(peer);
                (state.unaware.len() >= self.others).then_some(Verdict::New)
            }
        };
        if let Some(verdict) = decided {
            if let Err(e) = self.file.store(&Saved {
                identity: self.own,
                verdict,
            }) {
                tracing::warn!(error = %e, "the node's verdict could not be saved");
            }
            match verdict {
                Verdict::Replacement => tracing::warn!(
                    peer,
                    "node {peer} knew this node under another identity: it lost its disk, and \
                     rejoins each group without voting until it has caught up"
                ),
                _ => tracing::info!("no peer knew this node before: a new member, voting at once"),
            }
            self.verdict.send_replace(verdict);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn peers_file_load(file: &DurableValue) -> Result<BTreeMap<NodeId, u64>, ReplicationError> {
    Ok(file.load()?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_directory_decides_from_every_peer_and_a_known_one_is_known() {
        let dir = tempfile::tempdir().unwrap();
        let identity = Identity::open(dir.path(), 2).unwrap();
        assert_eq!(identity.verdict(), Verdict::Deciding);
        identity.met(2, 0, None);
        identity.met(2, 22, None);
        assert_eq!(
            identity.verdict(),
            Verdict::Deciding,
            "one of two peers answered"
        );
        identity.met(2, 22, Some(identity.own()));
        assert_eq!(identity.verdict(), Verdict::Deciding, "the same peer again");
        identity.met(3, 33, None);
        assert_eq!(identity.verdict(), Verdict::New);
        assert_eq!(identity.known_as(3), Some(33));
        let own = identity.own();
        drop(identity);
        let again = Identity::open(dir.path(), 2).unwrap();
        assert_eq!((again.own(), again.verdict()), (own, Verdict::Known));
        assert_eq!(again.known_as(2), Some(22), "peers are remembered");
    }

    #[test]
    fn a_peer_that_knew_another_identity_makes_a_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let identity = Identity::open(dir.path(), 2).unwrap();
        identity.met(3, 33, None);
        identity.met(2, 22, Some(identity.own().wrapping_add(1)));
        assert_eq!(identity.verdict(), Verdict::Replacement);
        identity.met(2, 22, None);
        assert_eq!(identity.verdict(), Verdict::Replacement, "decided for good");
    }

    #[test]
    fn a_restart_before_deciding_keeps_deciding_and_a_single_node_is_new() {
        let dir = tempfile::tempdir().unwrap();
        let own = Identity::open(dir.path(), 2).unwrap().own();
        let again = Identity::open(dir.path(), 2).unwrap();
        assert_eq!((again.own(), again.verdict()), (own, Verdict::Deciding));
        let alone = tempfile::tempdir().unwrap();
        assert_eq!(
            Identity::open(alone.path(), 0).unwrap().verdict(),
            Verdict::New
        );
    }
}
