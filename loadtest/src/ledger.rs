//! What was sent and how each batch ended, and the accounting that turns that plus the ids
//! read back from a store into lost, duplicated and unexpected events.

use serde::Serialize;

use crate::fleet::{Fleet, event_id};

/// How a batch finally ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Final {
    /// Answered 200; indexes of the rejected events.
    Acked(Vec<u32>),
    /// Definitively refused (nothing appended).
    Refused,
    /// Outcome unknown (transport error after sending): may or may not be in the log.
    Unknown,
}

/// One batch of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRecord {
    /// Batch number; its events are `batch × batch_size ..`.
    pub batch: u64,
    /// How it ended.
    pub outcome: Final,
}

impl BatchRecord {
    /// Batch `batch` ended as `outcome`.
    pub fn new(batch: u64, outcome: Final) -> BatchRecord {
        BatchRecord { batch, outcome }
    }
}

/// What a store should hold of each event, indexed by event number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Expect {
    /// Never sent (or refused): must not appear.
    Absent = 0,
    /// Accepted: must appear once in the log topics.
    Log = 1,
    /// Rejected: must appear once in the dead-letter topic and never in the log.
    Dlq = 2,
    /// Unknown outcome: may appear at most once.
    Maybe = 3,
}

/// Per-event expectations and the response-level checks.
#[derive(Debug, Clone)]
pub struct Expectations {
    states: Vec<Expect>,
    /// Valid events the gateway rejected.
    pub valid_rejected: u64,
    /// Invalid events the gateway accepted.
    pub invalid_accepted: u64,
}

impl Expectations {
    /// Builds the expectations of every event from the batch records.
    pub fn build(fleet: &Fleet, records: &[BatchRecord]) -> Expectations {
        let size = u64::from(fleet.spec().batch_size);
        let total = records.iter().map(|r| r.batch + 1).max().unwrap_or(0) * size;
        let mut exp = Expectations {
            states: vec![Expect::Absent; total as usize],
            valid_rejected: 0,
            invalid_accepted: 0,
        };
        for rec in records {
            let first = rec.batch * size;
            for i in 0..size {
                let seq = first + i;
                let state = match &rec.outcome {
                    Final::Refused => Expect::Absent,
                    Final::Unknown => Expect::Maybe,
                    Final::Acked(rejected) => {
                        let was_rejected = rejected.contains(&(i as u32));
                        match (was_rejected, fleet.is_invalid(seq)) {
                            (true, false) => exp.valid_rejected += 1,
                            (false, true) => exp.invalid_accepted += 1,
                            _ => {}
                        }
                        if was_rejected {
                            Expect::Dlq
                        } else {
                            Expect::Log
                        }
                    }
                };
                exp.states[seq as usize] = state;
            }
        }
        exp
    }

    /// How many events have expectation `want`.
    pub fn count(&self, want: Expect) -> u64 {
        self.states.iter().filter(|s| **s == want).count() as u64
    }

    /// Events numbered so far (sent or not).
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// True before anything was sent.
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// Compares what `store` holds (`found[seq]` copies of event `seq`, `beyond` ids past the
    /// end) with the events expected there (`want`).
    pub fn check(&self, store: &str, want: Expect, tally: &Tally, run: &str) -> StoreCheck {
        let mut c = StoreCheck {
            store: store.to_owned(),
            expected: 0,
            found: 0,
            lost: 0,
            duplicated: 0,
            unexpected: tally.beyond,
            maybe_found: 0,
            lost_sample: Vec::new(),
            duplicated_sample: Vec::new(),
        };
        for (seq, state) in self.states.iter().enumerate() {
            let n = u64::from(tally.counts.get(seq).copied().unwrap_or(0));
            let id = || event_id(run, seq as u64);
            c.found += n.min(1);
            if n > 1 {
                c.duplicated += n - 1;
                sample(&mut c.duplicated_sample, id());
            }
            if *state == want {
                c.expected += 1;
                if n == 0 {
                    c.lost += 1;
                    sample(&mut c.lost_sample, id());
                }
            } else if *state == Expect::Maybe {
                c.maybe_found += n.min(1);
            } else if n > 0 {
                c.unexpected += 1;
            }
        }
        c
    }
}

fn sample(list: &mut Vec<String>, id: String) {
    if list.len() < 10 {
        list.push(id);
    }
}

/// Copies of each event found in one store.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    counts: Vec<u16>,
    beyond: u64,
}

impl Tally {
    /// An empty tally for `len` events.
    pub fn new(len: usize) -> Tally {
        Tally {
            counts: vec![0; len],
            beyond: 0,
        }
    }

    /// One copy of event `seq` seen.
    pub fn add(&mut self, seq: u64) {
        match self.counts.get_mut(seq as usize) {
            Some(n) => *n = n.saturating_add(1),
            None => self.beyond += 1,
        }
    }

    /// Distinct events seen at least once.
    pub fn distinct(&self) -> u64 {
        self.counts.iter().filter(|n| **n > 0).count() as u64
    }
}

/// The result of reading one store back.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StoreCheck {
    /// `kafka events`, `kafka events.dlq`, `lake`, `opensearch`.
    pub store: String,
    /// Events that must be there.
    pub expected: u64,
    /// Distinct events of this run found.
    pub found: u64,
    /// Expected events not found.
    pub lost: u64,
    /// Extra copies beyond the first.
    pub duplicated: u64,
    /// Events found that must not be there (refused, rejected in the log, accepted in the DLQ,
    /// never sent).
    pub unexpected: u64,
    /// Events of unknown outcome that were found.
    pub maybe_found: u64,
    /// Up to 10 lost ids.
    pub lost_sample: Vec<String>,
    /// Up to 10 duplicated ids.
    pub duplicated_sample: Vec<String>,
}

impl StoreCheck {
    /// Nothing lost, duplicated or unexpected.
    pub fn passed(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.unexpected == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::tests::spec_of;

    fn fleet(invalid_share: f64) -> Fleet {
        Fleet::new(spec_of("r", 10, invalid_share)).unwrap()
    }

    fn acked_as_generated(f: &Fleet, batch: u64) -> BatchRecord {
        let rejected = (0..10)
            .filter(|i| f.is_invalid(batch * 10 + u64::from(*i)))
            .collect();
        BatchRecord {
            batch,
            outcome: Final::Acked(rejected),
        }
    }

    #[test]
    fn clean_run_passes_and_accounts_for_rejections() {
        let f = fleet(0.2);
        let records: Vec<BatchRecord> = (0..5).map(|b| acked_as_generated(&f, b)).collect();
        let exp = Expectations::build(&f, &records);
        let invalid = (0..50).filter(|s| f.is_invalid(*s)).count() as u64;
        assert!(invalid > 0);
        assert_eq!(exp.count(Expect::Dlq), invalid);
        assert_eq!(exp.valid_rejected + exp.invalid_accepted, 0);
        let (mut log, mut dlq) = (Tally::new(exp.len()), Tally::new(exp.len()));
        for s in 0..50 {
            if f.is_invalid(s) {
                dlq.add(s)
            } else {
                log.add(s)
            }
        }
        let c = exp.check("log", Expect::Log, &log, "r");
        assert!(c.passed(), "{c:?}");
        assert_eq!(c.expected, 50 - invalid);
        assert!(exp.check("dlq", Expect::Dlq, &dlq, "r").passed());
    }

    #[test]
    fn lost_duplicated_and_unexpected_are_counted() {
        let f = fleet(0.0);
        let records = vec![
            acked_as_generated(&f, 0),
            BatchRecord::new(1, Final::Refused),
            BatchRecord::new(2, Final::Unknown),
        ];
        let exp = Expectations::build(&f, &records);
        let mut log = Tally::new(exp.len());
        for s in 1..10 {
            log.add(s); // event 0 lost
        }
        log.add(5); // duplicate
        log.add(12); // refused batch: unexpected
        log.add(25); // unknown outcome: fine
        log.add(999); // beyond anything sent
        let c = exp.check("log", Expect::Log, &log, "r");
        assert_eq!((c.expected, c.lost, c.duplicated), (10, 1, 1));
        assert_eq!((c.unexpected, c.maybe_found), (2, 1));
        assert_eq!(c.lost_sample, vec!["r-0".to_owned()]);
        assert_eq!(c.duplicated_sample, vec!["r-5".to_owned()]);
        assert!(!c.passed());
    }

    #[test]
    fn misclassified_events_are_reported() {
        let f = fleet(0.0);
        let records = vec![BatchRecord {
            batch: 0,
            outcome: Final::Acked(vec![3]),
        }];
        let exp = Expectations::build(&f, &records);
        assert_eq!(exp.valid_rejected, 1);
        assert_eq!(exp.count(Expect::Dlq), 1);
    }
}
