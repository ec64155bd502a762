//! AMQP 0-9-1 (RabbitMQ): the protocol header, frames, and the `Connection`/`Channel` methods
//! a health probe needs (Start, Start-Ok with PLAIN, Tune, Tune-Ok, Open, Open-Ok, Close,
//! Channel.Open/Open-Ok/Close).
//!
//! Spec: AMQP 0-9-1 §2.3.5 (frame format), §4.2.3 (general frame format), the XML class
//! definitions (`connection` = class 10, `channel` = class 20), and RabbitMQ's field-table
//! errata (type letters `t b B s u I i l f d D S A T F V x`).

use crate::cursor::{Cursor, DecodeError, text_upto};

/// What the client sends first: `AMQP` 0 0 9 1.
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
/// Frame types.
pub const FRAME_METHOD: u8 = 1;
pub const FRAME_HEARTBEAT: u8 = 8;
/// Every frame ends with this octet.
pub const FRAME_END: u8 = 0xCE;
/// Largest frame payload we accept before `Tune` (RabbitMQ's `Start` is about 500 bytes).
pub const MAX_FRAME: usize = 128 * 1024;
/// Nesting limit for field tables and arrays.
const MAX_DEPTH: usize = 8;

/// One frame: type, channel and payload (without the end octet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: u8,
    pub channel: u16,
    pub payload: &'a [u8],
}

/// What a peer sent instead of a frame or alongside one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// A complete frame and the bytes it used.
    Frame(Frame<'a>, usize),
    /// The server answered with its own protocol header: it does not speak 0-9-1.
    /// Holds the header's version bytes (e.g. `[0, 0, 9, 1]` or `[1, 1, 0, 10]` for AMQP 1.0).
    VersionMismatch([u8; 4]),
    /// Not enough bytes yet.
    NeedMore,
}

/// Parses the next frame from `buf`. Rejects unknown frame types and oversize lengths as soon
/// as the 7-byte header is in, so a non-AMQP peer is detected without waiting for more.
pub fn parse_frame(buf: &[u8], max: usize) -> Result<Incoming<'_>, DecodeError> {
    if buf.len() >= 4 && &buf[..4] == b"AMQP" {
        if buf.len() < 8 {
            return Ok(Incoming::NeedMore);
        }
        return Ok(Incoming::VersionMismatch([buf[4], buf[5], buf[6], buf[7]]));
    }
    if let Some(&k) = buf.first()
        && !matches!(k, 1..=4 | 8)
    {
        return Err(DecodeError::invalid(format!(
            "not an AMQP frame: type byte 0x{k:02x}"
        )));
    }
    if buf.len() < 7 {
        return Ok(Incoming::NeedMore);
    }
    let mut c = Cursor::new(buf);
    let kind = c.u8("frame type")?;
    let channel = c.u16("channel")?;
    let size = c.u32("frame size")? as usize;
    if size > max {
        return Err(DecodeError::TooLong {
            what: "AMQP frame",
            len: size,
            limit: max,
        });
    }
    if buf.len() < 7 + size + 1 {
        return Ok(Incoming::NeedMore);
    }
    let payload = &buf[7..7 + size];
    if buf[7 + size] != FRAME_END {
        return Err(DecodeError::invalid(format!(
            "AMQP frame does not end with 0xCE (got 0x{:02x})",
            buf[7 + size]
        )));
    }
    Ok(Incoming::Frame(
        Frame {
            kind,
            channel,
            payload,
        },
        7 + size + 1,
    ))
}

/// A field value from a table (only what we report is kept typed).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Table(Vec<(String, Value)>),
    Array(Vec<Value>),
    Other,
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Longest string value we keep (longer values are cut).
const MAX_TEXT: usize = 1024;

fn short_str(c: &mut Cursor<'_>) -> Result<String, DecodeError> {
    let n = c.u8("short string length")? as usize;
    Ok(text_upto(c.take(n, "short string")?, MAX_TEXT))
}

fn long_bytes<'a>(c: &mut Cursor<'a>, what: &'static str) -> Result<&'a [u8], DecodeError> {
    let n = c.u32(what)? as usize;
    c.bounded(n, MAX_FRAME, what)
}

fn table(c: &mut Cursor<'_>, depth: usize) -> Result<Vec<(String, Value)>, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::invalid("field tables nested too deeply"));
    }
    let body = long_bytes(c, "field table")?;
    let mut t = Cursor::new(body);
    let mut out = Vec::new();
    while !t.is_empty() {
        let name = short_str(&mut t)?;
        let v = value(&mut t, depth)?;
        out.push((name, v));
    }
    Ok(out)
}

fn value(c: &mut Cursor<'_>, depth: usize) -> Result<Value, DecodeError> {
    let tag = c.u8("field type")?;
    Ok(match tag {
        b't' => Value::Bool(c.u8("bool")? != 0),
        b'b' => Value::Int(i64::from(c.u8("int8")? as i8)),
        b'B' => Value::Int(i64::from(c.u8("uint8")?)),
        b's' => Value::Int(i64::from(c.i16("int16")?)),
        b'u' => Value::Int(i64::from(c.u16("uint16")?)),
        b'I' => Value::Int(i64::from(c.i32("int32")?)),
        b'i' => Value::Int(i64::from(c.u32("uint32")?)),
        b'l' | b'L' => Value::Int(c.u64("int64")? as i64),
        b'T' => Value::Int(c.u64("timestamp")? as i64),
        b'f' => Value::Float(f64::from(f32::from_bits(c.u32("float")?))),
        b'd' => Value::Float(f64::from_bits(c.u64("double")?)),
        b'D' => {
            c.skip(5, "decimal")?;
            Value::Other
        }
        b'S' => Value::Str(text_upto(long_bytes(c, "long string")?, MAX_TEXT)),
        b'x' => {
            long_bytes(c, "byte array")?;
            Value::Other
        }
        b'V' => Value::Other,
        b'F' => Value::Table(table(c, depth + 1)?),
        b'A' => {
            if depth + 1 > MAX_DEPTH {
                return Err(DecodeError::invalid("field arrays nested too deeply"));
            }
            let body = long_bytes(c, "field array")?;
            let mut a = Cursor::new(body);
            let mut out = Vec::new();
            while !a.is_empty() {
                out.push(value(&mut a, depth + 1)?);
            }
            Value::Array(out)
        }
        other => {
            return Err(DecodeError::invalid(format!(
                "unknown AMQP field type 0x{other:02x}"
            )));
        }
    })
}

/// `Connection.Start`: what the server says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Start {
    pub version_major: u8,
    pub version_minor: u8,
    pub properties: Vec<(String, Value)>,
    /// Space-separated SASL mechanisms, e.g. `PLAIN AMQPLAIN`.
    pub mechanisms: String,
    pub locales: String,
}

impl Start {
    fn prop(&self, k: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(n, _)| n == k)
            .and_then(|(_, v)| v.as_str())
    }
    pub fn product(&self) -> Option<&str> {
        self.prop("product")
    }
    pub fn version(&self) -> Option<&str> {
        self.prop("version")
    }
    pub fn platform(&self) -> Option<&str> {
        self.prop("platform")
    }
    pub fn cluster_name(&self) -> Option<&str> {
        self.prop("cluster_name")
    }
    /// Capability names the server set to true.
    pub fn capabilities(&self) -> Vec<String> {
        self.properties
            .iter()
            .find(|(n, _)| n == "capabilities")
            .and_then(|(_, v)| match v {
                Value::Table(t) => Some(
                    t.iter()
                        .filter(|(_, v)| *v == Value::Bool(true))
                        .map(|(k, _)| k.clone())
                        .collect(),
                ),
                _ => None,
            })
            .unwrap_or_default()
    }
    pub fn has_mechanism(&self, m: &str) -> bool {
        self.mechanisms.split_ascii_whitespace().any(|x| x == m)
    }
}

/// The connection-level methods a probe meets.
#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    Start(Start),
    Tune {
        channel_max: u16,
        frame_max: u32,
        heartbeat: u16,
    },
    OpenOk,
    /// `Connection.Close` from the server: why it gives up on us (403 = access refused).
    Close {
        code: u16,
        text: String,
        class_id: u16,
        method_id: u16,
    },
    CloseOk,
    /// `Connection.Secure`: the server wants another SASL round (not used by PLAIN).
    Secure,
    ChannelOpenOk,
    ChannelClose {
        code: u16,
        text: String,
    },
    ChannelCloseOk,
    /// Anything else, by class and method id.
    Other(u16, u16),
}

/// Parses a method frame's payload.
pub fn parse_method(payload: &[u8]) -> Result<Method, DecodeError> {
    let mut c = Cursor::new(payload);
    let class = c.u16("class id")?;
    let method = c.u16("method id")?;
    Ok(match (class, method) {
        (10, 10) => {
            let version_major = c.u8("version-major")?;
            let version_minor = c.u8("version-minor")?;
            let properties = table(&mut c, 0)?;
            let mechanisms = text_upto(long_bytes(&mut c, "mechanisms")?, MAX_TEXT);
            let locales = text_upto(long_bytes(&mut c, "locales")?, MAX_TEXT);
            Method::Start(Start {
                version_major,
                version_minor,
                properties,
                mechanisms,
                locales,
            })
        }
        (10, 20) => Method::Secure,
        (10, 30) => Method::Tune {
            channel_max: c.u16("channel-max")?,
            frame_max: c.u32("frame-max")?,
            heartbeat: c.u16("heartbeat")?,
        },
        (10, 41) => Method::OpenOk,
        (10, 50) => Method::Close {
            code: c.u16("reply-code")?,
            text: short_str(&mut c)?,
            class_id: c.u16("class-id")?,
            method_id: c.u16("method-id")?,
        },
        (10, 51) => Method::CloseOk,
        (20, 11) => Method::ChannelOpenOk,
        (20, 40) => Method::ChannelClose {
            code: c.u16("reply-code")?,
            text: short_str(&mut c)?,
        },
        (20, 41) => Method::ChannelCloseOk,
        (cl, m) => Method::Other(cl, m),
    })
}

/// Wraps a method payload in a frame.
pub fn method_frame(channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 8);
    f.push(FRAME_METHOD);
    f.extend_from_slice(&channel.to_be_bytes());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f.push(FRAME_END);
    f
}

fn put_short(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(255)];
    out.push(b.len() as u8);
    out.extend_from_slice(b);
}

fn put_long(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

/// `Connection.Start-Ok` with SASL PLAIN (`\0user\0password`). The client properties ask for
/// `authentication_failure_close`, so a refused login is a `Connection.Close` 403 rather than a
/// bare disconnect.
pub fn start_ok_plain(user: &str, password: &str, product: &str) -> Vec<u8> {
    let mut caps = Vec::new();
    put_short(&mut caps, "authentication_failure_close");
    caps.push(b't');
    caps.push(1);
    let mut props = Vec::new();
    put_short(&mut props, "product");
    props.push(b'S');
    put_long(&mut props, product.as_bytes());
    put_short(&mut props, "capabilities");
    props.push(b'F');
    put_long(&mut props, &caps);
    let mut p = vec![0, 10, 0, 11];
    put_long(&mut p, &props);
    put_short(&mut p, "PLAIN");
    let mut resp = Vec::with_capacity(user.len() + password.len() + 2);
    resp.push(0);
    resp.extend_from_slice(user.as_bytes());
    resp.push(0);
    resp.extend_from_slice(password.as_bytes());
    put_long(&mut p, &resp);
    put_short(&mut p, "en_US");
    method_frame(0, &p)
}

/// `Connection.Tune-Ok`, echoing limits (heartbeat 0: the probe is short-lived).
pub fn tune_ok(channel_max: u16, frame_max: u32) -> Vec<u8> {
    let mut p = vec![0, 10, 0, 31];
    p.extend_from_slice(&channel_max.to_be_bytes());
    p.extend_from_slice(&frame_max.to_be_bytes());
    p.extend_from_slice(&0u16.to_be_bytes());
    method_frame(0, &p)
}

/// `Connection.Open` for a virtual host.
pub fn open(vhost: &str) -> Vec<u8> {
    let mut p = vec![0, 10, 0, 40];
    put_short(&mut p, vhost);
    put_short(&mut p, "");
    p.push(0);
    method_frame(0, &p)
}

/// `Channel.Open` on `channel`.
pub fn channel_open(channel: u16) -> Vec<u8> {
    let mut p = vec![0, 20, 0, 10];
    put_short(&mut p, "");
    method_frame(channel, &p)
}

/// `Channel.Close` (200, normal).
pub fn channel_close(channel: u16) -> Vec<u8> {
    let mut p = vec![0, 20, 0, 40, 0, 200];
    put_short(&mut p, "bye");
    p.extend_from_slice(&[0, 0, 0, 0]);
    method_frame(channel, &p)
}

/// `Connection.Close` (200, normal).
pub fn connection_close() -> Vec<u8> {
    let mut p = vec![0, 10, 0, 50, 0, 200];
    put_short(&mut p, "portwarden probe done");
    p.extend_from_slice(&[0, 0, 0, 0]);
    method_frame(0, &p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A `Connection.Start` as RabbitMQ 3.x sends it (shape from the 0-9-1 spec: class 10,
    /// method 10, version 0.9, server-properties table, mechanisms, locales).
    fn start_frame() -> Vec<u8> {
        let mut caps = Vec::new();
        put_short(&mut caps, "publisher_confirms");
        caps.extend_from_slice(b"t\x01");
        put_short(&mut caps, "exchange_exchange_bindings");
        caps.extend_from_slice(b"t\x00");
        let mut props = Vec::new();
        put_short(&mut props, "capabilities");
        props.push(b'F');
        put_long(&mut props, &caps);
        put_short(&mut props, "product");
        props.push(b'S');
        put_long(&mut props, b"RabbitMQ");
        put_short(&mut props, "version");
        props.push(b'S');
        put_long(&mut props, b"3.12.1");
        put_short(&mut props, "cluster_name");
        props.push(b'S');
        put_long(&mut props, b"rabbit@host");
        put_short(&mut props, "n");
        props.extend_from_slice(b"A\x00\x00\x00\x02b\x07");
        let mut p = vec![0, 10, 0, 10, 0, 9];
        put_long(&mut p, &props);
        put_long(&mut p, b"AMQPLAIN PLAIN");
        put_long(&mut p, b"en_US");
        method_frame(0, &p)
    }

    #[test]
    fn parses_start() {
        let f = start_frame();
        let Incoming::Frame(fr, used) = parse_frame(&f, MAX_FRAME).unwrap() else {
            panic!()
        };
        assert_eq!(used, f.len());
        assert_eq!(fr.kind, FRAME_METHOD);
        let Method::Start(s) = parse_method(fr.payload).unwrap() else {
            panic!()
        };
        assert_eq!((s.version_major, s.version_minor), (0, 9));
        assert_eq!(s.product(), Some("RabbitMQ"));
        assert_eq!(s.version(), Some("3.12.1"));
        assert_eq!(s.cluster_name(), Some("rabbit@host"));
        assert!(s.has_mechanism("PLAIN"));
        assert_eq!(s.capabilities(), vec!["publisher_confirms".to_string()]);
        // Byte by byte: never a frame before the end octet.
        for i in 0..f.len() {
            assert_eq!(parse_frame(&f[..i], MAX_FRAME).unwrap(), Incoming::NeedMore);
        }
    }

    #[test]
    fn detects_other_protocols() {
        assert!(parse_frame(b"INFO {\"server_id\"", MAX_FRAME).is_err());
        assert!(parse_frame(b"-ERR", MAX_FRAME).is_err());
        assert_eq!(
            parse_frame(b"AMQP\x01\x01\x00\x0a", MAX_FRAME).unwrap(),
            Incoming::VersionMismatch([1, 1, 0, 10])
        );
        // Huge length is refused before it is read.
        assert!(parse_frame(&[1, 0, 0, 0xff, 0xff, 0xff, 0xff], MAX_FRAME).is_err());
    }

    #[test]
    fn close_and_tune() {
        let mut p = vec![0, 10, 0, 50, 1, 147];
        put_short(&mut p, "ACCESS_REFUSED - Login was refused");
        p.extend_from_slice(&[0, 10, 0, 11]);
        assert_eq!(
            parse_method(&p).unwrap(),
            Method::Close {
                code: 403,
                text: "ACCESS_REFUSED - Login was refused".into(),
                class_id: 10,
                method_id: 11
            }
        );
        let t = [0, 10, 0, 30, 0x07, 0xff, 0, 2, 0, 0, 0, 60];
        assert_eq!(
            parse_method(&t).unwrap(),
            Method::Tune {
                channel_max: 2047,
                frame_max: 131_072,
                heartbeat: 60
            }
        );
        // Our own builders parse as frames.
        for f in [
            start_ok_plain("guest", "guest", "portwarden"),
            tune_ok(2047, 131_072),
            open("/"),
            channel_open(1),
            channel_close(1),
            connection_close(),
        ] {
            assert!(matches!(
                parse_frame(&f, MAX_FRAME).unwrap(),
                Incoming::Frame(_, n) if n == f.len()
            ));
        }
    }

    proptest! {
        #[test]
        fn frame_parser_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(Incoming::Frame(f, n)) = parse_frame(&buf, MAX_FRAME) {
                prop_assert!(n <= buf.len());
                let _ = parse_method(f.payload);
            }
            let _ = parse_method(&buf);
        }

        #[test]
        fn start_mutations_never_panic(i in 0usize..200, b in any::<u8>()) {
            let mut f = start_frame();
            let i = i % f.len();
            f[i] = b;
            if let Ok(Incoming::Frame(fr, _)) = parse_frame(&f, MAX_FRAME) {
                let _ = parse_method(fr.payload);
            }
        }
    }
}
