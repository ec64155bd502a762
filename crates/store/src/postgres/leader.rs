//! Leader election for several `portwarden serve` replicas on one PostgreSQL database: the
//! leader is whoever holds a session advisory lock ([`LEADER_LOCK`]) on a dedicated
//! connection. No home-made consensus: PostgreSQL decides, and releases the lock when the
//! holder's session ends.
//!
//! How the takeover bound (`takeover`, default 15 s) holds:
//! - **Leader process dies** (crash, `kill -9`): its kernel closes the socket, the server ends
//!   the session at once and the lock is free; a follower polls every `takeover / 5` (at most
//!   3 s at the default) and takes it.
//! - **Leader host or network dies** (no FIN): the lock connection sets server-side TCP
//!   keepalives and `tcp_user_timeout` so the server drops the session within about
//!   `takeover / 2`; followers then take the lock within one more poll.
//! - **The leader loses its database** (partition): it pings its lock connection every poll
//!   and steps down when it has not seen it answer for `takeover / 3` — before any follower can
//!   have taken over — so two leaders never act at once while clocks run at similar speed.
//!
//! A pooler in transaction mode (pgbouncer) would break session locks: point replicas at
//! PostgreSQL itself (or a session-mode pool).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

/// The advisory lock key of leadership: "pwleader" as 8 bytes.
pub const LEADER_LOCK: i64 = 0x7077_6c65_6164_6572;

/// Default bound on how long the replicas go without a leader after it dies.
pub const DEFAULT_TAKEOVER: Duration = Duration::from_secs(15);

/// Metrics of leadership (`portwarden_leader`, `portwarden_leader_changes`).
#[derive(Clone, Default)]
pub struct LeaderMetrics {
    /// 1 while this replica is the leader.
    pub leader: Gauge,
    /// Times this replica became leader or stepped down.
    pub changes: Counter,
    /// Failed attempts to reach the database for the lock.
    pub errors: Counter,
}

impl LeaderMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("portwarden_leader");
        r.register(
            "is_leader",
            "1 while this replica holds leadership (runs evaluation, incidents, notifications)",
            self.leader.clone(),
        );
        r.register(
            "changes",
            "Times this replica became leader or stepped down",
            self.changes.clone(),
        );
        r.register(
            "errors",
            "Failed attempts to reach PostgreSQL for the leader lock",
            self.errors.clone(),
        );
    }
}

/// What `/api/v1/health` says about leadership.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LeaderStatus {
    /// `single` (one process, SQLite: always the leader) or `postgres_advisory_lock`.
    pub mode: &'static str,
    pub leader: bool,
    /// Since when this replica is leader or follower.
    pub since: DateTime<Utc>,
    pub takeover_seconds: f64,
    /// The leader term this replica holds (PostgreSQL, while leading).
    pub term: Option<i64>,
    /// The last problem reaching the database for the lock, if the last attempt failed.
    pub last_error: Option<String>,
}

#[derive(Debug)]
struct Inner {
    mode: &'static str,
    takeover: Duration,
    state: std::sync::Mutex<(bool, DateTime<Utc>, Option<String>)>,
    stop: AtomicBool,
    term: std::sync::Mutex<Option<i64>>,
}

/// This replica's leadership: a watch of `true` (leader) / `false` (follower).
#[derive(Debug, Clone)]
pub struct Leadership {
    rx: watch::Receiver<bool>,
    inner: Arc<Inner>,
    task: Option<Arc<tokio::task::JoinHandle<()>>>,
    /// Keeps the channel open for [`Leadership::always`] (no task sends).
    _always: Option<Arc<watch::Sender<bool>>>,
    fence: Option<Arc<AtomicI64>>,
}

impl Leadership {
    /// A single process (SQLite): always the leader.
    pub fn always() -> Leadership {
        let (tx, rx) = watch::channel(true);
        Leadership {
            fence: None,
            _always: Some(Arc::new(tx)),
            rx,
            inner: Arc::new(Inner {
                mode: "single",
                takeover: Duration::ZERO,
                state: std::sync::Mutex::new((true, Utc::now(), None)),
                stop: AtomicBool::new(false),
                term: std::sync::Mutex::new(None),
            }),
            task: None,
        }
    }

    /// Starts campaigning for the lock on its own connection (never from the pool).
    ///
    /// `fence` is the store's ([`PgStore::fence`](super::PgStore::fence)): on winning the lock
    /// the new leader takes the next term in `leader_term` and the store writes only while it
    /// holds it; on stepping down it is set to -1 first.
    pub fn campaign(
        config: tokio_postgres::Config,
        tls: super::Tls,
        takeover: Duration,
        metrics: LeaderMetrics,
        fence: Arc<AtomicI64>,
    ) -> Leadership {
        let takeover = takeover.max(Duration::from_secs(3));
        let (tx, rx) = watch::channel(false);
        let inner = Arc::new(Inner {
            mode: "postgres_advisory_lock",
            takeover,
            state: std::sync::Mutex::new((false, Utc::now(), None)),
            stop: AtomicBool::new(false),
            term: std::sync::Mutex::new(None),
        });
        fence.store(-1, Ordering::Release);
        let task = tokio::spawn(run(config, tls, inner.clone(), tx, metrics, fence.clone()));
        Leadership {
            rx,
            inner,
            task: Some(Arc::new(task)),
            _always: None,
            fence: Some(fence),
        }
    }

    pub fn is_leader(&self) -> bool {
        *self.rx.borrow()
    }

    /// A receiver that sees every change.
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.rx.clone()
    }

    pub fn status(&self) -> LeaderStatus {
        let st = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        LeaderStatus {
            mode: self.inner.mode,
            leader: st.0,
            since: st.1,
            takeover_seconds: self.inner.takeover.as_secs_f64(),
            term: self.term(),
            last_error: st.2.clone(),
        }
    }

    /// The term this replica leads in (`None` while it does not lead, and with SQLite).
    pub fn term(&self) -> Option<i64> {
        self.inner.term.lock().map(|t| *t).ok().flatten()
    }

    /// Steps down (releases the lock by closing its connection) and stops campaigning.
    pub async fn resign(&self) {
        self.inner.stop.store(true, Ordering::Relaxed);
        if let Some(f) = &self.fence {
            f.store(-1, Ordering::Release);
        }
        *self.inner.term.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if let Some(t) = &self.task {
            t.abort();
        }
        let mut st = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        if self.inner.mode != "single" {
            st.0 = false;
        }
    }
}

fn set(inner: &Inner, tx: &watch::Sender<bool>, metrics: &LeaderMetrics, leader: bool) {
    if *tx.borrow() != leader {
        metrics.changes.inc();
        if leader {
            tracing::info!(
                "this replica is now the leader (holds the PostgreSQL advisory lock): it runs evaluation, incidents and notifications"
            );
        } else {
            tracing::warn!(
                "this replica is no longer the leader; evaluation and notifications stop here"
            );
        }
        let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
        st.0 = leader;
        st.1 = Utc::now();
    }
    metrics.leader.set(i64::from(leader));
    let _ = tx.send(leader);
}

fn note_error(inner: &Inner, metrics: &LeaderMetrics, e: Option<String>) {
    if e.is_some() {
        metrics.errors.inc();
    }
    inner.state.lock().unwrap_or_else(|e| e.into_inner()).2 = e;
}

fn holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{} pid {}", host.trim(), std::process::id())
}

/// Steps down: fenced first (no write of ours passes any more), then announced.
fn step_down(inner: &Inner, tx: &watch::Sender<bool>, metrics: &LeaderMetrics, fence: &AtomicI64) {
    fence.store(-1, Ordering::Release);
    *inner.term.lock().unwrap_or_else(|e| e.into_inner()) = None;
    set(inner, tx, metrics, false);
}

async fn run(
    config: tokio_postgres::Config,
    tls: super::Tls,
    inner: Arc<Inner>,
    tx: watch::Sender<bool>,
    metrics: LeaderMetrics,
    fence: Arc<AtomicI64>,
) {
    let takeover = inner.takeover;
    let poll = (takeover / 5).clamp(Duration::from_millis(200), Duration::from_secs(3));
    let step_down_after = takeover / 3;
    let secs = |d: Duration| d.as_secs().max(1);
    // Server side: drop our session (and so the lock) soon after we vanish.
    let keepalive = format!(
        "SET tcp_keepalives_idle = {}; SET tcp_keepalives_interval = {}; \
         SET tcp_keepalives_count = 3; SET tcp_user_timeout = {};",
        secs(takeover / 5),
        secs(takeover / 10),
        (takeover / 2).as_millis()
    );
    while !inner.stop.load(Ordering::Relaxed) {
        let conn = tokio::time::timeout(takeover / 2, tls.connect(&config)).await;
        let (client, connection) = match conn {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                note_error(&inner, &metrics, Some(super::describe(&e)));
                step_down(&inner, &tx, &metrics, &fence);
                tokio::time::sleep(poll).await;
                continue;
            }
            Err(_) => {
                note_error(&inner, &metrics, Some("connect timed out".into()));
                step_down(&inner, &tx, &metrics, &fence);
                continue;
            }
        };
        let conn_task = tokio::spawn(connection);
        if let Err(e) = client.batch_execute(&keepalive).await {
            // Older servers without tcp_user_timeout: keepalives alone still bound it.
            tracing::debug!(error = %super::describe(&e), "cannot set every keepalive option on the lock connection");
        }
        note_error(&inner, &metrics, None);
        let mut last_ok = Instant::now();
        let mut leader = false;
        loop {
            if inner.stop.load(Ordering::Relaxed) {
                break;
            }
            let q = if leader {
                "SELECT TRUE"
            } else {
                "SELECT pg_try_advisory_lock($1)"
            };
            let r = if leader {
                tokio::time::timeout(poll, client.query_one(q, &[])).await
            } else {
                tokio::time::timeout(poll, client.query_one(q, &[&LEADER_LOCK])).await
            };
            match r {
                Ok(Ok(row)) => {
                    last_ok = Instant::now();
                    note_error(&inner, &metrics, None);
                    let held: bool = row.try_get(0).unwrap_or(false);
                    if held && !leader {
                        // Take the next term before acting: from now on only our writes pass.
                        let term = client
                            .query_one(
                                "UPDATE leader_term SET term = term + 1, holder = $1, since = $2 \
                                 WHERE id = 1 RETURNING term",
                                &[&holder(), &Utc::now().timestamp_millis()],
                            )
                            .await
                            .and_then(|r| r.try_get::<_, i64>(0));
                        match term {
                            Ok(t) => {
                                fence.store(t, Ordering::Release);
                                *inner.term.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
                                leader = true;
                                tracing::info!(term = t, "leader term taken");
                                set(&inner, &tx, &metrics, true);
                            }
                            Err(e) => {
                                note_error(&inner, &metrics, Some(super::describe(&e)));
                                let _ = client
                                    .query_one("SELECT pg_advisory_unlock($1)", &[&LEADER_LOCK])
                                    .await;
                            }
                        }
                    }
                }
                Ok(Err(e)) => {
                    note_error(&inner, &metrics, Some(super::describe(&e)));
                    if client.is_closed() {
                        break;
                    }
                }
                Err(_) => note_error(
                    &inner,
                    &metrics,
                    Some("the lock connection did not answer in time".into()),
                ),
            }
            if leader && last_ok.elapsed() >= step_down_after {
                // We cannot prove we still hold the lock: stop acting before anyone else can.
                break;
            }
            if !leader && client.is_closed() {
                break;
            }
            tokio::time::sleep(poll).await;
        }
        step_down(&inner, &tx, &metrics, &fence);
        drop(client);
        conn_task.abort();
    }
    step_down(&inner, &tx, &metrics, &fence);
}
