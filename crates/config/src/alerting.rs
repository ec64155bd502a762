//! The alerting sections: `routes:` (who hears about which incident, grouped, repeated and
//! escalated), `maintenance:` (windows in which nothing notifies), `heartbeat:` (a dead man's
//! switch) and `notifications:` (delivery settings). Receivers themselves (`receivers:`) belong
//! to `portwarden-notify`; here route receivers are only checked to exist.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use portwarden_core::duration::serde_human::option as opt_dur;
use portwarden_core::{MonitorMeta, Secret, Severity, Tier};
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use crate::Diagnostic;
use crate::de::{Sink, from_node};
use crate::diag;
use crate::node::{Node, NodeKind};

/// A string or a list of strings (`severity: critical` or `severity: [critical, high]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OneOrMany(pub Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![s.to_string()]))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![v.to_string()]))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![v.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<OneOrMany, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = a.next_element::<String>()? {
                    out.push(s);
                }
                Ok(OneOrMany(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    #[serde(default)]
    pub tier: OneOrMany,
    #[serde(default)]
    pub severity: OneOrMany,
    #[serde(default)]
    pub owner: OneOrMany,
    #[serde(default)]
    pub service: OneOrMany,
    #[serde(default)]
    pub monitor: OneOrMany,
    /// `global` and/or `regional` (incidents seen from fewer locations than the quorum).
    #[serde(default)]
    pub scope: OneOrMany,
    /// Every label given must be present with this value.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: String,
    /// Omitted: matches every incident.
    #[serde(default, rename = "match")]
    pub matcher: Option<RawMatch>,
    pub receivers: OneOrMany,
    #[serde(default)]
    pub group_by: OneOrMany,
    #[serde(default, with = "opt_dur")]
    pub group_wait: Option<Duration>,
    #[serde(default, with = "opt_dur")]
    pub repeat_interval: Option<Duration>,
    #[serde(default, with = "opt_dur")]
    pub escalate_after: Option<Duration>,
    #[serde(default)]
    pub escalate_to: Option<String>,
    /// Keep looking for further matching routes after this one (default false).
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
    /// Used when no other route matched.
    #[serde(default)]
    pub default: bool,
    /// Only reached through another route's `escalate_to`, never matched directly.
    #[serde(default)]
    pub escalation_only: bool,
    /// Also tell this route's receivers when the incident resolves (default true).
    #[serde(default)]
    pub send_resolved: Option<bool>,
}

/// What a route matches; every given criterion must hold (empty lists match anything).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteMatch {
    pub tiers: Vec<Tier>,
    pub severities: Vec<Severity>,
    pub owners: Vec<String>,
    pub services: Vec<String>,
    pub monitors: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// `global`, `regional`; empty: both.
    pub scopes: Vec<String>,
}

impl RouteMatch {
    /// Whether a global incident of this monitor, at its own severity, takes this route.
    pub fn matches(&self, monitor: &str, tier: Tier, meta: &MonitorMeta) -> bool {
        self.matches_incident(monitor, tier, meta, meta.severity, "global")
    }

    /// Whether an incident of `scope` (`global`, `regional`) at `severity` (a regional
    /// incident's is `confirm.regional_severity`) takes this route.
    pub fn matches_incident(
        &self,
        monitor: &str,
        tier: Tier,
        meta: &MonitorMeta,
        severity: Severity,
        scope: &str,
    ) -> bool {
        let opt_in = |list: &[String], v: &Option<String>| {
            list.is_empty() || v.as_deref().is_some_and(|v| list.iter().any(|x| x == v))
        };
        (self.tiers.is_empty() || self.tiers.contains(&tier))
            && (self.scopes.is_empty() || self.scopes.iter().any(|s| s == scope))
            && (self.severities.is_empty() || self.severities.contains(&severity))
            && (self.monitors.is_empty() || self.monitors.iter().any(|m| m == monitor))
            && opt_in(&self.owners, &meta.owner)
            && opt_in(&self.services, &meta.service)
            && self
                .labels
                .iter()
                .all(|(k, v)| meta.labels.get(k).is_some_and(|x| x == v))
    }
}

/// What incidents of one route are grouped by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GroupBy {
    Host,
    Service,
    Owner,
    Severity,
    Label(String),
}

impl GroupBy {
    pub const NAMES: &[&str] = &["host", "service", "owner", "severity", "label:NAME"];

    fn parse(s: &str) -> Option<GroupBy> {
        match s {
            "host" => Some(GroupBy::Host),
            "service" => Some(GroupBy::Service),
            "owner" => Some(GroupBy::Owner),
            "severity" => Some(GroupBy::Severity),
            _ => s
                .strip_prefix("label:")
                .filter(|l| !l.is_empty())
                .map(|l| GroupBy::Label(l.to_string())),
        }
    }

    pub fn as_string(&self) -> String {
        match self {
            GroupBy::Host => "host".into(),
            GroupBy::Service => "service".into(),
            GroupBy::Owner => "owner".into(),
            GroupBy::Severity => "severity".into(),
            GroupBy::Label(l) => format!("label:{l}"),
        }
    }

    /// This criterion's value for a monitor (`-` when it has none).
    pub fn value_of(&self, host: &str, meta: &MonitorMeta) -> String {
        match self {
            GroupBy::Host => host.to_string(),
            GroupBy::Service => meta.service.clone().unwrap_or_else(|| "-".into()),
            GroupBy::Owner => meta.owner.clone().unwrap_or_else(|| "-".into()),
            GroupBy::Severity => meta.severity.as_str().to_string(),
            GroupBy::Label(l) => meta.labels.get(l).cloned().unwrap_or_else(|| "-".into()),
        }
    }
}

/// A named route (`routes:` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub name: String,
    pub matcher: RouteMatch,
    pub receivers: Vec<String>,
    /// Empty: every incident is its own message.
    pub group_by: Vec<GroupBy>,
    /// How long the first incident of a group waits for others (default 10s with `group_by`,
    /// else 0).
    pub group_wait: Duration,
    /// Send the trigger again this often while unresolved and unacknowledged.
    pub repeat_interval: Option<Duration>,
    /// Unacknowledged after this long → the `escalate_to` route is notified.
    pub escalate_after: Option<Duration>,
    pub escalate_to: Option<String>,
    pub continue_matching: bool,
    pub default: bool,
    pub escalation_only: bool,
    pub send_resolved: bool,
}

/// `maintenance:` time: one-off or recurring.
#[derive(Debug, Clone)]
pub enum WindowTime {
    OneOff {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
    Recurring {
        /// The cron pattern as written (`0 2 * * SUN`).
        pattern: String,
        cron: Box<croner::Cron>,
        tz: chrono_tz::Tz,
        duration: Duration,
    },
}

impl PartialEq for WindowTime {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (WindowTime::OneOff { start, end }, WindowTime::OneOff { start: s2, end: e2 }) => {
                start == s2 && end == e2
            }
            (
                WindowTime::Recurring {
                    pattern,
                    tz,
                    duration,
                    ..
                },
                WindowTime::Recurring {
                    pattern: p2,
                    tz: t2,
                    duration: d2,
                    ..
                },
            ) => pattern == p2 && tz == t2 && duration == d2,
            _ => false,
        }
    }
}

impl WindowTime {
    /// The window occurrence that contains `at`, as `[start, end)`.
    pub fn active_at(&self, at: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        match self {
            WindowTime::OneOff { start, end } => {
                (*start <= at && at < *end).then_some((*start, *end))
            }
            WindowTime::Recurring {
                cron, tz, duration, ..
            } => {
                let local = at.with_timezone(tz);
                let prev = cron.find_previous_occurrence(&local, true).ok()?;
                let start = prev.with_timezone(&Utc);
                let end = start + chrono::Duration::from_std(*duration).ok()?;
                (start <= at && at < end).then_some((start, end))
            }
        }
    }
}

/// Which monitors a maintenance window covers (any of the lists).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaintenanceScope {
    pub monitors: Vec<String>,
    pub hosts: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// `all: true`: every monitor.
    pub all: bool,
}

impl MaintenanceScope {
    pub fn covers(&self, monitor: &str, host: &str, meta: &MonitorMeta) -> bool {
        self.all
            || self.monitors.iter().any(|m| m == monitor)
            || self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
            || (!self.labels.is_empty()
                && self
                    .labels
                    .iter()
                    .all(|(k, v)| meta.labels.get(k).is_some_and(|x| x == v)))
    }
}

/// One `maintenance:` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct MaintenanceWindow {
    pub name: String,
    pub time: WindowTime,
    pub scope: MaintenanceScope,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMaintenance {
    pub name: String,
    /// One-off: RFC 3339 start and end.
    #[serde(default)]
    pub start: Option<String>,
    #[serde(default)]
    pub end: Option<String>,
    /// Recurring: a cron pattern (5 fields, or 6 with seconds first) ...
    #[serde(default)]
    pub schedule: Option<String>,
    /// ... read in this IANA time zone (default UTC) ...
    #[serde(default)]
    pub timezone: Option<String>,
    /// ... lasting this long.
    #[serde(default, with = "opt_dur")]
    pub duration: Option<Duration>,
    #[serde(default)]
    pub monitors: OneOrMany,
    #[serde(default)]
    pub hosts: OneOrMany,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub all: bool,
    #[serde(default)]
    pub reason: Option<String>,
}

/// `heartbeat:` — the dead man's switch.
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    /// A receiver that gets a `heartbeat` notification ...
    pub receiver: Option<String>,
    /// ... or a URL (healthchecks-style) that gets a GET.
    pub url: Option<Secret>,
    pub interval: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeartbeat {
    #[serde(default)]
    pub receiver: Option<String>,
    #[serde(default)]
    pub url: Option<Secret>,
    #[serde(default, with = "opt_dur")]
    pub interval: Option<Duration>,
}

/// `notifications:` — delivery settings.
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationSettings {
    /// A notification not delivered after this long is given up and marked (default 24h).
    pub give_up_after: Duration,
    /// First retry delay (default 1s), doubled per attempt up to `backoff_max` (default 5m).
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Base URL of the UI as responders reach it, for incident and acknowledge links
    /// (default: `http://` + `server.listen`).
    pub public_url: Option<String>,
    /// How long a signed acknowledge link works (default 7 days).
    pub ack_link_ttl: Duration,
    /// How often the dispatcher looks for due rows when nothing wakes it (default 1s).
    pub poll: Duration,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        NotificationSettings {
            give_up_after: Duration::from_secs(24 * 3600),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            public_url: None,
            ack_link_ttl: Duration::from_secs(7 * 86_400),
            poll: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotifications {
    #[serde(default, with = "opt_dur")]
    pub give_up_after: Option<Duration>,
    #[serde(default, with = "opt_dur")]
    pub backoff_initial: Option<Duration>,
    #[serde(default, with = "opt_dur")]
    pub backoff_max: Option<Duration>,
    #[serde(default)]
    pub public_url: Option<String>,
    #[serde(default, with = "opt_dur")]
    pub ack_link_ttl: Option<Duration>,
    #[serde(default, with = "opt_dur")]
    pub poll: Option<Duration>,
}

/// Every alerting section, resolved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertingSettings {
    pub routes: Vec<Route>,
    pub maintenance: Vec<MaintenanceWindow>,
    pub heartbeat: Option<Heartbeat>,
    pub notifications: NotificationSettings,
}

impl AlertingSettings {
    /// The routes an incident of this monitor goes to: matching routes in order (stopping at
    /// the first without `continue: true`), or the default routes when none matched.
    pub fn routes_for(&self, monitor: &str, tier: Tier, meta: &MonitorMeta) -> Vec<&Route> {
        self.routes_for_incident(monitor, tier, meta, meta.severity, "global")
    }

    /// The routes of an incident of `scope` at `severity` (see [`RouteMatch::matches_incident`]).
    pub fn routes_for_incident(
        &self,
        monitor: &str,
        tier: Tier,
        meta: &MonitorMeta,
        severity: Severity,
        scope: &str,
    ) -> Vec<&Route> {
        let mut out = Vec::new();
        for r in self
            .routes
            .iter()
            .filter(|r| !r.escalation_only && !r.default)
        {
            if r.matcher
                .matches_incident(monitor, tier, meta, severity, scope)
            {
                out.push(r);
                if !r.continue_matching {
                    break;
                }
            }
        }
        if out.is_empty() {
            out.extend(self.routes.iter().filter(|r| r.default));
        }
        out
    }

    pub fn route(&self, name: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.name == name)
    }

    /// The maintenance window covering this monitor at `at`, with its end.
    pub fn maintenance_at(
        &self,
        monitor: &str,
        host: &str,
        meta: &MonitorMeta,
        at: DateTime<Utc>,
    ) -> Option<(&MaintenanceWindow, DateTime<Utc>)> {
        self.maintenance.iter().find_map(|w| {
            if !w.scope.covers(monitor, host, meta) {
                return None;
            }
            w.time.active_at(at).map(|(_, end)| (w, end))
        })
    }
}

fn receiver_names(root: &Node) -> Option<Vec<String>> {
    let n = root.get("receivers")?;
    match &n.kind {
        NodeKind::Map(entries) => Some(
            entries
                .iter()
                .filter_map(|(k, _)| k.as_str().map(str::to_string))
                .collect(),
        ),
        _ => Some(Vec::new()),
    }
}

/// Resolves `routes:`, `maintenance:`, `heartbeat:` and `notifications:`. `monitors` are the
/// written monitor names; `strict` is false when discovery may add more.
pub fn resolve(
    root: &Node,
    sink: &Sink,
    monitors: &HashSet<&str>,
    strict: bool,
    diags: &mut Vec<Diagnostic>,
) -> Option<AlertingSettings> {
    let before = diags.len();
    let receivers = receiver_names(root);
    let mut out = AlertingSettings::default();

    if let Some(n) = root.get("notifications").filter(|n| !n.is_null()) {
        match from_node::<RawNotifications>(n, sink) {
            Ok(raw) => {
                let d = NotificationSettings::default();
                let s = NotificationSettings {
                    give_up_after: raw.give_up_after.unwrap_or(d.give_up_after),
                    backoff_initial: raw.backoff_initial.unwrap_or(d.backoff_initial),
                    backoff_max: raw.backoff_max.unwrap_or(d.backoff_max),
                    public_url: raw.public_url.map(|u| u.trim_end_matches('/').to_string()),
                    ack_link_ttl: raw.ack_link_ttl.unwrap_or(d.ack_link_ttl),
                    poll: raw.poll.unwrap_or(d.poll),
                };
                if s.backoff_initial.is_zero() || s.backoff_initial > s.backoff_max {
                    diags.push(
                        Diagnostic::error(
                            n.loc_of("backoff_initial"),
                            "`notifications.backoff_initial` must be above zero and at most `backoff_max`",
                        )
                        .hint("e.g. `backoff_initial: 1s` and `backoff_max: 5m`"),
                    );
                }
                if s.give_up_after < s.backoff_initial {
                    diags.push(
                        Diagnostic::error(
                            n.loc_of("give_up_after"),
                            "`notifications.give_up_after` is shorter than the first retry delay",
                        )
                        .hint("give delivery time to retry, e.g. `give_up_after: 24h`"),
                    );
                }
                if s.poll.is_zero() {
                    diags.push(
                        Diagnostic::error(
                            n.loc_of("poll"),
                            "`notifications.poll` must be above zero",
                        )
                        .hint("1s suits most setups"),
                    );
                }
                if let Some(u) = &s.public_url
                    && !(u.starts_with("http://") || u.starts_with("https://"))
                {
                    diags.push(
                        Diagnostic::error(
                            n.loc_of("public_url"),
                            format!("`notifications.public_url` `{u}` is not an http(s) URL"),
                        )
                        .hint(
                            "write the URL responders open, e.g. `https://portwarden.example.com`",
                        ),
                    );
                }
                out.notifications = s;
            }
            Err(e) => diags.push(e.into_diagnostic()),
        }
    }

    if let Some(n) = root.get("routes").filter(|n| !n.is_null()) {
        match &n.kind {
            NodeKind::Seq(items) => {
                let mut raws = Vec::new();
                for item in items {
                    match from_node::<RawRoute>(item, sink) {
                        Ok(r) => raws.push((r, item)),
                        Err(e) => diags.push(e.into_diagnostic()),
                    }
                }
                let names: Vec<&str> = raws.iter().map(|(r, _)| r.name.as_str()).collect();
                let mut seen = HashSet::new();
                for (raw, item) in &raws {
                    if !seen.insert(raw.name.as_str()) {
                        diags.push(
                            Diagnostic::error(
                                item.loc_of("name"),
                                format!("duplicate route name `{}`", raw.name),
                            )
                            .hint("route names must be unique: rename one of them"),
                        );
                    }
                    if let Some(r) = resolve_route(
                        raw,
                        item,
                        &names,
                        receivers.as_deref(),
                        monitors,
                        strict,
                        diags,
                    ) {
                        out.routes.push(r);
                    }
                }
                // Escalation chains must end.
                for r in &out.routes {
                    let mut at = r;
                    let mut hops = 0;
                    while let Some(next) = at.escalate_to.as_deref().and_then(|n| out.route(n)) {
                        hops += 1;
                        if hops > out.routes.len() {
                            let loc = raws
                                .iter()
                                .find(|(x, _)| x.name == r.name)
                                .map(|(_, i)| i.loc_of("escalate_to"));
                            diags.push(
                                Diagnostic::error(loc, format!("route `{}`: its escalation chain loops", r.name))
                                    .hint("the last route of an escalation chain must have no `escalate_to`"),
                            );
                            break;
                        }
                        at = next;
                    }
                }
            }
            _ => diags.push(
                Diagnostic::error(
                    n.loc,
                    format!("`routes` must be a list, found {}", n.describe()),
                )
                .hint("write each route as a list item starting with `- name: ...`"),
            ),
        }
    }

    if let Some(n) = root.get("maintenance").filter(|n| !n.is_null()) {
        match &n.kind {
            NodeKind::Seq(items) => {
                for item in items {
                    match from_node::<RawMaintenance>(item, sink) {
                        Ok(raw) => {
                            if let Some(w) = resolve_window(raw, item, monitors, strict, diags) {
                                out.maintenance.push(w);
                            }
                        }
                        Err(e) => diags.push(e.into_diagnostic()),
                    }
                }
            }
            _ => diags.push(
                Diagnostic::error(
                    n.loc,
                    format!("`maintenance` must be a list, found {}", n.describe()),
                )
                .hint("write each window as a list item starting with `- name: ...`"),
            ),
        }
    }

    if let Some(n) = root.get("heartbeat").filter(|n| !n.is_null()) {
        match from_node::<RawHeartbeat>(n, sink) {
            Ok(raw) => {
                let interval = raw.interval.unwrap_or(Duration::from_secs(60));
                if raw.receiver.is_some() == raw.url.is_some() {
                    diags.push(
                        Diagnostic::error(
                            n.loc,
                            "`heartbeat` needs exactly one of `receiver` and `url`",
                        )
                        .hint("e.g. `heartbeat: {url: \"${env:HC_PING_URL}\", interval: 1m}`"),
                    );
                }
                if let (Some(r), Some(known)) = (&raw.receiver, &receivers)
                    && !known.iter().any(|k| k == r)
                {
                    let cands: Vec<&str> = known.iter().map(String::as_str).collect();
                    diags.push(
                        Diagnostic::error(
                            n.loc_of("receiver"),
                            format!("`heartbeat.receiver`: unknown receiver `{r}`"),
                        )
                        .hint(diag::did_you_mean(r, &cands)),
                    );
                } else if raw.receiver.is_some() && receivers.is_none() {
                    diags.push(
                        Diagnostic::error(n.loc_of("receiver"), "`heartbeat.receiver` names a receiver but there is no `receivers:` section")
                            .hint("define the receiver under `receivers:`"),
                    );
                }
                if interval < Duration::from_secs(1) {
                    diags.push(
                        Diagnostic::error(
                            n.loc_of("interval"),
                            "`heartbeat.interval` must be at least 1s",
                        )
                        .hint("a heartbeat every minute suits healthchecks-style services"),
                    );
                }
                out.heartbeat = Some(Heartbeat {
                    receiver: raw.receiver,
                    url: raw.url,
                    interval,
                });
            }
            Err(e) => diags.push(e.into_diagnostic()),
        }
    }

    (!diags[before..]
        .iter()
        .any(|d| d.level == crate::Level::Error))
    .then_some(out)
}

fn check_monitor_names(
    names: &[String],
    node: &Node,
    field: &str,
    what: &str,
    monitors: &HashSet<&str>,
    strict: bool,
    diags: &mut Vec<Diagnostic>,
) {
    if !strict {
        return;
    }
    let cands: Vec<&str> = monitors.iter().copied().collect();
    for m in names {
        if !monitors.contains(m.as_str()) {
            diags.push(
                Diagnostic::error(node.loc_of(field), format!("{what}: unknown monitor `{m}`"))
                    .hint(diag::did_you_mean(m, &cands)),
            );
        }
    }
}

fn resolve_route(
    raw: &RawRoute,
    node: &Node,
    routes: &[&str],
    receivers: Option<&[String]>,
    monitors: &HashSet<&str>,
    strict: bool,
    diags: &mut Vec<Diagnostic>,
) -> Option<Route> {
    let before = diags.len();
    let name = &raw.name;
    let mut matcher = RouteMatch::default();
    if let Some(m) = &raw.matcher {
        for t in &m.tier.0 {
            match Tier::ALL.into_iter().find(|x| x.as_str() == t) {
                Some(t) => matcher.tiers.push(t),
                None => diags.push(
                    Diagnostic::error(
                        node.loc_of("match.tier"),
                        format!("route `{name}`: unknown tier `{t}`"),
                    )
                    .hint(diag::did_you_mean(
                        t,
                        &["critical", "important", "supporting"],
                    )),
                ),
            }
        }
        for s in &m.severity.0 {
            match Severity::parse(s) {
                Some(s) => matcher.severities.push(s),
                None => diags.push(
                    Diagnostic::error(
                        node.loc_of("match.severity"),
                        format!("route `{name}`: unknown severity `{s}`"),
                    )
                    .hint(diag::did_you_mean(
                        s,
                        &["critical", "high", "medium", "low", "info"],
                    )),
                ),
            }
        }
        for s in &m.scope.0 {
            match s.as_str() {
                "global" | "regional" => matcher.scopes.push(s.clone()),
                _ => diags.push(
                    Diagnostic::error(
                        node.loc_of("match.scope"),
                        format!("route `{name}`: unknown scope `{s}`"),
                    )
                    .hint(diag::did_you_mean(s, &["global", "regional"])),
                ),
            }
        }
        matcher.owners = m.owner.0.clone();
        matcher.services = m.service.0.clone();
        matcher.monitors = m.monitor.0.clone();
        matcher.labels = m.labels.clone();
        check_monitor_names(
            &matcher.monitors,
            node,
            "match.monitor",
            &format!("route `{name}`"),
            monitors,
            strict,
            diags,
        );
    }
    if raw.receivers.0.is_empty() {
        diags.push(
            Diagnostic::error(
                node.loc_of("receivers"),
                format!("route `{name}` has no receivers"),
            )
            .hint("name at least one receiver defined under `receivers:`"),
        );
    }
    match receivers {
        Some(known) => {
            let cands: Vec<&str> = known.iter().map(String::as_str).collect();
            for r in &raw.receivers.0 {
                if !known.iter().any(|k| k == r) {
                    diags.push(
                        Diagnostic::error(
                            node.loc_of("receivers"),
                            format!("route `{name}`: unknown receiver `{r}`"),
                        )
                        .hint(diag::did_you_mean(r, &cands)),
                    );
                }
            }
        }
        None if !raw.receivers.0.is_empty() => diags.push(
            Diagnostic::error(
                node.loc_of("receivers"),
                format!("route `{name}` names receivers but there is no `receivers:` section"),
            )
            .hint("define each receiver under `receivers:` (see docs/alerting.md)"),
        ),
        None => {}
    }
    let mut group_by = Vec::new();
    for g in &raw.group_by.0 {
        match GroupBy::parse(g) {
            Some(x) => group_by.push(x),
            None => diags.push(
                Diagnostic::error(
                    node.loc_of("group_by"),
                    format!("route `{name}`: cannot group by `{g}`"),
                )
                .hint(diag::did_you_mean(g, GroupBy::NAMES)),
            ),
        }
    }
    if let Some(to) = &raw.escalate_to {
        if !routes.contains(&to.as_str()) {
            diags.push(
                Diagnostic::error(
                    node.loc_of("escalate_to"),
                    format!("route `{name}`: `escalate_to` names unknown route `{to}`"),
                )
                .hint(diag::did_you_mean(to, routes)),
            );
        } else if to == name {
            diags.push(
                Diagnostic::error(
                    node.loc_of("escalate_to"),
                    format!("route `{name}` escalates to itself"),
                )
                .hint("name the next route of the escalation chain"),
            );
        }
        if raw.escalate_after.is_none() {
            diags.push(
                Diagnostic::error(
                    node.loc_of("escalate_to"),
                    format!("route `{name}`: `escalate_to` without `escalate_after`"),
                )
                .hint(
                    "say how long an incident may stay unacknowledged, e.g. `escalate_after: 15m`",
                ),
            );
        }
    } else if raw.escalate_after.is_some() {
        diags.push(
            Diagnostic::error(
                node.loc_of("escalate_after"),
                format!("route `{name}`: `escalate_after` without `escalate_to`"),
            )
            .hint("name the route to notify when nobody acknowledges"),
        );
    }
    if raw.default && raw.matcher.is_some() {
        diags.push(
            Diagnostic::error(node.loc_of("match"), format!("route `{name}`: a default route takes what no other route matched; it has no `match`"))
                .hint("remove `match:` or `default: true`"),
        );
    }
    for (field, d) in [
        ("repeat_interval", raw.repeat_interval),
        ("escalate_after", raw.escalate_after),
    ] {
        if d.is_some_and(|d| d < Duration::from_secs(1)) {
            diags.push(
                Diagnostic::error(
                    node.loc_of(field),
                    format!("route `{name}`: `{field}` must be at least 1s"),
                )
                .hint("e.g. `4h` for repeats, `15m` for escalation"),
            );
        }
    }
    if diags[before..]
        .iter()
        .any(|d| d.level == crate::Level::Error)
    {
        return None;
    }
    let group_wait = raw.group_wait.unwrap_or(if group_by.is_empty() {
        Duration::ZERO
    } else {
        Duration::from_secs(10)
    });
    Some(Route {
        name: name.clone(),
        matcher,
        receivers: raw.receivers.0.clone(),
        group_by,
        group_wait,
        repeat_interval: raw.repeat_interval,
        escalate_after: raw.escalate_after,
        escalate_to: raw.escalate_to.clone(),
        continue_matching: raw.continue_matching,
        default: raw.default,
        escalation_only: raw.escalation_only,
        send_resolved: raw.send_resolved.unwrap_or(true),
    })
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn resolve_window(
    raw: RawMaintenance,
    node: &Node,
    monitors: &HashSet<&str>,
    strict: bool,
    diags: &mut Vec<Diagnostic>,
) -> Option<MaintenanceWindow> {
    let before = diags.len();
    let name = &raw.name;
    let time = match (&raw.start, &raw.end, &raw.schedule) {
        (Some(s), Some(e), None) => {
            let start = parse_time(s);
            let end = parse_time(e);
            for (field, v, t) in [("start", s, start), ("end", e, end)] {
                if t.is_none() {
                    diags.push(
                        Diagnostic::error(
                            node.loc_of(field),
                            format!("maintenance `{name}`: `{v}` is not an RFC 3339 time"),
                        )
                        .hint("write e.g. `2026-12-01T22:00:00Z` or `2026-12-01T23:00:00+01:00`"),
                    );
                }
            }
            match (start, end) {
                (Some(start), Some(end)) if end > start => Some(WindowTime::OneOff { start, end }),
                (Some(_), Some(_)) => {
                    diags.push(
                        Diagnostic::error(
                            node.loc_of("end"),
                            format!("maintenance `{name}`: `end` is not after `start`"),
                        )
                        .hint("a window must last a while"),
                    );
                    None
                }
                _ => None,
            }
        }
        (None, None, Some(pattern)) => {
            let cron = croner::parser::CronParser::builder()
                .seconds(croner::parser::Seconds::Optional)
                .build()
                .parse(pattern);
            let tz = match raw.timezone.as_deref() {
                None => Some(chrono_tz::UTC),
                Some(t) => match t.parse::<chrono_tz::Tz>() {
                    Ok(tz) => Some(tz),
                    Err(_) => {
                        diags.push(
                            Diagnostic::error(
                                node.loc_of("timezone"),
                                format!("maintenance `{name}`: unknown time zone `{t}`"),
                            )
                            .hint("write an IANA zone name such as `Europe/Berlin` or `UTC`"),
                        );
                        None
                    }
                },
            };
            let duration = match raw.duration {
                Some(d) if !d.is_zero() => Some(d),
                _ => {
                    diags.push(
                        Diagnostic::error(
                            node.loc_of("schedule"),
                            format!("maintenance `{name}`: a recurring window needs `duration`"),
                        )
                        .hint("e.g. `duration: 1h`"),
                    );
                    None
                }
            };
            match cron {
                Ok(c) => match (tz, duration) {
                    (Some(tz), Some(duration)) => Some(WindowTime::Recurring {
                        pattern: pattern.clone(),
                        cron: Box::new(c),
                        tz,
                        duration,
                    }),
                    _ => None,
                },
                Err(e) => {
                    diags.push(
                        Diagnostic::error(node.loc_of("schedule"), format!("maintenance `{name}`: invalid cron pattern `{pattern}`: {e}"))
                            .hint("five fields: minute hour day-of-month month day-of-week, e.g. `0 2 * * SUN`"),
                    );
                    None
                }
            }
        }
        _ => {
            diags.push(
                Diagnostic::error(node.loc, format!("maintenance `{name}`: give either `start` and `end`, or `schedule` with `duration`"))
                    .hint("one-off: `start: 2026-12-01T22:00:00Z` + `end: ...`; recurring: `schedule: \"0 2 * * SUN\"` + `duration: 2h`"),
            );
            None
        }
    };
    if raw.start.is_some() && (raw.timezone.is_some() || raw.duration.is_some()) {
        diags.push(
            Diagnostic::error(node.loc_of("start"), format!("maintenance `{name}`: `timezone` and `duration` belong to recurring windows (`schedule`)"))
                .hint("write the offset into `start`/`end` instead"),
        );
    }
    let scope = MaintenanceScope {
        monitors: raw.monitors.0,
        hosts: raw.hosts.0,
        labels: raw.labels,
        all: raw.all,
    };
    if !scope.all && scope.monitors.is_empty() && scope.hosts.is_empty() && scope.labels.is_empty()
    {
        diags.push(
            Diagnostic::error(node.loc, format!("maintenance `{name}` covers no monitor"))
                .hint("add `monitors:`, `hosts:`, `labels:` or `all: true`"),
        );
    }
    check_monitor_names(
        &scope.monitors,
        node,
        "monitors",
        &format!("maintenance `{name}`"),
        monitors,
        strict,
        diags,
    );
    if diags[before..]
        .iter()
        .any(|d| d.level == crate::Level::Error)
    {
        return None;
    }
    Some(MaintenanceWindow {
        name: name.clone(),
        time: time?,
        scope,
        reason: raw.reason,
    })
}

#[cfg(test)]
mod tests {
    use crate::load_str;

    const RECV: &str = "receivers:\n  hook: {type: webhook, url: \"http://127.0.0.1:1/x\"}\n  pager: {type: webhook, url: \"http://127.0.0.1:1/y\"}\n";

    fn load(extra: &str) -> Result<crate::Config, String> {
        let text = format!(
            "monitors:\n  - name: db\n    target: tcp://db1:5432\n    owner: dba\n    tier: critical\n    labels: {{env: prod}}\n  - name: web\n    target: tcp://web1:80\n{RECV}{extra}"
        );
        load_str(&text, "a.yaml")
            .map(|l| l.config)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn routes_match_in_order_with_default() {
        let c = load("routes:\n  - name: dba\n    match: {owner: dba, severity: [critical, high], labels: {env: prod}}\n    receivers: pager\n    group_by: host\n    escalate_after: 15m\n    escalate_to: boss\n  - name: boss\n    escalation_only: true\n    receivers: [pager]\n  - name: rest\n    default: true\n    receivers: [hook]\n").unwrap();
        let a = &c.alerting;
        let db = c.monitor("db").unwrap();
        let r = a.routes_for("db", db.tier, &db.meta);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].name, "dba");
        assert_eq!(r[0].group_wait.as_secs(), 10);
        let web = c.monitor("web").unwrap();
        let r = a.routes_for("web", web.tier, &web.meta);
        assert_eq!(
            r.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["rest"]
        );
    }

    #[test]
    fn routes_match_the_scope_and_the_incidents_severity() {
        use portwarden_core::Severity;
        let c = load("routes:\n  - name: net\n    match: {scope: regional}\n    receivers: hook\n  - name: page\n    match: {scope: global, severity: critical}\n    receivers: pager\n  - name: rest\n    default: true\n    receivers: hook\n").unwrap();
        let a = &c.alerting;
        let db = c.monitor("db").unwrap();
        let names = |r: Vec<&super::Route>| r.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(a.routes_for_incident("db", db.tier, &db.meta, Severity::Critical, "global")),
            ["page"]
        );
        assert_eq!(
            names(a.routes_for_incident("db", db.tier, &db.meta, Severity::High, "regional")),
            ["net"]
        );
        // A global incident below critical: no match, the default route.
        assert_eq!(
            names(a.routes_for_incident("db", db.tier, &db.meta, Severity::High, "global")),
            ["rest"]
        );
        let e = load("routes:\n  - name: net\n    match: {scope: regionl}\n    receivers: hook\n")
            .unwrap_err();
        assert!(
            e.contains("unknown scope `regionl`")
                && e.contains("regional")
                && e.contains("a.yaml:"),
            "{e}"
        );
    }

    #[test]
    fn route_errors_are_located() {
        let e = load("routes:\n  - name: a\n    receivers: [hokk]\n    group_by: hots\n    escalate_to: nope\n").unwrap_err();
        assert!(
            e.contains("unknown receiver `hokk`") && e.contains("did you mean `hook`?"),
            "{e}"
        );
        assert!(
            e.contains("cannot group by `hots`") && e.contains("did you mean `host`?"),
            "{e}"
        );
        assert!(e.contains("unknown route `nope`"), "{e}");
        assert!(e.contains("a.yaml:14:"), "{e}");
        let e = load("routes:\n  - name: a\n    receivers: hook\n    escalate_after: 1m\n    escalate_to: b\n  - name: b\n    receivers: hook\n    escalate_after: 1m\n    escalate_to: a\n").unwrap_err();
        assert!(e.contains("loops"), "{e}");
        let e = load("routes:\n  - name: a\n    receivers: hook\n    mach: {}\n").unwrap_err();
        assert!(e.contains("did you mean `match`?"), "{e}");
    }

    #[test]
    fn maintenance_windows() {
        let c = load("maintenance:\n  - name: upgrade\n    start: 2026-12-01T22:00:00Z\n    end: 2026-12-01T23:00:00Z\n    monitors: db\n  - name: nightly\n    schedule: \"0 2 * * *\"\n    timezone: Europe/Berlin\n    duration: 1h\n    hosts: [web1]\n").unwrap();
        let a = &c.alerting;
        let db = c.monitor("db").unwrap();
        let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        assert!(
            a.maintenance_at("db", "db1", &db.meta, t("2026-12-01T22:30:00Z"))
                .is_some()
        );
        assert!(
            a.maintenance_at("db", "db1", &db.meta, t("2026-12-01T23:00:00Z"))
                .is_none()
        );
        let web = c.monitor("web").unwrap();
        // 02:00-03:00 Berlin is 01:00-02:00 UTC in winter.
        let (w, end) = a
            .maintenance_at("web", "web1", &web.meta, t("2026-12-05T01:30:00Z"))
            .unwrap();
        assert_eq!(w.name, "nightly");
        assert_eq!(end, t("2026-12-05T02:00:00Z"));
        assert!(
            a.maintenance_at("web", "web1", &web.meta, t("2026-12-05T02:30:00Z"))
                .is_none()
        );
        // Summer: 00:00-01:00 UTC.
        assert!(
            a.maintenance_at("web", "web1", &web.meta, t("2026-07-05T00:30:00Z"))
                .is_some()
        );
        assert!(
            a.maintenance_at("web", "web1", &web.meta, t("2026-07-05T01:30:00Z"))
                .is_none()
        );

        let e = load("maintenance:\n  - name: x\n    schedule: \"61 * * * *\"\n    timezone: Mars/Base\n    monitors: [dbb]\n").unwrap_err();
        assert!(e.contains("invalid cron pattern"), "{e}");
        assert!(e.contains("unknown time zone `Mars/Base`"), "{e}");
        assert!(e.contains("needs `duration`"), "{e}");
        assert!(
            e.contains("unknown monitor `dbb`") && e.contains("did you mean `db`?"),
            "{e}"
        );
        let e = load("maintenance:\n  - name: x\n    start: yesterday\n    end: 2026-12-01T23:00:00Z\n    all: true\n").unwrap_err();
        assert!(
            e.contains("a.yaml:14:") && e.contains("not an RFC 3339 time"),
            "{e}"
        );
    }

    #[test]
    fn heartbeat_and_notifications() {
        let c = load("heartbeat: {receiver: hook, interval: 30s}\nnotifications: {give_up_after: 1h, backoff_initial: 500ms, backoff_max: 1m, public_url: \"https://pw.example/\"}\n").unwrap();
        let h = c.alerting.heartbeat.unwrap();
        assert_eq!(h.receiver.as_deref(), Some("hook"));
        assert_eq!(h.interval.as_secs(), 30);
        assert_eq!(
            c.alerting.notifications.public_url.as_deref(),
            Some("https://pw.example")
        );
        let e = load("heartbeat: {receiver: hook, url: \"http://x\"}\n").unwrap_err();
        assert!(e.contains("exactly one"), "{e}");
        let e = load("notifications: {backoff_initial: 10m, backoff_max: 1m}\n").unwrap_err();
        assert!(e.contains("backoff_initial"), "{e}");
    }

    #[test]
    fn depends_on_names_monitors_or_hosts() {
        let c = load("").unwrap();
        assert!(c.monitor("db").unwrap().depends_on.is_empty());
        let text = "monitors:\n  - name: db\n    target: tcp://db1:5432\n    depends_on: [host:db1, net]\n  - name: net\n    target: tcp://gw:22\n";
        let c = load_str(text, "d.yaml").unwrap().config;
        assert_eq!(c.monitor("db").unwrap().depends_on, ["host:db1", "net"]);
        let e = load_str("monitors:\n  - name: db\n    target: tcp://db1:5432\n    depends_on: [nett]\n  - name: net\n    target: tcp://gw:22\n", "d.yaml").unwrap_err().to_string();
        assert!(
            e.contains("d.yaml:4:") && e.contains("unknown monitor `nett`"),
            "{e}"
        );
        let e = load_str(
            "monitors:\n  - name: db\n    target: tcp://db1:5432\n    depends_on: [db]\n",
            "d.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("depends on itself"), "{e}");
    }
}
