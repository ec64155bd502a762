//! `/`: every monitor grouped by service, tier or owner; open incidents on top; filter by state
//! and search. Served from the engine's live views plus the background aggregates
//! ([`super::cache`]): no store query on the request path.

use std::collections::{BTreeMap, HashMap};

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use chrono::Utc;
use portwarden_core::State as MState;
use portwarden_engine::MonitorView;

use super::{Layout, fmt_ago, fmt_ratio, fmt_span, render, svg};
use crate::AppState;
use crate::auth::Principal;

pub struct Row {
    pub name: String,
    pub state: &'static str,
    pub last: String,
    pub spark: String,
    pub a24: String,
    pub a30: String,
    pub note: String,
}

pub struct Group {
    pub name: String,
    pub summary: String,
    pub rows: Vec<Row>,
}

pub struct OpenIncident {
    pub id: i64,
    pub monitor: String,
    pub state: &'static str,
    pub since: String,
    pub reason: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
pub struct OverviewPage {
    pub layout: Layout,
    pub groups: Vec<Group>,
    pub open: Vec<OpenIncident>,
    pub group_by: String,
    pub q: String,
    pub state: String,
    pub total: usize,
    pub shown: usize,
    pub counts: Vec<(&'static str, usize)>,
    pub data_age: String,
    pub state_options: Vec<(&'static str, bool)>,
    pub group_options: Vec<(&'static str, bool)>,
}

/// How monitors are grouped.
fn group_key(v: &MonitorView, by: &str) -> String {
    let m = &v.monitor.meta;
    let k = match by {
        "tier" => Some(v.tier.clone()),
        "owner" => m.owner.clone(),
        "none" => Some("All monitors".into()),
        _ => m.service.clone(),
    };
    k.filter(|s| !s.is_empty())
        .unwrap_or_else(|| "(none)".into())
}

fn matches(v: &MonitorView, q: &str) -> bool {
    if q.is_empty() {
        return true;
    }
    let m = &v.monitor.meta;
    [
        Some(v.name.as_str()),
        Some(v.target.as_str()),
        m.service.as_deref(),
        m.owner.as_deref(),
        m.capability.as_deref(),
    ]
    .into_iter()
    .flatten()
    .any(|s| s.to_lowercase().contains(q))
}

/// The short text under a monitor's name: the error of its last run when it is not up.
fn note(v: &MonitorView) -> String {
    if v.state == MState::Up || v.state == MState::Pending {
        return String::new();
    }
    let worst = v.last.iter().max_by_key(|o| o.outcome.badness());
    match worst.and_then(|o| o.error.as_ref()) {
        Some(e) => {
            let mut s = e.kind.to_string();
            if !e.message.is_empty() {
                s.push_str(": ");
                s.extend(e.message.chars().take(120));
            }
            s
        }
        None => v.reason.chars().take(120).collect(),
    }
}

pub async fn page(
    State(s): State<AppState>,
    p: Principal,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let group_by = match q.get("group").map(String::as_str) {
        Some(g @ ("tier" | "owner" | "none")) => g.to_string(),
        _ => "service".to_string(),
    };
    let search = q
        .get("q")
        .map(|s| s.trim().to_lowercase())
        .unwrap_or_default();
    let state_filter = q
        .get("state")
        .and_then(|s| MState::parse(s))
        .map(|s| s.as_str().to_string())
        .unwrap_or_default();
    render(&build(&s, &p, &group_by, &search, &state_filter))
}

/// Builds the page (also used by the benchmark).
pub fn build(
    s: &AppState,
    p: &Principal,
    group_by: &str,
    search: &str,
    state_filter: &str,
) -> OverviewPage {
    s.web.overview.touch();
    let views = s.engine.monitors();
    let (a24, at) = s.web.overview.avail_24h();
    let (a30, _) = s.web.overview.avail_30d();
    let (sparks, _) = s.web.overview.sparks();
    let now = Utc::now();

    let mut counts: BTreeMap<MState, usize> = BTreeMap::new();
    let mut open = Vec::new();
    for v in &views {
        *counts.entry(v.state).or_default() += 1;
        if let Some(id) = v.incident {
            open.push(OpenIncident {
                id,
                monitor: v.name.clone(),
                state: v.state.as_str(),
                since: v.since.map(fmt_ago).unwrap_or_default(),
                reason: v.reason.clone(),
            });
        }
    }
    open.sort_by_key(|o| std::cmp::Reverse(o.id));

    let mut groups: BTreeMap<String, Vec<&MonitorView>> = BTreeMap::new();
    let mut shown = 0;
    for v in &views {
        if !state_filter.is_empty() && v.state.as_str() != state_filter {
            continue;
        }
        if !matches(v, search) {
            continue;
        }
        shown += 1;
        groups.entry(group_key(v, group_by)).or_default().push(v);
    }
    let groups = groups
        .into_iter()
        .map(|(name, mut vs)| {
            // Worst first, then by name.
            vs.sort_by(|a, b| {
                badness(b.state)
                    .cmp(&badness(a.state))
                    .then_with(|| a.name.cmp(&b.name))
            });
            let bad = vs.iter().filter(|v| v.state.is_bad()).count();
            let summary = if bad > 0 {
                format!("{} monitors, {bad} failing", vs.len())
            } else {
                format!("{} monitors", vs.len())
            };
            let rows = vs
                .into_iter()
                .map(|v| {
                    let spark = sparks.get(&v.name);
                    Row {
                        name: v.name.clone(),
                        state: v.state.as_str(),
                        last: v
                            .last
                            .first()
                            .map(|o| fmt_span(now - o.started_at))
                            .unwrap_or_else(|| "—".into()),
                        spark: spark.map(|sp| svg::sparkline(sp)).unwrap_or_default(),
                        a24: fmt_ratio(a24.get(&v.name).and_then(|a| a.ratio)),
                        a30: fmt_ratio(a30.get(&v.name).and_then(|a| a.ratio)),
                        note: note(v),
                    }
                })
                .collect();
            Group {
                name,
                summary,
                rows,
            }
        })
        .collect();
    OverviewPage {
        layout: Layout::new(p, "overview"),
        groups,
        open,
        group_by: group_by.to_string(),
        q: search.to_string(),
        state: state_filter.to_string(),
        total: views.len(),
        shown,
        counts: counts.into_iter().map(|(k, v)| (k.as_str(), v)).collect(),
        data_age: at
            .map(|t| format!("availability computed {}", fmt_ago(t)))
            .unwrap_or_else(|| "availability not computed yet".into()),
        state_options: [
            "down",
            "degraded",
            "flapping",
            "unknown",
            "pending",
            "up",
            "maintenance",
            "paused",
        ]
        .into_iter()
        .map(|s| (s, s == state_filter))
        .collect(),
        group_options: ["service", "tier", "owner", "none"]
            .into_iter()
            .map(|g| (g, g == group_by))
            .collect(),
    }
}

fn badness(s: MState) -> u8 {
    match s {
        MState::Down => 7,
        MState::Flapping => 6,
        MState::Degraded => 5,
        MState::Unknown => 4,
        MState::Pending => 3,
        MState::Maintenance => 2,
        MState::Paused => 1,
        MState::Up => 0,
    }
}
