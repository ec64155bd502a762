//! `type: teams` — Microsoft Teams through a Workflows webhook ("When a Teams webhook request is
//! received") or a legacy incoming webhook, with an Adaptive Card (schema 1.4).
//!
//! The card: the headline (coloured by the change), a context line, one container per monitor
//! with its fields as a FactSet, a compact list for the rest of a big group, and `Action.OpenUrl`
//! buttons (incident, runbook, acknowledge). Workflows answer `202 Accepted`.

use std::time::Duration;

use reqwest::Url;
use serde_json::{Value, json};

use crate::http::{self, DEFAULT_TIMEOUT, Request};
use crate::render::{self, DETAILED};
use crate::{Change, Channel, Delivered, Notification, SendError, Shared};

pub struct Teams {
    client: reqwest::Client,
    url: Url,
    timeout: Duration,
    secrets: Vec<String>,
}

impl Teams {
    pub fn new(
        shared: &Shared,
        name: &str,
        spec: &portwarden_config::receivers::TeamsSpec,
    ) -> Result<Teams, String> {
        let url = http::parse_url(name, "url", spec.url.expose())?;
        Ok(Teams {
            client: shared.http.clone(),
            secrets: http::url_secrets(&url),
            url,
            timeout: spec.timeout.unwrap_or(DEFAULT_TIMEOUT),
        })
    }
}

fn color(c: Change) -> &'static str {
    match c {
        Change::Down => "Attention",
        Change::Degraded | Change::Flapping => "Warning",
        Change::Recovered => "Good",
        Change::Ok => "Default",
    }
}

/// The Adaptive Card alone.
pub fn card(n: &Notification) -> Value {
    let mut body = vec![
        json!({"type": "TextBlock", "text": n.headline(), "weight": "Bolder", "size": "Medium", "wrap": true, "color": color(n.change)}),
        json!({"type": "TextBlock", "text": render::context_line(n), "wrap": true, "isSubtle": true, "spacing": "None"}),
    ];
    let (detailed, rest) = render::split(n, DETAILED);
    for item in detailed {
        let facts: Vec<Value> = item
            .facts(n.at)
            .into_iter()
            .filter(|(k, _)| *k != "Monitor")
            .map(|(k, v)| json!({"title": k, "value": v}))
            .collect();
        body.push(json!({
            "type": "Container",
            "separator": true,
            "items": [
                {"type": "TextBlock", "text": item.monitor, "weight": "Bolder", "wrap": true},
                {"type": "FactSet", "facts": facts},
            ],
        }));
    }
    if !rest.is_empty() {
        let list: Vec<String> = rest
            .iter()
            .map(|i| format!("- {}", render::compact(i)))
            .collect();
        body.push(json!({
            "type": "TextBlock",
            "separator": true,
            "wrap": true,
            "text": format!("and {} more:\n\n{}", rest.len(), list.join("\n")),
        }));
    }
    let actions: Vec<Value> = render::links(n)
        .into_iter()
        .map(|(title, url)| json!({"type": "Action.OpenUrl", "title": title, "url": url}))
        .collect();
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": body,
    });
    if !actions.is_empty() {
        card["actions"] = json!(actions);
    }
    card
}

/// The webhook payload: a message with the card as its one attachment.
pub fn payload(n: &Notification) -> Value {
    json!({
        "type": "message",
        "summary": n.headline(),
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card(n),
        }],
    })
}

#[async_trait::async_trait]
impl Channel for Teams {
    fn kind(&self) -> &'static str {
        "teams"
    }

    fn destination(&self) -> String {
        http::host_of(&self.url)
    }

    async fn send(&self, n: &Notification) -> Result<Delivered, SendError> {
        let a = http::send(
            &self.client,
            Request::json_post(
                "teams",
                &self.url,
                &payload(n),
                &n.idempotency_key,
                self.timeout,
                &self.secrets,
            ),
        )
        .await?;
        Ok(http::delivered(&a, None))
    }
}
