//! `kafka`: Kafka brokers.
//!
//! - `handshake` (default): an `ApiVersions` (v0) request — every broker answers it, even
//!   before SASL authentication — and reports how many APIs the broker supports and its
//!   `Metadata` version range. A non-zero error code is `unhealthy`.
//! - `deep`: also a `Metadata` request for no topics (v4, or v1 on old brokers): the broker
//!   list, cluster id and controller. No active controller (`controller_id` -1) is `unhealthy`,
//!   as is a cluster with fewer than `min_brokers` brokers.
//!
//! Brokers that require SASL answer `ApiVersions` but close the connection on `Metadata`;
//! SASL is not implemented here, so deep mode on such a broker reports `auth`.
//!
//! ```yaml
//! - name: kafka
//!   target: kafka://broker1:9092
//!   check: {type: kafka, mode: deep, min_brokers: 3}
//! ```

use futures::future::BoxFuture;
use portwarden_core::{ErrorKind, Transport};
use portwarden_wire::kafka;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpStream;

use super::common::{Mode, clean, goodbye, read_msg, send};
use super::{Check, CheckInfo};
use crate::cx::{CheckResult, Failure, RunCx, Verdict};
use crate::{PrepareError, net};

pub static INFO: CheckInfo = CheckInfo {
    name: "kafka",
    transport: Transport::Tcp,
    default_port: Some(9092),
    summary: "Kafka: ApiVersions; deep: Metadata (brokers, controller, cluster id)",
    options: &[
        (
            "mode",
            "handshake (default: ApiVersions) | deep (Metadata: brokers and controller)",
        ),
        (
            "min_brokers",
            "deep: fewer brokers in the cluster is unhealthy (default 1)",
        ),
    ],
};

/// `check: {type: kafka, mode: deep, min_brokers: 3}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaCheck {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_brokers: Option<u32>,
}

impl KafkaCheck {
    pub fn prepare(&self) -> Result<PreparedKafka, PrepareError> {
        if self.min_brokers.is_some() && self.mode != Mode::Deep {
            return Err(PrepareError::new(
                "min_brokers",
                "needs `mode: deep` (brokers come from Metadata)",
            ));
        }
        Ok(PreparedKafka {
            deep: self.mode == Mode::Deep,
            min_brokers: self.min_brokers.unwrap_or(1),
        })
    }
}

pub struct PreparedKafka {
    deep: bool,
    min_brokers: u32,
}

const CLIENT_ID: &str = "portwarden";

async fn response(
    cx: &mut RunCx<'_>,
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    what: &str,
) -> Result<Vec<u8>, Failure> {
    read_msg(cx, s, buf, kafka::MAX_RESPONSE + 4, "Kafka", what, |b| {
        Ok(kafka::frame(b, kafka::MAX_RESPONSE)?.map(|(body, n)| (body.to_vec(), n)))
    })
    .await
}

impl Check for PreparedKafka {
    fn run<'a>(&'a self, cx: &'a mut RunCx<'_>) -> BoxFuture<'a, CheckResult> {
        Box::pin(async move {
            let addr = cx.addr;
            let mut s = net::connect_tcp(cx).await?;
            let mut buf = Vec::new();
            send(cx, &mut s, &kafka::api_versions_request(1, CLIENT_ID)).await?;
            let body = response(cx, &mut s, &mut buf, "an ApiVersions response").await?;
            let v = kafka::parse_api_versions(&body)
                .map_err(|e| super::common::protocol_error(addr, "Kafka", &e, &body))?;
            if v.correlation_id != 1 {
                return Err(Failure::new(
                    ErrorKind::Protocol,
                    format!(
                        "{addr} answered correlation id {} to request 1",
                        v.correlation_id
                    ),
                ));
            }
            if v.error_code != 0 {
                return Err(Failure::new(
                    ErrorKind::Unhealthy,
                    format!(
                        "{addr} answered ApiVersions with error {} ({})",
                        v.error_code,
                        kafka::error_name(v.error_code)
                    ),
                ));
            }
            cx.detail("api_count", v.apis.len());
            let md = v.range(kafka::API_METADATA);
            if let Some(r) = md {
                cx.detail("metadata_versions", format!("{}-{}", r.min, r.max));
            }
            if let Some(r) = v.range(kafka::API_VERSIONS) {
                cx.detail("api_versions_versions", format!("{}-{}", r.min, r.max));
            }
            if !self.deep {
                goodbye(&mut s, &[]).await;
                return Ok(Verdict::up());
            }
            let version = match md {
                Some(r) if r.min <= 4 && r.max >= 4 => 4,
                Some(r) if r.min <= 1 && r.max >= 1 => 1,
                _ => {
                    return Err(Failure::new(
                        ErrorKind::Protocol,
                        format!("{addr} supports neither Metadata v4 nor v1"),
                    ));
                }
            };
            send(cx, &mut s, &kafka::metadata_request(version, 2, CLIENT_ID)).await?;
            let body = match response(cx, &mut s, &mut buf, "a Metadata response").await {
                Ok(b) => b,
                Err(f)
                    if f.error.kind == ErrorKind::Protocol
                        && f.error.message.contains("closed") =>
                {
                    return Err(Failure::new(
                        ErrorKind::Auth,
                        format!(
                            "{addr} closed the connection on Metadata: it probably requires SASL authentication (not supported by this check)"
                        ),
                    ));
                }
                Err(f) => return Err(f),
            };
            let m = kafka::parse_metadata(&body, version)
                .map_err(|e| super::common::protocol_error(addr, "Kafka", &e, &body))?;
            if m.correlation_id != 2 {
                return Err(Failure::new(
                    ErrorKind::Protocol,
                    format!(
                        "{addr} answered correlation id {} to request 2",
                        m.correlation_id
                    ),
                ));
            }
            cx.detail("brokers", m.brokers.len());
            cx.detail(
                "broker_addresses",
                json!(
                    m.brokers
                        .iter()
                        .take(64)
                        .map(|b| format!("{}:{}", clean(&b.host), b.port))
                        .collect::<Vec<_>>()
                ),
            );
            if let Some(c) = &m.cluster_id {
                cx.detail("cluster_id", clean(c));
            }
            cx.detail("controller_id", m.controller_id);
            goodbye(&mut s, &[]).await;
            if m.controller_id < 0 {
                return Err(Failure::new(
                    ErrorKind::Unhealthy,
                    format!("{addr}: the cluster has no active controller"),
                ));
            }
            if (m.brokers.len() as u64) < u64::from(self.min_brokers) {
                return Err(Failure::new(
                    ErrorKind::Unhealthy,
                    format!(
                        "{addr}: {} broker(s) in the cluster, fewer than min_brokers {}",
                        m.brokers.len(),
                        self.min_brokers
                    ),
                ));
            }
            Ok(Verdict::up())
        })
    }
}
