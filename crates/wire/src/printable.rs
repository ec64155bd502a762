//! Showing untrusted bytes to humans: printable ASCII as is, everything else escaped, bounded.

/// The most bytes of a peer's answer ever shown in a message.
pub const MAX_SHOWN: usize = 256;

/// Escapes at most `limit` bytes (never more than [`MAX_SHOWN`]) for a log line or an alert:
/// printable ASCII stays, `\r \n \t` are spelled out, other bytes become `\xHH`; a cut is marked
/// with `…(+N bytes)`.
pub fn escape(bytes: &[u8], limit: usize) -> String {
    let limit = limit.min(MAX_SHOWN);
    let shown = &bytes[..bytes.len().min(limit)];
    let mut out = String::with_capacity(shown.len() + 16);
    for &b in shown {
        match b {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    if bytes.len() > shown.len() {
        out.push_str(&format!("…(+{} bytes)", bytes.len() - shown.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_bounds() {
        assert_eq!(escape(b"OK\r\n\x00", 100), "OK\\r\\n\\x00");
        let long = vec![b'a'; 1000];
        let s = escape(&long, 10_000);
        assert!(s.starts_with(&"a".repeat(MAX_SHOWN)));
        assert!(s.ends_with("…(+744 bytes)"), "{s}");
    }

    proptest::proptest! {
        #[test]
        fn bounded(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000)) {
            let s = escape(&bytes, usize::MAX);
            proptest::prop_assert!(s.len() <= MAX_SHOWN * 4 + 32);
        }
    }
}
