//! The ledger of a run on disk (`ledger.json`): the fleet spec and how every batch ended, so
//! verification can run later (`--verify-ledger`), e.g. after the router was restarted.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::LoadtestError;
use crate::fleet::{FleetSpec, SpecText};
use crate::ledger::{BatchRecord, Final};

/// The file form of a ledger.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SavedLedger {
    /// The fleet.
    #[serde(flatten)]
    pub fleet: SpecText,
    /// Acknowledged batches: (batch, rejected indexes).
    pub acked: Vec<(u64, Vec<u32>)>,
    /// Refused batches.
    pub refused: Vec<u64>,
    /// Batches of unknown outcome.
    pub unknown: Vec<u64>,
}

impl SavedLedger {
    /// The saved form of `spec` and `records`.
    pub fn new(spec: &FleetSpec, records: &[BatchRecord]) -> SavedLedger {
        let mut saved = SavedLedger {
            fleet: SpecText::from(spec),
            acked: Vec::new(),
            refused: Vec::new(),
            unknown: Vec::new(),
        };
        for r in records {
            match &r.outcome {
                Final::Acked(rejected) => saved.acked.push((r.batch, rejected.clone())),
                Final::Refused => saved.refused.push(r.batch),
                Final::Unknown => saved.unknown.push(r.batch),
            }
        }
        saved
    }

    /// The fleet spec and the batch records back.
    pub fn restore(&self) -> Result<(FleetSpec, Vec<BatchRecord>), LoadtestError> {
        let acked = self
            .acked
            .iter()
            .map(|(b, r)| BatchRecord::new(*b, Final::Acked(r.clone())));
        let records = acked
            .chain(
                self.refused
                    .iter()
                    .map(|b| BatchRecord::new(*b, Final::Refused)),
            )
            .chain(
                self.unknown
                    .iter()
                    .map(|b| BatchRecord::new(*b, Final::Unknown)),
            )
            .collect();
        Ok((self.fleet.to_spec()?, records))
    }

    /// Writes the ledger to `path`.
    pub fn write(&self, path: &Path) -> Result<(), LoadtestError> {
        let bytes = serde_json::to_vec(self).map_err(|e| LoadtestError::io(path, e.into()))?;
        std::fs::write(path, bytes).map_err(|e| LoadtestError::io(path, e))
    }

    /// Reads a ledger from `path`.
    pub fn read(path: &Path) -> Result<SavedLedger, LoadtestError> {
        let bytes = std::fs::read(path).map_err(|e| LoadtestError::io(path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| LoadtestError::io(path, e.into()))
    }
}

/// CPU time and peak RSS of this process.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct ProcessUsage {
    /// User CPU seconds.
    pub cpu_user_s: f64,
    /// System CPU seconds.
    pub cpu_sys_s: f64,
    /// Peak resident set in MiB.
    pub peak_rss_mib: f64,
}

/// This process's usage so far (getrusage).
pub fn self_usage() -> ProcessUsage {
    use nix::sys::resource::{UsageWho, getrusage};
    use nix::sys::time::TimeValLike;
    let Ok(ru) = getrusage(UsageWho::RUSAGE_SELF) else {
        return ProcessUsage::default();
    };
    let secs = |t: nix::sys::time::TimeVal| t.num_microseconds() as f64 / 1e6;
    ProcessUsage {
        cpu_user_s: secs(ru.user_time()),
        cpu_sys_s: secs(ru.system_time()),
        peak_rss_mib: ru.max_rss() as f64 / 1024.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::tests::spec_of;

    #[test]
    fn ledger_round_trips_through_a_file() {
        let spec = spec_of("r", 10, 0.1);
        let records = vec![
            BatchRecord::new(0, Final::Acked(vec![1, 2])),
            BatchRecord::new(1, Final::Refused),
            BatchRecord::new(2, Final::Unknown),
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.json");
        SavedLedger::new(&spec, &records).write(&path).unwrap();
        let (spec2, records2) = SavedLedger::read(&path).unwrap().restore().unwrap();
        assert_eq!(spec2.mix, spec.mix);
        assert_eq!(spec2.run_id, "r");
        assert_eq!(records2, records);
        assert!(self_usage().peak_rss_mib > 0.0);
    }
}
