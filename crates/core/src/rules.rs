//! How the evaluator judges a monitor: per-tier defaults, overridable per monitor.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Tier;
use crate::duration::serde_human;

/// Latency rule: `degraded` when connect time stays above an absolute threshold, or above
/// `baseline_factor ×` the monitor's own rolling one-hour baseline, for `sustain`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatencyRule {
    #[serde(
        with = "serde_human::option",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub connect_above: Option<Duration>,
    /// `None` disables the baseline comparison.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_factor: Option<f64>,
    /// Ignore baseline excursions smaller than this (loopback at 0.05 ms × 5 is still nothing).
    #[serde(with = "serde_human")]
    pub baseline_min: Duration,
    /// How long the excess must last before the monitor is `degraded`.
    #[serde(with = "serde_human")]
    pub sustain: Duration,
}

/// Nagios-style flap detection thresholds, in percent state change over the last 21 results.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FlapRule {
    pub enabled: bool,
    pub high: f64,
    pub low: f64,
}

/// The resolved rules of one monitor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rules {
    /// Open after this many failed runs in a row.
    pub consecutive_failures: u32,
    /// ...or when more than this fraction of runs in `window` failed (with `min_samples`).
    pub failure_ratio: f64,
    #[serde(with = "serde_human")]
    pub window: Duration,
    pub min_samples: u32,
    /// Resolve after this many good runs in a row.
    pub recovery: u32,
    pub latency: LatencyRule,
    pub flap: FlapRule,
}

impl Rules {
    /// Built-in defaults per tier.
    pub fn for_tier(tier: Tier) -> Rules {
        let (consecutive_failures, failure_ratio, window_s, min_samples) = match tier {
            Tier::Critical => (2, 0.2, 120, 5),
            Tier::Important => (3, 0.2, 300, 5),
            Tier::Supporting => (3, 0.3, 900, 4),
        };
        Rules {
            consecutive_failures,
            failure_ratio,
            window: Duration::from_secs(window_s),
            min_samples,
            recovery: 2,
            latency: LatencyRule {
                connect_above: None,
                baseline_factor: Some(5.0),
                baseline_min: Duration::from_millis(50),
                sustain: Duration::from_secs(120),
            },
            flap: FlapRule {
                enabled: true,
                high: 50.0,
                low: 25.0,
            },
        }
    }

    /// Applies a partial override.
    pub fn patched(mut self, p: &RulesPatch) -> Rules {
        if let Some(v) = p.consecutive_failures {
            self.consecutive_failures = v;
        }
        if let Some(v) = p.failure_ratio {
            self.failure_ratio = v;
        }
        if let Some(v) = p.window {
            self.window = v;
        }
        if let Some(v) = p.min_samples {
            self.min_samples = v;
        }
        if let Some(v) = p.recovery {
            self.recovery = v;
        }
        if let Some(l) = &p.latency {
            if let Some(v) = l.connect_above {
                self.latency.connect_above = Some(v);
            }
            if let Some(v) = l.baseline_factor {
                self.latency.baseline_factor = (v > 0.0).then_some(v);
            }
            if let Some(v) = l.baseline_min {
                self.latency.baseline_min = v;
            }
            if let Some(v) = l.sustain {
                self.latency.sustain = v;
            }
        }
        if let Some(f) = &p.flap {
            if let Some(v) = f.enabled {
                self.flap.enabled = v;
            }
            if let Some(v) = f.high {
                self.flap.high = v;
            }
            if let Some(v) = f.low {
                self.flap.low = v;
            }
        }
        self
    }

    /// Checks ranges; returns `(field, problem)` pairs.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut v = Vec::new();
        if self.consecutive_failures == 0 {
            v.push(("consecutive_failures", "must be at least 1".to_string()));
        }
        if !(0.0..1.0).contains(&self.failure_ratio) {
            v.push((
                "failure_ratio",
                "must be a fraction from 0 up to (not including) 1, e.g. 0.2".to_string(),
            ));
        }
        if self.recovery == 0 {
            v.push(("recovery", "must be at least 1".to_string()));
        }
        if self.window.is_zero() {
            v.push(("window", "must be above zero".to_string()));
        }
        if self.latency.baseline_factor.is_some_and(|k| k <= 1.0) {
            v.push((
                "latency.baseline_factor",
                "must be above 1 (e.g. 3 = three times the usual connect time)".to_string(),
            ));
        }
        if self.flap.enabled
            && !(0.0 < self.flap.low && self.flap.low < self.flap.high && self.flap.high <= 100.0)
        {
            v.push((
                "flap",
                "needs 0 < low < high <= 100 (percent state change)".to_string(),
            ));
        }
        v
    }
}

/// `latency:` overrides.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyPatch {
    #[serde(
        default,
        with = "serde_human::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub connect_above: Option<Duration>,
    /// `0` disables the baseline comparison.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_factor: Option<f64>,
    #[serde(
        default,
        with = "serde_human::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub baseline_min: Option<Duration>,
    #[serde(
        default,
        rename = "for",
        with = "serde_human::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub sustain: Option<Duration>,
}

/// `flap:` overrides.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlapPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low: Option<f64>,
}

/// `rules:` as written in config (global, per tier, per monitor): every field optional.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_ratio: Option<f64>,
    #[serde(
        default,
        with = "serde_human::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub window: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_samples: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyPatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flap: Option<FlapPatch>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_layer() {
        let r = Rules::for_tier(Tier::Critical).patched(&RulesPatch {
            failure_ratio: Some(0.5),
            latency: Some(LatencyPatch {
                baseline_factor: Some(0.0),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(r.failure_ratio, 0.5);
        assert_eq!(r.consecutive_failures, 2);
        assert_eq!(r.latency.baseline_factor, None);
        assert!(r.problems().is_empty());
        let bad = r.patched(&RulesPatch {
            failure_ratio: Some(1.5),
            ..Default::default()
        });
        assert_eq!(bad.problems()[0].0, "failure_ratio");
    }
}
