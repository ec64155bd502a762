//! `postgres`: PostgreSQL liveness (handshake) and health (deep).
//!
//! ```yaml
//! - name: orders-db
//!   target: postgres://db1.internal          # port 5432 by default
//!   check:
//!     type: postgres
//!     mode: deep                             # handshake (default) | deep
//!     user: monitor
//!     password: "${env:PGPASSWORD}"
//!     database: postgres
//!     tls: {ca_file: /etc/ssl/db-ca.pem}     # SSLRequest, then TLS; omit for plain TCP
//!     max_replication_lag: {warn: 10s, crit: 60s}
//!     max_connection_use: {warn: 80, crit: 95}
//! ```
//!
//! **handshake** (no credentials): optional SSLRequest + TLS, then a StartupMessage for `user`
//! (default `postgres`) and `database`. Any authentication request proves the server is alive
//! (`auth_required: true`, `auth_method`); with trust authentication the server also reports
//! `server_version` and (PostgreSQL 14+, `in_hot_standby`) the `role` and `read_only`. An ErrorResponse with SQLSTATE 57P01/57P02/57P03 (starting up, shutting
//! down) or class 53 (too many clients, out of memory, disk full) is `unhealthy` with the
//! server's message; any other ErrorResponse (unknown role or database) still proves liveness:
//! `up` with a note.
//!
//! **deep** (credentials): logs in with tokio-postgres driven over our own timed socket
//! (`Config::connect_raw`), runs `SELECT 1`, then one query for `version()`,
//! `pg_is_in_recovery()`, `default_transaction_read_only`, client backends in
//! `pg_stat_activity` vs `max_connections` (pool %), and on replicas the replay lag in seconds
//! (0 when everything received is replayed, else `now() - pg_last_xact_replay_timestamp()`), in
//! bytes (`pg_wal_lsn_diff(receive, replay)`) and the `pg_stat_wal_receiver` status. No WAL
//! receiver on a replica is a broken link → `unhealthy`. Needs PostgreSQL 10 or later; the WAL
//! receiver status needs `pg_read_all_stats` (or superuser), otherwise the link is reported
//! `unknown` and not judged.
//!
//! Details: `server_version`, `auth_required`, `auth_method`, `role` (primary|replica),
//! `read_only`, `replication_lag_seconds`, `replication_lag_bytes`, `replication_link`,
//! `connections_used`, `connections_max`, `pool_use_percent`.

use futures::future::BoxFuture;
use portwarden_core::{ErrorKind, Phase, Secret, Transport};
use portwarden_wire::postgres::{self as pg, Auth, Backend};
use serde::{Deserialize, Serialize};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use super::dbcommon::{self, Judgement, Mode, Stream, shown};
use super::{Check, CheckInfo, DurationLevels, PercentLevels};
use crate::cx::{CheckResult, Failure, RunCx};
use crate::tls::{PreparedTls, TlsOptions};
use crate::{PrepareError, net};

pub static INFO: CheckInfo = CheckInfo {
    name: "postgres",
    transport: Transport::Tcp,
    default_port: Some(5432),
    summary: "PostgreSQL: startup handshake (auth request = alive; starting up / too many clients = unhealthy); deep: login, role, replication lag and link, pool use",
    options: &[
        (
            "mode",
            "handshake (default, no credentials) | deep (log in and judge health)",
        ),
        ("user", "role to start up / log in as (default `postgres`)"),
        (
            "password",
            "password for deep mode, e.g. \"${env:PGPASSWORD}\" (never printed)",
        ),
        ("database", "database to connect to (default `postgres`)"),
        (
            "tls",
            "TLS options (see the tls check): send SSLRequest and require TLS",
        ),
        (
            "max_replication_lag",
            "{warn: 10s, crit: 60s}: replica replay lag levels (deep; default: not judged)",
        ),
        (
            "max_connection_use",
            "{warn: 80, crit: 95}: percent of max_connections in use (deep; default 80/95)",
        ),
    ],
};

/// `check: {type: postgres, mode: deep, user: monitor, password: "${env:PGPASSWORD}"}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresCheck {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replication_lag: Option<DurationLevels>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connection_use: Option<PercentLevels>,
}

impl PostgresCheck {
    pub fn prepare(&self) -> Result<PreparedPostgres, PrepareError> {
        let user = self.user.clone().unwrap_or_else(|| "postgres".into());
        if user.is_empty() || user.contains('\0') {
            return Err(PrepareError::new("user", "must be a non-empty role name"));
        }
        let database = self.database.clone().unwrap_or_else(|| "postgres".into());
        if database.contains('\0') {
            return Err(PrepareError::new("database", "must not contain NUL"));
        }
        if self.mode == Mode::Handshake && self.password.is_some() {
            return Err(PrepareError::new(
                "password",
                "handshake mode sends no password; set `mode: deep` to log in",
            ));
        }
        let mut config = tokio_postgres::Config::new();
        config
            .user(&user)
            .dbname(&database)
            .application_name("portwarden")
            .ssl_mode(tokio_postgres::config::SslMode::Disable);
        if let Some(p) = &self.password {
            config.password(p.expose());
        }
        Ok(PreparedPostgres {
            mode: self.mode,
            startup: pg::startup_message(&[
                ("user", &user),
                ("database", &database),
                ("application_name", "portwarden"),
            ]),
            config,
            tls: dbcommon::prepare_tls(&self.tls)?,
            lag: dbcommon::lag_levels(self.max_replication_lag)?,
            pool: dbcommon::pool_levels(self.max_connection_use)?,
        })
    }
}

pub struct PreparedPostgres {
    mode: Mode,
    startup: Vec<u8>,
    config: tokio_postgres::Config,
    tls: Option<PreparedTls>,
    lag: DurationLevels,
    pool: PercentLevels,
}

/// Most bytes buffered during the handshake.
const HANDSHAKE_LIMIT: usize = pg::MAX_MESSAGE + 5;
/// Most messages read before the handshake must have decided (notices, parameters...).
const MAX_MESSAGES: usize = 64;

impl PreparedPostgres {
    /// SSLRequest and TLS when configured.
    async fn open(&self, cx: &mut RunCx<'_>, j: &mut Judgement) -> Result<Stream, Failure> {
        let mut tcp = net::connect_tcp(cx).await?;
        let Some(tls) = &self.tls else {
            return Ok(Stream::Plain(tcp));
        };
        dbcommon::send(cx, &mut tcp, &pg::ssl_request()).await?;
        let addr = cx.addr;
        let mut b = [0u8; 1];
        let n = cx
            .timed(Phase::Tls, async {
                tcp.read(&mut b)
                    .await
                    .map_err(|e| net::io_error(&e, Phase::Tls, addr))
            })
            .await?;
        match (n, b[0]) {
            (1, b'S') => dbcommon::maybe_tls(cx, tcp, Some(tls), j).await,
            (1, b'N') => Err(Failure::new(
                ErrorKind::Tls(portwarden_core::TlsFailure::Handshake),
                format!(
                    "{addr} refused TLS (answered `N` to SSLRequest); the server has ssl = off"
                ),
            )),
            (0, _) => Err(Failure::new(
                ErrorKind::Protocol,
                format!("{addr} closed the connection after SSLRequest (is this PostgreSQL?)"),
            )),
            (_, other) => Err(Failure::new(
                ErrorKind::Protocol,
                format!(
                    "{addr} answered SSLRequest with byte 0x{other:02x}, not S or N (is this PostgreSQL?)"
                ),
            )),
        }
    }

    async fn handshake(&self, cx: &mut RunCx<'_>) -> CheckResult {
        let mut j = Judgement::new();
        let mut s = self.open(cx, &mut j).await?;
        dbcommon::send(cx, &mut s, &self.startup).await?;
        let mut buf = Vec::new();
        let mut authed = false;
        for _ in 0..MAX_MESSAGES {
            let msg = dbcommon::read_frame(
                cx,
                &mut s,
                &mut buf,
                HANDSHAKE_LIMIT,
                "PostgreSQL",
                |b, _| pg::parse_backend(b, pg::MAX_MESSAGE),
            )
            .await?;
            match msg {
                Backend::Authentication(Auth::Ok) => {
                    cx.detail("auth_required", false);
                    cx.detail("auth_method", Auth::Ok.method());
                    authed = true;
                }
                Backend::Authentication(a) => {
                    cx.detail("auth_required", true);
                    cx.detail("auth_method", a.method());
                    dbcommon::close(cx, &mut s).await;
                    return j.finish();
                }
                Backend::ParameterStatus { name, value } => {
                    if name == "server_version" {
                        cx.detail("server_version", value);
                    } else if name == "default_transaction_read_only" || name == "in_hot_standby" {
                        cx.detail(&name, value == "on");
                    }
                }
                Backend::ReadyForQuery(_) if authed => {
                    // PostgreSQL 14+ reports `in_hot_standby`: the role, without a query.
                    if let Some(standby) =
                        cx.details.get("in_hot_standby").and_then(|v| v.as_bool())
                    {
                        cx.detail("role", if standby { "replica" } else { "primary" });
                        let default_ro = cx
                            .details
                            .get("default_transaction_read_only")
                            .and_then(|v| v.as_bool())
                            .unwrap_or(false);
                        cx.detail("read_only", standby || default_ro);
                    }
                    let _ = dbcommon::send(cx, &mut s, &pg::terminate()).await;
                    dbcommon::close(cx, &mut s).await;
                    return j.finish();
                }
                Backend::Error(e) => {
                    cx.detail("sqlstate", e.code.clone());
                    if e.is_unhealthy() {
                        return Err(Failure::new(
                            ErrorKind::Unhealthy,
                            format!(
                                "{} refused the connection: {}",
                                cx.addr,
                                shown(&e.summary())
                            ),
                        ));
                    }
                    j.note(format!(
                        "server is alive but refused the startup: {}",
                        shown(&e.summary())
                    ));
                    return j.finish();
                }
                Backend::Notice(_) | Backend::BackendKeyData => {}
                Backend::ReadyForQuery(_) => {
                    return Err(Failure::new(
                        ErrorKind::Protocol,
                        format!(
                            "{} sent ReadyForQuery before authentication (is this PostgreSQL?)",
                            cx.addr
                        ),
                    ));
                }
                Backend::Other(t) => {
                    return Err(Failure::new(
                        ErrorKind::Protocol,
                        format!(
                            "{} sent message type `{}` during startup (is this PostgreSQL?)",
                            cx.addr,
                            portwarden_wire::printable::escape(&[t], 4)
                        ),
                    ));
                }
            }
        }
        Err(Failure::new(
            ErrorKind::Protocol,
            format!(
                "{} sent {MAX_MESSAGES} messages without finishing the startup",
                cx.addr
            ),
        ))
    }

    async fn deep(&self, cx: &mut RunCx<'_>) -> CheckResult {
        let mut j = Judgement::new();
        let stream = self.open(cx, &mut j).await?;
        let addr = cx.addr;
        let (client, conn) = cx
            .timed(Phase::Protocol, async {
                self.config
                    .connect_raw(GracefulClose::new(stream), tokio_postgres::NoTls)
                    .await
                    .map_err(|e| pg_error(&e, addr, "login").error)
            })
            .await?;
        // The connection task drives the socket; it is aborted when this guard drops (also when
        // the deadline cuts a query short), so no socket outlives the probe.
        let task = AbortOnDrop(tokio::spawn(conn));
        let ping = cx
            .timed(Phase::Protocol, async {
                client
                    .simple_query("SELECT 1")
                    .await
                    .map_err(|e| pg_error(&e, addr, "SELECT 1").error)
            })
            .await?;
        if ping.is_empty() {
            return Err(Failure::new(
                ErrorKind::Protocol,
                format!("{addr} answered `SELECT 1` with nothing"),
            ));
        }
        let rows = cx
            .timed(Phase::Protocol, async {
                client
                    .simple_query(HEALTH_QUERY)
                    .await
                    .map_err(|e| pg_error(&e, addr, "the health query").error)
            })
            .await?;
        // Dropping the client makes the connection task send Terminate and close; give it a
        // moment to finish so the server sees a clean goodbye instead of a reset (which it
        // would log as "could not receive data from client").
        drop(client);
        let mut task = task;
        let grace = Duration::from_millis(200).min(cx.remaining());
        let _ = tokio::time::timeout(grace, &mut task.0).await;
        let row = rows.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        });
        let Some(row) = row else {
            return Err(Failure::new(
                ErrorKind::Protocol,
                format!("{addr} returned no row for the health query"),
            ));
        };
        let get = |name: &str| row.try_get(name).ok().flatten().map(str::to_string);
        self.judge(cx, &mut j, &get);
        j.finish()
    }

    fn judge(&self, cx: &mut RunCx<'_>, j: &mut Judgement, get: &dyn Fn(&str) -> Option<String>) {
        if let Some(v) = get("server_version") {
            cx.detail("server_version", v);
        }
        if let Some(v) = get("version") {
            cx.detail("version", shown(&v));
        }
        let replica = get("in_recovery").as_deref() == Some("t");
        cx.detail("role", if replica { "replica" } else { "primary" });
        let default_ro = get("default_ro").as_deref() == Some("on");
        cx.detail("read_only", replica || default_ro);
        if let (Some(used), Some(max)) = (
            get("used").and_then(|v| v.parse::<u64>().ok()),
            get("max_conn").and_then(|v| v.parse::<u64>().ok()),
        ) {
            j.pool(cx, used, max, &self.pool);
        }
        if !replica {
            return;
        }
        if let Some(b) = get("lag_bytes").and_then(|v| v.parse::<f64>().ok()) {
            cx.detail("replication_lag_bytes", b.max(0.0) as u64);
        }
        let rows: u64 = get("wal_rows").and_then(|v| v.parse().ok()).unwrap_or(0);
        match (rows, get("wal_status")) {
            (0, _) => {
                cx.detail("replication_link", "down");
                j.fail(
                    ErrorKind::Unhealthy,
                    "replica has no WAL receiver running: the replication link to the primary is down",
                );
            }
            (_, Some(s)) if s == "streaming" => cx.detail("replication_link", "up"),
            (_, Some(s)) => {
                cx.detail("replication_link", s.clone());
                j.warn(format!("WAL receiver is `{}`, not streaming", shown(&s)));
            }
            (_, None) => {
                cx.detail("replication_link", "unknown");
                j.note(
                    "WAL receiver status hidden: grant pg_read_all_stats to the monitoring role",
                );
            }
        }
        if let Some(s) = get("lag_s").and_then(|v| v.parse::<f64>().ok()) {
            j.lag(cx, s, &self.lag);
        }
    }
}

/// One round trip for everything deep mode reports (PostgreSQL 10+).
const HEALTH_QUERY: &str = "SELECT current_setting('server_version') AS server_version, \
 version() AS version, \
 pg_is_in_recovery() AS in_recovery, \
 current_setting('default_transaction_read_only') AS default_ro, \
 (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') AS used, \
 current_setting('max_connections') AS max_conn, \
 CASE WHEN pg_is_in_recovery() THEN \
   CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0 \
   ELSE COALESCE(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END \
 END AS lag_s, \
 CASE WHEN pg_is_in_recovery() THEN \
   pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) END AS lag_bytes, \
 (SELECT status FROM pg_stat_wal_receiver LIMIT 1) AS wal_status, \
 (SELECT count(*) FROM pg_stat_wal_receiver) AS wal_rows";

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

/// A stream whose shutdown sends FIN and then waits for the peer's EOF (discarding what it
/// reads), so our `SO_LINGER 0` close does not reset a server still reading our Terminate.
/// The wait is bounded by the caller's timeout on the connection task.
struct GracefulClose {
    inner: Stream,
    fin_sent: bool,
}

impl GracefulClose {
    fn new(inner: Stream) -> Self {
        GracefulClose {
            inner,
            fin_sent: false,
        }
    }
}

impl AsyncRead for GracefulClose {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for GracefulClose {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.fin_sent {
            match Pin::new(&mut this.inner).poll_shutdown(cx) {
                Poll::Ready(Ok(())) => this.fin_sent = true,
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let mut scratch = [0u8; 512];
        loop {
            let mut rb = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if rb.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Maps a tokio-postgres error: server errors by SQLSTATE, socket errors by errno, the rest
/// `protocol`.
fn pg_error(e: &tokio_postgres::Error, addr: std::net::SocketAddr, during: &str) -> Failure {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        let kind = if code.starts_with("28") || code == "3D000" {
            ErrorKind::Auth
        } else {
            ErrorKind::Unhealthy
        };
        return Failure::new(
            kind,
            format!(
                "{addr} during {during}: {} {code}: {}",
                db.severity(),
                shown(db.message())
            ),
        );
    }
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            // Real socket errors carry an errno; tokio-postgres also reports undecodable
            // bytes as io::Error (InvalidData...), which is the peer's fault: `protocol`.
            if io.raw_os_error().is_some() {
                return net::io_error(io, Phase::Protocol, addr).into();
            }
            return Failure::new(
                ErrorKind::Protocol,
                format!(
                    "{addr} during {during}: {} (is this PostgreSQL?)",
                    shown(&io.to_string())
                ),
            );
        }
        src = s.source();
    }
    if e.is_closed() {
        return Failure::new(
            ErrorKind::Protocol,
            format!("{addr} closed the connection during {during}"),
        );
    }
    Failure::new(
        ErrorKind::Protocol,
        format!("{addr} during {during}: {}", shown(&e.to_string())),
    )
}

impl Check for PreparedPostgres {
    fn run<'a>(&'a self, cx: &'a mut RunCx<'_>) -> BoxFuture<'a, CheckResult> {
        Box::pin(async move {
            match self.mode {
                Mode::Handshake => self.handshake(cx).await,
                Mode::Deep => self.deep(cx).await,
            }
        })
    }
}
