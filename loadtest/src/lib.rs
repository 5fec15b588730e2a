//! Device-fleet simulator for Headwater: load generation, HDR latency, reports, verification.
//!
//! The binary `headwater-loadtest` composes these: [`fleet`] builds batches of events with
//! run-prefixed ids, [`runner`] drives them through a [`transport`] in open or closed loop
//! while [`stats`] records latency, [`ledger`] remembers how every batch ended, [`verify`]
//! reads the stores back, and [`report`] and [`plot`] write the results.

pub mod body;
pub mod cli;
pub mod error;
pub mod fleet;
pub mod ledger;
pub mod plot;
pub mod report;
pub mod runner;
pub mod saved;
pub mod schedule;
pub mod stats;
pub mod transport;
pub mod verify;

pub use error::LoadtestError;
