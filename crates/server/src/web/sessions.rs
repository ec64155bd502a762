//! `/sessions` (admin): every active login session, with revocation of one, of a user's, or of
//! all (sessions are kept server-side; a revoked session stops working on its next request).

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use portwarden_store::RevokeSessions;

use super::{Layout, error_page, fmt_ago, fmt_time, render, store_unavailable};
use crate::AppState;
use crate::auth::{Principal, Via, middleware::form_field};

pub struct Row {
    pub id: String,
    pub short: String,
    pub user: String,
    pub created: String,
    pub last_seen: String,
    pub expires: String,
    pub remote: String,
    pub agent: String,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "sessions.html")]
pub struct Page {
    pub layout: Layout,
    pub rows: Vec<Row>,
    pub flash: String,
}

pub async fn page(State(s): State<AppState>, p: Principal) -> Response {
    let current = match &p.via {
        Via::Session { id, .. } => id.clone(),
        Via::Token => String::new(),
    };
    let sessions = match s.store.active_sessions(Utc::now()).await {
        Ok(v) => v,
        Err(e) => {
            return store_unavailable(&e);
        }
    };
    let rows = sessions
        .into_iter()
        .map(|r| Row {
            short: r.id.chars().take(12).collect(),
            current: r.id == current,
            id: r.id,
            user: r.user,
            created: fmt_time(r.created_at),
            last_seen: fmt_ago(r.last_seen),
            expires: fmt_time(r.expires_at),
            remote: r.remote.unwrap_or_default(),
            agent: r.user_agent.unwrap_or_default().chars().take(80).collect(),
        })
        .collect();
    render(&Page {
        layout: Layout::new(&p, "sessions"),
        rows,
        flash: String::new(),
    })
}

pub(crate) fn decode(v: &str) -> String {
    // Session ids are hex and user names are shown as typed: decode %XX and `+`.
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub async fn revoke(State(s): State<AppState>, body: axum::body::Bytes) -> Response {
    let which = if let Some(id) = form_field(&body, "id") {
        RevokeSessions::One(decode(id))
    } else if let Some(u) = form_field(&body, "user") {
        RevokeSessions::User(decode(u))
    } else if form_field(&body, "all").is_some() {
        RevokeSessions::All
    } else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Nothing to revoke",
            "Send `id`, `user` or `all`.",
        );
    };
    match s.store.revoke_sessions(which, Utc::now()).await {
        Ok(n) => {
            tracing::info!(revoked = n, "sessions revoked");
            Redirect::to("/sessions").into_response()
        }
        Err(e) => error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Could not revoke",
            &e.to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn decodes_form_values() {
        assert_eq!(super::decode("a%20b+c"), "a b c");
        assert_eq!(super::decode("%3Cx%3E"), "<x>");
        assert_eq!(super::decode("50%"), "50%");
        assert_eq!(super::decode("%zz"), "%zz");
    }
}
