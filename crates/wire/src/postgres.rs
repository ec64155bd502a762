//! PostgreSQL frontend/backend protocol 3.0: just enough for a liveness handshake.
//!
//! Spec: PostgreSQL documentation, chapter "Frontend/Backend Protocol", sections "Message
//! Formats" (StartupMessage, SSLRequest, Authentication*, ErrorResponse, ParameterStatus,
//! BackendKeyData, ReadyForQuery) and "Error and Notice Message Fields".
//!
//! ```
//! use portwarden_wire::postgres::{self, Backend};
//! let startup = postgres::startup_message(&[("user", "postgres"), ("database", "test")]);
//! assert_eq!(&startup[4..8], &196_608i32.to_be_bytes()); // protocol 3.0
//! let reply = b"R\0\0\0\x08\0\0\0\x05"; // AuthenticationMD5Password (+ 4 salt bytes follow)
//! assert!(postgres::parse_backend(reply, postgres::MAX_MESSAGE).is_err()); // truncated salt
//! ```

use crate::cursor::{Cursor, DecodeError, text};

/// Largest backend message we accept (the handshake messages are tiny; an ErrorResponse with a
/// long detail stays well under this).
pub const MAX_MESSAGE: usize = 256 * 1024;

/// Protocol version 3.0 as sent in the StartupMessage.
pub const PROTOCOL_3_0: i32 = 196_608;
/// The SSLRequest code (1234 << 16 | 5679).
pub const SSL_REQUEST_CODE: i32 = 80_877_103;

/// `SSLRequest`: 8 bytes; the server answers one byte, `S` (go ahead with TLS) or `N`.
pub fn ssl_request() -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&8i32.to_be_bytes());
    b[4..].copy_from_slice(&SSL_REQUEST_CODE.to_be_bytes());
    b
}

/// `StartupMessage` with the given parameters (`user` is required by servers).
/// NUL bytes inside names or values are dropped (they would end the string early).
pub fn startup_message(params: &[(&str, &str)]) -> Vec<u8> {
    let mut b = Vec::with_capacity(64);
    b.extend_from_slice(&[0, 0, 0, 0]);
    b.extend_from_slice(&PROTOCOL_3_0.to_be_bytes());
    for (k, v) in params {
        b.extend(k.bytes().filter(|&c| c != 0));
        b.push(0);
        b.extend(v.bytes().filter(|&c| c != 0));
        b.push(0);
    }
    b.push(0);
    let len = b.len() as i32;
    b[..4].copy_from_slice(&len.to_be_bytes());
    b
}

/// `SASLInitialResponse` (type `p`): the chosen mechanism and its first message.
pub fn sasl_initial_response(mechanism: &str, data: &[u8]) -> Vec<u8> {
    let mut b = vec![b'p', 0, 0, 0, 0];
    b.extend(mechanism.bytes().filter(|&c| c != 0));
    b.push(0);
    b.extend_from_slice(&(data.len() as i32).to_be_bytes());
    b.extend_from_slice(data);
    let len = (b.len() - 1) as i32;
    b[1..5].copy_from_slice(&len.to_be_bytes());
    b
}

/// `SASLResponse` (type `p`): the next SASL message.
pub fn sasl_response(data: &[u8]) -> Vec<u8> {
    let mut b = vec![b'p'];
    b.extend_from_slice(&((data.len() + 4) as i32).to_be_bytes());
    b.extend_from_slice(data);
    b
}

/// `Terminate`: a polite goodbye.
pub fn terminate() -> [u8; 5] {
    [b'X', 0, 0, 0, 4]
}

/// The authentication method a server asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    Ok,
    KerberosV5,
    CleartextPassword,
    Md5Password,
    Gss,
    Sspi,
    /// SASL with the offered mechanisms (e.g. `SCRAM-SHA-256`).
    Sasl(Vec<String>),
    /// SASL challenge data (SCRAM `server-first-message`).
    SaslContinue(Vec<u8>),
    /// SASL outcome data (SCRAM `server-final-message`).
    SaslFinal(Vec<u8>),
    Other(i32),
}

impl Auth {
    /// A short name for details and notes.
    pub fn method(&self) -> String {
        match self {
            Auth::Ok => "none (trust)".into(),
            Auth::KerberosV5 => "kerberos".into(),
            Auth::CleartextPassword => "password".into(),
            Auth::Md5Password => "md5".into(),
            Auth::Gss => "gss".into(),
            Auth::Sspi => "sspi".into(),
            Auth::Sasl(m) => format!("sasl ({})", m.join(", ")),
            Auth::SaslContinue(_) | Auth::SaslFinal(_) => "sasl".into(),
            Auth::Other(c) => format!("unknown ({c})"),
        }
    }
}

/// The fields of an ErrorResponse or NoticeResponse that we use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorFields {
    /// `S`/`V`: ERROR, FATAL, PANIC (or a notice level).
    pub severity: String,
    /// `C`: the SQLSTATE, e.g. `57P03`.
    pub code: String,
    /// `M`: the primary message.
    pub message: String,
    /// `D`: detail, when given.
    pub detail: Option<String>,
}

impl ErrorFields {
    /// `FATAL 57P03: the database system is starting up`.
    pub fn summary(&self) -> String {
        let mut s = format!("{} {}: {}", self.severity, self.code, self.message);
        if let Some(d) = &self.detail {
            s.push_str(" (");
            s.push_str(d);
            s.push(')');
        }
        s
    }

    /// SQLSTATEs that mean "alive but not able to serve": the database system is starting up or
    /// shutting down, or in recovery without hot standby (`57P03`), administrator shutdown
    /// (`57P01`), crash shutdown (`57P02`), and class 53, insufficient resources: too many
    /// clients (`53300`), out of memory (`53200`), disk full (`53100`).
    pub fn is_unhealthy(&self) -> bool {
        matches!(self.code.as_str(), "57P01" | "57P02" | "57P03") || self.code.starts_with("53")
    }
}

/// One backend message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Authentication(Auth),
    Error(ErrorFields),
    Notice(ErrorFields),
    ParameterStatus {
        name: String,
        value: String,
    },
    BackendKeyData,
    ReadyForQuery(u8),
    /// A message we do not interpret, by type byte.
    Other(u8),
}

/// Parses one backend message from the start of `buf`. `Ok(None)`: more bytes are needed.
/// `Ok(Some((msg, used)))`: a message and how many bytes it took. A length field above `max`
/// (or below 4) is an error, never an allocation.
pub fn parse_backend(buf: &[u8], max: usize) -> Result<Option<(Backend, usize)>, DecodeError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let ty = buf[0];
    if !ty.is_ascii_alphabetic() {
        return Err(DecodeError::invalid(format!(
            "byte 0x{ty:02x} is not a PostgreSQL message type"
        )));
    }
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(DecodeError::invalid(format!(
            "message length {len} is below 4"
        )));
    }
    let len = len as usize;
    DecodeError::check_len("PostgreSQL message length", len as u64, max as u64)?;
    let total = 1 + len;
    if buf.len() < total {
        return Ok(None);
    }
    let body = &buf[5..total];
    let msg = match ty {
        b'R' => Backend::Authentication(parse_auth(body)?),
        b'E' => Backend::Error(parse_fields(body)?),
        b'N' => Backend::Notice(parse_fields(body)?),
        b'S' => {
            let mut c = Cursor::new(body);
            let name = text(c.cstr("ParameterStatus")?);
            let value = text(c.cstr("ParameterStatus")?);
            Backend::ParameterStatus { name, value }
        }
        b'K' => Backend::BackendKeyData,
        b'Z' => {
            let mut c = Cursor::new(body);
            Backend::ReadyForQuery(c.u8("ReadyForQuery")?)
        }
        other => Backend::Other(other),
    };
    Ok(Some((msg, total)))
}

fn parse_auth(body: &[u8]) -> Result<Auth, DecodeError> {
    let mut c = Cursor::new(body);
    let code = c.i32("Authentication")?;
    Ok(match code {
        0 => Auth::Ok,
        2 => Auth::KerberosV5,
        3 => Auth::CleartextPassword,
        5 => {
            c.skip(4, "Authentication")?; // salt
            Auth::Md5Password
        }
        7 => Auth::Gss,
        9 => Auth::Sspi,
        10 => {
            let mut mechs = Vec::new();
            loop {
                let m = c.cstr("Authentication")?;
                if m.is_empty() {
                    break;
                }
                if mechs.len() < 16 {
                    mechs.push(text(m));
                }
            }
            Auth::Sasl(mechs)
        }
        11 => Auth::SaslContinue(c.rest().to_vec()),
        12 => Auth::SaslFinal(c.rest().to_vec()),
        other => Auth::Other(other),
    })
}

/// Longest field text we keep (messages are shown to humans, escaped and cut again there).
const FIELD_KEEP: usize = 1024;

fn parse_fields(body: &[u8]) -> Result<ErrorFields, DecodeError> {
    let mut c = Cursor::new(body);
    let mut f = ErrorFields::default();
    loop {
        let code = c.u8("ErrorResponse")?;
        if code == 0 {
            break;
        }
        let v = c.cstr("ErrorResponse")?;
        let v = text(&v[..v.len().min(FIELD_KEEP)]);
        match code {
            b'V' => f.severity = v,
            b'S' if f.severity.is_empty() => f.severity = v,
            b'C' => f.code = v,
            b'M' => f.message = v,
            b'D' => f.detail = Some(v),
            _ => {}
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ty: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![ty];
        v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn builds_startup_and_ssl_request() {
        // Spec, "Message Formats", SSLRequest: Int32(8) Int32(80877103).
        assert_eq!(ssl_request(), [0, 0, 0, 8, 4, 210, 22, 47]);
        let s = startup_message(&[("user", "bob")]);
        assert_eq!(s, b"\0\0\0\x12\0\x03\0\0user\0bob\0\0");
    }

    #[test]
    fn parses_auth_requests() {
        let sasl = msg(b'R', b"\0\0\0\x0aSCRAM-SHA-256\0SCRAM-SHA-256-PLUS\0\0");
        let (m, used) = parse_backend(&sasl, MAX_MESSAGE).unwrap().unwrap();
        assert_eq!(used, sasl.len());
        assert_eq!(
            m,
            Backend::Authentication(Auth::Sasl(vec![
                "SCRAM-SHA-256".into(),
                "SCRAM-SHA-256-PLUS".into()
            ]))
        );
        let md5 = msg(b'R', b"\0\0\0\x05salt");
        assert_eq!(
            parse_backend(&md5, MAX_MESSAGE).unwrap().unwrap().0,
            Backend::Authentication(Auth::Md5Password)
        );
        let ok = msg(b'R', b"\0\0\0\0");
        assert_eq!(
            parse_backend(&ok[..7], MAX_MESSAGE).unwrap(),
            None,
            "needs more"
        );
    }

    #[test]
    fn sasl_messages() {
        // "Message Formats": SASLInitialResponse = 'p', Int32 len, String mechanism,
        // Int32 data length, data.
        let m = sasl_initial_response("SCRAM-SHA-256", b"n,,n=,r=x");
        assert_eq!(&m[..5], b"p\0\0\0\x1f");
        assert_eq!(&m[5..19], b"SCRAM-SHA-256\0");
        assert_eq!(&m[19..23], &9i32.to_be_bytes());
        assert_eq!(sasl_response(b"ab"), b"p\0\0\0\x06ab");
        let cont = msg(b'R', b"\0\0\0\x0br=abc,s=QUJD,i=4096");
        assert_eq!(
            parse_backend(&cont, MAX_MESSAGE).unwrap().unwrap().0,
            Backend::Authentication(Auth::SaslContinue(b"r=abc,s=QUJD,i=4096".to_vec()))
        );
    }

    #[test]
    fn parses_error_response() {
        let e = msg(
            b'E',
            b"SFATAL\0VFATAL\0C57P03\0Mthe database system is starting up\0Fpostmaster.c\0\0",
        );
        let Backend::Error(f) = parse_backend(&e, MAX_MESSAGE).unwrap().unwrap().0 else {
            panic!("not an error")
        };
        assert_eq!(f.code, "57P03");
        assert!(f.is_unhealthy());
        assert_eq!(
            f.summary(),
            "FATAL 57P03: the database system is starting up"
        );
        let e = msg(b'E', b"SFATAL\0C28000\0Mrole \"x\" does not exist\0\0");
        let Backend::Error(f) = parse_backend(&e, MAX_MESSAGE).unwrap().unwrap().0 else {
            panic!("not an error")
        };
        assert!(!f.is_unhealthy());
    }

    #[test]
    fn rejects_huge_or_bad_lengths() {
        assert!(matches!(
            parse_backend(b"E\x7f\xff\xff\xff", MAX_MESSAGE),
            Err(DecodeError::TooLong { .. })
        ));
        assert!(parse_backend(b"E\0\0\0\x02", MAX_MESSAGE).is_err());
        assert!(parse_backend(b"+PONG\r\n", MAX_MESSAGE).is_err());
        assert!(parse_backend(b"\0\0\0\x01\x02", MAX_MESSAGE).is_err());
    }

    #[test]
    fn parameter_status_and_ready() {
        let mut buf = msg(b'S', b"server_version\x0015.4\0");
        buf.extend(msg(b'Z', b"I"));
        let (m, used) = parse_backend(&buf, MAX_MESSAGE).unwrap().unwrap();
        assert_eq!(
            m,
            Backend::ParameterStatus {
                name: "server_version".into(),
                value: "15.4".into()
            }
        );
        let (m, _) = parse_backend(&buf[used..], MAX_MESSAGE).unwrap().unwrap();
        assert_eq!(m, Backend::ReadyForQuery(b'I'));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_respects_bounds(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            if let Ok(Some((_, used))) = parse_backend(&bytes, 512) {
                proptest::prop_assert!(used <= bytes.len() && used <= 513);
            }
        }

        #[test]
        fn valid_frames_round_trip(ty in proptest::sample::select(b"RESKZNT".to_vec()),
                                   body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let m = msg(ty, &body);
            match parse_backend(&m, MAX_MESSAGE) {
                Ok(Some((_, used))) => proptest::prop_assert_eq!(used, m.len()),
                Ok(None) => proptest::prop_assert!(false, "a whole frame must decide"),
                Err(_) => {}
            }
        }
    }
}
