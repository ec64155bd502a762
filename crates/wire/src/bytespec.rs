//! Byte strings as written in config: text with escapes (`PING\r\n`, `\x00\x01`) or hex
//! (`de ad be ef`, `0xdeadbeef`, `de:ad:be:ef`).

/// Why a byte spec could not be read. `at` is the character offset within the spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ByteSpecError {
    #[error("unknown escape `\\{ch}` at offset {at}; use \\r \\n \\t \\0 \\\\ \\\" or \\xHH")]
    UnknownEscape { ch: char, at: usize },
    #[error("incomplete `\\x` escape at offset {at}; write two hex digits, e.g. \\x0d")]
    BadHexEscape { at: usize },
    #[error("a trailing `\\` at offset {at} escapes nothing; write `\\\\` for a backslash")]
    TrailingBackslash { at: usize },
    #[error("not hex: `{ch}` at offset {at}; write pairs of hex digits like `de ad be ef`")]
    BadHexDigit { ch: char, at: usize },
    #[error("odd number of hex digits; every byte needs two")]
    OddHex,
}

/// Parses text with C-like escapes into bytes: `\r \n \t \0 \\ \" \' \e \xHH`.
pub fn parse_escaped(s: &str) -> Result<Vec<u8>, ByteSpecError> {
    let mut out = Vec::with_capacity(s.len());
    let mut chars = s.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let Some((_, e)) = chars.next() else {
            return Err(ByteSpecError::TrailingBackslash { at });
        };
        match e {
            'r' => out.push(b'\r'),
            'n' => out.push(b'\n'),
            't' => out.push(b'\t'),
            '0' => out.push(0),
            'e' => out.push(0x1b),
            '\\' => out.push(b'\\'),
            '"' => out.push(b'"'),
            '\'' => out.push(b'\''),
            'x' => {
                let hi = chars.next().and_then(|(_, c)| c.to_digit(16));
                let lo = chars.next().and_then(|(_, c)| c.to_digit(16));
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                    _ => return Err(ByteSpecError::BadHexEscape { at }),
                }
            }
            ch => return Err(ByteSpecError::UnknownEscape { ch, at }),
        }
    }
    Ok(out)
}

/// Parses hex bytes; whitespace, `:` and `-` separators and a leading `0x` are allowed.
pub fn parse_hex(s: &str) -> Result<Vec<u8>, ByteSpecError> {
    let t = s.trim();
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    let mut digits = Vec::with_capacity(t.len());
    for (at, ch) in t.char_indices() {
        if ch.is_whitespace() || ch == ':' || ch == '-' {
            continue;
        }
        match ch.to_digit(16) {
            Some(d) => digits.push(d as u8),
            None => return Err(ByteSpecError::BadHexDigit { ch, at }),
        }
    }
    if digits.len() % 2 != 0 {
        return Err(ByteSpecError::OddHex);
    }
    Ok(digits.chunks(2).map(|p| p[0] * 16 + p[1]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escapes() {
        assert_eq!(parse_escaped("a\\r\\n\\x00\\\\").unwrap(), b"a\r\n\x00\\");
        assert_eq!(parse_escaped("é").unwrap(), "é".as_bytes());
        assert_eq!(
            parse_escaped("\\q"),
            Err(ByteSpecError::UnknownEscape { ch: 'q', at: 0 })
        );
        assert_eq!(
            parse_escaped("ab\\x4"),
            Err(ByteSpecError::BadHexEscape { at: 2 })
        );
        assert_eq!(
            parse_escaped("ab\\"),
            Err(ByteSpecError::TrailingBackslash { at: 2 })
        );
    }

    #[test]
    fn hex() {
        assert_eq!(
            parse_hex("de ad:be-EF").unwrap(),
            vec![0xde, 0xad, 0xbe, 0xef]
        );
        assert_eq!(parse_hex("0x0001").unwrap(), vec![0, 1]);
        assert_eq!(parse_hex("abc"), Err(ByteSpecError::OddHex));
        assert_eq!(
            parse_hex("zz"),
            Err(ByteSpecError::BadHexDigit { ch: 'z', at: 0 })
        );
    }

    proptest! {
        #[test]
        fn escaped_never_panics(s in "\\PC{0,64}") { let _ = parse_escaped(&s); }

        #[test]
        fn hex_never_panics(s in "\\PC{0,64}") { let _ = parse_hex(&s); }

        #[test]
        fn hex_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let text = hex::encode(&bytes);
            prop_assert_eq!(parse_hex(&text).unwrap(), bytes);
        }

        #[test]
        fn escaped_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let text: String = bytes.iter().map(|b| format!("\\x{b:02x}")).collect();
            prop_assert_eq!(parse_escaped(&text).unwrap(), bytes);
        }
    }
}
