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

/// A Mosquitto of our own on a free port that requires a password.
fn mosquitto_with_auth() -> Option<(tk::process::Server, tempfile::TempDir)> {
    let bin = tk::need_binary("mosquitto")?;
    let pw = tk::need_binary("mosquitto_passwd")?;
    let dir = tempfile::tempdir().unwrap();
    let pwfile = dir.path().join("passwd");
    let st = std::process::Command::new(pw)
        .args(["-c", "-b"])
        .arg(&pwfile)
        .args(["mon", "s3cret"])
        .status()
        .unwrap();
    assert!(st.success());
    let port = tk::free_port();
    let conf = dir.path().join("m.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\n",
            pwfile.display()
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(bin);
    cmd.arg("-c").arg(&conf);
    let s =
        tk::process::Server::spawn_tcp("mosquitto", cmd, port, Duration::from_secs(10)).unwrap();
    Some((s, dir))
}

#[tokio::test]
async fn mqtt_auth_refused_is_alive_but_refusing() {
    let Some((mut srv, _dir)) = mosquitto_with_auth() else {
        return;
    };
    let target = format!("mqtt://127.0.0.1:{}", srv.port);
    for v in ["3.1.1", "5"] {
        let o = probe1(&target, check(json!({"mqtt": {"protocol_version": v}})), T).await;
        assert_eq!(o.outcome, Outcome::Down, "{v}: {o:?}");
        assert_eq!(o.error_kind(), Some(ErrorKind::Auth), "{v}: {o:?}");
        assert_eq!(o.details["auth_refused"], true);
        let o = probe1(
            &target,
            check(json!({"mqtt": {"protocol_version": v, "on_auth_refused": "degraded"}})),
            T,
        )
        .await;
        assert_eq!(o.outcome, Outcome::Degraded, "{v}: {o:?}");
        let o = probe1(
            &target,
            check(json!({"mqtt": {"protocol_version": v, "mode": "deep", "user": "mon", "password": "s3cret"}})),
            T,
        )
        .await;
        assert_eq!(o.outcome, Outcome::Up, "{v}: {o:?}");
        let o = probe1(
            &target,
            check(json!({"mqtt": {"protocol_version": v, "mode": "deep", "user": "mon", "password": "wrong"}})),
            T,
        )
        .await;
        assert_eq!(o.error_kind(), Some(ErrorKind::Auth), "{v}: {o:?}");
    }
    srv.kill();
    let o = probe1(&target, check(json!({"mqtt": {}})), T).await;
    assert_eq!(o.error_kind(), Some(ErrorKind::Refused), "{o:?}");
}

/// A nats-server of our own that requires a user and password.
fn nats_with_auth() -> Option<tk::process::Server> {
    let bin = tk::need_binary("nats-server")?;
    let port = tk::free_port();
    let mut cmd = std::process::Command::new(bin);
    cmd.args([
        "-a",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "--user",
        "mon",
        "--pass",
        "s3cret",
    ]);
    Some(tk::process::Server::spawn_tcp("nats-server", cmd, port, Duration::from_secs(10)).unwrap())
}

#[tokio::test]
async fn nats_auth_required_and_refused() {
    let Some(mut srv) = nats_with_auth() else {
        return;
    };
    let target = format!("nats://127.0.0.1:{}", srv.port);
    // Handshake: INFO says auth is required; alive.
    let o = probe1(&target, check(json!({"nats": {}})), T).await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert_eq!(o.details["auth_required"], true);
    let o = probe1(
        &target,
        check(json!({"nats": {"mode": "deep", "user": "mon", "password": "s3cret"}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    let o = probe1(
        &target,
        check(json!({"nats": {"mode": "deep", "user": "mon", "password": "nope"}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Down, "{o:?}");
    assert_eq!(o.error_kind(), Some(ErrorKind::Auth), "{o:?}");
    assert!(
        o.message().unwrap().contains("Authorization Violation"),
        "{o:?}"
    );
    // JetStream required but not enabled on this server.
    let o = probe1(
        &target,
        check(json!({"nats": {"require_jetstream": true}})),
        T,
    )
    .await;
    assert_eq!(o.error_kind(), Some(ErrorKind::Unhealthy), "{o:?}");
    srv.kill();
    let o = probe1(&target, check(json!({"nats": {}})), T).await;
    assert_eq!(o.error_kind(), Some(ErrorKind::Refused), "{o:?}");
}

#[tokio::test]
async fn amqp_killed_broker_is_refused() {
    // Not the shared RabbitMQ: nothing listens on a fresh free port.
    let port = tk::free_port();
    let o = probe1(
        &format!("amqp://127.0.0.1:{port}"),
        check(json!({"amqp": {}})),
        T,
    )
    .await;
    assert_eq!(o.error_kind(), Some(ErrorKind::Refused), "{o:?}");
}

#[tokio::test]
async fn nats_with_tls_required() {
    let Some(bin) = tk::need_binary("nats-server") else {
        return;
    };
    let ca = tk::certs::TestCa::new();
    let leaf = ca.leaf(&["localhost", "127.0.0.1"], -1, 10);
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    let ca_file = ca.write(dir.path()).display().to_string();
    let port = tk::free_port();
    let mut cmd = std::process::Command::new(bin);
    cmd.args([
        "-a",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "--tls",
        "--tlscert",
    ])
    .arg(&cert)
    .arg("--tlskey")
    .arg(&key);
    let _srv =
        tk::process::Server::spawn_tcp("nats-server", cmd, port, Duration::from_secs(10)).unwrap();
    let target = format!("nats://127.0.0.1:{port}");
    // Trusted, but the certificate expires in 10 days: degraded, like the tls check.
    let o = probe1(
        &target,
        check(json!({"nats": {"tls": {"ca_file": ca_file}}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Degraded, "{o:?}");
    assert_eq!(o.details["tls_required"], true);
    assert_eq!(o.details["starttls"], true);
    assert!(o.details["cert_days_left"].as_i64().is_some_and(|d| d < 21));
    let o = probe1(
        &target,
        check(json!({"nats": {"tls": {"ca_file": ca_file, "expiry_warn_days": 5}}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    // Untrusted.
    let o = probe1(&target, check(json!({"nats": {}})), T).await;
    assert_eq!(
        o.error_kind(),
        Some(ErrorKind::Tls(portwarden_core::TlsFailure::Untrusted)),
        "{o:?}"
    );
}
