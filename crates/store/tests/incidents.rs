//! Acceptance: incidents open → update → acknowledge → resolve, with their timeline.

#[macro_use]
mod common;

use common::*;
use portwarden_core::{
    EventKind, IncidentEvent, IncidentStatus, LastHealthy, Scope, Severity, State,
};
use portwarden_store::{IncidentChange, IncidentFilter, NewIncident, StoreError};
use serde_json::json;

fn new_incident(monitor: &str, at: i64) -> NewIncident {
    NewIncident {
        outbox: Vec::new(),
        monitor: monitor.into(),
        state: State::Down,
        severity: Severity::Critical,
        scope: Scope::Regional(vec!["eu-west".into()]),
        opened_at: t(at),
        error_kind: Some("timeout/connect".into()),
        message: Some("no answer in 5 s".into()),
        last_healthy: Some(LastHealthy {
            at: t(at - 20_000),
            connect_ms: Some(0.7),
            duration_ms: Some(1.2),
            address: Some("[2001:db8::1]:5432".into()),
            location: Some("eu-west".into()),
        }),
        event: IncidentEvent::new(t(at), EventKind::Opened, "down from eu-west")
            .with_data(json!({"failures": 3})),
    }
}

async fn incident_lifecycle_with_timeline(db: Db) {
    let store = db.open().await;
    let t0 = now_ms() / 1000 * 1000 - 600_000;

    let id = store.open_incident(new_incident("db", t0)).await.unwrap();
    let open = store.open_incidents().await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].id, id);
    assert_eq!(open[0].status, IncidentStatus::Open);
    assert_eq!(open[0].scope, Scope::Regional(vec!["eu-west".into()]));
    assert_eq!(open[0].last_healthy.as_ref().unwrap().connect_ms, Some(0.7));

    store
        .change_incident(
            id,
            IncidentChange::Update {
                state: Some(State::Flapping),
                scope: Some(Scope::Global),
                error_kind: Some("refused".into()),
                message: Some("connection refused".into()),
                event: IncidentEvent::new(t(t0 + 60_000), EventKind::ScopeChanged, "now global"),
            },
        )
        .await
        .unwrap();
    store
        .change_incident(
            id,
            IncidentChange::Acknowledge {
                by: "alice".into(),
                event: IncidentEvent::new(
                    t(t0 + 120_000),
                    EventKind::Acknowledged,
                    "alice is on it",
                ),
            },
        )
        .await
        .unwrap();
    store
        .change_incident(
            id,
            IncidentChange::Resolve {
                at: t(t0 + 300_000),
                event: IncidentEvent::new(t(t0 + 300_000), EventKind::Resolved, "up again"),
            },
        )
        .await
        .unwrap();
    // a retried resolve is a no-op
    store
        .change_incident(
            id,
            IncidentChange::Resolve {
                at: t(t0 + 301_000),
                event: IncidentEvent::new(t(t0 + 301_000), EventKind::Resolved, "retry"),
            },
        )
        .await
        .unwrap();

    assert!(store.open_incidents().await.unwrap().is_empty());
    let d = store.incident(id).await.unwrap().unwrap();
    let i = &d.incident;
    assert_eq!(i.monitor, "db");
    assert_eq!(i.status, IncidentStatus::Resolved);
    assert_eq!(i.state, State::Down, "the worst state seen while open");
    assert_eq!(i.scope, Scope::Global);
    assert_eq!(i.severity, Severity::Critical);
    assert_eq!(i.opened_at, t(t0));
    assert_eq!(i.resolved_at, Some(t(t0 + 300_000)));
    assert_eq!(i.acknowledged_at, Some(t(t0 + 120_000)));
    assert_eq!(i.acknowledged_by.as_deref(), Some("alice"));
    assert_eq!(i.error_kind.as_deref(), Some("refused"));
    assert_eq!(i.message.as_deref(), Some("connection refused"));
    let kinds: Vec<EventKind> = d.timeline.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::Opened,
            EventKind::ScopeChanged,
            EventKind::Acknowledged,
            EventKind::Resolved
        ]
    );
    assert_eq!(d.timeline[0].data, json!({"failures": 3}));
    assert_eq!(d.timeline[1].data, serde_json::Value::Null);

    // unknown ids
    assert!(store.incident(id + 100).await.unwrap().is_none());
    let e = store
        .change_incident(
            id + 100,
            IncidentChange::Acknowledge {
                by: "bob".into(),
                event: IncidentEvent::new(t(t0), EventKind::Acknowledged, "?"),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e}");
    assert!(
        store.health().ok,
        "a missing incident is not a disk failure"
    );
    store.close().await.unwrap();
}

async fn incidents_filter_by_status_and_monitor_and_page(db: Db) {
    let store = db.open().await;
    let t0 = now_ms() - 86_400_000;
    let mut ids = Vec::new();
    for n in 0..25 {
        let monitor = if n % 2 == 0 { "db" } else { "web" };
        let id = store
            .open_incident(new_incident(monitor, t0 + n * 60_000))
            .await
            .unwrap();
        if n % 3 == 0 {
            store
                .change_incident(
                    id,
                    IncidentChange::Resolve {
                        at: t(t0 + n * 60_000 + 30_000),
                        event: IncidentEvent::new(
                            t(t0 + n * 60_000 + 30_000),
                            EventKind::Resolved,
                            "ok",
                        ),
                    },
                )
                .await
                .unwrap();
        }
        ids.push((id, monitor, n % 3 == 0));
    }
    assert!(ids.windows(2).all(|w| w[0].0 < w[1].0));

    let all_pages = |filter: IncidentFilter| {
        let store = &store;
        async move {
            let mut out = Vec::new();
            let mut f = filter;
            loop {
                let p = store.incidents(&f).await.unwrap();
                assert!(p.items.len() <= f.limit.max(1));
                out.extend(p.items.into_iter().map(|i| (i.id, i.monitor, i.status)));
                match p.next_cursor {
                    Some(c) => f.cursor = Some(c),
                    None => return out,
                }
            }
        }
    };
    let got = all_pages(IncidentFilter {
        limit: 4,
        ..Default::default()
    })
    .await;
    let want: Vec<_> = ids
        .iter()
        .rev()
        .map(|(id, m, r)| {
            (
                *id,
                m.to_string(),
                if *r {
                    IncidentStatus::Resolved
                } else {
                    IncidentStatus::Open
                },
            )
        })
        .collect();
    assert_eq!(got, want, "newest first across pages");

    let open = all_pages(IncidentFilter {
        status: Some(IncidentStatus::Open),
        limit: 3,
        ..Default::default()
    })
    .await;
    assert_eq!(open.len(), ids.iter().filter(|x| !x.2).count());
    assert!(open.iter().all(|x| x.2 == IncidentStatus::Open));
    assert_eq!(store.open_incidents().await.unwrap().len(), open.len());

    let resolved_db = all_pages(IncidentFilter {
        status: Some(IncidentStatus::Resolved),
        monitor: Some("db".into()),
        limit: 2,
        ..Default::default()
    })
    .await;
    let want: Vec<i64> = ids
        .iter()
        .rev()
        .filter(|x| x.2 && x.1 == "db")
        .map(|x| x.0)
        .collect();
    assert_eq!(resolved_db.iter().map(|x| x.0).collect::<Vec<_>>(), want);

    // default limit (0 → 100) returns everything here in one page
    let p = store.incidents(&IncidentFilter::default()).await.unwrap();
    assert_eq!(p.items.len(), 25);
    assert!(p.next_cursor.is_none());

    let e = store
        .incidents(&IncidentFilter {
            cursor: Some("nope".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::BadCursor));
    store.close().await.unwrap();
}

on_both_backends!(
    incident_lifecycle_with_timeline,
    incidents_filter_by_status_and_monitor_and_page,
);
