//! `portwarden inventory --config FILE [--format table|json]`: the resolved monitor list after
//! discovery (every source asked once), showing which source made each monitor.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde_json::json;

use crate::EXIT_USAGE;
use crate::output::{Format, print_table};

#[derive(Args)]
pub struct InventoryArgs {
    /// The config file.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// How long to wait for each source's first answer.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
}

/// Exit 0 when every source answered, 1 when one failed (what did answer is still printed).
pub async fn run(a: InventoryArgs) -> anyhow::Result<u8> {
    let loaded = match portwarden_discovery::load_file(&a.config) {
        Ok(l) => l,
        Err(diags) => {
            eprintln!("{diags}");
            return Ok(EXIT_USAGE);
        }
    };
    if !loaded.warnings.is_empty() {
        eprintln!("{}", loaded.render_warnings());
    }
    let inv = portwarden_discovery::inventory(&loaded, a.wait).await;
    let failed: Vec<_> = inv.sources.iter().filter(|s| s.state != "ok").collect();
    match a.format {
        Format::Json => {
            let monitors: Vec<_> = inv
                .monitors
                .iter()
                .map(|m| {
                    json!({
                        "name": m.name,
                        "target": m.target.to_string(),
                        "check": m.check.kind(),
                        "tier": m.tier.as_str(),
                        "interval_ms": m.interval.as_millis() as u64,
                        "timeout_ms": m.timeout.as_millis() as u64,
                        "enabled": m.enabled,
                        "source": m.source.as_deref().unwrap_or("config"),
                        "defined_at": m.defined_at,
                        "labels": m.meta.labels,
                    })
                })
                .collect();
            let out = json!({ "monitors": monitors, "sources": inv.sources });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = inv
                .monitors
                .iter()
                .map(|m| {
                    vec![
                        m.name.clone(),
                        m.target.to_string(),
                        m.check.kind().to_string(),
                        m.tier.as_str().to_string(),
                        portwarden_core::format_duration(m.interval),
                        match &m.source {
                            Some(s) => format!("discover:{s}"),
                            None => "config".into(),
                        },
                    ]
                })
                .collect();
            print_table(
                &["NAME", "TARGET", "CHECK", "TIER", "INTERVAL", "SOURCE"],
                &rows,
            );
            println!();
            let srows: Vec<Vec<String>> = inv
                .sources
                .iter()
                .map(|s| {
                    vec![
                        format!("discover:{}", s.name),
                        s.kind.to_string(),
                        s.state.to_string(),
                        s.targets.to_string(),
                        (s.monitors + s.paused).to_string(),
                        s.error.clone().unwrap_or_else(|| {
                            s.problems.first().cloned().unwrap_or_else(|| "-".into())
                        }),
                    ]
                })
                .collect();
            if !srows.is_empty() {
                print_table(
                    &["SOURCE", "KIND", "STATE", "TARGETS", "MONITORS", "PROBLEM"],
                    &srows,
                );
            }
        }
    }
    for s in &failed {
        eprintln!(
            "portwarden: discover `{}` ({}, {}): {}",
            s.name,
            s.kind,
            s.defined_at,
            s.error.as_deref().unwrap_or("no answer")
        );
    }
    Ok(if failed.is_empty() { 0 } else { 1 })
}
