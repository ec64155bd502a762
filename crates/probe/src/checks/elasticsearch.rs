//! `elasticsearch`: Elasticsearch / OpenSearch liveness and cluster health over HTTP/1.1.
//!
//! ```yaml
//! - name: search
//!   target: elasticsearch://es1.internal     # port 9200 by default
//!   check:
//!     type: elasticsearch
//!     mode: deep                             # handshake (default: GET /) | deep (+ health)
//!     user: monitor
//!     password: "${env:ES_PASSWORD}"         # HTTP basic auth (optional)
//!     tls: {ca_file: /etc/ssl/es-ca.pem}     # HTTPS
//! ```
//!
//! **handshake**: `GET /` → `server_version` (`version.number`), `cluster_name`, `node_name`.
//! A 401/403 proves the node is alive (`auth_required: true`, `up` with a note) when no
//! credentials are configured; with credentials it is `auth`. A 5xx is `unhealthy`.
//! **deep**: also `GET /_cluster/health`: `green` → up, `yellow` → degraded, `red` → down
//! `unhealthy`; reports `cluster_status`, `number_of_nodes`, `number_of_data_nodes`,
//! `unassigned_shards`, `active_shards_percent`. Here 401/403 is always `auth`.
//!
//! HTTP is hand-written (one GET, bounded response parsing in `portwarden_wire::http1`) so it
//! runs over our own timed socket.

use futures::future::BoxFuture;
use portwarden_core::{ErrorKind, Secret, Transport};
use portwarden_wire::http1::{self, Limits, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::dbcommon::{self, Judgement, Mode, Stream, shown};
use super::{Check, CheckInfo};
use crate::PrepareError;
use crate::cx::{CheckResult, Failure, RunCx};
use crate::tls::{PreparedTls, TlsOptions};

pub static INFO: CheckInfo = CheckInfo {
    name: "elasticsearch",
    transport: Transport::Tcp,
    default_port: Some(9200),
    summary: "Elasticsearch/OpenSearch: GET / (version, cluster); deep: /_cluster/health green/yellow/red",
    options: &[
        (
            "mode",
            "handshake (default: GET /) | deep (+ GET /_cluster/health)",
        ),
        ("user", "HTTP basic auth user (optional)"),
        (
            "password",
            "HTTP basic auth password, e.g. \"${env:ES_PASSWORD}\" (never printed)",
        ),
        ("tls", "TLS options (see the tls check): HTTPS"),
    ],
};

/// `check: {type: elasticsearch, mode: deep}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchCheck {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsOptions>,
}

impl ElasticsearchCheck {
    pub fn prepare(&self) -> Result<PreparedElasticsearch, PrepareError> {
        let basic = match (&self.user, &self.password) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            (None, None) => None,
            (Some(_), None) => {
                return Err(PrepareError::new(
                    "password",
                    "`user` is set but `password` is missing",
                ));
            }
            (None, Some(_)) => {
                return Err(PrepareError::new(
                    "user",
                    "`password` is set but `user` is missing",
                ));
            }
        };
        Ok(PreparedElasticsearch {
            mode: self.mode,
            basic,
            tls: dbcommon::prepare_tls(&self.tls)?,
        })
    }
}

pub struct PreparedElasticsearch {
    mode: Mode,
    basic: Option<(String, Secret)>,
    tls: Option<PreparedTls>,
}

const LIMITS: Limits = Limits {
    max_head: 16 * 1024,
    max_body: 256 * 1024,
    max_headers: 100,
};

impl PreparedElasticsearch {
    async fn get(
        &self,
        cx: &mut RunCx<'_>,
        s: &mut Stream,
        buf: &mut Vec<u8>,
        path: &str,
        keep_alive: bool,
    ) -> Result<Response, Failure> {
        let host = cx.host.as_str().into_owned();
        let host = if cx.addr.port() == 80 || (cx.addr.port() == 443 && self.tls.is_some()) {
            host
        } else if host.contains(':') {
            format!("[{host}]:{}", cx.addr.port())
        } else {
            format!("{host}:{}", cx.addr.port())
        };
        let basic = self.basic.as_ref().map(|(u, p)| (u.as_str(), p.expose()));
        let req = http1::get_request(&host, path, basic, "portwarden", keep_alive);
        dbcommon::send(cx, s, &req).await?;
        dbcommon::read_frame(
            cx,
            s,
            buf,
            LIMITS.max_head + LIMITS.max_body + 8 * 1024,
            "HTTP",
            |b, eof| http1::parse_response(b, eof, &LIMITS),
        )
        .await
    }

    /// Judges the status of an answer; `Ok(None)` when the caller should stop with `up`
    /// (alive, credentials needed).
    fn status(
        &self,
        cx: &mut RunCx<'_>,
        j: &mut Judgement,
        path: &str,
        r: &Response,
    ) -> Result<Option<Value>, Failure> {
        match r.status {
            200..=299 => serde_json::from_slice::<Value>(&r.body)
                .map(Some)
                .map_err(|e| {
                    Failure::new(
                        ErrorKind::Protocol,
                        format!(
                            "{} answered GET {path} with a body that is not JSON ({e}): \"{}\"",
                            cx.addr,
                            portwarden_wire::printable::escape(&r.body, 96)
                        ),
                    )
                }),
            401 | 403 => {
                cx.detail("auth_required", true);
                if self.basic.is_none() && self.mode == Mode::Handshake {
                    j.note(format!(
                        "node is alive but needs credentials: GET {path} answered {} {}",
                        r.status,
                        shown(&r.reason)
                    ));
                    Ok(None)
                } else {
                    Err(Failure::new(
                        ErrorKind::Auth,
                        format!(
                            "{} answered GET {path} with {} {}",
                            cx.addr,
                            r.status,
                            shown(&r.reason)
                        ),
                    ))
                }
            }
            500..=599 => Err(Failure::new(
                ErrorKind::Unhealthy,
                format!(
                    "{} answered GET {path} with {} {}: \"{}\"",
                    cx.addr,
                    r.status,
                    shown(&r.reason),
                    portwarden_wire::printable::escape(&r.body, 160)
                ),
            )),
            other => Err(Failure::new(
                ErrorKind::Protocol,
                format!(
                    "{} answered GET {path} with {other} {}",
                    cx.addr,
                    shown(&r.reason)
                ),
            )),
        }
    }

    async fn run_check(&self, cx: &mut RunCx<'_>) -> CheckResult {
        let mut j = Judgement::new();
        let mut s = dbcommon::connect(cx, self.tls.as_ref(), &mut j).await?;
        let mut buf = Vec::new();
        let deep = self.mode == Mode::Deep;
        let root = self.get(cx, &mut s, &mut buf, "/", deep).await?;
        let Some(root) = self.status(cx, &mut j, "/", &root)? else {
            dbcommon::close(cx, &mut s).await;
            return j.finish();
        };
        if root.get("version").is_none() {
            return Err(Failure::new(
                ErrorKind::Protocol,
                format!(
                    "{} answered GET / without a `version`: not Elasticsearch?",
                    cx.addr
                ),
            ));
        }
        cx.detail("auth_required", self.basic.is_some());
        let text = |v: &Value, path: &[&str]| -> Option<String> {
            let mut cur = v;
            for p in path {
                cur = cur.get(p)?;
            }
            cur.as_str().map(shown)
        };
        if let Some(v) = text(&root, &["version", "number"]) {
            cx.detail("server_version", v);
        }
        if let Some(v) = text(&root, &["version", "distribution"]) {
            cx.detail("distribution", v);
        }
        if let Some(v) = text(&root, &["cluster_name"]) {
            cx.detail("cluster_name", v);
        }
        if let Some(v) = text(&root, &["name"]) {
            cx.detail("node_name", v);
        }
        if !deep {
            dbcommon::close(cx, &mut s).await;
            return j.finish();
        }
        let health = self
            .get(cx, &mut s, &mut buf, "/_cluster/health", false)
            .await?;
        dbcommon::close(cx, &mut s).await;
        let Some(h) = self.status(cx, &mut j, "/_cluster/health", &health)? else {
            return j.finish();
        };
        for k in [
            "number_of_nodes",
            "number_of_data_nodes",
            "unassigned_shards",
            "active_shards",
        ] {
            if let Some(n) = h.get(k).and_then(Value::as_u64) {
                cx.detail(k, n);
            }
        }
        if let Some(p) = h
            .get("active_shards_percent_as_number")
            .and_then(Value::as_f64)
        {
            cx.detail("active_shards_percent", (p * 10.0).round() / 10.0);
        }
        let status = text(&h, &["status"]).unwrap_or_default();
        cx.detail("cluster_status", status.clone());
        let unassigned = h
            .get("unassigned_shards")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        match status.as_str() {
            "green" => {}
            "yellow" => j.warn(format!(
                "cluster health is yellow: all primaries assigned, {unassigned} replica shard(s) unassigned"
            )),
            "red" => j.fail(
                ErrorKind::Unhealthy,
                format!("cluster health is red: some primary shards are unassigned ({unassigned} shard(s) unassigned)"),
            ),
            other => {
                return Err(Failure::new(
                    ErrorKind::Protocol,
                    format!("{} reported cluster status `{other}`", cx.addr),
                ));
            }
        }
        j.finish()
    }
}

impl Check for PreparedElasticsearch {
    fn run<'a>(&'a self, cx: &'a mut RunCx<'_>) -> BoxFuture<'a, CheckResult> {
        Box::pin(self.run_check(cx))
    }
}
