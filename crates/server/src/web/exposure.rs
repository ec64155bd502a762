//! `/exposure`: the exposure guard — every baseline with its schedule and last scan (when, how
//! long, coverage against the baseline), a "scan now" button, the open findings and the
//! recently resolved ones (with their incidents), and a form that downloads the evidence
//! report (`/api/v1/reports`). `POST /exposure/{name}/scan` makes a baseline due now.
//!
//! A handful of queries per request: the guard's in-memory status and two indexed finding
//! reads (open ones, the last resolved). Banners and messages come from the network: they
//! only ever go through askama's escaping.

use std::collections::HashMap;
use std::net::IpAddr;

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{Duration as ChronoDuration, Utc};
use portwarden_store::{FindingFilter, FindingRecord, ScanRecord};
use serde_json::Value;

use super::{Layout, error_page, fmt_ago, fmt_span, fmt_time, render, store_unavailable};
use crate::AppState;
use crate::auth::Principal;

/// How many resolved findings the page lists.
const RESOLVED_SHOWN: usize = 20;
/// How many open findings the page lists (the API lists up to 10 000 per request).
const OPEN_SHOWN: usize = 500;

pub struct LastScan {
    pub id: i64,
    pub when: String,
    pub ago: String,
    pub duration: String,
    pub hosts: u64,
    pub ports: String,
    pub coverage: String,
    pub complete: bool,
    pub open_ports: u64,
    pub findings: String,
    pub error: String,
}

pub struct BaselineRow {
    pub name: String,
    /// The section's id (what [`super::monitor_href`] links to).
    pub anchor: String,
    pub targets: String,
    pub labels: String,
    pub tcp_ports: String,
    pub udp_ports: String,
    pub policy: &'static str,
    pub severity: &'static str,
    pub interval: String,
    pub next: String,
    pub running: bool,
    pub last: Option<LastScan>,
    /// Open findings of this baseline.
    pub open: usize,
}

pub struct FindingRow {
    pub id: i64,
    pub baseline: String,
    pub kind: String,
    pub target: String,
    pub severity: &'static str,
    pub service: String,
    pub banner: String,
    pub message: String,
    pub first_seen: String,
    pub last_seen: String,
    pub resolved: String,
    pub lasted: String,
    pub incident: Option<i64>,
}

#[derive(Template)]
#[template(path = "exposure.html")]
pub struct Page {
    pub layout: Layout,
    pub baselines: Vec<BaselineRow>,
    pub open: Vec<FindingRow>,
    pub resolved: Vec<FindingRow>,
    pub report_from: String,
    /// This replica follows another (PostgreSQL): it runs no scans, so no "Scan now".
    pub follower: bool,
    /// The open list was cut at [`OPEN_SHOWN`].
    pub open_truncated: bool,
}

fn last_scan(r: &ScanRecord) -> LastScan {
    let c = &r.coverage;
    let n = |k: &str| c.get(k).and_then(Value::as_u64).unwrap_or(0);
    let (tcp, udp) = (n("tcp_ports"), n("udp_ports"));
    let mut ports = format!("{tcp} TCP");
    if udp > 0 {
        ports.push_str(&format!(" + {udp} UDP"));
    }
    let complete = c.get("complete").and_then(Value::as_bool).unwrap_or(false);
    let unanswered = n("probes_without_answer_class");
    let coverage = if r.error.is_some() {
        "scan failed: nothing compared".to_string()
    } else {
        format!(
            "{} host(s) × {ports} port(s) = {} probes; {} expected-open and {} must-be-closed port(s) checked{}",
            n("hosts_scanned"),
            r.probes,
            n("expected_open_ports"),
            n("must_be_closed_ports"),
            if complete {
                String::new()
            } else if unanswered > 0 {
                format!("; {unanswered} probe(s) without an answer")
            } else {
                "; stopped before the end".into()
            }
        )
    };
    LastScan {
        id: r.id,
        when: fmt_time(r.finished_at),
        ago: fmt_ago(r.finished_at),
        duration: if r.duration_ms < 10_000.0 {
            format!("{:.2} s", r.duration_ms / 1000.0)
        } else {
            fmt_span(ChronoDuration::milliseconds(r.duration_ms as i64))
        },
        hosts: r.hosts,
        ports,
        coverage,
        complete: complete && r.error.is_none(),
        open_ports: r.open_ports,
        findings: format!(
            "{} opened, {} open, {} resolved",
            r.findings_opened, r.findings_open, r.findings_resolved
        ),
        error: r.error.clone().unwrap_or_default(),
    }
}

/// `host:port/proto` with IPv6 hosts in brackets.
fn target(f: &FindingRecord) -> String {
    let host = match f.host.parse::<IpAddr>() {
        Ok(a) => portwarden_scan::baseline::fmt_host(a),
        Err(_) => f.host.clone(),
    };
    format!("{host}:{}/{}", f.port, f.transport)
}

fn finding_row(f: &FindingRecord) -> FindingRow {
    let svc = f.detail.get("service");
    let text = |k: &str| {
        svc.and_then(|s| s.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let mut service = text("service");
    let version = text("version");
    if !version.is_empty() {
        service = format!("{service} {version}").trim().to_string();
    }
    if let Some(e) = f.detail.get("expected_service").and_then(Value::as_str) {
        service = if service.is_empty() {
            format!("expected {e}")
        } else {
            format!("{service} (expected {e})")
        };
    }
    let now = Utc::now();
    FindingRow {
        id: f.id,
        baseline: f.baseline.clone(),
        kind: f.kind.clone(),
        target: target(f),
        severity: f.severity.as_str(),
        service,
        banner: text("banner"),
        message: f.message.clone(),
        first_seen: fmt_time(f.first_seen),
        last_seen: fmt_ago(f.last_seen),
        resolved: f.resolved_at.map(fmt_time).unwrap_or_default(),
        lasted: fmt_span(f.resolved_at.unwrap_or(now) - f.first_seen),
        incident: f.incident_id,
    }
}

pub async fn page(State(s): State<AppState>, p: Principal) -> Response {
    let read = |status: &str, limit: usize| FindingFilter {
        status: Some(status.into()),
        limit,
        ..Default::default()
    };
    let (open_f, resolved_f) = (read("open", OPEN_SHOWN), read("resolved", RESOLVED_SHOWN));
    let (open, resolved) =
        match tokio::try_join!(s.store.findings(&open_f), s.store.findings(&resolved_f),) {
            Ok(v) => v,
            Err(e) => {
                return store_unavailable(&e);
            }
        };
    let mut open_per: HashMap<&str, usize> = HashMap::new();
    for f in &open {
        *open_per.entry(f.baseline.as_str()).or_default() += 1;
    }
    let status: HashMap<String, _> = s
        .exposure
        .status()
        .into_iter()
        .map(|st| (st.name.clone(), st))
        .collect();
    let baselines = s
        .exposure
        .baselines()
        .into_iter()
        .map(|b| {
            let st = status.get(&b.name);
            let running = st.is_some_and(|s| s.running);
            BaselineRow {
                targets: b.targets.join(" "),
                labels: b
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                tcp_ports: format!("{} ({} ports)", b.tcp_ports, b.tcp_ports.len()),
                udp_ports: b
                    .udp_ports
                    .as_ref()
                    .map(|u| format!("{u} ({} ports)", u.len()))
                    .unwrap_or_default(),
                policy: match b.policy {
                    portwarden_scan::baseline::DefaultPolicy::Deny => "deny",
                    portwarden_scan::baseline::DefaultPolicy::Ignore => "ignore",
                },
                severity: b.severity.as_str(),
                interval: portwarden_core::duration::format_duration(b.interval),
                next: if running {
                    "running now".into()
                } else {
                    match st.and_then(|s| s.next_scan_in_s) {
                        Some(0) => "due now".into(),
                        Some(n) => format!("in {}", fmt_span(ChronoDuration::seconds(n as i64))),
                        None => "—".into(),
                    }
                },
                running,
                last: st.and_then(|s| s.last_scan.as_ref()).map(last_scan),
                open: open_per.get(b.name.as_str()).copied().unwrap_or(0),
                anchor: super::status::encode_segment(&b.name),
                name: b.name,
            }
        })
        .collect();
    render(&Page {
        layout: Layout::new(&p, "exposure"),
        baselines,
        open: open.iter().map(finding_row).collect(),
        resolved: resolved.iter().map(finding_row).collect(),
        follower: !s.leadership.is_leader(),
        open_truncated: open.len() >= OPEN_SHOWN,
        report_from: (Utc::now() - ChronoDuration::days(30))
            .format("%Y-%m-%d")
            .to_string(),
    })
}

/// `POST /exposure/{name}/scan` (the "Scan now" button; CSRF checked by the auth layer).
pub async fn scan_now(
    State(s): State<AppState>,
    _p: Principal,
    Path(name): Path<String>,
) -> Response {
    match crate::api::trigger_scan(&s, &name) {
        Ok(()) => Redirect::to("/exposure").into_response(),
        Err(e) => error_page(e.status, "Cannot start the scan", &e.detail),
    }
}
