//! One probe result.

use std::net::SocketAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{ErrorKind, Outcome, Phase, ProbeError};

/// Time spent in each phase of a probe, in milliseconds. A phase that did not run is `None`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Phases {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_ms: Option<f64>,
}

impl Phases {
    pub fn get(&self, p: Phase) -> Option<f64> {
        match p {
            Phase::Dns => self.dns_ms,
            Phase::Connect => self.connect_ms,
            Phase::Tls => self.tls_ms,
            Phase::Protocol => self.protocol_ms,
        }
    }

    pub fn set(&mut self, p: Phase, ms: f64) {
        let slot = match p {
            Phase::Dns => &mut self.dns_ms,
            Phase::Connect => &mut self.connect_ms,
            Phase::Tls => &mut self.tls_ms,
            Phase::Protocol => &mut self.protocol_ms,
        };
        *slot = Some(ms);
    }

    /// Adds time to a phase (protocol time accumulates over several exchanges).
    pub fn add(&mut self, p: Phase, ms: f64) {
        let cur = self.get(p).unwrap_or(0.0);
        self.set(p, cur + ms);
    }
}

/// One probe of one monitor from one location.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "ObservationRepr", try_from = "ObservationRepr")]
pub struct Observation {
    /// Monitor name (for `portwarden check tcp://...` the target itself).
    pub monitor: String,
    /// Where the probe ran: `local` or an agent's location name.
    pub location: String,
    /// The target as configured (`tcp://db1:5432`).
    pub target: String,
    /// Check kind (`tcp`, `tls`, `redis`, ...).
    pub check: String,
    /// The address actually probed, once resolved.
    pub address: Option<SocketAddr>,
    pub outcome: Outcome,
    /// Why it is not `up` (also set for some `degraded` and `unknown` results).
    pub error: Option<ProbeError>,
    /// A short human note for up/degraded results (e.g. "certificate expires in 10 days").
    pub note: Option<String>,
    pub phases: Phases,
    /// Wall-clock start (for records only; durations come from a monotonic clock).
    pub started_at: DateTime<Utc>,
    /// Total duration of the probe in milliseconds.
    pub duration_ms: f64,
    /// When the scheduler wanted it to start (wall clock), for scheduled runs.
    pub scheduled_at: Option<DateTime<Utc>>,
    /// Start minus due time, in milliseconds, for scheduled runs.
    pub lateness_ms: Option<f64>,
    /// Check-specific facts: server version, replication lag, pool use, certificate expiry...
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl Observation {
    /// The connect time if the probe got that far (the latency most rules look at).
    pub fn connect_ms(&self) -> Option<f64> {
        self.phases.connect_ms
    }

    /// The message shown to humans: the error message, or the note.
    pub fn message(&self) -> Option<&str> {
        self.error
            .as_ref()
            .map(|e| e.message.as_str())
            .or(self.note.as_deref())
    }

    pub fn error_kind(&self) -> Option<ErrorKind> {
        self.error.as_ref().map(|e| e.kind)
    }
}

/// The flat wire/JSON shape of an observation: `error_kind`, `error_subkind` and `message` are
/// top-level strings so shell tools (`jq .error_kind`) and Nagios wrappers can use them.
#[derive(Serialize, Deserialize)]
struct ObservationRepr {
    monitor: String,
    #[serde(default = "local")]
    location: String,
    target: String,
    check: String,
    outcome: Outcome,
    error_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error_subkind: Option<String>,
    message: Option<String>,
    phases: Phases,
    address: Option<String>,
    started_at: DateTime<Utc>,
    duration_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scheduled_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lateness_ms: Option<f64>,
    #[serde(default)]
    details: serde_json::Map<String, serde_json::Value>,
}

fn local() -> String {
    "local".into()
}

impl From<Observation> for ObservationRepr {
    fn from(o: Observation) -> Self {
        let (error_kind, error_subkind, message) = match &o.error {
            Some(e) => (
                Some(e.kind.as_str().to_string()),
                e.kind.sub().map(str::to_string),
                Some(e.message.clone()),
            ),
            None => (None, None, o.note.clone()),
        };
        ObservationRepr {
            monitor: o.monitor,
            location: o.location,
            target: o.target,
            check: o.check,
            outcome: o.outcome,
            error_kind,
            error_subkind,
            message,
            phases: o.phases,
            address: o.address.map(|a| a.to_string()),
            started_at: o.started_at,
            duration_ms: o.duration_ms,
            scheduled_at: o.scheduled_at,
            lateness_ms: o.lateness_ms,
            details: o.details,
        }
    }
}

impl TryFrom<ObservationRepr> for Observation {
    type Error = String;

    fn try_from(r: ObservationRepr) -> Result<Self, Self::Error> {
        let address = match r.address {
            Some(a) => Some(
                a.parse::<SocketAddr>()
                    .map_err(|e| format!("bad address `{a}`: {e}"))?,
            ),
            None => None,
        };
        let (error, note) = match r.error_kind {
            Some(code) => {
                let kind = ErrorKind::from_codes(&code, r.error_subkind.as_deref())
                    .ok_or_else(|| format!("unknown error_kind `{code}`"))?;
                (
                    Some(ProbeError::new(kind, r.message.unwrap_or_default())),
                    None,
                )
            }
            None => (None, r.message),
        };
        Ok(Observation {
            monitor: r.monitor,
            location: r.location,
            target: r.target,
            check: r.check,
            address,
            outcome: r.outcome,
            error,
            note,
            phases: r.phases,
            started_at: r.started_at,
            duration_ms: r.duration_ms,
            scheduled_at: r.scheduled_at,
            lateness_ms: r.lateness_ms,
            details: r.details,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TlsFailure;

    #[test]
    fn json_shape_is_flat_and_round_trips() {
        let o = Observation {
            monitor: "web".into(),
            location: "local".into(),
            target: "tls://example.test:443".into(),
            check: "tls".into(),
            address: Some("127.0.0.1:443".parse().unwrap()),
            outcome: Outcome::Down,
            error: Some(ProbeError::new(
                ErrorKind::Tls(TlsFailure::Expired),
                "expired 3 days ago",
            )),
            note: None,
            phases: Phases {
                connect_ms: Some(0.4),
                tls_ms: Some(2.0),
                ..Default::default()
            },
            started_at: Utc::now(),
            duration_ms: 2.5,
            scheduled_at: None,
            lateness_ms: None,
            details: serde_json::Map::new(),
        };
        let v = serde_json::to_value(&o).unwrap();
        assert_eq!(v["error_kind"], "tls");
        assert_eq!(v["error_subkind"], "expired");
        assert_eq!(v["message"], "expired 3 days ago");
        assert_eq!(v["phases"]["tls_ms"], 2.0);
        assert_eq!(v["address"], "127.0.0.1:443");
        let back: Observation = serde_json::from_value(v).unwrap();
        assert_eq!(back, o);
    }
}
