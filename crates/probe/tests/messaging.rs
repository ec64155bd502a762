//! Messaging probes (amqp, nats, mqtt) against the real shared services on this machine:
//! RabbitMQ 5672 (guest/guest), NATS 4222 (JetStream), Mosquitto 1883.

mod common;

use std::time::Duration;

use common::*;
use portwarden_core::{ErrorKind, Outcome};
use portwarden_testkit as tk;
use serde_json::json;

const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn amqp_handshake_reports_rabbitmq_version() {
    if !tk::need_service("RabbitMQ", 5672) {
        return;
    }
    let o = probe1("amqp://127.0.0.1", check(json!({"amqp": {}})), T).await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert_eq!(o.details["product"], "RabbitMQ", "{o:?}");
    assert!(
        o.details["server_version"]
            .as_str()
            .is_some_and(|v| v.contains('.')),
        "{o:?}"
    );
    assert!(o.details["mechanisms"].as_str().unwrap().contains("PLAIN"));
    assert!(o.phases.connect_ms.is_some() && o.phases.protocol_ms.is_some());
}

#[tokio::test]
async fn amqp_deep_logs_in_and_opens_a_channel() {
    if !tk::need_service("RabbitMQ", 5672) {
        return;
    }
    let o = probe1(
        "amqp://127.0.0.1:5672",
        check(json!({"amqp": {"mode": "deep", "user": "guest", "password": "guest"}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert_eq!(o.details["channel_open"], true);
    assert_eq!(o.details["vhost"], "/");
    assert!(o.details["frame_max"].as_u64().is_some());
    assert!(o.details["server_version"].as_str().is_some());
}

#[tokio::test]
async fn amqp_deep_wrong_password_is_auth() {
    if !tk::need_service("RabbitMQ", 5672) {
        return;
    }
    let o = probe1(
        "amqp://127.0.0.1:5672",
        check(json!({"amqp": {"mode": "deep", "user": "guest", "password": "not-the-password"}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Down, "{o:?}");
    assert_eq!(o.error_kind(), Some(ErrorKind::Auth), "{o:?}");
    assert!(!o.message().unwrap().contains("not-the-password"));
    let o = probe1(
        "amqp://127.0.0.1:5672",
        check(json!({"amqp": {"mode": "deep", "user": "guest", "password": "guest", "vhost": "no-such-vhost"}})),
        T,
    )
    .await;
    assert_eq!(o.error_kind(), Some(ErrorKind::Auth), "{o:?}");
}

#[tokio::test]
async fn nats_handshake_reports_version_and_jetstream() {
    if !tk::need_service("NATS", 4222) {
        return;
    }
    let o = probe1("nats://127.0.0.1", check(json!({"nats": {}})), T).await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert!(
        o.details["server_version"]
            .as_str()
            .is_some_and(|v| v.starts_with('2')),
        "{o:?}"
    );
    assert_eq!(o.details["jetstream"], true, "{o:?}");
}

#[tokio::test]
async fn nats_deep_reports_jetstream_account() {
    if !tk::need_service("NATS", 4222) {
        return;
    }
    let o = probe1(
        "nats://127.0.0.1:4222",
        check(json!({"nats": {"mode": "deep", "require_jetstream": true}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert!(o.details["jetstream_streams"].as_u64().is_some(), "{o:?}");
}

#[tokio::test]
async fn mqtt_handshake_v311_and_v5() {
    if !tk::need_service("Mosquitto", 1883) {
        return;
    }
    for v in ["3.1.1", "5"] {
        let o = probe1(
            "mqtt://127.0.0.1",
            check(json!({"mqtt": {"protocol_version": v}})),
            T,
        )
        .await;
        assert_eq!(o.outcome, Outcome::Up, "{v}: {o:?}");
        assert_eq!(o.details["connack_code"], 0);
        assert!(
            o.details["server_version"]
                .as_str()
                .is_some_and(|s| s.contains("mosquitto")),
            "{v}: {o:?}"
        );
    }
}
