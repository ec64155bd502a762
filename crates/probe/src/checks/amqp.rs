//! `amqp`: RabbitMQ and other AMQP 0-9-1 brokers.
//!
//! - `handshake` (default): sends the protocol header `AMQP\0\0\9\1` and parses the broker's
//!   `Connection.Start` (product, version, platform, cluster name, SASL mechanisms,
//!   capabilities). No credentials.
//! - `deep`: logs in with SASL PLAIN and opens a channel: `Start-Ok`, `Tune`/`Tune-Ok`,
//!   `Connection.Open` on `vhost`, `Channel.Open`, then closes cleanly. A refused login
//!   (`Connection.Close` 403, or a close right after the credentials) is `auth`; a refused vhost
//!   (530) is `auth` too; any other close code is `unhealthy`.
//!
//! Why hand-written rather than lapin: lapin owns its socket, reactor and heartbeat loop, so
//! it cannot run over our connect-timed socket under one deadline, and it is a large compile.
//! The PLAIN exchange a probe needs is five small frames (see `portwarden_wire::amqp`), each
//! read bounded and timed as the `protocol` phase.
//!
//! ```yaml
//! - name: rabbit
//!   target: amqp://mq1:5672
//!   check: {type: amqp, mode: deep, user: monitor, password: "${env:RABBIT_PW}", vhost: /}
//! ```

use futures::future::BoxFuture;
use portwarden_core::{ErrorKind, Secret, Transport};
use portwarden_wire::amqp::{self, Incoming, Method};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpStream;

use super::common::{Mode, clean, goodbye, read_msg, send};
use super::{Check, CheckInfo};
use crate::cx::{CheckResult, Failure, RunCx, Verdict};
use crate::{PrepareError, net};

pub static INFO: CheckInfo = CheckInfo {
    name: "amqp",
    transport: Transport::Tcp,
    default_port: Some(5672),
    summary: "AMQP 0-9-1 (RabbitMQ): Connection.Start (product, version); deep: PLAIN login + channel open",
    options: &[
        (
            "mode",
            "handshake (default: protocol header → Connection.Start, no credentials) | deep (login and open a channel)",
        ),
        ("user", "deep: user name for SASL PLAIN"),
        (
            "password",
            "deep: password (a secret: \"${env:NAME}\" or \"${file:/path}\")",
        ),
        ("vhost", "deep: virtual host to open (default /)"),
    ],
};

/// `check: {type: amqp, mode: deep, user: u, password: "${env:P}", vhost: /}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpCheck {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vhost: Option<String>,
}

impl AmqpCheck {
    pub fn prepare(&self) -> Result<PreparedAmqp, PrepareError> {
        let creds = match self.mode {
            Mode::Handshake => {
                if self.user.is_some() || self.password.is_some() {
                    return Err(PrepareError::new(
                        "mode",
                        "credentials are only used with `mode: deep`",
                    ));
                }
                None
            }
            Mode::Deep => {
                let user = self.user.clone().ok_or_else(|| {
                    PrepareError::new("user", "`mode: deep` needs `user` and `password`")
                })?;
                let password = self.password.clone().ok_or_else(|| {
                    PrepareError::new("password", "`mode: deep` needs `user` and `password`")
                })?;
                Some((user, password))
            }
        };
        let vhost = self.vhost.clone().unwrap_or_else(|| "/".into());
        if vhost.len() > 255 {
            return Err(PrepareError::new("vhost", "at most 255 bytes"));
        }
        Ok(PreparedAmqp { creds, vhost })
    }
}

pub struct PreparedAmqp {
    creds: Option<(String, Secret)>,
    vhost: String,
}

/// One frame, owned: (type, channel, payload).
type OwnedFrame = (u8, u16, Vec<u8>);

async fn next_frame(
    cx: &mut RunCx<'_>,
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    max: usize,
    what: &str,
) -> Result<OwnedFrame, Failure> {
    let addr = cx.addr;
    let mut mismatch = None;
    let r = read_msg(
        cx,
        s,
        buf,
        max + 8,
        "AMQP 0-9-1",
        what,
        |b| match amqp::parse_frame(b, max)? {
            Incoming::Frame(f, n) => Ok(Some(((f.kind, f.channel, f.payload.to_vec()), n))),
            Incoming::VersionMismatch(v) => {
                mismatch = Some(v);
                Ok(Some(((0, 0, Vec::new()), 8)))
            }
            Incoming::NeedMore => Ok(None),
        },
    )
    .await?;
    if let Some(v) = mismatch {
        return Err(Failure::new(
            ErrorKind::Protocol,
            format!(
                "{addr} refused AMQP 0-9-1 and offered protocol version {}-{}-{}-{} instead",
                v[0], v[1], v[2], v[3]
            ),
        ));
    }
    Ok(r)
}

/// Reads method frames, skipping heartbeats and other frames, until a method arrives.
async fn next_method(
    cx: &mut RunCx<'_>,
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    max: usize,
    what: &str,
) -> Result<Method, Failure> {
    for _ in 0..64 {
        let (kind, _ch, payload) = next_frame(cx, s, buf, max, what).await?;
        if kind != amqp::FRAME_METHOD {
            continue;
        }
        return amqp::parse_method(&payload).map_err(|e| {
            Failure::new(
                ErrorKind::Protocol,
                format!("{}: malformed AMQP method: {e}", cx.addr),
            )
        });
    }
    Err(Failure::new(
        ErrorKind::Protocol,
        format!("{}: 64 frames without {what}", cx.addr),
    ))
}

fn close_failure(addr: std::net::SocketAddr, code: u16, text: &str) -> Failure {
    let kind = match code {
        403 | 530 => ErrorKind::Auth,
        _ => ErrorKind::Unhealthy,
    };
    Failure::new(
        kind,
        format!("{addr} closed the AMQP connection: {code} {}", clean(text)),
    )
}

impl PreparedAmqp {
    async fn deep(
        &self,
        cx: &mut RunCx<'_>,
        s: &mut TcpStream,
        buf: &mut Vec<u8>,
        user: &str,
        password: &Secret,
    ) -> CheckResult {
        let addr = cx.addr;
        send(
            cx,
            s,
            &amqp::start_ok_plain(user, password.expose(), "portwarden"),
        )
        .await?;
        let tune = match next_method(cx, s, buf, amqp::MAX_FRAME, "Connection.Tune").await {
            Ok(m) => m,
            // Brokers without `authentication_failure_close` just hang up on bad credentials.
            Err(f)
                if f.error.kind == ErrorKind::Reset
                    || (f.error.kind == ErrorKind::Protocol
                        && f.error.message.contains("closed")) =>
            {
                return Err(Failure::new(
                    ErrorKind::Auth,
                    format!(
                        "{addr} closed the connection right after our credentials for `{user}`: login refused"
                    ),
                ));
            }
            Err(f) => return Err(f),
        };
        let (channel_max, frame_max) = match tune {
            Method::Tune {
                channel_max,
                frame_max,
                heartbeat,
            } => {
                cx.detail("channel_max", channel_max);
                cx.detail("frame_max", frame_max);
                cx.detail("heartbeat", heartbeat);
                (channel_max, frame_max)
            }
            Method::Close { code, text, .. } => return Err(close_failure(addr, code, &text)),
            Method::Secure => {
                return Err(Failure::new(
                    ErrorKind::Auth,
                    format!("{addr} asked for another SASL round after PLAIN: login not accepted"),
                ));
            }
            other => {
                return Err(Failure::new(
                    ErrorKind::Protocol,
                    format!("{addr} sent {other:?} where Connection.Tune was expected"),
                ));
            }
        };
        let max = if frame_max == 0 {
            amqp::MAX_FRAME
        } else {
            (frame_max as usize).min(amqp::MAX_FRAME)
        };
        let mut out = amqp::tune_ok(channel_max, frame_max);
        out.extend_from_slice(&amqp::open(&self.vhost));
        send(cx, s, &out).await?;
        match next_method(cx, s, buf, max, "Connection.Open-Ok").await? {
            Method::OpenOk => {}
            Method::Close { code, text, .. } => return Err(close_failure(addr, code, &text)),
            other => {
                return Err(Failure::new(
                    ErrorKind::Protocol,
                    format!("{addr} sent {other:?} where Connection.Open-Ok was expected"),
                ));
            }
        }
        cx.detail("vhost", self.vhost.clone());
        send(cx, s, &amqp::channel_open(1)).await?;
        loop {
            match next_method(cx, s, buf, max, "Channel.Open-Ok").await? {
                Method::ChannelOpenOk => break,
                Method::Close { code, text, .. } => return Err(close_failure(addr, code, &text)),
                Method::ChannelClose { code, text } => {
                    return Err(Failure::new(
                        ErrorKind::Unhealthy,
                        format!("{addr} refused to open a channel: {code} {}", clean(&text)),
                    ));
                }
                // Connection.Blocked / Unblocked and the like may come first.
                Method::Other(..) => continue,
                other => {
                    return Err(Failure::new(
                        ErrorKind::Protocol,
                        format!("{addr} sent {other:?} where Channel.Open-Ok was expected"),
                    ));
                }
            }
        }
        cx.detail("channel_open", true);
        let mut bye = amqp::channel_close(1);
        bye.extend_from_slice(&amqp::connection_close());
        goodbye(s, &bye).await;
        Ok(Verdict::up())
    }
}

impl Check for PreparedAmqp {
    fn run<'a>(&'a self, cx: &'a mut RunCx<'_>) -> BoxFuture<'a, CheckResult> {
        Box::pin(async move {
            let mut s = net::connect_tcp(cx).await?;
            send(cx, &mut s, amqp::PROTOCOL_HEADER).await?;
            let mut buf = Vec::new();
            let m = next_method(cx, &mut s, &mut buf, amqp::MAX_FRAME, "Connection.Start").await?;
            let start = match m {
                Method::Start(st) => st,
                other => {
                    return Err(Failure::new(
                        ErrorKind::Protocol,
                        format!(
                            "{} sent {other:?} where Connection.Start was expected",
                            cx.addr
                        ),
                    ));
                }
            };
            cx.detail(
                "amqp_version",
                format!("{}-{}", start.version_major, start.version_minor),
            );
            if let Some(p) = start.product() {
                cx.detail("product", clean(p));
            }
            if let Some(v) = start.version() {
                cx.detail("server_version", clean(v));
            }
            if let Some(p) = start.platform() {
                cx.detail("platform", clean(p));
            }
            if let Some(c) = start.cluster_name() {
                cx.detail("cluster_name", clean(c));
            }
            cx.detail("mechanisms", clean(&start.mechanisms));
            let caps: Vec<String> = start.capabilities().iter().map(|c| clean(c)).collect();
            cx.detail("capabilities", json!(caps));
            match &self.creds {
                None => {
                    goodbye(&mut s, &[]).await;
                    Ok(Verdict::up())
                }
                Some((user, password)) => {
                    if !start.has_mechanism("PLAIN") {
                        return Err(Failure::new(
                            ErrorKind::Auth,
                            format!(
                                "{} does not offer SASL PLAIN (offers: {})",
                                cx.addr,
                                clean(&start.mechanisms)
                            ),
                        ));
                    }
                    self.deep(cx, &mut s, &mut buf, user, password).await
                }
            }
        })
    }
}
