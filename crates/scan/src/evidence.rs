//! Compliance evidence: the config version in force (content hash, git commit) and the period
//! report (scans, findings, availability, incidents, config versions, controls) rendered as
//! JSON, HTML or CSV, with a SHA-256 digest of the exact bytes so an auditor can check that
//! the report was not edited.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use chrono::{DateTime, Utc};
use portwarden_store::{
    ConfigVersion, FindingFilter, FindingRecord, IncidentFilter, ScanFilter, ScanRecord, Store,
};
use serde::Serialize;

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The version of a config file: its content hash and, when it lives in a git work tree, the
/// commit checked out and whether the file differs from it.
pub fn config_version(path: &Path, reason: &str) -> std::io::Result<ConfigVersion> {
    let bytes = std::fs::read(path)?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "HEAD"]).filter(|c| c.len() >= 7);
    let dirty = commit.as_ref().and_then(|_| {
        let name = path.file_name()?.to_string_lossy().to_string();
        git(&["status", "--porcelain", "--", &name]).map(|s| !s.is_empty())
    });
    Ok(ConfigVersion {
        hash: sha256_hex(&bytes),
        git_commit: commit,
        git_dirty: dirty,
        path: path.display().to_string(),
        loaded_at: Utc::now(),
        reason: reason.to_string(),
    })
}

/// A compliance control (from `controls:` in config) with the evidence of the period.
#[derive(Debug, Clone, Serialize)]
pub struct ControlEvidence {
    pub id: String,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub baselines: Vec<String>,
    pub monitors: Vec<String>,
    pub scans: usize,
    pub findings: usize,
    pub findings_open_at_end: usize,
}

/// A control as configured (kept free of the config crate's types).
#[derive(Debug, Clone)]
pub struct ControlSpec {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    pub baselines: Vec<String>,
    pub monitors: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FindingEvidence {
    #[serde(flatten)]
    pub finding: FindingRecord,
    /// Seconds from first seen to resolution (or to the end of the period while open).
    pub duration_s: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MonitorEvidence {
    pub monitor: String,
    pub availability: Option<f64>,
    pub up: u64,
    pub down: u64,
    /// The monitor's availability objective in percent (`availability_target`), if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<f64>,
    /// Whether the availability reached the target (`None`: no target, or no data).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub met: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IncidentEvidence {
    pub id: i64,
    pub monitor: String,
    pub severity: String,
    pub opened_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<DateTime<Utc>>,
    /// From the last healthy observation to the incident opening.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_to_detect_s: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_to_acknowledge_s: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_to_resolve_s: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Everything the report says about a period.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub generated_at: DateTime<Utc>,
    pub config_versions: Vec<ConfigVersion>,
    pub controls: Vec<ControlEvidence>,
    pub scans: Vec<ScanRecord>,
    pub findings: Vec<FindingEvidence>,
    pub availability: Vec<MonitorEvidence>,
    pub incidents: Vec<IncidentEvidence>,
}

/// Every row of a newest-first store listing: the store answers at most `page` rows per query,
/// so the pages follow each other by keyset (`before` = the last row's time and id) — an
/// evidence report must never be cut short silently (one scan of a big block can open more
/// than 10 000 findings).
async fn every_page<T, Fut>(
    page: usize,
    key: impl Fn(&T) -> (DateTime<Utc>, i64),
    mut fetch: impl FnMut(Option<(DateTime<Utc>, i64)>) -> Fut,
) -> portwarden_store::Result<Vec<T>>
where
    Fut: std::future::Future<Output = portwarden_store::Result<Vec<T>>>,
{
    let mut out = Vec::new();
    let mut before = None;
    loop {
        let rows = fetch(before).await?;
        let full = rows.len() >= page;
        before = rows.last().map(&key);
        out.extend(rows);
        if !full {
            return Ok(out);
        }
    }
}

/// Every scan that started in `[from, to)`, newest first.
async fn all_scans(
    store: &dyn Store,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> portwarden_store::Result<Vec<ScanRecord>> {
    const PAGE: usize = 1000;
    every_page(
        PAGE,
        |s: &ScanRecord| (s.started_at, s.id),
        |before| async move {
            let f = ScanFilter {
                from: Some(from),
                to: Some(to),
                limit: PAGE,
                before,
                ..Default::default()
            };
            store.scans(&f).await
        },
    )
    .await
}

/// Every finding open at some time in `[from, to)`, newest first seen first.
async fn all_findings(
    store: &dyn Store,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> portwarden_store::Result<Vec<FindingRecord>> {
    const PAGE: usize = 10_000;
    every_page(
        PAGE,
        |f: &FindingRecord| (f.first_seen, f.id),
        |before| async move {
            let f = FindingFilter {
                from: Some(from),
                to: Some(to),
                limit: PAGE,
                before,
                ..Default::default()
            };
            store.findings(&f).await
        },
    )
    .await
}

/// Gathers the report for `[from, to)` from the store.
pub async fn gather(
    store: &dyn Store,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    controls: &[ControlSpec],
    targets: &HashMap<String, f64>,
) -> portwarden_store::Result<Report> {
    let scans = all_scans(store, from, to).await?;
    let findings: Vec<FindingEvidence> = all_findings(store, from, to)
        .await?
        .into_iter()
        .map(|f| {
            let end = f.resolved_at.unwrap_or(to).min(to);
            FindingEvidence {
                duration_s: (end - f.first_seen).num_seconds().max(0),
                finding: f,
            }
        })
        .collect();
    let mut availability: Vec<MonitorEvidence> = store
        .availability_all(from, to)
        .await?
        .into_iter()
        .map(|(m, a)| {
            let target = targets.get(&m).copied();
            MonitorEvidence {
                met: match (a.ratio, target) {
                    // Compared in percent, as written (99.9 means 0.999).
                    (Some(r), Some(t)) => Some(r * 100.0 + 1e-9 >= t),
                    _ => None,
                },
                target,
                monitor: m,
                availability: a.ratio,
                up: a.up + a.degraded,
                down: a.down,
            }
        })
        .collect();
    availability.sort_by(|a, b| a.monitor.cmp(&b.monitor));
    // Incidents overlapping the period (pages are newest first).
    let mut incidents = Vec::new();
    let mut cursor = None;
    'pages: loop {
        let page = store
            .incidents(&IncidentFilter {
                limit: 500,
                cursor: cursor.clone(),
                ..Default::default()
            })
            .await?;
        for i in &page.items {
            if i.opened_at >= to {
                continue;
            }
            if i.resolved_at.is_some_and(|r| r < from) {
                continue;
            }
            let secs = |a: DateTime<Utc>, b: DateTime<Utc>| {
                ((b - a).num_milliseconds().max(0) as f64 / 1000.0).round() as i64
            };
            incidents.push(IncidentEvidence {
                id: i.id,
                monitor: i.monitor.clone(),
                severity: i.severity.as_str().to_string(),
                opened_at: i.opened_at,
                resolved_at: i.resolved_at,
                time_to_detect_s: i.last_healthy.as_ref().map(|h| secs(h.at, i.opened_at)),
                time_to_acknowledge_s: i.acknowledged_at.map(|a| secs(i.opened_at, a)),
                time_to_resolve_s: i.resolved_at.map(|r| secs(i.opened_at, r)),
                error_kind: i.error_kind.clone(),
                message: i.message.clone(),
            });
        }
        let all_before = page
            .items
            .iter()
            .all(|i| i.resolved_at.is_some_and(|r| r < from));
        match page.next_cursor {
            Some(c) if !all_before || page.items.is_empty() => cursor = Some(c),
            _ => break 'pages,
        }
    }
    let controls = controls
        .iter()
        .map(|c| ControlEvidence {
            id: c.id.clone(),
            title: c.title.clone(),
            description: c.description.clone(),
            baselines: c.baselines.clone(),
            monitors: c.monitors.clone(),
            scans: scans
                .iter()
                .filter(|s| s.baseline.as_ref().is_some_and(|b| c.baselines.contains(b)))
                .count(),
            findings: findings
                .iter()
                .filter(|f| c.baselines.contains(&f.finding.baseline))
                .count(),
            findings_open_at_end: findings
                .iter()
                .filter(|f| {
                    c.baselines.contains(&f.finding.baseline)
                        && f.finding.resolved_at.is_none_or(|r| r >= to)
                })
                .count(),
        })
        .collect();
    Ok(Report {
        from,
        to,
        generated_at: Utc::now(),
        config_versions: store.config_versions(from, to).await?,
        controls,
        scans,
        findings,
        availability,
        incidents,
    })
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Html,
    Csv,
}

/// Renders the report; the digest is over exactly these bytes.
pub fn render(r: &Report, f: Format) -> String {
    match f {
        Format::Json => serde_json::to_string_pretty(r).unwrap_or_default() + "\n",
        Format::Csv => csv(r),
        Format::Html => html(r),
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn pct(a: Option<f64>) -> String {
    a.map(|x| format!("{:.3} %", x * 100.0))
        .unwrap_or_else(|| "no data".into())
}

fn opt_s(v: Option<i64>) -> String {
    v.map(|s| s.to_string()).unwrap_or_else(|| "—".into())
}

fn html(r: &Report) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Portwarden evidence {} – {}</title>\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:1.5em}}\
         td,th{{border:1px solid #999;padding:3px 6px;text-align:left}}</style></head><body>\n\
         <h1>Portwarden evidence report</h1>\n<p>Period: {} to {} (generated {})</p>\n",
        r.from.to_rfc3339(),
        r.to.to_rfc3339(),
        r.from.to_rfc3339(),
        r.to.to_rfc3339(),
        r.generated_at.to_rfc3339()
    );
    o.push_str("<h2>Configuration versions in force</h2>\n<table><tr><th>loaded</th><th>SHA-256</th><th>git commit</th><th>path</th><th>reason</th></tr>\n");
    for v in &r.config_versions {
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}{}</td><td>{}</td><td>{}</td></tr>",
            v.loaded_at.to_rfc3339(),
            esc(&v.hash),
            esc(v.git_commit.as_deref().unwrap_or("not in git")),
            if v.git_dirty == Some(true) {
                " (modified)"
            } else {
                ""
            },
            esc(&v.path),
            esc(&v.reason)
        );
    }
    o.push_str("</table>\n<h2>Controls</h2>\n<table><tr><th>control</th><th>title</th><th>baselines</th><th>monitors</th><th>scans</th><th>findings</th><th>open at end</th></tr>\n");
    for c in &r.controls {
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&c.id),
            esc(&c.title),
            esc(&c.baselines.join(", ")),
            esc(&c.monitors.join(", ")),
            c.scans,
            c.findings,
            c.findings_open_at_end
        );
    }
    o.push_str("</table>\n<h2>Scans</h2>\n<table><tr><th>id</th><th>baseline</th><th>started</th><th>duration</th><th>targets</th><th>hosts</th><th>probes</th><th>open ports</th><th>coverage</th><th>opened</th><th>resolved</th><th>error</th></tr>\n");
    for s in &r.scans {
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1} s</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            s.id,
            esc(s.baseline.as_deref().unwrap_or("ad hoc")),
            s.started_at.to_rfc3339(),
            s.duration_ms / 1000.0,
            esc(&s.targets.join(" ")),
            s.hosts,
            s.probes,
            s.open_ports,
            esc(&s.coverage.to_string()),
            s.findings_opened,
            s.findings_resolved,
            esc(s.error.as_deref().unwrap_or(""))
        );
    }
    o.push_str("</table>\n<h2>Findings</h2>\n<table><tr><th>id</th><th>baseline</th><th>kind</th><th>target</th><th>severity</th><th>first seen</th><th>resolved</th><th>duration</th><th>message</th></tr>\n");
    for f in &r.findings {
        let x = &f.finding;
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}:{}/{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} s</td><td>{}</td></tr>",
            x.id,
            esc(&x.baseline),
            esc(&x.kind),
            esc(&x.host),
            x.port,
            esc(&x.transport),
            x.severity.as_str(),
            x.first_seen.to_rfc3339(),
            x.resolved_at
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| "open".into()),
            f.duration_s,
            esc(&x.message)
        );
    }
    o.push_str("</table>\n<h2>Availability per monitor</h2>\n<table><tr><th>monitor</th><th>availability</th><th>target</th><th>met</th><th>good probes</th><th>failed probes</th></tr>\n");
    for a in &r.availability {
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&a.monitor),
            pct(a.availability),
            a.target
                .map(|t| format!("{t} %"))
                .unwrap_or_else(|| "—".into()),
            met_text(a.met),
            a.up,
            a.down
        );
    }
    o.push_str("</table>\n<h2>Incidents</h2>\n<table><tr><th>id</th><th>monitor</th><th>severity</th><th>opened</th><th>resolved</th><th>time to detect (s)</th><th>to acknowledge (s)</th><th>to resolve (s)</th><th>error</th></tr>\n");
    for i in &r.incidents {
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            i.id,
            esc(&i.monitor),
            esc(&i.severity),
            i.opened_at.to_rfc3339(),
            i.resolved_at
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| "open".into()),
            opt_s(i.time_to_detect_s),
            opt_s(i.time_to_acknowledge_s),
            opt_s(i.time_to_resolve_s),
            esc(i
                .message
                .as_deref()
                .or(i.error_kind.as_deref())
                .unwrap_or(""))
        );
    }
    o.push_str("</table>\n</body></html>\n");
    o
}

/// `met`, `missed` or `—` (no target or no data).
fn met_text(m: Option<bool>) -> &'static str {
    match m {
        Some(true) => "met",
        Some(false) => "missed",
        None => "—",
    }
}

fn csv(r: &Report) -> String {
    use crate::output::field;
    let mut o = String::from("section,id,name,kind,target,severity,start,end,duration_s,detail\n");
    for v in &r.config_versions {
        let _ = writeln!(
            o,
            "config,,{},,{},,{},,,{}",
            field(&v.path),
            field(v.git_commit.as_deref().unwrap_or("")),
            v.loaded_at.to_rfc3339(),
            field(&v.hash)
        );
    }
    for s in &r.scans {
        let _ = writeln!(
            o,
            "scan,{},{},,{},,{},{},{:.0},{}",
            s.id,
            field(s.baseline.as_deref().unwrap_or("")),
            field(&s.targets.join(" ")),
            s.started_at.to_rfc3339(),
            s.finished_at.to_rfc3339(),
            s.duration_ms / 1000.0,
            field(&format!(
                "open_ports={} opened={} resolved={}",
                s.open_ports, s.findings_opened, s.findings_resolved
            ))
        );
    }
    for f in &r.findings {
        let x = &f.finding;
        let _ = writeln!(
            o,
            "finding,{},{},{},{},{},{},{},{},{}",
            x.id,
            field(&x.baseline),
            field(&x.kind),
            field(&format!("{}:{}/{}", x.host, x.port, x.transport)),
            x.severity.as_str(),
            x.first_seen.to_rfc3339(),
            x.resolved_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            f.duration_s,
            field(&x.message)
        );
    }
    for a in &r.availability {
        // `target` holds the objective (percent); `detail` the availability and whether met.
        let _ = writeln!(
            o,
            "availability,,{},,{},,,,,{}{}",
            field(&a.monitor),
            a.target.map(|t| format!("{t}%")).unwrap_or_default(),
            a.availability
                .map(|x| format!("{x:.6}"))
                .unwrap_or_default(),
            a.met
                .map(|m| format!(" {}", met_text(Some(m))))
                .unwrap_or_default()
        );
    }
    for i in &r.incidents {
        let _ = writeln!(
            o,
            "incident,{},{},{},,{},{},{},{},{}",
            i.id,
            field(&i.monitor),
            field(i.error_kind.as_deref().unwrap_or("")),
            field(&i.severity),
            i.opened_at.to_rfc3339(),
            i.resolved_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            i.time_to_resolve_s
                .map(|s| s.to_string())
                .unwrap_or_default(),
            field(&format!(
                "detect={} ack={}",
                opt_s(i.time_to_detect_s),
                opt_s(i.time_to_acknowledge_s)
            ))
        );
    }
    o
}
