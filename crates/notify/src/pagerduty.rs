//! `type: pagerduty` — PagerDuty Events API v2 (`POST /v2/enqueue`).
//!
//! Trigger, repeat and escalate send `event_action: trigger`; resolve sends `resolve`; both with
//! `dedup_key` = the incident id, so PagerDuty keeps one alert per Portwarden incident and the
//! resolve closes it. The payload's `summary` is the headline, `source` the target's host (or
//! `source:` from config), `severity` mapped from Portwarden's (configurable), `component` the
//! service, `group` the capability, `class` the error kind, and `custom_details` every field of
//! every monitor. A test message triggers and at once resolves its own dedup key. PagerDuty
//! answers `202`; `429` means throttled (retried), other `4xx` are permanent.

use std::collections::BTreeMap;
use std::time::Duration;

use portwarden_config::receivers::{PagerDutySpec, PdSeverity};
use portwarden_core::Severity;
use reqwest::Url;
use serde_json::{Value, json};

use crate::http::{self, DEFAULT_TIMEOUT, Request};
use crate::render::cut;
use crate::{Channel, Delivered, Event, Notification, SendError, Shared};

/// PagerDuty's public endpoint.
pub const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";

pub struct PagerDuty {
    client: reqwest::Client,
    url: Url,
    routing_key: String,
    severity: BTreeMap<Severity, PdSeverity>,
    source: Option<String>,
    timeout: Duration,
    secrets: Vec<String>,
}

impl PagerDuty {
    pub fn new(shared: &Shared, name: &str, spec: &PagerDutySpec) -> Result<PagerDuty, String> {
        let url = http::parse_url(name, "url", spec.url.as_deref().unwrap_or(DEFAULT_URL))?;
        let routing_key = spec.routing_key.expose().to_string();
        if routing_key.trim().is_empty() {
            return Err(format!("receiver `{name}`: `routing_key` is empty"));
        }
        Ok(PagerDuty {
            client: shared.http.clone(),
            url,
            secrets: vec![routing_key.clone()],
            routing_key,
            severity: spec.severity.clone(),
            source: spec.source.clone(),
            timeout: spec.timeout.unwrap_or(DEFAULT_TIMEOUT),
        })
    }

    fn pd_severity(&self, s: Severity) -> PdSeverity {
        self.severity
            .get(&s)
            .copied()
            .unwrap_or_else(|| PdSeverity::default_for(s))
    }

    /// The event for `n` with `action` (`trigger` or `resolve`) and `dedup_key`.
    pub fn event(&self, n: &Notification, action: &str, dedup_key: &str) -> Value {
        let mut ev = json!({
            "routing_key": self.routing_key,
            "event_action": action,
            "dedup_key": dedup_key,
        });
        if action != "trigger" {
            return ev;
        }
        let first = n.items.first();
        let source = self
            .source
            .clone()
            .or_else(|| first.map(|i| host_of_target(&i.target)))
            .unwrap_or_else(|| "portwarden".into());
        let mut payload = json!({
            "summary": cut(&n.headline(), 1024),
            "source": cut(&source, 255),
            "severity": self.pd_severity(n.severity()).as_str(),
            "timestamp": n.at.to_rfc3339(),
            "custom_details": custom_details(n),
        });
        if let Some(i) = first {
            if let Some(s) = &i.service {
                payload["component"] = json!(s);
            }
            if let Some(c) = &i.capability {
                payload["group"] = json!(c);
            }
            if let Some(k) = &i.error_kind {
                payload["class"] = json!(k);
            }
        }
        ev["payload"] = payload;
        let mut links = Vec::new();
        for (text, url) in crate::render::links(n) {
            let text = match text {
                "Open incident" => "Incident in Portwarden",
                "Acknowledge" => "Acknowledge in Portwarden",
                other => other,
            };
            links.push(json!({"href": url, "text": text}));
        }
        if !links.is_empty() {
            ev["links"] = json!(links);
        }
        ev["client"] = json!("Portwarden");
        if let Some(u) = n.link() {
            ev["client_url"] = json!(u);
        }
        ev
    }

    async fn post(&self, n: &Notification, ev: &Value) -> Result<Delivered, SendError> {
        let a = http::send(
            &self.client,
            Request::json_post(
                "pagerduty",
                &self.url,
                ev,
                &n.idempotency_key,
                self.timeout,
                &self.secrets,
            ),
        )
        .await?;
        let key = serde_json::from_str::<Value>(&a.body)
            .ok()
            .and_then(|v| v["dedup_key"].as_str().map(|k| format!("dedup_key {k}")));
        Ok(http::delivered(&a, key))
    }
}

/// `db1.internal` from `tcp://db1.internal:5432`.
fn host_of_target(t: &str) -> String {
    let rest = t.split_once("://").map_or(t, |(_, r)| r);
    let hostport = rest.split('/').next().unwrap_or(rest);
    if let Some(v6) = hostport.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6).to_string();
    }
    hostport
        .rsplit_once(':')
        .map_or(hostport, |(h, _)| h)
        .to_string()
}

/// Every field, as PagerDuty shows it (a key-value table): a single monitor's fields at the top
/// level under their labels (`Monitor`, `Target`, ..., `Last healthy`), a group's as a list under
/// `monitors`; plus the labels, the failing locations and the ids for machines.
pub fn custom_details(n: &Notification) -> Value {
    let mut d = serde_json::Map::new();
    d.insert("event".into(), json!(n.event.as_str()));
    d.insert("change".into(), json!(n.change.as_str()));
    d.insert("idempotency_key".into(), json!(n.idempotency_key));
    if let Some(id) = n.incident_id {
        d.insert("incident_id".into(), json!(id));
    }
    if let Some(r) = &n.route {
        d.insert("route".into(), json!(r));
    }
    if let Some(note) = &n.note {
        d.insert("note".into(), json!(note));
    }
    let item_details = |i: &crate::AlertItem| {
        let mut m = serde_json::Map::new();
        for (k, v) in i.facts(n.at) {
            m.insert(k.to_string(), json!(v));
        }
        if !i.scope.locations().is_empty() {
            m.insert("locations".into(), json!(i.scope.locations()));
        }
        if !i.labels.is_empty() {
            m.insert("labels".into(), json!(i.labels));
        }
        if let Some(id) = i.incident_id {
            m.insert("incident_id".into(), json!(id));
        }
        m
    };
    match n.items.as_slice() {
        [one] => d.extend(item_details(one)),
        items => {
            d.insert("group".into(), json!(n.title));
            d.insert("group_key".into(), json!(n.group_key));
            d.insert(
                "monitors".into(),
                json!(items.iter().map(item_details).collect::<Vec<_>>()),
            );
        }
    }
    Value::Object(d)
}

#[async_trait::async_trait]
impl Channel for PagerDuty {
    fn kind(&self) -> &'static str {
        "pagerduty"
    }

    fn destination(&self) -> String {
        http::host_of(&self.url)
    }

    async fn send(&self, n: &Notification) -> Result<Delivered, SendError> {
        match n.event {
            Event::Trigger | Event::Repeat | Event::Escalate | Event::Scope | Event::Worse => {
                self.post(n, &self.event(n, "trigger", &n.dedup_key()))
                    .await
            }
            Event::Resolve => {
                self.post(n, &self.event(n, "resolve", &n.dedup_key()))
                    .await
            }
            Event::Test => {
                // Its own key, opened and closed at once: proves the integration works without
                // leaving an incident behind.
                let key = n.idempotency_key.clone();
                let d = self.post(n, &self.event(n, "trigger", &key)).await?;
                self.post(n, &self.event(n, "resolve", &key)).await?;
                Ok(d)
            }
            Event::Heartbeat => Err(SendError::permanent(
                "pagerduty: the Events API takes no heartbeats; send them to a webhook receiver",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hosts_of_targets() {
        assert_eq!(
            super::host_of_target("tcp://db1.internal:5432"),
            "db1.internal"
        );
        assert_eq!(super::host_of_target("udp://[::1]:53"), "::1");
        assert_eq!(super::host_of_target("redis://cache"), "cache");
        assert_eq!(super::host_of_target("h:1"), "h");
    }
}
