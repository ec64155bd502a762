//! Acceptance 5: the evidence report for a period with findings and incidents renders as HTML
//! and JSON, its digest verifies, and changing one byte makes the verification fail.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use portwarden_core::{EventKind, IncidentEvent, LastHealthy, Scope, Severity, State, Transport};
use portwarden_scan::baseline::{Baseline, DefaultPolicy};
use portwarden_scan::guard::{Guard, Plan};
use portwarden_scan::{PortSet, ScanOptions, Scanner};
use portwarden_store::sqlite::SqliteStore;
use portwarden_store::{NewIncident, Retention, Store, StoreMetrics, WriterOptions};

fn portwarden(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_portwarden"))
        .args(args)
        .env_remove("PORTWARDEN_LOG")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_renders_and_its_digest_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let from = Utc::now() - chrono::Duration::hours(1);
    let rogue = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = rogue.local_addr().unwrap().port();
    let config = dir.path().join("pw.yaml");
    std::fs::write(
        &config,
        format!(
            "server:\n  data_dir: {}\nbaselines:\n  - name: lo\n    targets: [127.0.0.1]\n    ports: \"{port}\"\n    allowed_open: []\ncontrols:\n  - id: \"PCI-DSS 1.2.1\"\n    title: Only authorised ports are reachable\n    baselines: [lo]\n",
            data.display()
        ),
    )
    .unwrap();
    {
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(
                &data,
                Retention::default(),
                WriterOptions::default(),
                StoreMetrics::default(),
            )
            .unwrap(),
        );
        store
            .record_config_version(
                portwarden_scan::evidence::config_version(&config, "start").unwrap(),
            )
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
        assert_eq!(rec.findings_opened, 1);
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
    let _ = Transport::Tcp;
    let from_s = from.to_rfc3339();
    let html = dir.path().join("r.html");
    let o = portwarden(&[
        "report",
        "--config",
        config.to_str().unwrap(),
        "--from",
        &from_s,
        "--format",
        "html",
        "--output",
        html.to_str().unwrap(),
    ]);
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
    let hash = portwarden_scan::evidence::sha256_hex(&std::fs::read(&config).unwrap());
    assert!(
        body.contains(&hash),
        "the config version in force is listed"
    );

    // JSON, to stdout, digest on stderr.
    let o = portwarden(&[
        "report",
        "--config",
        config.to_str().unwrap(),
        "--from",
        &from_s,
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0));
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
    drop(rogue);
}
