//! Port specs: `22,80,443,8000-8100`, `top100`, `top1000`, `all` — and mixes of them
//! (`top100,9000-9010`). Errors name the column of the bad part.

use std::fmt;

use portwarden_core::Transport;

/// The 1000 TCP ports most often found open, in rank order (see the file's header).
const TOP_TCP: &str = include_str!("../data/top1000-tcp.txt");
/// The 1000 UDP ports most often found open, in rank order.
const TOP_UDP: &str = include_str!("../data/top1000-udp.txt");

/// A parsed, de-duplicated port list, ascending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSet {
    ports: Vec<u16>,
    /// The spec as written, for reports.
    spec: String,
}

/// A bad port spec. `column` is 1-based within the spec string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("port spec `{spec}`, column {column}: {message}")]
pub struct PortSpecError {
    pub spec: String,
    pub column: usize,
    pub message: String,
}

impl PortSet {
    /// Parses a spec for `transport` (`top1000` means the TCP or the UDP list).
    pub fn parse(spec: &str, transport: Transport) -> Result<PortSet, PortSpecError> {
        let err = |column: usize, message: String| PortSpecError {
            spec: spec.to_string(),
            column,
            message,
        };
        let mut bits = vec![0u64; 1024]; // 65 536 bits
        let mut set = |p: u16| bits[usize::from(p) / 64] |= 1 << (p % 64);
        if spec.trim().is_empty() {
            return Err(err(
                1,
                "empty: name ports like `22,80,8000-8100`, `top1000` or `all`".into(),
            ));
        }
        let mut offset = 0usize;
        for part in spec.split(',') {
            let column = offset + 1 + (part.len() - part.trim_start().len());
            offset += part.len() + 1;
            let p = part.trim();
            if p.is_empty() {
                return Err(err(
                    column,
                    "empty element (two commas in a row, or a trailing comma)".into(),
                ));
            }
            match p.to_ascii_lowercase().as_str() {
                "all" | "-" => {
                    for port in 1..=u16::MAX {
                        set(port);
                    }
                    continue;
                }
                named if named.starts_with("top") => {
                    let n: usize = named[3..].parse().map_err(|_| {
                        err(column, format!("`{p}`: expected `top` followed by a count, like `top100` or `top1000`"))
                    })?;
                    if n == 0 || n > 1000 {
                        return Err(err(
                            column,
                            format!("`{p}`: the ranked list has 1000 ports; use top1..top1000"),
                        ));
                    }
                    for port in top_ports(transport).take(n) {
                        set(port);
                    }
                    continue;
                }
                _ => {}
            }
            let (lo, hi) = match p.split_once('-') {
                Some((a, b)) => {
                    let lo = if a.trim().is_empty() {
                        1
                    } else {
                        port_number(a, column, spec)?
                    };
                    let bcol = column + a.len() + 1;
                    let hi = if b.trim().is_empty() {
                        u16::MAX
                    } else {
                        port_number(b, bcol, spec)?
                    };
                    if lo > hi {
                        return Err(err(
                            column,
                            format!("range `{p}` runs backwards; write `{hi}-{lo}`"),
                        ));
                    }
                    (lo, hi)
                }
                None => {
                    let n = port_number(p, column, spec)?;
                    (n, n)
                }
            };
            for port in lo..=hi {
                set(port);
            }
        }
        let ports: Vec<u16> = (1..=u16::MAX)
            .filter(|p| bits[usize::from(*p) / 64] & (1 << (p % 64)) != 0)
            .collect();
        Ok(PortSet {
            ports,
            spec: spec.trim().to_string(),
        })
    }

    /// A set of explicit ports (sorted and de-duplicated).
    pub fn from_ports(mut ports: Vec<u16>) -> PortSet {
        ports.retain(|p| *p != 0);
        ports.sort_unstable();
        ports.dedup();
        let spec = compact(&ports);
        PortSet { ports, spec }
    }

    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    pub fn len(&self) -> usize {
        self.ports.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    pub fn contains(&self, port: u16) -> bool {
        self.ports.binary_search(&port).is_ok()
    }

    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// Adds the ports of `other`.
    pub fn union(&self, other: &PortSet) -> PortSet {
        let mut v = self.ports.clone();
        v.extend_from_slice(&other.ports);
        PortSet::from_ports(v)
    }
}

impl serde::Serialize for PortSet {
    /// As the spec written (`22,8000-8100`, `top1000`).
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.spec)
    }
}

impl fmt::Display for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spec)
    }
}

fn port_number(s: &str, column: usize, spec: &str) -> Result<u16, PortSpecError> {
    let t = s.trim();
    let col = column + (s.len() - s.trim_start().len());
    let e = |message: String| PortSpecError {
        spec: spec.to_string(),
        column: col,
        message,
    };
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        let bad = t
            .chars()
            .find(|c| !c.is_ascii_digit())
            .map(|c| format!(" (`{c}`)"))
            .unwrap_or_default();
        return Err(e(format!(
            "`{t}` is not a port number{bad}; expected 1-65535, a range like 8000-8100, `top1000` or `all`"
        )));
    }
    match t.parse::<u32>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
        _ => Err(e(format!("port `{t}` is out of range 1-65535"))),
    }
}

/// The ranked list for a transport, most often open first.
pub fn top_ports(transport: Transport) -> impl Iterator<Item = u16> {
    let text = match transport {
        Transport::Udp => TOP_UDP,
        _ => TOP_TCP,
    };
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| l.split_whitespace())
        .filter_map(|w| w.parse::<u16>().ok())
}

/// `22,80,8000-8100` from a sorted list.
pub fn compact(ports: &[u16]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < ports.len() {
        let start = ports[i];
        let mut end = start;
        while i + 1 < ports.len() && ports[i + 1] == end.wrapping_add(1) && end != u16::MAX {
            i += 1;
            end = ports[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}-{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(s: &str) -> Result<PortSet, PortSpecError> {
        PortSet::parse(s, Transport::Tcp)
    }

    #[test]
    fn lists_and_ranges() {
        let p = tcp("22,80,443,8000-8003").unwrap();
        assert_eq!(p.ports(), &[22, 80, 443, 8000, 8001, 8002, 8003]);
        assert_eq!(tcp(" 443 , 22,22").unwrap().ports(), &[22, 443]);
        assert_eq!(tcp("65530-").unwrap().len(), 6);
        assert_eq!(tcp("-3").unwrap().ports(), &[1, 2, 3]);
        assert_eq!(compact(tcp("1,2,3,5,7-9").unwrap().ports()), "1-3,5,7-9");
    }

    #[test]
    fn named_lists() {
        assert_eq!(tcp("all").unwrap().len(), 65535);
        let top = tcp("top1000").unwrap();
        assert_eq!(top.len(), 1000);
        for p in [22, 80, 443, 3306, 5432, 8080] {
            assert!(top.contains(p), "top1000 lacks {p}");
        }
        assert_eq!(tcp("top100").unwrap().len(), 100);
        let udp = PortSet::parse("top1000", Transport::Udp).unwrap();
        assert_eq!(udp.len(), 1000);
        for p in [53, 123, 161, 500] {
            assert!(udp.contains(p), "udp top1000 lacks {p}");
        }
        assert_eq!(tcp("top10,9999").unwrap().len(), 11);
    }

    #[test]
    fn errors_name_the_column() {
        let e = tcp("22,8o,443").unwrap_err();
        assert_eq!(e.column, 4, "{e}");
        assert!(e.to_string().contains("`8o` is not a port number"), "{e}");
        let e = tcp("22,70000").unwrap_err();
        assert_eq!(e.column, 4);
        assert!(e.message.contains("out of range"));
        let e = tcp("100-90").unwrap_err();
        assert!(e.message.contains("backwards"), "{e}");
        let e = tcp("22,,80").unwrap_err();
        assert_eq!(e.column, 4);
        assert!(tcp("").is_err());
        assert!(tcp("0").is_err());
        assert!(tcp("top0").is_err());
        assert!(tcp("top1001").is_err());
        assert!(tcp("topx").is_err());
        let e = tcp("1-2x").unwrap_err();
        assert_eq!(e.column, 3, "{e}");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = tcp(&s);
        }

        #[test]
        fn ranges_round_trip(mut v in proptest::collection::vec(1u16..=65535, 0..50)) {
            v.sort_unstable();
            v.dedup();
            let spec = compact(&v);
            if !v.is_empty() {
                let p = tcp(&spec).unwrap();
                proptest::prop_assert_eq!(p.ports(), &v[..]);
            }
        }
    }
}
