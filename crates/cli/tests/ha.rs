//! Acceptance 3 of issue 9. Several `portwarden serve` replicas on one PostgreSQL database (a
//! database this test creates on the shared server and drops afterwards): exactly one leads
//! (probes, judges, writes incidents, sends notifications); `kill -9` of the leader during an
//! incident, while its trigger notification is still pending (the receiver is down) → the
//! other takes over within the bound (default 15 s), rebuilds its judgement from the store,
//! keeps the same incident (no second one opened), delivers the pending trigger and later the
//! resolve — each exactly once per idempotency key, as the receiver counts them.
//!
//! The monitor judges by consecutive results only (`min_samples: 1000` keeps the failure-ratio
//! rule out of it): the ratio rule would re-open the incident right after the recovery while
//! the window still holds the failures, in one process as well as here.
//!
//! Each replica probes under its own location name (`replica-a`, `replica-b`) so the stored
//! observations show who probed.
//!
//! `an_agent_talking_to_the_follower_is_judged_by_the_leader`: an agent uploads to the
//! follower only; the leader judges its results from the store's agent inbox (incident and
//! notification from the leader), both replicas list the agent the same way (status in the
//! store), and after `kill -9` of the leader the follower takes over, judges what it receives
//! and resolves the same incident; the agent going silent shows on the new leader.
//!
//! `an_acknowledge_link_signed_by_the_leader_works_on_the_follower`: the signed link in the
//! leader's trigger acknowledges through the follower (one key for all, kept in the store).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use portwarden_testkit as tk;
use serde_json::Value;

const TOKEN: &str = "pw-ha-test-token-7f3a9c01e2d4";

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn addr(port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
}

fn replica(dir: &std::path::Path, name: &str, url: &str, target: u16, hook: u16) -> (Proc, u16) {
    spawn_replica(
        dir,
        name,
        &format!(
            "engine: {{location: {name}}}\n\
             store: {{url: \"{url}\"}}\n\
             monitors:\n  - name: web\n    target: \"tcp://127.0.0.1:{target}\"\n    interval: 1s\n    timeout: 500ms\n    rules: {{consecutive_failures: 2, recovery: 2, min_samples: 1000}}\n\
             receivers:\n  hook: {{type: webhook, url: \"http://127.0.0.1:{hook}/hook\"}}\n\
             routes:\n  - name: all\n    default: true\n    receivers: hook\n\
             notifications: {{backoff_initial: 200ms, backoff_max: 500ms, poll: 100ms}}\n\
             auth:\n  tokens:\n    - {{name: test, secret: \"{TOKEN}\", role: admin}}\n"
        ),
    )
}

/// Starts `portwarden serve` with `config`; its log goes to `DIR/NAME.log`.
fn spawn_replica(dir: &std::path::Path, name: &str, config: &str) -> (Proc, u16) {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, config).unwrap();
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let port = tk::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_portwarden"))
        .args(["serve", "--config"])
        .arg(&path)
        .arg("--data-dir")
        .arg(dir.join(format!("{name}-data")))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("PORTWARDEN_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawn portwarden serve");
    let p = Proc(child);
    assert!(
        tk::wait_for_port(port, Duration::from_secs(30)),
        "{name} listening"
    );
    (p, port)
}

fn health(port: u16) -> Value {
    tk::http::get(addr(port), "/api/v1/health").json()
}

fn is_leader(port: u16) -> bool {
    health(port)["leadership"]["leader"] == true
}

fn api(port: u16, path: &str) -> Value {
    tk::http::Client::bearer(addr(port), TOKEN).json(path)
}

fn incidents(port: u16) -> Vec<Value> {
    api(port, "/api/v1/incidents?monitor=web")["incidents"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A TCP target that accepts while `up` is set and refuses (listener closed) otherwise.
struct Target {
    port: u16,
    up: Arc<AtomicBool>,
}

impl Target {
    fn start() -> Target {
        let port = tk::free_port();
        let up = Arc::new(AtomicBool::new(true));
        let flag = up.clone();
        std::thread::spawn(move || {
            loop {
                if !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                let Ok(l) = TcpListener::bind(("127.0.0.1", port)) else {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                };
                l.set_nonblocking(true).unwrap();
                while flag.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((s, _)) => drop(s),
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
                drop(l); // closed: connections are refused
            }
        });
        assert!(tk::wait_for_port(port, Duration::from_secs(5)));
        Target { port, up }
    }

    fn set(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
    }
}

fn wait(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if f() {
            return t0.elapsed();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: not within {limit:?}");
}

#[test]
fn kill_9_of_the_leader_during_an_incident_hands_over_within_the_bound() {
    let Some(db) = tk::pg::TestDatabase::create() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let target = Target::start();
    let hook = tk::free_port(); // the receiver: down (nothing listens) until after the kill

    // Replica A starts first and leads; B follows.
    let (mut a, pa) = replica(dir.path(), "replica-a", &db.url(), target.port, hook);
    wait(Duration::from_secs(20), "A becomes leader", || {
        is_leader(pa)
    });
    let (_b, pb) = replica(dir.path(), "replica-b", &db.url(), target.port, hook);
    let h = health(pb);
    assert_eq!(h["leadership"]["leader"], false, "{h:#}");
    assert_eq!(h["leadership"]["mode"], "postgres_advisory_lock");
    assert_eq!(h["leadership"]["takeover_seconds"], 15.0);
    // Both serve the API; only A probes.
    std::thread::sleep(Duration::from_secs(3));
    let probed = |loc: &str| -> usize {
        db.psql(&format!(
            "SELECT COUNT(*) FROM observations WHERE location = '{loc}'"
        ))
        .unwrap()
        .parse()
        .unwrap()
    };
    assert!(probed("replica-a") >= 2, "the leader probes");
    assert_eq!(probed("replica-b"), 0, "a follower does not probe");
    let m = tk::http::get(addr(pb), "/metrics").body;
    assert!(
        m.contains("portwarden_leader_is_leader 0"),
        "follower metric: {}",
        m.lines()
            .filter(|l| l.contains("leader"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        tk::http::get(addr(pa), "/metrics")
            .body
            .contains("portwarden_leader_is_leader 1")
    );

    // An incident opens under A.
    target.set(false);
    wait(Duration::from_secs(15), "incident opened by A", || {
        incidents(pa).iter().any(|i| i["status"] == "open")
    });
    let first = incidents(pa);
    assert_eq!(first.len(), 1, "{first:#?}");
    let id = first[0]["id"].as_i64().unwrap();
    // The follower serves the same incident from the database.
    assert_eq!(incidents(pb)[0]["id"].as_i64(), Some(id));
    // A tries to send the trigger; the receiver is down, so it stays pending.
    wait(Duration::from_secs(10), "A attempts the trigger", || {
        let d = api(pa, &format!("/api/v1/incidents/{id}"));
        d["notifications"][0]["attempts"].as_u64().unwrap_or(0) >= 1
    });
    let d = api(pb, &format!("/api/v1/incidents/{id}"));
    assert_eq!(d["notifications"][0]["status"], "pending", "{d:#}");

    // kill -9 the leader in the middle of the incident.
    let _ = a.0.kill();
    let _ = a.0.wait();
    let killed = Instant::now();
    wait(Duration::from_secs(20), "B takes over", || is_leader(pb));
    let took = killed.elapsed();
    eprintln!("takeover after kill -9: {took:?}");
    assert!(took < Duration::from_secs(15), "takeover took {took:?}");
    assert!(
        tk::http::get(addr(pb), "/metrics")
            .body
            .contains("portwarden_leader_is_leader 1")
    );

    // The receiver comes up: B (never A, which is dead) delivers the pending trigger, once.
    let counts = tk::webhook::Receiver::start_on(hook);
    wait(Duration::from_secs(15), "B delivers the trigger", || {
        counts.events("trigger") >= 1
    });

    // B probes now, keeps the same incident open (no second one)...
    wait(Duration::from_secs(10), "B probes", || {
        probed("replica-b") >= 3
    });
    std::thread::sleep(Duration::from_secs(3));
    let during = incidents(pb);
    assert_eq!(during.len(), 1, "no second incident: {during:#?}");
    assert_eq!(during[0]["status"], "open");
    let view = api(pb, "/api/v1/monitors/web");
    assert_eq!(view["incident"].as_i64(), Some(id), "{view:#}");

    // ...and resolves it when the target is back.
    target.set(true);
    wait(Duration::from_secs(20), "B resolves the incident", || {
        incidents(pb).iter().all(|i| i["status"] == "resolved")
    });
    let after = incidents(pb);
    assert_eq!(after.len(), 1, "{after:#?}");
    assert_eq!(after[0]["id"].as_i64(), Some(id));
    let detail = api(pb, &format!("/api/v1/incidents/{id}"));
    let kinds: Vec<&str> = detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds.first(), Some(&"opened"), "{kinds:?}");
    assert_eq!(
        kinds.iter().filter(|k| **k == "resolved").count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "opened").count(),
        1,
        "{kinds:?}"
    );

    // Every notification exactly once per idempotency key: one trigger, one resolve.
    wait(Duration::from_secs(15), "B delivers the resolve", || {
        counts.events("resolve") >= 1
    });
    std::thread::sleep(Duration::from_secs(2)); // room for a (wrong) second delivery
    let got = counts.counts();
    eprintln!("deliveries: {got:?}");

    assert!(
        got.values().all(|n| *n == 1),
        "a key delivered twice: {got:?}"
    );
    assert_eq!(counts.events("trigger"), 1, "{got:?}");
    assert_eq!(counts.events("resolve"), 1, "{got:?}");
    assert!(
        got.keys().all(|(k, _)| k.starts_with(&format!("pw-{id}-"))),
        "keys name the incident: {got:?}"
    );
    let d = api(pb, &format!("/api/v1/incidents/{id}"));
    let n = d["notifications"].as_array().unwrap();
    assert!(n.iter().all(|x| x["status"] == "delivered"), "{d:#}");
}

/// The exposure guard on two replicas: only the leader scans (the follower neither scans nor
/// logs fenced writes), a finding is opened and notified once, and after `kill -9` of the
/// leader the new leader keeps scanning, keeps the same finding (read from the store) and
/// resolves it — one trigger and one resolve in all.
#[test]
fn only_the_leader_runs_scheduled_scans_and_the_new_leader_takes_them_over() {
    let Some(db) = tk::pg::TestDatabase::create() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let hook = tk::webhook::Receiver::start();
    let rogue_port = tk::free_port();
    let config = |name: &str| {
        format!(
            "store: {{url: \"{}\"}}\n\
             baselines:\n  - name: lo\n    targets: [127.0.0.1]\n    ports: \"{rogue_port}\"\n    interval: 1s\n\
             scan: {{timeout: 500ms, banner_timeout: 300ms}}\n\
             receivers:\n  hook: {{type: webhook, url: \"{}\"}}\n\
             routes:\n  - name: all\n    default: true\n    receivers: hook\n\
             notifications: {{backoff_initial: 200ms, backoff_max: 500ms, poll: 100ms}}\n\
             auth:\n  tokens:\n    - {{name: test, secret: \"{TOKEN}\", role: admin}}\n\
             engine: {{location: {name}}}\n",
            db.url(),
            hook.url()
        )
    };
    let (mut a, pa) = spawn_replica(dir.path(), "guard-a", &config("guard-a"));
    wait(Duration::from_secs(20), "A becomes leader", || {
        is_leader(pa)
    });
    let (_b, pb) = spawn_replica(dir.path(), "guard-b", &config("guard-b"));
    assert!(!is_leader(pb));
    let scans = || -> i64 {
        db.psql("SELECT COUNT(*) FROM scans")
            .unwrap()
            .parse()
            .unwrap()
    };
    wait(Duration::from_secs(15), "A scans", || scans() >= 3);

    // A rogue listener: one finding, one incident, one trigger.
    let rogue = TcpListener::bind(("127.0.0.1", rogue_port)).unwrap();
    let finding = || -> Vec<Value> {
        api(pb, "/api/v1/findings?baseline=lo")["findings"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    wait(Duration::from_secs(15), "unexpected_open", || {
        finding().iter().any(|f| f["status"] == "open")
    });
    let f = finding();
    assert_eq!(f.len(), 1, "{f:#?}");
    let (fid, iid) = (f[0]["id"].as_i64(), f[0]["incident_id"].as_i64().unwrap());
    hook.wait_for(Duration::from_secs(15), |d| d.event() == "trigger")
        .expect("the trigger is delivered");
    // The follower's status mirrors the leader's scans; it schedules none itself.
    wait(Duration::from_secs(15), "B shows the last scan", || {
        api(pb, "/api/v1/baselines")["status"][0]["last_scan"]["id"].is_i64()
    });
    let st = api(pb, "/api/v1/baselines");
    assert!(st["status"][0]["next_scan_in_s"].is_null(), "{st:#}");
    // "Scan now" on the follower says who scans instead of queueing what never runs.
    let r = tk::http::Client::bearer(addr(pb), TOKEN).post("/api/v1/baselines/lo/scan", "");
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("not_leader"), "{}", r.body);
    let r = tk::http::Client::bearer(addr(pa), TOKEN).post("/api/v1/baselines/lo/scan", "");
    assert_eq!(r.status, 202, "{}", r.body);

    // kill -9 of the leader: B takes over the schedule, with the finding as it stands.
    let _ = a.0.kill();
    let _ = a.0.wait();
    wait(Duration::from_secs(25), "B takes over", || is_leader(pb));
    let before = scans();
    wait(Duration::from_secs(15), "B scans", || scans() >= before + 3);
    let f = finding();
    assert_eq!(f.len(), 1, "still one finding: {f:#?}");
    assert_eq!(
        (f[0]["id"].as_i64(), f[0]["status"].as_str()),
        (fid, Some("open"))
    );
    drop(rogue);
    wait(Duration::from_secs(15), "B resolves the finding", || {
        finding().iter().all(|f| f["status"] == "resolved")
    });
    hook.wait_for(Duration::from_secs(15), |d| d.event() == "resolve")
        .expect("the resolve is delivered");
    std::thread::sleep(Duration::from_secs(2)); // room for a (wrong) second delivery
    let got: Vec<(String, String)> = hook
        .deliveries()
        .iter()
        .map(|d| (d.key.clone(), d.event().to_string()))
        .collect();
    assert_eq!(
        got,
        [
            (format!("pw-{iid}-trigger"), "trigger".to_string()),
            (format!("pw-{iid}-resolve"), "resolve".to_string())
        ],
        "each once"
    );

    // Neither replica wrote (or tried to write) a scan while following.
    let log_b = std::fs::read_to_string(dir.path().join("guard-b.log")).unwrap();
    let log_a = std::fs::read_to_string(dir.path().join("guard-a.log")).unwrap();
    for (name, log) in [("A", &log_a), ("B", &log_b)] {
        for bad in ["fence", "cannot store the scan", "scheduled scan failed"] {
            assert!(
                !log.to_ascii_lowercase().contains(bad),
                "{name} logged `{bad}`:\n{log}"
            );
        }
    }
}

const AGENT_TOKEN: &str = "pw-ha-agent-token-51c0de";

/// A replica for the agent test: its monitor is probed only at location `edge` (the agent's).
fn agent_replica(
    dir: &std::path::Path,
    name: &str,
    url: &str,
    target: u16,
    hook: &str,
) -> (Proc, u16) {
    spawn_replica(
        dir,
        name,
        &format!(
            "engine: {{location: {name}}}\n\
             store: {{url: \"{url}\"}}\n\
             monitors:\n  - name: edge-web\n    target: \"tcp://127.0.0.1:{target}\"\n    interval: 1s\n    timeout: 500ms\n    locations: [edge]\n    rules: {{consecutive_failures: 2, recovery: 2, min_samples: 1000}}\n\
             agents:\n  - {{name: edge-1, location: edge, token_sha256: {}}}\n\
             server: {{agent_silent_after: 4s}}\n\
             receivers:\n  hook: {{type: webhook, url: \"{hook}\"}}\n\
             routes:\n  - name: all\n    default: true\n    receivers: hook\n\
             notifications: {{backoff_initial: 200ms, backoff_max: 500ms, poll: 100ms}}\n\
             auth:\n  tokens:\n    - {{name: test, secret: \"{TOKEN}\", role: admin}}\n",
            portwarden_server::auth::sha256_hex(AGENT_TOKEN)
        ),
    )
}

fn edge_incidents(port: u16) -> Vec<Value> {
    api(port, "/api/v1/incidents?monitor=edge-web")["incidents"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn agent_on(port: u16) -> Value {
    api(port, "/api/v1/agents/edge-1")
}

#[test]
fn an_agent_talking_to_the_follower_is_judged_by_the_leader() {
    let Some(db) = tk::pg::TestDatabase::create() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let target = Target::start();
    let hook = tk::webhook::Receiver::start();
    let events = |e: &str| hook.deliveries().iter().filter(|d| d.event() == e).count();

    let (mut a, pa) = agent_replica(dir.path(), "replica-a", &db.url(), target.port, &hook.url());
    wait(Duration::from_secs(20), "A becomes leader", || {
        is_leader(pa)
    });
    let (_b, pb) = agent_replica(dir.path(), "replica-b", &db.url(), target.port, &hook.url());
    assert_eq!(health(pb)["leadership"]["leader"], false);

    // The agent knows only the follower.
    let mut agent = Proc(
        Command::new(env!("CARGO_BIN_EXE_portwarden"))
            .args(["agent", "--server", &format!("http://127.0.0.1:{pb}")])
            .args(["--location", "edge", "--data-dir"])
            .arg(dir.path().join("agent"))
            .env("PORTWARDEN_AGENT_TOKEN", AGENT_TOKEN)
            .env("PORTWARDEN_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn portwarden agent"),
    );
    // The leader judges what the follower received: `edge` is up on A.
    wait(
        Duration::from_secs(30),
        "A judges the agent's results",
        || api(pa, "/api/v1/monitors/edge-web")["locations"]["edge"]["state"] == "up",
    );
    // Both replicas list the agent from the store, though it only ever talked to B.
    wait(
        Duration::from_secs(10),
        "both replicas list the agent",
        || {
            let (va, vb) = (agent_on(pa), agent_on(pb));
            va["status"] == "ok"
                && vb["status"] == "ok"
                && va["version"].is_string()
                && va["version"] == vb["version"]
                && va["last_seq"].as_u64().unwrap_or(0) >= 1
        },
    );
    let va = agent_on(pa);
    assert_eq!(va["address"], "127.0.0.1", "{va:#}");
    assert!(va["observations"].as_u64().unwrap_or(0) >= 1, "{va:#}");
    assert!(va["lag_ms"].is_number(), "{va:#}");

    // The target goes down: the leader opens the incident and notifies.
    target.set(false);
    wait(Duration::from_secs(20), "incident opened by A", || {
        edge_incidents(pa).iter().any(|i| i["status"] == "open")
    });
    let first = edge_incidents(pa);
    assert_eq!(first.len(), 1, "{first:#?}");
    let id = first[0]["id"].as_i64().unwrap();
    // One location probes it: quorum 1, a global incident from the agent's results.
    assert_eq!(first[0]["scope"], "global", "{first:#?}");
    assert_eq!(first[0]["last_healthy"]["location"], "edge", "{first:#?}");
    wait(Duration::from_secs(15), "A delivers the trigger", || {
        events("trigger") >= 1
    });
    let probed_by_replicas: i64 = db
        .psql("SELECT COUNT(*) FROM observations WHERE location <> 'edge'")
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(probed_by_replicas, 0, "only the agent probes edge-web");

    // kill -9 the leader; B takes over and judges the uploads it receives itself.
    let _ = a.0.kill();
    let _ = a.0.wait();
    wait(Duration::from_secs(20), "B takes over", || is_leader(pb));
    std::thread::sleep(Duration::from_secs(2));
    target.set(true);
    wait(Duration::from_secs(20), "B resolves the incident", || {
        let i = edge_incidents(pb);
        !i.is_empty() && i.iter().all(|i| i["status"] == "resolved")
    });
    let after = edge_incidents(pb);
    assert_eq!(
        after.len(),
        1,
        "the same incident, not a second: {after:#?}"
    );
    assert_eq!(after[0]["id"].as_i64(), Some(id));
    wait(Duration::from_secs(15), "B delivers the resolve", || {
        events("resolve") >= 1
    });
    std::thread::sleep(Duration::from_secs(2));
    let got: Vec<(String, String)> = hook
        .deliveries()
        .iter()
        .map(|d| (d.key.clone(), d.event().to_string()))
        .collect();
    assert_eq!(
        got,
        [
            (format!("pw-{id}-trigger"), "trigger".to_string()),
            (format!("pw-{id}-resolve"), "resolve".to_string())
        ],
        "each once"
    );
    // Nothing left unjudged in the inbox.
    wait(Duration::from_secs(5), "inbox drained", || {
        db.psql("SELECT COUNT(*) FROM agent_inbox").unwrap() == "0"
    });

    // The agent stops: the leader says so.
    let _ = agent.0.kill();
    let _ = agent.0.wait();
    wait(
        Duration::from_secs(15),
        "B reports the silent agent",
        || {
            let h = health(pb);
            h["problems"].as_array().is_some_and(|p| {
                p.iter()
                    .any(|x| x.as_str().unwrap_or("").contains("agent `edge-1`"))
            })
        },
    );
    assert_eq!(agent_on(pb)["status"], "silent");
}

/// The signed acknowledge link in a notification the leader sent works on the other replica
/// (behind a load balancer, or after a takeover): every replica signs with the one key kept in
/// the store.
#[test]
fn an_acknowledge_link_signed_by_the_leader_works_on_the_follower() {
    let Some(db) = tk::pg::TestDatabase::create() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let target = Target::start();
    let counts = tk::webhook::Receiver::start();
    let (_a, pa) = replica(dir.path(), "replica-a", &db.url(), target.port, counts.port);
    wait(Duration::from_secs(20), "A becomes leader", || {
        is_leader(pa)
    });
    let (_b, pb) = replica(dir.path(), "replica-b", &db.url(), target.port, counts.port);
    assert!(!is_leader(pb));

    target.set(false);
    let trigger = counts
        .wait_for(Duration::from_secs(20), |d| d.event() == "trigger")
        .expect("the leader sends the trigger");
    let id = trigger.body["items"][0]["incident_id"].as_i64().unwrap();
    let link = trigger.body["items"][0]["ack_url"]
        .as_str()
        .or(trigger.body["ack_url"].as_str())
        .expect("an acknowledge link")
        .to_string();
    let path = &link[link.find("/ack/").expect("an /ack/ link")..];

    let r = tk::http::post(addr(pb), path, "");
    assert_eq!(
        r.status, 200,
        "the follower verifies the leader's link: {}",
        r.body
    );
    for port in [pa, pb] {
        let d = api(port, &format!("/api/v1/incidents/{id}"));
        assert_eq!(d["acknowledged_by"], "signed link", "{d:#}");
    }
    // Both replicas keep the same key in the store, none in the API.
    let keys = db.psql("SELECT COUNT(*) FROM shared_keys WHERE name = 'ack-link'");
    assert_eq!(keys.unwrap().trim(), "1");
}
