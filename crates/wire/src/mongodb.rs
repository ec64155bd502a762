//! MongoDB wire protocol: `OP_MSG` framing for the `hello` / `buildInfo` commands.
//!
//! Spec: MongoDB manual, "MongoDB Wire Protocol": "Standard Message Header" (int32
//! messageLength, requestID, responseTo, opCode), "OP_MSG" (opCode 2013: uint32 flagBits,
//! sections; kind 0 = one BSON body document, kind 1 = document sequence; flag bit 0
//! `checksumPresent` adds a CRC-32C at the end), and the `hello` command reply fields
//! (`isWritablePrimary`, `secondary`, `setName`, `maxWireVersion`, `msg: "isdbgrid"` on mongos).
//!
//! ```
//! use portwarden_wire::mongodb;
//! let req = mongodb::hello_request(1);
//! assert_eq!(i32::from_le_bytes([req[12], req[13], req[14], req[15]]), mongodb::OP_MSG);
//! ```

use crate::bson::{Bson, DocBuilder, Document, decode_document};
use crate::cursor::{Cursor, DecodeError};

pub const OP_MSG: i32 = 2013;
pub const OP_REPLY: i32 = 1;
/// Largest reply we accept (a `hello` answer is ~300 bytes; `buildInfo` ~1–2 KiB).
pub const MAX_MESSAGE: usize = 64 * 1024;

/// An OP_MSG carrying `command` (a finished BSON document) as its section-0 body.
pub fn op_msg(request_id: i32, command: &[u8]) -> Vec<u8> {
    let len = 16 + 4 + 1 + command.len();
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&(len as i32).to_le_bytes());
    v.extend_from_slice(&request_id.to_le_bytes());
    v.extend_from_slice(&0i32.to_le_bytes());
    v.extend_from_slice(&OP_MSG.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v.push(0);
    v.extend_from_slice(command);
    v
}

/// `{hello: 1, $db: "admin"}`.
pub fn hello_request(request_id: i32) -> Vec<u8> {
    op_msg(
        request_id,
        &DocBuilder::new()
            .int32("hello", 1)
            .string("$db", "admin")
            .finish(),
    )
}

/// `{isMaster: 1, $db: "admin"}` for servers older than 4.4.2 that do not know `hello`.
pub fn is_master_request(request_id: i32) -> Vec<u8> {
    op_msg(
        request_id,
        &DocBuilder::new()
            .int32("isMaster", 1)
            .string("$db", "admin")
            .finish(),
    )
}

/// `{buildInfo: 1, $db: "admin"}` (allowed without authentication; has `version`).
pub fn build_info_request(request_id: i32) -> Vec<u8> {
    op_msg(
        request_id,
        &DocBuilder::new()
            .int32("buildInfo", 1)
            .string("$db", "admin")
            .finish(),
    )
}

/// `{saslStart: 1, mechanism, payload: BinData, autoAuthorize: 1,
/// options: {skipEmptyExchange: true}, $db}` (MongoDB manual, "SCRAM" authentication and the
/// `saslStart` command).
pub fn sasl_start(request_id: i32, db: &str, mechanism: &str, payload: &[u8]) -> Vec<u8> {
    op_msg(
        request_id,
        &DocBuilder::new()
            .int32("saslStart", 1)
            .string("mechanism", mechanism)
            .binary("payload", 0, payload)
            .int32("autoAuthorize", 1)
            .document(
                "options",
                DocBuilder::new().bool("skipEmptyExchange", true).finish(),
            )
            .string("$db", db)
            .finish(),
    )
}

/// `{saslContinue: 1, conversationId, payload: BinData, $db}`.
pub fn sasl_continue(request_id: i32, db: &str, conversation_id: i32, payload: &[u8]) -> Vec<u8> {
    op_msg(
        request_id,
        &DocBuilder::new()
            .int32("saslContinue", 1)
            .int32("conversationId", conversation_id)
            .binary("payload", 0, payload)
            .string("$db", db)
            .finish(),
    )
}

/// `{serverStatus: 1, ...}` without its large sections (we read `version` and `connections`).
pub fn server_status_request(request_id: i32) -> Vec<u8> {
    let mut d = DocBuilder::new().int32("serverStatus", 1);
    for section in [
        "repl",
        "metrics",
        "locks",
        "wiredTiger",
        "tcmalloc",
        "opLatencies",
        "opcounters",
        "opcountersRepl",
        "network",
        "globalLock",
        "asserts",
        "transactions",
        "storageEngine",
        "catalogStats",
        "logicalSessionRecordCache",
        "flowControl",
        "mirroredReads",
        "security",
        "twoPhaseCommitCoordinator",
        "oplogTruncation",
    ] {
        d = d.int32(section, 0);
    }
    op_msg(request_id, &d.string("$db", "admin").finish())
}

/// `{replSetGetStatus: 1, $db: "admin"}`.
pub fn repl_set_get_status_request(request_id: i32) -> Vec<u8> {
    op_msg(
        request_id,
        &DocBuilder::new()
            .int32("replSetGetStatus", 1)
            .string("$db", "admin")
            .finish(),
    )
}

/// One member of `replSetGetStatus.members`.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub name: String,
    /// 1 PRIMARY, 2 SECONDARY, 7 ARBITER, 8 DOWN, ...
    pub state: i64,
    pub state_str: String,
    pub healthy: bool,
    pub is_self: bool,
    /// `optimeDate`, ms since the epoch.
    pub optime_ms: Option<i64>,
}

/// What `replSetGetStatus` says, reduced to what a probe judges.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplStatus {
    pub set: String,
    pub members: Vec<Member>,
}

impl ReplStatus {
    pub fn from_body(d: &Document) -> Option<ReplStatus> {
        let set = d.get("set").and_then(Bson::as_str)?.to_string();
        let members = d
            .get("members")
            .and_then(Bson::as_array)?
            .iter()
            .filter_map(Bson::as_document)
            .take(64)
            .map(|m| Member {
                name: m
                    .get("name")
                    .and_then(Bson::as_str)
                    .unwrap_or("")
                    .to_string(),
                state: m.get("state").and_then(Bson::as_i64).unwrap_or(-1),
                state_str: m
                    .get("stateStr")
                    .and_then(Bson::as_str)
                    .unwrap_or("")
                    .to_string(),
                healthy: m.get("health").and_then(Bson::as_f64) == Some(1.0),
                is_self: m.get("self").and_then(Bson::as_bool).unwrap_or(false),
                optime_ms: m.get("optimeDate").and_then(Bson::as_datetime),
            })
            .collect();
        Some(ReplStatus { set, members })
    }

    pub fn me(&self) -> Option<&Member> {
        self.members.iter().find(|m| m.is_self)
    }

    /// The healthy primary, if this member can see one.
    pub fn primary(&self) -> Option<&Member> {
        self.members.iter().find(|m| m.state == 1 && m.healthy)
    }

    /// Seconds a secondary's last applied operation trails the primary's; on the primary, the
    /// largest such lag among healthy secondaries. `None` when it cannot be told.
    pub fn lag_seconds(&self) -> Option<f64> {
        let me = self.me()?;
        let primary = self.primary()?;
        let p = primary.optime_ms?;
        if me.state == 2 {
            return Some((p.saturating_sub(me.optime_ms?) as f64 / 1000.0).max(0.0));
        }
        if me.state == 1 {
            return self
                .members
                .iter()
                .filter(|m| m.state == 2 && m.healthy)
                .filter_map(|m| m.optime_ms)
                .map(|o| (p.saturating_sub(o) as f64 / 1000.0).max(0.0))
                .fold(None, |acc: Option<f64>, x| {
                    Some(acc.map_or(x, |a| a.max(x)))
                });
        }
        None
    }
}

/// A decoded reply: who it answers and its body document.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub response_to: i32,
    pub body: Document,
}

/// Parses one reply from the front of `buf`. `Ok(None)`: more bytes needed. The message length
/// must be within `16..=max`.
pub fn parse_reply(buf: &[u8], max: usize) -> Result<Option<(Reply, usize)>, DecodeError> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let mut c = Cursor::new(buf);
    let len = c.i32_le("message header")?;
    if len < 16 {
        return Err(DecodeError::invalid(format!(
            "MongoDB message length {len} is below the 16-byte header"
        )));
    }
    DecodeError::check_len("MongoDB message length", len as u64, max as u64)?;
    let len = len as usize;
    let _request_id = c.i32_le("message header")?;
    let response_to = c.i32_le("message header")?;
    let op = c.i32_le("message header")?;
    if buf.len() < len {
        return Ok(None);
    }
    let mut c = Cursor::new(&buf[16..len]);
    let body = match op {
        OP_MSG => {
            let flags = c.u32_le("OP_MSG")?;
            let mut end = c.remaining();
            if flags & 1 != 0 {
                end = end
                    .checked_sub(4)
                    .ok_or(DecodeError::truncated("OP_MSG checksum"))?;
            }
            let mut sections = Cursor::new(&c.rest()[..end]);
            let mut body = None;
            while !sections.is_empty() {
                match sections.u8("OP_MSG section")? {
                    0 => {
                        let (d, used) = decode_document(sections.rest())?;
                        sections.skip(used, "OP_MSG section")?;
                        if body.is_none() {
                            body = Some(d);
                        }
                    }
                    1 => {
                        let mut s = sections.clone();
                        let n = s.i32_le("MongoDB message")?;
                        if n < 4 {
                            return Err(DecodeError::invalid("bad OP_MSG sequence size"));
                        }
                        sections.skip(n as usize, "OP_MSG section")?;
                    }
                    k => {
                        return Err(DecodeError::invalid(format!(
                            "unknown OP_MSG section kind {k}"
                        )));
                    }
                }
            }
            body.ok_or_else(|| DecodeError::invalid("OP_MSG without a body section"))?
        }
        OP_REPLY => {
            // Legacy reply: flags, cursorID, startingFrom, numberReturned, documents.
            c.skip(20, "OP_MSG")?;
            decode_document(c.rest())?.0
        }
        other => {
            return Err(DecodeError::invalid(format!(
                "opCode {other} is not a reply"
            )));
        }
    };
    Ok(Some((Reply { response_to, body }, len)))
}

/// What `hello` (or `isMaster`) says about a server.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hello {
    pub writable_primary: bool,
    pub secondary: bool,
    pub arbiter: bool,
    pub set_name: Option<String>,
    pub max_wire_version: Option<i64>,
    pub mongos: bool,
    pub max_bson_size: Option<i64>,
}

impl Hello {
    pub fn from_body(d: &Document) -> Hello {
        let b = |k: &str| d.get(k).and_then(Bson::as_bool).unwrap_or(false);
        Hello {
            writable_primary: b("isWritablePrimary") || b("ismaster"),
            secondary: b("secondary"),
            arbiter: b("arbiterOnly"),
            set_name: d.get("setName").and_then(Bson::as_str).map(str::to_string),
            max_wire_version: d.get("maxWireVersion").and_then(Bson::as_i64),
            mongos: d.get("msg").and_then(Bson::as_str) == Some("isdbgrid"),
            max_bson_size: d.get("maxBsonObjectSize").and_then(Bson::as_i64),
        }
    }

    /// `primary`, `secondary`, `arbiter`, `mongos`, `standalone` or `other` (recovering...).
    pub fn role(&self) -> &'static str {
        if self.mongos {
            "mongos"
        } else if self.set_name.is_none() && self.writable_primary {
            "standalone"
        } else if self.writable_primary {
            "primary"
        } else if self.secondary {
            "secondary"
        } else if self.arbiter {
            "arbiter"
        } else {
            "other"
        }
    }
}

/// A command error: `ok: 0` with `code`, `codeName` and `errmsg`.
pub fn command_error(d: &Document) -> Option<(i64, String)> {
    let ok = d.get("ok").and_then(Bson::as_f64).unwrap_or(0.0);
    if ok == 1.0 {
        return None;
    }
    let code = d.get("code").and_then(Bson::as_i64).unwrap_or(0);
    let name = d.get("codeName").and_then(Bson::as_str).unwrap_or("");
    let msg = d.get("errmsg").and_then(Bson::as_str).unwrap_or("");
    Some((code, format!("{name} ({code}): {msg}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply built per the "OP_MSG" section of the wire protocol spec, with the body fields
    /// the `hello` command documentation lists for a replica set primary.
    pub(crate) fn primary_reply(response_to: i32) -> Vec<u8> {
        let body = DocBuilder::new()
            .bool("isWritablePrimary", true)
            .bool("secondary", false)
            .string("setName", "rs0")
            .int32("maxBsonObjectSize", 16 * 1024 * 1024)
            .int32("maxWireVersion", 21)
            .int32("minWireVersion", 0)
            .int32("ok", 1)
            .finish();
        let mut m = op_msg(7, &body);
        m[8..12].copy_from_slice(&response_to.to_le_bytes());
        m
    }

    fn member(name: &str, state: i32, health: f64, me: bool, optime: i64) -> Vec<u8> {
        DocBuilder::new()
            .string("name", name)
            .double("health", health)
            .int32("state", state)
            .string("stateStr", if state == 1 { "PRIMARY" } else { "SECONDARY" })
            .datetime("optimeDate", optime)
            .bool("self", me)
            .finish()
    }

    #[test]
    fn repl_status_lag_and_primary() {
        // Fields per the `replSetGetStatus` command reference (members[n].state, health,
        // optimeDate, self).
        let body = DocBuilder::new()
            .string("set", "rs0")
            .int32("myState", 2)
            .array_of_documents(
                "members",
                &[
                    member("a:27017", 1, 1.0, false, 1_700_000_010_000),
                    member("b:27017", 2, 1.0, true, 1_700_000_007_500),
                ],
            )
            .int32("ok", 1)
            .finish();
        let (d, _) = decode_document(&body).unwrap();
        let rs = ReplStatus::from_body(&d).unwrap();
        assert_eq!(rs.set, "rs0");
        assert_eq!(rs.me().map(|m| m.state), Some(2));
        assert_eq!(rs.primary().map(|m| m.name.as_str()), Some("a:27017"));
        assert_eq!(rs.lag_seconds(), Some(2.5));
        let body = DocBuilder::new()
            .string("set", "rs0")
            .array_of_documents(
                "members",
                &[member("a", 1, 0.0, false, 1), member("b", 2, 1.0, true, 1)],
            )
            .finish();
        let rs = ReplStatus::from_body(&decode_document(&body).unwrap().0).unwrap();
        assert!(rs.primary().is_none(), "an unhealthy primary is no primary");
        assert_eq!(rs.lag_seconds(), None);
        let sasl = sasl_start(5, "admin", "SCRAM-SHA-256", b"n,,n=u,r=x");
        let (d, _) = decode_document(&sasl[21..]).unwrap();
        assert_eq!(
            d.get("payload").and_then(Bson::as_binary),
            Some(&b"n,,n=u,r=x"[..])
        );
    }

    #[test]
    fn hello_request_layout() {
        // Header (16) + flagBits (4) + kind byte (1) + body.
        let r = hello_request(42);
        assert_eq!(
            i32::from_le_bytes([r[0], r[1], r[2], r[3]]) as usize,
            r.len()
        );
        assert_eq!(&r[4..8], &42i32.to_le_bytes());
        assert_eq!(&r[16..21], &[0, 0, 0, 0, 0]);
        let (d, _) = decode_document(&r[21..]).unwrap();
        assert_eq!(d.get("hello"), Some(&Bson::Int32(1)));
        assert_eq!(d.get("$db").and_then(Bson::as_str), Some("admin"));
    }

    #[test]
    fn parses_hello_reply() {
        let m = primary_reply(42);
        let (r, used) = parse_reply(&m, MAX_MESSAGE).unwrap().unwrap();
        assert_eq!(used, m.len());
        assert_eq!(r.response_to, 42);
        let h = Hello::from_body(&r.body);
        assert_eq!(h.role(), "primary");
        assert_eq!(h.set_name.as_deref(), Some("rs0"));
        assert_eq!(h.max_wire_version, Some(21));
        assert_eq!(command_error(&r.body), None);
        assert_eq!(parse_reply(&m[..m.len() - 1], MAX_MESSAGE).unwrap(), None);
    }

    #[test]
    fn checksum_flag_and_errors() {
        // flagBits bit 0 (checksumPresent): 4 CRC bytes follow the sections.
        let body = DocBuilder::new()
            .int32("ok", 0)
            .string("errmsg", "no such command: 'hello'")
            .int32("code", 59)
            .string("codeName", "CommandNotFound")
            .finish();
        let mut m = op_msg(1, &body);
        m[16] = 1;
        m.extend_from_slice(&[1, 2, 3, 4]);
        let len = m.len() as i32;
        m[..4].copy_from_slice(&len.to_le_bytes());
        let (r, _) = parse_reply(&m, MAX_MESSAGE).unwrap().unwrap();
        assert_eq!(command_error(&r.body).map(|e| e.0), Some(59));
        assert!(parse_reply(b"\xff\xff\xff\x7f\0\0\0\0\0\0\0\0\xdd\x07\0\0", MAX_MESSAGE).is_err());
        assert!(parse_reply(b"\x08\0\0\0\0\0\0\0\0\0\0\0\xdd\x07\0\0", MAX_MESSAGE).is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            if let Ok(Some((r, used))) = parse_reply(&bytes, 400) {
                proptest::prop_assert!(used <= bytes.len() && used <= 400);
                let _ = ReplStatus::from_body(&r.body).map(|s| s.lag_seconds());
            }
            if let Ok((d, _)) = decode_document(&bytes) {
                let _ = ReplStatus::from_body(&d).map(|s| s.lag_seconds());
                let _ = Hello::from_body(&d).role();
            }
        }
    }
}
