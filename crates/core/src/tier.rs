//! Tiers: how hard a monitor is watched.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Severity;

/// Criticality tier of a monitor. Sets default interval, timeout, rules and severity.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Production databases, payment gateways, authentication: checked every 15-30 s.
    Critical,
    /// Application servers, caches, brokers: every 30-60 s.
    #[default]
    Important,
    /// Internal tools, development environments: every 2-5 min.
    Supporting,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Critical, Tier::Important, Tier::Supporting];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Critical => "critical",
            Tier::Important => "important",
            Tier::Supporting => "supporting",
        }
    }

    pub fn parse(s: &str) -> Option<Tier> {
        Tier::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Built-in defaults (editable in config under `tiers:`).
    pub fn builtin_defaults(self) -> TierDefaults {
        match self {
            Tier::Critical => TierDefaults {
                interval: Duration::from_secs(20),
                timeout: Duration::from_secs(5),
                severity: Severity::Critical,
            },
            Tier::Important => TierDefaults {
                interval: Duration::from_secs(45),
                timeout: Duration::from_secs(7),
                severity: Severity::High,
            },
            Tier::Supporting => TierDefaults {
                interval: Duration::from_secs(180),
                timeout: Duration::from_secs(10),
                severity: Severity::Low,
            },
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a tier gives its monitors unless they override it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TierDefaults {
    #[serde(with = "crate::duration::serde_human")]
    pub interval: Duration,
    #[serde(with = "crate::duration::serde_human")]
    pub timeout: Duration,
    pub severity: Severity,
}
