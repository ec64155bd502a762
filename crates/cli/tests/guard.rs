//! Acceptance 2 of issue 8 end to end, with the real `portwarden serve`: baselines scanned on
//! their schedule (2 s here), findings that open incidents and notify through the alerting
//! routes to webhook receivers this test runs, and resolve when the next scan no longer sees
//! them.
//!
//! - `loopback` (127.0.0.1, routed explicitly to `security`): a listener started outside the
//!   baseline → `unexpected_open` and a notification that says what it is; stopped → resolved
//!   and a resolve notification; an `allowed_open` service whose banner changes →
//!   `service_changed`; the service stopped → `expected_open_closed`.
//! - `dmz` (selected by `labels:` — the hosts of the monitors labelled `zone: dmz`, here one
//!   discovered from a file_sd file on 127.0.0.2; no `routes:`, so the routes' match rules and the default route apply): a
//!   listener outside it → `unexpected_open` to the default route's receiver only.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portwarden_testkit as tk;
use portwarden_testkit::webhook::{Delivery, Receiver};
use serde_json::Value;

const TOKEN: &str = "pw-guard-test-token-5e1b7c3a90";

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TCP service on `addr` that greets every connection with the current banner while `up`
/// is set, and is closed (connections refused) otherwise.
struct Service {
    up: Arc<AtomicBool>,
    banner: Arc<Mutex<String>>,
}

impl Service {
    fn start(ip: [u8; 4], port: u16, banner: &str) -> Service {
        let up = Arc::new(AtomicBool::new(true));
        let banner = Arc::new(Mutex::new(banner.to_string()));
        let (flag, text) = (up.clone(), banner.clone());
        std::thread::spawn(move || {
            loop {
                if !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                let Ok(l) = TcpListener::bind(SocketAddr::from((ip, port))) else {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                };
                l.set_nonblocking(true).unwrap();
                while flag.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((mut s, _)) => {
                            let b = text.lock().unwrap().clone();
                            if !b.is_empty() {
                                let _ = s.write_all(b.as_bytes());
                            }
                            // Let the scanner read the greeting before the close.
                            std::thread::spawn(move || {
                                std::thread::sleep(Duration::from_millis(300));
                                drop(s);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
                drop(l);
            }
        });
        let s = Service { up, banner };
        assert!(
            tk::http::wait_until(Duration::from_secs(5), || std::net::TcpStream::connect(
                SocketAddr::from((ip, port))
            )
            .ok())
            .is_some(),
            "service on {ip:?}:{port} listens"
        );
        s
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
    }

    fn set_banner(&self, b: &str) {
        *self.banner.lock().unwrap() = b.to_string();
    }
}

fn serve_on(config: &std::path::Path, data: &std::path::Path, port: u16) -> Proc {
    let p = Proc(
        Command::new(env!("CARGO_BIN_EXE_portwarden"))
            .args(["serve", "--config"])
            .arg(config)
            .arg("--data-dir")
            .arg(data)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("PORTWARDEN_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn portwarden serve"),
    );
    assert!(tk::wait_for_port(port, Duration::from_secs(30)));
    p
}

fn free_port_on(ip: [u8; 4]) -> u16 {
    loop {
        let p = tk::free_port();
        if TcpListener::bind(SocketAddr::from((ip, p))).is_ok() {
            return p;
        }
    }
}

fn findings(api: &tk::http::Client, q: &str) -> Vec<Value> {
    api.json(&format!("/api/v1/findings?{q}"))["findings"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn wait_finding(api: &tk::http::Client, q: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    tk::http::wait_until(Duration::from_secs(30), || {
        findings(api, q).into_iter().find(|x| f(x))
    })
    .unwrap_or_else(|| panic!("{what}: not within 30s; findings: {:#?}", findings(api, "")))
}

fn wait_delivery(r: &Receiver, what: &str, f: impl Fn(&Delivery) -> bool) -> Delivery {
    r.wait_for(Duration::from_secs(30), f).unwrap_or_else(|| {
        panic!(
            "{what}: no such delivery within 30s; got {:#?}",
            r.deliveries().iter().map(|d| &d.body).collect::<Vec<_>>()
        )
    })
}

fn item(d: &Delivery) -> &Value {
    &d.body["items"][0]
}

fn is_finding(d: &Delivery, event: &str, kind: &str, port: u16) -> bool {
    d.event() == event
        && item(d)["finding"]["kind"] == kind
        && item(d)["finding"]["port"].as_u64() == Some(u64::from(port))
}

#[test]
fn scheduled_scans_notify_findings_through_the_routes_and_resolve_them() {
    let lo = [127, 0, 0, 1];
    let dmz = [127, 0, 0, 2];
    let (ssh_port, rogue_port) = (free_port_on(lo), free_port_on(lo));
    let (web_port, dmz_rogue_port) = (free_port_on(dmz), free_port_on(dmz));
    let ssh = Service::start(lo, ssh_port, "SSH-2.0-OpenSSH_8.9p1\r\n");
    let web = Service::start(dmz, web_port, "");
    let sec = Receiver::start();
    let ops = Receiver::start();

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("guard.yaml");
    // The dmz host is a discovered monitor (file_sd): `labels:` select discovered ones too.
    std::fs::create_dir(dir.path().join("targets")).unwrap();
    std::fs::write(
        dir.path().join("targets/dmz.yaml"),
        format!("- targets: [\"127.0.0.2:{web_port}\"]\n  labels: {{zone: dmz}}\n"),
    )
    .unwrap();
    std::fs::write(
        &config,
        format!(
            "scan: {{timeout: 500ms, banner_timeout: 800ms}}\n\
             discover:\n  - name: dmz\n    source: {{type: files, dir: targets}}\n    template:\n      name: \"dmz-{{{{ hostport }}}}\"\n      check: tcp\n      interval: 5s\n      timeout: 1s\n      labels: {{zone: \"{{{{ labels.zone }}}}\"}}\n\
             baselines:\n\
             \x20 - name: loopback\n    targets: [127.0.0.1]\n    ports: \"{ssh_port},{rogue_port}\"\n    interval: 2s\n    allowed_open:\n      - {{port: {ssh_port}, service: ssh}}\n    severity: critical\n    owner: secops\n    runbook: https://runbooks.example/exposure\n    capability: perimeter\n    routes: [security]\n\
             \x20 - name: dmz\n    labels: {{zone: dmz}}\n    ports: \"{web_port},{dmz_rogue_port}\"\n    interval: 2s\n    allowed_open: [{web_port}]\n    severity: high\n\
             receivers:\n  sec: {{type: webhook, url: \"{}\"}}\n  ops: {{type: webhook, url: \"{}\"}}\n\
             routes:\n  - name: security\n    match: {{owner: secops}}\n    receivers: sec\n    repeat_interval: 2s\n  - name: all\n    default: true\n    receivers: ops\n\
             notifications: {{backoff_initial: 200ms, backoff_max: 500ms, poll: 100ms}}\n\
             auth:\n  tokens:\n    - {{name: test, secret: \"{TOKEN}\", role: admin}}\n",
            sec.url(),
            ops.url()
        ),
    )
    .unwrap();
    let port = tk::free_port();
    let data = dir.path().join("data");
    let mut serve = serve_on(&config, &data, port);
    let api = tk::http::Client::bearer(SocketAddr::from(([127, 0, 0, 1], port)), TOKEN);

    // Clean scans of both baselines first: nothing to report.
    tk::http::wait_until(Duration::from_secs(30), || {
        let s = api.json("/api/v1/scans?limit=50");
        let done = |b: &str| {
            s["scans"]
                .as_array()
                .is_some_and(|v| v.iter().any(|x| x["baseline"] == b && x["error"].is_null()))
        };
        (done("loopback") && done("dmz")).then_some(())
    })
    .expect("a first scan of each baseline");
    assert!(
        findings(&api, "status=open").is_empty(),
        "{:#?}",
        findings(&api, "")
    );
    // `labels:` selected the monitor's host.
    let b = api.json("/api/v1/scans?baseline=dmz&limit=1");
    assert_eq!(
        b["scans"][0]["targets"],
        serde_json::json!(["127.0.0.2"]),
        "{b:#}"
    );
    let bl = api.json("/api/v1/baselines");
    assert_eq!(bl["baselines"][0]["interval"], "2s", "{bl:#}");

    // 1. A listener outside the baseline → unexpected_open, notified to `security`.
    let rogue = Service::start(lo, rogue_port, "");
    let f = wait_finding(
        &api,
        "status=open&baseline=loopback",
        "unexpected_open",
        |x| x["kind"] == "unexpected_open" && x["port"].as_u64() == Some(u64::from(rogue_port)),
    );
    assert_eq!(f["host"], "127.0.0.1");
    assert_eq!(f["severity"], "critical");
    let incident = f["incident_id"].as_i64().expect("finding has an incident");
    let d = wait_delivery(&sec, "unexpected_open trigger", |d| {
        is_finding(d, "trigger", "unexpected_open", rogue_port)
    });
    let i = item(&d);
    assert_eq!(i["monitor"], "scan:loopback");
    assert_eq!(i["target"], format!("127.0.0.1:{rogue_port}/tcp"));
    assert_eq!(i["severity"], "critical");
    assert_eq!(i["owner"], "secops");
    assert_eq!(i["runbook"], "https://runbooks.example/exposure");
    assert_eq!(i["capability"], "perimeter");
    assert_eq!(i["finding"]["baseline"], "loopback");
    assert_eq!(i["finding"]["host"], "127.0.0.1");
    assert_eq!(i["finding"]["transport"], "tcp");
    assert_eq!(i["finding"]["state"], "open");
    assert!(
        i["error_message"]
            .as_str()
            .unwrap_or("")
            .contains("the baseline does not allow it"),
        "{i:#}"
    );
    assert_eq!(d.body["route"], "security");
    assert_eq!(d.key, format!("pw-{incident}-trigger"));
    assert!(
        d.body["title"]
            .as_str()
            .unwrap_or("")
            .starts_with(&format!("unexpected_open 127.0.0.1:{rogue_port}/tcp")),
        "{:#}",
        d.body
    );

    // 2. Stopped → resolved by the next scan, with a resolve to whoever heard the trigger.
    rogue.set_up(false);
    let id = f["id"].as_i64().unwrap();
    wait_finding(
        &api,
        "status=resolved&baseline=loopback",
        "resolution",
        |x| x["id"].as_i64() == Some(id),
    );
    let d = wait_delivery(&sec, "unexpected_open resolve", |d| {
        is_finding(d, "resolve", "unexpected_open", rogue_port)
    });
    assert_eq!(d.key, format!("pw-{incident}-resolve"));
    assert!(item(&d)["recovered_at"].is_string(), "{:#}", d.body);
    let inc = api.json(&format!("/api/v1/incidents/{incident}"));
    assert_eq!(inc["status"], "resolved", "{inc:#}");

    // 3. The allowed service changes its banner → service_changed (against the last scan).
    ssh.set_banner("SSH-2.0-OpenSSH_9.6p1\r\n");
    let f = wait_finding(&api, "baseline=loopback", "service_changed", |x| {
        x["kind"] == "service_changed" && x["port"].as_u64() == Some(u64::from(ssh_port))
    });
    assert!(
        f["message"]
            .as_str()
            .unwrap_or("")
            .contains("OpenSSH_8.9p1"),
        "{f:#}"
    );
    let d = wait_delivery(&sec, "service_changed trigger", |d| {
        is_finding(d, "trigger", "service_changed", ssh_port)
    });
    let x = &item(&d)["finding"];
    assert_eq!(x["service_seen"], "ssh OpenSSH_9.6p1", "{x:#}");
    assert_eq!(x["previous"], "ssh OpenSSH_8.9p1", "{x:#}");
    assert_eq!(x["expected_service"], "ssh", "{x:#}");
    assert!(
        x["banner"].as_str().unwrap_or("").contains("OpenSSH_9.6p1"),
        "{x:#}"
    );
    // The new banner is the new normal: the next scan resolves it.
    let sid = f["id"].as_i64().unwrap();
    wait_finding(
        &api,
        "status=resolved&baseline=loopback",
        "service_changed resolved",
        |x| x["id"].as_i64() == Some(sid),
    );

    // 4. The allowed service stops → expected_open_closed.
    ssh.set_up(false);
    let f = wait_finding(
        &api,
        "status=open&baseline=loopback",
        "expected_open_closed",
        |x| x["kind"] == "expected_open_closed" && x["port"].as_u64() == Some(u64::from(ssh_port)),
    );
    assert!(
        f["message"]
            .as_str()
            .unwrap_or("")
            .contains("is closed but the baseline expects it open (ssh)"),
        "{f:#}"
    );
    let d = wait_delivery(&sec, "expected_open_closed trigger", |d| {
        is_finding(d, "trigger", "expected_open_closed", ssh_port)
    });
    assert_eq!(item(&d)["finding"]["state"], "closed");
    assert_eq!(item(&d)["finding"]["expected_service"], "ssh");

    // A restart keeps the open finding and its incident (the engine leaves findings'
    // incidents to the guard) and notifies nothing again.
    let (eid, eincident) = (f["id"].as_i64(), f["incident_id"].as_i64().unwrap());
    let last_scan = api.json("/api/v1/scans?baseline=loopback&limit=1")["scans"][0]["id"]
        .as_i64()
        .unwrap();
    drop(serve);
    serve = serve_on(&config, &data, port);
    tk::http::wait_until(Duration::from_secs(30), || {
        let s = api.json("/api/v1/scans?baseline=loopback&limit=1");
        (s["scans"][0]["id"].as_i64() > Some(last_scan + 1)).then_some(())
    })
    .expect("scans after the restart");
    let open = findings(&api, "status=open&baseline=loopback");
    assert_eq!(open.len(), 1, "{open:#?}");
    assert_eq!(open[0]["id"].as_i64(), eid);
    let inc = api.json(&format!("/api/v1/incidents/{eincident}"));
    assert_eq!(inc["status"], "open", "{inc:#}");
    // Unacknowledged, it repeats on its route's `repeat_interval` like a monitor's incident.
    let d = wait_delivery(&sec, "expected_open_closed repeat", |d| {
        d.event() == "repeat" && item(d)["finding"]["kind"] == "expected_open_closed"
    });
    assert!(
        d.key
            .starts_with(&format!("pw-{eincident}-repeat-security-")),
        "{}",
        d.key
    );
    assert_eq!(
        item(&d)["finding"]["port"].as_u64(),
        Some(u64::from(ssh_port))
    );

    // 5. The label-selected baseline: its finding goes by the routes' rules to the default route.
    let _dmz_rogue = Service::start(dmz, dmz_rogue_port, "");
    let f = wait_finding(
        &api,
        "status=open&baseline=dmz",
        "dmz unexpected_open",
        |x| x["kind"] == "unexpected_open",
    );
    assert_eq!(f["host"], "127.0.0.2");
    assert_eq!(f["port"].as_u64(), Some(u64::from(dmz_rogue_port)));
    let d = wait_delivery(&ops, "dmz trigger", |d| {
        is_finding(d, "trigger", "unexpected_open", dmz_rogue_port)
    });
    assert_eq!(d.body["route"], "all");
    assert_eq!(item(&d)["finding"]["baseline"], "dmz");
    assert_eq!(item(&d)["severity"], "high");

    // Each receiver heard only its own baseline's findings, each key exactly once (scans
    // kept running meanwhile: nothing was notified twice).
    std::thread::sleep(Duration::from_secs(3));
    for (r, baseline) in [(&sec, "loopback"), (&ops, "dmz")] {
        let all = r.deliveries();
        assert!(
            all.iter()
                .all(|d| item(d)["finding"]["baseline"] == baseline),
            "{:#?}",
            all.iter().map(|d| &d.body).collect::<Vec<_>>()
        );
        let mut keys: Vec<&str> = all.iter().map(|d| d.key.as_str()).collect();
        let n = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), n, "a key delivered twice: {keys:?}");
    }
    drop(web);
    drop(serve);
}
