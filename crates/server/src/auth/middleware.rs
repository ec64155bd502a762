//! The two layers every request goes through: authentication/authorization (with CSRF checks
//! for session-authenticated changes) and security headers.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use portwarden_config::Role;
use serde_json::json;

use super::{SESSION_COOKIE, constant_eq, is_public, required_role, session_times, sha256_hex};
use crate::AppState;

/// How a request proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// A browser session: its id (SHA-256 of the cookie) and CSRF token.
    Session { id: String, csrf: String },
    /// An API token.
    Token,
}

/// The authenticated caller, put in the request's extensions by [`authenticate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    pub via: Via,
}

impl Principal {
    /// The CSRF token forms must carry (empty for tokens, which need none).
    pub fn csrf(&self) -> &str {
        match &self.via {
            Via::Session { csrf, .. } => csrf,
            Via::Token => "",
        }
    }

    pub fn can_edit(&self) -> bool {
        self.role >= Role::Editor
    }

    pub fn is_admin(&self) -> bool {
        self.role >= Role::Admin
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| api_error(StatusCode::UNAUTHORIZED, "unauthorized", "log in first"))
    }
}

/// The value of a cookie in the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// A field of an `application/x-www-form-urlencoded` body, undecoded (tokens are base64url).
pub fn form_field<'a>(body: &'a [u8], name: &str) -> Option<&'a str> {
    std::str::from_utf8(body)
        .ok()?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The client address (the TCP peer).
pub fn client_ip(req: &Request) -> String {
    req.extensions()
        .get::<ConnectInfo<crate::tls::ClientAddr>>()
        .map(|c| c.0.0.ip().to_string())
        .or_else(|| {
            req.extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn is_api(path: &str) -> bool {
    path.starts_with("/api/") || path == "/metrics"
}

pub fn api_error(status: StatusCode, error: &'static str, detail: &str) -> Response {
    let mut r = (
        status,
        axum::Json(json!({ "error": error, "detail": detail })),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"portwarden\""),
        );
    }
    r
}

fn too_many(wait: Duration) -> Response {
    let mut r = api_error(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        "too many failed attempts from this address; wait and try again",
    );
    if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

fn forbidden(path: &str, need: Role, have: Role) -> Response {
    let detail = format!(
        "this needs the `{}` role; you have `{}`",
        need.as_str(),
        have.as_str()
    );
    if is_api(path) {
        api_error(StatusCode::FORBIDDEN, "forbidden", &detail)
    } else {
        crate::web::error_page(StatusCode::FORBIDDEN, "Not allowed", &detail)
    }
}

/// Where to send a browser that is not logged in.
fn login_redirect(req: &Request) -> Response {
    let next = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let enc: String = next
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    Redirect::to(&format!("/login?next={enc}")).into_response()
}

async fn session_principal(s: &AppState, headers: &HeaderMap) -> Option<Principal> {
    let value = cookie(headers, SESSION_COOKIE)?;
    if value.is_empty() || value.len() > 128 {
        return None;
    }
    let id = sha256_hex(value);
    let rec = match s.store.session(&id).await {
        Ok(r) => r?,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the session store");
            return None;
        }
    };
    let now = Utc::now();
    let cfg = s.auth.config();
    let (_, idle) = session_times(&cfg.settings);
    if rec.revoked_at.is_some() || rec.expires_at <= now || now - rec.last_seen > idle {
        return None;
    }
    let account = cfg.account(&rec.user)?;
    if now - rec.last_seen > chrono::Duration::seconds(60)
        && let Err(e) = s.store.touch_session(&id, now).await
    {
        tracing::debug!(error = %e, "cannot record session activity");
    }
    Some(Principal {
        name: rec.user,
        role: account.role,
        via: Via::Session { id, csrf: rec.csrf },
    })
}

/// Authenticates (bearer token or session cookie), enforces the role the route needs, and
/// checks the CSRF token of session-authenticated changes (form field `csrf` or header
/// `X-CSRF-Token`). Public routes pass untouched.
pub async fn authenticate(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if is_public(&path, s.auth.metrics_public()) {
        return next.run(req).await;
    }
    let ip = client_ip(&req);
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_string());
    let principal = match bearer {
        Some(secret) => {
            let key = format!("token-ip:{ip}");
            if let Some(wait) = s.auth.limiter.blocked(&[&key], 4) {
                return too_many(wait);
            }
            match s.auth.token_principal(&secret) {
                Some(p) => p,
                None => {
                    s.auth.limiter.fail(&[&key]);
                    tracing::info!(%ip, path, "rejected an unknown API token");
                    return api_error(
                        StatusCode::UNAUTHORIZED,
                        "unauthorized",
                        "unknown API token; use the secret of a token in `auth.tokens`",
                    );
                }
            }
        }
        None => match session_principal(&s, req.headers()).await {
            Some(p) => p,
            None if is_api(&path) => {
                return api_error(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "send `Authorization: Bearer <token>` (a token from `auth.tokens`) or log in",
                );
            }
            None => return login_redirect(&req),
        },
    };
    let need = required_role(req.method(), &path);
    if principal.role < need {
        return forbidden(&path, need, principal.role);
    }
    let mut req = req;
    if !req.method().is_safe()
        && let Via::Session { csrf, .. } = &principal.via
    {
        let header_ok = req
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| constant_eq(v, csrf));
        let ok = if header_ok {
            true
        } else {
            let (parts, body) = req.into_parts();
            let bytes = match axum::body::to_bytes(body, 64 * 1024).await {
                Ok(b) => b,
                Err(_) => {
                    return api_error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too_large",
                        "request body above 64 KiB",
                    );
                }
            };
            let ok = form_field(&bytes, "csrf").is_some_and(|v| constant_eq(v, csrf));
            req = Request::from_parts(parts, Body::from(bytes));
            ok
        };
        if !ok {
            tracing::info!(%ip, path, user = principal.name, "refused a change without a valid CSRF token");
            let detail = "missing or wrong CSRF token: reload the page and submit the form again";
            return if is_api(&path) {
                api_error(StatusCode::FORBIDDEN, "csrf", detail)
            } else {
                crate::web::error_page(StatusCode::FORBIDDEN, "Form expired", detail)
            };
        }
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// Headers on every response: CSP without inline scripts, no framing, no sniffing, a strict
/// referrer policy; `no-store` unless the handler chose a cache policy; HSTS under TLS.
pub async fn security_headers(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; \
             frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=()"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if s.auth.secure_cookies {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_forms() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; pw_session=abc; b=2"),
        );
        assert_eq!(cookie(&h, "pw_session"), Some("abc"));
        assert_eq!(cookie(&h, "pw"), None);
        assert_eq!(form_field(b"x=1&csrf=t-_k&y=", "csrf"), Some("t-_k"));
        assert_eq!(form_field(b"csrfx=1", "csrf"), None);
    }
}
