//! The overview with 5 000 monitors and a month of rollups: every monitor listed, with
//! sparklines and availability, in under 1 MB of HTML. (Timings are measured by the benchmark,
//! `cargo bench -p portwarden-server --bench ui`, not here.)

mod common;
#[path = "support/synthetic.rs"]
mod synthetic;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overview_of_5000_monitors_stays_under_1_mb() {
    const N: usize = 5_000;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d2 = data.clone();
    tokio::task::spawn_blocking(move || synthetic::fill(&d2, N, 30, 2))
        .await
        .unwrap();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let config = dir.path().join("portwarden.yaml");
    std::fs::write(&config, synthetic::config(N, port)).unwrap();
    let mut d = TestDaemon::start_with(dir, config, Some(data)).await;
    // The background aggregates are computed right after start.
    let cache = d.daemon.as_ref().unwrap().state.web.overview.clone();
    let t0 = std::time::Instant::now();
    while cache.avail_30d().1.is_none() || cache.sparks().1.is_none() {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "aggregates computed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = d.get("/").await;
    assert_eq!(r.status, 200);
    let rows = r.body.matches("<tr class=s-").count();
    assert_eq!(rows, N, "every monitor is listed");
    let sparks = r.body.matches("<path d=\"M").count();
    assert!(sparks >= N * 9 / 10, "sparklines drawn: {sparks}");
    assert!(r.body.contains("99.") || r.body.contains("100%"));
    eprintln!(
        "overview of {N} monitors: {} bytes ({:.0} per monitor)",
        r.body.len(),
        r.body.len() as f64 / N as f64
    );
    assert!(
        r.body.len() < 1_000_000,
        "overview is {} bytes",
        r.body.len()
    );
    let m = d.get("/monitors/m-00042?range=30d").await;
    assert_eq!(m.status, 200);
    assert!(
        m.body.contains("720 points") || m.body.contains("721 points"),
        "30 days of hourly points"
    );
    eprintln!("monitor page (30 d): {} bytes", m.body.len());
    d.stop().await;
}
