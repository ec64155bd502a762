//! `mongodb`: MongoDB liveness (handshake) and replica-set health (deep) over OP_MSG.
//!
//! ```yaml
//! - name: catalog
//!   target: mongodb://mongo1.internal        # port 27017 by default
//!   check:
//!     type: mongodb
//!     mode: deep                             # handshake (default) | deep
//!     user: monitor                          # SCRAM-SHA-256 (optional: auth may be off)
//!     password: "${env:MONGO_PASSWORD}"
//!     auth_source: admin                     # database holding the user (default admin)
//!     tls: {}                                # implicit TLS (net.tls.mode requireTLS)
//!     max_replication_lag: {warn: 10s, crit: 60s}
//!     max_connection_use: {warn: 80, crit: 95}
//! ```
//!
//! **handshake** (no credentials): `hello` (falling back to `isMaster` on servers older than
//! 4.4.2 that answer CommandNotFound), then `buildInfo` for `server_version`; both are allowed
//! before authentication. Reports `role` (primary, replica, arbiter, mongos, standalone,
//! other), `set_name`, `max_wire_version`, `read_only` (not a writable primary). A replica-set
//! member that is neither primary, secondary nor arbiter (RECOVERING, STARTUP2, REMOVED...) is
//! `unhealthy`. If `buildInfo` needs authentication the version is left out (a note says so).
//!
//! **deep**: the handshake, then SCRAM-SHA-256 login when `user`/`password` are set
//! (`saslStart`/`saslContinue`, server signature verified), `serverStatus` (connections
//! current vs current + available → pool %) and `replSetGetStatus` (skipped on a standalone):
//! on a secondary, `replication_link` is `up` while a healthy primary is visible (`down` →
//! `unhealthy`) and `replication_lag_seconds` is the primary's optime minus ours; on the
//! primary, the largest lag of its healthy secondaries. The monitoring user needs the
//! `clusterMonitor` role. SCRAM-SHA-1 (MongoDB < 4.0 users) is not supported.
//!
//! Tested against: the SCRAM client against a real PostgreSQL (same RFC 5802/7677 exchange)
//! and the RFC 7677 vector; the MongoDB framing against spec-built mock servers (no MongoDB
//! server can be installed on the build machines).

use futures::future::BoxFuture;
use portwarden_core::{ErrorKind, Secret, Transport};
use portwarden_wire::bson::{Bson, Document};
use portwarden_wire::mongodb::{self as mongo, Hello, ReplStatus};
use portwarden_wire::scram::Scram;
use serde::{Deserialize, Serialize};

use super::dbcommon::{self, Judgement, Mode, Stream, shown};
use super::{Check, CheckInfo, DurationLevels, PercentLevels};
use crate::PrepareError;
use crate::cx::{CheckResult, Failure, RunCx};
use crate::tls::{PreparedTls, TlsOptions};

pub static INFO: CheckInfo = CheckInfo {
    name: "mongodb",
    transport: Transport::Tcp,
    default_port: Some(27017),
    summary: "MongoDB: OP_MSG hello (role, replica set, wire version) + buildInfo; deep: SCRAM-SHA-256 login, connections, replica set link and lag",
    options: &[
        (
            "mode",
            "handshake (default, no credentials) | deep (serverStatus, replSetGetStatus)",
        ),
        ("user", "SCRAM-SHA-256 user (optional; deep mode)"),
        (
            "password",
            "password, e.g. \"${env:MONGO_PASSWORD}\" (never printed)",
        ),
        (
            "auth_source",
            "database that holds the user (default `admin`)",
        ),
        ("tls", "TLS options (see the tls check): implicit TLS"),
        (
            "max_replication_lag",
            "{warn: 10s, crit: 60s}: secondary optime lag levels (deep; default: not judged)",
        ),
        (
            "max_connection_use",
            "{warn: 80, crit: 95}: connections current / (current + available) (deep; default 80/95)",
        ),
    ],
};

/// `check: {type: mongodb, mode: deep, user: monitor, password: "${env:MONGO_PASSWORD}"}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MongodbCheck {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replication_lag: Option<DurationLevels>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connection_use: Option<PercentLevels>,
}

impl MongodbCheck {
    pub fn prepare(&self) -> Result<PreparedMongodb, PrepareError> {
        let creds = match (&self.user, &self.password) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            (None, None) => None,
            (Some(_), None) => {
                return Err(PrepareError::new(
                    "password",
                    "`user` is set but `password` is missing",
                ));
            }
            (None, Some(_)) => {
                return Err(PrepareError::new(
                    "user",
                    "`password` is set but `user` is missing",
                ));
            }
        };
        if creds.is_some() && self.mode == Mode::Handshake {
            return Err(PrepareError::new(
                "password",
                "handshake mode does not log in; set `mode: deep` to use credentials",
            ));
        }
        Ok(PreparedMongodb {
            mode: self.mode,
            creds,
            auth_source: self
                .auth_source
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "admin".into()),
            tls: dbcommon::prepare_tls(&self.tls)?,
            lag: dbcommon::lag_levels(self.max_replication_lag)?,
            pool: dbcommon::pool_levels(self.max_connection_use)?,
        })
    }
}

pub struct PreparedMongodb {
    mode: Mode,
    creds: Option<(String, Secret)>,
    auth_source: String,
    tls: Option<PreparedTls>,
    lag: DurationLevels,
    pool: PercentLevels,
}

/// Deep replies (serverStatus) are larger than the handshake's; still bounded.
const LIMIT: usize = 1024 * 1024;

/// MongoDB error codes we act on.
const COMMAND_NOT_FOUND: i64 = 59;
const UNAUTHORIZED: i64 = 13;
const AUTHENTICATION_FAILED: i64 = 18;
const NO_REPLICATION_ENABLED: i64 = 76;
const NOT_YET_INITIALIZED: i64 = 94;

/// One conversation: request ids and the read buffer.
struct Conv {
    s: Stream,
    buf: Vec<u8>,
    next_id: i32,
}

impl Conv {
    async fn command(
        &mut self,
        cx: &mut RunCx<'_>,
        build: impl FnOnce(i32) -> Vec<u8>,
    ) -> Result<Document, Failure> {
        self.next_id += 1;
        let id = self.next_id;
        dbcommon::send(cx, &mut self.s, &build(id)).await?;
        let reply =
            dbcommon::read_frame(cx, &mut self.s, &mut self.buf, LIMIT, "MongoDB", |b, _| {
                mongo::parse_reply(b, LIMIT)
            })
            .await?;
        if reply.response_to != id {
            return Err(Failure::new(
                ErrorKind::Protocol,
                format!(
                    "{} answered request {} while we asked request {id}",
                    cx.addr, reply.response_to
                ),
            ));
        }
        Ok(reply.body)
    }
}

/// A fresh client nonce from the system RNG (RFC 5802: printable, no comma).
fn client_nonce() -> Result<String, Failure> {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 24];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| Failure::new(ErrorKind::Local, "the system random generator failed"))?;
    Ok(portwarden_wire::base64::encode(&b))
}

impl PreparedMongodb {
    async fn login(
        &self,
        cx: &mut RunCx<'_>,
        c: &mut Conv,
        user: &str,
        password: &Secret,
    ) -> Result<(), Failure> {
        let addr = cx.addr;
        let db = self.auth_source.clone();
        let mut scram = Scram::new(user, password.expose(), &client_nonce()?);
        let first = scram.client_first();
        let r = c
            .command(cx, |id| {
                mongo::sasl_start(id, &db, "SCRAM-SHA-256", first.as_bytes())
            })
            .await?;
        let auth_fail = |body: &Document| -> Option<Failure> {
            mongo::command_error(body).map(|(code, msg)| {
                let kind = if code == AUTHENTICATION_FAILED || code == UNAUTHORIZED {
                    ErrorKind::Auth
                } else {
                    ErrorKind::Protocol
                };
                Failure::new(
                    kind,
                    format!(
                        "{addr} refused the SCRAM-SHA-256 login as `{}`: {}",
                        shown(user),
                        shown(&msg)
                    ),
                )
            })
        };
        if let Some(f) = auth_fail(&r) {
            return Err(f);
        }
        let conv_id = r
            .get("conversationId")
            .and_then(Bson::as_i64)
            .and_then(|v| i32::try_from(v).ok())
            .unwrap_or(1);
        let server_first = r
            .get("payload")
            .and_then(Bson::as_binary)
            .unwrap_or_default();
        let fin = scram.client_final(server_first).map_err(|e| {
            Failure::new(
                ErrorKind::Auth,
                format!("{addr}: SCRAM-SHA-256 with `{}`: {e}", shown(user)),
            )
        })?;
        let r = c
            .command(cx, |id| {
                mongo::sasl_continue(id, &db, conv_id, fin.as_bytes())
            })
            .await?;
        if let Some(f) = auth_fail(&r) {
            return Err(f);
        }
        let server_final = r
            .get("payload")
            .and_then(Bson::as_binary)
            .unwrap_or_default();
        scram.verify_server_final(server_final).map_err(|e| {
            Failure::new(
                ErrorKind::Auth,
                format!("{addr}: SCRAM-SHA-256 server proof: {e}"),
            )
        })?;
        // Servers that ignore skipEmptyExchange want one more, empty round.
        if r.get("done").and_then(Bson::as_bool) == Some(false) {
            let r = c
                .command(cx, |id| mongo::sasl_continue(id, &db, conv_id, b""))
                .await?;
            if let Some(f) = auth_fail(&r) {
                return Err(f);
            }
        }
        Ok(())
    }

    async fn run_check(&self, cx: &mut RunCx<'_>) -> CheckResult {
        let mut j = Judgement::new();
        let s = dbcommon::connect(cx, self.tls.as_ref(), &mut j).await?;
        let mut c = Conv {
            s,
            buf: Vec::new(),
            next_id: 0,
        };
        let mut body = c.command(cx, mongo::hello_request).await?;
        if let Some((COMMAND_NOT_FOUND, _)) = mongo::command_error(&body) {
            body = c.command(cx, mongo::is_master_request).await?;
        }
        if let Some((_, e)) = mongo::command_error(&body) {
            return Err(Failure::new(
                ErrorKind::Unhealthy,
                format!("{} refused hello: {}", cx.addr, shown(&e)),
            ));
        }
        let hello = Hello::from_body(&body);
        let role = match hello.role() {
            "secondary" => "replica",
            r => r,
        };
        cx.detail("role", role);
        cx.detail("read_only", !hello.writable_primary);
        if let Some(n) = &hello.set_name {
            cx.detail("set_name", shown(n));
        }
        if let Some(v) = hello.max_wire_version {
            cx.detail("max_wire_version", v);
        }
        let info = c.command(cx, mongo::build_info_request).await?;
        match (
            mongo::command_error(&info),
            info.get("version").and_then(Bson::as_str),
        ) {
            (None, Some(v)) => cx.detail("server_version", shown(v)),
            (Some((_, e)), _) => j.note(format!("buildInfo refused: {}", shown(&e))),
            (None, None) => {}
        }
        if role == "other" {
            j.fail(
                ErrorKind::Unhealthy,
                format!(
                    "replica set member of `{}` is neither primary nor secondary (recovering, starting up or removed)",
                    shown(hello.set_name.as_deref().unwrap_or("?"))
                ),
            );
        }
        if self.mode == Mode::Handshake {
            dbcommon::close(cx, &mut c.s).await;
            return j.finish();
        }
        if let Some((user, password)) = &self.creds {
            self.login(cx, &mut c, user, password).await?;
        }
        let status = c.command(cx, mongo::server_status_request).await?;
        if let Some((code, _)) = mongo::command_error(&status)
            && code == UNAUTHORIZED
        {
            cx.detail("auth_required", true);
        } else if self.creds.is_none() {
            cx.detail("auth_required", false);
        }
        if let Some((code, e)) = mongo::command_error(&status) {
            let kind = if code == UNAUTHORIZED {
                ErrorKind::Auth
            } else {
                ErrorKind::Unhealthy
            };
            return Err(Failure::new(
                kind,
                format!(
                    "{} refused serverStatus: {}{}",
                    cx.addr,
                    shown(&e),
                    if code == UNAUTHORIZED {
                        "; set `user`/`password` (role clusterMonitor)"
                    } else {
                        ""
                    }
                ),
            ));
        }
        if let Some(conns) = status.get("connections").and_then(Bson::as_document) {
            let n = |k: &str| conns.get(k).and_then(Bson::as_i64).map(|v| v.max(0) as u64);
            if let (Some(cur), Some(avail)) = (n("current"), n("available")) {
                j.pool(cx, cur, cur + avail, &self.pool);
            }
        }
        if hello.set_name.is_some() {
            let rs = c.command(cx, mongo::repl_set_get_status_request).await?;
            match mongo::command_error(&rs) {
                None => self.judge_replication(cx, &mut j, &rs),
                Some((NO_REPLICATION_ENABLED, _)) => {}
                Some((NOT_YET_INITIALIZED, e)) => j.fail(
                    ErrorKind::Unhealthy,
                    format!("replica set not initialized: {}", shown(&e)),
                ),
                Some((_, e)) => j.note(format!("replSetGetStatus refused: {}", shown(&e))),
            }
        }
        dbcommon::close(cx, &mut c.s).await;
        j.finish()
    }

    fn judge_replication(&self, cx: &mut RunCx<'_>, j: &mut Judgement, body: &Document) {
        let Some(rs) = ReplStatus::from_body(body) else {
            j.note("replSetGetStatus without members");
            return;
        };
        let Some(me) = rs.me() else {
            return;
        };
        if me.state == 2 {
            match rs.primary() {
                Some(p) => {
                    cx.detail("replication_link", "up");
                    cx.detail("replication_source", shown(&p.name));
                }
                None => {
                    cx.detail("replication_link", "down");
                    j.fail(
                        ErrorKind::Unhealthy,
                        format!(
                            "secondary of `{}` sees no healthy primary: replication is stalled",
                            shown(&rs.set)
                        ),
                    );
                    return;
                }
            }
        }
        if me.state == 1 {
            let down: Vec<&str> = rs
                .members
                .iter()
                .filter(|m| !m.healthy)
                .map(|m| m.name.as_str())
                .collect();
            cx.detail("unhealthy_members", down.len());
            if !down.is_empty() {
                j.warn(format!(
                    "replica set member(s) unreachable: {}",
                    shown(&down.join(", "))
                ));
            }
        }
        if let Some(lag) = rs.lag_seconds() {
            j.lag(cx, lag, &self.lag);
        }
    }
}

impl Check for PreparedMongodb {
    fn run<'a>(&'a self, cx: &'a mut RunCx<'_>) -> BoxFuture<'a, CheckResult> {
        Box::pin(self.run_check(cx))
    }
}
