//! `/incidents` (filter by state and monitor, paged) and `/incidents/{id}`: the alert content
//! and the full timeline (opened, state changes, notifications and their attempts,
//! acknowledgement, escalation, resolution). `POST /incidents/{id}/ack` acknowledges.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use portwarden_core::{EventKind, IncidentEvent, IncidentStatus};
use portwarden_store::{IncidentChange, IncidentFilter, StoreError};

use super::{Layout, error_page, fmt_ago, fmt_ms, fmt_span, fmt_time, render, store_unavailable};
use crate::AppState;
use crate::auth::Principal;

pub struct Row {
    pub id: i64,
    pub monitor: String,
    /// The monitor's page (or the exposure page for a finding's incident).
    pub href: String,
    pub status: &'static str,
    pub state: &'static str,
    pub severity: &'static str,
    pub scope: String,
    pub opened: String,
    pub lasted: String,
    pub error: String,
    pub message: String,
    pub acked: bool,
}

#[derive(Template)]
#[template(path = "incidents.html")]
pub struct ListPage {
    pub layout: Layout,
    pub rows: Vec<Row>,
    pub state: String,
    pub monitor: String,
    pub next: Option<String>,
    pub states: Vec<(&'static str, &'static str, bool)>,
}

pub async fn list(
    State(s): State<AppState>,
    p: Principal,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let state = q.get("state").map(String::as_str).unwrap_or("");
    let status = match state {
        "open" => Some(IncidentStatus::Open),
        "resolved" => Some(IncidentStatus::Resolved),
        _ => None,
    };
    let monitor = q.get("monitor").cloned().filter(|m| !m.is_empty());
    let f = IncidentFilter {
        status,
        monitor: monitor.clone(),
        limit: 50,
        cursor: q.get("cursor").cloned().filter(|c| !c.is_empty()),
    };
    let page = match s.store.incidents(&f).await {
        Ok(p) => p,
        Err(StoreError::NotFound(_)) => portwarden_store::Page {
            items: Vec::new(),
            next_cursor: None,
        },
        Err(StoreError::BadCursor) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Bad page link",
                "The `cursor` is not one this server made; start from the first page.",
            );
        }
        Err(e) => {
            return store_unavailable(&e);
        }
    };
    let now = Utc::now();
    let rows = page
        .items
        .iter()
        .map(|i| Row {
            id: i.id,
            href: super::monitor_href(&i.monitor),
            monitor: i.monitor.clone(),
            status: i.status.as_str(),
            state: i.state.as_str(),
            severity: i.severity.as_str(),
            scope: match i.scope.locations() {
                [] => i.scope.as_str().to_string(),
                l => format!("{} ({})", i.scope.as_str(), l.join(", ")),
            },
            opened: fmt_time(i.opened_at),
            lasted: fmt_span(i.resolved_at.unwrap_or(now) - i.opened_at),
            error: i.error_kind.clone().unwrap_or_default(),
            message: i
                .message
                .as_deref()
                .unwrap_or("")
                .chars()
                .take(160)
                .collect(),
            acked: i.acknowledged_at.is_some(),
        })
        .collect();
    let next = page.next_cursor.map(|c| {
        let mut q = format!("cursor={c}");
        if !state.is_empty() {
            q.push_str(&format!("&state={state}"));
        }
        if let Some(m) = &monitor {
            q.push_str(&format!("&monitor={}", super::status::encode_segment(m)));
        }
        q
    });
    let state = match status {
        Some(st) => st.as_str().to_string(),
        None => String::new(),
    };
    render(&ListPage {
        layout: Layout::new(&p, "incidents"),
        rows,
        states: [("", "all"), ("open", "open"), ("resolved", "resolved")]
            .into_iter()
            .map(|(v, l)| (v, l, v == state))
            .collect(),
        state,
        monitor: monitor.unwrap_or_default(),
        next,
    })
}

pub struct Event {
    pub at: String,
    pub kind: &'static str,
    pub message: String,
    pub data: String,
}

#[derive(Template)]
#[template(path = "incident.html")]
pub struct DetailPage {
    pub layout: Layout,
    pub id: i64,
    pub monitor: String,
    /// Where the monitor is shown (`None`: a monitor no longer configured).
    pub monitor_href: Option<String>,
    pub status: &'static str,
    pub state: &'static str,
    pub facts: Vec<(&'static str, String)>,
    pub runbook: Option<String>,
    pub message: String,
    pub events: Vec<Event>,
    pub can_ack: bool,
}

fn event(e: &IncidentEvent) -> Event {
    Event {
        at: fmt_time(e.at),
        kind: e.kind.as_str(),
        message: e.message.clone(),
        data: if e.data.is_null() {
            String::new()
        } else {
            serde_json::to_string_pretty(&e.data).unwrap_or_default()
        },
    }
}

pub async fn detail(State(s): State<AppState>, p: Principal, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Bad incident id",
            "Incident ids are whole numbers.",
        );
    };
    let d = match s.store.incident(id).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            return error_page(
                StatusCode::NOT_FOUND,
                "No such incident",
                &format!("There is no incident {id}."),
            );
        }
        Err(e) => {
            return store_unavailable(&e);
        }
    };
    let i = &d.incident;
    let view = s.engine.monitor(&i.monitor);
    let now = Utc::now();
    let mut facts: Vec<(&'static str, String)> = vec![
        ("Status", i.status.as_str().to_string()),
        ("Worst state", i.state.as_str().to_string()),
        ("Severity", i.severity.as_str().to_string()),
        (
            "Scope",
            match i.scope.locations() {
                [] => i.scope.as_str().to_string(),
                l => format!("{} ({})", i.scope.as_str(), l.join(", ")),
            },
        ),
        ("Opened", fmt_time(i.opened_at)),
        (
            "Duration",
            fmt_span(i.resolved_at.unwrap_or(now) - i.opened_at),
        ),
    ];
    if let Some(r) = i.resolved_at {
        facts.push(("Resolved", fmt_time(r)));
    }
    if let Some(a) = i.acknowledged_at {
        facts.push((
            "Acknowledged",
            format!(
                "{} by {}",
                fmt_time(a),
                i.acknowledged_by.clone().unwrap_or_default()
            ),
        ));
    }
    if let Some(k) = &i.error_kind {
        facts.push(("Error kind", k.clone()));
    }
    if let Some(h) = &i.last_healthy {
        facts.push((
            "Last healthy",
            format!(
                "{} ({}), connect {}{}",
                fmt_time(h.at),
                fmt_ago(h.at),
                fmt_ms(h.connect_ms),
                h.address
                    .as_ref()
                    .map(|a| format!(", {a}"))
                    .unwrap_or_default()
            ),
        ));
    }
    let mut runbook = None;
    if let Some(v) = &view {
        let m = &v.monitor.meta;
        facts.push(("Target", v.target.clone()));
        for (l, val) in [
            ("Service", &m.service),
            ("Capability", &m.capability),
            ("Owner", &m.owner),
        ] {
            if let Some(val) = val {
                facts.push((l, val.clone()));
            }
        }
        runbook = m
            .runbook
            .clone()
            .filter(|r| r.starts_with("https://") || r.starts_with("http://"));
    }
    let notified = d
        .timeline
        .iter()
        .filter(|e| e.kind == EventKind::Notified)
        .count();
    facts.push(("Notification attempts", notified.to_string()));
    render(&DetailPage {
        layout: Layout::new(&p, "incidents"),
        id: i.id,
        monitor: i.monitor.clone(),
        monitor_href: (view.is_some() || portwarden_core::is_finding_monitor(&i.monitor))
            .then(|| super::monitor_href(&i.monitor)),
        status: i.status.as_str(),
        state: i.state.as_str(),
        facts,
        runbook,
        message: i.message.clone().unwrap_or_default(),
        events: d.timeline.iter().map(event).collect(),
        can_ack: p.can_edit() && i.status == IncidentStatus::Open && i.acknowledged_at.is_none(),
    })
}

pub async fn acknowledge(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Bad incident id",
            "Incident ids are whole numbers.",
        );
    };
    match crate::api::acknowledge_incident(&s, id, &p.name).await {
        Ok(_) => Redirect::to(&format!("/incidents/{id}")).into_response(),
        Err(e) => error_page(e.status, "Cannot acknowledge", &e.detail),
    }
}

/// The change an acknowledgement makes.
pub fn ack_change(by: &str) -> IncidentChange {
    let at = Utc::now();
    IncidentChange::Acknowledge {
        by: by.to_string(),
        event: IncidentEvent::new(at, EventKind::Acknowledged, format!("acknowledged by {by}")),
    }
}
