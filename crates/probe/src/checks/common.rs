//! Pieces shared by the protocol checks: `mode`, TLS `security`, what an auth refusal means,
//! and bounded, timed message reads over any stream (plain TCP or TLS after STARTTLS).

use std::net::SocketAddr;

use portwarden_core::{ErrorKind, Outcome, Phase, ProbeError};
use portwarden_wire::cursor::DecodeError;
use portwarden_wire::printable;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::cx::{Failure, RunCx, Verdict};
use crate::net;

/// How deep a protocol check goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Speak enough of the protocol to prove the server is alive; no credentials needed.
    #[default]
    Handshake,
    /// Log in with credentials and check health the way an operator would.
    Deep,
}

/// TLS for mail and file-transfer protocols.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Implicit TLS on the protocol's TLS port (465, 993, 995, 990); elsewhere STARTTLS when the
    /// server offers it, plain text when it does not (reported as `starttls: false`).
    #[default]
    Auto,
    /// STARTTLS is required: a server that does not offer it is `down` (`protocol`).
    Starttls,
    /// TLS from the first byte.
    Implicit,
    /// Plain text only; never upgrade.
    None,
}

/// The effective choice for one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPlan {
    Implicit,
    /// `true` = required.
    Starttls(bool),
    Plain,
}

impl Security {
    pub fn plan(self, port: u16, implicit_port: u16) -> TlsPlan {
        match self {
            Security::Auto if port == implicit_port => TlsPlan::Implicit,
            Security::Auto => TlsPlan::Starttls(false),
            Security::Starttls => TlsPlan::Starttls(true),
            Security::Implicit => TlsPlan::Implicit,
            Security::None => TlsPlan::Plain,
        }
    }
}

/// What a refused login means (MQTT, NATS): the server is alive but turns us away.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnAuthRefused {
    Up,
    Degraded,
    #[default]
    Down,
}

impl OnAuthRefused {
    /// Turns a refusal into the configured result, keeping the message.
    pub fn judge(self, msg: String) -> Result<Verdict, Failure> {
        match self {
            OnAuthRefused::Up => Ok(Verdict {
                outcome: Outcome::Up,
                note: Some(format!("{msg} (counted as up: on_auth_refused: up)")),
            }),
            OnAuthRefused::Degraded => Ok(Verdict::degraded(msg)),
            OnAuthRefused::Down => Err(Failure::new(ErrorKind::Auth, msg)),
        }
    }
}

/// A protocol failure that shows what the peer sent.
pub fn protocol_error(addr: SocketAddr, what: &str, e: &DecodeError, got: &[u8]) -> Failure {
    Failure::new(
        ErrorKind::Protocol,
        format!(
            "{addr} does not speak {what}: {e} (received \"{}\")",
            printable::escape(got, 128)
        ),
    )
}

/// Sends `bytes` and flushes, timed as `protocol`.
pub async fn send<S: AsyncWrite + Unpin>(
    cx: &mut RunCx<'_>,
    s: &mut S,
    bytes: &[u8],
) -> Result<(), Failure> {
    let addr = cx.addr;
    cx.timed(
        Phase::Protocol,
        async {
            s.write_all(bytes).await?;
            s.flush().await
        }
        .map_io(addr),
    )
    .await
    .map_err(Failure::from)
}

/// Reads until `parse` recognises a complete message at the start of `buf`, reading at most
/// `limit` bytes in total (including what is already buffered). The message's bytes are removed
/// from `buf`; what follows stays for the next call. `what` names the expected message for
/// errors (`"an AMQP Connection.Start"`), `proto` the protocol (`"AMQP"`).
pub async fn read_msg<S, T, F>(
    cx: &mut RunCx<'_>,
    s: &mut S,
    buf: &mut Vec<u8>,
    limit: usize,
    proto: &str,
    what: &str,
    mut parse: F,
) -> Result<T, Failure>
where
    S: AsyncRead + Unpin,
    F: FnMut(&[u8]) -> Result<Option<(T, usize)>, DecodeError>,
{
    let addr = cx.addr;
    loop {
        match parse(buf) {
            Ok(Some((t, used))) => {
                buf.drain(..used.min(buf.len()));
                return Ok(t);
            }
            Ok(None) => {}
            Err(e) => return Err(protocol_error(addr, proto, &e, buf)),
        }
        if buf.len() >= limit {
            return Err(Failure::new(
                ErrorKind::Protocol,
                format!(
                    "{addr} sent {limit} bytes without {what} (received \"{}\")",
                    printable::escape(buf, 128)
                ),
            ));
        }
        let r = cx
            .timed(Phase::Protocol, async {
                net::read_bounded(s, buf, limit)
                    .await
                    .map_err(|e| net::io_error(&e, Phase::Protocol, addr))
            })
            .await;
        match r {
            Ok(0) => {
                let msg = if buf.is_empty() {
                    format!("{addr} closed the connection without sending {what}")
                } else {
                    format!(
                        "{addr} closed the connection before {what} was complete (received \"{}\")",
                        printable::escape(buf, 128)
                    )
                };
                return Err(Failure::new(ErrorKind::Protocol, msg));
            }
            Ok(_) => {}
            Err(mut e) => {
                e.message = format!("waiting for {what}: {}", e.message);
                return Err(e.into());
            }
        }
    }
}

trait MapIo<T> {
    fn map_io(self, addr: SocketAddr) -> impl std::future::Future<Output = Result<T, ProbeError>>;
}

impl<T, F: std::future::Future<Output = std::io::Result<T>>> MapIo<T> for F {
    async fn map_io(self, addr: SocketAddr) -> Result<T, ProbeError> {
        self.await
            .map_err(|e| net::io_error(&e, Phase::Protocol, addr))
    }
}

/// A short, polite close: best effort within 50 ms, never an error.
pub async fn goodbye<S: AsyncWrite + Unpin>(s: &mut S, bytes: &[u8]) {
    let _ = tokio::time::timeout(std::time::Duration::from_millis(50), async {
        let _ = s.write_all(bytes).await;
        let _ = s.flush().await;
        let _ = s.shutdown().await;
    })
    .await;
}

/// Escapes a server-provided string for details and messages.
pub fn clean(s: &str) -> String {
    printable::escape(s.as_bytes(), 256)
}

/// Upgrades a plain connection to TLS after a STARTTLS-style exchange. Bytes the server sent
/// after its "go ahead" reply are refused (they would be injected into the TLS session, the
/// STARTTLS command-injection class of bugs).
pub async fn upgrade(
    cx: &mut RunCx<'_>,
    tls: &crate::tls::PreparedTls,
    tcp: tokio::net::TcpStream,
    leftover: &[u8],
) -> Result<
    (
        tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
        Verdict,
    ),
    Failure,
> {
    if !leftover.is_empty() {
        return Err(Failure::new(
            ErrorKind::Protocol,
            format!(
                "{} sent data before the TLS handshake (\"{}\"); refusing to upgrade",
                cx.addr,
                printable::escape(leftover, 64)
            ),
        ));
    }
    cx.detail("starttls", true);
    tls.handshake(cx, tcp).await
}

/// A stream we can speak a text protocol over, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One UDP request/answer exchange with retries: sends `req` up to `attempts` times, spread
/// over what is left of the deadline, and hands every datagram to `accept`; datagrams it
/// rejects (`Ok(None)`: not an answer to us, e.g. a stale or spoofed id) are ignored. ICMP port
/// unreachable → `closed`; silence → `no_response` (down: a protocol service that does not
/// answer a valid request is not working). Returns the answer and the round trip of the
/// attempt that got it.
pub async fn udp_exchange<T, F>(
    cx: &mut RunCx<'_>,
    req: &[u8],
    attempts: u32,
    what: &str,
    accept: F,
) -> Result<(T, std::time::Duration), Failure>
where
    F: FnMut(&[u8]) -> Result<Option<T>, Failure>,
{
    udp_exchange_with(cx, |_| req.to_vec(), attempts, what, accept).await
}

/// [`udp_exchange`] with a fresh request per attempt (`make(attempt)`), for protocols whose
/// request carries the time it was sent (NTP).
pub async fn udp_exchange_with<T, M, F>(
    cx: &mut RunCx<'_>,
    mut make: M,
    attempts: u32,
    what: &str,
    mut accept: F,
) -> Result<(T, std::time::Duration), Failure>
where
    M: FnMut(u32) -> Vec<u8>,
    F: FnMut(&[u8]) -> Result<Option<T>, Failure>,
{
    use std::time::Instant;
    let addr = cx.addr;
    let sock = super::udp::connected_socket(addr).await?;
    let mut dgram = vec![0u8; 65_535];
    let start = Instant::now();
    let total = cx.remaining();
    let attempts = attempts.max(1);
    for attempt in 0..attempts {
        let until = start + total.mul_f64(f64::from(attempt + 1) / f64::from(attempts));
        let req = make(attempt);
        let sent = Instant::now();
        sock.send(&req)
            .await
            .map_err(|e| super::udp::udp_error(&e, addr))?;
        loop {
            let r = cx
                .timed_until(Phase::Protocol, until, async {
                    sock.recv(&mut dgram)
                        .await
                        .map_err(|e| super::udp::udp_error(&e, addr))
                })
                .await;
            match r {
                Ok(n) => {
                    if let Some(t) = accept(&dgram[..n])? {
                        cx.detail("attempts", attempt + 1);
                        return Ok((t, sent.elapsed()));
                    }
                }
                Err(e) if matches!(e.kind, ErrorKind::Timeout(_)) => break,
                Err(e) => return Err(e.into()),
            }
        }
    }
    cx.detail("attempts", attempts);
    Err(Failure::new(
        ErrorKind::NoResponse,
        format!("no answer to {what} from {addr} after {attempts} datagram(s)"),
    ))
}

/// Judges a measured value against warn/crit levels: crit → `unhealthy`, warn → degraded.
pub fn judge_level(hit: super::LevelHit, what: String) -> Result<Verdict, Failure> {
    match hit {
        super::LevelHit::Ok => Ok(Verdict::up()),
        super::LevelHit::Warn => Ok(Verdict::degraded(what)),
        super::LevelHit::Crit => Err(Failure::new(ErrorKind::Unhealthy, what)),
    }
}

/// Credentials for a deep login over a text protocol (smtp, imap, pop3, ftp).
pub struct Login {
    pub user: String,
    pub password: portwarden_core::Secret,
}

/// Validates `mode`/`user`/`password` for a text protocol: deep needs both, handshake takes
/// neither, and credentials never travel in clear text (`security: none` is refused; a server
/// that offers no STARTTLS fails at run time instead of receiving the password).
pub fn login_config(
    mode: Mode,
    user: &Option<String>,
    password: &Option<portwarden_core::Secret>,
    security: Security,
) -> Result<Option<Login>, crate::PrepareError> {
    use crate::PrepareError;
    match mode {
        Mode::Handshake => {
            if user.is_some() || password.is_some() {
                return Err(PrepareError::new(
                    "mode",
                    "credentials are only used with `mode: deep`",
                ));
            }
            Ok(None)
        }
        Mode::Deep => {
            let (Some(u), Some(p)) = (user, password) else {
                return Err(PrepareError::new(
                    "user",
                    "`mode: deep` needs `user` and `password`",
                ));
            };
            if security == Security::None {
                return Err(PrepareError::new(
                    "security",
                    "`mode: deep` sends a password: use TLS (auto, starttls or implicit), not `none`",
                ));
            }
            if !portwarden_wire::smtp::line_safe(u) || !portwarden_wire::smtp::line_safe(p.expose())
            {
                return Err(PrepareError::new(
                    "user",
                    "user and password may not contain CR, LF or NUL",
                ));
            }
            Ok(Some(Login {
                user: u.clone(),
                password: p.clone(),
            }))
        }
    }
}

/// The run-time refusal when a deep login would have to go in clear text.
pub fn cleartext_refusal(addr: SocketAddr, what: &str) -> Failure {
    Failure::new(
        ErrorKind::Protocol,
        format!("{addr} offers no {what}: not sending credentials in clear text (mode: deep)"),
    )
}
