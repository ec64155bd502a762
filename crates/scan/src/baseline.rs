//! Baselines: the approved open ports per host, CIDR block or label, and the drift a scan shows
//! against them (`unexpected_open`, `expected_open_closed`, `service_changed`). Pure: the
//! comparison is a function of the baseline, the scan and the previous fingerprints.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use portwarden_core::{Severity, Transport};
use serde::{Deserialize, Serialize};

use crate::{PortSet, PortState, ScanOptions, ScanReport, ServiceGuess};

/// What to do with open ports the baseline does not name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultPolicy {
    /// Every other open port is a finding.
    #[default]
    Deny,
    /// Only `must_be_closed` ports are findings.
    Ignore,
}

/// Ports allowed (and, for single ports by default, expected) to be open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AllowedPorts {
    pub ports: PortSet,
    pub transport: Transport,
    /// The service expected there (`ssh`, `postgres`, `http`); a different one is `service_changed`.
    pub service: Option<String>,
    /// A closed or filtered port here is `expected_open_closed` (default: true for a single
    /// port, false for a range).
    pub expected: bool,
}

/// A baseline as configured (validated by `portwarden-config`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Baseline {
    pub name: String,
    /// Hosts, IPs and CIDR blocks.
    pub targets: Vec<String>,
    /// Monitors with all these labels contribute their hosts as targets.
    pub labels: BTreeMap<String, String>,
    /// TCP ports scanned (the configured `ports` plus every port the baseline names).
    pub tcp_ports: PortSet,
    /// UDP ports scanned, if any.
    pub udp_ports: Option<PortSet>,
    /// In the API as written in config (`1h`, `30m`).
    #[serde(serialize_with = "portwarden_core::duration::serde_human::serialize")]
    pub interval: Duration,
    pub policy: DefaultPolicy,
    pub allowed_open: Vec<AllowedPorts>,
    pub must_be_closed: Vec<(PortSet, Transport)>,
    pub severity: Severity,
    /// Notification routes for this baseline's findings.
    pub routes: Vec<String>,
    pub owner: Option<String>,
    /// Where the remediation steps for its findings live (shown in notifications).
    pub runbook: Option<String>,
    /// The business capability its exposure concerns (shown in notifications).
    pub capability: Option<String>,
    #[serde(skip)]
    pub options: ScanOptions,
}

impl Baseline {
    /// What is left of a baseline removed from the config: its name (its open findings are
    /// resolved under it), nothing to scan, no routes of its own.
    pub fn removed(name: &str) -> Baseline {
        Baseline {
            name: name.to_string(),
            targets: Vec::new(),
            labels: BTreeMap::new(),
            tcp_ports: PortSet::from_ports(Vec::new()),
            udp_ports: None,
            interval: Duration::from_secs(3600),
            policy: DefaultPolicy::Ignore,
            allowed_open: Vec::new(),
            must_be_closed: Vec::new(),
            severity: Severity::High,
            routes: Vec::new(),
            owner: None,
            runbook: None,
            capability: None,
            options: ScanOptions::default(),
        }
    }

    /// The monitor name its findings' incidents are filed under.
    pub fn incident_monitor(&self) -> String {
        format!("{}{}", portwarden_core::FINDING_MONITOR_PREFIX, self.name)
    }

    fn allowed(&self, port: u16, t: Transport) -> Option<&AllowedPorts> {
        self.allowed_open
            .iter()
            .find(|a| a.transport == t && a.ports.contains(port))
    }

    fn must_be_closed(&self, port: u16, t: Transport) -> bool {
        self.must_be_closed
            .iter()
            .any(|(p, tt)| *tt == t && p.contains(port))
    }
}

/// Kinds of drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    UnexpectedOpen,
    ExpectedOpenClosed,
    ServiceChanged,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::UnexpectedOpen => "unexpected_open",
            FindingKind::ExpectedOpenClosed => "expected_open_closed",
            FindingKind::ServiceChanged => "service_changed",
        }
    }

    pub fn parse(s: &str) -> Option<FindingKind> {
        [
            FindingKind::UnexpectedOpen,
            FindingKind::ExpectedOpenClosed,
            FindingKind::ServiceChanged,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What identifies a finding across scans: it stays open while scans keep seeing it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FindingKey {
    pub baseline: String,
    pub kind: FindingKind,
    pub host: IpAddr,
    pub port: u16,
    pub transport: Transport,
}

impl fmt::Display for FindingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = match self.host {
            IpAddr::V6(a) => format!("[{a}]"),
            a => a.to_string(),
        };
        write!(f, "{} {host}:{}/{}", self.kind, self.port, self.transport)
    }
}

/// One drift seen by one scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    pub key: FindingKey,
    /// For people: what was seen and what was expected.
    pub message: String,
    pub state: PortState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceGuess>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_service: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_fingerprint: Option<String>,
}

/// Fingerprints of open ports from a scan: `(host, port, transport) → fingerprint`.
pub type Fingerprints = HashMap<(IpAddr, u16, Transport), String>;

/// A guess worth comparing: the service answered something (a banner, a protocol reply).
/// A port that said nothing this time (a slow banner, a busy server) or a guess from the port
/// number alone tells nothing about a change, and must not raise `service_changed`.
fn answered(s: &crate::banner::ServiceGuess) -> bool {
    s.method.as_deref() != Some("port") && (s.service.is_some() || s.banner.is_some())
}

/// The fingerprints of every open port of a scan whose service answered.
pub fn fingerprints(r: &ScanReport) -> Fingerprints {
    let mut m = HashMap::new();
    for h in &r.hosts {
        for p in &h.ports {
            if p.state == PortState::Open
                && let Some(s) = &p.service
                && answered(s)
            {
                m.insert((h.addr, p.port, p.transport), s.fingerprint());
            }
        }
    }
    m
}

/// What the next scan compares with: this scan's fingerprints, plus the previous one of each
/// port that is still open but did not answer this time (so one silent read neither raises
/// a change nor hides the next real one).
pub fn carry_fingerprints(previous: Option<&Fingerprints>, r: &ScanReport) -> Fingerprints {
    let mut m = fingerprints(r);
    if let Some(prev) = previous {
        for h in &r.hosts {
            for p in h.ports.iter().filter(|p| p.state == PortState::Open) {
                let k = (h.addr, p.port, p.transport);
                if !m.contains_key(&k)
                    && let Some(fp) = prev.get(&k)
                {
                    m.insert(k, fp.clone());
                }
            }
        }
    }
    m
}

/// Compares a scan with the baseline. `previous` holds the last scan's fingerprints (for
/// `service_changed`); `None` on the first scan.
pub fn compare(b: &Baseline, r: &ScanReport, previous: Option<&Fingerprints>) -> Vec<Observed> {
    let mut out = Vec::new();
    for h in &r.hosts {
        let key = |kind, port, transport| FindingKey {
            baseline: b.name.clone(),
            kind,
            host: h.addr,
            port,
            transport,
        };
        // Open ports: unexpected, or a changed service.
        for p in h.ports.iter().filter(|p| p.state == PortState::Open) {
            let allowed = b.allowed(p.port, p.transport);
            let banned = b.must_be_closed(p.port, p.transport);
            let what = describe(p.service.as_ref());
            if banned || (allowed.is_none() && b.policy == DefaultPolicy::Deny) {
                out.push(Observed {
                    key: key(FindingKind::UnexpectedOpen, p.port, p.transport),
                    message: format!(
                        "{}:{}/{} is open{} but {}",
                        fmt_host(h.addr),
                        p.port,
                        p.transport,
                        what,
                        if banned {
                            "the baseline says it must be closed"
                        } else {
                            "the baseline does not allow it"
                        }
                    ),
                    state: p.state,
                    service: p.service.clone(),
                    expected_service: None,
                    previous_fingerprint: None,
                });
                continue;
            }
            let guessed = p.service.as_ref().and_then(|s| s.service.clone());
            let expected = allowed.and_then(|a| a.service.clone());
            let fp_now = p
                .service
                .as_ref()
                .filter(|s| answered(s))
                .map(|s| s.fingerprint());
            let fp_before = previous.and_then(|m| m.get(&(h.addr, p.port, p.transport)));
            let service_mismatch = match (&expected, &guessed) {
                (Some(e), Some(g)) => !same_service(e, g),
                _ => false,
            };
            let fingerprint_changed = match (fp_before, &fp_now) {
                (Some(before), Some(now)) => before != now,
                _ => false,
            };
            if service_mismatch || fingerprint_changed {
                let message = if service_mismatch {
                    format!(
                        "{}:{}/{} answers as {}{} where the baseline expects {}",
                        fmt_host(h.addr),
                        p.port,
                        p.transport,
                        guessed.as_deref().unwrap_or("?"),
                        what,
                        expected.as_deref().unwrap_or("?")
                    )
                } else {
                    format!(
                        "{}:{}/{} changed: was `{}`, now `{}`",
                        fmt_host(h.addr),
                        p.port,
                        p.transport,
                        fp_before.map(String::as_str).unwrap_or(""),
                        fp_now.as_deref().unwrap_or("")
                    )
                };
                out.push(Observed {
                    key: key(FindingKind::ServiceChanged, p.port, p.transport),
                    message,
                    state: p.state,
                    service: p.service.clone(),
                    expected_service: expected,
                    previous_fingerprint: fp_before.cloned(),
                });
            }
        }
        // Expected ports that are not open.
        for a in b.allowed_open.iter().filter(|a| a.expected) {
            for &port in a.ports.ports() {
                let state = h.state(port, a.transport, r);
                if let Some(s) = state
                    && s != PortState::Open
                    && s != PortState::Error
                    // UDP silence may be an open port that ignores our datagram.
                    && !(a.transport == Transport::Udp && s == PortState::OpenFiltered)
                {
                    out.push(Observed {
                        key: key(FindingKind::ExpectedOpenClosed, port, a.transport),
                        message: format!(
                            "{}:{port}/{} is {s} but the baseline expects it open{}",
                            fmt_host(h.addr),
                            a.transport,
                            a.service
                                .as_deref()
                                .map(|s| format!(" ({s})"))
                                .unwrap_or_default()
                        ),
                        state: s,
                        service: None,
                        expected_service: a.service.clone(),
                        previous_fingerprint: None,
                    });
                }
            }
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out.dedup_by(|a, b| a.key == b.key);
    out
}

/// `https` matches `tls`, `postgresql` matches `postgres`, `mariadb` matches `mysql`.
fn same_service(expected: &str, guessed: &str) -> bool {
    let norm = |s: &str| match s.to_ascii_lowercase().as_str() {
        "https" | "tls" | "ssl" => "tls".to_string(),
        "postgresql" | "pg" => "postgres".to_string(),
        "mariadb" => "mysql".to_string(),
        "smtps" | "submission" => "smtp".to_string(),
        "rabbitmq" => "amqp".to_string(),
        other => other.to_string(),
    };
    let (e, g) = (norm(expected), norm(guessed));
    e == g || (g == "smtp-or-ftp" && (e == "smtp" || e == "ftp"))
}

fn describe(s: Option<&ServiceGuess>) -> String {
    match s {
        Some(g) if g.service.is_some() || g.banner.is_some() => format!(" ({})", g.fingerprint()),
        _ => String::new(),
    }
}

/// An address as it is written beside a port: IPv6 in brackets.
pub fn fmt_host(a: IpAddr) -> String {
    match a {
        IpAddr::V6(v) => format!("[{v}]"),
        v => v.to_string(),
    }
}

/// Ports a baseline scans: `ports` plus every port it names, per transport.
pub fn scan_sets(
    tcp: Option<PortSet>,
    udp: Option<PortSet>,
    allowed: &[AllowedPorts],
    closed: &[(PortSet, Transport)],
) -> (PortSet, Option<PortSet>) {
    let mut t = tcp.unwrap_or_else(|| {
        PortSet::parse("top1000", Transport::Tcp).unwrap_or_else(|_| PortSet::from_ports(vec![]))
    });
    let mut u = udp;
    let named = allowed
        .iter()
        .map(|a| (&a.ports, a.transport))
        .chain(closed.iter().map(|(p, t)| (p, *t)));
    for (p, tr) in named {
        match tr {
            Transport::Tcp => t = t.union(p),
            Transport::Udp => u = Some(u.map(|x| x.union(p)).unwrap_or_else(|| p.clone())),
        }
    }
    (t, u)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HostReport, PortReport, Reason};
    use chrono::Utc;

    fn baseline(policy: DefaultPolicy) -> Baseline {
        let allowed = vec![
            AllowedPorts {
                ports: PortSet::parse("22", Transport::Tcp).unwrap(),
                transport: Transport::Tcp,
                service: Some("ssh".into()),
                expected: true,
            },
            AllowedPorts {
                ports: PortSet::parse("8000-8100", Transport::Tcp).unwrap(),
                transport: Transport::Tcp,
                service: None,
                expected: false,
            },
        ];
        let closed = vec![(
            PortSet::parse("6379", Transport::Tcp).unwrap(),
            Transport::Tcp,
        )];
        let (tcp_ports, udp_ports) = scan_sets(
            Some(PortSet::parse("1-100", Transport::Tcp).unwrap()),
            None,
            &allowed,
            &closed,
        );
        Baseline {
            name: "web".into(),
            targets: vec!["10.0.0.1".into()],
            labels: BTreeMap::new(),
            tcp_ports,
            udp_ports,
            interval: Duration::from_secs(3600),
            policy,
            allowed_open: allowed,
            must_be_closed: closed,
            severity: Severity::High,
            routes: vec![],
            owner: None,
            runbook: None,
            capability: None,
            options: ScanOptions::default(),
        }
    }

    fn report(b: &Baseline, open: &[(u16, Option<&str>)]) -> ScanReport {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let ports = open
            .iter()
            .map(|(p, svc)| PortReport {
                port: *p,
                transport: Transport::Tcp,
                state: PortState::Open,
                reason: Reason::SynAck,
                rtt_ms: 0.1,
                service: svc.map(|s| ServiceGuess {
                    service: Some(s.split(' ').next().unwrap().into()),
                    version: s.split_once(' ').map(|x| x.1.to_string()),
                    ..Default::default()
                }),
            })
            .collect();
        ScanReport {
            started_at: Utc::now(),
            finished_at: Utc::now(),
            duration_ms: 1.0,
            targets: b.targets.clone(),
            tcp_ports: Some(b.tcp_ports.spec().to_string()),
            udp_ports: None,
            probes: 1,
            hosts: vec![HostReport {
                addr: ip,
                name: None,
                ports,
                counts: Default::default(),
            }],
            cancelled: false,
        }
    }

    fn kinds(v: &[Observed]) -> Vec<(FindingKind, u16)> {
        v.iter().map(|o| (o.key.kind, o.key.port)).collect()
    }

    #[test]
    fn drift_against_the_baseline() {
        let b = baseline(DefaultPolicy::Deny);
        assert_eq!(b.tcp_ports.len(), 100 + 101 + 1);
        // Clean: ssh open, a port in the allowed range open.
        let r = report(&b, &[(22, Some("ssh OpenSSH_9")), (8080, Some("http"))]);
        assert!(
            compare(&b, &r, None).is_empty(),
            "{:?}",
            compare(&b, &r, None)
        );
        // An extra port and a must-be-closed one open, ssh gone.
        let r = report(&b, &[(25, None), (6379, Some("redis"))]);
        let f = compare(&b, &r, None);
        assert_eq!(
            kinds(&f),
            vec![
                (FindingKind::UnexpectedOpen, 25),
                (FindingKind::UnexpectedOpen, 6379),
                (FindingKind::ExpectedOpenClosed, 22)
            ]
        );
        assert!(f[1].message.contains("must be closed"), "{}", f[1].message);
        assert!(
            f[2].message
                .contains("is closed but the baseline expects it open (ssh)"),
            "{}",
            f[2].message
        );
        // Ignore policy: only the must-be-closed port.
        let b2 = baseline(DefaultPolicy::Ignore);
        let f = compare(&b2, &r, None);
        assert_eq!(
            kinds(&f),
            vec![
                (FindingKind::UnexpectedOpen, 6379),
                (FindingKind::ExpectedOpenClosed, 22)
            ]
        );
    }

    #[test]
    fn service_changes() {
        let b = baseline(DefaultPolicy::Deny);
        let r = report(&b, &[(22, Some("http nginx"))]);
        let f = compare(&b, &r, None);
        assert_eq!(kinds(&f), vec![(FindingKind::ServiceChanged, 22)]);
        assert!(f[0].message.contains("answers as http"), "{}", f[0].message);
        // Same service, new version: changed against the previous scan's fingerprint.
        let before = fingerprints(&report(&b, &[(22, Some("ssh OpenSSH_8"))]));
        let r = report(&b, &[(22, Some("ssh OpenSSH_9"))]);
        let f = compare(&b, &r, Some(&before));
        assert_eq!(kinds(&f), vec![(FindingKind::ServiceChanged, 22)]);
        assert_eq!(f[0].previous_fingerprint.as_deref(), Some("ssh OpenSSH_8"));
        assert!(compare(&b, &r, Some(&fingerprints(&r))).is_empty());

        // A scan where the port said nothing (or only its number hints at ssh): no change,
        // and the fingerprint before it is carried to the next scan, which sees a real one.
        let before = fingerprints(&report(&b, &[(22, Some("ssh OpenSSH_9"))]));
        let mut silent = report(&b, &[(22, Some("ssh"))]);
        silent.hosts[0].ports[0].service = Some(crate::banner::ServiceGuess {
            service: Some("ssh".into()),
            method: Some("port".into()),
            ..Default::default()
        });
        assert!(compare(&b, &silent, Some(&before)).is_empty());
        let mut mute = silent.clone();
        mute.hosts[0].ports[0].service = Some(crate::banner::ServiceGuess::default());
        assert!(compare(&b, &mute, Some(&before)).is_empty());
        let carried = carry_fingerprints(Some(&before), &mute);
        assert_eq!(carried, before);
        let upgraded = report(&b, &[(22, Some("ssh OpenSSH_10"))]);
        let f = compare(&b, &upgraded, Some(&carried));
        assert_eq!(kinds(&f), vec![(FindingKind::ServiceChanged, 22)]);
        assert_eq!(f[0].previous_fingerprint.as_deref(), Some("ssh OpenSSH_9"));
        // A port that closed takes its fingerprint with it.
        let closed = report(&b, &[]);
        assert!(carry_fingerprints(Some(&before), &closed).is_empty());
    }
}
