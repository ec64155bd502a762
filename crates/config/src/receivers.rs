//! `receivers:` — where notifications go. A map from a receiver's name to its channel:
//!
//! ```yaml
//! receivers:
//!   ops-slack:
//!     type: slack
//!     url: ${env:SLACK_WEBHOOK_URL}
//!   pager:
//!     type: pagerduty
//!     routing_key: ${env:PD_ROUTING_KEY}
//! ```
//!
//! Anything that can carry a credential (webhook URLs hold tokens, routing keys, passwords,
//! header values) is a [`Secret`]: written `${env:NAME}` or `${file:/path}` and never printed.
//! `portwarden-notify` turns these specs into channels; this module only checks their shape.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use portwarden_core::duration::serde_human::option as opt_dur;
use portwarden_core::{Secret, Severity};
use serde::Deserialize;

use crate::Diagnostic;
use crate::de::{Sink, from_node};
use crate::node::{Node, NodeKind};

/// One receiver from config.
#[derive(Debug, Clone, PartialEq)]
pub struct Receiver {
    pub name: String,
    pub spec: ReceiverSpec,
    /// `file:line`, for messages.
    pub defined_at: String,
}

/// A receiver's channel and its settings (`type:` selects the variant).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiverSpec {
    Slack(SlackSpec),
    Discord(DiscordSpec),
    Teams(TeamsSpec),
    Pagerduty(PagerDutySpec),
    Webhook(WebhookSpec),
    Email(EmailSpec),
    Sms(SmsSpec),
}

impl ReceiverSpec {
    /// The `type:` as written.
    pub fn kind(&self) -> &'static str {
        match self {
            ReceiverSpec::Slack(_) => "slack",
            ReceiverSpec::Discord(_) => "discord",
            ReceiverSpec::Teams(_) => "teams",
            ReceiverSpec::Pagerduty(_) => "pagerduty",
            ReceiverSpec::Webhook(_) => "webhook",
            ReceiverSpec::Email(_) => "email",
            ReceiverSpec::Sms(_) => "sms",
        }
    }

    /// The per-request timeout (HTTP request, or the whole SMTP conversation).
    pub fn timeout(&self) -> Option<Duration> {
        match self {
            ReceiverSpec::Slack(s) => s.timeout,
            ReceiverSpec::Discord(s) => s.timeout,
            ReceiverSpec::Teams(s) => s.timeout,
            ReceiverSpec::Pagerduty(s) => s.timeout,
            ReceiverSpec::Webhook(s) => s.timeout,
            ReceiverSpec::Email(s) => s.timeout,
            ReceiverSpec::Sms(s) => s.timeout,
        }
    }
}

/// `type: slack` — a Slack incoming webhook; the message is Block Kit.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackSpec {
    /// The incoming-webhook URL (`https://hooks.slack.com/services/...`; it is the credential).
    pub url: Secret,
    #[serde(default, with = "opt_dur")]
    pub timeout: Option<Duration>,
}

/// `type: discord` — a Discord channel webhook; the message is an embed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordSpec {
    /// `https://discord.com/api/webhooks/ID/TOKEN`.
    pub url: Secret,
    /// Overrides the webhook's display name.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default, with = "opt_dur")]
    pub timeout: Option<Duration>,
}

/// `type: teams` — a Microsoft Teams Workflows ("When a Teams webhook request is received")
/// or legacy incoming webhook; the message is an Adaptive Card.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamsSpec {
    pub url: Secret,
    #[serde(default, with = "opt_dur")]
    pub timeout: Option<Duration>,
}

/// `type: pagerduty` — PagerDuty Events API v2.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutySpec {
    /// The integration (routing) key of the service's Events API v2 integration.
    pub routing_key: Secret,
    /// Default `https://events.pagerduty.com/v2/enqueue` (EU accounts:
    /// `https://events.eu.pagerduty.com/v2/enqueue`).
    #[serde(default)]
    pub url: Option<String>,
    /// Portwarden severity → PagerDuty severity (`critical`, `error`, `warning`, `info`).
    /// Default: critical→critical, high→error, medium→warning, low→warning, info→info.
    #[serde(default)]
    pub severity: BTreeMap<Severity, PdSeverity>,
    /// `payload.source` (default: the target of the first monitor).
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default, with = "opt_dur")]
    pub timeout: Option<Duration>,
}

/// PagerDuty's four severities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PdSeverity {
    Critical,
    Error,
    Warning,
    Info,
}

impl PdSeverity {
    pub fn as_str(self) -> &'static str {
        match self {
            PdSeverity::Critical => "critical",
            PdSeverity::Error => "error",
            PdSeverity::Warning => "warning",
            PdSeverity::Info => "info",
        }
    }

    /// The default mapping from Portwarden's severities.
    pub fn default_for(s: Severity) -> PdSeverity {
        match s {
            Severity::Critical => PdSeverity::Critical,
            Severity::High => PdSeverity::Error,
            Severity::Medium | Severity::Low => PdSeverity::Warning,
            Severity::Info => PdSeverity::Info,
        }
    }
}

/// `type: webhook` — a JSON POST to any URL, signed per Standard Webhooks when `secret` is set.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    pub url: Secret,
    /// `POST` (default), `PUT` or `PATCH`.
    #[serde(default)]
    pub method: Option<String>,
    /// Extra headers; values are minijinja templates over the notification and may hold
    /// credentials (`Authorization: Bearer ${env:TOKEN}`).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// A minijinja template for the body (default: the notification as JSON).
    #[serde(default)]
    pub body_template: Option<String>,
    /// `Content-Type` of a templated body (default `application/json`).
    #[serde(default)]
    pub content_type: Option<String>,
    /// Standard Webhooks signing secret: `whsec_` followed by base64 (24-64 random bytes).
    #[serde(default)]
    pub secret: Option<Secret>,
    #[serde(default, with = "opt_dur")]
    pub timeout: Option<Duration>,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which is required (port 587). The default.
    #[default]
    Starttls,
    /// TLS from the first byte ("SMTPS", port 465).
    Implicit,
    /// No TLS at all (a relay on localhost only). Credentials are then refused.
    None,
}

impl SmtpTls {
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::Starttls => 587,
            SmtpTls::Implicit => 465,
            SmtpTls::None => 25,
        }
    }
}

/// `type: email` — SMTP with STARTTLS or implicit TLS; multipart text + HTML.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSpec {
    /// The SMTP server's host name (also the name its certificate must carry).
    pub host: String,
    /// Default by `tls`: 587, 465 or 25.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: SmtpTls,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    /// `Portwarden <alerts@example.com>`.
    pub from: String,
    pub to: Vec<String>,
    /// Extra PEM CA certificates to trust (an internal relay's CA), besides the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Prefix of the subject line (default `[portwarden]`).
    #[serde(default)]
    pub subject_prefix: Option<String>,
    #[serde(default, with = "opt_dur")]
    pub timeout: Option<Duration>,
}

/// Which SMS API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmsProvider {
    /// Twilio's Messages API (and compatible ones): form POST with basic auth.
    #[default]
    Twilio,
    /// Any HTTP API: URL, method, headers and a body template.
    Http,
}

/// `type: sms` — one text message per recipient, cut to one segment.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsSpec {
    #[serde(default)]
    pub provider: SmsProvider,
    /// Recipients in E.164 form (`+15551234567`).
    pub to: Vec<String>,
    /// Sender number or alphanumeric sender id (Twilio: required unless
    /// `messaging_service_sid`).
    #[serde(default)]
    pub from: Option<String>,
    /// Twilio: the account SID (`AC...`), also the basic-auth user unless `api_key` is set.
    #[serde(default)]
    pub account_sid: Option<String>,
    /// Twilio: basic-auth password (the auth token, or the API key's secret).
    #[serde(default)]
    pub auth_token: Option<Secret>,
    /// Twilio: an API key SID (`SK...`) used as basic-auth user instead of the account SID.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Twilio: send through a messaging service (`MG...`) instead of `from`.
    #[serde(default)]
    pub messaging_service_sid: Option<String>,
    /// Twilio: API base (default `https://api.twilio.com`). Http: the full URL (a secret, it
    /// may carry a key).
    #[serde(default)]
    pub url: Option<Secret>,
    /// Http: `POST` (default) or `PUT`.
    #[serde(default)]
    pub method: Option<String>,
    /// Http: headers (templates; values may hold credentials).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Http: body template; sees `to`, `from` and `text` besides the notification.
    #[serde(default)]
    pub body_template: Option<String>,
    /// Http: content type of the body (default `application/json`).
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default, with = "opt_dur")]
    pub timeout: Option<Duration>,
}

const NAME_HINT: &str = "use letters, digits, `-`, `_` or `.`, e.g. `ops-slack`";

fn is_http_url(s: &str) -> bool {
    let l = s.to_ascii_lowercase();
    (l.starts_with("https://") || l.starts_with("http://")) && s.len() > 8
}

/// Resolves `receivers:`.
pub(crate) fn resolve_receivers(
    n: &Node,
    file: &str,
    sink: &Sink,
    diags: &mut Vec<Diagnostic>,
) -> Option<BTreeMap<String, Receiver>> {
    let NodeKind::Map(entries) = &n.kind else {
        diags.push(
            Diagnostic::error(
                n.loc,
                format!("`receivers` must be a mapping, found {}", n.describe()),
            )
            .hint("write `receivers:` then one `name: {type: slack, url: ...}` per receiver"),
        );
        return None;
    };
    let before = diags.len();
    let mut out = BTreeMap::new();
    for (k, v) in entries {
        let Some(name) = k.as_str() else {
            diags
                .push(Diagnostic::error(k.loc, "a receiver name must be a string").hint(NAME_HINT));
            continue;
        };
        if name.is_empty()
            || name.len() > 100
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            diags.push(
                Diagnostic::error(k.loc, format!("receiver name `{name}` is not allowed"))
                    .hint(NAME_HINT),
            );
            continue;
        }
        let spec: ReceiverSpec = match from_node(v, sink) {
            Ok(s) => s,
            Err(e) => {
                diags.push(e.into_diagnostic());
                continue;
            }
        };
        check_spec(name, &spec, v, diags);
        out.insert(
            name.to_string(),
            Receiver {
                name: name.to_string(),
                spec,
                defined_at: format!("{file}:{}", k.loc.line),
            },
        );
    }
    (diags.len() == before).then_some(out)
}

fn check_spec(name: &str, spec: &ReceiverSpec, n: &Node, diags: &mut Vec<Diagnostic>) {
    let mut err = |field: &str, msg: String, hint: &str| {
        diags.push(
            Diagnostic::error(n.loc_of(field), format!("receiver `{name}`: {msg}")).hint(hint),
        );
    };
    let url_hint = "write the full URL, `https://...` (or `${env:NAME}` holding it)";
    if let Some(t) = spec.timeout()
        && t.is_zero()
    {
        err(
            "timeout",
            "`timeout` must be above zero".into(),
            "10s suits most APIs",
        );
    }
    match spec {
        ReceiverSpec::Slack(SlackSpec { url, .. })
        | ReceiverSpec::Discord(DiscordSpec { url, .. })
        | ReceiverSpec::Teams(TeamsSpec { url, .. }) => {
            if !is_http_url(url.expose()) {
                err("url", "`url` is not an http(s) URL".into(), url_hint);
            }
        }
        ReceiverSpec::Webhook(w) => {
            if !is_http_url(w.url.expose()) {
                err("url", "`url` is not an http(s) URL".into(), url_hint);
            }
            if let Some(m) = &w.method
                && !matches!(m.to_ascii_uppercase().as_str(), "POST" | "PUT" | "PATCH")
            {
                err(
                    "method",
                    format!("method `{m}` is not POST, PUT or PATCH"),
                    "omit it for POST",
                );
            }
            if let Some(s) = &w.secret
                && !s.expose().starts_with("whsec_")
            {
                err(
                    "secret",
                    "`secret` must start with `whsec_` (Standard Webhooks)".into(),
                    "write `whsec_` followed by base64 of 24-64 random bytes, e.g. from `openssl rand -base64 32`",
                );
            }
        }
        ReceiverSpec::Pagerduty(p) => {
            if p.routing_key.is_empty() {
                err(
                    "routing_key",
                    "`routing_key` is empty".into(),
                    "copy the Integration Key of the service's Events API v2 integration",
                );
            }
            if let Some(u) = &p.url
                && !is_http_url(u)
            {
                err("url", "`url` is not an http(s) URL".into(), url_hint);
            }
        }
        ReceiverSpec::Email(e) => {
            if e.host.trim().is_empty() {
                err(
                    "host",
                    "`host` is empty".into(),
                    "the SMTP server, e.g. `smtp.example.com`",
                );
            }
            if e.to.is_empty() {
                err(
                    "to",
                    "`to` lists no recipient".into(),
                    "add at least one address",
                );
            }
            if e.tls == SmtpTls::None && e.password.is_some() {
                err(
                    "tls",
                    "refusing to send an SMTP password without TLS".into(),
                    "use `tls: starttls` or `tls: implicit`",
                );
            }
            if e.password.is_some() != e.username.is_some() {
                err(
                    if e.username.is_some() {
                        "username"
                    } else {
                        "password"
                    },
                    "`username` and `password` go together".into(),
                    "give both for SMTP AUTH, or neither",
                );
            }
            if let Some(p) = &e.ca_file
                && let Err(x) = std::fs::metadata(p)
            {
                err(
                    "ca_file",
                    format!("cannot read `{}`: {x}", p.display()),
                    "give the path of a PEM file readable by Portwarden",
                );
            }
        }
        ReceiverSpec::Sms(s) => {
            if s.to.is_empty() {
                err(
                    "to",
                    "`to` lists no recipient".into(),
                    "add at least one number in E.164 form, e.g. `+15551234567`",
                );
            }
            if let Some(u) = &s.url
                && !is_http_url(u.expose())
            {
                err("url", "`url` is not an http(s) URL".into(), url_hint);
            }
            match s.provider {
                SmsProvider::Twilio => {
                    if s.account_sid.is_none() {
                        err(
                            "account_sid",
                            "Twilio needs `account_sid`".into(),
                            "copy the Account SID (`AC...`) from the Twilio console",
                        );
                    }
                    if s.auth_token.is_none() {
                        err(
                            "auth_token",
                            "Twilio needs `auth_token`".into(),
                            "write `auth_token: ${env:TWILIO_AUTH_TOKEN}`",
                        );
                    }
                    if s.from.is_none() && s.messaging_service_sid.is_none() {
                        err(
                            "from",
                            "Twilio needs `from` or `messaging_service_sid`".into(),
                            "give the sending number, e.g. `+15550006666`",
                        );
                    }
                }
                SmsProvider::Http => {
                    if s.url.is_none() {
                        err(
                            "url",
                            "the http SMS provider needs `url`".into(),
                            "the API endpoint that sends one message",
                        );
                    }
                    if s.body_template.is_none() {
                        err(
                            "body_template",
                            "the http SMS provider needs `body_template`".into(),
                            "e.g. `{\"to\": {{ to|tojson }}, \"text\": {{ text|tojson }}}`",
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::load_str;

    #[test]
    fn every_type_loads() {
        let text = r#"
receivers:
  s: {type: slack, url: "https://hooks.slack.com/services/T/B/x"}
  d: {type: discord, url: "https://discord.com/api/webhooks/1/t", username: pw}
  t: {type: teams, url: "https://example.com/workflows/x"}
  p: {type: pagerduty, routing_key: abc, severity: {high: critical}}
  w:
    type: webhook
    url: "http://127.0.0.1:1/hook"
    headers: {X-A: b}
    secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
    timeout: 3s
  e: {type: email, host: smtp.example.com, from: a@example.com, to: [b@example.com], username: u, password: p}
  m: {type: sms, account_sid: AC1, auth_token: t, from: "+15550001111", to: ["+15550002222"]}
"#;
        let c = load_str(text, "r.yaml").unwrap().config;
        let kinds: Vec<&str> = c.receivers.values().map(|r| r.spec.kind()).collect();
        assert_eq!(
            kinds,
            [
                "discord",
                "email",
                "sms",
                "pagerduty",
                "slack",
                "teams",
                "webhook"
            ]
        );
        assert_eq!(c.receivers["w"].defined_at, "r.yaml:7");
        // Secrets never print.
        let dbg = format!("{:?}", c.receivers);
        assert!(
            !dbg.contains("hooks.slack.com") && !dbg.contains("MfKQ9r8"),
            "{dbg}"
        );
    }

    #[test]
    fn errors_are_located() {
        let e = load_str("receivers:\n  a:\n    type: slak\n    url: x\n", "r.yaml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("r.yaml:3:") && e.contains("did you mean `slack`"),
            "{e}"
        );
        let e = load_str(
            "receivers:\n  a:\n    type: slack\n    url: ftp://x\n",
            "r.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("r.yaml:4:") && e.contains("not an http(s) URL"),
            "{e}"
        );
        let e = load_str(
            "receivers:\n  a:\n    type: email\n    host: h\n    from: a@b\n    to: []\n    tls: none\n    username: u\n    password: p\n",
            "r.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("r.yaml:6:") && e.contains("no recipient"), "{e}");
        assert!(e.contains("r.yaml:7:") && e.contains("without TLS"), "{e}");
        let e = load_str(
            "receivers:\n  a:\n    type: sms\n    to: [\"+1\"]\n",
            "r.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("account_sid") && e.contains("auth_token"), "{e}");
        let e = load_str(
            "receivers:\n  a:\n    type: webhook\n    url: http://h/x\n    secrt: 1\n",
            "r.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("r.yaml:5:") && e.contains("did you mean `secret`"),
            "{e}"
        );
        let e = load_str(
            "receivers:\n  a:\n    type: slack\n    url: ${env:PW_NOT_SET_NOTIFY_TEST}\n",
            "r.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("PW_NOT_SET_NOTIFY_TEST"), "{e}");
    }
}
