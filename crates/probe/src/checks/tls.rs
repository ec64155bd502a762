//! `tls`: TCP connect plus a TLS handshake; reports the certificate and judges trust, name and
//! expiry (`expiry_warn_days` → degraded).

use futures::future::BoxFuture;
use portwarden_core::Transport;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::{Check, CheckInfo};
use crate::cx::{CheckResult, RunCx};
use crate::tls::{PreparedTls, TlsOptions};
use crate::{PrepareError, net};

pub static INFO: CheckInfo = CheckInfo {
    name: "tls",
    transport: Transport::Tcp,
    default_port: Some(443),
    summary: "TLS handshake with SNI; certificate subject, issuer, SANs, expiry and days left",
    options: &[
        (
            "server_name",
            "SNI and name to verify (default: the target host)",
        ),
        (
            "ca_file",
            "extra trusted CA certificates (PEM), added to the system roots",
        ),
        (
            "client_cert / client_key",
            "client certificate and key (PEM) for mutual TLS",
        ),
        (
            "insecure_skip_verify",
            "skip trust and name checks; expiry is still judged",
        ),
        (
            "expiry_warn_days",
            "degraded when the certificate expires within this many days (default 21)",
        ),
        ("alpn", "list of ALPN protocols to offer"),
    ],
};

/// `check: {type: tls, expiry_warn_days: 30}`: the options are [`TlsOptions`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TlsCheck {
    pub tls: TlsOptions,
}

impl TlsCheck {
    pub fn prepare(&self) -> Result<PreparedTlsCheck, PrepareError> {
        Ok(PreparedTlsCheck {
            tls: PreparedTls::prepare(&self.tls)?,
        })
    }
}

pub struct PreparedTlsCheck {
    tls: PreparedTls,
}

impl Check for PreparedTlsCheck {
    fn run<'a>(&'a self, cx: &'a mut RunCx<'_>) -> BoxFuture<'a, CheckResult> {
        Box::pin(async move {
            let stream = net::connect_tcp(cx).await?;
            let (mut tls, verdict) = self.tls.handshake(cx, stream).await?;
            // A polite close_notify; failures here do not matter.
            let _ =
                tokio::time::timeout(std::time::Duration::from_millis(50), tls.shutdown()).await;
            Ok(verdict)
        })
    }
}
