//! The bodies of the transport's frames. AppendEntries is binary, every entry
//! `term u64 | index u64 | kind u8 | len u32 | bytes` (a batch's bytes as they are, a membership
//! as JSON, a blank empty) after the request's vote, `prev_log_id` and `leader_commit`; the
//! other messages are small and JSON. Decoding never panics and never trusts a count or a
//! length beyond the bytes present.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use openraft::raft::AppendEntriesRequest;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::{ErrorCode, TransportError};
use crate::types::{Batch, BoundarySnapshot, NodeId, TypeConfig, log_id, typ};

/// The first message of every connection, both ways.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The cluster the sender belongs to (`log.cluster`'s id).
    pub cluster_id: String,
    /// The sender's node id.
    pub node_id: NodeId,
    /// The sender's [`super::PROTOCOL_VERSION`].
    pub protocol_version: u16,
    /// The sender's data-directory identity ([`crate::identity`]); 0 when it does not tell.
    #[serde(default)]
    pub identity: u64,
    /// The identity under which the sender last knew the receiver, if it ever did.
    #[serde(default)]
    pub known_as: Option<u64>,
}

/// The body of an Error frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub code: ErrorCode,
    /// A human explanation (for logs only).
    pub message: String,
}

/// The body of an InstallSnapshot frame: a whole snapshot (ours carries no data but its
/// boundary).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRequest {
    /// The leader's vote.
    pub vote: typ::Vote,
    /// The snapshot's metadata.
    pub meta: typ::SnapshotMeta,
    /// The snapshot's data.
    pub data: BoundarySnapshot,
}

/// A JSON body.
pub fn to_json<T: Serialize>(what: &'static str, value: &T) -> Result<Bytes, TransportError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| TransportError::malformed(what, e))
}

/// A value from a JSON body.
pub fn from_json<T: DeserializeOwned>(
    what: &'static str,
    body: &[u8],
) -> Result<T, TransportError> {
    serde_json::from_slice(body).map_err(|e| TransportError::malformed(what, e))
}

const ENTRY_BLANK: u8 = 0;
const ENTRY_DATA: u8 = 1;
const ENTRY_MEMBERSHIP: u8 = 2;

/// Bytes of an entry's header: term, index, kind, length.
const ENTRY_HEADER: usize = 8 + 8 + 1 + 4;

/// The body of an AppendEntries frame in parts: a head, then each entry's header and its bytes
/// (a batch's `Bytes` are shared, not copied).
pub fn encode_append_entries(
    rpc: &AppendEntriesRequest<TypeConfig>,
) -> Result<Vec<Bytes>, TransportError> {
    let mut head = BytesMut::with_capacity(17 + 2 * 17 + 4);
    put_vote(&mut head, &rpc.vote);
    put_log_id(&mut head, rpc.prev_log_id.as_ref());
    put_log_id(&mut head, rpc.leader_commit.as_ref());
    let count = u32::try_from(rpc.entries.len())
        .map_err(|_| TransportError::malformed("append entries", "too many entries"))?;
    head.put_u32(count);
    let mut parts = Vec::with_capacity(1 + 2 * rpc.entries.len());
    parts.push(head.freeze());
    for entry in &rpc.entries {
        let (kind, bytes) = match &entry.payload {
            typ::EntryPayload::Blank => (ENTRY_BLANK, Bytes::new()),
            typ::EntryPayload::Normal(Batch(bytes)) => (ENTRY_DATA, bytes.clone()),
            typ::EntryPayload::Membership(m) => (ENTRY_MEMBERSHIP, to_json("membership", m)?),
        };
        let len = u32::try_from(bytes.len())
            .map_err(|_| TransportError::malformed("append entries", "entry too large"))?;
        let mut header = BytesMut::with_capacity(ENTRY_HEADER);
        header.put_u64(entry.log_id.leader_id.term);
        header.put_u64(entry.log_id.index);
        header.put_u8(kind);
        header.put_u32(len);
        parts.push(header.freeze());
        if !bytes.is_empty() {
            parts.push(bytes);
        }
    }
    Ok(parts)
}

/// An AppendEntries request from its body; entry bytes share `body`.
pub fn decode_append_entries(
    mut body: Bytes,
) -> Result<AppendEntriesRequest<TypeConfig>, TransportError> {
    let vote = get_vote(&mut body)?;
    let prev_log_id = get_log_id(&mut body)?;
    let leader_commit = get_log_id(&mut body)?;
    let count = get_u32(&mut body)? as usize;
    // Each entry takes at least its header: a count beyond that is a lie, refused before any
    // allocation from it.
    if count > body.remaining() / ENTRY_HEADER {
        return Err(TransportError::malformed(
            "append entries",
            "entry count beyond the body",
        ));
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let term = get_u64(&mut body)?;
        let index = get_u64(&mut body)?;
        let kind = get_u8(&mut body)?;
        let len = get_u32(&mut body)? as usize;
        if len > body.remaining() {
            return Err(TransportError::malformed(
                "append entries",
                "entry beyond the body",
            ));
        }
        let bytes = body.split_to(len);
        let payload = match kind {
            ENTRY_BLANK if bytes.is_empty() => typ::EntryPayload::Blank,
            ENTRY_DATA => typ::EntryPayload::Normal(Batch(bytes)),
            ENTRY_MEMBERSHIP => typ::EntryPayload::Membership(from_json("membership", &bytes)?),
            _ => {
                return Err(TransportError::malformed(
                    "append entries",
                    format!("entry kind {kind} with {len} bytes"),
                ));
            }
        };
        entries.push(typ::Entry {
            log_id: log_id(term, index),
            payload,
        });
    }
    if body.has_remaining() {
        return Err(TransportError::malformed(
            "append entries",
            "bytes after the last entry",
        ));
    }
    Ok(AppendEntriesRequest {
        vote,
        prev_log_id,
        entries,
        leader_commit,
    })
}

fn put_vote(out: &mut BytesMut, vote: &typ::Vote) {
    out.put_u64(vote.leader_id.term);
    out.put_u64(vote.leader_id.voted_for);
    out.put_u8(u8::from(vote.committed));
}

fn get_vote(body: &mut Bytes) -> Result<typ::Vote, TransportError> {
    let term = get_u64(body)?;
    let node = get_u64(body)?;
    match get_u8(body)? {
        0 => Ok(typ::Vote::new(term, node)),
        1 => Ok(typ::Vote::new_committed(term, node)),
        other => Err(TransportError::malformed(
            "vote",
            format!("committed flag {other}"),
        )),
    }
}

fn put_log_id(out: &mut BytesMut, id: Option<&typ::LogId>) {
    match id {
        None => out.put_u8(0),
        Some(id) => {
            out.put_u8(1);
            out.put_u64(id.leader_id.term);
            out.put_u64(id.index);
        }
    }
}

fn get_log_id(body: &mut Bytes) -> Result<Option<typ::LogId>, TransportError> {
    match get_u8(body)? {
        0 => Ok(None),
        1 => {
            let term = get_u64(body)?;
            let index = get_u64(body)?;
            Ok(Some(log_id(term, index)))
        }
        other => Err(TransportError::malformed(
            "log id",
            format!("presence flag {other}"),
        )),
    }
}

fn short() -> TransportError {
    TransportError::malformed("append entries", "body too short")
}

fn get_u8(body: &mut Bytes) -> Result<u8, TransportError> {
    body.try_get_u8().map_err(|_| short())
}

fn get_u32(body: &mut Bytes) -> Result<u32, TransportError> {
    body.try_get_u32().map_err(|_| short())
}

fn get_u64(body: &mut Bytes) -> Result<u64, TransportError> {
    body.try_get_u64().map_err(|_| short())
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::BasicNode;
    use openraft::raft::{AppendEntriesResponse, VoteRequest, VoteResponse};
    use proptest::prelude::*;

    use super::*;

    fn vote() -> impl Strategy<Value = typ::Vote> {
        (any::<u64>(), any::<u64>(), any::<bool>()).prop_map(|(t, n, c)| {
            if c {
                typ::Vote::new_committed(t, n)
            } else {
                typ::Vote::new(t, n)
            }
        })
    }

    fn log_id_s() -> impl Strategy<Value = Option<typ::LogId>> {
        proptest::option::of((any::<u64>(), any::<u64>()).prop_map(|(t, i)| log_id(t, i)))
    }

    fn membership() -> impl Strategy<Value = typ::Membership> {
        (
            proptest::collection::btree_set(0u64..10, 1..4),
            proptest::collection::btree_set(10u64..20, 0..3),
        )
            .prop_map(|(voters, learners)| {
                let nodes: BTreeMap<u64, BasicNode> = voters
                    .iter()
                    .chain(learners.iter())
                    .map(|id| (*id, BasicNode::new(format!("n{id}"))))
                    .collect();
                let config: Vec<BTreeSet<u64>> = vec![voters];
                typ::Membership::new(config, nodes).unwrap()
            })
    }

    fn payload() -> impl Strategy<Value = typ::EntryPayload> {
        prop_oneof![
            Just(typ::EntryPayload::Blank),
            proptest::collection::vec(any::<u8>(), 0..300)
                .prop_map(|b| typ::EntryPayload::Normal(Batch(Bytes::from(b)))),
            membership().prop_map(typ::EntryPayload::Membership),
        ]
    }

    fn request() -> impl Strategy<Value = AppendEntriesRequest<TypeConfig>> {
        (
            vote(),
            log_id_s(),
            log_id_s(),
            proptest::collection::vec((any::<u64>(), any::<u64>(), payload()), 0..8),
        )
            .prop_map(
                |(vote, prev_log_id, leader_commit, entries)| AppendEntriesRequest {
                    vote,
                    prev_log_id,
                    leader_commit,
                    entries: entries
                        .into_iter()
                        .map(|(t, i, payload)| typ::Entry {
                            log_id: log_id(t, i),
                            payload,
                        })
                        .collect(),
                },
            )
    }

    fn concat(parts: Vec<Bytes>) -> Bytes {
        let mut out = BytesMut::new();
        for p in parts {
            out.extend_from_slice(&p);
        }
        out.freeze()
    }

    fn assert_same(a: &AppendEntriesRequest<TypeConfig>, b: &AppendEntriesRequest<TypeConfig>) {
        assert_eq!(a.vote, b.vote);
        assert_eq!(a.prev_log_id, b.prev_log_id);
        assert_eq!(a.leader_commit, b.leader_commit);
        assert_eq!(a.entries, b.entries);
    }

    proptest! {
        #[test]
        fn append_entries_round_trip(rpc in request()) {
            let body = concat(encode_append_entries(&rpc).unwrap());
            let back = decode_append_entries(body).unwrap();
            assert_same(&rpc, &back);
        }

        #[test]
        fn a_damaged_append_entries_body_is_refused_or_decoded_without_panic(
            rpc in request(),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            byte: u8,
        ) {
            let body = concat(encode_append_entries(&rpc).unwrap());
            if !body.is_empty() {
                let _ = decode_append_entries(body.slice(..cut.index(body.len())));
                let mut damaged = body.to_vec();
                let at = flip.index(damaged.len());
                damaged[at] = byte;
                let _ = decode_append_entries(Bytes::from(damaged));
            }
        }

        #[test]
        fn arbitrary_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let _ = decode_append_entries(Bytes::from(bytes.clone()));
            let _ = from_json::<Hello>("hello", &bytes);
            let _ = from_json::<ErrorBody>("error", &bytes);
            let _ = from_json::<SnapshotRequest>("snapshot", &bytes);
            let _ = from_json::<VoteRequest<TypeConfig>>("vote", &bytes);
            let _ = from_json::<AppendEntriesResponse<TypeConfig>>("response", &bytes);
        }

        #[test]
        fn json_messages_round_trip(
            vote in vote(),
            last in log_id_s(),
            granted: bool,
            node_id: u64,
            cluster_id in "[a-z0-9-]{0,20}",
            protocol_version: u16,
            identity: u64,
            known_as: Option<u64>,
            members in membership(),
            next_offset: i64,
        ) {
            let hello = Hello { cluster_id, node_id, protocol_version, identity, known_as };
            prop_assert_eq!(from_json::<Hello>("hello", &to_json("hello", &hello).unwrap()).unwrap(), hello);
            let request = VoteRequest::<TypeConfig>::new(vote, last);
            let back: VoteRequest<TypeConfig> = from_json("vote", &to_json("vote", &request).unwrap()).unwrap();
            prop_assert_eq!(back, request);
            let response = VoteResponse::<TypeConfig>::new(vote, last, granted);
            let back: VoteResponse<TypeConfig> = from_json("vote", &to_json("vote", &response).unwrap()).unwrap();
            prop_assert_eq!(back, response);
            for response in [
                AppendEntriesResponse::<TypeConfig>::Success,
                AppendEntriesResponse::PartialSuccess(last),
                AppendEntriesResponse::Conflict,
                AppendEntriesResponse::HigherVote(vote),
            ] {
                let back: AppendEntriesResponse<TypeConfig> =
                    from_json("append", &to_json("append", &response).unwrap()).unwrap();
                prop_assert_eq!(back, response);
            }
            let snapshot = SnapshotRequest {
                vote,
                meta: typ::SnapshotMeta {
                    last_log_id: last,
                    last_membership: typ::StoredMembership::new(last, members),
                },
                data: BoundarySnapshot { next_offset },
            };
            let back: SnapshotRequest = from_json("snapshot", &to_json("snapshot", &snapshot).unwrap()).unwrap();
            prop_assert_eq!(back, snapshot);
            for code in [ErrorCode::BadHello, ErrorCode::UnknownGroup, ErrorCode::Raft, ErrorCode::TooLarge] {
                let error = ErrorBody { code, message: "why".into() };
                prop_assert_eq!(from_json::<ErrorBody>("error", &to_json("error", &error).unwrap()).unwrap(), error);
            }
        }
    }

    #[test]
    fn a_lying_entry_count_is_refused_without_allocating_it() {
        let mut body = BytesMut::new();
        put_vote(&mut body, &typ::Vote::new(1, 1));
        put_log_id(&mut body, None);
        put_log_id(&mut body, None);
        body.put_u32(u32::MAX);
        let err = decode_append_entries(body.freeze()).unwrap_err();
        assert!(err.to_string().contains("entry count"), "{err}");
    }
}
