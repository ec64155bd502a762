//! `redis`: Redis (and Valkey/KeyDB) liveness and health over RESP.
//!
//! ```yaml
//! - name: cache
//!   target: redis://cache1.internal          # port 6379 by default
//!   check:
//!     type: redis
//!     mode: deep                             # handshake (default) | deep
//!     user: monitor                          # ACL user (optional; Redis 6+)
//!     password: "${env:REDIS_PASSWORD}"      # AUTH; optional in both modes
//!     tls: {}                                # implicit TLS (tls-port)
//!     max_replication_lag: {warn: 10s, crit: 60s}
//!     max_connection_use: {warn: 80, crit: 95}
//! ```
//!
//! **handshake**: optional `AUTH`, then `PING` → `+PONG`, then `INFO server` for
//! `server_version` and `redis_mode`. `-NOAUTH` (or `-DENIED`, protected mode) proves liveness:
//! `up`, `auth_required: true`. `-LOADING`, `-MASTERDOWN` and `-BUSY` are `unhealthy`.
//!
//! **deep**: also `INFO` (all default sections) and, when `INFO clients` lacks `maxclients`
//! (Redis < 7), `CONFIG GET maxclients`. Reports the role; on a replica the link
//! (`master_link_status`; `down` → `unhealthy`) and lag in seconds (`master_last_io_seconds_ago`);
//! on a primary the connected replicas and the largest replica lag in bytes
//! (`master_repl_offset` − replica `offset`) and seconds. `connected_clients` / `maxclients`
//! gives pool %. A failed last RDB save is `degraded` (writes may be refused).
//!
//! Details: `server_version`, `redis_mode`, `auth_required`, `role` (primary|replica),
//! `read_only`, `replication_link`, `replication_lag_seconds`, `replication_lag_bytes`,
//! `connected_replicas`, `connections_used`, `connections_max`, `pool_use_percent`.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use portwarden_core::{ErrorKind, Secret, Transport};
use portwarden_wire::resp::{self, Limits, Value};
use serde::{Deserialize, Serialize};

use super::dbcommon::{self, Judgement, Mode, Stream, shown};
use super::{Check, CheckInfo, DurationLevels, PercentLevels};
use crate::PrepareError;
use crate::cx::{CheckResult, Failure, RunCx};
use crate::tls::{PreparedTls, TlsOptions};

pub static INFO: CheckInfo = CheckInfo {
    name: "redis",
    transport: Transport::Tcp,
    default_port: Some(6379),
    summary: "Redis: PING (NOAUTH = alive; LOADING/MASTERDOWN/BUSY = unhealthy) and version; deep: role, replication link and lag, client pool use",
    options: &[
        (
            "mode",
            "handshake (default: PING + INFO server) | deep (+ replication, clients)",
        ),
        ("user", "ACL user for AUTH (Redis 6+; optional)"),
        (
            "password",
            "AUTH password, e.g. \"${env:REDIS_PASSWORD}\" (never printed)",
        ),
        (
            "tls",
            "TLS options (see the tls check): implicit TLS from the first byte",
        ),
        (
            "max_replication_lag",
            "{warn: 10s, crit: 60s}: replica lag levels (deep; default: not judged)",
        ),
        (
            "max_connection_use",
            "{warn: 80, crit: 95}: connected_clients / maxclients (deep; default 80/95)",
        ),
    ],
};

/// `check: {type: redis, mode: deep, password: "${env:REDIS_PASSWORD}"}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisCheck {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replication_lag: Option<DurationLevels>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connection_use: Option<PercentLevels>,
}

impl RedisCheck {
    pub fn prepare(&self) -> Result<PreparedRedis, PrepareError> {
        if self.user.is_some() && self.password.is_none() {
            return Err(PrepareError::new(
                "password",
                "`user` is set but `password` is missing (AUTH needs both)",
            ));
        }
        let auth = self.password.as_ref().map(|p| match &self.user {
            Some(u) => resp::command(&["AUTH", u, p.expose()]),
            None => resp::command(&["AUTH", p.expose()]),
        });
        Ok(PreparedRedis {
            mode: self.mode,
            auth,
            tls: dbcommon::prepare_tls(&self.tls)?,
            lag: dbcommon::lag_levels(self.max_replication_lag)?,
            pool: dbcommon::pool_levels(self.max_connection_use)?,
        })
    }
}

pub struct PreparedRedis {
    mode: Mode,
    /// The AUTH command, built once (holds the secret; never printed).
    auth: Option<Vec<u8>>,
    tls: Option<PreparedTls>,
    lag: DurationLevels,
    pool: PercentLevels,
}

const LIMITS: Limits = Limits {
    max_bulk: 256 * 1024,
    max_elements: 64,
    max_depth: 4,
};
const READ_LIMIT: usize = 260 * 1024;

/// Error prefixes that mean "alive but not serving".
fn unhealthy_error(e: &str) -> bool {
    [
        "LOADING",
        "MASTERDOWN",
        "BUSY",
        "MISCONF",
        "TRYAGAIN",
        "CLUSTERDOWN",
    ]
    .iter()
    .any(|p| e.starts_with(p))
}

impl PreparedRedis {
    async fn call(
        &self,
        cx: &mut RunCx<'_>,
        s: &mut Stream,
        buf: &mut Vec<u8>,
        cmd: &[u8],
    ) -> Result<Value, Failure> {
        dbcommon::send(cx, s, cmd).await?;
        dbcommon::read_frame(cx, s, buf, READ_LIMIT, "Redis", |b, _| {
            resp::parse(b, &LIMITS)
        })
        .await
    }

    async fn info(
        &self,
        cx: &mut RunCx<'_>,
        s: &mut Stream,
        buf: &mut Vec<u8>,
        section: Option<&str>,
    ) -> Result<BTreeMap<String, String>, Failure> {
        let cmd = match section {
            Some(sec) => resp::command(&["INFO", sec]),
            None => resp::command(&["INFO"]),
        };
        match self.call(cx, s, buf, &cmd).await? {
            Value::Bulk(b) => Ok(resp::parse_info(&String::from_utf8_lossy(&b), 1024)),
            Value::Error(e) => Err(self.error_reply(cx, "INFO", &e)),
            other => Err(Failure::new(
                ErrorKind::Protocol,
                format!("{} answered INFO with {}", cx.addr, describe(&other)),
            )),
        }
    }

    fn error_reply(&self, cx: &RunCx<'_>, cmd: &str, e: &str) -> Failure {
        let kind = if unhealthy_error(e) {
            ErrorKind::Unhealthy
        } else if e.starts_with("NOAUTH") || e.starts_with("WRONGPASS") || e.starts_with("NOPERM") {
            ErrorKind::Auth
        } else {
            ErrorKind::Protocol
        };
        Failure::new(
            kind,
            format!("{} answered {cmd} with -{}", cx.addr, shown(e)),
        )
    }

    async fn run_check(&self, cx: &mut RunCx<'_>) -> CheckResult {
        let mut j = Judgement::new();
        let mut s = dbcommon::connect(cx, self.tls.as_ref(), &mut j).await?;
        let mut buf = Vec::new();
        if let Some(auth) = &self.auth {
            match self.call(cx, &mut s, &mut buf, auth).await? {
                Value::Simple(ok) if ok == "OK" => cx.detail("auth_required", true),
                Value::Error(e) => {
                    let kind = if unhealthy_error(&e) {
                        ErrorKind::Unhealthy
                    } else {
                        ErrorKind::Auth
                    };
                    return Err(Failure::new(
                        kind,
                        format!("{} refused AUTH: -{}", cx.addr, shown(&e)),
                    ));
                }
                other => {
                    return Err(Failure::new(
                        ErrorKind::Protocol,
                        format!("{} answered AUTH with {}", cx.addr, describe(&other)),
                    ));
                }
            }
        }
        match self
            .call(cx, &mut s, &mut buf, &resp::command(&["PING"]))
            .await?
        {
            Value::Simple(p) if p == "PONG" => {}
            Value::Error(e) if e.starts_with("NOAUTH") || e.starts_with("DENIED") => {
                cx.detail("auth_required", true);
                if self.mode == Mode::Deep {
                    return Err(Failure::new(
                        ErrorKind::Auth,
                        format!(
                            "{} needs authentication for deep checks: -{}; set `password`",
                            cx.addr,
                            shown(&e)
                        ),
                    ));
                }
                j.note(format!(
                    "server is alive but needs authentication: -{}",
                    shown(&e)
                ));
                dbcommon::close(cx, &mut s).await;
                return j.finish();
            }
            Value::Error(e) => return Err(self.error_reply(cx, "PING", &e)),
            other => {
                return Err(Failure::new(
                    ErrorKind::Protocol,
                    format!(
                        "{} answered PING with {}, not +PONG",
                        cx.addr,
                        describe(&other)
                    ),
                ));
            }
        }
        if self.auth.is_none() {
            cx.detail("auth_required", false);
        }
        if self.mode == Mode::Handshake {
            // The version is a bonus: an ACL user without +info is still a live server.
            match self.info(cx, &mut s, &mut buf, Some("server")).await {
                Ok(info) => record_server(cx, &info),
                Err(f) if f.error.kind == ErrorKind::Auth => {
                    j.note(format!("no version: {}", f.error.message));
                }
                Err(f) => return Err(f),
            }
            dbcommon::close(cx, &mut s).await;
            return j.finish();
        }
        let info = self.info(cx, &mut s, &mut buf, None).await?;
        record_server(cx, &info);
        let mut maxclients = info.get("maxclients").and_then(|v| v.parse::<u64>().ok());
        if maxclients.is_none() {
            let cmd = resp::command(&["CONFIG", "GET", "maxclients"]);
            if let Value::Array(a) = self.call(cx, &mut s, &mut buf, &cmd).await? {
                maxclients = a
                    .get(1)
                    .and_then(Value::as_text)
                    .and_then(|v| v.parse().ok());
            }
        }
        dbcommon::close(cx, &mut s).await;
        if let (Some(used), Some(max)) = (
            info.get("connected_clients")
                .and_then(|v| v.parse::<u64>().ok()),
            maxclients,
        ) {
            j.pool(cx, used, max, &self.pool);
        }
        if info.get("loading").map(String::as_str) == Some("1") {
            j.fail(ErrorKind::Unhealthy, "the dataset is still loading");
        }
        if let Some(st) = info.get("rdb_last_bgsave_status").filter(|s| *s != "ok") {
            j.warn(format!(
                "last RDB save failed (`{}`): writes may be refused (MISCONF)",
                shown(st)
            ));
        }
        self.judge_replication(cx, &mut j, &info);
        j.finish()
    }

    fn judge_replication(
        &self,
        cx: &mut RunCx<'_>,
        j: &mut Judgement,
        info: &BTreeMap<String, String>,
    ) {
        let get = |k: &str| info.get(k).map(String::as_str);
        match get("role") {
            Some("slave") => {
                cx.detail("role", "replica");
                cx.detail(
                    "read_only",
                    get("slave_read_only").or(get("replica_read_only")) != Some("0"),
                );
                if let (Some(h), Some(p)) = (get("master_host"), get("master_port")) {
                    cx.detail("replication_source", shown(&format!("{h}:{p}")));
                }
                let link = get("master_link_status").unwrap_or("unknown");
                cx.detail("replication_link", shown(link));
                if link != "up" {
                    let since = get("master_link_down_since_seconds")
                        .map(|s| format!(" for {s}s"))
                        .unwrap_or_default();
                    j.fail(
                        ErrorKind::Unhealthy,
                        format!(
                            "replication link to the primary {} is {}{since}",
                            get("master_host").map(shown).unwrap_or_default(),
                            shown(link)
                        ),
                    );
                    return;
                }
                if let Some(secs) =
                    get("master_last_io_seconds_ago").and_then(|v| v.parse::<f64>().ok())
                {
                    j.lag(cx, secs, &self.lag);
                }
                if let (Some(read), Some(applied)) = (
                    get("slave_read_repl_offset").and_then(|v| v.parse::<i64>().ok()),
                    get("slave_repl_offset").and_then(|v| v.parse::<i64>().ok()),
                ) {
                    cx.detail("replication_lag_bytes", (read - applied).max(0));
                }
            }
            Some("master") => {
                cx.detail("role", "primary");
                cx.detail("read_only", false);
                let n: usize = get("connected_slaves")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                cx.detail("connected_replicas", n);
                let master_off = get("master_repl_offset").and_then(|v| v.parse::<i64>().ok());
                let mut max_bytes: Option<i64> = None;
                let mut max_secs: Option<i64> = None;
                for i in 0..n.min(64) {
                    let Some(line) = get(&format!("slave{i}")) else {
                        continue;
                    };
                    let (_state, off, lag) = resp::parse_replica_line(line);
                    if let (Some(m), Some(o)) = (master_off, off) {
                        max_bytes = Some(max_bytes.unwrap_or(0).max(m - o));
                    }
                    if let Some(l) = lag {
                        max_secs = Some(max_secs.unwrap_or(0).max(l));
                    }
                }
                if let Some(b) = max_bytes {
                    cx.detail("replication_lag_bytes", b.max(0));
                }
                if let Some(s) = max_secs {
                    j.lag(cx, s as f64, &self.lag);
                }
            }
            Some(other) => cx.detail("role", shown(other)),
            None => {}
        }
    }
}

/// A reply for a message: its type and a bounded, escaped view.
fn describe(v: &Value) -> String {
    match v {
        Value::Simple(s) => format!("+{}", shown(s)),
        Value::Error(s) => format!("-{}", shown(s)),
        Value::Integer(i) => format!(":{i}"),
        Value::Bulk(b) => format!(
            "a bulk string \"{}\"",
            portwarden_wire::printable::escape(b, 96)
        ),
        Value::Null => "null".into(),
        Value::Array(a) => format!("an array of {}", a.len()),
        Value::Boolean(b) => format!("#{b}"),
        Value::Double(d) => format!(",{d}"),
    }
}

fn record_server(cx: &mut RunCx<'_>, info: &BTreeMap<String, String>) {
    if let Some(v) = info.get("redis_version") {
        cx.detail("server_version", shown(v));
    }
    if let Some(v) = info.get("redis_mode") {
        cx.detail("redis_mode", shown(v));
    }
    if let Some(v) = info
        .get("uptime_in_seconds")
        .and_then(|v| v.parse::<u64>().ok())
    {
        cx.detail("uptime_seconds", v);
    }
}

impl Check for PreparedRedis {
    fn run<'a>(&'a self, cx: &'a mut RunCx<'_>) -> BoxFuture<'a, CheckResult> {
        Box::pin(self.run_check(cx))
    }
}
