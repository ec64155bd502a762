//! `type: discord` — a Discord channel webhook with embeds.
//!
//! A single alert is one embed with every field as an embed field; a group gets one embed per
//! monitor (up to 10, Discord's limit) with the fields as lines, and the rest listed in the
//! message text. Discord's limits are kept: 256-character titles, 1024-character field values,
//! 6000 characters over all embeds, 2000 for the content. Rate limits (429) carry
//! `retry_after` in the JSON body as well as the `Retry-After` header; the longer one wins.

use std::time::Duration;

use reqwest::Url;
use serde_json::{Value, json};

use crate::http::{self, DEFAULT_TIMEOUT, Request};
use crate::render::{self, cut};
use crate::{AlertItem, Channel, Delivered, Notification, SendError, Shared};

pub struct Discord {
    client: reqwest::Client,
    url: Url,
    username: Option<String>,
    timeout: Duration,
    secrets: Vec<String>,
}

impl Discord {
    pub fn new(
        shared: &Shared,
        name: &str,
        spec: &portwarden_config::receivers::DiscordSpec,
    ) -> Result<Discord, String> {
        let mut url = http::parse_url(name, "url", spec.url.expose())?;
        let secrets = http::url_secrets(&url);
        // `wait=true`: Discord answers with the created message (200) instead of 204, and
        // reports errors synchronously.
        if !url.query_pairs().any(|(k, _)| k == "wait") {
            url.query_pairs_mut().append_pair("wait", "true");
        }
        Ok(Discord {
            client: shared.http.clone(),
            secrets,
            url,
            username: spec.username.clone(),
            timeout: spec.timeout.unwrap_or(DEFAULT_TIMEOUT),
        })
    }
}

const TOTAL: usize = 6000;

fn embed_len(e: &Value) -> usize {
    let s = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
    let mut n = s(&e["title"]) + s(&e["description"]) + s(&e["footer"]["text"]);
    if let Some(fields) = e["fields"].as_array() {
        n += fields
            .iter()
            .map(|f| s(&f["name"]) + s(&f["value"]))
            .sum::<usize>();
    }
    n
}

fn item_embed(n: &Notification, item: &AlertItem, as_fields: bool) -> Value {
    let facts = item.facts(n.at);
    let title = if n.is_grouped() {
        cut(&format!("{} {}", item.monitor, item.state), 256)
    } else {
        cut(&n.headline(), 256)
    };
    let mut e = json!({
        "title": title,
        "color": crate::Change::from_state(item.state).color(),
        "timestamp": n.at.to_rfc3339(),
    });
    if let Some(u) = &item.incident_url {
        e["url"] = json!(u);
    }
    if as_fields {
        let fields: Vec<Value> = facts
            .iter()
            .take(25)
            .map(|(k, v)| {
                let inline = !matches!(
                    *k,
                    "Error"
                        | "Last healthy"
                        | "Runbook"
                        | "Incident"
                        | "Acknowledge"
                        | "Dependents"
                );
                json!({"name": k, "value": cut(v, 1024), "inline": inline})
            })
            .collect();
        e["fields"] = json!(fields);
        e["description"] = json!(cut(&render::context_line(n), 4096));
    } else {
        let lines: Vec<String> = facts
            .iter()
            .filter(|(k, _)| *k != "Monitor")
            .map(|(k, v)| format!("**{k}:** {v}"))
            .collect();
        e["description"] = json!(cut(&lines.join("\n"), 4096));
    }
    e
}

/// The webhook payload.
pub fn payload(n: &Notification, username: Option<&str>) -> Value {
    let mut embeds = Vec::new();
    let mut content = cut(&n.headline(), 2000);
    if n.is_grouped() {
        content = cut(
            &format!("{}\n{}", n.headline(), render::context_line(n)),
            2000,
        );
        let mut used = 0;
        let mut shown = 0;
        for item in &n.items {
            if embeds.len() == 10 {
                break;
            }
            let e = item_embed(n, item, false);
            let l = embed_len(&e);
            if used + l > TOTAL - 200 {
                break;
            }
            used += l;
            embeds.push(e);
            shown += 1;
        }
        let rest = &n.items[shown..];
        if !rest.is_empty() {
            // Discord caps the content at 2000 characters: one short line per monitor, and a
            // count for whatever still does not fit.
            let mut list = format!("\nand {} more:", rest.len());
            for (k, i) in rest.iter().enumerate() {
                let mut line = format!("\n• {} {}", i.monitor, i.state);
                if let Some(e) = &i.error_kind {
                    line.push_str(&format!(" ({e})"));
                }
                let tail = format!("\n… and {} more", rest.len() - k);
                if content.chars().count()
                    + list.chars().count()
                    + line.chars().count()
                    + tail.len()
                    > 2000
                {
                    list.push_str(&tail);
                    break;
                }
                list.push_str(&line);
            }
            content = cut(&format!("{content}{list}"), 2000);
        }
        let links: Vec<String> = render::links(n)
            .into_iter()
            .map(|(k, u)| format!("[{k}]({u})"))
            .collect();
        if !links.is_empty()
            && let Some(last) = embeds.last_mut()
        {
            let d = last["description"].as_str().unwrap_or("").to_string();
            last["description"] = json!(cut(&format!("{d}\n\n{}", links.join(" · ")), 4096));
        }
    } else if let Some(item) = n.items.first() {
        let mut e = item_embed(n, item, true);
        let links: Vec<String> = render::links(n)
            .into_iter()
            .map(|(k, u)| format!("[{k}]({u})"))
            .collect();
        if !links.is_empty() {
            let d = e["description"].as_str().unwrap_or("").to_string();
            e["description"] = json!(cut(&format!("{d}\n{}", links.join(" · ")), 4096));
        }
        embeds.push(e);
    } else {
        embeds.push(json!({
            "title": cut(&n.headline(), 256),
            "description": cut(&render::context_line(n), 4096),
            "color": n.change.color(),
            "timestamp": n.at.to_rfc3339(),
        }));
    }
    let mut p = json!({
        "content": content,
        "embeds": embeds,
        "allowed_mentions": {"parse": []},
    });
    if let Some(u) = username {
        p["username"] = json!(u);
    }
    p
}

#[async_trait::async_trait]
impl Channel for Discord {
    fn kind(&self) -> &'static str {
        "discord"
    }

    fn destination(&self) -> String {
        http::host_of(&self.url)
    }

    async fn send(&self, n: &Notification) -> Result<Delivered, SendError> {
        let r = http::send(
            &self.client,
            Request::json_post(
                "discord",
                &self.url,
                &payload(n, self.username.as_deref()),
                &n.idempotency_key,
                self.timeout,
                &self.secrets,
            ),
        )
        .await;
        let a = r?;
        let id = serde_json::from_str::<Value>(&a.body)
            .ok()
            .and_then(|v| v["id"].as_str().map(|s| format!("message {s}")));
        Ok(http::delivered(&a, id))
    }
}
