//! Wrong-protocol safety: every protocol probe of this branch pointed at every other real
//! service on this machine answers `protocol` (or another handshake-level error: a read timeout
//! in the protocol phase when the other side waits silently, a reset, a TLS handshake
//! failure) within the timeout — never `up`, never a hang, never a panic.

mod common;

use std::time::{Duration, Instant};

use common::*;
use portwarden_core::{ErrorKind, Outcome, Phase, TlsFailure};
use portwarden_testkit as tk;
use serde_json::json;

const T: Duration = Duration::from_secs(2);

fn acceptable(k: Option<ErrorKind>) -> bool {
    matches!(
        k,
        Some(
            ErrorKind::Protocol
                | ErrorKind::Timeout(Phase::Protocol)
                | ErrorKind::Timeout(Phase::Tls)
                | ErrorKind::Reset
                | ErrorKind::Tls(TlsFailure::Handshake)
        )
    )
}

#[tokio::test]
async fn every_tcp_probe_against_every_other_service() {
    let services = [
        ("amqp", 5672),
        ("nats", 4222),
        ("mqtt", 1883),
        ("redis", 6379),
        ("postgres", 5432),
        ("mariadb", 3306),
    ];
    let up: Vec<(&str, u16)> = services
        .iter()
        .copied()
        .filter(|(_, p)| tk::tcp_listening(*p))
        .collect();
    if !tk::need(
        up.len() == services.len(),
        "all shared services (RabbitMQ, NATS, Mosquitto, Redis, PostgreSQL, MariaDB)",
    ) {
        return;
    }
    let probes = [
        ("amqp", json!({})),
        (
            "amqp",
            json!({"mode": "deep", "user": "guest", "password": "guest"}),
        ),
        ("kafka", json!({"mode": "deep"})),
        ("nats", json!({})),
        ("mqtt", json!({})),
        ("mqtt", json!({"protocol_version": "5"})),
        ("ssh", json!({})),
        ("smtp", json!({})),
        ("smtp", json!({"security": "implicit"})),
        ("imap", json!({})),
        ("pop3", json!({})),
        ("ftp", json!({})),
        ("dns", json!({"name": "x.test", "transport": "tcp"})),
    ];
    let mut runs = Vec::new();
    for (kind, opts) in &probes {
        for (svc, port) in &up {
            if kind == svc {
                continue;
            }
            let target = format!("{kind}://127.0.0.1:{port}");
            let c = check(json!({ *kind: opts.clone() }));
            runs.push(async move {
                let start = Instant::now();
                let o = probe1(&target, c, T).await;
                (kind.to_string(), svc.to_string(), start.elapsed(), o)
            });
        }
    }
    let mut bad = Vec::new();
    for (kind, svc, took, o) in futures::future::join_all(runs).await {
        eprintln!(
            "{kind:>5} -> {svc:<8} {:<18} {took:>10.1?}",
            o.error
                .as_ref()
                .map(|e| e.kind.to_string())
                .unwrap_or_default()
        );
        if o.outcome == Outcome::Up
            || !acceptable(o.error_kind())
            || took > T + Duration::from_millis(500)
        {
            bad.push(format!(
                "{kind} -> {svc}: {:?} {:?} in {took:?}: {:?}",
                o.outcome,
                o.error_kind(),
                o.message()
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "wrong-protocol failures:\n{}",
        bad.join("\n")
    );
}

/// The same probes against peers that misbehave on purpose: a flood of random bytes (reads
/// must stay bounded), one byte every millisecond (must end at the deadline), a valid-looking
/// greeting prefix followed by silence.
#[tokio::test]
async fn every_tcp_probe_against_hostile_peers() {
    let garbage = tk::hostile::garbage(8 << 20).await;
    let trickle = tk::hostile::trickle(Duration::from_millis(1)).await;
    let half = tk::hostile::greeter(b"220-mx.example ESMTP\r\n220-").await;
    let ssh_half = tk::hostile::greeter(b"SSH-2.0-Fake\r\n\x00\x00\x01").await;
    let kinds = [
        ("amqp", json!({})),
        ("kafka", json!({})),
        ("nats", json!({})),
        ("mqtt", json!({})),
        ("ssh", json!({})),
        ("smtp", json!({})),
        ("imap", json!({})),
        ("pop3", json!({})),
        ("ftp", json!({})),
        ("dns", json!({"transport": "tcp"})),
    ];
    let mut runs = Vec::new();
    for (kind, opts) in &kinds {
        for (peer, port) in [
            ("garbage", garbage),
            ("trickle", trickle),
            ("half-smtp", half),
            ("half-ssh", ssh_half),
        ] {
            let target = format!("{kind}://127.0.0.1:{port}");
            let c = check(json!({ *kind: opts.clone() }));
            runs.push(async move {
                let start = Instant::now();
                let o = probe1(&target, c, T).await;
                (kind.to_string(), peer, start.elapsed(), o)
            });
        }
    }
    let mut bad = Vec::new();
    for (kind, peer, took, o) in futures::future::join_all(runs).await {
        eprintln!(
            "{kind:>5} -> {peer:<9} {:<18} {took:>10.1?}",
            o.error
                .as_ref()
                .map(|e| e.kind.to_string())
                .unwrap_or_default()
        );
        if o.outcome == Outcome::Up
            || !acceptable(o.error_kind())
            || took > T + Duration::from_millis(500)
        {
            bad.push(format!(
                "{kind} -> {peer}: {:?} {:?} in {took:?}: {:?}",
                o.outcome,
                o.error_kind(),
                o.message()
            ));
        }
    }
    assert!(bad.is_empty(), "hostile-peer failures:\n{}", bad.join("\n"));
}

/// UDP protocol probes against an echo (their own request comes back: must be refused as
/// not-an-answer) and a silent socket (`no_response`, down).
#[tokio::test]
async fn udp_probes_against_echo_and_silence() {
    let echo = tk::hostile::udp_echo().await;
    let (silent, _h) = tk::hostile::udp_silent().await;
    for (kind, opts) in [
        ("dns", json!({"name": "x.test"})),
        ("ntp", json!({})),
        ("snmp", json!({})),
    ] {
        let o = probe1(
            &format!("{kind}://127.0.0.1:{echo}"),
            check(json!({ kind: opts.clone() })),
            T,
        )
        .await;
        assert_eq!(o.outcome, Outcome::Down, "{kind} echo: {o:?}");
        assert_eq!(
            o.error_kind(),
            Some(ErrorKind::Protocol),
            "{kind} echo: {o:?}"
        );
        let start = Instant::now();
        let o = probe1(
            &format!("{kind}://127.0.0.1:{silent}"),
            check(json!({ kind: opts })),
            Duration::from_millis(600),
        )
        .await;
        assert_eq!(o.outcome, Outcome::Down, "{kind} silent: {o:?}");
        assert_eq!(
            o.error_kind(),
            Some(ErrorKind::NoResponse),
            "{kind} silent: {o:?}"
        );
        assert!(start.elapsed() < Duration::from_secs(1));
        assert_eq!(o.details["attempts"], 2);
    }
}
