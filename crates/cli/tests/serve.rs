//! `portwarden serve` as a real process: the README command, SIGTERM, and `kill -9` during a
//! write burst (the database opens again, history intact up to the last batch).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use portwarden_testkit as tk;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(config: &str, data: &std::path::Path, port: u16) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_portwarden"))
            .args(["serve", "--config", config, "--data-dir"])
            .arg(data)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("PORTWARDEN_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn portwarden serve"),
    )
}

fn addr(port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
}

#[test]
fn readme_command_serves_the_example_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = tk::free_port();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/local.yaml");
    let mut p = serve(example, &dir.path().join("data"), port);
    assert!(
        tk::wait_for_port(port, Duration::from_secs(20)),
        "API listening"
    );
    let v = tk::http::get(addr(port), "/api/v1/monitors").json();
    assert_eq!(v["count"], 7, "{v:#}");
    let h = tk::http::get(addr(port), "/api/v1/health").json();
    assert_eq!(h["store"]["ok"], true);
    // SIGTERM: graceful stop, exit code 0.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(p.0.id() as i32, libc::SIGTERM) };
    let status = tk::http::wait_until(Duration::from_secs(20), || p.0.try_wait().ok().flatten())
        .expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(dir.path().join("data/portwarden.db").exists());
}

#[test]
fn kill_9_during_a_write_burst_keeps_history() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            drop(s);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("burst.yaml");
    let mut yaml = String::from("monitors:\n");
    for i in 0..200 {
        yaml.push_str(&format!("  - {{name: m{i}, target: \"tcp://127.0.0.1:{target}\", interval: 1s, timeout: 500ms}}\n"));
    }
    std::fs::write(&config, yaml).unwrap();
    let data = dir.path().join("data");
    let port = tk::free_port();
    let mut p = serve(config.to_str().unwrap(), &data, port);
    assert!(tk::wait_for_port(port, Duration::from_secs(20)));
    // Let it write for a while, remember what is committed, then kill -9 mid-burst.
    std::thread::sleep(Duration::from_secs(4));
    let count = |port: u16| -> usize {
        let v = tk::http::get(addr(port), "/api/v1/monitors/m7/observations?limit=1000").json();
        v["items"].as_array().unwrap().len()
    };
    let committed = count(port);
    assert!(
        committed >= 2,
        "observations committed before the kill: {committed}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let _ = p.0.kill(); // SIGKILL
    let _ = p.0.wait();
    drop(p);

    // Restart on the same data: it opens cleanly and everything committed is still there.
    let port2 = tk::free_port();
    let _p2 = serve(config.to_str().unwrap(), &data, port2);
    assert!(
        tk::wait_for_port(port2, Duration::from_secs(20)),
        "restarts on the same database"
    );
    let after = count(port2);
    assert!(after >= committed, "history intact: {after} >= {committed}");
    let h = tk::http::get(addr(port2), "/api/v1/health").json();
    assert_eq!(h["store"]["ok"], true, "{h:#}");
    if let Some(sqlite3) = tk::which("sqlite3") {
        let out = Command::new(sqlite3)
            .arg(data.join("portwarden.db"))
            .arg("PRAGMA integrity_check;")
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
    }
}
