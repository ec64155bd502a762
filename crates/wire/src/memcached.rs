//! memcached text protocol: `version` and `stats`.
//!
//! Spec: memcached `doc/protocol.txt`, sections "Error strings" (`ERROR`, `CLIENT_ERROR <msg>`,
//! `SERVER_ERROR <msg>`), "General-purpose statistics" (`STAT <name> <value>\r\n` lines ended by
//! `END\r\n`) and "Other commands" (`version` → `VERSION <version>\r\n`).
//!
//! ```
//! use portwarden_wire::memcached::{self, Reply};
//! let r = memcached::parse_version(b"VERSION 1.6.18\r\n", 1024).unwrap().unwrap();
//! assert_eq!(r.0, Reply::Version("1.6.18".into()));
//! ```

use std::collections::BTreeMap;

use crate::cursor::{DecodeError, text};

pub const VERSION: &[u8] = b"version\r\n";
pub const STATS: &[u8] = b"stats\r\n";

/// Most `STAT` lines we keep.
pub const MAX_STATS: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Version(String),
    Stats(BTreeMap<String, String>),
    /// `ERROR`, `CLIENT_ERROR ...` or `SERVER_ERROR ...`, as sent.
    Error(String),
}

fn first_line(buf: &[u8], max: usize) -> Result<Option<(&[u8], usize)>, DecodeError> {
    let window = &buf[..buf.len().min(max)];
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(end) => Ok(Some((&buf[..end], end + 2))),
        None if buf.len() >= max => Err(DecodeError::TooLong {
            what: "memcached line",
            len: buf.len(),
            limit: max,
        }),
        None => Ok(None),
    }
}

/// Fails early when the bytes so far cannot start any of `starts` (a peer that is not
/// memcached, e.g. a server greeting us with binary bytes, is rejected without waiting).
fn check_start(buf: &[u8], starts: &[&[u8]]) -> Result<(), DecodeError> {
    let ok = starts.iter().any(|s| {
        let n = s.len().min(buf.len());
        buf[..n] == s[..n]
    });
    if ok || buf.is_empty() {
        Ok(())
    } else {
        Err(DecodeError::invalid(format!(
            "`{}` is not a memcached reply",
            crate::printable::escape(&buf[..buf.len().min(32)], 32)
        )))
    }
}

const ERROR_STARTS: [&[u8]; 3] = [b"ERROR", b"CLIENT_ERROR ", b"SERVER_ERROR "];

fn error_line(line: &[u8]) -> Option<Reply> {
    (line == b"ERROR" || line.starts_with(b"CLIENT_ERROR") || line.starts_with(b"SERVER_ERROR"))
        .then(|| Reply::Error(text(line)))
}

/// Parses the answer to `version`. `Ok(None)`: more bytes needed. Lines over `max` are errors.
pub fn parse_version(buf: &[u8], max: usize) -> Result<Option<(Reply, usize)>, DecodeError> {
    check_start(
        buf,
        &[
            b"VERSION ",
            ERROR_STARTS[0],
            ERROR_STARTS[1],
            ERROR_STARTS[2],
        ],
    )?;
    let Some((line, used)) = first_line(buf, max)? else {
        return Ok(None);
    };
    if let Some(e) = error_line(line) {
        return Ok(Some((e, used)));
    }
    match line.strip_prefix(b"VERSION ") {
        Some(v) => Ok(Some((Reply::Version(text(v)), used))),
        None => Err(DecodeError::invalid(format!(
            "expected `VERSION <version>` but got `{}`",
            crate::printable::escape(line, 64)
        ))),
    }
}

/// Parses the answer to `stats` (up to `END`). `Ok(None)`: more bytes needed. The whole answer
/// must fit in `max` bytes.
pub fn parse_stats(buf: &[u8], max: usize) -> Result<Option<(Reply, usize)>, DecodeError> {
    let mut pos = 0;
    let mut stats = BTreeMap::new();
    loop {
        check_start(
            &buf[pos..],
            &[
                b"STAT ",
                b"END\r\n",
                ERROR_STARTS[0],
                ERROR_STARTS[1],
                ERROR_STARTS[2],
            ],
        )?;
        let Some((line, used)) = first_line(&buf[pos..], max.saturating_sub(pos))? else {
            return Ok(None);
        };
        pos += used;
        if line == b"END" {
            return Ok(Some((Reply::Stats(stats), pos)));
        }
        if let Some(e) = error_line(line) {
            return Ok(Some((e, pos)));
        }
        let Some(rest) = line.strip_prefix(b"STAT ") else {
            return Err(DecodeError::invalid(format!(
                "expected `STAT <name> <value>` but got `{}`",
                crate::printable::escape(line, 64)
            )));
        };
        let s = text(rest);
        let (k, v) = s.split_once(' ').unwrap_or((s.as_str(), ""));
        if stats.len() < MAX_STATS {
            stats.insert(k.to_string(), v.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_replies() {
        let s = b"STAT pid 1\r\nSTAT version 1.6.18\r\nSTAT curr_connections 2\r\nSTAT max_connections 1024\r\nEND\r\n";
        let (r, used) = parse_stats(s, 4096).unwrap().unwrap();
        assert_eq!(used, s.len());
        let Reply::Stats(m) = r else { panic!() };
        assert_eq!(m["curr_connections"], "2");
        assert_eq!(parse_stats(&s[..20], 4096).unwrap(), None);
        assert_eq!(
            parse_version(b"SERVER_ERROR out of memory\r\n", 100)
                .unwrap()
                .unwrap()
                .0,
            Reply::Error("SERVER_ERROR out of memory".into())
        );
        assert!(parse_version(b"+PONG\r\n", 100).is_err());
        assert!(parse_version(&[b'x'; 200], 100).is_err());
        assert!(parse_version(b"V", 100).unwrap().is_none());
        assert!(
            parse_version(b"d\0\0\0\n5.5.5-10", 100).is_err(),
            "a MySQL greeting fails at once"
        );
        assert!(parse_version(&[b'V'; 200], 100).is_err());
        assert!(parse_stats(&s[..], 30).is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            if let Ok(Some((_, used))) = parse_stats(&bytes, 300) {
                proptest::prop_assert!(used <= bytes.len() && used <= 300);
            }
            if let Ok(Some((_, used))) = parse_version(&bytes, 300) {
                proptest::prop_assert!(used <= bytes.len());
            }
        }
    }
}
