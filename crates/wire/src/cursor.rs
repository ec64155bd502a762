//! A bounds-checked reader over a byte slice, and the error every protocol decoder returns.
//!
//! Decoders never index a slice directly: every read goes through [`Cursor`], which fails with
//! [`DecodeError::Truncated`] instead of panicking when the bytes run out.

/// Why bytes from a peer could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A complete frame ended before a field it promised.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A length field (or count, or nesting depth) above what we accept.
    #[error("{what} of {len} is above the limit of {max}")]
    TooLarge {
        what: &'static str,
        len: u64,
        max: u64,
    },
    /// Bytes that this protocol never sends in this place.
    #[error("{0}")]
    Malformed(String),
}

impl DecodeError {
    pub fn malformed(msg: impl Into<String>) -> Self {
        DecodeError::Malformed(msg.into())
    }

    /// Fails with [`DecodeError::TooLarge`] when `len > max`.
    pub fn check_len(what: &'static str, len: u64, max: u64) -> Result<(), DecodeError> {
        if len > max {
            Err(DecodeError::TooLarge { what, len, max })
        } else {
            Ok(())
        }
    }
}

/// Reads fields from a slice, front to back.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// What is being decoded, for error messages.
    what: &'static str,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Cursor { buf, pos: 0, what }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated(self.what));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn skip(&mut self, n: usize) -> Result<(), DecodeError> {
        self.take(n).map(|_| ())
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub fn u16_le(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub fn u16_be(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub fn u24_le(&mut self) -> Result<u32, DecodeError> {
        let b: [u8; 3] = self.array()?;
        Ok(u32::from(b[0]) | u32::from(b[1]) << 8 | u32::from(b[2]) << 16)
    }

    pub fn u32_le(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn i32_le(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_le_bytes(self.array()?))
    }

    pub fn i32_be(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    pub fn u64_le(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub fn i64_le(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    pub fn f64_le(&mut self) -> Result<f64, DecodeError> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    /// Bytes up to a NUL (consumed, not returned).
    pub fn cstr(&mut self) -> Result<&'a [u8], DecodeError> {
        let rest = self.rest();
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(DecodeError::Truncated(self.what))?;
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
}

/// Lossy UTF-8 for text fields (versions, messages); control characters are escaped later by
/// [`crate::printable::escape`] where the text is shown.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_never_panics() {
        let mut c = Cursor::new(b"\x01\x02\x03abc\0z", "test");
        assert_eq!(c.u8().unwrap(), 1);
        assert_eq!(c.u16_le().unwrap(), 0x0302);
        assert_eq!(c.cstr().unwrap(), b"abc");
        assert_eq!(c.cstr(), Err(DecodeError::Truncated("test")));
        assert_eq!(c.cstr_or_rest(), b"z");
        assert!(c.u32_le().is_err());
    }
}
