//! UDP probes: closed (ICMP port unreachable), echo with expect, silence per policy.

mod common;

use std::time::Duration;

use common::*;
use portwarden_core::{ErrorKind, Outcome};
use portwarden_testkit as tk;
use serde_json::json;

#[tokio::test]
async fn closed_udp_port_is_closed() {
    let port = tk::free_udp_port();
    let o = probe1(
        &format!("udp://127.0.0.1:{port}"),
        check(json!({"udp": {"payload": "ping"}})),
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(o.outcome, Outcome::Down);
    assert_eq!(o.error_kind(), Some(ErrorKind::Closed), "{o:?}");
}

#[tokio::test]
async fn echo_with_expect_is_up() {
    let port = tk::hostile::udp_echo().await;
    let target = format!("udp://127.0.0.1:{port}");
    let o = probe1(
        &target,
        check(json!({"udp": {"payload": "ping\\n", "expect": "ping"}})),
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert!(o.phases.protocol_ms.is_some());
    let o = probe1(
        &target,
        check(json!({"udp": {"payload_hex": "de ad", "expect_hex": "dead"}})),
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    let o = probe1(
        &target,
        check(json!({"udp": {"payload": "ping", "expect": "pong"}})),
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(o.outcome, Outcome::Down);
    assert_eq!(o.error_kind(), Some(ErrorKind::Protocol), "{o:?}");
    assert!(
        o.message().unwrap().contains("ping"),
        "shows what came back: {o:?}"
    );
}

#[tokio::test]
async fn silence_maps_per_policy() {
    let (port, _h) = tk::hostile::udp_silent().await;
    let target = format!("udp://127.0.0.1:{port}");
    let t = Duration::from_millis(600);
    let o = probe1(&target, check(json!({"udp": {"payload": "x"}})), t).await;
    assert_eq!(o.outcome, Outcome::Unknown, "default is unknown: {o:?}");
    assert_eq!(o.error_kind(), Some(ErrorKind::NoResponse));
    assert_eq!(o.details["attempts"], 2, "retried once: {o:?}");
    let o = probe1(
        &target,
        check(json!({"udp": {"payload": "x", "udp_no_response": "down"}})),
        t,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Down);
    assert_eq!(o.error_kind(), Some(ErrorKind::NoResponse));
    let o = probe1(
        &target,
        check(json!({"udp": {"payload": "x", "udp_no_response": "up"}})),
        t,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up);
    assert!(
        o.note.as_deref().unwrap_or("").contains("open or filtered"),
        "{o:?}"
    );
}

#[tokio::test]
async fn udp_conversation() {
    let port = tk::hostile::udp_echo().await;
    let o = probe1(
        &format!("udp://127.0.0.1:{port}"),
        check(json!({"send_expect": {"transport": "udp", "steps": [{"send": "a1"}, {"expect": "a1"}, {"send": "b2"}, {"expect_regex": "^b\\d$"}]}})),
        Duration::from_secs(2),
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
}
