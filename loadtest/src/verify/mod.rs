//! Verification after a run: reads back the log (Kafka protocol), the lake and OpenSearch,
//! and accounts every event of the run as expected, lost, duplicated or unexpected.

pub mod kafka;
pub mod lake;
pub mod opensearch;

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cli::VerifyArgs;
use crate::error::LoadtestError;
use crate::fleet::Fleet;
use crate::ledger::{BatchRecord, Expect, Expectations, StoreCheck, Tally};

/// The verdict of a verification.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Verification {
    /// One check per store read.
    pub checks: Vec<StoreCheck>,
    /// Batches whose outcome is unknown (transport errors after sending).
    pub unknown_events: u64,
    /// Valid events the gateway rejected.
    pub valid_rejected: u64,
    /// Invalid events the gateway accepted.
    pub invalid_accepted: u64,
    /// Stores that could not be read (each fails the run).
    pub errors: Vec<String>,
    /// Zero loss, zero duplicates, nothing unexpected, every store read, every event
    /// classified as generated.
    pub passed: bool,
}

/// Whether any verification target is configured.
pub fn wanted(args: &VerifyArgs) -> bool {
    args.verify_kafka.is_some()
        || args.verify_lake_dir.is_some()
        || args.verify_s3_bucket.is_some()
        || args.verify_opensearch.is_some()
}

/// High watermarks of the log and dead-letter topics before a run, so the read-back skips
/// what earlier runs appended; empty without `--verify-kafka` or when they cannot be read.
pub async fn kafka_start(args: &VerifyArgs, run: &str) -> kafka::StartOffsets {
    let Some(bootstrap) = args.verify_kafka.clone() else {
        return kafka::StartOffsets::new();
    };
    let mut topics = args.verify_topics.clone();
    topics.push(args.verify_dlq_topic.clone());
    topics.retain(|t| !t.is_empty());
    let run = run.to_owned();
    let timeout = Duration::from_secs(10);
    tokio::task::spawn_blocking(move || kafka::start_offsets(&bootstrap, &topics, &run, timeout))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default()
}

/// Runs every configured read-back against the ledger of the run; `from` are the offsets
/// taken by [`kafka_start`] before it (empty: read from the beginning).
pub async fn verify(
    args: &VerifyArgs,
    fleet: &Fleet,
    ledger: &[BatchRecord],
    from: &kafka::StartOffsets,
) -> Verification {
    let exp = Expectations::build(fleet, ledger);
    let run = fleet.spec().run_id.clone();
    let wait = Duration::from_secs(args.verify_wait_secs);
    let mut results = Vec::new();
    if let Some(bootstrap) = &args.verify_kafka {
        let read = KafkaRead {
            bootstrap,
            from,
            run: &run,
            stall: wait,
        };
        results.extend(kafka_checks(args, &read, &exp).await);
    }
    if let Some(lake) = open_lake(args) {
        results.push(match lake {
            Ok(lake) => lake_check(lake, &run, &exp, wait).await,
            Err(e) => Err(e),
        });
    }
    if let Some(url) = &args.verify_opensearch {
        let index = &args.verify_opensearch_index;
        results.push(opensearch_check(url, index, &run, &exp, wait).await);
    }
    let (mut checks, mut errors) = (Vec::new(), Vec::new());
    for r in results {
        match r {
            Ok(c) => checks.push(c),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let passed = errors.is_empty()
        && checks.iter().all(StoreCheck::passed)
        && exp.valid_rejected == 0
        && exp.invalid_accepted == 0;
    Verification {
        checks,
        unknown_events: exp.count(Expect::Maybe),
        valid_rejected: exp.valid_rejected,
        invalid_accepted: exp.invalid_accepted,
        errors,
        passed,
    }
}

/// The log topics (accepted events) and the dead-letter topic (rejected ones).
async fn kafka_checks(
    args: &VerifyArgs,
    read: &KafkaRead<'_>,
    exp: &Expectations,
) -> Vec<Result<StoreCheck, LoadtestError>> {
    let topics = args.verify_topics.join(",");
    let log = kafka_check(read, &args.verify_topics, exp, Expect::Log).await;
    let mut out = vec![log.map(|c| named(c, format!("kafka {topics}")))];
    if !args.verify_dlq_topic.is_empty() {
        let dlq = vec![args.verify_dlq_topic.clone()];
        let checked = kafka_check(read, &dlq, exp, Expect::Dlq).await;
        out.push(checked.map(|c| named(c, format!("kafka {}", args.verify_dlq_topic))));
    }
    out
}

fn named(mut c: StoreCheck, name: String) -> StoreCheck {
    c.store = name;
    c
}

/// Where and how to read the log back.
struct KafkaRead<'a> {
    bootstrap: &'a str,
    from: &'a kafka::StartOffsets,
    run: &'a str,
    stall: Duration,
}

async fn kafka_check(
    k: &KafkaRead<'_>,
    topics: &[String],
    exp: &Expectations,
    want: Expect,
) -> Result<StoreCheck, LoadtestError> {
    let (b, t, r, len) = (
        k.bootstrap.to_owned(),
        topics.to_vec(),
        k.run.to_owned(),
        exp.len(),
    );
    let (from, stall) = (k.from.clone(), k.stall);
    let read = tokio::task::spawn_blocking(move || kafka::read_ids(&b, &t, &r, len, &from, stall))
        .await
        .map_err(|e| LoadtestError::Verify(e.to_string()))??;
    Ok(exp.check("kafka", want, &read.tally, k.run))
}

fn open_lake(args: &VerifyArgs) -> Option<Result<lake::Lake, LoadtestError>> {
    if let Some(bucket) = &args.verify_s3_bucket {
        return Some(lake::Lake::s3(
            bucket,
            args.s3_endpoint.as_deref(),
            &args.verify_lake_prefix,
        ));
    }
    let dir = args.verify_lake_dir.as_ref()?;
    Some(lake::Lake::local(dir, &args.verify_lake_prefix))
}

/// Reads a store with `read` until it holds every accepted event or `wait` is over, then
/// checks it as `store`.
async fn poll_check<F, Fut>(
    store: &str,
    exp: &Expectations,
    run: &str,
    wait: Duration,
    pause: Duration,
    mut read: F,
) -> Result<StoreCheck, LoadtestError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Tally, LoadtestError>>,
{
    let deadline = Instant::now() + wait;
    let want = exp.count(Expect::Log);
    loop {
        let tally = read().await?;
        if tally.distinct() >= want || Instant::now() >= deadline {
            return Ok(exp.check(store, Expect::Log, &tally, run));
        }
        tokio::time::sleep(pause).await;
    }
}

/// The lake: objects are read once each, so the tally grows across polls.
async fn lake_check(
    lake: lake::Lake,
    run: &str,
    exp: &Expectations,
    wait: Duration,
) -> Result<StoreCheck, LoadtestError> {
    let state = std::sync::Arc::new(tokio::sync::Mutex::new((lake, Tally::new(exp.len()))));
    let read = || {
        let state = state.clone();
        async move {
            let mut guard = state.lock().await;
            let (lake, tally) = &mut *guard;
            lake.read_new(run, tally).await?;
            Ok(tally.clone())
        }
    };
    poll_check("lake", exp, run, wait, Duration::from_millis(500), read).await
}

/// OpenSearch: every poll reads the whole index again.
async fn opensearch_check(
    url: &str,
    index: &str,
    run: &str,
    exp: &Expectations,
    wait: Duration,
) -> Result<StoreCheck, LoadtestError> {
    let read = || opensearch::read_ids(url, index, run, exp.len());
    poll_check("opensearch", exp, run, wait, Duration::from_secs(1), read).await
}
