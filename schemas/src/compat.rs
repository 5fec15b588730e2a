//! Compatibility checks between consecutive versions of one event type.
//!
//! Every rule is phrased as "can a *reader* schema accept all data valid under a *writer*
//! schema?". Backward compatibility makes the new version the reader of the old version's data,
//! forward the reverse, full both.

pub(crate) mod json;
pub(crate) mod proto;

use crate::registry::Compatibility;

/// Which (writer, reader) pairs a mode checks, as (writer is old, direction name).
pub(crate) fn directions(mode: Compatibility) -> &'static [Direction] {
    match mode {
        Compatibility::Backward => &[Direction::Backward],
        Compatibility::Forward => &[Direction::Forward],
        Compatibility::Full => &[Direction::Backward, Direction::Forward],
        Compatibility::None => &[],
    }
}

/// One direction of a compatibility check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// New schema reads old data.
    Backward,
    /// Old schema reads new data.
    Forward,
}

impl Direction {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Backward => "backward",
            Self::Forward => "forward",
        }
    }
}

/// Labels of the two versions compared, e.g. `v1` and `v2`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pair<'a> {
    pub(crate) old: &'a str,
    pub(crate) new: &'a str,
}
