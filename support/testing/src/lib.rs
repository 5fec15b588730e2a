//! Test support shared by Headwater's crates, only ever a dev-dependency: a private PKI written
//! as PEM files ([`pki`]), a [`Log`](headwater_log::Log) that forwards to another with fault
//! hooks ([`forwarding_log`]), and a bounded poll for what no signal can tell ([`eventually`]).

pub mod eventually;
pub mod forwarding_log;
pub mod pki;

pub use eventually::{eventually, eventually_within};
pub use forwarding_log::{Call, ForwardingLog, LogOp};
pub use pki::{Pki, PkiError};
