//! `portwarden baseline suggest TARGETS [--ports SPEC] ...`: scans like `portwarden scan` and
//! prints a baseline for `baselines:` that expects exactly what is open now (hosts with the
//! same open ports share one), for review and commit with the rest of the config.

use clap::{Args, Subcommand, ValueEnum};
use portwarden_scan::suggest::{SuggestOptions, baseline_yaml};

use super::scan::{ScanCommon, execute};

#[derive(Args)]
pub struct BaselineArgs {
    #[command(subcommand)]
    pub command: BaselineCommand,
}

#[derive(Subcommand)]
pub enum BaselineCommand {
    /// Scan TARGETS and print a baseline (YAML for `baselines:`) expecting what is open now.
    Suggest(SuggestArgs),
}

#[derive(Args)]
pub struct SuggestArgs {
    #[command(flatten)]
    pub scan: ScanCommon,
    /// The baseline's name (further groups of hosts get `-2`, `-3`...).
    #[arg(long, default_value = "suggested")]
    pub name: String,
    /// What other open ports are: findings (`deny`) or nothing (`ignore`).
    #[arg(long, value_enum, default_value_t = Policy::Deny)]
    pub policy: Policy,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Policy {
    Deny,
    Ignore,
}

pub async fn run(a: BaselineArgs) -> anyhow::Result<u8> {
    match a.command {
        BaselineCommand::Suggest(s) => suggest(s).await,
    }
}

async fn suggest(a: SuggestArgs) -> anyhow::Result<u8> {
    if a.name.is_empty()
        || !a
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        anyhow::bail!(
            "--name `{}`: use letters, digits, `-`, `_` and `.` only",
            a.name
        );
    }
    let report = execute(&a.scan, false).await?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let yaml = baseline_yaml(
        &report,
        &SuggestOptions {
            name: a.name,
            policy: match a.policy {
                Policy::Deny => "deny",
                Policy::Ignore => "ignore",
            }
            .into(),
            command,
        },
    );
    print!("{yaml}");
    Ok(if report.cancelled { 1 } else { 0 })
}
