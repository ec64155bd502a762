//! `/login` (form and post) and `/logout`.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use portwarden_store::{RevokeSessions, SessionRecord};

use super::middleware::{Principal, Via, client_ip, cookie, form_field};
use super::{LOGIN_COOKIE, SESSION_COOKIE, constant_eq, random_token, session_times, sha256_hex};
use crate::AppState;
use crate::web::render;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    csrf: String,
    next: String,
    user: String,
    error: String,
    generated: bool,
}

/// Only local paths: never an absolute or protocol-relative URL (no open redirect).
fn safe_next(next: &str) -> String {
    if next.starts_with('/') && !next.starts_with("//") && !next.starts_with("/\\") {
        next.to_string()
    } else {
        "/".into()
    }
}

fn percent_decode(v: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn cookie_header(s: &AppState, name: &str, value: &str, path: &str, max_age: i64) -> HeaderValue {
    let secure = if s.auth.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let same_site = if name == SESSION_COOKIE {
        "Lax"
    } else {
        "Strict"
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite={same_site}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("pw_invalid=1"))
}

fn form(s: &AppState, status: StatusCode, next: &str, user: &str, error: &str) -> Response {
    let token = random_token(24);
    let generated = s.auth.config().settings.users.is_empty();
    let mut r = render(&LoginPage {
        csrf: token.clone(),
        next: safe_next(next),
        user: user.to_string(),
        error: error.to_string(),
        generated,
    });
    *r.status_mut() = status;
    r.headers_mut().append(
        header::SET_COOKIE,
        cookie_header(s, LOGIN_COOKIE, &token, "/login", 600),
    );
    r
}

pub async fn login_form(
    State(s): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    form(
        &s,
        StatusCode::OK,
        q.get("next").map(String::as_str).unwrap_or("/"),
        "",
        "",
    )
}

pub async fn login(State(s): State<AppState>, req: Request) -> Response {
    let ip = client_ip(&req);
    let headers: HeaderMap = req.headers().clone();
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(200).collect::<String>());
    let body = match axum::body::to_bytes(req.into_body(), 16 * 1024).await {
        Ok(b) => b,
        Err(_) => {
            return form(
                &s,
                StatusCode::PAYLOAD_TOO_LARGE,
                "/",
                "",
                "Request too large.",
            );
        }
    };
    let field = |k: &str| form_field(&body, k).map(percent_decode).unwrap_or_default();
    let (user, password, next) = (field("user"), field("password"), field("next"));
    let csrf_ok = match (cookie(&headers, LOGIN_COOKIE), form_field(&body, "csrf")) {
        (Some(c), Some(f)) => !c.is_empty() && constant_eq(c, f),
        _ => false,
    };
    if !csrf_ok {
        tracing::info!(%ip, "login refused: missing or wrong CSRF token");
        return form(
            &s,
            StatusCode::FORBIDDEN,
            &next,
            &user,
            "The form expired (or cookies are blocked). Try again.",
        );
    }
    let ip_key = format!("login-ip:{ip}");
    let user_key = format!("login-user:{user}");
    if let Some(wait) = s.auth.limiter.blocked(&[&ip_key, &user_key], 1) {
        tracing::warn!(%ip, user, "login refused: too many failed attempts");
        let mut r = form(
            &s,
            StatusCode::TOO_MANY_REQUESTS,
            &next,
            &user,
            &format!(
                "Too many failed attempts. Try again in {} s.",
                wait.as_secs().max(1)
            ),
        );
        if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let Some(account) = s.auth.check_login(&user, &password).await else {
        s.auth.limiter.fail(&[&ip_key, &user_key]);
        tracing::info!(%ip, user, "login failed");
        return form(
            &s,
            StatusCode::UNAUTHORIZED,
            &next,
            &user,
            "Wrong user name or password.",
        );
    };
    s.auth.limiter.clear(&user_key);
    let secret = random_token(32);
    let csrf = random_token(24);
    if secret.is_empty() || csrf.is_empty() {
        return crate::web::error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Cannot log in",
            "The random generator failed; see the server log.",
        );
    }
    let now = Utc::now();
    let (ttl, _) = session_times(&s.auth.config().settings);
    let rec = SessionRecord {
        id: sha256_hex(&secret),
        user: account.name.clone(),
        csrf,
        created_at: now,
        expires_at: now + ttl,
        last_seen: now,
        revoked_at: None,
        remote: Some(ip.clone()),
        user_agent: agent,
    };
    if let Err(e) = s.store.create_session(rec).await {
        tracing::error!(error = %e, "cannot save a session");
        return crate::web::error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Cannot log in",
            "Sessions cannot be saved right now (the store refuses writes); see /api/v1/health.",
        );
    }
    tracing::info!(%ip, user = account.name, "logged in");
    let mut r = Redirect::to(&safe_next(&next)).into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        cookie_header(&s, SESSION_COOKIE, &secret, "/", ttl.num_seconds()),
    );
    r.headers_mut().append(
        header::SET_COOKIE,
        cookie_header(&s, LOGIN_COOKIE, "", "/login", 0),
    );
    r
}

pub async fn logout(State(s): State<AppState>, p: Principal) -> Response {
    if let Via::Session { id, .. } = &p.via
        && let Err(e) = s
            .store
            .revoke_sessions(RevokeSessions::One(id.clone()), Utc::now())
            .await
    {
        tracing::warn!(error = %e, "cannot revoke the session at logout");
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        cookie_header(&s, SESSION_COOKIE, "", "/", 0),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_local() {
        assert_eq!(safe_next("/monitors/x"), "/monitors/x");
        assert_eq!(safe_next("//evil.example"), "/");
        assert_eq!(safe_next("https://evil.example"), "/");
        assert_eq!(safe_next("/\\evil"), "/");
        assert_eq!(percent_decode("%2Fmonitors%2Fa+b"), "/monitors/a b");
    }
}
