//! Hostile peers must not hurt us: floods are cut at the read bound, trickles hit the read
//! timeout, nothing panics and memory stays flat.

mod common;

use std::time::{Duration, Instant};

use common::*;
use portwarden_core::{ErrorKind, Outcome, Phase};
use portwarden_testkit as tk;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_megabytes_of_garbage_is_a_bounded_protocol_error() {
    let port = tk::hostile::garbage(10 * 1024 * 1024).await;
    let target = format!("tcp://127.0.0.1:{port}");
    let spec = check(json!({"send_expect": {"steps": [{"expect": "HELLO"}]}}));
    // Warm up, then measure: 20 probes against a 10 MB firehose must not grow memory.
    let _ = probe1(&target, spec.clone(), Duration::from_secs(5)).await;
    let before = tk::rss_bytes();
    for _ in 0..20 {
        let o = probe1(&target, spec.clone(), Duration::from_secs(5)).await;
        assert_eq!(o.outcome, Outcome::Down);
        assert_eq!(o.error_kind(), Some(ErrorKind::Protocol), "{o:?}");
        let msg = o.message().unwrap();
        assert!(msg.contains("read limit reached"), "{msg}");
        assert!(msg.len() < 2048, "message is bounded ({} bytes)", msg.len());
    }
    let grew = tk::rss_bytes().saturating_sub(before);
    assert!(grew < 16 * 1024 * 1024, "RSS grew by {grew} bytes");
}

#[tokio::test]
async fn a_one_byte_per_second_trickle_hits_the_read_timeout() {
    let port = tk::hostile::trickle(Duration::from_secs(1)).await;
    let start = Instant::now();
    let o = probe1(
        &format!("tcp://127.0.0.1:{port}"),
        check(json!({"send_expect": {"read_timeout": "1500ms", "steps": [{"expect": "HELLO"}]}})),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(o.outcome, Outcome::Down);
    assert_eq!(
        o.error_kind(),
        Some(ErrorKind::Timeout(Phase::Protocol)),
        "{o:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "the read timeout, not the probe timeout, ended it"
    );
    assert!(o.message().unwrap().contains("received so far"), "{o:?}");
}

#[tokio::test]
async fn garbage_banner_is_truncated() {
    let port = tk::hostile::garbage(1024 * 1024).await;
    let o = probe1(
        &format!("tcp://127.0.0.1:{port}"),
        check(json!({"tcp": {"read_banner": "1s"}})),
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up);
    assert!(o.details["banner"].as_str().unwrap().len() < 2048);
}

#[tokio::test]
async fn garbage_against_tls_is_a_handshake_error() {
    let port = tk::hostile::garbage(1024 * 1024).await;
    let o = probe1(
        &format!("tls://127.0.0.1:{port}"),
        check(json!({"tls": {}})),
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(o.outcome, Outcome::Down, "{o:?}");
}
