//! `/monitors/{name}`: live state and metadata, latency over 1 h / 24 h / 7 d / 30 d from
//! rollups (p50 line, p50–p95 band), a 90-day availability strip, the incident timeline and the
//! recent observations with their details. `POST /monitors/{name}/check` runs it now.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{Duration as ChronoDuration, Utc};
use portwarden_core::Observation;
use portwarden_store::{IncidentFilter, LatencyPoint, ObservationQuery, Resolution, StoreError};
use serde_json::{Value, json};

use super::{
    Layout, error_page, fmt_ago, fmt_ms, fmt_ratio, fmt_span, fmt_time, render, store_unavailable,
    svg,
};
use crate::AppState;
use crate::auth::Principal;

pub struct Fact {
    pub label: &'static str,
    pub value: String,
}

pub struct ObsRow {
    pub time: String,
    pub ago: String,
    pub location: String,
    pub address: String,
    pub outcome: &'static str,
    pub error: String,
    pub message: String,
    pub dns: String,
    pub connect: String,
    pub tls: String,
    pub protocol: String,
    pub duration: String,
    pub details: Vec<(String, String, bool)>,
}

pub struct IncRow {
    pub id: i64,
    pub status: &'static str,
    pub state: &'static str,
    pub opened: String,
    pub lasted: String,
    pub error: String,
}

#[derive(Template)]
#[template(path = "monitor.html")]
pub struct MonitorPage {
    pub layout: Layout,
    pub name: String,
    pub state: &'static str,
    pub since: String,
    pub reason: String,
    pub facts: Vec<Fact>,
    pub labels: Vec<(String, String)>,
    pub runbook: Option<String>,
    pub description: Option<String>,
    pub avail: Vec<(&'static str, String)>,
    pub range: String,
    pub ranges: Vec<(&'static str, bool)>,
    pub series_json: String,
    pub points: usize,
    pub bars: Vec<svg::DayBar>,
    pub bars_w: u32,
    pub incidents: Vec<IncRow>,
    pub observations: Vec<ObsRow>,
    pub flash: String,
}

/// Details worth a highlight (replication lag, pool use, certificate days left...).
const NOTABLE: &[&str] = &[
    "replication_lag_s",
    "replication_lag_ms",
    "replication_lag",
    "pool_used_pct",
    "pool_use",
    "connections_used_pct",
    "cert_days_left",
    "server_version",
    "version",
    "role",
];

fn detail_value(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.chars().count() > 200 {
        let mut t: String = s.chars().take(200).collect();
        t.push('…');
        t
    } else {
        s
    }
}

fn obs_row(o: &Observation) -> ObsRow {
    let mut details: Vec<(String, String, bool)> = o
        .details
        .iter()
        .map(|(k, v)| (k.clone(), detail_value(v), NOTABLE.contains(&k.as_str())))
        .collect();
    details.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    ObsRow {
        time: fmt_time(o.started_at),
        ago: fmt_ago(o.started_at),
        location: o.location.clone(),
        address: o.address.map(|a| a.to_string()).unwrap_or_default(),
        outcome: o.outcome.as_str(),
        error: o
            .error
            .as_ref()
            .map(|e| e.kind.to_string())
            .unwrap_or_default(),
        message: o.message().unwrap_or("").to_string(),
        dns: fmt_ms(o.phases.dns_ms),
        connect: fmt_ms(o.phases.connect_ms),
        tls: fmt_ms(o.phases.tls_ms),
        protocol: fmt_ms(o.phases.protocol_ms),
        duration: fmt_ms(Some(o.duration_ms)),
        details,
    }
}

fn ms(t: chrono::DateTime<Utc>) -> i64 {
    t.timestamp()
}

/// Columnar series for uPlot: seconds and one array per line (null where no data).
fn series_json(points: &[LatencyPoint], from: i64, to: i64) -> String {
    let col = |f: fn(&LatencyPoint) -> Option<f64>| -> Vec<Value> {
        points
            .iter()
            .map(|p| {
                f(p).map(|v| json!((v * 1000.0).round() / 1000.0))
                    .unwrap_or(Value::Null)
            })
            .collect()
    };
    json!({
        "from": from,
        "to": to,
        "t": points.iter().map(|p| ms(p.t)).collect::<Vec<_>>(),
        "c50": col(|p| p.connect_p50_ms),
        "c95": col(|p| p.connect_p95_ms),
        "d50": col(|p| p.duration_p50_ms),
        "d95": col(|p| p.duration_p95_ms),
        "t50": col(|p| p.tls_p50_ms),
        "t95": col(|p| p.tls_p95_ms),
        "p50": col(|p| p.protocol_p50_ms),
        "p95": col(|p| p.protocol_p95_ms),
        "fail": points.iter().map(|p| p.failures).collect::<Vec<_>>(),
    })
    .to_string()
}

fn none_if_missing<T: Default>(r: Result<T, StoreError>) -> Result<T, StoreError> {
    match r {
        Err(StoreError::NotFound(_)) => Ok(T::default()),
        other => other,
    }
}

pub async fn page(
    State(s): State<AppState>,
    p: Principal,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match build(
        &s,
        &p,
        &name,
        q.get("range").map(String::as_str),
        q.contains_key("checked"),
    )
    .await
    {
        Ok(Some(page)) => render(&page),
        Ok(None) => error_page(
            StatusCode::NOT_FOUND,
            "No such monitor",
            &format!("There is no monitor named `{name}` in the current config."),
        ),
        Err(e) => store_unavailable(&e),
    }
}

/// Builds the page (also used by the benchmark). `None`: no such monitor.
pub async fn build(
    s: &AppState,
    p: &Principal,
    name: &str,
    range: Option<&str>,
    checked: bool,
) -> Result<Option<MonitorPage>, StoreError> {
    let Some(v) = s.engine.monitor(name) else {
        return Ok(None);
    };
    let now = Utc::now();
    let (range, span, res) = match range {
        Some("1h") => ("1h", ChronoDuration::hours(1), Resolution::Minute),
        Some("7d") => ("7d", ChronoDuration::days(7), Resolution::Hour),
        Some("30d") => ("30d", ChronoDuration::days(30), Resolution::Hour),
        _ => ("24h", ChronoDuration::hours(24), Resolution::Minute),
    };
    let store = &s.store;
    let inc_filter = IncidentFilter {
        monitor: Some(name.to_string()),
        limit: 20,
        ..Default::default()
    };
    let obs_q = ObservationQuery {
        from: None,
        to: None,
        location: None,
        limit: 50,
        cursor: None,
    };
    let (series, a24, a7, a30, daily, incidents, observations) = tokio::join!(
        store.latency_series(name, now - span, now, res),
        store.availability(name, now - ChronoDuration::hours(24), now),
        store.availability(name, now - ChronoDuration::days(7), now),
        store.availability(name, now - ChronoDuration::days(30), now),
        store.availability_daily(name, now - ChronoDuration::days(90), now),
        store.incidents(&inc_filter),
        store.observations(name, &obs_q),
    );
    let series = none_if_missing(series)?;
    let avail = vec![
        ("24 h", fmt_ratio(none_if_missing(a24)?.ratio)),
        ("7 d", fmt_ratio(none_if_missing(a7)?.ratio)),
        ("30 d", fmt_ratio(none_if_missing(a30)?.ratio)),
    ];
    let daily = none_if_missing(daily)?;
    let bars: Vec<svg::DayBar> = daily
        .iter()
        .rev()
        .take(90)
        .rev()
        .enumerate()
        .map(|(i, d)| {
            let a = &d.availability;
            svg::DayBar {
                x: i as u32 * 4,
                class: svg::bar_class(a.ratio),
                title: format!(
                    "{}: {} ({} up, {} degraded, {} down{})",
                    d.day,
                    fmt_ratio(a.ratio),
                    a.up,
                    a.degraded,
                    a.down,
                    if a.unknown > 0 {
                        format!(", {} unknown", a.unknown)
                    } else {
                        String::new()
                    }
                ),
            }
        })
        .collect();
    let incidents = match incidents {
        Ok(p) => p.items,
        Err(StoreError::NotFound(_)) => Vec::new(),
        Err(e) => return Err(e),
    };
    let observations = match observations {
        Ok(p) => p.items,
        Err(StoreError::NotFound(_)) => Vec::new(),
        Err(e) => return Err(e),
    };
    let m = &v.monitor;
    let mut facts = vec![
        Fact {
            label: "Target",
            value: v.target.clone(),
        },
        Fact {
            label: "Check",
            value: v.check.clone(),
        },
        Fact {
            label: "Tier",
            value: v.tier.clone(),
        },
        Fact {
            label: "Severity",
            value: m.meta.severity.as_str().to_string(),
        },
        Fact {
            label: "Interval / timeout",
            value: format!(
                "{} / {}",
                portwarden_core::format_duration(m.interval),
                portwarden_core::format_duration(m.timeout)
            ),
        },
    ];
    for (label, val) in [
        ("Service", &m.meta.service),
        ("Capability", &m.meta.capability),
        ("Owner", &m.meta.owner),
    ] {
        if let Some(val) = val {
            facts.push(Fact {
                label,
                value: val.clone(),
            });
        }
    }
    if let Some(h) = &v.last_healthy {
        facts.push(Fact {
            label: "Last healthy",
            value: format!("{} (connect {})", fmt_ago(h.at), fmt_ms(h.connect_ms)),
        });
    }
    facts.push(Fact {
        label: "Runs since start",
        value: v.runs.to_string(),
    });
    let incidents = incidents
        .iter()
        .map(|i| IncRow {
            id: i.id,
            status: i.status.as_str(),
            state: i.state.as_str(),
            opened: fmt_time(i.opened_at),
            lasted: fmt_span(i.resolved_at.unwrap_or(now) - i.opened_at),
            error: i.error_kind.clone().unwrap_or_default(),
        })
        .collect();
    Ok(Some(MonitorPage {
        layout: Layout::new(p, "overview"),
        name: v.name.clone(),
        state: v.state.as_str(),
        since: v.since.map(fmt_ago).unwrap_or_default(),
        reason: v.reason.clone(),
        facts,
        labels: m
            .meta
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        runbook: m
            .meta
            .runbook
            .clone()
            .filter(|r| r.starts_with("https://") || r.starts_with("http://")),
        description: m.meta.description.clone(),
        avail,
        range: range.to_string(),
        ranges: ["1h", "24h", "7d", "30d"]
            .into_iter()
            .map(|r| (r, r == range))
            .collect(),
        points: series.len(),
        series_json: series_json(&series, ms(now - span), ms(now)),
        bars_w: 90 * 4,
        bars,
        incidents,
        observations: observations.iter().map(obs_row).collect(),
        flash: if checked {
            "Checked now: the latest run is at the top of the observations.".into()
        } else {
            String::new()
        },
    }))
}

pub async fn check_now(State(s): State<AppState>, Path(name): Path<String>) -> Response {
    match s.engine.check_now(&name).await {
        Some(_) => Redirect::to(&format!(
            "/monitors/{}?checked=1",
            super::status::encode_segment(&name)
        ))
        .into_response(),
        None => error_page(
            StatusCode::NOT_FOUND,
            "No such monitor",
            "Only configured monitors can be checked.",
        ),
    }
}
