//! The `headwater` binary: parses the command line, loads the configuration and composes the
//! parts (gateway, log tier, router) each crate provides.

mod cluster;
mod config;
mod kafka_security;
mod load;
mod routing;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, LogFormat};

/// mimalloc instead of glibc malloc: the request path allocates per event, and glibc's arena
/// locks and consolidation cost about a third of the gateway's CPU under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use crate::load::{Flag, Source};

/// Edge telemetry ingestion gateway: collectors, a durable log and routers in one binary.
#[derive(Debug, Parser)]
#[command(name = "headwater", version, about)]
struct Cli {
    /// YAML configuration file [default: config/headwater.yaml when present, else built-in defaults]
    #[arg(long, global = true, env = "HEADWATER_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log line format; overrides `logging.format`
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run everything in one process: gateway, embedded log tier and router
    Serve(PartFlags),
    /// Run only the HTTP/gRPC collectors, appending to log nodes or Kafka
    Gateway(PartFlags),
    /// Run only a log node serving the Kafka protocol
    LogNode(PartFlags),
    /// Run only the router workers
    Router(PartFlags),
    /// Configuration tools
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Routing-rule tools
    #[command(subcommand)]
    Routes(RoutesCommand),
    /// Schema tools
    #[command(subcommand)]
    Schemas(SchemasCommand),
    /// Print the stored SCRAM credential of a password read from stdin, for
    /// `log.principals[].scram_sha256` / `scram_sha512` (the password itself is never stored)
    ScramCredential {
        /// SCRAM-SHA-256 or SCRAM-SHA-512
        #[arg(long, default_value = "SCRAM-SHA-512")]
        mechanism: String,
        /// PBKDF2 iterations (4096 to 16384)
        #[arg(long, default_value_t = headwater_kafka::scram::DEFAULT_ITERATIONS)]
        iterations: u32,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (file + HEADWATER_* env), or every error with its line
    Check {
        /// The file to check [default: --config, else config/headwater.yaml when present]
        file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum RoutesCommand {
    /// Validate a routes.yaml and explain every error
    Check {
        /// The routes file
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum SchemasCommand {
    /// Validate a schema directory and explain every problem
    Check {
        /// The schema directory
        dir: PathBuf,
    },
}

/// The settings every part takes as flags; each also has a config key and an env var.
#[derive(Debug, Args, Default)]
struct PartFlags {
    /// Data directory (`data_dir`, HEADWATER_DATA_DIR) [default: ./data]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<String>,
    /// HTTP + gRPC listen address (`gateway.listen`) [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Kafka-protocol listen address (`log.kafka_listen`) [default: 127.0.0.1:9092]
    #[arg(long, value_name = "ADDR")]
    kafka_listen: Option<String>,
    /// Schema directory (`schemas.dir`) [default: schemas/events]
    #[arg(long, value_name = "DIR")]
    schemas: Option<String>,
    /// Routes file (`router.routes`) [default: config/routes.yaml]
    #[arg(long, value_name = "FILE")]
    routes: Option<String>,
    /// log-node: this node's id in `log.cluster.nodes` (`log.cluster.node_id`)
    #[arg(long, value_name = "ID")]
    node_id: Option<String>,
}

impl PartFlags {
    fn to_flags(&self) -> Vec<Flag> {
        let pairs = [
            ("--data-dir", "data_dir", &self.data_dir),
            ("--listen", "gateway.listen", &self.listen),
            ("--kafka-listen", "log.kafka_listen", &self.kafka_listen),
            ("--schemas", "schemas.dir", &self.schemas),
            ("--routes", "router.routes", &self.routes),
            ("--node-id", "log.cluster.node_id", &self.node_id),
        ];
        pairs
            .into_iter()
            .filter_map(|(name, path, value)| {
                value.as_ref().map(|value| Flag {
                    name,
                    path,
                    value: value.clone(),
                })
            })
            .collect()
    }
}

/// Exit code for a configuration that does not load.
const EXIT_BAD_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config(ConfigCommand::Check { ref file }) => {
            let source = load::resolve_source(file.as_deref().or(cli.config.as_deref()));
            config_check(&source)
        }
        Command::Serve(ref flags) => run_part(&cli, flags, Part::Serve),
        Command::Gateway(ref flags) => run_part(&cli, flags, Part::Gateway),
        Command::LogNode(ref flags) => run_part(&cli, flags, Part::LogNode),
        Command::Router(ref flags) => run_part(&cli, flags, Part::Router),
        Command::Routes(RoutesCommand::Check { ref file }) => routes_check(&cli, file),
        Command::Schemas(SchemasCommand::Check { ref dir }) => schemas_check(&cli, dir),
        Command::ScramCredential {
            ref mechanism,
            iterations,
        } => scram_credential(mechanism, iterations),
    }
}

/// `headwater scram-credential`: the password from stdin (one line), the credential on stdout.
fn scram_credential(mechanism: &str, iterations: u32) -> ExitCode {
    use headwater_kafka::scram::{Mechanism, StoredCredential};
    let Some(mechanism) = Mechanism::from_name(mechanism) else {
        eprintln!("headwater: --mechanism must be SCRAM-SHA-256 or SCRAM-SHA-512");
        return ExitCode::from(EXIT_BAD_CONFIG);
    };
    let mut password = String::new();
    if let Err(error) = std::io::stdin().read_line(&mut password) {
        eprintln!("headwater: reading the password from stdin: {error}");
        return ExitCode::FAILURE;
    }
    let password = password.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        eprintln!(
            "headwater: give the password on stdin (printf %s PASSWORD | headwater scram-credential)"
        );
        return ExitCode::from(EXIT_BAD_CONFIG);
    }
    match StoredCredential::generate(mechanism, password, iterations) {
        Ok(credential) => {
            println!("{credential}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("headwater: {error}");
            ExitCode::from(EXIT_BAD_CONFIG)
        }
    }
}

enum Part {
    Serve,
    Gateway,
    LogNode,
    Router,
}

fn run_part(cli: &Cli, flags: &PartFlags, part: Part) -> ExitCode {
    let source = load::resolve_source(cli.config.as_deref());
    let mut config = match load::load(&source, &flags.to_flags()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("headwater: invalid configuration\n{error}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    if let Some(format) = cli.log_format {
        config.logging.format = format;
    }
    init_tracing(&config);
    raise_descriptor_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("headwater: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = match part {
        Part::Serve => runtime.block_on(serve::serve(config)),
        Part::Gateway => runtime.block_on(serve::gateway(config)),
        Part::LogNode => runtime.block_on(serve::log_node(config)),
        Part::Router => runtime.block_on(serve::router(config)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("headwater: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn config_check(source: &Source) -> ExitCode {
    match load::load(source, &[]) {
        // Secrets (keys, passwords, tokens) never reach the terminal: see `config::redact`.
        Ok(config) => match config.redacted_yaml() {
            Ok(text) => {
                let origin = match source {
                    Source::Defaults => "built-in defaults".to_owned(),
                    Source::File(path) => path.display().to_string(),
                };
                println!("# effective configuration from {origin} and HEADWATER_* env\n{text}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("headwater: cannot print the configuration: {error}");
                ExitCode::FAILURE
            }
        },
        Err(error) => {
            eprintln!("{error}");
            ExitCode::from(EXIT_BAD_CONFIG)
        }
    }
}

/// `headwater routes check FILE`: every problem as `FILE:LINE:COLUMN: message`.
fn routes_check(cli: &Cli, file: &std::path::Path) -> ExitCode {
    let config = match load::load(&load::resolve_source(cli.config.as_deref()), &[]) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("headwater: invalid configuration\n{error}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    match routing::check_file(&config, file) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for problem in &problems {
                eprintln!("{problem}");
            }
            eprintln!("{}: {} problem(s)", file.display(), problems.len());
            ExitCode::from(EXIT_BAD_CONFIG)
        }
    }
}

/// `headwater schemas check DIR`: every problem as `FILE:LINE: message`, or a summary.
fn schemas_check(cli: &Cli, dir: &std::path::Path) -> ExitCode {
    let config = match load::load(&load::resolve_source(cli.config.as_deref()), &[]) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("headwater: invalid configuration\n{error}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let options = headwater_schemas::LoadOptions::from(&config.schemas);
    match headwater_gateway::registry::load_dir(dir, &options) {
        Ok(registry) => {
            println!(
                "{}: {} schema(s), no problems",
                dir.display(),
                registry.len()
            );
            for info in registry.list() {
                println!(
                    "  {} v{} ({}, topic {}, {})",
                    info.event_type,
                    info.version,
                    info.format.as_str(),
                    info.topic,
                    info.compatibility.as_str()
                );
            }
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for problem in &problems {
                eprintln!("{problem}");
            }
            eprintln!("{}: {} problem(s)", dir.display(), problems.len());
            ExitCode::from(EXIT_BAD_CONFIG)
        }
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit before anything opens files or sockets
/// (segment files within `log.max_open_files`, by default half the soft limit; Kafka and HTTP
/// connections within their caps). See docs/OPERATIONS.md, "File descriptors".
fn raise_descriptor_limit() {
    match headwater_log::raise_open_files_limit() {
        Ok(limit) if limit.soft > limit.soft_before => tracing::info!(
            from = limit.soft_before,
            to = limit.soft,
            hard = limit.hard,
            "raised the open files limit (RLIMIT_NOFILE) to the hard limit"
        ),
        Ok(limit) => tracing::info!(
            soft = limit.soft,
            hard = limit.hard,
            "open files limit (RLIMIT_NOFILE) already at the hard limit"
        ),
        Err(error) => tracing::warn!(
            %error,
            "cannot raise the open files limit (RLIMIT_NOFILE); going on with the current one"
        ),
    }
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.logging.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.logging.format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
