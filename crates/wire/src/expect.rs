//! Matching a peer's answer against what we expect, incrementally as bytes arrive.

use crate::printable;

/// What to look for in the bytes a peer sends.
#[derive(Debug, Clone)]
pub enum Matcher {
    /// The bytes appear anywhere in the answer.
    Contains(Vec<u8>),
    /// The answer matches the regular expression (bytes mode, so binary answers work).
    Regex(regex::bytes::Regex),
    /// The answer starts with these bytes (given in config as hex).
    Prefix(Vec<u8>),
}

/// The verdict on the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// Found; the match ends at this offset (later steps read on from there).
    MatchedAt(usize),
    /// Not yet decided: read more.
    NeedMore,
    /// Cannot match any more.
    Mismatch,
}

impl Match {
    pub fn is_match(self) -> bool {
        matches!(self, Match::MatchedAt(_))
    }
}

impl Matcher {
    pub fn contains(bytes: Vec<u8>) -> Self {
        Matcher::Contains(bytes)
    }

    /// Compiles a regex with a size limit so a hostile config cannot make us allocate wildly.
    pub fn regex(pattern: &str) -> Result<Self, regex::Error> {
        regex::bytes::RegexBuilder::new(pattern)
            .size_limit(1 << 20)
            .build()
            .map(Matcher::Regex)
    }

    /// Judges `buf`. `done` is true when no more bytes will come (EOF, read limit reached, or
    /// the read timed out): then "not found yet" becomes a mismatch.
    pub fn check(&self, buf: &[u8], done: bool) -> Match {
        let verdict = match self {
            Matcher::Contains(needle) => {
                if needle.is_empty() {
                    Some(0)
                } else {
                    buf.windows(needle.len())
                        .position(|w| w == needle.as_slice())
                        .map(|p| p + needle.len())
                }
            }
            Matcher::Regex(re) => re.find(buf).map(|m| m.end()),
            Matcher::Prefix(prefix) => {
                if buf.len() >= prefix.len() {
                    if buf.starts_with(prefix) {
                        Some(prefix.len())
                    } else {
                        return Match::Mismatch;
                    }
                } else if !prefix.starts_with(buf) {
                    return Match::Mismatch;
                } else {
                    None
                }
            }
        };
        match verdict {
            Some(end) => Match::MatchedAt(end),
            None if done => Match::Mismatch,
            None => Match::NeedMore,
        }
    }

    /// A short human description: `"+PONG"`, `/^SSH-2\.0/`, `hex 16030300`.
    pub fn describe(&self) -> String {
        match self {
            Matcher::Contains(b) => format!("\"{}\"", printable::escape(b, 64)),
            Matcher::Regex(re) => format!("/{}/", re.as_str()),
            Matcher::Prefix(b) => format!("hex {}", hex::encode(&b[..b.len().min(64)])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn contains() {
        let m = Matcher::contains(b"PONG".to_vec());
        assert_eq!(m.check(b"+PO", false), Match::NeedMore);
        assert_eq!(m.check(b"+PO", true), Match::Mismatch);
        assert_eq!(m.check(b"+PONG\r\n", false), Match::MatchedAt(5));
    }

    #[test]
    fn regex() {
        let m = Matcher::regex(r"^SSH-2\.0-\S+").unwrap();
        assert!(m.check(b"SSH-2.0-OpenSSH_9.2\r\n", false).is_match());
        assert_eq!(m.check(b"HTTP/1.1 400", true), Match::Mismatch);
    }

    #[test]
    fn prefix() {
        let m = Matcher::Prefix(vec![0x16, 0x03]);
        assert_eq!(m.check(&[0x16], false), Match::NeedMore);
        assert_eq!(m.check(&[0x15], false), Match::Mismatch);
        assert_eq!(m.check(&[0x16, 0x03, 0x01], false), Match::MatchedAt(2));
        assert_eq!(m.check(&[0x16], true), Match::Mismatch);
    }

    proptest! {
        #[test]
        fn never_panics(buf in proptest::collection::vec(any::<u8>(), 0..512),
                        needle in proptest::collection::vec(any::<u8>(), 0..8),
                        done in any::<bool>()) {
            let _ = Matcher::Contains(needle.clone()).check(&buf, done);
            let _ = Matcher::Prefix(needle).check(&buf, done);
        }

        #[test]
        fn regex_compile_never_panics(p in "\\PC{0,32}") { let _ = Matcher::regex(&p); }
    }
}
