//! Alerting: incidents → outbox rows (routes, grouping, silences, dependencies), the
//! dispatcher that delivers them through `portwarden-notify` channels, repeats and escalation
//! of unacknowledged incidents, signed acknowledge links and the heartbeat.
//!
//! Every notification is an outbox row written in the same transaction as the incident change
//! that caused it (or, for repeats and escalations, with the timeline event that records
//! them). Rows carry an idempotency key (`pw-<incident>-<event>`): queueing an intent twice is
//! a no-op, so restarts and retries never double a notification; receivers get the key too.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use portwarden_config::{AlertingSettings, Config, Monitor, Route};
use portwarden_core::{
    EventKind, IncidentEvent, IncidentId, LastHealthy, MonitorMeta, Scope, State, Tier,
};
use portwarden_notify::{AlertItem, Change, Channel, Event, Notification, RetryPolicy};
use portwarden_store::{
    AttemptRecord, AttemptResult, NewOutbox, OutboxRow, OutboxStatus, Silence, Store,
};
use tokio_util::sync::CancellationToken;

/// How long a claimed row is ours before another dispatcher may take it (longer than any
/// send: channels time out well before).
const LEASE: Duration = Duration::from_secs(120);
/// Most rows claimed per round.
const CLAIM_LIMIT: usize = 500;

/// Finds a monitor's current definition by name.
pub type MonitorLookup = Arc<dyn Fn(&str) -> Option<Arc<Monitor>> + Send + Sync>;

/// For an incident that is not a monitor's (`scan:<baseline>`): the metadata its repeats and
/// escalations group by; `None` when its source is gone from the config (then they stop).
pub type FindingLookup = Arc<dyn Fn(&str) -> Option<MonitorMeta> + Send + Sync>;

/// Who an incident is about, as routes, grouping, silences and maintenance windows see it: a
/// monitor, or something that is not one (an exposure-guard baseline's finding).
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    /// The incident's monitor name (`scan:<baseline>` for findings).
    pub name: &'a str,
    pub host: String,
    pub tier: Tier,
    pub meta: &'a MonitorMeta,
}

impl<'a> Subject<'a> {
    pub fn of(m: &'a Monitor) -> Subject<'a> {
        Subject {
            name: &m.name,
            host: m.target.host.to_string(),
            tier: m.tier,
            meta: &m.meta,
        }
    }
}

/// `(route, receiver)` pairs that heard an incident's trigger or escalation.
type Told = BTreeSet<(String, String)>;

/// Receivers told about an incident (trigger or escalation not suppressed), from its rows.
fn told_from(rows: &[portwarden_store::NotificationRecord]) -> BTreeSet<(String, String)> {
    rows.iter()
        .filter(|r| {
            matches!(r.row.event.as_str(), "trigger" | "escalate" | "scope")
                && r.row.status != OutboxStatus::Suppressed
        })
        .map(|r| (r.row.route.clone(), r.row.receiver.clone()))
        .collect()
}

/// What the alerting side needs from the current config.
pub struct AlertSetup {
    pub settings: AlertingSettings,
    pub channels: HashMap<String, Arc<dyn Channel>>,
    /// Base URL for links (no trailing slash).
    pub public_url: String,
}

impl AlertSetup {
    pub fn from_config(config: &Config) -> Result<AlertSetup, String> {
        let channels = portwarden_notify::build(&config.receivers).map_err(|e| e.to_string())?;
        let public_url = config
            .alerting
            .notifications
            .public_url
            .clone()
            .unwrap_or_else(|| {
                let scheme = if config.server.tls.is_some() {
                    "https"
                } else {
                    "http"
                };
                format!("{scheme}://{}", config.server.listen)
            });
        Ok(AlertSetup {
            settings: config.alerting.clone(),
            channels,
            public_url,
        })
    }

    fn retry(&self) -> RetryPolicy {
        let n = &self.settings.notifications;
        RetryPolicy {
            initial: n.backoff_initial,
            max: n.backoff_max,
            give_up_after: n.give_up_after,
        }
    }
}

/// What the alerting side remembers about an open incident.
#[derive(Debug, Clone)]
struct OpenInfo {
    monitor: String,
    def: Option<Arc<Monitor>>,
    opened_at: DateTime<Utc>,
    error_kind: Option<String>,
    message: Option<String>,
    last_healthy: Option<LastHealthy>,
    /// Routes whose receivers were told (trigger or escalation): they hear the resolve.
    told: BTreeSet<(String, String)>,
    /// The parent incident this one is folded into.
    folded_into: Option<IncidentId>,
}

/// Shared by the incident task, the dispatcher, the ticker and the API.
pub struct Alerting {
    setup: RwLock<Arc<AlertSetup>>,
    key: ring::hmac::Key,
    pub(crate) wake: tokio::sync::Notify,
    open: Mutex<HashMap<IncidentId, OpenInfo>>,
    /// Open incidents by monitor (for dependencies).
    by_monitor: Mutex<HashMap<String, IncidentId>>,
    /// Dependents folded into a parent incident.
    dependents: Mutex<HashMap<IncidentId, BTreeSet<String>>>,
    silences: RwLock<Vec<Silence>>,
    metrics: crate::EngineMetrics,
    /// False on a follower replica: the leader dispatches, repeats and escalates.
    active: std::sync::atomic::AtomicBool,
    /// Bumped each time this replica becomes active (the dispatcher then releases claims).
    epoch: std::sync::atomic::AtomicU64,
    /// Set by the server: findings' incidents repeat and escalate too.
    findings: RwLock<Option<FindingLookup>>,
    /// Open findings' incidents as the ticker read them from the store once: the trigger's
    /// content and who was told (escalations add to it).
    finding_told: Mutex<HashMap<IncidentId, (AlertItem, Told)>>,
}

/// Why a notification is not sent.
enum Hold {
    Silenced(i64),
    Folded(IncidentId, String),
}

impl Alerting {
    pub fn new(setup: AlertSetup, key: &[u8], metrics: crate::EngineMetrics) -> Alerting {
        Alerting {
            metrics,
            setup: RwLock::new(Arc::new(setup)),
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
            wake: tokio::sync::Notify::new(),
            open: Mutex::new(HashMap::new()),
            by_monitor: Mutex::new(HashMap::new()),
            dependents: Mutex::new(HashMap::new()),
            silences: RwLock::new(Vec::new()),
            active: std::sync::atomic::AtomicBool::new(true),
            epoch: std::sync::atomic::AtomicU64::new(0),
            findings: RwLock::new(None),
            finding_told: Mutex::new(HashMap::new()),
        }
    }

    /// Leadership: only the active replica dispatches, repeats, escalates and beats.
    pub fn set_active(&self, active: bool) {
        use std::sync::atomic::Ordering;
        if active && !self.active.swap(true, Ordering::AcqRel) {
            // Another leader may have escalated meanwhile: read findings' incidents afresh.
            self.finding_told
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
            self.epoch.fetch_add(1, Ordering::AcqRel);
            self.wake.notify_one();
        } else if !active {
            self.active.store(false, Ordering::Release);
        }
    }

    pub fn is_active(&self) -> bool {
        self.active.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Rebuilds what is known about open incidents from the store (start, leadership taken):
    /// who was told (they hear the resolve) and which incidents are folded into a parent.
    pub async fn resume_all(
        &self,
        store: &dyn Store,
        defs: &HashMap<String, Arc<Monitor>>,
        open: &[portwarden_core::Incident],
    ) {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.by_monitor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.dependents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        // Findings' incidents are the exposure guard's: it reads who was told when it resolves.
        for inc in open
            .iter()
            .filter(|i| !portwarden_core::is_finding_monitor(&i.monitor))
        {
            let rows = store
                .incident_notifications(inc.id)
                .await
                .unwrap_or_default();
            let told = told_from(&rows);
            let folded = rows.iter().find_map(|r| {
                r.row
                    .last_error
                    .as_deref()
                    .and_then(|n| n.strip_prefix("folded into incident #"))
                    .and_then(|n| n.split(':').next())
                    .and_then(|n| n.parse().ok())
            });
            self.resume(inc, defs.get(&inc.monitor).cloned(), told, folded);
        }
    }

    pub fn setup(&self) -> Arc<AlertSetup> {
        self.setup.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn replace_setup(&self, s: AlertSetup) {
        *self.setup.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(s);
        self.wake.notify_one();
    }

    /// A signed acknowledge token for `incident`, valid until `expires`.
    pub fn ack_token(&self, incident: IncidentId, expires: DateTime<Utc>) -> String {
        let exp = expires.timestamp();
        let tag = ring::hmac::sign(&self.key, format!("ack:{incident}:{exp}").as_bytes());
        format!("{incident}.{exp}.{}", hex::encode(tag.as_ref()))
    }

    /// The incident a token acknowledges, if it is genuine and not expired.
    pub fn verify_ack(&self, token: &str, now: DateTime<Utc>) -> Result<IncidentId, &'static str> {
        let mut parts = token.splitn(3, '.');
        let (Some(id), Some(exp), Some(sig)) = (parts.next(), parts.next(), parts.next()) else {
            return Err("malformed link");
        };
        let (Ok(id), Ok(exp), Ok(sig)) = (
            id.parse::<IncidentId>(),
            exp.parse::<i64>(),
            hex::decode(sig),
        ) else {
            return Err("malformed link");
        };
        ring::hmac::verify(&self.key, format!("ack:{id}:{exp}").as_bytes(), &sig)
            .map_err(|_| "this link is not genuine")?;
        if now.timestamp() >= exp {
            return Err("this link has expired; acknowledge in the UI instead");
        }
        Ok(id)
    }

    pub fn incident_url(&self, id: IncidentId) -> String {
        format!("{}/incidents/{id}", self.setup().public_url)
    }

    fn ack_url(&self, setup: &AlertSetup, id: IncidentId, now: DateTime<Utc>) -> String {
        let ttl = chrono::Duration::from_std(setup.settings.notifications.ack_link_ttl)
            .unwrap_or(chrono::Duration::days(7));
        format!("{}/ack/{}", setup.public_url, self.ack_token(id, now + ttl))
    }

    /// Lets the ticker repeat and escalate findings' incidents (`scan:<baseline>`).
    pub fn set_finding_lookup(&self, f: FindingLookup) {
        *self.findings.write().unwrap_or_else(|p| p.into_inner()) = Some(f);
    }

    pub fn set_silences(&self, s: Vec<Silence>) {
        *self.silences.write().unwrap_or_else(|p| p.into_inner()) = s;
    }

    fn silenced(&self, m: &Subject, now: DateTime<Utc>) -> Option<i64> {
        self.silences
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|s| {
                s.expires_at > now
                    && (s.monitors.iter().any(|x| x == m.name)
                        || s.hosts.iter().any(|h| h.eq_ignore_ascii_case(&m.host))
                        || (!s.labels.is_empty()
                            && s.labels
                                .iter()
                                .all(|(k, v)| m.meta.labels.get(k).is_some_and(|x| x == v))))
            })
            .map(|s| s.id)
    }

    /// The open incident of a parent this monitor depends on, if one is down.
    fn parent_down(
        &self,
        m: &Monitor,
        all: &HashMap<String, Arc<Monitor>>,
    ) -> Option<(IncidentId, String)> {
        if m.depends_on.is_empty() {
            return None;
        }
        let by = self.by_monitor.lock().unwrap_or_else(|p| p.into_inner());
        for d in &m.depends_on {
            if let Some(h) = d.strip_prefix("host:") {
                // A host is down when one of its monitors that depends on nothing is down.
                for (name, id) in by.iter() {
                    if name == &m.name {
                        continue;
                    }
                    if let Some(p) = all.get(name)
                        && p.depends_on.is_empty()
                        && p.target.host.to_string().eq_ignore_ascii_case(h)
                    {
                        return Some((*id, name.clone()));
                    }
                }
            } else if let Some(id) = by.get(d) {
                return Some((*id, d.clone()));
            }
        }
        None
    }

    fn hold(
        &self,
        m: &Monitor,
        all: &HashMap<String, Arc<Monitor>>,
        now: DateTime<Utc>,
    ) -> Option<Hold> {
        if let Some((id, parent)) = self.parent_down(m, all) {
            return Some(Hold::Folded(id, parent));
        }
        self.silenced(&Subject::of(m), now).map(Hold::Silenced)
    }

    /// Remembers incidents that were open before a restart, with who was told.
    pub(crate) fn resume(
        &self,
        inc: &portwarden_core::Incident,
        def: Option<Arc<Monitor>>,
        told: BTreeSet<(String, String)>,
        folded_into: Option<IncidentId>,
    ) {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).insert(
            inc.id,
            OpenInfo {
                monitor: inc.monitor.clone(),
                def,
                opened_at: inc.opened_at,
                error_kind: inc.error_kind.clone(),
                message: inc.message.clone(),
                last_healthy: inc.last_healthy.clone(),
                told,
                folded_into,
            },
        );
        self.by_monitor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(inc.monitor.clone(), inc.id);
        if let Some(p) = folded_into {
            self.dependents
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(p)
                .or_default()
                .insert(inc.monitor.clone());
        }
    }

    /// Rows for a newly opened incident (its id is filled in by the store).
    pub(crate) fn on_open(
        &self,
        m: &Monitor,
        all: &HashMap<String, Arc<Monitor>>,
        item: AlertItem,
    ) -> (Vec<NewOutbox>, Option<String>, Option<IncidentId>) {
        let setup = self.setup();
        let now = Utc::now();
        // A regional incident routes at its own severity and scope (`match: {scope: ...}`).
        let routes = setup.settings.routes_for_incident(
            &m.name,
            m.tier,
            &m.meta,
            item.severity,
            item.scope.as_str(),
        );
        let hold = self.hold(m, all, now);
        let (status, note, parent) = match &hold {
            None => (OutboxStatus::Pending, None, None),
            Some(Hold::Silenced(id)) => (
                OutboxStatus::Suppressed,
                Some(format!("silenced by silence #{id}")),
                None,
            ),
            Some(Hold::Folded(pid, parent)) => (
                OutboxStatus::Suppressed,
                Some(format!("folded into incident #{pid}: `{parent}` is down")),
                Some(*pid),
            ),
        };
        let mut rows = Vec::new();
        let subject = Subject::of(m);
        for r in routes {
            rows.extend(rows_for_route(
                r,
                &subject,
                "trigger",
                "trigger",
                &item,
                now,
                status,
                note.clone(),
            ));
        }
        (rows, note, parent)
    }

    /// After the store gave the incident its id.
    pub(crate) fn opened(
        &self,
        id: IncidentId,
        m: &Arc<Monitor>,
        item: &AlertItem,
        rows: &[NewOutbox],
        parent: Option<IncidentId>,
    ) {
        let told = rows
            .iter()
            .filter(|r| r.status == OutboxStatus::Pending)
            .map(|r| (r.route.clone(), r.receiver.clone()))
            .collect();
        let monitor = m.name.as_str();
        self.open.lock().unwrap_or_else(|p| p.into_inner()).insert(
            id,
            OpenInfo {
                monitor: monitor.to_string(),
                def: Some(m.clone()),
                opened_at: item.since,
                error_kind: item.error_kind.clone(),
                message: item.error_message.clone(),
                last_healthy: item.last_healthy.clone(),
                told,
                folded_into: parent,
            },
        );
        self.by_monitor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(monitor.to_string(), id);
        if let Some(p) = parent {
            self.dependents
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(p)
                .or_default()
                .insert(monitor.to_string());
        } else {
            self.adopt_dependents(id, m);
        }
        self.wake.notify_one();
    }

    /// A parent went down after some of its dependents: their incidents (and notifications
    /// not sent yet) fold into the parent's.
    fn adopt_dependents(&self, parent: IncidentId, p: &Monitor) {
        let host = p.target.host.to_string();
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let mut deps = self.dependents.lock().unwrap_or_else(|p| p.into_inner());
        for (id, o) in open.iter_mut() {
            if *id == parent || o.folded_into.is_some() {
                continue;
            }
            let Some(def) = &o.def else { continue };
            let depends = def
                .depends_on
                .iter()
                .any(|d| match d.strip_prefix("host:") {
                    Some(h) => p.depends_on.is_empty() && h.eq_ignore_ascii_case(&host),
                    None => d == &p.name,
                });
            if depends {
                o.folded_into = Some(parent);
                // What was not sent yet is suppressed at send time: nobody to tell at resolve.
                o.told.clear();
                deps.entry(parent).or_default().insert(o.monitor.clone());
            }
        }
    }

    fn count(&self, receiver: &str, event: &str, outcome: &AttemptResult, n: usize) {
        let result = match outcome {
            AttemptResult::Delivered => "delivered",
            AttemptResult::RetryAt(_) => "failed",
            AttemptResult::GiveUp(_) => "given_up",
            AttemptResult::Suppress(_) => "suppressed",
        };
        self.metrics
            .notifications
            .get_or_create(&crate::metrics::NotifyLabels {
                receiver: receiver.to_string(),
                event: event.to_string(),
                result: result.to_string(),
            })
            .inc_by(n as u64);
    }

    /// The parent incident an incident is folded into.
    fn folded_into(&self, id: IncidentId) -> Option<IncidentId> {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .and_then(|o| o.folded_into)
    }

    /// The incident resolved (its rows are committed): forget it.
    pub(crate) fn resolved(&self, id: IncidentId) {
        let info = self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        let Some(info) = info else {
            return;
        };
        {
            let mut by = self.by_monitor.lock().unwrap_or_else(|p| p.into_inner());
            if by.get(&info.monitor) == Some(&id) {
                by.remove(&info.monitor);
            }
        }
        let mut deps = self.dependents.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = info.folded_into
            && let Some(set) = deps.get_mut(&p)
        {
            set.remove(&info.monitor);
        }
        deps.remove(&id);
        self.wake.notify_one();
    }

    /// Rows for a resolve: every receiver that was told about the incident.
    pub(crate) fn on_resolve(&self, id: IncidentId, at: DateTime<Utc>) -> Vec<NewOutbox> {
        self.rows_for_told(id, "resolve", "resolve", |m, info| {
            item_for(
                m,
                State::Up,
                info.opened_at,
                Some(at),
                info.error_kind.clone(),
                info.message.clone(),
                info.last_healthy.clone(),
                Scope::Global,
            )
        })
    }

    /// Rows for a scope change (regional → global or back): every receiver that was told
    /// hears the new scope and locations, once per change (`key` names the change), and so do
    /// the receivers of the routes the incident takes in its new scope (`match: {scope:
    /// global}`, its new severity) that had not heard of it; from then on they are told (they
    /// hear the resolve). Held while a silence or maintenance window covers the monitor.
    pub(crate) fn on_scope_change(
        &self,
        id: IncidentId,
        key: &str,
        state: State,
        scope: Scope,
        severity: portwarden_core::Severity,
    ) -> Vec<NewOutbox> {
        let setup = self.setup();
        let now = Utc::now();
        let Some(m) = self.unheld_def(&setup, id, now, "scope change") else {
            return Vec::new();
        };
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let Some(info) = open.get_mut(&id) else {
            return Vec::new();
        };
        let mut item = item_for(
            &m,
            state,
            info.opened_at,
            None,
            info.error_kind.clone(),
            info.message.clone(),
            info.last_healthy.clone(),
            scope.clone(),
        );
        item.severity = severity;
        item.incident_id = Some(id);
        let subject = Subject::of(&m);
        let mut rows = told_rows(&setup, &info.told, &subject, ("scope", key), &item, now);
        // Folded into a parent's incident: its routes hear the parent, not this one.
        if info.folded_into.is_none() {
            for r in setup.settings.routes_for_incident(
                &m.name,
                m.tier,
                &m.meta,
                severity,
                scope.as_str(),
            ) {
                rows.extend(
                    rows_for_route(
                        r,
                        &subject,
                        "scope",
                        key,
                        &item,
                        now,
                        OutboxStatus::Pending,
                        None,
                    )
                    .into_iter()
                    .filter(|row| info.told.insert((row.route.clone(), row.receiver.clone()))),
                );
            }
        }
        rows
    }

    /// Rows for an open incident that got worse (degraded or flapping → down): every receiver
    /// told about it hears the new state and error, once per change (`key` names it). Held,
    /// like repeats, while a silence or maintenance window covers the monitor.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_worse(
        &self,
        id: IncidentId,
        key: &str,
        state: State,
        error_kind: Option<String>,
        message: Option<String>,
        scope: Scope,
        severity: portwarden_core::Severity,
    ) -> Vec<NewOutbox> {
        if self
            .unheld_def(&self.setup(), id, Utc::now(), "worse state")
            .is_none()
        {
            return Vec::new();
        }
        self.rows_for_told(id, "worse", key, |m, info| {
            let mut item = item_for(
                m,
                state,
                info.opened_at,
                None,
                error_kind.or_else(|| info.error_kind.clone()),
                message.or_else(|| info.message.clone()),
                info.last_healthy.clone(),
                scope,
            );
            item.severity = severity;
            item
        })
    }

    /// The monitor of open incident `id`, unless a silence or maintenance window holds its
    /// notifications now (logged with `what` was held); `None` also for an unknown incident.
    fn unheld_def(
        &self,
        setup: &AlertSetup,
        id: IncidentId,
        now: DateTime<Utc>,
        what: &str,
    ) -> Option<Arc<Monitor>> {
        let m = self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .and_then(|i| i.def.clone())?;
        match self.held(setup, &Subject::of(&m), now) {
            Some(why) => {
                tracing::debug!(incident = id, monitor = %m.name, reason = %why, "{what} not notified");
                None
            }
            None => Some(m),
        }
    }

    /// One row per receiver told about incident `id` (trigger or escalation).
    fn rows_for_told(
        &self,
        id: IncidentId,
        event: &str,
        key: &str,
        item: impl FnOnce(&Monitor, &OpenInfo) -> AlertItem,
    ) -> Vec<NewOutbox> {
        let info = self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned();
        let Some(info) = info else {
            return Vec::new();
        };
        let Some(m) = info.def.clone() else {
            return Vec::new();
        };
        let m = &*m;
        let mut item = item(m, &info);
        item.incident_id = Some(id);
        told_rows(
            &self.setup(),
            &info.told,
            &Subject::of(m),
            (event, key),
            &item,
            Utc::now(),
        )
    }

    /// Rows for an incident that is not a monitor's (an exposure-guard finding) when it opens:
    /// to the routes `named` (when empty: the routes matching `s` as they would a monitor,
    /// else the default routes). A silence or maintenance window covering `s` (by name, host
    /// or labels) records them suppressed, with the reason. Keys are the incident's, as for
    /// monitors (`pw-<incident>-trigger`): nothing doubles across restarts or replicas.
    pub fn rows_for_open(&self, s: &Subject, named: &[String], item: &AlertItem) -> Vec<NewOutbox> {
        let setup = self.setup();
        let now = Utc::now();
        let routes: Vec<&Route> = if named.is_empty() {
            setup.settings.routes_for(s.name, s.tier, s.meta)
        } else {
            named
                .iter()
                .filter_map(|n| setup.settings.route(n))
                .collect()
        };
        let note = self.held(&setup, s, now);
        let status = match note {
            Some(_) => OutboxStatus::Suppressed,
            None => OutboxStatus::Pending,
        };
        routes
            .into_iter()
            .flat_map(|r| {
                rows_for_route(r, s, "trigger", "trigger", item, now, status, note.clone())
            })
            .collect()
    }

    /// Why nobody should hear about `s` at `now`: a maintenance window or a silence covering
    /// it (by name, host or labels), as the note its suppressed rows carry.
    fn held(&self, setup: &AlertSetup, s: &Subject, now: DateTime<Utc>) -> Option<String> {
        setup
            .settings
            .maintenance_at(s.name, &s.host, s.meta, now)
            .map(|(w, end)| format!("maintenance window `{}` (until {end})", w.name))
            .or_else(|| {
                self.silenced(s, now)
                    .map(|id| format!("silenced by silence #{id}"))
            })
    }

    /// Rows for an incident that is not a monitor's when it resolves: every receiver its
    /// trigger (or an escalation) reached, as the store recorded them, on routes that send
    /// resolves. Nobody told, nobody hears the resolve.
    pub async fn rows_for_resolve(
        &self,
        store: &dyn Store,
        id: IncidentId,
        s: &Subject<'_>,
        item: &AlertItem,
    ) -> Result<Vec<NewOutbox>, portwarden_store::StoreError> {
        let told = told_from(&store.incident_notifications(id).await?);
        Ok(told_rows(
            &self.setup(),
            &told,
            s,
            ("resolve", "resolve"),
            item,
            Utc::now(),
        ))
    }

    fn dependents_of(&self, id: IncidentId) -> Vec<String> {
        self.dependents
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// The group a route puts a subject's rows in (`None`: not grouped).
fn group_key(r: &Route, m: &Subject, event: &str) -> Option<String> {
    if r.group_by.is_empty() {
        return None;
    }
    let parts: Vec<String> = r
        .group_by
        .iter()
        .map(|g| format!("{}={}", g.as_string(), g.value_of(&m.host, m.meta)))
        .collect();
    Some(format!("{}/{event}/{}", r.name, parts.join(",")))
}

/// Rows of `event` for the receivers that were told; resolves only on routes that send
/// resolves (a route gone from the config still hears the resolve of what it was told).
fn told_rows(
    setup: &AlertSetup,
    told: &BTreeSet<(String, String)>,
    m: &Subject,
    (event, key): (&str, &str),
    item: &AlertItem,
    now: DateTime<Utc>,
) -> Vec<NewOutbox> {
    let mut rows = Vec::new();
    for (route, receiver) in told {
        let r = setup.settings.route(route);
        if event == "resolve" && !r.is_none_or(|r| r.send_resolved) {
            continue;
        }
        rows.push(NewOutbox {
            event: event.into(),
            key: key.into(),
            monitor: m.name.to_string(),
            route: route.clone(),
            receiver: receiver.clone(),
            group_key: r.and_then(|r| group_key(r, m, event)),
            payload: serde_json::to_value(item).unwrap_or_default(),
            due_at: now,
            status: OutboxStatus::Pending,
            note: None,
        });
    }
    rows
}

#[allow(clippy::too_many_arguments)]
fn rows_for_route(
    r: &Route,
    m: &Subject,
    event: &str,
    key: &str,
    item: &AlertItem,
    now: DateTime<Utc>,
    status: OutboxStatus,
    note: Option<String>,
) -> Vec<NewOutbox> {
    let wait = chrono::Duration::from_std(r.group_wait).unwrap_or_default();
    r.receivers
        .iter()
        .map(|recv| NewOutbox {
            event: event.into(),
            key: key.into(),
            monitor: m.name.to_string(),
            route: r.name.clone(),
            receiver: recv.clone(),
            group_key: group_key(r, m, event),
            payload: serde_json::to_value(item).unwrap_or_default(),
            due_at: if event == "trigger" { now + wait } else { now },
            status,
            note: note.clone(),
        })
        .collect()
}

/// The message content for one monitor.
#[allow(clippy::too_many_arguments)]
pub(crate) fn item_for(
    m: &Monitor,
    state: State,
    since: DateTime<Utc>,
    recovered_at: Option<DateTime<Utc>>,
    error_kind: Option<String>,
    message: Option<String>,
    last_healthy: Option<LastHealthy>,
    scope: Scope,
) -> AlertItem {
    AlertItem {
        monitor: m.name.clone(),
        target: m.target.to_string(),
        check: m.check.kind().to_string(),
        state,
        error_kind,
        error_message: message,
        service: m.meta.service.clone(),
        capability: m.meta.capability.clone(),
        owner: m.meta.owner.clone(),
        severity: m.meta.severity,
        scope,
        since,
        recovered_at,
        last_healthy,
        runbook: m.meta.runbook.clone(),
        incident_id: None,
        incident_url: None,
        ack_url: None,
        labels: m.meta.labels.clone(),
        dependents: Vec::new(),
        finding: None,
    }
}

/// Builds the message for rows claimed together (same receiver, event and group).
fn build_notification(
    al: &Alerting,
    setup: &AlertSetup,
    rows: &[OutboxRow],
    now: DateTime<Utc>,
) -> Notification {
    let first = &rows[0];
    let event = Event::parse(&first.event).unwrap_or(Event::Trigger);
    let mut items: Vec<AlertItem> = Vec::new();
    for r in rows {
        let Ok(mut item) = serde_json::from_value::<AlertItem>(r.payload.clone()) else {
            continue;
        };
        if let Some(id) = r.incident_id {
            item.incident_id = Some(id);
            item.incident_url = Some(format!("{}/incidents/{id}", setup.public_url));
            if event != Event::Resolve {
                item.ack_url = Some(al.ack_url(setup, id, now));
            }
            item.dependents = al.dependents_of(id);
        }
        items.push(item);
    }
    let change = match event {
        Event::Resolve => Change::Recovered,
        _ => items
            .iter()
            .map(|i| Change::from_state(i.state))
            .find(|c| *c == Change::Down)
            .or_else(|| items.first().map(|i| Change::from_state(i.state)))
            .unwrap_or(Change::Down),
    };
    let title = match (items.len(), items.first()) {
        (1, Some(i)) if i.finding.is_some() => {
            let x = i.finding.as_ref().map(|x| x.summary()).unwrap_or_default();
            match event {
                Event::Resolve => format!("{x} resolved"),
                _ => x,
            }
        }
        (1, Some(i)) => {
            let deps = if i.dependents.is_empty() {
                String::new()
            } else {
                format!(", {} dependent monitor(s) affected", i.dependents.len())
            };
            format!("{} {}{deps}", i.monitor, change.label())
        }
        (n, _) => {
            let g = first.group_key.as_deref().unwrap_or("");
            let what = g.rsplit('/').next().unwrap_or(g);
            format!("{n} monitors {} ({what})", change.label())
        }
    };
    let single = rows.len() == 1;
    let incident_id = if single { first.incident_id } else { None };
    let scope_note = items.first().map(|i| match &i.scope {
        Scope::Global => "scope changed: now global".to_string(),
        Scope::Regional(l) => format!("scope changed: now regional ({})", l.join(", ")),
    });
    Notification {
        event,
        incident_id,
        idempotency_key: first.idempotency_key.clone(),
        change,
        title,
        group_key: first
            .group_key
            .clone()
            .unwrap_or_else(|| first.idempotency_key.clone()),
        at: now,
        incident_url: incident_id.map(|id| format!("{}/incidents/{id}", setup.public_url)),
        ack_url: incident_id
            .filter(|_| event != Event::Resolve)
            .map(|id| al.ack_url(setup, id, now)),
        items,
        route: Some(first.route.clone()),
        note: match event {
            Event::Repeat => Some("still unresolved and unacknowledged".into()),
            Event::Escalate => Some(format!(
                "escalated: not acknowledged (route `{}`)",
                first.route
            )),
            Event::Scope => scope_note,
            Event::Worse => Some("got worse while open".into()),
            _ => None,
        },
    }
}

/// Claims due rows and delivers them until `cancel`.
pub(crate) async fn dispatcher(
    al: Arc<Alerting>,
    store: Arc<dyn Store>,
    cancel: CancellationToken,
) {
    let mut epoch = None;
    loop {
        let setup = al.setup();
        let poll = setup.settings.notifications.poll;
        if !al.is_active() {
            // A follower replica: the leader dispatches.
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = al.wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
            continue;
        }
        let now_epoch = al.epoch.load(std::sync::atomic::Ordering::Acquire);
        if epoch != Some(now_epoch) {
            // The one dispatcher of this store (the leader): claims of a process that died
            // or stepped down are void now.
            match store.release_outbox_claims().await {
                Ok(n) if n > 0 => {
                    tracing::info!(rows = n, "released notification claims of a previous run")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot release notification claims"),
            }
            epoch = Some(now_epoch);
        }
        let now = Utc::now();
        let rows = match store.claim_outbox(now, LEASE, CLAIM_LIMIT).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim notifications");
                Vec::new()
            }
        };
        if !rows.is_empty() {
            // One message per receiver + event + group (ungrouped rows alone).
            let mut batches: BTreeMap<(String, String, String), Vec<OutboxRow>> = BTreeMap::new();
            for r in rows {
                let g = r.group_key.clone().unwrap_or_else(|| format!("#{}", r.id));
                batches
                    .entry((r.receiver.clone(), r.event.clone(), g))
                    .or_default()
                    .push(r);
            }
            let mut set = tokio::task::JoinSet::new();
            for (_, batch) in batches {
                let (al, store, setup) = (al.clone(), store.clone(), setup.clone());
                set.spawn(async move { deliver(&al, &*store, &setup, batch).await });
            }
            while set.join_next().await.is_some() {}
            continue;
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = al.wake.notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

async fn deliver(al: &Alerting, store: &dyn Store, setup: &AlertSetup, batch: Vec<OutboxRow>) {
    let now = Utc::now();
    // Dependents whose parent went down since they were queued: folded, not sent.
    let (held, batch): (Vec<OutboxRow>, Vec<OutboxRow>) = batch.into_iter().partition(|r| {
        r.event != "resolve" && r.incident_id.and_then(|i| al.folded_into(i)).is_some()
    });
    for r in &held {
        let parent = r
            .incident_id
            .and_then(|i| al.folded_into(i))
            .unwrap_or_default();
        let a = AttemptRecord {
            at: now,
            ok: false,
            http_status: None,
            latency_ms: 0.0,
            error: None,
            retry_at: None,
        };
        let why = format!("folded into incident #{parent}: a monitor it depends on is down");
        al.count(
            &r.receiver,
            &r.event,
            &AttemptResult::Suppress(String::new()),
            1,
        );
        if let Err(e) = store
            .finish_outbox_attempt(vec![r.id], a, AttemptResult::Suppress(why))
            .await
        {
            tracing::warn!(error = %e, "cannot record a folded notification");
        }
    }
    if batch.is_empty() {
        return;
    }
    let ids: Vec<i64> = batch.iter().map(|r| r.id).collect();
    let first = &batch[0];
    let Some(channel) = setup.channels.get(&first.receiver).cloned() else {
        let a = AttemptRecord {
            at: now,
            ok: false,
            http_status: None,
            latency_ms: 0.0,
            error: Some(format!("receiver `{}` is not configured", first.receiver)),
            retry_at: None,
        };
        al.count(
            &first.receiver,
            &first.event,
            &AttemptResult::GiveUp(String::new()),
            ids.len(),
        );
        let _ = store
            .finish_outbox_attempt(
                ids,
                a,
                AttemptResult::GiveUp("receiver no longer configured".into()),
            )
            .await;
        return;
    };
    let n = build_notification(al, setup, &batch, now);
    let started = std::time::Instant::now();
    let result = channel.send(&n).await;
    let at = Utc::now();
    let (attempt, outcome) = match result {
        Ok(d) => {
            tracing::info!(receiver = %first.receiver, event = %first.event, key = %first.idempotency_key, items = batch.len(), status = ?d.status, "notification delivered");
            (
                AttemptRecord {
                    at,
                    ok: true,
                    http_status: d.status,
                    latency_ms: d.latency.as_secs_f64() * 1000.0,
                    error: None,
                    retry_at: None,
                },
                AttemptResult::Delivered,
            )
        }
        Err(e) => {
            let attempts = batch.iter().map(|r| r.attempts).max().unwrap_or(0) + 1;
            let policy = setup.retry();
            let delay = policy.next_delay(attempts, e.retry_after);
            let next = at + chrono::Duration::from_std(delay).unwrap_or_default();
            let oldest = batch.iter().map(|r| r.created_at).min().unwrap_or(at);
            let give_up_at = oldest
                + chrono::Duration::from_std(policy.give_up_after)
                    .unwrap_or(chrono::Duration::days(1));
            let latency_ms = e.latency.unwrap_or_else(|| started.elapsed()).as_secs_f64() * 1000.0;
            let (retry_at, outcome) = if !e.retryable {
                (
                    None,
                    AttemptResult::GiveUp(format!("not retryable: {}", e.message)),
                )
            } else if next > give_up_at {
                (
                    None,
                    AttemptResult::GiveUp(format!(
                        "not delivered after {attempts} attempts within {}: {}",
                        portwarden_core::format_duration(policy.give_up_after),
                        e.message
                    )),
                )
            } else {
                (Some(next), AttemptResult::RetryAt(next))
            };
            // The channel's message names a URL's host only, never a secret.
            tracing::warn!(receiver = %first.receiver, event = %first.event, key = %first.idempotency_key, attempt = attempts, status = ?e.status, error = %e.message, retry_in = ?retry_at.map(|_| delay), "notification failed");
            (
                AttemptRecord {
                    at,
                    ok: false,
                    http_status: e.status,
                    latency_ms,
                    error: Some(e.message.clone()),
                    retry_at,
                },
                outcome,
            )
        }
    };
    al.metrics
        .notify_seconds
        .observe(attempt.latency_ms / 1000.0);
    al.count(&first.receiver, &first.event, &outcome, batch.len());
    // Recording must not be lost: retry briefly (the row stays leased meanwhile).
    for i in 0..5u32 {
        match store
            .finish_outbox_attempt(ids.clone(), attempt.clone(), outcome.clone())
            .await
        {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(error = %e, "cannot record a notification attempt; retrying");
                tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(i))).await;
            }
        }
    }
}

/// Repeats and escalations of open, unacknowledged incidents; refreshes silences.
pub(crate) async fn ticker(
    al: Arc<Alerting>,
    store: Arc<dyn Store>,
    monitors: MonitorLookup,
    cancel: CancellationToken,
) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = every.tick() => {}
        }
        if !al.is_active() {
            continue;
        }
        let now = Utc::now();
        match store.silences(now).await {
            Ok(s) => al.set_silences(s),
            Err(e) => tracing::debug!(error = %e, "cannot read silences"),
        }
        if let Ok(n) = store.outbox_pending().await {
            al.metrics.outbox_pending.set(n as i64);
        }
        let setup = al.setup();
        let timed = setup
            .settings
            .routes
            .iter()
            .any(|r| r.repeat_interval.is_some() || r.escalate_after.is_some());
        if !timed {
            continue;
        }
        let open = match store.open_incidents().await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read open incidents for escalation");
                continue;
            }
        };
        // Findings' incidents read once while they stay open (and unacknowledged).
        al.finding_told
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|id, _| {
                open.iter()
                    .any(|i| i.id == *id && i.acknowledged_at.is_none())
            });
        for inc in open {
            if inc.acknowledged_at.is_some() {
                continue;
            }
            if portwarden_core::is_finding_monitor(&inc.monitor) {
                finding_repeats(&al, &*store, &setup, &inc, now).await;
                continue;
            }
            let info = al
                .open
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&inc.id)
                .cloned();
            let Some(info) = info else { continue };
            if info.folded_into.is_some() {
                continue;
            }
            let Some(m) = monitors(&inc.monitor) else {
                continue;
            };
            let elapsed = (now - info.opened_at).to_std().unwrap_or_default();
            let item = {
                let mut i = item_for(
                    &m,
                    inc.state,
                    inc.opened_at,
                    None,
                    inc.error_kind.clone(),
                    inc.message.clone(),
                    inc.last_healthy.clone(),
                    inc.scope.clone(),
                );
                i.incident_id = Some(inc.id);
                i
            };
            let routes: Vec<&Route> = setup.settings.routes_for_incident(
                &m.name,
                m.tier,
                &m.meta,
                inc.severity,
                inc.scope.as_str(),
            );
            let subject = Subject::of(&m);
            let mut told_routes: BTreeSet<&str> =
                info.told.iter().map(|(r, _)| r.as_str()).collect();
            for r in routes {
                told_routes.insert(&r.name);
            }
            repeat_and_escalate(
                &al,
                &*store,
                &setup,
                inc.id,
                &subject,
                &item,
                told_routes,
                elapsed,
                now,
            )
            .await;
        }
    }
}

/// Repeats and escalations of a finding's incident: along the routes its trigger reached (as
/// the store recorded them; a suppressed trigger reached nobody), with the trigger's content.
async fn finding_repeats(
    al: &Alerting,
    store: &dyn Store,
    setup: &AlertSetup,
    inc: &portwarden_core::Incident,
    now: DateTime<Utc>,
) {
    let lookup = al
        .findings
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let Some(meta) = lookup.and_then(|f| f(&inc.monitor)) else {
        return;
    };
    let cached = al
        .finding_told
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&inc.id)
        .cloned();
    let (item, told) = match cached {
        Some(c) => c,
        None => {
            let rows = match store.incident_notifications(inc.id).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(incident = inc.id, error = %e, "cannot read a finding's notifications");
                    return;
                }
            };
            let Some(mut item) = rows
                .iter()
                .find(|r| r.row.event == "trigger")
                .and_then(|r| serde_json::from_value::<AlertItem>(r.row.payload.clone()).ok())
            else {
                return;
            };
            item.incident_id = Some(inc.id);
            let told = told_from(&rows);
            al.finding_told
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(inc.id, (item.clone(), told.clone()));
            (item, told)
        }
    };
    let subject = Subject {
        name: &inc.monitor,
        host: item
            .finding
            .as_ref()
            .map(|f| f.host.clone())
            .unwrap_or_default(),
        tier: Tier::default(),
        meta: &meta,
    };
    let elapsed = (now - inc.opened_at).to_std().unwrap_or_default();
    let routes: BTreeSet<&str> = told.iter().map(|(r, _)| r.as_str()).collect();
    repeat_and_escalate(
        al, store, setup, inc.id, &subject, &item, routes, elapsed, now,
    )
    .await;
}

/// Repeats and escalations of one open, unacknowledged incident along the routes it went to.
#[allow(clippy::too_many_arguments)]
async fn repeat_and_escalate(
    al: &Alerting,
    store: &dyn Store,
    setup: &AlertSetup,
    incident: IncidentId,
    subject: &Subject<'_>,
    item: &AlertItem,
    told_routes: BTreeSet<&str>,
    elapsed: Duration,
    now: DateTime<Utc>,
) {
    // A silence or maintenance window over the subject holds its repeats and escalations
    // too (not only its trigger); they resume, at the step the elapsed time has reached,
    // when it ends and the incident is still open and unacknowledged.
    if let Some(why) = al.held(setup, subject, now) {
        tracing::debug!(incident, monitor = %subject.name, reason = %why, "repeat and escalation held");
        return;
    }
    for rname in told_routes {
        let Some(r) = setup.settings.route(rname) else {
            continue;
        };
        if let Some(every) = r.repeat_interval {
            let n = elapsed.as_secs() / every.as_secs().max(1);
            if n >= 1 {
                let rows = rows_for_route(
                    r,
                    subject,
                    "repeat",
                    &format!("repeat-{}-{n}", r.name),
                    item,
                    now,
                    OutboxStatus::Pending,
                    None,
                );
                let _ = store.enqueue_outbox(Some(incident), rows, None).await;
                al.wake.notify_one();
            }
        }
        // Escalation: each step of the chain waits its route's `escalate_after`.
        let mut at = r;
        let mut wait = Duration::ZERO;
        while let (Some(after), Some(next)) = (
            at.escalate_after,
            at.escalate_to
                .as_deref()
                .and_then(|n| setup.settings.route(n)),
        ) {
            wait += after;
            if elapsed < wait {
                break;
            }
            let rows = rows_for_route(
                next,
                subject,
                "escalate",
                &format!("escalate-{}", next.name),
                item,
                now,
                OutboxStatus::Pending,
                None,
            );
            let ev = IncidentEvent::new(
                now,
                EventKind::Escalated,
                format!(
                    "not acknowledged after {}: escalated from route `{}` to `{}`",
                    portwarden_core::format_duration(wait),
                    at.name,
                    next.name
                ),
            )
            .with_data(serde_json::json!({"from": at.name, "to": next.name}));
            match store
                .enqueue_outbox(Some(incident), rows.clone(), Some(ev))
                .await
            {
                Ok(n) if n > 0 => {
                    tracing::warn!(incident, monitor = %subject.name, route = %next.name, "incident escalated");
                    if let Some(o) = al
                        .open
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_mut(&incident)
                    {
                        for row in &rows {
                            o.told.insert((row.route.clone(), row.receiver.clone()));
                        }
                    }
                    if let Some((_, told)) = al
                        .finding_told
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_mut(&incident)
                    {
                        for row in &rows {
                            told.insert((row.route.clone(), row.receiver.clone()));
                        }
                    }
                    al.wake.notify_one();
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot queue an escalation"),
            }
            at = next;
        }
    }
}

/// Sends the heartbeat on its schedule until `cancel`.
pub(crate) async fn heartbeat(al: Arc<Alerting>, cancel: CancellationToken) {
    let client = portwarden_notify::http::client().ok();
    loop {
        let setup = al.setup();
        let Some(hb) = setup.settings.heartbeat.clone() else {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
            }
        };
        let now = Utc::now();
        if !al.is_active() {
            // The leader beats; a follower stays quiet.
        } else if let Some(r) = &hb.receiver {
            match setup.channels.get(r) {
                Some(c) => {
                    let n = Notification {
                        event: Event::Heartbeat,
                        incident_id: None,
                        idempotency_key: format!("pw-heartbeat-{}", now.timestamp()),
                        change: Change::Ok,
                        title: "Portwarden is alive".into(),
                        group_key: "heartbeat".into(),
                        at: now,
                        items: Vec::new(),
                        incident_url: None,
                        ack_url: None,
                        route: None,
                        note: Some(format!(
                            "next heartbeat in {}",
                            portwarden_core::format_duration(hb.interval)
                        )),
                    };
                    if let Err(e) = c.send(&n).await {
                        tracing::warn!(receiver = %r, error = %e.message, "heartbeat not delivered");
                    }
                }
                None => tracing::warn!(receiver = %r, "heartbeat receiver is not configured"),
            }
        } else if let (Some(url), Some(client)) = (&hb.url, &client) {
            let host = reqwest::Url::parse(url.expose())
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_else(|| "?".into());
            match client
                .get(url.expose())
                .timeout(Duration::from_secs(10))
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => {
                    tracing::warn!(host = %host, status = r.status().as_u16(), "heartbeat refused")
                }
                Err(_) => tracing::warn!(host = %host, "heartbeat request failed"),
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(hb.interval) => {}
        }
    }
}

/// The key that signs acknowledge links, shared through the store by every replica on it (a
/// link signed by one verifies on all, and after a takeover): the first replica's key (from
/// its data directory, [`link_key`]) is stored, the others adopt it. When the store cannot
/// keep it, this replica's own key, with a warning.
pub async fn shared_link_key(store: &dyn Store, data_dir: &std::path::Path) -> Vec<u8> {
    let own = link_key(data_dir);
    match store.shared_key("ack-link", &own).await {
        Ok(k) if k.len() >= 32 => k,
        Ok(_) => {
            tracing::warn!(
                "the stored acknowledge link key is too short; using this replica's own"
            );
            own
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot share the acknowledge link key through the store; links signed here verify only here");
            own
        }
    }
}

/// This replica's acknowledge-link key, kept in the data directory so links survive
/// restarts; a fresh random key when it cannot be stored (links then end with the process).
pub fn link_key(data_dir: &std::path::Path) -> Vec<u8> {
    let path = data_dir.join("ack-link.key");
    if let Ok(k) = std::fs::read(&path)
        && k.len() >= 32
    {
        return k;
    }
    let mut k = vec![0u8; 32];
    let rng = ring::rand::SystemRandom::new();
    if ring::rand::SecureRandom::fill(&rng, &mut k).is_err() {
        k.iter_mut().for_each(|b| *b = fastrand::u8(..));
    }
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(data_dir)?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        f.write_all(&k)
    };
    if let Err(e) = write() {
        tracing::warn!(error = %e, "cannot store the acknowledge link key; links stop working at restart");
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alerting(yaml: &str) -> Alerting {
        let config = portwarden_config::load_str(yaml, "t.yaml")
            .unwrap_or_else(|d| panic!("{d}"))
            .config;
        Alerting::new(
            AlertSetup {
                settings: config.alerting.clone(),
                channels: HashMap::new(),
                public_url: "http://x".into(),
            },
            b"0123456789abcdef0123456789abcdef",
            crate::EngineMetrics::default(),
        )
    }

    fn finding_item() -> AlertItem {
        let now = Utc::now();
        AlertItem {
            monitor: "scan:dmz".into(),
            target: "10.0.0.7:6379/tcp".into(),
            check: "exposure scan".into(),
            state: State::Down,
            error_kind: Some("unexpected_open".into()),
            error_message: None,
            service: None,
            capability: None,
            owner: None,
            severity: portwarden_core::Severity::High,
            scope: Scope::Global,
            since: now,
            recovered_at: None,
            last_healthy: None,
            runbook: None,
            incident_id: None,
            incident_url: None,
            ack_url: None,
            labels: Default::default(),
            dependents: Vec::new(),
            finding: None,
        }
    }

    /// Non-monitor incidents (exposure findings): named routes, else match rules, else the
    /// default route; silences and maintenance windows hold them back, with the reason.
    #[test]
    fn rows_for_a_finding_follow_routes_silences_and_maintenance() {
        let receivers = "receivers:\n  sec: {type: webhook, url: \"http://127.0.0.1:9/a\"}\n  ops: {type: webhook, url: \"http://127.0.0.1:9/b\"}\n";
        let routes = "routes:\n  - name: security\n    match: {owner: secops}\n    receivers: sec\n  - name: all\n    default: true\n    receivers: ops\n";
        let al = alerting(&format!("{receivers}{routes}"));
        let mut meta = MonitorMeta::default();
        fn subject(meta: &MonitorMeta) -> Subject<'_> {
            Subject {
                name: "scan:dmz",
                host: "10.0.0.7".into(),
                tier: Tier::default(),
                meta,
            }
        }
        let item = finding_item();
        let route_of = |rows: &[NewOutbox]| -> Vec<(String, String, OutboxStatus)> {
            rows.iter()
                .map(|r| (r.route.clone(), r.receiver.clone(), r.status))
                .collect()
        };
        // No owner: no route matches → the default route.
        let rows = al.rows_for_open(&subject(&meta), &[], &item);
        assert_eq!(
            route_of(&rows),
            [("all".into(), "ops".into(), OutboxStatus::Pending)]
        );
        assert_eq!(
            (rows[0].key.as_str(), rows[0].event.as_str()),
            ("trigger", "trigger")
        );
        assert_eq!(rows[0].monitor, "scan:dmz");
        // The owner matches `security`.
        meta.owner = Some("secops".into());
        let rows = al.rows_for_open(&subject(&meta), &[], &item);
        assert_eq!(
            route_of(&rows),
            [("security".into(), "sec".into(), OutboxStatus::Pending)]
        );
        // Routes the baseline names win over the match rules.
        let rows = al.rows_for_open(&subject(&meta), &["all".into()], &item);
        assert_eq!(
            route_of(&rows),
            [("all".into(), "ops".into(), OutboxStatus::Pending)]
        );
        // A silence on the host: recorded, suppressed, with the reason.
        let now = Utc::now();
        al.set_silences(vec![Silence {
            id: 7,
            monitors: vec![],
            hosts: vec!["10.0.0.7".into()],
            labels: Default::default(),
            comment: "planned".into(),
            created_by: "t".into(),
            created_at: now,
            expires_at: now + chrono::Duration::hours(1),
        }]);
        let rows = al.rows_for_open(&subject(&meta), &[], &item);
        assert_eq!(rows[0].status, OutboxStatus::Suppressed);
        assert_eq!(rows[0].note.as_deref(), Some("silenced by silence #7"));
        al.set_silences(vec![]);
        // A maintenance window over the baseline's incident name.
        let al = alerting(&format!(
            "{receivers}{routes}baselines:\n  - name: dmz\n    targets: [10.0.0.7]\nmaintenance:\n  - name: patching\n    start: \"{}\"\n    end: \"{}\"\n    monitors: [\"scan:dmz\"]\n",
            (now - chrono::Duration::hours(1)).to_rfc3339(),
            (now + chrono::Duration::hours(1)).to_rfc3339()
        ));
        let rows = al.rows_for_open(&subject(&meta), &[], &item);
        assert_eq!(rows[0].status, OutboxStatus::Suppressed);
        assert!(
            rows[0]
                .note
                .as_deref()
                .is_some_and(|n| n.starts_with("maintenance window `patching`")),
            "{:?}",
            rows[0].note
        );
    }

    #[test]
    fn ack_tokens_are_signed_and_expire() {
        let setup = AlertSetup {
            settings: AlertingSettings::default(),
            channels: HashMap::new(),
            public_url: "http://x".into(),
        };
        let a = Alerting::new(
            setup,
            b"0123456789abcdef0123456789abcdef",
            crate::EngineMetrics::default(),
        );
        let now = Utc::now();
        let t = a.ack_token(42, now + chrono::Duration::hours(1));
        assert_eq!(a.verify_ack(&t, now), Ok(42));
        assert!(a.verify_ack(&t, now + chrono::Duration::hours(2)).is_err());
        let forged = t.replacen("42.", "43.", 1);
        assert_eq!(a.verify_ack(&forged, now), Err("this link is not genuine"));
        assert!(a.verify_ack("nonsense", now).is_err());
        let other = Alerting::new(
            AlertSetup {
                settings: AlertingSettings::default(),
                channels: HashMap::new(),
                public_url: "http://x".into(),
            },
            b"another key of thirty-two bytes!",
            crate::EngineMetrics::default(),
        );
        assert!(other.verify_ack(&t, now).is_err());
    }
}
