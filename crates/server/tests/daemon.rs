//! The daemon end to end, in process: real servers die and come back, the API tells.

mod common;

use std::time::{Duration, Instant};

use common::*;
use portwarden_testkit as tk;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_server_opens_an_incident_and_recovery_resolves_it() {
    let Some(_) = tk::need_binary("redis-server") else {
        return;
    };
    let mut redis = tk::process::Server::redis().expect("start redis");
    let port = redis.port;
    let yaml = config(&format!(
        "  - name: cache\n    target: tcp://127.0.0.1:{port}\n    tier: critical\n    interval: 1s\n    timeout: 500ms\n    service: redis\n    owner: team-platform\n    capability: sessions\n    runbook: https://runbooks.example/redis\n"
    ));
    let mut d = TestDaemon::start(&yaml).await;
    d.wait_monitor("cache", Duration::from_secs(10), "cache up", |v| {
        v["state"] == "up"
    })
    .await;

    // Kill it: critical = 2 consecutive failures at 1 s + 0.5 s timeout.
    redis.kill();
    let killed = Instant::now();
    let v = d
        .wait_monitor("cache", Duration::from_secs(10), "cache down", |v| {
            v["state"] == "down"
        })
        .await;
    let took = killed.elapsed();
    let bound = Duration::from_secs(2) + Duration::from_millis(500) + Duration::from_millis(1000);
    assert!(
        took <= bound,
        "down after {took:?}, bound {bound:?} (2 × interval + timeout, + one interval of phase)"
    );
    assert_eq!(v["last_observation"]["error_kind"], "refused", "{v:#}");
    let incident_id = d
        .wait_monitor("cache", Duration::from_secs(5), "incident id", |v| {
            v["incident"].is_i64()
        })
        .await["incident"]
        .as_i64()
        .unwrap();
    let open = d.json("/api/v1/incidents?state=open").await;
    assert!(
        open["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == incident_id),
        "{open:#}"
    );
    let inc = d.json(&format!("/api/v1/incidents/{incident_id}")).await;
    assert_eq!(inc["monitor"], "cache");
    assert_eq!(inc["error_kind"], "refused");
    assert!(
        inc["last_healthy"]["at"].is_string(),
        "last known healthy observation: {inc:#}"
    );

    // Restart on the same port: recovery (2 good runs) resolves it.
    let mut cmd = std::process::Command::new(tk::which("redis-server").unwrap());
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]);
    let _redis2 =
        tk::process::Server::spawn_tcp("redis-server", cmd, port, Duration::from_secs(10)).unwrap();
    d.wait_monitor("cache", Duration::from_secs(10), "cache up again", |v| {
        v["state"] == "up"
    })
    .await;
    let inc = tk::http::wait_until(Duration::from_secs(5), || {
        let r = d.client().get(&format!("/api/v1/incidents/{incident_id}"));
        let v = r.json();
        (v["status"] == "resolved").then_some(v)
    })
    .expect("incident resolved");
    let kinds: Vec<&str> = inc["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"opened"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"resolved"), "{kinds:?}");
    let resolved = d.json("/api/v1/incidents?state=resolved").await;
    assert!(
        resolved["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == incident_id)
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failure_ratio_tolerates_one_in_ten_not_five_in_ten() {
    // A service failing 1 connection in 10, and one failing 5 in 10. Monitors read the banner
    // so a reset after accept counts as a failure. Default failure_ratio (20 %), a window of
    // 10 runs, consecutive_failures raised so only the ratio rule can open incidents.
    let (one, _) = tk::hostile::failing_fraction(10, 0, b"OK\r\n").await;
    let (five, _) = tk::hostile::failing_fraction(10, 5, b"OK\r\n").await;
    let m = |name: &str, port: u16| {
        format!(
            "  - name: {name}\n    target: tcp://127.0.0.1:{port}\n    interval: 300ms\n    timeout: 200ms\n    check: {{type: tcp, read_banner: 150ms}}\n    rules: {{consecutive_failures: 6, window: 3s, min_samples: 8, flap: {{enabled: false}}}}\n"
        )
    };
    let yaml = config(&(m("one-in-ten", one) + &m("five-in-ten", five)));
    let mut d = TestDaemon::start(&yaml).await;
    let bad = d
        .wait_monitor(
            "five-in-ten",
            Duration::from_secs(15),
            "five-in-ten down",
            |v| v["state"] == "down",
        )
        .await;
    assert!(
        bad["reason"].as_str().unwrap().contains("% of"),
        "opened by the ratio rule: {bad:#}"
    );
    // Keep watching the 1-in-10 monitor for 30 runs: never an incident.
    let until = Instant::now() + Duration::from_secs(9);
    while Instant::now() < until {
        let v = d.monitor("one-in-ten").await;
        assert_ne!(v["state"], "down", "{v:#}");
        assert!(v["incident"].is_null(), "{v:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let v = d.monitor("one-in-ten").await;
    assert!(v["runs"].as_u64().unwrap() >= 30, "{v:#}");
    let inc = d.json("/api/v1/incidents?monitor=one-in-ten").await;
    assert!(inc["incidents"].as_array().unwrap().is_empty(), "{inc:#}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overload_makes_results_unknown_not_down() {
    // Concurrency 1 and slow targets (accept, never answer, 1 s timeout): runs start seconds
    // late. Late results are `unknown`, health says lagging, and the healthy targets get no
    // incident.
    let slow = tk::hostile::silent().await;
    let healthy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hport = healthy.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = healthy.accept().await {
            drop(s);
        }
    });
    let mut yaml = String::from("engine:\n  concurrency: 1\n  lag_threshold: 500ms\nmonitors:\n");
    for i in 0..6 {
        yaml.push_str(&format!(
            "  - {{name: slow-{i}, target: \"tcp://127.0.0.1:{slow}\", interval: 2s, timeout: 1s, check: {{type: send_expect, steps: [{{expect: HELLO}}]}}}}\n"
        ));
    }
    for i in 0..4 {
        yaml.push_str(&format!("  - {{name: healthy-{i}, target: \"tcp://127.0.0.1:{hport}\", interval: 2s, timeout: 1s, tier: critical}}\n"));
    }
    let mut d = TestDaemon::start(&yaml).await;
    let health = tk::http::wait_until(Duration::from_secs(30), || {
        let v = d.client().get("/api/v1/health").json();
        (v["engine"]["lagging"] == true).then_some(v)
    })
    .expect("engine reports lagging");
    assert_eq!(health["status"], "degraded");
    assert!(
        health["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().contains("lagging")),
        "{health:#}"
    );
    let metrics = d.get("/metrics").await.body;
    assert!(
        metrics.contains("portwarden_engine_lagging 1"),
        "lagging metric"
    );
    // Let it run lagging for a while.
    tokio::time::sleep(Duration::from_secs(8)).await;
    for i in 0..4 {
        let name = format!("healthy-{i}");
        let v = d.monitor(&name).await;
        assert!(
            v["incident"].is_null(),
            "no incident for a healthy target: {v:#}"
        );
        assert_ne!(v["state"], "down", "{v:#}");
        let inc = d.json(&format!("/api/v1/incidents?monitor={name}")).await;
        assert!(inc["incidents"].as_array().unwrap().is_empty(), "{inc:#}");
    }
    // Late results were recorded as unknown with the reason.
    let page = d
        .json("/api/v1/monitors/healthy-0/observations?limit=50")
        .await;
    let unknown: Vec<&Value> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["outcome"] == "unknown")
        .collect();
    assert!(!unknown.is_empty(), "{page:#}");
    assert_eq!(unknown[0]["error_kind"], "local");
    assert!(
        unknown[0]["message"].as_str().unwrap().contains("late"),
        "{:#}",
        unknown[0]
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_errors_name_the_problem() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let mut d = TestDaemon::start(&config(&format!(
        "  - name: web\n    target: tcp://127.0.0.1:{port}\n    interval: 1s\n    timeout: 500ms\n"
    )))
    .await;
    let r = d.get("/api/v1/monitors/nope").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "not_found");
    let r = d.get("/api/v1/monitors/web/observations?limit=5000").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["parameter"], "limit");
    let r = d
        .get("/api/v1/monitors/web/observations?from=yesterday")
        .await;
    assert_eq!(r.json()["parameter"], "from");
    let r = d.get("/api/v1/monitors/web/observations?cursor=%%%").await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = d.get("/api/v1/monitors/web/availability?period=1y").await;
    assert_eq!(r.json()["parameter"], "period");
    let r = d.get("/api/v1/monitors?color=red").await;
    assert_eq!(r.json()["parameter"], "color");
    let r = d.get("/api/v1/incidents/abc").await;
    assert_eq!(r.json()["parameter"], "id");
    // Check now runs only configured monitors.
    let r = d.post("/api/v1/monitors/web/check").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["observations"][0]["outcome"], "up");
    let r = d.post("/api/v1/monitors/tcp:%2F%2F10.0.0.1:22/check").await;
    assert_eq!(r.status, 404);
    // Paging and availability.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let p1 = d.json("/api/v1/monitors/web/observations?limit=2").await;
    assert_eq!(p1["items"].as_array().unwrap().len(), 2);
    let cursor = p1["next_cursor"].as_str().expect("a next page");
    let p2 = d
        .json(&format!(
            "/api/v1/monitors/web/observations?limit=2&cursor={cursor}"
        ))
        .await;
    assert_ne!(p1["items"][0]["started_at"], p2["items"][0]["started_at"]);
    let a = d.json("/api/v1/monitors/web/availability?period=7d").await;
    assert_eq!(a["availability"]["ratio"], 1.0, "{a:#}");
    assert!(!a["daily"].as_array().unwrap().is_empty());
    let doc = d.json("/api/v1/openapi.json").await;
    assert_eq!(doc["openapi"], "3.1.0");
    d.stop().await;
}

#[test]
fn every_route_is_documented() {
    let documented = portwarden_server::api::documented_paths();
    for route in [
        "/api/v1/monitors",
        "/api/v1/monitors/{name}",
        "/api/v1/monitors/{name}/observations",
        "/api/v1/monitors/{name}/availability",
        "/api/v1/monitors/{name}/check",
        "/api/v1/incidents",
        "/api/v1/incidents/{id}",
        "/api/v1/incidents/{id}/ack",
        "/api/v1/silences",
        "/api/v1/silences/{id}",
        "/ack/{token}",
        "/api/v1/health",
        "/api/v1/discovery",
        "/api/v1/scans",
        "/api/v1/scans/{id}",
        "/api/v1/findings",
        "/api/v1/baselines",
        "/api/v1/baselines/{name}/scan",
        "/api/v1/reports",
        "/api/v1/agents",
        "/api/v1/agents/{name}",
        "/agent/v1/heartbeat",
        "/agent/v1/assignment",
        "/agent/v1/observations",
        "/api/v1/openapi.json",
        "/metrics",
    ] {
        assert!(
            documented.iter().any(|d| d == route),
            "{route} missing from openapi.json"
        );
    }
}
