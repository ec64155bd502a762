//! `type: slack` — a Slack incoming webhook with a Block Kit message.
//!
//! Layout: a header with the headline, a context line (event, route, note), one section per
//! monitor with every field as `*Label:* value` lines, a compact list for the rest of a big
//! group, and buttons (incident, runbook, acknowledge). `text` carries the headline for
//! notifications and clients without blocks.

use std::time::Duration;

use reqwest::Url;
use serde_json::{Value, json};

use crate::http::{self, DEFAULT_TIMEOUT, Request};
use crate::render::{self, DETAILED, cut};
use crate::{Channel, Delivered, Notification, SendError, Shared};

pub struct Slack {
    client: reqwest::Client,
    url: Url,
    timeout: Duration,
    secrets: Vec<String>,
}

impl Slack {
    pub fn new(
        shared: &Shared,
        name: &str,
        spec: &portwarden_config::receivers::SlackSpec,
    ) -> Result<Slack, String> {
        let url = http::parse_url(name, "url", spec.url.expose())?;
        Ok(Slack {
            client: shared.http.clone(),
            secrets: http::url_secrets(&url),
            url,
            timeout: spec.timeout.unwrap_or(DEFAULT_TIMEOUT),
        })
    }
}

/// Escapes text for mrkdwn (`&`, `<`, `>`).
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn mrkdwn(text: String) -> Value {
    json!({"type": "mrkdwn", "text": cut(&text, 3000)})
}

/// The Block Kit payload.
pub fn payload(n: &Notification) -> Value {
    let now = n.at;
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": cut(&n.headline(), 150), "emoji": true}}),
        json!({"type": "context", "elements": [mrkdwn(esc(&render::context_line(n)))]}),
    ];
    let (detailed, rest) = render::split(n, DETAILED);
    for item in detailed {
        let title = match &item.incident_url {
            Some(u) => format!("*<{}|{}>*", esc(u), esc(&item.monitor)),
            None => format!("*{}*", esc(&item.monitor)),
        };
        let mut lines = vec![title];
        for (label, value) in item.facts(now) {
            if label == "Monitor" {
                continue;
            }
            let v = if value.starts_with("http://") || value.starts_with("https://") {
                format!("<{}>", esc(&value))
            } else {
                esc(&value)
            };
            lines.push(format!("*{label}:* {v}"));
        }
        blocks.push(json!({"type": "divider"}));
        blocks.push(json!({"type": "section", "text": mrkdwn(lines.join("\n"))}));
    }
    if !rest.is_empty() {
        let mut chunk = format!("*and {} more:*", rest.len());
        for i in rest {
            let line = format!("\n• {}", esc(&render::compact(i)));
            if chunk.len() + line.len() > 2900 {
                blocks.push(json!({"type": "section", "text": mrkdwn(chunk)}));
                chunk = String::new();
            }
            chunk.push_str(&line);
        }
        blocks.push(json!({"type": "section", "text": mrkdwn(chunk)}));
    }
    let buttons: Vec<Value> = render::links(n)
        .into_iter()
        .map(|(label, url)| {
            let mut b = json!({"type": "button", "text": {"type": "plain_text", "text": label}, "url": url});
            if label == "Acknowledge" {
                b["style"] = json!("primary");
            }
            b
        })
        .collect();
    if !buttons.is_empty() {
        blocks.push(json!({"type": "actions", "elements": buttons}));
    }
    blocks.truncate(50);
    json!({"text": cut(&n.headline(), 3000), "blocks": blocks})
}

#[async_trait::async_trait]
impl Channel for Slack {
    fn kind(&self) -> &'static str {
        "slack"
    }

    fn destination(&self) -> String {
        http::host_of(&self.url)
    }

    async fn send(&self, n: &Notification) -> Result<Delivered, SendError> {
        let a = http::send(
            &self.client,
            Request::json_post(
                "slack",
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
