//! Slack, Discord and Teams against real HTTP receivers on loopback: the exact payload shape
//! of each vendor's API, every content field present, grouped messages listing every monitor.

mod common;

use std::time::Duration;

use common::{Receiver, Reply, assert_every_field, channels, grouped, single, strings};
use portwarden_notify::Event;

async fn setup() -> (
    Receiver,
    std::collections::HashMap<String, std::sync::Arc<dyn portwarden_notify::Channel>>,
) {
    let rx = Receiver::start().await;
    let ch = channels(&format!(
        "receivers:\n  slack: {{type: slack, url: \"{}\"}}\n  discord: {{type: discord, url: \"{}\", username: Portwarden}}\n  teams: {{type: teams, url: \"{}\"}}\n",
        rx.url("/services/T0001/B0001/slacksecrettoken"),
        rx.url("/api/webhooks/1234/discordsecrettoken"),
        rx.url("/workflows/teamssecret/triggers/manual/paths/invoke?sig=teamssignature"),
    ));
    (rx, ch)
}

#[tokio::test]
async fn slack_block_kit() {
    let (rx, ch) = setup().await;
    for n in [
        single(Event::Trigger),
        single(Event::Resolve),
        grouped(3, Event::Trigger),
    ] {
        let d = ch["slack"].send(&n).await.unwrap();
        assert_eq!(d.status, Some(200));
        let seen = rx.seen();
        let r = seen.last().unwrap();
        assert_eq!(r.path, "/services/T0001/B0001/slacksecrettoken");
        assert_eq!(
            r.header("idempotency-key").as_deref(),
            Some(n.idempotency_key.as_str())
        );
        let p = r.json();
        assert_eq!(p["text"], n.headline());
        let blocks = p["blocks"].as_array().unwrap();
        assert!(blocks.len() <= 50);
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(blocks[0]["text"]["type"], "plain_text");
        assert_eq!(blocks[1]["type"], "context");
        let sections: Vec<_> = blocks.iter().filter(|b| b["type"] == "section").collect();
        assert_eq!(sections.len(), n.items.len());
        for s in &sections {
            assert_eq!(s["text"]["type"], "mrkdwn");
            assert!(s["text"]["text"].as_str().unwrap().len() <= 3000);
        }
        let actions = blocks.iter().find(|b| b["type"] == "actions").unwrap();
        let buttons: Vec<&str> = actions["elements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                assert_eq!(b["type"], "button");
                b["text"]["text"].as_str().unwrap()
            })
            .collect();
        if n.event == Event::Resolve {
            assert_eq!(buttons, ["Open incident", "Runbook"]);
        } else {
            assert_eq!(buttons, ["Open incident", "Runbook", "Acknowledge"]);
        }
        assert_every_field("slack", &strings(&p), &n);
    }
}

#[tokio::test]
async fn discord_embeds_and_rate_limits() {
    let (rx, ch) = setup().await;
    rx.default_reply(Reply::new(200, r#"{"id": "998877", "type": 0}"#));
    for n in [
        single(Event::Trigger),
        single(Event::Resolve),
        grouped(3, Event::Trigger),
    ] {
        let d = ch["discord"].send(&n).await.unwrap();
        assert_eq!(d.detail.as_deref(), Some("message 998877"));
        let seen = rx.seen();
        let r = seen.last().unwrap();
        assert_eq!(r.path, "/api/webhooks/1234/discordsecrettoken");
        assert_eq!(r.query.as_deref(), Some("wait=true"));
        let p = r.json();
        assert_eq!(p["username"], "Portwarden");
        assert_eq!(p["allowed_mentions"]["parse"], serde_json::json!([]));
        let embeds = p["embeds"].as_array().unwrap();
        assert!(!embeds.is_empty() && embeds.len() <= 10);
        assert_eq!(embeds.len(), n.items.len());
        let mut total = 0;
        for e in embeds {
            assert!(e["title"].as_str().unwrap().chars().count() <= 256);
            assert!(e["color"].as_u64().is_some());
            assert!(e["timestamp"].as_str().is_some());
            total +=
                e["title"].as_str().unwrap().len() + e["description"].as_str().unwrap_or("").len();
            for f in e["fields"].as_array().into_iter().flatten() {
                assert!(f["value"].as_str().unwrap().chars().count() <= 1024);
                total += f["name"].as_str().unwrap().len() + f["value"].as_str().unwrap().len();
            }
        }
        assert!(total <= 6000, "{total}");
        if n.items.len() == 1 {
            assert!(embeds[0]["fields"].as_array().unwrap().len() <= 25);
            assert_eq!(
                embeds[0]["color"],
                0xD62D20 * (n.event == Event::Trigger) as u64
                    + 0x2EA043 * (n.event == Event::Resolve) as u64
            );
        }
        assert_every_field("discord", &strings(&p), &n);
    }

    // 429 with the wait in the JSON body (seconds, fractional) and in the header.
    rx.script([
        Reply::new(
            429,
            r#"{"message": "You are being rate limited.", "retry_after": 1.5, "global": false}"#,
        ),
        Reply::new(
            429,
            r#"{"message": "You are being rate limited.", "retry_after": 2.5, "global": false}"#,
        )
        .header("Retry-After", "1"),
        Reply::new(404, r#"{"message": "Unknown Webhook", "code": 10015}"#),
    ]);
    let n = single(Event::Trigger);
    let e = ch["discord"].send(&n).await.unwrap_err();
    assert!(
        e.retryable && e.retry_after == Some(Duration::from_millis(1500)),
        "{e:?}"
    );
    let e = ch["discord"].send(&n).await.unwrap_err();
    assert!(
        e.retryable && e.retry_after == Some(Duration::from_millis(2500)),
        "{e:?}"
    );
    let e = ch["discord"].send(&n).await.unwrap_err();
    assert!(!e.retryable && e.status == Some(404), "{e:?}");
    assert!(!e.message.contains("discordsecrettoken"), "{e}");
}

#[tokio::test]
async fn teams_adaptive_card() {
    let (rx, ch) = setup().await;
    rx.default_reply(Reply::new(202, ""));
    for n in [
        single(Event::Trigger),
        single(Event::Resolve),
        grouped(3, Event::Trigger),
    ] {
        let d = ch["teams"].send(&n).await.unwrap();
        assert_eq!(d.status, Some(202));
        let seen = rx.seen();
        let r = seen.last().unwrap();
        assert_eq!(r.query.as_deref(), Some("sig=teamssignature"));
        let p = r.json();
        assert_eq!(p["type"], "message");
        let att = &p["attachments"][0];
        assert_eq!(
            att["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        let card = &att["content"];
        assert_eq!(card["type"], "AdaptiveCard");
        assert_eq!(card["version"], "1.4");
        assert_eq!(
            card["$schema"],
            "http://adaptivecards.io/schemas/adaptive-card.json"
        );
        let body = card["body"].as_array().unwrap();
        assert_eq!(body[0]["type"], "TextBlock");
        let containers: Vec<_> = body.iter().filter(|b| b["type"] == "Container").collect();
        assert_eq!(containers.len(), n.items.len());
        for c in containers {
            let facts = c["items"][1]["facts"].as_array().unwrap();
            assert!(
                facts
                    .iter()
                    .all(|f| f["title"].is_string() && f["value"].is_string())
            );
        }
        for a in card["actions"].as_array().unwrap() {
            assert_eq!(a["type"], "Action.OpenUrl");
            assert!(a["url"].as_str().unwrap().starts_with("https://"));
        }
        assert_every_field("teams", &strings(&p), &n);
    }
}

#[tokio::test]
async fn thirty_monitors_make_one_message_listing_each() {
    let (rx, ch) = setup().await;
    let n = grouped(30, Event::Trigger);
    for name in ["slack", "discord", "teams"] {
        ch[name].send(&n).await.unwrap();
    }
    let seen = rx.seen();
    assert_eq!(seen.len(), 3, "one request per channel");
    for r in &seen {
        let text = strings(&r.json());
        for i in &n.items {
            assert!(
                text.contains(&i.monitor),
                "{} missing in {}",
                i.monitor,
                r.path
            );
        }
    }
    // Slack and Teams show the first 20 with every field, the rest one line each.
    let slack = strings(&seen[0].json());
    assert!(slack.contains("and 10 more"), "{slack}");
    // Within each vendor's limits: Slack 50 blocks, Discord 10 embeds and 2000 characters of
    // content, Teams 28 KB per message.
    assert!(seen[0].json()["blocks"].as_array().unwrap().len() <= 50);
    let d = seen[1].json();
    assert!(d["embeds"].as_array().unwrap().len() <= 10);
    assert!(d["content"].as_str().unwrap().chars().count() <= 2000);
    assert!(
        seen[2].body.len() < 28 * 1024,
        "teams: {} bytes",
        seen[2].body.len()
    );
}
