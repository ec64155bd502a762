//! `portwarden baseline suggest`: a baseline proposed from a scan, as YAML to paste under
//! `baselines:`. Hosts with the same open ports (and services) share one baseline; every open
//! port becomes an expected `allowed_open` entry with the service guessed there; anything else
//! is a finding under `policy: deny`. What a remote service said (versions, banners) only ever
//! goes into comments, sanitised: nothing a probed host sends can change the YAML's meaning.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use portwarden_core::Transport;

use crate::{PortState, ScanReport};

/// Hosts listed one by one at most; a larger group of hosts with nothing open is left as a
/// comment (the scan's own targets can be used for it).
const MAX_LISTED_SILENT: usize = 64;

/// How the suggestion is written.
#[derive(Debug, Clone)]
pub struct SuggestOptions {
    /// Baseline name (`-2`, `-3`... for further groups).
    pub name: String,
    /// `deny` or `ignore`.
    pub policy: String,
    /// The command line, for the header comment.
    pub command: String,
}

/// One open port as the baseline will expect it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Expected {
    port: u16,
    transport: Transport,
    service: Option<String>,
}

/// The suggested YAML (a `baselines:` list).
pub fn baseline_yaml(r: &ScanReport, o: &SuggestOptions) -> String {
    // Hosts grouped by what is open on them.
    let mut groups: BTreeMap<Vec<Expected>, Vec<IpAddr>> = BTreeMap::new();
    let mut notes: BTreeMap<(u16, Transport), String> = BTreeMap::new();
    for h in &r.hosts {
        let mut open: Vec<Expected> = h
            .ports
            .iter()
            .filter(|p| p.state == PortState::Open)
            .map(|p| {
                if let Some(s) = &p.service
                    && let Some(n) = s.version.as_deref().or(s.banner.as_deref())
                {
                    notes
                        .entry((p.port, p.transport))
                        .or_insert_with(|| comment_text(n));
                }
                Expected {
                    port: p.port,
                    transport: p.transport,
                    // A guess from the port number alone is no evidence of what runs there.
                    service: p
                        .service
                        .as_ref()
                        .filter(|s| s.method.as_deref() != Some("port"))
                        .and_then(|s| s.service.as_deref())
                        .filter(|s| is_identifier(s))
                        .map(str::to_string),
                }
            })
            .collect();
        open.sort();
        open.dedup();
        groups.entry(open).or_default().push(h.addr);
    }
    let open_ports: usize = groups.iter().map(|(k, v)| k.len() * v.len()).sum();
    let answering = groups
        .iter()
        .filter(|(k, _)| !k.is_empty())
        .map(|(_, v)| v.len())
        .sum::<usize>();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Suggested by `{}` at {}.",
        comment_line(&o.command, 300),
        r.finished_at.format("%Y-%m-%dT%H:%M:%SZ")
    );
    let _ = writeln!(
        out,
        "# {answering} host(s) with {open_ports} open port(s) in all. Review before committing:"
    );
    let _ = writeln!(
        out,
        "# every open port below becomes expected (a finding when it closes);"
    );
    let _ = writeln!(
        out,
        "# {}.",
        if o.policy == "deny" {
            "any other port found open later is a finding (policy: deny)"
        } else {
            "other open ports are ignored (policy: ignore)"
        }
    );
    if r.cancelled {
        let _ = writeln!(
            out,
            "# WARNING: the scan was stopped before the end; ports it did not reach are missing."
        );
    }
    if groups.is_empty() {
        let _ = writeln!(out, "# No host answered: nothing to suggest.");
        let _ = writeln!(out, "baselines: []");
        return out;
    }
    let _ = writeln!(out, "baselines:");
    let single = groups.len() == 1;
    // Hosts with open ports first: the first baseline is the one that matters.
    let mut ordered: Vec<(&Vec<Expected>, &Vec<IpAddr>)> = groups.iter().collect();
    ordered.sort_by_key(|(open, _)| open.is_empty());
    let mut n = 0;
    for (open, hosts) in ordered {
        if open.is_empty() && !single && hosts.len() > MAX_LISTED_SILENT {
            let _ = writeln!(
                out,
                "  # {} other address(es) had no open port: to keep them closed, give them a baseline",
                hosts.len()
            );
            let _ = writeln!(
                out,
                "  # with the scan's targets and `allowed_open: []` (or list them here)."
            );
            continue;
        }
        n += 1;
        let name = if n == 1 {
            o.name.clone()
        } else {
            format!("{}-{n}", o.name)
        };
        let _ = writeln!(out, "  - name: {}", yaml_str(&name));
        // One group: the scan's own targets (a CIDR stays a CIDR); several: their hosts.
        let targets: Vec<String> = if single {
            r.targets.iter().map(|t| yaml_str(t)).collect()
        } else {
            hosts.iter().map(|a| yaml_str(&a.to_string())).collect()
        };
        let _ = writeln!(out, "    targets: [{}]", targets.join(", "));
        match &r.tcp_ports {
            Some(p) => {
                let _ = writeln!(out, "    ports: {}", yaml_str(p));
            }
            None => {
                // A UDP-only scan: no TCP ports unless the baseline names them.
                let _ = writeln!(out, "    ports: none");
            }
        }
        if let Some(p) = &r.udp_ports {
            let _ = writeln!(out, "    udp_ports: {}", yaml_str(p));
        }
        let _ = writeln!(out, "    policy: {}", o.policy);
        if open.is_empty() {
            let _ = writeln!(out, "    allowed_open: []   # nothing was open");
            continue;
        }
        let _ = writeln!(out, "    allowed_open:");
        for e in open {
            let port = match e.transport {
                Transport::Udp => format!("\"{}/udp\"", e.port),
                _ => e.port.to_string(),
            };
            let entry = match &e.service {
                Some(s) => format!("{{port: {port}, service: {s}}}"),
                None => format!("{{port: {port}}}"),
            };
            match notes.get(&(e.port, e.transport)) {
                Some(c) if !c.is_empty() => {
                    let _ = writeln!(out, "      - {entry}   # {c}");
                }
                _ => {
                    let _ = writeln!(out, "      - {entry}");
                }
            }
        }
    }
    out
}

/// A service name safe to write bare (`ssh`, `postgres`, `http-proxy`).
fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
}

/// Text for a comment: the first line, printable ASCII only, at most 60 characters.
fn comment_text(s: &str) -> String {
    comment_line(s, 60)
}

/// The first line of `s`, printable ASCII only, at most `max` characters.
fn comment_line(s: &str, max: usize) -> String {
    let line = s.lines().next().unwrap_or_default();
    let clean: String = line
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(max)
        .collect();
    clean.trim().to_string()
}

/// A YAML double-quoted scalar.
fn yaml_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(o, "\\u{:04x}", u32::from(c));
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::banner::ServiceGuess;
    use crate::{HostReport, PortReport, Reason};
    use chrono::Utc;

    fn port(p: u16, svc: Option<(&str, &str)>) -> PortReport {
        PortReport {
            port: p,
            transport: Transport::Tcp,
            state: PortState::Open,
            reason: Reason::SynAck,
            rtt_ms: 0.1,
            service: svc.map(|(s, v)| ServiceGuess {
                service: Some(s.into()),
                version: Some(v.into()),
                ..Default::default()
            }),
        }
    }

    fn report(hosts: Vec<(&str, Vec<PortReport>)>) -> ScanReport {
        ScanReport {
            started_at: Utc::now(),
            finished_at: Utc::now(),
            duration_ms: 1.0,
            targets: vec!["10.0.0.0/30".into()],
            tcp_ports: Some("top1000".into()),
            udp_ports: None,
            probes: 1,
            hosts: hosts
                .into_iter()
                .map(|(a, ports)| HostReport {
                    addr: a.parse().unwrap(),
                    name: None,
                    ports,
                    counts: Default::default(),
                })
                .collect(),
            cancelled: false,
        }
    }

    fn opts() -> SuggestOptions {
        SuggestOptions {
            name: "web".into(),
            policy: "deny".into(),
            command: "portwarden baseline suggest 10.0.0.0/30".into(),
        }
    }

    #[test]
    fn one_group_keeps_the_targets() {
        let r = report(vec![
            ("10.0.0.1", vec![port(22, Some(("ssh", "OpenSSH_9.2p1")))]),
            ("10.0.0.2", vec![port(22, Some(("ssh", "OpenSSH_9.6")))]),
        ]);
        let y = baseline_yaml(&r, &opts());
        assert!(
            y.contains("  - name: \"web\"\n    targets: [\"10.0.0.0/30\"]\n"),
            "{y}"
        );
        assert!(
            y.contains("      - {port: 22, service: ssh}   # OpenSSH_9.2p1\n"),
            "{y}"
        );
        assert_eq!(y.matches("- name:").count(), 1, "{y}");
    }

    #[test]
    fn groups_by_open_ports_and_keeps_hostile_text_in_comments() {
        let mut evil = port(6379, None);
        evil.service = Some(ServiceGuess {
            service: Some("x\n    policy: ignore".into()),
            banner: Some("-ERR\n  - name: pwned\"".into()),
            ..Default::default()
        });
        let r = report(vec![
            ("10.0.0.1", vec![port(22, Some(("ssh", "OpenSSH")))]),
            ("10.0.0.2", vec![evil]),
            ("10.0.0.3", vec![]),
        ]);
        let y = baseline_yaml(&r, &opts());
        assert_eq!(y.matches("\n  - name:").count(), 3, "{y}");
        assert!(y.contains("name: \"web-2\""), "{y}");
        assert!(y.contains("targets: [\"10.0.0.3\"]"), "{y}");
        assert!(y.contains("allowed_open: []"), "{y}");
        // The bogus service name is dropped; the banner is one sanitised comment line.
        assert!(y.contains("      - {port: 6379}   # -ERR\n"), "{y}");
        assert!(!y.contains("pwned"), "{y}");
        assert!(!y.contains("policy: ignore"), "{y}");
    }

    #[test]
    fn no_host_no_baseline() {
        let y = baseline_yaml(&report(vec![]), &opts());
        assert!(y.ends_with("baselines: []\n"), "{y}");
    }

    #[test]
    fn a_udp_only_scan_suggests_ports_none() {
        let mut dns = port(53, Some(("dns", "dnsmasq-2.89")));
        dns.transport = Transport::Udp;
        let mut r = report(vec![("10.0.0.1", vec![dns])]);
        r.tcp_ports = None;
        r.udp_ports = Some("53".into());
        let y = baseline_yaml(&r, &opts());
        assert!(
            y.contains("    ports: none\n    udp_ports: \"53\"\n"),
            "{y}"
        );
        assert!(
            y.contains("      - {port: \"53/udp\", service: dns}"),
            "{y}"
        );
    }
}
