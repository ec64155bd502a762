//! Acceptance 3 of issue 6: `kill -9` of the daemon while a receiver is down; the receiver
//! comes back, the daemon restarts → every pending notification is delivered, and none twice
//! for the same idempotency key as the receiver counts them.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portwarden_testkit as tk;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const TOKEN: &str = "pw-cli-alert-token-77c1d9e0a4";

fn serve(config: &std::path::Path, data: &std::path::Path, port: u16) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_portwarden"))
            .args(["serve", "--config"])
            .arg(config)
            .arg("--data-dir")
            .arg(data)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("PORTWARDEN_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn portwarden serve"),
    )
}

fn wait(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn kill_9_while_the_receiver_is_down_delivers_every_pending_notification_once() {
    let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tport = target.local_addr().unwrap().port();
    let rport = tk::free_port(); // the receiver: down (nothing listens) until later
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("alerting.yaml");
    std::fs::write(
        &config,
        format!(
            "monitors:\n  - name: svc\n    target: tcp://127.0.0.1:{tport}\n    interval: 500ms\n    timeout: 400ms\n    rules: {{consecutive_failures: 2, recovery: 2, flap: {{enabled: false}}}}\n\
             receivers:\n  hook: {{type: webhook, url: \"http://127.0.0.1:{rport}/hook\"}}\n\
             routes:\n  - name: all\n    default: true\n    receivers: hook\n\
             notifications: {{backoff_initial: 200ms, backoff_max: 500ms, poll: 100ms}}\n\
             auth:\n  tokens:\n    - {{name: test, secret: \"{TOKEN}\", role: admin}}\n"
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let port = tk::free_port();
    let mut p = serve(&config, &data, port);
    assert!(tk::wait_for_port(port, Duration::from_secs(20)));
    let api = tk::http::Client::bearer(std::net::SocketAddr::from(([127, 0, 0, 1], port)), TOKEN);
    assert!(wait(Duration::from_secs(10), || api
        .json("/api/v1/monitors/svc")["state"]
        == "up"));

    // Down → trigger queued, failing (receiver refuses); back up → resolve queued too.
    drop(target);
    let incident = {
        let mut id = None;
        assert!(
            wait(Duration::from_secs(10), || {
                let v = api.json("/api/v1/incidents?monitor=svc");
                id = v["incidents"][0]["id"].as_i64();
                let Some(i) = id else { return false };
                let d = api.json(&format!("/api/v1/incidents/{i}"));
                d["notifications"][0]["attempts"].as_u64().unwrap_or(0) >= 2
            }),
            "the trigger is failing against the dead receiver"
        );
        id.unwrap()
    };
    let target = std::net::TcpListener::bind(("127.0.0.1", tport)).unwrap();
    let accepting = target.try_clone().unwrap();
    std::thread::spawn(move || {
        for s in accepting.incoming() {
            drop(s);
        }
    });
    assert!(
        wait(Duration::from_secs(10), || {
            let d = api.json(&format!("/api/v1/incidents/{incident}"));
            d["status"] == "resolved" && d["notifications"].as_array().is_some_and(|n| n.len() == 2)
        }),
        "resolved, with its resolve queued"
    );
    std::thread::sleep(Duration::from_millis(500));

    let _ = p.0.kill(); // SIGKILL, with both notifications pending
    let _ = p.0.wait();
    drop(p);

    let counts = tk::webhook::Receiver::start_on(rport);
    let port2 = tk::free_port();
    let _p2 = serve(&config, &data, port2);
    assert!(tk::wait_for_port(port2, Duration::from_secs(20)));
    let (t, r) = (
        (format!("pw-{incident}-trigger"), "trigger".to_string()),
        (format!("pw-{incident}-resolve"), "resolve".to_string()),
    );
    assert!(
        wait(Duration::from_secs(15), || {
            let c = counts.counts();
            c.contains_key(&t) && c.contains_key(&r)
        }),
        "both pending notifications delivered after the restart: {:?}",
        counts.counts()
    );
    std::thread::sleep(Duration::from_secs(3));
    let c = counts.counts();
    assert_eq!(
        c.get(&(format!("pw-{incident}-trigger"), "trigger".into())),
        Some(&1),
        "{c:?}"
    );
    assert_eq!(
        c.get(&(format!("pw-{incident}-resolve"), "resolve".into())),
        Some(&1),
        "{c:?}"
    );
    assert!(c.values().all(|n| *n == 1), "none twice: {c:?}");
    assert_eq!(c.len(), 2, "no second incident after the restart: {c:?}");
    let api2 = tk::http::Client::bearer(std::net::SocketAddr::from(([127, 0, 0, 1], port2)), TOKEN);
    let d = api2.json(&format!("/api/v1/incidents/{incident}"));
    assert!(
        d["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["status"] == "delivered"),
        "{d:#}"
    );
    drop(target);
}
