//! The HTTP plumbing every HTTP channel shares: one client, the `Idempotency-Key` header,
//! timeouts, and turning responses into [`Delivered`] / [`SendError`] without leaking secrets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};

use crate::outcome::{Delivered, SendError, scrub, snippet};

/// Default per-request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds the client all HTTP channels share: rustls with ring and the system's roots, no
/// redirects (a webhook that redirects is misconfigured, and following would re-send a body).
pub fn client() -> Result<reqwest::Client, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("portwarden/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// `host` or `host:port` of a URL: the only part of a receiver's URL that may be shown.
pub fn host_of(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => "?".into(),
    }
}

/// Parses a configured URL; the error names the receiver, never the URL.
pub fn parse_url(receiver: &str, field: &str, raw: &str) -> Result<Url, String> {
    let u = Url::parse(raw)
        .map_err(|e| format!("receiver `{receiver}`: `{field}` is not a valid URL ({e})"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(format!(
            "receiver `{receiver}`: `{field}` must be an http(s) URL with a host"
        ));
    }
    Ok(u)
}

/// The strings that must never appear in a message about this URL: the whole URL, its path and
/// query, and every path segment or query value long enough to be a token.
pub fn url_secrets(url: &Url) -> Vec<String> {
    let mut s = vec![url.as_str().to_string()];
    if url.path().len() > 1 {
        s.push(url.path().to_string());
    }
    if let Some(q) = url.query() {
        s.push(q.to_string());
        for (_, v) in url.query_pairs() {
            if v.len() >= 6 {
                s.push(v.into_owned());
            }
        }
    }
    if let Some(segs) = url.path_segments() {
        s.extend(segs.filter(|p| p.len() >= 6).map(str::to_string));
    }
    if let Some(p) = url.password() {
        s.push(p.to_string());
    }
    s
}

/// One request ready to go.
pub struct Request<'a> {
    pub kind: &'static str,
    pub method: Method,
    pub url: &'a Url,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub content_type: &'a str,
    pub idempotency_key: &'a str,
    pub timeout: Duration,
    pub basic_auth: Option<(&'a str, &'a str)>,
    /// Values to scrub from anything we report.
    pub secrets: &'a [String],
}

impl<'a> Request<'a> {
    /// A JSON `POST` with no extra headers or credentials beyond the URL: the shape of every
    /// chat and events webhook (slack, discord, teams, pagerduty).
    pub fn json_post(
        kind: &'static str,
        url: &'a Url,
        body: &serde_json::Value,
        idempotency_key: &'a str,
        timeout: Duration,
        secrets: &'a [String],
    ) -> Self {
        Request {
            kind,
            method: Method::POST,
            url,
            headers: HeaderMap::new(),
            body: serde_json::to_vec(body).unwrap_or_default(),
            content_type: "application/json",
            idempotency_key,
            timeout,
            basic_auth: None,
            secrets,
        }
    }
}

/// A 2xx answer.
pub struct Answer {
    pub status: u16,
    pub latency: Duration,
    pub body: String,
}

/// Most of a response body we read (receivers answer with a few bytes; a huge one is a mistake).
const MAX_BODY: usize = 64 * 1024;

/// Sends the request. Non-2xx answers and transport failures become a [`SendError`] whose
/// message names the channel, the host and the status, with a short, scrubbed body excerpt.
pub async fn send(client: &reqwest::Client, r: Request<'_>) -> Result<Answer, SendError> {
    let host = host_of(r.url);
    let mut rb = client
        .request(r.method.clone(), r.url.clone())
        .timeout(r.timeout)
        .headers(r.headers)
        .header(reqwest::header::CONTENT_TYPE, r.content_type)
        .body(r.body);
    if let Ok(v) = HeaderValue::from_str(r.idempotency_key) {
        rb = rb.header(HeaderName::from_static("idempotency-key"), v);
    }
    if let Some((u, p)) = r.basic_auth {
        rb = rb.basic_auth(u, Some(p));
    }
    let started = Instant::now();
    let resp = match rb.send().await {
        Ok(r) => r,
        Err(e) => {
            let what = if e.is_timeout() {
                format!(
                    "timed out after {}",
                    crate::message::fmt_duration(r.timeout)
                )
            } else if e.is_connect() {
                "cannot connect".to_string()
            } else {
                "request failed".to_string()
            };
            let detail = scrub(&describe(e), r.secrets);
            tracing::debug!(channel = r.kind, host = %host, error = %detail, "notification request failed");
            return Err(
                SendError::retryable(format!("{} to {host}: {what}: {detail}", r.kind))
                    .with_latency(started.elapsed()),
            );
        }
    };
    let status = resp.status();
    let retry_after = parse_retry_after(resp.headers());
    let body = read_body(resp).await;
    let latency = started.elapsed();
    if status.is_success() {
        return Ok(Answer {
            status: status.as_u16(),
            latency,
            body,
        });
    }
    Err(http_error(r.kind, &host, status, &body, retry_after, r.secrets).with_latency(latency))
}

async fn read_body(mut resp: reqwest::Response) -> String {
    let mut buf = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        buf.extend_from_slice(&chunk);
        if buf.len() >= MAX_BODY {
            buf.truncate(MAX_BODY);
            break;
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// The error for a non-2xx answer.
pub fn http_error(
    kind: &str,
    host: &str,
    status: StatusCode,
    body: &str,
    retry_after: Option<Duration>,
    secrets: &[String],
) -> SendError {
    let code = status.as_u16();
    // Discord (and others) put the wait in the JSON body too, in (fractional) seconds.
    let retry_after = if code == 429 {
        let body_wait = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("retry_after").and_then(serde_json::Value::as_f64))
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(1e6)));
        match (retry_after, body_wait) {
            (Some(h), Some(b)) => Some(h.max(b)),
            (h, b) => h.or(b),
        }
    } else {
        retry_after
    };
    let excerpt = snippet(&scrub(body, secrets), 200);
    let mut msg = format!("{kind} to {host}: HTTP {code}");
    if let Some(r) = status.canonical_reason() {
        msg.push(' ');
        msg.push_str(r);
    }
    if !excerpt.is_empty() {
        msg.push_str(": ");
        msg.push_str(&excerpt);
    }
    let e = if SendError::status_is_retryable(code) {
        SendError::retryable(msg)
    } else {
        SendError::permanent(msg)
    };
    e.with_status(code).with_retry_after(retry_after)
}

/// `Retry-After: 2` or `Retry-After: <HTTP date>`.
pub fn parse_retry_after(h: &HeaderMap) -> Option<Duration> {
    let v = h.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = v.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        return Some(Duration::from_secs_f64(secs.min(1e6)));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or_default())
}

/// A transport error with its causes, without the URL (it may carry a token).
pub fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut s = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// A header map from rendered `(name, value)` pairs; the error names the header, not its value.
pub fn header_map(pairs: &[(String, String)]) -> Result<HeaderMap, String> {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| format!("`{k}` is not a valid header name"))?;
        let value = HeaderValue::from_str(v)
            .map_err(|_| format!("the value of header `{k}` is not a valid header value"))?;
        h.insert(name, value);
    }
    Ok(h)
}

/// The result for a 2xx answer.
pub fn delivered(a: &Answer, detail: Option<String>) -> Delivered {
    Delivered {
        status: Some(a.status),
        latency: a.latency,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(parse_retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("0.5"));
        assert_eq!(parse_retry_after(&h), Some(Duration::from_millis(500)));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let d = parse_retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(parse_retry_after(&h), None);
    }

    #[test]
    fn url_secrets_cover_tokens() {
        let u = Url::parse("https://hooks.slack.com/services/T000/B000/XXXXyyyyZZZZ?k=secretvalue")
            .unwrap();
        let s = url_secrets(&u);
        assert!(s.contains(&"XXXXyyyyZZZZ".to_string()));
        assert!(s.contains(&"secretvalue".to_string()));
        assert_eq!(host_of(&u), "hooks.slack.com");
        let e = http_error(
            "slack",
            "hooks.slack.com",
            StatusCode::FORBIDDEN,
            "invalid_token XXXXyyyyZZZZ",
            None,
            &s,
        );
        assert!(
            !e.retryable && !e.message.contains("XXXXyyyyZZZZ"),
            "{}",
            e.message
        );
        assert_eq!(e.status, Some(403));
    }
}
