//! FTP (RFC 959, RFC 2389 `FEAT`, RFC 4217 `AUTH TLS`): replies use the numeric reply parser in
//! [`crate::smtp`] with [`Dialect::Ftp`]; this module reads the `FEAT` list.

pub use crate::smtp::{Dialect, Reply, parse_reply};

/// Parses an FTP reply (multi-line replies may hold free-form lines between first and last).
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, crate::cursor::DecodeError> {
    parse_reply(buf, Dialect::Ftp)
}

/// Feature lines of a `211` `FEAT` reply, e.g. `AUTH TLS`, `UTF8`, `MDTM` (RFC 2389 §3.2: each
/// feature line starts with a space; the first and last lines are not features).
pub fn features(r: &Reply) -> Vec<String> {
    if r.code != 211 || r.lines.len() < 2 {
        return Vec::new();
    }
    r.lines[1..r.lines.len() - 1]
        .iter()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .take(64)
        .collect()
}

/// True when `FEAT` lists `AUTH` with `TLS` among its mechanisms.
pub fn supports_auth_tls(features: &[String]) -> bool {
    features.iter().any(|f| {
        let mut w = f.split_whitespace();
        w.next().is_some_and(|k| k.eq_ignore_ascii_case("AUTH"))
            && w.any(|m| m.split(';').any(|x| x.eq_ignore_ascii_case("TLS")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn feat() {
        let b = b"211-Features:\r\n EPRT\r\n AUTH TLS\r\n PBSZ\r\n UTF8\r\n211 End\r\n";
        let (r, _) = parse(b).unwrap().unwrap();
        let f = features(&r);
        assert_eq!(f, vec!["EPRT", "AUTH TLS", "PBSZ", "UTF8"]);
        assert!(supports_auth_tls(&f));
        let (r, _) = parse(b"220-Welcome\r\nto the server\r\n220 ready\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.code, 220);
        assert!(features(&r).is_empty());
    }

    proptest! {
        #[test]
        fn never_panics(buf in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(Some((r, _))) = parse(&buf) {
                let f = features(&r);
                let _ = supports_auth_tls(&f);
            }
        }
    }
}
