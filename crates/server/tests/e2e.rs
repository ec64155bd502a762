//! Browser end to end: starts the daemon on the example config plus a test-owned redis-server
//! and a hostile peer, then runs `tests/e2e/e2e.mjs` (playwright-core driving Debian's
//! headless Chromium): log in, see the example monitors, kill the redis-server, see it down on
//! the overview, the incident timeline, the monitor chart, hostile text inert, the status page
//! showing the incident, the exposure page after "Scan now" (the hostile peer's banner inert).
//! Screenshots land in `target/e2e/`.
//!
//! Needs `node`, `/usr/bin/chromium` and `tests/e2e/node_modules` (`npm ci` there; this test
//! runs it when missing). Skips loudly without them unless `PORTWARDEN_REQUIRE_SERVICES=1`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use portwarden_testkit as tk;

const EVIL_NAME: &str = "<script>alert(1)</script>";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `tests/e2e/node_modules` present, or installed now with `npm ci`.
fn e2e_deps(dir: &Path) -> bool {
    if dir.join("node_modules/playwright-core").exists() {
        return true;
    }
    let Some(npm) = tk::which("npm") else {
        return false;
    };
    let ok = Command::new(npm)
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .is_ok_and(|s| s.success());
    ok && dir.join("node_modules/playwright-core").exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn browser_walks_through_an_outage() {
    let Some(node) = tk::need_binary("node") else {
        return;
    };
    let chromium = PathBuf::from("/usr/bin/chromium");
    if !tk::need(
        chromium.exists(),
        "/usr/bin/chromium (apt-get install chromium)",
    ) {
        return;
    }
    let Some(_) = tk::need_binary("redis-server") else {
        return;
    };
    let e2e_dir = repo().join("tests/e2e");
    if !tk::need(
        e2e_deps(&e2e_dir),
        "playwright-core in tests/e2e/node_modules (run `npm ci` in tests/e2e)",
    ) {
        return;
    }

    let mut redis = tk::process::Server::redis().expect("start redis");
    let pid = redis.pid().expect("redis pid");
    let evil =
        tk::hostile::greeter(b"<img src=x onerror=alert(2)><script>alert(3)</script>\r\n").await;
    let password = portwarden_server::auth::random_token(18);

    // The example config, plus the test's own monitors, a status page and a user.
    let example = std::fs::read_to_string(repo().join("examples/local.yaml")).unwrap();
    let examples: Vec<String> = portwarden_config::load_str(&example, "local.yaml")
        .unwrap()
        .config
        .monitors
        .iter()
        .map(|m| m.name.clone())
        .collect();
    assert!(
        example.trim_end().lines().last().unwrap().starts_with(' '),
        "examples/local.yaml ends with its monitors list"
    );
    let yaml = format!(
        "{example}
  - name: e2e-session-cache
    target: tcp://127.0.0.1:{rport}
    tier: critical
    interval: 1s
    timeout: 500ms
    service: redis
    owner: team-e2e
    capability: login sessions
    runbook: https://runbooks.example.com/redis
  - name: \"{EVIL_NAME}\"
    target: tcp://127.0.0.1:{evil}
    tier: supporting
    interval: 2s
    timeout: 500ms
    check: {{type: send_expect, steps: [{{expect: \"+PONG\"}}]}}
status_page:
  title: Example Shop status
  cache: 2s
  groups:
    - name: Shop
      components:
        - name: Login sessions
          description: Signing in and staying signed in
          monitors: [e2e-session-cache]
        - name: Checkout
          monitors: [orders-db]
scan:
  timeout: 500ms
  banner_timeout: 500ms
baselines:
  - name: e2e-loopback
    targets: [127.0.0.1]
    ports: \"{evil},{closed}\"
    interval: 1h
    allowed_open:
      - {{port: {closed}, service: ssh}}
    severity: high
{auth}",
        rport = redis.port,
        closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        },
        auth = auth_with(&[("e2e", &password, "editor")], &[]),
    );
    let mut d = TestDaemon::start(&yaml).await;
    let shots = repo().join("target/e2e");
    let url = format!("http://{}", d.addr);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(node)
            .arg(e2e_dir.join("e2e.mjs"))
            .current_dir(&e2e_dir)
            .env("PW_URL", &url)
            .env("PW_USER", "e2e")
            .env("PW_PASSWORD", &password)
            .env("PW_KILL_PID", pid.to_string())
            .env("PW_KILLED_MONITOR", "e2e-session-cache")
            .env("PW_COMPONENT", "Login sessions")
            .env("PW_EVIL_MONITOR", EVIL_NAME)
            .env("PW_EXAMPLE_MONITORS", examples.join(","))
            .env("PW_EVIL_PORT", evil.to_string())
            .env("PW_SCREENSHOTS", &shots)
            .env("PW_CHROMIUM", &chromium)
            .output()
            .expect("run node")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    redis.kill();
    d.stop().await;
    assert!(
        out.status.success(),
        "browser test failed (screenshots in target/e2e):\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("e2e: all steps passed"), "{stdout}");
    for f in [
        "overview.png",
        "overview-down.png",
        "incident.png",
        "monitor.png",
        "exposure.png",
        "status.png",
    ] {
        assert!(repo().join("target/e2e").join(f).exists(), "{f} saved");
    }
}
