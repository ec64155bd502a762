//! The data directory on a tiny tmpfs that fills up: probing and incident detection go on,
//! health and a metric report the store failure, nothing panics; when space returns, writes
//! resume without a restart.

mod common;

use std::time::Duration;

use common::*;
use portwarden_testkit as tk;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disk_full_keeps_monitoring_and_recovers() {
    if !tk::need(tk::is_root(), "root to mount a tmpfs") {
        return;
    }
    let Some(_) = tk::need_binary("redis-server") else {
        return;
    };
    let fs = tk::tmpfs::Tmpfs::mount("4m").expect("tmpfs");
    let mut redis = tk::process::Server::redis().expect("redis");
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up_port = l.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portwarden.yaml");
    let mut yaml = String::from("monitors:\n");
    yaml.push_str(&format!("  - {{name: cache, target: \"tcp://127.0.0.1:{}\", tier: critical, interval: 500ms, timeout: 300ms}}\n", redis.port));
    for i in 0..20 {
        yaml.push_str(&format!("  - {{name: filler-{i}, target: \"tcp://127.0.0.1:{up_port}\", interval: 200ms, timeout: 100ms}}\n"));
    }
    std::fs::write(&config, yaml).unwrap();
    let mut d = TestDaemon::start_with(dir, config, Some(fs.path().join("data"))).await;
    d.wait_monitor("cache", Duration::from_secs(10), "cache up", |v| {
        v["state"] == "up"
    })
    .await;

    // Fill the disk.
    let filler = fs.fill();
    let h = tk::http::wait_until(Duration::from_secs(20), || {
        let v = d.client().get("/api/v1/health").json();
        (v["store"]["ok"] == false).then_some(v)
    })
    .expect("store failure reported");
    assert_eq!(h["status"], "degraded");
    assert!(
        h["store"]["last_error"]
            .as_str()
            .unwrap_or("")
            .to_lowercase()
            .contains("full"),
        "{h:#}"
    );
    assert!(
        d.get("/metrics")
            .await
            .body
            .contains("portwarden_store_healthy 0")
    );

    // Detection goes on while the store is failing.
    redis.kill();
    d.wait_monitor(
        "cache",
        Duration::from_secs(10),
        "cache down while the disk is full",
        |v| v["state"] == "down",
    )
    .await;

    // Space returns: writes resume, the incident lands, health is ok again.
    std::fs::remove_file(&filler).unwrap();
    let h = tk::http::wait_until(Duration::from_secs(30), || {
        let v = d.client().get("/api/v1/health").json();
        (v["store"]["ok"] == true).then_some(v)
    })
    .expect("store recovered without restart");
    assert_eq!(h["store"]["ok"], true);
    let inc = tk::http::wait_until(Duration::from_secs(30), || {
        let v = d.client().get("/api/v1/incidents?monitor=cache").json();
        (!v["incidents"].as_array().unwrap().is_empty()).then_some(v)
    })
    .expect("the incident was written once space returned");
    assert_eq!(inc["incidents"][0]["monitor"], "cache");
    let obs = d.json("/api/v1/monitors/cache/observations?limit=5").await;
    assert!(!obs["items"].as_array().unwrap().is_empty());
    d.stop().await;
}
