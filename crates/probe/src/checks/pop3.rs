//! `pop3`: POP3 servers (110 with STLS, 995 with implicit TLS).
//!
//! Reads the greeting (`+OK` is up; `-ERR` is `unhealthy` with the server's words), asks
//! `CAPA`, upgrades with `STLS` when offered (`security: auto`) or required
//! (`security: starttls`) — port 995 (or `security: implicit`) speaks TLS first — and asks
//! `CAPA` again over TLS, then `QUIT`. Certificates are judged like the `tls` check.
//!
//! ```yaml
//! - name: pop3
//!   target: pop3://mail.example.com:110
//!   check: {type: pop3, security: starttls}
//! ```

use futures::future::BoxFuture;
use portwarden_core::{ErrorKind, Transport};
use portwarden_wire::pop3::{self, Status};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::common::{Io, Security, TlsPlan, clean, goodbye, read_msg, send, upgrade};
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
            security: self.security,
            tls: PreparedTls::prepare(&self.tls.clone().unwrap_or_default())?,
        })
    }
}

pub struct PreparedPop3 {
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
                    goodbye(&mut t, b"QUIT\r\n").await;
                    Ok(verdict)
                }
                _ => {
                    cx.detail("starttls", false);
                    goodbye(&mut tcp, b"QUIT\r\n").await;
                    Ok(Verdict::up())
                }
            }
        })
    }
}
