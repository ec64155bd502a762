//! `portwarden scan TARGETS --ports SPEC [--udp] ...`: a port scan, printed as a table, JSON or
//! CSV. Every target and the port spec are checked before the first packet.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, ValueEnum};
use portwarden_core::Transport;
use portwarden_scan::output::{self, Shown};
use portwarden_scan::{
    Cidr, PortSet, Progress, ScanOptions, ScanReport, ScanRequest, Scanner, TargetPolicy,
};

#[derive(Args)]
pub struct ScanArgs {
    #[command(flatten)]
    pub common: ScanCommon,
    /// List closed and filtered ports too (the summary always counts them).
    #[arg(long)]
    pub all_states: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ScanFormat::Table)]
    pub format: ScanFormat,
}

/// What to scan and how (`scan` and `baseline suggest`).
#[derive(Args)]
pub struct ScanCommon {
    /// Host names, IP addresses and CIDR blocks (IPv4 and IPv6), e.g. `10.0.0.0/24 db1 ::1`.
    #[arg(required = true)]
    pub targets: Vec<String>,
    /// Ports: `22,80,443,8000-8100`, `top100`, `top1000` (the most often open ones) or `all`.
    #[arg(long, short, default_value = "top1000")]
    pub ports: String,
    /// Scan the ports over UDP instead of TCP.
    #[arg(long)]
    pub udp: bool,
    /// Also scan these UDP ports (with TCP `--ports`).
    #[arg(long, value_name = "SPEC", conflicts_with = "udp")]
    pub udp_ports: Option<String>,
    /// Probes started per second, in total (default: as fast as the limits allow).
    #[arg(long, value_name = "PPS")]
    pub rate: Option<u32>,
    /// Probes in flight at once, in total (default: from the file descriptor limit).
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// Probes in flight at once to one host.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub per_host: usize,
    /// Wait for an answer this long per attempt.
    #[arg(long, value_parser = parse_duration, default_value = "1500ms")]
    pub timeout: Duration,
    /// Extra attempts for silent ports (TCP timeouts; UDP rounds).
    #[arg(long, default_value_t = 1)]
    pub retries: u32,
    /// Do not read banners or guess services on open ports.
    #[arg(long)]
    pub no_banners: bool,
    /// Refuse any target larger than this many addresses (default 65536: an IPv4 /16).
    #[arg(long, value_name = "N", default_value_t = portwarden_scan::targets::DEFAULT_MAX_ADDRESSES)]
    pub max_addresses: u64,
    /// Only scan inside these blocks (repeatable); anything else is refused.
    #[arg(long = "allow", value_name = "CIDR")]
    pub allow: Vec<String>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ScanFormat {
    Table,
    Json,
    Csv,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    portwarden_core::parse_duration(s)
}

/// Builds the request from arguments; every error names the argument (and column).
pub fn request(a: &ScanCommon, keep_closed: bool) -> anyhow::Result<ScanRequest> {
    let main = if a.udp {
        Transport::Udp
    } else {
        Transport::Tcp
    };
    let ports = PortSet::parse(&a.ports, main).map_err(|e| anyhow::anyhow!("--ports: {e}"))?;
    let extra_udp = match &a.udp_ports {
        Some(s) => Some(
            PortSet::parse(s, Transport::Udp).map_err(|e| anyhow::anyhow!("--udp-ports: {e}"))?,
        ),
        None => None,
    };
    let allow = if a.allow.is_empty() {
        None
    } else {
        let mut v = Vec::new();
        for (i, s) in a.allow.iter().enumerate() {
            v.push(Cidr::parse(s).map_err(|e| anyhow::anyhow!("--allow {} `{s}`: {e}", i + 1))?);
        }
        Some(v)
    };
    if a.max_addresses == 0 {
        bail!("--max-addresses must be at least 1");
    }
    let policy = TargetPolicy {
        max_addresses: a.max_addresses,
        allow,
    };
    let options = ScanOptions {
        timeout: a.timeout,
        retries: a.retries,
        concurrency: a.concurrency.unwrap_or(0),
        per_host: a.per_host.max(1),
        rate: a.rate,
        banners: !a.no_banners,
        udp_timeout: a.timeout,
        udp_retries: a.retries.max(1),
        keep_closed,
        policy,
        ..ScanOptions::default()
    };
    let (tcp_ports, udp_ports) = if a.udp {
        (None, Some(ports))
    } else {
        (Some(ports), extra_udp)
    };
    Ok(ScanRequest {
        targets: a.targets.clone(),
        tcp_ports,
        udp_ports,
        options,
    })
}

pub async fn run(a: ScanArgs) -> anyhow::Result<u8> {
    let report = execute(&a.common, a.all_states).await?;
    let shown = if a.all_states {
        Shown::All
    } else {
        Shown::Interesting
    };
    let text = match a.format {
        ScanFormat::Table => output::table(&report, shown),
        ScanFormat::Json => output::json(&report),
        ScanFormat::Csv => output::csv(&report, shown),
    };
    print!("{text}");
    if !text.ends_with('\n') {
        println!();
    }
    Ok(if report.cancelled { 1 } else { 0 })
}

/// Checks every target, then scans (progress bar on a terminal, Ctrl-C stops it early).
pub async fn execute(a: &ScanCommon, keep_closed: bool) -> anyhow::Result<ScanReport> {
    let req = request(a, keep_closed)?;
    // Check every target before anything is sent (size, allowlist, names).
    for (i, t) in req.targets.iter().enumerate() {
        portwarden_scan::TargetSpec::parse(t, &req.options.policy)
            .map_err(|e| anyhow::anyhow!("target {} `{t}`: {e}", i + 1))?;
    }
    let scanner = Scanner::system()?;
    let progress = Arc::new(Progress::default());
    let bar = std::io::stderr().is_terminal().then(|| {
        let pb = indicatif::ProgressBar::new(0);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {pos}/{len} ports [{bar:30}] {per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        pb
    });
    let ticker = bar.clone().map(|pb| {
        let p = progress.clone();
        tokio::spawn(async move {
            loop {
                pb.set_length(p.total.load(Ordering::Relaxed));
                pb.set_position(p.done.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    });
    {
        let p = progress.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                p.cancel.store(true, Ordering::Relaxed);
            }
        });
    }
    let report = scanner.run(&req, Some(progress.clone())).await;
    if let Some(t) = ticker {
        t.abort();
    }
    if let Some(pb) = bar {
        pb.finish_and_clear();
    }
    Ok(report?)
}
