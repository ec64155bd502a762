//! `nats`: NATS servers.
//!
//! - `handshake` (default): reads the server's `INFO {json}` (version, server id/name,
//!   JetStream, auth/TLS required), upgrades to TLS when INFO says `tls_required` (certificate
//!   judged like the `tls` check, `tls:` options), then — when the server does not require auth — sends
//!   `CONNECT {...}` + `PING` and expects `PONG`. A server that requires auth is reported `up`
//!   after `INFO` with `auth_required: true` (handshake mode has no credentials).
//! - `deep`: `CONNECT` with `user`/`password` or `token`, `PING` → `PONG`
//!   (`-ERR 'Authorization Violation'` → `auth`, or as `on_auth_refused` says); when the server
//!   has JetStream, asks `$JS.API.INFO` and reports streams, consumers, memory and storage
//!   (a JetStream error → `unhealthy`). `require_jetstream: true` makes a server without
//!   JetStream `unhealthy`.
//!
//! ```yaml
//! - name: nats
//!   target: nats://bus1:4222
//!   check: {type: nats, mode: deep, user: mon, password: "${env:NATS_PW}", require_jetstream: true}
//! ```

use futures::future::BoxFuture;
use portwarden_core::{ErrorKind, Secret, Transport};
use portwarden_wire::nats::{self, Credentials, ServerOp};
use serde::{Deserialize, Serialize};

use super::common::{Io, Mode, OnAuthRefused, clean, goodbye, read_msg, send, upgrade};
use super::{Check, CheckInfo};
use crate::cx::{CheckResult, Failure, RunCx, Verdict};
use crate::tls::{PreparedTls, TlsOptions};
use crate::{PrepareError, net};

pub static INFO: CheckInfo = CheckInfo {
    name: "nats",
    transport: Transport::Tcp,
    default_port: Some(4222),
    summary: "NATS: INFO (version, JetStream), CONNECT + PING → PONG; deep: login and JetStream account info",
    options: &[
        (
            "mode",
            "handshake (default: INFO, and PING/PONG when no auth is required) | deep (login; JetStream info)",
        ),
        (
            "user / password",
            "deep: credentials (password is a secret)",
        ),
        (
            "token",
            "deep: auth token instead of user/password (a secret)",
        ),
        (
            "require_jetstream",
            "unhealthy when the server does not have JetStream enabled (default false)",
        ),
        (
            "on_auth_refused",
            "down (default, error `auth`) | degraded | up: what a refused login means",
        ),
        (
            "tls",
            "TLS options used when the server requires TLS (see the tls check)",
        ),
    ],
};

/// `check: {type: nats, mode: deep, user: u, password: "${env:P}"}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsCheck {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    #[serde(default)]
    pub require_jetstream: bool,
    #[serde(default)]
    pub on_auth_refused: OnAuthRefused,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsOptions>,
}

impl NatsCheck {
    pub fn prepare(&self) -> Result<PreparedNats, PrepareError> {
        let has_creds = self.user.is_some() || self.password.is_some() || self.token.is_some();
        if self.mode == Mode::Handshake && has_creds {
            return Err(PrepareError::new(
                "mode",
                "credentials are only used with `mode: deep`",
            ));
        }
        if self.token.is_some() && (self.user.is_some() || self.password.is_some()) {
            return Err(PrepareError::new(
                "token",
                "use either `token` or `user`/`password`",
            ));
        }
        if self.user.is_some() != self.password.is_some() {
            return Err(PrepareError::new(
                "password",
                "`user` and `password` go together",
            ));
        }
        Ok(PreparedNats {
            tls: PreparedTls::prepare(&self.tls.clone().unwrap_or_default())?,
            cfg: self.clone(),
        })
    }
}

pub struct PreparedNats {
    cfg: NatsCheck,
    tls: PreparedTls,
}

async fn next_op<S: Io>(
    cx: &mut RunCx<'_>,
    s: &mut S,
    buf: &mut Vec<u8>,
    what: &str,
) -> Result<ServerOp, Failure> {
    read_msg(cx, s, buf, nats::MAX_LINE + 2, "NATS", what, |b| {
        match nats::next_line(b, nats::MAX_LINE)? {
            Some((line, used)) => Ok(Some((nats::parse_op(line)?, used))),
            None => {
                // A non-NATS peer: judge the first bytes before waiting for a whole line.
                if b.len() >= 4 && !b[..4].iter().all(|c| c.is_ascii_graphic() || *c == b' ') {
                    return Err(portwarden_wire::cursor::DecodeError::invalid(
                        "binary data where a NATS control line was expected",
                    ));
                }
                Ok(None)
            }
        }
    })
    .await
}

/// Reads until `PONG`, answering server `PING`s; `-ERR` ends the wait.
async fn until_pong<S: Io>(
    cx: &mut RunCx<'_>,
    s: &mut S,
    buf: &mut Vec<u8>,
) -> Result<Result<(), String>, Failure> {
    for _ in 0..32 {
        match next_op(cx, s, buf, "PONG").await? {
            ServerOp::Pong => return Ok(Ok(())),
            ServerOp::Err(e) => return Ok(Err(e)),
            ServerOp::Ping => send(cx, s, b"PONG\r\n").await?,
            _ => {}
        }
    }
    Err(Failure::new(
        ErrorKind::Protocol,
        format!("{}: 32 lines without PONG", cx.addr),
    ))
}

impl PreparedNats {
    async fn jetstream<S: Io>(
        &self,
        cx: &mut RunCx<'_>,
        s: &mut S,
        buf: &mut Vec<u8>,
    ) -> CheckResult {
        let addr = cx.addr;
        let inbox = format!("_INBOX.portwarden.{:016x}", rand_u64());
        send(cx, s, &nats::jetstream_info_request(&inbox)).await?;
        for _ in 0..32 {
            match next_op(cx, s, buf, "the JetStream info answer").await? {
                ServerOp::Msg { size, .. } => {
                    let payload =
                        read_msg(cx, s, buf, size + 2, "NATS", "a message payload", |b| {
                            Ok((b.len() >= size + 2).then(|| (b[..size].to_vec(), size + 2)))
                        })
                        .await?;
                    let info = nats::parse_js_info(&payload)
                        .map_err(|e| Failure::new(ErrorKind::Protocol, format!("{addr}: {e}")))?;
                    if let Some(e) = info.error {
                        return Err(Failure::new(
                            ErrorKind::Unhealthy,
                            format!(
                                "{addr}: JetStream answered error {} ({}): {}",
                                e.code,
                                e.err_code,
                                clean(&e.description)
                            ),
                        ));
                    }
                    cx.detail("jetstream_streams", info.streams);
                    cx.detail("jetstream_consumers", info.consumers);
                    cx.detail("jetstream_memory_bytes", info.memory);
                    cx.detail("jetstream_storage_bytes", info.storage);
                    return Ok(Verdict::up());
                }
                ServerOp::Err(e) => {
                    return Err(Failure::new(
                        ErrorKind::Unhealthy,
                        format!("{addr}: JetStream info request failed: {}", clean(&e)),
                    ));
                }
                ServerOp::Ping => send(cx, s, b"PONG\r\n").await?,
                _ => {}
            }
        }
        Err(Failure::new(
            ErrorKind::Protocol,
            format!("{addr}: 32 lines without the JetStream answer"),
        ))
    }
}

impl PreparedNats {
    /// After INFO (and TLS when required): CONNECT + PING → PONG, then JetStream in deep mode.
    async fn converse<S: Io>(
        &self,
        cx: &mut RunCx<'_>,
        s: &mut S,
        buf: &mut Vec<u8>,
        info: &nats::Info,
        tls: bool,
    ) -> CheckResult {
        let addr = cx.addr;
        let deep = self.cfg.mode == Mode::Deep;
        if info.auth_required && !deep {
            goodbye(s, &[]).await;
            return Ok(Verdict::up());
        }
        let creds = Credentials {
            user: self.cfg.user.as_deref(),
            pass: self.cfg.password.as_ref().map(Secret::expose),
            token: self.cfg.token.as_ref().map(Secret::expose),
        };
        send(
            cx,
            s,
            &nats::connect_and_ping("portwarden", env!("CARGO_PKG_VERSION"), &creds, tls),
        )
        .await?;
        if let Err(e) = until_pong(cx, s, buf).await? {
            let low = e.to_ascii_lowercase();
            if low.contains("authorization") || low.contains("authentication") {
                return self
                    .cfg
                    .on_auth_refused
                    .judge(format!("{addr} refused our login: {}", clean(&e)));
            }
            return Err(Failure::new(
                ErrorKind::Unhealthy,
                format!("{addr} answered -ERR {}", clean(&e)),
            ));
        }
        let v = if deep && info.jetstream {
            self.jetstream(cx, s, buf).await?
        } else {
            Verdict::up()
        };
        goodbye(s, &[]).await;
        Ok(v)
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

impl Check for PreparedNats {
    fn run<'a>(&'a self, cx: &'a mut RunCx<'_>) -> BoxFuture<'a, CheckResult> {
        Box::pin(async move {
            let addr = cx.addr;
            let mut s = net::connect_tcp(cx).await?;
            let mut buf = Vec::new();
            let info = match next_op(cx, &mut s, &mut buf, "INFO").await? {
                ServerOp::Info(i) => i,
                other => {
                    return Err(Failure::new(
                        ErrorKind::Protocol,
                        format!("{addr} sent {other:?} where NATS INFO was expected"),
                    ));
                }
            };
            cx.detail("server_version", clean(&info.version));
            cx.detail("server_id", clean(&info.server_id));
            if !info.server_name.is_empty() {
                cx.detail("server_name", clean(&info.server_name));
            }
            cx.detail("jetstream", info.jetstream);
            cx.detail("auth_required", info.auth_required);
            cx.detail("tls_required", info.tls_required);
            cx.detail("max_payload", info.max_payload);
            if self.cfg.require_jetstream && !info.jetstream {
                return Err(Failure::new(
                    ErrorKind::Unhealthy,
                    format!("{addr}: JetStream is not enabled (require_jetstream: true)"),
                ));
            }
            if !info.tls_required {
                return self.converse(cx, &mut s, &mut buf, &info, false).await;
            }
            // The server wants TLS right after INFO: same certificate checks as `tls`.
            let (mut t, tls_verdict) = upgrade(cx, &self.tls, s, &buf).await?;
            let v = self.converse(cx, &mut t, &mut buf, &info, true).await?;
            Ok(tls_verdict.worst(v))
        })
    }
}
