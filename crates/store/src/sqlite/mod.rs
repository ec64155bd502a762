//! The embedded SQLite store: one file (`portwarden.db`) in the data directory, WAL mode.
//!
//! - **Writes** go to one writer thread that owns the only read-write connection
//!   ([`writer`]): observations in batches with their rollups, incident and registry changes
//!   one transaction each, awaited by the caller.
//! - **Reads** run on read-only connections in `spawn_blocking` ([`read`]); WAL lets them run
//!   while the writer commits.
//! - **Schema** is migrated at open ([`schema`]).
//!
//! Times are stored as unix milliseconds: sub-millisecond parts of `started_at`,
//! `scheduled_at` and incident times are dropped.
//!
//! ```no_run
//! # async fn f() -> portwarden_store::Result<()> {
//! use portwarden_store::{Retention, Store, StoreMetrics, WriterOptions, sqlite::SqliteStore};
//! let store = SqliteStore::open(
//!     std::path::Path::new("./portwarden-data"),
//!     Retention::default(),
//!     WriterOptions::default(),
//!     StoreMetrics::default(),
//! )?;
//! assert!(store.health().ok);
//! store.close().await?;
//! # Ok(()) }
//! ```

pub(crate) mod agents;
mod auth;
pub(crate) mod codec;
mod exposure;
pub(crate) mod outbox;
pub(crate) mod read;
pub(crate) mod rollup;
mod schema;
pub(crate) mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use portwarden_core::{Incident, IncidentEvent, IncidentId, Observation};
use rusqlite::{Connection, OptionalExtension};
use tokio::sync::{mpsc, oneshot};

pub use read::{DEFAULT_INCIDENT_PAGE, MAX_PAGE};
pub use schema::{MIGRATIONS, Migration};

use self::auth::AuthWrite;
use self::outbox::{OutboxOut, OutboxWrite};
use self::writer::{
    Cmd, Reply, RetentionProgress, RetentionStep, RetentionTable, Shared, Submitted, Writer,
};
use crate::{
    AttemptRecord, AttemptResult, Availability, DayAvailability, IncidentChange, IncidentDetail,
    IncidentFilter, LatencyPoint, LocalUser, MonitorId, MonitorRecord, NewIncident, NewOutbox,
    NotificationRecord, ObservationQuery, OutboxRow, Page, Record, Resolution, Result, Retention,
    RevokeSessions, SessionRecord, Silence, Store, StoreError, StoreHealth, StoreMetrics,
    WriterOptions,
};

/// Idle read-only connections kept for reuse.
const MAX_IDLE_READERS: usize = 4;
/// Commands (flush, incidents, registry, retention) waiting for the writer.
const COMMAND_CAPACITY: usize = 1024;
/// Rows one retention transaction deletes at most.
const RETENTION_ROWS_PER_STEP: usize = 20_000;

/// SQLite implementation of [`Store`].
///
/// How it answers, where the trait leaves room:
/// - Monitors are identified by name; a name never synced is registered on its first
///   observation or incident. Queries about a name the store has never seen return
///   [`StoreError::NotFound`] (availability, observations, series).
/// - `observations`: newest first (ties broken by insertion order); `limit` clamped to
///   1..=1000; the cursor is opaque (base64url) and anything else is [`StoreError::BadCursor`].
/// - `availability*`: from rollups only. Periods are widened to whole minutes (the minute
///   holding `from` and the one holding the last instant before `to` count). Whole hours come
///   from hour rollups; partial edge hours from minute rollups, unless those are older than the
///   minute retention, in which case the whole edge hour counts. `availability_all` leaves out
///   monitors without data in the period. `availability_daily` returns every UTC day touched by
///   the period, days without data with zero counts and no ratio.
/// - `latency_series`: one point per minute/hour/day that has data (no gap filling); `day`
///   merges hour rollups and covers whole days. Quantiles come from
///   [`LogHistogram`](crate::histogram::LogHistogram) (±2 % of the exact nearest-rank value),
///   never above the bucket's exact maximum. Connect quantiles cover every probe that connected;
///   duration quantiles the probes that worked (up/degraded). `failures` counts `down`.
/// - Incidents: `state` keeps the worst state seen while open (down > flapping > degraded);
///   a second `Resolve` is a no-op (safe to retry); `Acknowledge` keeps the first ack.
///   `incidents()` pages newest first; `limit` 0 means 100, at most 1000.
/// - `submit` returns `false` (and counts the row as dropped) when the channel is full or the
///   store is closed. `flush` and `close` return the write error when the disk refuses the
///   rows; the rows stay in the backlog either way.
pub struct SqliteStore {
    obs_tx: mpsc::Sender<Submitted>,
    cmd_tx: mpsc::Sender<Cmd>,
    shared: Arc<Shared>,
    readers: Arc<ReadPool>,
    metrics: StoreMetrics,
    retention: Retention,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// The database file inside the data directory.
    pub const FILE_NAME: &'static str = "portwarden.db";

    /// Opens (creating if needed) `data_dir/portwarden.db`, migrates the schema and starts the
    /// writer thread. Needs no async runtime.
    pub fn open(
        data_dir: &Path,
        retention: Retention,
        writer: WriterOptions,
        metrics: StoreMetrics,
    ) -> Result<SqliteStore> {
        let open_err = |reason: String| StoreError::Open {
            path: data_dir.display().to_string(),
            reason,
        };
        std::fs::create_dir_all(data_dir).map_err(|e| open_err(e.to_string()))?;
        let path = data_dir.join(Self::FILE_NAME);
        let mut conn =
            schema::open_writer(&path).map_err(|e| open_err(format!("{}: {e}", path.display())))?;
        schema::migrate(&mut conn).map_err(|e| open_err(format!("{}: {e}", path.display())))?;

        let opts = WriterOptions {
            batch_rows: writer.batch_rows.max(1),
            channel_capacity: writer.channel_capacity.max(1),
            ..writer
        };
        let (obs_tx, obs_rx) = mpsc::channel(opts.channel_capacity);
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_CAPACITY);
        let shared = Arc::new(Shared::default());
        shared.lock().ok = true;
        metrics.healthy.set(1);
        let w = Writer::new(conn, opts, metrics.clone(), shared.clone());
        let (crash_shared, crash_metrics) = (shared.clone(), metrics.clone());
        std::thread::Builder::new()
            .name("pw-store-writer".into())
            .spawn(move || {
                let run = std::panic::AssertUnwindSafe(move || w.run(obs_rx, cmd_rx));
                if std::panic::catch_unwind(run).is_err() {
                    // A bug, not a disk problem: say so instead of looking healthy forever.
                    tracing::error!("the store writer crashed; nothing more will be written");
                    crash_metrics.healthy.set(0);
                    let mut st = crash_shared.lock();
                    st.ok = false;
                    st.last_error =
                        Some("the store writer crashed (a bug); restart Portwarden".into());
                    st.last_error_at = Some(Utc::now());
                }
            })
            .map_err(|e| open_err(format!("cannot start the writer thread: {e}")))?;

        let readers = Arc::new(ReadPool {
            path: path.clone(),
            idle: Mutex::new(Vec::new()),
        });
        // Fail now, not on the first query, when the file cannot be read.
        readers
            .run(|_| Ok(()))
            .map_err(|e| open_err(e.to_string()))?;
        tracing::info!(path = %path.display(), "store opened");
        Ok(SqliteStore {
            obs_tx,
            cmd_tx,
            shared,
            readers,
            metrics,
            retention,
            path,
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn retention(&self) -> Retention {
        self.retention
    }

    async fn request<T>(&self, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.cmd_tx
            .send(make(tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || pool.run(f))
            .await
            .map_err(|e| StoreError::Db(format!("read task failed: {e}")))?
    }

    fn window(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> read::Window {
        read::Window {
            from,
            to,
            now: Utc::now(),
            minute_retention_ms: i64::try_from(self.retention.minute.as_millis())
                .unwrap_or(i64::MAX),
        }
    }

    async fn outbox(&self, w: OutboxWrite) -> Result<OutboxOut> {
        self.request(|r| Cmd::Outbox(w, r)).await
    }

    async fn retain(&self, table: RetentionTable, cutoff_ms: i64) -> Result<u64> {
        let mut total = 0;
        let mut after = i64::MIN;
        loop {
            let step = RetentionStep {
                table,
                cutoff_ms,
                after_monitor: after,
                max_rows: RETENTION_ROWS_PER_STEP,
            };
            let p: RetentionProgress = self.request(|r| Cmd::Retention(step, r)).await?;
            total += p.deleted;
            if p.done {
                return Ok(total);
            }
            after = p.next_after;
        }
    }
}

/// Read-only connections, opened on demand and reused.
struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    fn run<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let reuse = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match reuse {
            Some(c) => c,
            None => schema::open_reader(&self.path)?,
        };
        let r = f(&conn);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        r
    }
}

fn count(o: OutboxOut) -> u64 {
    match o {
        OutboxOut::Count(n) => n,
        OutboxOut::Rows(r) => r.len() as u64,
    }
}

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl Store for SqliteStore {
    async fn sync_monitors(
        &self,
        monitors: &[MonitorRecord],
    ) -> Result<HashMap<String, MonitorId>> {
        let monitors = monitors.to_vec();
        self.request(|r| Cmd::SyncMonitors(monitors, r)).await
    }

    fn submit(&self, record: Record) -> bool {
        let s = Submitted {
            rec: record,
            at: Instant::now(),
        };
        match self.obs_tx.try_send(s) {
            Ok(()) => true,
            Err(_) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                self.metrics.rows_dropped.inc();
                false
            }
        }
    }

    async fn flush(&self) -> Result<()> {
        self.request(Cmd::Flush).await
    }

    async fn open_incident(&self, new: NewIncident) -> Result<IncidentId> {
        self.request(|r| Cmd::OpenIncident(Box::new(new), r)).await
    }

    async fn change_incident(&self, id: IncidentId, change: IncidentChange) -> Result<()> {
        self.request(|r| Cmd::ChangeIncident(id, Box::new(change), Vec::new(), r))
            .await
    }

    async fn ingest_batch(&self, batch: crate::IngestBatch) -> Result<crate::IngestOutcome> {
        self.request(|r| Cmd::Ingest(Box::new(batch), r)).await
    }

    async fn agent_last_seq(&self, agent: &str, stream: &str) -> Result<u64> {
        let (agent, stream) = (agent.to_string(), stream.to_string());
        self.read(move |c| {
            let v: Option<i64> = c
                .query_row(
                    "SELECT last_seq FROM agent_streams WHERE agent = ?1 AND stream = ?2",
                    rusqlite::params![agent, stream],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(u64::try_from(v.unwrap_or(0)).unwrap_or(0))
        })
        .await
    }

    async fn agent_inbox(&self, limit: usize) -> Result<Vec<crate::InboxBatch>> {
        self.read(move |c| agents::inbox(c, limit)).await
    }

    async fn agent_inbox_done(&self, ids: &[i64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let w = agents::AgentWrite::InboxDone(ids.to_vec());
        self.request(|r| Cmd::Agent(w, r)).await
    }

    async fn agent_heartbeat(
        &self,
        agent: &str,
        location: &str,
        at: DateTime<Utc>,
        heartbeat: serde_json::Value,
    ) -> Result<()> {
        let w = agents::AgentWrite::Heartbeat {
            agent: agent.into(),
            location: location.into(),
            at,
            heartbeat,
        };
        self.request(|r| Cmd::Agent(w, r)).await
    }

    async fn agent_statuses(&self) -> Result<Vec<crate::AgentStatus>> {
        self.read(agents::statuses).await
    }

    async fn open_incidents(&self) -> Result<Vec<Incident>> {
        self.read(read::open_incidents).await
    }

    async fn incidents(&self, filter: &IncidentFilter) -> Result<Page<Incident>> {
        let filter = filter.clone();
        self.read(move |c| read::incidents(c, &filter)).await
    }

    async fn incident(&self, id: IncidentId) -> Result<Option<IncidentDetail>> {
        self.read(move |c| read::incident(c, id)).await
    }

    async fn observations(&self, monitor: &str, q: &ObservationQuery) -> Result<Page<Observation>> {
        let (monitor, q) = (monitor.to_string(), q.clone());
        self.read(move |c| read::observations(c, &monitor, &q))
            .await
    }

    async fn last_observations(&self) -> Result<HashMap<String, Observation>> {
        self.read(read::last_observations).await
    }

    async fn availability(
        &self,
        monitor: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Availability> {
        let (monitor, w) = (monitor.to_string(), self.window(from, to));
        self.read(move |c| read::availability(c, &monitor, &w))
            .await
    }

    async fn availability_all(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<HashMap<String, Availability>> {
        let w = self.window(from, to);
        self.read(move |c| read::availability_all(c, &w)).await
    }

    async fn availability_daily(
        &self,
        monitor: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<DayAvailability>> {
        let (monitor, w) = (monitor.to_string(), self.window(from, to));
        self.read(move |c| read::availability_daily(c, &monitor, &w))
            .await
    }

    async fn latency_series(
        &self,
        monitor: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        resolution: Resolution,
    ) -> Result<Vec<LatencyPoint>> {
        let monitor = monitor.to_string();
        self.read(move |c| read::latency_series(c, &monitor, from, to, resolution))
            .await
    }

    async fn apply_retention(&self, now: DateTime<Utc>) -> Result<u64> {
        let now = codec::to_ms(now);
        let r = self.retention;
        let mut total = self
            .retain(RetentionTable::Observations, now.saturating_sub(ms(r.raw)))
            .await?;
        total += self
            .retain(RetentionTable::Minute, now.saturating_sub(ms(r.minute)))
            .await?;
        total += self
            .retain(RetentionTable::Hour, now.saturating_sub(ms(r.hour)))
            .await?;
        if total > 0 {
            tracing::info!(rows = total, "retention deleted old data");
        }
        Ok(total)
    }

    fn health(&self) -> StoreHealth {
        let queued = (self.obs_tx.max_capacity() - self.obs_tx.capacity()) as u64;
        let held = self.shared.held.load(Ordering::Relaxed);
        let st = self.shared.lock();
        StoreHealth {
            ok: st.ok,
            last_error: st.last_error.clone(),
            last_error_at: st.last_error_at,
            last_commit_at: st.last_commit_at,
            pending_rows: queued + held,
            dropped_rows: self.shared.dropped.load(Ordering::Relaxed),
            lag_seconds: st.oldest_pending.map_or(0.0, |t| t.elapsed().as_secs_f64()),
        }
    }

    async fn close(&self) -> Result<()> {
        self.request(Cmd::Close).await
    }

    async fn connect_sparklines(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        step: std::time::Duration,
    ) -> Result<HashMap<String, Vec<Option<f64>>>> {
        let (from, to, step) = (codec::to_ms(from), codec::to_ms(to), ms(step));
        self.read(move |c| read::connect_sparklines(c, from, to, step))
            .await
    }

    async fn create_session(&self, session: SessionRecord) -> Result<()> {
        self.request(|r| Cmd::Auth(AuthWrite::CreateSession(Box::new(session)), r))
            .await
            .map(|_| ())
    }

    async fn session(&self, id: &str) -> Result<Option<SessionRecord>> {
        let id = id.to_string();
        self.read(move |c| auth::session(c, &id)).await
    }

    async fn touch_session(&self, id: &str, at: DateTime<Utc>) -> Result<()> {
        let id = id.to_string();
        self.request(|r| Cmd::Auth(AuthWrite::Touch { id, at }, r))
            .await
            .map(|_| ())
    }

    async fn revoke_sessions(&self, which: RevokeSessions, at: DateTime<Utc>) -> Result<u64> {
        self.request(|r| Cmd::Auth(AuthWrite::Revoke { which, at }, r))
            .await
    }

    async fn active_sessions(&self, now: DateTime<Utc>) -> Result<Vec<SessionRecord>> {
        self.read(move |c| auth::active_sessions(c, now)).await
    }

    async fn purge_sessions(&self, before: DateTime<Utc>) -> Result<u64> {
        self.request(|r| Cmd::Auth(AuthWrite::Purge { before }, r))
            .await
    }

    async fn change_incident_with(
        &self,
        id: IncidentId,
        change: IncidentChange,
        outbox: Vec<NewOutbox>,
    ) -> Result<()> {
        self.request(|r| Cmd::ChangeIncident(id, Box::new(change), outbox, r))
            .await
    }

    async fn enqueue_outbox(
        &self,
        incident: Option<IncidentId>,
        rows: Vec<NewOutbox>,
        event: Option<IncidentEvent>,
    ) -> Result<u64> {
        match self
            .outbox(OutboxWrite::Enqueue {
                incident,
                rows,
                event,
            })
            .await?
        {
            OutboxOut::Count(n) => Ok(n),
            OutboxOut::Rows(r) => Ok(r.len() as u64),
        }
    }

    async fn claim_outbox(
        &self,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: usize,
    ) -> Result<Vec<OutboxRow>> {
        match self
            .outbox(OutboxWrite::Claim {
                now,
                lease_ms: ms(lease),
                limit,
            })
            .await?
        {
            OutboxOut::Rows(r) => Ok(r),
            OutboxOut::Count(_) => Ok(Vec::new()),
        }
    }

    async fn release_outbox_claims(&self) -> Result<u64> {
        self.outbox(OutboxWrite::ReleaseClaims).await.map(count)
    }

    async fn finish_outbox_attempt(
        &self,
        ids: Vec<i64>,
        attempt: AttemptRecord,
        result: AttemptResult,
    ) -> Result<()> {
        self.outbox(OutboxWrite::Finish {
            ids,
            attempt,
            result,
        })
        .await
        .map(|_| ())
    }

    async fn incident_notifications(&self, id: IncidentId) -> Result<Vec<NotificationRecord>> {
        self.read(move |c| outbox::incident_notifications(c, id))
            .await
    }

    async fn outbox_pending(&self) -> Result<u64> {
        self.read(outbox::pending).await
    }

    async fn create_silence(&self, silence: Silence) -> Result<i64> {
        self.outbox(OutboxWrite::CreateSilence(Box::new(silence)))
            .await
            .map(|o| count(o) as i64)
    }

    async fn silences(&self, now: DateTime<Utc>) -> Result<Vec<Silence>> {
        self.read(move |c| outbox::silences(c, now)).await
    }

    async fn delete_silence(&self, id: i64, now: DateTime<Utc>) -> Result<bool> {
        self.outbox(OutboxWrite::DeleteSilence { id, now })
            .await
            .map(|o| count(o) > 0)
    }

    async fn apply_scan(&self, apply: crate::ScanApply) -> Result<crate::ScanApplied> {
        match self
            .request(|r| Cmd::Exposure(exposure::ExposureWrite::ApplyScan(Box::new(apply)), r))
            .await?
        {
            exposure::ExposureDone::Scan(a) => Ok(a),
            exposure::ExposureDone::Config => Err(StoreError::Db("unexpected reply".into())),
        }
    }

    async fn scans(&self, filter: &crate::ScanFilter) -> Result<Vec<crate::ScanRecord>> {
        let f = filter.clone();
        self.read(move |c| exposure::scans(c, &f)).await
    }

    async fn scan(&self, id: crate::ScanId) -> Result<Option<crate::ScanRecord>> {
        self.read(move |c| exposure::scan(c, id)).await
    }

    async fn findings(&self, filter: &crate::FindingFilter) -> Result<Vec<crate::FindingRecord>> {
        let f = filter.clone();
        self.read(move |c| exposure::findings(c, &f)).await
    }

    async fn finding(&self, id: crate::FindingId) -> Result<Option<crate::FindingRecord>> {
        self.read(move |c| exposure::finding(c, id)).await
    }

    async fn record_config_version(&self, v: crate::ConfigVersion) -> Result<()> {
        self.request(|r| Cmd::Exposure(exposure::ExposureWrite::ConfigVersion(Box::new(v)), r))
            .await
            .map(|_| ())
    }

    async fn config_versions(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<crate::ConfigVersion>> {
        self.read(move |c| exposure::config_versions(c, from, to))
            .await
    }

    async fn local_user(&self, name: &str) -> Result<Option<LocalUser>> {
        let name = name.to_string();
        self.read(move |c| auth::local_user(c, &name)).await
    }

    async fn create_local_user(&self, user: LocalUser) -> Result<bool> {
        self.request(|r| Cmd::Auth(AuthWrite::CreateLocalUser(Box::new(user)), r))
            .await
            .map(|n| n > 0)
    }

    async fn shared_key(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>> {
        let write = AuthWrite::SharedKey {
            name: name.to_string(),
            value: candidate.to_vec(),
            at: Utc::now(),
        };
        self.request(|r| Cmd::Auth(write, r)).await?;
        let name = name.to_string();
        let n = name.clone();
        self.read(move |c| auth::shared_key(c, &n))
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("shared key `{name}`")))
    }
}
