//! Pieces shared by the database checks (`postgres`, `mysql`, `redis`, `mongodb`, `memcached`,
//! `elasticsearch`): the `mode` option, bounded frame reads over a timed socket, and turning
//! measured values (pool use, replication lag) into a verdict.

use std::net::SocketAddr;
use std::time::Duration;

use portwarden_core::{ErrorKind, Outcome, Phase, ProbeError};
use portwarden_wire::cursor::DecodeError;
use portwarden_wire::printable;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::{DurationLevels, LevelHit, PercentLevels};
use crate::cx::{CheckResult, Failure, RunCx, Verdict};
use crate::net;

/// How far a database check goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Speak enough of the protocol to prove the server is alive and learn its version. Needs
    /// no credentials.
    #[default]
    Handshake,
    /// Log in (credentials when the server needs them) and check health the way a DBA would:
    /// role, replication, pool use.
    Deep,
}

/// Pool use levels when none are configured: degraded at 80 %, down at 95 %.
pub const DEFAULT_POOL_LEVELS: PercentLevels = PercentLevels {
    warn: Some(80.0),
    crit: Some(95.0),
};

/// `max_connection_use` as configured (or the default), checked: 0–100 and warn ≤ crit.
pub fn pool_levels(v: Option<PercentLevels>) -> Result<PercentLevels, crate::PrepareError> {
    let l = v.unwrap_or(DEFAULT_POOL_LEVELS);
    for x in [l.warn, l.crit].into_iter().flatten() {
        if !(0.0..=100.0).contains(&x) {
            return Err(crate::PrepareError::new(
                "max_connection_use",
                format!("{x} is not a percentage (0 to 100)"),
            ));
        }
    }
    if let (Some(w), Some(c)) = (l.warn, l.crit)
        && w > c
    {
        return Err(crate::PrepareError::new(
            "max_connection_use",
            format!("warn ({w}) is above crit ({c})"),
        ));
    }
    Ok(l)
}

/// `max_replication_lag` as configured (default: not judged), checked: warn ≤ crit.
pub fn lag_levels(v: Option<DurationLevels>) -> Result<DurationLevels, crate::PrepareError> {
    let l = v.unwrap_or_default();
    if let (Some(w), Some(c)) = (l.warn, l.crit)
        && w > c
    {
        return Err(crate::PrepareError::new(
            "max_replication_lag",
            format!("warn ({w:?}) is above crit ({c:?})"),
        ));
    }
    Ok(l)
}

/// Writes all of `bytes`, timed as the protocol phase.
pub async fn send<S: AsyncWrite + Unpin>(
    cx: &mut RunCx<'_>,
    stream: &mut S,
    bytes: &[u8],
) -> Result<(), ProbeError> {
    let addr = cx.addr;
    cx.timed(Phase::Protocol, async {
        let r = async {
            stream.write_all(bytes).await?;
            stream.flush().await
        }
        .await;
        r.map_err(|e| net::io_error(&e, Phase::Protocol, addr))
    })
    .await
}

/// Reads from `stream` into `buf` until `parse` decides, never holding more than `limit` bytes.
/// The bytes `parse` used are removed from the front of `buf`; what follows stays for the next
/// call. EOF before a decision, or bytes `parse` rejects, are `protocol` errors naming `proto`.
pub async fn read_frame<S, T, P>(
    cx: &mut RunCx<'_>,
    stream: &mut S,
    buf: &mut Vec<u8>,
    limit: usize,
    proto: &str,
    mut parse: P,
) -> Result<T, Failure>
where
    S: AsyncRead + Unpin,
    P: FnMut(&[u8], bool) -> Result<Option<(T, usize)>, DecodeError>,
{
    let addr = cx.addr;
    let mut eof = false;
    loop {
        match parse(buf, eof) {
            Ok(Some((v, used))) => {
                buf.drain(..used.min(buf.len()));
                return Ok(v);
            }
            Ok(None) if eof => {
                return Err(Failure::new(
                    ErrorKind::Protocol,
                    if buf.is_empty() {
                        format!(
                            "{addr} closed the connection without a {proto} answer (is this {proto}?)"
                        )
                    } else {
                        format!(
                            "{addr} closed the connection in the middle of a {proto} answer: \"{}\"",
                            printable::escape(buf, 128)
                        )
                    },
                ));
            }
            Ok(None) if buf.len() >= limit => {
                return Err(Failure::new(
                    ErrorKind::Protocol,
                    format!(
                        "{addr} sent more than {limit} bytes without a complete {proto} answer: \"{}\"",
                        printable::escape(buf, 64)
                    ),
                ));
            }
            Ok(None) => {}
            Err(e) => return Err(not_proto(addr, proto, &e, buf)),
        }
        let n = cx
            .timed(Phase::Protocol, async {
                net::read_bounded(stream, buf, limit)
                    .await
                    .map_err(|e| net::io_error(&e, Phase::Protocol, addr))
            })
            .await?;
        if n == 0 {
            eof = true;
        }
    }
}

/// A `protocol` failure for bytes that are not what `proto` sends.
pub fn not_proto(addr: SocketAddr, proto: &str, e: &DecodeError, got: &[u8]) -> Failure {
    Failure::new(
        ErrorKind::Protocol,
        format!(
            "{addr} does not answer like {proto}: {e}; received \"{}\"",
            printable::escape(got, 96)
        ),
    )
}

/// Collects findings of a deep check and turns them into one verdict: the first failure wins;
/// otherwise every warning is in the degraded note; otherwise up, with informational notes.
#[derive(Debug, Default)]
pub struct Judgement {
    failure: Option<Failure>,
    warnings: Vec<String>,
    notes: Vec<String>,
}

impl Judgement {
    pub fn new() -> Self {
        Judgement::default()
    }

    /// A finding that makes the check fail (the first one is reported).
    pub fn fail(&mut self, kind: ErrorKind, msg: impl Into<String>) {
        if self.failure.is_none() {
            self.failure = Some(Failure::new(kind, msg));
        }
    }

    pub fn warn(&mut self, msg: impl Into<String>) {
        self.warnings.push(msg.into());
    }

    /// Shown on an `up` result (e.g. "authentication required").
    pub fn note(&mut self, msg: impl Into<String>) {
        self.notes.push(msg.into());
    }

    /// Folds in a verdict from elsewhere (e.g. a TLS certificate near expiry).
    pub fn verdict(&mut self, v: Verdict) {
        if let Some(n) = v.note {
            if v.outcome == Outcome::Degraded {
                self.warnings.push(n);
            } else {
                self.notes.push(n);
            }
        }
    }

    /// Records pool use (`connections_used`, `connections_max`, `pool_use_percent`) and judges it.
    pub fn pool(&mut self, cx: &mut RunCx<'_>, used: u64, max: u64, levels: &PercentLevels) {
        cx.detail("connections_used", used);
        cx.detail("connections_max", max);
        if max == 0 {
            return;
        }
        let pct = (used as f64) * 100.0 / (max as f64);
        let pct = (pct * 10.0).round() / 10.0;
        cx.detail("pool_use_percent", pct);
        let what = format!("connection pool {pct}% used ({used} of {max})");
        match levels.judge(pct) {
            LevelHit::Ok => {}
            LevelHit::Warn => self.warn(format!(
                "{what}, at or above the warning level of {}%",
                levels.warn.unwrap_or_default()
            )),
            LevelHit::Crit => self.fail(
                ErrorKind::Unhealthy,
                format!(
                    "{what}, at or above the critical level of {}%",
                    levels.crit.unwrap_or_default()
                ),
            ),
        }
    }

    /// Records `replication_lag_seconds` and judges it.
    pub fn lag(&mut self, cx: &mut RunCx<'_>, secs: f64, levels: &DurationLevels) {
        let secs = if secs.is_finite() { secs.max(0.0) } else { 0.0 };
        cx.detail("replication_lag_seconds", (secs * 1000.0).round() / 1000.0);
        let d = Duration::from_secs_f64(secs.min(1e9));
        let what = format!("replication lag {}", human(d));
        match levels.judge(d) {
            LevelHit::Ok => {}
            LevelHit::Warn => self.warn(format!(
                "{what}, at or above the warning level of {}",
                human(levels.warn.unwrap_or_default())
            )),
            LevelHit::Crit => self.fail(
                ErrorKind::Unhealthy,
                format!(
                    "{what}, at or above the critical level of {}",
                    human(levels.crit.unwrap_or_default())
                ),
            ),
        }
    }

    pub fn finish(self) -> CheckResult {
        if let Some(f) = self.failure {
            return Err(f);
        }
        if !self.warnings.is_empty() {
            return Ok(Verdict::degraded(self.warnings.join("; ")));
        }
        Ok(Verdict {
            outcome: Outcome::Up,
            note: (!self.notes.is_empty()).then(|| self.notes.join("; ")),
        })
    }
}

fn human(d: Duration) -> String {
    if d.as_secs() >= 1 || d.is_zero() {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Shows a server-provided text in a message: escaped and bounded.
pub fn shown(s: &str) -> String {
    printable::escape(s.as_bytes(), 200)
}

/// Closes a stream politely: FIN (or TLS close_notify), then a short wait for the peer's own
/// close, so the `SO_LINGER 0` reset that follows does not hit a server still reading our
/// goodbye (servers log that as an aborted connection). Bounded by 100 ms and the deadline.
pub async fn close<S: AsyncRead + AsyncWrite + Unpin>(cx: &RunCx<'_>, stream: &mut S) {
    use tokio::io::AsyncReadExt;
    let grace = Duration::from_millis(100).min(cx.remaining());
    let _ = tokio::time::timeout(grace, async {
        if stream.shutdown().await.is_err() {
            return;
        }
        let mut scratch = [0u8; 512];
        while let Ok(n) = stream.read(&mut scratch).await {
            if n == 0 {
                return;
            }
        }
    })
    .await;
}

/// A connection that is plain TCP or TLS over TCP.
pub enum Stream {
    Plain(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Upgrades `tcp` to TLS when `tls` is set; the certificate verdict goes into `judgement`.
pub async fn maybe_tls(
    cx: &mut RunCx<'_>,
    tcp: tokio::net::TcpStream,
    tls: Option<&crate::tls::PreparedTls>,
    judgement: &mut Judgement,
) -> Result<Stream, Failure> {
    match tls {
        None => Ok(Stream::Plain(tcp)),
        Some(t) => {
            let (s, v) = t.handshake(cx, tcp).await?;
            judgement.verdict(v);
            Ok(Stream::Tls(Box::new(s)))
        }
    }
}

/// Connects (and does implicit TLS when asked).
pub async fn connect(
    cx: &mut RunCx<'_>,
    tls: Option<&crate::tls::PreparedTls>,
    judgement: &mut Judgement,
) -> Result<Stream, Failure> {
    let tcp = net::connect_tcp(cx).await?;
    maybe_tls(cx, tcp, tls, judgement).await
}

/// Prepares optional TLS options.
pub fn prepare_tls(
    opts: &Option<crate::tls::TlsOptions>,
) -> Result<Option<crate::tls::PreparedTls>, crate::PrepareError> {
    opts.as_ref()
        .map(crate::tls::PreparedTls::prepare)
        .transpose()
        .map_err(|e| crate::PrepareError::new(format!("tls.{}", e.field), e.message))
}
