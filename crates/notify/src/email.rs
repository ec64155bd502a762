//! `type: email` — SMTP through lettre, with STARTTLS (required, not opportunistic) or implicit
//! TLS (rustls with ring; the system's roots plus an optional `ca_file`), optional AUTH, and a
//! multipart/alternative message: plain text and HTML carrying the same fields.
//!
//! The Message-ID is derived from the idempotency key (`<pw-42-trigger@portwarden>`), so a
//! retried message is recognisable as the same message; the key is also in
//! `X-Portwarden-Idempotency-Key`. SMTP 4xx replies and connection failures are retryable,
//! 5xx replies are not.

use std::time::{Duration, Instant};

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use portwarden_config::receivers::{EmailSpec, SmtpTls};

use crate::outcome::{scrub, snippet};
use crate::render::{self, DETAILED};
use crate::{Channel, Delivered, Notification, SendError};

pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    prefix: String,
    server: String,
    secrets: Vec<String>,
}

impl Email {
    pub fn new(name: &str, spec: &EmailSpec) -> Result<Email, String> {
        let bad = |what: &str, e: &dyn std::fmt::Display| format!("receiver `{name}`: {what}: {e}");
        let from: Mailbox = spec
            .from
            .parse()
            .map_err(|e| bad(&format!("`from` address `{}`", spec.from), &e))?;
        let to = spec
            .to
            .iter()
            .map(|t| {
                t.parse::<Mailbox>()
                    .map_err(|e| bad(&format!("`to` address `{t}`"), &e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let port = spec.port.unwrap_or(spec.tls.default_port());
        let timeout = spec.timeout.unwrap_or(Duration::from_secs(30));
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(spec.host.as_str())
            .port(port)
            .timeout(Some(timeout));
        if spec.tls != SmtpTls::None {
            let mut tb = TlsParameters::builder(spec.host.clone());
            if let Some(path) = &spec.ca_file {
                let pem = std::fs::read(path)
                    .map_err(|e| bad(&format!("cannot read `ca_file` `{}`", path.display()), &e))?;
                let cert = Certificate::from_pem(&pem).map_err(|e| {
                    bad(
                        &format!("`ca_file` `{}` is not a PEM certificate", path.display()),
                        &e,
                    )
                })?;
                tb = tb.add_root_certificate(cert);
            }
            let params = tb
                .build_rustls()
                .map_err(|e| bad("cannot set up TLS", &e))?;
            b = b.tls(match spec.tls {
                SmtpTls::Implicit => Tls::Wrapper(params),
                _ => Tls::Required(params),
            });
        } else {
            b = b.tls(Tls::None);
        }
        let mut secrets = Vec::new();
        if let (Some(u), Some(p)) = (&spec.username, &spec.password) {
            b = b.credentials(Credentials::new(u.clone(), p.expose().to_string()));
            secrets.push(p.expose().to_string());
        }
        Ok(Email {
            transport: b.build(),
            from,
            to,
            prefix: spec
                .subject_prefix
                .clone()
                .unwrap_or_else(|| "[portwarden]".into()),
            server: format!("{}:{port}", spec.host),
            secrets,
        })
    }

    /// The message for `n`.
    pub fn message(&self, n: &Notification) -> Result<Message, String> {
        let subject = render::cut(&format!("{} {}", self.prefix, n.headline()), 250);
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .message_id(Some(format!(
                "<{}@portwarden>",
                sanitize_id(&n.idempotency_key)
            )))
            .user_agent(concat!("portwarden/", env!("CARGO_PKG_VERSION")).to_string())
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("X-Portwarden-Idempotency-Key"),
                n.idempotency_key.clone(),
            ));
        for t in &self.to {
            b = b.to(t.clone());
        }
        b.multipart(MultiPart::alternative_plain_html(
            text_body(n),
            html_body(n),
        ))
        .map_err(|e| e.to_string())
    }
}

/// Keeps the characters a Message-ID's left part may hold.
fn sanitize_id(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-._+=".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The plain-text part.
pub fn text_body(n: &Notification) -> String {
    let mut s = format!("{}\n{}\n", n.headline(), render::context_line(n));
    let (detailed, rest) = render::split(n, DETAILED);
    for item in detailed {
        s.push('\n');
        for (k, v) in item.facts(n.at) {
            s.push_str(&format!("{k}: {v}\n"));
        }
    }
    if !rest.is_empty() {
        s.push_str(&format!("\nand {} more:\n", rest.len()));
        for i in rest {
            s.push_str(&format!("- {}\n", render::compact(i)));
        }
    }
    let links = render::links(n);
    if !links.is_empty() {
        s.push('\n');
        for (k, u) in links {
            s.push_str(&format!("{k}: {u}\n"));
        }
    }
    s.push_str("\n-- \nPortwarden\n");
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn linkify(v: &str) -> String {
    if v.starts_with("https://") || v.starts_with("http://") {
        format!("<a href=\"{0}\">{0}</a>", esc(v))
    } else {
        esc(v)
    }
}

/// The HTML part.
pub fn html_body(n: &Notification) -> String {
    let color = format!("#{:06x}", n.change.color());
    let mut s = format!(
        "<!DOCTYPE html><html><body style=\"font-family:sans-serif\">\
         <h2 style=\"color:{color}\">{}</h2><p style=\"color:#555\">{}</p>",
        esc(&n.headline()),
        esc(&render::context_line(n))
    );
    let (detailed, rest) = render::split(n, DETAILED);
    for item in detailed {
        s.push_str("<table style=\"border-collapse:collapse;margin-bottom:1em\">");
        for (k, v) in item.facts(n.at) {
            s.push_str(&format!(
                "<tr><th style=\"text-align:left;padding:2px 12px 2px 0\">{}</th><td>{}</td></tr>",
                esc(k),
                linkify(&v)
            ));
        }
        s.push_str("</table>");
    }
    if !rest.is_empty() {
        s.push_str(&format!("<p>and {} more:</p><ul>", rest.len()));
        for i in rest {
            s.push_str(&format!("<li>{}</li>", esc(&render::compact(i))));
        }
        s.push_str("</ul>");
    }
    let links = render::links(n);
    if !links.is_empty() {
        s.push_str("<p>");
        let parts: Vec<String> = links
            .iter()
            .map(|(k, u)| format!("<a href=\"{}\">{}</a>", esc(u), esc(k)))
            .collect();
        s.push_str(&parts.join(" · "));
        s.push_str("</p>");
    }
    s.push_str("</body></html>");
    s
}

#[async_trait::async_trait]
impl Channel for Email {
    fn kind(&self) -> &'static str {
        "email"
    }

    fn destination(&self) -> String {
        self.server.clone()
    }

    async fn send(&self, n: &Notification) -> Result<Delivered, SendError> {
        let msg = self.message(n).map_err(|e| {
            SendError::permanent(format!(
                "email via {}: cannot build the message: {e}",
                self.server
            ))
        })?;
        let started = Instant::now();
        match self.transport.send(msg).await {
            Ok(resp) => {
                let detail = snippet(&resp.message().collect::<Vec<_>>().join(" "), 200);
                Ok(Delivered {
                    status: Some(u16::from(resp.code())),
                    latency: started.elapsed(),
                    detail: (!detail.is_empty()).then(|| scrub(&detail, &self.secrets)),
                })
            }
            Err(e) => {
                let latency = started.elapsed();
                let mut text = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(inner) = src {
                    let t = inner.to_string();
                    if !text.contains(&t) {
                        text.push_str(": ");
                        text.push_str(&t);
                    }
                    src = inner.source();
                }
                let text = snippet(&scrub(&text, &self.secrets), 300);
                let msg = format!("email via {}: {text}", self.server);
                tracing::debug!(channel = "email", server = %self.server, error = %text, "notification failed");
                let err = if e.is_permanent() || e.is_client() {
                    SendError::permanent(msg)
                } else {
                    SendError::retryable(msg)
                };
                let err = match e.status() {
                    Some(c) => err.with_status(u16::from(c)),
                    None => err,
                };
                Err(err.with_latency(latency))
            }
        }
    }
}
