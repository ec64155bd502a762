//! `portwarden check TARGET... | --config FILE [--monitor NAME]`: probe once, print, exit with
//! the Nagios code of the worst result.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use portwarden_core::{AddressPolicy, Outcome, TargetUrl};
use portwarden_probe::{CheckSpec, ProbeSpec, Prober, Resolver, ResolverSpec};

use crate::EXIT_USAGE;
use crate::output::{self, Format};

#[derive(Args)]
pub struct CheckArgs {
    /// Targets: tcp://HOST:PORT, udp://HOST:PORT, tls://HOST:PORT (IPv6 as tcp://[::1]:6379).
    pub targets: Vec<String>,
    /// Probe the monitors of this config file.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Only these monitors from the config (repeatable).
    #[arg(long = "monitor", short, requires = "config")]
    pub monitors: Vec<String>,
    /// Time allowed for each probe (default 5s for targets; the monitor's own with --config).
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// DNS server to resolve host names with, as IP:PORT (default: the system's).
    #[arg(long)]
    pub resolver: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Probe the first address of a name, or all of them (default all).
    #[arg(long, value_enum)]
    pub addresses: Option<Addresses>,
    /// List every check kind with its default port and options, then exit.
    #[arg(long)]
    pub list_checks: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Addresses {
    First,
    All,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    portwarden_core::parse_duration(s)
}

pub async fn run(a: CheckArgs) -> anyhow::Result<u8> {
    if a.list_checks {
        output::print_catalogue(a.format);
        return Ok(0);
    }
    if a.targets.is_empty() && a.config.is_none() {
        bail!("nothing to check: give targets (e.g. `tcp://127.0.0.1:6379`) or --config FILE");
    }
    let addresses = a.addresses.map(|x| match x {
        Addresses::First => AddressPolicy::First,
        Addresses::All => AddressPolicy::All,
    });
    let mut resolver_spec = ResolverSpec::System;
    let mut specs: Vec<ProbeSpec> = Vec::new();

    if let Some(path) = &a.config {
        let loaded = match portwarden_config::load_file(path) {
            Ok(l) => l,
            Err(diags) => {
                eprintln!("{diags}");
                return Ok(EXIT_USAGE);
            }
        };
        if !loaded.warnings.is_empty() {
            eprintln!("{}", loaded.render_warnings());
        }
        let config = loaded.config;
        resolver_spec = config.resolver.clone();
        for name in &a.monitors {
            if config.monitor(name).is_none() {
                let names: Vec<&str> = config.monitors.iter().map(|m| m.name.as_str()).collect();
                bail!(
                    "no monitor named `{name}` in {}; {}",
                    path.display(),
                    portwarden_config::diag::did_you_mean(name, &names)
                );
            }
        }
        for m in &config.monitors {
            let wanted = if a.monitors.is_empty() {
                m.enabled
            } else {
                a.monitors.contains(&m.name)
            };
            if !wanted {
                continue;
            }
            let mut spec = m
                .probe_spec()
                .with_context(|| format!("monitor `{}` ({})", m.name, m.defined_at))?;
            if let Some(t) = a.timeout {
                spec.timeout = t;
            }
            if let Some(p) = addresses {
                spec.addresses = p;
            }
            specs.push(spec);
        }
    }

    for raw in &a.targets {
        let target: TargetUrl = raw.parse().with_context(|| format!("target `{raw}`"))?;
        let scheme = target.scheme.clone().unwrap_or_else(|| "tcp".into());
        let Some(check) = CheckSpec::for_scheme(&scheme) else {
            let kinds: Vec<&str> = portwarden_probe::CATALOGUE.iter().map(|i| i.name).collect();
            bail!(
                "target `{raw}`: unknown scheme `{scheme}://`; known: {}",
                kinds.join(", ")
            );
        };
        let spec = ProbeSpec::new(
            raw.as_str(),
            target,
            check,
            a.timeout.unwrap_or(Duration::from_secs(5)),
        )
        .with_context(|| format!("target `{raw}`"))?
        .with_addresses(addresses.unwrap_or(AddressPolicy::All));
        specs.push(spec);
    }

    if let Some(r) = &a.resolver {
        let addr = portwarden_config::parse_resolver(r).map_err(anyhow::Error::msg)?;
        resolver_spec = ResolverSpec::Server(addr);
    }
    let resolver = Resolver::new(&resolver_spec)?;
    let prober = Prober::new(resolver, "local");

    let runs = specs.iter().map(|s| prober.probe(s));
    let observations: Vec<_> = futures::future::join_all(runs)
        .await
        .into_iter()
        .flatten()
        .collect();
    output::print_observations(&observations, a.format);

    let worst = Outcome::worst(observations.iter().map(|o| o.outcome)).unwrap_or(Outcome::Unknown);
    Ok(worst.nagios_code() as u8)
}
