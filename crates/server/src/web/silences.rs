//! `/silences`: the active silences (what they match, why, who, until when), a form to start
//! one (editors; `?monitor=NAME` fills it in from a monitor's page) and *End now* buttons.
//! The same checks as `POST /api/v1/silences`; a rejected form comes back with the reason,
//! naming the field, and what was typed.

use std::collections::{BTreeMap, HashMap};

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;

use super::sessions::decode;
use super::{Layout, error_page, fmt_span, fmt_time, render, store_unavailable};
use crate::AppState;
use crate::alerting::{NewSilence, end_silence, start_silence};
use crate::auth::{Principal, middleware::form_field};

pub struct Row {
    pub id: i64,
    pub matches: Vec<String>,
    pub comment: String,
    pub by: String,
    pub created: String,
    pub expires: String,
    pub left: String,
}

/// What the form shows (empty, prefilled, or as typed when it was refused).
#[derive(Default)]
pub struct Form {
    pub monitors: String,
    pub hosts: String,
    pub labels: String,
    pub duration: String,
    pub comment: String,
}

#[derive(Template)]
#[template(path = "silences.html")]
pub struct Page {
    pub layout: Layout,
    pub rows: Vec<Row>,
    pub form: Form,
    pub error: String,
}

async fn page_with(s: &AppState, p: &Principal, form: Form, error: String) -> Response {
    let now = Utc::now();
    let silences = match s.store.silences(now).await {
        Ok(v) => v,
        Err(e) => {
            return store_unavailable(&e);
        }
    };
    let rows = silences
        .into_iter()
        .map(|x| {
            let mut matches: Vec<String> = Vec::new();
            matches.extend(x.monitors.iter().map(|m| format!("monitor {m}")));
            matches.extend(x.hosts.iter().map(|h| format!("host {h}")));
            if !x.labels.is_empty() {
                let all: Vec<String> = x.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                matches.push(format!("labels {}", all.join(", ")));
            }
            Row {
                id: x.id,
                matches,
                comment: x.comment,
                by: x.created_by,
                created: fmt_time(x.created_at),
                expires: fmt_time(x.expires_at),
                left: fmt_span(x.expires_at - now),
            }
        })
        .collect();
    let refused = !error.is_empty();
    let mut r = render(&Page {
        layout: Layout::new(p, "silences"),
        rows,
        form,
        error,
    });
    if refused {
        *r.status_mut() = StatusCode::BAD_REQUEST;
    }
    r
}

pub async fn page(
    State(s): State<AppState>,
    p: Principal,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let form = Form {
        monitors: q.get("monitor").cloned().unwrap_or_default(),
        duration: "2h".into(),
        ..Form::default()
    };
    page_with(&s, &p, form, String::new()).await
}

/// A form list: names separated by commas or spaces.
fn list(v: &str) -> Vec<String> {
    v.split([',', ' ', '\n', '\r', '\t'])
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

/// `team=db, env=prod` → labels; the first item that is not `key=value` is the error.
fn labels(v: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for item in v
        .split([',', '\n'])
        .map(str::trim)
        .filter(|x| !x.is_empty())
    {
        match item.split_once('=') {
            Some((k, val)) if !k.trim().is_empty() => {
                out.insert(k.trim().to_string(), val.trim().to_string());
            }
            _ => return Err(format!("labels: `{item}` is not key=value")),
        }
    }
    Ok(out)
}

pub async fn create(State(s): State<AppState>, p: Principal, body: axum::body::Bytes) -> Response {
    let field = |n: &str| form_field(&body, n).map(decode).unwrap_or_default();
    let form = Form {
        monitors: field("monitors"),
        hosts: field("hosts"),
        labels: field("labels"),
        duration: field("duration"),
        comment: field("comment"),
    };
    let labels = match labels(&form.labels) {
        Ok(l) => l,
        Err(e) => return page_with(&s, &p, form, e).await,
    };
    let req = NewSilence {
        monitors: list(&form.monitors),
        hosts: list(&form.hosts),
        labels,
        comment: form.comment.clone(),
        expires_at: None,
        duration: Some(form.duration.trim().to_string()),
    };
    match start_silence(&s, req, &p.name).await {
        Ok(_) => Redirect::to("/silences").into_response(),
        Err(e) => {
            let msg = match &e.parameter {
                Some(f) => format!("{f}: {}", e.detail),
                None => e.detail.clone(),
            };
            page_with(&s, &p, form, msg).await
        }
    }
}

pub async fn end(State(s): State<AppState>, p: Principal, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Not a silence",
            &format!("`{id}` is not a silence id (a whole number)"),
        );
    };
    match end_silence(&s, id, &p.name).await {
        Ok(()) => Redirect::to("/silences").into_response(),
        Err(e) => error_page(e.status, "Could not end the silence", &e.detail),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn form_lists_and_labels() {
        assert_eq!(super::list(" a, b  c,,"), ["a", "b", "c"]);
        let l = super::labels("team=db, env = prod").unwrap();
        assert_eq!(l.get("env").map(String::as_str), Some("prod"));
        assert_eq!(
            super::labels("team=db, oops").unwrap_err(),
            "labels: `oops` is not key=value"
        );
        assert!(super::labels("=x").is_err());
        assert!(super::labels("").unwrap().is_empty());
    }
}
