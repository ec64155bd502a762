//! DNS queries and answers over UDP and TCP, using hickory-proto's message types (RFC 1035
//! encoding, name compression and record parsing are hickory's; this module only frames and
//! summarises). TCP messages carry a two-byte length prefix (RFC 1035 §4.2.2).

use std::str::FromStr;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};

use crate::cursor::DecodeError;

/// Largest answer we read (UDP answers without EDNS are ≤ 512 bytes; over TCP a message is at
/// most 65 535 bytes by construction).
pub const MAX_MESSAGE: usize = 65_535;
/// Most answer records summarised.
pub const MAX_ANSWERS: usize = 32;

/// Why a query could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("`{0}` is not a valid DNS name")]
    Name(String),
    #[error("`{0}` is not a DNS record type (A, AAAA, MX, TXT, NS, SOA, CNAME, PTR, SRV, ...)")]
    Type(String),
    #[error("cannot encode the query: {0}")]
    Encode(String),
}

/// Parses a record type name (`A`, `aaaa`, `MX`).
pub fn record_type(s: &str) -> Result<RecordType, QueryError> {
    RecordType::from_str(&s.to_ascii_uppercase()).map_err(|_| QueryError::Type(s.to_string()))
}

/// Builds a standard query for `name`/`rtype`.
pub fn query(
    id: u16,
    name: &str,
    rtype: &str,
    recursion_desired: bool,
) -> Result<Vec<u8>, QueryError> {
    let n = Name::from_utf8(name).map_err(|_| QueryError::Name(name.to_string()))?;
    let t = record_type(rtype)?;
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = recursion_desired;
    m.add_query(Query::query(n, t));
    m.to_vec().map_err(|e| QueryError::Encode(e.to_string()))
}

/// Prefixes a message with its length for DNS over TCP.
pub fn tcp_frame(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 2);
    out.extend_from_slice(&(msg.len().min(u16::MAX as usize) as u16).to_be_bytes());
    out.extend_from_slice(&msg[..msg.len().min(u16::MAX as usize)]);
    out
}

/// Splits a length-prefixed message off a TCP stream: `Some((msg, used))` when complete.
pub fn split_tcp(buf: &[u8]) -> Option<(&[u8], usize)> {
    if buf.len() < 2 {
        return None;
    }
    let n = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
    (buf.len() >= 2 + n).then(|| (&buf[2..2 + n], 2 + n))
}

/// RFC 1035 / 6895 mnemonic of a response code (`NOERROR`, `NXDOMAIN`, `SERVFAIL`...).
pub fn rcode_name(code: u16) -> String {
    match code {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        6 => "YXDOMAIN".into(),
        7 => "YXRRSET".into(),
        8 => "NXRRSET".into(),
        9 => "NOTAUTH".into(),
        10 => "NOTZONE".into(),
        16 => "BADVERS".into(),
        n => format!("RCODE{n}"),
    }
}

/// Parses an rcode mnemonic or number (`NOERROR`, `nxdomain`, `3`).
pub fn parse_rcode(s: &str) -> Option<u16> {
    if let Ok(n) = s.parse::<u16>() {
        return (n < 4096).then_some(n);
    }
    (0..=16).find(|c| rcode_name(*c).eq_ignore_ascii_case(s))
}

/// One answer record, for display and matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub name: String,
    pub rtype: String,
    pub ttl: u32,
    /// Presentation form of the data (`10.0.0.1`, `10 mx.example.`).
    pub data: String,
}

/// What a response says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub id: u16,
    pub rcode: u16,
    pub authoritative: bool,
    pub truncated: bool,
    pub recursion_available: bool,
    pub answers: Vec<Answer>,
    pub answer_count: usize,
}

/// The message id (first two bytes), to match answers to queries before decoding them.
pub fn message_id(buf: &[u8]) -> Option<u16> {
    (buf.len() >= 2).then(|| u16::from_be_bytes([buf[0], buf[1]]))
}

/// Parses a DNS response and checks it answers query `id`.
pub fn parse_response(buf: &[u8], id: u16) -> Result<Summary, DecodeError> {
    if buf.len() > MAX_MESSAGE {
        return Err(DecodeError::TooLong {
            what: "DNS message",
            len: buf.len(),
            limit: MAX_MESSAGE,
        });
    }
    let m = Message::from_vec(buf)
        .map_err(|e| DecodeError::invalid(format!("not a DNS message: {e}")))?;
    let md = &m.metadata;
    if md.message_type != MessageType::Response {
        return Err(DecodeError::invalid(
            "a DNS query where a response was expected",
        ));
    }
    if md.id != id {
        return Err(DecodeError::invalid(format!(
            "DNS response id {} does not match query id {id}",
            md.id
        )));
    }
    let answers = m
        .answers
        .iter()
        .take(MAX_ANSWERS)
        .map(|r| Answer {
            name: r.name.to_string(),
            rtype: r.record_type().to_string(),
            ttl: r.ttl,
            data: r.data.to_string().chars().take(512).collect(),
        })
        .collect();
    Ok(Summary {
        id: md.id,
        rcode: u16::from(md.response_code),
        authoritative: md.authoritative,
        truncated: md.truncation,
        recursion_available: md.recursion_available,
        answers,
        answer_count: m.answers.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn query_bytes() {
        let q = query(0x1234, "x.test", "A", true).unwrap();
        // RFC 1035 §4.1.1 header: id, flags RD, QDCOUNT 1; then QNAME 1 'x' 4 'test' 0, QTYPE 1,
        // QCLASS 1.
        assert_eq!(&q[..6], &[0x12, 0x34, 0x01, 0x00, 0x00, 0x01]);
        assert!(
            q.ends_with(&[1, b'x', 4, b't', b'e', b's', b't', 0, 0, 1, 0, 1]),
            "{q:02x?}"
        );
        let f = tcp_frame(&q);
        assert_eq!(split_tcp(&f), Some((&q[..], f.len())));
        assert_eq!(split_tcp(&f[..f.len() - 1]), None);
        assert!(query(1, "x.test", "NOPE", true).is_err());
        assert_eq!(parse_rcode("nxdomain"), Some(3));
        assert_eq!(parse_rcode("SERVFAIL"), Some(2));
        assert_eq!(rcode_name(5), "REFUSED");
    }

    #[test]
    fn parses_an_answer() {
        // A response to the query above: QR=1 RD RA, 1 answer x.test A 10.0.0.1 TTL 60,
        // the name as a compression pointer to offset 12 (RFC 1035 §4.1.4).
        let mut r = query(0x1234, "x.test", "A", true).unwrap();
        r[2] = 0x81;
        r[3] = 0x80;
        r[7] = 1; // ANCOUNT
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1]);
        let s = parse_response(&r, 0x1234).unwrap();
        assert_eq!(s.rcode, 0);
        assert!(s.recursion_available);
        assert_eq!(s.answers.len(), 1);
        assert_eq!(s.answers[0].data, "10.0.0.1");
        assert_eq!(s.answers[0].rtype, "A");
        assert_eq!(s.answers[0].ttl, 60);
        assert!(parse_response(&r, 0x9999).is_err());
        assert_eq!(message_id(&r), Some(0x1234));
        assert_eq!(message_id(&[1]), None);
        let q = query(7, "x.test", "A", true).unwrap();
        assert!(parse_response(&q, 7).is_err(), "a query is not an answer");
    }

    proptest! {
        #[test]
        fn never_panics(buf in proptest::collection::vec(any::<u8>(), 0..512), id in any::<u16>()) {
            let _ = parse_response(&buf, id);
            if let Some((m, n)) = split_tcp(&buf) {
                prop_assert!(n <= buf.len());
                let _ = parse_response(m, id);
            }
        }
    }
}
