//! The evidence report never cuts a period short: more scans than one store query returns
//! (1 000) and more findings (10 000, as one scan of a big block with `policy: deny` can open)
//! are all in the report, each once.

use chrono::{Duration, Utc};
use portwarden_core::Severity;
use portwarden_scan::evidence;
use portwarden_store::sqlite::SqliteStore;
use portwarden_store::{
    NewFinding, Retention, ScanApply, ScanRecord, Store, StoreMetrics, WriterOptions,
};
use serde_json::json;

fn scan(at: chrono::DateTime<Utc>) -> ScanRecord {
    ScanRecord {
        id: 0,
        baseline: Some("big".into()),
        started_at: at,
        finished_at: at,
        duration_ms: 1.0,
        targets: vec!["10.0.0.0/16".into()],
        hosts: 0,
        probes: 0,
        open_ports: 0,
        findings_opened: 0,
        findings_open: 0,
        findings_resolved: 0,
        coverage: json!({}),
        error: None,
        report: None,
    }
}

/// A fresh SQLite store in `dir`.
fn open_store(dir: &std::path::Path) -> SqliteStore {
    SqliteStore::open(
        dir,
        Retention::default(),
        WriterOptions::default(),
        StoreMetrics::default(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_holds_every_scan_and_finding_of_the_period() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let from = Utc::now() - Duration::hours(2);
    // 1 003 scans, pairs of them in the same millisecond.
    for i in 0..1003 {
        store
            .apply_scan(ScanApply {
                scan: scan(from + Duration::milliseconds(i / 2)),
                opened: vec![],
                seen: vec![],
                gone: vec![],
            })
            .await
            .unwrap();
    }
    // One scan opening 10 050 findings (all first seen in the same millisecond).
    let opened: Vec<NewFinding> = (0..10_050u32)
        .map(|i| NewFinding {
            baseline: "big".into(),
            kind: "unexpected_open".into(),
            host: format!("10.0.{}.{}", i / 250, i % 250 + 1),
            port: 22,
            transport: "tcp".into(),
            severity: Severity::High,
            message: "open".into(),
            detail: json!({}),
            incident: None,
        })
        .collect();
    store
        .apply_scan(ScanApply {
            scan: scan(from + Duration::minutes(1)),
            opened,
            seen: vec![],
            gone: vec![],
        })
        .await
        .unwrap();
    let r = evidence::gather(&store, from, Utc::now(), &[], &Default::default())
        .await
        .unwrap();
    store.close().await.unwrap();
    assert_eq!(r.scans.len(), 1004);
    let mut ids: Vec<i64> = r.scans.iter().map(|s| s.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1004, "each scan once");
    assert_eq!(r.findings.len(), 10_050);
    let mut ids: Vec<i64> = r.findings.iter().map(|f| f.finding.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 10_050, "each finding once");
}

/// Availability per monitor against its objective (`availability_target`): met, missed, or
/// no target; in every format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn availability_is_judged_against_each_monitors_target() {
    use portwarden_core::{ErrorKind, Observation, Outcome, Phases, ProbeError};
    use portwarden_store::Record;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let from = Utc::now() - Duration::hours(1);
    let obs = |monitor: &str, i: i64, outcome: Outcome| Observation {
        monitor: monitor.into(),
        location: "local".into(),
        target: format!("tcp://{monitor}.test:5432"),
        check: "tcp".into(),
        address: Some("127.0.0.1:5432".parse().unwrap()),
        outcome,
        error: (outcome == Outcome::Down)
            .then(|| ProbeError::new(ErrorKind::Refused, "connection refused")),
        note: None,
        phases: Phases {
            connect_ms: Some(1.0),
            ..Default::default()
        },
        started_at: from + Duration::minutes(1) + Duration::seconds(i * 30),
        duration_ms: 1.0,
        scheduled_at: None,
        lateness_ms: None,
        details: serde_json::Map::new(),
    };
    // db: 9 of 10 good (90 %); cache: 10 of 10; queue: 10 of 10, no target.
    for i in 0..10 {
        let db = if i == 4 { Outcome::Down } else { Outcome::Up };
        for (m, o) in [("db", db), ("cache", Outcome::Up), ("queue", Outcome::Up)] {
            assert!(store.submit(Record {
                obs: obs(m, i, o),
                maintenance: false
            }));
        }
    }
    store.flush().await.unwrap();
    let targets = [("db".to_string(), 99.9), ("cache".to_string(), 99.0)]
        .into_iter()
        .collect();
    let r = evidence::gather(&store, from, Utc::now(), &[], &targets)
        .await
        .unwrap();
    store.close().await.unwrap();
    let by = |m: &str| r.availability.iter().find(|a| a.monitor == m).unwrap();
    assert_eq!(by("db").availability, Some(0.9));
    assert_eq!((by("db").target, by("db").met), (Some(99.9), Some(false)));
    assert_eq!(
        (by("cache").target, by("cache").met),
        (Some(99.0), Some(true))
    );
    assert_eq!((by("queue").target, by("queue").met), (None, None));

    let json: serde_json::Value =
        serde_json::from_str(&evidence::render(&r, evidence::Format::Json)).unwrap();
    let db = json["availability"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["monitor"] == "db")
        .unwrap();
    assert_eq!(db["met"], false, "{db}");
    let html = evidence::render(&r, evidence::Format::Html);
    assert!(
        html.contains("<td>db</td><td>90.000 %</td><td>99.9 %</td><td>missed</td>"),
        "{html}"
    );
    let csv = evidence::render(&r, evidence::Format::Csv);
    assert!(
        csv.contains("availability,,cache,,99%,,,,,1.000000 met"),
        "{csv}"
    );
}
