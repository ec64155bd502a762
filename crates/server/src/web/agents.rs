//! `/agents`: every enrolled probe agent with its status, last contact, version, ingest lag,
//! queue, clock offset and how many monitors it probes (the page for `/api/v1/agents`).

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use super::{Layout, fmt_ago, render};
use crate::AppState;
use crate::auth::Principal;

pub struct Row {
    pub name: String,
    pub location: String,
    pub status: &'static str,
    /// CSS state class: `up` for ok, `down` for silent, `unknown` otherwise.
    pub class: &'static str,
    pub last_contact: String,
    pub version: String,
    pub lag: String,
    pub queued: u64,
    pub offset: String,
    pub assigned: usize,
}

#[derive(Template)]
#[template(path = "agents.html")]
pub struct Page {
    pub layout: Layout,
    pub rows: Vec<Row>,
}

pub async fn page(State(s): State<AppState>, p: Principal) -> Response {
    let rows = s
        .agents
        .views(&s.engine, None)
        .into_iter()
        .map(|a| Row {
            class: match a.status {
                "ok" => "up",
                "silent" => "down",
                _ => "unknown",
            },
            status: a.status,
            last_contact: a
                .last_contact
                .map(fmt_ago)
                .unwrap_or_else(|| "never".into()),
            version: a.version.unwrap_or_default(),
            lag: a.lag_ms.map(|l| format!("{l:.0} ms")).unwrap_or_default(),
            queued: a.queued,
            offset: format!("{:+.0} ms", a.clock_offset_ms),
            assigned: a.assigned,
            name: a.name,
            location: a.location,
        })
        .collect();
    render(&Page {
        layout: Layout::new(&p, "agents"),
        rows,
    })
}
