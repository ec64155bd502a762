//! `send_expect`: a scripted conversation over TCP, TLS or UDP — ordered `send` and `expect`
//! steps with a bounded read and a read timeout per expectation.

use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use portwarden_core::{ErrorKind, Phase, ProbeError, Secret, Transport};
use portwarden_wire::expect::{Match, Matcher};
use portwarden_wire::printable;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::udp::{connected_socket, matcher, payload, udp_error};
use super::{Check, CheckInfo};
use crate::cx::{CheckResult, Failure, RunCx, Verdict};
use crate::tls::{PreparedTls, TlsOptions};
use crate::{PrepareError, net};

pub static INFO: CheckInfo = CheckInfo {
    name: "send_expect",
    transport: Transport::Tcp,
    default_port: None,
    summary: "scripted conversation: ordered send / expect steps over tcp, tls or udp",
    options: &[
        (
            "transport",
            "tcp | tls | udp (default: from the target's scheme, else tcp)",
        ),
        (
            "steps",
            "list of {send: text} {send_hex: hex} {expect: text} {expect_regex: re} {expect_hex: hex}",
        ),
        (
            "max_read",
            "most bytes read in the whole conversation (default 4096)",
        ),
        (
            "read_timeout",
            "time allowed for each expect step (default: what is left of the timeout)",
        ),
        (
            "tls",
            "TLS options when transport is tls (see the tls check)",
        ),
    ],
};

/// Transport of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeTransport {
    Tcp,
    Tls,
    Udp,
}

/// One step: exactly one of the fields. `send` may hold secrets (`AUTH ${env:REDIS_PASSWORD}`):
/// it is resolved at load time and never printed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_hex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_hex: Option<String>,
}

/// `check: {type: send_expect, steps: [{send: "PING\r\n"}, {expect: "+PONG"}]}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendExpectCheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<SeTransport>,
    pub steps: Vec<Step>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_read: Option<usize>,
    #[serde(
        default,
        with = "super::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub read_timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsOptions>,
}

impl SendExpectCheck {
    pub fn transport(&self) -> Transport {
        match self.transport {
            Some(SeTransport::Udp) => Transport::Udp,
            _ => Transport::Tcp,
        }
    }

    pub fn prepare(&self) -> Result<PreparedSendExpect, PrepareError> {
        if self.steps.is_empty() {
            return Err(PrepareError::new(
                "steps",
                "a conversation needs at least one step",
            ));
        }
        let mut steps = Vec::with_capacity(self.steps.len());
        for (i, s) in self.steps.iter().enumerate() {
            let field = format!("steps[{i}]");
            let send = s.send.as_ref().map(|v| v.expose().to_string());
            let set = [
                &send,
                &s.send_hex,
                &s.expect,
                &s.expect_regex,
                &s.expect_hex,
            ]
            .iter()
            .filter(|v| v.is_some())
            .count();
            if set != 1 {
                return Err(PrepareError::new(
                    field,
                    "each step has exactly one of send, send_hex, expect, expect_regex, expect_hex",
                ));
            }
            let wrap =
                |e: PrepareError| PrepareError::new(format!("{field}.{}", e.field), e.message);
            if let Some(bytes) = payload(&send, &s.send_hex, "send", "send_hex").map_err(wrap)? {
                steps.push(PStep::Send(bytes));
            } else if let Some(m) =
                matcher(&s.expect, &s.expect_regex, &s.expect_hex).map_err(wrap)?
            {
                steps.push(PStep::Expect(m));
            }
        }
        let max_read = self.max_read.unwrap_or(4096);
        if !(1..=1 << 20).contains(&max_read) {
            return Err(PrepareError::new(
                "max_read",
                "must be between 1 byte and 1 MiB",
            ));
        }
        let transport = self.transport.unwrap_or(SeTransport::Tcp);
        let tls = match transport {
            SeTransport::Tls => Some(PreparedTls::prepare(&self.tls.clone().unwrap_or_default())?),
            _ if self.tls.is_some() => {
                return Err(PrepareError::new(
                    "tls",
                    "TLS options need `transport: tls`",
                ));
            }
            _ => None,
        };
        Ok(PreparedSendExpect {
            transport,
            steps,
            max_read,
            read_timeout: self.read_timeout,
            tls,
        })
    }
}

enum PStep {
    Send(Vec<u8>),
    Expect(Matcher),
}

pub struct PreparedSendExpect {
    transport: SeTransport,
    steps: Vec<PStep>,
    max_read: usize,
    read_timeout: Option<Duration>,
    tls: Option<PreparedTls>,
}

impl PreparedSendExpect {
    fn step_deadline(&self, cx: &RunCx<'_>) -> Instant {
        match self.read_timeout {
            Some(t) => (Instant::now() + t).min(cx.deadline),
            None => cx.deadline,
        }
    }

    async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        cx: &mut RunCx<'_>,
        stream: &mut S,
    ) -> Result<(), Failure> {
        let addr = cx.addr;
        let mut buf: Vec<u8> = Vec::new();
        let mut pos = 0usize;
        for (i, step) in self.steps.iter().enumerate() {
            match step {
                PStep::Send(bytes) => {
                    cx.timed(
                        Phase::Protocol,
                        async {
                            stream.write_all(bytes).await?;
                            stream.flush().await
                        }
                        .map_err_io(Phase::Protocol, addr),
                    )
                    .await?;
                }
                PStep::Expect(m) => {
                    let until = self.step_deadline(cx);
                    loop {
                        let full = buf.len() >= self.max_read;
                        match m.check(&buf[pos..], full) {
                            Match::MatchedAt(end) => {
                                pos += end;
                                break;
                            }
                            Match::Mismatch => {
                                return Err(mismatch(i, m, &buf[pos..], full, false, addr));
                            }
                            Match::NeedMore => {}
                        }
                        let max = self.max_read;
                        let r = cx
                            .timed_until(Phase::Protocol, until, async {
                                net::read_bounded(stream, &mut buf, max)
                                    .await
                                    .map_err(|e| net::io_error(&e, Phase::Protocol, addr))
                            })
                            .await;
                        match r {
                            // EOF: the buffer is what the last check saw (NeedMore), so
                            // nothing more can match.
                            Ok(0) => return Err(mismatch(i, m, &buf[pos..], false, true, addr)),
                            Ok(_) => {}
                            Err(e) => return Err(with_received(e, i, m, &buf[pos..]).into()),
                        }
                    }
                }
            }
        }
        Ok(())
    }

    async fn converse_udp(&self, cx: &mut RunCx<'_>) -> Result<(), Failure> {
        let addr = cx.addr;
        let sock = connected_socket(addr).await?;
        let mut buf: Vec<u8> = Vec::new();
        let mut pos = 0usize;
        let mut dgram = vec![0u8; 65_535];
        for (i, step) in self.steps.iter().enumerate() {
            match step {
                PStep::Send(bytes) => {
                    sock.send(bytes).await.map_err(|e| udp_error(&e, addr))?;
                }
                PStep::Expect(m) => {
                    // What is left of an earlier datagram may already hold the answer.
                    if let Match::MatchedAt(end) = m.check(&buf[pos..], false) {
                        pos += end;
                        continue;
                    }
                    let until = self.step_deadline(cx);
                    let r = cx
                        .timed_until(Phase::Protocol, until, async {
                            sock.recv(&mut dgram).await.map_err(|e| udp_error(&e, addr))
                        })
                        .await;
                    match r {
                        Ok(n) => {
                            let room = self.max_read.saturating_sub(buf.len());
                            buf.extend_from_slice(&dgram[..n.min(room)]);
                            // A datagram is a whole answer: judge it as final.
                            match m.check(&buf[pos..], true) {
                                Match::MatchedAt(end) => pos += end,
                                _ => return Err(mismatch(i, m, &buf[pos..], false, false, addr)),
                            }
                        }
                        Err(e) if matches!(e.kind, ErrorKind::Timeout(_)) => {
                            return Err(ProbeError::new(
                                ErrorKind::NoResponse,
                                format!(
                                    "step {}: no datagram from {addr} while waiting for {}",
                                    i + 1,
                                    m.describe()
                                ),
                            )
                            .into());
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Ok(())
    }
}

fn mismatch(
    step: usize,
    m: &Matcher,
    got: &[u8],
    full: bool,
    eof: bool,
    addr: std::net::SocketAddr,
) -> Failure {
    let why = if full {
        " (read limit reached)"
    } else if eof {
        " (then the connection closed)"
    } else {
        ""
    };
    Failure::new(
        ErrorKind::Protocol,
        format!(
            "step {}: expected {} from {addr} but received \"{}\"{why}",
            step + 1,
            m.describe(),
            printable::escape(got, 256)
        ),
    )
}

fn with_received(mut e: ProbeError, step: usize, m: &Matcher, got: &[u8]) -> ProbeError {
    e.message = format!(
        "step {}: waiting for {}: {} (received so far: \"{}\")",
        step + 1,
        m.describe(),
        e.message,
        printable::escape(got, 256)
    );
    e
}

trait MapIo<T> {
    fn map_err_io(
        self,
        phase: Phase,
        addr: std::net::SocketAddr,
    ) -> impl std::future::Future<Output = Result<T, ProbeError>>;
}

impl<T, F: std::future::Future<Output = std::io::Result<T>>> MapIo<T> for F {
    async fn map_err_io(self, phase: Phase, addr: std::net::SocketAddr) -> Result<T, ProbeError> {
        self.await.map_err(|e| net::io_error(&e, phase, addr))
    }
}

impl Check for PreparedSendExpect {
    fn run<'a>(&'a self, cx: &'a mut RunCx<'_>) -> BoxFuture<'a, CheckResult> {
        Box::pin(async move {
            match self.transport {
                SeTransport::Udp => {
                    self.converse_udp(cx).await?;
                    Ok(Verdict::up())
                }
                SeTransport::Tcp => {
                    let mut stream = net::connect_tcp(cx).await?;
                    self.converse(cx, &mut stream).await?;
                    Ok(Verdict::up())
                }
                SeTransport::Tls => {
                    let stream = net::connect_tcp(cx).await?;
                    let Some(tls) = &self.tls else {
                        return Err(Failure::new(
                            ErrorKind::Local,
                            "TLS transport without TLS settings",
                        ));
                    };
                    let (mut s, verdict) = tls.handshake(cx, stream).await?;
                    self.converse(cx, &mut s).await?;
                    Ok(verdict)
                }
            }
        })
    }
}
