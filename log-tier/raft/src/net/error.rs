//! Errors of the replication transport, and the codes an Error frame carries.

use std::io;

use serde::{Deserialize, Serialize};

use crate::types::NodeId;

/// Why a frame, a connection or a request of the transport failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A frame declares more bytes than the cap; refused before anything is allocated.
    #[error("frame of {declared} bytes exceeds the cap of {max} bytes")]
    FrameTooLarge {
        /// The declared length, header included.
        declared: usize,
        /// The cap.
        max: usize,
    },
    /// A frame declares fewer bytes than its own header.
    #[error("frame declares {declared} bytes, fewer than its header")]
    FrameTooShort {
        /// The declared length.
        declared: usize,
    },
    /// A whole frame of a kind this version does not know; the stream is still in sync.
    #[error("unknown frame kind {kind}")]
    UnknownKind {
        /// The kind byte.
        kind: u8,
        /// The frame's correlation id, to answer it.
        correlation: u64,
        /// The frame's group.
        group: u64,
    },
    /// The connection ended in the middle of a frame.
    #[error("connection closed in the middle of a frame")]
    Truncated,
    /// A body could not be decoded (or encoded).
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading or writing the socket failed.
    #[error("transport i/o: {0}")]
    Io(#[from] io::Error),
    /// The peer's Hello (or its answer to ours) does not match what we expect.
    #[error("hello refused: {0}")]
    Hello(String),
    /// No address is known for the peer.
    #[error("no address known for node {0}")]
    NoAddress(NodeId),
    /// A dial failed recently; the next one waits for the backoff.
    #[error("node {0} unreachable, redial backing off")]
    BackingOff(NodeId),
    /// The connection closed before the answer came.
    #[error("connection closed")]
    ConnectionClosed,
    /// The TLS handshake with the peer failed (a certificate not of the cluster's CA, a name
    /// that does not match, a peer speaking plain TCP).
    #[error("TLS with the peer: {0}")]
    Tls(String),
    /// This node lost its log and is catching up: it does not stand for election yet.
    #[error("this node is rejoining (it lost its log): no candidacy until it has caught up")]
    Rejoining,
    /// No answer within the request's time.
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The peer answered with an Error frame.
    #[error("peer refused ({code:?}): {message}")]
    Remote {
        /// What kind of refusal.
        code: ErrorCode,
        /// The peer's explanation.
        message: String,
    },
}

impl TransportError {
    /// A label for `headwater_raft_transport_errors_total{reason}`: one of a fixed set.
    pub fn reason(&self) -> &'static str {
        match self {
            TransportError::FrameTooLarge { .. } => "frame_too_large",
            TransportError::FrameTooShort { .. } => "frame_too_short",
            TransportError::UnknownKind { .. } => "unknown_kind",
            TransportError::Truncated => "truncated",
            TransportError::Malformed { .. } => "malformed",
            TransportError::Io(_) => "io",
            TransportError::Hello(_) => "hello",
            TransportError::NoAddress(_) => "no_address",
            TransportError::BackingOff(_) => "backing_off",
            TransportError::ConnectionClosed => "connection_closed",
            TransportError::Tls(_) => "tls",
            TransportError::Rejoining => "rejoining",
            TransportError::Timeout(_) => "timeout",
            TransportError::Remote { code, .. } => code.as_str(),
        }
    }

    /// Whether the same request may succeed later (connection trouble, an unopened group), as
    /// opposed to a permanent refusal (a wrong cluster, a malformed message).
    pub fn is_retryable(&self) -> bool {
        match self {
            TransportError::Io(_)
            | TransportError::Truncated
            | TransportError::BackingOff(_)
            | TransportError::Timeout(_)
            | TransportError::ConnectionClosed => true,
            TransportError::Remote { code, .. } => {
                matches!(
                    code,
                    ErrorCode::UnknownGroup
                        | ErrorCode::Busy
                        | ErrorCode::Raft
                        | ErrorCode::Rejoining
                )
            }
            _ => false,
        }
    }

    pub(crate) fn malformed(what: &'static str, reason: impl ToString) -> Self {
        TransportError::Malformed {
            what,
            reason: reason.to_string(),
        }
    }
}

/// What an Error frame says went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The Hello was missing, malformed, or names another cluster, an unknown node or another
    /// protocol version. The connection is closed.
    BadHello,
    /// No group with that id is open on this node. The connection stays.
    UnknownGroup,
    /// The frame's body could not be decoded. The connection stays when the frame itself was
    /// whole.
    Malformed,
    /// The frame's kind is unknown. The connection stays.
    UnknownKind,
    /// The frame's declared length is above the cap. The connection is closed.
    TooLarge,
    /// A frame kind that is not a request arrived at the server.
    Unexpected,
    /// The server holds as many connections as it may. The connection is closed.
    Busy,
    /// The local Raft of the group failed (stopped, storage error).
    Raft,
    /// The node lost its log and is catching up; it does not vote yet. The connection stays.
    Rejoining,
}

impl ErrorCode {
    /// The code as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadHello => "bad_hello",
            ErrorCode::UnknownGroup => "unknown_group",
            ErrorCode::Malformed => "malformed",
            ErrorCode::UnknownKind => "unknown_kind",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Unexpected => "unexpected",
            ErrorCode::Busy => "busy",
            ErrorCode::Raft => "raft",
            ErrorCode::Rejoining => "rejoining",
        }
    }
}
