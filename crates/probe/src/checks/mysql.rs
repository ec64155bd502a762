//! `mysql`: MySQL / MariaDB liveness (handshake) and health (deep).
//!
//! ```yaml
//! - name: shop-db
//!   target: mysql://db2.internal             # port 3306 by default
//!   check:
//!     type: mysql
//!     mode: deep                             # handshake (default) | deep
//!     user: monitor
//!     password: "${env:MYSQL_PASSWORD}"
//!     database: shop                         # optional
//!     tls: {}                                # SSLRequest, then TLS
//!     max_replication_lag: {warn: 30s, crit: 5m}
//!     max_connection_use: {warn: 80, crit: 95}
//! ```
//!
//! **handshake** (no credentials): reads the server's greeting (protocol 10: `server_version`,
//! `connection_id`, capabilities, default auth plugin). An ERR greeting such as "Too many
//! connections" (1040) or "Host … is blocked" (1129) is `unhealthy`. The handshake then
//! finishes with a login attempt as `user` (default `portwarden`, empty password) and a
//! `COM_QUIT`: an access-denied answer still proves liveness (`auth_required: true`). We do
//! not just hang up after the greeting because MySQL counts such aborted handshakes against
//! `max_connect_errors` and eventually *blocks the monitoring host*; a failed login does not
//! (it is logged as an access-denied warning: set `user` to a login-only monitoring account,
//! e.g. `CREATE USER 'portwarden'@'%'` with no privileges, to keep server logs quiet).
//!
//! **deep** (credentials): logs in (`mysql_native_password`, or `caching_sha2_password` fast
//! path; full caching_sha2 authentication only over TLS), runs `SELECT 1`,
//! `SELECT @@version, @@max_connections, @@read_only`, `SHOW GLOBAL STATUS LIKE
//! 'Threads_connected'` (pool %), and `SHOW REPLICA STATUS` (falling back to `SHOW SLAVE
//! STATUS`): a row makes the server a replica, IO/SQL threads not running is a broken link
//! (`unhealthy`), `Seconds_Behind_Master` is judged against `max_replication_lag`. Without the
//! REPLICATION CLIENT privilege replication is not reported (a note says so).
//!
//! The login is hand-written (see `portwarden_wire::mysql` for why not mysql_async: it cannot
//! run over our own timed socket).
//!
//! Details: `server_version`, `connection_id`, `auth_plugin`, `auth_required`, `tls_offered`,
//! `role`, `read_only`, `replication_link`, `replication_io_running`, `replication_sql_running`,
//! `replication_lag_seconds`, `connections_used`, `connections_max`, `pool_use_percent`.

use futures::future::BoxFuture;
use portwarden_core::{ErrorKind, Secret, TlsFailure, Transport};
use portwarden_wire::mysql::{self as my, AuthReply, ErrPacket, Greeting, QueryResult, ResultSet};
use serde::{Deserialize, Serialize};

use super::dbcommon::{self, Judgement, Mode, Stream, shown};
use super::{Check, CheckInfo, DurationLevels, PercentLevels};
use crate::cx::{CheckResult, Failure, RunCx};
use crate::tls::{PreparedTls, TlsOptions};
use crate::{PrepareError, net};

pub static INFO: CheckInfo = CheckInfo {
    name: "mysql",
    transport: Transport::Tcp,
    default_port: Some(3306),
    summary: "MySQL/MariaDB: greeting (version; too many connections / host blocked = unhealthy); deep: login, pool use, replica threads and lag",
    options: &[
        (
            "mode",
            "handshake (default, no credentials) | deep (log in and judge health)",
        ),
        (
            "user",
            "user to log in as (default `portwarden` in handshake mode, where a refusal is fine)",
        ),
        (
            "password",
            "password, e.g. \"${env:MYSQL_PASSWORD}\" (never printed)",
        ),
        ("database", "default database for the session (optional)"),
        (
            "tls",
            "TLS options (see the tls check): SSLRequest, then TLS; required when set",
        ),
        (
            "max_replication_lag",
            "{warn: 30s, crit: 5m}: Seconds_Behind_Master levels (deep; default: not judged)",
        ),
        (
            "max_connection_use",
            "{warn: 80, crit: 95}: Threads_connected / max_connections (deep; default 80/95)",
        ),
    ],
};

/// `check: {type: mysql, mode: deep, user: monitor, password: "${env:MYSQL_PASSWORD}"}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlCheck {
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

impl MysqlCheck {
    pub fn prepare(&self) -> Result<PreparedMysql, PrepareError> {
        let user = match (&self.user, self.mode) {
            (Some(u), _) => u.clone(),
            (None, Mode::Handshake) => "portwarden".into(),
            (None, Mode::Deep) => {
                return Err(PrepareError::new(
                    "user",
                    "deep mode needs a `user` to log in as",
                ));
            }
        };
        if user.is_empty() || user.contains('\0') {
            return Err(PrepareError::new("user", "must be a non-empty user name"));
        }
        Ok(PreparedMysql {
            mode: self.mode,
            user,
            password: self.password.clone(),
            database: self.database.clone().filter(|d| !d.is_empty()),
            tls: dbcommon::prepare_tls(&self.tls)?,
            lag: dbcommon::lag_levels(self.max_replication_lag)?,
            pool: dbcommon::pool_levels(self.max_connection_use)?,
        })
    }
}

pub struct PreparedMysql {
    mode: Mode,
    user: String,
    password: Option<Secret>,
    database: Option<String>,
    tls: Option<PreparedTls>,
    lag: DurationLevels,
    pool: PercentLevels,
}

const LIMIT: usize = my::MAX_PACKET + 4;

/// Reads one packet's payload.
async fn read_packet(
    cx: &mut RunCx<'_>,
    s: &mut Stream,
    buf: &mut Vec<u8>,
) -> Result<Vec<u8>, Failure> {
    dbcommon::read_frame(cx, s, buf, LIMIT, "MySQL", |b, _| {
        Ok(my::split_packet(b, my::MAX_PACKET)?.map(|(_, p, used)| (p.to_vec(), used)))
    })
    .await
}

/// How a login ended.
enum Login {
    Ok,
    Refused(ErrPacket),
}

impl PreparedMysql {
    /// Connect, greeting, optional TLS, login. Returns the stream and the login result.
    async fn connect_and_login(
        &self,
        cx: &mut RunCx<'_>,
        j: &mut Judgement,
    ) -> Result<(Stream, Vec<u8>, Login), Failure> {
        let addr = cx.addr;
        let mut s = Stream::Plain(net::connect_tcp(cx).await?);
        let mut buf = Vec::new();
        let first = read_packet(cx, &mut s, &mut buf).await?;
        let hs = match my::parse_greeting(&first) {
            Ok(Greeting::Handshake(h)) => h,
            Ok(Greeting::Err(e)) => {
                cx.detail("error_code", e.code);
                if e.is_unhealthy() {
                    return Err(Failure::new(
                        ErrorKind::Unhealthy,
                        format!("{addr} refused the connection: {}", shown(&e.summary())),
                    ));
                }
                // "Host ... is not allowed to connect" and the like: alive, but not for us.
                return Ok((s, buf, Login::Refused(e)));
            }
            Err(e) => return Err(dbcommon::not_proto(addr, "MySQL", &e, &first)),
        };
        // MariaDB prefixes its version with `5.5.5-` for old clients.
        let version = hs
            .server_version
            .strip_prefix("5.5.5-")
            .filter(|v| v.contains("MariaDB"))
            .unwrap_or(&hs.server_version);
        cx.detail("server_version", shown(version));
        cx.detail("connection_id", hs.connection_id);
        cx.detail("auth_plugin", shown(&hs.auth_plugin));
        cx.detail("tls_offered", hs.capabilities & my::CLIENT_SSL != 0);
        if hs.capabilities & my::CLIENT_PROTOCOL_41 == 0 {
            return Err(Failure::new(
                ErrorKind::Protocol,
                format!("{addr} does not speak the 4.1 protocol (server too old)"),
            ));
        }
        let caps = my::client_capabilities(self.database.is_some(), self.tls.is_some());
        let mut seq: u8 = 1;
        if let Some(tls) = &self.tls {
            if hs.capabilities & my::CLIENT_SSL == 0 {
                return Err(Failure::new(
                    ErrorKind::Tls(TlsFailure::Handshake),
                    format!("{addr} does not offer TLS (no CLIENT_SSL capability)"),
                ));
            }
            dbcommon::send(cx, &mut s, &my::packet(seq, &my::ssl_request(caps))).await?;
            seq += 1;
            let Stream::Plain(tcp) = s else {
                return Err(Failure::new(ErrorKind::Local, "TLS requested twice"));
            };
            s = dbcommon::maybe_tls(cx, tcp, Some(tls), j).await?;
        }
        let password = self
            .password
            .as_ref()
            .map(|p| p.expose().as_bytes())
            .unwrap_or_default();
        let mut plugin = if hs.auth_plugin.is_empty() {
            "mysql_native_password".to_string()
        } else {
            hs.auth_plugin.clone()
        };
        let mut nonce = hs.auth_data.clone();
        let resp = scramble(&plugin, password, &nonce);
        let login =
            my::handshake_response(caps, &self.user, &resp, self.database.as_deref(), &plugin);
        dbcommon::send(cx, &mut s, &my::packet(seq, &login)).await?;
        seq = seq.wrapping_add(1);
        // Auth rounds: plugin switches and caching_sha2 follow-ups, bounded.
        for _ in 0..4 {
            let p = read_packet(cx, &mut s, &mut buf).await?;
            seq = seq.wrapping_add(1);
            let reply =
                my::parse_auth_reply(&p).map_err(|e| dbcommon::not_proto(addr, "MySQL", &e, &p))?;
            match reply {
                AuthReply::Ok => return Ok((s, buf, Login::Ok)),
                AuthReply::Err(e) => return Ok((s, buf, Login::Refused(e))),
                AuthReply::Switch { plugin: p2, data } => {
                    plugin = p2;
                    nonce = data;
                    let r = scramble(&plugin, password, &nonce);
                    dbcommon::send(cx, &mut s, &my::packet(seq, &r)).await?;
                    seq = seq.wrapping_add(1);
                }
                AuthReply::More(data) if plugin == "caching_sha2_password" => match data.first() {
                    Some(3) => {} // fast auth succeeded; OK follows
                    Some(4) => {
                        if matches!(s, Stream::Tls(_)) {
                            let mut clear = password.to_vec();
                            clear.push(0);
                            dbcommon::send(cx, &mut s, &my::packet(seq, &clear)).await?;
                            seq = seq.wrapping_add(1);
                        } else {
                            return Err(Failure::new(
                                ErrorKind::Auth,
                                format!(
                                    "{addr} wants full caching_sha2_password authentication, which needs TLS here; set `tls:` (or log in once so the server caches the password)"
                                ),
                            ));
                        }
                    }
                    _ => {
                        return Err(Failure::new(
                            ErrorKind::Protocol,
                            format!("{addr} sent an unknown caching_sha2_password step"),
                        ));
                    }
                },
                AuthReply::More(_) => {
                    return Err(Failure::new(
                        ErrorKind::Auth,
                        format!(
                            "{addr} asked for more data for plugin `{}`, which we do not support",
                            shown(&plugin)
                        ),
                    ));
                }
            }
        }
        Err(Failure::new(
            ErrorKind::Protocol,
            format!("{addr} did not finish authentication in 4 rounds"),
        ))
    }

    async fn query(
        &self,
        cx: &mut RunCx<'_>,
        s: &mut Stream,
        buf: &mut Vec<u8>,
        sql: &str,
    ) -> Result<QueryResult, Failure> {
        dbcommon::send(cx, s, &my::packet(0, &my::com_query(sql))).await?;
        // A result set spans several packets; let it be a few of them at most.
        dbcommon::read_frame(cx, s, buf, LIMIT * 4, "MySQL", |b, _| {
            my::parse_query_result(b, my::MAX_PACKET)
        })
        .await
    }

    async fn rows(
        &self,
        cx: &mut RunCx<'_>,
        s: &mut Stream,
        buf: &mut Vec<u8>,
        sql: &str,
    ) -> Result<ResultSet, Failure> {
        match self.query(cx, s, buf, sql).await? {
            QueryResult::Rows(r) => Ok(r),
            QueryResult::Ok => Ok(ResultSet::default()),
            QueryResult::Err(e) => Err(Failure::new(
                ErrorKind::Unhealthy,
                format!("{} failed `{sql}`: {}", cx.addr, shown(&e.summary())),
            )),
        }
    }

    async fn run_check(&self, cx: &mut RunCx<'_>) -> CheckResult {
        let mut j = Judgement::new();
        let (mut s, mut buf, login) = self.connect_and_login(cx, &mut j).await?;
        match (login, self.mode) {
            (Login::Refused(e), Mode::Handshake) => {
                cx.detail("auth_required", true);
                j.note(format!(
                    "server is alive; login as `{}` refused: {}",
                    shown(&self.user),
                    shown(&e.summary())
                ));
                dbcommon::close(cx, &mut s).await;
                return j.finish();
            }
            (Login::Refused(e), Mode::Deep) => {
                let kind = if e.is_unhealthy() {
                    ErrorKind::Unhealthy
                } else {
                    ErrorKind::Auth
                };
                return Err(Failure::new(
                    kind,
                    format!(
                        "{} refused the login as `{}`: {}",
                        cx.addr,
                        shown(&self.user),
                        shown(&e.summary())
                    ),
                ));
            }
            (Login::Ok, Mode::Handshake) => {
                cx.detail(
                    "auth_required",
                    self.password.as_ref().is_some_and(|p| !p.is_empty()),
                );
                let _ = dbcommon::send(cx, &mut s, &my::packet(0, &my::com_quit())).await;
                dbcommon::close(cx, &mut s).await;
                return j.finish();
            }
            (Login::Ok, Mode::Deep) => {}
        }
        let one = self.rows(cx, &mut s, &mut buf, "SELECT 1").await?;
        if one
            .rows
            .first()
            .and_then(|r| r.first())
            .cloned()
            .flatten()
            .as_deref()
            != Some("1")
        {
            return Err(Failure::new(
                ErrorKind::Protocol,
                format!(
                    "{} answered `SELECT 1` with \"{}\"",
                    cx.addr,
                    shown(&format!("{:?}", one.rows.first()))
                ),
            ));
        }
        let vars = self
            .rows(cx, &mut s, &mut buf, "SELECT @@version AS version, @@max_connections AS max_connections, @@read_only AS read_only")
            .await?;
        if let Some(v) = vars.first("version") {
            cx.detail("server_version", shown(v));
        }
        let read_only = vars.first("read_only") == Some("1");
        let status = self
            .rows(
                cx,
                &mut s,
                &mut buf,
                "SHOW GLOBAL STATUS LIKE 'Threads_connected'",
            )
            .await?;
        let used = status.first("Value").and_then(|v| v.parse::<u64>().ok());
        let max = vars
            .first("max_connections")
            .and_then(|v| v.parse::<u64>().ok());
        if let (Some(used), Some(max)) = (used, max) {
            j.pool(cx, used, max, &self.pool);
        }
        // Replica status: the new spelling first, the old one on a syntax error.
        let mut replica = self
            .query(cx, &mut s, &mut buf, "SHOW REPLICA STATUS")
            .await?;
        if let QueryResult::Err(e) = &replica
            && e.code == 1064
        {
            replica = self
                .query(cx, &mut s, &mut buf, "SHOW SLAVE STATUS")
                .await?;
        }
        let _ = dbcommon::send(cx, &mut s, &my::packet(0, &my::com_quit())).await;
        dbcommon::close(cx, &mut s).await;
        match replica {
            QueryResult::Rows(rs) if !rs.rows.is_empty() => {
                cx.detail("role", "replica");
                cx.detail("read_only", true);
                self.judge_replica(cx, &mut j, &rs);
            }
            QueryResult::Rows(_) | QueryResult::Ok => {
                cx.detail("role", "primary");
                cx.detail("read_only", read_only);
            }
            QueryResult::Err(e) => {
                cx.detail("read_only", read_only);
                j.note(format!(
                    "replication status not readable (grant REPLICATION CLIENT): {}",
                    shown(&e.summary())
                ));
            }
        }
        j.finish()
    }

    fn judge_replica(&self, cx: &mut RunCx<'_>, j: &mut Judgement, rs: &ResultSet) {
        let col = |a: &str, b: &str| rs.first(a).or_else(|| rs.first(b)).map(str::to_string);
        let io = col("Replica_IO_Running", "Slave_IO_Running").unwrap_or_default();
        let sql = col("Replica_SQL_Running", "Slave_SQL_Running").unwrap_or_default();
        cx.detail("replication_io_running", io.clone());
        cx.detail("replication_sql_running", sql.clone());
        if let Some(m) = col("Source_Host", "Master_Host") {
            cx.detail("replication_source", shown(&m));
        }
        let link_up = io == "Yes" && sql == "Yes";
        cx.detail("replication_link", if link_up { "up" } else { "down" });
        if io != "Yes" {
            let err = col("Last_IO_Error", "Last_IO_Error").unwrap_or_default();
            j.fail(
                ErrorKind::Unhealthy,
                format!("replication IO thread is `{}`: {}", shown(&io), shown(&err)),
            );
        }
        if sql != "Yes" {
            let err = col("Last_SQL_Error", "Last_SQL_Error").unwrap_or_default();
            j.fail(
                ErrorKind::Unhealthy,
                format!(
                    "replication SQL thread is `{}`: {}",
                    shown(&sql),
                    shown(&err)
                ),
            );
        }
        if let Some(secs) = col("Seconds_Behind_Source", "Seconds_Behind_Master")
            .and_then(|v| v.parse::<f64>().ok())
        {
            j.lag(cx, secs, &self.lag);
        }
    }
}

/// The auth response for `plugin`.
fn scramble(plugin: &str, password: &[u8], nonce: &[u8]) -> Vec<u8> {
    match plugin {
        "caching_sha2_password" => my::caching_sha2_password(password, nonce),
        // mysql_native_password, and our best effort for anything else (the server then
        // switches us to a plugin it accepts, or refuses).
        _ => my::native_password(password, nonce),
    }
}

impl Check for PreparedMysql {
    fn run<'a>(&'a self, cx: &'a mut RunCx<'_>) -> BoxFuture<'a, CheckResult> {
        Box::pin(self.run_check(cx))
    }
}
