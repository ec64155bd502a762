//! The PostgreSQL twin of `disk_full.rs`: the database goes away (a private server stopped with
//! `-m immediate`) → writes fail, health says so, nothing panics, submits keep landing in the
//! bounded backlog; when the server is back the writer resumes by itself (no reopen) and every
//! row reaches the database with its rollups. Needs root (the server runs as `postgres`).

mod common;

use std::time::{Duration, Instant};

use common::*;
use portwarden_core::{EventKind, IncidentEvent, Outcome, Scope, Severity, State};
use portwarden_store::postgres::PgStore;
use portwarden_store::{NewIncident, Retention, Store, StoreError, StoreMetrics, WriterOptions};

async fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn count(url: &str, sql: &str) -> i64 {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(conn);
    let v: i64 = c
        .query_one(&format!("SELECT CAST(({sql}) AS BIGINT)"), &[])
        .await
        .unwrap()
        .get(0);
    drop(c);
    let _ = task.await;
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn database_outage_keeps_rows_in_memory_and_resumes_without_reopening() {
    let Some(cluster) = portwarden_testkit::pg::Cluster::start() else {
        return;
    };
    let url = format!("{}?connect_timeout=2", cluster.url());
    let metrics = StoreMetrics::default();
    let store = PgStore::open(
        &url,
        Retention::default(),
        WriterOptions {
            flush_every: Duration::from_millis(20),
            batch_rows: 100,
            channel_capacity: 50_000,
            backlog_limit: 100_000,
        },
        metrics.clone(),
    )
    .await
    .unwrap();
    let base = now_ms() - HOUR;
    let mut seq: i64 = 0;
    for _ in 0..100 {
        assert!(store.submit(rec(obs("m", base + seq, Outcome::Up, Some(1.0)))));
        seq += 1;
    }
    store.flush().await.unwrap();

    cluster.stop();
    let marker = seq;
    for _ in 0..500 {
        assert!(
            store.submit(rec(obs("m", base + seq, Outcome::Down, None))),
            "submit refused while the database is away"
        );
        seq += 1;
    }
    assert!(
        wait_until(Duration::from_secs(20), || !store.health().ok).await,
        "health never turned bad"
    );
    let h = store.health();
    let err = h.last_error.clone().unwrap_or_default();
    assert!(
        err.contains("PostgreSQL") || err.contains("connect"),
        "{err}"
    );
    assert!(h.pending_rows >= 500, "{h:?}");
    assert_eq!(h.dropped_rows, 0);
    assert!(store.flush().await.is_err(), "flush reports the failure");
    assert!(metrics.write_errors.get() >= 1);
    assert_eq!(metrics.healthy.get(), 0);
    // An awaited write fails with the database error (the engine retries); reads too.
    let e = store
        .open_incident(NewIncident {
            outbox: Vec::new(),
            monitor: "m".into(),
            state: State::Down,
            severity: Severity::High,
            scope: Scope::Global,
            opened_at: t(base),
            error_kind: None,
            message: None,
            last_healthy: None,
            event: IncidentEvent::new(t(base), EventKind::Opened, "down"),
        })
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Db(_)), "{e}");
    assert!(store.open_incidents().await.is_err());

    // The database comes back: the writer resumes by itself.
    cluster.restart().unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || {
            let h = store.health();
            h.ok && h.pending_rows == 0
        })
        .await,
        "writes did not resume: {:?}",
        store.health()
    );
    for _ in 0..50 {
        assert!(store.submit(rec(obs("m", base + seq, Outcome::Up, Some(2.0)))));
        seq += 1;
    }
    store.flush().await.unwrap();
    assert_eq!(count(&url, "SELECT COUNT(*) FROM observations").await, seq);
    assert_eq!(
        count(
            &url,
            &format!(
                "SELECT COUNT(*) FROM observations WHERE started_at >= {}",
                base + marker
            )
        )
        .await,
        seq - marker
    );
    assert_eq!(
        count(
            &url,
            "SELECT SUM(up + degraded + down + unknown + maintenance) FROM rollup_minute"
        )
        .await,
        seq
    );
    assert_eq!(metrics.rows_written.get(), seq as u64);
    assert_eq!(metrics.rows_dropped.get(), 0);
    assert!(store.open_incidents().await.is_ok());
    store.close().await.unwrap();
}
