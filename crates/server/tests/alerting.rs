//! Acceptance of issue 6 (alerting) at daemon level, with real receivers: an HTTP server in
//! this test process that records every request (and answers what the test tells it), real
//! servers that the test kills and restarts (redis-server), and an in-process daemon.
//!
//! 1. trigger + resolve exactly once per receiver, with every content field
//! 2. 500 ×5 then 200 → delivered once, 6 attempts recorded; 429 + Retry-After: 2 honoured
//! 4. restart while down and notified → no second trigger; recovery while stopped → one resolve
//! 5. 30 monitors on one host go down together → one grouped message per route
//! 6. maintenance: killed inside → no notification, time excluded; killed after → notification
//! 7. escalation when unacknowledged; acknowledged (signed link) → no escalation
//! 8. a log capture of all of it holds none of the configured secrets
//!
//! And: a silence holds repeats and escalations too, which resume when it is lifted; an open
//! incident that gets worse (degraded → down) tells its receivers once; silences from the UI.
//!
//! (3, `kill -9` of the daemon while a receiver is down, is in `crates/cli/tests/alerting.rs`.)

mod common;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use common::*;
use portwarden_testkit as tk;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Log capture (acceptance 8): every test in this binary logs into one buffer.

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture() -> &'static Capture {
    static C: OnceLock<Capture> = OnceLock::new();
    C.get_or_init(|| {
        let c = Capture::default();
        let w = c.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug,hyper=info,reqwest=info,h2=info,rustls=info")
            .with_writer(move || w.clone())
            .with_ansi(false)
            .try_init();
        c
    })
}

// ---------------------------------------------------------------------------------------------
// A recording receiver.

#[derive(Debug, Clone)]
struct Got {
    at: Instant,
    path: String,
    key: Option<String>,
    status: u16,
    body: Value,
}

#[derive(Default)]
struct RecvState {
    /// Answers to give before answering 200: (status, Retry-After seconds).
    plan: VecDeque<(u16, Option<u64>)>,
    got: Vec<Got>,
}

#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    state: Arc<Mutex<RecvState>>,
    _stop: Arc<tokio::sync::oneshot::Sender<()>>,
}

async fn record(
    State(st): State<Arc<Mutex<RecvState>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let mut s = st.lock().unwrap();
    let (status, retry) = s.plan.pop_front().unwrap_or((200, None));
    s.got.push(Got {
        at: Instant::now(),
        path: uri.path().to_string(),
        key: headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        status,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let code = StatusCode::from_u16(status).unwrap();
    match retry {
        Some(r) => (code, [("retry-after", r.to_string())], "busy").into_response(),
        None => (code, "ok").into_response(),
    }
}

impl Receiver {
    async fn start() -> Receiver {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    async fn start_on(addr: SocketAddr) -> Receiver {
        let state = Arc::new(Mutex::new(RecvState::default()));
        let app = axum::Router::new()
            .fallback(record)
            .with_state(state.clone());
        let l = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(l, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Receiver {
            addr,
            state,
            _stop: Arc::new(tx),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    fn plan(&self, answers: &[(u16, Option<u64>)]) {
        self.state
            .lock()
            .unwrap()
            .plan
            .extend(answers.iter().copied());
    }

    fn got(&self) -> Vec<Got> {
        self.state.lock().unwrap().got.clone()
    }

    /// Requests answered 200 for `event`.
    fn delivered(&self, event: &str) -> Vec<Got> {
        self.got()
            .into_iter()
            .filter(|g| g.status == 200 && g.body["event"] == event)
            .collect()
    }

    async fn wait(&self, what: &str, limit: Duration, f: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        let start = Instant::now();
        loop {
            let g = self.got();
            if f(&g) {
                return g;
            }
            if start.elapsed() > limit {
                panic!(
                    "timed out after {limit:?} waiting for {what}; got {:#?}",
                    g.iter()
                        .map(|g| (&g.path, g.status, &g.body["event"], &g.body["title"]))
                        .collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Real servers.

fn redis_on(port: u16) -> Option<tk::process::Server> {
    let bin = tk::which("redis-server")?;
    let mut cmd = std::process::Command::new(bin);
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
    cmd.current_dir(std::env::temp_dir());
    tk::process::Server::spawn_tcp("redis-server", cmd, port, Duration::from_secs(10)).ok()
}

/// A port that nothing listens on and nobody else can take while this lives: bound without
/// SO_REUSEADDR and never listening, so connects are refused and parallel tests (or our own
/// probes' source ports) cannot land on it.
struct Closed(#[allow(dead_code)] socket2::Socket);

fn closed_on(port: u16) -> Closed {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    // Right after a listener on it closed the port is free again; retry briefly.
    let start = Instant::now();
    loop {
        match s.bind(&addr.into()) {
            Ok(()) => return Closed(s),
            Err(e) if start.elapsed() < Duration::from_secs(2) => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("cannot reserve port {port}: {e}"),
        }
    }
}

/// A free port, kept closed (see [`Closed`]).
fn closed_port() -> (u16, Closed) {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let addr: SocketAddr = ([127, 0, 0, 1], 0).into();
    s.bind(&addr.into()).unwrap();
    let port = s.local_addr().unwrap().as_socket().unwrap().port();
    (port, Closed(s))
}

/// Closes a listener and keeps its port closed.
fn kill(l: std::net::TcpListener) -> Closed {
    let port = l.local_addr().unwrap().port();
    drop(l);
    closed_on(port)
}

/// aiosmtpd on a free port (plain SMTP, localhost only) writing each mail as JSON to `out`.
fn start_smtp(out: &std::path::Path) -> Option<tk::process::Server> {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !tk::need(
        ok,
        "python3 with aiosmtpd (pip install aiosmtpd; .ci/run does)",
    ) {
        return None;
    }
    let port = tk::free_port();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../notify/tests/smtp_server.py");
    let mut cmd = std::process::Command::new("python3");
    cmd.args(["-W", "ignore"])
        .arg(script)
        .args(["--port", &port.to_string(), "--mode", "plain", "--out"])
        .arg(out);
    Some(
        tk::process::Server::spawn_tcp("aiosmtpd", cmd, port, Duration::from_secs(15))
            .expect("aiosmtpd starts"),
    )
}

fn have_redis() -> bool {
    tk::need(
        tk::which("redis-server").is_some(),
        "redis-server (apt-get install redis-server)",
    )
}

/// A monitor of a real redis on `port`, with every metadata field, judged fast.
fn redis_monitor(name: &str, port: u16) -> String {
    format!(
        "  - name: {name}\n    target: redis://127.0.0.1:{port}\n    interval: 500ms\n    timeout: 400ms\n    service: orders-cache\n    capability: checkout\n    owner: team-payments\n    severity: critical\n    runbook: https://runbooks.example/redis\n    labels: {{env: prod}}\n    rules: {{consecutive_failures: 2, recovery: 2, flap: {{enabled: false}}}}\n"
    )
}

fn tcp_monitor(name: &str, port: u16) -> String {
    format!(
        "  - name: {name}\n    target: tcp://127.0.0.1:{port}\n    interval: 500ms\n    timeout: 400ms\n    owner: team-ops\n    rules: {{consecutive_failures: 2, recovery: 2, flap: {{enabled: false}}}}\n"
    )
}

/// `monitors` (YAML list items) with one default route to the webhook receiver `hook`.
fn one_route(monitors: &str, hook: &Receiver) -> String {
    format!(
        "monitors:\n{monitors}receivers:\n{}routes:\n  - name: all\n    default: true\n    receivers: hook\n{FAST}",
        webhook("hook", hook, "h")
    )
}

const FAST: &str = "notifications: {backoff_initial: 100ms, backoff_max: 300ms, poll: 100ms}\n";

fn webhook(name: &str, r: &Receiver, path: &str) -> String {
    format!("  {name}: {{type: webhook, url: \"{}\"}}\n", r.url(path))
}

fn assert_every_field(item: &Value, resolved: bool) {
    for f in [
        "monitor",
        "target",
        "check",
        "state",
        "service",
        "capability",
        "owner",
        "severity",
        "scope",
        "since",
        "runbook",
        "incident_id",
        "incident_url",
    ] {
        assert!(!item[f].is_null(), "field `{f}` missing in {item:#}");
    }
    assert_eq!(item["service"], "orders-cache");
    assert_eq!(item["capability"], "checkout");
    assert_eq!(item["owner"], "team-payments");
    assert_eq!(item["severity"], "critical");
    assert_eq!(item["scope"], "global");
    assert_eq!(item["runbook"], "https://runbooks.example/redis");
    assert_eq!(item["check"], "redis");
    assert!(item["target"].as_str().unwrap().contains("127.0.0.1"));
    assert!(
        item["incident_url"]
            .as_str()
            .unwrap()
            .contains("/incidents/")
    );
    assert!(!item["error_kind"].is_null(), "error kind in {item:#}");
    assert!(
        !item["error_message"].is_null(),
        "error message in {item:#}"
    );
    let lh = &item["last_healthy"];
    assert!(!lh["at"].is_null(), "last healthy time in {item:#}");
    assert!(
        !lh["connect_ms"].is_null(),
        "last healthy latency in {item:#}"
    );
    if resolved {
        assert!(!item["recovered_at"].is_null(), "recovered_at in {item:#}");
        assert_eq!(item["state"], "up");
    } else {
        assert!(item["ack_url"].as_str().unwrap().contains("/ack/"));
        assert_eq!(item["state"], "down");
    }
}

// ---------------------------------------------------------------------------------------------

/// Acceptance 1 and 4.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_trigger_and_one_resolve_per_receiver_across_restarts() {
    capture();
    if !have_redis() {
        return;
    }
    let (a, b) = (Receiver::start().await, Receiver::start().await);
    // Every other HTTP channel, each with its own path on one more receiver.
    let c = Receiver::start().await;
    // E-mail: a real SMTP server (aiosmtpd, by notify's test script) on localhost.
    let mail_dir = tempfile::tempdir().unwrap();
    let smtp = start_smtp(mail_dir.path());
    let email = match &smtp {
        Some(s) => format!(
            "  mail: {{type: email, host: 127.0.0.1, port: {}, tls: none, from: pw@test.local, to: [oncall@test.local]}}\n",
            s.port
        ),
        None => String::new(),
    };
    let port = tk::free_port();
    let mut redis = redis_on(port).expect("redis starts");
    let yaml = format!(
        "monitors:\n{}receivers:\n{}{}{email}  slack: {{type: slack, url: \"{}\"}}\n  discord: {{type: discord, url: \"{}\"}}\n  teams: {{type: teams, url: \"{}\"}}\n  pager: {{type: pagerduty, routing_key: \"R0UT1NGKEY0123456789abcdefabcdef\", url: \"{}\"}}\nroutes:\n  - name: everyone\n    default: true\n    receivers: [hook-a, hook-b, slack, discord, teams, pager{}]\n{FAST}",
        redis_monitor("cache", port),
        webhook("hook-a", &a, "a"),
        webhook("hook-b", &b, "b"),
        c.url("slack"),
        c.url("discord"),
        c.url("teams"),
        c.url("pagerduty"),
        if smtp.is_some() { ", mail" } else { "" },
    );
    let d = TestDaemon::start(&yaml).await;
    d.wait_monitor("cache", Duration::from_secs(10), "cache up", |v| {
        v["state"] == "up"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    redis.kill();
    for r in [&a, &b] {
        r.wait("a trigger", Duration::from_secs(15), |g| {
            g.iter()
                .any(|g| g.status == 200 && g.body["event"] == "trigger")
        })
        .await;
    }
    let trig = &a.delivered("trigger")[0];
    assert_eq!(trig.body["change"], "down");
    let item = &trig.body["items"][0];
    assert_every_field(item, false);
    let incident = item["incident_id"].as_i64().unwrap();
    assert_eq!(
        trig.key.as_deref(),
        Some(format!("pw-{incident}-trigger").as_str())
    );

    // Acceptance 4a: a restart while down and notified sends no second trigger.
    let mut d = d;
    d.stop().await;
    let TestDaemon { dir, config, .. } = d;
    let data = dir.path().join("data");
    let mut d = TestDaemon::start_with(dir, config, Some(data)).await;
    d.wait_monitor("cache", Duration::from_secs(10), "resumed down", |v| {
        v["state"] == "down" && v["incident"] == incident
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for r in [&a, &b] {
        assert_eq!(
            r.delivered("trigger").len(),
            1,
            "one trigger, even after a restart"
        );
    }

    // Acceptance 4b: recovery while the daemon is stopped → resolved and notified once.
    d.stop().await;
    let _redis = redis_on(port).expect("redis restarts");
    let TestDaemon { dir, config, .. } = d;
    let data = dir.path().join("data");
    let mut d = TestDaemon::start_with(dir, config, Some(data)).await;
    for r in [&a, &b] {
        r.wait("a resolve", Duration::from_secs(15), |g| {
            g.iter()
                .any(|g| g.status == 200 && g.body["event"] == "resolve")
        })
        .await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    for r in [&a, &b] {
        assert_eq!(r.delivered("trigger").len(), 1);
        let res = r.delivered("resolve");
        assert_eq!(res.len(), 1, "exactly one resolve");
        assert_eq!(res[0].body["change"], "recovered");
        assert_every_field(&res[0].body["items"][0], true);
        assert_eq!(
            res[0].key.as_deref(),
            Some(format!("pw-{incident}-resolve").as_str())
        );
        assert_eq!(r.got().len(), 2, "nothing else was sent");
    }
    // Slack, Discord, Teams, PagerDuty: one trigger and one resolve each, by idempotency key.
    let got = c
        .wait(
            "trigger + resolve on every channel",
            Duration::from_secs(10),
            |g| g.iter().filter(|g| g.status == 200).count() >= 8,
        )
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got_all = c.got();
    assert_eq!(
        got_all.len(),
        8,
        "{:#?}",
        got_all
            .iter()
            .map(|g| (&g.path, &g.key))
            .collect::<Vec<_>>()
    );
    for path in ["/slack", "/discord", "/teams", "/pagerduty"] {
        let mut keys: Vec<String> = got
            .iter()
            .filter(|g| g.path == path)
            .map(|g| g.key.clone().unwrap_or_default())
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                format!("pw-{incident}-resolve"),
                format!("pw-{incident}-trigger")
            ],
            "{path}"
        );
    }
    let pd: Vec<&Got> = got.iter().filter(|g| g.path == "/pagerduty").collect();
    for g in &pd {
        assert_eq!(g.body["dedup_key"], incident.to_string(), "{:#}", g.body);
    }
    assert!(pd.iter().any(|g| g.body["event_action"] == "trigger"));
    assert!(pd.iter().any(|g| g.body["event_action"] == "resolve"));

    let receivers = if smtp.is_some() {
        // Two mails, a trigger and a resolve, each with the content fields in its text part.
        let start = Instant::now();
        while std::fs::read_dir(mail_dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "json")
            })
            .count()
            < 2
        {
            assert!(start.elapsed() < Duration::from_secs(10), "two mails");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut mails: Vec<Value> = std::fs::read_dir(mail_dir.path())
            .unwrap()
            .filter_map(|e| {
                let p = e.ok()?.path();
                (p.extension()? == "json")
                    .then(|| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
            })
            .collect();
        assert_eq!(mails.len(), 2, "one trigger and one resolve mail");
        mails.sort_by_key(|m| {
            m["headers"]["Subject"]
                .as_str()
                .unwrap_or("")
                .contains("RECOVERED")
        });
        for (m, what) in mails.iter().zip(["DOWN", "RECOVERED"]) {
            let subject = m["headers"]["Subject"].as_str().unwrap_or("");
            assert!(
                subject.contains(what) && subject.contains("cache"),
                "{subject}"
            );
            let text = m["text"].as_str().unwrap_or("");
            for f in [
                "orders-cache",
                "checkout",
                "team-payments",
                "critical",
                "https://runbooks.example/redis",
                "/incidents/",
            ] {
                assert!(text.contains(f), "`{f}` in the {what} mail: {text}");
            }
        }
        7
    } else {
        6
    };
    let inc = d.json(&format!("/api/v1/incidents/{incident}")).await;
    assert_eq!(inc["status"], "resolved");
    let n = inc["notifications"].as_array().unwrap();
    assert_eq!(
        n.len(),
        2 * receivers,
        "trigger + resolve per receiver: {inc:#}"
    );
    assert!(
        !inc.to_string().contains("R0UT1NGKEY"),
        "no routing key in the API"
    );
    assert!(n.iter().all(|r| r["status"] == "delivered"));
    d.stop().await;
}

/// Acceptance 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retries_until_delivered_and_honours_retry_after() {
    capture();
    let (flaky, busy) = (Receiver::start().await, Receiver::start().await);
    flaky.plan(&[(500, None); 5]);
    busy.plan(&[(429, Some(2))]);
    let (port, _closed) = closed_port(); // nothing listens: refused → down
    let yaml = format!(
        "monitors:\n{}receivers:\n{}{}routes:\n  - name: all\n    default: true\n    receivers: [flaky, busy]\n{FAST}",
        tcp_monitor("closed", port),
        webhook("flaky", &flaky, "f"),
        webhook("busy", &busy, "b"),
    );
    let mut d = TestDaemon::start(&yaml).await;
    let got = flaky
        .wait("delivery after 5 failures", Duration::from_secs(20), |g| {
            g.iter().any(|g| g.status == 200)
        })
        .await;
    assert_eq!(got.len(), 6, "5 × 500 then 200");
    assert!(
        got.iter().all(|g| g.key == got[0].key),
        "one idempotency key for every attempt"
    );
    let b = busy
        .wait("delivery after 429", Duration::from_secs(20), |g| {
            g.iter().any(|g| g.status == 200)
        })
        .await;
    assert_eq!(b.len(), 2);
    let gap = b[1].at - b[0].at;
    assert!(
        gap >= Duration::from_millis(1900),
        "Retry-After: 2 honoured, waited {gap:?}"
    );

    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(flaky.got().len(), 6, "delivered once, never again");
    let id = got[0].body["items"][0]["incident_id"].as_i64().unwrap();
    let inc = d.json(&format!("/api/v1/incidents/{id}")).await;
    let n = inc["notifications"].as_array().unwrap();
    let f = n.iter().find(|r| r["receiver"] == "flaky").unwrap();
    assert_eq!(f["status"], "delivered");
    let log = f["attempt_log"].as_array().unwrap();
    assert_eq!(log.len(), 6, "6 attempts recorded: {f:#}");
    assert!(
        log[..5]
            .iter()
            .all(|a| a["ok"] == false && a["http_status"] == 500 && !a["error"].is_null())
    );
    assert!(log[..5].iter().all(|a| !a["retry_at"].is_null()));
    assert_eq!(log[5]["ok"], true);
    assert!(log.iter().all(|a| a["latency_ms"].as_f64().is_some()));
    let metrics = d.get("/metrics").await.body;
    assert!(
        metrics.contains(r#"portwarden_notifications_total{receiver="flaky",event="trigger",result="failed"} 5"#)
            && metrics.contains(r#"portwarden_notifications_total{receiver="flaky",event="trigger",result="delivered"} 1"#),
        "{}",
        metrics.lines().filter(|l| l.contains("notification")).collect::<Vec<_>>().join("\n")
    );
    assert!(metrics.contains("portwarden_outbox_pending"));
    let bz = n.iter().find(|r| r["receiver"] == "busy").unwrap();
    assert_eq!(bz["attempt_log"][0]["http_status"], 429);
    assert!(
        inc["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "notified"),
        "the timeline says it was delivered"
    );
    d.stop().await;
}

/// Acceptance 5.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_monitors_on_one_host_make_one_message_per_route() {
    capture();
    let (ops, dba) = (Receiver::start().await, Receiver::start().await);
    let mut listeners = Vec::new();
    let mut monitors = String::new();
    for i in 0..30 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        listeners.push(l);
        monitors.push_str(&tcp_monitor(&format!("port-{i:02}"), port));
    }
    let yaml = format!(
        "monitors:\n{monitors}receivers:\n{}{}routes:\n  - name: ops\n    receivers: ops\n    group_by: host\n    group_wait: 4s\n    continue: true\n  - name: dba\n    match: {{owner: team-ops}}\n    receivers: dba\n    group_by: [host]\n    group_wait: 4s\n{FAST}",
        webhook("ops", &ops, "ops"),
        webhook("dba", &dba, "dba"),
    );
    let mut d = TestDaemon::start(&yaml).await;
    d.wait_monitor("port-29", Duration::from_secs(10), "up", |v| {
        v["state"] == "up"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The host "dies": every port refuses at once (and stays closed).
    let _closed: Vec<Closed> = listeners.into_iter().map(kill).collect();

    for r in [&ops, &dba] {
        r.wait("a grouped trigger", Duration::from_secs(20), |g| {
            g.iter().any(|g| g.status == 200)
        })
        .await;
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    for r in [&ops, &dba] {
        let got = r.got();
        assert_eq!(
            got.len(),
            1,
            "one message per route, not 30: {:#?}",
            got.iter().map(|g| &g.body["title"]).collect::<Vec<_>>()
        );
        let items = got[0].body["items"].as_array().unwrap();
        assert_eq!(items.len(), 30, "with every monitor's detail");
        let mut names: Vec<&str> = items
            .iter()
            .map(|i| i["monitor"].as_str().unwrap())
            .collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 30);
        assert!(items.iter().all(|i| i["error_kind"] == "refused"));
        assert!(
            got[0].body["title"]
                .as_str()
                .unwrap()
                .contains("30 monitors")
        );
    }
    d.stop().await;
}

/// Acceptance 6.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn maintenance_window_silences_and_excludes_from_availability() {
    capture();
    let hook = Receiver::start().await;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let now = chrono::Utc::now();
    let end = now + chrono::Duration::seconds(8);
    let yaml = format!(
        "{}maintenance:\n  - name: upgrade\n    start: {}\n    end: {}\n    hosts: [127.0.0.1]\n    reason: kernel upgrade\n",
        one_route(&tcp_monitor("svc", port), &hook),
        (now - chrono::Duration::minutes(1)).to_rfc3339(),
        end.to_rfc3339(),
    );
    let mut d = TestDaemon::start(&yaml).await;
    d.wait_monitor("svc", Duration::from_secs(5), "in maintenance", |v| {
        v["state"] == "maintenance"
    })
    .await;
    let closed = kill(l); // killed inside the window
    tokio::time::sleep(Duration::from_secs(2)).await;
    let v = d.monitor("svc").await;
    assert_eq!(v["state"], "maintenance", "{v:#}");
    assert!(v["reason"].as_str().unwrap().contains("upgrade"));
    // Back before the window ends.
    drop(closed);
    let l = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let wait = (end - chrono::Utc::now()).to_std().unwrap_or_default() + Duration::from_millis(300);
    tokio::time::sleep(wait).await;
    d.wait_monitor("svc", Duration::from_secs(5), "up after the window", |v| {
        v["state"] == "up"
    })
    .await;
    assert!(hook.got().is_empty(), "nothing notified inside the window");
    let av = d.json("/api/v1/monitors/svc/availability?period=24h").await;
    let text = av.to_string();
    assert!(av.to_string().contains("maintenance"), "{text}");
    let m = av
        .pointer("/availability/maintenance")
        .or_else(|| av.get("maintenance"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let down = av
        .pointer("/availability/down")
        .or_else(|| av.get("down"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    assert!(m > 0, "maintenance samples counted apart: {text}");
    assert_eq!(
        down, 0,
        "the outage inside the window is not downtime: {text}"
    );

    let _closed = kill(l); // killed after the window → notified
    hook.wait("a trigger after the window", Duration::from_secs(10), |g| {
        g.iter().any(|g| g.body["event"] == "trigger")
    })
    .await;
    d.stop().await;
}

/// Acceptance 7 (and the signed acknowledge link).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unacknowledged_incidents_escalate_acknowledged_ones_do_not() {
    capture();
    let (first, boss) = (Receiver::start().await, Receiver::start().await);
    let ((p1, _c1), (p2, _c2)) = (closed_port(), closed_port());
    let yaml = format!(
        "monitors:\n{}{}receivers:\n{}{}routes:\n  - name: oncall\n    default: true\n    receivers: first\n    escalate_after: 3s\n    escalate_to: boss\n  - name: boss\n    escalation_only: true\n    receivers: boss\n{FAST}",
        tcp_monitor("ignored", p1),
        tcp_monitor("handled", p2),
        webhook("first", &first, "1"),
        webhook("boss", &boss, "2"),
    );
    let mut d = TestDaemon::start(&yaml).await;
    let got = first
        .wait("two triggers", Duration::from_secs(10), |g| {
            g.iter().filter(|g| g.body["event"] == "trigger").count() == 2
        })
        .await;
    let handled = got
        .iter()
        .find(|g| g.body["items"][0]["monitor"] == "handled")
        .unwrap();
    let ack = handled.body["items"][0]["ack_url"]
        .as_str()
        .unwrap()
        .to_string();
    let path = &ack[ack.find("/ack/").unwrap()..];
    // The signed link needs no login; GET only shows a button, POST acknowledges.
    let anon = d.anonymous();
    let p = path.to_string();
    let page = tokio::task::spawn_blocking({
        let anon = anon.clone();
        move || anon.get(&p)
    })
    .await
    .unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("<form method=\"post\""));
    let p = path.to_string();
    let r = tokio::task::spawn_blocking(move || anon.post(&p, ""))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let forged = format!("{}0", path);
    let anon = d.anonymous();
    let r = tokio::task::spawn_blocking(move || anon.post(&forged, ""))
        .await
        .unwrap();
    assert_eq!(r.status, 403);

    let esc = boss
        .wait("an escalation", Duration::from_secs(10), |g| !g.is_empty())
        .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let esc_all = boss.got();
    assert_eq!(
        esc_all.len(),
        1,
        "only the unacknowledged incident escalates: {:#?}",
        esc_all.iter().map(|g| &g.body["title"]).collect::<Vec<_>>()
    );
    assert_eq!(esc[0].body["event"], "escalate");
    assert_eq!(esc[0].body["items"][0]["monitor"], "ignored");
    let id = esc[0].body["items"][0]["incident_id"].as_i64().unwrap();
    let inc = d.json(&format!("/api/v1/incidents/{id}")).await;
    assert!(
        inc["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "escalated"),
        "{inc:#}"
    );
    let hid = handled.body["items"][0]["incident_id"].as_i64().unwrap();
    let inc = d.json(&format!("/api/v1/incidents/{hid}")).await;
    assert_eq!(inc["acknowledged_by"], "signed link");
    d.stop().await;
}

/// A silence holds an open incident's repeats and escalations, not only its trigger; when it
/// is lifted and the incident is still open and unacknowledged, they resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silence_holds_repeats_and_escalations_until_it_is_lifted() {
    capture();
    let (first, boss) = (Receiver::start().await, Receiver::start().await);
    let quiet = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let loud = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (pq, pl) = (
        quiet.local_addr().unwrap().port(),
        loud.local_addr().unwrap().port(),
    );
    let yaml = format!(
        "monitors:\n{}{}receivers:\n{}{}routes:\n  - name: oncall\n    default: true\n    receivers: first\n    repeat_interval: 2s\n    escalate_after: 3s\n    escalate_to: boss\n  - name: boss\n    escalation_only: true\n    receivers: boss\n{FAST}",
        tcp_monitor("quiet", pq),
        tcp_monitor("loud", pl),
        webhook("first", &first, "1"),
        webhook("boss", &boss, "2"),
    );
    let mut d = TestDaemon::start(&yaml).await;
    d.wait_monitor("quiet", Duration::from_secs(5), "up", |v| {
        v["state"] == "up"
    })
    .await;
    let c = d.client();
    let r = tokio::task::spawn_blocking(move || {
        c.post(
            "/api/v1/silences",
            r#"{"monitors": ["quiet"], "comment": "moving racks", "duration": "1h"}"#,
        )
    })
    .await
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let sid = r.json()["id"].as_i64().unwrap();
    // The alerting ticker reads silences every second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_cq, _cl) = (kill(quiet), kill(loud));

    let of = |g: &Got, m: &str| g.body["items"][0]["monitor"] == m;
    first
        .wait("loud: trigger and a repeat", Duration::from_secs(10), |g| {
            g.iter()
                .any(|g| of(g, "loud") && g.body["event"] == "repeat")
        })
        .await;
    boss.wait("loud escalates", Duration::from_secs(10), |g| {
        g.iter().any(|g| of(g, "loud"))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let heard = |r: &Receiver| r.got().iter().filter(|g| of(g, "quiet")).count();
    assert_eq!(heard(&first), 0, "silenced: no trigger, no repeat");
    assert_eq!(heard(&boss), 0, "silenced: no escalation");
    let inc = d.json("/api/v1/incidents?monitor=quiet").await;
    assert_eq!(inc["incidents"][0]["status"], "open", "{inc:#}");

    // Lifted while still down: the repeats and the escalation resume.
    let c = d.client();
    let r = tokio::task::spawn_blocking(move || {
        c.request("DELETE", &format!("/api/v1/silences/{sid}"), &[], b"")
    })
    .await
    .unwrap()
    .unwrap();
    assert!(r.status < 300, "{} {}", r.status, r.body);
    first
        .wait("quiet repeats once lifted", Duration::from_secs(10), |g| {
            g.iter()
                .any(|g| of(g, "quiet") && g.body["event"] == "repeat")
        })
        .await;
    boss.wait(
        "quiet escalates once lifted",
        Duration::from_secs(10),
        |g| {
            g.iter()
                .any(|g| of(g, "quiet") && g.body["event"] == "escalate")
        },
    )
    .await;
    d.stop().await;
}

/// An open incident that gets worse (degraded → down) tells who heard its trigger, once; one
/// that gets better (down → degraded) sends nothing until it resolves.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn degraded_then_down_tells_the_receivers_once() {
    capture();
    let hook = Receiver::start().await;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    // Every connect is "slow" (above 0 ms, at once): the service is degraded while it answers.
    let yaml = one_route(
        &tcp_monitor("slow", port).replace(
            "flap: {enabled: false}}",
            "flap: {enabled: false}, latency: {connect_above: 0ms, baseline_factor: 0, for: 0s}}",
        ),
        &hook,
    );
    let mut d = TestDaemon::start(&yaml).await;
    let got = hook
        .wait("a trigger for degraded", Duration::from_secs(10), |g| {
            g.iter().any(|g| g.body["event"] == "trigger")
        })
        .await;
    assert_eq!(
        got[0].body["items"][0]["state"], "degraded",
        "{:#}",
        got[0].body
    );
    let id = got[0].body["items"][0]["incident_id"].as_i64().unwrap();

    let closed = kill(l);
    let got = hook
        .wait("a worse message", Duration::from_secs(10), |g| {
            g.iter().any(|g| g.body["event"] == "worse")
        })
        .await;
    let worse = got.iter().find(|g| g.body["event"] == "worse").unwrap();
    assert_eq!(worse.body["items"][0]["state"], "down", "{:#}", worse.body);
    assert_eq!(worse.body["items"][0]["incident_id"], id);
    assert_eq!(
        worse.body["items"][0]["error_kind"], "refused",
        "{:#}",
        worse.body
    );
    assert_eq!(worse.body["title"], "slow DOWN", "{:#}", worse.body);
    let key = worse.key.clone().unwrap_or_default();
    assert!(key.starts_with(&format!("pw-{id}-worse-down-")), "{key}");

    // Back, still slow: down → degraded sends nothing; still one incident.
    drop(closed);
    let _l = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    d.wait_monitor("slow", Duration::from_secs(10), "degraded again", |v| {
        v["state"] == "degraded"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = hook.got();
    let events: Vec<&str> = all
        .iter()
        .map(|g| g.body["event"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(events, ["trigger", "worse"], "{events:?}");
    let inc = d.json(&format!("/api/v1/incidents/{id}")).await;
    assert_eq!(inc["status"], "open", "{inc:#}");
    d.stop().await;
}

/// Silences from the web UI: an editor starts one from a monitor's page (the form comes
/// prefilled), a refused form says which field and keeps what was typed, the silenced monitor
/// goes down without a notification, *End now* ends it. Viewers see silences but no form.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn silences_are_started_and_ended_from_the_ui() {
    capture();
    let hook = Receiver::start().await;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let yaml = format!(
        "{}{}",
        one_route(&tcp_monitor("orders-db", port), &hook),
        auth_with(
            &[
                ("ed", "ed-password-123", "editor"),
                ("vera", "vera-password-1", "viewer")
            ],
            &[]
        ),
    );
    let mut d = TestDaemon::start(&yaml).await;
    d.wait_monitor("orders-db", Duration::from_secs(5), "up", |v| {
        v["state"] == "up"
    })
    .await;
    let addr = d.addr;
    let id = tokio::task::spawn_blocking(move || {
        let (ed, csrf) = login(addr, "ed", "ed-password-123");
        let page = ed.get("/monitors/orders-db");
        assert!(
            page.body.contains("/silences?monitor=orders-db"),
            "{}",
            page.body
        );
        let form = ed.get("/silences?monitor=orders-db");
        assert_eq!(form.status, 200);
        assert!(form.body.contains("No silence is active"), "{}", form.body);
        assert!(
            form.body.contains(r#"name="monitors" value="orders-db""#),
            "{}",
            form.body
        );

        // Refused: the reason names the field; what was typed stays.
        let r = ed.post_form(
            "/silences",
            &[
                ("csrf", &csrf),
                ("monitors", "orders-db"),
                ("duration", "2h"),
                ("comment", ""),
            ],
        );
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(r.body.contains("comment: say why"), "{}", r.body);
        let r = ed.post_form(
            "/silences",
            &[
                ("csrf", &csrf),
                ("monitors", "orders-db"),
                ("labels", "team=db, oops"),
                ("duration", "2h"),
                ("comment", "x"),
            ],
        );
        assert_eq!(r.status, 400);
        assert!(
            r.body.contains("labels: `oops` is not key=value"),
            "{}",
            r.body
        );
        assert!(r.body.contains(r#"value="team=db, oops""#), "{}", r.body);
        let r = ed.post_form(
            "/silences",
            &[
                ("csrf", &csrf),
                ("monitors", "orders-db"),
                ("duration", "soon"),
                ("comment", "x"),
            ],
        );
        assert_eq!(r.status, 400);
        assert!(r.body.contains("duration: `soon`"), "{}", r.body);
        let r = ed.post_form("/silences", &[("duration", "2h"), ("comment", "x")]);
        assert_eq!(r.status, 403, "no CSRF token: {}", r.body);

        let r = ed.post_form(
            "/silences",
            &[
                ("csrf", &csrf),
                ("monitors", "orders-db"),
                ("duration", "2h"),
                ("comment", "<b>moving racks</b>"),
            ],
        );
        assert_eq!(r.status, 303, "{}", r.body);
        let list = ed.get("/silences");
        assert!(list.body.contains("monitor orders-db"), "{}", list.body);
        assert!(
            list.body.contains("&#60;b&#62;moving racks") && !list.body.contains("<b>moving"),
            "escaped: {}",
            list.body
        );
        assert!(list.body.contains("End now"));

        let (vera, vcsrf) = login(addr, "vera", "vera-password-1");
        let v = vera.get("/silences");
        assert_eq!(v.status, 200);
        assert!(
            v.body.contains("monitor orders-db")
                && !v.body.contains("End now")
                && !v.body.contains("silence-form")
        );
        let r = vera.post_form(
            "/silences",
            &[
                ("csrf", &vcsrf),
                ("monitors", "x"),
                ("duration", "1h"),
                ("comment", "x"),
            ],
        );
        assert_eq!(r.status, 403);
        let api = tk::http::Client::bearer(addr, TEST_TOKEN)
            .get("/api/v1/silences")
            .json();
        assert_eq!(api["items"][0]["created_by"], "ed", "{api:#}");
        api["items"][0]["id"].as_i64().unwrap()
    })
    .await
    .unwrap();

    // Silenced: the outage opens an incident but nobody hears of it.
    let _closed = kill(l);
    d.wait_monitor("orders-db", Duration::from_secs(10), "down", |v| {
        v["state"] == "down"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(hook.got().is_empty(), "silenced from the UI: nothing sent");

    tokio::task::spawn_blocking(move || {
        let (ed, csrf) = login(addr, "ed", "ed-password-123");
        let r = ed.post_form(&format!("/silences/{id}/end"), &[("csrf", &csrf)]);
        assert_eq!(r.status, 303, "{}", r.body);
        assert!(ed.get("/silences").body.contains("No silence is active"));
        let r = ed.post_form(&format!("/silences/{id}/end"), &[("csrf", &csrf)]);
        assert_eq!(r.status, 404, "already over: {}", r.body);
        let r = ed.post_form("/silences/nine/end", &[("csrf", &csrf)]);
        assert_eq!(r.status, 400);
    })
    .await
    .unwrap();
    d.stop().await;
}

/// Acceptance 8, plus silences through the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secrets_never_reach_logs_or_the_api() {
    let cap = capture();
    let hook = Receiver::start().await;
    hook.plan(&[(500, None), (503, None)]);
    let url_token = "tok-3f9a1c77e2d54b0b";
    let header_secret = "hdr-8c1f5e2a9d7b4e63";
    let signing = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let signing_raw = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    // SAFETY: set before the daemon starts; read at config load.
    unsafe {
        std::env::set_var("PW_TEST_HOOK_URL", hook.url(&format!("hooks/{url_token}")));
        std::env::set_var("PW_TEST_HOOK_HDR", header_secret);
        std::env::set_var("PW_TEST_HOOK_SIGN", signing);
    }
    let ((p1, _c1), (p2, _c2), (p3, _c3)) = (closed_port(), closed_port(), closed_port());
    let yaml = format!(
        "monitors:\n{}{}receivers:\n  hook: {{type: webhook, url: \"${{env:PW_TEST_HOOK_URL}}\", headers: {{X-Token: \"${{env:PW_TEST_HOOK_HDR}}\"}}, secret: \"${{env:PW_TEST_HOOK_SIGN}}\"}}\n  dead: {{type: webhook, url: \"http://127.0.0.1:{}/hooks/{url_token}\"}}\nroutes:\n  - name: all\n    default: true\n    receivers: [hook, dead]\nnotifications: {{backoff_initial: 100ms, backoff_max: 300ms, poll: 100ms, give_up_after: 2s}}\n",
        tcp_monitor("a", p1),
        tcp_monitor("quiet", p2),
        p3,
    );
    // A silence created before `quiet` goes down keeps it from notifying.
    let mut d =
        TestDaemon::start(&yaml.replace("  - name: quiet", "  - name: quiet\n    enabled: true"))
            .await;
    let c = d.client();
    let r = tokio::task::spawn_blocking(move || {
        c.post(
            "/api/v1/silences",
            r#"{"monitors": ["quiet"], "comment": "moving racks", "duration": "1h"}"#,
        )
    })
    .await
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    let sil = r.json();
    assert_eq!(sil["created_by"], "test-admin");
    let list = d.json("/api/v1/silences").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let c = d.client();
    let r = tokio::task::spawn_blocking(move || {
        c.post("/api/v1/silences", r#"{"comment": "x", "duration": "1h"}"#)
    })
    .await
    .unwrap();
    assert_eq!(r.status, 400, "{}", r.body);

    let got = hook
        .wait("delivery after failures", Duration::from_secs(15), |g| {
            g.iter().any(|g| g.status == 200)
        })
        .await;
    assert_eq!(got[0].path, format!("/hooks/{url_token}"));
    assert!(
        got.iter().all(|g| g.body["items"][0]["monitor"] == "a"),
        "the silenced monitor sent nothing"
    );
    let id = got[0].body["items"][0]["incident_id"].as_i64().unwrap();
    // `dead` refuses connections until it is given up (give_up_after 2s).
    let start = Instant::now();
    let inc = loop {
        let inc = d.json(&format!("/api/v1/incidents/{id}")).await;
        let dead = inc["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["receiver"] == "dead")
            .cloned();
        if dead.as_ref().is_some_and(|n| n["status"] == "given_up") {
            break inc;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "not given up: {inc:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        inc["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["message"].as_str().unwrap_or("").contains("given up")),
        "the incident says so: {inc:#}"
    );
    // The silenced incident exists but its notifications are suppressed.
    let quiet = d.json("/api/v1/incidents?monitor=quiet").await;
    let view = d.monitor("quiet").await;
    let qid = quiet["incidents"][0]["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("quiet has an incident: {quiet:#} {view:#}"));
    let q = d.json(&format!("/api/v1/incidents/{qid}")).await;
    assert!(
        q["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["status"] == "suppressed"),
        "{q:#}"
    );
    let sid = sil["id"].as_i64().unwrap();
    let c = d.client();
    let r = tokio::task::spawn_blocking(move || {
        c.request("DELETE", &format!("/api/v1/silences/{sid}"), &[], b"")
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(r.status, 204, "{}", r.body);

    let api = format!("{inc}{q}{}", d.json("/api/v1/incidents").await);
    d.stop().await;
    let logs = String::from_utf8_lossy(&cap.0.lock().unwrap()).to_string();
    assert!(
        logs.contains("notification failed"),
        "the capture holds the failures"
    );
    for s in [url_token, header_secret, signing, signing_raw] {
        assert!(!logs.contains(s), "secret `{s}` in the logs");
        assert!(!api.contains(s), "secret `{s}` in the API");
    }
}

/// Dependencies: a host monitor and 12 ports that depend on it go down together → one page
/// for the host, listing the 12 dependents, instead of 13 pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dependents_fold_into_the_parent_incident() {
    capture();
    let hook = Receiver::start().await;
    let host = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut monitors = tcp_monitor("db-host", host.local_addr().unwrap().port());
    let mut ports = Vec::new();
    for i in 0..12 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        monitors.push_str(&tcp_monitor(
            &format!("db-port-{i:02}"),
            l.local_addr().unwrap().port(),
        ));
        monitors.push_str("    depends_on: [db-host]\n");
        ports.push(l);
    }
    let yaml = format!(
        "monitors:\n{monitors}receivers:\n{}routes:\n  - name: all\n    default: true\n    receivers: hook\n    group_wait: 3s\n{FAST}",
        webhook("hook", &hook, "h"),
    );
    let mut d = TestDaemon::start(&yaml).await;
    d.wait_monitor("db-port-11", Duration::from_secs(10), "up", |v| {
        v["state"] == "up"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _closed: Vec<Closed> = ports.into_iter().chain([host]).map(kill).collect();
    hook.wait("the host's trigger", Duration::from_secs(15), |g| {
        !g.is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let got = hook.got();
    assert_eq!(
        got.len(),
        1,
        "one page, not 13: {:#?}",
        got.iter().map(|g| &g.body["title"]).collect::<Vec<_>>()
    );
    let item = &got[0].body["items"][0];
    assert_eq!(item["monitor"], "db-host");
    assert_eq!(
        item["dependents"].as_array().map(Vec::len),
        Some(12),
        "{item:#}"
    );
    assert!(
        got[0].body["title"]
            .as_str()
            .unwrap()
            .contains("12 dependent"),
        "{}",
        got[0].body["title"]
    );
    // The dependents' incidents exist, their notifications are suppressed (and say why).
    let inc = d.json("/api/v1/incidents?monitor=db-port-03").await;
    let id = inc["incidents"][0]["id"]
        .as_i64()
        .expect("dependent incident");
    let detail = d.json(&format!("/api/v1/incidents/{id}")).await;
    let n = detail["notifications"].as_array().unwrap();
    assert!(
        !n.is_empty()
            && n.iter().all(|r| r["status"] == "suppressed"
                && r["last_error"]
                    .as_str()
                    .unwrap_or("")
                    .contains("folded into incident")),
        "{detail:#}"
    );
    d.stop().await;
}

/// The dead man's switch: a heartbeat through a receiver on its schedule, and to a URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn heartbeat_goes_out_on_schedule() {
    capture();
    let (hook, ping) = (Receiver::start().await, Receiver::start().await);
    let yaml = format!(
        "monitors:\n{}receivers:\n{}heartbeat: {{receiver: hook, interval: 1s}}\n{FAST}",
        tcp_monitor("x", tk::free_port()),
        webhook("hook", &hook, "hb"),
    );
    let mut d = TestDaemon::start(&yaml).await;
    let got = hook
        .wait("three heartbeats", Duration::from_secs(10), |g| {
            g.len() >= 3
        })
        .await;
    assert!(
        got.iter().all(|g| g.body["event"] == "heartbeat"),
        "only heartbeats: {:#?}",
        got.iter().map(|g| &g.body["event"]).collect::<Vec<_>>()
    );
    let gap = got[2].at - got[1].at;
    assert!(
        gap >= Duration::from_millis(800) && gap <= Duration::from_secs(3),
        "every second: {gap:?}"
    );
    d.stop().await;

    let yaml = format!(
        "monitors:\n{}heartbeat: {{url: \"{}\", interval: 1s}}\n",
        tcp_monitor("x", tk::free_port()),
        ping.url("ping/abc"),
    );
    let mut d = TestDaemon::start(&yaml).await;
    let got = ping
        .wait("two pings", Duration::from_secs(10), |g| g.len() >= 2)
        .await;
    assert_eq!(got[0].path, "/ping/abc");
    d.stop().await;
}
