//! The web-facing sections: `auth:` (users, API tokens, sessions) and `status_page:` (the public
//! status page's components), plus `server.tls` / `server.metrics`.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use portwarden_core::Secret;
use portwarden_core::duration::serde_human::option as opt_dur;
use serde::Deserialize;

use crate::Diagnostic;
use crate::de::{Sink, from_node};
use crate::node::Node;

/// What a user or token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything, changes nothing.
    Viewer,
    /// Also runs checks now and acknowledges incidents.
    Editor,
    /// Also manages sessions.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        [Role::Viewer, Role::Editor, Role::Admin]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// Who may read `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsAccess {
    /// Anyone who reaches the listener (what Prometheus scrapers expect).
    #[default]
    Public,
    /// A valid API token (any role) or session.
    Token,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub name: String,
    /// An argon2 PHC string (`$argon2id$v=19$m=...`); `portwarden hash-password` makes one.
    pub password_hash: String,
    #[serde(default = "viewer")]
    pub role: Role,
}

fn viewer() -> Role {
    Role::Viewer
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    pub name: String,
    /// `${env:NAME}` or `${file:/path}`; at least 16 characters.
    pub secret: Secret,
    #[serde(default = "viewer")]
    pub role: Role,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    #[serde(default)]
    pub users: Vec<RawUser>,
    #[serde(default)]
    pub tokens: Vec<RawToken>,
    /// A session ends this long after login (default 12h).
    #[serde(default, with = "opt_dur")]
    pub session_ttl: Option<Duration>,
    /// ... or after this long without a request (default 2h).
    #[serde(default, with = "opt_dur")]
    pub session_idle: Option<Duration>,
    /// Failed logins allowed per client address and per user name within `login_window`
    /// (default 5).
    #[serde(default)]
    pub login_attempts: Option<u32>,
    #[serde(default, with = "opt_dur")]
    pub login_window: Option<Duration>,
    /// `public` (default) or `token`.
    #[serde(default)]
    pub metrics: Option<MetricsAccess>,
}

/// A user from config.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub name: String,
    pub password_hash: String,
    pub role: Role,
}

/// An API token from config.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub name: String,
    pub secret: Secret,
    pub role: Role,
}

/// `auth:` resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthSettings {
    pub users: Vec<User>,
    pub tokens: Vec<Token>,
    pub session_ttl: Duration,
    pub session_idle: Duration,
    pub login_attempts: u32,
    pub login_window: Duration,
    pub metrics: MetricsAccess,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            users: Vec::new(),
            tokens: Vec::new(),
            session_ttl: Duration::from_secs(12 * 3600),
            session_idle: Duration::from_secs(2 * 3600),
            login_attempts: 5,
            login_window: Duration::from_secs(15 * 60),
            metrics: MetricsAccess::Public,
        }
    }
}

/// `server.tls`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificate(s) that sign client certificates (mutual TLS). A client certificate
    /// that does not chain to them fails the handshake.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Who must present a client certificate (with `client_ca`): `agents` (default: the
    /// `/agent/v1/` routes; browsers and API clients need none), `all` (every connection,
    /// at the handshake) or `optional` (verified when presented, never required).
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// An agent's client certificate must name it: a DNS subject alternative name (or, in a
    /// certificate without DNS names, the subject CN) equal to the agent's name under
    /// `agents:`. A stolen token then needs the matching key too. Needs `client_ca` and
    /// `client_auth: agents` or `all`.
    #[serde(default)]
    pub bind_agent_names: bool,
}

/// `server.tls.client_auth`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    #[default]
    Agents,
    All,
    Optional,
}

/// What the public status page may show besides component names and states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expose {
    /// The error kind of incidents (`refused`, `timeout`...).
    ErrorKind,
    /// Incident messages (may contain host names and addresses!).
    Messages,
    /// Owners of the monitors.
    Owners,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawComponent {
    /// Public name.
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Monitors behind it; the component shows the worst of their states.
    pub monitors: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    pub name: String,
    pub components: Vec<RawComponent>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStatusPage {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// How long a rendered page is served from cache (default 30s).
    #[serde(default, with = "opt_dur")]
    pub cache: Option<Duration>,
    /// Past incidents shown (default 14 days).
    #[serde(default, with = "opt_dur")]
    pub history: Option<Duration>,
    #[serde(default)]
    pub expose: Vec<Expose>,
    #[serde(default)]
    pub groups: Vec<RawGroup>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    pub name: String,
    /// URL-safe id derived from the name (unique).
    pub slug: String,
    pub description: Option<String>,
    pub monitors: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ComponentGroup {
    pub name: String,
    pub components: Vec<Component>,
}

/// `status_page:` resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusPageSettings {
    pub title: String,
    pub description: Option<String>,
    pub cache: Duration,
    pub history: Duration,
    pub expose: Vec<Expose>,
    pub groups: Vec<ComponentGroup>,
}

impl Default for StatusPageSettings {
    fn default() -> Self {
        StatusPageSettings {
            title: "Service status".into(),
            description: None,
            cache: Duration::from_secs(30),
            history: Duration::from_secs(14 * 86_400),
            expose: Vec::new(),
            groups: Vec::new(),
        }
    }
}

impl StatusPageSettings {
    pub fn exposes(&self, e: Expose) -> bool {
        self.expose.contains(&e)
    }

    pub fn components(&self) -> impl Iterator<Item = &Component> {
        self.groups.iter().flat_map(|g| g.components.iter())
    }
}

/// Lower-case ASCII letters and digits, runs of anything else as one `-`.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    let mut dash = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c.to_ascii_lowercase());
        } else {
            dash = true;
        }
    }
    if out.is_empty() {
        out.push_str("component");
    }
    out
}

fn is_argon2_phc(s: &str) -> bool {
    ["$argon2id$", "$argon2i$", "$argon2d$"]
        .iter()
        .any(|p| s.starts_with(p))
        && s.split('$').count() >= 5
}

pub(crate) fn resolve_auth(
    n: &Node,
    sink: &Sink,
    diags: &mut Vec<Diagnostic>,
) -> Option<AuthSettings> {
    let raw: RawAuth = match from_node(n, sink) {
        Ok(r) => r,
        Err(e) => {
            diags.push(e.into_diagnostic());
            return None;
        }
    };
    let before = diags.len();
    let d = AuthSettings::default();
    let mut names = HashSet::new();
    for (i, u) in raw.users.iter().enumerate() {
        let at = |f: &str| n.loc_of(&format!("users[{i}].{f}"));
        if u.name.trim().is_empty() || u.name.len() > 64 || u.name.chars().any(char::is_control) {
            diags.push(
                Diagnostic::error(
                    at("name"),
                    "a user name must be 1-64 characters without control characters",
                )
                .hint("use a login such as `alice`"),
            );
        }
        if !names.insert(u.name.clone()) {
            diags.push(
                Diagnostic::error(at("name"), format!("duplicate user `{}`", u.name))
                    .hint("user names must be unique"),
            );
        }
        if !is_argon2_phc(&u.password_hash) {
            diags.push(
                Diagnostic::error(
                    at("password_hash"),
                    format!("user `{}`: `password_hash` is not an argon2 hash", u.name),
                )
                .hint("write the output of `portwarden hash-password` (it starts with `$argon2id$`); never a plain password"),
            );
        }
    }
    let mut tnames = HashSet::new();
    for (i, t) in raw.tokens.iter().enumerate() {
        let at = |f: &str| n.loc_of(&format!("tokens[{i}].{f}"));
        if !tnames.insert(t.name.clone()) {
            diags.push(
                Diagnostic::error(at("name"), format!("duplicate token `{}`", t.name))
                    .hint("token names must be unique"),
            );
        }
        if t.secret.expose().chars().count() < 16 {
            diags.push(
                Diagnostic::error(
                    at("secret"),
                    format!(
                        "token `{}`: the secret is shorter than 16 characters",
                        t.name
                    ),
                )
                .hint("use a long random value, e.g. `openssl rand -hex 24`, via `${env:NAME}`"),
            );
        } else if t.secret.is_plain_text() {
            diags.push(
                Diagnostic::warning(
                    at("secret"),
                    format!("token `{}`: the secret is written in plain text", t.name),
                )
                .hint("write `${env:NAME}` or `${file:/path}` so the config can be shared"),
            );
        }
    }
    let s = AuthSettings {
        users: raw
            .users
            .into_iter()
            .map(|u| User {
                name: u.name,
                password_hash: u.password_hash,
                role: u.role,
            })
            .collect(),
        tokens: raw
            .tokens
            .into_iter()
            .map(|t| Token {
                name: t.name,
                secret: t.secret,
                role: t.role,
            })
            .collect(),
        session_ttl: raw.session_ttl.unwrap_or(d.session_ttl),
        session_idle: raw.session_idle.unwrap_or(d.session_idle),
        login_attempts: raw.login_attempts.unwrap_or(d.login_attempts),
        login_window: raw.login_window.unwrap_or(d.login_window),
        metrics: raw.metrics.unwrap_or_default(),
    };
    if s.session_ttl < Duration::from_secs(60) {
        diags.push(
            Diagnostic::error(n.loc_of("session_ttl"), "`auth.session_ttl` is below 1m")
                .hint("sessions that short log users out while they read; 8h-24h is usual"),
        );
    }
    if s.login_attempts == 0 {
        diags.push(
            Diagnostic::error(
                n.loc_of("login_attempts"),
                "`auth.login_attempts` must be at least 1",
            )
            .hint("5 is a sensible value"),
        );
    }
    (diags.len() == before
        || !diags[before..]
            .iter()
            .any(|d| d.level == crate::Level::Error))
    .then_some(s)
}

pub(crate) fn resolve_status_page(
    n: &Node,
    sink: &Sink,
    monitor_names: &HashSet<&str>,
    strict: bool,
    diags: &mut Vec<Diagnostic>,
) -> Option<StatusPageSettings> {
    let raw: RawStatusPage = match from_node(n, sink) {
        Ok(r) => r,
        Err(e) => {
            diags.push(e.into_diagnostic());
            return None;
        }
    };
    let d = StatusPageSettings::default();
    let mut ok = true;
    let mut slugs = HashSet::new();
    let mut groups = Vec::new();
    for (gi, g) in raw.groups.into_iter().enumerate() {
        let mut components = Vec::new();
        for (ci, c) in g.components.into_iter().enumerate() {
            let path = format!("groups[{gi}].components[{ci}]");
            let mut sl = slug(&c.name);
            let base = sl.clone();
            let mut k = 2;
            while !slugs.insert(sl.clone()) {
                sl = format!("{base}-{k}");
                k += 1;
            }
            if c.monitors.is_empty() {
                diags.push(
                    Diagnostic::error(
                        n.loc_of(&format!("{path}.monitors")),
                        format!("component `{}` lists no monitors", c.name),
                    )
                    .hint("list the monitors whose state it shows: `monitors: [orders-db]`"),
                );
                ok = false;
            }
            for (mi, m) in c.monitors.iter().enumerate() {
                if !monitor_names.contains(m.as_str()) {
                    let known: Vec<&str> = monitor_names.iter().copied().collect();
                    let loc = n.loc_of(&format!("{path}.monitors[{mi}]"));
                    let msg = format!("component `{}`: no monitor named `{m}`", c.name);
                    if strict {
                        diags.push(
                            Diagnostic::error(loc, msg).hint(crate::diag::did_you_mean(m, &known)),
                        );
                        ok = false;
                    } else {
                        diags.push(Diagnostic::warning(loc, msg).hint(
                            "fine if discovery creates it; until then the component shows `unknown`",
                        ));
                    }
                }
            }
            components.push(Component {
                name: c.name,
                slug: sl,
                description: c.description,
                monitors: c.monitors,
            });
        }
        groups.push(ComponentGroup {
            name: g.name,
            components,
        });
    }
    ok.then(|| StatusPageSettings {
        title: raw.title.unwrap_or(d.title),
        description: raw.description,
        cache: raw.cache.unwrap_or(d.cache),
        history: raw.history.unwrap_or(d.history),
        expose: raw.expose,
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slug("Checkout DB"), "checkout-db");
        assert_eq!(slug("  <b>x</b> "), "b-x-b");
        assert_eq!(slug("日本"), "component");
    }
}

#[cfg(test)]
mod config_tests {
    use crate::load_str;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";

    #[test]
    fn auth_section_resolves_with_defaults() {
        let text = format!(
            "monitors: []\nauth:\n  users:\n    - {{name: alice, password_hash: \"{HASH}\", role: admin}}\n    - {{name: bob, password_hash: \"{HASH}\"}}\n  tokens:\n    - {{name: prom, secret: \"0123456789abcdef0\", role: viewer}}\n  metrics: token\n"
        );
        let l = load_str(&text, "t.yaml").unwrap();
        let a = &l.config.auth;
        assert_eq!(a.users.len(), 2);
        assert_eq!(a.users[1].role, crate::Role::Viewer, "viewer by default");
        assert_eq!(a.tokens[0].secret.expose(), "0123456789abcdef0");
        assert_eq!(format!("{:?}", a.tokens[0].secret), "***");
        assert_eq!(a.metrics, crate::MetricsAccess::Token);
        assert_eq!(a.session_ttl.as_secs(), 12 * 3600);
        assert!(
            l.render_warnings().contains("plain text"),
            "{}",
            l.render_warnings()
        );
    }

    #[test]
    fn auth_mistakes_are_located() {
        let e = load_str(
            "auth:\n  users:\n    - {name: alice, password_hash: hunter2}\n  tokens:\n    - {name: t, secret: short}\n",
            "t.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("t.yaml:3:") && e.contains("not an argon2 hash"),
            "{e}"
        );
        assert!(
            e.contains("t.yaml:5:") && e.contains("shorter than 16"),
            "{e}"
        );
        let e = load_str(
            "auth:\n  users:\n    - {name: a, password_hash: x, role: root}\n",
            "t.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("root"), "{e}");
    }

    #[test]
    fn status_page_components_name_real_monitors() {
        let text = "monitors:\n  - {name: db, target: tcp://127.0.0.1:5432}\nstatus_page:\n  title: Shop\n  expose: [error_kind]\n  groups:\n    - name: Core\n      components:\n        - {name: Checkout DB, monitors: [db]}\n        - {name: Checkout DB, monitors: [db]}\n";
        let s = load_str(text, "t.yaml").unwrap().config.status_page;
        assert_eq!(s.title, "Shop");
        let slugs: Vec<&str> = s.components().map(|c| c.slug.as_str()).collect();
        assert_eq!(slugs, ["checkout-db", "checkout-db-2"]);
        assert!(s.exposes(crate::Expose::ErrorKind));
        assert!(!s.exposes(crate::Expose::Messages));
        let e = load_str(
            "monitors:\n  - {name: db, target: tcp://127.0.0.1:5432}\nstatus_page:\n  groups:\n    - name: Core\n      components:\n        - {name: X, monitors: [dbb]}\n",
            "t.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("no monitor named `dbb`") && e.contains("did you mean `db`"),
            "{e}"
        );
        assert!(e.contains("t.yaml:7:"), "{e}");
    }

    #[test]
    fn tls_files_must_exist() {
        let e = load_str(
            "server:\n  tls: {cert: /nonexistent/c.pem, key: /nonexistent/k.pem}\n",
            "t.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("/nonexistent/c.pem") && e.contains("t.yaml:2:"),
            "{e}"
        );
    }

    #[test]
    fn binding_agent_names_needs_client_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.pem");
        std::fs::write(&f, "x").unwrap();
        let f = f.display();
        let e = load_str(
            &format!("server:\n  tls:\n    cert: {f}\n    key: {f}\n    bind_agent_names: true\n"),
            "t.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("`bind_agent_names` needs agents to present client certificates")
                && e.contains("t.yaml:5:"),
            "{e}"
        );
        let e = load_str(
            &format!("server:\n  tls:\n    cert: {f}\n    key: {f}\n    client_ca: {f}\n    client_auth: optional\n    bind_agent_names: true\n"),
            "t.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("client_auth: agents"), "{e}");
        let ok = load_str(
            &format!("server:\n  tls:\n    cert: {f}\n    key: {f}\n    client_ca: {f}\n    bind_agent_names: true\n"),
            "t.yaml",
        )
        .unwrap_or_else(|d| panic!("{d}"));
        assert!(ok.config.server.tls.unwrap().bind_agent_names);
    }
}
