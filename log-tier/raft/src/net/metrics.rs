//! The transport's metrics, all with bounded label values:
//!
//! - `headwater_raft_transport_frames_total{kind, direction}`: frames read (`in`) and written
//!   (`out`), `kind` one of [`Kind::as_str`];
//! - `headwater_raft_transport_errors_total{reason}`: failures, `reason` one of
//!   [`TransportError::reason`] or `timeout`;
//! - `headwater_raft_transport_connections{side}`: open connections, `side` `server` or
//!   `client`.

use super::error::TransportError;
use super::frame::Kind;

/// Frames read and written.
pub const FRAMES_TOTAL: &str = "headwater_raft_transport_frames_total";
/// Transport failures by reason.
pub const ERRORS_TOTAL: &str = "headwater_raft_transport_errors_total";
/// Open connections by side.
pub const CONNECTIONS: &str = "headwater_raft_transport_connections";

/// Which way a frame went.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Direction {
    In,
    Out,
}

/// Which side of a connection this node is.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Side {
    Server,
    Client,
}

pub(crate) fn frame(kind: Kind, direction: Direction) {
    let direction = match direction {
        Direction::In => "in",
        Direction::Out => "out",
    };
    metrics::counter!(FRAMES_TOTAL, "kind" => kind.as_str(), "direction" => direction).increment(1);
}

pub(crate) fn error(e: &TransportError) {
    error_reason(e.reason());
}

pub(crate) fn error_reason(reason: &'static str) {
    metrics::counter!(ERRORS_TOTAL, "reason" => reason).increment(1);
}

/// Counts a connection open while it lives.
pub(crate) struct ConnectionGauge(&'static str);

impl ConnectionGauge {
    pub(crate) fn open(side: Side) -> Self {
        let side = match side {
            Side::Server => "server",
            Side::Client => "client",
        };
        metrics::gauge!(CONNECTIONS, "side" => side).increment(1.0);
        Self(side)
    }
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        metrics::gauge!(CONNECTIONS, "side" => self.0).decrement(1.0);
    }
}
