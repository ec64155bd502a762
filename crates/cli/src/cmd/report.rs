//! `portwarden report --from DATE --to DATE --format html|json|csv`: the evidence report of a
//! period from the store the daemon writes (SQLite in the data directory, or PostgreSQL from
//! `store:` / `--store`), with the SHA-256 digest of its bytes printed beside it.
//! `portwarden report --verify FILE --digest HEX` checks a report was not edited.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::{Args, ValueEnum};
use portwarden_scan::evidence::{self, Format};
use portwarden_store::{Retention, Store, StoreMetrics, WriterOptions};

#[derive(Args)]
pub struct ReportArgs {
    /// The config file (for the data directory and the `controls:` mapping).
    #[arg(long, short, required_unless_present = "verify")]
    pub config: Option<PathBuf>,
    /// Data directory (default: `server.data_dir` from the config).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub store: super::serve::StoreArg,
    /// Start of the period: RFC 3339 (`2026-11-01T00:00:00Z`), a date (`2026-11-01`) or Unix seconds.
    #[arg(long, required_unless_present = "verify")]
    pub from: Option<String>,
    /// End of the period (exclusive), same forms; default now.
    #[arg(long)]
    pub to: Option<String>,
    #[arg(long, value_enum, default_value_t = ReportFormat::Html)]
    pub format: ReportFormat,
    /// Write the report here instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Check a saved report against its digest instead of making one.
    #[arg(long, value_name = "FILE", requires = "digest")]
    pub verify: Option<PathBuf>,
    /// The SHA-256 printed when the report was made (hex).
    #[arg(long)]
    pub digest: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ReportFormat {
    Html,
    Json,
    Csv,
}

/// Parses a time argument (the API's forms); the error names the argument.
fn parse_time(arg: &str, s: &str) -> anyhow::Result<DateTime<Utc>> {
    portwarden_server::params::parse_instant(s).with_context(|| {
        format!(
            "{arg} `{s}`: expected RFC 3339 (2026-11-01T00:00:00Z), a date (2026-11-01) or Unix seconds"
        )
    })
}

pub async fn run(a: ReportArgs) -> anyhow::Result<u8> {
    if let Some(file) = &a.verify {
        let bytes =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let want = a
            .digest
            .as_deref()
            .unwrap_or("")
            .trim()
            .trim_start_matches("sha256:")
            .to_ascii_lowercase();
        let got = evidence::sha256_hex(&bytes);
        if got == want {
            println!("OK: {} matches SHA-256 {got}", file.display());
            return Ok(0);
        }
        println!(
            "MISMATCH: {} has SHA-256 {got}, expected {want}: the report was changed",
            file.display()
        );
        return Ok(1);
    }
    let (Some(config), Some(from)) = (&a.config, &a.from) else {
        bail!("give --config and --from (or --verify FILE --digest HEX)");
    };
    let from = parse_time("--from", from)?;
    let to = match &a.to {
        Some(t) => parse_time("--to", t)?,
        None => Utc::now(),
    };
    if to <= from {
        bail!("--to ({to}) must be after --from ({from})");
    }
    let loaded = portwarden_config::load_file(config).map_err(|d| anyhow::anyhow!("{d}"))?;
    let cfg = loaded.config;
    let url = a.store.url().or_else(|| cfg.store.url.clone());
    let store: Arc<dyn Store> = match &url {
        // The daemon's database: the same migrations, read through the same `Store`.
        Some(url) => Arc::new(
            portwarden_store::postgres::PgStore::open(
                url.expose(),
                Retention::default(),
                WriterOptions::default(),
                StoreMetrics::default(),
            )
            .await
            .context("cannot open the PostgreSQL store")?,
        ),
        None => {
            let dir = a
                .data_dir
                .clone()
                .unwrap_or_else(|| cfg.server.data_dir.clone());
            Arc::new(
                portwarden_store::sqlite::SqliteStore::open(
                    &dir,
                    Retention::default(),
                    WriterOptions::default(),
                    StoreMetrics::default(),
                )
                .with_context(|| format!("cannot open the store in {}", dir.display()))?,
            )
        }
    };
    let controls = portwarden_server::control_specs(&cfg);
    let targets = portwarden_server::availability_targets(cfg.monitors.iter());
    let report = evidence::gather(store.as_ref(), from, to, &controls, &targets).await;
    let _ = store.close().await;
    let report = report?;
    let body = evidence::render(
        &report,
        match a.format {
            ReportFormat::Html => Format::Html,
            ReportFormat::Json => Format::Json,
            ReportFormat::Csv => Format::Csv,
        },
    );
    let digest = evidence::sha256_hex(body.as_bytes());
    match &a.output {
        Some(p) => {
            std::fs::write(p, &body).with_context(|| format!("cannot write {}", p.display()))?;
            println!("SHA-256 {digest}  {}", p.display());
        }
        None => {
            print!("{body}");
            eprintln!("SHA-256 {digest}");
        }
    }
    Ok(0)
}
