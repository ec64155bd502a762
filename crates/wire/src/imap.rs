//! IMAP4 (RFC 9051 / RFC 3501): the server greeting, `CAPABILITY`, `STARTTLS`, `LOGOUT`.
//!
//! Lines are `* OK|PREAUTH|BYE|NO|BAD [code] text` (untagged), `TAG OK|NO|BAD text` (tagged),
//! or `+ ...` (continuation). Literals (`{n}`) never appear in the responses a probe asks for,
//! and every line is bounded.

use crate::cursor::{DecodeError, next_line, text_upto};

/// Longest line we accept (a CAPABILITY line is a few hundred bytes).
pub const MAX_LINE: usize = 8192;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// `* WORD rest`: WORD upper-cased (`OK`, `PREAUTH`, `BYE`, `CAPABILITY`...).
    Untagged {
        word: String,
        rest: String,
    },
    /// `TAG STATUS rest`.
    Tagged {
        tag: String,
        status: String,
        rest: String,
    },
    Continuation(String),
}

/// Parses the next response line: `Ok(Some((line, used)))`, `Ok(None)` needs more.
pub fn parse_line(buf: &[u8]) -> Result<Option<(Line, usize)>, DecodeError> {
    if let Some(&b) = buf.first()
        && !(b == b'*' || b == b'+' || b.is_ascii_alphanumeric())
    {
        return Err(DecodeError::invalid("not an IMAP response line"));
    }
    let Some((raw, used)) = next_line(buf, MAX_LINE)? else {
        return Ok(None);
    };
    let s = text_upto(raw, MAX_LINE);
    if s.chars().any(|c| c.is_control() && c != '\t') {
        return Err(DecodeError::invalid(
            "control bytes in an IMAP response line",
        ));
    }
    if let Some(r) = s.strip_prefix("+") {
        return Ok(Some((Line::Continuation(r.trim().to_string()), used)));
    }
    let mut it = s.splitn(3, ' ');
    let first = it.next().unwrap_or("");
    let second = it.next().unwrap_or("");
    let rest = it.next().unwrap_or("").to_string();
    if first == "*" {
        if second.is_empty() {
            return Err(DecodeError::invalid("empty untagged IMAP response"));
        }
        return Ok(Some((
            Line::Untagged {
                word: second.to_ascii_uppercase(),
                rest,
            },
            used,
        )));
    }
    let status = second.to_ascii_uppercase();
    if !matches!(status.as_str(), "OK" | "NO" | "BAD" | "BYE" | "PREAUTH") {
        return Err(DecodeError::invalid(format!(
            "not an IMAP status: `{}`",
            status.chars().take(16).collect::<String>()
        )));
    }
    Ok(Some((
        Line::Tagged {
            tag: first.to_string(),
            status,
            rest,
        },
        used,
    )))
}

/// Capabilities from `* CAPABILITY a b c` (pass `rest`) or from a `[CAPABILITY a b c]` response
/// code at the start of a status text.
pub fn capabilities(word: &str, rest: &str) -> Option<Vec<String>> {
    let list = if word.eq_ignore_ascii_case("CAPABILITY") {
        rest
    } else {
        let r = rest.strip_prefix('[')?;
        let end = r.find(']')?;
        let inner = &r[..end];
        let (w, l) = inner.split_once(' ')?;
        if !w.eq_ignore_ascii_case("CAPABILITY") {
            return None;
        }
        l
    };
    Some(
        list.split_whitespace()
            .map(str::to_ascii_uppercase)
            .take(128)
            .collect(),
    )
}

/// The text of a status line without its `[...]` response code.
pub fn human_text(rest: &str) -> &str {
    match rest
        .strip_prefix('[')
        .and_then(|r| r.find(']').map(|e| &r[e + 1..]))
    {
        Some(t) => t.trim(),
        None => rest.trim(),
    }
}

/// An IMAP quoted string (RFC 9051 §4.3): `"` and `\` escaped. Callers refuse CR/LF/NUL.
pub fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `tag LOGIN "user" "password"`.
pub fn login(tag: &str, user: &str, password: &str) -> Vec<u8> {
    format!("{tag} LOGIN {} {}\r\n", quoted(user), quoted(password)).into_bytes()
}

/// The count of `* N EXISTS` (after SELECT).
pub fn exists(word: &str, rest: &str) -> Option<u64> {
    if rest.trim().eq_ignore_ascii_case("EXISTS") {
        word.parse().ok()
    } else {
        None
    }
}

pub fn command(tag: &str, cmd: &str) -> Vec<u8> {
    format!("{tag} {cmd}\r\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn greeting_and_capability() {
        let g = b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS LOGINDISABLED] Dovecot (Debian) ready.\r\n";
        let (l, n) = parse_line(g).unwrap().unwrap();
        assert_eq!(n, g.len());
        let Line::Untagged { word, rest } = l else {
            panic!()
        };
        assert_eq!(word, "OK");
        let caps = capabilities(&word, &rest).unwrap();
        assert!(caps.contains(&"STARTTLS".to_string()));
        assert_eq!(human_text(&rest), "Dovecot (Debian) ready.");
        let (l, _) = parse_line(b"* CAPABILITY IMAP4rev1 STARTTLS\r\n")
            .unwrap()
            .unwrap();
        let Line::Untagged { word, rest } = l else {
            panic!()
        };
        assert_eq!(
            capabilities(&word, &rest).unwrap(),
            vec!["IMAP4REV1", "STARTTLS"]
        );
        let (l, _) = parse_line(b"a1 OK CAPABILITY completed\r\n")
            .unwrap()
            .unwrap();
        assert!(matches!(l, Line::Tagged { status, .. } if status == "OK"));
        assert!(parse_line(b"\x00\x01").is_err());
        assert!(parse_line(b"SSH-2.0-x\r\n").is_err());
        assert!(parse_line(b"-ERR x\r\n").is_err());
        assert_eq!(parse_line(b"* OK").unwrap(), None);
        assert_eq!(
            login("a4", "u", "p\"\\q"),
            b"a4 LOGIN \"u\" \"p\\\"\\\\q\"\r\n".to_vec()
        );
        let (l, _) = parse_line(b"* 17 EXISTS\r\n").unwrap().unwrap();
        let Line::Untagged { word, rest } = l else {
            panic!()
        };
        assert_eq!(exists(&word, &rest), Some(17));
    }

    proptest! {
        #[test]
        fn never_panics(buf in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(Some((l, n))) = parse_line(&buf) {
                prop_assert!(n <= buf.len());
                if let Line::Untagged { word, rest } = l {
                    let _ = capabilities(&word, &rest);
                    let _ = human_text(&rest);
                }
            }
        }
    }
}
