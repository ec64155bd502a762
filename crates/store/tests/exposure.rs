//! Exposure scans and findings on both backends: a scan, its new findings, their incidents and
//! notifications land in one transaction; later scans see or resolve them; periods select
//! what was open then; config versions record only changes.

#[macro_use]
mod common;

use common::*;
use portwarden_core::{EventKind, IncidentEvent, IncidentStatus, Scope, Severity, State};
use portwarden_store::{
    ConfigVersion, FindingFilter, GoneFinding, IncidentChange, NewFinding, NewIncident, NewOutbox,
    OutboxStatus, ScanApply, ScanFilter, ScanRecord, SeenFinding,
};
use serde_json::json;

fn scan(at: i64) -> ScanRecord {
    ScanRecord {
        id: 0,
        baseline: Some("web".into()),
        started_at: t(at - 2_000),
        finished_at: t(at),
        duration_ms: 2_000.0,
        targets: vec!["10.0.0.0/30".into()],
        hosts: 4,
        probes: 400,
        open_ports: 1,
        findings_opened: 0,
        findings_open: 0,
        findings_resolved: 0,
        coverage: json!({"tcp_ports": 100}),
        error: None,
        report: Some(json!({"hosts": []})),
    }
}

fn finding(at: i64) -> NewFinding {
    NewFinding {
        baseline: "web".into(),
        kind: "unexpected_open".into(),
        host: "10.0.0.2".into(),
        port: 8080,
        transport: "tcp".into(),
        severity: Severity::Critical,
        message: "10.0.0.2:8080/tcp is open".into(),
        detail: json!({"state": "open"}),
        incident: Some(NewIncident {
            monitor: "scan:web".into(),
            state: State::Down,
            severity: Severity::Critical,
            scope: Scope::Global,
            opened_at: t(at),
            error_kind: Some("unexpected_open".into()),
            message: Some("10.0.0.2:8080/tcp is open".into()),
            last_healthy: None,
            event: IncidentEvent::new(t(at), EventKind::Opened, "open"),
            outbox: vec![NewOutbox {
                event: "trigger".into(),
                key: "trigger".into(),
                monitor: "scan:web".into(),
                route: "security".into(),
                receiver: "pager".into(),
                group_key: None,
                payload: json!({}),
                due_at: t(at),
                status: OutboxStatus::Pending,
                note: None,
            }],
        }),
    }
}

async fn scans_and_findings(db: Db) {
    let s = db.open().await;
    let base = now_ms() - DAY;
    let a = s
        .apply_scan(ScanApply {
            scan: scan(base),
            opened: vec![finding(base)],
            seen: vec![],
            gone: vec![],
        })
        .await
        .unwrap();
    assert_eq!(a.findings.len(), 1);
    let f = s.finding(a.findings[0]).await.unwrap().unwrap();
    assert_eq!(
        (f.status.as_str(), f.port, f.first_scan),
        ("open", 8080, a.scan_id)
    );
    let iid = f.incident_id.unwrap();
    let inc = s.incident(iid).await.unwrap().unwrap();
    assert_eq!(inc.incident.monitor, "scan:web");
    assert_eq!(inc.notifications.len(), 1);

    // Seen again an hour later.
    let b = s
        .apply_scan(ScanApply {
            scan: scan(base + HOUR),
            opened: vec![],
            seen: vec![SeenFinding {
                id: f.id,
                message: "still open".into(),
                detail: json!({}),
            }],
            gone: vec![],
        })
        .await
        .unwrap();
    let f2 = s.finding(f.id).await.unwrap().unwrap();
    assert_eq!(
        (f2.last_scan, f2.message.as_str()),
        (b.scan_id, "still open")
    );
    assert_eq!(f2.last_seen, t(base + HOUR));

    // Gone two hours later: resolved with its incident.
    let at = base + 2 * HOUR;
    let c = s
        .apply_scan(ScanApply {
            scan: scan(at),
            opened: vec![],
            seen: vec![],
            gone: vec![GoneFinding {
                id: f.id,
                incident: Some((
                    iid,
                    IncidentChange::Resolve {
                        at: t(at),
                        event: IncidentEvent::new(t(at), EventKind::Resolved, "gone"),
                    },
                )),
                outbox: vec![],
            }],
        })
        .await
        .unwrap();
    let f3 = s.finding(f.id).await.unwrap().unwrap();
    assert_eq!(
        (f3.status.as_str(), f3.resolved_at, f3.last_scan),
        ("resolved", Some(t(at)), c.scan_id)
    );
    assert_eq!(
        s.incident(iid).await.unwrap().unwrap().incident.status,
        IncidentStatus::Resolved
    );

    // Scans: newest first, the list without reports, one scan with it.
    let list = s
        .scans(&ScanFilter {
            baseline: Some("web".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        list.iter().map(|x| x.id).collect::<Vec<_>>(),
        vec![c.scan_id, b.scan_id, a.scan_id]
    );
    assert!(list[0].report.is_none());
    assert_eq!(list[2].findings_opened, 1);
    assert_eq!(list[0].findings_resolved, 1);
    let full = s.scan(a.scan_id).await.unwrap().unwrap();
    assert_eq!(full.report, Some(json!({"hosts": []})));
    assert_eq!(full.coverage["tcp_ports"], 100);

    // Periods: open during [base, base+1h), not during [base+3h, now).
    let during = FindingFilter {
        from: Some(t(base)),
        to: Some(t(base + HOUR)),
        ..Default::default()
    };
    assert_eq!(s.findings(&during).await.unwrap().len(), 1);
    let after = FindingFilter {
        from: Some(t(base + 3 * HOUR)),
        to: Some(t(now_ms())),
        ..Default::default()
    };
    assert!(s.findings(&after).await.unwrap().is_empty());
    let open = FindingFilter {
        status: Some("open".into()),
        ..Default::default()
    };
    assert!(s.findings(&open).await.unwrap().is_empty());
    s.close().await.unwrap();
}

async fn config_versions_record_changes(db: Db) {
    let s = db.open().await;
    let base = now_ms() - DAY;
    let v = |h: &str, at: i64| ConfigVersion {
        hash: h.into(),
        git_commit: Some("abc123".into()),
        git_dirty: Some(false),
        path: "/etc/portwarden.yaml".into(),
        loaded_at: t(at),
        reason: "start".into(),
    };
    s.record_config_version(v("h1", base)).await.unwrap();
    s.record_config_version(v("h1", base + MIN)).await.unwrap(); // unchanged: not recorded
    s.record_config_version(v("h2", base + HOUR)).await.unwrap();
    s.record_config_version(v("h3", base + 3 * HOUR))
        .await
        .unwrap();
    // In force during [base+2h, base+4h): h2 (from before) and h3.
    let got = s
        .config_versions(t(base + 2 * HOUR), t(base + 4 * HOUR))
        .await
        .unwrap();
    assert_eq!(
        got.iter().map(|v| v.hash.as_str()).collect::<Vec<_>>(),
        vec!["h2", "h3"]
    );
    let all = s.config_versions(t(base - DAY), t(now_ms())).await.unwrap();
    assert_eq!(
        all.iter().map(|v| v.hash.as_str()).collect::<Vec<_>>(),
        vec!["h1", "h2", "h3"]
    );
    s.close().await.unwrap();
}

/// Keyset pages (`before` = the last row of the previous page) walk every scan and finding
/// exactly once, newest first, also through rows that share a timestamp.
async fn keyset_pages_walk_everything_once(db: Db) {
    let s = db.open().await;
    let base = now_ms() - DAY;
    let mut scan_ids = Vec::new();
    // Five scans, three of them starting in the same millisecond.
    for at in [base, base + 1_000, base + 1_000, base + 1_000, base + 2_000] {
        let a = s
            .apply_scan(ScanApply {
                scan: scan(at),
                opened: vec![],
                seen: vec![],
                gone: vec![],
            })
            .await
            .unwrap();
        scan_ids.push(a.scan_id);
    }
    // Five findings first seen in the same millisecond (one scan opened them all).
    let opened: Vec<NewFinding> = (0..5u16)
        .map(|i| NewFinding {
            port: 9000 + i,
            incident: None,
            ..finding(base + 3_000)
        })
        .collect();
    let a = s
        .apply_scan(ScanApply {
            scan: scan(base + 3_000),
            opened,
            seen: vec![],
            gone: vec![],
        })
        .await
        .unwrap();
    scan_ids.push(a.scan_id);

    let mut got = Vec::new();
    let mut before = None;
    loop {
        let page = s
            .scans(&ScanFilter {
                limit: 2,
                before,
                ..Default::default()
            })
            .await
            .unwrap();
        before = page.last().map(|x| (x.started_at, x.id));
        let n = page.len();
        got.extend(page.into_iter().map(|x| x.id));
        if n < 2 {
            break;
        }
    }
    // Newest first: the last scan, then the 2 s one, the three tied ones by id descending.
    let want = vec![
        scan_ids[5],
        scan_ids[4],
        scan_ids[3],
        scan_ids[2],
        scan_ids[1],
        scan_ids[0],
    ];
    assert_eq!(got, want);

    let mut ports = Vec::new();
    let mut before = None;
    loop {
        let page = s
            .findings(&FindingFilter {
                limit: 2,
                before,
                ..Default::default()
            })
            .await
            .unwrap();
        before = page.last().map(|f| (f.first_seen, f.id));
        let n = page.len();
        ports.extend(page.into_iter().map(|f| f.port));
        if n < 2 {
            break;
        }
    }
    assert_eq!(ports, vec![9004, 9003, 9002, 9001, 9000]);
    s.close().await.unwrap();
}

on_both_backends!(
    scans_and_findings,
    config_versions_record_changes,
    keyset_pages_walk_everything_once
);
