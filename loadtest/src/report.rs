//! The end-of-run report: JSON (everything, timelines included) and Markdown (the tables).

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::cli::{BodyFormat, Compression, Transport};
use crate::error::LoadtestError;
use crate::stats::PhaseStats;
use crate::verify::Verification;

/// Everything a run produced.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    /// Label of the run.
    pub label: String,
    /// The command line.
    pub command: String,
    /// Gateway address.
    pub target: String,
    /// Transport.
    pub transport: Transport,
    /// HTTP body format.
    pub body: BodyFormat,
    /// Compression.
    pub compression: Compression,
    /// The fleet (run id, devices, sizes, invalid share, mix, seed).
    #[serde(flatten)]
    pub fleet: crate::fleet::SpecText,
    /// One entry per phase (closed-loop steps, or the open-loop run).
    pub phases: Vec<PhaseStats>,
    /// Highest events/s of any phase.
    pub peak_events_per_s: f64,
    /// Read-back results, when asked for.
    pub verification: Option<Verification>,
    /// CPU time and peak RSS of the load generator itself.
    pub client: crate::saved::ProcessUsage,
}

impl Report {
    /// The Markdown form: settings, the phase table and the verification table.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "## {}\n", self.label);
        let _ = writeln!(s, "```sh\n{}\n```\n", self.command);
        let _ = writeln!(
            s,
            "Run `{}` against `{}`: {:?} transport, {:?} body, compression {:?}; {} devices, \
             {} events per request, ~{} bytes per event, {:.1}% invalid.\n",
            self.fleet.run_id,
            self.target,
            self.transport,
            self.body,
            self.compression,
            self.fleet.devices,
            self.fleet.batch_size,
            self.fleet.event_bytes,
            self.fleet.invalid_share * 100.0
        );
        s.push_str(&self.phase_table());
        if let Some(v) = &self.verification {
            s.push('\n');
            s.push_str(&verification_table(v));
        }
        s
    }

    /// The Markdown table of the phases.
    pub fn phase_table(&self) -> String {
        let mut s = String::from(
            "| mode | in flight | target events/s | events/s | requests/s | MB/s | p50 ms | p99 ms | p99.9 ms | max ms | failed requests | retries |\n\
             | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        );
        for p in &self.phases {
            let target = p
                .info
                .target_events_per_s
                .map_or_else(|| "—".to_owned(), |r| format!("{r:.0}"));
            let l = &p.latency_ms;
            let _ = writeln!(
                s,
                "| {:?} | {} | {target} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} |",
                p.info.mode,
                p.info.concurrency,
                p.events_per_s,
                p.requests_per_s,
                p.mb_per_s,
                l.p50,
                l.p99,
                l.p999,
                l.max,
                p.requests_failed,
                p.retries
            );
        }
        s
    }

    /// Writes `report.json` and `report.md` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), LoadtestError> {
        std::fs::create_dir_all(dir).map_err(|e| LoadtestError::io(dir, e))?;
        let json = serde_json::to_vec_pretty(self).map_err(|e| LoadtestError::io(dir, e.into()))?;
        let path = dir.join("report.json");
        std::fs::write(&path, json).map_err(|e| LoadtestError::io(&path, e))?;
        let path = dir.join("report.md");
        std::fs::write(&path, self.markdown()).map_err(|e| LoadtestError::io(&path, e))
    }
}

fn verification_table(v: &Verification) -> String {
    let mut s = String::from(
        "| store | expected | found | lost | duplicated | unexpected | unknown-outcome found |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for c in &v.checks {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            c.store, c.expected, c.found, c.lost, c.duplicated, c.unexpected, c.maybe_found
        );
    }
    let _ = writeln!(
        s,
        "\nVerification: **{}** (valid events rejected: {}, invalid events accepted: {}, \
         events of unknown outcome: {}{}).",
        if v.passed { "passed" } else { "FAILED" },
        v.valid_rejected,
        v.invalid_accepted,
        v.unknown_events,
        if v.errors.is_empty() {
            String::new()
        } else {
            format!("; errors: {}", v.errors.join("; "))
        }
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::StoreCheck;
    use crate::stats::{Latency, PhaseInfo};

    fn report() -> Report {
        let phase = PhaseStats {
            info: PhaseInfo {
                mode: crate::cli::Mode::Open,
                concurrency: 64,
                target_events_per_s: Some(5000.0),
                planned_s: 10.0,
            },
            elapsed_s: 10.0,
            requests_ok: 500,
            requests_failed: 0,
            events_accepted: 49_000,
            events_rejected: 1_000,
            events_failed: 0,
            retries: 0,
            errors: Default::default(),
            events_per_s: 5000.0,
            requests_per_s: 50.0,
            mb_per_s: 1.0,
            latency_ms: Latency {
                p50: 101.5,
                p90: 110.0,
                p99: 120.25,
                p999: 130.0,
                max: 140.0,
                mean: 102.0,
            },
            timeline: vec![],
            spectrum: vec![],
        };
        let check = StoreCheck {
            store: "kafka events".into(),
            expected: 49_000,
            found: 49_000,
            lost: 0,
            duplicated: 0,
            unexpected: 0,
            maybe_found: 0,
            lost_sample: vec![],
            duplicated_sample: vec![],
        };
        Report {
            label: "quick".into(),
            command: "headwater-loadtest --mode open".into(),
            target: "127.0.0.1:8080".into(),
            transport: Transport::Http1,
            body: BodyFormat::Json,
            compression: Compression::None,
            fleet: crate::fleet::SpecText::from(&crate::fleet::tests::spec(0.02)),
            phases: vec![phase],
            peak_events_per_s: 5000.0,
            verification: Some(Verification {
                checks: vec![check],
                unknown_events: 0,
                valid_rejected: 0,
                invalid_accepted: 0,
                errors: vec![],
                passed: true,
            }),
            client: crate::saved::self_usage(),
        }
    }

    #[test]
    fn markdown_has_the_tables_and_the_verdict() {
        let md = report().markdown();
        assert!(
            md.contains(
                "| Open | 64 | 5000 | 5000 | 50 | 1.0 | 101.5 | 120.2 | 130.0 | 140.0 | 0 | 0 |"
            ),
            "{md}"
        );
        assert!(md.contains("| kafka events | 49000 | 49000 | 0 | 0 | 0 | 0 |"));
        assert!(md.contains("Verification: **passed**"));
        assert!(md.contains("2.0% invalid"));
    }

    #[test]
    fn json_round_trips_through_serde_value() {
        let dir = tempfile::tempdir().unwrap();
        report().write(dir.path()).unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap())
                .unwrap();
        assert_eq!(v["phases"][0]["mode"], "open");
        assert_eq!(v["phases"][0]["latency_ms"]["p99"], 120.25);
        assert_eq!(v["verification"]["passed"], true);
        assert!(dir.path().join("report.md").exists());
    }
}
