//! Redis serialization protocol (RESP2, plus the RESP3 scalar types a server may send), and the
//! `INFO` text format.
//!
//! Spec: Redis documentation, "Redis serialization protocol specification" (simple strings
//! `+`, errors `-`, integers `:`, bulk strings `$`, arrays `*`; RESP3 null `_`, boolean `#`,
//! double `,`, big number `(`, bulk error `!`, verbatim string `=`, map `%`, set `~`, push `>`)
//! and the `INFO` command ("lines of `field:value`, sections starting with `#`").
//!
//! ```
//! use portwarden_wire::resp::{self, Value};
//! assert_eq!(resp::command(&["PING"]), b"*1\r\n$4\r\nPING\r\n");
//! let (v, used) = resp::parse(b"+PONG\r\n", &resp::Limits::default()).unwrap().unwrap();
//! assert_eq!((v, used), (Value::Simple("PONG".into()), 7));
//! ```

use std::collections::BTreeMap;

use crate::cursor::{DecodeError, text};

/// Bounds on what a reply may make us hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest bulk string or line.
    pub max_bulk: usize,
    /// Most elements in one aggregate.
    pub max_elements: usize,
    /// Deepest nesting.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk: 256 * 1024,
            max_elements: 1024,
            max_depth: 8,
        }
    }
}

/// A decoded reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Vec<u8>),
    Null,
    Array(Vec<Value>),
    Boolean(bool),
    Double(f64),
}

impl Value {
    /// The text of a simple or bulk string.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Value::Simple(s) => Some(s.clone()),
            Value::Bulk(b) => Some(text(b)),
            _ => None,
        }
    }
}

/// Encodes a command as an array of bulk strings.
pub fn command(args: &[&str]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        v.extend_from_slice(a.as_bytes());
        v.extend_from_slice(b"\r\n");
    }
    v
}

/// Parses one reply from the front of `buf`. `Ok(None)`: more bytes are needed.
pub fn parse(buf: &[u8], limits: &Limits) -> Result<Option<(Value, usize)>, DecodeError> {
    let mut pos = 0;
    match value(buf, &mut pos, limits, 0)? {
        Some(v) => Ok(Some((v, pos))),
        None => Ok(None),
    }
}

/// A CRLF-terminated line starting at `*pos` (after the type byte). `None`: incomplete.
fn line<'a>(
    buf: &'a [u8],
    pos: &mut usize,
    limits: &Limits,
) -> Result<Option<&'a [u8]>, DecodeError> {
    let rest = &buf[*pos..];
    let window = &rest[..rest.len().min(limits.max_bulk + 2)];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(end) => {
            *pos += end + 2;
            Ok(Some(&rest[..end]))
        }
        None if rest.len() > limits.max_bulk + 1 => Err(DecodeError::TooLong {
            what: "RESP line",
            len: rest.len(),
            limit: limits.max_bulk,
        }),
        None => Ok(None),
    }
}

fn int(l: &[u8]) -> Result<i64, DecodeError> {
    std::str::from_utf8(l)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| {
            DecodeError::invalid(format!(
                "`{}` is not a RESP integer",
                crate::printable::escape(l, 32)
            ))
        })
}

fn value(
    buf: &[u8],
    pos: &mut usize,
    limits: &Limits,
    depth: usize,
) -> Result<Option<Value>, DecodeError> {
    DecodeError::check_len("RESP nesting depth", depth as u64, limits.max_depth as u64)?;
    let Some(&ty) = buf.get(*pos) else {
        return Ok(None);
    };
    if !b"+-:_#,($!=*~>%".contains(&ty) {
        return Err(DecodeError::invalid(format!(
            "byte 0x{ty:02x} does not start a RESP reply"
        )));
    }
    *pos += 1;
    let Some(l) = line(buf, pos, limits)? else {
        return Ok(None);
    };
    Ok(Some(match ty {
        b'+' => Value::Simple(text(l)),
        b'-' => Value::Error(text(l)),
        b':' => Value::Integer(int(l)?),
        b'_' => Value::Null,
        b'#' => Value::Boolean(l == b"t"),
        b',' => Value::Double(
            std::str::from_utf8(l)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| DecodeError::invalid("bad RESP double"))?,
        ),
        b'(' => Value::Simple(text(l)),
        b'$' | b'!' | b'=' => {
            let n = int(l)?;
            if n < 0 {
                return Ok(Some(Value::Null));
            }
            DecodeError::check_len("RESP bulk length", n as u64, limits.max_bulk as u64)?;
            let n = n as usize;
            if buf.len() < *pos + n + 2 {
                return Ok(None);
            }
            let data = &buf[*pos..*pos + n];
            if &buf[*pos + n..*pos + n + 2] != b"\r\n" {
                return Err(DecodeError::invalid("bulk string not followed by CRLF"));
            }
            *pos += n + 2;
            if ty == b'!' {
                Value::Error(text(data))
            } else {
                Value::Bulk(data.to_vec())
            }
        }
        b'*' | b'~' | b'>' | b'%' => {
            let n = int(l)?;
            if n < 0 {
                return Ok(Some(Value::Null));
            }
            let n = if ty == b'%' { n.saturating_mul(2) } else { n };
            DecodeError::check_len(
                "RESP aggregate length",
                n as u64,
                limits.max_elements as u64,
            )?;
            let mut items = Vec::with_capacity(n as usize);
            for _ in 0..n {
                match value(buf, pos, limits, depth + 1)? {
                    Some(v) => items.push(v),
                    None => return Ok(None),
                }
            }
            Value::Array(items)
        }
        other => {
            return Err(DecodeError::invalid(format!(
                "byte 0x{other:02x} does not start a RESP reply"
            )));
        }
    }))
}

/// Parses `INFO` output into `field → value` (sections and comments skipped). Keeps at most
/// `max_fields` fields.
pub fn parse_info(s: &str, max_fields: usize) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for line in s.lines() {
        if m.len() >= max_fields {
            break;
        }
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            m.insert(k.to_string(), v.to_string());
        }
    }
    m
}

/// A replica line of `INFO replication` on a primary: `slave0:ip=...,port=...,state=online,
/// offset=123,lag=0`. Returns `(state, offset, lag_seconds)`.
pub fn parse_replica_line(v: &str) -> (Option<String>, Option<i64>, Option<i64>) {
    let mut state = None;
    let mut offset = None;
    let mut lag = None;
    for part in v.split(',') {
        match part.split_once('=') {
            Some(("state", s)) => state = Some(s.to_string()),
            Some(("offset", o)) => offset = o.parse().ok(),
            Some(("lag", l)) => lag = l.parse().ok(),
            _ => {}
        }
    }
    (state, offset, lag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(b: &[u8]) -> Result<Option<(Value, usize)>, DecodeError> {
        parse(b, &Limits::default())
    }

    #[test]
    fn spec_examples() {
        // Examples from the RESP specification.
        assert_eq!(
            p(b"+OK\r\n").unwrap().unwrap().0,
            Value::Simple("OK".into())
        );
        assert_eq!(
            p(b"-ERR unknown command 'foobar'\r\n").unwrap().unwrap().0,
            Value::Error("ERR unknown command 'foobar'".into())
        );
        assert_eq!(p(b":1000\r\n").unwrap().unwrap().0, Value::Integer(1000));
        assert_eq!(
            p(b"$5\r\nhello\r\n").unwrap().unwrap().0,
            Value::Bulk(b"hello".to_vec())
        );
        assert_eq!(p(b"$-1\r\n").unwrap().unwrap().0, Value::Null);
        assert_eq!(
            p(b"*2\r\n$5\r\nhello\r\n$5\r\nworld\r\n")
                .unwrap()
                .unwrap()
                .0,
            Value::Array(vec![
                Value::Bulk(b"hello".to_vec()),
                Value::Bulk(b"world".to_vec())
            ])
        );
        assert_eq!(p(b"$5\r\nhel").unwrap(), None);
        assert_eq!(p(b"*2\r\n$5\r\nhello\r\n").unwrap(), None);
        assert!(p(b"\x00\x00\x00\x08").is_err());
        assert!(p(b"$999999999\r\n").is_err());
        assert!(p(b"*99999999\r\n").is_err());
        assert!(p(b"$3\r\nabcXY").is_err());
    }

    #[test]
    fn parses_info() {
        let s = "# Replication\r\nrole:slave\r\nmaster_link_status:down\r\nslave0:ip=127.0.0.1,port=7001,state=online,offset=42,lag=1\r\n";
        let m = parse_info(s, 100);
        assert_eq!(m.get("role").map(String::as_str), Some("slave"));
        assert_eq!(
            parse_replica_line(&m["slave0"]),
            (Some("online".into()), Some(42), Some(1))
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let l = Limits { max_bulk: 100, max_elements: 10, max_depth: 3 };
            if let Ok(Some((_, used))) = parse(&bytes, &l) {
                proptest::prop_assert!(used <= bytes.len());
            }
            let _ = parse_info(&String::from_utf8_lossy(&bytes), 10);
        }

        #[test]
        fn bulk_round_trip(s in "[a-zA-Z0-9 ]{0,50}") {
            let enc = command(&[&s]);
            let (v, used) = parse(&enc, &Limits::default()).unwrap().unwrap();
            proptest::prop_assert_eq!(used, enc.len());
            proptest::prop_assert_eq!(v, Value::Array(vec![Value::Bulk(s.into_bytes())]));
        }
    }
}
