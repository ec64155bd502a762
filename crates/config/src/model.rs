//! The config file's shape, as users write it.

use std::collections::BTreeMap;
use std::time::Duration;

use portwarden_core::duration::serde_human::option as opt_dur;
use portwarden_core::{AddressPolicy, Severity, Tier};
use portwarden_probe::CheckSpec;
use portwarden_probe::checks::udp::NoResponse;
use serde::Deserialize;

/// `defaults:` — values every monitor gets unless it says otherwise.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    /// `first` or `all` addresses of a name (default `all`).
    #[serde(default)]
    pub addresses: Option<AddressPolicy>,
    /// What silence means for UDP checks without a protocol (default `unknown`).
    #[serde(default)]
    pub udp_no_response: Option<NoResponse>,
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
    /// `false` keeps the monitor in config but does not run it.
    #[serde(default = "yes")]
    pub enabled: bool,
}
