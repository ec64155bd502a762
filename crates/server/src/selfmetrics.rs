//! Metrics about the daemon itself (config reloads, build).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Default)]
pub struct SelfMetrics {
    /// 1 when the last config load succeeded, 0 when it failed (the old config keeps running).
    pub reload_ok: Gauge,
    pub reloads: Family<ResultLabels, Counter>,
    pub last_reload: Gauge,
}

impl SelfMetrics {
    pub fn register(&self, r: &mut Registry) {
        let p = r.sub_registry_with_prefix("portwarden");
        p.register(
            "config_reload_ok",
            "1 if the last config (re)load succeeded, 0 if it failed",
            self.reload_ok.clone(),
        );
        p.register(
            "config_reloads",
            "Config reload attempts by result",
            self.reloads.clone(),
        );
        p.register(
            "config_last_reload_timestamp_seconds",
            "Unix time of the last successful config load",
            self.last_reload.clone(),
        );
        p.register(
            "build",
            "Portwarden version",
            Info::new(vec![(
                "version".to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            )]),
        );
    }
}
