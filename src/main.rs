//! `fraudgate serve [--config PATH]`: thin entry point.

use std::path::PathBuf;
use std::process::ExitCode;

use fraudgate::config::{Config, ENV_CONFIG_PATH};
use fraudgate::startup::{Application, shutdown_signal};

const DEFAULT_CONFIG_PATH: &str = "config/fraudgate.toml";

const USAGE: &str = "\
usage: fraudgate <command> [--config PATH]

commands:
  serve          run the service
  check-config   load and validate the configuration, then exit
  query <click|impression|all> [--groups] name=value...
                 the Data API against the local decision log, as a table, e.g.
                 fraudgate query all field=datetime,ip,affiliate_id,decision,tags page_size=20
                 fraudgate query click --groups group=affiliate_id field=count,blocked,block_rate
  report <fraud|global|interval> name=value...
                 a report against the local decision log, e.g.
                 fraudgate report fraud 'group[]=affiliate_id' date_start=2026-11-01
                 (format=csv or format=json instead of a table)

--config PATH    config file (default: $FRAUDGATE_CONFIG, else config/fraudgate.toml
                 when present, else the embedded defaults)
Every key can be overridden with FRAUDGATE_<SECTION>__<KEY>.";

struct Args {
    command: String,
    config: Option<PathBuf>,
    /// The words after `query` / `report`.
    rest: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut command = None;
    let mut config = None;
    let mut rest = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "-V" | "--version" => {
                println!("fraudgate {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            "-c" | "--config" => {
                config = Some(PathBuf::from(args.next().ok_or("--config needs a path")?));
            }
            s if s.starts_with("--config=") => {
                config = Some(PathBuf::from(&s["--config=".len()..]))
            }
            s if command.is_none() && !s.starts_with('-') => command = Some(s.to_owned()),
            s if matches!(command.as_deref(), Some("query" | "report")) => rest.push(s.to_owned()),
            s => return Err(format!("unexpected argument {s:?}")),
        }
    }
    Ok(Args {
        command: command.ok_or("missing command")?,
        config,
        rest,
    })
}

/// The explicit path must exist; the default path is used only if present.
fn config_path(explicit: Option<PathBuf>) -> Option<PathBuf> {
    explicit
        .or_else(|| std::env::var_os(ENV_CONFIG_PATH).map(PathBuf::from))
        .or_else(|| {
            let p = PathBuf::from(DEFAULT_CONFIG_PATH);
            p.exists().then_some(p)
        })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fraudgate: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let path = config_path(args.config);
    let config = match Config::load(path.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fraudgate: invalid configuration: {e}");
            return ExitCode::from(78);
        }
    };
    match args.command.as_str() {
        "check-config" => {
            println!(
                "configuration OK ({})",
                path.map_or("embedded defaults".into(), |p| p.display().to_string())
            );
            ExitCode::SUCCESS
        }
        "serve" => serve(config, path),
        "query" | "report" => {
            let run = if args.command == "query" {
                fraudgate::cli::query
            } else {
                fraudgate::cli::report
            };
            match run(&config, &args.rest) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("fraudgate {}: {e}", args.command);
                    ExitCode::from(2)
                }
            }
        }
        other => {
            eprintln!("fraudgate: unknown command {other:?}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn serve(config: Config, path: Option<PathBuf>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fraudgate: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        fraudgate::telemetry::init_subscriber(&config.log);
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            config = %path.map_or("embedded defaults".into(), |p| p.display().to_string()),
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
