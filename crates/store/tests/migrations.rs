//! Schema migrations on both backends: versioned, idempotent, the same versions on SQLite and
//! PostgreSQL, and a database newer than this build is refused. On PostgreSQL, replicas that
//! start together migrate once (advisory lock).

#[macro_use]
mod common;

use common::*;
use portwarden_core::Outcome;
use portwarden_store::StoreError;

#[test]
fn both_backends_know_the_same_schema_versions() {
    let sqlite: Vec<(i64, &str)> = portwarden_store::sqlite::MIGRATIONS
        .iter()
        .map(|m| (m.version, m.name))
        .collect();
    let pg: Vec<(i64, &str)> = portwarden_store::postgres::schema::MIGRATIONS
        .iter()
        .map(|m| (m.version, m.name))
        .collect();
    assert_eq!(sqlite, pg, "a migration must land on both backends");
}

async fn reopening_is_idempotent_and_a_newer_schema_is_refused(db: Db) {
    // Three "replicas" start at once on an empty database.
    let (a, b, c) = tokio::join!(db.open(), db.open(), db.open());
    let n = portwarden_store::sqlite::MIGRATIONS.len() as i64;
    assert_eq!(db.count("SELECT COUNT(*) FROM schema_migrations").await, n);
    let base = now_ms() - HOUR;
    for (i, s) in [&a, &b, &c].into_iter().enumerate() {
        assert!(s.submit(rec(obs("m", base + i as i64, Outcome::Up, Some(1.0)))));
        s.flush().await.unwrap();
    }
    for s in [a, b, c] {
        s.close().await.unwrap();
    }
    // Reopen: nothing applied twice, data kept.
    let s = db.open().await;
    assert_eq!(db.count("SELECT COUNT(*) FROM schema_migrations").await, n);
    assert_eq!(db.count("SELECT COUNT(*) FROM observations").await, 3);
    s.close().await.unwrap();
    drop(s);

    // A newer Portwarden migrated this database: refuse it, and say what to do.
    let sql = "INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'future', 0)";
    match db.backend {
        Backend::Sqlite => {
            let c = rusqlite::Connection::open(
                db.dir
                    .path()
                    .join(portwarden_store::sqlite::SqliteStore::FILE_NAME),
            )
            .unwrap();
            c.execute(sql, []).unwrap();
        }
        Backend::Postgres => {
            db.pg.as_ref().unwrap().psql(sql).unwrap();
        }
    }
    let e = match db.backend {
        Backend::Sqlite => portwarden_store::sqlite::SqliteStore::open(
            db.dir.path(),
            portwarden_store::Retention::default(),
            fast_writer(),
            portwarden_store::StoreMetrics::default(),
        )
        .map(|_| ())
        .unwrap_err(),
        Backend::Postgres => portwarden_store::postgres::PgStore::open(
            &db.url(),
            portwarden_store::Retention::default(),
            fast_writer(),
            portwarden_store::StoreMetrics::default(),
        )
        .await
        .map(|_| ())
        .unwrap_err(),
    };
    let msg = e.to_string();
    assert!(
        matches!(e, StoreError::Open { .. } | StoreError::Connect { .. }),
        "{msg}"
    );
    assert!(
        msg.contains("schema version 999") && msg.contains("newer"),
        "{msg}"
    );
}

on_both_backends!(reopening_is_idempotent_and_a_newer_schema_is_refused);
