//! SCRAM-SHA-256 client (SASL), as MongoDB and PostgreSQL use it.
//!
//! Spec: RFC 5802 "Salted Challenge Response Authentication Mechanism" (section 3 algorithm,
//! section 5 message syntax, section 7 formal grammar) with RFC 7677 (SHA-256; its section 3
//! example is the unit test below) and RFC 4013 SASLprep for the password. No channel binding
//! (`n,,` GS2 header).
//!
//! The nonce is passed in (the probe draws it from the system RNG), so the exchange is
//! deterministic under test. Iteration counts from the server are bounded: a hostile server
//! must not make us burn seconds of CPU in PBKDF2.
//!
//! ```
//! use portwarden_wire::scram::Scram;
//! let mut s = Scram::new("user", "pencil", "rOprNGfwEbeRWgbNEkqO");
//! assert_eq!(s.client_first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
//! ```

use std::num::NonZeroU32;

use ring::{hmac, pbkdf2};

use crate::base64;

/// Fewest and most PBKDF2 iterations we accept (RFC 7677 asks for at least 4096; MongoDB
/// defaults to 15 000, PostgreSQL to 4096).
pub const MIN_ITERATIONS: u32 = 4096;
pub const MAX_ITERATIONS: u32 = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM server message: {0}")]
    Malformed(&'static str),
    #[error("the server's nonce does not extend ours (possible replay or a broken server)")]
    NonceMismatch,
    #[error("iteration count {0} is outside {MIN_ITERATIONS}..={MAX_ITERATIONS}")]
    Iterations(u64),
    #[error("the server rejected the authentication: {0}")]
    ServerError(String),
    #[error("the server's signature is wrong: it does not know the password (impostor?)")]
    BadServerSignature,
    #[error("SCRAM message out of order")]
    State,
}

/// One client-side SCRAM-SHA-256 conversation.
#[derive(Debug, Clone)]
pub struct Scram {
    password: Vec<u8>,
    client_first_bare: String,
    client_nonce: String,
    server_signature: Option<[u8; 32]>,
}

/// `=` → `=3D`, `,` → `=2C` (RFC 5802 section 5.1, `saslname`).
fn sasl_name(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

/// SASLprep (RFC 4013) of a password; a password that SASLprep rejects is used as raw UTF-8
/// (what PostgreSQL does), so the server decides.
pub fn prepare_password(password: &str) -> Vec<u8> {
    if password.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return password.as_bytes().to_vec();
    }
    match stringprep::saslprep(password) {
        Ok(p) => p.as_bytes().to_vec(),
        Err(_) => password.as_bytes().to_vec(),
    }
}

fn hmac256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let k = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut out = [0u8; 32];
    out.copy_from_slice(hmac::sign(&k, data).as_ref());
    out
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, data).as_ref());
    out
}

/// Attributes of a server message (`r=...,s=...,i=...`), in order.
fn attributes(msg: &str) -> Vec<(char, &str)> {
    msg.split(',')
        .filter_map(|kv| {
            let mut c = kv.chars();
            let k = c.next()?;
            let rest = c.as_str().strip_prefix('=')?;
            Some((k, rest))
        })
        .collect()
}

impl Scram {
    /// `user` may be empty (PostgreSQL takes the user from the startup message).
    pub fn new(user: &str, password: &str, client_nonce: &str) -> Scram {
        let client_nonce: String = client_nonce
            .chars()
            .filter(|c| c.is_ascii_graphic() && *c != ',')
            .collect();
        Scram {
            password: prepare_password(password),
            client_first_bare: format!("n={},r={client_nonce}", sasl_name(user)),
            client_nonce,
            server_signature: None,
        }
    }

    /// `client-first-message`: GS2 header `n,,` + bare part.
    pub fn client_first(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    /// Takes `server-first-message`, returns `client-final-message` (with the proof).
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<String, ScramError> {
        if server_first.len() > 4096 {
            return Err(ScramError::Malformed("server-first-message over 4 KiB"));
        }
        let sf = std::str::from_utf8(server_first)
            .map_err(|_| ScramError::Malformed("server-first-message is not UTF-8"))?;
        let attrs = attributes(sf);
        if let Some((_, e)) = attrs.iter().find(|(k, _)| *k == 'e') {
            return Err(ScramError::ServerError(e.chars().take(200).collect()));
        }
        let get = |k: char| attrs.iter().find(|(a, _)| *a == k).map(|(_, v)| *v);
        let nonce = get('r').ok_or(ScramError::Malformed("no nonce (r=)"))?;
        let salt = get('s').ok_or(ScramError::Malformed("no salt (s=)"))?;
        let iters = get('i').ok_or(ScramError::Malformed("no iteration count (i=)"))?;
        if !nonce.starts_with(&self.client_nonce) || nonce.len() <= self.client_nonce.len() {
            return Err(ScramError::NonceMismatch);
        }
        let salt = base64::decode(salt).ok_or(ScramError::Malformed("salt is not base64"))?;
        if salt.is_empty() {
            return Err(ScramError::Malformed("empty salt"));
        }
        let iters: u64 = iters
            .parse()
            .map_err(|_| ScramError::Malformed("iteration count is not a number"))?;
        if !(u64::from(MIN_ITERATIONS)..=u64::from(MAX_ITERATIONS)).contains(&iters) {
            return Err(ScramError::Iterations(iters));
        }
        let iters = NonZeroU32::new(iters as u32).ok_or(ScramError::Iterations(iters))?;
        let mut salted = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            iters,
            &salt,
            &self.password,
            &mut salted,
        );
        let client_key = hmac256(&salted, b"Client Key");
        let stored_key = sha256(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{sf},{without_proof}", self.client_first_bare);
        let client_sig = hmac256(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(client_sig.iter())
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = hmac256(&salted, b"Server Key");
        self.server_signature = Some(hmac256(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", base64::encode(&proof)))
    }

    /// Checks `server-final-message` (`v=<signature>` or `e=<error>`).
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let expected = self.server_signature.ok_or(ScramError::State)?;
        let sf = std::str::from_utf8(&server_final[..server_final.len().min(4096)])
            .map_err(|_| ScramError::Malformed("server-final-message is not UTF-8"))?;
        let attrs = attributes(sf);
        if let Some((_, e)) = attrs.iter().find(|(k, _)| *k == 'e') {
            return Err(ScramError::ServerError(e.chars().take(200).collect()));
        }
        let v = attrs
            .iter()
            .find(|(k, _)| *k == 'v')
            .map(|(_, v)| *v)
            .ok_or(ScramError::Malformed("no verifier (v=)"))?;
        let got = base64::decode(v).ok_or(ScramError::Malformed("verifier is not base64"))?;
        if got.as_slice() == expected.as_slice() {
            Ok(())
        } else {
            Err(ScramError::BadServerSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3: user "user", password "pencil".
    #[test]
    fn rfc7677_example() {
        let mut s = Scram::new("user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(s.client_first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first =
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let fin = s.client_final(server_first).unwrap();
        assert_eq!(
            fin,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        s.verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        assert_eq!(
            s.verify_server_final(b"v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
            Err(ScramError::BadServerSignature)
        );
    }

    #[test]
    fn rejects_hostile_server_messages() {
        let mut s = Scram::new("u", "p", "abc");
        assert_eq!(
            s.client_final(b"r=xyz123,s=QUJD,i=4096"),
            Err(ScramError::NonceMismatch)
        );
        assert_eq!(
            s.client_final(b"r=abcdef,s=QUJD,i=4000000000"),
            Err(ScramError::Iterations(4_000_000_000))
        );
        assert!(matches!(
            s.client_final(b"e=invalid-proof"),
            Err(ScramError::ServerError(_))
        ));
        assert!(s.client_final(b"r=abcdef,s=!!!,i=4096").is_err());
        assert_eq!(s.verify_server_final(b"v=x"), Err(ScramError::State));
        assert_eq!(
            Scram::new("a=b,c", "p", "n").client_first(),
            "n,,n=a=3Db=2Cc,r=n"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let mut s = Scram::new("u", "p", "abc");
            // Keep PBKDF2 cheap: replace any accepted iteration count.
            let text = String::from_utf8_lossy(&bytes).replace("i=", "x=");
            let _ = s.client_final(text.as_bytes());
            let _ = s.client_final(format!("r=abcd,s=QUJD,i=4096,{text}").as_bytes());
            let _ = s.verify_server_final(&bytes);
        }
    }
}
