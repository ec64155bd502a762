//! Storage for Portwarden: observations (raw, then rolled up per minute and per hour),
//! incidents with their timelines, and the monitor registry.
//!
//! The [`Store`] trait is what the engine and the server use; [`sqlite::SqliteStore`] is the
//! embedded default (one file, WAL). Observations are *submitted* without waiting: they go
//! through a bounded channel to one writer task that commits in batches (every 250 ms or 1 000
//! rows). Incident changes are *awaited*: they are committed before the caller announces them.
//! When the disk fails (full, read-only), the writer keeps a bounded backlog in memory, reports
//! the failure through [`Store::health`] and metrics, and resumes by itself when writes succeed
//! again.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use portwarden_core::{
    Incident, IncidentEvent, IncidentId, IncidentStatus, LastHealthy, Observation, Scope, Severity,
    State,
};
use serde::{Deserialize, Serialize};

pub mod histogram;
pub mod metrics;
pub mod postgres;
pub mod sqlite;

pub use metrics::StoreMetrics;

/// Internal numeric id of a monitor name (stable across renames of nothing: a new name is a
/// new monitor; a removed monitor keeps its id and history).
pub type MonitorId = i64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(String),
    #[error("cannot open the data directory `{path}`: {reason}")]
    Open { path: String, reason: String },
    #[error("cannot use the PostgreSQL database `{url}`: {reason}")]
    Connect { url: String, reason: String },
    #[error("the store is shutting down")]
    Closed,
    #[error("not found: {0}")]
    NotFound(String),
    #[error("invalid cursor; use the `next_cursor` value of the previous page")]
    BadCursor,
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// How long data is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Raw observations (default 7 days).
    pub raw: Duration,
    /// Per-minute rollups (default 14 days).
    pub minute: Duration,
    /// Per-hour rollups (default 400 days).
    pub hour: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            raw: Duration::from_secs(7 * 86_400),
            minute: Duration::from_secs(14 * 86_400),
            hour: Duration::from_secs(400 * 86_400),
        }
    }
}

/// Tuning of the batched writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterOptions {
    /// Commit at least this often.
    pub flush_every: Duration,
    /// Commit when this many rows are waiting.
    pub batch_rows: usize,
    /// Capacity of the channel between probes and the writer.
    pub channel_capacity: usize,
    /// Most rows kept in memory while the disk refuses writes; beyond it the oldest are
    /// dropped and counted.
    pub backlog_limit: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            flush_every: Duration::from_millis(250),
            batch_rows: 1_000,
            channel_capacity: 65_536,
            backlog_limit: 100_000,
        }
    }
}

/// What the store knows about a monitor (kept after the monitor leaves the config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorRecord {
    pub name: String,
    pub target: String,
    pub check: String,
    pub tier: String,
    /// Service, capability, owner, severity, runbook, labels as JSON.
    pub meta: serde_json::Value,
}

/// An observation with what the store needs besides it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub obs: Observation,
    /// Taken inside a maintenance window: kept, but excluded from availability.
    pub maintenance: bool,
}

/// A batch of observations uploaded by an agent (see [`Store::ingest_batch`]).
#[derive(Debug, Clone, PartialEq)]
pub struct IngestBatch {
    pub agent: String,
    pub stream: String,
    pub seq: u64,
    pub records: Vec<Record>,
    /// The agent's location (recorded with the inbox row and the agent's status).
    pub location: String,
    /// The runs to judge, queued in the agent inbox in the same transaction (empty: the
    /// batch is stored, not judged).
    pub runs: Vec<RemoteRun>,
    /// From the end of the oldest probe in the batch to its arrival (ms), for the status.
    pub lag_ms: Option<f64>,
}

/// One run of a monitor made by an agent: the observations one probe produced.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RemoteRun {
    pub monitor: String,
    pub observations: Vec<Observation>,
}

/// A stored agent batch waiting to be judged (see [`Store::agent_inbox`]).
#[derive(Debug, Clone, PartialEq)]
pub struct InboxBatch {
    /// Position in the inbox; consume in this order.
    pub id: i64,
    pub agent: String,
    pub seq: u64,
    pub location: String,
    pub received_at: DateTime<Utc>,
    pub runs: Vec<RemoteRun>,
}

/// What the store knows about one agent, whichever replica it talks to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentStatus {
    pub agent: String,
    pub location: String,
    /// Last heartbeat or upload.
    pub last_contact: Option<DateTime<Utc>>,
    /// The last heartbeat as the server recorded it (opaque JSON, the server's shape).
    pub heartbeat: Option<serde_json::Value>,
    pub last_batch_at: Option<DateTime<Utc>>,
    pub last_seq: u64,
    pub lag_ms: Option<f64>,
    pub observations: u64,
    pub duplicates: u64,
}

/// What [`Store::ingest_batch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestOutcome {
    /// The batch had been committed before; nothing was written.
    pub duplicate: bool,
    /// The stream's last committed sequence number after the call.
    pub last_seq: u64,
}

/// A new incident.
#[derive(Debug, Clone, PartialEq)]
pub struct NewIncident {
    pub monitor: String,
    pub state: State,
    pub severity: Severity,
    pub scope: Scope,
    pub opened_at: DateTime<Utc>,
    pub error_kind: Option<String>,
    pub message: Option<String>,
    pub last_healthy: Option<LastHealthy>,
    /// The first timeline entry (kind `opened`).
    pub event: IncidentEvent,
    /// Notifications to queue in the same transaction (their incident is this one).
    pub outbox: Vec<NewOutbox>,
}

/// A change to an open incident, applied in one transaction with its timeline event.
#[derive(Debug, Clone, PartialEq)]
pub enum IncidentChange {
    /// Adds an event; optionally updates state, scope, error and message.
    Update {
        state: Option<State>,
        scope: Option<Scope>,
        error_kind: Option<String>,
        message: Option<String>,
        event: IncidentEvent,
    },
    Acknowledge {
        by: String,
        event: IncidentEvent,
    },
    Resolve {
        at: DateTime<Utc>,
        event: IncidentEvent,
    },
}

/// An incident with its timeline, oldest event first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentDetail {
    #[serde(flatten)]
    pub incident: Incident,
    pub timeline: Vec<IncidentEvent>,
    /// Every notification queued for it, with every delivery attempt.
    #[serde(default)]
    pub notifications: Vec<NotificationRecord>,
}

/// Where a queued notification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxStatus {
    /// Waiting (for its group, its retry time, or a dispatcher).
    Pending,
    Delivered,
    /// Not delivered within `notifications.give_up_after`, or refused for good.
    GivenUp,
    /// Not sent on purpose (folded into a parent incident, silenced); kept for the record.
    Suppressed,
}

impl OutboxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Pending => "pending",
            OutboxStatus::Delivered => "delivered",
            OutboxStatus::GivenUp => "given_up",
            OutboxStatus::Suppressed => "suppressed",
        }
    }

    pub fn parse(s: &str) -> Option<OutboxStatus> {
        [
            OutboxStatus::Pending,
            OutboxStatus::Delivered,
            OutboxStatus::GivenUp,
            OutboxStatus::Suppressed,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// A notification intent to queue in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOutbox {
    /// `trigger`, `resolve`, `repeat`, `escalate`, `heartbeat`.
    pub event: String,
    /// The idempotency key is `pw-<incident>-<key>` (or `pw-<key>` without an incident); one
    /// row per key and receiver, so queueing the same intent twice is a no-op.
    pub key: String,
    pub monitor: String,
    pub route: String,
    pub receiver: String,
    /// Pending rows with the same receiver, event and group key go out as one message.
    pub group_key: Option<String>,
    /// The message content for this item (JSON, no secrets).
    pub payload: serde_json::Value,
    pub due_at: DateTime<Utc>,
    /// `Pending`, or `Suppressed` to keep a record of what was not sent (with `note`).
    pub status: OutboxStatus,
    pub note: Option<String>,
}

/// A queued notification as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxRow {
    pub id: i64,
    pub incident_id: Option<IncidentId>,
    pub monitor: String,
    pub event: String,
    pub route: String,
    pub receiver: String,
    pub idempotency_key: String,
    pub group_key: Option<String>,
    #[serde(skip)]
    pub payload: serde_json::Value,
    pub status: OutboxStatus,
    pub created_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    pub attempts: u32,
    /// The last error (redacted by the channel: never a secret) or why it was suppressed.
    pub last_error: Option<String>,
    pub done_at: Option<DateTime<Utc>>,
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub at: DateTime<Utc>,
    pub ok: bool,
    pub http_status: Option<u16>,
    pub latency_ms: f64,
    pub error: Option<String>,
    /// When the next attempt is due (failed attempts that will be retried).
    pub retry_at: Option<DateTime<Utc>>,
}

/// What an attempt means for the queued rows it carried.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptResult {
    Delivered,
    RetryAt(DateTime<Utc>),
    /// Given up, with the reason recorded on the incident.
    GiveUp(String),
    /// Not sent on purpose after all (folded into a parent incident found at send time), with
    /// the reason; no attempt is recorded.
    Suppress(String),
}

/// A queued notification with its attempts (for `GET /api/v1/incidents/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationRecord {
    #[serde(flatten)]
    pub row: OutboxRow,
    pub attempt_log: Vec<AttemptRecord>,
}

/// A silence: matching monitors notify nothing until it expires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    #[serde(default)]
    pub id: i64,
    #[serde(default)]
    pub monitors: Vec<String>,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    pub comment: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct IncidentFilter {
    pub status: Option<IncidentStatus>,
    pub monitor: Option<String>,
    pub limit: usize,
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObservationQuery {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub location: Option<String>,
    /// 1..=1000.
    pub limit: usize,
    /// Opaque; from the previous page's `next_cursor`. Pages go newest first.
    pub cursor: Option<String>,
}

/// One page of results; `next_cursor` is `None` on the last page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Availability over a period, from the probes' outcomes. `up + degraded` count as available;
/// `unknown` (we could not judge) and `maintenance` are excluded from the ratio and reported
/// apart.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Availability {
    pub up: u64,
    pub degraded: u64,
    pub down: u64,
    pub unknown: u64,
    pub maintenance: u64,
    /// (up + degraded) / (up + degraded + down); `None` with no judged samples.
    pub ratio: Option<f64>,
}

impl Availability {
    pub fn judged(&self) -> u64 {
        self.up + self.degraded + self.down
    }

    pub fn compute_ratio(mut self) -> Self {
        let j = self.judged();
        self.ratio = (j > 0).then(|| (self.up + self.degraded) as f64 / j as f64);
        self
    }

    pub fn add(&mut self, o: &Availability) {
        self.up += o.up;
        self.degraded += o.degraded;
        self.down += o.down;
        self.unknown += o.unknown;
        self.maintenance += o.maintenance;
    }
}

/// Availability of one day (UTC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DayAvailability {
    pub day: chrono::NaiveDate,
    #[serde(flatten)]
    pub availability: Availability,
}

/// Latency and failures in one time bucket, from rollups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyPoint {
    pub t: DateTime<Utc>,
    pub count: u64,
    pub failures: u64,
    /// Connect time quantiles (ms) over the bucket; `None` when nothing connected.
    pub connect_p50_ms: Option<f64>,
    pub connect_p95_ms: Option<f64>,
    pub connect_max_ms: Option<f64>,
    /// Total probe duration quantiles (ms).
    pub duration_p50_ms: Option<f64>,
    pub duration_p95_ms: Option<f64>,
    /// TLS handshake quantiles (ms), from probes that did one.
    #[serde(default)]
    pub tls_p50_ms: Option<f64>,
    #[serde(default)]
    pub tls_p95_ms: Option<f64>,
    /// Protocol phase quantiles (ms), from probes that reached it.
    #[serde(default)]
    pub protocol_p50_ms: Option<f64>,
    #[serde(default)]
    pub protocol_p95_ms: Option<f64>,
}

/// Rollup resolution for series queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resolution {
    Minute,
    Hour,
    Day,
}

/// The store's own state, for `/api/v1/health` and metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StoreHealth {
    /// False while the last write attempt failed.
    pub ok: bool,
    /// The last write error (e.g. "database or disk is full"), until a write succeeds.
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub last_commit_at: Option<DateTime<Utc>>,
    /// Rows waiting to be written (channel + backlog).
    pub pending_rows: u64,
    /// Rows dropped because the backlog was full (only while the disk refused writes).
    pub dropped_rows: u64,
    /// Age of the oldest row not yet committed.
    pub lag_seconds: f64,
}

/// A web login session. `id` is the SHA-256 (hex) of the cookie value, never the value itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id: String,
    pub user: String,
    /// The anti-CSRF token every form of this session carries.
    #[serde(skip_serializing)]
    pub csrf: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Client address at login.
    pub remote: Option<String>,
    pub user_agent: Option<String>,
}

/// A user Portwarden created itself (the first-start `admin`).
#[derive(Debug, Clone, PartialEq)]
pub struct LocalUser {
    pub name: String,
    /// argon2 PHC string.
    pub password_hash: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
}

/// Which sessions to revoke.
#[derive(Debug, Clone, PartialEq)]
pub enum RevokeSessions {
    /// One session by id.
    One(String),
    /// Every session of a user.
    User(String),
    /// Every session.
    All,
}

fn unsupported<T>(what: &str) -> Result<T> {
    Err(StoreError::Db(format!("this store does not keep {what}")))
}

/// Id of a stored scan.
pub type ScanId = i64;
/// Id of a stored exposure finding.
pub type FindingId = i64;

/// A scan as stored: what ran, when, how long, what it covered and found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanRecord {
    #[serde(default)]
    pub id: ScanId,
    /// The baseline it checked (`None`: an ad-hoc scan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: f64,
    pub targets: Vec<String>,
    pub hosts: u64,
    pub probes: u64,
    pub open_ports: u64,
    /// Findings opened, still seen, and resolved by this scan.
    pub findings_opened: u64,
    pub findings_open: u64,
    pub findings_resolved: u64,
    /// Coverage against the baseline (hosts and ports expected vs scanned), as JSON.
    pub coverage: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The full scan report (JSON); only filled by [`Store::scan`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<serde_json::Value>,
}

/// An exposure finding as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingRecord {
    pub id: FindingId,
    pub baseline: String,
    /// `unexpected_open`, `expected_open_closed`, `service_changed`.
    pub kind: String,
    pub host: String,
    pub port: u16,
    pub transport: String,
    /// `open` or `resolved`.
    pub status: String,
    pub severity: Severity,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<DateTime<Utc>>,
    pub first_scan: ScanId,
    pub last_scan: ScanId,
    pub message: String,
    /// Banner, service guess, expected service, previous fingerprint (JSON).
    pub detail: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<IncidentId>,
}

/// A finding a scan saw for the first time, with the incident to open for it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewFinding {
    pub baseline: String,
    pub kind: String,
    pub host: String,
    pub port: u16,
    pub transport: String,
    pub severity: Severity,
    pub message: String,
    pub detail: serde_json::Value,
    /// Opened in the same transaction (its outbox rows too).
    pub incident: Option<NewIncident>,
}

/// A finding the scan saw again (updates `last_seen`, message and detail).
#[derive(Debug, Clone, PartialEq)]
pub struct SeenFinding {
    pub id: FindingId,
    pub message: String,
    pub detail: serde_json::Value,
}

/// A finding the scan no longer sees: resolved, with its incident.
#[derive(Debug, Clone, PartialEq)]
pub struct GoneFinding {
    pub id: FindingId,
    /// The incident change to apply in the same transaction (a `Resolve`).
    pub incident: Option<(IncidentId, IncidentChange)>,
    /// Notifications of the resolution, queued in the same transaction.
    pub outbox: Vec<NewOutbox>,
}

/// Everything one scan changes, committed in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanApply {
    pub scan: ScanRecord,
    pub opened: Vec<NewFinding>,
    pub seen: Vec<SeenFinding>,
    pub gone: Vec<GoneFinding>,
}

/// Ids assigned by [`Store::apply_scan`].
#[derive(Debug, Clone, PartialEq)]
pub struct ScanApplied {
    pub scan_id: ScanId,
    pub findings: Vec<FindingId>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScanFilter {
    pub baseline: Option<String>,
    /// Scans that started in `[from, to)`.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// 1..=1000 (0 means 100).
    pub limit: usize,
    /// Keyset paging: only scans after this `(started_at, id)` in the newest-first order (the
    /// last row of the previous page).
    pub before: Option<(DateTime<Utc>, ScanId)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FindingFilter {
    /// `open` or `resolved`.
    pub status: Option<String>,
    pub baseline: Option<String>,
    /// Findings that were open at some time in `[from, to)`.
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// 1..=10000 (0 means 500).
    pub limit: usize,
    /// Keyset paging: only findings after this `(first_seen, id)` in the newest-first order
    /// (the last row of the previous page).
    pub before: Option<(DateTime<Utc>, FindingId)>,
}

/// A configuration version that was in force (recorded when `serve` loads or reloads it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigVersion {
    /// SHA-256 of the config file's bytes, hex.
    pub hash: String,
    /// The git commit of the config's repository, when the file is in a git tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
    /// The file differs from that commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_dirty: Option<bool>,
    pub path: String,
    pub loaded_at: DateTime<Utc>,
    /// `start` or `reload`.
    pub reason: String,
}

/// Everything that reads or writes Portwarden's data.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Registers the monitors of the current config (insert or update by name) and returns
    /// their ids. Monitors absent from `monitors` are kept (history stays queryable).
    async fn sync_monitors(&self, monitors: &[MonitorRecord])
    -> Result<HashMap<String, MonitorId>>;

    /// Queues an observation for the batched writer. Never blocks; when the channel is full the
    /// record is counted as dropped and `false` is returned.
    fn submit(&self, record: Record) -> bool;

    /// Waits until everything submitted before this call is committed (or has failed).
    async fn flush(&self) -> Result<()>;

    /// Opens an incident; committed before this returns.
    async fn open_incident(&self, new: NewIncident) -> Result<IncidentId>;

    /// Applies a change to an incident with its timeline event, in one transaction.
    async fn change_incident(&self, id: IncidentId, change: IncidentChange) -> Result<()>;

    /// Open incidents (used at start-up so a restart does not open a second one).
    async fn open_incidents(&self) -> Result<Vec<Incident>>;

    async fn incidents(&self, filter: &IncidentFilter) -> Result<Page<Incident>>;

    async fn incident(&self, id: IncidentId) -> Result<Option<IncidentDetail>>;

    /// Raw observations of a monitor, newest first, paged.
    async fn observations(&self, monitor: &str, q: &ObservationQuery) -> Result<Page<Observation>>;

    /// The newest observation of each monitor (for start-up and the overview).
    async fn last_observations(&self) -> Result<HashMap<String, Observation>>;

    /// Availability of one monitor over `[from, to)`.
    async fn availability(
        &self,
        monitor: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Availability>;

    /// Availability of every monitor over `[from, to)` in one query.
    async fn availability_all(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<HashMap<String, Availability>>;

    /// Availability per UTC day over `[from, to)`.
    async fn availability_daily(
        &self,
        monitor: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<DayAvailability>>;

    /// Latency and failure series from rollups.
    async fn latency_series(
        &self,
        monitor: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        resolution: Resolution,
    ) -> Result<Vec<LatencyPoint>>;

    /// Deletes data older than the retention; returns rows deleted.
    async fn apply_retention(&self, now: DateTime<Utc>) -> Result<u64>;

    /// The store's own health (never blocks).
    fn health(&self) -> StoreHealth;

    /// Flushes and stops the writer.
    async fn close(&self) -> Result<()>;

    /// Median connect time of every monitor per `step` over `[from, to)` (minute rollups), one
    /// slot per step, `None` where nothing connected: the overview's sparklines.
    async fn connect_sparklines(
        &self,
        _from: DateTime<Utc>,
        _to: DateTime<Utc>,
        _step: Duration,
    ) -> Result<HashMap<String, Vec<Option<f64>>>> {
        unsupported("sparklines")
    }

    /// Saves a new login session; committed before this returns.
    async fn create_session(&self, _session: SessionRecord) -> Result<()> {
        unsupported("sessions")
    }

    /// A session by id (revoked and expired ones too: the caller judges).
    async fn session(&self, _id: &str) -> Result<Option<SessionRecord>> {
        unsupported("sessions")
    }

    /// Records activity on a session (the idle timeout counts from here).
    async fn touch_session(&self, _id: &str, _at: DateTime<Utc>) -> Result<()> {
        unsupported("sessions")
    }

    /// Revokes sessions; returns how many were active.
    async fn revoke_sessions(&self, _which: RevokeSessions, _at: DateTime<Utc>) -> Result<u64> {
        unsupported("sessions")
    }

    /// Sessions neither revoked nor expired at `now`, newest first.
    async fn active_sessions(&self, _now: DateTime<Utc>) -> Result<Vec<SessionRecord>> {
        unsupported("sessions")
    }

    /// Deletes sessions that expired or were revoked before `before`; returns how many.
    async fn purge_sessions(&self, _before: DateTime<Utc>) -> Result<u64> {
        unsupported("sessions")
    }

    /// Stores one batch uploaded by an agent, exactly once: in one transaction, unless
    /// `seq` is not above the stream's last committed sequence number, the records and the
    /// new sequence number are committed together. Returns what happened.
    async fn ingest_batch(&self, _batch: IngestBatch) -> Result<IngestOutcome> {
        unsupported("agent uploads")
    }

    /// The last committed sequence number of an agent's stream (0: none).
    async fn agent_last_seq(&self, _agent: &str, _stream: &str) -> Result<u64> {
        unsupported("agent uploads")
    }

    /// The oldest `limit` agent batches waiting to be judged, in inbox order. Any replica
    /// writes the inbox ([`Store::ingest_batch`]); the leader reads it.
    async fn agent_inbox(&self, _limit: usize) -> Result<Vec<InboxBatch>> {
        unsupported("agent uploads")
    }

    /// Woken when any replica stored an agent batch (PostgreSQL `LISTEN/NOTIFY`); `None`:
    /// the reader polls (and is woken by its own replica's uploads).
    fn agent_inbox_signal(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }

    /// Removes judged inbox rows (on PostgreSQL only while this replica holds the leader
    /// term it was fenced with).
    async fn agent_inbox_done(&self, _ids: &[i64]) -> Result<()> {
        unsupported("agent uploads")
    }

    /// Records an agent's heartbeat (its last contact and what it said).
    async fn agent_heartbeat(
        &self,
        _agent: &str,
        _location: &str,
        _at: DateTime<Utc>,
        _heartbeat: serde_json::Value,
    ) -> Result<()> {
        unsupported("agent uploads")
    }

    /// Every agent's status as recorded by any replica.
    async fn agent_statuses(&self) -> Result<Vec<AgentStatus>> {
        unsupported("agent uploads")
    }

    /// Applies a change to an incident and queues `outbox` rows in the same transaction.
    async fn change_incident_with(
        &self,
        id: IncidentId,
        change: IncidentChange,
        outbox: Vec<NewOutbox>,
    ) -> Result<()> {
        if outbox.is_empty() {
            self.change_incident(id, change).await
        } else {
            unsupported("the outbox")
        }
    }

    /// Queues rows (skipping any whose idempotency key and receiver are queued already) and,
    /// when at least one was new, adds `event` to the incident's timeline, in one transaction.
    /// Returns how many rows were new.
    async fn enqueue_outbox(
        &self,
        _incident: Option<IncidentId>,
        _rows: Vec<NewOutbox>,
        _event: Option<IncidentEvent>,
    ) -> Result<u64> {
        unsupported("the outbox")
    }

    /// Claims pending rows that are due at `now` (plus every pending row of the same group as
    /// a due one) for `lease`, oldest first, at most `limit`. PostgreSQL: `FOR UPDATE SKIP
    /// LOCKED`.
    async fn claim_outbox(
        &self,
        _now: DateTime<Utc>,
        _lease: Duration,
        _limit: usize,
    ) -> Result<Vec<OutboxRow>> {
        unsupported("the outbox")
    }

    /// Drops every claim (the one dispatcher starting: claims of a killed process end now).
    async fn release_outbox_claims(&self) -> Result<u64> {
        unsupported("the outbox")
    }

    /// Records one attempt on each of `ids` (rows sent together) and applies its result;
    /// delivered and given-up rows are noted on their incidents' timelines.
    async fn finish_outbox_attempt(
        &self,
        _ids: Vec<i64>,
        _attempt: AttemptRecord,
        _result: AttemptResult,
    ) -> Result<()> {
        unsupported("the outbox")
    }

    /// Every row queued for an incident, with its attempts.
    async fn incident_notifications(&self, _id: IncidentId) -> Result<Vec<NotificationRecord>> {
        unsupported("the outbox")
    }

    /// Rows still pending (for health and metrics).
    async fn outbox_pending(&self) -> Result<u64> {
        unsupported("the outbox")
    }

    /// Saves a silence; returns its id.
    async fn create_silence(&self, _silence: Silence) -> Result<i64> {
        unsupported("silences")
    }

    /// Silences not expired at `now`, newest first.
    async fn silences(&self, _now: DateTime<Utc>) -> Result<Vec<Silence>> {
        unsupported("silences")
    }

    /// Ends a silence now; returns whether it existed and was active.
    async fn delete_silence(&self, _id: i64, _now: DateTime<Utc>) -> Result<bool> {
        unsupported("silences")
    }

    /// Records a scan and its findings' changes (and their incidents) in one transaction.
    async fn apply_scan(&self, _apply: ScanApply) -> Result<ScanApplied> {
        unsupported("scans")
    }

    /// Scans, newest first (without their full reports).
    async fn scans(&self, _filter: &ScanFilter) -> Result<Vec<ScanRecord>> {
        unsupported("scans")
    }

    /// One scan with its full report.
    async fn scan(&self, _id: ScanId) -> Result<Option<ScanRecord>> {
        unsupported("scans")
    }

    /// Findings, newest first.
    async fn findings(&self, _filter: &FindingFilter) -> Result<Vec<FindingRecord>> {
        unsupported("findings")
    }

    async fn finding(&self, _id: FindingId) -> Result<Option<FindingRecord>> {
        unsupported("findings")
    }

    /// Records the config version in force, unless it equals the latest one recorded.
    async fn record_config_version(&self, _v: ConfigVersion) -> Result<()> {
        unsupported("config versions")
    }

    /// Config versions in force during `[from, to)`: the one in force at `from`, then every
    /// one loaded before `to`, oldest first.
    async fn config_versions(
        &self,
        _from: DateTime<Utc>,
        _to: DateTime<Utc>,
    ) -> Result<Vec<ConfigVersion>> {
        unsupported("config versions")
    }

    /// A user Portwarden created itself.
    async fn local_user(&self, _name: &str) -> Result<Option<LocalUser>> {
        unsupported("local users")
    }

    /// Creates a local user unless one with that name exists; returns whether it was created.
    async fn create_local_user(&self, _user: LocalUser) -> Result<bool> {
        unsupported("local users")
    }

    /// The key named `name` that every replica on this store shares: `candidate` if none was
    /// stored yet (the first caller's wins, atomically), else the stored one.
    async fn shared_key(&self, _name: &str, _candidate: &[u8]) -> Result<Vec<u8>> {
        unsupported("shared keys")
    }
}
