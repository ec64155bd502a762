//! `snmp`: SNMP agents, v2c (or v1) `GetRequest` for `sysDescr.0`, `sysUpTime.0`, `sysName.0`
//! and any extra `oids`, with a `community` (a secret, default `public`).
//!
//! Reports `sys_descr` (the product banner), `sys_uptime_s`, `sys_name`, and `values` for extra
//! OIDs. An error status (`genErr`, ...) is `unhealthy`; `authorizationError` is `auth`. Agents
//! drop requests with a wrong community silently, so silence is `no_response` (down) with a
//! hint; ICMP port unreachable is `closed`. Answers with another request id or community are
//! ignored. The BER codec is hand-written and bounded (`portwarden_wire::snmp`).
//!
//! ```yaml
//! - name: switch1
//!   target: snmp://10.0.0.2
//!   check: {type: snmp, community: "${env:SNMP_COMMUNITY}", oids: ["1.3.6.1.2.1.2.1.0"]}
//! ```

use futures::future::BoxFuture;
use portwarden_core::{ErrorKind, Secret, Transport};
use portwarden_wire::snmp::{self, Value};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::common::{clean, protocol_error, udp_exchange};
use super::{Check, CheckInfo};
use crate::PrepareError;
use crate::cx::{CheckResult, Failure, RunCx, Verdict};

pub static INFO: CheckInfo = CheckInfo {
    name: "snmp",
    transport: Transport::Udp,
    default_port: Some(161),
    summary: "SNMP v2c/v1 GET of sysDescr.0, sysUpTime.0, sysName.0 (+ extra OIDs) with a community",
    options: &[
        ("community", "community string (a secret; default public)"),
        ("version", "\"2c\" (default) or \"1\""),
        (
            "oids",
            "extra OIDs to GET, dotted (reported under `values`)",
        ),
        ("attempts", "datagrams sent before giving up (default 2)"),
    ],
};

/// `check: {type: snmp, community: "${env:C}"}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnmpCheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub community: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub oids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
}

impl SnmpCheck {
    pub fn prepare(&self) -> Result<PreparedSnmp, PrepareError> {
        let v1 = match self.version.as_deref() {
            None | Some("2c") | Some("2") => false,
            Some("1") => true,
            Some(o) => {
                return Err(PrepareError::new(
                    "version",
                    format!("`{o}` is not supported; use \"2c\" or \"1\""),
                ));
            }
        };
        if self.oids.len() > 16 {
            return Err(PrepareError::new("oids", "at most 16 extra OIDs"));
        }
        let mut oids = Vec::new();
        for o in [snmp::SYS_DESCR, snmp::SYS_UPTIME, snmp::SYS_NAME]
            .iter()
            .map(|s| s.to_string())
            .chain(self.oids.iter().cloned())
        {
            oids.push(snmp::parse_oid(&o).map_err(|e| PrepareError::new("oids", e.to_string()))?);
        }
        let attempts = self.attempts.unwrap_or(2);
        if !(1..=10).contains(&attempts) {
            return Err(PrepareError::new("attempts", "must be between 1 and 10"));
        }
        let community = self
            .community
            .clone()
            .unwrap_or_else(|| Secret::new("public"));
        if community.expose().len() > 255 {
            return Err(PrepareError::new("community", "at most 255 bytes"));
        }
        Ok(PreparedSnmp {
            community,
            v1,
            oids,
            attempts,
        })
    }
}

pub struct PreparedSnmp {
    community: Secret,
    v1: bool,
    oids: Vec<Vec<u32>>,
    attempts: u32,
}

fn show(v: &Value) -> serde_json::Value {
    match v {
        Value::Integer(i) => json!(i),
        Value::OctetString(b) | Value::Opaque(b) => {
            json!(portwarden_wire::printable::escape(b, 256))
        }
        Value::Null => serde_json::Value::Null,
        Value::Oid(o) => json!(snmp::oid_string(o)),
        Value::IpAddress(a) => json!(std::net::Ipv4Addr::from(*a).to_string()),
        Value::Counter32(n) | Value::Gauge32(n) | Value::TimeTicks(n) => json!(n),
        Value::Counter64(n) => json!(n),
        Value::NoSuchObject => json!("noSuchObject"),
        Value::NoSuchInstance => json!("noSuchInstance"),
        Value::EndOfMibView => json!("endOfMibView"),
    }
}

impl Check for PreparedSnmp {
    fn run<'a>(&'a self, cx: &'a mut RunCx<'_>) -> BoxFuture<'a, CheckResult> {
        Box::pin(async move {
            let addr = cx.addr;
            let mut idb = [0u8; 4];
            let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut idb);
            let id = i32::from_be_bytes(idb) & 0x7fff_ffff;
            let community = self.community.expose().as_bytes();
            let mut req = snmp::get_request(community, id, &self.oids);
            if self.v1 {
                // version field is the first INTEGER in the message: 02 01 01 → 02 01 00.
                if let Some(p) = req.windows(3).position(|w| w == [2, 1, 1]) {
                    req[p + 2] = 0;
                }
            }
            let r = udp_exchange(cx, &req, self.attempts, "an SNMP GetRequest", |b| {
                match snmp::parse_response(b) {
                    Ok(r) if r.request_id == i64::from(id) && r.community == community => {
                        Ok(Some(r))
                    }
                    Ok(_) => Ok(None),
                    Err(e) => Err(protocol_error(addr, "SNMP", &e, b)),
                }
            })
            .await;
            let (resp, rtt) = match r {
                Ok(x) => x,
                Err(mut f) if f.error.kind == ErrorKind::NoResponse => {
                    f.error.message.push_str(
                        " (agents drop requests with a wrong community silently: check the community, the SNMP version and any filter)",
                    );
                    return Err(f);
                }
                Err(f) => return Err(f),
            };
            cx.detail("rtt_ms", crate::cx::ms(rtt));
            if resp.error_status != 0 {
                let kind = if resp.error_status == 16 || resp.error_status == 6 {
                    ErrorKind::Auth
                } else {
                    ErrorKind::Unhealthy
                };
                return Err(Failure::new(
                    kind,
                    format!(
                        "{addr} answered {} (error-status {}, index {})",
                        snmp::error_status_name(resp.error_status),
                        resp.error_status,
                        resp.error_index
                    ),
                ));
            }
            let mut values = serde_json::Map::new();
            for (oid, v) in &resp.varbinds {
                let name = snmp::oid_string(oid);
                match (name.as_str(), v) {
                    (snmp::SYS_DESCR, Value::OctetString(b)) => {
                        cx.detail("sys_descr", portwarden_wire::printable::escape(b, 256));
                    }
                    (snmp::SYS_UPTIME, Value::TimeTicks(t)) => {
                        cx.detail("sys_uptime_s", f64::from(*t) / 100.0);
                    }
                    (snmp::SYS_NAME, Value::OctetString(b)) => {
                        cx.detail("sys_name", portwarden_wire::printable::escape(b, 256));
                    }
                    _ => {
                        values.insert(clean(&name), show(v));
                    }
                }
            }
            if !values.is_empty() {
                cx.detail("values", serde_json::Value::Object(values));
            }
            Ok(Verdict::up())
        })
    }
}
