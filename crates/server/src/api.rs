//! JSON API under `/api/v1`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{Duration as ChronoDuration, Utc};
use portwarden_core::{IncidentStatus, Observation};
use portwarden_engine::MonitorView;
use portwarden_store::{Availability, IncidentFilter, ObservationQuery, Page};
use serde::Serialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::params::Params;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/monitors", get(list_monitors))
        .route("/api/v1/monitors/{name}", get(get_monitor))
        .route("/api/v1/monitors/{name}/observations", get(observations))
        .route("/api/v1/monitors/{name}/availability", get(availability))
        .route("/api/v1/monitors/{name}/check", post(check_now))
        .route("/api/v1/incidents", get(list_incidents))
        .route("/api/v1/incidents/{id}", get(get_incident))
        .route("/api/v1/incidents/{id}/ack", post(ack_incident))
        .route("/api/v1/health", get(health))
        .route("/api/v1/agents", get(crate::agents::list))
        .route("/api/v1/agents/{name}", get(crate::agents::one))
        .route("/api/v1/discovery", get(discovery))
        .route("/api/v1/scans", get(list_scans))
        .route("/api/v1/scans/{id}", get(get_scan))
        .route("/api/v1/findings", get(list_findings))
        .route("/api/v1/baselines", get(list_baselines))
        .route("/api/v1/baselines/{name}/scan", post(scan_now))
        .route("/api/v1/reports", get(report))
        .route("/api/v1/openapi.json", get(openapi))
}

/// The worst observation of the last run.
fn worst(v: &MonitorView) -> Option<&Observation> {
    v.last.iter().max_by_key(|o| o.outcome.badness())
}

#[derive(Serialize)]
struct MonitorSummary<'a> {
    name: &'a str,
    target: &'a str,
    check: &'a str,
    tier: &'a str,
    enabled: bool,
    state: portwarden_core::State,
    since: Option<chrono::DateTime<Utc>>,
    reason: &'a str,
    incident: Option<i64>,
    /// The `discover:` entry that made it (absent for written monitors).
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
    #[serde(flatten)]
    meta: &'a portwarden_core::MonitorMeta,
    interval_ms: u64,
    timeout_ms: u64,
    last_observation: Option<&'a Observation>,
    availability_24h: Option<f64>,
}

fn summary<'a>(v: &'a MonitorView, avail: Option<&Availability>) -> MonitorSummary<'a> {
    MonitorSummary {
        name: &v.name,
        target: &v.target,
        check: &v.check,
        tier: &v.tier,
        enabled: v.enabled,
        state: v.state,
        since: v.since,
        reason: &v.reason,
        incident: v.incident,
        source: v.monitor.source.as_deref(),
        meta: &v.monitor.meta,
        interval_ms: v.interval_ms,
        timeout_ms: v.timeout_ms,
        last_observation: worst(v),
        availability_24h: avail.and_then(|a| a.ratio),
    }
}

async fn list_monitors(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let p = Params::new(q, &["state", "tier"])?;
    let state = p.one_of(
        "state",
        &[
            "pending",
            "up",
            "degraded",
            "down",
            "flapping",
            "unknown",
            "maintenance",
            "paused",
        ],
    )?;
    let tier = p.one_of("tier", &["critical", "important", "supporting"])?;
    let now = Utc::now();
    // The overview's background aggregate when fresh (it costs ~0.2 s per 10 000 monitors).
    s.web.overview.touch();
    let (cached, at) = s.web.overview.avail_24h();
    let avail = if at.is_some_and(|t| now - t < ChronoDuration::seconds(60)) {
        cached
    } else {
        Arc::new(
            s.store
                .availability_all(now - ChronoDuration::hours(24), now)
                .await
                .unwrap_or_default(),
        )
    };
    let views = s.engine.monitors();
    let items: Vec<MonitorSummary> = views
        .iter()
        .filter(|v| state.is_none_or(|st| v.state.as_str() == st))
        .filter(|v| tier.is_none_or(|t| v.tier == t))
        .map(|v| summary(v, avail.get(&v.name)))
        .collect();
    Ok(Json(json!({ "monitors": items, "count": items.len() })).into_response())
}

async fn get_monitor(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Response> {
    let v = s
        .engine
        .monitor(&name)
        .ok_or_else(|| ApiError::not_found(format!("no monitor named `{name}`")))?;
    let now = Utc::now();
    let mut availability = serde_json::Map::new();
    for (label, hours) in [("24h", 24), ("7d", 24 * 7), ("30d", 24 * 30)] {
        let a = s
            .store
            .availability(&name, now - ChronoDuration::hours(hours), now)
            .await?;
        availability.insert(label.into(), serde_json::to_value(a).unwrap_or(Value::Null));
    }
    let sum = summary(&v, None);
    let mut body = serde_json::to_value(&sum).map_err(|e| ApiError::internal(e.to_string()))?;
    if let Value::Object(m) = &mut body {
        m.remove("availability_24h");
        m.insert("availability".into(), Value::Object(availability));
        m.insert(
            "last_run".into(),
            serde_json::to_value(&v.last).unwrap_or(Value::Null),
        );
        m.insert(
            "last_healthy".into(),
            serde_json::to_value(&v.last_healthy).unwrap_or(Value::Null),
        );
        m.insert(
            "rules".into(),
            serde_json::to_value(v.monitor.rules).unwrap_or(Value::Null),
        );
        m.insert(
            "check_options".into(),
            serde_json::to_value(&v.monitor.check).unwrap_or(Value::Null),
        );
        m.insert("runs".into(), json!(v.runs));
        m.insert(
            "scope".into(),
            serde_json::to_value(&v.scope).unwrap_or(Value::Null),
        );
        m.insert(
            "locations".into(),
            serde_json::to_value(&v.locations).unwrap_or(Value::Null),
        );
        m.insert("probed_from".into(), json!(v.monitor.locations));
    }
    Ok(Json(body).into_response())
}

async fn observations(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Page<Observation>>> {
    // No live-monitor check: history of removed and retired (discovered) monitors stays
    // queryable; the store answers 404 for names it never saw.
    let p = Params::new(q, &["from", "to", "limit", "cursor", "location"])?;
    let from = p.time("from")?;
    let to = p.time("to")?;
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        return Err(ApiError::bad_parameter("from", "`from` is after `to`"));
    }
    let q = ObservationQuery {
        from,
        to,
        location: p.str("location").map(str::to_string),
        limit: p.usize_in("limit", 100, 1, 1000)?,
        cursor: p.str("cursor").map(str::to_string),
    };
    Ok(Json(s.store.observations(&name, &q).await?))
}

async fn availability(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let p = Params::new(q, &["period"])?;
    let period = p
        .one_of("period", &["24h", "7d", "30d", "90d"])?
        .unwrap_or("24h");
    let hours = match period {
        "7d" => 24 * 7,
        "30d" => 24 * 30,
        "90d" => 24 * 90,
        _ => 24,
    };
    let to = Utc::now();
    let from = to - ChronoDuration::hours(hours);
    let total = s.store.availability(&name, from, to).await?;
    let daily = s.store.availability_daily(&name, from, to).await?;
    Ok(Json(json!({
        "monitor": name,
        "period": period,
        "from": from,
        "to": to,
        "availability": total,
        "daily": daily,
        "note": "ratio = (up + degraded) / (up + degraded + down); unknown and maintenance samples are excluded and counted apart",
    }))
    .into_response())
}

async fn check_now(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Response> {
    let obs = s.engine.check_now(&name).await.ok_or_else(|| {
        ApiError::not_found(format!(
            "no monitor named `{name}` (only configured monitors can be checked)"
        ))
    })?;
    let state = s.engine.monitor(&name).map(|v| v.state);
    Ok(Json(json!({ "monitor": name, "state": state, "observations": obs })).into_response())
}

async fn list_incidents(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let p = Params::new(q, &["state", "monitor", "limit", "cursor"])?;
    let status = match p.one_of("state", &["open", "resolved"])? {
        Some("open") => Some(IncidentStatus::Open),
        Some(_) => Some(IncidentStatus::Resolved),
        None => None,
    };
    let f = IncidentFilter {
        status,
        monitor: p.str("monitor").map(str::to_string),
        limit: p.usize_in("limit", 100, 1, 1000)?,
        cursor: p.str("cursor").map(str::to_string),
    };
    let page = s.store.incidents(&f).await?;
    Ok(Json(json!({ "incidents": page.items, "next_cursor": page.next_cursor })).into_response())
}

async fn get_incident(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let id: i64 = id.parse().map_err(|_| {
        ApiError::bad_parameter(
            "id",
            format!("`{id}` is not an incident id (a whole number)"),
        )
    })?;
    let d = s
        .store
        .incident(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no incident {id}")))?;
    Ok(Json(d).into_response())
}

/// Acknowledges an open incident (the UI's button and `POST /api/v1/incidents/{id}/ack`).
pub async fn acknowledge_incident(s: &AppState, id: i64, by: &str) -> ApiResult<()> {
    let d = s
        .store
        .incident(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no incident {id}")))?;
    if d.incident.status != IncidentStatus::Open {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            error: "conflict",
            detail: format!("incident {id} is resolved; only open incidents can be acknowledged"),
            parameter: None,
        });
    }
    s.store
        .change_incident(id, crate::web::incidents::ack_change(by))
        .await?;
    tracing::info!(incident = id, by, "incident acknowledged");
    Ok(())
}

async fn ack_incident(
    State(s): State<AppState>,
    p: crate::auth::Principal,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id: i64 = id.parse().map_err(|_| {
        ApiError::bad_parameter(
            "id",
            format!("`{id}` is not an incident id (a whole number)"),
        )
    })?;
    acknowledge_incident(&s, id, &p.name).await?;
    let d = s.store.incident(id).await?;
    Ok(Json(d).into_response())
}

async fn health(State(s): State<AppState>) -> Response {
    let engine = s.engine.health();
    let store = s.store.health();
    let reload = s.reload.read().unwrap_or_else(|p| p.into_inner()).clone();
    let mut problems: Vec<String> = engine.self_alerts.clone();
    if !store.ok {
        problems.push(format!(
            "store failing: {}; {} observation(s) waiting in memory, probing and incident detection go on",
            store.last_error.clone().unwrap_or_default(),
            store.pending_rows
        ));
    }
    problems.extend(s.discovery.problems());
    problems.extend(s.agents.problems());
    if !reload.ok {
        problems.push(format!(
            "last config reload failed, the previous config keeps running: {}",
            reload.error.clone().unwrap_or_default()
        ));
    }
    let status = if problems.is_empty() {
        "ok"
    } else {
        "degraded"
    };
    let body = json!({
        "status": status,
        "problems": problems,
        "version": env!("CARGO_PKG_VERSION"),
        "started_at": s.started_at,
        "uptime_seconds": (Utc::now() - s.started_at).num_seconds(),
        "engine": engine,
        "store": store,
        "config": reload,
        "discovery": s.discovery.status(),
        "leadership": s.leadership.status(),
    });
    // Always 200: the process answers; `status` says how it feels.
    (StatusCode::OK, Json(body)).into_response()
}

async fn discovery(State(s): State<AppState>) -> Response {
    let sources = s.discovery.status();
    Json(json!({ "sources": sources, "count": sources.len() })).into_response()
}

/// `GET /api/v1/scans?baseline=&from=&to=&limit=`: stored scans, newest first (without full
/// results).
async fn list_scans(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let p = Params::new(q, &["baseline", "from", "to", "limit"])?;
    let (from, to) = period(&p)?;
    let f = portwarden_store::ScanFilter {
        baseline: p.str("baseline").map(str::to_string),
        from,
        to,
        limit: p.usize_in("limit", 100, 1, 1000)?,
        ..Default::default()
    };
    let scans = s.store.scans(&f).await?;
    Ok(Json(json!({ "scans": scans, "count": scans.len() })).into_response())
}

/// An optional period: `from` and `to`.
type Period = (Option<chrono::DateTime<Utc>>, Option<chrono::DateTime<Utc>>);

/// `from` and `to` of a query, checked for order.
fn period(p: &Params) -> Result<Period, ApiError> {
    let from = p.time("from")?;
    let to = p.time("to")?;
    if let (Some(f), Some(t)) = (from, to)
        && f >= t
    {
        return Err(ApiError::bad_parameter(
            "from",
            format!("`from` ({f}) must be before `to` ({t})"),
        ));
    }
    Ok((from, to))
}

/// `GET /api/v1/scans/{id}`: one scan with its full result.
async fn get_scan(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let id: i64 = id.parse().map_err(|_| {
        ApiError::bad_parameter("id", format!("`{id}` is not a scan id (a whole number)"))
    })?;
    let scan = s
        .store
        .scan(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no scan {id}")))?;
    Ok(Json(scan).into_response())
}

/// `GET /api/v1/findings?status=open|resolved&baseline=&from=&to=&limit=`: exposure findings.
async fn list_findings(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let p = Params::new(q, &["status", "baseline", "from", "to", "limit"])?;
    let (from, to) = period(&p)?;
    let f = portwarden_store::FindingFilter {
        status: p
            .one_of("status", &["open", "resolved"])?
            .map(str::to_string),
        baseline: p.str("baseline").map(str::to_string),
        from,
        to,
        limit: p.usize_in("limit", 500, 1, 10_000)?,
        ..Default::default()
    };
    let findings = s.store.findings(&f).await?;
    Ok(Json(json!({ "findings": findings, "count": findings.len() })).into_response())
}

/// `GET /api/v1/baselines`: every baseline with its last scan and when the next one is due.
async fn list_baselines(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    Params::new(q, &[])?;
    let status = s.exposure.status();
    let baselines = s.exposure.baselines();
    Ok(
        Json(json!({ "baselines": baselines, "status": status, "count": baselines.len() }))
            .into_response(),
    )
}

/// `POST /api/v1/baselines/{name}/scan`: makes the baseline due now (the guard runs one scan
/// at a time, so it starts when the scan in progress, if any, ends). 202: the scan's result
/// shows up in `/api/v1/baselines` and `/api/v1/scans`.
async fn scan_now(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Response> {
    trigger_scan(&s, &name)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "baseline": name, "queued": true })),
    )
        .into_response())
}

/// Makes a baseline due now (the API's and the UI's "scan now"). Only the leader replica runs
/// scans: a follower answers 409 instead of accepting a scan it would never run.
pub fn trigger_scan(s: &AppState, name: &str) -> ApiResult<()> {
    if !s.exposure.baselines().iter().any(|b| b.name == name) {
        return Err(ApiError::not_found(format!(
            "no baseline named `{name}` (see /api/v1/baselines)"
        )));
    }
    if !s.leadership.is_leader() {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            error: "not_leader",
            detail: "this replica follows: scans run on the leader replica (see `leadership` in /api/v1/health); send the request there".into(),
            parameter: None,
        });
    }
    if !s.exposure.trigger(name) {
        return Err(ApiError::not_found(format!(
            "no baseline named `{name}` (see /api/v1/baselines)"
        )));
    }
    tracing::info!(baseline = name, "scan requested");
    Ok(())
}

/// `GET /api/v1/reports?from=&to=&format=json|html|csv`: the evidence report of a period (the
/// same bytes `portwarden report` writes), as a download. `X-Portwarden-SHA256` carries the
/// SHA-256 of the body, which `portwarden report --verify FILE --digest HEX` checks.
async fn report(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    use portwarden_scan::evidence::{self, Format};
    let p = Params::new(q, &["from", "to", "format"])?;
    let from = p.time("from")?.ok_or_else(|| {
        ApiError::bad_parameter(
            "from",
            "`from` is required: the start of the period (RFC 3339, a date or Unix seconds)",
        )
    })?;
    let to = p.time("to")?.unwrap_or_else(Utc::now);
    if from >= to {
        return Err(ApiError::bad_parameter(
            "from",
            format!("`from` ({from}) must be before `to` ({to})"),
        ));
    }
    let (format, ctype, ext) = match p.one_of("format", &["json", "html", "csv"])? {
        Some("html") => (Format::Html, "text/html; charset=utf-8", "html"),
        Some("csv") => (Format::Csv, "text/csv; charset=utf-8", "csv"),
        _ => (Format::Json, "application/json", "json"),
    };
    let controls = s
        .web
        .controls
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let targets = crate::availability_targets(s.engine.monitor_defs().iter().map(|m| &**m));
    let r = evidence::gather(s.store.as_ref(), from, to, &controls, &targets).await?;
    let body = evidence::render(&r, format);
    let digest = evidence::sha256_hex(body.as_bytes());
    let file = format!(
        "portwarden-evidence-{}-{}.{ext}",
        from.format("%Y%m%dT%H%M%SZ"),
        to.format("%Y%m%dT%H%M%SZ")
    );
    Ok((
        [
            (header::CONTENT_TYPE, ctype.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}\""),
            ),
            (
                header::HeaderName::from_static("x-portwarden-sha256"),
                digest,
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        body,
    )
        .into_response())
}

static OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// Routes documented in the OpenAPI document (checked by a test against the router).
pub fn documented_paths() -> Vec<String> {
    let v: Value = serde_json::from_str(OPENAPI).unwrap_or(Value::Null);
    v.get("paths")
        .and_then(|p| p.as_object())
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

pub type Shared = Arc<AppState>;
