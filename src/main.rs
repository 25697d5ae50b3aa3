//! `fraudgate <serve|check-config|query|report|feeds|rescore> [--config PATH]`: thin
//! entry point (clap: per-command `--help`, `--version`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use fraudgate::config::{Config, ConfigError, ENV_CONFIG_PATH};
use fraudgate::startup::{Application, shutdown_signal};

/// mimalloc: measured faster than the system allocator here (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEFAULT_CONFIG_PATH: &str = "config/fraudgate.toml";

/// A real-time click and impression fraud gate in front of FraudScore RT.
#[derive(Parser)]
#[command(
    name = "fraudgate",
    version,
    after_help = "Every config key can be overridden with FRAUDGATE_<SECTION>__<KEY>, \
                  e.g. FRAUDGATE_SERVER__LISTEN=0.0.0.0:8080."
)]
struct Cli {
    /// Config file [default: $FRAUDGATE_CONFIG, else config/fraudgate.toml
    /// when present, else the defaults embedded in the binary]
    #[arg(short, long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (stops gracefully on SIGTERM or Ctrl-C)
    Serve,
    /// Load and validate the configuration, say which file it came from, and exit
    CheckConfig,
    /// The Data API against the configured decision log, printed as a table
    #[command(after_help = "Examples:
  fraudgate query all field=datetime,ip,affiliate_id,decision,tags page_size=20
  fraudgate query click --groups group=affiliate_id field=count,blocked,block_rate sort=block_rate_desc
  fraudgate query click 'filter=[\"AND\",[\"affiliate_id\",\"77\"],[\"tag\",\"proxy\"]]' format=csv")]
    Query {
        /// click, impression or all
        event: String,
        /// Groups with aggregates (the /groups endpoint)
        #[arg(long)]
        groups: bool,
        /// The HTTP parameters as name=value words, no URL encoding
        /// (field, filter, group, having, sort, page, page_size, tz, format=csv|json)
        #[arg(value_name = "NAME=VALUE")]
        params: Vec<String>,
    },
    /// A Fraudshield-style report against the configured decision log
    #[command(after_help = "Examples:
  fraudgate report fraud 'group[]=affiliate_id' 'group[]=aff_sub1' date_start=2026-11-01
  fraudgate report interval time_interval=hour timezone=Europe/Berlin format=csv")]
    Report {
        /// fraud, global or interval
        kind: String,
        /// The HTTP parameters as name=value words, no URL encoding
        /// (date_start, date_end, timezone, group[], search_fields[], count, page, format)
        #[arg(value_name = "NAME=VALUE")]
        params: Vec<String>,
    },
    /// Block lists pulled from Protect360, Fraudshield and the FraudScore Data API
    Feeds {
        #[command(subcommand)]
        command: FeedsCommand,
    },
    /// The decision log's past decisions judged again under today's lists and policy
    #[command(after_help = "Examples:
  fraudgate rescore --from 2026-11-01 --to 2026-11-30 > changes.ndjson

Judges the decision log's decisions of the days again with today's lists
(feeds' included), ranges and crawler patterns under today's policy, and
writes what would change (a JSON line each, \"type\":\"change\") and the
approved conversions whose click or IP would be blocked today
(\"type\":\"clawback\", with payout); the summary and the payout to claw
back per affiliate go to stderr. The log is not changed.")]
    Rescore {
        /// Start (YYYY-MM-DD, UTC, or an RFC 3339 time)
        #[arg(long, value_name = "DATE")]
        from: String,
        /// End (YYYY-MM-DD: through the end of that day, UTC, or an RFC 3339 time)
        #[arg(long, value_name = "DATE")]
        to: String,
    },
}

#[derive(Subcommand)]
enum FeedsCommand {
    /// Each configured feed: entries, cursor, last success, failures
    List,
    /// Pull one feed now, with a progress bar and a summary
    #[command(after_help = "Examples:
  fraudgate feeds run p360
  fraudgate feeds run p360 --from 2026-10-01 --to 2026-10-31 --dry-run

Without --from/--to the run starts at the feed's cursor (or `window` back)
and moves the cursor, as a scheduled run does; with them it is a backfill
that leaves the cursor alone. A `serve` using the same state file picks
the new entries up within a second.")]
    Run {
        /// The feed's name
        name: String,
        /// Start (YYYY-MM-DD, UTC, or an RFC 3339 time)
        #[arg(long, value_name = "DATE")]
        from: Option<String>,
        /// End (YYYY-MM-DD: through the end of that day, UTC)
        #[arg(long, value_name = "DATE")]
        to: Option<String>,
        /// Show what would be added; write nothing
        #[arg(long)]
        dry_run: bool,
    },
}

/// The configuration: the explicit file (`--config`, else
/// `$FRAUDGATE_CONFIG`), its relative paths read from its directory; else
/// `config/fraudgate.toml` when present in the working directory, read in
/// place (its paths are the embedded defaults'); else the embedded
/// defaults. The file it came from, if any.
fn load_config(explicit: Option<PathBuf>) -> (Option<PathBuf>, Result<Config, ConfigError>) {
    if let Some(p) = explicit.or_else(|| std::env::var_os(ENV_CONFIG_PATH).map(PathBuf::from)) {
        let c = Config::load(Some(&p));
        return (Some(p), c);
    }
    let p = PathBuf::from(DEFAULT_CONFIG_PATH);
    if p.exists() {
        let c = Config::load_in_working_dir(&p);
        return (Some(p), c);
    }
    (None, Config::load(None))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (path, config) = load_config(cli.config);
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fraudgate: invalid configuration: {e}");
            return ExitCode::from(78);
        }
    };
    let source = path
        .as_ref()
        .map_or("the defaults embedded in the binary".into(), |p| {
            p.display().to_string()
        });
    let (name, result) = match cli.command {
        Command::CheckConfig | Command::Serve => {
            // The same checks, and the same message, for both.
            if let Err(e) = fraudgate::startup::preflight(&config) {
                eprintln!("fraudgate: invalid configuration: {e}");
                return ExitCode::from(78);
            }
            if matches!(cli.command, Command::Serve) {
                return serve(config, source);
            }
            println!("configuration OK ({source})");
            return ExitCode::SUCCESS;
        }
        Command::Query {
            event,
            groups,
            params,
        } => (
            "query",
            fraudgate::cli::query(&config, &event, groups, &params),
        ),
        Command::Rescore { from, to } => {
            ("rescore", fraudgate::cli::rescore::run(&config, &from, &to))
        }
        Command::Feeds { command } => match command {
            FeedsCommand::List => ("feeds list", fraudgate::cli::feeds::list(&config)),
            FeedsCommand::Run {
                name,
                from,
                to,
                dry_run,
            } => (
                "feeds run",
                fraudgate::cli::feeds::run(&config, &name, from.as_deref(), to.as_deref(), dry_run),
            ),
        },
        Command::Report { kind, params } => {
            ("report", fraudgate::cli::report(&config, &kind, &params))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fraudgate {name}: {e}");
            ExitCode::from(2)
        }
    }
}

fn serve(config: Config, source: String) -> ExitCode {
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    match config.server.threading {
        // Connections have threads of their own (http::lanes::Lanes):
        // this runtime keeps the accept loop and background work, and
        // the gRPC door and the operator's port when they are on.
        fraudgate::config::Threading::PerCore
            if config.doors.grpc.listen.is_none() && config.server.admin_listen.is_none() =>
        {
            runtime.worker_threads(1);
        }
        fraudgate::config::Threading::PerCore => {
            runtime.worker_threads(config.server.connection_threads());
        }
        fraudgate::config::Threading::Shared if config.server.worker_threads > 0 => {
            runtime.worker_threads(config.server.worker_threads);
        }
        fraudgate::config::Threading::Shared => {}
    }
    let runtime = match runtime.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fraudgate: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        if let Err(e) = fraudgate::telemetry::init_subscriber(&config.log) {
            eprintln!("fraudgate: cannot open the log: {e}");
            return ExitCode::FAILURE;
        }
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            config = %source,
            "starting fraudgate"
        );
        let app = match Application::build(config).await {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "startup failed");
                return ExitCode::FAILURE;
            }
        };
        match app.run_until_stopped(shutdown_signal()).await {
            Ok(()) => {
                tracing::info!("stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!(error = %e, "server error");
                ExitCode::FAILURE
            }
        }
    })
}
