//! Property test of the engine against a model (a vector of records per partition): random
//! appends, reads, commits and reopens over tiny segments, with every read checked.

use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::config::{FlushMode, FlushPolicy};
use crate::log::{Log, Record};

#[derive(Debug, Clone)]
enum Op {
    Append {
        partition: i32,
        count: usize,
        size: usize,
    },
    Read {
        partition: i32,
        at: f64,
        max_bytes: usize,
    },
    Commit {
        partition: i32,
        offset: i64,
    },
    Reopen,
    Retention,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..2i32, 1..30usize, 0..400usize).prop_map(|(partition, count, size)| Op::Append { partition, count, size }),
        4 => (0..2i32, 0.0..1.0f64, 1..5000usize).prop_map(|(partition, at, max_bytes)| Op::Read { partition, at, max_bytes }),
        1 => (0..2i32, 0..1000i64).prop_map(|(partition, offset)| Op::Commit { partition, offset }),
        1 => Just(Op::Reopen),
        1 => Just(Op::Retention),
    ]
}

fn config(mode: FlushMode) -> LogConfig {
    LogConfig {
        flush: FlushPolicy {
            mode,
            interval_ms: 1,
            linger_us: 0,
        },
        segment_bytes: 4096,
        index_interval_bytes: 128,
        retention_bytes: Some(16 * 1024),
        ..LogConfig::default()
    }
}

async fn run(ops: Vec<Op>, mode: FlushMode) {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = LogEngine::open(dir.path(), config(mode)).unwrap();
    engine.create_topic_now("m", 2).unwrap();
    let mut model: Vec<Vec<Option<Bytes>>> = vec![Vec::new(), Vec::new()];
    let mut starts = [0i64; 2];
    let mut commits = std::collections::BTreeMap::new();
    let mut serial = 0u64;
    for op in ops {
        match op {
            Op::Append {
                partition,
                count,
                size,
            } => {
                let records: Vec<Record> = (0..count)
                    .map(|i| {
                        serial += 1;
                        let value = (i % 5 != 4)
                            .then(|| Bytes::from(format!("{serial}-{}", "z".repeat(size))));
                        Record {
                            partition: Some(partition),
                            value,
                            timestamp_ms: now_ms(),
                            ..Record::default()
                        }
                    })
                    .collect();
                let appended = engine.append("m", records.clone()).await.unwrap();
                let model_p = &mut model[partition as usize];
                for (a, r) in appended.iter().zip(records) {
                    assert_eq!(a.offset, model_p.len() as i64);
                    model_p.push(r.value);
                }
            }
            Op::Read {
                partition,
                at,
                max_bytes,
            } => {
                let p = partition as usize;
                let hw = model[p].len() as i64;
                let offset = starts[p] + ((hw - starts[p]) as f64 * at) as i64;
                let got = engine
                    .read("m", partition, offset, max_bytes, Duration::ZERO)
                    .await
                    .unwrap();
                if offset < hw {
                    assert!(!got.is_empty(), "read at {offset} < {hw} returned nothing");
                }
                for (k, r) in got.iter().enumerate() {
                    assert_eq!(r.offset, offset + k as i64);
                    assert_eq!(r.value, model[p][r.offset as usize]);
                }
            }
            Op::Commit { partition, offset } => {
                engine.commit("g", "m", partition, offset).await.unwrap();
                commits.insert(partition, offset);
            }
            Op::Reopen => {
                engine.close().await.unwrap();
                drop(engine);
                engine = LogEngine::open(dir.path(), config(mode)).unwrap();
            }
            Op::Retention => {
                engine.enforce_retention().unwrap();
            }
        }
        for p in 0..2 {
            let o = engine.partition_offsets("m", p as i32).unwrap();
            assert_eq!(o.high_watermark, model[p].len() as i64);
            assert!(o.log_start >= starts[p] && o.log_start <= o.high_watermark);
            starts[p] = o.log_start;
        }
        for (&p, &o) in &commits {
            assert_eq!(engine.committed("g", "m", p).await.unwrap(), Some(o));
        }
    }
    engine.close().await.unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_model(ops in proptest::collection::vec(op(), 1..40), interval in any::<bool>()) {
        let mode = if interval { FlushMode::Interval } else { FlushMode::Os };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(ops, mode));
    }
}
