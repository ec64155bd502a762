//! `mongodb`: MongoDB liveness and replica-set role over OP_MSG.
//!
//! ```yaml
//! - name: catalog
//!   target: mongodb://mongo1.internal        # port 27017 by default
//!   check:
//!     type: mongodb
//!     tls: {}                                # implicit TLS (net.tls.mode requireTLS)
//! ```
//!
//! **handshake** (the only mode for now): `hello` (falling back to `isMaster` on servers older
//! than 4.4.2 that answer CommandNotFound), then `buildInfo` for `server_version`; both are
//! allowed before authentication. Reports `role` (primary, replica, arbiter, mongos,
//! standalone, other), `set_name`, `max_wire_version`, `read_only` (not a writable primary).
//! A replica-set member that is neither primary, secondary nor arbiter (RECOVERING, STARTUP2,
//! REMOVED...) is `unhealthy`. If `buildInfo` needs authentication (some hardened deployments)
//! the version is left out and a note says so.
//!
//! **deep** is not available yet: it needs SCRAM-SHA-256 (SASL) authentication, which we
//! have no MongoDB server here to test against; `mode: deep` is rejected at config load with
//! that explanation rather than pretending.

use futures::future::BoxFuture;
use portwarden_core::{ErrorKind, Transport};
use portwarden_wire::bson::Bson;
use portwarden_wire::mongodb::{self as mongo, Hello};
use serde::{Deserialize, Serialize};

use super::dbcommon::{self, Judgement, Mode, Stream, shown};
use super::{Check, CheckInfo};
use crate::PrepareError;
use crate::cx::{CheckResult, Failure, RunCx};
use crate::tls::{PreparedTls, TlsOptions};

pub static INFO: CheckInfo = CheckInfo {
    name: "mongodb",
    transport: Transport::Tcp,
    default_port: Some(27017),
    summary: "MongoDB: OP_MSG hello (role, replica set, wire version) + buildInfo (version)",
    options: &[
        (
            "mode",
            "handshake (default; deep is not available yet: needs SCRAM-SHA-256)",
        ),
        ("tls", "TLS options (see the tls check): implicit TLS"),
    ],
};

/// `check: {type: mongodb}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MongodbCheck {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsOptions>,
}

impl MongodbCheck {
    pub fn prepare(&self) -> Result<PreparedMongodb, PrepareError> {
        if self.mode == Mode::Deep {
            return Err(PrepareError::new(
                "mode",
                "deep mode is not available for mongodb yet (it needs SCRAM-SHA-256 login); use `mode: handshake`",
            ));
        }
        Ok(PreparedMongodb {
            tls: dbcommon::prepare_tls(&self.tls)?,
        })
    }
}

pub struct PreparedMongodb {
    tls: Option<PreparedTls>,
}

const LIMIT: usize = mongo::MAX_MESSAGE;

async fn command(
    cx: &mut RunCx<'_>,
    s: &mut Stream,
    buf: &mut Vec<u8>,
    request: &[u8],
    id: i32,
) -> Result<portwarden_wire::bson::Document, Failure> {
    dbcommon::send(cx, s, request).await?;
    let reply = dbcommon::read_frame(cx, s, buf, LIMIT, "MongoDB", |b, _| {
        mongo::parse_reply(b, mongo::MAX_MESSAGE)
    })
    .await?;
    if reply.response_to != id {
        return Err(Failure::new(
            ErrorKind::Protocol,
            format!(
                "{} answered request {} while we asked request {id}",
                cx.addr, reply.response_to
            ),
        ));
    }
    Ok(reply.body)
}

impl PreparedMongodb {
    async fn run_check(&self, cx: &mut RunCx<'_>) -> CheckResult {
        let mut j = Judgement::new();
        let mut s = dbcommon::connect(cx, self.tls.as_ref(), &mut j).await?;
        let mut buf = Vec::new();
        let mut body = command(cx, &mut s, &mut buf, &mongo::hello_request(1), 1).await?;
        if let Some((59, _)) = mongo::command_error(&body) {
            body = command(cx, &mut s, &mut buf, &mongo::is_master_request(2), 2).await?;
        }
        if let Some((_, e)) = mongo::command_error(&body) {
            return Err(Failure::new(
                ErrorKind::Unhealthy,
                format!("{} refused hello: {}", cx.addr, shown(&e)),
            ));
        }
        let hello = Hello::from_body(&body);
        let role = match hello.role() {
            "secondary" => "replica",
            r => r,
        };
        cx.detail("role", role);
        cx.detail("read_only", !hello.writable_primary);
        if let Some(n) = &hello.set_name {
            cx.detail("set_name", shown(n));
        }
        if let Some(v) = hello.max_wire_version {
            cx.detail("max_wire_version", v);
        }
        let info = command(cx, &mut s, &mut buf, &mongo::build_info_request(3), 3).await?;
        match (
            mongo::command_error(&info),
            info.get("version").and_then(Bson::as_str),
        ) {
            (None, Some(v)) => cx.detail("server_version", shown(v)),
            (Some((_, e)), _) => j.note(format!("buildInfo refused: {}", shown(&e))),
            (None, None) => {}
        }
        dbcommon::close(cx, &mut s).await;
        if role == "other" {
            j.fail(
                ErrorKind::Unhealthy,
                format!(
                    "replica set member of `{}` is neither primary nor secondary (recovering, starting up or removed)",
                    shown(hello.set_name.as_deref().unwrap_or("?"))
                ),
            );
        }
        j.finish()
    }
}

impl Check for PreparedMongodb {
    fn run<'a>(&'a self, cx: &'a mut RunCx<'_>) -> BoxFuture<'a, CheckResult> {
        Box::pin(self.run_check(cx))
    }
}
