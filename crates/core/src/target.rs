//! Targets: where a check goes. `tcp://db1.internal:5432`, `udp://[2001:db8::53]:53`, `redis://cache`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Layer-4 transport of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A host: an IP literal (no resolution needed) or a DNS name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

impl Host {
    /// The host as written, without brackets (`::1`, `db1.internal`).
    pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Host::Ip(ip) => ip.to_string().into(),
            Host::Name(n) => n.as_str().into(),
        }
    }

    /// Parses a host: an IP literal (IPv6 with or without brackets) or a DNS name.
    pub fn parse(s: &str) -> Result<Host, TargetError> {
        let s = s.trim();
        let unbracketed = s
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(s);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Ok(Host::Ip(ip));
        }
        if s.starts_with('[') {
            return Err(TargetError::BadHost(
                s.to_string(),
                "not a valid IPv6 address".into(),
            ));
        }
        validate_hostname(s)?;
        Ok(Host::Name(s.to_ascii_lowercase()))
    }
}

fn validate_hostname(s: &str) -> Result<(), TargetError> {
    let bad = |why: &str| Err(TargetError::BadHost(s.to_string(), why.to_string()));
    if s.is_empty() {
        return bad("empty host name");
    }
    let name = s.strip_suffix('.').unwrap_or(s);
    if name.len() > 253 {
        return bad("longer than 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return bad("empty label (two dots in a row?)");
        }
        if label.len() > 63 {
            return bad("a label is longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return bad("only letters, digits, '-', '_' and '.' are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a label starts or ends with '-'");
        }
    }
    Ok(())
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

impl Serialize for Host {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_str())
    }
}

impl<'de> Deserialize<'de> for Host {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Host::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Why a target string could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("empty target; write e.g. `tcp://db1.internal:5432`")]
    Empty,
    #[error("bad host `{0}`: {1}")]
    BadHost(String, String),
    #[error("bad port `{0}`: ports are 1-65535")]
    BadPort(String),
    #[error("bad scheme `{0}`: use letters, digits, '+', '-' or '.', e.g. `tcp://`")]
    BadScheme(String),
    #[error(
        "credentials in a target (`user:pass@host`) would leak into logs and the UI; put them in the check's options as `${{env:NAME}}` secrets"
    )]
    Credentials,
    #[error("unexpected `{0}` after the port; a target is `scheme://host:port`")]
    Trailing(String),
    #[error("IPv6 addresses need brackets when a port follows: `[{0}]:PORT`")]
    UnbracketedV6(String),
}

/// A target as written by a user: optional scheme (which names a check kind: `tcp`, `udp`,
/// `tls`, `redis`, ...), host, and optional port (a check kind may supply a default).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TargetUrl {
    pub scheme: Option<String>,
    pub host: Host,
    pub port: Option<u16>,
}

impl TargetUrl {
    /// `host:port` with IPv6 in brackets; the port is required here.
    pub fn authority(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.to_string(),
        }
    }
}

impl fmt::Display for TargetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = &self.scheme {
            write!(f, "{s}://")?;
        }
        f.write_str(&self.authority())
    }
}

impl FromStr for TargetUrl {
    type Err = TargetError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let s = input.trim();
        if s.is_empty() {
            return Err(TargetError::Empty);
        }
        let (scheme, rest) = match s.split_once("://") {
            Some((sch, rest)) => {
                if sch.is_empty()
                    || !sch
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.')
                {
                    return Err(TargetError::BadScheme(sch.to_string()));
                }
                (Some(sch.to_ascii_lowercase()), rest)
            }
            None => (None, s),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('@') {
            return Err(TargetError::Credentials);
        }
        if let Some(pos) = rest.find(['/', '?', '#']) {
            return Err(TargetError::Trailing(rest[pos..].to_string()));
        }
        if rest.is_empty() {
            return Err(TargetError::Empty);
        }
        let (host_part, port_part) = if let Some(after) = rest.strip_prefix('[') {
            let close = after
                .find(']')
                .ok_or_else(|| TargetError::BadHost(rest.to_string(), "missing `]`".into()))?;
            let host = &rest[..close + 2];
            let tail = &after[close + 1..];
            match tail {
                "" => (host, None),
                t => match t.strip_prefix(':') {
                    Some(p) => (host, Some(p)),
                    None => return Err(TargetError::Trailing(t.to_string())),
                },
            }
        } else {
            match rest.matches(':').count() {
                0 => (rest, None),
                1 => {
                    let (h, p) = rest.split_once(':').unwrap_or((rest, ""));
                    (h, Some(p))
                }
                _ => {
                    if rest.parse::<std::net::Ipv6Addr>().is_ok() {
                        (rest, None)
                    } else {
                        return Err(TargetError::UnbracketedV6(rest.to_string()));
                    }
                }
            }
        };
        let port = match port_part {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(TargetError::BadPort(p.to_string())),
                Ok(n) => Some(n),
            },
        };
        Ok(TargetUrl {
            scheme,
            host: Host::parse(host_part)?,
            port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> TargetUrl {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_forms() {
        let a = t("tcp://127.0.0.1:5432");
        assert_eq!(a.scheme.as_deref(), Some("tcp"));
        assert_eq!(a.host, Host::Ip("127.0.0.1".parse().unwrap()));
        assert_eq!(a.port, Some(5432));
        let b = t("tcp://[::1]:6379");
        assert_eq!(b.host, Host::Ip("::1".parse().unwrap()));
        assert_eq!(b.to_string(), "tcp://[::1]:6379");
        let c = t("db1.Internal:5432");
        assert_eq!(c.scheme, None);
        assert_eq!(c.host, Host::Name("db1.internal".into()));
        let d = t("redis://cache");
        assert_eq!(d.port, None);
        let e = t("::1");
        assert_eq!(e.host, Host::Ip("::1".parse().unwrap()));
        assert_eq!(t("[::1]").port, None);
    }

    #[test]
    fn rejects_with_reasons() {
        assert_eq!("".parse::<TargetUrl>(), Err(TargetError::Empty));
        assert!(matches!(
            "tcp://h:0".parse::<TargetUrl>(),
            Err(TargetError::BadPort(_))
        ));
        assert!(matches!(
            "tcp://h:70000".parse::<TargetUrl>(),
            Err(TargetError::BadPort(_))
        ));
        assert!(matches!(
            "tcp://u:p@h:1".parse::<TargetUrl>(),
            Err(TargetError::Credentials)
        ));
        assert!(matches!(
            "tcp://h:1/x".parse::<TargetUrl>(),
            Err(TargetError::Trailing(_))
        ));
        assert!(matches!(
            "tcp://fe80::zz:53".parse::<TargetUrl>(),
            Err(TargetError::UnbracketedV6(_))
        ));
        assert!(matches!(
            "tcp://bad host:1".parse::<TargetUrl>(),
            Err(TargetError::BadHost(..))
        ));
        assert!(matches!(
            "t p://h:1".parse::<TargetUrl>(),
            Err(TargetError::BadScheme(_))
        ));
        assert!(matches!(
            "tcp://[::1:1".parse::<TargetUrl>(),
            Err(TargetError::BadHost(..))
        ));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,60}") {
            let _ = s.parse::<TargetUrl>();
        }

        #[test]
        fn round_trips(port in 1u16.., a in 0u8.., b in 0u8..) {
            let s = format!("tcp://10.{a}.{b}.1:{port}");
            let parsed: TargetUrl = s.parse().unwrap();
            proptest::prop_assert_eq!(parsed.to_string(), s);
        }
    }
}

/// Which of a name's addresses to probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AddressPolicy {
    /// The first address the resolver returns (IPv4 before IPv6).
    First,
    /// Every address, each reported on its own, so one dead replica behind a round-robin name
    /// is seen.
    #[default]
    All,
}
