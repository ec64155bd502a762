//! Portwarden's engine: runs every monitor on its tier's schedule, on time, and judges the
//! results without crying wolf.
//!
//! - [`runtime::Engine`]: one scheduler task with a timer heap (no task sleeping per monitor),
//!   a fixed phase offset per monitor (hash of its name), next due = previous due + interval,
//!   skip-don't-double, a global and a per-host limit, lateness measured on every run.
//! - [`evaluator::MonitorEval`]: consecutive failures, failure ratio over a window, recovery,
//!   latency against an absolute threshold or the monitor's own baseline, Nagios-style flap
//!   detection. O(1) amortised per result.

pub mod alerting;
pub mod bench;
pub mod evaluator;
pub mod lateness;
pub mod metrics;
pub mod runtime;

pub use metrics::EngineMetrics;
pub use runtime::{
    ApplyNotes, Engine, EngineError, EngineHealth, EngineOptions, LocationView, MonitorView,
    ReloadReport, combine, default_concurrency, raise_nofile,
};
