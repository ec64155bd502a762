//! POP3 (RFC 1939, RFC 2449 `CAPA`, RFC 2595 `STLS`): `+OK` / `-ERR` status lines and the
//! dot-terminated multi-line `CAPA` answer.

use crate::cursor::{DecodeError, next_line, text_upto};

pub const MAX_LINE: usize = 4096;
pub const MAX_LINES: usize = 256;

/// A status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub ok: bool,
    pub text: String,
}

/// Parses a `+OK ...` / `-ERR ...` line: `Ok(Some((status, used)))`, `Ok(None)` needs more.
pub fn parse_status(buf: &[u8]) -> Result<Option<(Status, usize)>, DecodeError> {
    let head = &buf[..buf.len().min(4)];
    if !(b"+OK".starts_with(&head[..head.len().min(3)]) || b"-ERR".starts_with(head)) {
        return Err(DecodeError::invalid("not a POP3 status line (+OK / -ERR)"));
    }
    let Some((line, used)) = next_line(buf, MAX_LINE)? else {
        return Ok(None);
    };
    let (ok, rest) = if let Some(r) = line.strip_prefix(b"+OK") {
        (true, r)
    } else if let Some(r) = line.strip_prefix(b"-ERR") {
        (false, r)
    } else {
        return Err(DecodeError::invalid("not a POP3 status line (+OK / -ERR)"));
    };
    Ok(Some((
        Status {
            ok,
            text: text_upto(rest, MAX_LINE).trim().to_string(),
        },
        used,
    )))
}

/// Parses the body of a multi-line answer (after its `+OK` line) up to the `.` line:
/// `Ok(Some((lines, used)))`. Byte-stuffed lines (`..x`) are unstuffed.
pub fn parse_multiline(buf: &[u8]) -> Result<Option<(Vec<String>, usize)>, DecodeError> {
    let mut pos = 0;
    let mut lines = Vec::new();
    loop {
        let Some((line, used)) = next_line(&buf[pos..], MAX_LINE)? else {
            return Ok(None);
        };
        pos += used;
        if line == b"." {
            return Ok(Some((lines, pos)));
        }
        if lines.len() >= MAX_LINES {
            return Err(DecodeError::invalid("multi-line POP3 answer is too long"));
        }
        let l = line.strip_prefix(b".").unwrap_or(line);
        lines.push(text_upto(l, MAX_LINE));
    }
}

/// Capability names from `CAPA` lines (first word, upper-cased: `STLS`, `SASL`, `USER`...).
pub fn capabilities(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_ascii_uppercase)
        .take(64)
        .collect()
}

/// The message count of a `STAT` answer's text (`2 320` → 2).
pub fn stat_count(text: &str) -> Option<u64> {
    text.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn status_and_capa() {
        let (s, n) = parse_status(b"+OK Dovecot ready.\r\n").unwrap().unwrap();
        assert!(s.ok);
        assert_eq!((s.text.as_str(), n), ("Dovecot ready.", 20));
        let (s, _) = parse_status(b"-ERR [SYS/TEMP] busy\r\n").unwrap().unwrap();
        assert!(!s.ok);
        assert_eq!(parse_status(b"+O").unwrap(), None);
        assert!(parse_status(b"220 smtp\r\n").is_err());
        assert!(parse_status(b"SSH-2.0\r\n").is_err());
        let (l, n) = parse_multiline(b"CAPA\r\nTOP\r\nSTLS\r\nSASL PLAIN\r\n..x\r\n.\r\nrest")
            .unwrap()
            .unwrap();
        assert_eq!(n, 37);
        assert_eq!(capabilities(&l), vec!["CAPA", "TOP", "STLS", "SASL", ".X"]);
        assert_eq!(parse_multiline(b"TOP\r\n").unwrap(), None);
        assert_eq!(stat_count("2 320"), Some(2));
        assert_eq!(stat_count("x"), None);
    }

    proptest! {
        #[test]
        fn never_panics(buf in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(Some((_, n))) = parse_status(&buf) { prop_assert!(n <= buf.len()); }
            if let Ok(Some((l, n))) = parse_multiline(&buf) {
                prop_assert!(n <= buf.len());
                let _ = capabilities(&l);
            }
        }
    }
}
