//! The flow shared by the line-based mail and file-transfer checks (smtp, imap, pop3, ftp).
//!
//! All four do the same dance: connect; either speak TLS from the first byte (the protocol's
//! implicit-TLS port, or `security: implicit`) or read the greeting and capabilities in clear
//! text and upgrade with the protocol's STARTTLS command when offered or required; then, in
//! `mode: deep`, log in over TLS; then say goodbye. Each protocol supplies its steps through
//! [`TextProtocol`]; [`run`] drives them in the same order for all, so the TLS and credential
//! rules (never send a password in clear text, refuse bytes injected before the handshake)
//! live in one place.

use std::future::Future;

use portwarden_core::{ErrorKind, Secret};

use super::common::{
    Io, Login, Mode, Security, TlsPlan, cleartext_refusal, goodbye, login_config, upgrade,
};
use crate::cx::{CheckResult, Failure, RunCx, Verdict};
use crate::tls::{PreparedTls, TlsOptions};
use crate::{PrepareError, net};

/// What a text-protocol check needs at run time besides its own settings: the TLS choice, the
/// prepared TLS client and, in deep mode, the credentials.
pub struct TextSession {
    pub login: Option<Login>,
    pub security: Security,
    pub tls: PreparedTls,
}

impl TextSession {
    /// Validates the options every text-protocol check shares (`security`, `tls`, `mode`,
    /// `user`, `password`).
    pub fn prepare(
        security: Security,
        tls: &Option<TlsOptions>,
        mode: Mode,
        user: &Option<String>,
        password: &Option<Secret>,
    ) -> Result<Self, PrepareError> {
        if security == Security::None && tls.is_some() {
            return Err(PrepareError::new(
                "tls",
                "TLS options with `security: none`",
            ));
        }
        Ok(TextSession {
            login: login_config(mode, user, password, security)?,
            security,
            tls: PreparedTls::prepare(&tls.clone().unwrap_or_default())?,
        })
    }
}

/// One protocol's steps. `buf` holds bytes read but not consumed yet; it must be empty when the
/// upgrade starts (checked by [`run`]).
pub trait TextProtocol: Sync {
    /// The port where TLS starts at the first byte under `security: auto` (465, 993, 995, 990).
    const IMPLICIT_PORT: u16;
    /// The upgrade command as operators know it (`STARTTLS`, `STLS`, `AUTH TLS`).
    const UPGRADE: &'static str;
    /// What we send to leave.
    const QUIT: &'static [u8];
    /// With `security: starttls`, try the upgrade even when the capabilities do not list it
    /// (some FTP servers omit `AUTH TLS` from `FEAT`). Otherwise that is a `protocol` failure.
    const TRY_UNADVERTISED: bool = false;

    fn session(&self) -> &TextSession;

    /// Reads and judges the greeting, asks for capabilities, records them; returns them.
    fn greet<S: Io>(
        &self,
        cx: &mut RunCx<'_>,
        s: &mut S,
        buf: &mut Vec<u8>,
    ) -> impl Future<Output = Result<Vec<String>, Failure>> + Send;

    /// Whether the capabilities offer the upgrade.
    fn offers_upgrade(caps: &[String]) -> bool;

    /// Sends the upgrade command and checks the server's go-ahead.
    fn request_upgrade<S: Io>(
        &self,
        cx: &mut RunCx<'_>,
        s: &mut S,
        buf: &mut Vec<u8>,
    ) -> impl Future<Output = Result<(), Failure>> + Send;

    /// What the protocol does first over the new TLS session (ask capabilities again).
    fn after_upgrade<S: Io>(
        &self,
        cx: &mut RunCx<'_>,
        s: &mut S,
        buf: &mut Vec<u8>,
    ) -> impl Future<Output = Result<(), Failure>> + Send;

    /// Deep mode: log in with [`TextSession::login`] and check health; nothing otherwise.
    fn login<S: Io>(
        &self,
        cx: &mut RunCx<'_>,
        s: &mut S,
        buf: &mut Vec<u8>,
    ) -> impl Future<Output = Result<(), Failure>> + Send;
}

/// Runs one text-protocol check end to end.
pub async fn run<P: TextProtocol>(p: &P, cx: &mut RunCx<'_>) -> CheckResult {
    let addr = cx.addr;
    let ts = p.session();
    let plan = ts.security.plan(addr.port(), P::IMPLICIT_PORT);
    let mut tcp = net::connect_tcp(cx).await?;
    let mut buf = Vec::new();
    if plan == TlsPlan::Implicit {
        let (mut t, verdict) = ts.tls.handshake(cx, tcp).await?;
        cx.detail("tls_mode", "implicit");
        p.greet(cx, &mut t, &mut buf).await?;
        p.login(cx, &mut t, &mut buf).await?;
        goodbye(&mut t, P::QUIT).await;
        return Ok(verdict);
    }
    let caps = p.greet(cx, &mut tcp, &mut buf).await?;
    let offered = P::offers_upgrade(&caps);
    match plan {
        TlsPlan::Starttls(required) if offered || required => {
            if !offered && !P::TRY_UNADVERTISED {
                return Err(Failure::new(
                    ErrorKind::Protocol,
                    format!("{addr} does not offer {} (security: starttls)", P::UPGRADE),
                ));
            }
            p.request_upgrade(cx, &mut tcp, &mut buf).await?;
            let (mut t, verdict) = upgrade(cx, &ts.tls, tcp, &buf).await?;
            p.after_upgrade(cx, &mut t, &mut buf).await?;
            p.login(cx, &mut t, &mut buf).await?;
            goodbye(&mut t, P::QUIT).await;
            Ok(verdict)
        }
        _ => {
            cx.detail("starttls", false);
            goodbye(&mut tcp, P::QUIT).await;
            if ts.login.is_some() {
                return Err(cleartext_refusal(addr, P::UPGRADE));
            }
            Ok(Verdict::up())
        }
    }
}
