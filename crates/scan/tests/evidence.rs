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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_holds_every_scan_and_finding_of_the_period() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(
        dir.path(),
        Retention::default(),
        WriterOptions::default(),
        StoreMetrics::default(),
    )
    .unwrap();
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
    let r = evidence::gather(&store, from, Utc::now(), &[])
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
