//! MQTT 3.1.1 and 5.0: `CONNECT` and `CONNACK` (and `DISCONNECT`).
//!
//! Spec: MQTT 3.1.1 §2.2 (fixed header, remaining length), §3.1 (CONNECT), §3.2 (CONNACK return
//! codes); MQTT 5.0 §3.1, §3.2 (CONNACK reason codes and properties), §2.2.2.2 (property ids).

use crate::cursor::{Cursor, DecodeError, text_upto};

/// Largest CONNACK we accept (properties included).
pub const MAX_PACKET: usize = 64 * 1024;

/// Protocol level on the wire: 4 for 3.1.1, 5 for 5.0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V311,
    V5,
}

impl Version {
    pub fn level(self) -> u8 {
        match self {
            Version::V311 => 4,
            Version::V5 => 5,
        }
    }
}

fn put_varint(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    let s = &s[..s.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// A `CONNECT` with a clean session and no will.
pub fn connect(
    version: Version,
    client_id: &str,
    keep_alive: u16,
    user: Option<&str>,
    password: Option<&str>,
) -> Vec<u8> {
    let mut v = Vec::new();
    put_str(&mut v, b"MQTT");
    v.push(version.level());
    let mut flags = 0x02; // clean session / clean start
    if user.is_some() {
        flags |= 0x80;
    }
    if password.is_some() {
        flags |= 0x40;
    }
    v.push(flags);
    v.extend_from_slice(&keep_alive.to_be_bytes());
    if version == Version::V5 {
        v.push(0); // no properties
    }
    put_str(&mut v, client_id.as_bytes());
    if let Some(u) = user {
        put_str(&mut v, u.as_bytes());
    }
    if let Some(p) = password {
        put_str(&mut v, p.as_bytes());
    }
    let mut out = vec![0x10];
    put_varint(&mut out, v.len());
    out.extend_from_slice(&v);
    out
}

/// `DISCONNECT` (3.1.1 and 5.0 with reason "normal").
pub fn disconnect() -> [u8; 2] {
    [0xE0, 0x00]
}

/// Reads a remaining-length varint: `Ok(None)` needs more bytes.
fn varint(buf: &[u8]) -> Result<Option<(usize, usize)>, DecodeError> {
    let mut n = 0usize;
    for (i, &b) in buf.iter().enumerate().take(4) {
        n |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((n, i + 1)));
        }
    }
    if buf.len() >= 4 {
        return Err(DecodeError::invalid(
            "MQTT remaining length longer than 4 bytes",
        ));
    }
    Ok(None)
}

/// What the broker said to our `CONNECT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    pub session_present: bool,
    /// 3.1.1 return code or 5.0 reason code.
    pub code: u8,
    /// 5.0 only: the `Reason String` property.
    pub reason_string: Option<String>,
    /// 5.0 only: `Assigned Client Identifier`.
    pub assigned_client_id: Option<String>,
}

/// How to judge a CONNACK code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    /// Credentials refused or not authorized: alive, but refusing us.
    AuthRefused,
    /// The broker says it cannot serve now (unavailable, busy, quota, rate).
    Unavailable,
    /// Protocol-level disagreement (version, client id, malformed).
    Rejected,
}

impl ConnAck {
    pub fn verdict(&self, v: Version) -> Verdict {
        match (v, self.code) {
            (_, 0) => Verdict::Accepted,
            (Version::V311, 4 | 5) => Verdict::AuthRefused,
            (Version::V311, 3) => Verdict::Unavailable,
            (Version::V5, 0x86 | 0x87 | 0x8A | 0x8C) => Verdict::AuthRefused,
            (Version::V5, 0x88 | 0x89 | 0x97 | 0x9C | 0x9D | 0x9F) => Verdict::Unavailable,
            // A 3.1.1 broker answers a v5 CONNECT with 3.1.1 code 1 ("unacceptable version").
            _ => Verdict::Rejected,
        }
    }

    pub fn describe(&self, v: Version) -> &'static str {
        match (v, self.code) {
            (_, 0) => "accepted",
            (Version::V311, 1) | (Version::V5, 1) => "unacceptable protocol version",
            (Version::V311, 2) => "identifier rejected",
            (Version::V311, 3) => "server unavailable",
            (Version::V311, 4) => "bad user name or password",
            (Version::V311, 5) => "not authorized",
            (Version::V5, 0x80) => "unspecified error",
            (Version::V5, 0x81) => "malformed packet",
            (Version::V5, 0x82) => "protocol error",
            (Version::V5, 0x83) => "implementation specific error",
            (Version::V5, 0x84) => "unsupported protocol version",
            (Version::V5, 0x85) => "client identifier not valid",
            (Version::V5, 0x86) => "bad user name or password",
            (Version::V5, 0x87) => "not authorized",
            (Version::V5, 0x88) => "server unavailable",
            (Version::V5, 0x89) => "server busy",
            (Version::V5, 0x8A) => "banned",
            (Version::V5, 0x8C) => "bad authentication method",
            (Version::V5, 0x95) => "packet too large",
            (Version::V5, 0x97) => "quota exceeded",
            (Version::V5, 0x9C) => "use another server",
            (Version::V5, 0x9D) => "server moved",
            (Version::V5, 0x9F) => "connection rate exceeded",
            _ => "unknown code",
        }
    }
}

/// Parses a CONNACK from the start of `buf`: `Ok(None)` needs more bytes; anything that is not
/// a CONNACK is an error (a broker sends nothing else before it).
pub fn parse_connack(buf: &[u8], v: Version) -> Result<Option<(ConnAck, usize)>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first != 0x20 {
        return Err(DecodeError::invalid(format!(
            "expected CONNACK (0x20), got packet byte 0x{first:02x}"
        )));
    }
    let Some((len, vl)) = varint(&buf[1..])? else {
        return Ok(None);
    };
    if len > MAX_PACKET {
        return Err(DecodeError::TooLong {
            what: "CONNACK",
            len,
            limit: MAX_PACKET,
        });
    }
    if len < 2 {
        return Err(DecodeError::invalid(format!(
            "CONNACK remaining length {len} is below 2"
        )));
    }
    let total = 1 + vl + len;
    if buf.len() < total {
        return Ok(None);
    }
    let mut c = Cursor::new(&buf[1 + vl..total]);
    let flags = c.u8("acknowledge flags")?;
    if flags & 0xFE != 0 {
        return Err(DecodeError::invalid(format!(
            "CONNACK flags 0x{flags:02x} have reserved bits set"
        )));
    }
    let code = c.u8("return code")?;
    let mut ack = ConnAck {
        session_present: flags & 1 == 1,
        code,
        reason_string: None,
        assigned_client_id: None,
    };
    // 3.1.1: exactly two bytes. A 5.0 broker refusing a 3.1.1 client also answers in 3.1.1.
    if v == Version::V5 && !c.is_empty() {
        let Some((plen, pl)) = varint(c.rest())? else {
            return Err(DecodeError::invalid("truncated CONNACK properties length"));
        };
        c.skip(pl, "properties length")?;
        let props = c.bounded(plen, MAX_PACKET, "CONNACK properties")?;
        parse_props(props, &mut ack)?;
    }
    Ok(Some((ack, total)))
}

fn parse_props(props: &[u8], ack: &mut ConnAck) -> Result<(), DecodeError> {
    let mut c = Cursor::new(props);
    while !c.is_empty() {
        let id = c.u8("property id")?;
        match id {
            // byte
            0x01 | 0x17 | 0x19 | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => c.skip(1, "property")?,
            // two-byte integer
            0x13 | 0x21 | 0x22 | 0x23 => c.skip(2, "property")?,
            // four-byte integer
            0x02 | 0x11 | 0x18 | 0x27 => c.skip(4, "property")?,
            // strings / binary data
            0x03 | 0x08 | 0x09 | 0x12 | 0x15 | 0x16 | 0x1A | 0x1C | 0x1F => {
                let n = c.u16("property length")? as usize;
                let s = c.take(n, "property value")?;
                match id {
                    0x1F => ack.reason_string = Some(text_upto(s, 256)),
                    0x12 => ack.assigned_client_id = Some(text_upto(s, 256)),
                    _ => {}
                }
            }
            // user property: string pair
            0x26 => {
                for _ in 0..2 {
                    let n = c.u16("user property")? as usize;
                    c.skip(n, "user property")?;
                }
            }
            // variable byte integer (subscription identifier)
            0x0B => {
                let Some((_, l)) = varint(c.rest())? else {
                    return Err(DecodeError::invalid("truncated property"));
                };
                c.skip(l, "property")?;
            }
            other => {
                return Err(DecodeError::invalid(format!(
                    "unknown MQTT property id 0x{other:02x}"
                )));
            }
        }
    }
    Ok(())
}

/// `SUBSCRIBE` to one topic filter at QoS 0.
pub fn subscribe(packet_id: u16, filter: &str, v: Version) -> Vec<u8> {
    let mut b = packet_id.to_be_bytes().to_vec();
    if v == Version::V5 {
        b.push(0);
    }
    put_str(&mut b, filter.as_bytes());
    b.push(0);
    let mut out = vec![0x82];
    put_varint(&mut out, b.len());
    out.extend_from_slice(&b);
    out
}

/// A control packet split off the stream: first byte, body, bytes used.
pub type RawPacket<'a> = (u8, &'a [u8], usize);

/// Splits any control packet off the stream: `(first byte, body, used)`. Bodies over
/// `max` bytes are refused.
pub fn split_packet(buf: &[u8], max: usize) -> Result<Option<RawPacket<'_>>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first >> 4 == 0 {
        return Err(DecodeError::invalid("MQTT packet type 0 is reserved"));
    }
    let Some((len, vl)) = varint(&buf[1..])? else {
        return Ok(None);
    };
    if len > max {
        return Err(DecodeError::TooLong {
            what: "MQTT packet",
            len,
            limit: max,
        });
    }
    let total = 1 + vl + len;
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some((first, &buf[1 + vl..total], total)))
}

/// A `PUBLISH` body: topic and payload.
pub fn parse_publish(first: u8, body: &[u8], v: Version) -> Result<(String, &[u8]), DecodeError> {
    if first >> 4 != 3 {
        return Err(DecodeError::invalid("not a PUBLISH packet"));
    }
    let mut c = Cursor::new(body);
    let n = c.u16("topic length")? as usize;
    let topic = text_upto(c.take(n, "topic")?, 1024);
    if (first >> 1) & 3 > 0 {
        c.skip(2, "packet id")?;
    }
    if v == Version::V5 {
        let Some((plen, pl)) = varint(c.rest())? else {
            return Err(DecodeError::invalid("truncated PUBLISH properties"));
        };
        c.skip(pl, "properties length")?;
        c.bounded(plen, MAX_PACKET, "PUBLISH properties")?;
    }
    Ok((topic, c.rest()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn connect_bytes() {
        // MQTT 3.1.1 §3.1: 10 len 00 04 MQTT 04 flags keepalive(2) client-id.
        let c = connect(Version::V311, "pw", 30, None, None);
        assert_eq!(
            c,
            vec![
                0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 30, 0, 2, b'p', b'w'
            ]
        );
        let c = connect(Version::V5, "pw", 30, Some("u"), Some("p"));
        assert_eq!(c[8], 5);
        assert_eq!(c[9], 0xC2);
        assert_eq!(c[12], 0, "empty properties");
        assert_eq!(c[1] as usize, c.len() - 2);
        // Long remaining length uses a multi-byte varint.
        let long = "x".repeat(300);
        let c = connect(Version::V311, &long, 30, None, None);
        assert_eq!(varint(&c[1..]).unwrap(), Some((c.len() - 3, 2)));
    }

    #[test]
    fn connack() {
        let (a, n) = parse_connack(&[0x20, 2, 0, 0], Version::V311)
            .unwrap()
            .unwrap();
        assert_eq!(n, 4);
        assert_eq!(a.verdict(Version::V311), Verdict::Accepted);
        let (a, _) = parse_connack(&[0x20, 2, 0, 5], Version::V311)
            .unwrap()
            .unwrap();
        assert_eq!(a.verdict(Version::V311), Verdict::AuthRefused);
        // 5.0 with a reason string property.
        let b = [0x20, 9, 0, 0x87, 6, 0x1F, 0, 3, b'n', b'o', b'!'];
        let (a, _) = parse_connack(&b, Version::V5).unwrap().unwrap();
        assert_eq!(a.verdict(Version::V5), Verdict::AuthRefused);
        assert_eq!(a.reason_string.as_deref(), Some("no!"));
        assert_eq!(parse_connack(&b[..5], Version::V5).unwrap(), None);
        assert!(parse_connack(b"-ERR unknown command", Version::V311).is_err());
        assert!(parse_connack(b"SSH-2.0-x", Version::V311).is_err());
    }

    #[test]
    fn subscribe_and_publish() {
        let s = subscribe(1, "$SYS/broker/version", Version::V311);
        assert_eq!(&s[..4], &[0x82, 24, 0, 1]);
        assert_eq!(s.last(), Some(&0));
        let mut p = vec![0x31, 0];
        let mut body = Vec::new();
        put_str(&mut body, b"$SYS/broker/version");
        body.extend_from_slice(b"mosquitto version 2.0.11");
        p[1] = body.len() as u8;
        p.extend_from_slice(&body);
        let (first, b, n) = split_packet(&p, MAX_PACKET).unwrap().unwrap();
        assert_eq!(n, p.len());
        let (t, payload) = parse_publish(first, b, Version::V311).unwrap();
        assert_eq!(t, "$SYS/broker/version");
        assert_eq!(payload, b"mosquitto version 2.0.11");
    }

    proptest! {
        #[test]
        fn packets_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..128)) {
            if let Ok(Some((first, body, n))) = split_packet(&buf, MAX_PACKET) {
                prop_assert!(n <= buf.len());
                let _ = parse_publish(first, body, Version::V311);
                let _ = parse_publish(first, body, Version::V5);
            }
        }

        #[test]
        fn never_panics(buf in proptest::collection::vec(any::<u8>(), 0..128)) {
            for v in [Version::V311, Version::V5] {
                if let Ok(Some((_, n))) = parse_connack(&buf, v) {
                    prop_assert!(n <= buf.len());
                }
            }
        }

        #[test]
        fn connack_prefixed_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut b = vec![0x20, tail.len() as u8];
            b.extend_from_slice(&tail);
            let _ = parse_connack(&b, Version::V5);
        }
    }
}
