//! Acceptance 5: the evidence report for a period with findings and incidents renders as HTML
//! and JSON, its digest verifies, and changing one byte makes the verification fail — from the
//! SQLite data directory and from a PostgreSQL store (`store:` in the config, or `--store`).

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use portwarden_core::{EventKind, IncidentEvent, LastHealthy, Scope, Severity, State};
use portwarden_scan::baseline::{Baseline, DefaultPolicy};
use portwarden_scan::guard::{Guard, Plan};
use portwarden_scan::{PortSet, ScanOptions, Scanner};
use portwarden_store::postgres::PgStore;
use portwarden_store::sqlite::SqliteStore;
use portwarden_store::{NewIncident, Retention, Store, StoreMetrics, WriterOptions};
use portwarden_testkit as tk;

fn portwarden(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_portwarden"))
        .args(args)
        .env_remove("PORTWARDEN_LOG")
        .env_remove("PORTWARDEN_STORE")
        .output()
        .unwrap()
}

/// The config of the report tests: one baseline `lo` on `port` and one control; `extra` is
/// appended (e.g. `store: postgres://…`).
fn write_config(dir: &Path, data: &Path, port: u16, extra: &str) -> std::path::PathBuf {
    let config = dir.join("pw.yaml");
    std::fs::write(
        &config,
        format!(
            "server:\n  data_dir: {}\nbaselines:\n  - name: lo\n    targets: [127.0.0.1]\n    ports: \"{port}\"\n    allowed_open: []\ncontrols:\n  - id: \"PCI-DSS 1.2.1\"\n    title: Only authorised ports are reachable\n    baselines: [lo]\n{extra}",
            data.display()
        ),
    )
    .unwrap();
    config
}

/// Fills `store` the way `serve` does: the config version, one real scan of 127.0.0.1 with an
/// unexpected open `port` (a finding and its incident), and a monitor incident.
async fn seed(store: Arc<dyn Store>, config: &Path, port: u16) {
    store
        .record_config_version(portwarden_scan::evidence::config_version(config, "start").unwrap())
        .await
        .unwrap();
    let guard = Guard::new(store.clone(), Scanner::system().unwrap(), None);
    let b = Baseline {
        name: "lo".into(),
        targets: vec!["127.0.0.1".into()],
        labels: BTreeMap::new(),
        tcp_ports: PortSet::from_ports(vec![port]),
        udp_ports: None,
        interval: Duration::from_secs(3600),
        policy: DefaultPolicy::Deny,
        allowed_open: vec![],
        must_be_closed: vec![],
        severity: Severity::High,
        routes: vec![],
        owner: None,
        runbook: None,
        capability: None,
        options: ScanOptions {
            banner_timeout: Duration::from_millis(200),
            ..ScanOptions::default()
        },
    };
    let plan = Plan {
        targets: b.targets.clone(),
        baseline: b,
    };
    let rec = guard.scan_once(&plan).await.unwrap();
    assert_eq!(rec.findings_opened, 1, "{rec:?}");
    // A monitor incident too (time to detect from its last healthy observation).
    let now = Utc::now();
    store
        .open_incident(NewIncident {
            monitor: "orders-db".into(),
            state: State::Down,
            severity: Severity::Critical,
            scope: Scope::Global,
            opened_at: now,
            error_kind: Some("refused".into()),
            message: Some("connection refused".into()),
            last_healthy: Some(LastHealthy {
                at: now - chrono::Duration::seconds(40),
                connect_ms: Some(1.0),
                duration_ms: None,
                address: None,
                location: Default::default(),
            }),
            event: IncidentEvent::new(now, EventKind::Opened, "down"),
            outbox: vec![],
        })
        .await
        .unwrap();
    store.close().await.unwrap();
}

/// Runs `portwarden report --config config` (HTML to a file in `dir`, JSON to stdout) with
/// `extra` arguments and checks the content (the config version in force is `seeded`'s, as
/// [`seed`] recorded it), the digests, and that one changed byte fails the verification.
fn check_reports(
    dir: &Path,
    config: &Path,
    seeded: &Path,
    from: DateTime<Utc>,
    port: u16,
    extra: &[&str],
) {
    let from_s = from.to_rfc3339();
    let html = dir.join("r.html");
    let mut args = vec![
        "report",
        "--config",
        config.to_str().unwrap(),
        "--from",
        &from_s,
        "--format",
        "html",
        "--output",
        html.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = portwarden(&args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let line = String::from_utf8_lossy(&o.stdout).to_string();
    let digest = line.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(digest.len(), 64, "{line}");
    let body = std::fs::read_to_string(&html).unwrap();
    for needle in [
        "unexpected_open",
        &format!("127.0.0.1:{port}/tcp"),
        "orders-db",
        "PCI-DSS 1.2.1",
        "connection refused",
    ] {
        assert!(body.contains(needle), "HTML lacks {needle}");
    }
    let hash = portwarden_scan::evidence::sha256_hex(&std::fs::read(seeded).unwrap());
    assert!(
        body.contains(&hash),
        "the config version in force is listed"
    );

    // JSON, to stdout, digest on stderr.
    let mut args = vec![
        "report",
        "--config",
        config.to_str().unwrap(),
        "--from",
        &from_s,
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    let o = portwarden(&args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["findings"][0]["kind"], "unexpected_open");
    assert_eq!(v["findings"][0]["port"], port);
    assert_eq!(v["scans"][0]["baseline"], "lo");
    let inc = v["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["monitor"] == "orders-db")
        .unwrap();
    assert_eq!(inc["time_to_detect_s"], 40);
    assert_eq!(v["controls"][0]["findings"], 1);
    assert_eq!(v["config_versions"][0]["hash"], hash.as_str());
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    let jd = err.trim().strip_prefix("SHA-256 ").unwrap();
    assert_eq!(jd, portwarden_scan::evidence::sha256_hex(&o.stdout));

    // The digest verifies; one changed byte does not.
    let o = portwarden(&[
        "report",
        "--verify",
        html.to_str().unwrap(),
        "--digest",
        &digest,
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let mut bytes = std::fs::read(&html).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    std::fs::write(&html, &bytes).unwrap();
    let o = portwarden(&[
        "report",
        "--verify",
        html.to_str().unwrap(),
        "--digest",
        &digest,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("MISMATCH"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_renders_and_its_digest_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let from = Utc::now() - chrono::Duration::hours(1);
    let rogue = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = rogue.local_addr().unwrap().port();
    let config = write_config(dir.path(), &data, port, "");
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(
            &data,
            Retention::default(),
            WriterOptions::default(),
            StoreMetrics::default(),
        )
        .unwrap(),
    );
    seed(store, &config, port).await;
    check_reports(dir.path(), &config, &config, from, port, &[]);
    drop(rogue);
}

/// The same report from PostgreSQL: `store:` in the config, then `--store` (which wins over a
/// config that names no store, and over the empty data directory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_reads_the_postgres_store() {
    let Some(db) = tk::pg::TestDatabase::create() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let from = Utc::now() - chrono::Duration::hours(1);
    let rogue = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = rogue.local_addr().unwrap().port();
    let config = write_config(dir.path(), &data, port, &format!("store: {}\n", db.url()));
    let store: Arc<dyn Store> = Arc::new(
        PgStore::open(
            &db.url(),
            Retention::default(),
            WriterOptions::default(),
            StoreMetrics::default(),
        )
        .await
        .unwrap(),
    );
    seed(store, &config, port).await;
    check_reports(dir.path(), &config, &config, from, port, &[]);
    // `--store` with a config that has no `store:` (its data directory is empty SQLite).
    let plain = dir.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let config2 = write_config(&plain, &data, port, "");
    let url = db.url();
    check_reports(&plain, &config2, &config, from, port, &["--store", &url]);
    // A store that does not answer: a clear error naming it, without the password.
    let o = portwarden(&[
        "report",
        "--config",
        config2.to_str().unwrap(),
        "--from",
        &from.to_rfc3339(),
        "--store",
        "postgres://pw:hunter2-secret@127.0.0.1:1/nothing",
    ]);
    assert_eq!(o.status.code(), Some(3));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(err.contains("PostgreSQL"), "{err}");
    assert!(
        !err.contains("hunter2-secret"),
        "the password leaked: {err}"
    );
    drop(rogue);
}
