//! Alerting endpoints: signed acknowledge links (`/ack/{token}`, no login) and silences
//! (`/api/v1/silences`).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use portwarden_core::IncidentStatus;
use portwarden_store::Silence;
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::error::{ApiError, ApiResult};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ack/{token}", get(ack_page).post(ack_by_link))
        .route("/api/v1/silences", get(list_silences).post(create_silence))
        .route("/api/v1/silences/{id}", delete(delete_silence))
}

fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><meta name=\"robots\" content=\"noindex\"><title>{t} · Portwarden</title></head><body style=\"font-family:sans-serif;max-width:40em;margin:3em auto\"><h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

/// GET shows what the link acknowledges and a button: link previews (chat unfurlers, mail
/// scanners) fetch GETs, so only the POST acknowledges.
async fn ack_page(State(s): State<AppState>, Path(token): Path<String>) -> Response {
    let id = match s.engine.alerting().verify_ack(&token, Utc::now()) {
        Ok(id) => id,
        Err(why) => {
            return page(
                StatusCode::FORBIDDEN,
                "Link not valid",
                &format!("<p>{}</p>", escape(why)),
            );
        }
    };
    let d = match s.store.incident(id).await {
        Ok(Some(d)) => d,
        Ok(None) => {
            return page(
                StatusCode::NOT_FOUND,
                "No such incident",
                "<p>The incident no longer exists.</p>",
            );
        }
        Err(e) => {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                &format!("<p>{}</p>", escape(&e.to_string())),
            );
        }
    };
    let i = &d.incident;
    let what = format!(
        "<p>Incident #{id}: <b>{}</b> is {} since {} ({}).</p>",
        escape(&i.monitor),
        escape(i.state.as_str()),
        escape(&i.opened_at.to_rfc3339()),
        escape(i.error_kind.as_deref().unwrap_or("no error kind"))
    );
    if i.status == IncidentStatus::Resolved {
        return page(StatusCode::OK, "Already resolved", &what);
    }
    if let Some(by) = &i.acknowledged_by {
        return page(
            StatusCode::OK,
            "Already acknowledged",
            &format!("{what}<p>Acknowledged by {}.</p>", escape(by)),
        );
    }
    page(
        StatusCode::OK,
        "Acknowledge incident",
        &format!(
            "{what}<form method=\"post\"><button type=\"submit\">Acknowledge</button></form><p>Acknowledging stops repeats and escalation of this incident.</p>"
        ),
    )
}

async fn ack_by_link(State(s): State<AppState>, Path(token): Path<String>) -> Response {
    let id = match s.engine.alerting().verify_ack(&token, Utc::now()) {
        Ok(id) => id,
        Err(why) => {
            return page(
                StatusCode::FORBIDDEN,
                "Link not valid",
                &format!("<p>{}</p>", escape(why)),
            );
        }
    };
    match crate::api::acknowledge_incident(&s, id, "signed link").await {
        Ok(()) => page(
            StatusCode::OK,
            "Acknowledged",
            &format!("<p>Incident #{id} is acknowledged: no more repeats or escalation.</p>"),
        ),
        Err(e) if e.status == StatusCode::CONFLICT => page(
            StatusCode::OK,
            "Already resolved",
            &format!("<p>Incident #{id} is resolved.</p>"),
        ),
        Err(e) => page(
            e.status,
            "Not acknowledged",
            &format!("<p>{}</p>", escape(&e.detail)),
        ),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewSilence {
    #[serde(default)]
    pub monitors: Vec<String>,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub comment: String,
    /// Either an end time ...
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// ... or a duration like `2h`.
    #[serde(default)]
    pub duration: Option<String>,
}

const MAX_SILENCE: chrono::Duration = chrono::Duration::days(90);

async fn create_silence(
    State(s): State<AppState>,
    p: crate::auth::Principal,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let req: NewSilence = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_parameter(
            "body",
            format!("expected {{\"monitors\"|\"hosts\"|\"labels\", \"comment\", \"duration\"|\"expires_at\"}}: {e}"),
        )
    })?;
    let silence = start_silence(&s, req, &p.name).await?;
    Ok((StatusCode::CREATED, Json(silence)).into_response())
}

/// Checks a new silence, stores it and hands the active set to the alerting side at once
/// (the API and the `/silences` page).
pub(crate) async fn start_silence(
    s: &AppState,
    req: NewSilence,
    by: &str,
) -> Result<Silence, ApiError> {
    let now = Utc::now();
    if req.monitors.is_empty() && req.hosts.is_empty() && req.labels.is_empty() {
        return Err(ApiError::bad_parameter(
            "monitors",
            "a silence needs `monitors`, `hosts` or `labels`",
        ));
    }
    if req.comment.trim().is_empty() {
        return Err(ApiError::bad_parameter(
            "comment",
            "say why (`comment`), so others know",
        ));
    }
    let expires_at = match (req.expires_at, req.duration.as_deref()) {
        (Some(t), None) => t,
        (None, Some(d)) => {
            let d = portwarden_core::parse_duration(d).map_err(|e| {
                ApiError::bad_parameter("duration", format!("`{d}`: {e}; write e.g. `2h` or `30m`"))
            })?;
            now + chrono::Duration::from_std(d).unwrap_or(MAX_SILENCE + chrono::Duration::days(1))
        }
        _ => {
            return Err(ApiError::bad_parameter(
                "duration",
                "give exactly one of `duration` and `expires_at`",
            ));
        }
    };
    if expires_at <= now {
        return Err(ApiError::bad_parameter(
            "expires_at",
            "the silence would already be over",
        ));
    }
    if expires_at - now > MAX_SILENCE {
        return Err(ApiError::bad_parameter(
            "duration",
            "silences last at most 90 days; use a maintenance window for more",
        ));
    }
    let mut silence = Silence {
        id: 0,
        monitors: req.monitors,
        hosts: req.hosts,
        labels: req.labels,
        comment: req.comment,
        created_by: by.to_string(),
        created_at: now,
        expires_at,
    };
    silence.id = s.store.create_silence(silence.clone()).await?;
    if let Ok(all) = s.store.silences(now).await {
        s.engine.alerting().set_silences(all);
    }
    tracing::info!(silence = silence.id, by = %by, until = %expires_at, "silence created");
    Ok(silence)
}

async fn list_silences(State(s): State<AppState>) -> ApiResult<Response> {
    let items = s.store.silences(Utc::now()).await?;
    Ok(Json(json!({ "items": items })).into_response())
}

async fn delete_silence(
    State(s): State<AppState>,
    p: crate::auth::Principal,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id: i64 = id.parse().map_err(|_| {
        ApiError::bad_parameter("id", format!("`{id}` is not a silence id (a whole number)"))
    })?;
    end_silence(&s, id, &p.name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Ends an active silence now (the API and the `/silences` page).
pub(crate) async fn end_silence(s: &AppState, id: i64, by: &str) -> Result<(), ApiError> {
    let now = Utc::now();
    if !s.store.delete_silence(id, now).await? {
        return Err(ApiError::not_found(format!("no active silence {id}")));
    }
    if let Ok(all) = s.store.silences(now).await {
        s.engine.alerting().set_silences(all);
    }
    tracing::info!(silence = id, by = %by, "silence ended");
    Ok(())
}
