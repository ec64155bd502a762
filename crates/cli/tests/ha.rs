//! Several `portwarden serve` replicas on one PostgreSQL database (a database this test
//! creates on the shared server and drops afterwards): exactly one leads (probes, judges,
//! writes incidents); `kill -9` of the leader during an incident → the other takes over within
//! the bound (default 15 s), rebuilds its judgement from the store, keeps the same incident
//! (no second one opened) and resolves it when the target comes back.
//!
//! Each replica probes under its own location name (`replica-a`, `replica-b`) so the stored
//! observations show who probed.

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

fn replica(dir: &std::path::Path, name: &str, url: &str, target: u16) -> (Proc, u16) {
    let config = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &config,
        format!(
            "engine: {{location: {name}}}\n\
             store: {{url: \"{url}\"}}\n\
             monitors:\n  - name: web\n    target: \"tcp://127.0.0.1:{target}\"\n    interval: 1s\n    timeout: 500ms\n    rules: {{consecutive_failures: 2, recovery: 2}}\n\
             auth:\n  tokens:\n    - {{name: test, secret: \"{TOKEN}\", role: admin}}\n"
        ),
    )
    .unwrap();
    let port = tk::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_portwarden"))
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join(format!("{name}-data")))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("PORTWARDEN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
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

    // Replica A starts first and leads; B follows.
    let (mut a, pa) = replica(dir.path(), "replica-a", &db.url(), target.port);
    wait(Duration::from_secs(20), "A becomes leader", || {
        is_leader(pa)
    });
    let (_b, pb) = replica(dir.path(), "replica-b", &db.url(), target.port);
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
    assert_eq!(kinds.last(), Some(&"resolved"), "{kinds:?}");
    assert_eq!(
        kinds.iter().filter(|k| **k == "opened").count(),
        1,
        "{kinds:?}"
    );
}
