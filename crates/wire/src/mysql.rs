//! MySQL / MariaDB client/server protocol: packets, the initial handshake (protocol 10), ERR/OK,
//! the login (HandshakeResponse41, SSLRequest, AuthSwitchRequest), `COM_QUERY` and text result
//! sets.
//!
//! Spec: MySQL Source Code Documentation, "Client/Server Protocol": "MySQL Packets",
//! "Protocol::HandshakeV10", "Protocol::HandshakeResponse41", "Protocol::SSLRequest",
//! "Protocol::AuthSwitchRequest", "OK_Packet", "ERR_Packet", "EOF_Packet", "Text Resultset",
//! "Protocol::LengthEncodedInteger"; authentication methods "Native Authentication"
//! (`mysql_native_password`) and "Caching SHA2 Password Authentication".
//!
//! Why the login is hand-written instead of using `mysql_async`: that crate opens its own socket
//! (no way to hand it ours), so phase timings would be guesses and the connect would escape the
//! probe's deadline accounting; the login we need is about fifty lines over these codecs.

use crate::cursor::{Cursor, DecodeError, text};

/// Largest packet payload we accept (handshakes and our small result sets stay far below).
pub const MAX_PACKET: usize = 64 * 1024;

pub const CLIENT_LONG_PASSWORD: u32 = 1;
pub const CLIENT_CONNECT_WITH_DB: u32 = 8;
pub const CLIENT_PROTOCOL_41: u32 = 0x200;
pub const CLIENT_SSL: u32 = 0x800;
pub const CLIENT_TRANSACTIONS: u32 = 0x2000;
pub const CLIENT_SECURE_CONNECTION: u32 = 0x8000;
pub const CLIENT_PLUGIN_AUTH: u32 = 0x8_0000;

/// `utf8mb4_general_ci`.
const CHARSET_UTF8MB4: u8 = 45;

/// One packet split off a buffer: `(sequence id, payload, bytes used)`.
pub type Split<'a> = (u8, &'a [u8], usize);

/// Splits one packet off the front of `buf`: `(sequence id, payload, bytes used)`.
/// `Ok(None)` when more bytes are needed.
pub fn split_packet(buf: &[u8], max: usize) -> Result<Option<Split<'_>>, DecodeError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from(buf[0]) | u32::from(buf[1]) << 8 | u32::from(buf[2]) << 16;
    DecodeError::check_len("MySQL packet length", u64::from(len), max as u64)?;
    let total = 4 + len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some((buf[3], &buf[4..total], total)))
}

/// Frames a payload as one packet with sequence id `seq`.
pub fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len().min(0xff_ffff) as u32;
    let mut v = Vec::with_capacity(payload.len() + 4);
    v.extend_from_slice(&len.to_le_bytes()[..3]);
    v.push(seq);
    v.extend_from_slice(&payload[..len as usize]);
    v
}

/// The server's greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    pub protocol_version: u8,
    pub server_version: String,
    pub connection_id: u32,
    pub capabilities: u32,
    pub charset: u8,
    pub status: u16,
    /// The 20-byte scramble (nonce) for password hashing.
    pub auth_data: Vec<u8>,
    /// Default authentication plugin, e.g. `mysql_native_password`.
    pub auth_plugin: String,
}

/// An ERR packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrPacket {
    pub code: u16,
    pub sql_state: Option<String>,
    pub message: String,
}

impl ErrPacket {
    /// Errors that mean "alive, but refusing service": too many connections (1040), out of
    /// memory (1037, 1038), host blocked after too many connection errors (1129), the server
    /// is shutting down (1053), too many connections for this user (1203, 1226 = resource
    /// limit), server not accepting (1290 `--read-only`-like option refusals are *not* here).
    pub fn is_unhealthy(&self) -> bool {
        matches!(self.code, 1037 | 1038 | 1040 | 1053 | 1129 | 1203)
    }

    /// Access denied: bad user/password (1045), no access to the database (1044), user has no
    /// grant to connect from this host (1130), password expired (1820, 1862).
    pub fn is_auth(&self) -> bool {
        matches!(self.code, 1044 | 1045 | 1130 | 1698 | 1820 | 1862)
    }

    pub fn summary(&self) -> String {
        match &self.sql_state {
            Some(s) => format!("error {} ({s}): {}", self.code, self.message),
            None => format!("error {}: {}", self.code, self.message),
        }
    }
}

/// The first packet a server sends: a greeting, or an ERR (too many connections, blocked host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Greeting {
    Handshake(Handshake),
    Err(ErrPacket),
}

/// Parses the payload of the server's first packet.
pub fn parse_greeting(payload: &[u8]) -> Result<Greeting, DecodeError> {
    match payload.first() {
        Some(0xff) => Ok(Greeting::Err(parse_err(payload)?)),
        Some(10) => parse_handshake_v10(payload).map(Greeting::Handshake),
        Some(v) => Err(DecodeError::invalid(format!(
            "protocol version {v} in the greeting (expected 10)"
        ))),
        None => Err(DecodeError::truncated("greeting")),
    }
}

fn parse_handshake_v10(payload: &[u8]) -> Result<Handshake, DecodeError> {
    let mut c = Cursor::new(payload);
    let protocol_version = c.u8("protocol version")?;
    let sv = c.cstr("server version")?;
    DecodeError::check_len("server version", sv.len() as u64, 256)?;
    let server_version = text(sv);
    let connection_id = c.u32_le("connection id")?;
    let mut auth_data = c.take(8, "auth data")?.to_vec();
    c.skip(1, "handshake")?; // filler
    let mut capabilities = u32::from(c.u16_le("capability flags")?);
    let mut charset = 0;
    let mut status = 0;
    let mut auth_plugin = String::new();
    if !c.is_empty() {
        charset = c.u8("character set")?;
        status = c.u16_le("status flags")?;
        capabilities |= u32::from(c.u16_le("capability flags")?) << 16;
        let auth_len = c.u8("handshake")?;
        c.skip(10, "handshake")?; // reserved (MariaDB keeps extended capabilities in the last 4)
        if capabilities & CLIENT_SECURE_CONNECTION != 0 {
            // Part 2 is max(13, auth_len - 8) bytes, the last being a NUL.
            let n = (usize::from(auth_len).saturating_sub(8)).max(13);
            let part2 = c.take(n.min(c.remaining()), "auth data")?;
            let part2 = part2.strip_suffix(&[0]).unwrap_or(part2);
            auth_data.extend_from_slice(part2);
        }
        if capabilities & CLIENT_PLUGIN_AUTH != 0 {
            auth_plugin = text(c.cstr_or_rest());
        }
    }
    Ok(Handshake {
        protocol_version,
        server_version,
        connection_id,
        capabilities,
        charset,
        status,
        auth_data,
        auth_plugin,
    })
}

/// Parses an ERR packet payload (starting with 0xff).
pub fn parse_err(payload: &[u8]) -> Result<ErrPacket, DecodeError> {
    let mut c = Cursor::new(payload);
    if c.u8("ERR packet")? != 0xff {
        return Err(DecodeError::invalid("not an ERR packet"));
    }
    let code = c.u16_le("ERR packet")?;
    let mut sql_state = None;
    if c.peek() == Some(b'#') && c.remaining() >= 6 {
        c.skip(1, "ERR packet")?;
        sql_state = Some(text(c.take(5, "ERR packet")?));
    }
    let msg = c.rest();
    Ok(ErrPacket {
        code,
        sql_state,
        message: text(&msg[..msg.len().min(1024)]),
    })
}

/// The client capabilities we announce.
pub fn client_capabilities(with_db: bool, ssl: bool) -> u32 {
    let mut caps = CLIENT_LONG_PASSWORD
        | CLIENT_PROTOCOL_41
        | CLIENT_TRANSACTIONS
        | CLIENT_SECURE_CONNECTION
        | CLIENT_PLUGIN_AUTH;
    if with_db {
        caps |= CLIENT_CONNECT_WITH_DB;
    }
    if ssl {
        caps |= CLIENT_SSL;
    }
    caps
}

fn response_prefix(caps: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(96);
    p.extend_from_slice(&caps.to_le_bytes());
    p.extend_from_slice(&(16u32 << 20).to_le_bytes()); // max packet size we would accept
    p.push(CHARSET_UTF8MB4);
    p.extend_from_slice(&[0u8; 23]);
    p
}

/// `SSLRequest` payload: the first 32 bytes of a HandshakeResponse41 with `CLIENT_SSL`.
pub fn ssl_request(caps: u32) -> Vec<u8> {
    response_prefix(caps | CLIENT_SSL)
}

/// `HandshakeResponse41` payload. NUL bytes in the user or database are dropped.
pub fn handshake_response(
    caps: u32,
    user: &str,
    auth_response: &[u8],
    database: Option<&str>,
    plugin: &str,
) -> Vec<u8> {
    let mut p = response_prefix(caps);
    p.extend(user.bytes().filter(|&b| b != 0));
    p.push(0);
    let auth = &auth_response[..auth_response.len().min(250)];
    p.push(auth.len() as u8);
    p.extend_from_slice(auth);
    if let Some(db) = database.filter(|_| caps & CLIENT_CONNECT_WITH_DB != 0) {
        p.extend(db.bytes().filter(|&b| b != 0));
        p.push(0);
    }
    p.extend(plugin.bytes().filter(|&b| b != 0));
    p.push(0);
    p
}

fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 20];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// The scramble is the first 20 bytes of the auth data (servers send 20 + a NUL).
fn nonce(auth_data: &[u8]) -> &[u8] {
    &auth_data[..auth_data.len().min(20)]
}

/// `mysql_native_password`: SHA1(password) XOR SHA1(nonce + SHA1(SHA1(password))).
/// An empty password gives an empty response.
pub fn native_password(password: &[u8], auth_data: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let h1 = sha1(&[password]);
    let h2 = sha1(&[&h1]);
    let h3 = sha1(&[nonce(auth_data), &h2]);
    h1.iter().zip(h3.iter()).map(|(a, b)| a ^ b).collect()
}

/// `caching_sha2_password` fast path: SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + nonce).
pub fn caching_sha2_password(password: &[u8], auth_data: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    let h1 = sha256(&[password]);
    let h2 = sha256(&[&h1]);
    let h3 = sha256(&[&h2, nonce(auth_data)]);
    h1.iter().zip(h3.iter()).map(|(a, b)| a ^ b).collect()
}

/// What the server says after our login packet (or after an auth round).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthReply {
    Ok,
    Err(ErrPacket),
    /// Use another plugin, with fresh auth data.
    Switch {
        plugin: String,
        data: Vec<u8>,
    },
    /// `0x01` + plugin-specific data (caching_sha2: `0x03` fast auth ok, `0x04` full auth).
    More(Vec<u8>),
}

pub fn parse_auth_reply(payload: &[u8]) -> Result<AuthReply, DecodeError> {
    match payload.first() {
        Some(0x00) => Ok(AuthReply::Ok),
        Some(0xff) => Ok(AuthReply::Err(parse_err(payload)?)),
        Some(0xfe) => {
            let mut c = Cursor::new(&payload[1..]);
            let plugin = text(c.cstr_or_rest());
            let data = c.rest();
            let data = data.strip_suffix(&[0]).unwrap_or(data).to_vec();
            Ok(AuthReply::Switch { plugin, data })
        }
        Some(0x01) => Ok(AuthReply::More(payload[1..].to_vec())),
        Some(b) => Err(DecodeError::invalid(format!(
            "unexpected byte 0x{b:02x} in an authentication reply"
        ))),
        None => Err(DecodeError::truncated("authentication reply")),
    }
}

/// `COM_QUERY` payload.
pub fn com_query(sql: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(sql.len() + 1);
    p.push(0x03);
    p.extend_from_slice(sql.as_bytes());
    p
}

/// `COM_QUIT` payload.
pub fn com_quit() -> [u8; 1] {
    [0x01]
}

/// A length-encoded integer. `None` for the NULL marker `0xfb`.
pub fn lenenc_int(c: &mut Cursor<'_>) -> Result<Option<u64>, DecodeError> {
    Ok(match c.u8("MySQL packet")? {
        0xfb => None,
        0xfc => Some(u64::from(c.u16_le("MySQL packet")?)),
        0xfd => Some(u64::from(c.u24_le("MySQL packet")?)),
        0xfe => Some(c.u64_le("MySQL packet")?),
        0xff => {
            return Err(DecodeError::invalid("0xff is not a length-encoded integer"));
        }
        b => Some(u64::from(b)),
    })
}

fn lenenc_str<'a>(c: &mut Cursor<'a>) -> Result<Option<&'a [u8]>, DecodeError> {
    match lenenc_int(c)? {
        None => Ok(None),
        Some(n) => {
            DecodeError::check_len("length-encoded string", n, MAX_PACKET as u64)?;
            Ok(Some(c.take(n as usize, "MySQL packet")?))
        }
    }
}

/// The answer to a `COM_QUERY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryResult {
    /// OK packet (statements without rows).
    Ok,
    Err(ErrPacket),
    Rows(ResultSet),
}

/// A text result set: column names and rows of nullable text values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResultSet {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl ResultSet {
    /// The value of `column` in the first row (case-insensitive name match).
    pub fn first(&self, column: &str) -> Option<&str> {
        let i = self
            .columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(column))?;
        self.rows.first()?.get(i)?.as_deref()
    }
}

/// Most columns and rows of a result set we accept (our queries return a handful).
pub const MAX_COLUMNS: u64 = 512;
pub const MAX_ROWS: usize = 1024;

fn is_eof(p: &[u8]) -> bool {
    p.first() == Some(&0xfe) && p.len() < 9
}

/// Parses a complete query answer from `buf` (several packets). `Ok(None)`: need more bytes.
/// Works whether or not the server deprecates EOF packets, since we never ask it to.
pub fn parse_query_result(
    buf: &[u8],
    max_packet: usize,
) -> Result<Option<(QueryResult, usize)>, DecodeError> {
    let mut pos = 0;
    let next = |pos: &mut usize| -> Result<Option<&[u8]>, DecodeError> {
        match split_packet(&buf[*pos..], max_packet)? {
            Some((_, p, used)) => {
                *pos += used;
                Ok(Some(p))
            }
            None => Ok(None),
        }
    };
    let Some(first) = next(&mut pos)? else {
        return Ok(None);
    };
    match first.first() {
        Some(0x00) => return Ok(Some((QueryResult::Ok, pos))),
        Some(0xff) => return Ok(Some((QueryResult::Err(parse_err(first)?), pos))),
        Some(0xfb) => return Err(DecodeError::invalid("LOCAL INFILE request")),
        None => return Err(DecodeError::truncated("query result")),
        _ => {}
    }
    let mut c = Cursor::new(first);
    let ncols = lenenc_int(&mut c)?.ok_or_else(|| DecodeError::invalid("NULL column count"))?;
    DecodeError::check_len("column count", ncols, MAX_COLUMNS)?;
    let mut rs = ResultSet::default();
    for _ in 0..ncols {
        let Some(def) = next(&mut pos)? else {
            return Ok(None);
        };
        if def.first() == Some(&0xff) {
            return Ok(Some((QueryResult::Err(parse_err(def)?), pos)));
        }
        let mut c = Cursor::new(def);
        for _ in 0..4 {
            lenenc_str(&mut c)?; // catalog, schema, table, org_table
        }
        let name = lenenc_str(&mut c)?.unwrap_or_default();
        rs.columns.push(text(name));
    }
    // EOF after column definitions.
    let Some(eof) = next(&mut pos)? else {
        return Ok(None);
    };
    if !is_eof(eof) {
        return Err(DecodeError::invalid(
            "expected EOF after column definitions",
        ));
    }
    loop {
        let Some(p) = next(&mut pos)? else {
            return Ok(None);
        };
        if is_eof(p) {
            return Ok(Some((QueryResult::Rows(rs), pos)));
        }
        if p.first() == Some(&0xff) {
            return Ok(Some((QueryResult::Err(parse_err(p)?), pos)));
        }
        if rs.rows.len() >= MAX_ROWS {
            return Err(DecodeError::TooLong {
                what: "rows in a result set",
                len: rs.rows.len() + 1,
                limit: MAX_ROWS,
            });
        }
        let mut c = Cursor::new(p);
        let mut row = Vec::with_capacity(rs.columns.len());
        for _ in 0..ncols {
            row.push(lenenc_str(&mut c)?.map(text));
        }
        rs.rows.push(row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "Protocol::HandshakeV10" example from the MySQL documentation (MySQL 5.5.2, 36 bytes
    /// of payload shown there), with the plugin name section.
    const MYSQL_GREETING: &[u8] = b"\x0a5.5.2-m2\0\x0b\0\0\0\x64\x76\x48\x40\x22\x55\x46\x37\0\xff\xf7\x08\x02\0\x0f\x80\x15\0\0\0\0\0\0\0\0\0\0\x3e\x73\x4f\x27\x70\x79\x6c\x72\x67\x42\x38\x2e\0mysql_native_password\0";

    #[test]
    fn parses_handshake_v10() {
        let Greeting::Handshake(h) = parse_greeting(MYSQL_GREETING).unwrap() else {
            panic!("not a handshake")
        };
        assert_eq!(h.protocol_version, 10);
        assert_eq!(h.server_version, "5.5.2-m2");
        assert_eq!(h.connection_id, 11);
        assert_eq!(h.auth_data.len(), 20);
        assert_eq!(h.auth_plugin, "mysql_native_password");
        assert!(h.capabilities & CLIENT_PROTOCOL_41 != 0);
        assert!(h.capabilities & CLIENT_PLUGIN_AUTH != 0);
    }

    #[test]
    fn parses_err_greetings() {
        // ERR_Packet: 0xff, code 1040 (0x0410), then the message (no SQL state before login).
        let p = b"\xff\x10\x04Too many connections";
        let Greeting::Err(e) = parse_greeting(p).unwrap() else {
            panic!()
        };
        assert_eq!(e.code, 1040);
        assert!(e.is_unhealthy());
        assert_eq!(e.message, "Too many connections");
        let p = b"\xff\x69\x04#HY000Host '10.0.0.1' is blocked because of many connection errors";
        let Greeting::Err(e) = parse_greeting(p).unwrap() else {
            panic!()
        };
        assert_eq!(e.code, 1129);
        assert_eq!(e.sql_state.as_deref(), Some("HY000"));
        assert!(e.is_unhealthy());
        assert!(parse_greeting(b"+PONG\r\n").is_err());
    }

    #[test]
    fn native_password_matches_known_value() {
        // Empty password → empty response; otherwise 20 bytes, deterministic per nonce.
        assert!(native_password(b"", b"x").is_empty());
        let a = native_password(b"secret", b"01234567890123456789");
        assert_eq!(a.len(), 20);
        assert_ne!(a, native_password(b"secret", b"01234567890123456780"));
        // Verify the way a server does: SHA1(nonce + stored) XOR response == SHA1(password),
        // and SHA1(that) == stored, where stored = SHA1(SHA1(password)).
        let stored = sha1(&[&sha1(&[b"secret"])]);
        let h3 = sha1(&[b"01234567890123456789", &stored]);
        let h1: Vec<u8> = a.iter().zip(h3.iter()).map(|(x, y)| x ^ y).collect();
        assert_eq!(sha1(&[&h1]), stored);
        assert_eq!(caching_sha2_password(b"secret", b"n").len(), 32);
    }

    #[test]
    fn frames_and_builds_packets() {
        let p = packet(1, b"abc");
        assert_eq!(p, b"\x03\0\0\x01abc");
        assert_eq!(
            split_packet(&p, MAX_PACKET).unwrap(),
            Some((1, &b"abc"[..], 7))
        );
        assert_eq!(split_packet(&p[..5], MAX_PACKET).unwrap(), None);
        assert!(split_packet(b"\xff\xff\xff\0", 1000).is_err());
        let r = handshake_response(
            client_capabilities(true, false),
            "root",
            &[],
            Some("test"),
            "mysql_native_password",
        );
        assert_eq!(&r[32..], b"root\0\0test\0mysql_native_password\0");
    }

    fn lenenc(s: &str) -> Vec<u8> {
        let mut v = vec![s.len() as u8];
        v.extend_from_slice(s.as_bytes());
        v
    }

    #[test]
    fn parses_text_result_set() {
        // "Text Resultset": column count, column definitions, EOF, rows, EOF.
        let mut buf = packet(1, &[2]);
        for (i, name) in ["Variable_name", "Value"].iter().enumerate() {
            let mut def = Vec::new();
            for part in ["def", "", "", ""] {
                def.extend(lenenc(part));
            }
            def.extend(lenenc(name));
            def.extend(lenenc(name));
            def.extend_from_slice(&[0x0c, 0x21, 0, 0, 1, 0, 0xfd, 0, 0, 0, 0, 0]);
            buf.extend(packet(2 + i as u8, &def));
        }
        buf.extend(packet(4, b"\xfe\0\0\x02\0"));
        let mut row = lenenc("Threads_connected");
        row.extend(lenenc("7"));
        buf.extend(packet(5, &row));
        buf.extend(packet(6, b"\xfe\0\0\x02\0"));
        let (r, used) = parse_query_result(&buf, MAX_PACKET).unwrap().unwrap();
        assert_eq!(used, buf.len());
        let QueryResult::Rows(rs) = r else { panic!() };
        assert_eq!(rs.first("value"), Some("7"));
        assert_eq!(
            parse_query_result(&buf[..buf.len() - 1], MAX_PACKET).unwrap(),
            None
        );
        let ok = packet(1, b"\0\0\0\x02\0\0\0");
        assert_eq!(
            parse_query_result(&ok, MAX_PACKET).unwrap().unwrap().0,
            QueryResult::Ok
        );
    }

    proptest::proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = parse_greeting(&bytes);
            let _ = parse_auth_reply(&bytes);
            let _ = parse_err(&bytes);
            if let Ok(Some((_, _, used))) = split_packet(&bytes, 300) {
                proptest::prop_assert!(used <= bytes.len() && used <= 304);
            }
            if let Ok(Some((_, used))) = parse_query_result(&bytes, 300) {
                proptest::prop_assert!(used <= bytes.len());
            }
        }
    }
}
