//! Portwarden's domain vocabulary.
//!
//! Every other crate speaks in these words: a [`Target`] is probed by a check, producing an
//! [`Observation`] with an [`Outcome`] and, when it failed, an [`ErrorKind`]. Monitors belong to a
//! [`Tier`] and carry [`MonitorMeta`] (service, capability, owner, severity, runbook, labels).
//!
//! ```
//! use portwarden_core::{TargetUrl, Transport};
//! let t: TargetUrl = "tcp://[::1]:6379".parse().unwrap();
//! assert_eq!(t.port, Some(6379));
//! assert_eq!(t.host.as_str(), "::1");
//! assert_eq!(Transport::Tcp.as_str(), "tcp");
//! ```
//!
//! This crate does no I/O and never imports tokio.

pub mod duration;
pub mod incident;
pub mod meta;
pub mod observation;
pub mod outcome;
pub mod rules;
pub mod secret;
pub mod target;
pub mod tier;

pub use duration::{format_duration, parse_duration};
pub use incident::{
    EventKind, FINDING_MONITOR_PREFIX, Incident, IncidentEvent, IncidentId, IncidentStatus,
    LastHealthy, Scope, State, is_finding_monitor,
};
pub use meta::{MonitorMeta, Severity};
pub use observation::{Observation, Phases};
pub use outcome::{DnsFailure, ErrorKind, Outcome, Phase, ProbeError, TlsFailure};
pub use rules::{Rules, RulesPatch};
pub use secret::Secret;
pub use target::{AddressPolicy, Host, TargetError, TargetUrl, Transport};
pub use tier::{Tier, TierDefaults};
