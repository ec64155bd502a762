//! PagerDuty Events API v2 against a real HTTP receiver on loopback. Every event is validated
//! against `pagerduty-events-v2.schema.json` (written from PagerDuty's public "Send an Alert
//! Event" documentation) with the `jsonschema` crate.

mod common;

use std::time::Duration;

use common::{Receiver, Reply, assert_every_field, channels, grouped, single, strings};
use portwarden_notify::Event;

const KEY: &str = "R0UTINGKEY0123456789abcdef012345";

fn validator() -> jsonschema::Validator {
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("pagerduty-events-v2.schema.json")).unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
}

#[track_caller]
fn assert_valid(v: &jsonschema::Validator, ev: &serde_json::Value) {
    let errors: Vec<String> = v
        .iter_errors(ev)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "not a valid Events v2 event: {errors:?}\n{ev:#}"
    );
}

#[test]
fn the_schema_rejects_what_pagerduty_rejects() {
    let v = validator();
    for bad in [
        serde_json::json!({"routing_key": KEY, "event_action": "trigger"}),
        serde_json::json!({"routing_key": KEY, "event_action": "resolve"}),
        serde_json::json!({"routing_key": KEY, "event_action": "trigger", "payload": {"summary": "x", "source": "h", "severity": "high"}}),
        serde_json::json!({"routing_key": KEY, "event_action": "trigger", "payload": {"summary": "x".repeat(1025), "source": "h", "severity": "info"}}),
        serde_json::json!({"routing_key": KEY, "event_action": "close", "dedup_key": "1"}),
    ] {
        assert!(!v.is_valid(&bad), "{bad}");
    }
}

#[tokio::test]
async fn trigger_and_resolve_share_the_incident_dedup_key() {
    let rx = Receiver::start().await;
    rx.default_reply(Reply::new(
        202,
        r#"{"status":"success","message":"Event processed","dedup_key":"7"}"#,
    ));
    let ch = channels(&format!(
        "receivers:\n  pd:\n    type: pagerduty\n    routing_key: {KEY}\n    url: {}\n",
        rx.url("/v2/enqueue")
    ));
    let v = validator();
    let trigger = single(Event::Trigger);
    let d = ch["pd"].send(&trigger).await.unwrap();
    assert_eq!(d.status, Some(202));
    assert_eq!(d.detail.as_deref(), Some("dedup_key 7"));
    let resolve = single(Event::Resolve);
    ch["pd"].send(&resolve).await.unwrap();
    let seen = rx.seen();
    assert_eq!(seen.len(), 2);
    let t = seen[0].json();
    assert_valid(&v, &t);
    assert_eq!(seen[0].path, "/v2/enqueue");
    assert_eq!(
        seen[0].header("idempotency-key").as_deref(),
        Some("pw-7-trigger")
    );
    assert_eq!(t["event_action"], "trigger");
    assert_eq!(t["dedup_key"], "7");
    assert_eq!(t["routing_key"], KEY);
    let p = &t["payload"];
    assert_eq!(p["summary"], trigger.headline());
    assert_eq!(p["source"], "db1.example.internal");
    assert_eq!(p["severity"], "error"); // high → error
    assert_eq!(p["component"], "svc-0");
    assert_eq!(p["group"], "checkout");
    assert_eq!(p["class"], "refused");
    assert_eq!(p["custom_details"]["Owner"], "team-payments");
    assert_eq!(
        p["custom_details"]["locations"],
        serde_json::json!(["eu-west"])
    );
    assert_every_field("pagerduty", &strings(p), &trigger);
    let links: Vec<&str> = t["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        links,
        [
            "Incident in Portwarden",
            "Runbook",
            "Acknowledge in Portwarden"
        ]
    );
    assert_eq!(t["client"], "Portwarden");

    let r = seen[1].json();
    assert_valid(&v, &r);
    assert_eq!(r["event_action"], "resolve");
    assert_eq!(r["dedup_key"], "7");
    assert!(r.get("payload").is_none());
}

#[tokio::test]
async fn severity_mapping_groups_and_test_messages() {
    let rx = Receiver::start().await;
    rx.default_reply(Reply::new(202, r#"{"status":"success"}"#));
    let ch = channels(&format!(
        "receivers:\n  pd:\n    type: pagerduty\n    routing_key: {KEY}\n    url: {}\n    source: portwarden-eu\n    severity: {{high: critical}}\n",
        rx.url("/v2/enqueue")
    ));
    let v = validator();
    let g = grouped(3, Event::Escalate);
    ch["pd"].send(&g).await.unwrap();
    let t = rx.seen()[0].json();
    assert_valid(&v, &t);
    assert_eq!(t["event_action"], "trigger");
    assert_eq!(t["dedup_key"], "42");
    assert_eq!(t["payload"]["severity"], "critical");
    assert_eq!(t["payload"]["source"], "portwarden-eu");
    assert_eq!(
        t["payload"]["custom_details"]["monitors"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_every_field("pagerduty", &strings(&t["payload"]), &g);

    // A test message opens and closes its own alert.
    let n = portwarden_notify::Notification::sample(chrono::Utc::now());
    ch["pd"].send(&n).await.unwrap();
    let seen = rx.seen();
    assert_eq!(seen.len(), 3);
    let (a, b) = (seen[1].json(), seen[2].json());
    assert_valid(&v, &a);
    assert_valid(&v, &b);
    assert_eq!(
        (a["event_action"].as_str(), b["event_action"].as_str()),
        (Some("trigger"), Some("resolve"))
    );
    assert_eq!(a["dedup_key"], n.idempotency_key.as_str());
    assert_eq!(b["dedup_key"], n.idempotency_key.as_str());

    let mut hb = n.clone();
    hb.event = Event::Heartbeat;
    let e = ch["pd"].send(&hb).await.unwrap_err();
    assert!(!e.retryable && e.message.contains("heartbeat"), "{e}");
}

#[tokio::test]
async fn throttling_and_rejections() {
    let rx = Receiver::start().await;
    rx.script([
        Reply::new(429, "").header("Retry-After", "2"),
        Reply::new(429, ""),
        Reply::new(500, r#"{"status":"error"}"#),
        Reply::new(400, &format!(r#"{{"status":"invalid event","message":"Event object is invalid","errors":["routing_key {KEY} unknown"]}}"#)),
    ]);
    let ch = channels(&format!(
        "receivers:\n  pd:\n    type: pagerduty\n    routing_key: {KEY}\n    url: {}\n",
        rx.url("/v2/enqueue")
    ));
    let n = single(Event::Trigger);
    let e = ch["pd"].send(&n).await.unwrap_err();
    assert!(
        e.retryable && e.retry_after == Some(Duration::from_secs(2)),
        "{e:?}"
    );
    let e = ch["pd"].send(&n).await.unwrap_err();
    assert!(
        e.retryable && e.status == Some(429) && e.retry_after.is_none(),
        "{e:?}"
    );
    let e = ch["pd"].send(&n).await.unwrap_err();
    assert!(e.retryable && e.status == Some(500), "{e:?}");
    let e = ch["pd"].send(&n).await.unwrap_err();
    assert!(!e.retryable && e.status == Some(400), "{e:?}");
    assert!(
        e.message.contains("Event object is invalid") && !e.message.contains(KEY),
        "{e}"
    );
}
