//! `smtp`: mail servers (25 and 587 with STARTTLS, 465 with implicit TLS).
//!
//! Reads the greeting (`220` is up; a `421`/`554` or any 4xx/5xx greeting is `unhealthy` with
//! the server's words; anything else is `protocol`), sends `EHLO` (falling back to `HELO`),
//! reports the extensions, and upgrades with `STARTTLS` when offered (`security: auto`) or
//! required (`security: starttls`); port 465 (or `security: implicit`) speaks TLS first. The
//! certificate is judged exactly like the `tls` check (trust, name, expiry → degraded). After
//! the upgrade `EHLO` is sent again, as RFC 3207 requires, then `QUIT`.
//!
//! `mode: deep` logs in with `AUTH PLAIN` after TLS (235 is up; a 5xx refusal is `auth`; 454 is
//! `unhealthy`). Credentials never travel in clear text: `security: none` is refused, and a
//! server without STARTTLS is `protocol` before any password is sent.
//!
//! ```yaml
//! - name: mx
//!   target: smtp://mx1.example.com:25
//!   check: {type: smtp, security: starttls, tls: {expiry_warn_days: 14}}
//! ```

use futures::future::BoxFuture;
use portwarden_core::{ErrorKind, Secret, Transport};
use portwarden_wire::smtp::{self, Dialect, Reply};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::common::{Io, Mode, Security, clean, read_msg, send};
use super::textproto::{self, TextProtocol, TextSession};
use super::{Check, CheckInfo};
use crate::PrepareError;
use crate::cx::{CheckResult, Failure, RunCx};
use crate::tls::TlsOptions;

pub static INFO: CheckInfo = CheckInfo {
    name: "smtp",
    transport: Transport::Tcp,
    default_port: Some(25),
    summary: "SMTP: 220 greeting, EHLO extensions, STARTTLS (or implicit TLS on 465) with certificate checks",
    options: &[
        (
            "security",
            "auto (default: implicit TLS on 465, else STARTTLS when offered) | starttls (required) | implicit | none",
        ),
        ("tls", "TLS options for the upgrade (see the tls check)"),
        (
            "ehlo_name",
            "name sent with EHLO (default portwarden.invalid)",
        ),
        (
            "mode",
            "handshake (default) | deep (AUTH PLAIN with user/password, over TLS only)",
        ),
        (
            "user / password",
            "deep: credentials (password is a secret)",
        ),
    ],
};

/// `check: {type: smtp, security: starttls}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpCheck {
    #[serde(default)]
    pub security: Security,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ehlo_name: Option<String>,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
}

impl SmtpCheck {
    pub fn prepare(&self) -> Result<PreparedSmtp, PrepareError> {
        Ok(PreparedSmtp {
            session: TextSession::prepare(
                self.security,
                &self.tls,
                self.mode,
                &self.user,
                &self.password,
            )?,
            ehlo: smtp::helo_name(self.ehlo_name.as_deref().unwrap_or("portwarden.invalid")),
        })
    }
}

pub struct PreparedSmtp {
    session: TextSession,
    ehlo: String,
}

/// Most bytes of one reply (EHLO answers are well under 4 KiB).
const REPLY_LIMIT: usize = 64 * 1024;

async fn reply<S: Io>(
    cx: &mut RunCx<'_>,
    s: &mut S,
    buf: &mut Vec<u8>,
    what: &str,
) -> Result<Reply, Failure> {
    read_msg(cx, s, buf, REPLY_LIMIT, "SMTP", what, |b| {
        smtp::parse_reply(b, Dialect::Smtp)
    })
    .await
}

/// Judges a greeting shared by SMTP and FTP: 220 is fine, 4xx/5xx unhealthy, others protocol.
pub(crate) fn judge_greeting(
    addr: std::net::SocketAddr,
    proto: &str,
    r: &Reply,
) -> Result<(), Failure> {
    match r.code {
        220 => Ok(()),
        c if (400..600).contains(&c) => Err(Failure::new(
            ErrorKind::Unhealthy,
            format!(
                "{addr} greets with {c}: {} ({proto} service not available)",
                clean(&r.summary())
            ),
        )),
        c => Err(Failure::new(
            ErrorKind::Protocol,
            format!(
                "{addr} greets with {c} {} where {proto} sends 220",
                clean(&r.summary())
            ),
        )),
    }
}

impl PreparedSmtp {
    /// EHLO (or HELO when EHLO is refused); returns the extension keywords.
    async fn ehlo<S: Io>(
        &self,
        cx: &mut RunCx<'_>,
        s: &mut S,
        buf: &mut Vec<u8>,
    ) -> Result<Vec<String>, Failure> {
        let addr = cx.addr;
        send(cx, s, format!("EHLO {}\r\n", self.ehlo).as_bytes()).await?;
        let r = reply(cx, s, buf, "the EHLO reply").await?;
        if r.is_positive() {
            let auth = smtp::ehlo_auth(&r);
            if !auth.is_empty() {
                cx.detail(
                    "auth_mechanisms",
                    json!(auth.iter().map(|a| clean(a)).collect::<Vec<_>>()),
                );
            }
            return Ok(smtp::ehlo_extensions(&r));
        }
        if r.is_permanent() {
            send(cx, s, format!("HELO {}\r\n", self.ehlo).as_bytes()).await?;
            let h = reply(cx, s, buf, "the HELO reply").await?;
            if h.is_positive() {
                return Ok(Vec::new());
            }
            return Err(Failure::new(
                ErrorKind::Unhealthy,
                format!(
                    "{addr} refused EHLO and HELO: {} {}",
                    h.code,
                    clean(&h.summary())
                ),
            ));
        }
        Err(Failure::new(
            ErrorKind::Unhealthy,
            format!(
                "{addr} answered EHLO with {} {}",
                r.code,
                clean(&r.summary())
            ),
        ))
    }
}

impl TextProtocol for PreparedSmtp {
    const IMPLICIT_PORT: u16 = 465;
    const UPGRADE: &'static str = "STARTTLS";
    const QUIT: &'static [u8] = b"QUIT\r\n";

    fn session(&self) -> &TextSession {
        &self.session
    }

    fn offers_upgrade(caps: &[String]) -> bool {
        caps.iter().any(|e| e == "STARTTLS")
    }

    async fn request_upgrade<S: Io>(
        &self,
        cx: &mut RunCx<'_>,
        s: &mut S,
        buf: &mut Vec<u8>,
    ) -> Result<(), Failure> {
        send(cx, s, b"STARTTLS\r\n").await?;
        let r = reply(cx, s, buf, "the STARTTLS reply").await?;
        if r.code != 220 {
            return Err(Failure::new(
                ErrorKind::Protocol,
                format!(
                    "{} refused STARTTLS: {} {}",
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
        cx: &mut RunCx<'_>,
        s: &mut S,
        buf: &mut Vec<u8>,
    ) -> Result<(), Failure> {
        self.ehlo(cx, s, buf).await.map(drop)
    }

    /// Deep mode: `AUTH PLAIN` (235 = in; 535 and friends = `auth`; 454 = `unhealthy`).
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
        send(cx, s, &smtp::auth_plain(&l.user, l.password.expose())).await?;
        let r = reply(cx, s, buf, "the AUTH reply").await?;
        match r.code {
            235 => {
                cx.detail("authenticated", true);
                Ok(())
            }
            454 | 421 => Err(Failure::new(
                ErrorKind::Unhealthy,
                format!(
                    "{addr} could not check credentials now: {} {}",
                    r.code,
                    clean(&r.summary())
                ),
            )),
            c if (500..600).contains(&c) => Err(Failure::new(
                ErrorKind::Auth,
                format!(
                    "{addr} refused the login of `{}`: {c} {}",
                    clean(&l.user),
                    clean(&r.summary())
                ),
            )),
            c => Err(Failure::new(
                ErrorKind::Protocol,
                format!("{addr} answered AUTH with {c} {}", clean(&r.summary())),
            )),
        }
    }

    async fn greet<S: Io>(
        &self,
        cx: &mut RunCx<'_>,
        s: &mut S,
        buf: &mut Vec<u8>,
    ) -> Result<Vec<String>, Failure> {
        let g = reply(cx, s, buf, "an SMTP greeting").await?;
        cx.detail("greeting_code", g.code);
        cx.detail("banner", clean(g.text()));
        judge_greeting(cx.addr, "SMTP", &g)?;
        let ext = self.ehlo(cx, s, buf).await?;
        cx.detail(
            "extensions",
            json!(ext.iter().map(|e| clean(e)).collect::<Vec<_>>()),
        );
        Ok(ext)
    }
}

impl Check for PreparedSmtp {
    fn run<'a>(&'a self, cx: &'a mut RunCx<'_>) -> BoxFuture<'a, CheckResult> {
        Box::pin(textproto::run(self, cx))
    }
}
