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
