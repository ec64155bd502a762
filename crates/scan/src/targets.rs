//! Scan targets: host names, IPv4/IPv6 addresses and CIDR blocks, bounded by a size limit and
//! an optional allowlist. Everything is checked before the first packet: a bad target means
//! nothing is scanned.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use portwarden_core::Host;
use portwarden_probe::Resolver;
use serde::Serialize;

/// Default limit on the addresses one target may expand to: an IPv4 /16.
pub const DEFAULT_MAX_ADDRESSES: u64 = 65_536;

/// An address block (`10.0.0.0/24`, `fd00::/120`). A single address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub net: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr = addr
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(addr);
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{addr}` is not an IP address"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("prefix `/{p}` must be a number from 0 to {max}")),
            },
        };
        Ok(Cidr::new(ip, prefix))
    }

    /// The block containing `ip` with `prefix` bits (host bits cleared).
    pub fn new(ip: IpAddr, prefix: u8) -> Cidr {
        let net = match ip {
            IpAddr::V4(a) => {
                let m = if prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(prefix))
                };
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
            }
            IpAddr::V6(a) => {
                let m = if prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(prefix))
                };
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
            }
        };
        Cidr { net, prefix }
    }

    fn host_bits(&self) -> u32 {
        (if self.net.is_ipv4() { 32 } else { 128 }) - u32::from(self.prefix)
    }

    /// Number of addresses, saturating at `u64::MAX`.
    pub fn size(&self) -> u64 {
        let b = self.host_bits();
        if b >= 64 { u64::MAX } else { 1u64 << b }
    }

    /// The last address of the block.
    pub fn last(&self) -> IpAddr {
        let b = self.host_bits();
        match self.net {
            IpAddr::V4(a) => {
                let m = if b >= 32 { u32::MAX } else { (1u32 << b) - 1 };
                IpAddr::V4(Ipv4Addr::from(u32::from(a) | m))
            }
            IpAddr::V6(a) => {
                let m = if b >= 128 {
                    u128::MAX
                } else {
                    (1u128 << b) - 1
                };
                IpAddr::V6(Ipv6Addr::from(u128::from(a) | m))
            }
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                Cidr::new(ip, self.prefix).net == self.net
            }
            _ => false,
        }
    }

    /// Every address in the block (callers bound the size first).
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let n = self.size();
        (0..n).map(move |i| match self.net {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a).wrapping_add(i as u32))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a).wrapping_add(u128::from(i)))),
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One target as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// A single address or a block.
    Block(Cidr),
    /// A DNS name, resolved before the scan.
    Name(String),
}

/// Limits every target must respect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPolicy {
    /// Largest number of addresses one target may expand to.
    pub max_addresses: u64,
    /// When set, every address scanned must be inside one of these blocks.
    pub allow: Option<Vec<Cidr>>,
}

impl Default for TargetPolicy {
    fn default() -> Self {
        TargetPolicy {
            max_addresses: DEFAULT_MAX_ADDRESSES,
            allow: None,
        }
    }
}

impl TargetPolicy {
    /// Describes the size limit as prefixes (`65 536 addresses: an IPv4 /16, an IPv6 /112`).
    pub fn describe_limit(&self) -> String {
        let bits = 63 - self.max_addresses.max(1).leading_zeros();
        format!(
            "{} addresses (an IPv4 /{}, an IPv6 /{})",
            self.max_addresses,
            32u32.saturating_sub(bits),
            128 - bits
        )
    }

    fn check_allowed(&self, ip: IpAddr) -> Result<(), String> {
        match &self.allow {
            Some(list) if !list.iter().any(|c| c.contains(ip)) => Err(format!(
                "{ip} is outside the scan allowlist ({}); add it to `scan.allow` or leave it out",
                list.iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            _ => Ok(()),
        }
    }
}

/// A bad target: which one (1-based position among the targets given), as written, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("target {index} `{spec}`: {message}")]
pub struct TargetSpecError {
    pub index: usize,
    pub spec: String,
    pub message: String,
}

impl TargetSpec {
    /// Parses one target and checks its size against the policy.
    pub fn parse(s: &str, policy: &TargetPolicy) -> Result<TargetSpec, String> {
        let t = s.trim();
        if t.is_empty() {
            return Err("empty target; write a host name, an IP address or a CIDR block".into());
        }
        if t.contains('/') || t.parse::<IpAddr>().is_ok() || t.starts_with('[') {
            let c = Cidr::parse(t)?;
            if c.size() > policy.max_addresses {
                return Err(format!(
                    "{c} holds {} addresses, more than the limit of {}; split it into smaller blocks or raise the limit (--max-addresses, `scan.max_addresses`)",
                    if c.size() == u64::MAX {
                        "2^64 or more".to_string()
                    } else {
                        c.size().to_string()
                    },
                    policy.describe_limit()
                ));
            }
            if let Some(list) = &policy.allow {
                let last = c.last();
                if !list.iter().any(|a| a.contains(c.net) && a.contains(last)) {
                    return Err(format!(
                        "{c} is not inside the scan allowlist ({}); scan only allowed blocks or extend `scan.allow`",
                        list.iter()
                            .map(|c| c.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
            return Ok(TargetSpec::Block(c));
        }
        if t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Err(format!("`{t}` is not a valid IPv4 address"));
        }
        match Host::parse(t) {
            Ok(Host::Name(n)) => Ok(TargetSpec::Name(n)),
            Ok(Host::Ip(ip)) => Ok(TargetSpec::Block(Cidr::new(
                ip,
                if ip.is_ipv4() { 32 } else { 128 },
            ))),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// One address to scan and the name it was reached by (if any).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ScanHost {
    pub addr: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl fmt::Display for ScanHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{n} ({})", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

/// Parses every target (all must be good), resolves names and applies the policy. Returns the
/// de-duplicated host list, in the order given.
pub async fn resolve_targets(
    specs: &[String],
    policy: &TargetPolicy,
    resolver: &Resolver,
) -> Result<Vec<ScanHost>, TargetSpecError> {
    let mut parsed = Vec::with_capacity(specs.len());
    for (i, s) in specs.iter().enumerate() {
        let t = TargetSpec::parse(s, policy).map_err(|message| TargetSpecError {
            index: i + 1,
            spec: s.clone(),
            message,
        })?;
        parsed.push(t);
    }
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut total: u64 = 0;
    for (i, t) in parsed.iter().enumerate() {
        let err = |message: String| TargetSpecError {
            index: i + 1,
            spec: specs[i].clone(),
            message,
        };
        match t {
            TargetSpec::Block(c) => {
                total = total.saturating_add(c.size());
                for a in c.addresses() {
                    if seen.insert(a) {
                        out.push(ScanHost {
                            addr: a,
                            name: None,
                        });
                    }
                }
            }
            TargetSpec::Name(n) => {
                let deadline = Instant::now() + Duration::from_secs(10);
                let (ips, _) = resolver
                    .resolve(&Host::Name(n.clone()), deadline)
                    .await
                    .map_err(|e| err(format!("cannot resolve: {}", e.message)))?;
                for ip in ips {
                    policy.check_allowed(ip).map_err(&err)?;
                    total += 1;
                    if seen.insert(ip) {
                        out.push(ScanHost {
                            addr: ip,
                            name: Some(n.clone()),
                        });
                    }
                }
            }
        }
        if total > policy.max_addresses.saturating_mul(16) {
            return Err(err(format!(
                "the targets together hold more than {} addresses (16 × the per-target limit of {}); scan them in parts",
                policy.max_addresses.saturating_mul(16),
                policy.describe_limit()
            )));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> TargetPolicy {
        TargetPolicy::default()
    }

    #[test]
    fn parses_forms() {
        assert_eq!(
            TargetSpec::parse("10.1.2.3", &p()).unwrap(),
            TargetSpec::Block(Cidr::parse("10.1.2.3/32").unwrap())
        );
        assert_eq!(
            TargetSpec::parse("10.1.2.77/24", &p()).unwrap(),
            TargetSpec::Block(Cidr::parse("10.1.2.0/24").unwrap())
        );
        assert!(
            matches!(TargetSpec::parse("[::1]", &p()).unwrap(), TargetSpec::Block(c) if c.prefix == 128)
        );
        assert!(
            matches!(TargetSpec::parse("fd00::/120", &p()).unwrap(), TargetSpec::Block(c) if c.size() == 256)
        );
        assert_eq!(
            TargetSpec::parse("db1.internal", &p()).unwrap(),
            TargetSpec::Name("db1.internal".into())
        );
        assert_eq!(Cidr::parse("10.0.0.0/30").unwrap().addresses().count(), 4);
    }

    #[test]
    fn size_limit_names_the_limit() {
        assert!(TargetSpec::parse("10.0.0.0/16", &p()).is_ok());
        let e = TargetSpec::parse("10.0.0.0/15", &p()).unwrap_err();
        assert!(e.contains("131072 addresses"), "{e}");
        assert!(e.contains("/16"), "{e}");
        let e = TargetSpec::parse("fd00::/64", &p()).unwrap_err();
        assert!(e.contains("/112"), "{e}");
        let small = TargetPolicy {
            max_addresses: 256,
            allow: None,
        };
        let e = TargetSpec::parse("10.0.0.0/23", &small).unwrap_err();
        assert!(e.contains("/24"), "{e}");
    }

    #[test]
    fn bad_specs() {
        for s in [
            "10.0.0.0/33",
            "10.0.0.300",
            "fd00::/129",
            "bad host!",
            "1.2.3.4/x",
            "",
            "[zz]",
        ] {
            assert!(TargetSpec::parse(s, &p()).is_err(), "{s} should fail");
        }
    }

    #[test]
    fn allowlist() {
        let pol = TargetPolicy {
            max_addresses: 65_536,
            allow: Some(vec![Cidr::parse("10.1.0.0/16").unwrap()]),
        };
        assert!(TargetSpec::parse("10.1.2.0/24", &pol).is_ok());
        let e = TargetSpec::parse("10.2.0.1", &pol).unwrap_err();
        assert!(e.contains("allowlist"), "{e}");
        assert!(
            TargetSpec::parse(
                "10.0.0.0/15",
                &TargetPolicy {
                    max_addresses: 1 << 20,
                    ..pol.clone()
                }
            )
            .is_err()
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,60}") {
            let _ = TargetSpec::parse(&s, &TargetPolicy::default());
        }
    }
}
