//! The classic group coordinator: members, generations, rebalances on join, leave and session
//! timeout, client-side assignment relayed through SyncGroup, and durable committed offsets.
//!
//! What clients make it hold is bounded: groups (`Limits::max_groups`), members of a group,
//! pending member ids included (`Limits::group_max_size`), the session timeout, and the bytes
//! stored for clients (ids, protocol metadata, assignments) over all groups ([`budget`]).
//! Pending member ids expire after their session timeout, and a group with neither members nor
//! pending ids is forgotten after [`EMPTY_GROUP_RETENTION`] (its committed offsets stay in the
//! engine's offset store).
//!
//! In a cluster whose offsets are replicated ([`GroupCoordinator`]), this broker coordinates
//! only while it leads the offsets partition: elsewhere every group request is answered
//! NOT_COORDINATOR (COORDINATOR_LOAD_IN_PROGRESS while the new leader catches up,
//! COORDINATOR_NOT_AVAILABLE with no leader), and the groups it held are dropped once it no
//! longer coordinates (their members rejoin at the new coordinator, as after a restart).
//! Committed offsets go through the offsets partition and are read from the local store, which
//! every node applies them to.
//!
//! Members are not replicated: a broker that takes over coordination knows none of the members
//! of the previous coordinator, who keep consuming their partitions until a heartbeat tells
//! them they are unknown. So after a takeover, a group's first rebalance here waits for them
//! ([`Takeover`]): it completes no sooner than the joining member's session timeout (at most
//! [`TAKEOVER_HOLD_MAX`]) after the takeover, by when every live member of the old coordinator
//! has heard of the move, given up its partitions and rejoined. Without the wait, the first
//! member to rejoin got every partition while the others still read theirs, and the same
//! records were routed twice (tests/cluster_replicated.rs).

mod budget;
mod describe;
mod find;
mod heartbeat;
mod join;
mod leave;
mod offsets;
mod sync;

pub(crate) use find::find_coordinator;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupResponse, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::cluster::{Cluster, GroupCoordinator};
use crate::{Broker, Limits};
use budget::{Budget, Charge};
use headwater_log::LogEngine;

/// Longest a rebalance waits for members to rejoin.
const MAX_REBALANCE: Duration = Duration::from_secs(300);
/// Longest session timeout a member may ask for (Kafka's `group.max.session.timeout.ms`);
/// more is INVALID_SESSION_TIMEOUT.
const MAX_SESSION_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How often expired members are looked for.
const REAP_EVERY: Duration = Duration::from_millis(250);
/// Longest a group's first rebalance after a takeover waits for the previous coordinator's
/// members (less when the joining member's session timeout is shorter: a live member heartbeats
/// well within it). Kafka clients heartbeat every 3 s by default.
const TAKEOVER_HOLD_MAX: Duration = Duration::from_secs(10);
/// How long a group with neither members nor pending member ids is kept before it is
/// forgotten (or sooner, when a new group needs its place under `Limits::max_groups`).
pub(crate) const EMPTY_GROUP_RETENTION: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
        }
    }
}

struct Member {
    client_id: String,
    client_host: String,
    instance_id: Option<StrBytes>,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_seen: Instant,
    join: Option<(oneshot::Sender<JoinGroupResponse>, i16)>,
    sync: Option<oneshot::Sender<SyncGroupResponse>>,
    /// The bytes this member stores, taken from the coordinator's budget.
    charge: Charge,
}

impl Member {
    /// Bytes this member stores for the client under `id`, with `assignment`.
    fn stored_bytes(&self, id: &str, assignment: &Bytes) -> usize {
        let protocols: usize = self
            .protocols
            .iter()
            .map(|(name, meta)| name.len() + meta.len())
            .sum();
        budget::MEMBER_OVERHEAD
            + id.len()
            + self.client_id.len()
            + self.client_host.len()
            + self.instance_id.as_ref().map_or(0, |i| i.len())
            + protocols
            + assignment.len()
    }

    /// Stores `assignment` if the member stays within its own cap and the budget has room.
    fn set_assignment(&mut self, id: &str, assignment: Bytes) -> Result<(), ResponseError> {
        let bytes = self.stored_bytes(id, &assignment);
        if bytes > budget::MAX_MEMBER_BYTES {
            return Err(ResponseError::UnknownServerError);
        }
        if !self.charge.resize(bytes) {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        self.assignment = assignment;
        Ok(())
    }
}

/// A member id handed out with MEMBER_ID_REQUIRED, waiting for the member to join with it.
struct Pending {
    /// When the id is forgotten (the session timeout of the join that asked for it).
    expires: Instant,
    _charge: Charge,
}

struct Group {
    state: State,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    pending: HashMap<String, Pending>,
    rebalance_deadline: Option<Instant>,
    /// Since when the group has had neither members nor pending ids (seen by `reap`).
    empty_since: Option<Instant>,
    /// No rebalance completes before this (a group created after a takeover; see [`Takeover`]).
    hold_until: Option<Instant>,
    /// The group's own bytes (its id and fixed overhead).
    _charge: Charge,
}

impl Group {
    fn new(charge: Charge) -> Self {
        Self {
            state: State::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            rebalance_deadline: None,
            empty_since: None,
            hold_until: None,
            _charge: charge,
        }
    }

    /// Members and pending member ids: what `Limits::group_max_size` bounds.
    fn size(&self) -> usize {
        self.members.len() + self.pending.len()
    }

    /// Neither members nor pending member ids.
    fn is_vacant(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }

    /// Starts (or keeps) a rebalance; members waiting on SyncGroup are told to rejoin.
    fn prepare_rebalance(&mut self) {
        if self.members.is_empty() {
            self.state = State::Empty;
            self.leader = None;
            self.rebalance_deadline = None;
            return;
        }
        if self.state != State::PreparingRebalance {
            let timeout = self
                .members
                .values()
                .map(|m| m.rebalance_timeout)
                .max()
                .unwrap_or(MAX_REBALANCE)
                .min(MAX_REBALANCE);
            self.rebalance_deadline = Some(Instant::now() + timeout);
        }
        self.state = State::PreparingRebalance;
        for member in self.members.values_mut() {
            if let Some(tx) = member.sync.take() {
                let mut response = SyncGroupResponse::default();
                response.error_code = ResponseError::RebalanceInProgress.code();
                let _ = tx.send(response);
            }
        }
    }

    /// Completes the join phase when every member has rejoined: a new generation, a leader,
    /// and the member list for the leader.
    fn maybe_complete_join(&mut self) {
        if self.state != State::PreparingRebalance
            || self.members.values().any(|m| m.join.is_none())
            || self.hold_until.is_some_and(|h| Instant::now() < h)
        {
            return;
        }
        self.hold_until = None;
        if self.members.is_empty() {
            self.prepare_rebalance();
            return;
        }
        self.generation += 1;
        let leader = match &self.leader {
            Some(l) if self.members.contains_key(l) => l.clone(),
            _ => self.members.keys().next().cloned().unwrap_or_default(),
        };
        self.protocol = self.choose_protocol(&leader);
        self.leader = Some(leader.clone());
        self.state = State::CompletingRebalance;
        self.rebalance_deadline = None;
        let protocol = self.protocol.clone().unwrap_or_default();
        let members: Vec<JoinGroupResponseMember> = self
            .members
            .iter()
            .map(|(id, m)| {
                let mut out = JoinGroupResponseMember::default();
                out.member_id = StrBytes::from_string(id.clone());
                out.group_instance_id = m.instance_id.clone();
                out.metadata = m
                    .protocols
                    .iter()
                    .find(|(name, _)| *name == protocol)
                    .map(|(_, meta)| meta.clone())
                    .unwrap_or_default();
                out
            })
            .collect();
        for (id, member) in self.members.iter_mut() {
            // Shrinking always fits the budget.
            let _ = member.set_assignment(id, Bytes::new());
            if let Some((tx, _version)) = member.join.take() {
                let mut response = JoinGroupResponse::default();
                response.generation_id = self.generation;
                response.protocol_type = self.protocol_type.clone().map(StrBytes::from_string);
                response.protocol_name = Some(StrBytes::from_string(protocol.clone()));
                response.leader = StrBytes::from_string(leader.clone());
                response.member_id = StrBytes::from_string(id.clone());
                if *id == leader {
                    response.members = members.clone();
                }
                let _ = tx.send(response);
            }
        }
    }

    /// The leader's first protocol that every member supports.
    fn choose_protocol(&self, leader: &str) -> Option<String> {
        let candidates = self
            .members
            .get(leader)?
            .protocols
            .iter()
            .map(|(n, _)| n.clone());
        candidates.into_iter().find(|name| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        })
    }
}

/// What the coordinator lets clients make it hold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GroupLimits {
    /// Most groups.
    pub(crate) max_groups: usize,
    /// Most members (pending ids included) of one group.
    pub(crate) max_size: usize,
    /// Most bytes stored for clients over all groups.
    pub(crate) max_bytes: usize,
}

impl From<&Limits> for GroupLimits {
    fn from(limits: &Limits) -> Self {
        Self {
            max_groups: limits.max_groups,
            max_size: limits.group_max_size,
            max_bytes: budget::MAX_STORED_BYTES,
        }
    }
}

/// What this broker saw of who coordinates, to tell a takeover from a first election.
#[derive(Debug, Default)]
struct Takeover {
    /// Some broker (this one or another) has coordinated since this one started.
    known: bool,
    /// This broker coordinates now (as last seen).
    here: bool,
    /// When this broker took over from a coordinator it knew of (`None` after a first
    /// election, or while it does not coordinate).
    since: Option<Instant>,
}

/// All groups of this broker.
pub(crate) struct Coordinator {
    engine: Arc<LogEngine>,
    /// The cluster, when the log is replicated (who coordinates; where offsets go).
    cluster: Option<Arc<dyn Cluster>>,
    groups: Mutex<HashMap<String, Group>>,
    limits: GroupLimits,
    budget: Arc<Budget>,
    takeover: Mutex<Takeover>,
}

impl Coordinator {
    pub(crate) fn new(engine: Arc<LogEngine>, limits: impl Into<GroupLimits>) -> Self {
        let limits = limits.into();
        Self {
            engine,
            cluster: None,
            groups: Mutex::new(HashMap::new()),
            limits,
            budget: Budget::new(limits.max_bytes),
            takeover: Mutex::new(Takeover::default()),
        }
    }

    /// The coordinator of a broker in `cluster` (`None`: no cluster, every group is here).
    pub(crate) fn with_cluster(mut self, cluster: Option<Arc<dyn Cluster>>) -> Self {
        self.cluster = cluster;
        self
    }

    /// Who coordinates groups now.
    fn coordination(&self) -> GroupCoordinator {
        self.cluster
            .as_ref()
            .map_or(GroupCoordinator::Local, |c| c.group_coordinator())
    }

    /// Notes who coordinates now; `Some(at)` when this broker coordinates after taking over
    /// from a coordinator it knew of at `at` (see [`Takeover`]). Called by every join and by
    /// the reaper, which unloads the groups when coordination moves away.
    fn took_over(&self) -> Option<Instant> {
        let coordination = self.coordination();
        let mut t = self.takeover.lock().unwrap_or_else(|p| p.into_inner());
        match coordination {
            GroupCoordinator::Local => None,
            GroupCoordinator::Here | GroupCoordinator::Loading => {
                if !t.here {
                    t.here = true;
                    t.since = t.known.then(Instant::now);
                    if t.since.is_some() {
                        tracing::info!(
                            "group coordination taken over: first rebalances wait for the previous coordinator's members"
                        );
                    }
                }
                t.known = true;
                t.since
            }
            GroupCoordinator::Elsewhere(_) => {
                *t = Takeover {
                    known: true,
                    here: false,
                    since: None,
                };
                None
            }
            GroupCoordinator::Unknown => {
                t.here = false;
                t.since = None;
                None
            }
        }
    }

    /// Why this broker may not serve a group request now: it is not the coordinator (or not
    /// yet ready to be). `None`: serve it.
    fn refusal(&self) -> Option<ResponseError> {
        match self.coordination() {
            GroupCoordinator::Local | GroupCoordinator::Here => None,
            GroupCoordinator::Loading => Some(ResponseError::CoordinatorLoadInProgress),
            GroupCoordinator::Elsewhere(_) => Some(ResponseError::NotCoordinator),
            GroupCoordinator::Unknown => Some(ResponseError::CoordinatorNotAvailable),
        }
    }

    /// Forgets every group (this broker no longer coordinates); members waiting on a join or
    /// a sync are told NOT_COORDINATOR and find the new coordinator.
    fn unload(&self) {
        let dropped: Vec<(String, Group)> = self.lock().drain().collect();
        for (id, group) in dropped {
            tracing::info!(group = %id, "group unloaded: this broker no longer coordinates");
            for (member_id, member) in group.members {
                if let Some((tx, _)) = member.join {
                    let _ = tx.send(join::error_join(&member_id, ResponseError::NotCoordinator));
                }
                if let Some(tx) = member.sync {
                    let mut response = SyncGroupResponse::default();
                    response.error_code = ResponseError::NotCoordinator.code();
                    let _ = tx.send(response);
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops members whose session expired, pending member ids never used in time and groups
    /// left empty past [`EMPTY_GROUP_RETENTION`]; finishes rebalances whose time ran out.
    fn reap(&self) {
        self.took_over();
        if matches!(
            self.coordination(),
            GroupCoordinator::Elsewhere(_) | GroupCoordinator::Unknown
        ) {
            self.unload();
            return;
        }
        let now = Instant::now();
        let mut groups = self.lock();
        for group in groups.values_mut() {
            group.pending.retain(|_, p| p.expires > now);
            reap_members(group, now);
            if !group.is_vacant() {
                group.empty_since = None;
            } else if group.empty_since.is_none() {
                group.empty_since = Some(now);
            }
        }
        groups.retain(|id, group| {
            let keep = group
                .empty_since
                .is_none_or(|since| now.duration_since(since) < EMPTY_GROUP_RETENTION);
            if !keep {
                tracing::debug!(group = %id, "empty group forgotten");
            }
            keep
        });
    }
}

/// Drops `group`'s members whose session expired, and those a rebalance gone overdue still
/// waits for; rebalances when any went.
fn reap_members(group: &mut Group, now: Instant) {
    let expired: Vec<String> = group
        .members
        .iter()
        .filter(|(_, m)| m.join.is_none() && now.duration_since(m.last_seen) > m.session_timeout)
        .map(|(id, _)| id.clone())
        .collect();
    let overdue = group.state == State::PreparingRebalance
        && group.rebalance_deadline.is_some_and(|d| now >= d);
    let missing: Vec<String> = if overdue {
        group
            .members
            .iter()
            .filter(|(_, m)| m.join.is_none())
            .map(|(id, _)| id.clone())
            .collect()
    } else {
        Vec::new()
    };
    if expired.is_empty() && missing.is_empty() {
        if group.hold_until.is_some_and(|h| now >= h) {
            group.maybe_complete_join();
        }
        return;
    }
    for id in expired.iter().chain(&missing) {
        tracing::info!(member = %id, "group member expired");
        group.members.remove(id);
    }
    group.prepare_rebalance();
    group.maybe_complete_join();
}

/// Runs the session and rebalance timers until the broker is gone.
pub(crate) async fn reap_expired_members(broker: Weak<Broker>) {
    let mut ticker = tokio::time::interval(REAP_EVERY);
    loop {
        ticker.tick().await;
        let Some(broker) = broker.upgrade() else {
            return;
        };
        broker.groups.reap();
    }
}

/// A short random-looking suffix for member ids.
fn ulid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!("{:x}-{:x}", nanos, COUNTER.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod cluster_tests;
#[cfg(test)]
mod tests;
