//! Portwarden's configuration: YAML in, a validated model out, and when something is wrong,
//! *every* problem with `file:line:col` and a one-line hint.
//!
//! ```
//! let text = "monitors:\n  - name: redis\n    target: tcp://127.0.0.1:6379\n    tier: critical\n";
//! let loaded = portwarden_config::load_str(text, "example.yaml").unwrap();
//! let m = &loaded.config.monitors[0];
//! assert_eq!(m.name, "redis");
//! assert_eq!(m.interval.as_secs(), 20); // the critical tier's default
//! ```
//!
//! Secrets are written `${env:NAME}` or `${file:/path}` and resolved at load time into
//! [`portwarden_core::Secret`], which never prints.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use portwarden_core::{
    AddressPolicy, MonitorMeta, Rules, RulesPatch, TargetUrl, Tier, TierDefaults, Transport,
};
use portwarden_probe::checks::send_expect::SeTransport;
use portwarden_probe::{CheckSpec, ProbeSpec, ResolverSpec, SpecError};

pub mod alerting;
pub mod de;
pub mod diag;
pub mod exposure;
pub mod model;
pub mod node;
pub mod receivers;
pub mod web;

pub use alerting::{
    AlertingSettings, GroupBy, Heartbeat, MaintenanceScope, MaintenanceWindow,
    NotificationSettings, Route, RouteMatch, WindowTime,
};
pub use diag::{Diagnostic, Diagnostics, Level};
pub use exposure::{Control, ScanSettings};
pub use node::{Loc, Node};
pub use receivers::{Receiver, ReceiverSpec};
pub use web::{
    AuthSettings, ClientAuth, Component, ComponentGroup, Expose, MetricsAccess, Role,
    StatusPageSettings, TlsFiles, Token, User,
};

use de::{Sink, from_node};
use model::{RawAgent, RawDefaults, RawEngine, RawMonitor, RawServer, RawStore, RawTiers};
use node::NodeKind;

/// A monitor, fully resolved: defaults applied, target parsed, check validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Monitor {
    pub name: String,
    pub target: TargetUrl,
    pub check: CheckSpec,
    pub tier: Tier,
    pub interval: Duration,
    pub timeout: Duration,
    pub addresses: AddressPolicy,
    pub meta: MonitorMeta,
    /// How the evaluator judges it (tier defaults, global and per-monitor overrides).
    pub rules: Rules,
    pub enabled: bool,
    /// Where it is defined (`file:line`), for messages.
    pub defined_at: String,
    /// The `discover:` block that made it; `None` for monitors written under `monitors:`.
    pub source: Option<String>,
    /// Locations it is probed from; empty: every location.
    pub locations: Vec<String>,
    /// Multi-location confirmation (`confirm:`).
    pub confirm: Confirm,
    /// Monitors (by name) or hosts (`host:NAME`) this one depends on: while one of them is
    /// down, this monitor's alerts are folded into that incident.
    pub depends_on: Vec<String>,
    /// Availability objective in percent (`availability_target`, else
    /// `defaults.availability_target`); the evidence report says whether it was met.
    pub availability_target: Option<f64>,
}

/// How failures seen from several locations are judged.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Confirm {
    /// Locations that must see a failure for a `global` incident (`None`: 2, or all when
    /// fewer are probing).
    pub min_locations: Option<u32>,
    /// Severity of a `regional` incident (`None`: one step below the monitor's).
    pub regional_severity: Option<portwarden_core::Severity>,
}

impl Monitor {
    /// Whether a probe at `location` runs this monitor.
    pub fn runs_at(&self, location: &str) -> bool {
        self.locations.is_empty() || self.locations.iter().any(|l| l == location)
    }
}

/// An enrolled agent (`agents:`).
#[derive(Debug, Clone, PartialEq)]
pub struct AgentEntry {
    pub name: String,
    pub location: String,
    /// Lowercase hex SHA-256 of its token.
    pub token_sha256: String,
    pub revoked: bool,
}

impl Monitor {
    /// The transport of the check (tcp or udp).
    pub fn transport(&self) -> Transport {
        self.check.transport()
    }

    /// Builds what the prober needs. Validation already ran `prepare` once, so this only
    /// fails if a file it read (a CA bundle) changed since.
    pub fn probe_spec(&self) -> Result<ProbeSpec, SpecError> {
        Ok(ProbeSpec::new(
            &self.name,
            self.target.clone(),
            self.check.clone(),
            self.timeout,
        )?
        .with_addresses(self.addresses))
    }
}

/// Scheduler limits (`engine:`).
#[derive(Debug, Clone, PartialEq)]
pub struct EngineSettings {
    /// `None`: derived from the file descriptor limit at start.
    pub concurrency: Option<usize>,
    pub per_host: usize,
    pub lag_threshold: Duration,
    pub shutdown_grace: Duration,
    pub location: String,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            concurrency: None,
            per_host: 8,
            lag_threshold: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(10),
            location: "local".into(),
        }
    }
}

/// HTTP listener and data directory (`server:`).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub data_dir: std::path::PathBuf,
    /// Serve HTTPS with these PEM files (`server.tls`).
    pub tls: Option<TlsFiles>,
    /// An agent quiet for this long is `silent` (`server.agent_silent_after`).
    pub agent_silent_after: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 9797)),
            data_dir: "portwarden-data".into(),
            tls: None,
            agent_silent_after: Duration::from_secs(30),
        }
    }
}

/// Data retention (`store.retention:`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetentionSettings {
    pub raw: Duration,
    pub minute: Duration,
    pub hour: Duration,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            raw: Duration::from_secs(7 * 86_400),
            minute: Duration::from_secs(14 * 86_400),
            hour: Duration::from_secs(400 * 86_400),
        }
    }
}

/// Where data is kept (`store:`).
#[derive(Debug, Clone, PartialEq)]
pub struct StoreSettings {
    /// `postgres://…` for several `serve` replicas on one database; `None`: SQLite in
    /// `server.data_dir`. May hold a password (`${env:…}`): a [`Secret`](portwarden_core::Secret).
    pub url: Option<portwarden_core::Secret>,
    /// With PostgreSQL: how long the replicas may go without a leader after it dies.
    pub takeover: Duration,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            url: None,
            takeover: Duration::from_secs(15),
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub resolver: ResolverSpec,
    pub tiers: BTreeMap<Tier, TierDefaults>,
    /// Each tier's rules after `rules:` and `tiers.<t>.rules:` (what a monitor starts from).
    pub tier_rules: BTreeMap<Tier, Rules>,
    /// `defaults:` (applied to every monitor, written or discovered).
    pub defaults: RawDefaults,
    /// Monitors written under `monitors:`. Discovered monitors are added by
    /// `portwarden-discovery`, which reads the `discover:` section itself.
    pub monitors: Vec<Monitor>,
    pub engine: EngineSettings,
    pub server: ServerSettings,
    pub retention: RetentionSettings,
    /// Which store (SQLite or PostgreSQL) and leadership settings (`store:`).
    pub store: StoreSettings,
    /// Users, API tokens and sessions (`auth:`).
    pub auth: AuthSettings,
    /// The public status page (`status_page:`).
    pub status_page: StatusPageSettings,
    /// Scan limits and defaults (`scan:`).
    pub scan: ScanSettings,
    /// Approved open ports per host, CIDR or label (`baselines:`).
    pub baselines: Vec<portwarden_scan::baseline::Baseline>,
    /// Compliance controls and their evidence (`controls:`).
    pub controls: Vec<Control>,
    /// Enrolled probe agents (`agents:`).
    pub agents: Vec<AgentEntry>,
    /// Where notifications go (`receivers:`), by name.
    pub receivers: BTreeMap<String, Receiver>,
    /// `routes:`, `maintenance:`, `heartbeat:`, `notifications:`.
    pub alerting: AlertingSettings,
}

impl Config {
    /// Every location a monitor without `locations:` is probed from: the server's own and
    /// every enrolled (not revoked) agent's, sorted.
    pub fn all_locations(&self) -> Vec<String> {
        let mut v: Vec<String> = std::iter::once(self.engine.location.clone())
            .chain(
                self.agents
                    .iter()
                    .filter(|a| !a.revoked)
                    .map(|a| a.location.clone()),
            )
            .collect();
        v.sort();
        v.dedup();
        v
    }

    pub fn monitor(&self, name: &str) -> Option<&Monitor> {
        self.monitors.iter().find(|m| m.name == name)
    }
}

/// A config that loaded, with any warnings.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub file: String,
    pub config: Config,
    pub warnings: Vec<Diagnostic>,
}

impl Loaded {
    pub fn render_warnings(&self) -> String {
        self.warnings
            .iter()
            .map(|w| w.render(&self.file))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Top-level sections and what they hold.
const SECTIONS: &[&str] = &[
    "resolver",
    "defaults",
    "rules",
    "tiers",
    "monitors",
    "discover",
    "engine",
    "server",
    "store",
    "auth",
    "status_page",
    "scan",
    "baselines",
    "controls",
    "agents",
    "receivers",
    "routes",
    "maintenance",
    "heartbeat",
    "notifications",
];

/// Reads and validates a config file.
pub fn load_file(path: &Path) -> Result<Loaded, Diagnostics> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| Diagnostics {
        file: file.clone(),
        items: vec![
            Diagnostic::error(None, format!("cannot read the config file: {e}"))
                .hint("check the path given with --config and its permissions"),
        ],
    })?;
    load_str(&text, &file)
}

/// Validates config text. `file` is used in messages.
pub fn load_str(text: &str, file: &str) -> Result<Loaded, Diagnostics> {
    let mut diags = Vec::new();
    let config = match node::parse(text) {
        Ok(root) => build(&root, file, &mut diags),
        Err((loc, msg)) => {
            diags.push(
                Diagnostic::error(loc, format!("invalid YAML: {msg}"))
                    .hint("fix the YAML syntax (indentation, quotes, colons) at this spot"),
            );
            None
        }
    };
    let mut all = Diagnostics {
        file: file.to_string(),
        items: diags,
    };
    all.sort();
    match config {
        Some(config) if !all.has_errors() => Ok(Loaded {
            file: file.to_string(),
            config,
            warnings: all.items,
        }),
        _ => Err(all),
    }
}

fn build(root: &Node, file: &str, diags: &mut Vec<Diagnostic>) -> Option<Config> {
    let sink = Sink::default();
    let NodeKind::Map(entries) = &root.kind else {
        diags.push(
            Diagnostic::error(
                root.loc,
                format!("the config must be a mapping, found {}", root.describe()),
            )
            .hint("start with `monitors:` (see examples/local.yaml)"),
        );
        return None;
    };
    for (k, _) in entries {
        let key = k.as_str().unwrap_or("");
        if !SECTIONS.contains(&key) {
            diags.push(
                Diagnostic::error(k.loc, format!("unknown section `{key}`"))
                    .hint(diag::did_you_mean(key, SECTIONS)),
            );
        }
    }
    let mut ok = true;
    let section = |name: &str| root.get(name);

    let resolver = match section("resolver") {
        None => ResolverSpec::System,
        Some(n) => match &n.kind {
            NodeKind::Null => ResolverSpec::System,
            NodeKind::Str(s) if s == "system" => ResolverSpec::System,
            NodeKind::Str(s) => match parse_resolver(s) {
                Ok(a) => ResolverSpec::Server(a),
                Err(e) => {
                    diags.push(
                        Diagnostic::error(n.loc, e)
                            .hint("write `IP:PORT`, e.g. `127.0.0.1:53`, or `system`"),
                    );
                    ok = false;
                    ResolverSpec::System
                }
            },
            _ => {
                diags.push(
                    Diagnostic::error(
                        n.loc,
                        format!("`resolver` must be a string, found {}", n.describe()),
                    )
                    .hint("write `IP:PORT`, e.g. `127.0.0.1:53`"),
                );
                ok = false;
                ResolverSpec::System
            }
        },
    };

    let defaults: RawDefaults = match section("defaults") {
        None => RawDefaults::default(),
        Some(n) => from_node(n, &sink).unwrap_or_else(|e| {
            diags.push(e.into_diagnostic());
            ok = false;
            RawDefaults::default()
        }),
    };

    let raw_tiers: RawTiers = match section("tiers") {
        None => RawTiers::default(),
        Some(n) => from_node(n, &sink).unwrap_or_else(|e| {
            diags.push(e.into_diagnostic());
            ok = false;
            RawTiers::default()
        }),
    };
    let global_rules: RulesPatch = match section("rules") {
        None => RulesPatch::default(),
        Some(n) => from_node(n, &sink).unwrap_or_else(|e| {
            diags.push(e.into_diagnostic());
            ok = false;
            RulesPatch::default()
        }),
    };
    let mut tier_rules: BTreeMap<Tier, Rules> = BTreeMap::new();
    for t in Tier::ALL {
        let mut r = Rules::for_tier(t).patched(&global_rules);
        if let Some(p) = raw_tiers.get(t).and_then(|rt| rt.rules.as_ref()) {
            r = r.patched(p);
        }
        let base = if raw_tiers.get(t).and_then(|rt| rt.rules.as_ref()).is_some() {
            root.get("tiers")
                .and_then(|n| n.get(t.as_str()))
                .map(|n| (n, "rules"))
        } else {
            root.get("rules").map(|n| (n, ""))
        };
        for (field, problem) in r.problems() {
            let loc = base.map(|(n, pre)| {
                let path = if pre.is_empty() {
                    field.to_string()
                } else {
                    format!("{pre}.{field}")
                };
                n.loc_of(&path)
            });
            diags.push(
                Diagnostic::error(loc, format!("tier `{t}` rules: `{field}` {problem}"))
                    .hint("fix the rule value; see the rules reference in README.md"),
            );
            ok = false;
        }
        tier_rules.insert(t, r);
    }

    let engine = match section("engine") {
        None => EngineSettings::default(),
        Some(n) => match from_node::<RawEngine>(n, &sink) {
            Ok(raw) => {
                let d = EngineSettings::default();
                let e = EngineSettings {
                    concurrency: raw.concurrency,
                    per_host: raw.per_host.unwrap_or(d.per_host),
                    lag_threshold: raw.lag_threshold.unwrap_or(d.lag_threshold),
                    shutdown_grace: raw.shutdown_grace.unwrap_or(d.shutdown_grace),
                    location: raw.location.unwrap_or(d.location),
                };
                if e.concurrency == Some(0) {
                    diags.push(
                        Diagnostic::error(
                            n.loc_of("concurrency"),
                            "`engine.concurrency` must be at least 1",
                        )
                        .hint("omit it to derive it from the file descriptor limit"),
                    );
                    ok = false;
                }
                if e.per_host == 0 {
                    diags.push(
                        Diagnostic::error(
                            n.loc_of("per_host"),
                            "`engine.per_host` must be at least 1",
                        )
                        .hint("8 is a sensible value"),
                    );
                    ok = false;
                }
                e
            }
            Err(e) => {
                diags.push(e.into_diagnostic());
                ok = false;
                EngineSettings::default()
            }
        },
    };

    let server = match section("server") {
        None => ServerSettings::default(),
        Some(n) => match from_node::<RawServer>(n, &sink) {
            Ok(raw) => {
                let mut s = ServerSettings::default();
                if let Some(l) = raw.listen {
                    match l.parse::<SocketAddr>() {
                        Ok(a) => s.listen = a,
                        Err(_) => {
                            diags.push(
                                Diagnostic::error(
                                    n.loc_of("listen"),
                                    format!("`{l}` is not an IP:PORT address"),
                                )
                                .hint("write e.g. `127.0.0.1:9797` or `[::]:9797`"),
                            );
                            ok = false;
                        }
                    }
                }
                if let Some(d) = raw.data_dir {
                    s.data_dir = d.into();
                }
                if let Some(d) = raw.agent_silent_after {
                    s.agent_silent_after = d;
                }
                if let Some(t) = raw.tls {
                    let ca = t.client_ca.as_ref().map(|p| ("tls.client_ca", p));
                    for (field, p) in [("tls.cert", &t.cert), ("tls.key", &t.key)]
                        .into_iter()
                        .chain(ca)
                    {
                        if let Err(e) = std::fs::metadata(p) {
                            diags.push(
                                Diagnostic::error(
                                    n.loc_of(field),
                                    format!("cannot read `{}`: {e}", p.display()),
                                )
                                .hint("give the path of a PEM file readable by Portwarden"),
                            );
                            ok = false;
                        }
                    }
                    if t.bind_agent_names
                        && (t.client_ca.is_none() || t.client_auth == ClientAuth::Optional)
                    {
                        diags.push(
                            Diagnostic::error(
                                n.loc_of("tls.bind_agent_names"),
                                "`bind_agent_names` needs agents to present client certificates",
                            )
                            .hint("set `client_ca` and `client_auth: agents` (or `all`)"),
                        );
                        ok = false;
                    }
                    s.tls = Some(t);
                }
                s
            }
            Err(e) => {
                diags.push(e.into_diagnostic());
                ok = false;
                ServerSettings::default()
            }
        },
    };

    let mut store = StoreSettings::default();
    let retention = match section("store") {
        None => RetentionSettings::default(),
        // `store: postgres://…`: the URL alone.
        Some(n) if matches!(n.kind, NodeKind::Str(_)) => {
            match from_node::<portwarden_core::Secret>(n, &sink) {
                Ok(url) => store.url = Some(url),
                Err(e) => {
                    diags.push(e.into_diagnostic());
                    ok = false;
                }
            }
            RetentionSettings::default()
        }
        Some(n) => match from_node::<RawStore>(n, &sink) {
            Ok(raw) => {
                if let Some(u) = raw.url {
                    store.url = Some(u);
                }
                if let Some(t) = raw.takeover {
                    if t < Duration::from_secs(3) {
                        diags.push(
                            Diagnostic::error(
                                n.loc_of("takeover"),
                                format!(
                                    "store.takeover is {}: too short to tell a dead leader from a slow one",
                                    portwarden_core::format_duration(t)
                                ),
                            )
                            .hint("use at least 3s; the default is 15s"),
                        );
                        ok = false;
                    }
                    store.takeover = t;
                }
                let d = RetentionSettings::default();
                let r = raw.retention.unwrap_or_default();
                RetentionSettings {
                    raw: r.raw.unwrap_or(d.raw),
                    minute: r.minute.unwrap_or(d.minute),
                    hour: r.hour.unwrap_or(d.hour),
                }
            }
            Err(e) => {
                diags.push(e.into_diagnostic());
                ok = false;
                RetentionSettings::default()
            }
        },
    };
    if let (Some(url), Some(n)) = (&store.url, section("store")) {
        let v = url.expose();
        if !(v.starts_with("postgres://") || v.starts_with("postgresql://")) {
            let at = if matches!(n.kind, NodeKind::Str(_)) {
                n.loc
            } else {
                n.loc_of("url")
            };
            diags.push(
                Diagnostic::error(
                    Some(at),
                    "store: only PostgreSQL URLs are accepted here (`postgres://…`)",
                )
                .hint(
                    "write `store: postgres://user:${env:PGPASSWORD}@host:5432/portwarden`, or leave `store` out to use SQLite in server.data_dir",
                ),
            );
            ok = false;
        }
    }

    let mut tiers = BTreeMap::new();
    for t in Tier::ALL {
        let mut d = t.builtin_defaults();
        if let Some(r) = raw_tiers.get(t) {
            d.interval = r.interval.unwrap_or(d.interval);
            d.timeout = r.timeout.unwrap_or(d.timeout);
            d.severity = r.severity.unwrap_or(d.severity);
            let tnode = root.get("tiers").and_then(|n| n.get(t.as_str()));
            let loc = tnode.map(|n| n.loc_of("timeout"));
            if d.timeout >= d.interval {
                diags.push(
                    Diagnostic::error(loc, format!("tier `{t}`: timeout ({}) is not below its interval ({})",
                        portwarden_core::format_duration(d.timeout), portwarden_core::format_duration(d.interval)))
                        .hint("a check must finish before the next one is due: lower `timeout` or raise `interval`"),
                );
                ok = false;
            }
        }
        tiers.insert(t, d);
    }

    let mut monitors = Vec::new();
    match section("monitors") {
        None => {}
        Some(n) => match &n.kind {
            NodeKind::Null => {}
            NodeKind::Seq(items) => {
                let mut seen: HashMap<String, Loc> = HashMap::new();
                for item in items {
                    match from_node::<RawMonitor>(item, &sink) {
                        Ok(raw) => {
                            let name_loc = item.loc_of("name");
                            if let Some(first) = seen.get(&raw.name) {
                                diags.push(
                                    Diagnostic::error(name_loc, format!("duplicate monitor name `{}` (first defined at line {})", raw.name, first.line))
                                        .hint("monitor names must be unique: rename one of them"),
                                );
                                ok = false;
                                continue;
                            }
                            seen.insert(raw.name.clone(), name_loc);
                            match resolve_monitor(
                                raw,
                                item,
                                file,
                                &tiers,
                                &tier_rules,
                                &defaults,
                                diags,
                            ) {
                                Some(m) => monitors.push(m),
                                None => ok = false,
                            }
                        }
                        Err(e) => {
                            diags.push(e.into_diagnostic());
                            ok = false;
                        }
                    }
                }
            }
            _ => {
                diags.push(
                    Diagnostic::error(
                        n.loc,
                        format!("`monitors` must be a list, found {}", n.describe()),
                    )
                    .hint("write each monitor as a list item starting with `- name: ...`"),
                );
                ok = false;
            }
        },
    }

    // `discover:` belongs to portwarden-discovery (sources and templates); here only its shape.
    if let Some(n) = section("discover") {
        match &n.kind {
            NodeKind::Null => {}
            NodeKind::Seq(items) => {
                for item in items {
                    if !matches!(item.kind, NodeKind::Map(_)) {
                        diags.push(
                            Diagnostic::error(item.loc, format!("a `discover` entry must be a mapping, found {}", item.describe()))
                                .hint("write each entry as `- name: ...` with `source:` and `template:` (see docs/discovery.md)"),
                        );
                        ok = false;
                    }
                }
            }
            _ => {
                diags.push(
                    Diagnostic::error(
                        n.loc,
                        format!("`discover` must be a list, found {}", n.describe()),
                    )
                    .hint("write each discovery source as a list item starting with `- name: ...`"),
                );
                ok = false;
            }
        }
    }
    let auth = match section("auth") {
        None => AuthSettings::default(),
        Some(n) if matches!(n.kind, NodeKind::Null) => AuthSettings::default(),
        Some(n) => web::resolve_auth(n, &sink, diags).unwrap_or_else(|| {
            ok = false;
            AuthSettings::default()
        }),
    };
    let status_page = match section("status_page") {
        None => StatusPageSettings::default(),
        Some(n) if matches!(n.kind, NodeKind::Null) => StatusPageSettings::default(),
        Some(n) => {
            let names: std::collections::HashSet<&str> =
                monitors.iter().map(|m: &Monitor| m.name.as_str()).collect();
            // With `discover:`, components may name monitors that only discovery creates.
            let strict = section("discover").is_none();
            web::resolve_status_page(n, &sink, &names, strict, diags).unwrap_or_else(|| {
                ok = false;
                StatusPageSettings::default()
            })
        }
    };

    let scan = match section("scan") {
        None => ScanSettings::default(),
        Some(n) if matches!(n.kind, NodeKind::Null) => ScanSettings::default(),
        Some(n) => exposure::resolve_scan(n, &sink, diags).unwrap_or_else(|| {
            ok = false;
            ScanSettings::default()
        }),
    };
    let baselines = match section("baselines") {
        None => Vec::new(),
        Some(n) => exposure::resolve_baselines(n, &sink, &scan, diags).unwrap_or_else(|| {
            ok = false;
            Vec::new()
        }),
    };
    let agents = match section("agents") {
        None => Vec::new(),
        Some(n) if matches!(n.kind, NodeKind::Null) => Vec::new(),
        Some(n) => resolve_agents(n, &sink, diags).unwrap_or_else(|| {
            ok = false;
            Vec::new()
        }),
    };
    let controls = match section("controls") {
        None => Vec::new(),
        Some(n) => {
            let names: std::collections::HashSet<&str> =
                monitors.iter().map(|m: &Monitor| m.name.as_str()).collect();
            let strict = section("discover").is_none();
            exposure::resolve_controls(n, &sink, &baselines, &names, strict, diags).unwrap_or_else(
                || {
                    ok = false;
                    Vec::new()
                },
            )
        }
    };
    if let Some(mnode) = section("monitors") {
        let mut known: Vec<&str> = agents.iter().map(|a| a.location.as_str()).collect();
        known.push(engine.location.as_str());
        let by_name: HashMap<&str, &Monitor> = monitors
            .iter()
            .filter(|m| !m.locations.is_empty())
            .map(|m| (m.name.as_str(), m))
            .collect();
        if let (NodeKind::Seq(items), false) = (&mnode.kind, by_name.is_empty()) {
            for item in items {
                let name = item.get("name").and_then(|n| n.as_str()).unwrap_or("");
                let Some(m) = by_name.get(name) else {
                    continue;
                };
                for (i, l) in m.locations.iter().enumerate() {
                    if !known.contains(&l.as_str()) {
                        diags.push(
                            Diagnostic::warning(
                                item.loc_of(&format!("locations[{i}]")),
                                format!("monitor `{}`: no agent is enrolled for location `{l}`; nothing probes it there", m.name),
                            )
                            .hint(diag::did_you_mean(l, &known)),
                        );
                    }
                }
            }
        }
    }
    let receivers = match section("receivers") {
        None => BTreeMap::new(),
        Some(n) if matches!(n.kind, NodeKind::Null) => BTreeMap::new(),
        Some(n) => receivers::resolve_receivers(n, file, &sink, diags).unwrap_or_else(|| {
            ok = false;
            BTreeMap::new()
        }),
    };
    let alerting = {
        // Routes, silences and maintenance windows may also name a baseline's findings
        // (`scan:<baseline>`, the monitor name of their incidents).
        let finding_names: Vec<String> = baselines.iter().map(|b| b.incident_monitor()).collect();
        let names: std::collections::HashSet<&str> = monitors
            .iter()
            .map(|m: &Monitor| m.name.as_str())
            .chain(finding_names.iter().map(String::as_str))
            .collect();
        let strict = section("discover").is_none();
        if strict {
            check_depends_on(&monitors, root, diags, &mut ok);
        }
        alerting::resolve(root, &sink, &names, strict, diags).unwrap_or_else(|| {
            ok = false;
            AlertingSettings::default()
        })
    };
    // Baseline findings go to the routes they name (checked here, once routes are known).
    if let Some(NodeKind::Seq(items)) = section("baselines").map(|n| &n.kind) {
        let names: Vec<&str> = alerting.routes.iter().map(|r| r.name.as_str()).collect();
        for (b, item) in baselines.iter().zip(items) {
            for (i, r) in b.routes.iter().enumerate() {
                if !names.contains(&r.as_str()) {
                    diags.push(
                        Diagnostic::error(
                            item.loc_of(&format!("routes[{i}]")),
                            format!("baseline `{}`: no route named `{r}`", b.name),
                        )
                        .hint(diag::did_you_mean(r, &names)),
                    );
                    ok = false;
                }
            }
        }
    }

    diags.extend(sink.take());
    ok.then_some(Config {
        scan,
        baselines,
        controls,
        agents,
        resolver,
        tiers,
        tier_rules,
        defaults,
        monitors,
        engine,
        server,
        retention,
        store,
        auth,
        status_page,
        receivers,
        alerting,
    })
}

/// `depends_on` entries must name another written monitor (or a host as `host:NAME`).
fn check_depends_on(monitors: &[Monitor], root: &Node, diags: &mut Vec<Diagnostic>, ok: &mut bool) {
    let names: Vec<&str> = monitors.iter().map(|m| m.name.as_str()).collect();
    let items = match root.get("monitors").map(|n| &n.kind) {
        Some(NodeKind::Seq(items)) => items.as_slice(),
        _ => &[],
    };
    // One pass over the items (a lookup per monitor would be quadratic at 100 000 monitors).
    let by_name: HashMap<&str, &Node> = items
        .iter()
        .filter_map(|i| Some((i.get("name").and_then(Node::as_str)?, i)))
        .collect();
    for m in monitors.iter().filter(|m| !m.depends_on.is_empty()) {
        let node = by_name.get(m.name.as_str());
        let loc = node.map(|n| n.loc_of("depends_on"));
        for d in &m.depends_on {
            if let Some(h) = d.strip_prefix("host:") {
                if h.is_empty() {
                    diags.push(
                        Diagnostic::error(
                            loc,
                            format!("monitor `{}`: `host:` needs a host name", m.name),
                        )
                        .hint("write e.g. `host:db1.internal`"),
                    );
                    *ok = false;
                }
            } else if d == &m.name {
                diags.push(
                    Diagnostic::error(loc, format!("monitor `{}` depends on itself", m.name)).hint(
                        "name the monitor of what it needs (a host, a gateway), or `host:NAME`",
                    ),
                );
                *ok = false;
            } else if !names.contains(&d.as_str()) {
                diags.push(
                    Diagnostic::error(
                        loc,
                        format!(
                            "monitor `{}`: `depends_on` names unknown monitor `{d}`",
                            m.name
                        ),
                    )
                    .hint(format!(
                        "{} (or write `host:NAME` for a host)",
                        diag::did_you_mean(d, &names)
                    )),
                );
                *ok = false;
            }
        }
    }
}

/// Parses `IP:PORT` (or a bare IP, port 53) for `resolver:`.
pub fn parse_resolver(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    Err(format!("`{s}` is not an IP:PORT address of a DNS server"))
}

fn resolve_monitor(
    raw: RawMonitor,
    node: &Node,
    file: &str,
    tiers: &BTreeMap<Tier, TierDefaults>,
    tier_rules: &BTreeMap<Tier, Rules>,
    defaults: &RawDefaults,
    diags: &mut Vec<Diagnostic>,
) -> Option<Monitor> {
    let before = diags.len();
    let name = raw.name.trim().to_string();
    if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        diags.push(
            Diagnostic::error(
                node.loc_of("name"),
                "a monitor name must be 1-200 characters without control characters",
            )
            .hint("use a short, unique name such as `orders-db-primary`"),
        );
    }
    if portwarden_core::is_finding_monitor(&name) {
        diags.push(
            Diagnostic::error(
                node.loc_of("name"),
                format!(
                    "monitor name `{name}`: names starting with `{}` are reserved for exposure-guard findings",
                    portwarden_core::FINDING_MONITOR_PREFIX
                ),
            )
            .hint("rename the monitor, e.g. without the `scan:` prefix"),
        );
    }
    let mname = &raw.name;
    let target: Option<TargetUrl> = match raw.target.parse::<TargetUrl>() {
        Ok(t) => Some(t),
        Err(e) => {
            diags.push(
                Diagnostic::error(node.loc_of("target"), format!("monitor `{mname}`: {e}"))
                    .hint("write `scheme://host:port`, e.g. `tcp://db1.internal:5432` or `udp://[::1]:53`"),
            );
            None
        }
    };

    // The check: explicit, or implied by the target's scheme, or plain tcp.
    let scheme = target.as_ref().and_then(|t| t.scheme.clone());
    let mut check = match (&raw.check, scheme.as_deref()) {
        (Some(c), _) => c.clone(),
        (None, Some(s)) => match CheckSpec::for_scheme(s) {
            Some(c) => c,
            None => {
                let kinds: Vec<&str> = portwarden_probe::CATALOGUE.iter().map(|i| i.name).collect();
                diags.push(
                    Diagnostic::error(
                        node.loc_of("target"),
                        format!("monitor `{mname}`: unknown scheme `{s}://`"),
                    )
                    .hint(diag::did_you_mean(s, &kinds)),
                );
                CheckSpec::for_scheme("tcp")?
            }
        },
        (None, None) => CheckSpec::for_scheme("tcp")?,
    };
    if let (Some(c), Some(s)) = (&raw.check, scheme.as_deref()) {
        let fits = s == c.kind()
            || CheckSpec::for_scheme(s).is_some_and(|d| d.kind() == c.kind())
            || (s == "tcp"
                && c.transport() == Transport::Tcp
                && !matches!(c, CheckSpec::SendExpect(se) if se.transport == Some(SeTransport::Tls)))
            || (s == "udp" && c.transport() == Transport::Udp)
            || (s == "tls"
                && matches!(c, CheckSpec::SendExpect(se) if se.transport.is_none() || se.transport == Some(SeTransport::Tls)));
        if !fits {
            diags.push(
                Diagnostic::error(
                    node.loc_of("target"),
                    format!(
                        "monitor `{mname}`: scheme `{s}://` does not fit check type `{}` ({})",
                        c.kind(),
                        c.transport()
                    ),
                )
                .hint(format!(
                    "write the target as `{}://host:port` or drop the scheme",
                    c.kind()
                )),
            );
        }
    }
    // Fill defaults that live outside the check: transport from the scheme, UDP silence policy.
    match &mut check {
        CheckSpec::SendExpect(se) if se.transport.is_none() => {
            se.transport = Some(match scheme.as_deref() {
                Some("tls") => SeTransport::Tls,
                Some("udp") => SeTransport::Udp,
                _ => SeTransport::Tcp,
            });
        }
        CheckSpec::Udp(u) if u.udp_no_response.is_none() => {
            u.udp_no_response = defaults.udp_no_response;
        }
        _ => {}
    }
    for w in check.warnings() {
        diags.push(
            Diagnostic::warning(
                node.get("check")
                    .map(|n| n.loc)
                    .unwrap_or_else(|| node.loc_of("target")),
                format!("monitor `{mname}`: {w}"),
            )
            .hint("add `expect:` with the reply the service must send"),
        );
    }

    let tier = raw.tier.unwrap_or_default();
    let td = tiers
        .get(&tier)
        .copied()
        .unwrap_or_else(|| tier.builtin_defaults());
    let interval = raw.interval.unwrap_or(td.interval);
    let timeout = raw.timeout.unwrap_or(td.timeout);
    if interval < Duration::from_millis(100) {
        diags.push(
            Diagnostic::error(
                node.loc_of("interval"),
                format!(
                    "monitor `{mname}`: interval {} is below 100ms",
                    portwarden_core::format_duration(interval)
                ),
            )
            .hint("use at least `1s`; critical services are usually checked every 15-30s"),
        );
    } else if interval < Duration::from_secs(1) {
        diags.push(
            Diagnostic::warning(node.loc_of("interval"), format!("monitor `{mname}`: interval {} is below 1s", portwarden_core::format_duration(interval)))
                .hint("sub-second checks load the target; critical services are usually checked every 15-30s"),
        );
    }
    if timeout.is_zero() {
        diags.push(
            Diagnostic::error(
                node.loc_of("timeout"),
                format!("monitor `{mname}`: timeout must be above zero"),
            )
            .hint("5-10s suits most TCP services"),
        );
    } else if timeout >= interval {
        let at = if raw.timeout.is_some() {
            "timeout"
        } else {
            "interval"
        };
        diags.push(
            Diagnostic::error(
                node.loc_of(at),
                format!(
                    "monitor `{mname}`: timeout ({}) is not below the interval ({})",
                    portwarden_core::format_duration(timeout),
                    portwarden_core::format_duration(interval)
                ),
            )
            .hint("a check must finish before the next one is due: lower `timeout` or raise `interval`"),
        );
    }

    let mut rules = tier_rules
        .get(&tier)
        .copied()
        .unwrap_or_else(|| Rules::for_tier(tier));
    if let Some(p) = &raw.rules {
        rules = rules.patched(p);
        for (field, problem) in rules.problems() {
            diags.push(
                Diagnostic::error(
                    node.loc_of(&format!("rules.{field}")),
                    format!("monitor `{mname}`: rule `{field}` {problem}"),
                )
                .hint("fix the rule value; see the rules reference in README.md"),
            );
        }
    }

    let target = target?;
    let info = check.info();
    if target.port.is_none() && info.default_port.is_none() {
        diags.push(
            Diagnostic::error(
                node.loc_of("target"),
                format!(
                    "monitor `{mname}`: `{}` has no port and `{}` checks have no default port",
                    raw.target, info.name
                ),
            )
            .hint(format!("add the port: `{}:PORT`", raw.target)),
        );
    }
    let target = TargetUrl {
        port: target.port.or(info.default_port),
        ..target
    };
    if let Err(e) = check.prepare() {
        let path = format!("check.{}", e.field);
        diags.push(
            Diagnostic::error(
                node.loc_of(&path),
                format!(
                    "monitor `{mname}`: check `{}` option `{}`: {}",
                    info.name, e.field, e.message
                ),
            )
            .hint("fix this check option; `portwarden check --list-checks` lists every option"),
        );
    }
    let locations = raw.locations.clone().unwrap_or_default();
    for (i, l) in locations.iter().enumerate() {
        if l.is_empty() || locations[..i].contains(l) {
            diags.push(
                Diagnostic::error(
                    node.loc_of(&format!("locations[{i}]")),
                    format!("monitor `{mname}`: location `{l}` is empty or listed twice"),
                )
                .hint("list each location name once"),
            );
        }
    }
    if raw.locations.as_ref().is_some_and(Vec::is_empty) {
        diags.push(
            Diagnostic::error(
                node.loc_of("locations"),
                format!("monitor `{mname}`: `locations` is empty, so nothing would probe it"),
            )
            .hint("omit `locations` to probe from every location, or name at least one"),
        );
    }
    if raw.confirm.and_then(|c| c.min_locations) == Some(0) {
        diags.push(
            Diagnostic::error(
                node.loc_of("confirm.min_locations"),
                format!("monitor `{mname}`: `confirm.min_locations` must be at least 1"),
            )
            .hint("2 (the default) confirms an outage from two places before paging"),
        );
    }
    let availability_target = raw
        .availability_target
        .or(defaults.availability_target)
        .map(|p| p.0);
    if let Some(t) = availability_target
        && !(t > 0.0 && t <= 100.0)
    {
        let at = if raw.availability_target.is_some() {
            node.loc_of("availability_target")
        } else {
            node.loc
        };
        diags.push(
            Diagnostic::error(
                at,
                format!("monitor `{mname}`: `availability_target` {t} is not a percentage above 0 and at most 100"),
            )
            .hint("write e.g. `availability_target: 99.9` (percent)"),
        );
    }
    if diags[before..].iter().any(|d| d.level == Level::Error) {
        return None;
    }
    Some(Monitor {
        name,
        target,
        check,
        tier,
        interval,
        timeout,
        addresses: raw.addresses.or(defaults.addresses).unwrap_or_default(),
        meta: MonitorMeta {
            service: raw.service,
            capability: raw.capability,
            owner: raw.owner,
            severity: raw.severity.unwrap_or(td.severity),
            runbook: raw.runbook,
            description: raw.description,
            labels: raw.labels,
        },
        rules,
        enabled: raw.enabled,
        defined_at: format!("{file}:{}", node.loc.line),
        source: None,
        locations,
        confirm: Confirm {
            min_locations: raw.confirm.and_then(|c| c.min_locations),
            regional_severity: raw.confirm.and_then(|c| c.regional_severity),
        },
        depends_on: raw.depends_on,
        availability_target,
    })
}

/// `agents:`: a list of `{name, location, token_sha256}`.
fn resolve_agents(n: &Node, sink: &Sink, diags: &mut Vec<Diagnostic>) -> Option<Vec<AgentEntry>> {
    let NodeKind::Seq(items) = &n.kind else {
        diags.push(
            Diagnostic::error(
                n.loc,
                format!("`agents` must be a list, found {}", n.describe()),
            )
            .hint("write each agent as `- {name: eu-1, location: eu-west, token_sha256: ...}`"),
        );
        return None;
    };
    let before = diags.len();
    let mut out: Vec<AgentEntry> = Vec::new();
    for item in items {
        let raw: RawAgent = match from_node(item, sink) {
            Ok(r) => r,
            Err(e) => {
                diags.push(e.into_diagnostic());
                continue;
            }
        };
        let good_name = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        if !good_name(&raw.name) {
            diags.push(
                Diagnostic::error(
                    item.loc_of("name"),
                    format!(
                        "agent name `{}` must be 1-64 letters, digits, `-`, `_` or `.`",
                        raw.name
                    ),
                )
                .hint("e.g. `eu-west-1`"),
            );
        }
        if !good_name(&raw.location) {
            diags.push(
                Diagnostic::error(
                    item.loc_of("location"),
                    format!(
                        "agent location `{}` must be 1-64 letters, digits, `-`, `_` or `.`",
                        raw.location
                    ),
                )
                .hint("e.g. `eu-west`"),
            );
        }
        let hash = raw.token_sha256.trim().to_ascii_lowercase();
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            diags.push(
                Diagnostic::error(item.loc_of("token_sha256"), format!("agent `{}`: `token_sha256` must be 64 hex digits (a SHA-256)", raw.name))
                    .hint("run `portwarden agent-token` and paste the hash it prints; the token goes to the agent"),
            );
        }
        if out.iter().any(|a| a.name == raw.name) {
            diags.push(
                Diagnostic::error(
                    item.loc_of("name"),
                    format!("duplicate agent name `{}`", raw.name),
                )
                .hint("agent names must be unique"),
            );
        }
        if out.iter().any(|a| a.token_sha256 == hash) {
            diags.push(
                Diagnostic::error(
                    item.loc_of("token_sha256"),
                    format!("agent `{}` has the same token as another agent", raw.name),
                )
                .hint("give every agent its own token (`portwarden agent-token`)"),
            );
        }
        out.push(AgentEntry {
            name: raw.name,
            location: raw.location,
            token_sha256: hash,
            revoked: raw.revoked,
        });
    }
    (!diags[before..].iter().any(|d| d.level == Level::Error)).then_some(out)
}

/// Resolves one monitor written as a located YAML mapping (the shape of a `monitors:` item)
/// against `config`'s tiers, rules and defaults: how discovery turns a rendered template into
/// a [`Monitor`]. Errors and warnings are located at the mapping's nodes.
pub fn monitor_from_node(
    config: &Config,
    node: &Node,
    file: &str,
) -> Result<(Monitor, Vec<Diagnostic>), Vec<Diagnostic>> {
    let sink = Sink::default();
    let mut diags = Vec::new();
    let monitor = match from_node::<RawMonitor>(node, &sink) {
        Ok(raw) => resolve_monitor(
            raw,
            node,
            file,
            &config.tiers,
            &config.tier_rules,
            &config.defaults,
            &mut diags,
        ),
        Err(e) => {
            diags.push(e.into_diagnostic());
            None
        }
    };
    diags.extend(sink.take());
    match monitor {
        Some(m) if !diags.iter().any(|d| d.level == Level::Error) => Ok((m, diags)),
        _ => Err(diags),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let text = "tiers:\n  important: {interval: 30s}\nmonitors:\n  - name: a\n    target: tcp://127.0.0.1:1\n  - name: b\n    target: udp://[::1]:53\n    tier: supporting\n    timeout: 2s\n    check: {type: udp, expect: x}\n";
        let c = load_str(text, "t.yaml").unwrap().config;
        assert_eq!(c.monitors[0].interval, Duration::from_secs(30));
        assert_eq!(c.monitors[0].timeout, Duration::from_secs(7));
        assert_eq!(c.monitors[0].meta.severity, portwarden_core::Severity::High);
        assert_eq!(c.monitors[1].interval, Duration::from_secs(180));
        assert_eq!(c.monitors[1].timeout, Duration::from_secs(2));
        assert_eq!(c.monitors[1].transport(), Transport::Udp);
    }

    #[test]
    fn store_selects_postgres_by_url_or_mapping() {
        let c = load_str("store: postgres://pw@db:5432/portwarden\n", "t.yaml")
            .unwrap()
            .config;
        assert_eq!(
            c.store.url.as_ref().map(|s| s.expose()),
            Some("postgres://pw@db:5432/portwarden")
        );
        assert_eq!(c.store.takeover, Duration::from_secs(15));
        // SAFETY: single-threaded test setting a variable only this test reads.
        unsafe { std::env::set_var("PW_TEST_STORE_PASSWORD", "hunter2-secret") };
        let c = load_str(
            "store:\n  url: postgresql://pw:${env:PW_TEST_STORE_PASSWORD}@db/pw\n  takeover: 20s\n  retention: {raw: 2d}\n",
            "t.yaml",
        )
        .unwrap()
        .config;
        let url = c.store.url.as_ref().unwrap();
        assert_eq!(url.expose(), "postgresql://pw:hunter2-secret@db/pw");
        assert!(
            !format!("{:?}", c.store).contains("hunter2"),
            "the password prints"
        );
        assert_eq!(c.store.takeover, Duration::from_secs(20));
        assert_eq!(c.retention.raw, Duration::from_secs(2 * 86_400));
        // absent: SQLite
        assert!(
            load_str("monitors: []\n", "t.yaml")
                .unwrap()
                .config
                .store
                .url
                .is_none()
        );
        // located errors
        let e = load_str("monitors: []\nstore: mysql://db/x\n", "t.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.yaml:2:") && e.contains("postgres://"), "{e}");
        let e = load_str("store:\n  url: sqlite:x\n", "t.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.yaml:2:"), "{e}");
        let e = load_str("store:\n  url: postgres://db/x\n  takeover: 1s\n", "t.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.yaml:3:") && e.contains("at least 3s"), "{e}");
        let e = load_str("store:\n  urll: postgres://db/x\n", "t.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("did you mean `url`"), "{e}");
    }

    #[test]
    fn scheme_must_fit_the_check() {
        let e = load_str(
            "monitors:\n  - name: a\n    target: udp://h:1\n    check: tcp\n",
            "t.yaml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("does not fit"), "{e}");
        let ok = load_str("monitors:\n  - name: a\n    target: tls://h:1\n    check: {type: send_expect, steps: [{expect: x}]}\n", "t.yaml").unwrap();
        match &ok.config.monitors[0].check {
            CheckSpec::SendExpect(se) => assert_eq!(se.transport, Some(SeTransport::Tls)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn udp_without_expect_warns() {
        let l = load_str("monitors:\n  - name: a\n    target: udp://h:1\n", "t.yaml").unwrap();
        assert_eq!(l.warnings.len(), 1);
        assert!(
            l.render_warnings().contains("t.yaml:3:"),
            "{}",
            l.render_warnings()
        );
    }

    #[test]
    fn unknown_sections_and_bad_shapes() {
        let e = load_str("monitor:\n  - name: a\n", "t.yaml").unwrap_err();
        assert!(e.to_string().contains("did you mean `monitors`?"), "{e}");
        let e = load_str("monitors: 3\n", "t.yaml").unwrap_err();
        assert!(e.to_string().contains("must be a list"), "{e}");
        let e = load_str("- a\n", "t.yaml").unwrap_err();
        assert!(e.to_string().contains("must be a mapping"), "{e}");
        let e = load_str("monitors: [\n", "t.yaml").unwrap_err();
        assert!(e.to_string().contains("invalid YAML"), "{e}");
    }

    #[test]
    fn bad_check_options_are_located() {
        let e = load_str(
            "monitors:\n  - name: a\n    target: tcp://h:1\n    check:\n      type: send_expect\n      steps:\n        - expect_regex: \"(\"\n",
            "t.yaml",
        )
        .unwrap_err();
        let s = e.to_string();
        assert!(
            s.contains("t.yaml:7:") && s.contains("invalid regular expression"),
            "{s}"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_text_gives_a_config_or_located_errors(s in "\\PC{0,300}") {
            if let Err(d) = load_str(&s, "p.yaml") {
                proptest::prop_assert!(!d.items.is_empty());
            }
        }

        #[test]
        fn monitor_shaped_noise(name in "[a-z<>&\"]{1,12}", port in 0u32..70000, interval in "[0-9]{1,3}(s|ms|m|x)?") {
            let text = format!("monitors:\n  - name: \"{name}\"\n    target: tcp://127.0.0.1:{port}\n    interval: {interval}\n");
            let _ = load_str(&text, "p.yaml");
        }
    }
}

#[cfg(test)]
mod agent_tests {
    use super::*;

    const HASH: &str = "c2b429b47d56dbe3d12d92ca2ec3239e1539ce9d9b741cb81c20b1ab1e42a63d";

    #[test]
    fn agents_locations_and_confirm() {
        let text = format!(
            "monitors:\n  - name: db\n    target: tcp://10.0.0.1:5432\n    locations: [eu, us]\n    confirm: {{min_locations: 2, regional_severity: low}}\nagents:\n  - {{name: eu-1, location: eu, token_sha256: {HASH}}}\n  - {{name: us-1, location: us, token_sha256: \"{}\"}}\n",
            HASH.replace('c', "d")
        );
        let l = load_str(&text, "t.yaml").unwrap();
        let m = &l.config.monitors[0];
        assert_eq!(m.locations, vec!["eu", "us"]);
        assert_eq!(m.confirm.min_locations, Some(2));
        assert_eq!(
            m.confirm.regional_severity,
            Some(portwarden_core::Severity::Low)
        );
        assert!(m.runs_at("eu") && !m.runs_at("local"));
        assert_eq!(l.config.all_locations(), vec!["eu", "local", "us"]);
        assert_eq!(l.config.agents[0].name, "eu-1");
    }

    #[test]
    fn agent_mistakes_are_located() {
        let text = "agents:\n  - {name: a, location: eu, token_sha256: abc}\n  - {name: a, location: eu, token_sha256: nothex, colour: red}\n";
        let e = load_str(text, "t.yaml").unwrap_err().to_string();
        assert!(e.contains("t.yaml:2:"), "{e}");
        assert!(e.contains("64 hex digits"), "{e}");
        assert!(e.contains("colour"), "{e}");
        let text = "monitors:\n  - name: db\n    target: tcp://h:1\n    locations: []\n";
        let e = load_str(text, "t.yaml").unwrap_err().to_string();
        assert!(e.contains("t.yaml:4:"), "{e}");
        let text = "monitors:\n  - name: db\n    target: tcp://h:1\n    locations: [eu-wset]\nagents:\n  - {name: a, location: eu-west, token_sha256: c2b429b47d56dbe3d12d92ca2ec3239e1539ce9d9b741cb81c20b1ab1e42a63d}\n";
        let l = load_str(text, "t.yaml").unwrap();
        let w = l.render_warnings();
        assert!(w.contains("t.yaml:4:") && w.contains("eu-west"), "{w}");
    }
}

#[cfg(test)]
mod availability_target_tests {
    use super::*;

    fn load(yaml: &str) -> Result<Config, String> {
        load_str(yaml, "t.yaml")
            .map(|l| l.config)
            .map_err(|d| d.to_string())
    }

    #[test]
    fn targets_are_percentages_with_a_default() {
        let c = load(
            "defaults: {availability_target: \"99.5%\"}\nmonitors:\n  - {name: a, target: \"tcp://h:1\", availability_target: 99.95}\n  - {name: b, target: \"tcp://h:2\"}\n",
        )
        .unwrap();
        assert_eq!(c.monitors[0].availability_target, Some(99.95));
        assert_eq!(c.monitors[1].availability_target, Some(99.5));
        let c = load("monitors:\n  - {name: a, target: \"tcp://h:1\"}\n").unwrap();
        assert_eq!(c.monitors[0].availability_target, None);

        let e = load(
            "monitors:\n  - name: a\n    target: \"tcp://h:1\"\n    availability_target: 150\n",
        )
        .unwrap_err();
        assert!(
            e.contains("t.yaml:4:") && e.contains("`availability_target` 150 is not a percentage"),
            "{e}"
        );
        let e = load(
            "monitors:\n  - name: a\n    target: \"tcp://h:1\"\n    availability_target: lots\n",
        )
        .unwrap_err();
        assert!(e.contains("`lots` is not a percentage"), "{e}");
    }
}
