//! The batched observation writer for PostgreSQL: one task, fed by a bounded channel, commits
//! observations with their rollups in one transaction per batch (like the SQLite writer, with
//! the same backlog, backoff and health rules).
//!
//! Several replicas may write the same rollup bucket (agent uploads land on any of them), so
//! rollups are not cached: each batch adds its per-bucket deltas to the stored rows under row
//! locks (`INSERT … ON CONFLICT DO NOTHING`, then `SELECT … FOR UPDATE` in key order, merge,
//! `UPDATE`). Monitor and target ids are cached: they never change once committed.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::Utc;
use deadpool_postgres::Pool;
use tokio::sync::mpsc;

use crate::sqlite::codec::{floor_to, outcome_code, to_ms};
use crate::sqlite::rollup::{AGG_COLUMNS, Agg, Grain};
use crate::sqlite::writer::{Reply, Shared, Submitted};
use crate::{Result, StoreError, StoreMetrics, WriterOptions};

const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
const DRAIN_CHUNK: usize = 4096;

pub enum Cmd {
    Flush(Reply<()>),
    Close(Reply<()>),
}

pub struct Writer {
    pool: Pool,
    opts: WriterOptions,
    metrics: StoreMetrics,
    shared: Arc<Shared>,
    pending: VecDeque<Submitted>,
    monitors: HashMap<String, i64>,
    targets: HashMap<(String, String), i64>,
    healthy: bool,
    retry_at: Option<Instant>,
    backoff: Duration,
}

#[allow(clippy::large_enum_variant)]
enum Event {
    Cmd(Option<Cmd>),
    Obs(Option<Submitted>),
    Due,
}

impl Writer {
    pub fn new(
        pool: Pool,
        opts: WriterOptions,
        metrics: StoreMetrics,
        shared: Arc<Shared>,
    ) -> Self {
        Writer {
            pool,
            opts,
            metrics,
            shared,
            pending: VecDeque::new(),
            monitors: HashMap::new(),
            targets: HashMap::new(),
            healthy: true,
            retry_at: None,
            backoff: BACKOFF_MIN,
        }
    }

    pub async fn run(
        mut self,
        mut obs_rx: mpsc::Receiver<Submitted>,
        mut cmd_rx: mpsc::Receiver<Cmd>,
    ) {
        loop {
            let due = self.due();
            let accept = self.accepting();
            let sleep = async {
                match due {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending::<()>().await,
                }
            };
            let event = tokio::select! {
                biased;
                c = cmd_rx.recv() => Event::Cmd(c),
                () = sleep => Event::Due,
                r = obs_rx.recv(), if accept => Event::Obs(r),
            };
            match event {
                Event::Cmd(Some(Cmd::Close(reply))) => {
                    obs_rx.close();
                    let r = self.flush_now(&mut obs_rx).await;
                    self.publish(&obs_rx);
                    let _ = reply.send(r);
                    tracing::debug!("PostgreSQL store writer closed");
                    return;
                }
                Event::Cmd(Some(Cmd::Flush(reply))) => {
                    let r = self.flush_now(&mut obs_rx).await;
                    let _ = reply.send(r);
                }
                Event::Cmd(None) | Event::Obs(None) => {
                    if let Err(e) = self.flush_now(&mut obs_rx).await {
                        tracing::error!(error = %e, rows = self.pending.len(),
                            "store dropped while the database refused writes; rows lost");
                    }
                    return;
                }
                Event::Obs(Some(s)) => {
                    self.push(s);
                    self.drain(&mut obs_rx);
                }
                Event::Due => {
                    let _ = self.commit_chunk().await;
                }
            }
            self.publish(&obs_rx);
        }
    }

    fn due(&self) -> Option<Instant> {
        let front = self.pending.front()?;
        let mut at = if self.pending.len() >= self.opts.batch_rows {
            Instant::now()
        } else {
            front.at + self.opts.flush_every
        };
        if let Some(r) = self.retry_at {
            at = at.max(r);
        }
        Some(at)
    }

    fn accepting(&self) -> bool {
        !self.healthy || self.pending.len() < self.opts.batch_rows
    }

    fn push(&mut self, s: Submitted) {
        self.pending.push_back(s);
        if self.pending.len() > self.opts.backlog_limit.max(self.opts.batch_rows) {
            self.pending.pop_front();
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            self.metrics.rows_dropped.inc();
        }
    }

    fn drain(&mut self, rx: &mut mpsc::Receiver<Submitted>) {
        let max = if self.healthy {
            self.opts.batch_rows.saturating_sub(self.pending.len())
        } else {
            DRAIN_CHUNK
        };
        for _ in 0..max {
            match rx.try_recv() {
                Ok(s) => self.push(s),
                Err(_) => break,
            }
        }
    }

    async fn flush_now(&mut self, rx: &mut mpsc::Receiver<Submitted>) -> Result<()> {
        let queued = rx.len();
        for _ in 0..queued {
            match rx.try_recv() {
                Ok(s) => self.push(s),
                Err(_) => break,
            }
        }
        while !self.pending.is_empty() {
            self.commit_chunk().await.map_err(StoreError::Db)?;
        }
        Ok(())
    }

    async fn commit_chunk(&mut self) -> std::result::Result<usize, String> {
        let n = self.pending.len().min(self.opts.batch_rows);
        if n == 0 {
            return Ok(0);
        }
        let started = Instant::now();
        let rows: Vec<&Submitted> = self.pending.range(..n).collect();
        let r = write_batch(&self.pool, &mut self.monitors, &mut self.targets, &rows).await;
        match r {
            Ok(()) => {
                self.pending.drain(..n);
                self.metrics.batch_rows.observe(n as f64);
                self.metrics
                    .batch_seconds
                    .observe(started.elapsed().as_secs_f64());
                self.metrics.rows_written.inc_by(n as u64);
                if !self.healthy {
                    tracing::info!(
                        backlog = self.pending.len(),
                        "store writes succeed again; draining the backlog"
                    );
                }
                self.healthy = true;
                self.retry_at = None;
                self.backoff = BACKOFF_MIN;
                self.shared.mark_ok(&self.metrics);
                Ok(n)
            }
            Err(e) => {
                let msg = e.to_string();
                // Ids learnt in the failed transaction may not exist.
                self.monitors.clear();
                self.targets.clear();
                if self.healthy {
                    tracing::error!(error = %msg, backlog = self.pending.len(),
                        "store write failed; keeping rows in memory and retrying");
                } else {
                    tracing::warn!(error = %msg, backlog = self.pending.len(), retry_in = ?self.backoff,
                        "store write failed again");
                }
                self.healthy = false;
                self.retry_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                self.shared.mark_failed(&self.metrics, &msg);
                Err(msg)
            }
        }
    }

    fn publish(&self, rx: &mpsc::Receiver<Submitted>) {
        let held = self.pending.len() as u64;
        self.shared.held.store(held, Ordering::Relaxed);
        self.metrics
            .pending_rows
            .set(i64::try_from(held + rx.len() as u64).unwrap_or(i64::MAX));
        self.shared.lock().oldest_pending = self.pending.front().map(|s| s.at);
    }
}

/// Rollup delta key: grain (0 minute, 1 hour), monitor, bucket, location. Ordered, so every
/// writer locks rows in the same order (no deadlocks between replicas).
type DeltaKey = (u8, i64, i64, String);

async fn write_batch(
    pool: &Pool,
    monitors: &mut HashMap<String, i64>,
    targets: &mut HashMap<(String, String), i64>,
    rows: &[&Submitted],
) -> Result<()> {
    let mut client = pool.get().await.map_err(super::pool_error)?;
    let tx = client.transaction().await?;
    let (learnt_m, learnt_t) = write_rows(&tx, monitors, targets, rows).await?;
    tx.commit().await?;
    for (name, id) in learnt_m {
        monitors.insert(name, id);
    }
    for (k, id) in learnt_t {
        targets.insert(k, id);
    }
    Ok(())
}

/// Monitor and target ids learnt inside a transaction (valid once it commits).
pub type Learnt = (Vec<(String, i64)>, Vec<((String, String), i64)>);

/// Inserts observations and adds their rollup deltas inside `tx` (the caller commits).
pub async fn write_rows(
    tx: &deadpool_postgres::Transaction<'_>,
    monitors: &HashMap<String, i64>,
    targets: &HashMap<(String, String), i64>,
    rows: &[&Submitted],
) -> Result<Learnt> {
    let now = Utc::now().timestamp_millis();

    // Ids of monitors and targets not seen yet (sorted: same lock order everywhere).
    let mut new_monitors: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
    let mut new_targets: BTreeMap<(&str, &str), ()> = BTreeMap::new();
    for s in rows {
        let o = &s.rec.obs;
        if !monitors.contains_key(&o.monitor) {
            new_monitors
                .entry(o.monitor.as_str())
                .or_insert((o.target.as_str(), o.check.as_str()));
        }
        if !targets.contains_key(&(o.target.clone(), o.check.clone())) {
            new_targets.insert((o.target.as_str(), o.check.as_str()), ());
        }
    }
    let mut learnt_m: Vec<(String, i64)> = Vec::new();
    let mut learnt_t: Vec<((String, String), i64)> = Vec::new();
    if !new_monitors.is_empty() {
        let names: Vec<&str> = new_monitors.keys().copied().collect();
        let tgts: Vec<&str> = new_monitors.values().map(|v| v.0).collect();
        let checks: Vec<&str> = new_monitors.values().map(|v| v.1).collect();
        tx.execute(
            "INSERT INTO monitors (name, target, check_kind, first_seen, last_seen)
             SELECT n, t, c, $4, $4 FROM UNNEST($1::text[], $2::text[], $3::text[]) AS u(n, t, c)
             ON CONFLICT (name) DO NOTHING",
            &[&names, &tgts, &checks, &now],
        )
        .await?;
        for r in tx
            .query(
                "SELECT name, id FROM monitors WHERE name = ANY($1::text[])",
                &[&names],
            )
            .await?
        {
            learnt_m.push((r.try_get(0)?, r.try_get(1)?));
        }
    }
    if !new_targets.is_empty() {
        let t: Vec<&str> = new_targets.keys().map(|k| k.0).collect();
        let c: Vec<&str> = new_targets.keys().map(|k| k.1).collect();
        tx.execute(
            "INSERT INTO targets (target, check_kind)
             SELECT * FROM UNNEST($1::text[], $2::text[]) ON CONFLICT DO NOTHING",
            &[&t, &c],
        )
        .await?;
        for r in tx
            .query(
                "SELECT t.target, t.check_kind, t.id FROM targets t
                 JOIN UNNEST($1::text[], $2::text[]) AS u(t, c)
                   ON t.target = u.t AND t.check_kind = u.c",
                &[&t, &c],
            )
            .await?
        {
            learnt_t.push(((r.try_get(0)?, r.try_get(1)?), r.try_get(2)?));
        }
    }
    let mid_of = |name: &str| -> Result<i64> {
        monitors
            .get(name)
            .copied()
            .or_else(|| learnt_m.iter().find(|(n, _)| n == name).map(|x| x.1))
            .ok_or_else(|| StoreError::Db(format!("monitor `{name}` has no id")))
    };
    let tid_of = |t: &str, c: &str| -> Result<i64> {
        targets
            .get(&(t.to_string(), c.to_string()))
            .copied()
            .or_else(|| {
                learnt_t
                    .iter()
                    .find(|((a, b), _)| a == t && b == c)
                    .map(|x| x.1)
            })
            .ok_or_else(|| StoreError::Db(format!("target `{t}` ({c}) has no id")))
    };

    // The observations, as column arrays.
    let n = rows.len();
    let mut c_mid = Vec::with_capacity(n);
    let mut c_loc = Vec::with_capacity(n);
    let mut c_tid = Vec::with_capacity(n);
    let mut c_started = Vec::with_capacity(n);
    let mut c_sched: Vec<Option<i64>> = Vec::with_capacity(n);
    let mut c_outcome: Vec<i16> = Vec::with_capacity(n);
    let mut c_ek: Vec<Option<&str>> = Vec::with_capacity(n);
    let mut c_esk: Vec<Option<&str>> = Vec::with_capacity(n);
    let mut c_msg: Vec<Option<&str>> = Vec::with_capacity(n);
    let mut c_addr: Vec<Option<String>> = Vec::with_capacity(n);
    let mut c_dns: Vec<Option<f64>> = Vec::with_capacity(n);
    let mut c_conn: Vec<Option<f64>> = Vec::with_capacity(n);
    let mut c_tls: Vec<Option<f64>> = Vec::with_capacity(n);
    let mut c_proto: Vec<Option<f64>> = Vec::with_capacity(n);
    let mut c_dur: Vec<f64> = Vec::with_capacity(n);
    let mut c_late: Vec<Option<f64>> = Vec::with_capacity(n);
    let mut c_details: Vec<Option<String>> = Vec::with_capacity(n);
    let mut c_maint: Vec<bool> = Vec::with_capacity(n);
    let mut deltas: BTreeMap<DeltaKey, Agg> = BTreeMap::new();
    for s in rows {
        let r = &s.rec;
        let o = &r.obs;
        let mid = mid_of(&o.monitor)?;
        let started = to_ms(o.started_at);
        c_mid.push(mid);
        c_loc.push(o.location.as_str());
        c_tid.push(tid_of(&o.target, &o.check)?);
        c_started.push(started);
        c_sched.push(o.scheduled_at.map(to_ms));
        c_outcome.push(outcome_code(o.outcome) as i16);
        c_ek.push(o.error.as_ref().map(|e| e.kind.as_str()));
        c_esk.push(o.error.as_ref().and_then(|e| e.kind.sub()));
        c_msg.push(o.message());
        c_addr.push(o.address.map(|a| a.to_string()));
        c_dns.push(o.phases.dns_ms);
        c_conn.push(o.phases.connect_ms);
        c_tls.push(o.phases.tls_ms);
        c_proto.push(o.phases.protocol_ms);
        c_dur.push(o.duration_ms);
        c_late.push(o.lateness_ms);
        c_details.push(
            (!o.details.is_empty())
                .then(|| serde_json::Value::Object(o.details.clone()).to_string()),
        );
        c_maint.push(r.maintenance);
        for (g, grain) in [(0u8, Grain::Minute), (1u8, Grain::Hour)] {
            deltas
                .entry((
                    g,
                    mid,
                    floor_to(started, grain.width_ms()),
                    o.location.clone(),
                ))
                .or_default()
                .add(r);
        }
    }
    tx.execute(
        "INSERT INTO observations (monitor_id, location, target_id, started_at, scheduled_at,
             outcome, error_kind, error_subkind, message, address, dns_ms, connect_ms, tls_ms,
             protocol_ms, duration_ms, lateness_ms, details, maintenance)
         SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[],
             $6::smallint[], $7::text[], $8::text[], $9::text[], $10::text[], $11::float8[],
             $12::float8[], $13::float8[], $14::float8[], $15::float8[], $16::float8[],
             $17::text[], $18::bool[])",
        &[
            &c_mid, &c_loc, &c_tid, &c_started, &c_sched, &c_outcome, &c_ek, &c_esk, &c_msg,
            &c_addr, &c_dns, &c_conn, &c_tls, &c_proto, &c_dur, &c_late, &c_details, &c_maint,
        ],
    )
    .await?;

    for (g, table) in [(0u8, "rollup_minute"), (1u8, "rollup_hour")] {
        let keys: Vec<(&DeltaKey, &Agg)> = deltas.iter().filter(|(k, _)| k.0 == g).collect();
        if keys.is_empty() {
            continue;
        }
        let k_mid: Vec<i64> = keys.iter().map(|(k, _)| k.1).collect();
        let k_bucket: Vec<i64> = keys.iter().map(|(k, _)| k.2).collect();
        let k_loc: Vec<&str> = keys.iter().map(|(k, _)| k.3.as_str()).collect();
        tx.execute(
            &format!(
                "INSERT INTO {table} (monitor_id, bucket, location)
                 SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[])
                 ON CONFLICT DO NOTHING"
            ),
            &[&k_mid, &k_bucket, &k_loc],
        )
        .await?;
        let stored = tx
            .query(
                &format!(
                    "SELECT r.monitor_id, r.bucket, r.location, {cols} FROM {table} r
                     JOIN UNNEST($1::bigint[], $2::bigint[], $3::text[]) AS u(m, b, l)
                       ON r.monitor_id = u.m AND r.bucket = u.b AND r.location = u.l
                     ORDER BY r.monitor_id, r.bucket, r.location COLLATE \"C\"
                     FOR UPDATE OF r",
                    cols = prefixed_agg_columns("r")
                ),
                &[&k_mid, &k_bucket, &k_loc],
            )
            .await?;
        let mut merged: HashMap<(i64, i64, String), Agg> = HashMap::with_capacity(stored.len());
        for row in &stored {
            let key: (i64, i64, String) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            merged.insert(key, Agg::from_cols(row, 3)?);
        }
        let mut u = RollupColumns::with_capacity(keys.len());
        for (k, delta) in &keys {
            let mut a = merged.remove(&(k.1, k.2, k.3.clone())).unwrap_or_default();
            a.merge(delta);
            u.push(k.1, k.2, &k.3, &a);
        }
        tx.execute(
            &format!(
                "UPDATE {table} r SET up = u.up, degraded = u.degraded, down = u.down,
                     unknown = u.unknown, maintenance = u.maintenance,
                     connect_max = u.connect_max, duration_max = u.duration_max,
                     connect_hist = u.connect_hist, duration_hist = u.duration_hist,
                     tls_hist = u.tls_hist, protocol_hist = u.protocol_hist
                 FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[],
                     $6::bigint[], $7::bigint[], $8::bigint[], $9::float8[], $10::float8[],
                     $11::bytea[], $12::bytea[], $13::bytea[], $14::bytea[])
                   AS u(monitor_id, bucket, location, {AGG_COLUMNS})
                 WHERE r.monitor_id = u.monitor_id AND r.bucket = u.bucket
                   AND r.location = u.location"
            ),
            &[
                &u.mid,
                &u.bucket,
                &u.loc,
                &u.up,
                &u.degraded,
                &u.down,
                &u.unknown,
                &u.maintenance,
                &u.connect_max,
                &u.duration_max,
                &u.connect_hist,
                &u.duration_hist,
                &u.tls_hist,
                &u.protocol_hist,
            ],
        )
        .await?;
    }
    Ok((learnt_m, learnt_t))
}

pub fn prefixed_agg_columns(alias: &str) -> String {
    AGG_COLUMNS
        .split(',')
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn blob(h: &crate::histogram::LogHistogram) -> Option<Vec<u8>> {
    (!h.is_empty()).then(|| h.encode())
}

/// Rollup rows as column arrays for one UPDATE … FROM UNNEST.
#[derive(Default)]
struct RollupColumns {
    mid: Vec<i64>,
    bucket: Vec<i64>,
    loc: Vec<String>,
    up: Vec<i64>,
    degraded: Vec<i64>,
    down: Vec<i64>,
    unknown: Vec<i64>,
    maintenance: Vec<i64>,
    connect_max: Vec<Option<f64>>,
    duration_max: Vec<Option<f64>>,
    connect_hist: Vec<Option<Vec<u8>>>,
    duration_hist: Vec<Option<Vec<u8>>>,
    tls_hist: Vec<Option<Vec<u8>>>,
    protocol_hist: Vec<Option<Vec<u8>>>,
}

impl RollupColumns {
    fn with_capacity(n: usize) -> Self {
        RollupColumns {
            mid: Vec::with_capacity(n),
            bucket: Vec::with_capacity(n),
            loc: Vec::with_capacity(n),
            ..Default::default()
        }
    }

    fn push(&mut self, mid: i64, bucket: i64, loc: &str, a: &Agg) {
        self.mid.push(mid);
        self.bucket.push(bucket);
        self.loc.push(loc.to_string());
        self.up.push(as_i64(a.up));
        self.degraded.push(as_i64(a.degraded));
        self.down.push(as_i64(a.down));
        self.unknown.push(as_i64(a.unknown));
        self.maintenance.push(as_i64(a.maintenance));
        self.connect_max.push(a.connect_max);
        self.duration_max.push(a.duration_max);
        self.connect_hist.push(blob(&a.connect));
        self.duration_hist.push(blob(&a.duration));
        self.tls_hist.push(blob(&a.tls));
        self.protocol_hist.push(blob(&a.protocol));
    }
}
