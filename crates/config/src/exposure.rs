//! The exposure-guard sections: `scan:` (limits and defaults of every scan), `baselines:` (the
//! approved open ports per host, CIDR or label) and `controls:` (a compliance mapping: which
//! baselines and monitors evidence which control — data, not framework text in code).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use portwarden_core::duration::serde_human::option as opt_dur;
use portwarden_core::{Severity, Transport};
use portwarden_scan::baseline::{AllowedPorts, Baseline, DefaultPolicy, scan_sets};
use portwarden_scan::{Cidr, PortSet, ScanOptions, TargetPolicy, TargetSpec};
use serde::{Deserialize, Serialize};

use crate::Diagnostic;
use crate::de::{Sink, from_node};
use crate::node::{Loc, Node, NodeKind};

/// `scan:`: limits every scan respects (also read by `portwarden scan --config`).
#[derive(Debug, Clone, PartialEq)]
pub struct ScanSettings {
    pub policy: TargetPolicy,
    /// Defaults for scheduled scans (timeouts, rate, concurrency, banners).
    pub options: ScanOptions,
}

impl Default for ScanSettings {
    fn default() -> Self {
        ScanSettings {
            policy: TargetPolicy::default(),
            options: ScanOptions {
                // Scheduled scans run beside the monitors: gentler than the CLI by default.
                concurrency: 256,
                per_host: 64,
                ..ScanOptions::default()
            },
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScan {
    #[serde(default)]
    allow: Option<Vec<String>>,
    #[serde(default)]
    max_addresses: Option<u64>,
    #[serde(default)]
    rate: Option<u32>,
    #[serde(default)]
    concurrency: Option<usize>,
    #[serde(default)]
    per_host: Option<usize>,
    #[serde(default, with = "opt_dur")]
    timeout: Option<Duration>,
    #[serde(default)]
    retries: Option<u32>,
    #[serde(default)]
    banners: Option<bool>,
    #[serde(default, with = "opt_dur")]
    banner_timeout: Option<Duration>,
}

pub(crate) fn resolve_scan(
    n: &Node,
    sink: &Sink,
    diags: &mut Vec<Diagnostic>,
) -> Option<ScanSettings> {
    let raw: RawScan = match from_node(n, sink) {
        Ok(r) => r,
        Err(e) => {
            diags.push(e.into_diagnostic());
            return None;
        }
    };
    let before = diags.len();
    let mut s = ScanSettings::default();
    if let Some(list) = raw.allow {
        let mut v = Vec::new();
        for (i, c) in list.iter().enumerate() {
            match Cidr::parse(c) {
                Ok(c) => v.push(c),
                Err(e) => diags.push(
                    Diagnostic::error(n.loc_of(&format!("allow[{i}]")), format!("scan.allow: {e}"))
                        .hint("write CIDR blocks like `10.0.0.0/8` or `fd00::/64`"),
                ),
            }
        }
        s.policy.allow = Some(v);
    }
    if let Some(m) = raw.max_addresses {
        if m == 0 {
            diags.push(
                Diagnostic::error(
                    n.loc_of("max_addresses"),
                    "`scan.max_addresses` must be at least 1",
                )
                .hint("65536 (an IPv4 /16) is the default"),
            );
        }
        s.policy.max_addresses = m;
    }
    for (field, v) in [("concurrency", raw.concurrency), ("per_host", raw.per_host)] {
        if v == Some(0) {
            diags.push(Diagnostic::error(
                n.loc_of(field),
                format!("`scan.{field}` must be at least 1"),
            ));
        }
    }
    if raw.rate == Some(0) {
        diags.push(
            Diagnostic::error(
                n.loc_of("rate"),
                "`scan.rate` must be at least 1 probe per second",
            )
            .hint("omit it for no rate limit"),
        );
    }
    let o = &mut s.options;
    o.rate = raw.rate.or(o.rate);
    o.concurrency = raw.concurrency.unwrap_or(o.concurrency);
    o.per_host = raw.per_host.unwrap_or(o.per_host);
    o.timeout = raw.timeout.unwrap_or(o.timeout);
    o.udp_timeout = raw.timeout.unwrap_or(o.udp_timeout);
    o.retries = raw.retries.unwrap_or(o.retries);
    o.banners = raw.banners.unwrap_or(o.banners);
    o.banner_timeout = raw.banner_timeout.unwrap_or(o.banner_timeout);
    o.policy = s.policy.clone();
    (diags.len() == before).then_some(s)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
// The port fields are read from the node itself (for column-exact errors); serde only checks
// that they are there and rejects unknown fields.
#[allow(dead_code)]
struct RawBaseline {
    name: String,
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    ports: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    udp_ports: Option<serde::de::IgnoredAny>,
    #[serde(default, with = "opt_dur")]
    interval: Option<Duration>,
    #[serde(default)]
    policy: Option<DefaultPolicy>,
    #[serde(default)]
    allowed_open: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    must_be_closed: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    severity: Option<Severity>,
    #[serde(default)]
    routes: Vec<String>,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    runbook: Option<String>,
    #[serde(default)]
    capability: Option<String>,
}

/// Fields of an `allowed_open` entry written as a mapping.
const ALLOWED_FIELDS: &[&str] = &["port", "ports", "transport", "service", "expected"];

/// A port spec written as a scalar (`22`, `"8000-8100"`, `53/udp`), with the location of a
/// bad column inside it.
fn port_scalar(
    n: &Node,
    default: Transport,
    what: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<(PortSet, Transport)> {
    let Some(text) = n.scalar_text() else {
        diags.push(
            Diagnostic::error(
                n.loc,
                format!(
                    "{what} must be a port, a range or a list like `22,80,8000-8100`, found {}",
                    n.describe()
                ),
            )
            .hint("write e.g. `22`, `8000-8100` or `53/udp`"),
        );
        return None;
    };
    let (spec, transport) = match text.rsplit_once('/') {
        Some((p, "tcp")) => (p.to_string(), Transport::Tcp),
        Some((p, "udp")) => (p.to_string(), Transport::Udp),
        _ => (text.to_string(), default),
    };
    match PortSet::parse(&spec, transport) {
        Ok(p) => Some((p, transport)),
        Err(e) => {
            let loc = Loc {
                line: n.loc.line,
                col: n.loc.col + (e.column as u32).saturating_sub(1),
            };
            diags.push(Diagnostic::error(loc, format!("{what}: {e}")).hint("ports are 1-65535; ranges are `LOW-HIGH`; lists are comma-separated; `top1000` and `all` also work"));
            None
        }
    }
}

/// A list of port scalars, or one scalar.
fn port_list(n: &Node, what: &str, diags: &mut Vec<Diagnostic>) -> Vec<(PortSet, Transport)> {
    match &n.kind {
        NodeKind::Null => Vec::new(),
        NodeKind::Seq(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, it)| port_scalar(it, Transport::Tcp, &format!("{what}[{i}]"), diags))
            .collect(),
        _ => port_scalar(n, Transport::Tcp, what, diags)
            .into_iter()
            .collect(),
    }
}

fn allowed_entry(n: &Node, what: &str, diags: &mut Vec<Diagnostic>) -> Option<AllowedPorts> {
    let mk = |ports: PortSet, transport, service, expected: Option<bool>| {
        let single = ports.len() == 1;
        AllowedPorts {
            ports,
            transport,
            service,
            expected: expected.unwrap_or(single),
        }
    };
    if !matches!(n.kind, NodeKind::Map(_)) {
        let (p, t) = port_scalar(n, Transport::Tcp, what, diags)?;
        return Some(mk(p, t, None, None));
    }
    for (k, _) in n.entries() {
        let key = k.as_str().unwrap_or("");
        if !ALLOWED_FIELDS.contains(&key) {
            diags.push(
                Diagnostic::error(k.loc, format!("{what}: unknown field `{key}`"))
                    .hint(crate::diag::did_you_mean(key, ALLOWED_FIELDS)),
            );
            return None;
        }
    }
    let transport = match n
        .get("transport")
        .map(|t| t.scalar_text().unwrap_or_default().to_string())
    {
        None => Transport::Tcp,
        Some(t) if t == "tcp" => Transport::Tcp,
        Some(t) if t == "udp" => Transport::Udp,
        Some(t) => {
            diags.push(Diagnostic::error(
                n.loc_of("transport"),
                format!("{what}: transport `{t}` must be `tcp` or `udp`"),
            ));
            return None;
        }
    };
    let pnode = match (n.get("port"), n.get("ports")) {
        (Some(p), None) | (None, Some(p)) => p,
        (Some(_), Some(_)) => {
            diags.push(Diagnostic::error(
                n.loc_of("ports"),
                format!("{what}: set `port` or `ports`, not both"),
            ));
            return None;
        }
        (None, None) => {
            diags.push(
                Diagnostic::error(n.loc, format!("{what}: `port` is missing"))
                    .hint("write e.g. `{port: 22, service: ssh}`"),
            );
            return None;
        }
    };
    let (ports, transport) = port_scalar(pnode, transport, what, diags)?;
    let service = n
        .get("service")
        .and_then(|s| s.scalar_text())
        .map(|s| s.to_ascii_lowercase());
    let expected = match n.get("expected").map(|e| &e.kind) {
        None => None,
        Some(NodeKind::Bool(b)) => Some(*b),
        Some(_) => {
            diags.push(Diagnostic::error(
                n.loc_of("expected"),
                format!("{what}: `expected` must be true or false"),
            ));
            return None;
        }
    };
    Some(mk(ports, transport, service, expected))
}

pub(crate) fn resolve_baselines(
    n: &Node,
    sink: &Sink,
    scan: &ScanSettings,
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<Baseline>> {
    let NodeKind::Seq(items) = &n.kind else {
        if matches!(n.kind, NodeKind::Null) {
            return Some(Vec::new());
        }
        diags.push(
            Diagnostic::error(
                n.loc,
                format!("`baselines` must be a list, found {}", n.describe()),
            )
            .hint("write each baseline as a list item starting with `- name: ...`"),
        );
        return None;
    };
    let before = diags.len();
    let mut out = Vec::new();
    let mut seen: HashMap<String, Loc> = HashMap::new();
    for item in items {
        let raw: RawBaseline = match from_node(item, sink) {
            Ok(r) => r,
            Err(e) => {
                diags.push(e.into_diagnostic());
                continue;
            }
        };
        let name = raw.name.trim().to_string();
        let what = format!("baseline `{name}`");
        if name.is_empty() || name.len() > 100 || name.chars().any(|c| c.is_control() || c == '/') {
            diags.push(Diagnostic::error(
                item.loc_of("name"),
                "a baseline name must be 1-100 characters, without `/` or control characters",
            ));
        }
        if let Some(first) = seen.insert(name.clone(), item.loc_of("name")) {
            diags.push(
                Diagnostic::error(
                    item.loc_of("name"),
                    format!(
                        "duplicate baseline name `{name}` (first defined at line {})",
                        first.line
                    ),
                )
                .hint("baseline names must be unique"),
            );
        }
        if raw.targets.is_empty() && raw.labels.is_empty() {
            diags.push(
                Diagnostic::error(
                    item.loc,
                    format!("{what} has neither `targets` nor `labels`"),
                )
                .hint(
                    "list hosts/CIDRs under `targets:`, or select monitors' hosts with `labels:`",
                ),
            );
        }
        for (i, t) in raw.targets.iter().enumerate() {
            if let Err(e) = TargetSpec::parse(t, &scan.policy) {
                diags.push(Diagnostic::error(
                    item.loc_of(&format!("targets[{i}]")),
                    format!("{what}: target `{t}`: {e}"),
                ));
            }
        }
        // `ports: none`: no TCP port besides those named below (a UDP-only baseline).
        let tcp = item.get("ports").and_then(|p| {
            if p.scalar_text().is_some_and(|t| t.trim() == "none") {
                return Some(PortSet::from_ports(Vec::new()));
            }
            port_scalar(p, Transport::Tcp, &format!("{what}: `ports`"), diags).map(|(p, _)| p)
        });
        let udp = item
            .get("udp_ports")
            .and_then(|p| port_scalar(p, Transport::Udp, &format!("{what}: `udp_ports`"), diags))
            .map(|(p, _)| p);
        let mut allowed = Vec::new();
        if let Some(a) = item.get("allowed_open") {
            match &a.kind {
                NodeKind::Null => {}
                NodeKind::Seq(entries) => {
                    for (i, e) in entries.iter().enumerate() {
                        if let Some(x) = allowed_entry(e, &format!("{what}: `allowed_open[{i}]`"), diags) {
                            allowed.push(x);
                        }
                    }
                }
                _ => diags.push(
                    Diagnostic::error(a.loc, format!("{what}: `allowed_open` must be a list"))
                        .hint("write e.g. `allowed_open: [22, {port: 443, service: https}, 8000-8100]`"),
                ),
            }
        }
        let closed = item
            .get("must_be_closed")
            .map(|c| port_list(c, &format!("{what}: `must_be_closed`"), diags))
            .unwrap_or_default();
        for (p, t) in &closed {
            if let Some(a) = allowed
                .iter()
                .find(|a| a.transport == *t && p.ports().iter().any(|x| a.ports.contains(*x)))
            {
                diags.push(
                    Diagnostic::error(
                        item.loc_of("must_be_closed"),
                        format!(
                            "{what}: `must_be_closed` {p}/{t} overlaps `allowed_open` {}/{}",
                            a.ports, a.transport
                        ),
                    )
                    .hint("a port cannot be both allowed and forbidden"),
                );
            }
        }
        let interval = raw.interval.unwrap_or(Duration::from_secs(3600));
        if interval < Duration::from_secs(1) {
            diags.push(
                Diagnostic::error(
                    item.loc_of("interval"),
                    format!("{what}: `interval` must be at least 1s"),
                )
                .hint("scans are heavy; hourly (the default) suits most baselines"),
            );
        } else if interval < Duration::from_secs(60) {
            diags.push(
                Diagnostic::warning(
                    item.loc_of("interval"),
                    format!(
                        "{what}: `interval` {} is under a minute: every scan probes every port of every target",
                        portwarden_core::format_duration(interval)
                    ),
                )
                .hint("fine for a few ports on a few hosts; hourly (the default) suits most baselines"),
            );
        }
        let (tcp_ports, udp_ports) = scan_sets(tcp, udp, &allowed, &closed);
        if tcp_ports.is_empty() && udp_ports.as_ref().is_none_or(|u| u.is_empty()) {
            diags.push(
                Diagnostic::error(
                    item.loc_of("ports"),
                    format!("{what}: scans no port (`ports: none` and no UDP port)"),
                )
                .hint("give `udp_ports`, or TCP `ports` (default top1000)"),
            );
        }
        let mut options = scan.options.clone();
        options.policy = scan.policy.clone();
        out.push(Baseline {
            name,
            targets: raw.targets,
            labels: raw.labels,
            tcp_ports,
            udp_ports,
            interval,
            policy: raw.policy.unwrap_or_default(),
            allowed_open: allowed,
            must_be_closed: closed,
            severity: raw.severity.unwrap_or(Severity::High),
            routes: raw.routes,
            owner: raw.owner,
            runbook: raw.runbook,
            capability: raw.capability,
            options,
        });
    }
    (diags
        .iter()
        .skip(before)
        .all(|d| d.level != crate::diag::Level::Error))
    .then_some(out)
}

/// `controls:`: one compliance control and what evidences it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Control {
    /// The control's id in its framework, e.g. `PCI-DSS 1.2.1` or `SOC2 CC6.6`.
    pub id: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Baselines whose scans and findings evidence it.
    #[serde(default)]
    pub baselines: Vec<String>,
    /// Monitors whose availability and incidents evidence it.
    #[serde(default)]
    pub monitors: Vec<String>,
}

pub(crate) fn resolve_controls(
    n: &Node,
    sink: &Sink,
    baselines: &[Baseline],
    monitors: &HashSet<&str>,
    strict_monitors: bool,
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<Control>> {
    if matches!(n.kind, NodeKind::Null) {
        return Some(Vec::new());
    }
    let list: Vec<Control> = match from_node(n, sink) {
        Ok(l) => l,
        Err(e) => {
            diags.push(e.into_diagnostic());
            return None;
        }
    };
    let before = diags.len();
    let names: Vec<&str> = baselines.iter().map(|b| b.name.as_str()).collect();
    for (i, c) in list.iter().enumerate() {
        for (j, b) in c.baselines.iter().enumerate() {
            if !names.contains(&b.as_str()) {
                diags.push(
                    Diagnostic::error(
                        n.loc_of(&format!("[{i}].baselines[{j}]")),
                        format!("control `{}`: no baseline named `{b}`", c.id),
                    )
                    .hint(crate::diag::did_you_mean(b, &names)),
                );
            }
        }
        for (j, m) in c.monitors.iter().enumerate() {
            if !monitors.contains(m.as_str()) {
                let loc = n.loc_of(&format!("[{i}].monitors[{j}]"));
                let msg = format!("control `{}`: no monitor named `{m}`", c.id);
                if strict_monitors {
                    diags.push(Diagnostic::error(loc, msg).hint("name a monitor from `monitors:`"));
                } else {
                    diags.push(Diagnostic::warning(
                        loc,
                        format!("{msg} in `monitors:` (fine if discovery creates it)"),
                    ));
                }
            }
        }
    }
    (diags
        .iter()
        .skip(before)
        .all(|d| d.level != crate::diag::Level::Error))
    .then_some(list)
}

#[cfg(test)]
mod tests {
    use crate::load_str;
    use portwarden_core::Transport;
    use portwarden_scan::baseline::DefaultPolicy;

    #[test]
    fn a_baseline_loads() {
        let y = r#"
scan:
  allow: [10.0.0.0/8, 127.0.0.0/8]
  rate: 500
baselines:
  - name: web
    targets: [10.0.1.0/24, 127.0.0.1]
    ports: top100
    udp_ports: "53,123"
    interval: 30m
    allowed_open:
      - 22
      - {port: 443, service: https}
      - 8000-8100
      - 53/udp
    must_be_closed: [23, "3389", 161/udp]
    severity: critical
controls:
  - id: "PCI-DSS 1.2.1"
    title: Only authorised ports are reachable
    baselines: [web]
"#;
        let c = load_str(y, "t.yaml")
            .unwrap_or_else(|d| panic!("{}", d))
            .config;
        let b = &c.baselines[0];
        assert_eq!(b.policy, DefaultPolicy::Deny);
        assert_eq!(b.interval.as_secs(), 1800);
        assert!(
            b.tcp_ports.contains(22) && b.tcp_ports.contains(8100) && b.tcp_ports.contains(3389)
        );
        assert!(b.udp_ports.as_ref().unwrap().contains(161));
        assert_eq!(b.allowed_open.len(), 4);
        assert!(b.allowed_open[0].expected && !b.allowed_open[2].expected);
        assert_eq!(b.allowed_open[1].service.as_deref(), Some("https"));
        assert_eq!(b.allowed_open[3].transport, Transport::Udp);
        assert_eq!(b.options.rate, Some(500));
        assert_eq!(c.controls[0].baselines, vec!["web"]);
        assert_eq!(c.scan.policy.allow.as_ref().unwrap().len(), 2);
    }

    fn errors(y: &str) -> String {
        match load_str(y, "t.yaml") {
            Ok(_) => panic!("should fail:\n{y}"),
            Err(d) => d.to_string(),
        }
    }

    #[test]
    fn a_udp_only_baseline_says_ports_none() {
        let c = load_str(
            "baselines:\n  - name: dns\n    targets: [10.0.0.1]\n    ports: none\n    udp_ports: \"53\"\n    allowed_open: [53/udp]\n",
            "t.yaml",
        )
        .unwrap_or_else(|d| panic!("{d}"))
        .config;
        let b = &c.baselines[0];
        assert!(b.tcp_ports.is_empty());
        assert_eq!(
            b.udp_ports.as_ref().map(|u| u.ports().to_vec()),
            Some(vec![53])
        );
        let e = errors("baselines:\n  - name: a\n    targets: [10.0.0.1]\n    ports: none\n");
        assert!(
            e.contains("t.yaml:4:") && e.contains("scans no port"),
            "{e}"
        );
    }

    #[test]
    fn mistakes_are_located() {
        let e = errors("baselines:\n  - name: a\n    targets: [10.0.0.1]\n    ports: \"22,8o\"\n");
        assert!(e.contains("t.yaml:4:"), "{e}");
        assert!(e.contains("column 4"), "{e}");
        let e = errors("baselines:\n  - name: a\n    targets: [10.0.0.0/8]\n");
        assert!(e.contains("t.yaml:3:"), "{e}");
        assert!(e.contains("an IPv4 /16"), "{e}");
        let e = errors(
            "scan:\n  allow: [192.168.0.0/16]\nbaselines:\n  - name: a\n    targets: [10.0.0.1]\n",
        );
        assert!(e.contains("allowlist"), "{e}");
        let e = errors("baselines:\n  - name: a\n    targets: [10.0.0.1]\n    alowed_open: [22]\n");
        assert!(e.contains("allowed_open"), "{e}");
        let e = errors(
            "baselines:\n  - name: a\n    targets: [10.0.0.1]\n    allowed_open: [22]\n    must_be_closed: [20-30]\n",
        );
        assert!(e.contains("overlaps"), "{e}");
        let e = errors(
            "baselines:\n  - name: a\n    targets: [10.0.0.1]\n    allowed_open: [{port: 22, servce: ssh}]\n",
        );
        assert!(
            e.contains("unknown field `servce`") && e.contains("service"),
            "{e}"
        );
        let e = errors("baseline:\n  - name: a\n");
        assert!(e.contains("baselines"), "{e}");
        let e = errors(
            "baselines:\n  - name: a\n    targets: [10.0.0.1]\ncontrols:\n  - id: X\n    title: t\n    baselines: [b]\n",
        );
        assert!(e.contains("no baseline named `b`"), "{e}");
        let e =
            errors("baselines:\n  - name: a\n    targets: [10.0.0.1]\n    routes: [security]\n");
        assert!(
            e.contains("t.yaml:4:") && e.contains("no route named `security`"),
            "{e}"
        );
        let e = errors("baselines:\n  - name: a\n");
        assert!(e.contains("neither `targets` nor `labels`"), "{e}");
        let e = errors("baselines:\n  - name: a\n    targets: [10.0.0.1]\n    interval: 500ms\n");
        assert!(e.contains("t.yaml:4:") && e.contains("at least 1s"), "{e}");
        let e = errors("monitors:\n  - name: \"scan:web\"\n    target: tcp://127.0.0.1:22\n");
        assert!(
            e.contains("t.yaml:2:") && e.contains("reserved for exposure-guard findings"),
            "{e}"
        );
        // Under a minute: allowed, with a warning.
        let l = load_str(
            "baselines:\n  - name: a\n    targets: [10.0.0.1]\n    interval: 5s\n",
            "t.yaml",
        )
        .unwrap_or_else(|d| panic!("{d}"));
        assert_eq!(l.config.baselines[0].interval.as_secs(), 5);
        assert!(
            l.warnings
                .iter()
                .any(|w| w.message.contains("under a minute")),
            "{:?}",
            l.warnings
        );
    }
}
