//! Helpers for daemon tests: an in-process daemon on a free port with its own data dir.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use portwarden_server::{Daemon, ServeOptions};
use portwarden_testkit::http;
use serde_json::Value;

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
        std::fs::write(&config, yaml).unwrap();
        Self::start_with(dir, config, None).await
    }

    pub async fn start_with(
        dir: tempfile::TempDir,
        config: PathBuf,
        data_dir: Option<PathBuf>,
    ) -> TestDaemon {
        let daemon = Daemon::start(ServeOptions {
            config: config.clone(),
            data_dir: Some(data_dir.unwrap_or_else(|| dir.path().join("data"))),
            listen: Some("127.0.0.1:0".parse().unwrap()),
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

    pub async fn get(&self, path: &str) -> http::Response {
        let (addr, path) = (self.addr, path.to_string());
        tokio::task::spawn_blocking(move || http::get(addr, &path))
            .await
            .unwrap()
    }

    pub async fn json(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        r.json()
    }

    pub async fn post(&self, path: &str) -> http::Response {
        let (addr, path) = (self.addr, path.to_string());
        tokio::task::spawn_blocking(move || http::post(addr, &path, ""))
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

/// A minimal config around the given monitors YAML (already indented as list items).
pub fn config(monitors: &str) -> String {
    format!("monitors:\n{monitors}")
}
