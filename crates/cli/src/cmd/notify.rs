//! `portwarden notify test --config FILE --receiver NAME`: sends a sample notification through
//! a configured receiver's real channel and prints what happened.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use portwarden_notify::{Event, Notification};

use crate::EXIT_USAGE;

#[derive(Args)]
pub struct NotifyArgs {
    #[command(subcommand)]
    pub command: NotifyCommand,
}

#[derive(Subcommand)]
pub enum NotifyCommand {
    /// Send a sample message (every field filled, marked as a test) through a receiver.
    Test(TestArgs),
}

#[derive(Args)]
pub struct TestArgs {
    /// The config file that defines the receiver.
    #[arg(long, short)]
    pub config: PathBuf,
    /// The receiver's name under `receivers:`.
    #[arg(long, short)]
    pub receiver: String,
    /// Send the sample as a `trigger` or a `resolve` (default: `test`, which PagerDuty opens and
    /// closes at once).
    #[arg(long, value_parser = ["test", "trigger", "resolve"], default_value = "test")]
    pub event: String,
}

pub async fn run(a: NotifyArgs) -> anyhow::Result<u8> {
    match a.command {
        NotifyCommand::Test(t) => test(t).await,
    }
}

async fn test(a: TestArgs) -> anyhow::Result<u8> {
    let loaded = match portwarden_discovery::load_file(&a.config) {
        Ok(l) => l,
        Err(diags) => {
            eprintln!("{diags}");
            return Ok(EXIT_USAGE);
        }
    };
    let receivers = &loaded.config.receivers;
    let Some(r) = receivers.get(&a.receiver) else {
        let names: Vec<&str> = receivers.keys().map(String::as_str).collect();
        if names.is_empty() {
            eprintln!(
                "{}: no receiver `{}`: the config has no `receivers:` section (see docs/alerting.md)",
                loaded.file, a.receiver
            );
        } else {
            eprintln!(
                "{}: no receiver `{}`; the config defines: {}",
                loaded.file,
                a.receiver,
                names.join(", ")
            );
        }
        return Ok(EXIT_USAGE);
    };
    let shared = portwarden_notify::Shared::new().map_err(anyhow::Error::msg)?;
    let channel = match portwarden_notify::build_one(&shared, r) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e}", r.defined_at);
            return Ok(EXIT_USAGE);
        }
    };
    let mut n = Notification::sample(chrono::Utc::now());
    match a.event.as_str() {
        "trigger" => n.event = Event::Trigger,
        "resolve" => {
            n.event = Event::Resolve;
            n.change = portwarden_notify::Change::Recovered;
            let item = &mut n.items[0];
            item.state = portwarden_core::State::Up;
            item.recovered_at = Some(n.at);
        }
        _ => {}
    }
    let what = format!(
        "receiver `{}` ({} → {})",
        a.receiver,
        channel.kind(),
        channel.destination()
    );
    match channel.send(&n).await {
        Ok(d) => {
            let status = d
                .status
                .map(|s| format!("status {s}, "))
                .unwrap_or_default();
            let detail = d.detail.map(|s| format!(", {s}")).unwrap_or_default();
            println!(
                "{what}: delivered ({status}{} ms{detail}), idempotency key {}",
                d.latency.as_millis(),
                n.idempotency_key
            );
            Ok(0)
        }
        Err(e) => {
            let kind = if e.retryable {
                "failed (retryable; the daemon would try again)"
            } else {
                "failed (permanent; fix the receiver)"
            };
            eprintln!("{what}: {kind}: {e}");
            Ok(1)
        }
    }
}
