//! Probe agents end to end, as real processes: `portwarden serve` and `portwarden agent`.
//!
//! - `three_locations_regional_then_global`: three agents in three network namespaces the
//!   test creates (each with its own iptables), one target reachable from all; DROP in one
//!   namespace → a `regional` incident naming that location and no `global` one; DROP in a
//!   second → the incident is `global`. (Needs root.)
//! - `server_down_two_minutes_nothing_lost`: the server is killed (`kill -9`) for 2 minutes
//!   while an agent keeps probing a target that goes down and up again; after the restart
//!   every observation of the period is stored exactly once, in order, and availability over
//!   the period is computed from them.
//! - `agent_results_in_a_maintenance_window_are_marked`: an agent's results inside a
//!   maintenance window are stored with `maintenance = 1` (apart from availability), after it
//!   they count (an incident opens).
//! - `mutual_tls_for_agent_routes`: with `server.tls.client_ca`, an agent needs a client
//!   certificate signed by that CA and its token; another CA's certificate fails the handshake.
//! - `tokens_and_isolation`: a wrong or revoked token is refused (401) and logged without the
//!   token; an agent reads only its own assignment, with only its own monitors' secrets; user
//!   and agent tokens do not open each other's routes.

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use portwarden_testkit as tk;
use serde_json::Value;
use tk::http::{Client, wait_until};

const ADMIN: &str = "pw-agents-test-admin-7c1e9b";

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_portwarden")
}

fn sha256_hex(s: &str) -> String {
    portwarden_server::auth::sha256_hex(s)
}

/// `portwarden serve` with its log (info) in `log`.
fn serve(config: &Path, data: &Path, listen: SocketAddr, log: &Path) -> Proc {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Proc(
        Command::new(bin())
            .args(["serve", "--config"])
            .arg(config)
            .arg("--data-dir")
            .arg(data)
            .args(["--listen", &listen.to_string()])
            .env("PORTWARDEN_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .expect("spawn portwarden serve"),
    )
}

fn agent_cmd(mut cmd: Command, server: &str, token: &str, location: &str, data: &Path) -> Proc {
    Proc(
        cmd.args([
            "agent",
            "--server",
            server,
            "--location",
            location,
            "--data-dir",
        ])
        .arg(data)
        .env("PORTWARDEN_AGENT_TOKEN", token)
        .env("PORTWARDEN_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn portwarden agent"),
    )
}

/// A TCP target: accepts and closes; can be switched off (connections refused) and on.
struct Target {
    addr: SocketAddr,
    on: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Target {
    fn start(ip: Ipv4Addr) -> Target {
        let l = TcpListener::bind((ip, 0)).unwrap();
        let addr = l.local_addr().unwrap();
        let on = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let (on2, stop2) = (on.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut listener = Some(l);
            while !stop2.load(Ordering::Relaxed) {
                match (&listener, on2.load(Ordering::Relaxed)) {
                    (Some(l), true) => {
                        l.set_nonblocking(true).unwrap();
                        match l.accept() {
                            Ok((s, _)) => drop(s),
                            Err(_) => std::thread::sleep(Duration::from_millis(5)),
                        }
                    }
                    (Some(_), false) => listener = None, // closed: connections are refused
                    (None, true) => {
                        // Rebind the same port (SO_REUSEADDR is set by std on Linux).
                        match TcpListener::bind(addr) {
                            Ok(l) => listener = Some(l),
                            Err(_) => std::thread::sleep(Duration::from_millis(20)),
                        }
                    }
                    (None, false) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Target {
            addr,
            on,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn admin(addr: SocketAddr) -> Client {
    Client::bearer(addr, ADMIN)
}

fn auth_section() -> String {
    format!("auth:\n  tokens:\n    - {{name: admin, secret: \"{ADMIN}\", role: admin}}\n")
}

fn agent_view(addr: SocketAddr, name: &str) -> Value {
    let r = admin(addr).get(&format!("/api/v1/agents/{name}"));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

fn open_incidents(addr: SocketAddr, monitor: &str) -> Vec<Value> {
    let r = admin(addr).get(&format!("/api/v1/incidents?state=open&monitor={monitor}"));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["incidents"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// An address on `lo` that namespaces reach through their veth (a route per namespace), so
/// one target and one server address serve every location. Removed on drop.
struct SharedAddr(Ipv4Addr);

impl SharedAddr {
    fn add() -> SharedAddr {
        let used = Command::new("ip")
            .args(["-o", "-4", "addr", "show"])
            .output()
            .unwrap();
        let used = String::from_utf8_lossy(&used.stdout).to_string();
        let b = (1u8..=254)
            .find(|b| !used.contains(&format!(" 10.79.{b}.1/")))
            .expect("a free 10.79.N.1");
        let ip = Ipv4Addr::new(10, 79, b, 1);
        let ok = Command::new("ip")
            .args(["addr", "add", &format!("{ip}/32"), "dev", "lo"])
            .status()
            .unwrap()
            .success();
        assert!(ok, "cannot add {ip} to lo");
        SharedAddr(ip)
    }
}

impl Drop for SharedAddr {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["addr", "del", &format!("{}/32", self.0), "dev", "lo"])
            .output();
    }
}

#[test]
fn three_locations_regional_then_global() {
    if !tk::need(tk::is_root(), "root (network namespaces and iptables)") {
        return;
    }
    if !tk::need(tk::which("iptables").is_some(), "iptables") {
        return;
    }
    let shared = SharedAddr::add();
    let ip = shared.0;
    let target = Target::start(ip);
    let dir = tempfile::tempdir().unwrap();
    let sport = {
        let l = TcpListener::bind((ip, 0)).unwrap();
        l.local_addr().unwrap().port()
    };
    let server_addr = SocketAddr::from((ip, sport));
    let locs = ["loc-a", "loc-b", "loc-c"];
    let tokens: Vec<String> = (0..3)
        .map(|i| format!("agent-token-{i}-{}", std::process::id()))
        .collect();
    let mut agents_yaml = String::from("agents:\n");
    for (i, l) in locs.iter().enumerate() {
        agents_yaml.push_str(&format!(
            "  - {{name: agent-{l}, location: {l}, token_sha256: {}}}\n",
            sha256_hex(&tokens[i])
        ));
    }
    // Notifications go to a webhook receiver: scope changes are announced.
    let hooks = tk::webhook::Receiver::start();
    // The pager hears global incidents only (`match: {scope: global}`): nothing while the
    // outage is regional, the scope change when it turns global, and then its resolve.
    let pager = tk::webhook::Receiver::start();
    let config = format!(
        "monitors:\n  - name: shared-db\n    target: tcp://{}\n    tier: critical\n    interval: 1s\n    timeout: 400ms\n    locations: [loc-a, loc-b, loc-c]\n    rules: {{consecutive_failures: 2, recovery: 2, min_samples: 1000}}\n{agents_yaml}server:\n  agent_silent_after: 10s\n\
         receivers:\n  hook: {{type: webhook, url: \"{}\"}}\n  pager: {{type: webhook, url: \"{}\"}}\n\
         routes:\n  - name: page\n    match: {{scope: global}}\n    receivers: pager\n    continue: true\n  - name: all\n    default: true\n    receivers: hook\n\
         notifications: {{backoff_initial: 200ms, backoff_max: 500ms, poll: 100ms}}\n{}",
        target.addr,
        hooks.url(),
        pager.url(),
        auth_section()
    );
    let cfg = dir.path().join("portwarden.yaml");
    std::fs::write(&cfg, config).unwrap();
    let log = dir.path().join("server.log");
    let _server = serve(&cfg, &dir.path().join("data"), server_addr, &log);
    wait_until(Duration::from_secs(20), || {
        std::net::TcpStream::connect_timeout(&server_addr, Duration::from_millis(200))
            .ok()
            .map(|_| ())
    })
    .expect("the server listens");

    let mut namespaces = Vec::new();
    let mut agents: Vec<Proc> = Vec::new();
    for (i, l) in locs.iter().enumerate() {
        let mut ns = tk::netns::Netns::new().expect("namespace");
        ns.exec(&[
            "ip",
            "route",
            "add",
            &format!("{ip}/32"),
            "via",
            &ns.host_ip.to_string(),
        ])
        .unwrap();
        let data = dir.path().join(format!("agent-{l}"));
        agents.push(agent_cmd(
            ns.command(bin()),
            &format!("http://{server_addr}"),
            &tokens[i],
            l,
            &data,
        ));
        namespaces.push(ns);
    }
    let c = admin(server_addr);
    // Every location reports the target up.
    wait_until(Duration::from_secs(30), || {
        let v = c.json("/api/v1/monitors/shared-db");
        let locs_up = locs.iter().all(|l| v["locations"][*l]["state"] == "up");
        (v["state"] == "up" && locs_up).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "not up from all three locations: {:#}\n{}",
            c.json("/api/v1/monitors/shared-db"),
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    for l in &locs {
        let a = agent_view(server_addr, &format!("agent-{l}"));
        assert_eq!(a["status"], "ok", "{a:#}");
        assert_eq!(a["assigned"], 1, "{a:#}");
        assert_eq!(a["monitors"], serde_json::json!(["shared-db"]), "{a:#}");
    }

    // DROP in one location: a regional incident naming it, nothing global.
    let rule = format!(
        "-A OUTPUT -p tcp -d {ip} --dport {} -j DROP",
        target.addr.port()
    );
    namespaces[1].iptables(&rule).unwrap();
    let inc = wait_until(Duration::from_secs(30), || {
        open_incidents(server_addr, "shared-db").into_iter().next()
    })
    .expect("an incident opens when one location loses the target");
    assert_eq!(inc["scope"], "regional", "{inc:#}");
    assert_eq!(inc["locations"], serde_json::json!(["loc-b"]), "{inc:#}");
    // A regional incident has its own, lower default severity: one step below the critical
    // tier's `critical`.
    assert_eq!(inc["severity"], "high", "{inc:#}");
    let v = c.json("/api/v1/monitors/shared-db");
    assert_eq!(v["locations"]["loc-b"]["state"], "down", "{v:#}");
    assert_eq!(v["locations"]["loc-a"]["state"], "up", "{v:#}");
    assert_eq!(v["scope"]["scope"], "regional", "{v:#}");
    // It stays regional while the other two see the target: no global incident.
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        let open = open_incidents(server_addr, "shared-db");
        assert_eq!(open.len(), 1, "{open:#?}");
        assert_eq!(open[0]["scope"], "regional", "{open:#?}");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        hooks.deliveries().iter().any(|d| d.event() == "trigger"),
        "the regional incident goes to its route: {:#?}",
        hooks.deliveries()
    );
    assert!(
        pager.deliveries().is_empty(),
        "a regional incident does not page: {:#?}",
        pager.deliveries()
    );

    // DROP in a second location: quorum (2) reached → global.
    namespaces[2].iptables(&rule).unwrap();
    let inc = wait_until(Duration::from_secs(30), || {
        open_incidents(server_addr, "shared-db")
            .into_iter()
            .find(|i| i["scope"] == "global")
    })
    .expect("the incident turns global when a second location loses the target");
    let id = inc["id"].as_i64().unwrap();
    let detail = c.json(&format!("/api/v1/incidents/{id}"));
    let kinds: Vec<&str> = detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"opened"), "{detail:#}");
    assert!(kinds.contains(&"scope_changed"), "{detail:#}");
    let opened = &detail["timeline"][0];
    assert_eq!(opened["data"]["scope"], "regional", "{detail:#}");
    // Everyone told about the regional incident hears that it is global now, once.
    let scope_hook = |scope: &str| {
        hooks
            .deliveries()
            .into_iter()
            .filter(|h| {
                h.event() == "scope" && h.key.starts_with(&format!("pw-{id}-scope-{scope}-"))
            })
            .collect::<Vec<_>>()
    };
    wait_until(Duration::from_secs(15), || {
        (!scope_hook("global").is_empty()).then_some(())
    })
    .unwrap_or_else(|| panic!("no scope-change notification: {:#?}", hooks.deliveries()));
    let g = &scope_hook("global")[0];
    let body = &g.body;
    assert_eq!(body["items"][0]["scope"], "global", "{body:#}");
    // The global route's receiver hears it now, once, at the monitor's own severity.
    let paged = wait_until(Duration::from_secs(15), || {
        pager
            .deliveries()
            .into_iter()
            .find(|d| d.event() == "scope")
    })
    .unwrap_or_else(|| {
        panic!(
            "the pager never heard the global incident: {:#?}",
            pager.deliveries()
        )
    });
    assert_eq!(
        paged.body["items"][0]["scope"], "global",
        "{:#}",
        paged.body
    );
    assert_eq!(
        paged.body["items"][0]["severity"], "critical",
        "{:#}",
        paged.body
    );
    assert!(
        paged.key.starts_with(&format!("pw-{id}-scope-global-")),
        "{}",
        paged.key
    );
    assert!(
        body.to_string().contains("scope changed: now global"),
        "{body:#}"
    );

    // loc-c sees it again: back to regional (loc-b), announced with the location.
    namespaces[2].iptables_flush().unwrap();
    wait_until(Duration::from_secs(30), || {
        (!scope_hook("regional").is_empty()).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "no global → regional notification: {:#?}",
            hooks.deliveries()
        )
    });
    let r = &scope_hook("regional")[0];
    let body = &r.body;
    assert_eq!(body["items"][0]["scope"], "regional", "{body:#}");
    assert_eq!(
        body["items"][0]["locations"],
        serde_json::json!(["loc-b"]),
        "{body:#}"
    );
    assert_eq!(scope_hook("global").len(), 1, "{:#?}", hooks.deliveries());
    let same = open_incidents(server_addr, "shared-db");
    assert_eq!(same.len(), 1, "{same:#?}");
    assert_eq!(
        same[0]["id"].as_i64(),
        Some(id),
        "the same incident: {same:#?}"
    );

    // Both recover: the incident resolves.
    namespaces[1].iptables_flush().unwrap();
    wait_until(Duration::from_secs(30), || {
        open_incidents(server_addr, "shared-db")
            .is_empty()
            .then_some(())
    })
    .expect("the incident resolves once every location sees the target again");
    // The pager, told since the incident turned global, hears the resolve too.
    wait_until(Duration::from_secs(15), || {
        pager
            .deliveries()
            .iter()
            .any(|d| d.event() == "resolve")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("no resolve for the pager: {:#?}", pager.deliveries()));
    assert!(
        pager.counts().values().all(|n| *n == 1),
        "{:#?}",
        pager.counts()
    );

    // An agent goes silent: its location is unknown (never down), it raises its own problem,
    // and nothing pages for the monitor.
    drop(agents.remove(2));
    let health = wait_until(Duration::from_secs(30), || {
        let h = c.json("/api/v1/health");
        h["problems"]
            .as_array()
            .is_some_and(|p| {
                p.iter().any(|x| {
                    x.as_str()
                        .is_some_and(|x| x.contains("agent `agent-loc-c`") && x.contains("silent"))
                })
            })
            .then_some(h)
    })
    .expect("a silent agent raises its own problem");
    assert_eq!(
        agent_view(server_addr, "agent-loc-c")["status"],
        "silent",
        "{health:#}"
    );
    // The watcher tells the evaluator within a second.
    let v = wait_until(Duration::from_secs(5), || {
        let v = c.json("/api/v1/monitors/shared-db");
        (v["locations"]["loc-c"]["silent"] == true).then_some(v)
    })
    .unwrap_or_else(|| c.json("/api/v1/monitors/shared-db"));
    assert_eq!(v["locations"]["loc-c"]["silent"], true, "{v:#}");
    assert_eq!(v["locations"]["loc-c"]["state"], "unknown", "{v:#}");
    // (loc-b and loc-c may still be judged on their failure ratio over the last 2 minutes;
    // what matters: the silent location never counts as failing.)
    for i in open_incidents(server_addr, "shared-db") {
        assert!(
            !i["locations"]
                .as_array()
                .is_some_and(|l| l.iter().any(|x| x == "loc-c")),
            "{i:#}"
        );
    }
    drop(agents);
    drop(namespaces);
}

/// Observations of `monitor` in the store after the server stopped: (id, started_at ms,
/// outcome code, location), in insertion order.
fn stored(data: &Path, monitor: &str) -> Vec<(i64, i64, i64, String)> {
    let c = rusqlite::Connection::open_with_flags(
        data.join("portwarden.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut st = c
        .prepare(
            "SELECT o.id, o.started_at, o.outcome, o.location FROM observations o
             JOIN monitors m ON m.id = o.monitor_id WHERE m.name = ?1 ORDER BY o.id",
        )
        .unwrap();
    st.query_map([monitor], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
    })
    .unwrap()
    .map(|r| r.unwrap())
    .collect()
}

#[test]
fn server_down_two_minutes_nothing_lost() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::start(Ipv4Addr::LOCALHOST);
    let sport = tk::free_port();
    let server_addr = SocketAddr::from(([127, 0, 0, 1], sport));
    let token = format!("agent-outage-token-{}", std::process::id());
    let config = format!(
        "monitors:\n  - name: svc\n    target: tcp://{}\n    tier: critical\n    interval: 1s\n    timeout: 400ms\n    locations: [east]\nagents:\n  - {{name: east-1, location: east, token_sha256: {}}}\n{}",
        target.addr,
        sha256_hex(&token),
        auth_section()
    );
    let cfg = dir.path().join("portwarden.yaml");
    std::fs::write(&cfg, config).unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let mut server = serve(&cfg, &data, server_addr, &log);
    assert!(tk::wait_for_port(sport, Duration::from_secs(20)));
    let agent_data = dir.path().join("agent");
    let mut agent = agent_cmd(
        Command::new(bin()),
        &format!("http://{server_addr}"),
        &token,
        "east",
        &agent_data,
    );
    let c = admin(server_addr);
    wait_until(Duration::from_secs(30), || {
        let a = c.json("/api/v1/agents/east-1");
        (a["observations"].as_u64().unwrap_or(0) >= 3).then_some(())
    })
    .expect("the agent uploads");

    // kill -9 the server: whatever batch was in flight may be committed without an answer,
    // so the agent sends it again after the restart (the server must not store it twice).
    let outage_start = chrono::Utc::now();
    let _ = server.0.kill();
    let _ = server.0.wait();
    // While the server is away the target goes down for 30 s and comes back.
    std::thread::sleep(Duration::from_secs(45));
    target.on.store(false, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(30));
    target.on.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(45));
    let outage_end = chrono::Utc::now();
    let queued: Vec<_> = std::fs::read_dir(agent_data.join("queue"))
        .unwrap()
        .filter_map(|e| e.ok())
        .collect();
    assert!(
        queued.len() > 50,
        "the agent should have queued the 2 minutes of results on disk ({} files)",
        queued.len()
    );

    let server2 = serve(&cfg, &data, server_addr, &log);
    assert!(tk::wait_for_port(sport, Duration::from_secs(20)));
    let c = admin(server_addr);
    wait_until(Duration::from_secs(90), || {
        let a = c.json("/api/v1/agents/east-1");
        let q = std::fs::read_dir(agent_data.join("queue")).unwrap().count();
        (a["status"] == "ok" && q <= 1).then_some(())
    })
    .expect("the queue drains after the restart");
    // Stop both so the database is quiet, then read it.
    std::thread::sleep(Duration::from_secs(2));
    agent.0.kill().unwrap();
    let _ = agent.0.wait();
    drop(server2);

    let rows = stored(&data, "svc");
    let from = outage_start.timestamp_millis();
    let to = outage_end.timestamp_millis();
    let period: Vec<&(i64, i64, i64, String)> =
        rows.iter().filter(|r| r.1 >= from && r.1 < to).collect();
    // One probe a second for ~120 s (a few lost to scheduling edges at most).
    assert!(
        (110..=125).contains(&period.len()),
        "{} observations in the 2-minute outage",
        period.len()
    );
    // Exactly once: no start time twice.
    let mut starts: Vec<i64> = rows.iter().map(|r| r.1).collect();
    let n = starts.len();
    starts.sort_unstable();
    starts.dedup();
    assert_eq!(starts.len(), n, "an observation was stored twice");
    // In order: insertion order is probe order.
    assert!(
        rows.windows(2).all(|w| w[0].1 < w[1].1),
        "observations arrived out of order"
    );
    assert!(period.iter().all(|r| r.3 == "east"));
    // The target was down ~30 s of the period.
    let down = period.iter().filter(|r| r.2 == 2).count();
    assert!((25..=35).contains(&down), "{down} down results");
    // Availability over the period comes from exactly these observations.
    // Availability reads minute rollups at the edges: compare over whole minutes.
    let from = (from / 60_000 + 1) * 60_000;
    let to = to / 60_000 * 60_000;
    assert!(
        to - from >= 60_000,
        "at least one whole minute inside the outage"
    );
    let window: Vec<&(i64, i64, i64, String)> =
        rows.iter().filter(|r| r.1 >= from && r.1 < to).collect();
    let up = window.iter().filter(|r| r.2 == 0).count();
    let down = window.iter().filter(|r| r.2 == 2).count();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let avail = rt.block_on(async {
        use portwarden_store::Store;
        let store = portwarden_store::sqlite::SqliteStore::open(
            &data,
            portwarden_store::Retention::default(),
            portwarden_store::WriterOptions::default(),
            portwarden_store::StoreMetrics::default(),
        )
        .unwrap();
        let a = store
            .availability(
                "svc",
                chrono::DateTime::from_timestamp_millis(from).unwrap(),
                chrono::DateTime::from_timestamp_millis(to).unwrap(),
            )
            .await
            .unwrap();
        store.close().await.unwrap();
        a
    });
    assert_eq!(avail.up as usize, up, "{avail:?}");
    assert_eq!(avail.down as usize, down, "{avail:?}");
    let ratio = avail.ratio.expect("a ratio");
    assert!(
        (ratio - up as f64 / (up + down) as f64).abs() < 1e-9,
        "{ratio} vs {up}/{}",
        up + down
    );
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !log.contains(&token),
        "the agent token appears in the server log"
    );
}

fn raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> tk::http::Response {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = vec![
        ("x-portwarden-agent-api", "1"),
        ("Content-Type", "application/json"),
    ];
    if let Some(a) = &auth {
        headers.push(("Authorization", a));
    }
    tk::http::request(addr, method, path, &headers, body.as_bytes()).unwrap()
}

#[test]
fn tokens_and_isolation() {
    let dir = tempfile::tempdir().unwrap();
    let sport = tk::free_port();
    let server_addr = SocketAddr::from(([127, 0, 0, 1], sport));
    let east = format!("east-token-{}", std::process::id());
    let west = format!("west-token-{}", std::process::id());
    let write = |west_revoked: bool| {
        format!(
            "monitors:\n  - name: east-cache\n    target: tcp://127.0.0.1:1\n    check: {{type: redis, password: east-secret-p4ss}}\n    locations: [east]\n  - name: west-cache\n    target: tcp://127.0.0.1:2\n    check: {{type: redis, password: west-secret-p4ss}}\n    locations: [west]\nagents:\n  - {{name: east-1, location: east, token_sha256: {}}}\n  - {{name: west-1, location: west, token_sha256: {}, revoked: {west_revoked}}}\n{}",
            sha256_hex(&east),
            sha256_hex(&west),
            auth_section()
        )
    };
    let cfg = dir.path().join("portwarden.yaml");
    std::fs::write(&cfg, write(false)).unwrap();
    let log = dir.path().join("server.log");
    let mut server = serve(&cfg, &dir.path().join("data"), server_addr, &log);
    assert!(tk::wait_for_port(sport, Duration::from_secs(20)));

    // Wrong token: 401 on every agent route, no token at all: 401.
    let wrong = "wrong-token-that-must-not-be-logged-5f3a";
    for (m, p) in [
        ("POST", "/agent/v1/heartbeat"),
        ("GET", "/agent/v1/assignment"),
        ("POST", "/agent/v1/observations"),
    ] {
        let r = raw(server_addr, m, p, Some(wrong), "{}");
        assert_eq!(r.status, 401, "{m} {p}: {}", r.body);
        assert!(
            r.body.contains("unknown or revoked agent token"),
            "{}",
            r.body
        );
        let r = raw(server_addr, m, p, None, "{}");
        assert_eq!(r.status, 401, "{m} {p} without a token: {}", r.body);
    }
    // A user's API token is not an agent token, and an agent token opens no user route.
    assert_eq!(
        raw(server_addr, "GET", "/agent/v1/assignment", Some(ADMIN), "").status,
        401
    );
    assert_eq!(
        raw(server_addr, "GET", "/api/v1/monitors", Some(&east), "").status,
        401
    );

    // Each agent sees only its own monitors, and only their secrets.
    let a = raw(server_addr, "GET", "/agent/v1/assignment", Some(&east), "");
    assert_eq!(a.status, 200, "{}", a.body);
    let names: Vec<String> = a.json()["monitors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, vec!["east-cache"]);
    assert!(
        a.body.contains("east-secret-p4ss"),
        "its own probe needs its password"
    );
    assert!(
        !a.body.contains("west-secret-p4ss"),
        "another location's secret leaked"
    );
    assert!(!a.body.contains("west-cache"));
    // The location is bound to the token: east's token cannot claim west.
    let hb = serde_json::json!({
        "agent_version": "test", "location": "west", "stream": "s", "sent_at": chrono::Utc::now(),
    });
    let r = raw(
        server_addr,
        "POST",
        "/agent/v1/heartbeat",
        Some(&east),
        &hb.to_string(),
    );
    assert_eq!(r.status, 409, "{}", r.body);
    // Uploads for a monitor of another location are not stored under this agent.
    let batch = serde_json::json!({"stream": "s", "seq": 1, "runs": [{"monitor": "west-cache", "observations": []}]});
    let r = raw(
        server_addr,
        "POST",
        "/agent/v1/observations",
        Some(&east),
        &batch.to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["stored"], 0);
    // Bad body: a located 400, not a panic.
    let r = raw(
        server_addr,
        "POST",
        "/agent/v1/observations",
        Some(&east),
        "{\"stream\": 3",
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("line 1"), "{}", r.body);
    // A version the server does not speak: 426 with what to do.
    let r = tk::http::request(
        server_addr,
        "GET",
        "/agent/v1/assignment",
        &[
            ("x-portwarden-agent-api", "99"),
            ("Authorization", &format!("Bearer {east}")),
        ],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 426, "{}", r.body);
    assert!(r.body.contains("upgrade the server"), "{}", r.body);
    // The user API never shows check secrets.
    let m = admin(server_addr).get("/api/v1/monitors/west-cache");
    assert!(!m.body.contains("west-secret-p4ss"), "{}", m.body);

    // Revoked: refused at once after the reload.
    let w = raw(server_addr, "GET", "/agent/v1/assignment", Some(&west), "");
    assert_eq!(w.status, 200, "{}", w.body);
    std::fs::write(&cfg, write(true)).unwrap();
    let _ = Command::new("kill")
        .args(["-HUP", &server.0.id().to_string()])
        .status();
    wait_until(Duration::from_secs(20), || {
        (raw(server_addr, "GET", "/agent/v1/assignment", Some(&west), "").status == 401)
            .then_some(())
    })
    .expect("a revoked agent is refused");
    assert_eq!(agent_view(server_addr, "west-1")["status"], "revoked");
    // The UI lists them too.
    let page = admin(server_addr).get("/agents");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("east-1") && page.body.contains("revoked"),
        "{}",
        page.body
    );

    let _ = server.0.kill();
    let _ = server.0.wait();
    let mut log_text = String::new();
    std::fs::File::open(&log)
        .unwrap()
        .read_to_string(&mut log_text)
        .unwrap();
    assert!(log_text.contains("refused an agent"), "{log_text}");
    for secret in [
        wrong,
        east.as_str(),
        west.as_str(),
        "east-secret-p4ss",
        "west-secret-p4ss",
    ] {
        assert!(
            !log_text.contains(secret),
            "`{secret}` appears in the server log"
        );
    }
}

/// `curl` over HTTPS to the test server: (HTTP status, body); status 0 when the handshake
/// (or the connection) failed. `cert`: (certificate, key) files to present.
fn curl(
    url: &str,
    ca: &Path,
    cert: Option<(&Path, &Path)>,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut c = Command::new("curl");
    c.args(["-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "10"])
        .arg("--cacert")
        .arg(ca)
        .args(["-H", "x-portwarden-agent-api: 1"]);
    if let Some((cert, key)) = cert {
        c.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    if let Some(t) = token {
        c.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if let Some(b) = body {
        c.args(["-H", "Content-Type: application/json", "--data", b]);
    }
    let out = c.arg(url).output().expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Mutual TLS: with `server.tls.client_ca`, the agent routes take only agents presenting a
/// certificate signed by that CA (and still their token); a certificate from another CA fails
/// the handshake; the user API needs no client certificate (`client_auth: agents`).
#[test]
fn mutual_tls_for_agent_routes() {
    if !tk::need(tk::which("curl").is_some(), "curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let write = |name: &str, pem: &str| {
        let p = d.join(name);
        std::fs::write(&p, pem).unwrap();
        p
    };
    let server_ca = tk::certs::TestCa::new();
    let server_leaf = server_ca.leaf(&["127.0.0.1", "localhost"], -1, 30);
    let ca = write("server-ca.pem", &server_ca.cert_pem);
    let (scert, skey) = (
        write("server.pem", &server_leaf.cert_pem),
        write("server.key", &server_leaf.key_pem),
    );
    let client_ca = tk::certs::TestCa::new();
    let good = client_ca.leaf(&["edge-1"], -1, 30);
    let (gcert, gkey) = (
        write("good.pem", &good.cert_pem),
        write("good.key", &good.key_pem),
    );
    let rogue = tk::certs::TestCa::new().leaf(&["edge-1"], -1, 30);
    let (rcert, rkey) = (
        write("rogue.pem", &rogue.cert_pem),
        write("rogue.key", &rogue.key_pem),
    );
    let client_ca_file = write("client-ca.pem", &client_ca.cert_pem);
    let token = format!("mtls-agent-token-{}", std::process::id());
    let target = Target::start(Ipv4Addr::LOCALHOST);
    let listen = SocketAddr::from(([127, 0, 0, 1], tk::free_port()));
    let cfg = d.join("portwarden.yaml");
    std::fs::write(
        &cfg,
        format!(
            "monitors:\n  - name: edge-web\n    target: tcp://{}\n    interval: 1s\n    timeout: 400ms\n    locations: [edge]\n\
             agents:\n  - {{name: edge-1, location: edge, token_sha256: {}}}\n\
             server:\n  tls: {{cert: {}, key: {}, client_ca: {}}}\n{}",
            target.addr,
            sha256_hex(&token),
            scert.display(),
            skey.display(),
            client_ca_file.display(),
            auth_section()
        ),
    )
    .unwrap();
    let log = d.join("server.log");
    let _server = serve(&cfg, &d.join("data"), listen, &log);
    assert!(
        tk::wait_for_port(listen.port(), Duration::from_secs(30)),
        "server listens: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let base = format!("https://127.0.0.1:{}", listen.port());
    let hb_url = format!("{base}/agent/v1/heartbeat");
    let hb = serde_json::json!({
        "agent_version": "test", "location": "edge", "stream": "s", "sent_at": chrono::Utc::now(),
    })
    .to_string();

    // The user API needs no client certificate.
    let (code, body) = curl(&format!("{base}/api/v1/health"), &ca, None, None, None);
    assert_eq!(code, 200, "{body}");
    // No client certificate: refused at the agent routes, token or not.
    let (code, body) = curl(&hb_url, &ca, None, Some(&token), Some(&hb));
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("client certificate"), "{body}");
    // A certificate from another CA: the handshake fails.
    let (code, body) = curl(&hb_url, &ca, Some((&rcert, &rkey)), Some(&token), Some(&hb));
    assert_eq!(code, 0, "a certificate of another CA got an answer: {body}");
    // The right certificate but a wrong token or none: 401 (the token is still required).
    let (code, body) = curl(
        &hb_url,
        &ca,
        Some((&gcert, &gkey)),
        Some("wrong"),
        Some(&hb),
    );
    assert_eq!(code, 401, "{body}");
    let (code, body) = curl(&hb_url, &ca, Some((&gcert, &gkey)), None, Some(&hb));
    assert_eq!(code, 401, "{body}");
    // Both: accepted.
    let (code, body) = curl(&hb_url, &ca, Some((&gcert, &gkey)), Some(&token), Some(&hb));
    assert_eq!(code, 200, "{body}");

    // The real agent with its certificate works end to end: its results are judged.
    let agent = Proc(
        Command::new(bin())
            .args([
                "agent",
                "--server",
                &base,
                "--location",
                "edge",
                "--data-dir",
            ])
            .arg(d.join("agent"))
            .arg("--ca-file")
            .arg(&ca)
            .arg("--client-cert")
            .arg(&gcert)
            .arg("--client-key")
            .arg(&gkey)
            .env("PORTWARDEN_AGENT_TOKEN", &token)
            .env("PORTWARDEN_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn portwarden agent"),
    );
    let monitor = || {
        let (_, body) = curl(
            &format!("{base}/api/v1/monitors/edge-web"),
            &ca,
            None,
            Some(ADMIN),
            None,
        );
        serde_json::from_str::<Value>(&body).unwrap_or_default()
    };
    wait_until(Duration::from_secs(30), || {
        (monitor()["locations"]["edge"]["state"] == "up").then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the agent's results never arrived: {:#}\n{}",
            monitor(),
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    drop(agent);
    // The refusals are logged without the token.
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("no client certificate"), "{text}");
    assert!(!text.contains(&token), "the token leaked into the log");
    drop(_server);

    // `bind_agent_names`: edge-1's certificate works with edge-1's token only; edge-2's token
    // (stolen, say) with edge-1's certificate is refused, and so is a certificate naming no
    // enrolled agent.
    let token2 = format!("mtls-agent-two-{}", std::process::id());
    let other = client_ca.leaf(&["someone-else"], -1, 30);
    let (ocert, okey) = (
        write("other.pem", &other.cert_pem),
        write("other.key", &other.key_pem),
    );
    let listen = SocketAddr::from(([127, 0, 0, 1], tk::free_port()));
    let cfg = d.join("bound.yaml");
    std::fs::write(
        &cfg,
        format!(
            "monitors:\n  - name: edge-web\n    target: tcp://{}\n    interval: 1s\n    timeout: 400ms\n    locations: [edge]\n\
             agents:\n  - {{name: edge-1, location: edge, token_sha256: {}}}\n  - {{name: edge-2, location: edge, token_sha256: {}}}\n\
             server:\n  tls: {{cert: {}, key: {}, client_ca: {}, bind_agent_names: true}}\n{}",
            target.addr,
            sha256_hex(&token),
            sha256_hex(&token2),
            scert.display(),
            skey.display(),
            client_ca_file.display(),
            auth_section()
        ),
    )
    .unwrap();
    let log = d.join("bound.log");
    let _server = serve(&cfg, &d.join("data-bound"), listen, &log);
    assert!(tk::wait_for_port(listen.port(), Duration::from_secs(30)));
    let hb_url = format!("https://127.0.0.1:{}/agent/v1/heartbeat", listen.port());
    let (code, body) = curl(&hb_url, &ca, Some((&gcert, &gkey)), Some(&token), Some(&hb));
    assert_eq!(code, 200, "{body}");
    let (code, body) = curl(
        &hb_url,
        &ca,
        Some((&gcert, &gkey)),
        Some(&token2),
        Some(&hb),
    );
    assert_eq!(
        code, 403,
        "another agent's token with edge-1's certificate: {body}"
    );
    assert!(body.contains("must name agent `edge-2`"), "{body}");
    let (code, body) = curl(&hb_url, &ca, Some((&ocert, &okey)), Some(&token), Some(&hb));
    assert_eq!(code, 403, "{body}");
    let (code, _) = curl(&hb_url, &ca, Some((&gcert, &gkey)), None, Some(&hb));
    assert_eq!(code, 401, "the token is still required");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("names another agent"), "{text}");
    assert!(
        !text.contains(&token) && !text.contains(&token2),
        "a token leaked into the log"
    );
}

/// An agent's results taken inside a maintenance window are stored apart from availability
/// (`maintenance = 1`, rollups count them as maintenance) and open nothing, like the server's
/// own; after the window they count again.
#[test]
fn agent_results_in_a_maintenance_window_are_marked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let token = format!("maint-agent-token-{}", std::process::id());
    // Nothing listens on the target: every result is `down`.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let now = chrono::Utc::now();
    let end = now + chrono::Duration::seconds(6);
    let listen = SocketAddr::from(([127, 0, 0, 1], tk::free_port()));
    let cfg = d.join("portwarden.yaml");
    std::fs::write(
        &cfg,
        format!(
            "monitors:\n  - name: edge-db\n    target: tcp://{closed}\n    interval: 1s\n    timeout: 400ms\n    locations: [edge]\n\
             agents:\n  - {{name: edge-1, location: edge, token_sha256: {}}}\n\
             maintenance:\n  - name: upgrade\n    start: {}\n    end: {}\n    hosts: [127.0.0.1]\n{}",
            sha256_hex(&token),
            (now - chrono::Duration::minutes(1)).to_rfc3339(),
            end.to_rfc3339(),
            auth_section()
        ),
    )
    .unwrap();
    let log = d.join("server.log");
    let data = d.join("data");
    let mut server = serve(&cfg, &data, listen, &log);
    assert!(tk::wait_for_port(listen.port(), Duration::from_secs(30)));
    let _agent = agent_cmd(
        Command::new(bin()),
        &format!("http://{listen}"),
        &token,
        "edge",
        &d.join("agent"),
    );
    let c = admin(listen);
    // After the window: results count again (an incident opens).
    wait_until(Duration::from_secs(40), || {
        (!open_incidents(listen, "edge-db").is_empty()).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "no incident after the window: {:#}",
            c.json("/api/v1/monitors/edge-db")
        )
    });
    let _ = server.0.kill();
    let _ = server.0.wait();
    let db = rusqlite::Connection::open_with_flags(
        data.join("portwarden.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let rows: Vec<(i64, i64)> = db
        .prepare(
            "SELECT o.started_at, o.maintenance FROM observations o
             JOIN monitors m ON m.id = o.monitor_id
             WHERE m.name = 'edge-db' AND o.location = 'edge' ORDER BY o.started_at",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let end_ms = end.timestamp_millis();
    let inside: Vec<_> = rows.iter().filter(|(at, _)| *at < end_ms - 200).collect();
    let after: Vec<_> = rows.iter().filter(|(at, _)| *at > end_ms + 200).collect();
    assert!(!inside.is_empty() && !after.is_empty(), "{rows:?}");
    assert!(
        inside.iter().all(|(_, m)| *m == 1),
        "inside the window: {rows:?}"
    );
    assert!(
        after.iter().all(|(_, m)| *m == 0),
        "after the window: {rows:?}"
    );
    // The rollups count the window's results as maintenance, not as down.
    let maint: i64 = db
        .query_row(
            "SELECT COALESCE(SUM(maintenance), 0) FROM rollup_minute",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(maint >= inside.len() as i64, "{maint} < {}", inside.len());
}
