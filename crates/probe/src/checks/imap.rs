//! `imap`: IMAP servers (143 with STARTTLS, 993 with implicit TLS).
//!
//! Reads the greeting (`* OK` / `* PREAUTH` is up; `* BYE` is `unhealthy` with the server's
//! words), asks `CAPABILITY`, upgrades with `STARTTLS` when offered (`security: auto`) or
//! required (`security: starttls`) — port 993 (or `security: implicit`) speaks TLS first — and
//! asks `CAPABILITY` again over TLS, then `LOGOUT`. Certificates are judged like the `tls`
//! check.
//!
//! `mode: deep` logs in with `LOGIN` after TLS (NO is `auth`) and opens `INBOX` with `SELECT`
//! (reports `inbox_messages`; a refusal is `unhealthy`). Credentials never travel in clear text.
//!
//! ```yaml
//! - name: imap
//!   target: imap://mail.example.com:993
//!   check: {type: imap}
//! ```

use futures::future::BoxFuture;
use portwarden_core::{ErrorKind, Secret, Transport};
use portwarden_wire::imap::{self, Line};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::common::{Io, Mode, Security, clean, read_msg, send};
use super::textproto::{self, TextProtocol, TextSession};
use super::{Check, CheckInfo};
use crate::PrepareError;
use crate::cx::{CheckResult, Failure, RunCx};
use crate::tls::TlsOptions;

pub static INFO: CheckInfo = CheckInfo {
    name: "imap",
    transport: Transport::Tcp,
    default_port: Some(143),
    summary: "IMAP: greeting, CAPABILITY, STARTTLS (or implicit TLS on 993) with certificate checks",
    options: &[
        (
            "security",
            "auto (default: implicit TLS on 993, else STARTTLS when offered) | starttls (required) | implicit | none",
        ),
        ("tls", "TLS options (see the tls check)"),
        (
            "mode",
            "handshake (default) | deep (LOGIN over TLS, then SELECT INBOX)",
        ),
        (
            "user / password",
            "deep: credentials (password is a secret)",
        ),
    ],
};

/// `check: {type: imap, security: starttls}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapCheck {
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

impl ImapCheck {
    pub fn prepare(&self) -> Result<PreparedImap, PrepareError> {
        Ok(PreparedImap {
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

pub struct PreparedImap {
    session: TextSession,
}

const LIMIT: usize = 64 * 1024;

async fn line<S: Io>(
    cx: &mut RunCx<'_>,
    s: &mut S,
    buf: &mut Vec<u8>,
    what: &str,
) -> Result<Line, Failure> {
    read_msg(cx, s, buf, LIMIT, "IMAP", what, imap::parse_line).await
}

/// Sends `tag cmd` and reads to the tagged answer; returns capabilities seen on the way and
/// the tagged status and text.
async fn command<S: Io>(
    cx: &mut RunCx<'_>,
    s: &mut S,
    buf: &mut Vec<u8>,
    tag: &str,
    cmd: &str,
) -> Result<(Vec<String>, String, String), Failure> {
    send(cx, s, &imap::command(tag, cmd)).await?;
    let mut caps = Vec::new();
    for _ in 0..64 {
        match line(cx, s, buf, &format!("the answer to {cmd}")).await? {
            Line::Tagged {
                tag: t,
                status,
                rest,
            } if t == tag => return Ok((caps, status, rest)),
            Line::Untagged { word, rest } => {
                if word == "BYE" {
                    return Err(Failure::new(
                        ErrorKind::Unhealthy,
                        format!("{} said BYE: {}", cx.addr, clean(imap::human_text(&rest))),
                    ));
                }
                if let Some(c) = imap::capabilities(&word, &rest) {
                    caps = c;
                }
            }
            _ => {}
        }
    }
    Err(Failure::new(
        ErrorKind::Protocol,
        format!("{}: 64 lines without the answer to {cmd}", cx.addr),
    ))
}

impl PreparedImap {
    async fn capability<S: Io>(
        &self,
        cx: &mut RunCx<'_>,
        s: &mut S,
        buf: &mut Vec<u8>,
        tag: &str,
        key: &str,
    ) -> Result<Vec<String>, Failure> {
        let (caps, status, rest) = command(cx, s, buf, tag, "CAPABILITY").await?;
        if status != "OK" {
            return Err(Failure::new(
                ErrorKind::Unhealthy,
                format!(
                    "{} answered CAPABILITY with {status} {}",
                    cx.addr,
                    clean(&rest)
                ),
            ));
        }
        cx.detail(
            key,
            json!(caps.iter().map(|c| clean(c)).collect::<Vec<_>>()),
        );
        Ok(caps)
    }
}

impl TextProtocol for PreparedImap {
    const IMPLICIT_PORT: u16 = 993;
    const UPGRADE: &'static str = "STARTTLS";
    const QUIT: &'static [u8] = b"a9 LOGOUT\r\n";

    fn session(&self) -> &TextSession {
        &self.session
    }

    fn offers_upgrade(caps: &[String]) -> bool {
        caps.iter().any(|c| c == "STARTTLS")
    }

    async fn request_upgrade<S: Io>(
        &self,
        cx: &mut RunCx<'_>,
        s: &mut S,
        buf: &mut Vec<u8>,
    ) -> Result<(), Failure> {
        let (_, status, rest) = command(cx, s, buf, "a2", "STARTTLS").await?;
        if status != "OK" {
            return Err(Failure::new(
                ErrorKind::Protocol,
                format!("{} refused STARTTLS: {status} {}", cx.addr, clean(&rest)),
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
        self.capability(cx, s, buf, "a3", "capabilities_tls")
            .await
            .map(drop)
    }

    /// Deep mode: `LOGIN` (NO = `auth`), then `SELECT INBOX` (message count; NO = `unhealthy`).
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
        send(cx, s, &imap::login("a4", &l.user, l.password.expose())).await?;
        let mut status = None;
        for _ in 0..64 {
            if let Line::Tagged {
                tag,
                status: st,
                rest,
            } = line(cx, s, buf, "the LOGIN answer").await?
                && tag == "a4"
            {
                status = Some((st, rest));
                break;
            }
        }
        let Some((st, rest)) = status else {
            return Err(Failure::new(
                ErrorKind::Protocol,
                format!("{addr}: no answer to LOGIN"),
            ));
        };
        if st != "OK" {
            let kind = if rest.contains("[UNAVAILABLE]") || rest.contains("[SERVERBUG]") {
                ErrorKind::Unhealthy
            } else {
                ErrorKind::Auth
            };
            return Err(Failure::new(
                kind,
                format!(
                    "{addr} refused the login of `{}`: {st} {}",
                    clean(&l.user),
                    clean(&rest)
                ),
            ));
        }
        cx.detail("authenticated", true);
        send(cx, s, &imap::command("a5", "SELECT INBOX")).await?;
        let mut count = None;
        for _ in 0..64 {
            match line(cx, s, buf, "the SELECT answer").await? {
                Line::Untagged { word, rest } => {
                    if let Some(n) = imap::exists(&word, &rest) {
                        count = Some(n);
                    }
                }
                Line::Tagged { tag, status, rest } if tag == "a5" => {
                    if status != "OK" {
                        return Err(Failure::new(
                            ErrorKind::Unhealthy,
                            format!("{addr} cannot open INBOX: {status} {}", clean(&rest)),
                        ));
                    }
                    if let Some(n) = count {
                        cx.detail("inbox_messages", n);
                    }
                    return Ok(());
                }
                _ => {}
            }
        }
        Err(Failure::new(
            ErrorKind::Protocol,
            format!("{addr}: no answer to SELECT"),
        ))
    }

    async fn greet<S: Io>(
        &self,
        cx: &mut RunCx<'_>,
        s: &mut S,
        buf: &mut Vec<u8>,
    ) -> Result<Vec<String>, Failure> {
        let addr = cx.addr;
        let g = line(cx, s, buf, "an IMAP greeting").await?;
        let Line::Untagged { word, rest } = g else {
            return Err(Failure::new(
                ErrorKind::Protocol,
                format!("{addr} sent {g:?} where an IMAP greeting (* OK) was expected"),
            ));
        };
        cx.detail("banner", clean(imap::human_text(&rest)));
        match word.as_str() {
            "OK" | "PREAUTH" => {}
            "BYE" => {
                return Err(Failure::new(
                    ErrorKind::Unhealthy,
                    format!("{addr} greets with BYE: {}", clean(imap::human_text(&rest))),
                ));
            }
            w => {
                return Err(Failure::new(
                    ErrorKind::Protocol,
                    format!("{addr} greets with `* {}` where IMAP sends * OK", clean(w)),
                ));
            }
        }
        self.capability(cx, s, buf, "a1", "capabilities").await
    }
}

impl Check for PreparedImap {
    fn run<'a>(&'a self, cx: &'a mut RunCx<'_>) -> BoxFuture<'a, CheckResult> {
        Box::pin(textproto::run(self, cx))
    }
}
