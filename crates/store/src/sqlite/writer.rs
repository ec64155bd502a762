//! The one writer: owns the read-write connection on a dedicated thread, commits observations
//! in batches (with their rollups, in the same transaction) and runs incident and registry
//! commands one transaction each.
//!
//! ## When the disk refuses writes
//! A failed batch is rolled back and stays at the front of the in-memory queue (`pending`),
//! which doubles as the backlog: new rows keep being accepted, and beyond `backlog_limit` the
//! oldest are dropped and counted. Health turns bad, `write_errors` counts the attempt, and the
//! batch is retried after a backoff (1 s doubling to 10 s). The first successful write (a batch
//! or an incident command) turns health good again and the backlog drains in `batch_rows`
//! chunks. Every in-memory cache (ids, rollup buckets) is dropped after a failed transaction so
//! it never holds state the database does not have.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use portwarden_core::{IncidentEvent, IncidentId, IncidentStatus, State};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};

use super::codec::{encode_scope, json_or_null, outcome_code, to_ms};
use super::rollup::{self, Agg, BucketKey, Grain};
use crate::{
    IncidentChange, MonitorId, MonitorRecord, NewIncident, NewOutbox, Record, Result, StoreError,
    StoreMetrics, WriterOptions,
};

const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Rollup buckets not touched for this long leave the cache (a miss costs one SELECT).
const MINUTE_CACHE_TTL: Duration = Duration::from_secs(150);
const HOUR_CACHE_TTL: Duration = Duration::from_secs(900);
const EVICT_EVERY: Duration = Duration::from_secs(15);
/// Rows moved from the channel per loop turn while the disk is failing.
const DRAIN_CHUNK: usize = 4096;

/// An observation on its way to the writer.
pub struct Submitted {
    pub rec: Record,
    pub at: Instant,
}

pub type Reply<T> = oneshot::Sender<Result<T>>;

/// Which data retention deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionTable {
    Observations,
    Minute,
    Hour,
}

/// One bounded slice of retention work: monitors with id > `after_monitor`, at most
/// `max_rows` rows, in one transaction.
#[derive(Debug, Clone, Copy)]
pub struct RetentionStep {
    pub table: RetentionTable,
    /// Delete rows older than this (observations: `started_at <` it; rollups: buckets that
    /// end at or before it).
    pub cutoff_ms: i64,
    pub after_monitor: i64,
    pub max_rows: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct RetentionProgress {
    pub deleted: u64,
    pub next_after: i64,
    pub done: bool,
}

pub enum Cmd {
    Flush(Reply<()>),
    SyncMonitors(Vec<MonitorRecord>, Reply<HashMap<String, MonitorId>>),
    OpenIncident(Box<NewIncident>, Reply<IncidentId>),
    ChangeIncident(IncidentId, Box<IncidentChange>, Vec<NewOutbox>, Reply<()>),
    /// The notification outbox and silences (one transaction each).
    Outbox(super::outbox::OutboxWrite, Reply<super::outbox::OutboxOut>),
    Retention(RetentionStep, Reply<RetentionProgress>),
    /// An agent's batch: observations + its sequence number, one transaction.
    Ingest(Box<crate::IngestBatch>, Reply<crate::IngestOutcome>),
    /// Sessions and local users (one transaction each).
    Auth(super::auth::AuthWrite, Reply<u64>),
    /// Scans with their findings and incidents, config versions (one transaction each).
    Exposure(
        super::exposure::ExposureWrite,
        Reply<super::exposure::ExposureDone>,
    ),
    /// Agent inbox consumption and heartbeats.
    Agent(super::agents::AgentWrite, Reply<()>),
    Close(Reply<()>),
}

/// What the writer publishes for `health()`.
#[derive(Debug, Default)]
pub struct SharedState {
    pub ok: bool,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub last_commit_at: Option<DateTime<Utc>>,
    pub oldest_pending: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct Shared {
    pub state: Mutex<SharedState>,
    /// Rows held by the writer (current batch + backlog).
    pub held: AtomicU64,
    pub dropped: AtomicU64,
}

impl Shared {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, SharedState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A write succeeded: health good, error cleared.
    pub fn mark_ok(&self, metrics: &StoreMetrics) {
        metrics.healthy.set(1);
        let mut st = self.lock();
        st.ok = true;
        st.last_error = None;
        st.last_commit_at = Some(Utc::now());
    }

    /// A write failed: health bad with the error.
    pub fn mark_failed(&self, metrics: &StoreMetrics, msg: &str) {
        metrics.write_errors.inc();
        metrics.healthy.set(0);
        let mut st = self.lock();
        st.ok = false;
        st.last_error = Some(msg.to_string());
        st.last_error_at = Some(Utc::now());
    }
}

/// FxHash (as in rustc): much cheaper than SipHash for the writer's small internal keys
/// (ids, names from our own config), which are not attacker-chosen.
#[derive(Default, Clone, Copy)]
struct Fx(u64);

impl Fx {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_i64(&mut self, i: i64) {
        self.add(i as u64);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<Fx>>;

struct CachedRollup {
    agg: Agg,
    touched: Instant,
    /// Changed in the current batch (to be written once at its end).
    dirty: bool,
}

#[derive(Default)]
pub(super) struct Caches {
    monitors: FxMap<String, i64>,
    /// target → check kind → id
    targets: FxMap<String, FxMap<String, i64>>,
    rollups: FxMap<BucketKey, CachedRollup>,
    /// Interned locations (not database state: survives `clear`).
    locations: Vec<String>,
    location_ids: FxMap<String, u32>,
}

impl Caches {
    /// Forgets everything that mirrors the database (after a failed transaction).
    fn clear(&mut self) {
        self.monitors.clear();
        self.targets.clear();
        self.rollups.clear();
    }

    fn location(&mut self, name: &str) -> u32 {
        if let Some(id) = self.location_ids.get(name) {
            return *id;
        }
        let id = u32::try_from(self.locations.len()).unwrap_or(u32::MAX);
        self.locations.push(name.to_string());
        self.location_ids.insert(name.to_string(), id);
        id
    }
}

pub struct Writer {
    conn: Connection,
    opts: WriterOptions,
    metrics: StoreMetrics,
    shared: Arc<Shared>,
    pending: VecDeque<Submitted>,
    caches: Caches,
    healthy: bool,
    retry_at: Option<Instant>,
    backoff: Duration,
    last_evict: Instant,
}

// A short-lived local value per loop turn; boxing the row would cost an allocation per row.
#[allow(clippy::large_enum_variant)]
enum Event {
    Cmd(Option<Cmd>),
    Obs(Option<Submitted>),
    Due,
}

impl Writer {
    pub fn new(
        conn: Connection,
        opts: WriterOptions,
        metrics: StoreMetrics,
        shared: Arc<Shared>,
    ) -> Writer {
        Writer {
            conn,
            opts,
            metrics,
            shared,
            pending: VecDeque::new(),
            caches: Caches::default(),
            healthy: true,
            retry_at: None,
            backoff: BACKOFF_MIN,
            last_evict: Instant::now(),
        }
    }

    /// The writer thread's body: runs until `close()` or until the store is dropped.
    pub fn run(mut self, mut obs_rx: mpsc::Receiver<Submitted>, mut cmd_rx: mpsc::Receiver<Cmd>) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "store writer cannot start its timer; nothing will be written");
                return;
            }
        };
        loop {
            let due = self.due();
            let accept = self.accepting();
            let event = rt.block_on(async {
                let sleep = async {
                    match due {
                        Some(at) => tokio::time::sleep_until(at.into()).await,
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    biased;
                    c = cmd_rx.recv() => Event::Cmd(c),
                    () = sleep => Event::Due,
                    r = obs_rx.recv(), if accept => Event::Obs(r),
                }
            });
            match event {
                Event::Cmd(Some(Cmd::Close(reply))) => {
                    // Refuse new submits first, then write everything already queued.
                    obs_rx.close();
                    let r = self.flush_now(&mut obs_rx);
                    self.publish(&obs_rx);
                    // Close the write connection before answering: once close() returns, the
                    // file is free (another process may open it, a mount may go away).
                    drop(self);
                    drop(cmd_rx);
                    let _ = reply.send(r);
                    tracing::debug!("store writer closed");
                    return;
                }
                Event::Cmd(Some(cmd)) => self.handle(cmd, &mut obs_rx),
                Event::Cmd(None) | Event::Obs(None) => {
                    // The store was dropped without close(): one last attempt, then stop.
                    if let Err(e) = self.flush_now(&mut obs_rx) {
                        tracing::error!(error = %e, rows = self.pending.len(),
                            "store dropped while the disk refused writes; rows lost");
                    }
                    return;
                }
                Event::Obs(Some(s)) => {
                    self.push(s);
                    self.drain(&mut obs_rx);
                }
                Event::Due => {
                    let _ = self.commit_chunk();
                }
            }
            self.maybe_evict();
            self.publish(&obs_rx);
        }
    }

    /// When the next batch is due: at once when a full batch waits, else `flush_every` after
    /// the oldest waiting row arrived; never before the retry time while failing.
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

    /// While healthy, a full batch is committed before more rows are taken (the channel then
    /// fills and pushes back); while failing, rows keep moving into the bounded backlog.
    fn accepting(&self) -> bool {
        !self.healthy || self.pending.len() < self.opts.batch_rows
    }

    fn limit(&self) -> usize {
        self.opts.backlog_limit.max(self.opts.batch_rows)
    }

    fn push(&mut self, s: Submitted) {
        self.pending.push_back(s);
        if self.pending.len() > self.limit() {
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

    /// Moves everything queued right now into `pending` and commits all of it (one attempt
    /// per chunk, ignoring the backoff: flush is an explicit request).
    fn flush_now(&mut self, rx: &mut mpsc::Receiver<Submitted>) -> Result<()> {
        let queued = rx.len();
        for _ in 0..queued {
            match rx.try_recv() {
                Ok(s) => self.push(s),
                Err(_) => break,
            }
        }
        while !self.pending.is_empty() {
            self.commit_chunk().map_err(StoreError::Db)?;
        }
        Ok(())
    }

    fn handle(&mut self, cmd: Cmd, obs_rx: &mut mpsc::Receiver<Submitted>) {
        match cmd {
            Cmd::Flush(reply) => {
                let r = self.flush_now(obs_rx);
                let _ = reply.send(r);
            }
            Cmd::SyncMonitors(monitors, reply) => {
                let r = self.transact(|tx, c| sync_monitors(tx, c, &monitors));
                let _ = reply.send(r);
            }
            Cmd::OpenIncident(new, reply) => {
                let r = self.transact(|tx, c| open_incident(tx, c, &new));
                let _ = reply.send(r);
            }
            Cmd::ChangeIncident(id, change, outbox, reply) => {
                let r = self.transact(|tx, _| {
                    change_incident(tx, id, &change)?;
                    super::outbox::insert_rows(tx, Some(id), &outbox, Utc::now())?;
                    Ok(())
                });
                let _ = reply.send(r);
            }
            Cmd::Outbox(w, reply) => {
                let r = self.transact(|tx, _| super::outbox::apply(tx, &w));
                let _ = reply.send(r);
            }
            Cmd::Retention(step, reply) => {
                let r = self.transact(|tx, _| retention_step(tx, &step));
                if step.table != RetentionTable::Observations {
                    self.caches.rollups.clear();
                }
                let _ = reply.send(r);
            }
            Cmd::Ingest(batch, reply) => {
                let r = self.ingest(&batch);
                let _ = reply.send(r);
            }
            Cmd::Auth(w, reply) => {
                let r = self.transact(|tx, _| super::auth::apply(tx, &w));
                let _ = reply.send(r);
            }
            Cmd::Exposure(w, reply) => {
                let r = self.transact(|tx, c| super::exposure::apply(tx, c, &w));
                let _ = reply.send(r);
            }
            Cmd::Agent(w, reply) => {
                let r = self.transact(|tx, _| super::agents::apply(tx, &w));
                let _ = reply.send(r);
            }
            Cmd::Close(reply) => {
                // Handled in run(); kept for exhaustiveness.
                let _ = reply.send(Ok(()));
            }
        }
    }

    /// Runs one command in one IMMEDIATE transaction. A database error marks the store
    /// unhealthy (and drops the caches); a success marks it healthy.
    fn transact<T>(
        &mut self,
        f: impl FnOnce(&Transaction<'_>, &mut Caches) -> Result<T>,
    ) -> Result<T> {
        let caches = &mut self.caches;
        let r = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let v = f(&tx, caches)?;
            tx.commit()?;
            Ok(v)
        })();
        match &r {
            Ok(_) => self.on_success(),
            Err(StoreError::Db(msg)) => {
                let msg = msg.clone();
                self.on_failure(&msg);
            }
            Err(_) => self.caches.clear(),
        }
        r
    }

    /// One agent batch in one transaction: the sequence check, the rows with their rollups,
    /// the new sequence number. A repeat (sequence not above the last) writes nothing.
    fn ingest(&mut self, b: &crate::IngestBatch) -> Result<crate::IngestOutcome> {
        let seq = i64::try_from(b.seq)
            .map_err(|_| StoreError::Db(format!("sequence number {} is too large", b.seq)))?;
        let now = Instant::now();
        let rows: Vec<Submitted> = b
            .records
            .iter()
            .map(|r| Submitted {
                rec: r.clone(),
                at: now,
            })
            .collect();
        let runs_json = serde_json::to_string(&b.runs)
            .map_err(|e| StoreError::Db(format!("cannot encode the batch's runs: {e}")))?;
        let started = Instant::now();
        let r = (|| -> rusqlite::Result<crate::IngestOutcome> {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let last: i64 = tx
                .prepare_cached(
                    "SELECT last_seq FROM agent_streams WHERE agent = ?1 AND stream = ?2",
                )?
                .query_row(params![b.agent, b.stream], |r| r.get(0))
                .optional()?
                .unwrap_or(0);
            let now_ms = Utc::now().timestamp_millis();
            tx.prepare_cached(
                "INSERT INTO agent_status (agent, location, last_contact) VALUES (?1, ?2, ?3)
                 ON CONFLICT (agent) DO UPDATE SET location = excluded.location,
                     last_contact = excluded.last_contact",
            )?
            .execute(params![b.agent, b.location, now_ms])?;
            if seq <= last {
                tx.prepare_cached(
                    "UPDATE agent_status SET duplicates = duplicates + 1, last_seq = ?2
                     WHERE agent = ?1",
                )?
                .execute(params![b.agent, last])?;
                tx.commit()?;
                return Ok(crate::IngestOutcome {
                    duplicate: true,
                    last_seq: u64::try_from(last).unwrap_or(0),
                });
            }
            write_rows(&tx, &mut self.caches, rows.iter())?;
            tx.prepare_cached(
                "UPDATE agent_status SET last_batch_at = ?2, last_seq = ?3,
                     lag_ms = COALESCE(?4, lag_ms), observations = observations + ?5
                 WHERE agent = ?1",
            )?
            .execute(params![
                b.agent,
                now_ms,
                seq,
                b.lag_ms,
                b.records.len() as i64
            ])?;
            if !b.runs.is_empty() {
                tx.prepare_cached(
                    "INSERT INTO agent_inbox (agent, stream, seq, location, received_at, runs)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    b.agent, b.stream, seq, b.location, now_ms, runs_json
                ])?;
            }
            tx.prepare_cached(
                "INSERT INTO agent_streams (agent, stream, last_seq, updated_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (agent, stream) DO UPDATE SET last_seq = excluded.last_seq,
                     updated_at = excluded.updated_at",
            )?
            .execute(params![
                b.agent,
                b.stream,
                seq,
                Utc::now().timestamp_millis()
            ])?;
            tx.commit()?;
            Ok(crate::IngestOutcome {
                duplicate: false,
                last_seq: b.seq,
            })
        })();
        match r {
            Ok(o) => {
                if !o.duplicate {
                    let n = rows.len();
                    self.metrics.batch_rows.observe(n as f64);
                    self.metrics
                        .batch_seconds
                        .observe(started.elapsed().as_secs_f64());
                    self.metrics.rows_written.inc_by(n as u64);
                }
                self.on_success();
                Ok(o)
            }
            Err(e) => {
                let msg = e.to_string();
                self.on_failure(&msg);
                Err(StoreError::Db(msg))
            }
        }
    }

    /// Commits up to `batch_rows` of the oldest pending rows in one transaction.
    fn commit_chunk(&mut self) -> std::result::Result<usize, String> {
        let n = self.pending.len().min(self.opts.batch_rows);
        if n == 0 {
            return Ok(0);
        }
        let started = Instant::now();
        let r = write_batch(&mut self.conn, &mut self.caches, self.pending.range(..n));
        match r {
            Ok(()) => {
                self.pending.drain(..n);
                self.metrics.batch_rows.observe(n as f64);
                self.metrics
                    .batch_seconds
                    .observe(started.elapsed().as_secs_f64());
                self.metrics.rows_written.inc_by(n as u64);
                self.on_success();
                Ok(n)
            }
            Err(e) => {
                let msg = e.to_string();
                self.on_failure(&msg);
                Err(msg)
            }
        }
    }

    fn on_success(&mut self) {
        if !self.healthy {
            tracing::info!(
                backlog = self.pending.len(),
                "store writes succeed again; draining the backlog"
            );
        }
        self.healthy = true;
        self.retry_at = None;
        self.backoff = BACKOFF_MIN;
        self.metrics.healthy.set(1);
        let mut st = self.shared.lock();
        st.ok = true;
        st.last_error = None;
        st.last_commit_at = Some(Utc::now());
    }

    fn on_failure(&mut self, msg: &str) {
        self.caches.clear();
        self.metrics.write_errors.inc();
        self.metrics.healthy.set(0);
        if self.healthy {
            tracing::error!(
                error = msg,
                backlog = self.pending.len(),
                "store write failed; keeping rows in memory and retrying"
            );
        } else {
            tracing::warn!(error = msg, backlog = self.pending.len(), retry_in = ?self.backoff,
                "store write failed again");
        }
        self.healthy = false;
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        let mut st = self.shared.lock();
        st.ok = false;
        st.last_error = Some(msg.to_string());
        st.last_error_at = Some(Utc::now());
    }

    fn maybe_evict(&mut self) {
        if self.last_evict.elapsed() < EVICT_EVERY {
            return;
        }
        self.last_evict = Instant::now();
        self.caches.rollups.retain(|k, c| {
            let ttl = match k.grain {
                Grain::Minute => MINUTE_CACHE_TTL,
                Grain::Hour => HOUR_CACHE_TTL,
            };
            c.touched.elapsed() < ttl
        });
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

fn write_batch<'a>(
    conn: &mut Connection,
    caches: &mut Caches,
    rows: impl Iterator<Item = &'a Submitted>,
) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    write_rows(&tx, caches, rows)?;
    tx.commit()
}

/// Inserts observations and updates their rollups inside `tx` (the caller commits).
fn write_rows<'a>(
    tx: &Transaction<'_>,
    caches: &mut Caches,
    rows: impl Iterator<Item = &'a Submitted>,
) -> rusqlite::Result<()> {
    let now = Instant::now();
    let mut dirty: Vec<BucketKey> = Vec::new();
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO observations (monitor_id, location, target_id, started_at, scheduled_at,
                 outcome, error_kind, error_subkind, message, address, dns_ms, connect_ms, tls_ms,
                 protocol_ms, duration_ms, lateness_ms, details, maintenance)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        )?;
        for s in rows {
            let r = &s.rec;
            let o = &r.obs;
            let mid = monitor_id(tx, caches, &o.monitor, &o.target, &o.check)?;
            let tid = target_id(tx, caches, &o.target, &o.check)?;
            let started = to_ms(o.started_at);
            let details = (!o.details.is_empty())
                .then(|| serde_json::Value::Object(o.details.clone()).to_string());
            insert.execute(params![
                mid,
                o.location,
                tid,
                started,
                o.scheduled_at.map(to_ms),
                outcome_code(o.outcome),
                o.error.as_ref().map(|e| e.kind.as_str()),
                o.error.as_ref().and_then(|e| e.kind.sub()),
                o.message(),
                o.address.map(|a| a.to_string()),
                o.phases.dns_ms,
                o.phases.connect_ms,
                o.phases.tls_ms,
                o.phases.protocol_ms,
                o.duration_ms,
                o.lateness_ms,
                details,
                r.maintenance,
            ])?;
            // Rollups: counted into the cached bucket (read once from the database on a miss),
            // written once per bucket at the end of the batch.
            let loc = caches.location(&o.location);
            for grain in [Grain::Minute, Grain::Hour] {
                let key = BucketKey {
                    grain,
                    monitor_id: mid,
                    bucket: super::codec::floor_to(started, grain.width_ms()),
                    loc,
                };
                let entry = match caches.rollups.entry(key) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(v) => v.insert(CachedRollup {
                        agg: rollup::load(tx, &key, &o.location)?.unwrap_or_default(),
                        touched: now,
                        dirty: false,
                    }),
                };
                entry.agg.add(r);
                entry.touched = now;
                if !entry.dirty {
                    entry.dirty = true;
                    dirty.push(key);
                }
            }
        }
    }
    for key in dirty {
        if let Some(c) = caches.rollups.get_mut(&key) {
            c.dirty = false;
            let location = caches
                .locations
                .get(key.loc as usize)
                .map_or("", String::as_str);
            rollup::upsert(tx, &key, location, &c.agg)?;
        }
    }
    Ok(())
}

fn monitor_id(
    tx: &Transaction<'_>,
    caches: &mut Caches,
    name: &str,
    target: &str,
    check: &str,
) -> rusqlite::Result<i64> {
    if let Some(id) = caches.monitors.get(name) {
        return Ok(*id);
    }
    let found: Option<i64> = tx
        .prepare_cached("SELECT id FROM monitors WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?;
    let id = match found {
        Some(id) => id,
        None => {
            let now = Utc::now().timestamp_millis();
            tx.prepare_cached(
                "INSERT INTO monitors (name, target, check_kind, first_seen, last_seen)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
            )?
            .execute(params![name, target, check, now])?;
            tx.last_insert_rowid()
        }
    };
    caches.monitors.insert(name.to_string(), id);
    Ok(id)
}

fn target_id(
    tx: &Transaction<'_>,
    caches: &mut Caches,
    target: &str,
    check: &str,
) -> rusqlite::Result<i64> {
    if let Some(id) = caches.targets.get(target).and_then(|m| m.get(check)) {
        return Ok(*id);
    }
    let id: i64 = tx
        .prepare_cached(
            "INSERT INTO targets (target, check_kind) VALUES (?1, ?2)
             ON CONFLICT (target, check_kind) DO UPDATE SET target = excluded.target
             RETURNING id",
        )?
        .query_row([target, check], |r| r.get(0))?;
    caches
        .targets
        .entry(target.to_string())
        .or_default()
        .insert(check.to_string(), id);
    Ok(id)
}

fn sync_monitors(
    tx: &Transaction<'_>,
    caches: &mut Caches,
    monitors: &[MonitorRecord],
) -> Result<HashMap<String, MonitorId>> {
    let now = Utc::now().timestamp_millis();
    let mut stmt = tx.prepare_cached(
        "INSERT INTO monitors (name, target, check_kind, tier, meta, first_seen, last_seen)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
         ON CONFLICT (name) DO UPDATE SET target = excluded.target,
             check_kind = excluded.check_kind, tier = excluded.tier, meta = excluded.meta,
             last_seen = excluded.last_seen
         RETURNING id",
    )?;
    let mut out = HashMap::with_capacity(monitors.len());
    for m in monitors {
        let id: i64 = stmt.query_row(
            params![m.name, m.target, m.check, m.tier, m.meta.to_string(), now],
            |r| r.get(0),
        )?;
        caches.monitors.insert(m.name.clone(), id);
        out.insert(m.name.clone(), id);
    }
    Ok(out)
}

fn insert_event(tx: &Transaction<'_>, incident: IncidentId, e: &IncidentEvent) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO incident_events (incident_id, at, kind, message, data)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        incident,
        to_ms(e.at),
        e.kind.as_str(),
        e.message,
        json_or_null(&e.data),
    ])?;
    Ok(())
}

pub(super) fn open_incident(
    tx: &Transaction<'_>,
    caches: &mut Caches,
    new: &NewIncident,
) -> Result<IncidentId> {
    let mid = monitor_id(tx, caches, &new.monitor, "", "")?;
    let (scope, locations) = encode_scope(&new.scope);
    let last_healthy = match &new.last_healthy {
        Some(h) => Some(
            serde_json::to_string(h)
                .map_err(|e| StoreError::Db(format!("cannot encode last_healthy: {e}")))?,
        ),
        None => None,
    };
    tx.prepare_cached(
        "INSERT INTO incidents (monitor_id, status, state, severity, scope, locations, opened_at,
             error_kind, message, last_healthy)
         VALUES (?1, 'open', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        mid,
        new.state.as_str(),
        new.severity.as_str(),
        scope,
        locations,
        to_ms(new.opened_at),
        new.error_kind,
        new.message,
        last_healthy,
    ])?;
    let id = tx.last_insert_rowid();
    insert_event(tx, id, &new.event)?;
    super::outbox::insert_rows(tx, Some(id), &new.outbox, Utc::now())?;
    Ok(id)
}

/// Order of badness for "the worst state seen while open".
fn badness(s: State) -> u8 {
    match s {
        State::Down => 3,
        State::Flapping => 2,
        State::Degraded => 1,
        _ => 0,
    }
}

pub(super) fn change_incident(
    tx: &Transaction<'_>,
    id: IncidentId,
    change: &IncidentChange,
) -> Result<()> {
    let cur: Option<(String, String)> = tx
        .prepare_cached("SELECT status, state FROM incidents WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((status, state)) = cur else {
        return Err(StoreError::NotFound(format!("incident {id}")));
    };
    let resolved = status == IncidentStatus::Resolved.as_str();
    match change {
        IncidentChange::Update {
            state: new_state,
            scope,
            error_kind,
            message,
            event,
        } => {
            if let Some(s) = new_state {
                let keep = State::parse(&state).is_some_and(|cur| badness(cur) > badness(*s));
                if !keep {
                    tx.execute(
                        "UPDATE incidents SET state = ?2 WHERE id = ?1",
                        params![id, s.as_str()],
                    )?;
                }
            }
            if let Some(scope) = scope {
                let (scope, locations) = encode_scope(scope);
                tx.execute(
                    "UPDATE incidents SET scope = ?2, locations = ?3 WHERE id = ?1",
                    params![id, scope, locations],
                )?;
            }
            if let Some(k) = error_kind {
                tx.execute(
                    "UPDATE incidents SET error_kind = ?2 WHERE id = ?1",
                    params![id, k],
                )?;
            }
            if let Some(m) = message {
                tx.execute(
                    "UPDATE incidents SET message = ?2 WHERE id = ?1",
                    params![id, m],
                )?;
            }
            insert_event(tx, id, event)?;
        }
        IncidentChange::Acknowledge { by, event } => {
            tx.execute(
                "UPDATE incidents SET acknowledged_at = COALESCE(acknowledged_at, ?2),
                     acknowledged_by = COALESCE(acknowledged_by, ?3) WHERE id = ?1",
                params![id, to_ms(event.at), by],
            )?;
            insert_event(tx, id, event)?;
        }
        IncidentChange::Resolve { at, event } => {
            // Idempotent: a retried resolve (the first commit succeeded but the reply was
            // lost) must not add a second `resolved` event.
            if !resolved {
                tx.execute(
                    "UPDATE incidents SET status = 'resolved', resolved_at = ?2 WHERE id = ?1",
                    params![id, to_ms(*at)],
                )?;
                insert_event(tx, id, event)?;
            }
        }
    }
    Ok(())
}

const RETENTION_MONITORS_PER_STEP: i64 = 500;
const RETENTION_DELETE_CHUNK: usize = 5_000;

fn retention_step(tx: &Transaction<'_>, step: &RetentionStep) -> Result<RetentionProgress> {
    let (sql, bound) = match step.table {
        RetentionTable::Observations => (
            "DELETE FROM observations WHERE id IN (SELECT id FROM observations
                 WHERE monitor_id = ?1 AND started_at < ?2 LIMIT ?3)",
            step.cutoff_ms,
        ),
        // A bucket goes when it ends at or before the cutoff: bucket + width <= cutoff.
        RetentionTable::Minute => (
            "DELETE FROM rollup_minute WHERE (monitor_id, bucket, location) IN (
                 SELECT monitor_id, bucket, location FROM rollup_minute
                 WHERE monitor_id = ?1 AND bucket < ?2 LIMIT ?3)",
            step.cutoff_ms - Grain::Minute.width_ms() + 1,
        ),
        RetentionTable::Hour => (
            "DELETE FROM rollup_hour WHERE (monitor_id, bucket, location) IN (
                 SELECT monitor_id, bucket, location FROM rollup_hour
                 WHERE monitor_id = ?1 AND bucket < ?2 LIMIT ?3)",
            step.cutoff_ms - Grain::Hour.width_ms() + 1,
        ),
    };
    let monitors: Vec<i64> = {
        let mut s =
            tx.prepare_cached("SELECT id FROM monitors WHERE id > ?1 ORDER BY id LIMIT ?2")?;
        let rows = s.query_map(
            params![step.after_monitor, RETENTION_MONITORS_PER_STEP],
            |r| r.get(0),
        )?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut del = tx.prepare_cached(sql)?;
    let mut deleted: u64 = 0;
    let mut next_after = step.after_monitor;
    for &mid in &monitors {
        loop {
            let room = step.max_rows.saturating_sub(deleted as usize);
            if room == 0 {
                return Ok(RetentionProgress {
                    deleted,
                    next_after,
                    done: false,
                });
            }
            let chunk = room.min(RETENTION_DELETE_CHUNK);
            let n = del.execute(params![mid, bound, chunk as i64])?;
            deleted += n as u64;
            if n < chunk {
                break;
            }
        }
        next_after = mid;
    }
    Ok(RetentionProgress {
        deleted,
        next_after,
        done: (monitors.len() as i64) < RETENTION_MONITORS_PER_STEP,
    })
}
