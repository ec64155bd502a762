//! What a source finds: a target (address, port, transport) with its labels and facts.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use serde::{Deserialize, Serialize};

/// One discovered target. Two targets are the same target only when every field is equal:
/// a changed label makes a new target (and so a re-rendered monitor).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Target {
    /// Host name or IP address (IPv6 without brackets).
    pub address: String,
    pub port: Option<u16>,
    /// `tcp` or `udp`.
    pub transport: String,
    /// The source's labels for the target (Prometheus sd labels, Kubernetes Service labels).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Facts the source knows (DNS name and SRV priority, Kubernetes namespace and pod...).
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
}

impl Target {
    pub fn new(address: impl Into<String>, port: Option<u16>) -> Target {
        Target {
            address: address.into(),
            port,
            transport: "tcp".into(),
            labels: BTreeMap::new(),
            meta: BTreeMap::new(),
        }
    }

    /// `host:port`, `[v6]:port`, or the bare host when there is no port.
    pub fn hostport(&self) -> String {
        let host = if self.address.contains(':') {
            format!("[{}]", self.address)
        } else {
            self.address.clone()
        };
        match self.port {
            Some(p) => format!("{host}:{p}"),
            None => host,
        }
    }
}

/// Parses a Prometheus-style `host:port` (also `[v6]:port`, a bare host, a bare IPv6).
pub fn parse_hostport(s: &str) -> Result<(String, Option<u16>), String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty target".into());
    }
    if s.contains("://") {
        return Err(format!(
            "`{s}` has a scheme; targets are `host:port` (the template's `target:` adds the scheme)"
        ));
    }
    if s.chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '/')
    {
        return Err(format!("`{s}` is not a host:port"));
    }
    let port = |p: &str| -> Result<u16, String> {
        match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(format!("`{s}`: `{p}` is not a port (1-65535)")),
            Ok(n) => Ok(n),
        }
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (host, tail) = rest
            .split_once(']')
            .ok_or_else(|| format!("`{s}`: missing `]`"))?;
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(format!("`{s}`: `{host}` is not an IPv6 address"));
        }
        return match tail {
            "" => Ok((host.to_string(), None)),
            t => match t.strip_prefix(':') {
                Some(p) => Ok((host.to_string(), Some(port(p)?))),
                None => Err(format!("`{s}`: expected `:port` after `]`")),
            },
        };
    }
    match s.matches(':').count() {
        0 => Ok((s.to_string(), None)),
        1 => {
            let (h, p) = s.split_once(':').unwrap_or((s, ""));
            if h.is_empty() {
                return Err(format!("`{s}` has no host"));
            }
            Ok((h.to_string(), Some(port(p)?)))
        }
        _ if s.parse::<Ipv6Addr>().is_ok() => Ok((s.to_string(), None)),
        _ => Err(format!(
            "`{s}` is not a host:port (write IPv6 addresses as `[addr]:port`)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostports() {
        assert_eq!(
            parse_hostport("10.0.0.1:9100").unwrap(),
            ("10.0.0.1".into(), Some(9100))
        );
        assert_eq!(
            parse_hostport("[::1]:53").unwrap(),
            ("::1".into(), Some(53))
        );
        assert_eq!(
            parse_hostport("db.internal").unwrap(),
            ("db.internal".into(), None)
        );
        assert_eq!(parse_hostport("fe80::1").unwrap(), ("fe80::1".into(), None));
        assert!(parse_hostport("h:0").is_err());
        assert!(parse_hostport("h:70000").is_err());
        assert!(parse_hostport("tcp://h:1").is_err());
        assert!(parse_hostport(":1").is_err());
        assert!(parse_hostport("a b:1").is_err());
        let t = Target::new("::1", Some(5));
        assert_eq!(t.hostport(), "[::1]:5");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,40}") { let _ = parse_hostport(&s); }

        #[test]
        fn round_trips(a in 0u8..=255, b in 0u8..=255, p in 1u16..) {
            let t = Target::new(format!("10.{a}.{b}.1"), Some(p));
            let (h, port) = parse_hostport(&t.hostport()).unwrap();
            proptest::prop_assert_eq!(h, t.address);
            proptest::prop_assert_eq!(port, Some(p));
        }
    }
}
