//! NATS client protocol: the server's `INFO {json}` line, our `CONNECT {json}` + `PING`, and
//! the server's control lines (`PONG`, `+OK`, `-ERR '...'`, `PING`).
//!
//! Spec: NATS "Client Protocol" documentation (operations are CRLF-terminated lines; `INFO` and
//! `CONNECT` carry a JSON object).

use serde::Deserialize;

use crate::cursor::DecodeError;

/// Longest control line we accept (an `INFO` with cluster `connect_urls` can be a few KiB).
pub const MAX_LINE: usize = 64 * 1024;
/// Largest message payload we accept (a JetStream account-info answer is under 2 KiB).
pub const MAX_PAYLOAD: usize = 1024 * 1024;

/// Subscribes `inbox` (sid 1) and asks JetStream for the account's info (`$JS.API.INFO`).
/// The answer comes as `MSG inbox 1 N` (asynchronously: a `PING` sent after it may be answered
/// first, so none is sent).
pub fn jetstream_info_request(inbox: &str) -> Vec<u8> {
    format!("SUB {inbox} 1\r\nPUB $JS.API.INFO {inbox} 0\r\n\r\n").into_bytes()
}

/// The parts of a JetStream `account_info_response` worth reporting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct JsAccountInfo {
    pub memory: u64,
    pub storage: u64,
    pub streams: u64,
    pub consumers: u64,
    pub error: Option<JsError>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct JsError {
    pub code: i64,
    pub err_code: i64,
    pub description: String,
}

/// Parses a `$JS.API.INFO` answer payload.
pub fn parse_js_info(payload: &[u8]) -> Result<JsAccountInfo, DecodeError> {
    serde_json::from_slice(payload)
        .map_err(|e| DecodeError::invalid(format!("JetStream info is not valid JSON: {e}")))
}

/// What the server tells about itself in `INFO`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Info {
    pub server_id: String,
    pub server_name: String,
    pub version: String,
    pub proto: i64,
    pub go: String,
    pub jetstream: bool,
    pub auth_required: bool,
    pub tls_required: bool,
    pub max_payload: i64,
    pub cluster: String,
    pub nonce: String,
}

/// One control line from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerOp {
    Info(Box<Info>),
    Ping,
    Pong,
    Ok,
    /// `-ERR 'message'` with the quotes removed.
    Err(String),
    /// `MSG <subject> <sid> [reply-to] <#bytes>`: a payload of `size` bytes + CRLF follows.
    Msg {
        subject: String,
        sid: String,
        size: usize,
    },
    /// A line we do not act on.
    Other(String),
}

/// Splits the next CRLF-terminated line: `Ok(Some((line, used)))`; `Ok(None)` needs more.
/// A line longer than `max` without a terminator is an error.
pub fn next_line(buf: &[u8], max: usize) -> Result<Option<(&[u8], usize)>, DecodeError> {
    match buf.windows(2).position(|w| w == b"\r\n") {
        Some(p) if p <= max => Ok(Some((&buf[..p], p + 2))),
        Some(p) => Err(DecodeError::TooLong {
            what: "NATS line",
            len: p,
            limit: max,
        }),
        None if buf.len() > max => Err(DecodeError::TooLong {
            what: "NATS line",
            len: buf.len(),
            limit: max,
        }),
        None => Ok(None),
    }
}

/// Parses one server line (without CRLF).
pub fn parse_op(line: &[u8]) -> Result<ServerOp, DecodeError> {
    let upper: Vec<u8> = line.iter().take(5).map(u8::to_ascii_uppercase).collect();
    if upper.starts_with(b"INFO") && line.get(4).is_some_and(|b| *b == b' ' || *b == b'\t') {
        let json = &line[5..];
        let info: Info = serde_json::from_slice(json)
            .map_err(|e| DecodeError::invalid(format!("INFO is not valid JSON: {e}")))?;
        return Ok(ServerOp::Info(Box::new(info)));
    }
    if upper == b"PING" {
        return Ok(ServerOp::Ping);
    }
    if upper == b"PONG" {
        return Ok(ServerOp::Pong);
    }
    if upper.starts_with(b"+OK") {
        return Ok(ServerOp::Ok);
    }
    if upper.starts_with(b"MSG ") || upper.starts_with(b"MSG\t") {
        let t = String::from_utf8_lossy(&line[4..]);
        let parts: Vec<&str> = t.split_ascii_whitespace().collect();
        if !(3..=4).contains(&parts.len()) {
            return Err(DecodeError::invalid(
                "MSG needs subject, sid, [reply-to] and size",
            ));
        }
        let size: usize = parts[parts.len() - 1]
            .parse()
            .map_err(|_| DecodeError::invalid("MSG size is not a number"))?;
        if size > MAX_PAYLOAD {
            return Err(DecodeError::TooLong {
                what: "NATS message",
                len: size,
                limit: MAX_PAYLOAD,
            });
        }
        return Ok(ServerOp::Msg {
            subject: parts[0].chars().take(256).collect(),
            sid: parts[1].chars().take(64).collect(),
            size,
        });
    }
    if upper.starts_with(b"-ERR") {
        let msg = String::from_utf8_lossy(&line[4..]);
        let msg = msg.trim().trim_matches('\'').to_string();
        return Ok(ServerOp::Err(msg.chars().take(512).collect()));
    }
    if line.is_empty() || !line.iter().all(|b| (0x20..0x7f).contains(b) || *b == b'\t') {
        return Err(DecodeError::invalid("not a NATS control line"));
    }
    Ok(ServerOp::Other(
        String::from_utf8_lossy(&line[..line.len().min(64)]).into_owned(),
    ))
}

/// Credentials for `CONNECT`.
#[derive(Debug, Clone, Default)]
pub struct Credentials<'a> {
    pub user: Option<&'a str>,
    pub pass: Option<&'a str>,
    pub token: Option<&'a str>,
}

/// `CONNECT {...}\r\nPING\r\n`: verbose off, so the server's answer to PING is `PONG` or an
/// `-ERR` (e.g. `'Authorization Violation'`).
pub fn connect_and_ping(name: &str, version: &str, creds: &Credentials<'_>, tls: bool) -> Vec<u8> {
    let mut o = serde_json::Map::new();
    o.insert("verbose".into(), false.into());
    o.insert("pedantic".into(), false.into());
    o.insert("tls_required".into(), tls.into());
    o.insert("name".into(), name.into());
    o.insert("lang".into(), "rust".into());
    o.insert("version".into(), version.into());
    o.insert("protocol".into(), 1.into());
    o.insert("echo".into(), false.into());
    if let Some(u) = creds.user {
        o.insert("user".into(), u.into());
    }
    if let Some(p) = creds.pass {
        o.insert("pass".into(), p.into());
    }
    if let Some(t) = creds.token {
        o.insert("auth_token".into(), t.into());
    }
    let mut out = b"CONNECT ".to_vec();
    out.extend_from_slice(serde_json::Value::Object(o).to_string().as_bytes());
    out.extend_from_slice(b"\r\nPING\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_info_and_ops() {
        let l = br#"INFO {"server_id":"NABC","server_name":"n1","version":"2.10.7","proto":1,"go":"go1.21","host":"0.0.0.0","port":4222,"headers":true,"max_payload":1048576,"jetstream":true,"client_id":5}"#;
        let ServerOp::Info(i) = parse_op(l).unwrap() else {
            panic!()
        };
        assert_eq!(i.version, "2.10.7");
        assert!(i.jetstream);
        assert!(!i.auth_required);
        assert_eq!(parse_op(b"PONG").unwrap(), ServerOp::Pong);
        assert_eq!(
            parse_op(b"-ERR 'Authorization Violation'").unwrap(),
            ServerOp::Err("Authorization Violation".into())
        );
        assert!(parse_op(b"\x01\x00\x00").is_err());
        assert!(parse_op(b"INFO {not json").is_err());
        assert_eq!(
            parse_op(b"MSG _INBOX.x 1 98").unwrap(),
            ServerOp::Msg {
                subject: "_INBOX.x".into(),
                sid: "1".into(),
                size: 98
            }
        );
        assert!(parse_op(b"MSG a 1 99999999999").is_err());
        let js = parse_js_info(br#"{"type":"io.nats.jetstream.api.v1.account_info_response","memory":0,"storage":12,"streams":2,"consumers":1,"limits":{}}"#).unwrap();
        assert_eq!((js.streams, js.storage), (2, 12));
        let js = parse_js_info(br#"{"error":{"code":503,"err_code":10039,"description":"jetstream not enabled for account"}}"#).unwrap();
        assert_eq!(js.error.unwrap().code, 503);
    }

    #[test]
    fn lines() {
        assert_eq!(
            next_line(b"PONG\r\nx", 10).unwrap(),
            Some((&b"PONG"[..], 6))
        );
        assert_eq!(next_line(b"PON", 10).unwrap(), None);
        assert!(next_line(&[b'a'; 20], 10).is_err());
        let c = connect_and_ping(
            "pw",
            "0.1",
            &Credentials {
                user: Some("u"),
                pass: Some("p\"q"),
                token: None,
            },
            false,
        );
        let s = String::from_utf8(c).unwrap();
        assert!(
            s.starts_with("CONNECT {") && s.ends_with("}\r\nPING\r\n"),
            "{s}"
        );
        assert!(s.contains(r#""pass":"p\"q""#));
    }

    proptest! {
        #[test]
        fn never_panics(buf in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(Some((line, n))) = next_line(&buf, 128) {
                prop_assert!(n <= buf.len());
                let _ = parse_op(line);
            }
            let _ = parse_op(&buf);
            let _ = parse_js_info(&buf);
        }
    }
}
