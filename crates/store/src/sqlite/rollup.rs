//! Per-minute and per-hour rollups: counts per outcome and mergeable latency histograms.

use std::sync::LazyLock;

use portwarden_core::Outcome;
use rusqlite::{OptionalExtension, Row, Transaction};

use super::codec::{HOUR_MS, MINUTE_MS};
use crate::Record;
use crate::histogram::LogHistogram;

/// Which rollup table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Grain {
    Minute,
    Hour,
}

impl Grain {
    pub fn width_ms(self) -> i64 {
        match self {
            Grain::Minute => MINUTE_MS,
            Grain::Hour => HOUR_MS,
        }
    }
}

/// One rollup row's identity; the location is interned by the writer (`loc` indexes its
/// location table) so keys are `Copy` and cheap to hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BucketKey {
    pub grain: Grain,
    pub monitor_id: i64,
    pub bucket: i64,
    pub loc: u32,
}

/// The content of one rollup row (or the merge of several).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Agg {
    pub up: u64,
    pub degraded: u64,
    pub down: u64,
    pub unknown: u64,
    pub maintenance: u64,
    pub connect: LogHistogram,
    pub connect_max: Option<f64>,
    pub duration: LogHistogram,
    pub duration_max: Option<f64>,
    /// TLS handshake time of probes that reached it.
    pub tls: LogHistogram,
    /// Protocol phase time of probes that reached it.
    pub protocol: LogHistogram,
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

impl Agg {
    /// Counts one observation. Maintenance rows count only as `maintenance`; connect time is
    /// taken from every probe that connected, duration from probes that worked (up/degraded).
    pub fn add(&mut self, r: &Record) {
        let o = &r.obs;
        if r.maintenance {
            self.maintenance += 1;
        } else {
            match o.outcome {
                Outcome::Up => self.up += 1,
                Outcome::Degraded => self.degraded += 1,
                Outcome::Down => self.down += 1,
                Outcome::Unknown => self.unknown += 1,
            }
        }
        if let Some(c) = o.phases.connect_ms.filter(|c| c.is_finite()) {
            self.connect.record(c);
            self.connect_max = max_opt(self.connect_max, Some(c));
        }
        if let Some(t) = o.phases.tls_ms.filter(|t| t.is_finite()) {
            self.tls.record(t);
        }
        if let Some(p) = o.phases.protocol_ms.filter(|p| p.is_finite()) {
            self.protocol.record(p);
        }
        if matches!(o.outcome, Outcome::Up | Outcome::Degraded) && o.duration_ms.is_finite() {
            self.duration.record(o.duration_ms);
            self.duration_max = max_opt(self.duration_max, Some(o.duration_ms));
        }
    }

    pub fn merge(&mut self, other: &Agg) {
        self.up += other.up;
        self.degraded += other.degraded;
        self.down += other.down;
        self.unknown += other.unknown;
        self.maintenance += other.maintenance;
        self.connect.merge(&other.connect);
        self.connect_max = max_opt(self.connect_max, other.connect_max);
        self.duration.merge(&other.duration);
        self.duration_max = max_opt(self.duration_max, other.duration_max);
        self.tls.merge(&other.tls);
        self.protocol.merge(&other.protocol);
    }

    pub fn count(&self) -> u64 {
        self.up + self.degraded + self.down + self.unknown + self.maintenance
    }

    /// Reads `up, degraded, down, unknown, maintenance, connect_max, duration_max,
    /// connect_hist, duration_hist, tls_hist, protocol_hist` starting at column `at`. A damaged histogram is logged and
    /// read as empty (the counts stay right).
    pub fn from_row(row: &Row<'_>, at: usize) -> rusqlite::Result<Agg> {
        let count = |i: usize| -> rusqlite::Result<u64> {
            let v: i64 = row.get(at + i)?;
            Ok(u64::try_from(v).unwrap_or(0))
        };
        let hist = |i: usize| -> rusqlite::Result<LogHistogram> {
            let b: Option<Vec<u8>> = row.get(at + i)?;
            Ok(match b {
                Some(b) => LogHistogram::decode(&b).unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "damaged rollup histogram read as empty");
                    LogHistogram::new()
                }),
                None => LogHistogram::new(),
            })
        };
        Ok(Agg {
            up: count(0)?,
            degraded: count(1)?,
            down: count(2)?,
            unknown: count(3)?,
            maintenance: count(4)?,
            connect_max: row.get(at + 5)?,
            duration_max: row.get(at + 6)?,
            connect: hist(7)?,
            duration: hist(8)?,
            tls: hist(9)?,
            protocol: hist(10)?,
        })
    }
}

impl Agg {
    /// [`Agg::from_row`] for any backend's row (see [`Cols`](super::codec::Cols)).
    pub fn from_cols(row: &impl super::codec::Cols, at: usize) -> crate::Result<Agg> {
        let count = |i: usize| -> crate::Result<u64> {
            let v: i64 = row.col(at + i)?;
            Ok(u64::try_from(v).unwrap_or(0))
        };
        let hist = |i: usize| -> crate::Result<LogHistogram> {
            let b: Option<Vec<u8>> = row.col(at + i)?;
            Ok(match b {
                Some(b) => LogHistogram::decode(&b).unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "damaged rollup histogram read as empty");
                    LogHistogram::new()
                }),
                None => LogHistogram::new(),
            })
        };
        Ok(Agg {
            up: count(0)?,
            degraded: count(1)?,
            down: count(2)?,
            unknown: count(3)?,
            maintenance: count(4)?,
            connect_max: row.col(at + 5)?,
            duration_max: row.col(at + 6)?,
            connect: hist(7)?,
            duration: hist(8)?,
            tls: hist(9)?,
            protocol: hist(10)?,
        })
    }
}

/// The column list [`Agg::from_row`] expects.
pub const AGG_COLUMNS: &str = "up, degraded, down, unknown, maintenance, connect_max, duration_max, connect_hist, duration_hist, tls_hist, protocol_hist";

fn load_sql(g: Grain) -> &'static str {
    fn make(table: &str) -> String {
        format!(
            "SELECT {AGG_COLUMNS} FROM {table} \
             WHERE monitor_id = ?1 AND bucket = ?2 AND location = ?3"
        )
    }
    static MINUTE: LazyLock<String> = LazyLock::new(|| make("rollup_minute"));
    static HOUR: LazyLock<String> = LazyLock::new(|| make("rollup_hour"));
    match g {
        Grain::Minute => &MINUTE,
        Grain::Hour => &HOUR,
    }
}

fn upsert_sql(g: Grain) -> &'static str {
    fn make(table: &str) -> String {
        format!(
            "INSERT INTO {table} (monitor_id, bucket, location, {AGG_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
             ON CONFLICT (monitor_id, bucket, location) DO UPDATE SET
               up = excluded.up, degraded = excluded.degraded, down = excluded.down,
               unknown = excluded.unknown, maintenance = excluded.maintenance,
               connect_max = excluded.connect_max, duration_max = excluded.duration_max,
               connect_hist = excluded.connect_hist, duration_hist = excluded.duration_hist,
               tls_hist = excluded.tls_hist, protocol_hist = excluded.protocol_hist"
        )
    }
    static MINUTE: LazyLock<String> = LazyLock::new(|| make("rollup_minute"));
    static HOUR: LazyLock<String> = LazyLock::new(|| make("rollup_hour"));
    match g {
        Grain::Minute => &MINUTE,
        Grain::Hour => &HOUR,
    }
}

/// Reads a stored rollup row, if any (only on a cache miss in the writer).
pub fn load(
    tx: &Transaction<'_>,
    key: &BucketKey,
    location: &str,
) -> rusqlite::Result<Option<Agg>> {
    tx.prepare_cached(load_sql(key.grain))?
        .query_row(
            rusqlite::params![key.monitor_id, key.bucket, location],
            |r| Agg::from_row(r, 0),
        )
        .optional()
}

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn blob(h: &LogHistogram) -> Option<Vec<u8>> {
    (!h.is_empty()).then(|| h.encode())
}

/// Writes the full content of a rollup row (insert or replace the counts).
pub fn upsert(
    tx: &Transaction<'_>,
    key: &BucketKey,
    location: &str,
    a: &Agg,
) -> rusqlite::Result<()> {
    tx.prepare_cached(upsert_sql(key.grain))?
        .execute(rusqlite::params![
            key.monitor_id,
            key.bucket,
            location,
            as_i64(a.up),
            as_i64(a.degraded),
            as_i64(a.down),
            as_i64(a.unknown),
            as_i64(a.maintenance),
            a.connect_max,
            a.duration_max,
            blob(&a.connect),
            blob(&a.duration),
            blob(&a.tls),
            blob(&a.protocol),
        ])?;
    Ok(())
}
