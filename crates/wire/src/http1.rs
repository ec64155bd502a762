//! A minimal HTTP/1.1 client codec: a GET request and a bounded response parser
//! (status line, headers, `Content-Length` or chunked body, or body to EOF).
//!
//! Spec: RFC 9112 "HTTP/1.1": section 4 (status line), 5 (field syntax), 6.3 (message body
//! length: chunked beats Content-Length; otherwise read to close), 7.1 (chunked transfer
//! coding). Basic authentication: RFC 7617 (base64 of `user:password`, RFC 4648 alphabet).
//!
//! ```
//! use portwarden_wire::http1;
//! let r = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
//! let (resp, used) = http1::parse_response(r, false, &http1::Limits::default()).unwrap().unwrap();
//! assert_eq!((resp.status, resp.body.as_slice(), used), (200, &b"{}"[..], r.len()));
//! ```

use crate::cursor::{DecodeError, text};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most bytes of status line + headers.
    pub max_head: usize,
    /// Most body bytes.
    pub max_body: usize,
    /// Most header fields.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 16 * 1024,
            max_body: 256 * 1024,
            max_headers: 100,
        }
    }
}

/// `GET path HTTP/1.1` with `Host`, optional `Authorization: Basic`, and `Connection:
/// keep-alive` or `close`. CR and LF are removed from every value (no header injection).
pub fn get_request(
    host: &str,
    path: &str,
    basic: Option<(&str, &str)>,
    user_agent: &str,
    keep_alive: bool,
) -> Vec<u8> {
    let clean = |s: &str| s.replace(['\r', '\n'], "");
    let mut r = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {}\r\nAccept: application/json\r\nConnection: {}\r\n",
        clean(path),
        clean(host),
        clean(user_agent),
        if keep_alive { "keep-alive" } else { "close" }
    );
    if let Some((u, p)) = basic {
        r.push_str("Authorization: Basic ");
        r.push_str(&base64(format!("{}:{}", clean(u), clean(p)).as_bytes()));
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// Standard base64 with padding (RFC 4648 section 4).
pub fn base64(data: &[u8]) -> String {
    crate::base64::encode(data)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

/// Parses a response from `buf`. `eof`: the peer closed, so a body without a length ends here.
/// `Ok(None)`: more bytes needed.
pub fn parse_response(
    buf: &[u8],
    eof: bool,
    limits: &Limits,
) -> Result<Option<(Response, usize)>, DecodeError> {
    let window = &buf[..buf.len().min(limits.max_head)];
    let Some(head_end) = window.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() >= limits.max_head {
            return Err(DecodeError::TooLong {
                what: "HTTP response head",
                len: buf.len(),
                limit: limits.max_head,
            });
        }
        if !buf.is_empty() && !b"HTTP/".starts_with(&buf[..buf.len().min(5)]) {
            return Err(not_http(buf));
        }
        return Ok(None);
    };
    let head = &buf[..head_end];
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status_line = lines.next().unwrap_or_default();
    let (status, reason) = parse_status_line(status_line).ok_or_else(|| not_http(buf))?;
    let mut headers = Vec::new();
    for l in lines {
        if headers.len() >= limits.max_headers {
            return Err(DecodeError::TooLong {
                what: "HTTP header count",
                len: headers.len() + 1,
                limit: limits.max_headers,
            });
        }
        let Some(colon) = l.iter().position(|&b| b == b':') else {
            return Err(DecodeError::invalid(format!(
                "HTTP header line without a colon: `{}`",
                crate::printable::escape(l, 64)
            )));
        };
        headers.push((
            text(&l[..colon]).trim().to_string(),
            text(&l[colon + 1..]).trim().to_string(),
        ));
    }
    let mut resp = Response {
        status,
        reason,
        headers,
        body: Vec::new(),
    };
    let body_start = head_end + 4;
    let rest = &buf[body_start..];
    let no_body = status / 100 == 1 || status == 204 || status == 304;
    if no_body {
        return Ok(Some((resp, body_start)));
    }
    let chunked = resp
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        return match dechunk(rest, limits.max_body)? {
            Some((body, used)) => {
                resp.body = body;
                Ok(Some((resp, body_start + used)))
            }
            None => Ok(None),
        };
    }
    if let Some(cl) = resp.header("content-length") {
        let n: u64 = cl
            .parse()
            .map_err(|_| DecodeError::invalid(format!("bad Content-Length `{cl}`")))?;
        DecodeError::check_len("HTTP body", n, limits.max_body as u64)?;
        let n = n as usize;
        if rest.len() < n {
            return Ok(None);
        }
        resp.body = rest[..n].to_vec();
        return Ok(Some((resp, body_start + n)));
    }
    DecodeError::check_len("HTTP body", rest.len() as u64, limits.max_body as u64)?;
    if eof {
        resp.body = rest.to_vec();
        Ok(Some((resp, buf.len())))
    } else {
        Ok(None)
    }
}

fn not_http(buf: &[u8]) -> DecodeError {
    DecodeError::invalid(format!(
        "not an HTTP response: `{}`",
        crate::printable::escape(buf, 48)
    ))
}

fn parse_status_line(l: &[u8]) -> Option<(u16, String)> {
    let rest = l.strip_prefix(b"HTTP/1.")?;
    let rest = rest.get(1..)?.strip_prefix(b" ")?;
    let code = rest.get(..3)?;
    if !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let status = std::str::from_utf8(code).ok()?.parse().ok()?;
    let reason = text(rest.get(4..).unwrap_or_default());
    Some((status, reason))
}

/// Decodes a chunked body. `Ok(None)`: incomplete.
fn dechunk(buf: &[u8], max_body: usize) -> Result<Option<(Vec<u8>, usize)>, DecodeError> {
    let mut pos = 0;
    let mut body = Vec::new();
    loop {
        let Some(end) = find_crlf(&buf[pos..buf.len().min(pos + 1024)]) else {
            if buf.len() - pos >= 1024 {
                return Err(DecodeError::invalid("chunk size line too long"));
            }
            return Ok(None);
        };
        let line = &buf[pos..pos + end];
        let size_txt = text(line);
        let size_txt = size_txt.split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(size_txt, 16)
            .map_err(|_| DecodeError::invalid(format!("bad chunk size `{size_txt}`")))?;
        DecodeError::check_len("HTTP body", body.len() as u64 + size, max_body as u64)?;
        pos += end + 2;
        if size == 0 {
            // Trailers until an empty line.
            loop {
                let Some(e) = find_crlf(&buf[pos..]) else {
                    return Ok(None);
                };
                pos += e + 2;
                if e == 0 {
                    return Ok(Some((body, pos)));
                }
            }
        }
        let size = size as usize;
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return Err(DecodeError::invalid("chunk not followed by CRLF"));
        }
        pos += size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_rfc4648_vectors() {
        // RFC 4648 section 10 test vectors.
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
        // RFC 7617 section 2 example.
        let r = String::from_utf8(get_request(
            "h",
            "/",
            Some(("Aladdin", "open sesame")),
            "pw",
            false,
        ))
        .unwrap();
        assert!(
            r.contains("Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n"),
            "{r}"
        );
    }

    #[test]
    fn parses_lengths_and_chunks() {
        let l = Limits::default();
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5;x=1\r\npedia\r\n0\r\n\r\n";
        let (resp, used) = parse_response(r, false, &l).unwrap().unwrap();
        assert_eq!(resp.body, b"Wikipedia");
        assert_eq!(used, r.len());
        assert_eq!(parse_response(&r[..r.len() - 2], false, &l).unwrap(), None);
        let r =
            b"HTTP/1.0 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"security\"\r\n\r\nno";
        assert_eq!(parse_response(r, false, &l).unwrap(), None);
        let (resp, _) = parse_response(r, true, &l).unwrap().unwrap();
        assert_eq!(resp.status, 401);
        assert_eq!(resp.body, b"no");
        assert!(parse_response(b"+PONG\r\n", false, &l).is_err());
        assert!(
            parse_response(
                b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
                false,
                &l
            )
            .is_err()
        );
        assert!(
            parse_response(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffff\r\n",
                false,
                &l
            )
            .is_err()
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600), eof in proptest::prelude::any::<bool>()) {
            let l = Limits { max_head: 200, max_body: 200, max_headers: 5 };
            if let Ok(Some((r, used))) = parse_response(&bytes, eof, &l) {
                proptest::prop_assert!(used <= bytes.len());
                proptest::prop_assert!(r.body.len() <= 200);
            }
        }

        #[test]
        fn prefixed_http_never_panics(tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let mut b = b"HTTP/1.1 200 OK\r\n".to_vec();
            b.extend(tail);
            let _ = parse_response(&b, true, &Limits::default());
        }
    }
}
