//! Shared helpers for the store's integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use portwarden_core::{ErrorKind, Observation, Outcome, Phases, ProbeError};
use portwarden_store::sqlite::SqliteStore;
use portwarden_store::{Record, Retention, StoreMetrics, WriterOptions};

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

pub fn open(dir: &Path) -> SqliteStore {
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
