//! The web UI: server-rendered pages (askama templates in `crates/server/templates`, escaped
//! by default — nothing from monitors, targets or errors is ever marked safe), embedded assets,
//! and the public status page.

pub mod agents;
pub mod cache;
pub mod exposure;
pub mod incidents;
pub mod monitor;
pub mod overview;
pub mod sessions;
pub mod silences;
pub mod status;
pub mod svg;

use askama::Template;
use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};

use crate::AppState;
use crate::auth::Principal;

/// The UI routes (auth is applied around the whole router).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(overview::page))
        .route("/monitors/{name}", get(monitor::page))
        .route("/monitors/{name}/check", post(monitor::check_now))
        .route("/incidents", get(incidents::list))
        .route("/agents", get(agents::page))
        .route("/exposure", get(exposure::page))
        .route("/exposure/{name}/scan", post(exposure::scan_now))
        .route("/incidents/{id}", get(incidents::detail))
        .route("/incidents/{id}/ack", post(incidents::acknowledge))
        .route("/silences", get(silences::page).post(silences::create))
        .route("/silences/{id}/end", post(silences::end))
        .route("/sessions", get(sessions::page))
        .route("/sessions/revoke", post(sessions::revoke))
        .route(
            "/login",
            get(crate::auth::pages::login_form).post(crate::auth::pages::login),
        )
        .route("/logout", post(crate::auth::pages::logout))
        .route("/status", get(status::html))
        .route("/status.json", get(status::json))
        .route("/status/feed.atom", get(status::atom))
        .route("/assets/{*file}", get(asset))
}

/// What every logged-in page shows in its header.
#[derive(Debug, Clone)]
pub struct Layout {
    pub user: String,
    pub role: &'static str,
    pub csrf: String,
    pub can_edit: bool,
    pub is_admin: bool,
    pub nav: &'static str,
}

impl Layout {
    pub fn new(p: &Principal, nav: &'static str) -> Layout {
        Layout {
            user: p.name.clone(),
            role: p.role.as_str(),
            csrf: p.csrf().to_string(),
            can_edit: p.can_edit(),
            is_admin: p.is_admin(),
            nav,
        }
    }
}

/// Where an incident's monitor is shown: its monitor page, or for an exposure finding's
/// incident (`scan:<baseline>`) the baseline on the exposure page.
pub fn monitor_href(monitor: &str) -> String {
    match monitor.strip_prefix(portwarden_core::incident::FINDING_MONITOR_PREFIX) {
        Some(baseline) => format!("/exposure#baseline-{}", status::encode_segment(baseline)),
        None => format!("/monitors/{}", status::encode_segment(monitor)),
    }
}

/// Renders a template as an HTML response (500 with a plain message if rendering fails).
pub fn render<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(body) => Html(body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered; see the server log",
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    detail: &'a str,
}

/// A small standalone error page (no layout: it is also used before login).
pub fn error_page(status: StatusCode, title: &str, detail: &str) -> Response {
    let mut r = render(&ErrorPage { title, detail });
    *r.status_mut() = status;
    r
}

/// The page for a store that could not answer (503, with its reason).
pub fn store_unavailable(e: &portwarden_store::StoreError) -> Response {
    error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "The store could not answer",
        &e.to_string(),
    )
}

/// `99.98%`, `100%`, or `—` without data.
pub fn fmt_ratio(r: Option<f64>) -> String {
    match r {
        None => "—".into(),
        Some(r) if r >= 1.0 => "100%".into(),
        Some(r) => {
            let p = r * 100.0;
            // Never round 99.999 up to 100: a monitor with a failure must not look perfect.
            let floored = (p * 100.0).floor() / 100.0;
            format!("{floored:.2}%")
        }
    }
}

/// `5s`, `3m`, `2h`, `4d` (how long ago / how long).
pub fn fmt_span(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    if s < 90 {
        format!("{s}s")
    } else if s < 90 * 60 {
        format!("{}m", s / 60)
    } else if s < 36 * 3600 {
        let (h, m) = (s / 3600, (s % 3600) / 60);
        if m > 0 && h < 10 {
            format!("{h}h {m}m")
        } else {
            format!("{h}h")
        }
    } else {
        format!("{}d", s / 86_400)
    }
}

pub fn fmt_ago(t: DateTime<Utc>) -> String {
    format!("{} ago", fmt_span(Utc::now() - t))
}

pub fn fmt_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

pub fn fmt_ms(v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(v) if v < 10.0 => format!("{v:.2} ms"),
        Some(v) if v < 100.0 => format!("{v:.1} ms"),
        Some(v) => format!("{v:.0} ms"),
    }
}

/// Embedded static files.
static ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/app.js"),
    ),
    (
        "monitor.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/monitor.js"),
    ),
    (
        "vendor/uplot/uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/vendor/uplot/uPlot.iife.min.js"),
    ),
    (
        "vendor/uplot/uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/vendor/uplot/uPlot.min.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../../assets/favicon.svg"),
    ),
];

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, ctype, body)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(ctype)),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=3600"),
                ),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_never_round_up_to_perfect() {
        assert_eq!(fmt_ratio(Some(1.0)), "100%");
        assert_eq!(fmt_ratio(Some(0.99999)), "99.99%");
        assert_eq!(fmt_ratio(Some(0.5)), "50.00%");
        assert_eq!(fmt_ratio(None), "—");
    }

    #[test]
    fn spans() {
        assert_eq!(fmt_span(chrono::Duration::seconds(5)), "5s");
        assert_eq!(fmt_span(chrono::Duration::seconds(600)), "10m");
        assert_eq!(fmt_span(chrono::Duration::seconds(3 * 3600 + 120)), "3h 2m");
        assert_eq!(fmt_span(chrono::Duration::days(3)), "3d");
    }
}
