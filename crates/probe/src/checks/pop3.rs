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

use super::common::{Io, Mode, Security, clean, read_msg, send};
use super::textproto::{self, TextProtocol, TextSession};
use super::{Check, CheckInfo};
use crate::PrepareError;
use crate::cx::{CheckResult, Failure, RunCx};
use crate::tls::TlsOptions;

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
        Ok(PreparedPop3 {
            session: TextSession::prepare(
                self.security,
                &self.tls,
                self.mode,
                &self.user,
                &self.password,
            )?,
        })
    }
}

pub struct PreparedPop3 {
    session: TextSession,
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

impl TextProtocol for PreparedPop3 {
    const IMPLICIT_PORT: u16 = 995;
    const UPGRADE: &'static str = "STLS";
    const QUIT: &'static [u8] = b"QUIT\r\n";

    fn session(&self) -> &TextSession {
        &self.session
    }

    fn offers_upgrade(caps: &[String]) -> bool {
        caps.iter().any(|c| c == "STLS")
    }

    async fn request_upgrade<S: Io>(
        &self,
        cx: &mut RunCx<'_>,
        s: &mut S,
        buf: &mut Vec<u8>,
    ) -> Result<(), Failure> {
        send(cx, s, b"STLS\r\n").await?;
        let st = status(cx, s, buf, "the STLS answer").await?;
        if !st.ok {
            return Err(Failure::new(
                ErrorKind::Protocol,
                format!("{} refused STLS: {}", cx.addr, clean(&st.text)),
            ));
        }
        Ok(())
    }

    async fn after_upgrade<S: Io>(
        &self,
        cx: &mut RunCx<'_>,
        s: &mut S,
        buf: &mut Vec<u8>,
    ) -> Result<(), Failure> {
        capa(cx, s, buf, "capabilities_tls").await.map(drop)
    }

    /// Deep mode: `USER`/`PASS` (-ERR = `auth`, or `unhealthy` for `[SYS/...]`/`[IN-USE]`
    /// codes), then `STAT` (message count).
    async fn login<S: Io>(
        &self,
        cx: &mut RunCx<'_>,
        s: &mut S,
        buf: &mut Vec<u8>,
    ) -> Result<(), Failure> {
        let Some(l) = &self.session.login else {
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
        Box::pin(textproto::run(self, cx))
    }
}
