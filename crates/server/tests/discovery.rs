//! Dynamic inventory through the daemon: real sources (dnsmasq, files, a local http_sd
//! server), the churn rules (add within one refresh, pause then retire after the grace period
//! without paging, keep the last good set on errors, caps) and unchanged monitors keeping their
//! state and schedule.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use portwarden_testkit as tk;
use serde_json::Value;

/// A TCP listener that accepts and drops connections until dropped (dual-stack when the host
/// has IPv6, so `localhost` works whichever address it resolves to).
struct Listener {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    async fn start() -> Listener {
        let l = match tokio::net::TcpListener::bind("[::]:0").await {
            Ok(l) => l,
            Err(_) => tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        };
        let port = l.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                drop(s);
            }
        });
        Listener { port, task }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn names(d: &TestDaemon) -> Vec<String> {
    let v = d.json("/api/v1/monitors").await;
    v["monitors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect()
}

async fn source(d: &TestDaemon, name: &str) -> Value {
    let v = d.json("/api/v1/discovery").await;
    v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no source {name}: {v:#}"))
}

/// Polls `f` until it returns `Some`, or panics after `limit`.
async fn until<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Like `TestDaemon::wait_monitor`, but the monitor may not exist yet (it is discovered).
async fn wait_for(
    d: &TestDaemon,
    name: &str,
    limit: Duration,
    what: &str,
    f: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let r = d.get(&format!("/api/v1/monitors/{name}")).await;
        if r.status == 200 {
            let v = r.json();
            if f(&v) {
                return v;
            }
        }
        if start.elapsed() > limit {
            panic!(
                "timed out after {limit:?} waiting for {what}; last: {} {}",
                r.status, r.body
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn incidents(d: &TestDaemon) -> Vec<Value> {
    d.json("/api/v1/incidents").await["incidents"]
        .as_array()
        .unwrap()
        .clone()
}

// ---------------------------------------------------------------- DNS (dnsmasq) -----------

/// dnsmasq on 127.0.0.1:`port`, authoritative for `pw.test`, with one SRV record
/// `_pg._tcp.pw.test → localhost:<p>` per port.
fn dnsmasq(port: u16, srv_ports: &[u16]) -> tk::process::Server {
    let bin = tk::which("dnsmasq").expect("dnsmasq");
    let mut cmd = std::process::Command::new(bin);
    cmd.args([
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--listen-address=127.0.0.1",
        "--local=/pw.test/",
        "--pid-file=",
        &format!("--port={port}"),
    ]);
    for p in srv_ports {
        cmd.arg(format!("--srv-host=_pg._tcp.pw.test,localhost,{p},0,10"));
    }
    tk::process::Server::spawn_tcp("dnsmasq", cmd, port, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dns_srv_records_add_retire_and_survive_an_outage() {
    if !tk::need(
        tk::which("dnsmasq").is_some(),
        "dnsmasq (apt-get install dnsmasq)",
    ) {
        return;
    }
    let a = Listener::start().await;
    let b = Listener::start().await;
    let dns_port = tk::free_port();
    let mut dns = dnsmasq(dns_port, &[a.port]);
    let mut d = TestDaemon::start(&format!(
        r#"discover:
  - name: pg
    source:
      type: dns
      names: [_pg._tcp.pw.test]
      server: "127.0.0.1:{dns_port}"
      timeout: 500ms
    refresh: 1s
    template:
      name: "pg-{{{{ port }}}}"
      check: tcp
      tier: critical
      interval: 500ms
      timeout: 300ms
      labels:
        srv_weight: "{{{{ meta.weight }}}}"
"#
    ))
    .await;
    let pa = format!("pg-{}", a.port);
    let pb = format!("pg-{}", b.port);
    let before = wait_for(&d, &pa, Duration::from_secs(15), "pg-a up", |v| {
        v["state"] == "up" && v["runs"].as_u64() >= Some(2)
    })
    .await;
    assert_eq!(before["source"], "pg", "{before:#}");
    assert_eq!(before["target"], format!("localhost:{}", a.port));
    assert_eq!(before["labels"]["srv_weight"], "10");

    // Add an SRV record (dnsmasq re-reads records only on restart): the monitor appears
    // within one refresh of the server answering with it.
    drop(dns);
    dns = dnsmasq(dns_port, &[a.port, b.port]);
    let r0 = source(&d, "pg").await["refreshes"].as_u64().unwrap();
    until(Duration::from_secs(10), "pg-b discovered", || async {
        names(&d).await.contains(&pb).then_some(())
    })
    .await;
    let r1 = source(&d, "pg").await["refreshes"].as_u64().unwrap();
    assert!(r1 <= r0 + 1, "appeared within one refresh ({r0} → {r1})");
    let vb = d.monitor(&pb).await;
    assert!(
        vb["state"] == "pending" || vb["state"] == "up",
        "new targets start pending: {vb:#}"
    );
    wait_for(&d, &pb, Duration::from_secs(10), "pg-b up", |v| {
        v["state"] == "up"
    })
    .await;
    // The unchanged monitor keeps running (wait for its next run: pg-b may come up faster
    // than one of pg-a's intervals) and keeps its state.
    let runs_before = before["runs"].as_u64();
    let after = wait_for(
        &d,
        &pa,
        Duration::from_secs(10),
        "pg-a keeps running",
        |v| v["runs"].as_u64() > runs_before,
    )
    .await;
    assert_eq!(
        after["since"], before["since"],
        "unchanged monitor keeps its state"
    );

    // Remove the record: paused at once (not probed), then retired after the grace period
    // (2 refreshes). The instance is then shut down: no `down`, no incident.
    drop(dns);
    dns = dnsmasq(dns_port, &[a.port]);
    let paused = wait_for(&d, &pb, Duration::from_secs(10), "pg-b paused", |v| {
        v["state"] == "paused"
    })
    .await;
    assert!(
        paused["reason"]
            .as_str()
            .unwrap()
            .contains("gone from discover `pg`"),
        "{paused:#}"
    );
    drop(b);
    until(Duration::from_secs(10), "pg-b retired", || async {
        (!names(&d).await.contains(&pb)).then_some(())
    })
    .await;
    let h = d.json(&format!("/api/v1/monitors/{pb}/observations")).await;
    assert!(
        !h["items"].as_array().unwrap().is_empty(),
        "history of a retired monitor stays queryable: {h:#}"
    );
    assert_eq!(
        d.get(&format!("/api/v1/monitors/{pb}/availability"))
            .await
            .status,
        200
    );
    let s = source(&d, "pg").await;
    assert_eq!(s["retired_total"], 1, "{s:#}");
    assert!(
        incidents(&d).await.is_empty(),
        "no incident for a retired target"
    );

    // DNS outage: refreshes fail, the last good set stays (well past the grace period), and
    // health and a metric say so.
    dns.kill();
    let s = until(Duration::from_secs(15), "source failing", || async {
        let s = source(&d, "pg").await;
        (s["state"] == "failing").then_some(s)
    })
    .await;
    assert!(
        s["error"].as_str().unwrap().contains("_pg._tcp.pw.test"),
        "{s:#}"
    );
    let h = d.json("/api/v1/health").await;
    assert_eq!(h["status"], "degraded");
    let p = h["problems"].as_array().unwrap();
    assert!(
        p.iter().any(
            |p| p.as_str().unwrap().contains("discovery `pg` (dns) failing")
                && p.as_str().unwrap().contains("last good 1 monitor")
        ),
        "{h:#}"
    );
    let m = d.get("/metrics").await.body;
    assert!(
        m.contains(r#"portwarden_discovery_source_up{source="pg",kind="dns"} 0"#),
        "{m}"
    );
    let fails0 = s["failures"].as_u64().unwrap();
    until(
        Duration::from_secs(15),
        "3 more failed refreshes",
        || async {
            (source(&d, "pg").await["failures"].as_u64().unwrap() >= fails0 + 3).then_some(())
        },
    )
    .await;
    let v = d.monitor(&pa).await;
    assert_eq!(
        v["state"], "up",
        "kept and still probed during the outage: {v:#}"
    );
    assert_eq!(names(&d).await, vec![pa.clone()]);

    // The server comes back: healthy again, nothing churned.
    let _dns = dnsmasq(dns_port, &[a.port]);
    until(Duration::from_secs(10), "source ok", || async {
        (source(&d, "pg").await["state"] == "ok").then_some(())
    })
    .await;
    assert_eq!(d.json("/api/v1/health").await["status"], "ok");
    assert!(incidents(&d).await.is_empty());
    d.stop().await;
}

// ---------------------------------------------------------------- files ------------------

fn file_sd(dir: &Path, name: &str, ports: &[u16]) {
    let targets: Vec<String> = ports.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
    let text = format!(
        "# written by terraform\n- targets: [{}]\n  labels:\n    env: prod\n",
        targets.join(", ")
    );
    // Write then rename, as generators do.
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn files_source_adds_and_removes_live_keeping_unchanged_monitors() {
    let l1 = Listener::start().await;
    let l2 = Listener::start().await;
    let l3 = Listener::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("portwarden.yaml");
    let sd = dir.path().join("targets");
    std::fs::create_dir(&sd).unwrap();
    file_sd(&sd, "web.yaml", &[l1.port, l2.port]);
    std::fs::write(sd.join("ignored.txt"), "not a target file").unwrap();
    std::fs::write(
        &cfg_path,
        r#"monitors:
  - name: written
    target: tcp://127.0.0.1:1
    enabled: false
discover:
  - name: tf
    source: {type: files, dir: targets}
    refresh: 500ms
    template:
      name: "web-{{ port }}"
      service: "web-{{ labels.env }}"
      check: tcp
      interval: 300ms
      timeout: 200ms
"#,
    )
    .unwrap();
    let mut d = TestDaemon::start_with(dir, cfg_path, None).await;
    let w1 = format!("web-{}", l1.port);
    let w2 = format!("web-{}", l2.port);
    let w3 = format!("web-{}", l3.port);
    let before = wait_for(&d, &w1, Duration::from_secs(15), "web-1 up", |v| {
        v["state"] == "up" && v["runs"].as_u64() >= Some(3)
    })
    .await;
    assert_eq!(before["service"], "web-prod");
    wait_for(&d, &w2, Duration::from_secs(10), "web-2 up", |v| {
        v["state"] == "up"
    })
    .await;

    // Add one, remove one, in one edit.
    file_sd(
        d.dir.path().join("targets").as_path(),
        "web.yaml",
        &[l1.port, l3.port],
    );
    wait_for(&d, &w3, Duration::from_secs(10), "web-3 up", |v| {
        v["state"] == "up"
    })
    .await;
    wait_for(&d, &w2, Duration::from_secs(10), "web-2 paused", |v| {
        v["state"] == "paused"
    })
    .await;
    until(Duration::from_secs(10), "web-2 retired", || async {
        (!names(&d).await.contains(&w2)).then_some(())
    })
    .await;
    // A second file joins; a broken file keeps its last good targets and says so.
    std::fs::write(
        d.dir.path().join("targets/more.json"),
        r#"[{"targets": []}]"#,
    )
    .unwrap();
    std::fs::write(
        d.dir.path().join("targets/web.yaml"),
        "- targets: ['127.0.0.1:",
    )
    .unwrap();
    let s = until(Duration::from_secs(10), "broken file reported", || async {
        let s = source(&d, "tf").await;
        (s["problems_total"].as_u64() >= Some(1)).then_some(s)
    })
    .await;
    assert!(
        s["problems"][0].as_str().unwrap().contains("web.yaml"),
        "{s:#}"
    );
    assert!(
        s["problems"][0]
            .as_str()
            .unwrap()
            .contains("last good 2 target"),
        "{s:#}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut now = names(&d).await;
    now.sort();
    let mut want = vec!["written".to_string(), w1.clone(), w3.clone()];
    want.sort();
    assert_eq!(now, want, "nothing retired while the file is broken");
    let h = d.json("/api/v1/health").await;
    assert!(
        h["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().contains("discovery `tf`")),
        "{h:#}"
    );

    // The unchanged monitor kept its state and schedule through every refresh.
    let after = d.monitor(&w1).await;
    assert_eq!(after["since"], before["since"], "{after:#}");
    assert!(
        after["runs"].as_u64().unwrap() >= before["runs"].as_u64().unwrap() + 10,
        "{after:#}"
    );
    assert_eq!(after["state"], "up");
    assert!(incidents(&d).await.is_empty());

    // A config reload keeps the discovered monitors (and their state).
    assert!(d.daemon.as_ref().unwrap().reload().await);
    let again = d.monitor(&w1).await;
    assert_eq!(again["since"], before["since"]);
    d.stop().await;
}

// ---------------------------------------------------------------- http_sd ----------------

/// A Prometheus http_sd server: answers `body` to requests bearing the token, 401 otherwise.
struct SdServer {
    port: u16,
    body: Arc<Mutex<String>>,
    hits: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl SdServer {
    async fn start(token: &'static str) -> SdServer {
        use axum::extract::State;
        use axum::http::{HeaderMap, StatusCode};
        use axum::routing::get;
        type St = (Arc<Mutex<String>>, Arc<Mutex<Vec<String>>>);
        let body = Arc::new(Mutex::new("[]".to_string()));
        let hits = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route(
                "/sd",
                get(
                    move |State((body, hits)): State<St>, h: HeaderMap| async move {
                        let auth = h
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        let refresh = h
                            .get("x-prometheus-refresh-interval-seconds")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string();
                        hits.lock().unwrap().push(format!("{auth}|{refresh}"));
                        if auth != format!("Bearer {token}") {
                            return (StatusCode::UNAUTHORIZED, "no".to_string());
                        }
                        (StatusCode::OK, body.lock().unwrap().clone())
                    },
                ),
            )
            .with_state((body.clone(), hits.clone()));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        SdServer {
            port,
            body,
            hits,
            task,
        }
    }

    fn serve(&self, ports: &[u16]) {
        let targets: Vec<String> = ports.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
        *self.body.lock().unwrap() = format!(
            r#"[{{"targets": [{}], "labels": {{"job": "api", "__meta_dc": "lon"}}}}]"#,
            targets.join(",")
        );
    }
}

impl Drop for SdServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn http_config(dir: &Path, port: u16, token_file: &str, max: Option<usize>) -> String {
    std::fs::write(dir.join("token"), token_file).unwrap();
    format!(
        r#"discover:
  - name: cmdb
    source:
      type: http
      url: "http://127.0.0.1:{port}/sd"
      bearer_token: "${{file:{}}}"
    refresh: 500ms
{}    template:
      name: "{{{{ labels.job }}}}-{{{{ port }}}}"
      labels:
        dc: "{{{{ labels.__meta_dc }}}}"
      check: tcp
      interval: 300ms
      timeout: 200ms
"#,
        dir.join("token").display(),
        max.map(|m| format!("    max_monitors: {m}\n"))
            .unwrap_or_default()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_sd_source_with_auth_adds_and_removes_live() {
    let l1 = Listener::start().await;
    let l2 = Listener::start().await;
    let sd = SdServer::start("s3cret-token").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("portwarden.yaml");
    // First a wrong token: the refresh fails loudly, nothing is created.
    std::fs::write(&cfg_path, http_config(dir.path(), sd.port, "wrong", None)).unwrap();
    sd.serve(&[l1.port]);
    let mut d = TestDaemon::start_with(dir, cfg_path.clone(), None).await;
    let s = until(Duration::from_secs(10), "401 reported", || async {
        let s = source(&d, "cmdb").await;
        (s["state"] == "failing").then_some(s)
    })
    .await;
    let err = s["error"].as_str().unwrap();
    assert!(err.contains("401") && err.contains("bearer_token"), "{err}");
    assert!(
        !err.contains("s3cret") && !err.contains("wrong"),
        "no secret in errors: {err}"
    );
    // Fix the token (a reload), and targets arrive.
    std::fs::write(d.dir.path().join("token"), "s3cret-token").unwrap();
    // Through the helper, so the rewritten config keeps the test API token.
    d.write_config(&http_config(d.dir.path(), sd.port, "s3cret-token", None));
    assert!(d.daemon.as_ref().unwrap().reload().await);
    let a1 = format!("api-{}", l1.port);
    let a2 = format!("api-{}", l2.port);
    let before = wait_for(&d, &a1, Duration::from_secs(10), "api-1 up", |v| {
        v["state"] == "up" && v["runs"].as_u64() >= Some(3)
    })
    .await;
    assert_eq!(before["labels"]["dc"], "lon");
    assert!(
        sd.hits
            .lock()
            .unwrap()
            .iter()
            .any(|h| h == "Bearer s3cret-token|1"),
        "auth header and refresh interval sent"
    );
    sd.serve(&[l1.port, l2.port]);
    wait_for(&d, &a2, Duration::from_secs(10), "api-2 up", |v| {
        v["state"] == "up"
    })
    .await;
    sd.serve(&[l2.port]);
    wait_for(&d, &a1, Duration::from_secs(10), "api-1 paused", |v| {
        v["state"] == "paused"
    })
    .await;
    // Back before the grace period ends: resumed, same monitor (history and state kept).
    sd.serve(&[l1.port, l2.port]);
    let back = wait_for(&d, &a1, Duration::from_secs(10), "api-1 back up", |v| {
        v["state"] == "up"
    })
    .await;
    assert_eq!(
        back["since"], before["since"],
        "resumed with its state: {back:#}"
    );
    sd.serve(&[l2.port]);
    until(Duration::from_secs(10), "api-1 retired", || async {
        (!names(&d).await.contains(&a1)).then_some(())
    })
    .await;
    // The server fails: last good set kept.
    *sd.body.lock().unwrap() = "{ not json".into();
    let s = until(Duration::from_secs(10), "bad json reported", || async {
        let s = source(&d, "cmdb").await;
        (s["state"] == "failing").then_some(s)
    })
    .await;
    assert!(
        s["error"]
            .as_str()
            .unwrap()
            .contains("not Prometheus sd JSON"),
        "{s:#}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(names(&d).await, vec![a2.clone()]);
    assert_eq!(d.monitor(&a2).await["state"], "up");
    assert!(incidents(&d).await.is_empty());
    d.stop().await;
}

// ---------------------------------------------------------------- caps -------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_source_above_its_cap_is_refused_and_the_previous_set_kept() {
    let l1 = Listener::start().await;
    let l2 = Listener::start().await;
    let sd = SdServer::start("t").await;
    sd.serve(&[l1.port, l2.port]);
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("portwarden.yaml");
    std::fs::write(
        &cfg_path,
        http_config(dir.path(), sd.port, "t", Some(10_000)),
    )
    .unwrap();
    let mut d = TestDaemon::start_with(dir, cfg_path, None).await;
    let a1 = format!("api-{}", l1.port);
    wait_for(&d, &a1, Duration::from_secs(10), "api-1 up", |v| {
        v["state"] == "up"
    })
    .await;
    // 100 000 targets (about 2 MB of JSON) against a cap of 10 000.
    let big: Vec<String> = (0..100_000u32)
        .map(|i| format!("\"10.{}.{}.{}:80\"", i >> 16, (i >> 8) & 255, i & 255))
        .collect();
    *sd.body.lock().unwrap() = format!(
        r#"[{{"targets": [{}], "labels": {{"job": "api"}}}}]"#,
        big.join(",")
    );
    let s = until(Duration::from_secs(15), "refused", || async {
        let s = source(&d, "cmdb").await;
        (s["state"] == "refused").then_some(s)
    })
    .await;
    let err = s["error"].as_str().unwrap();
    assert!(
        err.contains("100000 targets")
            && err.contains("max_monitors: 10000")
            && err.contains("previous 2 monitor(s) are kept"),
        "{err}"
    );
    assert!(
        err.contains("portwarden.yaml:2"),
        "says where to raise it: {err}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut n = names(&d).await;
    n.sort();
    let mut want = vec![a1.clone(), format!("api-{}", l2.port)];
    want.sort();
    assert_eq!(n, want, "previous set kept");
    assert_eq!(d.monitor(&a1).await["state"], "up", "not paused");
    let h = d.json("/api/v1/health").await;
    assert!(
        h["problems"].as_array().unwrap().iter().any(|p| {
            let p = p.as_str().unwrap();
            p.contains("refresh refused") && p.contains("max_monitors")
        }),
        "{h:#}"
    );
    let m = d.get("/metrics").await.body;
    assert!(
        m.contains(r#"portwarden_discovery_refreshes_total{source="cmdb",result="refused"}"#),
        "{m}"
    );
    d.stop().await;
}
