//! `udp`: send a datagram, judge the reply. ICMP port unreachable means closed; silence means
//! open or filtered, which by itself proves nothing (see `udp_no_response`).

use std::net::SocketAddr;
use std::time::Instant;

use futures::future::BoxFuture;
use portwarden_core::{ErrorKind, Outcome, Phase, ProbeError, Transport};
use portwarden_wire::expect::{Match, Matcher};
use portwarden_wire::printable;
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;

use super::{Check, CheckInfo};
use crate::cx::{CheckResult, Failure, RunCx, Verdict};
use crate::{PrepareError, net};

pub static INFO: CheckInfo = CheckInfo {
    name: "udp",
    transport: Transport::Udp,
    default_port: None,
    summary: "UDP datagram; ICMP port unreachable = closed, a matching reply = up, silence = open|filtered",
    options: &[
        (
            "payload",
            "text with escapes (\\r \\n \\xHH) to send; default: an empty datagram",
        ),
        ("payload_hex", "bytes to send, as hex"),
        (
            "expect",
            "the reply must contain this text (escapes allowed)",
        ),
        (
            "expect_regex",
            "the reply must match this regular expression",
        ),
        ("expect_hex", "the reply must start with these bytes (hex)"),
        (
            "udp_no_response",
            "up | unknown | down: what silence means (default unknown)",
        ),
        (
            "attempts",
            "datagrams sent before giving up, spread over the timeout (default 2)",
        ),
    ],
};

/// What a silent UDP port means for the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NoResponse {
    Up,
    #[default]
    Unknown,
    Down,
}

impl NoResponse {
    pub fn outcome(self) -> Outcome {
        match self {
            NoResponse::Up => Outcome::Up,
            NoResponse::Unknown => Outcome::Unknown,
            NoResponse::Down => Outcome::Down,
        }
    }
}

/// `check: {type: udp, payload: "...", expect: "..."}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UdpCheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_hex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_hex: Option<String>,
    /// Outcome of silence. `None` means the config-wide default (itself `unknown` by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_no_response: Option<NoResponse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
}

/// Builds the payload from `text` (escapes) or `hex`; at most one may be set.
pub(crate) fn payload(
    text: &Option<String>,
    hex: &Option<String>,
    text_field: &str,
    hex_field: &str,
) -> Result<Option<Vec<u8>>, PrepareError> {
    match (text, hex) {
        (Some(_), Some(_)) => Err(PrepareError::new(
            hex_field,
            format!("set either `{text_field}` or `{hex_field}`, not both"),
        )),
        (Some(t), None) => portwarden_wire::bytespec::parse_escaped(t)
            .map(Some)
            .map_err(|e| PrepareError::new(text_field, e.to_string())),
        (None, Some(h)) => portwarden_wire::bytespec::parse_hex(h)
            .map(Some)
            .map_err(|e| PrepareError::new(hex_field, e.to_string())),
        (None, None) => Ok(None),
    }
}

/// Builds a matcher from one of `expect` (escaped text), `expect_regex`, `expect_hex`.
pub(crate) fn matcher(
    text: &Option<String>,
    regex: &Option<String>,
    hex: &Option<String>,
) -> Result<Option<Matcher>, PrepareError> {
    let set = [text.is_some(), regex.is_some(), hex.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if set > 1 {
        return Err(PrepareError::new(
            "expect",
            "set only one of `expect`, `expect_regex` and `expect_hex`",
        ));
    }
    if let Some(t) = text {
        let b = portwarden_wire::bytespec::parse_escaped(t)
            .map_err(|e| PrepareError::new("expect", e.to_string()))?;
        return Ok(Some(Matcher::Contains(b)));
    }
    if let Some(r) = regex {
        return Matcher::regex(r).map(Some).map_err(|e| {
            PrepareError::new("expect_regex", format!("invalid regular expression: {e}"))
        });
    }
    if let Some(h) = hex {
        let b = portwarden_wire::bytespec::parse_hex(h)
            .map_err(|e| PrepareError::new("expect_hex", e.to_string()))?;
        return Ok(Some(Matcher::Prefix(b)));
    }
    Ok(None)
}

impl UdpCheck {
    pub fn prepare(&self) -> Result<PreparedUdp, PrepareError> {
        let attempts = self.attempts.unwrap_or(2);
        if !(1..=10).contains(&attempts) {
            return Err(PrepareError::new("attempts", "must be between 1 and 10"));
        }
        Ok(PreparedUdp {
            payload: payload(&self.payload, &self.payload_hex, "payload", "payload_hex")?
                .unwrap_or_default(),
            matcher: matcher(&self.expect, &self.expect_regex, &self.expect_hex)?,
            no_response: self.udp_no_response.unwrap_or_default(),
            attempts,
        })
    }

    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.expect.is_none() && self.expect_regex.is_none() && self.expect_hex.is_none() {
            w.push(format!(
                "a UDP check without `expect` cannot prove the service is alive: silence is reported as `{}` (set `udp_no_response`, or better, an `expect` or a protocol check such as dns/ntp/snmp)",
                self.udp_no_response.unwrap_or_default().outcome()
            ));
        }
        w
    }
}

pub struct PreparedUdp {
    payload: Vec<u8>,
    matcher: Option<Matcher>,
    no_response: NoResponse,
    attempts: u32,
}

/// Largest datagram we accept (the UDP maximum; one buffer per running check).
const MAX_DATAGRAM: usize = 65_535;

/// Opens a UDP socket connected to `addr` so ICMP errors come back to us.
pub(crate) async fn connected_socket(addr: SocketAddr) -> Result<UdpSocket, ProbeError> {
    let bind: SocketAddr = match addr {
        SocketAddr::V4(_) => SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
    };
    let sock = UdpSocket::bind(bind)
        .await
        .map_err(|e| net::io_error(&e, Phase::Connect, addr))?;
    sock.connect(addr)
        .await
        .map_err(|e| net::io_error(&e, Phase::Connect, addr))?;
    Ok(sock)
}

/// Maps a UDP socket error: ECONNREFUSED on a connected UDP socket is ICMP port unreachable.
pub(crate) fn udp_error(e: &std::io::Error, addr: SocketAddr) -> ProbeError {
    match net::classify_io(e, Phase::Protocol) {
        ErrorKind::Refused => ProbeError::new(
            ErrorKind::Closed,
            format!("{addr} answered ICMP port unreachable: the UDP port is closed"),
        ),
        _ => net::io_error(e, Phase::Protocol, addr),
    }
}

impl Check for PreparedUdp {
    fn run<'a>(&'a self, cx: &'a mut RunCx<'_>) -> BoxFuture<'a, CheckResult> {
        Box::pin(async move {
            let addr = cx.addr;
            let sock = connected_socket(addr).await?;
            let mut buf = vec![0u8; MAX_DATAGRAM];
            let start = Instant::now();
            let total = cx.remaining();
            for attempt in 0..self.attempts {
                let until =
                    start + total.mul_f64(f64::from(attempt + 1) / f64::from(self.attempts));
                if let Err(e) = sock.send(&self.payload).await {
                    return Err(udp_error(&e, addr).into());
                }
                let r = cx
                    .timed_until(Phase::Protocol, until, async {
                        sock.recv(&mut buf).await.map_err(|e| udp_error(&e, addr))
                    })
                    .await;
                match r {
                    Ok(n) => {
                        cx.detail("reply_bytes", n);
                        cx.detail("attempts", attempt + 1);
                        let reply = &buf[..n];
                        return match &self.matcher {
                            None => Ok(Verdict::up()),
                            Some(m) => match m.check(reply, true) {
                                Match::MatchedAt(_) => Ok(Verdict::up()),
                                _ => Err(Failure::new(
                                    ErrorKind::Protocol,
                                    format!(
                                        "expected {} but {addr} replied \"{}\"",
                                        m.describe(),
                                        printable::escape(reply, 256)
                                    ),
                                )),
                            },
                        };
                    }
                    Err(e) if matches!(e.kind, ErrorKind::Timeout(_)) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            cx.detail("attempts", self.attempts);
            let msg = format!(
                "no reply from {addr} after {} datagram(s): open or filtered",
                self.attempts
            );
            match self.no_response.outcome() {
                Outcome::Up => Ok(Verdict {
                    outcome: Outcome::Up,
                    note: Some(format!("{msg} (counted as up: udp_no_response: up)")),
                }),
                o => Err(Failure::new(ErrorKind::NoResponse, msg).with_outcome(o)),
            }
        })
    }
}
