//! Helpers for daemon tests: an in-process daemon on a free port with its own data dir.
//!
//! Authentication: every config written through these helpers gets an `auth:` section with an
//! admin API token ([`TEST_TOKEN`]) unless it has its own `auth:`; every request made through
//! [`TestDaemon::get`]/[`TestDaemon::json`]/[`TestDaemon::post`]/[`TestDaemon::client`] sends
//! `Authorization: Bearer TEST_TOKEN`. Rewrite the config with [`TestDaemon::write_config`]
//! (or build it with [`config`]) so a reload keeps the token.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use portwarden_server::{Daemon, ServeOptions};
use portwarden_testkit::http;
use serde_json::Value;

/// The admin API token of test daemons.
pub const TEST_TOKEN: &str = "pw-test-admin-token-9f2c4a7e1b";

/// The `auth:` section test configs get.
pub fn auth_section() -> String {
    format!("auth:\n  tokens:\n    - {{name: test-admin, secret: \"{TEST_TOKEN}\", role: admin}}\n")
}

/// `yaml` with the test `auth:` section appended, unless it has its own.
pub fn with_auth(yaml: &str) -> String {
    if yaml.lines().any(|l| l.starts_with("auth:")) {
        yaml.to_string()
    } else {
        let sep = if yaml.ends_with('\n') || yaml.is_empty() {
            ""
        } else {
            "\n"
        };
        format!("{yaml}{sep}{}", auth_section())
    }
}

pub struct TestDaemon {
    pub daemon: Option<Daemon>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl TestDaemon {
    /// Writes `yaml` to a config file and starts a daemon on it.
    pub async fn start(yaml: &str) -> TestDaemon {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("portwarden.yaml");
        std::fs::write(&config, with_auth(yaml)).unwrap();
        Self::start_with(dir, config, None).await
    }

    pub async fn start_with(
        dir: tempfile::TempDir,
        config: PathBuf,
        data_dir: Option<PathBuf>,
    ) -> TestDaemon {
        let text = std::fs::read_to_string(&config).unwrap();
        let with = with_auth(&text);
        if with != text {
            std::fs::write(&config, with).unwrap();
        }
        let daemon = Daemon::start(ServeOptions {
            config: config.clone(),
            data_dir: Some(data_dir.unwrap_or_else(|| dir.path().join("data"))),
            listen: Some("127.0.0.1:0".parse().unwrap()),
            store: None,
        })
        .await
        .unwrap_or_else(|e| panic!("daemon start: {e}"));
        TestDaemon {
            addr: daemon.addr,
            daemon: Some(daemon),
            dir,
            config,
        }
    }

    /// Replaces the config file (with the test `auth:` section added), e.g. to trigger a
    /// reload.
    pub fn write_config(&self, yaml: &str) {
        std::fs::write(&self.config, with_auth(yaml)).unwrap();
    }

    /// A blocking client that authenticates as the test admin (usable in `wait_until`).
    pub fn client(&self) -> http::Client {
        http::Client::bearer(self.addr, TEST_TOKEN)
    }

    /// A blocking client without credentials.
    pub fn anonymous(&self) -> http::Client {
        http::Client::new(self.addr)
    }

    pub async fn get(&self, path: &str) -> http::Response {
        let (c, path) = (self.client(), path.to_string());
        tokio::task::spawn_blocking(move || c.get(&path))
            .await
            .unwrap()
    }

    pub async fn json(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        r.json()
    }

    pub async fn post(&self, path: &str) -> http::Response {
        let (c, path) = (self.client(), path.to_string());
        tokio::task::spawn_blocking(move || c.post(&path, ""))
            .await
            .unwrap()
    }

    /// The monitor's view from the API.
    pub async fn monitor(&self, name: &str) -> Value {
        self.json(&format!("/api/v1/monitors/{name}")).await
    }

    /// Polls until `f` accepts the monitor's view, or panics after `limit`.
    pub async fn wait_monitor(
        &self,
        name: &str,
        limit: Duration,
        what: &str,
        f: impl Fn(&Value) -> bool,
    ) -> Value {
        let start = std::time::Instant::now();
        loop {
            let v = self.monitor(name).await;
            if f(&v) {
                return v;
            }
            if start.elapsed() > limit {
                panic!("timed out after {limit:?} waiting for {what}; last view: {v:#}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn stop(&mut self) {
        if let Some(d) = self.daemon.take() {
            d.stop().await;
        }
    }
}

/// A minimal config around the given monitors YAML (already indented as list items), with the
/// test `auth:` section.
pub fn config(monitors: &str) -> String {
    with_auth(&format!("monitors:\n{monitors}"))
}

/// Logs in through the form (as a browser would) and returns a client carrying the session
/// cookie, plus the session's CSRF token scraped from the overview page.
pub fn login(addr: SocketAddr, user: &str, password: &str) -> (http::Client, String) {
    let anon = http::Client::new(addr);
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
    assert_eq!(r.status, 303, "login as {user}: {}", r.body);
    let (_, session) = r
        .cookies()
        .into_iter()
        .find(|(n, v)| n == "pw_session" && !v.is_empty())
        .expect("session cookie");
    let c = http::Client::new(addr).with_header("Cookie", &format!("pw_session={session}"));
    let page = c.get("/");
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = scrape_csrf(&page.body).expect("a CSRF token in the page");
    (c, csrf)
}

/// The value of the first `name="csrf"` hidden field.
pub fn scrape_csrf(html: &str) -> Option<String> {
    let i = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    let rest = &html[i..];
    Some(rest[..rest.find('"')?].to_string())
}

/// An `auth:` section with users (name, password, role) and tokens (name, secret, role), always
/// including the test admin token.
pub fn auth_with(users: &[(&str, &str, &str)], tokens: &[(&str, &str, &str)]) -> String {
    let mut s = String::from("auth:\n");
    if !users.is_empty() {
        s.push_str("  users:\n");
        for (name, password, role) in users {
            let hash = portwarden_server::auth::hash_password(password).unwrap();
            s.push_str(&format!(
                "    - {{name: \"{name}\", password_hash: \"{hash}\", role: {role}}}\n"
            ));
        }
    }
    s.push_str(&format!(
        "  tokens:\n    - {{name: test-admin, secret: \"{TEST_TOKEN}\", role: admin}}\n"
    ));
    for (name, secret, role) in tokens {
        s.push_str(&format!(
            "    - {{name: \"{name}\", secret: \"{secret}\", role: {role}}}\n"
        ));
    }
    s
}
