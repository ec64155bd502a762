//! `portwarden bench`: measure the engine and the store on loopback.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use portwarden_engine::bench::{BenchOptions, run as run_bench};

fn dur(s: &str) -> Result<Duration, String> {
    portwarden_core::parse_duration(s)
}

/// What to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// The engine and the store: probes against loopback listeners.
    Engine,
    /// One server ingesting from simulated agents over HTTP (`--agents`, `--monitors`,
    /// `--interval`, `--batch-every`).
    Ingest,
}

#[derive(Args)]
pub struct BenchArgs {
    /// `engine` (default) or `ingest`.
    #[arg(value_enum, default_value = "engine")]
    pub mode: Mode,
    /// Simulated agents (`ingest`).
    #[arg(long, default_value_t = 4)]
    pub agents: usize,
    /// How often each simulated agent uploads a batch (`ingest`).
    #[arg(long, value_parser = dur, default_value = "500ms")]
    pub batch_every: Duration,
    /// Monitors to schedule.
    #[arg(long, default_value_t = 10_000)]
    pub monitors: usize,
    /// Interval of every monitor.
    #[arg(long, value_parser = dur, default_value = "10s")]
    pub interval: Duration,
    /// Measured time (after the warm-up).
    #[arg(long, value_parser = dur, default_value = "60s")]
    pub duration: Duration,
    /// Warm-up before measuring (the first interval spreads the phase offsets).
    #[arg(long, value_parser = dur, default_value = "15s")]
    pub warmup: Duration,
    /// Loopback listeners (open ports); monitors are spread over them and the closed ports.
    #[arg(long, default_value_t = 1_000)]
    pub listeners: usize,
    /// Closed ports (refused) among the targets.
    #[arg(long, default_value_t = 50)]
    pub closed: usize,
    /// Probe timeout.
    #[arg(long, value_parser = dur, default_value = "2s")]
    pub timeout: Duration,
    /// Engine concurrency (default: from the file descriptor limit).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Also run a plain tokio connect loop over the same targets and print the ratio.
    #[arg(long)]
    pub baseline: bool,
    /// Concurrency of the baseline loop.
    #[arg(long, default_value_t = 256)]
    pub baseline_concurrency: usize,
    /// Keep the benchmark database here (default: a temporary directory, removed after).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(a: BenchArgs) -> anyhow::Result<u8> {
    if a.mode == Mode::Ingest {
        let report = portwarden_server::bench::run(portwarden_server::bench::IngestBenchOptions {
            agents: a.agents.max(1),
            monitors: a.monitors,
            interval: a.interval,
            duration: a.duration,
            warmup: a.warmup,
            batch_every: a.batch_every,
            data_dir: a.data_dir,
        })
        .await
        .map_err(anyhow::Error::msg)?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            println!("{report}");
        }
        return Ok(0);
    }
    let report = run_bench(BenchOptions {
        monitors: a.monitors,
        interval: a.interval,
        duration: a.duration,
        warmup: a.warmup,
        listeners: a.listeners,
        closed: a.closed,
        timeout: a.timeout,
        concurrency: a.concurrency,
        baseline: a.baseline,
        baseline_concurrency: a.baseline_concurrency,
        data_dir: a.data_dir,
    })
    .await
    .map_err(anyhow::Error::msg)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
    }
    Ok(0)
}
