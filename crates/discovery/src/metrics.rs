//! Discovery's own metrics (`portwarden_discovery_*`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefreshLabels {
    pub source: String,
    /// `ok`, `error` (source failed), `refused` (above `max_monitors`).
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MonitorStateLabels {
    pub source: String,
    /// `active` or `paused` (gone from the source, in its grace period).
    pub state: String,
}

#[derive(Clone, Default)]
pub struct DiscoveryMetrics {
    /// 1 when the last refresh of the source succeeded.
    pub source_up: Family<SourceLabels, Gauge>,
    pub refreshes: Family<RefreshLabels, Counter>,
    /// Targets in the last good answer.
    pub targets: Family<SourceLabels, Gauge>,
    pub monitors: Family<MonitorStateLabels, Gauge>,
    pub retired: Family<SourceLabels, Counter>,
    pub last_success: Family<SourceLabels, Gauge>,
}

impl DiscoveryMetrics {
    pub fn register(&self, r: &mut Registry) {
        let p = r.sub_registry_with_prefix("portwarden_discovery");
        p.register(
            "source_up",
            "1 if the last refresh of the discovery source succeeded, 0 if it failed or was refused (the last good set is kept)",
            self.source_up.clone(),
        );
        p.register(
            "refreshes",
            "Discovery refreshes by result (ok, error, refused)",
            self.refreshes.clone(),
        );
        p.register(
            "targets",
            "Targets in the source's last good answer",
            self.targets.clone(),
        );
        p.register(
            "monitors",
            "Discovered monitors by state (active, paused while gone from the source)",
            self.monitors.clone(),
        );
        p.register(
            "retired",
            "Discovered monitors retired after their grace period",
            self.retired.clone(),
        );
        p.register(
            "last_success_timestamp_seconds",
            "Unix time of the source's last successful refresh",
            self.last_success.clone(),
        );
    }
}
