//! `headwater-loadtest`: simulates a device fleet against a gateway, reports, verifies.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use headwater_loadtest::cli::{Args, Mode};
use headwater_loadtest::fleet::{self, Fleet, FleetSpec, SpecText};
use headwater_loadtest::ledger::BatchRecord;
use headwater_loadtest::report::Report;
use headwater_loadtest::runner::{Phase, Run};
use headwater_loadtest::saved::{self, SavedLedger};
use headwater_loadtest::stats::PhaseStats;
use headwater_loadtest::transport::{ClientOptions, Clients};
use headwater_loadtest::verify::kafka::StartOffsets;
use headwater_loadtest::{plot, verify};

/// mimalloc instead of glibc malloc: the generator allocates per event and per request, and
/// glibc's malloc took about a quarter of its CPU, on the cores the server under test shares.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("headwater-loadtest: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn fleet_of(args: &Args) -> anyhow::Result<Fleet> {
    let mix = match &args.mix {
        Some(text) => fleet::parse_mix(text)?,
        None => fleet::DEFAULT_MIX.to_vec(),
    };
    let run_id = args
        .run_id
        .clone()
        .unwrap_or_else(|| format!("{:08x}", rand::random::<u32>()));
    Ok(Fleet::new(FleetSpec {
        run_id,
        devices: args.devices,
        batch_size: args.batch_size,
        event_bytes: args.event_bytes,
        invalid_share: args.invalid_share,
        mix,
        seed: args.seed,
    })?)
}

fn phases_of(args: &Args) -> anyhow::Result<Vec<Phase>> {
    anyhow::ensure!(
        args.duration_secs > 0.0 && args.duration_secs <= 86_400.0,
        "--duration-secs must be within (0, 86400]"
    );
    anyhow::ensure!(!args.concurrency.is_empty(), "--concurrency needs a value");
    anyhow::ensure!(
        args.requests.is_none() || args.mode == Mode::Closed,
        "--requests is for the closed loop"
    );
    let phase = |concurrency: usize, name: String| Phase {
        mode: args.mode,
        concurrency,
        rate: args.rate,
        arrivals: args.arrivals,
        duration: Duration::from_secs_f64(args.duration_secs),
        requests: args.requests,
        retries: args.retries,
        progress: !args.no_progress,
        name,
    };
    Ok(match args.mode {
        Mode::Open => {
            anyhow::ensure!(args.rate > 0.0, "--rate must be above 0");
            vec![phase(
                args.concurrency[0],
                format!("open {:.0} ev/s", args.rate),
            )]
        }
        Mode::Closed => args
            .concurrency
            .iter()
            .map(|c| phase(*c, format!("closed x{c}")))
            .collect(),
    })
}

fn print_phase(p: &PhaseStats) {
    println!(
        "{:?} loop x{}: {:.0} events/s; p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms; {} failed requests, {} rejected events",
        p.info.mode,
        p.info.concurrency,
        p.events_per_s,
        p.latency_ms.p50,
        p.latency_ms.p99,
        p.latency_ms.p999,
        p.requests_failed,
        p.events_rejected
    );
    if !p.errors.is_empty() {
        println!("  errors: {:?}", p.errors);
    }
}

/// `--verify-ledger`: verification of an earlier run, no load.
async fn verify_saved(args: &Args, path: &std::path::Path) -> anyhow::Result<bool> {
    let (spec, records) = SavedLedger::read(path)?.restore()?;
    let fleet = Fleet::new(spec)?;
    let v = verify_and_print(args, &fleet, &records, &StartOffsets::new()).await;
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("verify.json"), serde_json::to_vec_pretty(&v)?)?;
    Ok(v.passed)
}

async fn verify_and_print(
    args: &Args,
    fleet: &Fleet,
    records: &[BatchRecord],
    from: &StartOffsets,
) -> verify::Verification {
    let v = verify::verify(&args.verify, fleet, records, from).await;
    for c in &v.checks {
        println!(
            "verify {}: expected {}, found {}, lost {}, duplicated {}, unexpected {}",
            c.store, c.expected, c.found, c.lost, c.duplicated, c.unexpected
        );
    }
    for e in &v.errors {
        println!("verify error: {e}");
    }
    println!(
        "verification: {}",
        if v.passed {
            "PASSED (zero loss, zero duplicates)"
        } else {
            "FAILED"
        }
    );
    v
}

async fn run(args: Args) -> anyhow::Result<bool> {
    if let Some(path) = &args.verify.verify_ledger {
        anyhow::ensure!(
            verify::wanted(&args.verify),
            "--verify-ledger needs a store to read (--verify-kafka, --verify-lake-dir, --verify-s3-bucket or --verify-opensearch)"
        );
        return verify_saved(&args, path).await;
    }
    let fleet = fleet_of(&args)?;
    let phases = phases_of(&args)?;
    let clients = Clients::connect(ClientOptions {
        transport: args.transport,
        target: args.target.clone(),
        connections: args.connections,
        body: args.body,
        compression: args.compression,
        api_key: args.api_key.clone(),
        timeout: Duration::from_millis(args.timeout_ms),
        kafka_topic: args.kafka_topic.clone(),
        kafka_linger_ms: args.kafka_linger_ms,
    })
    .await
    .with_context(|| format!("connecting to {}", args.target))?;
    let from = verify::kafka_start(&args.verify, &fleet.spec().run_id).await;
    let run = Run::new(fleet, clients);
    println!(
        "run {} → {} over {:?}",
        run.fleet.spec().run_id,
        args.target,
        args.transport
    );
    let mut stats = Vec::new();
    for phase in &phases {
        let s = run.phase(phase).await;
        print_phase(&s);
        stats.push(s);
    }
    finish(&args, &run, stats, &from).await
}

async fn finish(
    args: &Args,
    run: &Arc<Run<Clients>>,
    stats: Vec<PhaseStats>,
    from: &StartOffsets,
) -> anyhow::Result<bool> {
    let answered: u64 = stats.iter().map(|p| p.requests_ok).sum();
    let ledger = run.ledger();
    std::fs::create_dir_all(&args.out)?;
    SavedLedger::new(run.fleet.spec(), &ledger).write(&args.out.join("ledger.json"))?;
    let verification = if verify::wanted(&args.verify) {
        Some(verify_and_print(args, &run.fleet, &ledger, from).await)
    } else {
        None
    };
    let report = report_of(args, run, stats, verification);
    print!("\n{}", report.phase_table());
    println!(
        "load generator: {:.1} s CPU (user+sys), peak RSS {:.0} MiB",
        report.client.cpu_user_s + report.client.cpu_sys_s,
        report.client.peak_rss_mib
    );
    report.write(&args.out)?;
    println!("report: {}/report.json, report.md", args.out.display());
    if !args.no_plots {
        match plot::register_font(&args.font)
            .and_then(|()| plot::draw(&args.out, &report.label, &report.phases))
        {
            Ok(paths) => println!(
                "plots: {}",
                paths
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Err(e) => eprintln!("warning: plots skipped: {e}"),
        }
    }
    if answered == 0 {
        eprintln!("headwater-loadtest: no request was answered 200");
    }
    Ok(answered > 0 && report.verification.as_ref().is_none_or(|v| v.passed))
}

fn report_of(
    args: &Args,
    run: &Arc<Run<Clients>>,
    phases: Vec<PhaseStats>,
    verification: Option<verify::Verification>,
) -> Report {
    Report {
        label: args
            .label
            .clone()
            .unwrap_or_else(|| format!("{:?} {:?} loop", args.transport, args.mode).to_lowercase()),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        target: args.target.clone(),
        transport: args.transport,
        body: args.body,
        compression: args.compression,
        fleet: SpecText::from(run.fleet.spec()),
        peak_events_per_s: phases.iter().map(|p| p.events_per_s).fold(0.0, f64::max),
        phases,
        verification,
        client: saved::self_usage(),
    }
}
