//! Acceptance: retention deletes only what is older than each window; incidents stay.

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use portwarden_core::{EventKind, IncidentEvent, Outcome, Scope, Severity, State};
use portwarden_store::{IncidentChange, NewIncident, Retention, StoreMetrics};

async fn retention_deletes_only_what_is_older_than_the_windows(db: Db) {
    let retention = Retention {
        raw: Duration::from_secs(2 * 86_400),
        minute: Duration::from_secs(3 * 86_400),
        hour: Duration::from_secs(5 * 86_400),
    };
    let store = db
        .open_with(retention, fast_writer(), StoreMetrics::default())
        .await;
    // "now" is fixed and minute-aligned + 30 s, so cutoffs fall inside buckets.
    let now = now_ms() / MIN * MIN + 30_000;
    let start = now - 8 * DAY;
    // every 37 s for 8 days on "db" (~18.7k rows), and a burst of 30k old rows on "old"
    // (more than one retention step) to exercise the chunking.
    let mut ts = start;
    let mut all = Vec::new();
    while ts < now {
        all.push(ts);
        store.submit(rec(obs("db", ts, Outcome::Up, Some(1.0))));
        ts += 37_000;
    }
    for i in 0..30_000 {
        store.submit(rec(obs("old", start + i * 10, Outcome::Down, None)));
    }
    store.flush().await.unwrap();
    let id = store
        .open_incident(NewIncident {
            outbox: Vec::new(),
            monitor: "db".into(),
            state: State::Down,
            severity: Severity::High,
            scope: Scope::Global,
            opened_at: chrono_t(start),
            error_kind: None,
            message: None,
            last_healthy: None,
            event: IncidentEvent::new(chrono_t(start), EventKind::Opened, "down"),
        })
        .await
        .unwrap();
    store
        .change_incident(
            id,
            IncidentChange::Resolve {
                at: chrono_t(start + HOUR),
                event: IncidentEvent::new(chrono_t(start + HOUR), EventKind::Resolved, "up"),
            },
        )
        .await
        .unwrap();

    let before_min = db.count("SELECT COUNT(*) FROM rollup_minute").await;
    let before_hour = db.count("SELECT COUNT(*) FROM rollup_hour").await;

    let deleted = store.apply_retention(chrono_t(now)).await.unwrap();

    let raw_cut = now - 2 * DAY;
    let min_cut = now - 3 * DAY;
    let hour_cut = now - 5 * DAY;
    let kept_raw = all.iter().filter(|&&t| t >= raw_cut).count() as i64;
    assert_eq!(
        db.count("SELECT COUNT(*) FROM observations").await,
        kept_raw
    );
    assert_eq!(
        db.count(&format!(
            "SELECT COUNT(*) FROM observations WHERE started_at < {raw_cut}"
        ))
        .await,
        0
    );
    // a bucket goes only when all of it is older than the cutoff
    assert_eq!(
        db.count(&format!(
            "SELECT COUNT(*) FROM rollup_minute WHERE bucket + {MIN} <= {min_cut}"
        ))
        .await,
        0
    );
    assert_eq!(
        db.count(&format!(
            "SELECT COUNT(*) FROM rollup_hour WHERE bucket + {HOUR} <= {hour_cut}"
        ))
        .await,
        0
    );
    // ...and everything younger is still there: the bucket that straddles the cutoff and all
    // after it, exactly as many as the raw data had.
    let want_min: std::collections::BTreeSet<i64> = all
        .iter()
        .map(|t| t / MIN * MIN)
        .filter(|b| b + MIN > min_cut)
        .collect();
    assert_eq!(
        db.count("SELECT COUNT(*) FROM rollup_minute WHERE monitor_id = (SELECT id FROM monitors WHERE name = 'db')"
        ).await,
        want_min.len() as i64
    );
    let want_hour: std::collections::BTreeSet<i64> = all
        .iter()
        .map(|t| t / HOUR * HOUR)
        .filter(|b| b + HOUR > hour_cut)
        .collect();
    assert_eq!(
        db.count("SELECT COUNT(*) FROM rollup_hour WHERE monitor_id = (SELECT id FROM monitors WHERE name = 'db')"
        ).await,
        want_hour.len() as i64
    );
    let after_min = db.count("SELECT COUNT(*) FROM rollup_minute").await;
    let after_hour = db.count("SELECT COUNT(*) FROM rollup_hour").await;
    let obs_deleted = (all.len() as i64 - kept_raw) + 30_000;
    assert_eq!(
        deleted as i64,
        obs_deleted + (before_min - after_min) + (before_hour - after_hour)
    );
    // resolved incidents are kept with their timeline
    assert_eq!(db.count("SELECT COUNT(*) FROM incidents").await, 1);
    assert_eq!(db.count("SELECT COUNT(*) FROM incident_events").await, 2);
    // idempotent
    assert_eq!(store.apply_retention(chrono_t(now)).await.unwrap(), 0);
    // the writer still works and its rollup cache did not resurrect deleted buckets
    store.submit(rec(obs("db", now - 10, Outcome::Up, Some(1.0))));
    store.flush().await.unwrap();
    assert_eq!(
        db.count("SELECT COUNT(*) FROM observations").await,
        kept_raw + 1
    );
    store.close().await.unwrap();
}

fn chrono_t(ms: i64) -> chrono::DateTime<chrono::Utc> {
    t(ms)
}

on_both_backends!(retention_deletes_only_what_is_older_than_the_windows);
