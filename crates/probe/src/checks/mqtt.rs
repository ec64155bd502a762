//! `mqtt`: MQTT brokers (3.1.1 and 5.0).
//!
//! - `handshake` (default): `CONNECT` without credentials (clean session) → `CONNACK`. Accepted
//!   is `up`; then, if `version_topic` is set (default `$SYS/broker/version`, which Mosquitto
//!   publishes as a retained message), subscribes and waits briefly for the broker's version
//!   (`server_version` in details; missing is fine; the wait, at most 500 ms, is not counted
//!   in the protocol phase). Finally `DISCONNECT`.
//! - `deep`: the same with `user`/`password`.
//!
//! A refused login (3.1.1 codes 4/5, 5.0 codes 0x86/0x87/0x8A/0x8C) proves the broker is alive
//! but turns us away: reported per `on_auth_refused` (default `down` with `auth`), with
//! `auth_refused: true` in details. "Server unavailable"/"busy"/"quota" codes are `unhealthy`;
//! other refusals (unsupported version, client id) are `protocol`.
//!
//! ```yaml
//! - name: broker
//!   target: mqtt://broker:1883
//!   check: {type: mqtt, protocol_version: "5", mode: deep, user: mon, password: "${env:MQTT_PW}"}
//! ```

use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use portwarden_core::{ErrorKind, Secret, Transport};
use portwarden_wire::mqtt::{self, Version};
use serde::{Deserialize, Serialize};

use super::common::{Mode, OnAuthRefused, clean, goodbye, read_msg, send};
use super::{Check, CheckInfo};
use crate::cx::{CheckResult, Failure, RunCx, Verdict};
use crate::{PrepareError, net};

pub static INFO: CheckInfo = CheckInfo {
    name: "mqtt",
    transport: Transport::Tcp,
    default_port: Some(1883),
    summary: "MQTT 3.1.1/5: CONNECT → CONNACK code; broker version from $SYS; deep: with credentials",
    options: &[
        (
            "mode",
            "handshake (default: anonymous CONNECT) | deep (CONNECT with user/password)",
        ),
        ("protocol_version", "\"3.1.1\" (default) or \"5\""),
        (
            "user / password",
            "deep: credentials (password is a secret)",
        ),
        (
            "client_id",
            "client identifier (default: portwarden-<random>)",
        ),
        (
            "version_topic",
            "retained topic holding the broker version (default $SYS/broker/version; \"\" to skip)",
        ),
        (
            "on_auth_refused",
            "down (default, error `auth`) | degraded | up: what a refused CONNECT means",
        ),
    ],
};

/// `check: {type: mqtt, protocol_version: "5"}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttCheck {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_topic: Option<String>,
    #[serde(default)]
    pub on_auth_refused: OnAuthRefused,
}

impl MqttCheck {
    pub fn prepare(&self) -> Result<PreparedMqtt, PrepareError> {
        let version = match self.protocol_version.as_deref() {
            None | Some("3.1.1") | Some("4") => Version::V311,
            Some("5") | Some("5.0") => Version::V5,
            Some(other) => {
                return Err(PrepareError::new(
                    "protocol_version",
                    format!("`{other}` is not supported; use \"3.1.1\" or \"5\""),
                ));
            }
        };
        match self.mode {
            Mode::Handshake if self.user.is_some() || self.password.is_some() => {
                return Err(PrepareError::new(
                    "mode",
                    "credentials are only used with `mode: deep`",
                ));
            }
            Mode::Deep if self.user.is_none() => {
                return Err(PrepareError::new("user", "`mode: deep` needs `user`"));
            }
            _ => {}
        }
        if let Some(id) = &self.client_id
            && (id.is_empty() || id.len() > 256)
        {
            return Err(PrepareError::new("client_id", "1 to 256 characters"));
        }
        Ok(PreparedMqtt {
            version,
            cfg: self.clone(),
            version_topic: self
                .version_topic
                .clone()
                .unwrap_or_else(|| "$SYS/broker/version".into()),
        })
    }
}

pub struct PreparedMqtt {
    version: Version,
    cfg: MqttCheck,
    version_topic: String,
}

/// How long we wait for the retained version message after subscribing.
const VERSION_WAIT: Duration = Duration::from_millis(500);

impl Check for PreparedMqtt {
    fn run<'a>(&'a self, cx: &'a mut RunCx<'_>) -> BoxFuture<'a, CheckResult> {
        Box::pin(async move {
            let addr = cx.addr;
            let v = self.version;
            let mut s = net::connect_tcp(cx).await?;
            let client_id = self
                .cfg
                .client_id
                .clone()
                .unwrap_or_else(|| format!("portwarden-{:08x}", std::process::id() ^ rand32()));
            let pass = self.cfg.password.as_ref().map(Secret::expose);
            send(
                cx,
                &mut s,
                &mqtt::connect(v, &client_id, 30, self.cfg.user.as_deref(), pass),
            )
            .await?;
            let mut buf = Vec::new();
            let ack = read_msg(cx, &mut s, &mut buf, 1024, "MQTT", "a CONNACK", |b| {
                mqtt::parse_connack(b, v)
            })
            .await?;
            cx.detail(
                "protocol_version",
                match v {
                    Version::V311 => "3.1.1",
                    Version::V5 => "5",
                },
            );
            cx.detail("connack_code", ack.code);
            let mut why = format!("{} (code {})", ack.describe(v), ack.code);
            if let Some(r) = &ack.reason_string {
                why.push_str(&format!(": {}", clean(r)));
            }
            match ack.verdict(v) {
                mqtt::Verdict::Accepted => {}
                mqtt::Verdict::AuthRefused => {
                    cx.detail("auth_refused", true);
                    return self
                        .cfg
                        .on_auth_refused
                        .judge(format!("{addr} refused the connection: {why}"));
                }
                mqtt::Verdict::Unavailable => {
                    return Err(Failure::new(
                        ErrorKind::Unhealthy,
                        format!("{addr} is alive but not serving: {why}"),
                    ));
                }
                mqtt::Verdict::Rejected => {
                    return Err(Failure::new(
                        ErrorKind::Protocol,
                        format!("{addr} rejected our CONNECT: {why}"),
                    ));
                }
            }
            cx.detail("session_present", ack.session_present);
            if !self.version_topic.is_empty() {
                send(cx, &mut s, &mqtt::subscribe(1, &self.version_topic, v)).await?;
                // Not timed as a phase: the version is a bonus, and waiting for it must not
                // inflate the protocol time that latency alerts look at.
                let until = (Instant::now() + VERSION_WAIT).min(cx.deadline);
                let topic = self.version_topic.clone();
                let r = tokio::time::timeout_at(
                    until.into(),
                    wait_publish(&mut s, &mut buf, v, &topic),
                )
                .await;
                if let Ok(Some(version)) = r {
                    cx.detail("server_version", clean(&version));
                }
            }
            goodbye(&mut s, &mqtt::disconnect()).await;
            Ok(Verdict::up())
        })
    }
}

/// Reads packets until a PUBLISH on `topic`; `None` on EOF, garbage or a refused
/// subscription (the version is a bonus, never a failure).
async fn wait_publish(
    s: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
    v: Version,
    topic: &str,
) -> Option<String> {
    loop {
        match mqtt::split_packet(buf, 64 * 1024) {
            Ok(Some((first, body, used))) => {
                // SUBACK with a failure code (0x80+): no version coming.
                if first >> 4 == 9 && body.last().is_some_and(|c| *c >= 0x80) {
                    return None;
                }
                let found = mqtt::parse_publish(first, body, v)
                    .ok()
                    .filter(|(t, _)| t == topic)
                    .map(|(_, p)| String::from_utf8_lossy(&p[..p.len().min(256)]).into_owned());
                buf.drain(..used);
                if found.is_some() {
                    return found;
                }
            }
            Ok(None) => {
                let n = net::read_bounded(s, buf, 80 * 1024)
                    .await
                    .unwrap_or_default();
                if n == 0 {
                    return None;
                }
            }
            Err(_) => return None,
        }
    }
}

fn rand32() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}
