//! `type: sms` — one text message per recipient through Twilio's Messages API (or any API that
//! copies it: form POST to `/2010-04-01/Accounts/{sid}/Messages.json` with basic auth), or a
//! generic HTTP API described by a URL, headers and a body template.
//!
//! The text is cut to one segment — 160 GSM-7 characters (extension characters count twice),
//! or 70 UCS-2 units if it needs characters outside GSM-7 — with the essentials first: the
//! change and the monitor, the error kind, since when, service and capability, severity, scope,
//! owner, the incident link, the target. Parts that do not fit are left out whole.
//!
//! Every recipient is its own request with its own idempotency key (`{key}:{number}`); when one
//! of several fails, a retry skips the recipients already served (remembered in memory).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use portwarden_config::receivers::{SmsProvider, SmsSpec};
use reqwest::{Method, Url};
use serde_json::Value;

use crate::http::{self, DEFAULT_TIMEOUT, Request};
use crate::template::{Templates, context};
use crate::{Change, Channel, Delivered, Event, Notification, SendError, Shared};

/// Twilio's public API.
pub const TWILIO_URL: &str = "https://api.twilio.com";

/// The GSM 03.38 basic character set.
const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// The extension table (two septets each).
const GSM_EXT: &str = "^{}\\[~]|€\u{0c}";

/// Length in septets when `s` is all GSM-7, else `None`.
pub fn gsm7_len(s: &str) -> Option<usize> {
    s.chars().try_fold(0usize, |n, c| {
        if GSM_BASIC.contains(c) {
            Some(n + 1)
        } else if GSM_EXT.contains(c) {
            Some(n + 2)
        } else {
            None
        }
    })
}

/// Whether `s` fits one SMS segment.
pub fn fits_one_segment(s: &str) -> bool {
    match gsm7_len(s) {
        Some(n) => n <= 160,
        None => s.encode_utf16().count() <= 70,
    }
}

/// The one-segment text for `n`.
pub fn text(n: &Notification) -> String {
    let mut parts: Vec<String> = Vec::new();
    let prefix = match n.event {
        Event::Test => "TEST ",
        Event::Repeat => "REPEAT ",
        Event::Escalate => "ESCALATED ",
        Event::Scope => "SCOPE ",
        Event::Worse => "WORSE ",
        _ => "",
    };
    match n.items.as_slice() {
        [] => parts.push(format!("{prefix}{}", n.headline())),
        [one] => {
            parts.push(format!("{prefix}{} {}", n.change.label(), one.monitor));
            if n.change == Change::Recovered {
                parts.push(format!(
                    "after {}",
                    crate::message::fmt_duration(one.duration(n.at))
                ));
            } else if let Some(k) = &one.error_kind {
                parts.push(k.clone());
            }
            parts.push(format!("since {}", one.since.format("%H:%MZ %b %d")));
            match (&one.service, &one.capability) {
                (Some(s), Some(c)) => parts.push(format!("{s}/{c}")),
                (Some(s), None) => parts.push(s.clone()),
                (None, Some(c)) => parts.push(c.clone()),
                (None, None) => {}
            }
            parts.push(one.severity.as_str().to_string());
            parts.push(match &one.scope {
                portwarden_core::Scope::Global => "global".into(),
                portwarden_core::Scope::Regional(l) => format!("in {}", l.join(",")),
            });
            if let Some(o) = &one.owner {
                parts.push(format!("owner {o}"));
            }
            if let Some(u) = n.link() {
                parts.push(u.to_string());
            }
            parts.push(one.target.clone());
            if let Some(h) = &one.last_healthy {
                parts.push(format!("last ok {}", h.at.format("%H:%MZ")));
            }
        }
        items => {
            parts.push(format!(
                "{prefix}{} {}: {} monitors",
                n.change.label(),
                n.title,
                items.len()
            ));
            parts.push(n.severity().as_str().to_string());
            if let Some(u) = n.link() {
                parts.push(u.to_string());
            }
            let names: Vec<&str> = items.iter().map(|i| i.monitor.as_str()).collect();
            parts.push(names.join(","));
        }
    }
    let mut out = String::new();
    for p in parts {
        if out.is_empty() {
            out = cut_to_segment(&p);
            continue;
        }
        let candidate = format!("{out} {p}");
        if fits_one_segment(&candidate) {
            out = candidate;
        }
    }
    out
}

/// Cuts `s` to one segment, ending with `...` when cut.
fn cut_to_segment(s: &str) -> String {
    if fits_one_segment(s) {
        return s.to_string();
    }
    let chars: Vec<char> = s.chars().collect();
    let mut k = chars.len();
    while k > 0 {
        k -= 1;
        let c: String = chars[..k].iter().collect::<String>() + "...";
        if fits_one_segment(&c) {
            return c;
        }
    }
    String::new()
}

#[allow(clippy::large_enum_variant)] // one per channel, built once
enum Api {
    Twilio {
        url: Url,
        user: String,
        token: String,
        from: Option<String>,
        service: Option<String>,
    },
    Http {
        url: Url,
        method: Method,
        headers: Vec<String>,
        templates: Templates,
        content_type: String,
        from: Option<String>,
    },
}

pub struct Sms {
    client: reqwest::Client,
    api: Api,
    to: Vec<String>,
    timeout: Duration,
    secrets: Vec<String>,
    /// Recipients already served per idempotency key (so a retry after a partial failure does
    /// not text them twice). Bounded: cleared when it grows past `SERVED_MAX` keys.
    served: Mutex<HashMap<String, HashSet<String>>>,
}

const SERVED_MAX: usize = 10_000;

impl Sms {
    pub fn new(shared: &Shared, name: &str, spec: &SmsSpec) -> Result<Sms, String> {
        let mut secrets = Vec::new();
        let api = match spec.provider {
            SmsProvider::Twilio => {
                let sid = spec
                    .account_sid
                    .clone()
                    .ok_or_else(|| format!("receiver `{name}`: Twilio needs `account_sid`"))?;
                let token = spec
                    .auth_token
                    .as_ref()
                    .ok_or_else(|| format!("receiver `{name}`: Twilio needs `auth_token`"))?
                    .expose()
                    .to_string();
                secrets.push(token.clone());
                {
                    use base64::Engine;
                    let user = spec.api_key.clone().unwrap_or_else(|| sid.clone());
                    // The Authorization header as a receiver might echo it.
                    secrets.push(
                        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}")),
                    );
                }
                let base = spec
                    .url
                    .as_ref()
                    .map(|u| u.expose().to_string())
                    .unwrap_or_else(|| TWILIO_URL.into());
                let base = http::parse_url(name, "url", &base)?;
                secrets.extend(http::url_secrets(&base));
                let url = base
                    .join(&format!(
                        "/2010-04-01/Accounts/{}/Messages.json",
                        url_segment(&sid)
                    ))
                    .map_err(|e| format!("receiver `{name}`: cannot build the Twilio URL: {e}"))?;
                Api::Twilio {
                    url,
                    user: spec.api_key.clone().unwrap_or(sid),
                    token,
                    from: spec.from.clone(),
                    service: spec.messaging_service_sid.clone(),
                }
            }
            SmsProvider::Http => {
                let raw = spec.url.as_ref().ok_or_else(|| {
                    format!("receiver `{name}`: the http SMS provider needs `url`")
                })?;
                let url = http::parse_url(name, "url", raw.expose())?;
                secrets.extend(http::url_secrets(&url));
                let method = match spec
                    .method
                    .as_deref()
                    .map(str::to_ascii_uppercase)
                    .as_deref()
                {
                    None | Some("POST") => Method::POST,
                    Some("PUT") => Method::PUT,
                    Some(m) => {
                        return Err(format!(
                            "receiver `{name}`: method `{m}` is not POST or PUT"
                        ));
                    }
                };
                let body = spec.body_template.clone().ok_or_else(|| {
                    format!("receiver `{name}`: the http SMS provider needs `body_template`")
                })?;
                let mut sources = vec![("body".to_string(), body)];
                let mut headers = Vec::new();
                for (k, v) in &spec.headers {
                    reqwest::header::HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                        format!("receiver `{name}`: `{k}` is not a valid header name")
                    })?;
                    headers.push(k.clone());
                    sources.push((format!("h:{k}"), v.expose().to_string()));
                    secrets.push(v.expose().to_string());
                }
                Api::Http {
                    url,
                    method,
                    headers,
                    templates: Templates::new(sources)
                        .map_err(|e| format!("receiver `{name}`: {e}"))?,
                    content_type: spec
                        .content_type
                        .clone()
                        .unwrap_or_else(|| "application/json".into()),
                    from: spec.from.clone(),
                }
            }
        };
        if spec.to.is_empty() {
            return Err(format!("receiver `{name}`: `to` lists no recipient"));
        }
        Ok(Sms {
            client: shared.http.clone(),
            api,
            to: spec.to.clone(),
            timeout: spec.timeout.unwrap_or(DEFAULT_TIMEOUT),
            secrets,
            served: Mutex::new(HashMap::new()),
        })
    }

    fn url(&self) -> &Url {
        match &self.api {
            Api::Twilio { url, .. } | Api::Http { url, .. } => url,
        }
    }

    async fn send_one(
        &self,
        n: &Notification,
        to: &str,
        text: &str,
    ) -> Result<Delivered, SendError> {
        let key = format!("{}:{to}", n.idempotency_key);
        let host = http::host_of(self.url());
        match &self.api {
            Api::Twilio {
                url,
                user,
                token,
                from,
                service,
            } => {
                let form = {
                    let mut f = url::form_urlencoded::Serializer::new(String::new());
                    f.append_pair("To", to);
                    if let Some(s) = service {
                        f.append_pair("MessagingServiceSid", s);
                    } else if let Some(from) = from {
                        f.append_pair("From", from);
                    }
                    f.append_pair("Body", text);
                    f.finish()
                };
                let a = http::send(
                    &self.client,
                    Request {
                        kind: "sms",
                        method: Method::POST,
                        url,
                        headers: Default::default(),
                        body: form.into_bytes(),
                        content_type: "application/x-www-form-urlencoded",
                        idempotency_key: &key,
                        timeout: self.timeout,
                        basic_auth: Some((user, token)),
                        secrets: &self.secrets,
                    },
                )
                .await?;
                let sid = serde_json::from_str::<Value>(&a.body)
                    .ok()
                    .and_then(|v| v["sid"].as_str().map(|s| format!("message {s}")));
                Ok(http::delivered(&a, sid))
            }
            Api::Http {
                url,
                method,
                headers,
                templates,
                content_type,
                from,
            } => {
                let ctx = context(
                    n,
                    &[
                        ("to", minijinja::Value::from(to)),
                        ("from", minijinja::Value::from(from.clone())),
                        ("text", minijinja::Value::from(text)),
                    ],
                );
                let fail = |e: String| {
                    SendError::permanent(format!(
                        "sms to {host}: {}",
                        crate::outcome::scrub(&e, &self.secrets)
                    ))
                };
                let body = templates.render("body", &ctx).map_err(fail)?;
                let mut pairs = Vec::new();
                for h in headers {
                    pairs.push((
                        h.clone(),
                        templates.render(&format!("h:{h}"), &ctx).map_err(fail)?,
                    ));
                }
                let hm = http::header_map(&pairs).map_err(fail)?;
                let mut secrets = self.secrets.clone();
                secrets.extend(pairs.iter().map(|(_, v)| v.clone()));
                let a = http::send(
                    &self.client,
                    Request {
                        kind: "sms",
                        method: method.clone(),
                        url,
                        headers: hm,
                        body: body.into_bytes(),
                        content_type,
                        idempotency_key: &key,
                        timeout: self.timeout,
                        basic_auth: None,
                        secrets: &secrets,
                    },
                )
                .await?;
                Ok(http::delivered(&a, None))
            }
        }
    }
}

/// Percent-encodes one path segment.
fn url_segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[async_trait::async_trait]
impl Channel for Sms {
    fn kind(&self) -> &'static str {
        "sms"
    }

    fn destination(&self) -> String {
        http::host_of(self.url())
    }

    async fn send(&self, n: &Notification) -> Result<Delivered, SendError> {
        let text = text(n);
        let done: HashSet<String> = self
            .served
            .lock()
            .map(|m| m.get(&n.idempotency_key).cloned().unwrap_or_default())
            .unwrap_or_default();
        let mut last = None;
        for to in &self.to {
            if done.contains(to) {
                continue;
            }
            let d = self.send_one(n, to, &text).await?;
            if let Ok(mut m) = self.served.lock() {
                if m.len() >= SERVED_MAX {
                    m.clear();
                }
                m.entry(n.idempotency_key.clone())
                    .or_default()
                    .insert(to.clone());
            }
            last = Some(d);
        }
        Ok(last.unwrap_or(Delivered {
            status: None,
            latency: Duration::ZERO,
            detail: Some("every recipient was already served".into()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments() {
        assert_eq!(gsm7_len("abc"), Some(3));
        assert_eq!(gsm7_len("a€"), Some(3));
        assert_eq!(gsm7_len("a✓"), None);
        assert!(fits_one_segment(&"a".repeat(160)));
        assert!(!fits_one_segment(&"a".repeat(161)));
        assert!(fits_one_segment(&"✓".repeat(70)));
        assert!(!fits_one_segment(&"✓".repeat(71)));
        assert!(!fits_one_segment(&"[".repeat(81)));
    }

    #[test]
    fn essentials_first_and_one_segment() {
        let n = Notification::sample(chrono::Utc::now());
        let t = text(&n);
        assert!(fits_one_segment(&t), "{t}");
        assert!(
            t.starts_with("TEST DOWN orders-db-primary refused since "),
            "{t}"
        );
        assert!(
            t.contains("orders-db/checkout high in eu-west owner team-payments"),
            "{t}"
        );
        let mut long = n.clone();
        long.items[0].monitor = "m".repeat(300);
        let t = text(&long);
        assert!(fits_one_segment(&t) && t.ends_with("..."), "{t}");
        let mut uni = n;
        uni.items[0].monitor = "база-данных".into();
        let t = text(&uni);
        assert!(
            fits_one_segment(&t) && t.encode_utf16().count() <= 70,
            "{t}"
        );
        assert!(t.contains("база-данных"), "{t}");
    }
}
