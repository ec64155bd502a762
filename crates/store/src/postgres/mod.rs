//! The PostgreSQL store, for several `portwarden serve` replicas on one database.
//!
//! Selected with `store: postgres://user@host:5432/db` in the config. Same data model, same
//! answers and same migration versions as the SQLite store (the store test suite runs against
//! both); what differs:
//! - **Connections**: a small [`deadpool_postgres`] pool (default 8) serves reads and awaited
//!   writes (incidents, registry, sessions) — each one transaction on a pooled connection. A
//!   pool instead of one connection because reads must not wait behind each other, and
//!   deadpool because it is the maintained, minimal pool for tokio-postgres (recycling checks
//!   closed connections, waits are bounded).
//! - **Observations** go through a bounded channel to one writer task per replica that commits
//!   in batches with rollups merged under row locks ([`writer`]), so several replicas may
//!   write the same buckets.
//! - **Migrations** run under an advisory lock: replicas starting together migrate once.
//! - **Leadership** ([`leader`]): one replica holds a session advisory lock on a dedicated
//!   connection and runs evaluation and notification; the others take over when it goes.
//!
//! TLS: `sslmode=require` in the URL connects with rustls and verifies the server's certificate
//! and name (like libpq's `verify-full`) against the system roots, or against the CA file
//! named by `sslrootcert=`. Without it (`disable`, or the default `prefer`) the connection is
//! plain text.

mod exposure;
pub mod leader;
mod ops;
mod outbox;
mod read;
pub mod schema;
mod writer;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use portwarden_core::{Incident, IncidentEvent, IncidentId, Observation};
use tokio::sync::{mpsc, oneshot};

use self::ops::RetentionTable;
use self::writer::{Cmd, Writer};
use crate::sqlite::codec::to_ms;
use crate::sqlite::read::Window;
use crate::sqlite::writer::{Shared, Submitted};
use crate::{
    AttemptRecord, AttemptResult, Availability, DayAvailability, IncidentChange, IncidentDetail,
    IncidentFilter, LatencyPoint, LocalUser, MonitorId, MonitorRecord, NewIncident, NewOutbox,
    NotificationRecord, ObservationQuery, OutboxRow, Page, Record, Resolution, Result, Retention,
    RevokeSessions, SessionRecord, Silence, Store, StoreError, StoreHealth, StoreMetrics,
    WriterOptions,
};

/// Connections in the pool (reads and awaited writes; the writer takes one while committing).
pub const POOL_SIZE: usize = 8;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const POOL_WAIT: Duration = Duration::from_secs(15);

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Db(describe(&e))
    }
}

/// A tokio-postgres error as one line: the server's message (with detail) when it sent one.
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("PostgreSQL: {}", db.message());
            if let Some(d) = db.detail() {
                s.push_str(&format!(" ({d})"));
            }
            s
        }
        None => {
            // The cause says what went wrong (refused, certificate, timeout...).
            let mut s = format!("PostgreSQL: {e}");
            let mut src = std::error::Error::source(e);
            while let Some(c) = src {
                let c_text = c.to_string();
                if !s.contains(&c_text) {
                    s.push_str(": ");
                    s.push_str(&c_text);
                }
                src = c.source();
            }
            s
        }
    }
}

pub(crate) fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => {
            StoreError::Db(format!("cannot connect: {}", describe(&e)))
        }
        other => StoreError::Db(format!("PostgreSQL connection pool: {other}")),
    }
}

/// Where a `postgres://` URL points, without the password (for logs and errors).
pub fn redact(cfg: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let hosts: Vec<String> = cfg
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let port = cfg
                .get_ports()
                .get(i)
                .or(cfg.get_ports().first())
                .copied()
                .unwrap_or(5432);
            match h {
                Host::Tcp(n) => format!("{n}:{port}"),
                Host::Unix(p) => format!("{}:{port}", p.display()),
            }
        })
        .collect();
    format!(
        "postgres://{}@{}/{}",
        cfg.get_user().unwrap_or(""),
        hosts.join(","),
        cfg.get_dbname().unwrap_or("")
    )
}

/// How connections to PostgreSQL are made: plain, or TLS (rustls) for `sslmode=require`.
#[derive(Clone)]
pub enum Tls {
    Off,
    Rustls(tokio_postgres_rustls::MakeRustlsConnect),
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Tls::Off => "Tls::Off",
            Tls::Rustls(_) => "Tls::Rustls",
        })
    }
}

/// A connection's background task, whatever its TLS type.
pub type ConnectionTask = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

impl Tls {
    /// One connection whose notifications wake `signal` (the agent inbox listener).
    pub async fn connect_listening(
        &self,
        cfg: &tokio_postgres::Config,
        signal: Arc<tokio::sync::Notify>,
    ) -> std::result::Result<(tokio_postgres::Client, ConnectionTask), tokio_postgres::Error> {
        match self {
            Tls::Off => {
                let (c, conn) = cfg.connect(tokio_postgres::NoTls).await?;
                Ok((c, Box::pin(drive_listening(conn, signal))))
            }
            Tls::Rustls(t) => {
                let (c, conn) = cfg.connect(t.clone()).await?;
                Ok((c, Box::pin(drive_listening(conn, signal))))
            }
        }
    }

    /// One connection (the leader lock's), with this TLS setting.
    pub async fn connect(
        &self,
        cfg: &tokio_postgres::Config,
    ) -> std::result::Result<(tokio_postgres::Client, ConnectionTask), tokio_postgres::Error> {
        match self {
            Tls::Off => {
                let (c, conn) = cfg.connect(tokio_postgres::NoTls).await?;
                let task: ConnectionTask = Box::pin(async move {
                    let _ = conn.await;
                });
                Ok((c, task))
            }
            Tls::Rustls(t) => {
                let (c, conn) = cfg.connect(t.clone()).await?;
                let task: ConnectionTask = Box::pin(async move {
                    let _ = conn.await;
                });
                Ok((c, task))
            }
        }
    }
}

/// Drives a connection, waking `signal` for every notification it receives.
async fn drive_listening<S, T>(
    mut conn: tokio_postgres::Connection<S, T>,
    signal: Arc<tokio::sync::Notify>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            Some(Ok(tokio_postgres::AsyncMessage::Notification(_))) => signal.notify_one(),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return,
        }
    }
}

/// Takes `sslrootcert=PATH` out of the URL (tokio-postgres does not know it).
fn take_rootcert(url: &str) -> (String, Option<String>) {
    let mut root = None;
    let mut keep = |kv: &&str| match kv.strip_prefix("sslrootcert=") {
        Some(v) => {
            root = Some(v.to_string());
            false
        }
        None => true,
    };
    let out = if let Some((base, query)) = url.split_once('?') {
        let rest: Vec<&str> = query.split('&').filter(&mut keep).collect();
        if rest.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", rest.join("&"))
        }
    } else if !url.contains("://") {
        let rest: Vec<&str> = url.split_whitespace().filter(&mut keep).collect();
        rest.join(" ")
    } else {
        url.to_string()
    };
    (out, root)
}

fn rustls_config(rootcert: Option<&str>) -> std::result::Result<rustls::ClientConfig, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match rootcert {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect())
                .map_err(|e| format!("sslrootcert `{path}`: {e}"))?;
            if certs.is_empty() {
                return Err(format!("sslrootcert `{path}` holds no PEM certificate"));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| format!("sslrootcert `{path}`: {e}"))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return Err(
                    "sslmode=require: no system CA certificates found; name the CA \
                            with sslrootcert=/path/ca.pem"
                        .into(),
                );
            }
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Parses a `postgres://` URL (or `key=value` string) for the store; refuses what it cannot
/// honour. The error never repeats the URL (it may hold a password).
pub fn parse_url(url: &str) -> std::result::Result<tokio_postgres::Config, String> {
    parse_url_tls(url).map(|(c, _)| c)
}

/// [`parse_url`] with the TLS setting it asks for (`sslmode=require`, `sslrootcert=`).
pub fn parse_url_tls(url: &str) -> std::result::Result<(tokio_postgres::Config, Tls), String> {
    let (url, rootcert) = take_rootcert(url);
    let mut cfg = tokio_postgres::Config::from_str(&url).map_err(|e| {
        format!(
            "not a valid PostgreSQL URL ({e}); write postgres://user:password@host:5432/database"
        )
    })?;
    let tls = if cfg.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
        Tls::Rustls(tokio_postgres_rustls::MakeRustlsConnect::new(
            rustls_config(rootcert.as_deref())?,
        ))
    } else {
        if rootcert.is_some() {
            return Err(
                "sslrootcert is set but sslmode is not `require`: add sslmode=require \
                        to connect with TLS"
                    .into(),
            );
        }
        cfg.ssl_mode(tokio_postgres::config::SslMode::Disable);
        Tls::Off
    };
    if cfg.get_hosts().is_empty() {
        return Err("the URL names no host; write postgres://user@host:5432/database".into());
    }
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(CONNECT_TIMEOUT);
    }
    if cfg.get_application_name().is_none() {
        cfg.application_name("portwarden");
    }
    // Dead peers are noticed by the kernel, not only at the next query.
    cfg.keepalives(true);
    cfg.keepalives_idle(Duration::from_secs(10));
    Ok((cfg, tls))
}

/// PostgreSQL implementation of [`Store`]; answers exactly like
/// [`SqliteStore`](crate::sqlite::SqliteStore) (see its documentation for the details the
/// trait leaves open).
pub struct PgStore {
    pool: Pool,
    obs_tx: mpsc::Sender<Submitted>,
    cmd_tx: mpsc::Sender<Cmd>,
    shared: Arc<Shared>,
    metrics: StoreMetrics,
    retention: Retention,
    closed: AtomicBool,
    config: tokio_postgres::Config,
    tls: Tls,
    target: String,
    /// The leader term this replica holds (see [`leader`]): 0 unfenced, -1 not the leader.
    fence: Arc<AtomicI64>,
    /// Woken by `NOTIFY portwarden_agent_inbox` (any replica stored an agent batch); the
    /// listening connection starts on first use.
    inbox_signal: std::sync::OnceLock<Arc<tokio::sync::Notify>>,
    /// Set on close: the listening connection ends.
    closing: tokio::sync::watch::Sender<bool>,
}

/// The channel every replica notifies when it stored an agent batch.
const INBOX_CHANNEL: &str = "portwarden_agent_inbox";

/// Keeps one connection listening on [`INBOX_CHANNEL`] and wakes `signal` per notification;
/// reconnects after a failure (and wakes once then, in case one was missed) until `closing`.
async fn inbox_listener(
    config: tokio_postgres::Config,
    tls: Tls,
    signal: Arc<tokio::sync::Notify>,
    mut closing: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if *closing.borrow() {
            return;
        }
        let listened = async {
            let (client, task) = tls.connect_listening(&config, signal.clone()).await?;
            let task = tokio::spawn(task);
            client
                .batch_execute(&format!("LISTEN {INBOX_CHANNEL}"))
                .await?;
            signal.notify_one();
            let _ = task.await;
            drop(client);
            Ok::<(), tokio_postgres::Error>(())
        };
        tokio::select! {
            r = listened => {
                if let Err(e) = r {
                    tracing::debug!(error = %describe(&e), "agent inbox listener: reconnecting");
                }
            }
            _ = closing.changed() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = closing.changed() => return,
        }
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("database", &self.target)
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects, migrates the schema and starts the writer task. Needs a tokio runtime.
    pub async fn open(
        url: &str,
        retention: Retention,
        writer: WriterOptions,
        metrics: StoreMetrics,
    ) -> Result<PgStore> {
        let (config, tls) = parse_url_tls(url).map_err(|reason| StoreError::Connect {
            url: "postgres://…".into(),
            reason,
        })?;
        let target = redact(&config);
        let open_err = |reason: String| StoreError::Connect {
            url: target.clone(),
            reason,
        };
        let mc = || ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let mgr = match &tls {
            Tls::Off => Manager::from_config(config.clone(), tokio_postgres::NoTls, mc()),
            Tls::Rustls(t) => Manager::from_config(config.clone(), t.clone(), mc()),
        };
        let pool = Pool::builder(mgr)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| open_err(e.to_string()))?;
        {
            let mut c = pool
                .get()
                .await
                .map_err(|e| open_err(pool_error(e).to_string()))?;
            schema::migrate(&mut c)
                .await
                .map_err(|e| open_err(e.to_string()))?;
        }
        let opts = WriterOptions {
            batch_rows: writer.batch_rows.max(1),
            channel_capacity: writer.channel_capacity.max(1),
            ..writer
        };
        let (obs_tx, obs_rx) = mpsc::channel(opts.channel_capacity);
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let shared = Arc::new(Shared::default());
        shared.lock().ok = true;
        metrics.healthy.set(1);
        let w = Writer::new(pool.clone(), opts, metrics.clone(), shared.clone());
        tokio::spawn(w.run(obs_rx, cmd_rx));
        tracing::info!(database = %target, "store opened (PostgreSQL)");
        Ok(PgStore {
            pool,
            obs_tx,
            cmd_tx,
            shared,
            metrics,
            retention,
            closed: AtomicBool::new(false),
            config,
            tls,
            target,
            fence: Arc::new(AtomicI64::new(0)),
            inbox_signal: std::sync::OnceLock::new(),
            closing: tokio::sync::watch::channel(false).0,
        })
    }

    /// Where the store is (`postgres://user@host:port/db`, never the password).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The fencing term shared with [`leader::Leadership::campaign`]: once a replica
    /// campaigns, its incident writes and outbox claims succeed only while it holds the
    /// database's current leader term.
    pub fn fence(&self) -> Arc<AtomicI64> {
        self.fence.clone()
    }

    fn term(&self) -> i64 {
        self.fence.load(Ordering::Acquire)
    }

    /// The connection settings (for the leader lock's own connection).
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// How connections are made (plain or TLS), for the leader lock's own connection.
    pub fn tls(&self) -> Tls {
        self.tls.clone()
    }

    pub fn retention(&self) -> Retention {
        self.retention
    }

    async fn client(&self) -> Result<deadpool_postgres::Client> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(StoreError::Closed);
        }
        match self.pool.get().await {
            Ok(c) => Ok(c),
            Err(e) => {
                let e = pool_error(e);
                self.shared.mark_failed(&self.metrics, &e.to_string());
                Err(e)
            }
        }
    }

    /// A finished awaited write: a success heals health when nothing is waiting in the writer.
    fn track<T>(&self, r: Result<T>) -> Result<T> {
        if r.is_ok() && !self.shared.lock().ok && self.shared.held.load(Ordering::Relaxed) == 0 {
            self.shared.mark_ok(&self.metrics);
        }
        r
    }

    fn window(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Window {
        Window {
            from,
            to,
            now: Utc::now(),
            minute_retention_ms: i64::try_from(self.retention.minute.as_millis())
                .unwrap_or(i64::MAX),
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl Store for PgStore {
    async fn sync_monitors(
        &self,
        monitors: &[MonitorRecord],
    ) -> Result<HashMap<String, MonitorId>> {
        let mut c = self.client().await?;
        self.track(ops::sync_monitors(&mut c, monitors).await)
    }

    fn submit(&self, record: Record) -> bool {
        let s = Submitted {
            rec: record,
            at: Instant::now(),
        };
        match self.obs_tx.try_send(s) {
            Ok(()) => true,
            Err(_) => {
                self.shared
                    .dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.metrics.rows_dropped.inc();
                false
            }
        }
    }

    async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.cmd_tx
            .send(Cmd::Flush(tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn ingest_batch(&self, batch: crate::IngestBatch) -> Result<crate::IngestOutcome> {
        let mut c = self.client().await?;
        let r = ingest(&mut c, &batch).await;
        if r.as_ref().is_ok_and(|o| !o.duplicate) {
            let n = batch.records.len() as u64;
            self.metrics.rows_written.inc_by(n);
            self.metrics.batch_rows.observe(n as f64);
        }
        self.track(r)
    }

    async fn agent_last_seq(&self, agent: &str, stream: &str) -> Result<u64> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                "SELECT last_seq FROM agent_streams WHERE agent = $1 AND stream = $2",
                &[&agent, &stream],
            )
            .await?;
        Ok(match row {
            Some(r) => u64::try_from(r.try_get::<_, i64>(0)?).unwrap_or(0),
            None => 0,
        })
    }

    async fn agent_inbox(&self, limit: usize) -> Result<Vec<crate::InboxBatch>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT id, agent, seq, location, received_at, runs FROM agent_inbox
                 ORDER BY id LIMIT $1",
                &[&(limit as i64)],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(crate::sqlite::agents::inbox_row(
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
                r.try_get::<_, &str>(5)?,
            )?);
        }
        Ok(out)
    }

    fn agent_inbox_signal(&self) -> Option<Arc<tokio::sync::Notify>> {
        Some(
            self.inbox_signal
                .get_or_init(|| {
                    let signal = Arc::new(tokio::sync::Notify::new());
                    tokio::spawn(inbox_listener(
                        self.config.clone(),
                        self.tls.clone(),
                        signal.clone(),
                        self.closing.subscribe(),
                    ));
                    signal
                })
                .clone(),
        )
    }

    async fn agent_inbox_done(&self, ids: &[i64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        ops::check_fence(&tx, self.term()).await?;
        tx.execute("DELETE FROM agent_inbox WHERE id = ANY($1)", &[&ids])
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn agent_heartbeat(
        &self,
        agent: &str,
        location: &str,
        at: DateTime<Utc>,
        heartbeat: serde_json::Value,
    ) -> Result<()> {
        let c = self.client().await?;
        let r = c
            .execute(
                "INSERT INTO agent_status (agent, location, last_contact, heartbeat)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (agent) DO UPDATE SET location = EXCLUDED.location,
                     last_contact = GREATEST(agent_status.last_contact, EXCLUDED.last_contact),
                     heartbeat = EXCLUDED.heartbeat",
                &[
                    &agent,
                    &location,
                    &at.timestamp_millis(),
                    &heartbeat.to_string(),
                ],
            )
            .await
            .map(|_| ())
            .map_err(StoreError::from);
        self.track(r)
    }

    async fn agent_statuses(&self) -> Result<Vec<crate::AgentStatus>> {
        let c = self.client().await?;
        let rows = c
            .query(
                &format!(
                    "SELECT {} FROM agent_status ORDER BY agent",
                    crate::sqlite::agents::STATUS_COLUMNS
                ),
                &[],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(crate::sqlite::agents::status_row(
                r.try_get(0)?,
                r.try_get(1)?,
                r.try_get(2)?,
                r.try_get(3)?,
                r.try_get(4)?,
                r.try_get(5)?,
                r.try_get(6)?,
                r.try_get(7)?,
                r.try_get(8)?,
            )?);
        }
        Ok(out)
    }

    async fn open_incident(&self, new: NewIncident) -> Result<IncidentId> {
        let mut c = self.client().await?;
        self.track(ops::open_incident(&mut c, &new, self.term()).await)
    }

    async fn change_incident(&self, id: IncidentId, change: IncidentChange) -> Result<()> {
        let mut c = self.client().await?;
        self.track(ops::change_incident(&mut c, id, &change, &[], self.term()).await)
    }

    async fn change_incident_with(
        &self,
        id: IncidentId,
        change: IncidentChange,
        outbox: Vec<NewOutbox>,
    ) -> Result<()> {
        let mut c = self.client().await?;
        self.track(ops::change_incident(&mut c, id, &change, &outbox, self.term()).await)
    }

    async fn enqueue_outbox(
        &self,
        incident: Option<IncidentId>,
        rows: Vec<NewOutbox>,
        event: Option<IncidentEvent>,
    ) -> Result<u64> {
        let mut c = self.client().await?;
        self.track(outbox::enqueue(&mut c, incident, &rows, event.as_ref(), self.term()).await)
    }

    async fn claim_outbox(
        &self,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<OutboxRow>> {
        let mut c = self.client().await?;
        self.track(outbox::claim(&mut c, to_ms(now), ms(lease), limit, self.term()).await)
    }

    async fn release_outbox_claims(&self) -> Result<u64> {
        let c = self.client().await?;
        self.track(outbox::release_claims(&c).await)
    }

    async fn finish_outbox_attempt(
        &self,
        ids: Vec<i64>,
        attempt: AttemptRecord,
        result: AttemptResult,
    ) -> Result<()> {
        let mut c = self.client().await?;
        self.track(outbox::finish(&mut c, &ids, &attempt, &result).await)
    }

    async fn incident_notifications(&self, id: IncidentId) -> Result<Vec<NotificationRecord>> {
        outbox::incident_notifications(&*self.client().await?, id).await
    }

    async fn outbox_pending(&self) -> Result<u64> {
        outbox::pending(&*self.client().await?).await
    }

    async fn create_silence(&self, silence: Silence) -> Result<i64> {
        let c = self.client().await?;
        self.track(outbox::create_silence(&c, &silence).await)
    }

    async fn silences(&self, now: DateTime<Utc>) -> Result<Vec<Silence>> {
        outbox::silences(&*self.client().await?, now).await
    }

    async fn delete_silence(&self, id: i64, now: DateTime<Utc>) -> Result<bool> {
        let c = self.client().await?;
        self.track(outbox::delete_silence(&c, id, now).await)
    }

    async fn apply_scan(&self, apply: crate::ScanApply) -> Result<crate::ScanApplied> {
        let mut c = self.client().await?;
        self.track(exposure::apply_scan(&mut c, &apply, self.term()).await)
    }

    async fn scans(&self, filter: &crate::ScanFilter) -> Result<Vec<crate::ScanRecord>> {
        exposure::scans(&*self.client().await?, filter).await
    }

    async fn scan(&self, id: crate::ScanId) -> Result<Option<crate::ScanRecord>> {
        exposure::scan(&*self.client().await?, id).await
    }

    async fn findings(&self, filter: &crate::FindingFilter) -> Result<Vec<crate::FindingRecord>> {
        exposure::findings(&*self.client().await?, filter).await
    }

    async fn finding(&self, id: crate::FindingId) -> Result<Option<crate::FindingRecord>> {
        exposure::finding(&*self.client().await?, id).await
    }

    async fn record_config_version(&self, v: crate::ConfigVersion) -> Result<()> {
        let mut c = self.client().await?;
        self.track(exposure::record_config_version(&mut c, &v).await)
    }

    async fn config_versions(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<crate::ConfigVersion>> {
        exposure::config_versions(&*self.client().await?, from, to).await
    }

    async fn open_incidents(&self) -> Result<Vec<Incident>> {
        read::open_incidents(&*self.client().await?).await
    }

    async fn incidents(&self, filter: &IncidentFilter) -> Result<Page<Incident>> {
        read::incidents(&*self.client().await?, filter).await
    }

    async fn incident(&self, id: IncidentId) -> Result<Option<IncidentDetail>> {
        read::incident(&*self.client().await?, id).await
    }

    async fn observations(&self, monitor: &str, q: &ObservationQuery) -> Result<Page<Observation>> {
        read::observations(&*self.client().await?, monitor, q).await
    }

    async fn last_observations(&self) -> Result<HashMap<String, Observation>> {
        read::last_observations(&*self.client().await?).await
    }

    async fn availability(
        &self,
        monitor: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Availability> {
        let w = self.window(from, to);
        read::availability(&*self.client().await?, monitor, &w).await
    }

    async fn availability_all(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<HashMap<String, Availability>> {
        let w = self.window(from, to);
        read::availability_all(&*self.client().await?, &w).await
    }

    async fn availability_daily(
        &self,
        monitor: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<DayAvailability>> {
        let w = self.window(from, to);
        read::availability_daily(&*self.client().await?, monitor, &w).await
    }

    async fn latency_series(
        &self,
        monitor: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        resolution: Resolution,
    ) -> Result<Vec<LatencyPoint>> {
        read::latency_series(&*self.client().await?, monitor, from, to, resolution).await
    }

    async fn apply_retention(&self, now: DateTime<Utc>) -> Result<u64> {
        let now = to_ms(now);
        let r = self.retention;
        let c = self.client().await?;
        let mut total = ops::retain(
            &c,
            RetentionTable::Observations,
            now.saturating_sub(ms(r.raw)),
        )
        .await?;
        total += ops::retain(&c, RetentionTable::Minute, now.saturating_sub(ms(r.minute))).await?;
        total += ops::retain(&c, RetentionTable::Hour, now.saturating_sub(ms(r.hour))).await?;
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
        let (tx, rx) = oneshot::channel();
        self.cmd_tx
            .send(Cmd::Close(tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        let r = rx.await.map_err(|_| StoreError::Closed)?;
        self.closed.store(true, Ordering::Relaxed);
        self.closing.send_replace(true);
        self.pool.close();
        r
    }

    async fn connect_sparklines(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        step: Duration,
    ) -> Result<HashMap<String, Vec<Option<f64>>>> {
        read::connect_sparklines(&*self.client().await?, to_ms(from), to_ms(to), ms(step)).await
    }

    async fn create_session(&self, session: SessionRecord) -> Result<()> {
        let c = self.client().await?;
        self.track(ops::create_session(&c, &session).await)
    }

    async fn session(&self, id: &str) -> Result<Option<SessionRecord>> {
        ops::session(&*self.client().await?, id).await
    }

    async fn touch_session(&self, id: &str, at: DateTime<Utc>) -> Result<()> {
        let c = self.client().await?;
        self.track(ops::touch_session(&c, id, at).await)
    }

    async fn revoke_sessions(&self, which: RevokeSessions, at: DateTime<Utc>) -> Result<u64> {
        let c = self.client().await?;
        self.track(ops::revoke_sessions(&c, &which, at).await)
    }

    async fn active_sessions(&self, now: DateTime<Utc>) -> Result<Vec<SessionRecord>> {
        ops::active_sessions(&*self.client().await?, now).await
    }

    async fn purge_sessions(&self, before: DateTime<Utc>) -> Result<u64> {
        let c = self.client().await?;
        self.track(ops::purge_sessions(&c, before).await)
    }

    async fn local_user(&self, name: &str) -> Result<Option<LocalUser>> {
        ops::local_user(&*self.client().await?, name).await
    }

    async fn create_local_user(&self, user: LocalUser) -> Result<bool> {
        let c = self.client().await?;
        self.track(ops::create_local_user(&c, &user).await)
    }

    async fn shared_key(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>> {
        let c = self.client().await?;
        self.track(ops::shared_key(&c, name, candidate).await)
    }
}

/// One agent batch in one transaction: lock the stream's row, skip a repeat, write the rows
/// and their rollups, raise the sequence number.
async fn ingest(
    c: &mut deadpool_postgres::Client,
    b: &crate::IngestBatch,
) -> Result<crate::IngestOutcome> {
    let seq = i64::try_from(b.seq)
        .map_err(|_| StoreError::Db(format!("sequence number {} is too large", b.seq)))?;
    let now = Utc::now().timestamp_millis();
    let tx = c.transaction().await?;
    tx.execute(
        "INSERT INTO agent_streams (agent, stream, last_seq, updated_at) VALUES ($1, $2, 0, $3)
         ON CONFLICT (agent, stream) DO NOTHING",
        &[&b.agent, &b.stream, &now],
    )
    .await?;
    let last: i64 = tx
        .query_one(
            "SELECT last_seq FROM agent_streams WHERE agent = $1 AND stream = $2 FOR UPDATE",
            &[&b.agent, &b.stream],
        )
        .await?
        .try_get(0)?;
    tx.execute(
        "INSERT INTO agent_status (agent, location, last_contact) VALUES ($1, $2, $3)
         ON CONFLICT (agent) DO UPDATE SET location = EXCLUDED.location,
             last_contact = GREATEST(agent_status.last_contact, EXCLUDED.last_contact)",
        &[&b.agent, &b.location, &now],
    )
    .await?;
    if seq <= last {
        tx.execute(
            "UPDATE agent_status SET duplicates = duplicates + 1, last_seq = $2 WHERE agent = $1",
            &[&b.agent, &last],
        )
        .await?;
        tx.commit().await?;
        return Ok(crate::IngestOutcome {
            duplicate: true,
            last_seq: u64::try_from(last).unwrap_or(0),
        });
    }
    let at = std::time::Instant::now();
    let rows: Vec<crate::sqlite::writer::Submitted> = b
        .records
        .iter()
        .map(|r| crate::sqlite::writer::Submitted { rec: r.clone(), at })
        .collect();
    let refs: Vec<&crate::sqlite::writer::Submitted> = rows.iter().collect();
    writer::write_rows(&tx, &HashMap::new(), &HashMap::new(), &refs).await?;
    tx.execute(
        "UPDATE agent_streams SET last_seq = $3, updated_at = $4 WHERE agent = $1 AND stream = $2",
        &[&b.agent, &b.stream, &seq, &now],
    )
    .await?;
    tx.execute(
        "UPDATE agent_status SET last_batch_at = $2, last_seq = $3,
             lag_ms = COALESCE($4, lag_ms), observations = observations + $5
         WHERE agent = $1",
        &[&b.agent, &now, &seq, &b.lag_ms, &(b.records.len() as i64)],
    )
    .await?;
    if !b.runs.is_empty() {
        let runs = serde_json::to_string(&b.runs)
            .map_err(|e| StoreError::Db(format!("cannot encode the batch's runs: {e}")))?;
        tx.execute(
            "INSERT INTO agent_inbox (agent, stream, seq, location, received_at, runs)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[&b.agent, &b.stream, &seq, &b.location, &now, &runs],
        )
        .await?;
        // Wakes the leader's inbox reader, wherever it runs (delivered at commit).
        tx.execute("SELECT pg_notify($1, '')", &[&INBOX_CHANNEL])
            .await?;
    }
    tx.commit().await?;
    Ok(crate::IngestOutcome {
        duplicate: false,
        last_seq: b.seq,
    })
}
