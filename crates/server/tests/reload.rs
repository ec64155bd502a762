//! Reload on file change and SIGHUP: added and removed monitors take effect, unchanged ones
//! keep their state and schedule, a broken config keeps the old one running.
//! (Its own test binary: it raises SIGHUP in-process.)

mod common;

use std::time::Duration;

use common::*;
use portwarden_testkit as tk;

fn monitor(name: &str, port: u16) -> String {
    format!(
        "  - name: {name}\n    target: tcp://127.0.0.1:{port}\n    interval: 500ms\n    timeout: 300ms\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reload_adds_removes_and_survives_a_broken_config() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let mut d = TestDaemon::start(&config(
        &(monitor("keep", port) + &monitor("drop-me", port)),
    ))
    .await;
    let before = d
        .wait_monitor("keep", Duration::from_secs(10), "keep up", |v| {
            v["state"] == "up" && v["runs"].as_u64() >= Some(3)
        })
        .await;
    let since = before["since"].clone();

    // Edit the file: one removed, one added. The watcher picks it up (debounced).
    std::fs::write(
        &d.config,
        config(&(monitor("keep", port) + &monitor("new-one", port))),
    )
    .unwrap();
    let ok = tk::http::wait_until(Duration::from_secs(10), || {
        let v = d.client().get("/api/v1/monitors").json();
        let names: Vec<String> = v["monitors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap().to_string())
            .collect();
        (names.contains(&"new-one".to_string()) && !names.contains(&"drop-me".to_string()))
            .then_some(names)
    });
    assert!(ok.is_some(), "reload applied");
    d.wait_monitor(
        "new-one",
        Duration::from_secs(10),
        "new monitor runs",
        |v| v["state"] == "up",
    )
    .await;
    let after = d.monitor("keep").await;
    assert_eq!(after["state"], "up");
    assert_eq!(after["since"], since, "unchanged monitor keeps its state");
    assert!(
        after["runs"].as_u64() > before["runs"].as_u64(),
        "and keeps running"
    );
    let r = d.get("/api/v1/monitors/drop-me").await;
    assert_eq!(r.status, 404);
    let h = d.json("/api/v1/health").await;
    assert_eq!(h["config"]["ok"], true);
    assert!(
        h["config"]["last_changes"]["added"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "new-one"),
        "{h:#}"
    );

    // A broken config: the old one keeps running; health and a metric say why, with the place.
    std::fs::write(
        &d.config,
        config("  - name: keep\n    target: tcp://127.0.0.1:1\n    intervl: 1s\n"),
    )
    .unwrap();
    let h = tk::http::wait_until(Duration::from_secs(10), || {
        let v = d.client().get("/api/v1/health").json();
        (v["config"]["ok"] == false).then_some(v)
    })
    .expect("failed reload reported");
    let err = h["config"]["error"].as_str().unwrap();
    assert!(
        err.contains("portwarden.yaml:4:5") && err.contains("intervl"),
        "{err}"
    );
    assert_eq!(h["status"], "degraded");
    let metrics = d.get("/metrics").await.body;
    assert!(
        metrics.contains("portwarden_config_reload_ok 0"),
        "reload metric"
    );
    let v = d.monitor("new-one").await;
    assert_eq!(v["state"], "up", "old config still running: {v:#}");

    // Fix it and reload with SIGHUP.
    std::fs::write(&d.config, config(&monitor("keep", port))).unwrap();
    // SAFETY: raising SIGHUP in our own process; the daemon's handler is installed.
    unsafe { libc::raise(libc::SIGHUP) };
    let h = tk::http::wait_until(Duration::from_secs(10), || {
        let v = d.client().get("/api/v1/health").json();
        (v["config"]["ok"] == true).then_some(v)
    })
    .expect("reload after fix");
    assert_eq!(h["status"], "ok", "{h:#}");
    assert_eq!(d.get("/api/v1/monitors/new-one").await.status, 404);
    d.stop().await;
    drop(l);
}
