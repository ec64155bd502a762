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

/// API token of the configs these tests write.
const TOKEN: &str = "pw-cli-test-token-5d0c8e2a71";

/// Logs in through the form as `user` and returns a client carrying the session cookie.
fn login(port: u16, user: &str, password: &str) -> tk::http::Client {
    let anon = tk::http::Client::new(addr(port));
    let form = anon.get("/login");
    assert_eq!(form.status, 200, "{}", form.body);
    let (_, login_cookie) = form
        .cookies()
        .into_iter()
        .find(|(n, _)| n == "pw_login")
        .expect("login form sets its CSRF cookie");
    let r = anon
        .clone()
        .with_header("Cookie", &format!("pw_login={login_cookie}"))
        .post_form(
            "/login",
            &[
                ("csrf", &login_cookie),
                ("user", user),
                ("password", password),
                ("next", "/"),
            ],
        );
    assert_eq!(r.status, 303, "login: {}", r.body);
    let (_, session) = r
        .cookies()
        .into_iter()
        .find(|(n, v)| n == "pw_session" && !v.is_empty())
        .expect("session cookie");
    tk::http::Client::new(addr(port)).with_header("Cookie", &format!("pw_session={session}"))
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
    // Without credentials the API refuses; the first start created `admin` with a random
    // password written (mode 0600) to the data directory.
    assert_eq!(
        tk::http::get(addr(port), "/api/v1/monitors").status,
        401,
        "the API needs credentials"
    );
    let pw_file = dir.path().join("data/admin-password");
    let password = std::fs::read_to_string(&pw_file).expect("generated admin password file");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&pw_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "password file mode {mode:o}");
    let c = login(port, "admin", password.trim());
    let v = c.json("/api/v1/monitors");
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
    yaml.push_str(&format!(
        "auth:\n  tokens:\n    - {{name: test, secret: \"{TOKEN}\", role: viewer}}\n"
    ));
    std::fs::write(&config, yaml).unwrap();
    let data = dir.path().join("data");
    let port = tk::free_port();
    let mut p = serve(config.to_str().unwrap(), &data, port);
    assert!(tk::wait_for_port(port, Duration::from_secs(20)));
    // Let it write for a while, remember what is committed, then kill -9 mid-burst.
    std::thread::sleep(Duration::from_secs(4));
    let count = |port: u16| -> usize {
        let v = tk::http::Client::bearer(addr(port), TOKEN)
            .json("/api/v1/monitors/m7/observations?limit=1000");
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
