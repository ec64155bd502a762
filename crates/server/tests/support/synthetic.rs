//! A store full of synthetic history for scale tests and the UI benchmark: `monitors` monitors
//! (`m-00001`...), hour rollups for `days` days and minute rollups for the last `minute_hours`
//! hours, written straight into SQLite (seconds instead of hours of probing).
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use portwarden_store::histogram::LogHistogram;
use portwarden_store::sqlite::SqliteStore;
use portwarden_store::{Retention, StoreMetrics, WriterOptions};

pub const MIN: i64 = 60_000;
pub const HOUR: i64 = 3_600_000;

pub fn name(i: usize) -> String {
    format!("m-{i:05}")
}

fn blob(values: &[f64]) -> Vec<u8> {
    let mut h = LogHistogram::new();
    for v in values {
        h.record(*v);
    }
    h.encode()
}

/// Creates (or reuses, when already filled with the same sizes) the database in `data_dir`.
pub fn fill(data_dir: &Path, monitors: usize, days: i64, minute_hours: i64) {
    let marker = data_dir.join(format!("synthetic-{monitors}-{days}-{minute_hours}"));
    if marker.exists() {
        return;
    }
    std::fs::create_dir_all(data_dir).unwrap();
    // Migrations.
    drop(
        SqliteStore::open(
            data_dir,
            Retention::default(),
            WriterOptions::default(),
            StoreMetrics::default(),
        )
        .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(200));
    let mut c = rusqlite::Connection::open(data_dir.join(SqliteStore::FILE_NAME)).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF;")
        .unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let hour0 = now / HOUR * HOUR - days * 24 * HOUR;
    let min0 = now / MIN * MIN - minute_hours * HOUR;
    let blobs = [
        blob(&[0.2, 0.25, 0.3, 0.31, 0.4, 0.9]),
        blob(&[1.0, 1.2, 1.3, 2.0, 2.5, 8.0]),
        blob(&[0.1, 0.11, 0.12, 0.15]),
    ];
    let tx = c.transaction().unwrap();
    tx.execute_batch(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < {monitors})
         INSERT INTO monitors (id, name, first_seen, last_seen)
         SELECT i, 'm-' || substr('0000' || i, -5, 5), 0, 0 FROM n;"
    ))
    .unwrap();
    tx.execute(
        &format!(
            "WITH RECURSIVE h(j) AS (SELECT 0 UNION ALL SELECT j+1 FROM h WHERE j < {hours})
             INSERT INTO rollup_hour (monitor_id, bucket, location, up, degraded, down, unknown,
                                      maintenance, connect_max, duration_max, connect_hist, duration_hist)
             SELECT m.id, {hour0} + h.j * {HOUR}, 'local',
                    180 - CASE WHEN (m.id * 7 + h.j) % 97 = 0 THEN 20 ELSE 0 END, 0,
                    CASE WHEN (m.id * 7 + h.j) % 97 = 0 THEN 20 ELSE 0 END, 0, 0, 9.0, 12.0,
                    CASE (m.id + h.j) % 3 WHEN 0 THEN ?1 WHEN 1 THEN ?2 ELSE ?3 END,
                    CASE (m.id + h.j) % 3 WHEN 0 THEN ?1 WHEN 1 THEN ?2 ELSE ?3 END
             FROM monitors m, h ORDER BY m.id, h.j",
            hours = days * 24,
        ),
        rusqlite::params![blobs[0], blobs[1], blobs[2]],
    )
    .unwrap();
    tx.execute(
        &format!(
            "WITH RECURSIVE k(j) AS (SELECT 0 UNION ALL SELECT j+1 FROM k WHERE j < {mins})
             INSERT INTO rollup_minute (monitor_id, bucket, location, up, degraded, down, unknown,
                                        maintenance, connect_max, duration_max, connect_hist, duration_hist)
             SELECT m.id, {min0} + k.j * {MIN}, 'local', 3, 0, 0, 0, 0, 9.0, 12.0,
                    CASE (m.id + k.j) % 3 WHEN 0 THEN ?1 WHEN 1 THEN ?2 ELSE ?3 END,
                    CASE (m.id + k.j) % 3 WHEN 0 THEN ?1 WHEN 1 THEN ?2 ELSE ?3 END
             FROM monitors m, k ORDER BY m.id, k.j",
            mins = minute_hours * 60,
        ),
        rusqlite::params![blobs[0], blobs[1], blobs[2]],
    )
    .unwrap();
    tx.commit().unwrap();
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
    std::fs::write(marker, "").unwrap();
}

/// A config with the same monitors (a closed port; a long interval so they barely run) and
/// the test admin token.
pub fn config(monitors: usize, target_port: u16) -> String {
    let mut y = String::from("monitors:\n");
    let services = [
        "postgres", "redis", "rabbitmq", "nats", "mysql", "smtp", "dns", "kafka",
    ];
    let owners = [
        "team-data",
        "team-platform",
        "team-web",
        "team-iot",
        "team-finance",
    ];
    for i in 1..=monitors {
        y.push_str(&format!(
            "  - {{name: {}, target: \"tcp://127.0.0.1:{target_port}\", interval: 1h, timeout: 5s, service: {}, owner: {}}}\n",
            name(i),
            services[i % services.len()],
            owners[i % owners.len()],
        ));
    }
    y
}
