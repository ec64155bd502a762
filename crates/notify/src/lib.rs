//! Portwarden's notification channels: Slack, Discord, Microsoft Teams, PagerDuty, webhooks,
//! e-mail and SMS.
//!
//! A [`Notification`] says what happened (an incident opened, resolved, ...; one [`AlertItem`]
//! per monitor). A [`Channel`] delivers it to one receiver and reports [`Delivered`] or a
//! [`SendError`] that says whether trying again makes sense and how long the receiver asked us to
//! wait. [`build`] turns the `receivers:` section of the config into channels. Retrying, the
//! outbox and routing live in the engine; this crate only speaks the receivers' protocols.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let loaded = portwarden_config::load_file("portwarden.yaml".as_ref())?;
//! let channels = portwarden_notify::build(&loaded.config.receivers)?;
//! let n = portwarden_notify::Notification::sample(chrono::Utc::now());
//! match channels["ops-slack"].send(&n).await {
//!     Ok(d) => println!("delivered: HTTP {:?} in {:?}", d.status, d.latency),
//!     Err(e) if e.retryable => println!("try again later: {e}"),
//!     Err(e) => println!("failed for good: {e}"),
//! }
//! # Ok(()) }
//! ```
//!
//! Secrets (webhook URLs, routing keys, passwords, tokens) are only exposed on the wire: error
//! messages and log lines name a URL's host and nothing more.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use portwarden_config::{Receiver, ReceiverSpec};

pub mod discord;
pub mod email;
pub mod http;
pub mod message;
pub mod outcome;
pub mod pagerduty;
pub mod render;
pub mod retry;
pub mod slack;
pub mod sms;
pub mod teams;
pub mod template;
pub mod webhook;

pub use message::{AlertItem, Change, Event, FindingFacts, Notification};
pub use outcome::{Delivered, SendError};
pub use retry::RetryPolicy;

/// One configured receiver, able to deliver notifications.
#[async_trait::async_trait]
pub trait Channel: Send + Sync {
    /// `slack`, `discord`, `teams`, `pagerduty`, `webhook`, `email` or `sms`.
    fn kind(&self) -> &'static str;

    /// Where it delivers, safe to show: a URL's host, the SMTP server. Never a secret.
    fn destination(&self) -> String {
        self.kind().to_string()
    }

    /// Delivers one notification (one attempt; the caller retries on retryable errors).
    async fn send(&self, n: &Notification) -> Result<Delivered, SendError>;
}

/// Receivers that could not be built, each message naming the receiver and where it is defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError {
    pub problems: Vec<String>,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problems.join("\n"))
    }
}

impl std::error::Error for BuildError {}

/// Shared by every channel built together.
#[derive(Clone)]
pub struct Shared {
    pub http: reqwest::Client,
}

impl Shared {
    pub fn new() -> Result<Shared, String> {
        Ok(Shared {
            http: http::client()?,
        })
    }
}

/// Builds a channel for every receiver, all HTTP channels sharing one client. Checks what the
/// config crate cannot: URLs parse, templates compile, e-mail addresses are valid.
pub fn build(
    receivers: &BTreeMap<String, Receiver>,
) -> Result<HashMap<String, Arc<dyn Channel>>, BuildError> {
    let shared = Shared::new().map_err(|e| BuildError { problems: vec![e] })?;
    let mut out = HashMap::new();
    let mut problems = Vec::new();
    for (name, r) in receivers {
        match build_one(&shared, r) {
            Ok(c) => {
                out.insert(name.clone(), c);
            }
            Err(e) => problems.push(format!("{}: {e}", r.defined_at)),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(BuildError { problems })
    }
}

/// Builds one receiver's channel.
pub fn build_one(shared: &Shared, r: &Receiver) -> Result<Arc<dyn Channel>, String> {
    Ok(match &r.spec {
        ReceiverSpec::Slack(s) => Arc::new(slack::Slack::new(shared, &r.name, s)?),
        ReceiverSpec::Discord(s) => Arc::new(discord::Discord::new(shared, &r.name, s)?),
        ReceiverSpec::Teams(s) => Arc::new(teams::Teams::new(shared, &r.name, s)?),
        ReceiverSpec::Pagerduty(s) => Arc::new(pagerduty::PagerDuty::new(shared, &r.name, s)?),
        ReceiverSpec::Webhook(s) => Arc::new(webhook::Webhook::new(shared, &r.name, s)?),
        ReceiverSpec::Email(s) => Arc::new(email::Email::new(&r.name, s)?),
        ReceiverSpec::Sms(s) => Arc::new(sms::Sms::new(shared, &r.name, s)?),
    })
}
