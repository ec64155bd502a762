//! The config file's shape, as users write it.

use std::collections::BTreeMap;
use std::time::Duration;

use portwarden_core::duration::serde_human::option as opt_dur;
use portwarden_core::{AddressPolicy, RulesPatch, Severity, Tier};
use portwarden_probe::CheckSpec;
use portwarden_probe::checks::udp::NoResponse;
use serde::Deserialize;

/// `defaults:` — values every monitor gets unless it says otherwise.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    /// `first` or `all` addresses of a name (default `all`).
    #[serde(default)]
    pub addresses: Option<AddressPolicy>,
    /// What silence means for UDP checks without a protocol (default `unknown`).
    #[serde(default)]
    pub udp_no_response: Option<NoResponse>,
    /// Availability objective of every monitor without its own, in percent (`99.9`, `"99.9%"`).
    #[serde(default)]
    pub availability_target: Option<Percent>,
}

/// A percentage written as a number (`99.9`) or a string (`"99.9%"`); checked when resolved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Percent(pub f64);

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) => Ok(Percent(n)),
            Raw::Text(s) => s
                .trim()
                .trim_end_matches('%')
                .trim()
                .parse::<f64>()
                .map(Percent)
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "`{s}` is not a percentage; write e.g. 99.9 or \"99.9%\""
                    ))
                }),
        }
    }
}

/// One entry of `tiers:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTier {
    #[serde(default, with = "opt_dur")]
    pub interval: Option<Duration>,
    #[serde(default, with = "opt_dur")]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub severity: Option<Severity>,
    #[serde(default)]
    pub rules: Option<RulesPatch>,
}

/// `tiers:` — override the built-in tier defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTiers {
    #[serde(default)]
    pub critical: Option<RawTier>,
    #[serde(default)]
    pub important: Option<RawTier>,
    #[serde(default)]
    pub supporting: Option<RawTier>,
}

impl RawTiers {
    pub fn get(&self, t: Tier) -> Option<&RawTier> {
        match t {
            Tier::Critical => self.critical.as_ref(),
            Tier::Important => self.important.as_ref(),
            Tier::Supporting => self.supporting.as_ref(),
        }
    }
}

fn yes() -> bool {
    true
}

/// One entry of `monitors:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMonitor {
    pub name: String,
    /// `tcp://host:port`, `host:port`, `redis://cache` ...
    pub target: String,
    #[serde(default)]
    pub check: Option<CheckSpec>,
    #[serde(default)]
    pub tier: Option<Tier>,
    #[serde(default, with = "opt_dur")]
    pub interval: Option<Duration>,
    #[serde(default, with = "opt_dur")]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub addresses: Option<AddressPolicy>,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub capability: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub severity: Option<Severity>,
    #[serde(default)]
    pub runbook: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Overrides of the tier's rules.
    #[serde(default)]
    pub rules: Option<RulesPatch>,
    /// `false` keeps the monitor in config but does not run it.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Monitors (or `host:NAME`) this one depends on.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Where it is probed from: location names (`local` is the server itself, others are
    /// agents' locations). Default: every location.
    #[serde(default)]
    pub locations: Option<Vec<String>>,
    /// How many locations must see it fail before the incident is `global`.
    #[serde(default)]
    pub confirm: Option<RawConfirm>,
    /// Availability objective in percent (`99.9`); reports say whether it was met.
    #[serde(default)]
    pub availability_target: Option<Percent>,
}

/// `confirm:` of a monitor checked from several locations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfirm {
    /// Locations that must see a failure for a `global` incident (default 2, or all
    /// locations when fewer).
    #[serde(default)]
    pub min_locations: Option<u32>,
    /// Severity of a `regional` incident (default: one step below the monitor's).
    #[serde(default)]
    pub regional_severity: Option<Severity>,
}

/// One entry of `agents:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub name: String,
    pub location: String,
    /// SHA-256 (hex) of the agent's token: `portwarden agent-token` prints a token and its
    /// hash. The token itself never needs to be on the server.
    pub token_sha256: String,
    /// A revoked agent is refused (401) but kept in the list for the record.
    #[serde(default)]
    pub revoked: bool,
}

/// `engine:` — scheduler limits.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEngine {
    /// Most probes running at once (default: derived from the file descriptor limit, max 4096).
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// Most probes running at once against one host (default 8).
    #[serde(default)]
    pub per_host: Option<usize>,
    /// p99 lateness above this marks the engine `lagging` (default 1s).
    #[serde(default, with = "opt_dur")]
    pub lag_threshold: Option<Duration>,
    /// How long shutdown waits for running probes (default 10s).
    #[serde(default, with = "opt_dur")]
    pub shutdown_grace: Option<Duration>,
    /// This server's location name (default `local`).
    #[serde(default)]
    pub location: Option<String>,
}

/// `server:` — the HTTP listener and data directory.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// `IP:PORT` (default `127.0.0.1:9797`).
    #[serde(default)]
    pub listen: Option<String>,
    /// Where the embedded database lives (default `./portwarden-data`).
    #[serde(default)]
    pub data_dir: Option<String>,
    /// HTTPS: `{cert: chain.pem, key: key.pem}`.
    #[serde(default)]
    pub tls: Option<crate::web::TlsFiles>,
    /// An agent not heard from for this long is `silent`: its locations' results become
    /// `unknown` and a self-alert is raised (default 30s).
    #[serde(default, with = "opt_dur")]
    pub agent_silent_after: Option<Duration>,
}

/// `store.retention:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    #[serde(default, with = "opt_dur")]
    pub raw: Option<Duration>,
    #[serde(default, with = "opt_dur")]
    pub minute: Option<Duration>,
    #[serde(default, with = "opt_dur")]
    pub hour: Option<Duration>,
}

/// `store:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    /// `postgres://…` (several replicas on one database); absent: SQLite in `server.data_dir`.
    #[serde(default)]
    pub url: Option<portwarden_core::Secret>,
    /// PostgreSQL: bound on how long replicas go without a leader after it dies.
    #[serde(default, with = "opt_dur")]
    pub takeover: Option<Duration>,
    #[serde(default)]
    pub retention: Option<RawRetention>,
}
