//! The engine's metrics. Labels are bounded: monitor, location, tier, check kind, phase,
//! outcome and error *kind* — never messages or addresses.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MonitorLabels {
    pub monitor: String,
    pub location: String,
    pub tier: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabels {
    pub outcome: String,
    pub error_kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub phase: String,
    pub check: String,
    pub tier: String,
}

/// Receiver names come from the config, events and results are fixed words.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotifyLabels {
    pub receiver: String,
    pub event: String,
    /// `delivered`, `failed` (will retry), `given_up`, `suppressed`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TierLabels {
    pub tier: String,
}

fn phase_histogram() -> Histogram {
    // 50 µs .. ~13 s
    Histogram::new(exponential_buckets(0.000_05, 2.5, 14))
}

/// Cheap to clone.
#[derive(Clone)]
pub struct EngineMetrics {
    pub monitor_up: Family<MonitorLabels, Gauge>,
    pub monitor_state: Family<MonitorLabels, Gauge>,
    pub phase_seconds: Family<PhaseLabels, Histogram, fn() -> Histogram>,
    pub checks: Family<CheckLabels, Counter>,
    pub skipped: Family<TierLabels, Counter>,
    pub lateness_seconds: Histogram,
    pub late_unknown: Counter,
    pub lagging: Gauge,
    pub inflight: Gauge,
    pub monitors: Gauge,
    pub incidents_open: Gauge,
    pub incident_write_errors: Counter,
    pub notifications: Family<NotifyLabels, Counter>,
    pub notify_seconds: Histogram,
    pub outbox_pending: Gauge,
}

impl Default for EngineMetrics {
    fn default() -> Self {
        EngineMetrics {
            monitor_up: Family::default(),
            monitor_state: Family::default(),
            phase_seconds: Family::new_with_constructor(phase_histogram),
            checks: Family::default(),
            skipped: Family::default(),
            lateness_seconds: Histogram::new(exponential_buckets(0.000_5, 2.5, 14)),
            late_unknown: Counter::default(),
            lagging: Gauge::default(),
            inflight: Gauge::default(),
            monitors: Gauge::default(),
            incidents_open: Gauge::default(),
            incident_write_errors: Counter::default(),
            notifications: Family::default(),
            // 1 ms .. ~60 s
            notify_seconds: Histogram::new(exponential_buckets(0.001, 2.5, 13)),
            outbox_pending: Gauge::default(),
        }
    }
}

impl EngineMetrics {
    pub fn register(&self, r: &mut Registry) {
        let r = r.sub_registry_with_prefix("portwarden");
        r.register(
            "notifications",
            "Notification attempts by receiver, event and result (delivered, failed, given_up, suppressed)",
            self.notifications.clone(),
        );
        r.register(
            "notification_send_seconds",
            "Time one notification request took (success or failure)",
            self.notify_seconds.clone(),
        );
        r.register(
            "outbox_pending",
            "Notifications queued and not yet delivered, given up or suppressed",
            self.outbox_pending.clone(),
        );
        r.register(
            "monitor_up",
            "1 when the monitor's state is up or degraded, 0 otherwise",
            self.monitor_up.clone(),
        );
        r.register(
            "monitor_state",
            "Evaluator state: -1 pending, 0 up, 1 degraded, 2 down, 3 flapping, 4 unknown, 5 maintenance, 6 paused",
            self.monitor_state.clone(),
        );
        r.register(
            "probe_phase_seconds",
            "Time spent per probe phase (dns, connect, tls, protocol)",
            self.phase_seconds.clone(),
        );
        r.register(
            "checks",
            "Probe results by outcome and error kind",
            self.checks.clone(),
        );
        r.register("checks_skipped", "Scheduled runs skipped because the previous run was still going or the engine fell a whole interval behind", self.skipped.clone());
        r.register(
            "scheduler_lateness_seconds",
            "Start of a run minus its due time",
            self.lateness_seconds.clone(),
        );
        r.register(
            "checks_late_unknown",
            "Results marked unknown because the run started later than the lag threshold",
            self.late_unknown.clone(),
        );
        r.register(
            "engine_lagging",
            "1 while p99 lateness over the last minute is above the threshold (self-alert)",
            self.lagging.clone(),
        );
        r.register(
            "checks_inflight",
            "Probes running now",
            self.inflight.clone(),
        );
        r.register("monitors", "Monitors scheduled", self.monitors.clone());
        r.register(
            "incidents_open",
            "Open incidents",
            self.incidents_open.clone(),
        );
        r.register(
            "incident_write_errors",
            "Failed attempts to write an incident change (retried)",
            self.incident_write_errors.clone(),
        );
    }
}
