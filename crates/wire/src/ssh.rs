//! SSH transport (RFC 4253) up to the server's host key: the identification banner, binary
//! packets before encryption, `KEXINIT`, and the curve25519 key exchange messages (RFC 8731,
//! RFC 5656 §4 `SSH_MSG_KEX_ECDH_INIT`/`REPLY`). The exchange hash input is built here; the
//! crypto (X25519, SHA-256, signature checks) lives with the probe.

use crate::cursor::{Cursor, DecodeError, text_upto};

/// RFC 4253 §4.2: the identification line is at most 255 bytes including CR LF.
pub const MAX_BANNER_LINE: usize = 255;
/// Lines a server may send before its identification (RFC 4253 §4.2 allows some); we bound them.
pub const MAX_PREAMBLE_LINES: usize = 20;
/// RFC 4253 §6.1: implementations must handle packets of 35000 bytes.
pub const MAX_PACKET: usize = 35_000;

pub const MSG_DISCONNECT: u8 = 1;
pub const MSG_IGNORE: u8 = 2;
pub const MSG_UNIMPLEMENTED: u8 = 3;
pub const MSG_DEBUG: u8 = 4;
pub const MSG_KEXINIT: u8 = 20;
pub const MSG_KEX_ECDH_INIT: u8 = 30;
pub const MSG_KEX_ECDH_REPLY: u8 = 31;

/// What we send as our identification.
pub const CLIENT_ID: &str = "SSH-2.0-Portwarden_probe";

/// The server's identification line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Banner {
    /// The whole line without CR LF (e.g. `SSH-2.0-OpenSSH_9.2p1 Debian-2`).
    pub line: String,
    /// `2.0` (or `1.99`, which means 2.0 too).
    pub proto: String,
    /// `OpenSSH_9.2p1`.
    pub software: String,
    pub comments: Option<String>,
    /// Lines the server sent before its identification.
    pub preamble: Vec<String>,
}

/// Parses the identification from the start of the stream: `Ok(Some((banner, used)))`,
/// `Ok(None)` needs more bytes. Anything that is not an SSH server fails fast: an over-long
/// line, a NUL byte, or too many preamble lines.
pub fn parse_banner(buf: &[u8]) -> Result<Option<(Banner, usize)>, DecodeError> {
    let mut pos = 0;
    let mut preamble = Vec::new();
    loop {
        let rest = &buf[pos..];
        let nl = rest
            .iter()
            .take(MAX_BANNER_LINE + 1)
            .position(|b| *b == b'\n');
        let Some(nl) = nl else {
            if rest.len() > MAX_BANNER_LINE {
                return Err(DecodeError::invalid(
                    "no line end within 255 bytes: not an SSH identification",
                ));
            }
            if rest.contains(&0) {
                return Err(DecodeError::invalid("NUL byte in the SSH identification"));
            }
            // Fail fast on binary or obviously different protocols.
            if !rest.is_empty()
                && preamble.is_empty()
                && !b"SSH-".starts_with(&rest[..rest.len().min(4)])
                && rest
                    .iter()
                    .any(|b| !(0x20..0x7f).contains(b) && *b != b'\r')
            {
                return Err(DecodeError::invalid(
                    "binary data where an SSH identification was expected",
                ));
            }
            return Ok(None);
        };
        let raw = &rest[..nl];
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.contains(&0) {
            return Err(DecodeError::invalid("NUL byte in the SSH identification"));
        }
        pos += nl + 1;
        if let Some(id) = line.strip_prefix(b"SSH-") {
            let s = text_upto(id, MAX_BANNER_LINE);
            let (proto, rest) = s.split_once('-').ok_or_else(|| {
                DecodeError::invalid("SSH identification without a software version")
            })?;
            let (software, comments) = match rest.split_once(' ') {
                Some((sw, c)) => (sw.to_string(), Some(c.to_string())),
                None => (rest.to_string(), None),
            };
            return Ok(Some((
                Banner {
                    line: text_upto(line, MAX_BANNER_LINE),
                    proto: proto.to_string(),
                    software,
                    comments,
                    preamble,
                },
                pos,
            )));
        }
        if preamble.len() >= MAX_PREAMBLE_LINES {
            return Err(DecodeError::invalid(
                "no SSH identification within the first 20 lines",
            ));
        }
        preamble.push(text_upto(line, MAX_BANNER_LINE));
    }
}

/// Splits one unencrypted binary packet: `Ok(Some((payload, used)))`.
pub fn parse_packet(buf: &[u8]) -> Result<Option<(&[u8], usize)>, DecodeError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > MAX_PACKET {
        return Err(DecodeError::TooLong {
            what: "SSH packet",
            len,
            limit: MAX_PACKET,
        });
    }
    let pad = buf[4] as usize;
    if len < pad + 1 + 1 {
        return Err(DecodeError::invalid(format!(
            "SSH packet length {len} too small for padding {pad}"
        )));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    Ok(Some((&buf[5..4 + len - pad], 4 + len)))
}

/// Wraps a payload in a binary packet with 4..=11 bytes of zero padding to a multiple of 8
/// (before encryption the padding's content does not matter).
pub fn packet(payload: &[u8]) -> Vec<u8> {
    let mut pad = 8 - ((4 + 1 + payload.len()) % 8);
    if pad < 4 {
        pad += 8;
    }
    let len = 1 + payload.len() + pad;
    let mut out = Vec::with_capacity(4 + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.push(pad as u8);
    out.extend_from_slice(payload);
    out.extend(std::iter::repeat_n(0u8, pad));
    out
}

pub fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// Encodes unsigned big-endian bytes as an SSH `mpint` (RFC 4251 §5).
pub fn put_mpint(out: &mut Vec<u8>, be: &[u8]) {
    let start = be.iter().position(|b| *b != 0).unwrap_or(be.len());
    let v = &be[start..];
    if v.first().is_some_and(|b| b & 0x80 != 0) {
        out.extend_from_slice(&((v.len() + 1) as u32).to_be_bytes());
        out.push(0);
    } else {
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
    }
    out.extend_from_slice(v);
}

fn string<'a>(c: &mut Cursor<'a>, what: &'static str) -> Result<&'a [u8], DecodeError> {
    let n = c.u32(what)? as usize;
    c.bounded(n, MAX_PACKET, what)
}

/// `KEXINIT`'s algorithm lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KexInit {
    pub kex: Vec<String>,
    pub host_key: Vec<String>,
    pub cipher_c2s: Vec<String>,
    pub cipher_s2c: Vec<String>,
    pub mac_c2s: Vec<String>,
    pub mac_s2c: Vec<String>,
    pub compression_c2s: Vec<String>,
    pub compression_s2c: Vec<String>,
    pub first_kex_follows: bool,
}

fn name_list(c: &mut Cursor<'_>, what: &'static str) -> Result<Vec<String>, DecodeError> {
    let b = string(c, what)?;
    if b.is_empty() {
        return Ok(Vec::new());
    }
    Ok(text_upto(b, 8192)
        .split(',')
        .take(256)
        .map(str::to_string)
        .collect())
}

/// Parses a `KEXINIT` payload (starting with the message number).
pub fn parse_kexinit(payload: &[u8]) -> Result<KexInit, DecodeError> {
    let mut c = Cursor::new(payload);
    let m = c.u8("message number")?;
    if m != MSG_KEXINIT {
        return Err(DecodeError::invalid(format!(
            "expected KEXINIT (20), got message {m}"
        )));
    }
    c.skip(16, "cookie")?;
    let k = KexInit {
        kex: name_list(&mut c, "kex algorithms")?,
        host_key: name_list(&mut c, "host key algorithms")?,
        cipher_c2s: name_list(&mut c, "ciphers")?,
        cipher_s2c: name_list(&mut c, "ciphers")?,
        mac_c2s: name_list(&mut c, "macs")?,
        mac_s2c: name_list(&mut c, "macs")?,
        compression_c2s: name_list(&mut c, "compression")?,
        compression_s2c: name_list(&mut c, "compression")?,
        first_kex_follows: {
            name_list(&mut c, "languages")?;
            name_list(&mut c, "languages")?;
            c.u8("first_kex_packet_follows")? != 0
        },
    };
    Ok(k)
}

/// Our `KEXINIT` payload. We only ever reach the server's `KEX_ECDH_REPLY`, so the cipher and
/// MAC lists are common ones the server will accept; `kex` and `host_key` decide what we get.
pub fn kexinit(cookie: [u8; 16], kex: &[&str], host_key: &[&str]) -> Vec<u8> {
    let mut p = vec![MSG_KEXINIT];
    p.extend_from_slice(&cookie);
    let ciphers = "chacha20-poly1305@openssh.com,aes128-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com";
    let macs = "hmac-sha2-256-etm@openssh.com,hmac-sha2-256,hmac-sha2-512";
    for l in [
        kex.join(","),
        host_key.join(","),
        ciphers.into(),
        ciphers.into(),
        macs.into(),
        macs.into(),
        "none".into(),
        "none".into(),
        String::new(),
        String::new(),
    ] {
        put_string(&mut p, l.as_bytes());
    }
    p.push(0);
    p.extend_from_slice(&[0, 0, 0, 0]);
    p
}

/// `SSH_MSG_KEX_ECDH_INIT` with our ephemeral public key.
pub fn ecdh_init(q_c: &[u8]) -> Vec<u8> {
    let mut p = vec![MSG_KEX_ECDH_INIT];
    put_string(&mut p, q_c);
    p
}

/// `SSH_MSG_KEX_ECDH_REPLY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcdhReply<'a> {
    /// The host key blob; its SHA-256 is the fingerprint `ssh-keygen -l` shows.
    pub host_key: &'a [u8],
    pub q_s: &'a [u8],
    pub signature: &'a [u8],
}

pub fn parse_ecdh_reply(payload: &[u8]) -> Result<EcdhReply<'_>, DecodeError> {
    let mut c = Cursor::new(payload);
    let m = c.u8("message number")?;
    if m != MSG_KEX_ECDH_REPLY {
        return Err(DecodeError::invalid(format!(
            "expected KEX_ECDH_REPLY (31), got message {m}"
        )));
    }
    Ok(EcdhReply {
        host_key: string(&mut c, "host key")?,
        q_s: string(&mut c, "server public key")?,
        signature: string(&mut c, "signature")?,
    })
}

/// `SSH_MSG_DISCONNECT` with reason 11 (`SSH_DISCONNECT_BY_APPLICATION`), sent in the clear
/// before `NEWKEYS` so the server logs a polite goodbye instead of a reset.
pub fn disconnect(description: &str) -> Vec<u8> {
    let mut p = vec![MSG_DISCONNECT];
    p.extend_from_slice(&11u32.to_be_bytes());
    put_string(&mut p, description.as_bytes());
    put_string(&mut p, b"");
    p
}

/// `SSH_MSG_DISCONNECT`: reason code and description.
pub fn parse_disconnect(payload: &[u8]) -> Result<(u32, String), DecodeError> {
    let mut c = Cursor::new(payload);
    c.u8("message number")?;
    let code = c.u32("reason code")?;
    let desc = text_upto(string(&mut c, "description")?, 256);
    Ok((code, desc))
}

/// A host key blob split into its type and fields (RFC 4253 §6.6, RFC 5656 §3.1, RFC 8709).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKey<'a> {
    Ed25519(&'a [u8]),
    /// Public exponent and modulus, unsigned big-endian (mpint sign byte removed).
    Rsa {
        e: &'a [u8],
        n: &'a [u8],
    },
    /// Curve name (`nistp256`...) and the uncompressed point.
    Ecdsa {
        curve: String,
        q: &'a [u8],
    },
    Other(String),
}

fn unsigned(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    &b[start..]
}

pub fn parse_host_key(blob: &[u8]) -> Result<(String, HostKey<'_>), DecodeError> {
    let mut c = Cursor::new(blob);
    let kind = text_upto(string(&mut c, "key type")?, 64);
    let k = match kind.as_str() {
        "ssh-ed25519" => HostKey::Ed25519(string(&mut c, "ed25519 key")?),
        "ssh-rsa" => {
            let e = unsigned(string(&mut c, "rsa e")?);
            let n = unsigned(string(&mut c, "rsa n")?);
            HostKey::Rsa { e, n }
        }
        k if k.starts_with("ecdsa-sha2-") => HostKey::Ecdsa {
            curve: text_upto(string(&mut c, "curve")?, 32),
            q: string(&mut c, "ecdsa point")?,
        },
        other => HostKey::Other(other.to_string()),
    };
    Ok((kind, k))
}

/// A signature blob: algorithm name and signature bytes.
pub fn parse_signature(blob: &[u8]) -> Result<(String, &[u8]), DecodeError> {
    let mut c = Cursor::new(blob);
    let alg = text_upto(string(&mut c, "signature algorithm")?, 64);
    let sig = string(&mut c, "signature")?;
    Ok((alg, sig))
}

/// An ECDSA signature (`mpint r`, `mpint s`) as fixed-width `r || s` of `width` bytes each.
pub fn ecdsa_fixed(sig: &[u8], width: usize) -> Result<Vec<u8>, DecodeError> {
    let mut c = Cursor::new(sig);
    let mut out = Vec::with_capacity(2 * width);
    for what in ["ecdsa r", "ecdsa s"] {
        let v = unsigned(string(&mut c, "ecdsa scalar")?);
        if v.len() > width {
            return Err(DecodeError::invalid(format!(
                "{what} is longer than the curve"
            )));
        }
        out.extend(std::iter::repeat_n(0u8, width - v.len()));
        out.extend_from_slice(v);
    }
    Ok(out)
}

/// The bytes hashed into the exchange hash `H` for curve25519-sha256 (RFC 8731 §3.1,
/// RFC 5656 §4): `V_C, V_S, I_C, I_S, K_S, Q_C, Q_S, K`.
#[allow(clippy::too_many_arguments)]
pub fn exchange_hash_input(
    v_c: &[u8],
    v_s: &[u8],
    i_c: &[u8],
    i_s: &[u8],
    k_s: &[u8],
    q_c: &[u8],
    q_s: &[u8],
    k: &[u8],
) -> Vec<u8> {
    let mut h = Vec::new();
    for s in [v_c, v_s, i_c, i_s, k_s, q_c, q_s] {
        put_string(&mut h, s);
    }
    put_mpint(&mut h, k);
    h
}

/// Standard base64 without padding, as OpenSSH prints fingerprints (`SHA256:...`).
pub fn base64_nopad(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len() * 4 / 3 + 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn banner() {
        let (b, n) = parse_banner(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\nxx")
            .unwrap()
            .unwrap();
        assert_eq!(n, 40);
        assert_eq!(b.proto, "2.0");
        assert_eq!(b.software, "OpenSSH_9.2p1");
        assert_eq!(b.comments.as_deref(), Some("Debian-2+deb12u3"));
        let (b, _) = parse_banner(b"hello\r\nSSH-1.99-x\n").unwrap().unwrap();
        assert_eq!(b.preamble, vec!["hello".to_string()]);
        assert_eq!(parse_banner(b"SSH-2.0-Open").unwrap(), None);
        assert!(parse_banner(&[0x20, 0, 0, 2, 0, 0]).is_err());
        assert!(parse_banner(b"\x10\x0e\x00\x04MQTT").is_err());
        assert!(parse_banner(&[b'a'; 300]).is_err());
    }

    #[test]
    fn packets_and_kexinit() {
        let k = kexinit([7; 16], &["curve25519-sha256"], &["ssh-ed25519"]);
        let p = packet(&k);
        assert_eq!(p.len() % 8, 0);
        let (payload, used) = parse_packet(&p).unwrap().unwrap();
        assert_eq!(used, p.len());
        assert_eq!(payload, &k[..]);
        let ki = parse_kexinit(payload).unwrap();
        assert_eq!(ki.kex, vec!["curve25519-sha256"]);
        assert_eq!(ki.host_key, vec!["ssh-ed25519"]);
        assert!(!ki.first_kex_follows);
        assert!(parse_packet(&[0xff, 0xff, 0xff, 0xff, 4]).is_err());
        assert_eq!(
            parse_disconnect(&disconnect("bye")).unwrap(),
            (11, "bye".to_string())
        );
    }

    #[test]
    fn mpint_and_base64() {
        let mut v = Vec::new();
        put_mpint(&mut v, &[0, 0, 0x80, 1]);
        assert_eq!(v, vec![0, 0, 0, 3, 0, 0x80, 1]);
        let mut v = Vec::new();
        put_mpint(&mut v, &[0, 0]);
        assert_eq!(v, vec![0, 0, 0, 0]);
        assert_eq!(base64_nopad(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_nopad(b"fooba"), "Zm9vYmE");
        assert_eq!(base64_nopad(b"f"), "Zg");
        assert_eq!(
            ecdsa_fixed(&[0, 0, 0, 2, 0, 0x81, 0, 0, 0, 1, 5], 4).unwrap(),
            vec![0, 0, 0, 0x81, 0, 0, 0, 5]
        );
    }

    proptest! {
        #[test]
        fn never_panics(buf in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(Some((_, n))) = parse_banner(&buf) { prop_assert!(n <= buf.len()); }
            if let Ok(Some((p, n))) = parse_packet(&buf) {
                prop_assert!(n <= buf.len());
                let _ = parse_kexinit(p);
                let _ = parse_ecdh_reply(p);
                let _ = parse_disconnect(p);
            }
            let _ = parse_kexinit(&buf);
            let _ = parse_host_key(&buf);
            let _ = parse_signature(&buf);
            let _ = ecdsa_fixed(&buf, 32);
        }
    }
}
