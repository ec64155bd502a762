//! Connection set-up and the embedded, versioned schema migrations.
//!
//! Each migration is one SQL script applied in its own transaction together with its row in
//! `schema_migrations`, so start-up is idempotent: applied versions are skipped, a crash in the
//! middle of a migration leaves the previous version intact. Add a migration by appending to
//! [`MIGRATIONS`]; never edit one that has shipped.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

/// One schema step.
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order. Times are unix milliseconds (UTC); rollup `bucket` is the start of
/// the minute/hour. Counts in rollups: a row taken in maintenance counts only in `maintenance`.
/// Rollups are `WITHOUT ROWID`: the table is its (monitor, bucket, location) B-tree, so a
/// monitor's time range is one contiguous read.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: r#"
CREATE TABLE monitors (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    target      TEXT NOT NULL DEFAULT '',
    check_kind  TEXT NOT NULL DEFAULT '',
    tier        TEXT NOT NULL DEFAULT '',
    meta        TEXT NOT NULL DEFAULT '{}',
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL
) STRICT;

-- (target, check) pairs as probed, interned so every observation keeps what it probed even
-- after the monitor's config changes, without repeating the strings on every row.
CREATE TABLE targets (
    id          INTEGER PRIMARY KEY,
    target      TEXT NOT NULL,
    check_kind  TEXT NOT NULL,
    UNIQUE (target, check_kind)
) STRICT;

CREATE TABLE observations (
    id            INTEGER PRIMARY KEY,
    monitor_id    INTEGER NOT NULL REFERENCES monitors (id),
    location      TEXT NOT NULL,
    target_id     INTEGER NOT NULL REFERENCES targets (id),
    started_at    INTEGER NOT NULL,
    scheduled_at  INTEGER,
    outcome       INTEGER NOT NULL,      -- 0 up, 1 degraded, 2 down, 3 unknown
    error_kind    TEXT,
    error_subkind TEXT,
    message       TEXT,                  -- the error message, or the note when no error
    address       TEXT,
    dns_ms        REAL,
    connect_ms    REAL,
    tls_ms        REAL,
    protocol_ms   REAL,
    duration_ms   REAL NOT NULL,
    lateness_ms   REAL,
    details       TEXT,                  -- JSON object, NULL when empty
    maintenance   INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX observations_monitor_time ON observations (monitor_id, started_at);

CREATE TABLE rollup_minute (
    monitor_id    INTEGER NOT NULL REFERENCES monitors (id),
    bucket        INTEGER NOT NULL,
    location      TEXT NOT NULL,
    up            INTEGER NOT NULL DEFAULT 0,
    degraded      INTEGER NOT NULL DEFAULT 0,
    down          INTEGER NOT NULL DEFAULT 0,
    unknown       INTEGER NOT NULL DEFAULT 0,
    maintenance   INTEGER NOT NULL DEFAULT 0,
    connect_max   REAL,
    duration_max  REAL,
    connect_hist  BLOB,                  -- histogram::LogHistogram, every probe that connected
    duration_hist BLOB,                  -- histogram::LogHistogram, up/degraded probes
    PRIMARY KEY (monitor_id, bucket, location)
) STRICT, WITHOUT ROWID;

CREATE TABLE rollup_hour (
    monitor_id    INTEGER NOT NULL REFERENCES monitors (id),
    bucket        INTEGER NOT NULL,
    location      TEXT NOT NULL,
    up            INTEGER NOT NULL DEFAULT 0,
    degraded      INTEGER NOT NULL DEFAULT 0,
    down          INTEGER NOT NULL DEFAULT 0,
    unknown       INTEGER NOT NULL DEFAULT 0,
    maintenance   INTEGER NOT NULL DEFAULT 0,
    connect_max   REAL,
    duration_max  REAL,
    connect_hist  BLOB,
    duration_hist BLOB,
    PRIMARY KEY (monitor_id, bucket, location)
) STRICT, WITHOUT ROWID;

-- AUTOINCREMENT: incident ids are external identities (dedup keys) and are never reused.
CREATE TABLE incidents (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    monitor_id      INTEGER NOT NULL REFERENCES monitors (id),
    status          TEXT NOT NULL CHECK (status IN ('open', 'resolved')),
    state           TEXT NOT NULL,
    severity        TEXT NOT NULL,
    scope           TEXT NOT NULL,
    locations       TEXT NOT NULL DEFAULT '[]',
    opened_at       INTEGER NOT NULL,
    resolved_at     INTEGER,
    acknowledged_at INTEGER,
    acknowledged_by TEXT,
    error_kind      TEXT,
    message         TEXT,
    last_healthy    TEXT                 -- JSON
) STRICT;
CREATE INDEX incidents_open ON incidents (id) WHERE status = 'open';
CREATE INDEX incidents_monitor ON incidents (monitor_id, id);

CREATE TABLE incident_events (
    id          INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    at          INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    message     TEXT NOT NULL,
    data        TEXT                     -- JSON, NULL when none
) STRICT;
CREATE INDEX incident_events_incident ON incident_events (incident_id, at);
"#,
    },
    Migration {
        version: 2,
        name: "web sessions and generated users",
        sql: r#"
-- Login sessions of the web UI. `id` is the SHA-256 (hex) of the cookie value: the cookie
-- itself is never stored. Roles are not stored: they come from the current config.
CREATE TABLE sessions (
    id          TEXT PRIMARY KEY,
    user_name   TEXT NOT NULL,
    csrf        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    revoked_at  INTEGER,
    remote      TEXT,
    user_agent  TEXT
) STRICT, WITHOUT ROWID;
CREATE INDEX sessions_user ON sessions (user_name);
CREATE INDEX sessions_expiry ON sessions (expires_at);

-- Users Portwarden made itself (the first-start `admin` when the config names none).
CREATE TABLE local_users (
    name          TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    created_at    INTEGER NOT NULL
) STRICT;
"#,
    },
    Migration {
        version: 3,
        name: "tls and protocol phase histograms in rollups",
        sql: r#"
-- histogram::LogHistogram of the TLS handshake and protocol phases (probes that reached them);
-- NULL in rows written before this migration.
ALTER TABLE rollup_minute ADD COLUMN tls_hist BLOB;
ALTER TABLE rollup_minute ADD COLUMN protocol_hist BLOB;
ALTER TABLE rollup_hour ADD COLUMN tls_hist BLOB;
ALTER TABLE rollup_hour ADD COLUMN protocol_hist BLOB;
"#,
    },
    Migration {
        version: 4,
        name: "notification outbox, delivery attempts, silences",
        sql: r#"
-- Notification intents, written in the same transaction as the incident change that caused
-- them; a dispatcher claims due rows (claimed_until is its lease), sends, and records every
-- attempt. One row per idempotency key and receiver.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id     INTEGER REFERENCES incidents (id),   -- NULL for heartbeats
    monitor         TEXT NOT NULL DEFAULT '',
    event           TEXT NOT NULL,                       -- trigger|resolve|repeat|escalate|heartbeat
    route           TEXT NOT NULL DEFAULT '',
    receiver        TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    group_key       TEXT,                                -- same receiver+event+group → one message
    payload         TEXT NOT NULL,                       -- JSON content of this item
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'given_up', 'suppressed')),
    created_at      INTEGER NOT NULL,
    due_at          INTEGER NOT NULL,
    claimed_until   INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    done_at         INTEGER,
    UNIQUE (receiver, idempotency_key)
) STRICT;
CREATE INDEX outbox_pending ON outbox (due_at) WHERE status = 'pending';
CREATE INDEX outbox_group ON outbox (receiver, event, group_key) WHERE status = 'pending';
CREATE INDEX outbox_incident ON outbox (incident_id);

CREATE TABLE outbox_attempts (
    id          INTEGER PRIMARY KEY,
    outbox_id   INTEGER NOT NULL REFERENCES outbox (id),
    at          INTEGER NOT NULL,
    ok          INTEGER NOT NULL,
    http_status INTEGER,
    latency_ms  REAL NOT NULL,
    error       TEXT,
    retry_at    INTEGER
) STRICT;
CREATE INDEX outbox_attempts_outbox ON outbox_attempts (outbox_id, id);

CREATE TABLE silences (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    matcher     TEXT NOT NULL,                           -- JSON {monitors, hosts, labels}
    comment     TEXT NOT NULL DEFAULT '',
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX silences_expiry ON silences (expires_at);
"#,
    },
    Migration {
        version: 5,
        name: "agent upload streams",
        sql: r#"
-- The highest committed batch sequence number per (agent, stream): a batch is stored in the
-- same transaction that raises it, so a repeated upload is recognised and stored once.
CREATE TABLE agent_streams (
    agent       TEXT NOT NULL,
    stream      TEXT NOT NULL,
    last_seq    INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (agent, stream)
);
"#,
    },
    Migration {
        version: 6,
        name: "leader term",
        sql: r#"
-- Leadership of several replicas (PostgreSQL): the term the current leader took, checked in
-- every incident and outbox-claim transaction so a deposed leader cannot write. One row; a
-- single SQLite process never changes it.
CREATE TABLE leader_term (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    term    INTEGER NOT NULL,
    holder  TEXT,
    since   INTEGER NOT NULL
) STRICT;
INSERT INTO leader_term (id, term, holder, since) VALUES (1, 0, NULL, 0);
"#,
    },
    Migration {
        version: 7,
        name: "exposure scans, findings, config versions",
        sql: r#"
-- One row per scan run (scheduled for a baseline, or ad hoc); the full report as JSON.
CREATE TABLE scans (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    baseline          TEXT,
    started_at        INTEGER NOT NULL,
    finished_at       INTEGER NOT NULL,
    duration_ms       REAL NOT NULL,
    targets           TEXT NOT NULL,          -- JSON list
    hosts             INTEGER NOT NULL,
    probes            INTEGER NOT NULL,
    open_ports        INTEGER NOT NULL,
    findings_opened   INTEGER NOT NULL,
    findings_open     INTEGER NOT NULL,
    findings_resolved INTEGER NOT NULL,
    coverage          TEXT NOT NULL,          -- JSON
    error             TEXT,
    report            TEXT NOT NULL           -- JSON
) STRICT;
CREATE INDEX scans_started ON scans (started_at);
CREATE INDEX scans_baseline ON scans (baseline, started_at);

-- Drift against a baseline; open while scans keep seeing it.
CREATE TABLE findings (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    baseline    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    host        TEXT NOT NULL,
    port        INTEGER NOT NULL,
    transport   TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('open', 'resolved')),
    severity    TEXT NOT NULL,
    first_seen  INTEGER NOT NULL,
    last_seen   INTEGER NOT NULL,
    resolved_at INTEGER,
    first_scan  INTEGER NOT NULL REFERENCES scans (id),
    last_scan   INTEGER NOT NULL REFERENCES scans (id),
    message     TEXT NOT NULL,
    detail      TEXT NOT NULL,                -- JSON
    incident_id INTEGER REFERENCES incidents (id)
) STRICT;
CREATE INDEX findings_status ON findings (status, baseline);
CREATE INDEX findings_seen ON findings (first_seen);

-- Config versions in force (content hash, git commit), recorded at start and on reload.
CREATE TABLE config_versions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    hash       TEXT NOT NULL,
    git_commit TEXT,
    git_dirty  INTEGER,
    path       TEXT NOT NULL,
    loaded_at  INTEGER NOT NULL,
    reason     TEXT NOT NULL
) STRICT;
CREATE INDEX config_versions_loaded ON config_versions (loaded_at);
"#,
    },
    Migration {
        version: 8,
        name: "agent inbox and agent status",
        sql: r#"
-- Agent batches stored by any replica, waiting for the leader to judge them (in id order;
-- deleted once handed to the evaluator). Written in the upload's transaction.
CREATE TABLE agent_inbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    agent       TEXT NOT NULL,
    stream      TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    location    TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    runs        TEXT NOT NULL                 -- JSON [{monitor, observations}]
) STRICT;

-- What every replica shows about an agent: its last heartbeat and upload.
CREATE TABLE agent_status (
    agent         TEXT PRIMARY KEY,
    location      TEXT NOT NULL,
    last_contact  INTEGER,
    heartbeat     TEXT,                       -- JSON, the server's shape
    last_batch_at INTEGER,
    last_seq      INTEGER NOT NULL DEFAULT 0,
    lag_ms        REAL,
    observations  INTEGER NOT NULL DEFAULT 0,
    duplicates    INTEGER NOT NULL DEFAULT 0
) STRICT;
"#,
    },
    Migration {
        version: 9,
        name: "shared keys",
        sql: r#"
-- Keys every replica must agree on (the one that signs acknowledge links): the first replica
-- to start stores its candidate, every other adopts it. Never shown by the API.
CREATE TABLE shared_keys (
    name       TEXT PRIMARY KEY,
    value      BLOB NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
"#,
    },
];

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens the one read-write connection (the writer's) with the pragmas Portwarden relies on.
pub fn open_writer(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL: readers never block the writer and the writer never blocks readers. With
    // synchronous=NORMAL a commit is durable against a process crash (kill -9); only a power
    // loss can take the last commits.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(
            mode,
            "SQLite refused WAL mode; readers may block the writer"
        );
    }
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA journal_size_limit = 67108864;",
    )?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Opens a read-only connection (used off the writer, in `spawn_blocking`).
pub fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch("PRAGMA temp_store = MEMORY;")?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// Why migrating failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Db(#[from] rusqlite::Error),
    #[error(
        "the database has schema version {found}, newer than this Portwarden knows ({known}); \
         run a newer Portwarden or restore a backup"
    )]
    TooNew { found: i64, known: i64 },
}

/// Applies every migration not applied yet; returns the schema version.
pub fn migrate(conn: &mut Connection) -> Result<i64, MigrateError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             name       TEXT NOT NULL,
             applied_at INTEGER NOT NULL
         ) STRICT;",
    )?;
    let current: i64 = conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    if current > known {
        return Err(MigrateError::TooNew {
            found: current,
            known,
        });
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Another process may have migrated between our read and the write lock.
        let done: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?1)",
            [m.version],
            |r| r.get(0),
        )?;
        if !done {
            tx.execute_batch(m.sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                rusqlite::params![m.version, m.name, chrono::Utc::now().timestamp_millis()],
            )?;
            tracing::info!(
                version = m.version,
                name = m.name,
                "applied schema migration"
            );
        }
        tx.commit()?;
    }
    Ok(known)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_ordered_and_idempotent() {
        for w in MIGRATIONS.windows(2) {
            assert!(w[0].version < w[1].version);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut c = open_writer(&path).unwrap();
        let v = migrate(&mut c).unwrap();
        assert_eq!(migrate(&mut c).unwrap(), v);
        drop(c);
        let mut c = open_writer(&path).unwrap();
        assert_eq!(migrate(&mut c).unwrap(), v);
        let n: i64 = c
            .query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, MIGRATIONS.len() as i64);
        c.execute(
            "INSERT INTO schema_migrations VALUES (999, 'future', 0)",
            [],
        )
        .unwrap();
        assert!(matches!(
            migrate(&mut c),
            Err(MigrateError::TooNew { found: 999, .. })
        ));
    }
}
