//! What a notification says, independent of the channel that carries it.
//!
//! A [`Notification`] is one message: an [`Event`] (trigger, resolve, ...) about a group of one or
//! more [`AlertItem`]s — one per monitor. A single alert has one item; a host dying with 30 ports
//! is one notification with 30 items. Every channel renders every field of every item (see
//! [`AlertItem::facts`], the shared list the renderers walk).
//!
//! Notifications serialize to JSON (the outbox stores them; the webhook channel sends them).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use portwarden_core::{IncidentId, LastHealthy, Scope, Severity, State};
use serde::{Deserialize, Serialize};

/// Why the message is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Event {
    /// An incident opened.
    Trigger,
    /// It is over.
    Resolve,
    /// Still unresolved after `repeat_interval`.
    Repeat,
    /// Not acknowledged after `escalate_after`; sent to the next route.
    Escalate,
    /// An open incident's scope changed (regional → global or back).
    Scope,
    /// An open incident got worse (degraded or flapping → down).
    Worse,
    /// `portwarden notify test`.
    Test,
    /// The dead man's switch: Portwarden is alive.
    Heartbeat,
}

impl Event {
    pub const ALL: [Event; 8] = [
        Event::Trigger,
        Event::Resolve,
        Event::Repeat,
        Event::Escalate,
        Event::Scope,
        Event::Worse,
        Event::Test,
        Event::Heartbeat,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Event::Trigger => "trigger",
            Event::Resolve => "resolve",
            Event::Repeat => "repeat",
            Event::Escalate => "escalate",
            Event::Scope => "scope",
            Event::Worse => "worse",
            Event::Test => "test",
            Event::Heartbeat => "heartbeat",
        }
    }

    pub fn parse(s: &str) -> Option<Event> {
        Event::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state change the message reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Down,
    Degraded,
    Flapping,
    Recovered,
    /// Nothing is wrong (heartbeats).
    Ok,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Down => "down",
            Change::Degraded => "degraded",
            Change::Flapping => "flapping",
            Change::Recovered => "recovered",
            Change::Ok => "ok",
        }
    }

    /// Upper-case word for titles (`DOWN`, `RECOVERED`).
    pub fn label(self) -> &'static str {
        match self {
            Change::Down => "DOWN",
            Change::Degraded => "DEGRADED",
            Change::Flapping => "FLAPPING",
            Change::Recovered => "RECOVERED",
            Change::Ok => "OK",
        }
    }

    /// The change an incident in `state` reports when it opens (`Up` → recovered).
    pub fn from_state(state: State) -> Change {
        match state {
            State::Down => Change::Down,
            State::Degraded => Change::Degraded,
            State::Flapping => Change::Flapping,
            State::Up => Change::Recovered,
            _ => Change::Ok,
        }
    }

    /// RGB colour used by the chat channels: red, amber, purple, green, grey.
    pub fn color(self) -> u32 {
        match self {
            Change::Down => 0xD6_2D_20,
            Change::Degraded => 0xE8_A3_17,
            Change::Flapping => 0x8E_44_AD,
            Change::Recovered => 0x2E_A0_43,
            Change::Ok => 0x6A_73_7D,
        }
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One monitor inside a notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertItem {
    pub monitor: String,
    /// The target as written, e.g. `tcp://db1.internal:5432`.
    pub target: String,
    /// The check kind, e.g. `postgres`, `tcp`, `tls`.
    pub check: String,
    /// The monitor's state now (`down`, ..., `up` once recovered).
    pub state: State,
    /// Error kind code (and sub-code), e.g. `refused`, `timeout/connect`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// The service behind the port, e.g. `orders-db`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The business capability affected, e.g. `checkout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capability: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    pub severity: Severity,
    /// Global, or regional with the failing locations.
    #[serde(flatten)]
    pub scope: Scope,
    /// When the monitor went bad.
    pub since: DateTime<Utc>,
    /// When it recovered (resolve messages); the outage lasted `recovered_at - since`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered_at: Option<DateTime<Utc>>,
    /// The last observation that was fine (time and latency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_healthy: Option<LastHealthy>,
    /// Where the remediation steps live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runbook: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<IncidentId>,
    /// The incident in the web UI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_url: Option<String>,
    /// A signed link that acknowledges the incident.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_url: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Monitors that depend on this one and whose alerts are folded into it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependents: Vec<String>,
    /// Set when the incident is an exposure-guard finding rather than a monitor's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finding: Option<FindingFacts>,
}

/// What an exposure-guard finding is about (a scan against a baseline found drift).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingFacts {
    /// `unexpected_open`, `expected_open_closed` or `service_changed`.
    pub kind: String,
    pub baseline: String,
    pub host: String,
    pub port: u16,
    /// `tcp` or `udp`.
    pub transport: String,
    /// The port's state in the scan (`open`, `closed`, `filtered`, ...).
    pub state: String,
    /// The service the scan saw there: guess plus version (`ssh OpenSSH_9.2p1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_seen: Option<String>,
    /// The first bytes the service sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub banner: Option<String>,
    /// The service the baseline expects on this port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_service: Option<String>,
    /// The fingerprint the previous scan saw (`service_changed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
}

impl FindingFacts {
    /// `unexpected_open 127.0.0.1:8080/tcp`.
    pub fn summary(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{} {host}:{}/{}", self.kind, self.port, self.transport)
    }
}

impl AlertItem {
    /// How long the outage lasted (resolve messages) or has lasted until `now`.
    pub fn duration(&self, now: DateTime<Utc>) -> Duration {
        let end = self.recovered_at.unwrap_or(now);
        (end - self.since).to_std().unwrap_or_default()
    }

    /// The scope in words: `global` or `regional: eu-west, us-east`.
    pub fn scope_text(&self) -> String {
        match &self.scope {
            Scope::Global => "global".into(),
            Scope::Regional(l) if l.is_empty() => "regional".into(),
            Scope::Regional(l) => format!("regional: {}", l.join(", ")),
        }
    }

    /// `refused: connection refused`, or whichever half is known.
    pub fn error_text(&self) -> Option<String> {
        match (&self.error_kind, &self.error_message) {
            (Some(k), Some(m)) => Some(format!("{k}: {m}")),
            (Some(k), None) => Some(k.clone()),
            (None, Some(m)) => Some(m.clone()),
            (None, None) => None,
        }
    }

    /// The last healthy observation in words: `2026-11-25T10:00:00Z, connect 1.2 ms, total 3.4 ms`.
    pub fn last_healthy_text(&self) -> Option<String> {
        let h = self.last_healthy.as_ref()?;
        let mut s = fmt_time(h.at);
        if let Some(c) = h.connect_ms {
            s.push_str(&format!(", connect {}", fmt_ms(c)));
        }
        if let Some(d) = h.duration_ms {
            s.push_str(&format!(", total {}", fmt_ms(d)));
        }
        if let Some(a) = &h.address {
            s.push_str(&format!(", via {a}"));
        }
        if let Some(l) = &h.location {
            s.push_str(&format!(", from {l}"));
        }
        Some(s)
    }

    /// Every content field as `(label, value)`, in the order messages show them. Absent optional
    /// fields are left out; channels render exactly this list, so none forgets a field.
    pub fn facts(&self, now: DateTime<Utc>) -> Vec<(&'static str, String)> {
        let mut f: Vec<(&'static str, String)> = vec![
            ("Monitor", self.monitor.clone()),
            ("State", self.state.as_str().to_string()),
            ("Target", self.target.clone()),
            ("Check", self.check.clone()),
        ];
        if let Some(x) = &self.finding {
            f.push(("Finding", x.kind.clone()));
            f.push(("Baseline", x.baseline.clone()));
            f.push(("Port state", x.state.clone()));
            if let Some(s) = &x.service_seen {
                f.push(("Service seen", s.clone()));
            }
            if let Some(b) = &x.banner {
                f.push(("Banner", b.clone()));
            }
            if let Some(e) = &x.expected_service {
                f.push(("Expected service", e.clone()));
            }
            if let Some(p) = &x.previous {
                f.push(("Previously", p.clone()));
            }
        }
        if let Some(e) = self.error_text() {
            f.push(("Error", e));
        }
        if let Some(s) = &self.service {
            f.push(("Service", s.clone()));
        }
        if let Some(c) = &self.capability {
            f.push(("Capability", c.clone()));
        }
        if let Some(o) = &self.owner {
            f.push(("Owner", o.clone()));
        }
        f.push(("Severity", self.severity.as_str().to_string()));
        // A finding is what one scanner saw: regional or global does not apply.
        if self.finding.is_none() {
            f.push(("Scope", self.scope_text()));
        }
        f.push(("Since", fmt_time(self.since)));
        if let Some(r) = self.recovered_at {
            f.push(("Recovered", fmt_time(r)));
            f.push(("Duration", fmt_duration(self.duration(now))));
        }
        if let Some(h) = self.last_healthy_text() {
            f.push(("Last healthy", h));
        }
        if !self.dependents.is_empty() {
            f.push((
                "Dependents",
                format!(
                    "{} affected: {}",
                    self.dependents.len(),
                    self.dependents.join(", ")
                ),
            ));
        }
        if let Some(r) = &self.runbook {
            f.push(("Runbook", r.clone()));
        }
        if let Some(u) = &self.incident_url {
            f.push(("Incident", u.clone()));
        }
        if let Some(a) = &self.ack_url {
            f.push(("Acknowledge", a.clone()));
        }
        f
    }
}

/// One message to one receiver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub event: Event,
    /// The incident this is about (for a grouped message: the group's incident).
    /// PagerDuty's `dedup_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<IncidentId>,
    /// Identical for every retry of the same message: receivers de-duplicate on it. Sent as the
    /// `Idempotency-Key` header (and the Standard Webhooks `webhook-id`, the e-mail Message-ID).
    pub idempotency_key: String,
    pub change: Change,
    /// The group's title, e.g. `db1.internal` or the monitor's name for a single alert.
    pub title: String,
    /// What the items were grouped by, e.g. `host=db1.internal`; the monitor for single alerts.
    pub group_key: String,
    /// When the event happened.
    pub at: DateTime<Utc>,
    pub items: Vec<AlertItem>,
    /// The incident in the UI (grouped messages: the group's incident).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_url: Option<String>,
    /// A signed acknowledge link for the whole message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_url: Option<String>,
    /// The route that sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// A free line shown under the title (`escalated: not acknowledged after 15m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Notification {
    /// `incident id + event [+ sequence]`, the shape every producer should use.
    pub fn key_for(incident: IncidentId, event: Event, seq: Option<u64>) -> String {
        match seq {
            Some(s) => format!("pw-{incident}-{event}-{s}"),
            None => format!("pw-{incident}-{event}"),
        }
    }

    /// The worst severity of the items (`info` when there are none).
    pub fn severity(&self) -> Severity {
        self.items
            .iter()
            .map(|i| i.severity)
            .min()
            .unwrap_or(Severity::Info)
    }

    pub fn is_grouped(&self) -> bool {
        self.items.len() > 1
    }

    /// PagerDuty-style dedup key: the incident id, else the group key.
    pub fn dedup_key(&self) -> String {
        match self.incident_id {
            Some(id) => id.to_string(),
            None => self.group_key.clone(),
        }
    }

    /// The incident link: the message's, else the first item's.
    pub fn link(&self) -> Option<&str> {
        self.incident_url
            .as_deref()
            .or_else(|| self.items.first().and_then(|i| i.incident_url.as_deref()))
    }

    /// The acknowledge link: the message's, else the first item's (never on resolves).
    pub fn ack_link(&self) -> Option<&str> {
        if matches!(self.event, Event::Resolve | Event::Heartbeat) {
            return None;
        }
        self.ack_url
            .as_deref()
            .or_else(|| self.items.first().and_then(|i| i.ack_url.as_deref()))
    }

    /// The one-line summary every channel leads with:
    /// `DOWN orders-db (tcp://db1:5432): refused: connection refused` or
    /// `DOWN db1.internal: 30 monitors`.
    pub fn headline(&self) -> String {
        let prefix = match self.event {
            Event::Test => "[TEST] ",
            Event::Repeat => "[REPEAT] ",
            Event::Escalate => "[ESCALATED] ",
            Event::Scope => "[SCOPE CHANGED] ",
            Event::Worse => "[WORSE] ",
            _ => "",
        };
        if self.event == Event::Heartbeat {
            return format!("{prefix}Portwarden heartbeat: {}", self.title);
        }
        match self.items.as_slice() {
            [one] if one.finding.is_some() => {
                let x = one
                    .finding
                    .as_ref()
                    .map(|x| x.summary())
                    .unwrap_or_default();
                let b = one
                    .finding
                    .as_ref()
                    .map(|x| x.baseline.as_str())
                    .unwrap_or("");
                match one.recovered_at {
                    Some(r) => format!(
                        "{prefix}RESOLVED {x} (baseline {b}) after {}",
                        fmt_duration(one.duration(r))
                    ),
                    None => format!(
                        "{prefix}EXPOSURE {x} (baseline {b}): {}",
                        one.error_message.as_deref().unwrap_or("")
                    ),
                }
            }
            [one] => {
                let mut s = format!(
                    "{prefix}{} {} ({})",
                    self.change.label(),
                    one.monitor,
                    one.target
                );
                if self.change != Change::Recovered
                    && let Some(e) = one.error_text()
                {
                    s.push_str(": ");
                    s.push_str(&e);
                }
                if let Some(r) = one.recovered_at {
                    s.push_str(&format!(" after {}", fmt_duration(one.duration(r))));
                }
                s
            }
            items => format!(
                "{prefix}{} {}: {} monitors",
                self.change.label(),
                self.title,
                items.len()
            ),
        }
    }

    /// A realistic message with every field set: what `portwarden notify test` sends.
    pub fn sample(now: DateTime<Utc>) -> Notification {
        let since = now - chrono::Duration::minutes(3);
        let key = format!("pw-test-{}", now.timestamp_millis());
        Notification {
            event: Event::Test,
            incident_id: None,
            idempotency_key: key.clone(),
            change: Change::Down,
            title: "orders-db-primary".into(),
            group_key: "monitor=orders-db-primary".into(),
            at: now,
            items: vec![AlertItem {
                monitor: "orders-db-primary".into(),
                target: "tcp://db1.example.internal:5432".into(),
                check: "postgres".into(),
                state: State::Down,
                error_kind: Some("refused".into()),
                error_message: Some("connection refused (test message, nothing is down)".into()),
                service: Some("orders-db".into()),
                capability: Some("checkout".into()),
                owner: Some("team-payments".into()),
                severity: Severity::High,
                scope: Scope::Regional(vec!["eu-west".into()]),
                since,
                recovered_at: None,
                last_healthy: Some(LastHealthy {
                    at: since - chrono::Duration::seconds(20),
                    connect_ms: Some(1.2),
                    duration_ms: Some(4.8),
                    address: Some("10.0.0.5:5432".into()),
                    location: Some("eu-west".into()),
                }),
                runbook: Some("https://runbooks.example.com/orders-db".into()),
                incident_id: None,
                incident_url: Some("https://portwarden.example.com/incidents/0".into()),
                ack_url: None,
                labels: BTreeMap::from([("env".to_string(), "prod".to_string())]),
                dependents: Vec::new(),
                finding: None,
            }],
            incident_url: None,
            ack_url: None,
            route: None,
            note: Some("This is a test message from `portwarden notify test`.".into()),
        }
    }
}

/// RFC 3339 in UTC, seconds precision: `2026-11-25T10:00:00Z`.
pub fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `1.2 ms`.
pub fn fmt_ms(ms: f64) -> String {
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

/// `3m 20s`, `2h 5m`, `45s`.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    match (h, m) {
        (0, 0) => format!("{sec}s"),
        (0, _) => format!("{m}m {sec}s"),
        _ => format!("{h}h {m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_has_every_field_and_round_trips() {
        let n = Notification::sample(Utc::now());
        let labels: Vec<&str> = n.items[0].facts(n.at).iter().map(|f| f.0).collect();
        for l in [
            "Monitor",
            "State",
            "Target",
            "Check",
            "Error",
            "Service",
            "Capability",
            "Owner",
            "Severity",
            "Scope",
            "Since",
            "Last healthy",
            "Runbook",
            "Incident",
        ] {
            assert!(labels.contains(&l), "{l} missing from {labels:?}");
        }
        let json = serde_json::to_string(&n).unwrap();
        let back: Notification = serde_json::from_str(&json).unwrap();
        assert_eq!(back, n);
        assert!(
            json.contains("\"scope\":\"regional\",\"locations\":[\"eu-west\"]"),
            "{json}"
        );
    }

    #[test]
    fn a_finding_says_what_it_is() {
        let mut n = Notification::sample(Utc::now());
        n.event = Event::Trigger;
        let i = &mut n.items[0];
        i.monitor = "scan:dmz".into();
        i.target = "10.0.0.7:6379/tcp".into();
        i.error_kind = Some("unexpected_open".into());
        i.error_message =
            Some("10.0.0.7:6379/tcp is open (redis 7.2) but the baseline does not allow it".into());
        i.finding = Some(FindingFacts {
            kind: "unexpected_open".into(),
            baseline: "dmz".into(),
            host: "10.0.0.7".into(),
            port: 6379,
            transport: "tcp".into(),
            state: "open".into(),
            service_seen: Some("redis 7.2".into()),
            banner: None,
            expected_service: None,
            previous: None,
        });
        let facts = n.items[0].facts(n.at);
        let get = |k: &str| facts.iter().find(|f| f.0 == k).map(|f| f.1.as_str());
        assert_eq!(get("Finding"), Some("unexpected_open"));
        assert_eq!(get("Baseline"), Some("dmz"));
        assert_eq!(get("Service seen"), Some("redis 7.2"));
        assert_eq!(get("Owner"), Some("team-payments"));
        assert_eq!(
            get("Scope"),
            None,
            "regional/global does not apply to a scan"
        );
        assert!(
            n.headline()
                .starts_with("EXPOSURE unexpected_open 10.0.0.7:6379/tcp (baseline dmz): 10.0.0.7"),
            "{}",
            n.headline()
        );
        n.items[0].recovered_at = Some(n.items[0].since + chrono::Duration::seconds(90));
        assert_eq!(
            n.headline(),
            "RESOLVED unexpected_open 10.0.0.7:6379/tcp (baseline dmz) after 1m 30s"
        );
        let json = serde_json::to_string(&n).unwrap();
        assert_eq!(serde_json::from_str::<Notification>(&json).unwrap(), n);
    }

    #[test]
    fn headlines() {
        let mut n = Notification::sample(Utc::now());
        assert!(
            n.headline()
                .starts_with("[TEST] DOWN orders-db-primary (tcp://db1"),
            "{}",
            n.headline()
        );
        n.event = Event::Resolve;
        n.change = Change::Recovered;
        n.items[0].recovered_at = Some(n.items[0].since + chrono::Duration::seconds(200));
        assert!(n.headline().ends_with("after 3m 20s"), "{}", n.headline());
        assert_eq!(n.ack_link(), None);
        n.items.push(n.items[0].clone());
        n.title = "db1".into();
        assert_eq!(n.headline(), "RECOVERED db1: 2 monitors");
        assert_eq!(
            Notification::key_for(7, Event::Repeat, Some(2)),
            "pw-7-repeat-2"
        );
    }
}
