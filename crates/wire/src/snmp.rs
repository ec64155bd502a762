//! SNMP v2c `GetRequest` / `GetResponse` with a hand-written, bounded BER codec.
//!
//! Spec: RFC 3416 (PDUs), RFC 1901 (v2c message: version 1, community), RFC 2578 (application
//! types IpAddress, Counter32, Gauge32, TimeTicks, Opaque, Counter64), X.690 (BER: tag, length
//! in short or long form, INTEGER two's complement, OBJECT IDENTIFIER base-128 arcs).

use crate::cursor::{Cursor, DecodeError};

pub const SYS_DESCR: &str = "1.3.6.1.2.1.1.1.0";
pub const SYS_UPTIME: &str = "1.3.6.1.2.1.1.3.0";
pub const SYS_NAME: &str = "1.3.6.1.2.1.1.5.0";

/// Largest message we accept (SNMP over UDP is at most 64 KiB; typical agents send < 1500).
pub const MAX_MESSAGE: usize = 65_535;
const MAX_VARBINDS: usize = 64;

/// A parsed OID, e.g. `1.3.6.1.2.1.1.3.0`.
pub fn parse_oid(s: &str) -> Result<Vec<u32>, DecodeError> {
    let arcs: Result<Vec<u32>, _> = s
        .trim_start_matches('.')
        .split('.')
        .map(str::parse)
        .collect();
    let arcs = arcs.map_err(|_| DecodeError::invalid(format!("`{s}` is not a dotted OID")))?;
    if arcs.len() < 2 || arcs[0] > 2 || (arcs[0] < 2 && arcs[1] >= 40) || arcs.len() > 128 {
        return Err(DecodeError::invalid(format!("`{s}` is not a valid OID")));
    }
    Ok(arcs)
}

pub fn oid_string(arcs: &[u32]) -> String {
    arcs.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    if n < 128 {
        out.push(n as u8);
    } else {
        let b = (n as u32).to_be_bytes();
        let skip = b.iter().position(|x| *x != 0).unwrap_or(3);
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&b[skip..]);
    }
}

fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    put_len(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

fn int(v: i64) -> Vec<u8> {
    let b = v.to_be_bytes();
    let mut start = 0;
    while start < 7
        && ((b[start] == 0 && b[start + 1] & 0x80 == 0)
            || (b[start] == 0xff && b[start + 1] & 0x80 != 0))
    {
        start += 1;
    }
    tlv(0x02, &b[start..])
}

fn oid_body(arcs: &[u32]) -> Vec<u8> {
    let mut out = Vec::new();
    let first = u64::from(arcs.first().copied().unwrap_or(0)) * 40
        + u64::from(arcs.get(1).copied().unwrap_or(0));
    for a in std::iter::once(first).chain(arcs.iter().skip(2).map(|x| u64::from(*x))) {
        let mut tmp = Vec::new();
        let mut v = a;
        tmp.push((v & 0x7f) as u8);
        v >>= 7;
        while v > 0 {
            tmp.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        tmp.reverse();
        out.extend_from_slice(&tmp);
    }
    out
}

/// A v2c `GetRequest` for `oids` (already parsed with [`parse_oid`]).
pub fn get_request(community: &[u8], request_id: i32, oids: &[Vec<u32>]) -> Vec<u8> {
    let mut vbs = Vec::new();
    for o in oids {
        let mut vb = tlv(0x06, &oid_body(o));
        vb.extend_from_slice(&[0x05, 0x00]);
        vbs.extend_from_slice(&tlv(0x30, &vb));
    }
    let mut pdu = int(i64::from(request_id));
    pdu.extend_from_slice(&int(0));
    pdu.extend_from_slice(&int(0));
    pdu.extend_from_slice(&tlv(0x30, &vbs));
    let mut msg = int(1); // version-2c
    msg.extend_from_slice(&tlv(0x04, community));
    msg.extend_from_slice(&tlv(0xA0, &pdu));
    tlv(0x30, &msg)
}

/// A value in a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Integer(i64),
    OctetString(Vec<u8>),
    Null,
    Oid(Vec<u32>),
    IpAddress([u8; 4]),
    Counter32(u32),
    Gauge32(u32),
    /// Hundredths of a second.
    TimeTicks(u32),
    Opaque(Vec<u8>),
    Counter64(u64),
    NoSuchObject,
    NoSuchInstance,
    EndOfMibView,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub version: i64,
    pub community: Vec<u8>,
    pub request_id: i64,
    /// 0 = noError, 2 = noSuchName, 5 = genErr, 16 = authorizationError...
    pub error_status: i64,
    pub error_index: i64,
    pub varbinds: Vec<(Vec<u32>, Value)>,
}

pub fn error_status_name(e: i64) -> &'static str {
    match e {
        0 => "noError",
        1 => "tooBig",
        2 => "noSuchName",
        3 => "badValue",
        4 => "readOnly",
        5 => "genErr",
        6 => "noAccess",
        16 => "authorizationError",
        _ => "error",
    }
}

/// Reads one TLV: tag and body.
fn read_tlv<'a>(c: &mut Cursor<'a>) -> Result<(u8, &'a [u8]), DecodeError> {
    let tag = c.u8("BER tag")?;
    if tag & 0x1f == 0x1f {
        return Err(DecodeError::invalid(
            "multi-byte BER tags are not used by SNMP",
        ));
    }
    let first = c.u8("BER length")?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return Err(DecodeError::invalid(format!(
                "BER length of {n} bytes is not allowed here"
            )));
        }
        let mut v = 0usize;
        for _ in 0..n {
            v = (v << 8) | usize::from(c.u8("BER length")?);
        }
        v
    };
    let body = c.bounded(len, MAX_MESSAGE, "BER value")?;
    Ok((tag, body))
}

fn expect<'a>(c: &mut Cursor<'a>, want: u8, what: &str) -> Result<&'a [u8], DecodeError> {
    let (tag, body) = read_tlv(c)?;
    if tag != want {
        return Err(DecodeError::invalid(format!(
            "expected {what} (tag 0x{want:02x}), got tag 0x{tag:02x}"
        )));
    }
    Ok(body)
}

fn decode_int(b: &[u8]) -> Result<i64, DecodeError> {
    if b.is_empty() || b.len() > 8 {
        return Err(DecodeError::invalid(format!(
            "INTEGER of {} bytes",
            b.len()
        )));
    }
    let mut v: i64 = if b[0] & 0x80 != 0 { -1 } else { 0 };
    for x in b {
        v = (v << 8) | i64::from(*x);
    }
    Ok(v)
}

fn decode_uint(b: &[u8], max_bytes: usize) -> Result<u64, DecodeError> {
    let b = if b.len() > max_bytes && b[0] == 0 {
        &b[1..]
    } else {
        b
    };
    if b.is_empty() || b.len() > max_bytes {
        return Err(DecodeError::invalid(format!(
            "unsigned of {} bytes",
            b.len()
        )));
    }
    Ok(b.iter().fold(0u64, |v, x| (v << 8) | u64::from(*x)))
}

fn decode_oid(b: &[u8]) -> Result<Vec<u32>, DecodeError> {
    if b.is_empty() || b.len() > 256 {
        return Err(DecodeError::invalid("OID length out of range"));
    }
    let mut arcs = Vec::new();
    let mut v: u32 = 0;
    let mut in_arc = false;
    for &x in b {
        if v > (u32::MAX >> 7) {
            return Err(DecodeError::invalid("OID arc overflows 32 bits"));
        }
        v = (v << 7) | u32::from(x & 0x7f);
        in_arc = x & 0x80 != 0;
        if !in_arc {
            if arcs.is_empty() {
                let (a, b) = if v < 40 {
                    (0, v)
                } else if v < 80 {
                    (1, v - 40)
                } else {
                    (2, v - 80)
                };
                arcs.push(a);
                arcs.push(b);
            } else {
                arcs.push(v);
            }
            v = 0;
        }
    }
    if in_arc {
        return Err(DecodeError::invalid("OID ends inside an arc"));
    }
    Ok(arcs)
}

fn decode_value(tag: u8, b: &[u8]) -> Result<Value, DecodeError> {
    Ok(match tag {
        0x02 => Value::Integer(decode_int(b)?),
        0x04 => Value::OctetString(b.to_vec()),
        0x05 => Value::Null,
        0x06 => Value::Oid(decode_oid(b)?),
        0x40 => {
            let a: [u8; 4] = b
                .try_into()
                .map_err(|_| DecodeError::invalid("IpAddress is not 4 bytes"))?;
            Value::IpAddress(a)
        }
        0x41 => Value::Counter32(decode_uint(b, 4)? as u32),
        0x42 => Value::Gauge32(decode_uint(b, 4)? as u32),
        0x43 => Value::TimeTicks(decode_uint(b, 4)? as u32),
        0x44 => Value::Opaque(b.to_vec()),
        0x46 => Value::Counter64(decode_uint(b, 8)?),
        0x80 => Value::NoSuchObject,
        0x81 => Value::NoSuchInstance,
        0x82 => Value::EndOfMibView,
        t => {
            return Err(DecodeError::invalid(format!(
                "unknown SNMP value tag 0x{t:02x}"
            )));
        }
    })
}

/// Parses a v1/v2c `GetResponse` message.
pub fn parse_response(buf: &[u8]) -> Result<Response, DecodeError> {
    let mut top = Cursor::new(buf);
    let msg = expect(&mut top, 0x30, "SNMP message SEQUENCE")?;
    let mut c = Cursor::new(msg);
    let version = decode_int(expect(&mut c, 0x02, "version")?)?;
    let community = expect(&mut c, 0x04, "community")?.to_vec();
    let (tag, pdu) = read_tlv(&mut c)?;
    if tag != 0xA2 {
        return Err(DecodeError::invalid(format!(
            "expected GetResponse PDU (0xa2), got tag 0x{tag:02x}"
        )));
    }
    let mut p = Cursor::new(pdu);
    let request_id = decode_int(expect(&mut p, 0x02, "request-id")?)?;
    let error_status = decode_int(expect(&mut p, 0x02, "error-status")?)?;
    let error_index = decode_int(expect(&mut p, 0x02, "error-index")?)?;
    let vbl = expect(&mut p, 0x30, "variable-bindings")?;
    let mut v = Cursor::new(vbl);
    let mut varbinds = Vec::new();
    while !v.is_empty() {
        if varbinds.len() >= MAX_VARBINDS {
            return Err(DecodeError::invalid("too many variable bindings"));
        }
        let vb = expect(&mut v, 0x30, "VarBind")?;
        let mut b = Cursor::new(vb);
        let name = decode_oid(expect(&mut b, 0x06, "VarBind name")?)?;
        let (tag, val) = read_tlv(&mut b)?;
        varbinds.push((name, decode_value(tag, val)?));
    }
    Ok(Response {
        version,
        community,
        request_id,
        error_status,
        error_index,
        varbinds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn request_matches_the_classic_bytes() {
        // X.690 by hand for `snmpget -v2c -c public` of sysDescr.0 with request-id 1:
        // 30 len | 02 01 01 | 04 06 "public" | a0 len | 02 01 01 02 01 00 02 01 00 | 30 ..
        let oid = parse_oid(SYS_DESCR).unwrap();
        let r = get_request(b"public", 1, &[oid]);
        assert_eq!(r[0], 0x30);
        assert_eq!(r[1] as usize, r.len() - 2);
        let tail: &[u8] = &[
            0x06, 0x08, 0x2b, 0x06, 0x01, 0x02, 0x01, 0x01, 0x01, 0x00, 0x05, 0x00,
        ];
        assert!(r.ends_with(tail), "{r:02x?}");
        assert_eq!(
            &r[2..13],
            &[
                0x02, 0x01, 0x01, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c'
            ]
        );
        assert_eq!(r[13], 0xa0);
        assert_eq!(int(128), vec![0x02, 0x02, 0x00, 0x80]);
        assert_eq!(int(-1), vec![0x02, 0x01, 0xff]);
        assert_eq!(int(-129), vec![0x02, 0x02, 0xff, 0x7f]);
        assert_eq!(
            decode_oid(&oid_body(&[1, 3, 6, 1, 4, 1, 311, 21])).unwrap(),
            vec![1, 3, 6, 1, 4, 1, 311, 21]
        );
        assert_eq!(
            oid_body(&[1, 3, 6, 1, 4, 1, 311]),
            vec![0x2b, 6, 1, 4, 1, 0x82, 0x37]
        );
    }

    fn response(vbs: &[(Vec<u32>, u8, Vec<u8>)], err: i64) -> Vec<u8> {
        let mut list = Vec::new();
        for (oid, tag, val) in vbs {
            let mut vb = tlv(0x06, &oid_body(oid));
            vb.extend_from_slice(&tlv(*tag, val));
            list.extend_from_slice(&tlv(0x30, &vb));
        }
        let mut pdu = int(42);
        pdu.extend_from_slice(&int(err));
        pdu.extend_from_slice(&int(0));
        pdu.extend_from_slice(&tlv(0x30, &list));
        let mut msg = int(1);
        msg.extend_from_slice(&tlv(0x04, b"public"));
        msg.extend_from_slice(&tlv(0xA2, &pdu));
        tlv(0x30, &msg)
    }

    #[test]
    fn parses_response() {
        let descr = b"Linux box 6.1.0 x86_64".repeat(10);
        let b = response(
            &[
                (parse_oid(SYS_UPTIME).unwrap(), 0x43, vec![0x01, 0x2c, 0x4b]),
                (parse_oid(SYS_DESCR).unwrap(), 0x04, descr.clone()),
                (parse_oid(SYS_NAME).unwrap(), 0x81, vec![]),
            ],
            0,
        );
        assert!(b[1] & 0x80 != 0, "long-form length exercised");
        let r = parse_response(&b).unwrap();
        assert_eq!(r.request_id, 42);
        assert_eq!(r.community, b"public");
        assert_eq!(r.varbinds[0].1, Value::TimeTicks(0x012c4b));
        assert_eq!(r.varbinds[1].1, Value::OctetString(descr));
        assert_eq!(r.varbinds[2].1, Value::NoSuchInstance);
        assert_eq!(oid_string(&r.varbinds[0].0), SYS_UPTIME);
        assert!(
            parse_response(&get_request(b"public", 1, &[])).is_err(),
            "a request is no response"
        );
        assert!(parse_response(b"\x30\x84\xff\xff\xff\xff").is_err());
        assert!(parse_oid("1.3.x").is_err());
    }

    proptest! {
        #[test]
        fn never_panics(buf in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_response(&buf);
            let _ = decode_oid(&buf);
        }

        #[test]
        fn valid_prefix_mutations(i in 0usize..120, x in any::<u8>()) {
            let mut b = response(&[(parse_oid(SYS_DESCR).unwrap(), 0x04, b"hello".to_vec())], 0);
            let i = i % b.len();
            b[i] = x;
            let _ = parse_response(&b);
        }

        #[test]
        fn oid_round_trips(arcs in proptest::collection::vec(any::<u32>(), 0..12), a in 0u32..3, b in 0u32..40) {
            let mut full = vec![a, b];
            full.extend(arcs);
            prop_assert_eq!(decode_oid(&oid_body(&full)).unwrap(), full);
        }
    }
}
