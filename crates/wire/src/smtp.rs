//! Numeric replies of SMTP (RFC 5321 §4.2) and FTP (RFC 959 §4.2), and SMTP's `EHLO`
//! extension list.
//!
//! SMTP: every line of a reply starts with the same three digits, `-` on all but the last,
//! which has a space (or nothing). FTP: the first line is `NNN-`, the last `NNN `, and the
//! lines between may be anything.

use crate::cursor::{DecodeError, next_line, text_upto};

/// Longest reply line we accept (RFC 5321 says 512; servers are lax).
pub const MAX_LINE: usize = 4096;
/// Most lines in one reply (an EHLO answer has a dozen).
pub const MAX_LINES: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Smtp,
    Ftp,
}

/// A complete reply: its code and each line's text after the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }
    /// 4xx: transient failure ("421 too busy").
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }
    /// 5xx: permanent failure ("554 no service here").
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }
    /// The first line's text.
    pub fn text(&self) -> &str {
        self.lines.first().map(String::as_str).unwrap_or("")
    }
    /// All lines joined by ` / `, bounded for messages.
    pub fn summary(&self) -> String {
        let s = self.lines.join(" / ");
        s.chars().take(256).collect()
    }
}

fn code_of(line: &[u8]) -> Option<(u16, Option<u8>)> {
    if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = u16::from(line[0] - b'0') * 100
        + u16::from(line[1] - b'0') * 10
        + u16::from(line[2] - b'0');
    Some((code, line.get(3).copied()))
}

/// Parses one complete reply from the start of `buf`: `Ok(Some((reply, used)))`, `Ok(None)`
/// when more bytes are needed.
pub fn parse_reply(buf: &[u8], dialect: Dialect) -> Result<Option<(Reply, usize)>, DecodeError> {
    let mut pos = 0;
    let mut code = None;
    let mut lines = Vec::new();
    loop {
        let Some((line, used)) = next_line(&buf[pos..], MAX_LINE)? else {
            // Fail early when the first bytes cannot start a reply.
            if code.is_none() {
                let head = &buf[pos..];
                let n = head.len().min(3);
                if !head[..n].iter().all(u8::is_ascii_digit) {
                    return Err(DecodeError::invalid(
                        "not a numeric reply (expected three digits)",
                    ));
                }
            }
            return Ok(None);
        };
        pos += used;
        if lines.len() >= MAX_LINES {
            return Err(DecodeError::invalid("reply has too many lines"));
        }
        let parsed = code_of(line);
        match (code, parsed) {
            (None, Some((c, sep))) => {
                if !matches!(sep, None | Some(b' ') | Some(b'-')) {
                    return Err(DecodeError::invalid(
                        "reply code not followed by space or `-`",
                    ));
                }
                code = Some(c);
                lines.push(text_upto(line.get(4..).unwrap_or(&[]), MAX_LINE));
                if sep != Some(b'-') {
                    break;
                }
            }
            (None, None) => {
                return Err(DecodeError::invalid(
                    "not a numeric reply (expected three digits)",
                ));
            }
            (Some(c), Some((c2, sep))) if c2 == c && sep != Some(b'-') => {
                if !matches!(sep, None | Some(b' ')) {
                    return Err(DecodeError::invalid("reply code not followed by space"));
                }
                lines.push(text_upto(line.get(4..).unwrap_or(&[]), MAX_LINE));
                break;
            }
            (Some(c), Some((c2, Some(b'-')))) if c2 == c => {
                lines.push(text_upto(&line[4..], MAX_LINE));
            }
            (Some(_), _) if dialect == Dialect::Ftp => {
                lines.push(text_upto(line, MAX_LINE));
            }
            (Some(_), _) => {
                return Err(DecodeError::invalid(
                    "a line of a multi-line SMTP reply does not repeat the code",
                ));
            }
        }
    }
    Ok(code.map(|code| (Reply { code, lines }, pos)))
}

/// The extension keywords of an `EHLO` reply (upper-cased, first word of each line after the
/// greeting): `STARTTLS`, `SIZE`, `AUTH`, `PIPELINING`...
pub fn ehlo_extensions(r: &Reply) -> Vec<String> {
    r.lines
        .iter()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(|w| w.to_ascii_uppercase())
        .take(64)
        .collect()
}

/// The `AUTH` mechanisms an `EHLO` reply offers.
pub fn ehlo_auth(r: &Reply) -> Vec<String> {
    r.lines
        .iter()
        .skip(1)
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()?.eq_ignore_ascii_case("AUTH"))
                .then(|| w.map(str::to_string).take(32).collect())
        })
        .unwrap_or_default()
}

/// Bounds a name for `EHLO` / `HELO`: letters, digits, `-` and `.` only.
pub fn helo_name(name: &str) -> String {
    let s: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .take(255)
        .collect();
    if s.is_empty() {
        "portwarden.invalid".into()
    } else {
        s
    }
}

/// `AUTH PLAIN <base64(\0user\0password)>` (RFC 4954, RFC 4616).
pub fn auth_plain(user: &str, password: &str) -> Vec<u8> {
    let mut raw = Vec::with_capacity(user.len() + password.len() + 2);
    raw.push(0);
    raw.extend_from_slice(user.as_bytes());
    raw.push(0);
    raw.extend_from_slice(password.as_bytes());
    let mut b64 = crate::ssh::base64_nopad(&raw);
    while !b64.len().is_multiple_of(4) {
        b64.push('=');
    }
    format!("AUTH PLAIN {b64}\r\n").into_bytes()
}

/// True when a credential can go into a line-based command (no CR, LF or NUL).
pub fn line_safe(s: &str) -> bool {
    !s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn smtp_replies() {
        let (r, n) = parse_reply(b"220 mx.example ESMTP Postfix\r\n", Dialect::Smtp)
            .unwrap()
            .unwrap();
        assert_eq!((r.code, n), (220, 30));
        assert_eq!(r.text(), "mx.example ESMTP Postfix");
        let ehlo = b"250-mx.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n";
        let (r, n) = parse_reply(ehlo, Dialect::Smtp).unwrap().unwrap();
        assert_eq!(n, ehlo.len());
        assert_eq!(
            ehlo_extensions(&r),
            vec!["PIPELINING", "SIZE", "STARTTLS", "AUTH", "8BITMIME"]
        );
        assert_eq!(ehlo_auth(&r), vec!["PLAIN", "LOGIN"]);
        for i in 0..ehlo.len() {
            assert_eq!(parse_reply(&ehlo[..i], Dialect::Smtp).unwrap(), None);
        }
        let (r, _) = parse_reply(b"421 4.7.0 too busy\r\n", Dialect::Smtp)
            .unwrap()
            .unwrap();
        assert!(r.is_transient());
        assert!(parse_reply(b"SSH-2.0-OpenSSH\r\n", Dialect::Smtp).is_err());
        assert!(parse_reply(b"+PONG", Dialect::Smtp).is_err());
        assert!(parse_reply(b"250-a\r\nxyz\r\n", Dialect::Smtp).is_err());
        assert_eq!(
            parse_reply(b"220\r\n", Dialect::Smtp)
                .unwrap()
                .unwrap()
                .0
                .code,
            220
        );
    }

    #[test]
    fn auth_plain_matches_rfc4616() {
        // RFC 4616 §4 example: "\0tim\0tanstaaftanstaaf" → AHRpbQB0YW5zdGFhZnRhbnN0YWFm
        assert_eq!(
            auth_plain("tim", "tanstaaftanstaaf"),
            b"AUTH PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm\r\n"
        );
        assert!(auth_plain("a", "b").ends_with(b"=\r\n"));
        assert!(!line_safe("a\r\nQUIT"));
        assert!(line_safe("p@ss w"));
    }

    #[test]
    fn ftp_replies() {
        let b = b"211-Features:\r\n MDTM\r\n AUTH TLS\r\n UTF8\r\n211 End\r\n";
        let (r, n) = parse_reply(b, Dialect::Ftp).unwrap().unwrap();
        assert_eq!(n, b.len());
        assert_eq!(r.code, 211);
        assert_eq!(r.lines.len(), 5);
    }

    proptest! {
        #[test]
        fn never_panics(buf in proptest::collection::vec(any::<u8>(), 0..256)) {
            for d in [Dialect::Smtp, Dialect::Ftp] {
                if let Ok(Some((r, n))) = parse_reply(&buf, d) {
                    prop_assert!(n <= buf.len());
                    prop_assert!(r.code < 1000);
                    let _ = ehlo_extensions(&r);
                    let _ = ehlo_auth(&r);
                }
            }
        }

        #[test]
        fn digit_prefixed_never_panics(code in 100u16..600, rest in "[ -~\\r\\n-]{0,80}") {
            let b = format!("{code}{rest}");
            let _ = parse_reply(b.as_bytes(), Dialect::Smtp);
            let _ = parse_reply(b.as_bytes(), Dialect::Ftp);
        }
    }
}
