//! `tcp`: can we open a connection? Optionally, does the server greet us?

use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use portwarden_core::{ErrorKind, Phase, Transport};
use serde::{Deserialize, Serialize};

use super::{Check, CheckInfo};
use crate::PrepareError;
use crate::cx::{CheckResult, Failure, RunCx, Verdict};
use crate::net;

pub static INFO: CheckInfo = CheckInfo {
    name: "tcp",
    transport: Transport::Tcp,
    default_port: None,
    summary: "TCP connect, with connect time; optionally waits for a greeting banner",
    options: &[(
        "read_banner",
        "duration: after connecting, wait this long for the server's first bytes; a reset or an immediate close is `down`",
    )],
};

/// `check: {type: tcp}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpCheck {
    /// Wait this long after connecting for a banner (SSH, SMTP, FTP and MySQL greet first).
    #[serde(
        default,
        with = "super::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub read_banner: Option<Duration>,
}

impl TcpCheck {
    pub fn prepare(&self) -> Result<PreparedTcp, PrepareError> {
        Ok(PreparedTcp {
            read_banner: self.read_banner,
        })
    }
}

pub struct PreparedTcp {
    read_banner: Option<Duration>,
}

/// Most bytes of a banner we keep.
const BANNER_LIMIT: usize = 512;

impl Check for PreparedTcp {
    fn run<'a>(&'a self, cx: &'a mut RunCx<'_>) -> BoxFuture<'a, CheckResult> {
        Box::pin(async move {
            let mut stream = net::connect_tcp(cx).await?;
            let Some(wait) = self.read_banner else {
                return Ok(Verdict::up());
            };
            let addr = cx.addr;
            let until = Instant::now() + wait;
            let mut buf = Vec::new();
            let r = cx
                .timed_until(Phase::Protocol, until, async {
                    net::read_bounded(&mut stream, &mut buf, BANNER_LIMIT)
                        .await
                        .map_err(|e| net::io_error(&e, Phase::Protocol, addr))
                })
                .await;
            match r {
                Ok(0) => Err(Failure::new(
                    ErrorKind::Protocol,
                    format!("{addr} closed the connection right after accepting it"),
                )),
                Ok(_) => {
                    cx.detail("banner", portwarden_wire::printable::escape(&buf, 256));
                    Ok(Verdict::up())
                }
                // Silence is fine: many protocols wait for the client to speak first.
                Err(e)
                    if matches!(e.kind, ErrorKind::Timeout(_)) && Instant::now() < cx.deadline =>
                {
                    Ok(Verdict::up())
                }
                Err(e) => Err(e.into()),
            }
        })
    }
}
