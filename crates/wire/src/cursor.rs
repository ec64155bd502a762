//! A bounds-checked reader over a byte slice, and the error every protocol decoder returns.
//!
//! Decoders never index a slice directly: every read goes through [`Cursor`], which fails with
//! [`DecodeError::Truncated`] (naming the field) instead of panicking when the bytes run out, and
//! nothing here allocates more than the input holds. Big-endian reads (`u16`, `u32`, ...) serve
//! the network-order protocols (AMQP, Kafka, SSH, SNMP, NTP, MQTT, PostgreSQL); `_le` reads the
//! little-endian ones (MySQL, MongoDB/BSON).

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended inside a field (`needed` is 0 when the shortfall is not known, e.g. a
    /// missing terminator).
    #[error("truncated {what}{}", needed_suffix(*needed))]
    Truncated { what: &'static str, needed: usize },
    /// A length field is larger than we accept.
    #[error("{what} claims {len} bytes, over the limit of {limit}")]
    TooLong {
        what: &'static str,
        len: usize,
        limit: usize,
    },
    /// The bytes are not what the protocol allows here.
    #[error("{0}")]
    Invalid(String),
}

fn needed_suffix(needed: usize) -> String {
    if needed == 0 {
        String::new()
    } else {
        format!(": {needed} more byte(s) needed")
    }
}

impl DecodeError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        DecodeError::Invalid(msg.into())
    }

    /// `what` ended early, by an unknown number of bytes.
    pub fn truncated(what: &'static str) -> Self {
        DecodeError::Truncated { what, needed: 0 }
    }

    /// Fails with [`DecodeError::TooLong`] when `len > limit`.
    pub fn check_len(what: &'static str, len: u64, limit: u64) -> Result<(), DecodeError> {
        if len > limit {
            Err(DecodeError::TooLong {
                what,
                len: usize::try_from(len).unwrap_or(usize::MAX),
                limit: usize::try_from(limit).unwrap_or(usize::MAX),
            })
        } else {
            Ok(())
        }
    }
}

/// Reads big-endian fields from a slice, never past its end.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The unread rest.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated {
                what,
                needed: n - self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn skip(&mut self, n: usize, what: &'static str) -> Result<(), DecodeError> {
        self.take(n, what).map(|_| ())
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    pub fn i16(&mut self, what: &'static str) -> Result<i16, DecodeError> {
        self.u16(what).map(|v| v as i16)
    }

    pub fn i32(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        self.u32(what).map(|v| v as i32)
    }

    pub fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    pub fn u16_le(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    pub fn u24_le(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b: [u8; 3] = self.array(what)?;
        Ok(u32::from(b[0]) | u32::from(b[1]) << 8 | u32::from(b[2]) << 16)
    }

    pub fn u32_le(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub fn i32_le(&mut self, what: &'static str) -> Result<i32, DecodeError> {
        Ok(i32::from_le_bytes(self.array(what)?))
    }

    pub fn u64_le(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    pub fn i64_le(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }

    pub fn f64_le(&mut self, what: &'static str) -> Result<f64, DecodeError> {
        Ok(f64::from_le_bytes(self.array(what)?))
    }

    /// Bytes up to a NUL (consumed, not returned).
    pub fn cstr(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let rest = self.rest();
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(DecodeError::truncated(what))?;
        self.pos += end + 1;
        Ok(&rest[..end])
    }

    /// Bytes up to a NUL, or to the end when there is none.
    pub fn cstr_or_rest(&mut self) -> &'a [u8] {
        let rest = self.rest();
        match rest.iter().position(|&b| b == 0) {
            Some(end) => {
                self.pos += end + 1;
                &rest[..end]
            }
            None => {
                self.pos = self.buf.len();
                rest
            }
        }
    }

    /// A length-prefixed field whose length is at most `limit` (and what the input holds).
    pub fn bounded(
        &mut self,
        len: usize,
        limit: usize,
        what: &'static str,
    ) -> Result<&'a [u8], DecodeError> {
        if len > limit {
            return Err(DecodeError::TooLong { what, len, limit });
        }
        self.take(len, what)
    }
}

/// Lossy UTF-8 for text fields (versions, messages); control characters are escaped later by
/// [`crate::printable::escape`] where the text is shown.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Lossy UTF-8 of at most `limit` bytes, for values we show (product names, versions).
pub fn text_upto(bytes: &[u8], limit: usize) -> String {
    text(&bytes[..bytes.len().min(limit)])
}

/// Splits the next line (LF or CRLF) off `buf`: `Ok(Some((line without terminator, used)))`,
/// `Ok(None)` when no terminator yet. A line longer than `max` bytes is an error.
pub fn next_line(buf: &[u8], max: usize) -> Result<Option<(&[u8], usize)>, DecodeError> {
    match buf
        .iter()
        .take(max.saturating_add(2))
        .position(|b| *b == b'\n')
    {
        Some(p) => {
            let line = &buf[..p];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.len() > max {
                return Err(DecodeError::TooLong {
                    what: "line",
                    len: line.len(),
                    limit: max,
                });
            }
            Ok(Some((line, p + 1)))
        }
        None if buf.len() > max + 1 => Err(DecodeError::TooLong {
            what: "line",
            len: buf.len(),
            limit: max,
        }),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_and_bounds() {
        let mut c = Cursor::new(&[0, 1, 0, 0, 0, 2, 9]);
        assert_eq!(c.u16("a").unwrap(), 1);
        assert_eq!(c.u32("b").unwrap(), 2);
        assert_eq!(
            c.u16("c"),
            Err(DecodeError::Truncated {
                what: "c",
                needed: 1
            })
        );
        assert!(matches!(
            c.bounded(5, 4, "d"),
            Err(DecodeError::TooLong { .. })
        ));
        assert_eq!(c.u8("e").unwrap(), 9);
        assert!(c.is_empty());
    }

    #[test]
    fn little_endian_and_c_strings() {
        let mut c = Cursor::new(b"\x01\x02\x03abc\0z");
        assert_eq!(c.u8("a").unwrap(), 1);
        assert_eq!(c.u16_le("b").unwrap(), 0x0302);
        assert_eq!(c.cstr("c").unwrap(), b"abc");
        assert_eq!(c.cstr("d"), Err(DecodeError::truncated("d")));
        assert_eq!(c.cstr_or_rest(), b"z");
        assert!(c.u32_le("e").is_err());
        assert_eq!(DecodeError::truncated("x").to_string(), "truncated x");
    }

    #[test]
    fn lines() {
        assert_eq!(next_line(b"a\r\nb", 4).unwrap(), Some((&b"a"[..], 3)));
        assert_eq!(next_line(b"ab\n", 4).unwrap(), Some((&b"ab"[..], 3)));
        assert_eq!(next_line(b"ab", 4).unwrap(), None);
        assert!(next_line(b"abcdefgh", 4).is_err());
        assert!(next_line(b"abcdefgh\n", 4).is_err());
    }

    proptest! {
        #[test]
        fn lines_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..64), max in 0usize..32) {
            if let Ok(Some((l, n))) = next_line(&buf, max) {
                prop_assert!(l.len() <= max && n <= buf.len());
            }
        }

        #[test]
        fn never_panics(buf in proptest::collection::vec(any::<u8>(), 0..64), n in 0usize..100) {
            let mut c = Cursor::new(&buf);
            let _ = c.take(n, "x");
            let _ = c.u64("y");
            let _ = c.bounded(n, 10, "z");
            prop_assert!(c.pos() <= buf.len());
        }
    }
}
