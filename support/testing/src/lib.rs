//! Test support shared by Headwater's crates, only ever a dev-dependency: a private PKI written
//! as PEM files ([`pki`]), a [`Log`](headwater_log::Log) that forwards to another with fault
//! hooks ([`forwarding_log`]), a TCP proxy that cuts, blackholes or delays one link
//! ([`fault_proxy`]), a bounded poll for what no signal can tell ([`eventually`]), and loopback
//! ports for clusters ([`ports`]).

pub mod eventually;
pub mod fault_proxy;
pub mod forwarding_log;
pub mod pki;
pub mod ports;

pub use eventually::{eventually, eventually_within};
pub use fault_proxy::{Direction, Fault, FaultProxy};
pub use forwarding_log::{Call, ForwardingLog, LogOp};
pub use pki::{Pki, PkiError};
