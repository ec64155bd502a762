//! `ftp`: FTP servers (21, with optional `AUTH TLS`; 990 implicit FTPS).
//!
//! Reads the greeting (`220` is up; `120`, `421` or any 4xx/5xx greeting is `unhealthy` with the
//! server's words), asks `FEAT`, and upgrades with `AUTH TLS` (RFC 4217) when offered
//! (`security: auto`) or required (`security: starttls`); port 990 (or `security: implicit`)
//! speaks TLS first. Certificates are judged like the `tls` check. Ends with `QUIT`.
//!
//! `mode: deep` logs in with `USER`/`PASS` after TLS (530 is `auth`) and asks `PWD`.
//! Credentials never travel in clear text.
//!
//! ```yaml
//! - name: ftp
//!   target: ftp://files.example.com:21
//!   check: {type: ftp, security: starttls}
//! ```

use futures::future::BoxFuture;
use portwarden_core::{ErrorKind, Secret, Transport};
use portwarden_wire::ftp;
use portwarden_wire::smtp::Reply;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::common::{Io, Mode, Security, clean, read_msg, send};
use super::smtp::judge_greeting;
use super::textproto::{self, TextProtocol, TextSession};
use super::{Check, CheckInfo};
use crate::PrepareError;
use crate::cx::{CheckResult, Failure, RunCx};
use crate::tls::TlsOptions;

pub static INFO: CheckInfo = CheckInfo {
    name: "ftp",
    transport: Transport::Tcp,
    default_port: Some(21),
    summary: "FTP: 220 greeting, FEAT, AUTH TLS (or implicit TLS on 990) with certificate checks",
    options: &[
        (
            "security",
            "auto (default: implicit TLS on 990, else AUTH TLS when FEAT offers it) | starttls (AUTH TLS required) | implicit | none",
        ),
        ("tls", "TLS options (see the tls check)"),
        (
            "mode",
            "handshake (default) | deep (USER/PASS over TLS, then PWD)",
        ),
        (
            "user / password",
            "deep: credentials (password is a secret)",
        ),
    ],
};

/// `check: {type: ftp}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FtpCheck {
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

impl FtpCheck {
    pub fn prepare(&self) -> Result<PreparedFtp, PrepareError> {
        Ok(PreparedFtp {
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

pub struct PreparedFtp {
    session: TextSession,
}

const LIMIT: usize = 64 * 1024;

async fn reply<S: Io>(
    cx: &mut RunCx<'_>,
    s: &mut S,
    buf: &mut Vec<u8>,
    what: &str,
) -> Result<Reply, Failure> {
    read_msg(cx, s, buf, LIMIT, "FTP", what, ftp::parse).await
}

impl TextProtocol for PreparedFtp {
    const IMPLICIT_PORT: u16 = 990;
    const UPGRADE: &'static str = "AUTH TLS";
    const QUIT: &'static [u8] = b"QUIT\r\n";
    // Required: try AUTH TLS even when FEAT does not list it (some servers omit it).
    const TRY_UNADVERTISED: bool = true;

    fn session(&self) -> &TextSession {
        &self.session
    }

    fn offers_upgrade(caps: &[String]) -> bool {
        ftp::supports_auth_tls(caps)
    }

    async fn request_upgrade<S: Io>(
        &self,
        cx: &mut RunCx<'_>,
        s: &mut S,
        buf: &mut Vec<u8>,
    ) -> Result<(), Failure> {
        send(cx, s, b"AUTH TLS\r\n").await?;
        let r = reply(cx, s, buf, "the AUTH TLS answer").await?;
        if r.code != 234 {
            return Err(Failure::new(
                ErrorKind::Protocol,
                format!(
                    "{} refused AUTH TLS: {} {}",
                    cx.addr,
                    r.code,
                    clean(&r.summary())
                ),
            ));
        }
        Ok(())
    }

    async fn after_upgrade<S: Io>(
        &self,
        _cx: &mut RunCx<'_>,
        _s: &mut S,
        _buf: &mut Vec<u8>,
    ) -> Result<(), Failure> {
        Ok(())
    }

    /// Deep mode: `USER`/`PASS` (230 = in; 530 = `auth`; 421 = `unhealthy`), then `PWD`.
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
        let mut r = reply(cx, s, buf, "the USER answer").await?;
        if r.code == 331 || r.code == 332 {
            send(
                cx,
                s,
                format!("PASS {}\r\n", l.password.expose()).as_bytes(),
            )
            .await?;
            r = reply(cx, s, buf, "the PASS answer").await?;
        }
        match r.code {
            230 | 202 => {}
            421 => {
                return Err(Failure::new(
                    ErrorKind::Unhealthy,
                    format!("{addr} closed the session: 421 {}", clean(&r.summary())),
                ));
            }
            c if (400..600).contains(&c) => {
                return Err(Failure::new(
                    ErrorKind::Auth,
                    format!(
                        "{addr} refused the login of `{}`: {c} {}",
                        clean(&l.user),
                        clean(&r.summary())
                    ),
                ));
            }
            c => {
                return Err(Failure::new(
                    ErrorKind::Protocol,
                    format!("{addr} answered the login with {c} {}", clean(&r.summary())),
                ));
            }
        }
        cx.detail("authenticated", true);
        send(cx, s, b"PWD\r\n").await?;
        let p = reply(cx, s, buf, "the PWD answer").await?;
        if p.code != 257 {
            return Err(Failure::new(
                ErrorKind::Unhealthy,
                format!(
                    "{addr} answered PWD with {} {}",
                    p.code,
                    clean(&p.summary())
                ),
            ));
        }
        Ok(())
    }

    async fn greet<S: Io>(
        &self,
        cx: &mut RunCx<'_>,
        s: &mut S,
        buf: &mut Vec<u8>,
    ) -> Result<Vec<String>, Failure> {
        let g = reply(cx, s, buf, "an FTP greeting").await?;
        cx.detail("greeting_code", g.code);
        cx.detail("banner", clean(g.text()));
        if g.code == 120 {
            return Err(Failure::new(
                ErrorKind::Unhealthy,
                format!("{} is not ready yet: 120 {}", cx.addr, clean(&g.summary())),
            ));
        }
        judge_greeting(cx.addr, "FTP", &g)?;
        send(cx, s, b"FEAT\r\n").await?;
        let f = reply(cx, s, buf, "the FEAT answer").await?;
        let feats = ftp::features(&f);
        cx.detail(
            "features",
            json!(feats.iter().map(|c| clean(c)).collect::<Vec<_>>()),
        );
        Ok(feats)
    }
}

impl Check for PreparedFtp {
    fn run<'a>(&'a self, cx: &'a mut RunCx<'_>) -> BoxFuture<'a, CheckResult> {
        Box::pin(textproto::run(self, cx))
    }
}
