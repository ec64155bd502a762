//! The README's run command on the example config: the API lists the example monitors and
//! /metrics passes `promtool check metrics`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use portwarden_testkit as tk;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn example_config_serves_monitors_and_valid_metrics() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/local.yaml");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("local.yaml");
    std::fs::copy(example, &config).unwrap();
    let mut d = TestDaemon::start_with(dir, config, None).await;
    let v = d.json("/api/v1/monitors").await;
    let names: Vec<&str> = v["monitors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    for n in [
        "orders-db",
        "catalog-db",
        "session-cache",
        "order-queue",
        "telemetry-broker",
        "event-bus",
        "legacy-billing",
    ] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
    // Run each monitor once now (scheduled runs are spread over the interval by phase offsets).
    for n in &names {
        let r = d.post(&format!("/api/v1/monitors/{n}/check")).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let closed = d.monitor("legacy-billing").await;
    assert_eq!(
        closed["last_observation"]["error_kind"], "refused",
        "{closed:#}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let metrics = d.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    for name in [
        "portwarden_monitor_up",
        "portwarden_monitor_state",
        "portwarden_probe_phase_seconds",
        "portwarden_checks_total",
        "portwarden_checks_skipped",
        "portwarden_scheduler_lateness_seconds",
        "portwarden_store_batch_rows",
        "portwarden_store_batch_seconds",
        "portwarden_config_reload_ok",
    ] {
        assert!(metrics.body.contains(name), "{name} missing from /metrics");
    }
    let Some(promtool) = tk::need_binary("promtool") else {
        d.stop().await;
        return;
    };
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- metrics ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        metrics.body
    );
    d.stop().await;
}
