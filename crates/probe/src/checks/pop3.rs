//! `pop3`: POP3 servers (110 with STLS, 995 with implicit TLS).
//!
//! Reads the greeting (`+OK` is up; `-ERR` is `unhealthy` with the server's words), asks
//! `CAPA`, upgrades with `STLS` when offered (`security: auto`) or required
//! (`security: starttls`) — port 995 (or `security: implicit`) speaks TLS first — and asks
//! `CAPA` again over TLS, then `QUIT`. Certificates are judged like the `tls` check.
//!
//! `mode: deep` logs in with `USER`/`PASS` after TLS (-ERR is `auth`) and asks `STAT`
//! (reports `messages`). Credentials never travel in clear text.
//!
//! ```yaml
//! - name: pop3
//!   target: pop3://mail.example.com:110
//!   check: {type: pop3, security: starttls}
//! ```

use futures::future::BoxFuture;
use portwarden_core::{ErrorKind, Secret, Transport};
use portwarden_wire::pop3::{self, Status};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::common::{
    Io, Login, Mode, Security, TlsPlan, clean, cleartext_refusal, goodbye, login_config, read_msg,
    send, upgrade,
};
use super::{Check, CheckInfo};
use crate::cx::{CheckResult, Failure, RunCx, Verdict};
use crate::tls::{PreparedTls, TlsOptions};
use crate::{PrepareError, net};

pub static INFO: CheckInfo = CheckInfo {
    name: "pop3",
    transport: Transport::Tcp,
    default_port: Some(110),
    summary: "POP3: +OK greeting, CAPA, STLS (or implicit TLS on 995) with certificate checks",
    options: &[
        (
            "security",
            "auto (default: implicit TLS on 995, else STLS when offered) | starttls (required) | implicit | none",
        ),
        ("tls", "TLS options (see the tls check)"),
        (
            "mode",
            "handshake (default) | deep (USER/PASS over TLS, then STAT)",
        ),
        (
            "user / password",
            "deep: credentials (password is a secret)",
        ),
    ],
};

/// `check: {type: pop3}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pop3Check {
    #[serde(default)]
    pub security: Security,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsOptions>,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
}

impl Pop3Check {
    pub fn prepare(&self) -> Result<PreparedPop3, PrepareError> {
        if self.security == Security::None && self.tls.is_some() {
            return Err(PrepareError::new(
                "tls",
                "TLS options with `security: none`",
            ));
        }
        Ok(PreparedPop3 {
            login: login_config(self.mode, &self.user, &self.password, self.security)?,
            security: self.security,
            tls: PreparedTls::prepare(&self.tls.clone().unwrap_or_default())?,
        })
    }
}

pub struct PreparedPop3 {
    login: Option<Login>,
    security: Security,
    tls: PreparedTls,
}

const LIMIT: usize = 64 * 1024;

async fn status<S: Io>(
    cx: &mut RunCx<'_>,
    s: &mut S,
    buf: &mut Vec<u8>,
    what: &str,
) -> Result<Status, Failure> {
    read_msg(cx, s, buf, LIMIT, "POP3", what, pop3::parse_status).await
}

async fn capa<S: Io>(
    cx: &mut RunCx<'_>,
    s: &mut S,
    buf: &mut Vec<u8>,
    key: &str,
) -> Result<Vec<String>, Failure> {
    send(cx, s, b"CAPA\r\n").await?;
    let st = status(cx, s, buf, "the CAPA answer").await?;
    if !st.ok {
        // RFC 2449 is optional: an old server without CAPA is still a POP3 server.
        return Ok(Vec::new());
    }
    let lines = read_msg(
        cx,
        s,
        buf,
        LIMIT,
        "POP3",
        "the CAPA list",
        pop3::parse_multiline,
    )
    .await?;
    let caps = pop3::capabilities(&lines);
    cx.detail(
        key,
        json!(caps.iter().map(|c| clean(c)).collect::<Vec<_>>()),
    );
    Ok(caps)
}

impl PreparedPop3 {
    /// Deep mode: `USER`/`PASS` (-ERR = `auth`, or `unhealthy` for `[SYS/...]`/`[IN-USE]`
    /// codes), then `STAT` (message count).
    async fn login<S: Io>(
        &self,
        cx: &mut RunCx<'_>,
        s: &mut S,
        buf: &mut Vec<u8>,
    ) -> Result<(), Failure> {
        let Some(l) = &self.login else {
            return Ok(());
        };
        let addr = cx.addr;
        send(cx, s, format!("USER {}\r\n", l.user).as_bytes()).await?;
        let u = status(cx, s, buf, "the USER answer").await?;
        let st = if u.ok {
            send(
                cx,
                s,
                format!("PASS {}\r\n", l.password.expose()).as_bytes(),
            )
            .await?;
            status(cx, s, buf, "the PASS answer").await?
        } else {
            u
        };
        if !st.ok {
            let kind = if st.text.starts_with("[SYS/") || st.text.starts_with("[IN-USE]") {
                ErrorKind::Unhealthy
            } else {
                ErrorKind::Auth
            };
            return Err(Failure::new(
                kind,
                format!(
                    "{addr} refused the login of `{}`: -ERR {}",
                    clean(&l.user),
                    clean(&st.text)
                ),
            ));
        }
        cx.detail("authenticated", true);
        send(cx, s, b"STAT\r\n").await?;
        let st = status(cx, s, buf, "the STAT answer").await?;
        if !st.ok {
            return Err(Failure::new(
                ErrorKind::Unhealthy,
                format!("{addr} answered STAT with -ERR {}", clean(&st.text)),
            ));
        }
        if let Some(n) = pop3::stat_count(&st.text) {
            cx.detail("messages", n);
        }
        Ok(())
    }

    async fn greet<S: Io>(
        &self,
        cx: &mut RunCx<'_>,
        s: &mut S,
        buf: &mut Vec<u8>,
    ) -> Result<Vec<String>, Failure> {
        let g = status(cx, s, buf, "a POP3 greeting").await?;
        cx.detail("banner", clean(&g.text));
        if !g.ok {
            return Err(Failure::new(
                ErrorKind::Unhealthy,
                format!("{} greets with -ERR {}", cx.addr, clean(&g.text)),
            ));
        }
        capa(cx, s, buf, "capabilities").await
    }
}

impl Check for PreparedPop3 {
    fn run<'a>(&'a self, cx: &'a mut RunCx<'_>) -> BoxFuture<'a, CheckResult> {
        Box::pin(async move {
            let addr = cx.addr;
            let plan = self.security.plan(addr.port(), 995);
            let mut tcp = net::connect_tcp(cx).await?;
            let mut buf = Vec::new();
            if plan == TlsPlan::Implicit {
                let (mut t, verdict) = self.tls.handshake(cx, tcp).await?;
                cx.detail("tls_mode", "implicit");
                self.greet(cx, &mut t, &mut buf).await?;
                self.login(cx, &mut t, &mut buf).await?;
                goodbye(&mut t, b"QUIT\r\n").await;
                return Ok(verdict);
            }
            let caps = self.greet(cx, &mut tcp, &mut buf).await?;
            let offered = caps.iter().any(|c| c == "STLS");
            match plan {
                TlsPlan::Starttls(required) if offered || required => {
                    if !offered {
                        return Err(Failure::new(
                            ErrorKind::Protocol,
                            format!("{addr} does not offer STLS (security: starttls)"),
                        ));
                    }
                    send(cx, &mut tcp, b"STLS\r\n").await?;
                    let st = status(cx, &mut tcp, &mut buf, "the STLS answer").await?;
                    if !st.ok {
                        return Err(Failure::new(
                            ErrorKind::Protocol,
                            format!("{addr} refused STLS: {}", clean(&st.text)),
                        ));
                    }
                    let (mut t, verdict) = upgrade(cx, &self.tls, tcp, &buf).await?;
                    capa(cx, &mut t, &mut buf, "capabilities_tls").await?;
                    self.login(cx, &mut t, &mut buf).await?;
                    goodbye(&mut t, b"QUIT\r\n").await;
                    Ok(verdict)
                }
                _ => {
                    cx.detail("starttls", false);
                    goodbye(&mut tcp, b"QUIT\r\n").await;
                    if self.login.is_some() {
                        return Err(cleartext_refusal(addr, "STLS"));
                    }
                    Ok(Verdict::up())
                }
            }
        })
    }
}
