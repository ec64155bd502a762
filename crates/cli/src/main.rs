//! The `portwarden` binary: parses arguments and calls into the library crates.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod output;

/// Exit code for usage and config errors (Nagios UNKNOWN).
pub const EXIT_USAGE: u8 = 3;

#[derive(Parser)]
#[command(name = "portwarden", version, about = "Watch TCP/UDP ports and the services behind them", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Probe targets or configured monitors once and print the results (Nagios exit codes).
    Check(cmd::check::CheckArgs),
    /// Validate a config file and report every problem with file:line:col.
    Validate(cmd::validate::ValidateArgs),
    /// Print the resolved monitor list after discovery, with the source of each monitor.
    Inventory(cmd::inventory::InventoryArgs),
    /// Run the daemon: schedule every monitor, judge, keep history, serve the API and /metrics.
    Serve(cmd::serve::ServeArgs),
    /// Measure the engine on loopback: checks/s, CPU, RSS, lateness, store rows/s.
    Bench(cmd::bench::BenchArgs),
    /// Scan hosts and CIDR blocks for open TCP/UDP ports and name the services behind them.
    Scan(cmd::scan::ScanArgs),
    /// Exposure baselines: `baseline suggest TARGETS` proposes one from a scan.
    Baseline(cmd::baseline::BaselineArgs),
    /// The evidence report of a period (scans, findings, availability, incidents, config
    /// versions, controls) as HTML, JSON or CSV, with its SHA-256 digest.
    Report(cmd::report::ReportArgs),
    /// Notification receivers: `notify test --receiver NAME` sends a sample message.
    Notify(cmd::notify::NotifyArgs),
    /// Print the argon2 hash of a password (read from stdin) for `auth.users[].password_hash`.
    HashPassword(cmd::hash_password::HashPasswordArgs),
    /// Run a probe agent: take monitors from the server, probe them here, upload the results.
    Agent(cmd::agent::AgentArgs),
    /// Print a new agent token and the `agents:` entry (with its SHA-256) for the server.
    AgentToken(cmd::agent::AgentTokenArgs),
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTWARDEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp
                | clap::error::ErrorKind::DisplayVersion
                | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
                _ => EXIT_USAGE,
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_tracing(match cli.command {
        Command::Serve(_) | Command::Agent(_) => "info",
        Command::Bench(_) => "error",
        _ => "warn",
    });
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("portwarden: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let code = rt.block_on(async {
        match cli.command {
            Command::Check(a) => cmd::check::run(a).await,
            Command::Validate(a) => cmd::validate::run(a),
            Command::Inventory(a) => cmd::inventory::run(a).await,
            Command::Serve(a) => cmd::serve::run(a).await,
            Command::Agent(a) => cmd::agent::run(a).await,
            Command::AgentToken(a) => cmd::agent::token(a),
            Command::Bench(a) => cmd::bench::run(a).await,
            Command::Notify(a) => cmd::notify::run(a).await,
            Command::HashPassword(a) => cmd::hash_password::run(a),
            Command::Scan(a) => cmd::scan::run(a).await,
            Command::Baseline(a) => cmd::baseline::run(a).await,
            Command::Report(a) => cmd::report::run(a).await,
        }
    });
    match code {
        Ok(c) => ExitCode::from(c),
        Err(e) => {
            eprintln!("portwarden: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
