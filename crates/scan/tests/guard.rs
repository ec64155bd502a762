//! Acceptance 2 at the library level: the guard's schedule scans a baseline on 127.0.0.1 again
//! and again; a listener started outside the baseline becomes an `unexpected_open` finding with
//! an open incident and a queued notification (outbox row in the same transaction), stopping
//! it resolves both; stopping an `allowed_open` service gives `expected_open_closed`.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use portwarden_core::{IncidentStatus, Severity, Transport};
use portwarden_scan::baseline::{AllowedPorts, Baseline, DefaultPolicy};
use portwarden_scan::guard::{FindingNote, Guard, OutboxHook, Plan};
use portwarden_scan::{PortSet, ScanOptions, Scanner};
use portwarden_store::sqlite::SqliteStore;
use portwarden_store::{
    FindingFilter, IncidentFilter, NewOutbox, OutboxStatus, Retention, Store, StoreMetrics,
    WriterOptions,
};
use portwarden_testkit as testkit;

fn free_port() -> u16 {
    testkit::free_port()
}

async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn findings_open_and_resolve_with_their_incidents() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(
            dir.path(),
            Retention::default(),
            WriterOptions::default(),
            StoreMetrics::default(),
        )
        .unwrap(),
    );
    let allowed_port = free_port();
    let rogue_port = free_port();
    let allowed = TcpListener::bind(("127.0.0.1", allowed_port)).unwrap();
    let baseline = Baseline {
        name: "loopback".into(),
        targets: vec!["127.0.0.1".into()],
        labels: BTreeMap::new(),
        tcp_ports: PortSet::from_ports(vec![allowed_port, rogue_port]),
        udp_ports: None,
        interval: Duration::from_millis(700),
        policy: DefaultPolicy::Deny,
        allowed_open: vec![AllowedPorts {
            ports: PortSet::from_ports(vec![allowed_port]),
            transport: Transport::Tcp,
            service: None,
            expected: true,
        }],
        must_be_closed: vec![],
        severity: Severity::Critical,
        routes: vec!["security".into()],
        owner: Some("secops".into()),
        runbook: None,
        capability: None,
        options: ScanOptions {
            banner_timeout: Duration::from_millis(300),
            ..ScanOptions::default()
        },
    };
    // Stands in for the alerting routes (`serve` wires the engine's; crates/cli/tests/guard.rs
    // covers that end to end): one outbox row per incident event.
    let hook: OutboxHook = Arc::new(|b: Arc<Baseline>, n: FindingNote| {
        let event = if n.resolved.is_some() {
            "resolve"
        } else {
            "trigger"
        };
        let row = NewOutbox {
            event: event.to_string(),
            key: event.to_string(),
            monitor: b.incident_monitor(),
            route: b.routes.first().cloned().unwrap_or_default(),
            receiver: "test-receiver".into(),
            group_key: None,
            payload: serde_json::json!({"message": n.message}),
            due_at: Utc::now(),
            status: OutboxStatus::Pending,
            note: None,
        };
        Box::pin(async move { vec![row] })
    });
    let guard = Guard::new(store.clone(), Scanner::system().unwrap(), Some(hook));
    guard.apply(vec![Plan {
        targets: baseline.targets.clone(),
        baseline: baseline.clone(),
    }]);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(guard.clone().run(stop_rx));

    let open_findings = |s: Arc<dyn Store>| async move {
        s.findings(&FindingFilter {
            status: Some("open".into()),
            ..Default::default()
        })
        .await
        .unwrap()
    };
    // A clean scan first: nothing open.
    let st = store.clone();
    wait_for("a first scan", Duration::from_secs(20), || {
        let st = st.clone();
        async move {
            st.scans(&Default::default())
                .await
                .ok()
                .filter(|v| !v.is_empty())
        }
    })
    .await;
    assert!(open_findings(store.clone()).await.is_empty());

    // A listener outside the baseline → unexpected_open, with an incident and a notification.
    let rogue = TcpListener::bind(("127.0.0.1", rogue_port)).unwrap();
    let f = wait_for("unexpected_open", Duration::from_secs(20), || {
        let st = store.clone();
        async move {
            open_findings(st)
                .await
                .into_iter()
                .find(|f| f.kind == "unexpected_open")
        }
    })
    .await;
    assert_eq!(
        (f.port, f.host.as_str(), f.transport.as_str()),
        (rogue_port, "127.0.0.1", "tcp")
    );
    assert_eq!(f.severity, Severity::Critical);
    assert!(
        f.message.contains("the baseline does not allow it"),
        "{}",
        f.message
    );
    let iid = f.incident_id.expect("finding has an incident");
    let inc = store.incident(iid).await.unwrap().unwrap();
    assert_eq!(inc.incident.monitor, "scan:loopback");
    assert_eq!(inc.incident.status, IncidentStatus::Open);
    assert_eq!(inc.incident.error_kind.as_deref(), Some("unexpected_open"));
    assert_eq!(inc.notifications.len(), 1, "{:?}", inc.notifications);
    assert_eq!(inc.notifications[0].row.event, "trigger");
    assert_eq!(inc.notifications[0].row.route, "security");

    // Seen again by later scans: still one finding, still open.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let still = open_findings(store.clone()).await;
    assert_eq!(still.len(), 1, "{still:?}");
    assert!(still[0].last_scan > f.first_scan);

    // Stop it → resolved, with its incident.
    drop(rogue);
    let st = store.clone();
    let resolved = wait_for("resolution", Duration::from_secs(20), || {
        let st = st.clone();
        async move {
            st.finding(f.id)
                .await
                .unwrap()
                .filter(|x| x.status == "resolved")
        }
    })
    .await;
    assert!(resolved.resolved_at.is_some());
    let inc = store.incident(iid).await.unwrap().unwrap();
    assert_eq!(inc.incident.status, IncidentStatus::Resolved);
    let events: Vec<&str> = inc
        .notifications
        .iter()
        .map(|n| n.row.event.as_str())
        .collect();
    assert_eq!(events, ["trigger", "resolve"], "{:?}", inc.notifications);

    // Stop the allowed service → expected_open_closed.
    drop(allowed);
    let f = wait_for("expected_open_closed", Duration::from_secs(20), || {
        let st = store.clone();
        async move {
            open_findings(st)
                .await
                .into_iter()
                .find(|f| f.kind == "expected_open_closed")
        }
    })
    .await;
    assert_eq!(f.port, allowed_port);
    assert!(
        f.message
            .contains("is closed but the baseline expects it open"),
        "{}",
        f.message
    );
    let open_inc = store
        .incidents(&IncidentFilter {
            status: Some(IncidentStatus::Open),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(open_inc.items.len(), 1);
    assert_eq!(
        open_inc.items[0].error_kind.as_deref(),
        Some("expected_open_closed")
    );

    // Scans were spread by the schedule: several, each recorded with coverage.
    let scans = store.scans(&Default::default()).await.unwrap();
    assert!(scans.len() >= 4, "{}", scans.len());
    assert_eq!(scans[0].baseline.as_deref(), Some("loopback"));
    assert_eq!(scans[0].coverage["tcp_ports"], 2);
    let full = store.scan(scans[0].id).await.unwrap().unwrap();
    assert!(full.report.is_some());
    let status = guard.status();
    assert_eq!(status[0].name, "loopback");
    assert!(status[0].last_scan.is_some());

    // The baseline leaves the config: its open finding resolves, with its incident and a
    // resolve notification, under a record that says why.
    let open_id = open_inc.items[0].id;
    guard.apply(vec![]);
    let st = store.clone();
    wait_for("retirement", Duration::from_secs(20), || {
        let st = st.clone();
        async move {
            st.finding(f.id)
                .await
                .unwrap()
                .filter(|x| x.status == "resolved")
        }
    })
    .await;
    let inc = store.incident(open_id).await.unwrap().unwrap();
    assert_eq!(inc.incident.status, IncidentStatus::Resolved);
    assert!(
        inc.timeline
            .iter()
            .any(|e| e.message.contains("baseline removed from the config")),
        "{:?}",
        inc.timeline
    );
    assert_eq!(
        inc.notifications.last().map(|n| n.row.event.as_str()),
        Some("resolve")
    );
    let last = &store.scans(&Default::default()).await.unwrap()[0];
    assert!(
        last.error
            .as_deref()
            .is_some_and(|e| e.contains("baseline removed from the config")),
        "{last:?}"
    );

    stop_tx.send(true).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    store.close().await.unwrap();
}
