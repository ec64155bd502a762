//! `type: webhook` — the notification as JSON (or a minijinja template) to any URL, signed per
//! [Standard Webhooks](https://www.standardwebhooks.com/) when a `whsec_` secret is configured:
//!
//! ```text
//! webhook-id: <idempotency key>          (the same on every retry)
//! webhook-timestamp: <unix seconds>
//! webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>
//! ```
//!
//! where `key` is the base64-decoded part after `whsec_`. Receivers verify with the Standard
//! Webhooks libraries (`standardwebhooks` for Python, `standardwebhooks` for JavaScript, ...).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use portwarden_config::receivers::WebhookSpec;
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Method, Url};

use crate::http::{self, DEFAULT_TIMEOUT, Request};
use crate::template::{Templates, context};
use crate::{Channel, Delivered, Notification, SendError, Shared};

/// A rendered body and its templated headers.
pub type Rendered = (Vec<u8>, Vec<(String, String)>);

pub struct Webhook {
    client: reqwest::Client,
    url: Url,
    method: Method,
    /// Header names with their template names (`h:<name>`).
    headers: Vec<String>,
    templates: Templates,
    has_body_template: bool,
    content_type: String,
    key: Option<Vec<u8>>,
    timeout: Duration,
    secrets: Vec<String>,
}

/// Decodes a `whsec_...` secret into the HMAC key.
pub fn decode_secret(s: &str) -> Result<Vec<u8>, String> {
    let b = s
        .strip_prefix("whsec_")
        .ok_or("the signing secret must start with `whsec_`")?;
    let key = B64
        .decode(b.trim())
        .map_err(|_| "the part after `whsec_` is not valid base64".to_string())?;
    if key.len() < 16 {
        return Err("the signing secret is shorter than 16 bytes; use 24-64 random bytes".into());
    }
    Ok(key)
}

/// `v1,<base64 signature>` over `{id}.{timestamp}.{body}`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut ctx = ring::hmac::Context::with_key(&k);
    ctx.update(id.as_bytes());
    ctx.update(b".");
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("v1,{}", B64.encode(ctx.sign().as_ref()))
}

impl Webhook {
    pub fn new(shared: &Shared, name: &str, spec: &WebhookSpec) -> Result<Webhook, String> {
        let url = http::parse_url(name, "url", spec.url.expose())?;
        let method = match spec
            .method
            .as_deref()
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            None | Some("POST") => Method::POST,
            Some("PUT") => Method::PUT,
            Some("PATCH") => Method::PATCH,
            Some(m) => {
                return Err(format!(
                    "receiver `{name}`: method `{m}` is not POST, PUT or PATCH"
                ));
            }
        };
        let mut sources = Vec::new();
        let mut headers = Vec::new();
        let mut secrets = http::url_secrets(&url);
        for (k, v) in &spec.headers {
            HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("receiver `{name}`: `{k}` is not a valid header name"))?;
            headers.push(k.clone());
            sources.push((format!("h:{k}"), v.expose().to_string()));
            secrets.push(v.expose().to_string());
        }
        if let Some(b) = &spec.body_template {
            sources.push(("body".into(), b.clone()));
        }
        let templates = Templates::new(sources).map_err(|e| format!("receiver `{name}`: {e}"))?;
        let key = match &spec.secret {
            Some(s) => {
                secrets.push(s.expose().to_string());
                Some(decode_secret(s.expose()).map_err(|e| format!("receiver `{name}`: {e}"))?)
            }
            None => None,
        };
        Ok(Webhook {
            client: shared.http.clone(),
            url,
            method,
            headers,
            templates,
            has_body_template: spec.body_template.is_some(),
            content_type: spec
                .content_type
                .clone()
                .unwrap_or_else(|| "application/json".into()),
            key,
            timeout: spec.timeout.unwrap_or(DEFAULT_TIMEOUT),
            secrets,
        })
    }

    /// The body and headers for `n` (what [`send`](Channel::send) puts on the wire, minus the
    /// signature).
    pub fn render(&self, n: &Notification) -> Result<Rendered, SendError> {
        let ctx = context(n, &[]);
        let fail = |e: String| {
            SendError::permanent(format!(
                "webhook to {}: {}",
                http::host_of(&self.url),
                crate::outcome::scrub(&e, &self.secrets)
            ))
        };
        let body = if self.has_body_template {
            self.templates
                .render("body", &ctx)
                .map_err(fail)?
                .into_bytes()
        } else {
            serde_json::to_vec(n).map_err(|e| fail(e.to_string()))?
        };
        let mut headers = Vec::new();
        for h in &self.headers {
            let v = self
                .templates
                .render(&format!("h:{h}"), &ctx)
                .map_err(fail)?;
            headers.push((h.clone(), v));
        }
        Ok((body, headers))
    }
}

#[async_trait::async_trait]
impl Channel for Webhook {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn destination(&self) -> String {
        http::host_of(&self.url)
    }

    async fn send(&self, n: &Notification) -> Result<Delivered, SendError> {
        let (body, pairs) = self.render(n)?;
        // Rendered header values may hold credentials the templates assembled.
        let mut secrets = self.secrets.clone();
        secrets.extend(pairs.iter().map(|(_, v)| v.clone()));
        let mut headers = http::header_map(&pairs).map_err(|e| {
            SendError::permanent(format!("webhook to {}: {e}", http::host_of(&self.url)))
        })?;
        if let Some(key) = &self.key {
            let ts = chrono::Utc::now().timestamp();
            let sig = sign(key, &n.idempotency_key, ts, &body);
            let id = HeaderValue::from_str(&n.idempotency_key).map_err(|_| {
                SendError::permanent("webhook: the idempotency key is not a valid header value")
            })?;
            headers.insert(HeaderName::from_static("webhook-id"), id);
            headers.insert(
                HeaderName::from_static("webhook-timestamp"),
                HeaderValue::from(ts),
            );
            if let Ok(v) = HeaderValue::from_str(&sig) {
                headers.insert(HeaderName::from_static("webhook-signature"), v);
            }
        }
        let answer = http::send(
            &self.client,
            Request {
                kind: "webhook",
                method: self.method.clone(),
                url: &self.url,
                headers,
                body,
                content_type: &self.content_type,
                idempotency_key: &n.idempotency_key,
                timeout: self.timeout,
                basic_auth: None,
                secrets: &secrets,
            },
        )
        .await?;
        Ok(http::delivered(&answer, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_spec_example() {
        // The example from the Standard Webhooks specification's reference implementations.
        let key = decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(decode_secret("MfKQ9r8").is_err());
        assert!(decode_secret("whsec_!!").is_err());
    }
}
