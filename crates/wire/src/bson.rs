//! Just enough BSON to ask a MongoDB server `hello` and read its answer.
//!
//! Spec: BSON specification 1.1 (bsonspec.org, "Specification Version 1.1"): a document is an
//! int32 total length, elements (type byte, cstring name, value) and a 0x00 terminator. Every
//! type of the spec is decoded or skipped with bounds; nesting depth and element counts are
//! limited.

use crate::cursor::{Cursor, DecodeError, text};

/// A decoded value. Types we never read (binary, regex, code...) keep only their type byte.
#[derive(Debug, Clone, PartialEq)]
pub enum Bson {
    Double(f64),
    String(String),
    Document(Document),
    Array(Vec<Bson>),
    Bool(bool),
    Null,
    Int32(i32),
    Int64(i64),
    /// Datetime (ms since the epoch).
    DateTime(i64),
    /// Timestamp (increment, seconds) as the raw u64.
    Timestamp(u64),
    /// Binary data (subtype, bytes), e.g. SASL payloads.
    Binary(u8, Vec<u8>),
    /// Anything else, by type byte.
    Other(u8),
}

impl Bson {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Bson::Double(d) => Some(*d),
            Bson::Int32(i) => Some(f64::from(*i)),
            Bson::Int64(i) => Some(*i as f64),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Bson::Double(d) if d.fract() == 0.0 && d.abs() < 9.0e15 => Some(*d as i64),
            Bson::Int32(i) => Some(i64::from(*i)),
            Bson::Int64(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Bson::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Bson::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_document(&self) -> Option<&Document> {
        match self {
            Bson::Document(d) => Some(d),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Bson]> {
        match self {
            Bson::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_binary(&self) -> Option<&[u8]> {
        match self {
            Bson::Binary(_, b) => Some(b),
            _ => None,
        }
    }

    /// Milliseconds since the epoch of a datetime.
    pub fn as_datetime(&self) -> Option<i64> {
        match self {
            Bson::DateTime(ms) => Some(*ms),
            _ => None,
        }
    }
}

/// An ordered document.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Document(pub Vec<(String, Bson)>);

impl Document {
    pub fn get(&self, key: &str) -> Option<&Bson> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// Limits on what a document may make us hold.
pub const MAX_DEPTH: usize = 16;
pub const MAX_ELEMENTS: usize = 16_384;

/// Decodes one document that must span exactly `buf` (as OP_MSG section 0 does once framed).
/// Returns the document and its length (from its own length field, checked against `buf`).
pub fn decode_document(buf: &[u8]) -> Result<(Document, usize), DecodeError> {
    let mut count = 0;
    decode_doc(buf, 0, &mut count)
}

fn decode_doc(
    buf: &[u8],
    depth: usize,
    count: &mut usize,
) -> Result<(Document, usize), DecodeError> {
    DecodeError::check_len("BSON nesting depth", depth as u64, MAX_DEPTH as u64)?;
    let mut c = Cursor::new(buf);
    let len = c.i32_le("BSON document")?;
    if len < 5 || len as usize > buf.len() {
        return Err(DecodeError::invalid(format!(
            "BSON document length {len} does not fit the {} bytes available",
            buf.len()
        )));
    }
    let len = len as usize;
    let body = &buf[4..len];
    let Some((&0, elems)) = body.split_last() else {
        return Err(DecodeError::invalid("BSON document not terminated by 0x00"));
    };
    let mut c = Cursor::new(elems);
    let mut out = Vec::new();
    while !c.is_empty() {
        *count += 1;
        DecodeError::check_len("BSON elements", *count as u64, MAX_ELEMENTS as u64)?;
        let ty = c.u8("BSON element")?;
        let name = text(c.cstr("BSON element")?);
        let v = decode_value(&mut c, ty, depth, count)?;
        out.push((name, v));
    }
    Ok((Document(out), len))
}

fn decode_value(
    c: &mut Cursor<'_>,
    ty: u8,
    depth: usize,
    count: &mut usize,
) -> Result<Bson, DecodeError> {
    let len_prefixed = |c: &mut Cursor<'_>| -> Result<usize, DecodeError> {
        let n = c.i32_le("BSON element")?;
        if n < 0 {
            return Err(DecodeError::invalid("negative BSON length"));
        }
        Ok(n as usize)
    };
    Ok(match ty {
        0x01 => Bson::Double(c.f64_le("BSON element")?),
        0x02 | 0x0d | 0x0e => {
            let n = len_prefixed(c)?;
            if n == 0 {
                return Err(DecodeError::invalid("BSON string length 0"));
            }
            let s = c.take(n, "BSON element")?;
            let s = text(&s[..n - 1]);
            if ty == 0x02 {
                Bson::String(s)
            } else {
                Bson::Other(ty)
            }
        }
        0x03 | 0x04 => {
            let (d, used) = decode_doc(c.rest(), depth + 1, count)?;
            c.skip(used, "BSON element")?;
            if ty == 0x03 {
                Bson::Document(d)
            } else {
                Bson::Array(d.0.into_iter().map(|(_, v)| v).collect())
            }
        }
        0x05 => {
            let n = len_prefixed(c)?;
            let subtype = c.u8("BSON element")?;
            Bson::Binary(subtype, c.take(n, "BSON element")?.to_vec())
        }
        0x06 | 0x0a | 0x7f | 0xff => {
            if ty == 0x0a {
                Bson::Null
            } else {
                Bson::Other(ty)
            }
        }
        0x07 => {
            c.skip(12, "BSON element")?;
            Bson::Other(ty)
        }
        0x08 => match c.u8("BSON element")? {
            0 => Bson::Bool(false),
            1 => Bson::Bool(true),
            b => return Err(DecodeError::invalid(format!("BSON boolean byte {b}"))),
        },
        0x09 => Bson::DateTime(c.i64_le("BSON element")?),
        0x0b => {
            c.cstr("BSON element")?;
            c.cstr("BSON element")?;
            Bson::Other(ty)
        }
        0x0c => {
            let n = len_prefixed(c)?;
            c.skip(n, "BSON element")?;
            c.skip(12, "BSON element")?;
            Bson::Other(ty)
        }
        0x0f => {
            let n = len_prefixed(c)?;
            c.skip(n.saturating_sub(4), "BSON element")?;
            Bson::Other(ty)
        }
        0x10 => Bson::Int32(c.i32_le("BSON element")?),
        0x11 => Bson::Timestamp(c.u64_le("BSON element")?),
        0x12 => Bson::Int64(c.i64_le("BSON element")?),
        0x13 => {
            c.skip(16, "BSON element")?;
            Bson::Other(ty)
        }
        other => {
            return Err(DecodeError::invalid(format!(
                "unknown BSON type 0x{other:02x}"
            )));
        }
    })
}

/// Builds a document from simple values (what our commands need).
#[derive(Debug, Clone, Default)]
pub struct DocBuilder {
    buf: Vec<u8>,
}

impl DocBuilder {
    pub fn new() -> Self {
        DocBuilder {
            buf: vec![0, 0, 0, 0],
        }
    }

    fn key(&mut self, ty: u8, k: &str) {
        self.buf.push(ty);
        self.buf.extend(k.bytes().filter(|&b| b != 0));
        self.buf.push(0);
    }

    pub fn int32(mut self, k: &str, v: i32) -> Self {
        self.key(0x10, k);
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn string(mut self, k: &str, v: &str) -> Self {
        self.key(0x02, k);
        let bytes: Vec<u8> = v.bytes().filter(|&b| b != 0).collect();
        self.buf
            .extend_from_slice(&((bytes.len() + 1) as i32).to_le_bytes());
        self.buf.extend_from_slice(&bytes);
        self.buf.push(0);
        self
    }

    pub fn bool(mut self, k: &str, v: bool) -> Self {
        self.key(0x08, k);
        self.buf.push(u8::from(v));
        self
    }

    pub fn int64(mut self, k: &str, v: i64) -> Self {
        self.key(0x12, k);
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn double(mut self, k: &str, v: f64) -> Self {
        self.key(0x01, k);
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// UTC datetime, milliseconds since the epoch.
    pub fn datetime(mut self, k: &str, ms: i64) -> Self {
        self.key(0x09, k);
        self.buf.extend_from_slice(&ms.to_le_bytes());
        self
    }

    /// Binary data with `subtype` (0 = generic).
    pub fn binary(mut self, k: &str, subtype: u8, data: &[u8]) -> Self {
        self.key(0x05, k);
        self.buf
            .extend_from_slice(&(data.len() as i32).to_le_bytes());
        self.buf.push(subtype);
        self.buf.extend_from_slice(data);
        self
    }

    /// An array of already built documents (keys "0", "1", ...).
    pub fn array_of_documents(mut self, k: &str, docs: &[Vec<u8>]) -> Self {
        let mut a = DocBuilder::new();
        for (i, d) in docs.iter().enumerate() {
            a.key(0x03, &i.to_string());
            a.buf.extend_from_slice(d);
        }
        self.key(0x04, k);
        self.buf.extend_from_slice(&a.finish());
        self
    }

    /// A nested document (already built).
    pub fn document(mut self, k: &str, doc: Vec<u8>) -> Self {
        self.key(0x03, k);
        self.buf.extend_from_slice(&doc);
        self
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.buf.push(0);
        let len = self.buf.len() as i32;
        self.buf[..4].copy_from_slice(&len.to_le_bytes());
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_examples() {
        // bsonspec.org "Examples": {"hello": "world"}.
        let hello = b"\x16\x00\x00\x00\x02hello\x00\x06\x00\x00\x00world\x00\x00";
        let (d, used) = decode_document(hello).unwrap();
        assert_eq!(used, hello.len());
        assert_eq!(d.get("hello").and_then(Bson::as_str), Some("world"));
        assert_eq!(
            DocBuilder::new().string("hello", "world").finish(),
            hello.to_vec()
        );
        // {"BSON": ["awesome", 5.05, 1986]}.
        let arr = b"\x31\x00\x00\x00\x04BSON\x00\x26\x00\x00\x00\x020\x00\x08\x00\x00\x00awesome\x00\x011\x00\x33\x33\x33\x33\x33\x33\x14\x40\x102\x00\xc2\x07\x00\x00\x00\x00";
        let (d, _) = decode_document(arr).unwrap();
        let Some(Bson::Array(a)) = d.get("BSON") else {
            panic!("{d:?}")
        };
        assert_eq!(a.len(), 3);
        assert_eq!(a[2], Bson::Int32(1986));
        assert!((a[1].as_f64().unwrap() - 5.05).abs() < 1e-9);
    }

    #[test]
    fn builds_and_reads_every_built_type() {
        let inner = DocBuilder::new().int32("x", 1).finish();
        let d = DocBuilder::new()
            .int64("i", -5)
            .double("d", 1.5)
            .datetime("t", 1_700_000_000_000)
            .binary("b", 0, b"n,,n=u,r=x")
            .array_of_documents("a", &[inner.clone(), inner])
            .bool("ok", true)
            .finish();
        let (doc, _) = decode_document(&d).unwrap();
        assert_eq!(doc.get("i").and_then(Bson::as_i64), Some(-5));
        assert_eq!(doc.get("d").and_then(Bson::as_f64), Some(1.5));
        assert_eq!(
            doc.get("t").and_then(Bson::as_datetime),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            doc.get("b").and_then(Bson::as_binary),
            Some(&b"n,,n=u,r=x"[..])
        );
        assert_eq!(
            doc.get("a").and_then(Bson::as_array).map(|a| a.len()),
            Some(2)
        );
    }

    #[test]
    fn rejects_bad_lengths_and_depth() {
        assert!(decode_document(b"\xff\xff\xff\x7f\0").is_err());
        assert!(decode_document(b"\x05\0\0\0\x01").is_err());
        assert!(decode_document(b"\x0c\0\0\0\x02a\0\xff\xff\xff\x7f\0").is_err());
        // 20 nested empty documents: beyond MAX_DEPTH.
        let mut doc = DocBuilder::new().finish();
        for _ in 0..20 {
            doc = DocBuilder::new().document("d", doc).finish();
        }
        assert!(matches!(
            decode_document(&doc),
            Err(DecodeError::TooLong { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            if let Ok((_, used)) = decode_document(&bytes) {
                proptest::prop_assert!(used <= bytes.len());
            }
        }
    }
}
