//! Leadership on PostgreSQL: one replica holds the advisory lock; when it goes another takes
//! over within the bound; a deposed leader that still believes it leads (a partition) is
//! fenced off by the leader term — its incident writes and outbox claims fail, while people's
//! acknowledgements still pass on any replica.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use portwarden_core::{EventKind, IncidentEvent, Scope, Severity, State};
use portwarden_store::postgres::PgStore;
use portwarden_store::postgres::leader::{LeaderMetrics, Leadership};
use portwarden_store::{IncidentChange, NewIncident, Retention, Store, StoreError, StoreMetrics};

fn incident(monitor: &str) -> NewIncident {
    let at = chrono::Utc::now();
    NewIncident {
        outbox: Vec::new(),
        monitor: monitor.into(),
        state: State::Down,
        severity: Severity::High,
        scope: Scope::Global,
        opened_at: at,
        error_kind: None,
        message: None,
        last_healthy: None,
        event: IncidentEvent::new(at, EventKind::Opened, "down"),
    }
}

async fn until(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if f() {
            return Some(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn one_leader_takeover_on_resign_and_a_stale_leader_is_fenced() {
    let Some(db) = Db::new(Backend::Postgres) else {
        return;
    };
    let open = || async {
        PgStore::open(
            &db.url(),
            Retention::default(),
            fast_writer(),
            StoreMetrics::default(),
        )
        .await
        .unwrap()
    };
    let (a, b) = (open().await, open().await);
    let takeover = Duration::from_secs(5);
    let la = Leadership::campaign(
        a.config().clone(),
        a.tls(),
        takeover,
        LeaderMetrics::default(),
        a.fence(),
    );
    until(Duration::from_secs(10), || la.is_leader())
        .await
        .expect("A leads");
    let mb = LeaderMetrics::default();
    let lb = Leadership::campaign(b.config().clone(), b.tls(), takeover, mb.clone(), b.fence());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(la.is_leader() && !lb.is_leader(), "exactly one leader");
    assert_eq!(mb.leader.get(), 0);
    let term_a = la.term().expect("A has a term");
    assert_eq!(la.status().term, Some(term_a));

    // The leader writes; the follower cannot open or change incidents, but may acknowledge.
    let id = a.open_incident(incident("db")).await.unwrap();
    let e = b.open_incident(incident("web")).await.unwrap_err();
    assert!(
        matches!(&e, StoreError::Db(m) if m.contains("not the leader")),
        "{e}"
    );
    let ack = IncidentChange::Acknowledge {
        by: "alice".into(),
        event: IncidentEvent::new(chrono::Utc::now(), EventKind::Acknowledged, "on it"),
    };
    b.change_incident(id, ack).await.unwrap();
    assert!(
        b.claim_outbox(chrono::Utc::now(), Duration::from_secs(60), 10)
            .await
            .is_err()
    );

    // A steps down: B takes over within the bound, with the next term.
    la.resign().await;
    let took = until(takeover, || lb.is_leader())
        .await
        .expect("B takes over within the bound");
    eprintln!("takeover after resign: {took:?}");
    assert_eq!(mb.leader.get(), 1);
    let term_b = lb.term().unwrap();
    assert!(term_b > term_a);
    // A stale leader (partitioned, still believing in its old term) is fenced off.
    a.fence().store(term_a, Ordering::Release);
    let e = a
        .change_incident(
            id,
            IncidentChange::Resolve {
                at: chrono::Utc::now(),
                event: IncidentEvent::new(chrono::Utc::now(), EventKind::Resolved, "up"),
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, StoreError::Db(m) if m.contains("not the leader")),
        "{e}"
    );
    assert!(
        a.claim_outbox(chrono::Utc::now(), Duration::from_secs(60), 10)
            .await
            .is_err()
    );
    // ...while the new leader's writes pass.
    b.change_incident(
        id,
        IncidentChange::Resolve {
            at: chrono::Utc::now(),
            event: IncidentEvent::new(chrono::Utc::now(), EventKind::Resolved, "up"),
        },
    )
    .await
    .unwrap();
    assert!(b.open_incidents().await.unwrap().is_empty());
    assert_eq!(
        db.count("SELECT term FROM leader_term WHERE id = 1").await,
        term_b
    );
    lb.resign().await;
    a.close().await.unwrap();
    b.close().await.unwrap();
}
