//! The notification outbox: rows written with the incident change, claimed, retried,
//! delivered or given up, grouped, idempotent, and visible on the incident.

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use portwarden_core::{EventKind, IncidentEvent, Scope, Severity, State};
use portwarden_store::{
    AttemptRecord, AttemptResult, IncidentChange, NewIncident, NewOutbox, OutboxStatus, Silence,
};
use serde_json::json;

fn row(event: &str, receiver: &str, due: i64, group: Option<&str>) -> NewOutbox {
    NewOutbox {
        event: event.into(),
        key: event.into(),
        monitor: "db".into(),
        route: "ops".into(),
        receiver: receiver.into(),
        group_key: group.map(str::to_string),
        payload: json!({"monitor": "db"}),
        due_at: t(due),
        status: OutboxStatus::Pending,
        note: None,
    }
}

fn incident(monitor: &str, at: i64, outbox: Vec<NewOutbox>) -> NewIncident {
    NewIncident {
        monitor: monitor.into(),
        state: State::Down,
        severity: Severity::High,
        scope: Scope::Global,
        opened_at: t(at),
        error_kind: Some("refused".into()),
        message: Some("connection refused".into()),
        last_healthy: None,
        event: IncidentEvent::new(t(at), EventKind::Opened, "down"),
        outbox,
    }
}

fn attempt(at: i64, ok: bool, status: u16) -> AttemptRecord {
    AttemptRecord {
        at: t(at),
        ok,
        http_status: Some(status),
        latency_ms: 1.5,
        error: (!ok).then(|| format!("HTTP {status} from 127.0.0.1")),
        retry_at: None,
    }
}

async fn rows_follow_the_incident_and_record_every_attempt(db: Db) {
    let store = db.open().await;
    let t0 = now_ms();
    let id = store
        .open_incident(incident(
            "db",
            t0,
            vec![
                row("trigger", "hook", t0, None),
                row("trigger", "pager", t0, None),
            ],
        ))
        .await
        .unwrap();
    assert_eq!(store.outbox_pending().await.unwrap(), 2);

    // Claimed rows are leased: a second claim gets nothing.
    let claimed = store
        .claim_outbox(t(t0), Duration::from_secs(60), 100)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    assert_eq!(claimed[0].idempotency_key, format!("pw-{id}-trigger"));
    assert_eq!(claimed[0].incident_id, Some(id));
    assert!(
        store
            .claim_outbox(t(t0), Duration::from_secs(60), 100)
            .await
            .unwrap()
            .is_empty()
    );

    // hook: 500 then retry, then 200. pager: given up.
    let hook = claimed.iter().find(|r| r.receiver == "hook").unwrap().id;
    let pager = claimed.iter().find(|r| r.receiver == "pager").unwrap().id;
    store
        .finish_outbox_attempt(
            vec![hook],
            attempt(t0, false, 500),
            AttemptResult::RetryAt(t(t0 + 1000)),
        )
        .await
        .unwrap();
    store
        .finish_outbox_attempt(
            vec![pager],
            attempt(t0, false, 403),
            AttemptResult::GiveUp("HTTP 403 is not retryable".into()),
        )
        .await
        .unwrap();
    assert!(
        store
            .claim_outbox(t(t0 + 500), Duration::from_secs(60), 100)
            .await
            .unwrap()
            .is_empty(),
        "not due before its retry time"
    );
    let again = store
        .claim_outbox(t(t0 + 1000), Duration::from_secs(60), 100)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1);
    store
        .finish_outbox_attempt(
            vec![hook],
            attempt(t0 + 1000, true, 200),
            AttemptResult::Delivered,
        )
        .await
        .unwrap();
    assert_eq!(store.outbox_pending().await.unwrap(), 0);

    // Resolve with its notification in the same transaction; queueing the same key again is
    // a no-op.
    store
        .change_incident_with(
            id,
            IncidentChange::Resolve {
                at: t(t0 + 5000),
                event: IncidentEvent::new(t(t0 + 5000), EventKind::Resolved, "up"),
            },
            vec![row("resolve", "hook", t0 + 5000, None)],
        )
        .await
        .unwrap();
    let n = store
        .enqueue_outbox(Some(id), vec![row("resolve", "hook", t0, None)], None)
        .await
        .unwrap();
    assert_eq!(n, 0);

    let detail = store.incident(id).await.unwrap().unwrap();
    let n = &detail.notifications;
    assert_eq!(n.len(), 3);
    let h = n
        .iter()
        .find(|r| r.row.receiver == "hook" && r.row.event == "trigger")
        .unwrap();
    assert_eq!(h.row.status, OutboxStatus::Delivered);
    assert_eq!(h.attempt_log.len(), 2);
    assert_eq!(h.attempt_log[0].http_status, Some(500));
    assert!(h.attempt_log[1].ok);
    let p = n.iter().find(|r| r.row.receiver == "pager").unwrap();
    assert_eq!(p.row.status, OutboxStatus::GivenUp);
    assert!(
        detail
            .timeline
            .iter()
            .any(|e| e.kind == EventKind::Note && e.message.contains("given up")),
        "the incident says a notification was given up: {:?}",
        detail.timeline
    );
    assert!(
        detail
            .timeline
            .iter()
            .any(|e| e.kind == EventKind::Notified)
    );
    let api = serde_json::to_value(&detail).unwrap();
    assert_eq!(
        api["notifications"][0]["attempt_log"][0]["http_status"],
        500
    );
    store.close().await.unwrap();
}

async fn a_due_row_takes_its_whole_group_and_claims_survive_no_restart(db: Db) {
    let t0 = now_ms();
    {
        let store = db.open().await;
        for (i, m) in ["a", "b", "c"].iter().enumerate() {
            let mut r = row(
                "trigger",
                "hook",
                t0 + i as i64 * 1000,
                Some("ops/host=db1"),
            );
            r.monitor = m.to_string();
            store.open_incident(incident(m, t0, vec![r])).await.unwrap();
        }
        let mut other = row("trigger", "hook", t0 + 60_000, Some("ops/host=db2"));
        other.monitor = "d".into();
        store
            .open_incident(incident("d", t0, vec![other]))
            .await
            .unwrap();
        let c = store
            .claim_outbox(t(t0), Duration::from_secs(600), 100)
            .await
            .unwrap();
        let names: Vec<&str> = c.iter().map(|r| r.monitor.as_str()).collect();
        assert_eq!(
            names,
            ["a", "b", "c"],
            "the group of the due row, not the other group"
        );
        store.close().await.unwrap();
    }
    // A new process: leases of the dead one are released at start.
    let store = db.open().await;
    assert!(
        store
            .claim_outbox(t(t0), Duration::from_secs(600), 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.release_outbox_claims().await.unwrap(), 3);
    assert_eq!(
        store
            .claim_outbox(t(t0), Duration::from_secs(600), 100)
            .await
            .unwrap()
            .len(),
        3
    );
    store.close().await.unwrap();
}

async fn silences_expire_and_can_be_deleted(db: Db) {
    let store = db.open().await;
    let t0 = now_ms();
    let id = store
        .create_silence(Silence {
            id: 0,
            monitors: vec!["db".into()],
            hosts: vec![],
            labels: [("env".to_string(), "prod".to_string())].into(),
            comment: "upgrading".into(),
            created_by: "alice".into(),
            created_at: t(t0),
            expires_at: t(t0 + 3_600_000),
        })
        .await
        .unwrap();
    let s = store.silences(t(t0 + 1000)).await.unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].id, id);
    assert_eq!(s[0].labels["env"], "prod");
    assert!(store.silences(t(t0 + 3_600_000)).await.unwrap().is_empty());
    assert!(store.delete_silence(id, t(t0 + 2000)).await.unwrap());
    assert!(!store.delete_silence(id, t(t0 + 3000)).await.unwrap());
    assert!(store.silences(t(t0 + 2500)).await.unwrap().is_empty());
    store.close().await.unwrap();
}

on_both_backends!(
    rows_follow_the_incident_and_record_every_attempt,
    a_due_row_takes_its_whole_group_and_claims_survive_no_restart,
    silences_expire_and_can_be_deleted,
);

/// Two replicas' dispatchers claiming at the same moment from one PostgreSQL database (as in a
/// leadership handover): `FOR UPDATE SKIP LOCKED` gives every row to exactly one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_concurrent_claims_never_share_a_row() {
    let Some(db) = Db::new(Backend::Postgres) else {
        return;
    };
    let a: std::sync::Arc<dyn portwarden_store::Store> = db.open().await.into();
    let b: std::sync::Arc<dyn portwarden_store::Store> = db.open().await.into();
    let t0 = now_ms();
    for i in 0..200 {
        let mut r = row("trigger", "hook", t0 - 1000, None);
        r.key = format!("trigger-{i}");
        r.monitor = format!("m{i}");
        a.open_incident(incident(&format!("m{i}"), t0, vec![r]))
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for s in [a.clone(), b.clone(), a.clone(), b.clone()] {
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let c = s
                    .claim_outbox(t(t0), Duration::from_secs(600), 7)
                    .await
                    .unwrap();
                if c.is_empty() {
                    return mine;
                }
                mine.extend(c.into_iter().map(|r| r.id));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "a row was claimed twice");
    assert_eq!(n, 200, "every row claimed once");
    a.close().await.unwrap();
    b.close().await.unwrap();
}
