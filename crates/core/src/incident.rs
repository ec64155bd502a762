//! Incidents: a period of a monitor being bad, with a timeline.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Outcome, Severity};

pub type IncidentId = i64;

/// Incidents of exposure-guard findings are filed under `scan:<baseline>` instead of a monitor
/// (a monitor may not be named so). The guard opens and resolves them; the engine leaves them be.
pub const FINDING_MONITOR_PREFIX: &str = "scan:";

/// Whether an incident's monitor name is an exposure-guard baseline's (`scan:<baseline>`).
pub fn is_finding_monitor(monitor: &str) -> bool {
    monitor.starts_with(FINDING_MONITOR_PREFIX)
}

/// The evaluator's verdict on a monitor (per location, and combined).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// No result yet (new monitor).
    Pending,
    Up,
    Degraded,
    Down,
    /// Changing state too often to trust either; notifies once.
    Flapping,
    /// We could not judge (our side failed, or we were lagging).
    Unknown,
    /// Inside a maintenance window or silenced: recorded, never notified.
    Maintenance,
    /// Disabled in config.
    Paused,
}

impl State {
    pub const ALL: [State; 8] = [
        State::Pending,
        State::Up,
        State::Degraded,
        State::Down,
        State::Flapping,
        State::Unknown,
        State::Maintenance,
        State::Paused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Up => "up",
            State::Degraded => "degraded",
            State::Down => "down",
            State::Flapping => "flapping",
            State::Unknown => "unknown",
            State::Maintenance => "maintenance",
            State::Paused => "paused",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// A numeric code for the `portwarden_monitor_state` gauge (documented in the README).
    pub fn code(self) -> i64 {
        match self {
            State::Pending => -1,
            State::Up => 0,
            State::Degraded => 1,
            State::Down => 2,
            State::Flapping => 3,
            State::Unknown => 4,
            State::Maintenance => 5,
            State::Paused => 6,
        }
    }

    /// States that hold an incident open.
    pub fn is_bad(self) -> bool {
        matches!(self, State::Down | State::Degraded | State::Flapping)
    }

    /// How bad a state is, for "did an open incident get worse": down above degraded and
    /// flapping, above everything else.
    pub fn gravity(self) -> u8 {
        match self {
            State::Down => 2,
            State::Degraded | State::Flapping => 1,
            _ => 0,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Outcome> for State {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Up => State::Up,
            Outcome::Degraded => State::Degraded,
            Outcome::Down => State::Down,
            Outcome::Unknown => State::Unknown,
        }
    }
}

/// Where an incident is seen: everywhere that probes it, or only some locations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "scope", content = "locations", rename_all = "lowercase")]
pub enum Scope {
    Global,
    Regional(Vec<String>),
}

impl Scope {
    pub fn as_str(&self) -> &'static str {
        match self {
            Scope::Global => "global",
            Scope::Regional(_) => "regional",
        }
    }

    pub fn locations(&self) -> &[String] {
        match self {
            Scope::Global => &[],
            Scope::Regional(l) => l,
        }
    }
}

/// The last observation that was fine, shown in every alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastHealthy {
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IncidentStatus {
    Open,
    Resolved,
}

impl IncidentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Open => "open",
            IncidentStatus::Resolved => "resolved",
        }
    }
}

/// An incident as stored and served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: IncidentId,
    pub monitor: String,
    pub status: IncidentStatus,
    /// The worst state seen while open (down, degraded or flapping).
    pub state: State,
    pub severity: Severity,
    #[serde(flatten)]
    pub scope: Scope,
    pub opened_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_by: Option<String>,
    /// Error kind code (and sub-code) that opened it, e.g. `refused`, `timeout/connect`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_healthy: Option<LastHealthy>,
}

/// What happened on an incident's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Opened,
    /// The state changed while open (down → flapping, degraded → down...).
    StateChanged,
    /// The scope changed (regional → global).
    ScopeChanged,
    Acknowledged,
    Escalated,
    /// A notification attempt (with its receiver, status and latency in `data`).
    Notified,
    Resolved,
    Note,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Opened => "opened",
            EventKind::StateChanged => "state_changed",
            EventKind::ScopeChanged => "scope_changed",
            EventKind::Acknowledged => "acknowledged",
            EventKind::Escalated => "escalated",
            EventKind::Notified => "notified",
            EventKind::Resolved => "resolved",
            EventKind::Note => "note",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        [
            EventKind::Opened,
            EventKind::StateChanged,
            EventKind::ScopeChanged,
            EventKind::Acknowledged,
            EventKind::Escalated,
            EventKind::Notified,
            EventKind::Resolved,
            EventKind::Note,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// One entry of an incident's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentEvent {
    pub at: DateTime<Utc>,
    pub kind: EventKind,
    pub message: String,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
}

impl IncidentEvent {
    pub fn new(at: DateTime<Utc>, kind: EventKind, message: impl Into<String>) -> Self {
        IncidentEvent {
            at,
            kind,
            message: message.into(),
            data: serde_json::Value::Null,
        }
    }

    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.data = data;
        self
    }
}
