//! `memcached`: memcached liveness (`version`) and connection use (`stats`).
//!
//! ```yaml
//! - name: sessions
//!   target: memcached://cache2.internal      # port 11211 by default
//!   check:
//!     type: memcached
//!     mode: deep                             # handshake (default: version) | deep (+ stats)
//!     tls: {}                                # implicit TLS (memcached built with TLS)
//!     max_connection_use: {warn: 80, crit: 95}
//! ```
//!
//! **handshake**: `version` → `VERSION x.y.z` (`server_version`). `SERVER_ERROR` is
//! `unhealthy`; anything else is `protocol`.
//! **deep**: also `stats`: `curr_connections` vs `max_connections` (pool %), and
//! `rejected_connections` / `listen_disabled_num` (non-zero: the server hit its connection
//! limit at some point; reported, not judged). No credentials (the text protocol has none).
//!
//! Details: `server_version`, `connections_used`, `connections_max`, `pool_use_percent`,
//! `rejected_connections`, `listen_disabled_num`, `uptime_seconds`.

use futures::future::BoxFuture;
use portwarden_core::{ErrorKind, Transport};
use portwarden_wire::memcached::{self as mc, Reply};
use serde::{Deserialize, Serialize};

use super::dbcommon::{self, Judgement, Mode, shown};
use super::{Check, CheckInfo, PercentLevels};
use crate::PrepareError;
use crate::cx::{CheckResult, Failure, RunCx};
use crate::tls::{PreparedTls, TlsOptions};

pub static INFO: CheckInfo = CheckInfo {
    name: "memcached",
    transport: Transport::Tcp,
    default_port: Some(11211),
    summary: "memcached: `version`; deep: `stats` curr_connections vs max_connections",
    options: &[
        (
            "mode",
            "handshake (default: version) | deep (+ stats: connection use)",
        ),
        ("tls", "TLS options (see the tls check): implicit TLS"),
        (
            "max_connection_use",
            "{warn: 80, crit: 95}: curr_connections / max_connections (deep; default 80/95)",
        ),
    ],
};

/// `check: {type: memcached, mode: deep}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemcachedCheck {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connection_use: Option<PercentLevels>,
}

impl MemcachedCheck {
    pub fn prepare(&self) -> Result<PreparedMemcached, PrepareError> {
        Ok(PreparedMemcached {
            mode: self.mode,
            tls: dbcommon::prepare_tls(&self.tls)?,
            pool: dbcommon::pool_levels(self.max_connection_use)?,
        })
    }
}

pub struct PreparedMemcached {
    mode: Mode,
    tls: Option<PreparedTls>,
    pool: PercentLevels,
}

const LINE_LIMIT: usize = 1024;
const STATS_LIMIT: usize = 64 * 1024;

fn error_reply(cx: &RunCx<'_>, cmd: &str, e: &str) -> Failure {
    let kind = if e.starts_with("SERVER_ERROR") {
        ErrorKind::Unhealthy
    } else {
        ErrorKind::Protocol
    };
    Failure::new(
        kind,
        format!("{} answered `{cmd}` with `{}`", cx.addr, shown(e)),
    )
}

impl PreparedMemcached {
    async fn run_check(&self, cx: &mut RunCx<'_>) -> CheckResult {
        let mut j = Judgement::new();
        let mut s = dbcommon::connect(cx, self.tls.as_ref(), &mut j).await?;
        let mut buf = Vec::new();
        dbcommon::send(cx, &mut s, mc::VERSION).await?;
        match dbcommon::read_frame(cx, &mut s, &mut buf, LINE_LIMIT, "memcached", |b, _| {
            mc::parse_version(b, LINE_LIMIT)
        })
        .await?
        {
            Reply::Version(v) => cx.detail("server_version", shown(&v)),
            Reply::Error(e) => return Err(error_reply(cx, "version", &e)),
            Reply::Stats(_) => {
                return Err(Failure::new(
                    ErrorKind::Protocol,
                    "stats in answer to version",
                ));
            }
        }
        if self.mode == Mode::Handshake {
            dbcommon::close(cx, &mut s).await;
            return j.finish();
        }
        dbcommon::send(cx, &mut s, mc::STATS).await?;
        let stats =
            match dbcommon::read_frame(cx, &mut s, &mut buf, STATS_LIMIT, "memcached", |b, _| {
                mc::parse_stats(b, STATS_LIMIT)
            })
            .await?
            {
                Reply::Stats(m) => m,
                Reply::Error(e) => return Err(error_reply(cx, "stats", &e)),
                Reply::Version(_) => {
                    return Err(Failure::new(
                        ErrorKind::Protocol,
                        "version in answer to stats",
                    ));
                }
            };
        dbcommon::close(cx, &mut s).await;
        let num = |k: &str| stats.get(k).and_then(|v| v.parse::<u64>().ok());
        for k in ["rejected_connections", "listen_disabled_num"] {
            if let Some(v) = num(k) {
                cx.detail(k, v);
            }
        }
        if let Some(v) = num("uptime") {
            cx.detail("uptime_seconds", v);
        }
        if let (Some(used), Some(max)) = (num("curr_connections"), num("max_connections")) {
            j.pool(cx, used, max, &self.pool);
        }
        j.finish()
    }
}

impl Check for PreparedMemcached {
    fn run<'a>(&'a self, cx: &'a mut RunCx<'_>) -> BoxFuture<'a, CheckResult> {
        Box::pin(self.run_check(cx))
    }
}
