//! The report of the abuse run (tests/abuse.rs): each class's answer, whether it is the one
//! expected, and the server's peak RSS when it was recorded; printed as a Markdown table.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::common::peak_rss_bytes;

const MIB: u64 = 1024 * 1024;

/// What each class got, with the server's peak RSS when it was recorded.
pub(crate) struct Report {
    pid: u32,
    started: Instant,
    rows: Mutex<Vec<Row>>,
}

struct Row {
    class: String,
    answer: String,
    /// Whether the answer is the one expected; `None` for what is reported, not asserted.
    expected: Option<bool>,
    peak_mib: u64,
    at: Duration,
}

impl Report {
    /// A report on the server `pid`, its clock starting now.
    pub(crate) fn new(pid: u32) -> Self {
        Self {
            pid,
            started: Instant::now(),
            rows: Mutex::new(Vec::new()),
        }
    }

    /// Time since the report started.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Records the `answer` a class got and whether it is the one expected.
    pub(crate) fn row(&self, class: &str, answer: String, expected: bool) {
        let row = Row {
            class: class.to_owned(),
            answer,
            expected: Some(expected),
            peak_mib: peak_rss_bytes(self.pid) / MIB,
            at: self.started.elapsed(),
        };
        eprintln!(
            "[{:>6.1}s] {}: {} ({} MiB peak)",
            row.at.as_secs_f64(),
            row.class,
            row.answer,
            row.peak_mib
        );
        self.rows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(row);
    }

    /// A class that cannot be sent by a client: the test that covers it.
    pub(crate) fn covered(&self, class: &str, test: &str) {
        self.rows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Row {
                class: class.to_owned(),
                answer: format!("covered by {test}"),
                expected: None,
                peak_mib: 0,
                at: Duration::ZERO,
            });
    }

    /// The table; the rows whose answer was not the one expected.
    pub(crate) fn table(&self) -> (String, Vec<String>) {
        let rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out =
            String::from("| class | answer | ok | peak RSS so far |\n| --- | --- | --- | --- |\n");
        let mut unexpected = Vec::new();
        for row in rows.iter() {
            let peak = match row.peak_mib {
                0 => "-".to_owned(),
                mib => format!("{mib} MiB at {:.1}s", row.at.as_secs_f64()),
            };
            let ok = match row.expected {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "-",
            };
            out.push_str(&format!(
                "| {} | {} | {ok} | {peak} |\n",
                row.class, row.answer
            ));
            if row.expected == Some(false) {
                unexpected.push(format!("{}: {}", row.class, row.answer));
            }
        }
        (out, unexpected)
    }
}
