//! Readers query while the writer commits: no "database is locked", no errors at all.
//! Also a throughput measurement (`--ignored`), printed in rows/s.

#[macro_use]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use portwarden_core::{EventKind, IncidentEvent, Outcome, Scope, Severity, State};
use portwarden_store::sqlite::SqliteStore;
use portwarden_store::{
    IncidentChange, IncidentFilter, NewIncident, ObservationQuery, Resolution, Retention, Store,
    StoreError, StoreMetrics, WriterOptions,
};

fn ok_or_not_found<T>(r: Result<T, StoreError>) {
    match r {
        Ok(_) | Err(StoreError::NotFound(_)) => {}
        Err(e) => panic!("read failed while the writer commits: {e}"),
    }
}

async fn readers_run_while_the_writer_commits(db: Db) {
    let store: Arc<dyn Store> = Arc::from(db.open().await);
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let base = now_ms() - 2 * HOUR;

    // writer: a steady stream over 50 monitors, plus incidents
    let writer = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seq: i64 = 0;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..500 {
                    let o = obs(
                        &format!("m{}", seq % 50),
                        base + seq * 10,
                        if seq % 11 == 0 {
                            Outcome::Down
                        } else {
                            Outcome::Up
                        },
                        Some((seq % 100) as f64 / 10.0),
                    );
                    if store.submit(rec(o)) {
                        seq += 1;
                    }
                }
                if seq % 5_000 < 500 {
                    let id = store
                        .open_incident(NewIncident {
                            outbox: Vec::new(),
                            monitor: format!("m{}", seq % 50),
                            state: State::Down,
                            severity: Severity::High,
                            scope: Scope::Global,
                            opened_at: t(base + seq * 10),
                            error_kind: Some("refused".into()),
                            message: None,
                            last_healthy: None,
                            event: IncidentEvent::new(
                                t(base + seq * 10),
                                EventKind::Opened,
                                "down",
                            ),
                        })
                        .await
                        .unwrap();
                    store
                        .change_incident(
                            id,
                            IncidentChange::Resolve {
                                at: t(base + seq * 10 + 1),
                                event: IncidentEvent::new(
                                    t(base + seq * 10 + 1),
                                    EventKind::Resolved,
                                    "up",
                                ),
                            },
                        )
                        .await
                        .unwrap();
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            store.flush().await.unwrap();
            seq
        })
    };
    // readers: every query kind, in a loop
    let mut readers = Vec::new();
    for r in 0..4 {
        let (store, stop, reads) = (store.clone(), stop.clone(), reads.clone());
        readers.push(tokio::spawn(async move {
            let (from, to) = (t(base - HOUR), t(base + 3 * HOUR));
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let m = format!("m{}", (i + r) % 50);
                let q = ObservationQuery {
                    from: None,
                    to: None,
                    location: None,
                    limit: 100,
                    cursor: None,
                };
                // NotFound is fine before a monitor's first batch; any other error is not.
                match i % 7 {
                    0 => ok_or_not_found(store.observations(&m, &q).await),
                    1 => ok_or_not_found(store.availability(&m, from, to).await),
                    2 => ok_or_not_found(store.availability_all(from, to).await),
                    3 => ok_or_not_found(
                        store.latency_series(&m, from, to, Resolution::Minute).await,
                    ),
                    4 => ok_or_not_found(store.last_observations().await),
                    5 => ok_or_not_found(
                        store
                            .incidents(&IncidentFilter {
                                limit: 20,
                                ..Default::default()
                            })
                            .await,
                    ),
                    _ => ok_or_not_found(store.open_incidents().await),
                }
                reads.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.unwrap();
    for r in readers {
        r.await.unwrap();
    }
    // every monitor exists by now: no NotFound either
    for m in 0..50 {
        let name = format!("m{m}");
        store
            .observations(
                &name,
                &ObservationQuery {
                    from: None,
                    to: None,
                    location: None,
                    limit: 10,
                    cursor: None,
                },
            )
            .await
            .unwrap();
        store
            .availability(&name, t(base - HOUR), t(base + 3 * HOUR))
            .await
            .unwrap();
    }
    let h = store.health();
    assert!(h.ok, "{h:?}");
    assert_eq!(db.count("SELECT COUNT(*) FROM observations").await, written);
    eprintln!(
        "{written} rows written while {} reads ran",
        reads.load(Ordering::Relaxed)
    );
    assert!(reads.load(Ordering::Relaxed) > 50);
    store.close().await.unwrap();
}

/// `cargo test -p portwarden-store --release --test concurrency -- --ignored --nocapture`
/// (`STORE=postgres` measures the PostgreSQL store on the local server).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "measurement, not a check"]
async fn insert_throughput() {
    let backend = if std::env::var("STORE").is_ok_and(|v| v == "postgres") {
        Backend::Postgres
    } else {
        Backend::Sqlite
    };
    let Some(db) = Db::new(backend) else {
        return;
    };
    let metrics = StoreMetrics::default();
    let store = db
        .open_with(
            Retention::default(),
            WriterOptions::default(),
            metrics.clone(),
        )
        .await;
    let n: i64 = std::env::var("ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    let monitors: i64 = std::env::var("MONITORS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let base = now_ms() - HOUR;
    let t0 = Instant::now();
    let mut seq = 0;
    let mut full = 0u64;
    while seq < n {
        let mut o = obs(
            &format!("monitor-{}", seq % monitors),
            base + seq / 100,
            if seq % 13 == 0 {
                Outcome::Down
            } else {
                Outcome::Up
            },
            Some(0.3 + (seq % 50) as f64 / 7.0),
        );
        o.details.insert("v".into(), serde_json::json!("16.2"));
        if store.submit(rec(o)) {
            seq += 1;
        } else {
            full += 1;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    store.flush().await.unwrap();
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "{backend:?}: {n} rows over {monitors} monitors in {secs:.2} s = {:.0} rows/s (default \
         writer options; channel full {full} times; {} rows written)",
        n as f64 / secs,
        metrics.rows_written.get()
    );
    store.close().await.unwrap();
}

/// `cargo test -p portwarden-store --release --test concurrency -- --ignored --nocapture`:
/// how long `availability_all` over 24 h takes with 10 000 monitors (rollups written directly).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "measurement, not a check"]
async fn availability_all_at_scale() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_sqlite(dir.path());
    store.flush().await.unwrap();
    let now = now_ms();
    let hour0 = now / HOUR * HOUR - 30 * HOUR;
    {
        let mut c = rusqlite::Connection::open(dir.path().join(SqliteStore::FILE_NAME)).unwrap();
        c.busy_timeout(Duration::from_secs(5)).unwrap();
        let tx = c.transaction().unwrap();
        tx.execute_batch(&format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 10000)
             INSERT INTO monitors (id, name, first_seen, last_seen) SELECT i, 'monitor-' || i, 0, 0 FROM n;
             WITH RECURSIVE h(j) AS (SELECT 0 UNION ALL SELECT j+1 FROM h WHERE j < 30)
             INSERT INTO rollup_hour (monitor_id, bucket, location, up, degraded, down, unknown, maintenance, connect_hist)
             SELECT m.id, {hour0} + j * {HOUR}, 'local', 355, 2, 3, 0, 0, x'0105011e0a1f0a200a210a2205' FROM monitors m, h;
             WITH RECURSIVE h(j) AS (SELECT 0 UNION ALL SELECT j+1 FROM h WHERE j < 30 * 60)
             INSERT INTO rollup_minute (monitor_id, bucket, location, up, degraded, down, unknown, maintenance, connect_hist)
             SELECT m.id, {hour0} + j * {MIN}, 'local', 6, 0, 0, 0, 0, x'0105011e0a1f0a200a210a2205'
             FROM monitors m, h WHERE j BETWEEN 5 * 60 AND 7 * 60 OR j >= 28 * 60;"
        ))
        .unwrap();
        tx.commit().unwrap();
    }
    let to = chrono::Utc::now();
    let from = to - chrono::Duration::hours(24);
    for _ in 0..3 {
        let t0 = Instant::now();
        let all = store.availability_all(from, to).await.unwrap();
        assert_eq!(all.len(), 10_000);
        eprintln!(
            "availability_all, 10 000 monitors, 24 h: {:?}",
            t0.elapsed()
        );
    }
    store.close().await.unwrap();
}

on_both_backends!(readers_run_while_the_writer_commits);
