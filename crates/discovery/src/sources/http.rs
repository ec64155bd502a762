//! `http`: Prometheus `http_sd` — a GET returning JSON groups, every refresh. The auth header
//! values are secrets (`${env:...}`, `${file:...}`) and never printed. Anything but a 200 with
//! valid JSON is a failed refresh: the last good set stays.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use portwarden_config::Diagnostic;
use portwarden_config::node::Node;
use portwarden_core::Secret;
use portwarden_core::duration::serde_human::option as opt_dur;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;

use super::{Poll, Snapshot, SourceCx};
use crate::sd;

const DEFAULT_MAX_BODY: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSource {
    /// `http://` or `https://` URL answering Prometheus `http_sd` JSON.
    pub url: String,
    /// Sent as `Authorization: Bearer <token>`.
    #[serde(default)]
    pub bearer_token: Option<Secret>,
    /// Extra request headers (values are secrets: `X-Api-Key: ${env:CMDB_KEY}`).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Whole-request timeout (default 10s).
    #[serde(default, with = "opt_dur")]
    pub timeout: Option<Duration>,
    /// Extra CA certificates (PEM) trusted besides the system roots.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Largest response body accepted (default 64 MiB).
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
}

impl HttpSource {
    pub fn check(&self, node: &Node) -> Vec<Diagnostic> {
        let mut d = Vec::new();
        match reqwest::Url::parse(&self.url) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
            Ok(u) => d.push(
                Diagnostic::error(
                    node.loc_of("url"),
                    format!("`url` scheme `{}` is not http or https", u.scheme()),
                )
                .hint("write `https://host/path`"),
            ),
            Err(e) => d.push(
                Diagnostic::error(node.loc_of("url"), format!("`url` is not a URL: {e}"))
                    .hint("write `https://host/path`"),
            ),
        }
        for name in self.headers.keys() {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                d.push(
                    Diagnostic::error(
                        node.loc_of(&format!("headers.{name}")),
                        format!("`{name}` is not a valid header name"),
                    )
                    .hint("header names are letters, digits and `-`"),
                );
            }
        }
        if self.max_body_bytes == Some(0) {
            d.push(
                Diagnostic::error(
                    node.loc_of("max_body_bytes"),
                    "`max_body_bytes` must be above 0",
                )
                .hint("omit it for 64 MiB"),
            );
        }
        d
    }
}

pub struct Runner {
    spec: HttpSource,
    client: reqwest::Client,
    refresh: Duration,
}

fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("ca_file: cannot read `{}`: {e}", path.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("ca_file: `{}` is not valid PEM: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "ca_file: `{}` holds no certificate",
                path.display()
            ));
        }
        roots.add_parsable_certificates(certs);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl Runner {
    pub fn new(spec: HttpSource, cx: &SourceCx) -> Result<Runner, String> {
        let ca = spec.ca_file.as_deref().map(|p| cx.path(p));
        let tls = tls_config(ca.as_deref())?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(spec.timeout.unwrap_or(Duration::from_secs(10)))
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("portwarden/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Runner {
            spec,
            client,
            refresh: cx.refresh,
        })
    }
}

/// Why a request failed, without the URL's query (it may carry a token).
fn describe(e: reqwest::Error) -> String {
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

#[async_trait::async_trait]
impl Poll for Runner {
    async fn fetch(&mut self) -> Result<Snapshot, String> {
        let shown = redact_url(&self.spec.url);
        let mut req = self
            .client
            .get(&self.spec.url)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(
                "X-Prometheus-Refresh-Interval-Seconds",
                self.refresh.as_secs().max(1).to_string(),
            );
        if let Some(t) = &self.spec.bearer_token {
            req = req.header(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {}", t.expose()),
            );
        }
        for (k, v) in &self.spec.headers {
            req = req.header(k.as_str(), v.expose());
        }
        let mut resp = req
            .send()
            .await
            .map_err(|e| format!("GET {shown}: {}", describe(e)))?;
        let status = resp.status();
        if status != reqwest::StatusCode::OK {
            return Err(format!(
                "GET {shown}: HTTP {status}; http_sd needs 200 with a JSON list{}",
                if status == reqwest::StatusCode::UNAUTHORIZED
                    || status == reqwest::StatusCode::FORBIDDEN
                {
                    " (check `bearer_token` / `headers`)"
                } else {
                    ""
                }
            ));
        }
        let limit = self.spec.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY);
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(format!(
                "GET {shown}: body of {} bytes is above `max_body_bytes` ({limit})",
                resp.content_length().unwrap_or(0)
            ));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("GET {shown}: reading the body: {}", describe(e)))?
        {
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(format!(
                    "GET {shown}: body is above `max_body_bytes` ({limit})"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        let targets = sd::parse_json(&body).map_err(|e| format!("GET {shown}: {e}"))?;
        Ok(Snapshot {
            targets,
            problems: Vec::new(),
        })
    }
}

/// The URL without its query string and user info (they may carry credentials).
pub fn redact_url(u: &str) -> String {
    match reqwest::Url::parse(u) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            if url.query().is_some() {
                url.set_query(Some("***"));
            }
            url.to_string()
        }
        Err(_) => "<invalid url>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts() {
        assert_eq!(
            redact_url("https://u:p@cmdb/sd?token=x"),
            "https://cmdb/sd?***"
        );
        assert_eq!(redact_url("http://h:8080/sd"), "http://h:8080/sd");
    }
}
