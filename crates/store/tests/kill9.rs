//! Acceptance 6: `kill -9` during a write burst → the database opens cleanly and holds every
//! row that was confirmed flushed before the kill (at most the unflushed batch is missing).
//!
//! The writer runs in a child process: this test binary re-executed with `KILL9_CHILD_DIR` set,
//! running only [`child_writer_entry`], which submits observations in a tight loop, flushes
//! every few thousand rows and prints `confirmed N` (rows 0..N are committed).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use portwarden_core::Outcome;
use portwarden_store::postgres::PgStore;
use portwarden_store::sqlite::SqliteStore;
use portwarden_store::{ObservationQuery, Retention, Store, StoreMetrics, WriterOptions};

const CHILD_ENV: &str = "KILL9_CHILD_DIR";
/// Set (to the database URL) when the child writes to PostgreSQL.
const URL_ENV: &str = "KILL9_CHILD_URL";
const BASE_ENV: &str = "KILL9_CHILD_BASE";
const FLUSH_EVERY_ROWS: i64 = 3_000;

/// Not a test on its own: the child process's body (a no-op unless `KILL9_CHILD_DIR` is set).
#[test]
fn child_writer_entry() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let base: i64 = std::env::var(BASE_ENV).unwrap().parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let opts = WriterOptions {
            flush_every: Duration::from_millis(50),
            batch_rows: 1_000,
            channel_capacity: 20_000,
            backlog_limit: 100_000,
        };
        let store: Box<dyn Store> = match std::env::var(URL_ENV) {
            Ok(url) => Box::new(
                PgStore::open(&url, Retention::default(), opts, StoreMetrics::default())
                    .await
                    .unwrap(),
            ),
            Err(_) => Box::new(
                SqliteStore::open(
                    std::path::Path::new(&dir),
                    Retention::default(),
                    opts,
                    StoreMetrics::default(),
                )
                .unwrap(),
            ),
        };
        let mut out = std::io::stdout();
        let mut seq: i64 = 0;
        loop {
            let outcome = if seq % 9 == 0 {
                Outcome::Down
            } else {
                Outcome::Up
            };
            let mut o = obs(
                &format!("m{}", seq % 50),
                base + seq,
                outcome,
                Some(1.0 + (seq % 13) as f64),
            );
            o.details.insert("seq".into(), serde_json::json!(seq));
            if store.submit(rec(o)) {
                seq += 1;
            } else {
                tokio::task::yield_now().await; // channel full: the writer is busy committing
                continue;
            }
            if seq % FLUSH_EVERY_ROWS == 0 {
                store.flush().await.unwrap();
                writeln!(out, "confirmed {seq}").unwrap();
                out.flush().unwrap();
            }
        }
    });
}

#[test]
fn sqlite_kill_9_during_a_write_burst_loses_at_most_the_unflushed_batch() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    if let Some(db) = Db::new(Backend::Sqlite) {
        kill_9_during_a_write_burst(db);
    }
}

#[test]
fn postgres_kill_9_during_a_write_burst_loses_at_most_the_unflushed_batch() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    if let Some(db) = Db::new(Backend::Postgres) {
        kill_9_during_a_write_burst(db);
    }
}

fn kill_9_during_a_write_burst(db: Db) {
    let dir = db.dir.path();
    let base = now_ms() - HOUR;
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    if db.backend == Backend::Postgres {
        cmd.env(URL_ENV, db.url());
    }
    let mut child = cmd
        .args([
            "--exact",
            "child_writer_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .env(BASE_ENV, base.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let started = Instant::now();
    let mut confirmed: i64 = 0;
    // Let it write for a while (several flushes and many automatic batch commits)...
    while confirmed < 45_000 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "child too slow: {confirmed} rows"
        );
        let line = match lines.next() {
            Some(l) => l.unwrap(),
            None => panic!("child exited early (confirmed {confirmed})"),
        };
        if let Some(n) = line.strip_prefix("confirmed ") {
            confirmed = n.trim().parse().unwrap();
        }
    }
    // ...then kill it in the middle of the burst (between flush confirmations).
    std::thread::sleep(Duration::from_millis(37));
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success());
    // Lines printed before the kill but not read yet only raise what was confirmed.
    for line in lines.map_while(Result::ok) {
        if let Some(n) = line.strip_prefix("confirmed ") {
            confirmed = confirmed.max(n.trim().parse().unwrap());
        }
    }

    let rt = tokio::runtime::Runtime::new().unwrap();
    if db.backend == Backend::Sqlite {
        let conn = rusqlite::Connection::open(dir.join(SqliteStore::FILE_NAME)).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        let fk: i64 = count(&conn, "SELECT COUNT(*) FROM pragma_foreign_key_check");
        assert_eq!(fk, 0);
    }
    rt.block_on(async {
        let total = db.count("SELECT COUNT(*) FROM observations").await;
        let held = db
            .count(&format!(
                "SELECT COUNT(*) FROM observations WHERE started_at < {}",
                base + confirmed
            ))
            .await;
        assert_eq!(held, confirmed, "every confirmed row is there");
        assert!(total >= confirmed);
        // rows past the last confirmation form a prefix of the burst: whole batches, no holes
        let max_seq = db
            .count("SELECT COALESCE(MAX(started_at), 0) FROM observations")
            .await
            - base;
        assert_eq!(
            total,
            max_seq + 1,
            "no holes: committed batches are all-or-nothing"
        );
        // rollups were committed in the same transactions as their rows
        let rolled = db
            .count("SELECT SUM(up + degraded + down + unknown + maintenance) FROM rollup_minute")
            .await;
        assert_eq!(rolled, total);
        let rolled_h = db
            .count("SELECT SUM(up + degraded + down + unknown + maintenance) FROM rollup_hour")
            .await;
        assert_eq!(rolled_h, total);
        eprintln!(
            "kill -9 ({:?}): {confirmed} confirmed, {total} present, {} beyond the last confirmation",
            db.backend,
            total - confirmed
        );
    });

    // The store reopens and keeps working on the same data.
    rt.block_on(async {
        let store = db.open().await;
        assert!(store.health().ok);
        store.submit(rec(obs("m0", base + 10_000_000, Outcome::Up, Some(1.0))));
        store.flush().await.unwrap();
        let p = store
            .observations(
                "m0",
                &ObservationQuery {
                    from: None,
                    to: None,
                    location: None,
                    limit: 1,
                    cursor: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(p.items[0].started_at, t(base + 10_000_000));
        store.close().await.unwrap();
    });
}
