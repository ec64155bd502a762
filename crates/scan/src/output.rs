//! Printing a scan: a table for people, JSON and CSV for tools.

use std::fmt::Write;

use crate::{PortState, ScanReport};

/// Which ports a table or CSV lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// open and open|filtered (what an operator looks for).
    Interesting,
    /// Every port kept in the report.
    All,
}

fn shown(state: PortState, which: Shown) -> bool {
    which == Shown::All || matches!(state, PortState::Open | PortState::OpenFiltered)
}

/// A human table with a summary line per host.
pub fn table(r: &ScanReport, which: Shown) -> String {
    let mut out = String::new();
    for h in &r.hosts {
        let name = match &h.name {
            Some(n) => format!("{n} ({})", h.addr),
            None => h.addr.to_string(),
        };
        let _ = writeln!(out, "{name}");
        let rows: Vec<_> = h.ports.iter().filter(|p| shown(p.state, which)).collect();
        if !rows.is_empty() {
            let _ = writeln!(
                out,
                "  {:<11} {:<14} {:<17} {:<14} BANNER",
                "PORT", "STATE", "REASON", "SERVICE"
            );
        }
        for p in rows {
            let svc = p.service.as_ref();
            let service = svc.and_then(|s| s.service.clone()).unwrap_or_default();
            let detail = svc
                .and_then(|s| s.version.clone().or_else(|| s.banner.clone()))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {:<11} {:<14} {:<17} {:<14} {}",
                format!("{}/{}", p.port, p.transport),
                p.state.as_str(),
                p.reason.as_str(),
                service,
                detail
            );
        }
        let counts: Vec<String> = h.counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
        let _ = writeln!(out, "  ({})", counts.join(", "));
    }
    let _ = writeln!(
        out,
        "{} host(s), {} probe(s) in {:.2} s{}",
        r.hosts.len(),
        r.probes,
        r.duration_ms / 1000.0,
        if r.cancelled { " (stopped early)" } else { "" }
    );
    out
}

/// The whole report as JSON.
pub fn json(r: &ScanReport) -> String {
    serde_json::to_string_pretty(r).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// One CSV row per port: host,name,port,transport,state,reason,rtt_ms,service,version,banner.
pub fn csv(r: &ScanReport, which: Shown) -> String {
    let mut out =
        String::from("host,name,port,transport,state,reason,rtt_ms,service,version,banner\n");
    for h in &r.hosts {
        for p in h.ports.iter().filter(|p| shown(p.state, which)) {
            let s = p.service.clone().unwrap_or_default();
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{}",
                h.addr,
                field(h.name.as_deref().unwrap_or("")),
                p.port,
                p.transport,
                p.state,
                p.reason.as_str(),
                p.rtt_ms,
                field(s.service.as_deref().unwrap_or("")),
                field(s.version.as_deref().unwrap_or("")),
                field(s.banner.as_deref().unwrap_or("")),
            );
        }
    }
    out
}

/// Quotes a CSV field when needed (RFC 4180), and defuses spreadsheet formulas.
pub fn field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}
