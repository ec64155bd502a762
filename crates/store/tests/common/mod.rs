//! Shared helpers for the store's integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use portwarden_core::{ErrorKind, Observation, Outcome, Phases, ProbeError};
use portwarden_store::postgres::PgStore;
use portwarden_store::sqlite::SqliteStore;
use portwarden_store::{Record, Retention, Store, StoreMetrics, WriterOptions};
use portwarden_testkit::pg::TestDatabase;

/// Which store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh, empty store location: a temporary data directory (SQLite) or a database created
/// on the shared PostgreSQL and dropped afterwards.
pub struct Db {
    pub backend: Backend,
    pub dir: tempfile::TempDir,
    pub pg: Option<TestDatabase>,
}

/// One value of a row read by [`Db::query`].
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Val {
    pub fn int(&self) -> i64 {
        match self {
            Val::Int(i) => *i,
            other => panic!("not an integer: {other:?}"),
        }
    }
    pub fn text(&self) -> String {
        match self {
            Val::Text(s) => s.clone(),
            other => panic!("not text: {other:?}"),
        }
    }
    pub fn real(&self) -> Option<f64> {
        match self {
            Val::Real(f) => Some(*f),
            Val::Null => None,
            other => panic!("not a real: {other:?}"),
        }
    }
    pub fn blob(&self) -> Option<Vec<u8>> {
        match self {
            Val::Blob(b) => Some(b.clone()),
            Val::Null => None,
            other => panic!("not a blob: {other:?}"),
        }
    }
}

impl Db {
    /// `None` when the backend is not available here (PostgreSQL absent: skipped loudly, or a
    /// failure with `PORTWARDEN_REQUIRE_SERVICES=1`).
    pub fn new(backend: Backend) -> Option<Db> {
        let pg = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(TestDatabase::create()?),
        };
        Some(Db {
            backend,
            dir: tempfile::tempdir().unwrap(),
            pg,
        })
    }

    pub fn url(&self) -> String {
        self.pg.as_ref().expect("a PostgreSQL test database").url()
    }

    pub async fn open(&self) -> Box<dyn Store> {
        self.open_with(Retention::default(), fast_writer(), StoreMetrics::default())
            .await
    }

    pub async fn open_with(
        &self,
        retention: Retention,
        writer: WriterOptions,
        metrics: StoreMetrics,
    ) -> Box<dyn Store> {
        match self.backend {
            Backend::Sqlite => {
                Box::new(SqliteStore::open(self.dir.path(), retention, writer, metrics).unwrap())
            }
            Backend::Postgres => Box::new(
                PgStore::open(&self.url(), retention, writer, metrics)
                    .await
                    .unwrap(),
            ),
        }
    }

    /// Rows of a query run directly on the database (for checks the trait does not expose).
    pub async fn query(&self, sql: &str) -> Vec<Vec<Val>> {
        match self.backend {
            Backend::Sqlite => {
                let conn = raw(&self.dir.path().join(SqliteStore::FILE_NAME));
                let mut st = conn.prepare(sql).unwrap();
                let n = st.column_count();
                let rows = st
                    .query_map([], |r| {
                        (0..n)
                            .map(|i| {
                                use rusqlite::types::ValueRef;
                                Ok(match r.get_ref(i)? {
                                    ValueRef::Null => Val::Null,
                                    ValueRef::Integer(v) => Val::Int(v),
                                    ValueRef::Real(v) => Val::Real(v),
                                    ValueRef::Text(t) => {
                                        Val::Text(String::from_utf8_lossy(t).into_owned())
                                    }
                                    ValueRef::Blob(b) => Val::Blob(b.to_vec()),
                                })
                            })
                            .collect::<rusqlite::Result<Vec<_>>>()
                    })
                    .unwrap();
                rows.map(|r| r.unwrap()).collect()
            }
            Backend::Postgres => {
                use tokio_postgres::types::Type;
                let (client, conn) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
                    .await
                    .unwrap();
                let task = tokio::spawn(conn);
                let rows = client.query(sql, &[]).await.unwrap();
                let out = rows
                    .iter()
                    .map(|r| {
                        (0..r.len())
                            .map(|i| {
                                let ty = r.columns()[i].type_().clone();
                                let v = if ty == Type::INT8 {
                                    r.get::<_, Option<i64>>(i).map(Val::Int)
                                } else if ty == Type::INT4 {
                                    r.get::<_, Option<i32>>(i).map(|v| Val::Int(v.into()))
                                } else if ty == Type::INT2 {
                                    r.get::<_, Option<i16>>(i).map(|v| Val::Int(v.into()))
                                } else if ty == Type::FLOAT8 {
                                    r.get::<_, Option<f64>>(i).map(Val::Real)
                                } else if ty == Type::BOOL {
                                    r.get::<_, Option<bool>>(i).map(|b| Val::Int(b.into()))
                                } else if ty == Type::BYTEA {
                                    r.get::<_, Option<Vec<u8>>>(i).map(Val::Blob)
                                } else {
                                    r.get::<_, Option<String>>(i).map(Val::Text)
                                };
                                v.unwrap_or(Val::Null)
                            })
                            .collect()
                    })
                    .collect();
                drop(client);
                let _ = task.await;
                out
            }
        }
    }

    /// A single integer from SQL written for both (`COUNT(*)`, `SUM(...)`: cast to BIGINT).
    pub async fn count(&self, sql: &str) -> i64 {
        let rows = self.query(&format!("SELECT CAST(({sql}) AS BIGINT)")).await;
        match rows.first().and_then(|r| r.first()) {
            Some(Val::Int(v)) => *v,
            Some(Val::Null) | None => 0,
            Some(other) => panic!("{sql}: not an integer: {other:?}"),
        }
    }
}

/// Runs each named `async fn case(db: Db)` once per backend, as `sqlite::case` and
/// `postgres::case` (the PostgreSQL one skips loudly without a server).
#[macro_export]
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $case() {
                    if let Some(db) = super::common::Db::new(super::common::Backend::Sqlite) {
                        super::$case(db).await;
                    }
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $case() {
                    if let Some(db) = super::common::Db::new(super::common::Backend::Postgres) {
                        super::$case(db).await;
                    }
                }
            )*
        }
    };
}

pub const MIN: i64 = 60_000;
pub const HOUR: i64 = 3_600_000;
pub const DAY: i64 = 86_400_000;

pub fn t(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap()
}

pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Midnight UTC `days` days before today.
pub fn days_ago(days: i64) -> i64 {
    (now_ms() / DAY - days) * DAY
}

pub fn fast_writer() -> WriterOptions {
    WriterOptions {
        flush_every: Duration::from_millis(20),
        batch_rows: 500,
        channel_capacity: 100_000,
        backlog_limit: 200_000,
    }
}

pub fn open_sqlite(dir: &Path) -> SqliteStore {
    SqliteStore::open(
        dir,
        Retention::default(),
        fast_writer(),
        StoreMetrics::default(),
    )
    .unwrap()
}

/// A plain observation: `outcome`, `connect_ms` as the connect phase and as the duration.
pub fn obs(
    monitor: &str,
    started_ms: i64,
    outcome: Outcome,
    connect_ms: Option<f64>,
) -> Observation {
    let error = match outcome {
        Outcome::Down => Some(ProbeError::new(ErrorKind::Refused, "connection refused")),
        Outcome::Unknown => Some(ProbeError::new(ErrorKind::Local, "out of file descriptors")),
        _ => None,
    };
    Observation {
        monitor: monitor.into(),
        location: "local".into(),
        target: format!("tcp://{monitor}.test:5432"),
        check: "tcp".into(),
        address: Some("127.0.0.1:5432".parse().unwrap()),
        outcome,
        error,
        note: None,
        phases: Phases {
            connect_ms,
            ..Default::default()
        },
        started_at: t(started_ms),
        duration_ms: connect_ms.unwrap_or(5.0),
        scheduled_at: None,
        lateness_ms: None,
        details: serde_json::Map::new(),
    }
}

pub fn rec(obs: Observation) -> Record {
    Record {
        obs,
        maintenance: false,
    }
}

/// A read-only connection on the store's file, for checks the trait does not expose.
pub fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
}

pub fn count(conn: &rusqlite::Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}
