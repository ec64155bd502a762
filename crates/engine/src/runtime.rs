//! The running engine: one scheduler task (a timer heap for every monitor), short-lived run
//! tasks bounded by a global and a per-host limit, one evaluator task (owns every monitor's
//! evaluation state) and one incident task (commits incident changes in order, retrying when
//! the store fails).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use portwarden_config::{Config, Monitor};
use portwarden_core::{
    ErrorKind, EventKind, IncidentEvent, IncidentId, LastHealthy, Observation, Outcome, ProbeError,
    Scope, State,
};
use portwarden_probe::{ProbeSpec, Prober};
use portwarden_store::{IncidentChange, MonitorRecord, NewIncident, Record, Store};
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::alerting::{AlertSetup, Alerting};
use crate::evaluator::{MonitorEval, RunResult, Transition};
use crate::lateness::{LatenessSummary, LatenessWindow};
use crate::metrics::{CheckLabels, EngineMetrics, MonitorLabels, PhaseLabels, TierLabels};

/// Engine limits and identity.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub concurrency: usize,
    pub per_host: usize,
    pub lag_threshold: Duration,
    pub shutdown_grace: Duration,
    pub location: String,
    /// Judge results (rules, incidents). An agent probes and ships results; the server
    /// judges them, so the agent's engine runs with `false`.
    pub evaluate: bool,
    /// The key that signs acknowledge links (`alerting::link_key`); random when `None`.
    pub link_key: Option<Vec<u8>>,
}

impl EngineOptions {
    /// From config, deriving the concurrency from the file descriptor limit when unset.
    pub fn from_config(c: &Config, nofile: u64) -> EngineOptions {
        EngineOptions {
            concurrency: c
                .engine
                .concurrency
                .unwrap_or_else(|| default_concurrency(nofile)),
            per_host: c.engine.per_host,
            lag_threshold: c.engine.lag_threshold,
            shutdown_grace: c.engine.shutdown_grace,
            location: c.engine.location.clone(),
            evaluate: true,
            link_key: None,
        }
    }
}

/// Half the descriptors (a probe may hold two), keeping 512 for the rest, within 64..=4096.
pub fn default_concurrency(nofile: u64) -> usize {
    (nofile.saturating_sub(512) / 2).clamp(64, 4096) as usize
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the resulting soft limit.
pub fn raise_nofile() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the file descriptor limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .map(|(s, _)| s)
                .unwrap_or(1024)
        }
    }
}

/// The live view of a monitor, for the API.
#[derive(Debug, Clone, Serialize)]
pub struct MonitorView {
    pub name: String,
    pub target: String,
    pub check: String,
    pub tier: String,
    pub enabled: bool,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub state: State,
    pub since: Option<DateTime<Utc>>,
    pub reason: String,
    pub incident: Option<IncidentId>,
    pub last_healthy: Option<LastHealthy>,
    /// The observations of the last run (one per address).
    pub last: Vec<Observation>,
    /// Where the current problem is seen (while `state` is bad).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    /// The state at each location that probes it.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub locations: BTreeMap<String, LocationView>,
    pub runs: u64,
    pub skipped: u64,
    #[serde(skip)]
    pub monitor: Arc<Monitor>,
}

/// A monitor's state at one location.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LocationView {
    pub state: State,
    pub since: Option<DateTime<Utc>>,
    pub reason: String,
    /// When the last result from there started.
    pub last_at: Option<DateTime<Utc>>,
    /// Every agent of the location is silent: its results are `unknown` until it returns.
    pub silent: bool,
}

/// The engine's own health.
#[derive(Debug, Clone, Serialize)]
pub struct EngineHealth {
    pub lagging: bool,
    pub lateness_last_minute: LatenessSummary,
    pub lag_threshold_ms: f64,
    pub inflight: u64,
    pub concurrency: usize,
    pub monitors: usize,
    pub skipped_total: u64,
    pub late_unknown_total: u64,
    /// Runs judged since start.
    pub runs_total: u64,
    /// Problems with Portwarden itself that need a human (e.g. "engine lagging ...").
    pub self_alerts: Vec<String>,
}

struct Plan {
    monitor: Arc<Monitor>,
    spec: Arc<ProbeSpec>,
    host: Arc<str>,
    generation: u64,
    /// Metric handles resolved once, so a run does no label allocation or family lookup.
    metrics: PlanMetrics,
}

struct PlanMetrics {
    up: prometheus_client::metrics::gauge::Gauge,
    state: prometheus_client::metrics::gauge::Gauge,
    /// Indexed like `Phase::ALL`.
    phases: [prometheus_client::metrics::histogram::Histogram; 4],
}

enum SchedCmd {
    Sync(Vec<Arc<Plan>>),
}

enum EvalCmd {
    /// The new set of plans, and why some monitors left (resolves their incidents).
    Sync(Vec<Arc<Plan>>, Arc<HashMap<String, String>>),
    /// Every known location (for monitors without `locations:`) and the silent ones.
    Locations {
        all: Vec<String>,
        silent: HashSet<String>,
    },
    /// This replica became the leader: forget every judgement, rebuild from the store's open
    /// incidents, then tell the incident task which incidents are open; answers when done.
    Resume(Vec<portwarden_core::Incident>, oneshot::Sender<()>),
}

enum EvalMsg {
    Run(RunDone),
    /// Answered once everything sent before it was handled (the agent inbox reader waits for
    /// it before deleting what it handed over).
    Barrier(oneshot::Sender<()>),
    /// Sent at shutdown once every run task has finished: everything before it is drained.
    Stop,
}

/// Where the engine's start sits on the evaluator's monotonic clock: results taken before it
/// (an agent's queue uploaded after a server restart) keep their place, up to this long ago,
/// instead of all landing at the start.
const MONO_BASE: Duration = Duration::from_secs(86_400);

struct RunDone {
    monitor: Arc<str>,
    generation: u64,
    mono: Duration,
    observations: Vec<Observation>,
    reply: Option<oneshot::Sender<Vec<Observation>>>,
    /// Where it ran (`None`: here). Results from agents are already stored.
    remote: Option<String>,
}

enum IncidentCmd {
    Transition {
        monitor: String,
        severity: portwarden_core::Severity,
        /// Severity while the problem is regional.
        regional_severity: portwarden_core::Severity,
        scope: Scope,
        /// The scope before, while it was failing (`None`: it was not).
        prev_scope: Option<Scope>,
        t: Box<Transition>,
    },
    /// The monitor left the config: resolve its incident (with `reason`, or "monitor removed
    /// from the config").
    Removed {
        monitor: String,
        reason: Option<String>,
    },
    /// Leadership (re)gained: the open incidents as the store has them now.
    Reset(HashMap<String, IncidentId>),
}

struct Live {
    view: MonitorView,
}

struct Inner {
    opts: EngineOptions,
    prober: Prober,
    store: Arc<dyn Store>,
    metrics: EngineMetrics,
    epoch: Instant,
    global: Arc<Semaphore>,
    hosts: Mutex<HashMap<Arc<str>, Arc<Semaphore>>>,
    lateness: Mutex<LatenessWindow>,
    lagging: AtomicBool,
    /// False on a follower replica: no probes, no judgement, no incident writes (another
    /// replica leads); live views mirror the store instead.
    active: AtomicBool,
    live: RwLock<BTreeMap<String, Live>>,
    plans: RwLock<HashMap<String, Arc<Plan>>>,
    generation: AtomicU64,
    /// Bumped whenever the monitor list changes (agents' assignments follow it).
    list_version: AtomicU64,
    inflight: AtomicU64,
    skipped_total: AtomicU64,
    late_unknown_total: AtomicU64,
    runs_total: AtomicU64,
    sched_tx: mpsc::UnboundedSender<SchedCmd>,
    eval_tx: mpsc::UnboundedSender<EvalCmd>,
    results_tx: mpsc::Sender<EvalMsg>,
    cancel: CancellationToken,
    runs: TaskTracker,
    alerting: Arc<Alerting>,
    /// Wakes the agent inbox reader (an upload was just stored by this replica).
    inbox_wake: tokio::sync::Notify,
}

/// A running engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
    background: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("store: {0}")]
    Store(#[from] portwarden_store::StoreError),
    #[error("monitor `{0}`: {1}")]
    Spec(String, String),
    #[error("receivers: {0}")]
    Receivers(String),
}

/// Stable 64-bit FNV-1a of a monitor name: its phase offset within the interval.
pub fn phase_hash(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn record_of(m: &Monitor) -> MonitorRecord {
    MonitorRecord {
        name: m.name.clone(),
        target: m.target.to_string(),
        check: m.check.kind().to_string(),
        tier: m.tier.as_str().to_string(),
        meta: serde_json::to_value(&m.meta).unwrap_or(serde_json::Value::Null),
    }
}

fn view_of(m: &Arc<Monitor>) -> MonitorView {
    MonitorView {
        name: m.name.clone(),
        target: m.target.to_string(),
        check: m.check.kind().to_string(),
        tier: m.tier.as_str().to_string(),
        enabled: m.enabled,
        interval_ms: m.interval.as_millis() as u64,
        timeout_ms: m.timeout.as_millis() as u64,
        state: if m.enabled {
            State::Pending
        } else {
            State::Paused
        },
        since: None,
        reason: if m.enabled {
            "no result yet".into()
        } else {
            "disabled in config".into()
        },
        incident: None,
        last_healthy: None,
        last: Vec::new(),
        scope: None,
        locations: BTreeMap::new(),
        runs: 0,
        skipped: 0,
        monitor: m.clone(),
    }
}

impl Engine {
    /// Starts the engine for `config`: registers monitors in the store, resumes open incidents,
    /// and begins scheduling.
    pub async fn start(
        config: &Config,
        opts: EngineOptions,
        prober: Prober,
        store: Arc<dyn Store>,
        metrics: EngineMetrics,
    ) -> Result<Engine, EngineError> {
        Engine::start_as(config, opts, prober, store, metrics, true).await
    }

    /// [`start`](Self::start) as the leader (`active`) or as a follower replica, which probes
    /// and judges nothing until [`set_active`](Self::set_active) makes it the leader.
    pub async fn start_as(
        config: &Config,
        opts: EngineOptions,
        prober: Prober,
        store: Arc<dyn Store>,
        metrics: EngineMetrics,
        active: bool,
    ) -> Result<Engine, EngineError> {
        let records: Vec<MonitorRecord> = config.monitors.iter().map(record_of).collect();
        store.sync_monitors(&records).await?;

        let (sched_tx, sched_rx) = mpsc::unbounded_channel();
        let (eval_tx, eval_rx) = mpsc::unbounded_channel();
        let (results_tx, results_rx) = mpsc::channel(16_384);
        let (inc_tx, inc_rx) = mpsc::unbounded_channel();
        let setup = AlertSetup::from_config(config).map_err(EngineError::Receivers)?;
        let key = opts
            .link_key
            .clone()
            .unwrap_or_else(|| (0..32).map(|_| fastrand::u8(..)).collect());
        let alerting = Arc::new(Alerting::new(setup, &key, metrics.clone()));
        let inner = Arc::new(Inner {
            alerting: alerting.clone(),
            inbox_wake: tokio::sync::Notify::new(),
            global: Arc::new(Semaphore::new(opts.concurrency)),
            opts,
            prober,
            store: store.clone(),
            metrics,
            epoch: Instant::now(),
            hosts: Mutex::new(HashMap::new()),
            lateness: Mutex::new(LatenessWindow::default()),
            lagging: AtomicBool::new(false),
            active: AtomicBool::new(active),
            live: RwLock::new(BTreeMap::new()),
            plans: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(1),
            list_version: AtomicU64::new(1),
            inflight: AtomicU64::new(0),
            skipped_total: AtomicU64::new(0),
            late_unknown_total: AtomicU64::new(0),
            runs_total: AtomicU64::new(0),
            sched_tx,
            eval_tx,
            results_tx,
            cancel: CancellationToken::new(),
            runs: TaskTracker::new(),
        });

        // Resume: open incidents and last observations from the store.
        let open = store.open_incidents().await?;
        let last = store.last_observations().await.unwrap_or_default();
        let plans = inner.build_plans(config)?;
        let mut evals: HashMap<Arc<str>, HashMap<String, MonitorEval>> = HashMap::new();
        let mut open_map: HashMap<String, IncidentId> = HashMap::new();
        let mut combined: HashMap<Arc<str>, (State, Scope)> = HashMap::new();
        {
            let mut live = inner.live.write().unwrap_or_else(|p| p.into_inner());
            for p in &plans {
                let mut v = view_of(&p.monitor);
                if let Some(o) = last.get(&p.monitor.name) {
                    v.last = vec![o.clone()];
                }
                live.insert(p.monitor.name.clone(), Live { view: v });
            }
            // Findings' incidents belong to the exposure guard, not to a monitor.
            for inc in open
                .iter()
                .filter(|i| !portwarden_core::is_finding_monitor(&i.monitor))
            {
                match plans.iter().find(|p| p.monitor.name == inc.monitor) {
                    Some(p) => {
                        for loc in resume_locations(&inner, &p.monitor, &inc.scope) {
                            let mut e = MonitorEval::new(p.monitor.rules, p.monitor.interval);
                            e.resume(inc.state, inc.opened_at, inc.last_healthy.clone());
                            evals
                                .entry(Arc::from(inc.monitor.as_str()))
                                .or_default()
                                .insert(loc, e);
                        }
                        if let Some(l) = live.get_mut(&inc.monitor) {
                            l.view.state = inc.state;
                            l.view.since = Some(inc.opened_at);
                            l.view.incident = Some(inc.id);
                            l.view.reason = "open incident (resumed after restart)".into();
                            l.view.last_healthy = inc.last_healthy.clone();
                        }
                        open_map.insert(inc.monitor.clone(), inc.id);
                        combined.insert(
                            Arc::from(inc.monitor.as_str()),
                            (inc.state, inc.scope.clone()),
                        );
                    }
                    None => {
                        open_map.insert(inc.monitor.clone(), inc.id);
                        let _ = inc_tx.send(IncidentCmd::Removed {
                            monitor: inc.monitor.clone(),
                            reason: None,
                        });
                    }
                }
            }
        }
        inner.metrics.incidents_open.set(open_map.len() as i64);
        // Who was told about each open incident (they hear its resolve), from the outbox.
        let defs: HashMap<String, Arc<Monitor>> = plans
            .iter()
            .map(|p| (p.monitor.name.clone(), p.monitor.clone()))
            .collect();
        alerting.resume_all(&*store, &defs, &open).await;
        alerting.set_active(active);
        {
            let mut pm = inner.plans.write().unwrap_or_else(|p| p.into_inner());
            for p in &plans {
                pm.insert(p.monitor.name.clone(), p.clone());
            }
        }
        inner
            .metrics
            .monitors
            .set(plans.iter().filter(|p| p.monitor.enabled).count() as i64);
        for t in portwarden_core::Tier::ALL {
            inner
                .metrics
                .skipped
                .get_or_create(&TierLabels {
                    tier: t.as_str().to_string(),
                })
                .inc_by(0);
        }
        inner.publish_initial_metrics(&plans);

        let engine = Engine {
            inner: inner.clone(),
            background: Arc::new(Mutex::new(Vec::new())),
        };
        let lookup_inner = inner.clone();
        let lookup: crate::alerting::MonitorLookup = Arc::new(move |name: &str| {
            lookup_inner
                .plans
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(name)
                .map(|p| p.monitor.clone())
        });
        let mut bg = Vec::new();
        // A probe-only engine (an agent) neither judges nor notifies: the server does.
        if inner.opts.evaluate {
            bg.push(tokio::spawn(crate::alerting::dispatcher(
                alerting.clone(),
                store.clone(),
                inner.cancel.clone(),
            )));
            bg.push(tokio::spawn(crate::alerting::ticker(
                alerting.clone(),
                store.clone(),
                lookup,
                inner.cancel.clone(),
            )));
            bg.push(tokio::spawn(crate::alerting::heartbeat(
                alerting.clone(),
                inner.cancel.clone(),
            )));
        }
        bg.extend([
            tokio::spawn(incident_task(inner.clone(), inc_rx, open_map)),
            tokio::spawn(evaluator_task(
                inner.clone(),
                results_rx,
                eval_rx,
                inc_tx,
                evals,
                combined,
            )),
            tokio::spawn(scheduler_task(inner.clone(), sched_rx)),
            tokio::spawn(lag_task(inner.clone())),
            tokio::spawn(follower_task(inner.clone())),
        ]);
        if inner.opts.evaluate {
            bg.push(tokio::spawn(inbox_task(inner.clone())));
        }
        *engine.background.lock().unwrap_or_else(|p| p.into_inner()) = bg;
        let _ = inner
            .eval_tx
            .send(EvalCmd::Sync(plans.clone(), Arc::new(HashMap::new())));
        let _ = inner.sched_tx.send(SchedCmd::Sync(plans));
        Ok(engine)
    }

    /// Applies a new config: added monitors start, removed ones stop (their incidents are
    /// resolved), changed ones take the new settings; unchanged monitors keep their state and
    /// schedule. Returns `(added, removed, changed)` names.
    pub async fn apply_config(&self, config: &Config) -> Result<ReloadReport, EngineError> {
        self.apply_config_with(config, &ApplyNotes::default()).await
    }

    /// [`apply_config`](Self::apply_config) with notes from whoever composed the monitor list
    /// (discovery): why disabled monitors are paused, and why removed ones left. Only added
    /// and changed monitors are written to the store's registry (unchanged ones are there
    /// already), so applying 10 000 unchanged monitors costs comparisons, not writes.
    pub async fn apply_config_with(
        &self,
        config: &Config,
        notes: &ApplyNotes,
    ) -> Result<ReloadReport, EngineError> {
        let inner = &self.inner;
        // Receivers and routes first: a broken receiver keeps the previous config.
        let setup = AlertSetup::from_config(config).map_err(EngineError::Receivers)?;
        inner.alerting.replace_setup(setup);
        let old: HashMap<String, Arc<Plan>> = inner
            .plans
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut report = ReloadReport::default();
        let mut plans = Vec::with_capacity(config.monitors.len());
        for m in &config.monitors {
            match old.get(&m.name) {
                Some(p) if *p.monitor == *m => plans.push(p.clone()),
                prev => {
                    if let Some(p) = prev {
                        if p.monitor.tier != m.tier {
                            inner.forget_metrics(&m.name, p.monitor.tier.as_str());
                        }
                        report.changed.push(m.name.clone());
                    } else {
                        report.added.push(m.name.clone());
                    }
                    plans.push(inner.plan(m)?);
                }
            }
        }
        let names: HashSet<&str> = config.monitors.iter().map(|m| m.name.as_str()).collect();
        for name in old.keys() {
            if !names.contains(name.as_str()) {
                report.removed.push(name.clone());
            }
        }
        report.removed.sort();
        let records: Vec<MonitorRecord> = plans
            .iter()
            .filter(|p| {
                old.get(&p.monitor.name)
                    .is_none_or(|o| o.generation != p.generation)
            })
            .map(|p| record_of(&p.monitor))
            .collect();
        if !records.is_empty() {
            inner.store.sync_monitors(&records).await?;
        }
        {
            let mut live = inner.live.write().unwrap_or_else(|p| p.into_inner());
            for name in &report.removed {
                live.remove(name);
                inner.forget_metrics(
                    name,
                    old.get(name).map(|p| p.monitor.tier.as_str()).unwrap_or(""),
                );
            }
            for p in &plans {
                let paused_note = notes.paused.get(&p.monitor.name);
                match live.get_mut(&p.monitor.name) {
                    Some(l) => {
                        let resumed = !l.view.enabled && p.monitor.enabled;
                        l.view.monitor = p.monitor.clone();
                        l.view.enabled = p.monitor.enabled;
                        l.view.target = p.monitor.target.to_string();
                        l.view.check = p.monitor.check.kind().to_string();
                        l.view.tier = p.monitor.tier.as_str().to_string();
                        l.view.interval_ms = p.monitor.interval.as_millis() as u64;
                        l.view.timeout_ms = p.monitor.timeout.as_millis() as u64;
                        if !p.monitor.enabled {
                            l.view.state = State::Paused;
                            l.view.reason = paused_note
                                .cloned()
                                .unwrap_or_else(|| "disabled in config".into());
                        } else if resumed {
                            // Its evaluation state is kept; the view waits for the next run.
                            l.view.state = State::Pending;
                            l.view.reason = "resumed; no result yet".into();
                        }
                    }
                    None => {
                        let mut view = view_of(&p.monitor);
                        if let (false, Some(n)) = (p.monitor.enabled, paused_note) {
                            view.reason = n.clone();
                        }
                        live.insert(p.monitor.name.clone(), Live { view });
                    }
                }
            }
        }
        {
            let mut pm = inner.plans.write().unwrap_or_else(|p| p.into_inner());
            pm.clear();
            for p in &plans {
                pm.insert(p.monitor.name.clone(), p.clone());
            }
        }
        if !(report.added.is_empty() && report.changed.is_empty() && report.removed.is_empty()) {
            inner.list_version.fetch_add(1, Ordering::Relaxed);
        }
        inner
            .metrics
            .monitors
            .set(plans.iter().filter(|p| p.monitor.enabled).count() as i64);
        let touched: HashSet<&str> = report
            .added
            .iter()
            .chain(&report.changed)
            .map(String::as_str)
            .collect();
        let fresh: Vec<Arc<Plan>> = plans
            .iter()
            .filter(|p| touched.contains(p.monitor.name.as_str()))
            .cloned()
            .collect();
        inner.publish_initial_metrics(&fresh);
        let removed_notes: HashMap<String, String> = report
            .removed
            .iter()
            .filter_map(|n| notes.removed.get(n).map(|r| (n.clone(), r.clone())))
            .collect();
        let _ = inner
            .eval_tx
            .send(EvalCmd::Sync(plans.clone(), Arc::new(removed_notes)));
        let _ = inner.sched_tx.send(SchedCmd::Sync(plans));
        Ok(report)
    }

    /// Tells the evaluator which locations exist (a monitor without `locations:` is
    /// expected at all of them) and which are silent (no agent heard from): a silent
    /// location's results count as `unknown`, never as `down`.
    pub fn set_locations(&self, all: Vec<String>, silent: HashSet<String>) {
        let _ = self.inner.eval_tx.send(EvalCmd::Locations { all, silent });
    }

    /// An agent upload was stored by this replica (its runs are in the store's agent
    /// inbox): the leader's inbox reader looks now rather than at its next poll.
    pub fn agent_batch_stored(&self) {
        self.inner.inbox_wake.notify_one();
    }

    /// Whether `monitor` (on `host`, with `meta`) is inside a maintenance window at `at`:
    /// its results are stored apart from availability.
    pub fn in_maintenance(&self, monitor: &Monitor, at: DateTime<Utc>) -> bool {
        self.inner
            .alerting
            .setup()
            .settings
            .maintenance_at(
                &monitor.name,
                &monitor.target.host.to_string(),
                &monitor.meta,
                at,
            )
            .is_some()
    }

    /// Changes whenever a monitor is added, changed or removed.
    pub fn list_version(&self) -> u64 {
        self.inner.list_version.load(Ordering::Relaxed)
    }

    /// Every monitor's definition (cheap: shared, no live state), in no particular order.
    pub fn monitor_defs(&self) -> Vec<Arc<Monitor>> {
        self.inner
            .plans
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|p| p.monitor.clone())
            .collect()
    }

    /// One monitor's definition.
    pub fn monitor_def(&self, name: &str) -> Option<Arc<Monitor>> {
        self.inner
            .plans
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .map(|p| p.monitor.clone())
    }

    /// Every monitor's live view, by name.
    /// Leadership changed. Becoming the leader rebuilds every judgement from the store (open
    /// incidents, as another replica left them) before the first probe runs; stepping down
    /// stops probes, judgement and incident writes at once.
    pub async fn set_active(&self, active: bool) -> Result<(), EngineError> {
        let inner = &self.inner;
        if !active {
            inner.alerting.set_active(false);
            if inner.active.swap(false, Ordering::AcqRel) {
                tracing::info!("engine on standby: another replica leads");
            }
            return Ok(());
        }
        if inner.active.load(Ordering::Acquire) {
            return Ok(());
        }
        let open = inner.store.open_incidents().await?;
        let defs: HashMap<String, Arc<Monitor>> = inner
            .plans
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, p)| (k.clone(), p.monitor.clone()))
            .collect();
        inner.alerting.resume_all(&*inner.store, &defs, &open).await;
        let (tx, rx) = oneshot::channel();
        let _ = inner.eval_tx.send(EvalCmd::Resume(open, tx));
        // The evaluator turns the engine active once its state is rebuilt.
        let _ = rx.await;
        // Notifications too: the dispatcher takes over the outbox (leftover claims released).
        inner.alerting.set_active(true);
        tracing::info!("engine active: probing, judging and writing incidents here");
        Ok(())
    }

    /// Whether this engine probes and judges (false on a follower replica).
    pub fn is_active(&self) -> bool {
        self.inner.active.load(Ordering::Acquire)
    }

    pub fn monitors(&self) -> Vec<MonitorView> {
        self.inner
            .live
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|l| l.view.clone())
            .collect()
    }

    pub fn monitor(&self, name: &str) -> Option<MonitorView> {
        self.inner
            .live
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .map(|l| l.view.clone())
    }

    /// Runs a configured monitor now (through the same limits) and returns its observations
    /// once the evaluator has judged them. `None` if no such monitor.
    pub async fn check_now(&self, name: &str) -> Option<Vec<Observation>> {
        let plan = self
            .inner
            .plans
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()?;
        let (tx, rx) = oneshot::channel();
        let inner = self.inner.clone();
        let due = Instant::now();
        inner.clone().run(plan, due, Some(tx)).await;
        rx.await.ok()
    }

    pub fn health(&self) -> EngineHealth {
        let inner = &self.inner;
        let summary = inner
            .lateness
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .summary(inner.epoch.elapsed().as_secs());
        let lagging = inner.lagging.load(Ordering::Relaxed);
        let mut self_alerts = Vec::new();
        if lagging {
            self_alerts.push(format!(
                "engine lagging: p99 lateness {:.0} ms over the last minute is above {:.0} ms; late results are reported as unknown. Lower the number of monitors or raise engine.concurrency",
                summary.p99_ms,
                inner.opts.lag_threshold.as_secs_f64() * 1000.0
            ));
        }
        EngineHealth {
            lagging,
            lateness_last_minute: summary,
            lag_threshold_ms: inner.opts.lag_threshold.as_secs_f64() * 1000.0,
            inflight: inner.inflight.load(Ordering::Relaxed),
            concurrency: inner.opts.concurrency,
            monitors: inner.plans.read().unwrap_or_else(|p| p.into_inner()).len(),
            skipped_total: inner.skipped_total.load(Ordering::Relaxed),
            late_unknown_total: inner.late_unknown_total.load(Ordering::Relaxed),
            runs_total: inner.runs_total.load(Ordering::Relaxed),
            self_alerts,
        }
    }

    /// Resets the since-start lateness statistics (benchmarks, after warm-up).
    pub fn reset_lateness_stats(&self) {
        self.inner
            .lateness
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reset_cumulative();
    }

    /// Lateness since the last reset.
    pub fn lateness_since_reset(&self) -> LatenessSummary {
        self.inner
            .lateness
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .cumulative_summary()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Routes, outbox dispatch, acknowledge links, silences.
    pub fn alerting(&self) -> &Arc<Alerting> {
        &self.inner.alerting
    }

    pub fn location(&self) -> &str {
        &self.inner.opts.location
    }

    /// Stops scheduling, lets running probes finish (up to the grace period), drains the
    /// evaluator and incident queues, and flushes the store.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.cancel.cancel();
        inner.runs.close();
        if tokio::time::timeout(inner.opts.shutdown_grace, inner.runs.wait())
            .await
            .is_err()
        {
            tracing::warn!(grace = ?inner.opts.shutdown_grace, "probes still running at shutdown; abandoning them");
        }
        // Every run has finished and sent its result: the evaluator drains up to the stop
        // marker, then the incident task drains and ends.
        let _ = inner.results_tx.send(EvalMsg::Stop).await;
        let handles: Vec<_> =
            std::mem::take(&mut *self.background.lock().unwrap_or_else(|p| p.into_inner()));
        for h in handles {
            if tokio::time::timeout(Duration::from_secs(5), h)
                .await
                .is_err()
            {
                tracing::warn!("an engine task did not stop in time");
            }
        }
        if let Err(e) = inner.store.flush().await {
            tracing::warn!(error = %e, "final store flush failed");
        }
    }
}

/// Notes that come with an applied monitor list (see [`Engine::apply_config_with`]).
#[derive(Debug, Clone, Default)]
pub struct ApplyNotes {
    /// Why a disabled monitor is paused (its `reason`); default "disabled in config".
    pub paused: HashMap<String, String>,
    /// Why a monitor left (the message that resolves its open incident); default "monitor
    /// removed from the config".
    pub removed: HashMap<String, String>,
}

/// What a reload changed.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ReloadReport {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl Inner {
    fn plan(&self, m: &Monitor) -> Result<Arc<Plan>, EngineError> {
        let spec = m
            .probe_spec()
            .map_err(|e| EngineError::Spec(m.name.clone(), e.to_string()))?;
        let labels = self.labels(&m.name, m.tier.as_str());
        let phase = |p: portwarden_core::Phase| {
            self.metrics
                .phase_seconds
                .get_or_create(&PhaseLabels {
                    phase: p.as_str().to_string(),
                    check: m.check.kind().to_string(),
                    tier: m.tier.as_str().to_string(),
                })
                .clone()
        };
        let metrics = PlanMetrics {
            up: self.metrics.monitor_up.get_or_create(&labels).clone(),
            state: self.metrics.monitor_state.get_or_create(&labels).clone(),
            phases: portwarden_core::Phase::ALL.map(phase),
        };
        Ok(Arc::new(Plan {
            host: m.target.host.as_str().into(),
            monitor: Arc::new(m.clone()),
            spec: Arc::new(spec),
            generation: self.generation.fetch_add(1, Ordering::Relaxed),
            metrics,
        }))
    }

    fn build_plans(&self, config: &Config) -> Result<Vec<Arc<Plan>>, EngineError> {
        config.monitors.iter().map(|m| self.plan(m)).collect()
    }

    fn host_limit(&self, host: &Arc<str>) -> Arc<Semaphore> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        hosts
            .entry(host.clone())
            .or_insert_with(|| Arc::new(Semaphore::new(self.opts.per_host)))
            .clone()
    }

    fn labels(&self, monitor: &str, tier: &str) -> MonitorLabels {
        MonitorLabels {
            monitor: monitor.to_string(),
            location: self.opts.location.clone(),
            tier: tier.to_string(),
        }
    }

    /// Every monitor has its gauges from the start (pending, or paused), not only after its
    /// first run.
    fn publish_initial_metrics(&self, plans: &[Arc<Plan>]) {
        let live = self.live.read().unwrap_or_else(|p| p.into_inner());
        for p in plans {
            let l = self.labels(&p.monitor.name, p.monitor.tier.as_str());
            let state = live
                .get(&p.monitor.name)
                .map(|v| v.view.state)
                .unwrap_or(State::Pending);
            self.metrics
                .monitor_state
                .get_or_create(&l)
                .set(state.code());
            self.metrics
                .monitor_up
                .get_or_create(&l)
                .set(i64::from(matches!(state, State::Up | State::Degraded)));
        }
    }

    fn forget_metrics(&self, monitor: &str, tier: &str) {
        let l = self.labels(monitor, tier);
        self.metrics.monitor_up.remove(&l);
        self.metrics.monitor_state.remove(&l);
    }

    /// One run: wait for the limits, probe, mark late results unknown, hand to the evaluator.
    async fn run(
        self: Arc<Self>,
        plan: Arc<Plan>,
        due: Instant,
        reply: Option<oneshot::Sender<Vec<Observation>>>,
    ) {
        let global = tokio::select! {
            p = self.global.clone().acquire_owned() => p,
            _ = self.cancel.cancelled() => return,
        };
        let Ok(_global) = global else { return };
        let host = self.host_limit(&plan.host);
        let host = tokio::select! {
            p = host.acquire_owned() => p,
            _ = self.cancel.cancelled() => return,
        };
        let Ok(_host) = host else { return };
        let start = Instant::now();
        let lateness = start.saturating_duration_since(due);
        self.lateness
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(start.duration_since(self.epoch).as_secs(), lateness);
        self.metrics
            .lateness_seconds
            .observe(lateness.as_secs_f64());
        self.inflight.fetch_add(1, Ordering::Relaxed);
        self.metrics.inflight.inc();
        let mut observations = self.prober.probe(&plan.spec).await;
        self.inflight.fetch_sub(1, Ordering::Relaxed);
        self.metrics.inflight.dec();
        let scheduled_at =
            Utc::now() - chrono::Duration::from_std(lateness + start.elapsed()).unwrap_or_default();
        let late = reply.is_none() && lateness > self.opts.lag_threshold;
        for o in &mut observations {
            o.scheduled_at = Some(scheduled_at);
            o.lateness_ms = Some(lateness.as_secs_f64() * 1000.0);
            if late && o.outcome != Outcome::Unknown {
                // We could not run it on time: whatever we saw says more about us than the
                // target. Keep what was measured in the details, never page on it.
                o.details
                    .insert("measured_outcome".into(), o.outcome.as_str().into());
                if let Some(e) = &o.error {
                    o.details
                        .insert("measured_error".into(), e.kind.to_string().into());
                }
                let was = o
                    .error
                    .take()
                    .map(|e| format!(" (measured: {}: {})", e.kind, e.message))
                    .unwrap_or_default();
                o.error = Some(ProbeError::new(
                    ErrorKind::Local,
                    format!(
                        "run started {:.0} ms late (engine lagging, threshold {:.0} ms): result not trusted{was}",
                        lateness.as_secs_f64() * 1000.0,
                        self.opts.lag_threshold.as_secs_f64() * 1000.0
                    ),
                ));
                o.outcome = Outcome::Unknown;
                o.note = None;
            }
        }
        if late {
            self.late_unknown_total.fetch_add(1, Ordering::Relaxed);
            self.metrics.late_unknown.inc();
        }
        let done = RunDone {
            monitor: plan.monitor.name.as_str().into(),
            generation: plan.generation,
            mono: MONO_BASE + start.duration_since(self.epoch),
            observations,
            reply,
            remote: None,
        };
        let _ = self.results_tx.send(EvalMsg::Run(done)).await;
    }
}

struct Slot {
    plan: Arc<Plan>,
    next_due: Instant,
    running: Arc<AtomicBool>,
}

fn first_due(epoch: Instant, now: Instant, name: &str, interval: Duration) -> Instant {
    let iv = interval.as_nanos().max(1);
    let offset = Duration::from_nanos((u128::from(phase_hash(name)) % iv) as u64);
    let base = epoch + offset;
    if base >= now {
        return base;
    }
    let k = (now - base).as_nanos().div_ceil(iv);
    base + Duration::from_nanos((k * iv).min(u128::from(u64::MAX)) as u64)
}

async fn scheduler_task(inner: Arc<Inner>, mut rx: mpsc::UnboundedReceiver<SchedCmd>) {
    let mut slots: HashMap<Arc<str>, Slot> = HashMap::new();
    let mut heap: BinaryHeap<Reverse<(Instant, u64, Arc<str>)>> = BinaryHeap::new();
    let skipped = portwarden_core::Tier::ALL.map(|t| {
        inner
            .metrics
            .skipped
            .get_or_create(&TierLabels {
                tier: t.as_str().to_string(),
            })
            .clone()
    });
    loop {
        let next = heap.peek().map(|Reverse((t, _, _))| *t);
        tokio::select! {
            biased;
            _ = inner.cancel.cancelled() => break,
            cmd = rx.recv() => match cmd {
                None => break,
                Some(SchedCmd::Sync(plans)) => {
                    let now = Instant::now();
                    let mut keep: HashMap<Arc<str>, Slot> = HashMap::with_capacity(plans.len());
                    for p in plans {
                        if !p.monitor.enabled || !p.monitor.runs_at(&inner.opts.location) {
                            continue;
                        }
                        let name: Arc<str> = p.monitor.name.as_str().into();
                        let slot = match slots.remove(&name) {
                            Some(mut s) if s.plan.monitor.interval == p.monitor.interval => {
                                // Unchanged timing: keep the schedule (and the running flag).
                                s.plan = p;
                                s
                            }
                            Some(s) => Slot {
                                next_due: first_due(inner.epoch, now, &name, p.monitor.interval),
                                plan: p,
                                running: s.running,
                            },
                            None => Slot {
                                next_due: first_due(inner.epoch, now, &name, p.monitor.interval),
                                plan: p,
                                running: Arc::new(AtomicBool::new(false)),
                            },
                        };
                        heap.push(Reverse((slot.next_due, slot.plan.generation, name.clone())));
                        keep.insert(name, slot);
                    }
                    slots = keep;
                    // Drop stale heap entries now and then so reloads do not grow the heap.
                    if heap.len() > slots.len() * 2 + 64 {
                        heap.retain(|Reverse((t, g, n))| slots.get(n).is_some_and(|s| s.plan.generation == *g && s.next_due == *t));
                    }
                }
            },
            _ = async { match next { Some(t) => tokio::time::sleep_until(t.into()).await, None => std::future::pending().await } } => {
                let now = Instant::now();
                while let Some(Reverse((due, generation, name))) = heap.peek().cloned() {
                    if due > now {
                        break;
                    }
                    heap.pop();
                    let Some(slot) = slots.get_mut(&name) else { continue };
                    if slot.plan.generation != generation || slot.next_due != due {
                        continue; // stale entry from before a reload
                    }
                    let interval = slot.plan.monitor.interval;
                    let tier = slot.plan.monitor.tier as usize;
                    if !inner.active.load(Ordering::Acquire) {
                        // A follower replica: the leader probes.
                    } else if slot.running.swap(true, Ordering::AcqRel) {
                        // Still running: skip this run, never double it.
                        inner.skipped_total.fetch_add(1, Ordering::Relaxed);
                        skipped[tier].inc();
                    } else {
                        let plan = slot.plan.clone();
                        let running = slot.running.clone();
                        let inner2 = inner.clone();
                        inner.runs.spawn(async move {
                            inner2.run(plan, due, None).await;
                            running.store(false, Ordering::Release);
                        });
                    }
                    // Next due = previous due + interval (no drift). If we fell a whole interval
                    // behind (stall, suspended process), realign instead of bursting.
                    let mut next_due = due + interval;
                    if next_due <= now {
                        let behind = (now - due).as_nanos() / interval.as_nanos().max(1);
                        let missed = behind as u64;
                        inner.skipped_total.fetch_add(missed, Ordering::Relaxed);
                        skipped[tier].inc_by(missed);
                        next_due = due + Duration::from_nanos((interval.as_nanos() * (behind + 1)).min(u128::from(u64::MAX)) as u64);
                    }
                    slot.next_due = next_due;
                    heap.push(Reverse((next_due, generation, name)));
                }
            }
        }
    }
}

async fn lag_task(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = inner.cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let s = inner
            .lateness
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .summary(inner.epoch.elapsed().as_secs());
        let threshold = inner.opts.lag_threshold.as_secs_f64() * 1000.0;
        let lagging = s.samples > 0 && s.p99_ms > threshold;
        let was = inner.lagging.swap(lagging, Ordering::Relaxed);
        inner.metrics.lagging.set(i64::from(lagging));
        if lagging != was {
            if lagging {
                tracing::warn!(
                    p99_ms = s.p99_ms,
                    threshold_ms = threshold,
                    "engine lagging: checks start late; late results are reported as unknown"
                );
            } else {
                tracing::info!(p99_ms = s.p99_ms, "engine caught up");
            }
        }
    }
}

async fn evaluator_task(
    inner: Arc<Inner>,
    mut results: mpsc::Receiver<EvalMsg>,
    mut cmds: mpsc::UnboundedReceiver<EvalCmd>,
    incidents: mpsc::UnboundedSender<IncidentCmd>,
    mut evals: HashMap<Arc<str>, HashMap<String, MonitorEval>>,
    combined: HashMap<Arc<str>, (State, Scope)>,
) {
    let location = inner.opts.location.clone();
    let mut plans: HashMap<Arc<str>, Arc<Plan>> = HashMap::new();
    let mut counters = CheckCounters::new();
    let mut places = Places {
        all: vec![location.clone()],
        silent: HashSet::new(),
        combined,
    };
    loop {
        let msg = tokio::select! {
            biased;
            cmd = cmds.recv() => {
                if let Some(EvalCmd::Locations { all, silent }) = cmd {
                    places.all = all;
                    places.silent = silent;
                    // Silence changes what counts: judge every monitor again.
                    let names: Vec<Arc<str>> = evals.keys().cloned().collect();
                    for name in names {
                        if let (Some(p), Some(by_location)) = (plans.get(&name), evals.get(&name)) {
                            places.update(&inner, p, by_location, None, &incidents);
                        }
                    }
                    continue;
                }
                if let Some(EvalCmd::Resume(open, done)) = cmd {
                    resume_from_store(&inner, &plans, &mut evals, &mut places, &incidents, open);
                    let _ = done.send(());
                    continue;
                }
                if let Some(EvalCmd::Sync(ps, removed_notes)) = cmd {
                    let names: HashSet<&str> = ps.iter().map(|p| p.monitor.name.as_str()).collect();
                    for name in plans.keys() {
                        if !names.contains(&**name) {
                            let _ = incidents.send(IncidentCmd::Removed {
                                monitor: name.to_string(),
                                reason: removed_notes.get(&**name).cloned(),
                            });
                        }
                    }
                    evals.retain(|m, _| names.contains(&**m));
                    places.combined.retain(|m, _| names.contains(&**m));
                    plans = ps.into_iter().map(|p| (Arc::<str>::from(p.monitor.name.as_str()), p)).collect();
                    for (m, by_location) in evals.iter_mut() {
                        if let Some(p) = plans.get(m) {
                            for e in by_location.values_mut() {
                                e.rules = p.monitor.rules;
                                e.interval = p.monitor.interval;
                            }
                        }
                    }
                }
                continue;
            }
            m = results.recv() => m,
        };
        match msg {
            Some(EvalMsg::Run(done)) => handle_run(
                &inner,
                &location,
                &plans,
                &mut evals,
                &mut places,
                &mut counters,
                &incidents,
                done,
            ),
            Some(EvalMsg::Barrier(done)) => {
                let _ = done.send(());
            }
            Some(EvalMsg::Stop) | None => break,
        }
    }
}

type CheckCounters = HashMap<(Outcome, &'static str), prometheus_client::metrics::counter::Counter>;

#[allow(clippy::too_many_arguments)]
fn handle_run(
    inner: &Arc<Inner>,
    location: &str,
    plans: &HashMap<Arc<str>, Arc<Plan>>,
    evals: &mut HashMap<Arc<str>, HashMap<String, MonitorEval>>,
    places: &mut Places,
    counters: &mut CheckCounters,
    incidents: &mpsc::UnboundedSender<IncidentCmd>,
    done: RunDone,
) {
    inner.runs_total.fetch_add(1, Ordering::Relaxed);
    let plan = plans.get(&done.monitor).cloned();
    let location = done.remote.as_deref().unwrap_or(location);
    // Inside a maintenance window: recorded (apart from availability), not judged.
    let maintenance = plan.as_ref().and_then(|p| {
        let m = &p.monitor;
        let at = done
            .observations
            .first()
            .map(|o| o.started_at)
            .unwrap_or_else(Utc::now);
        let setup = inner.alerting.setup();
        setup
            .settings
            .maintenance_at(&m.name, &m.target.host.to_string(), &m.meta, at)
            .map(|(w, end)| (w.name.clone(), end, w.reason.clone()))
    });
    for o in &done.observations {
        // Results from agents were stored when they arrived (exactly once).
        if done.remote.is_none() {
            inner.store.submit(Record {
                obs: o.clone(),
                maintenance: maintenance.is_some(),
            });
        }
        let kind = o.error.as_ref().map(|e| e.kind.as_str()).unwrap_or("");
        counters
            .entry((o.outcome, kind))
            .or_insert_with(|| {
                inner
                    .metrics
                    .checks
                    .get_or_create(&CheckLabels {
                        outcome: o.outcome.as_str().to_string(),
                        error_kind: kind.to_string(),
                    })
                    .clone()
            })
            .inc();
        if let Some(p) = &plan {
            for (i, phase) in portwarden_core::Phase::ALL.into_iter().enumerate() {
                if let Some(ms) = o.phases.get(phase) {
                    p.metrics.phases[i].observe(ms / 1000.0);
                }
            }
        }
    }
    // A result from before a reload that removed or replaced the monitor is stored, not judged;
    // so is a result that finishes after this replica stepped down (the leader judges).
    let current = plan
        .filter(|p| p.generation == done.generation)
        .filter(|_| inner.active.load(Ordering::Acquire));
    let Some(plan) = current else {
        if let Some(r) = done.reply {
            let _ = r.send(done.observations);
        }
        return;
    };
    let m = &plan.monitor;
    if !inner.opts.evaluate {
        // Probe-only (an agent): the server judges. Keep the live view for `check_now`.
        let state = RunResult::from_observations(done.mono, &done.observations)
            .map_or(State::Pending, |r| State::from(r.outcome));
        {
            let mut live = inner.live.write().unwrap_or_else(|p| p.into_inner());
            if let Some(l) = live.get_mut(&m.name) {
                l.view.state = state;
                l.view.last = done.observations.clone();
                l.view.runs += 1;
            }
        }
        if let Some(r) = done.reply {
            let _ = r.send(done.observations);
        }
        return;
    }
    if let Some((window, end, why)) = maintenance {
        {
            let mut live = inner.live.write().unwrap_or_else(|p| p.into_inner());
            if let Some(l) = live.get_mut(&m.name) {
                if l.view.state != State::Maintenance {
                    l.view.since = Some(Utc::now());
                }
                l.view.state = State::Maintenance;
                l.view.reason = match why {
                    Some(w) => format!("maintenance `{window}` until {end}: {w}"),
                    None => format!("maintenance `{window}` until {end}"),
                };
                l.view.last = done.observations.clone();
                l.view.runs += 1;
            }
        }
        plan.metrics.state.set(State::Maintenance.code());
        if let Some(r) = done.reply {
            let _ = r.send(done.observations);
        }
        return;
    }
    let by_location = match evals.get_mut(m.name.as_str()) {
        Some(e) => e,
        None => evals.entry(Arc::from(m.name.as_str())).or_default(),
    };
    let eval = match by_location.get_mut(location) {
        Some(e) => e,
        None => by_location
            .entry(location.to_string())
            .or_insert_with(|| MonitorEval::new(m.rules, m.interval)),
    };
    let transition = RunResult::from_observations(done.mono, &done.observations)
        .and_then(|r| eval.observe(&r, location));
    let (observations, reply) = match done.reply {
        Some(r) => (done.observations.clone(), Some((r, done.observations))),
        None => (done.observations, None),
    };
    {
        let mut live = inner.live.write().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = live.get_mut(&m.name) {
            l.view.last_healthy = eval.last_healthy().cloned();
            l.view.locations.insert(
                location.to_string(),
                LocationView {
                    state: eval.state(),
                    since: eval.since(),
                    reason: eval.reason().to_string(),
                    last_at: observations.first().map(|o| o.started_at),
                    silent: places.silent.contains(location),
                },
            );
            l.view.last = observations;
            l.view.runs += 1;
        }
    }
    if let Some(t) = &transition {
        tracing::info!(monitor = %m.name, location, from = %t.from, to = %t.to, reason = %t.reason, "state change");
    }
    places.update(inner, &plan, by_location, transition, incidents);
    if let Some((r, obs)) = reply {
        let _ = r.send(obs);
    }
}

/// Where monitors are probed from, and the verdict over all of them.
struct Places {
    /// Every location (for monitors without `locations:`).
    all: Vec<String>,
    /// Locations with no agent heard from.
    silent: HashSet<String>,
    /// The combined verdict per monitor.
    combined: HashMap<Arc<str>, (State, Scope)>,
}

/// How bad a state is, for picking the worst location.
fn severity_rank(s: State) -> u8 {
    match s {
        State::Down => 3,
        State::Flapping => 2,
        State::Degraded => 1,
        _ => 0,
    }
}

/// One step lower (a regional problem pages less loudly than a global one).
fn lower(s: portwarden_core::Severity) -> portwarden_core::Severity {
    use portwarden_core::Severity as S;
    match s {
        S::Critical => S::High,
        S::High => S::Medium,
        S::Medium => S::Low,
        S::Low | S::Info => S::Info,
    }
}

/// The combined verdict of a monitor over its locations: failing at `quorum` or more
/// locations (default 2, or all when fewer probe it) is `global`; fewer is `regional`, naming
/// the failing locations. Silent locations neither fail nor count toward the quorum.
pub fn combine(
    states: &[(&str, State)],
    expected: &[&str],
    silent: &HashSet<String>,
    min_locations: Option<u32>,
) -> (State, Scope) {
    let reporting: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|l| !silent.contains(*l))
        .collect();
    let quorum = (min_locations.unwrap_or(2) as usize)
        .min(reporting.len())
        .max(1);
    let mut failing: Vec<String> = Vec::new();
    let mut worst = State::Up;
    let mut any_up = false;
    let mut any_unknown = false;
    for (l, st) in states {
        if !reporting.contains(l) {
            continue;
        }
        if st.is_bad() {
            failing.push((*l).to_string());
            if severity_rank(*st) > severity_rank(worst) {
                worst = *st;
            }
        } else if *st == State::Up {
            any_up = true;
        } else if *st == State::Unknown {
            any_unknown = true;
        }
    }
    if !failing.is_empty() {
        failing.sort();
        let scope = if failing.len() >= quorum {
            Scope::Global
        } else {
            Scope::Regional(failing)
        };
        return (worst, scope);
    }
    let state = if any_up {
        State::Up
    } else if any_unknown || (reporting.is_empty() && !expected.is_empty()) {
        State::Unknown
    } else {
        State::Pending
    };
    (state, Scope::Global)
}

impl Places {
    /// Recomputes a monitor's combined verdict after a location's result (`t`: its
    /// transition, if any) or a change of silence, updates the live view, and sends the
    /// incident task a transition when the verdict changed.
    fn update(
        &mut self,
        inner: &Arc<Inner>,
        plan: &Arc<Plan>,
        by_location: &HashMap<String, MonitorEval>,
        t: Option<Transition>,
        incidents: &mpsc::UnboundedSender<IncidentCmd>,
    ) {
        let m = &plan.monitor;
        let expected: Vec<&str> = if m.locations.is_empty() {
            self.all.iter().map(String::as_str).collect()
        } else {
            m.locations.iter().map(String::as_str).collect()
        };
        let states: Vec<(&str, State)> = by_location
            .iter()
            .map(|(l, e)| {
                let st = if self.silent.contains(l) {
                    State::Unknown
                } else {
                    e.state()
                };
                (l.as_str(), st)
            })
            .collect();
        let (state, scope) = combine(&states, &expected, &self.silent, m.confirm.min_locations);
        let key: Arc<str> = Arc::from(m.name.as_str());
        let prev = self
            .combined
            .get(&key)
            .cloned()
            .unwrap_or((State::Pending, Scope::Global));
        // The view: combined state; since/reason from the location that decided it.
        let decisive = by_location
            .iter()
            .filter(|(l, _)| !self.silent.contains(*l))
            .max_by_key(|(_, e)| (e.state() == state, severity_rank(e.state())));
        {
            let mut live = inner.live.write().unwrap_or_else(|p| p.into_inner());
            if let Some(l) = live.get_mut(&m.name) {
                if l.view.enabled {
                    l.view.state = state;
                }
                if let Some((_, e)) = decisive {
                    l.view.since = e.since();
                    if l.view.reason != e.reason() {
                        l.view.reason = e.reason().to_string();
                    }
                }
                l.view.scope = state.is_bad().then(|| scope.clone());
                for (loc, v) in l.view.locations.iter_mut() {
                    v.silent = self.silent.contains(loc);
                    if v.silent {
                        v.state = State::Unknown;
                        v.reason = "no agent at this location is reporting".into();
                    } else if let Some(e) = by_location.get(loc) {
                        v.state = e.state();
                    }
                }
            }
        }
        plan.metrics.state.set(state.code());
        plan.metrics
            .up
            .set(i64::from(matches!(state, State::Up | State::Degraded)));
        if prev == (state, scope.clone()) || (prev.0 == state && !state.is_bad()) {
            if prev.0 == state && !state.is_bad() && prev.1 != scope {
                self.combined.insert(key, (state, scope));
            }
            return;
        }
        self.combined.insert(key, (state, scope.clone()));
        let now = Utc::now();
        let t = match t {
            Some(mut t) => {
                t.from = prev.0;
                t.to = state;
                t
            }
            None => Transition {
                from: prev.0,
                to: state,
                at: now,
                reason: String::new(),
                error: None,
                message: None,
                last_healthy: None,
            },
        };
        let mut t = t;
        let describe = |s: &Scope| match s {
            Scope::Global => "global".to_string(),
            Scope::Regional(l) => format!("regional ({})", l.join(", ")),
        };
        if prev.1 != scope && state.is_bad() {
            let where_ = format!(
                "{} → {}",
                if prev.0.is_bad() {
                    describe(&prev.1)
                } else {
                    "none".into()
                },
                describe(&scope)
            );
            t.reason = if t.reason.is_empty() {
                format!("scope {where_}")
            } else {
                format!("{}; scope {where_}", t.reason)
            };
        } else if t.reason.is_empty() {
            t.reason = format!("locations: {}", describe(&scope));
        }
        if t.last_healthy.is_none() {
            t.last_healthy = by_location
                .values()
                .filter_map(|e| e.last_healthy().cloned())
                .max_by_key(|h| h.at);
        }
        tracing::info!(monitor = %m.name, from = %t.from, to = %t.to, scope = scope.as_str(), "combined state change");
        let _ = incidents.send(IncidentCmd::Transition {
            monitor: m.name.clone(),
            severity: m.meta.severity,
            regional_severity: m
                .confirm
                .regional_severity
                .unwrap_or_else(|| lower(m.meta.severity)),
            prev_scope: prev.0.is_bad().then_some(prev.1),
            scope,
            t: Box::new(t),
        });
    }
}

/// Leadership taken: every judgement is rebuilt from the store (the previous leader's open
/// incidents), then the engine turns active and the incident task learns what is open.
/// Where a resumed incident was failing: the named locations of a regional incident, else
/// here (or every location the monitor is probed from).
fn resume_locations(inner: &Inner, m: &Monitor, scope: &Scope) -> Vec<String> {
    match scope {
        Scope::Regional(l) if !l.is_empty() => l.clone(),
        _ if m.runs_at(&inner.opts.location) => vec![inner.opts.location.clone()],
        _ => m.locations.clone(),
    }
}

fn resume_from_store(
    inner: &Arc<Inner>,
    plans: &HashMap<Arc<str>, Arc<Plan>>,
    evals: &mut HashMap<Arc<str>, HashMap<String, MonitorEval>>,
    places: &mut Places,
    incidents: &mpsc::UnboundedSender<IncidentCmd>,
    open: Vec<portwarden_core::Incident>,
) {
    evals.clear();
    places.combined.clear();
    let mut open_map = HashMap::new();
    let mut gone = Vec::new();
    {
        let mut live = inner.live.write().unwrap_or_else(|p| p.into_inner());
        for l in live.values_mut() {
            if l.view.enabled {
                l.view.state = State::Pending;
                l.view.since = None;
                l.view.incident = None;
                l.view.reason = "this replica leads now; judging from the next results".into();
            }
        }
        // Findings' incidents belong to the exposure guard, not to a monitor.
        for inc in open
            .iter()
            .filter(|i| !portwarden_core::is_finding_monitor(&i.monitor))
        {
            open_map.insert(inc.monitor.clone(), inc.id);
            let Some(p) = plans.get(inc.monitor.as_str()) else {
                gone.push(inc.monitor.clone());
                continue;
            };
            for loc in resume_locations(inner, &p.monitor, &inc.scope) {
                let mut e = MonitorEval::new(p.monitor.rules, p.monitor.interval);
                e.resume(inc.state, inc.opened_at, inc.last_healthy.clone());
                evals
                    .entry(Arc::from(inc.monitor.as_str()))
                    .or_default()
                    .insert(loc, e);
            }
            places.combined.insert(
                Arc::from(inc.monitor.as_str()),
                (inc.state, inc.scope.clone()),
            );
            if let Some(l) = live.get_mut(&inc.monitor) {
                l.view.state = inc.state;
                l.view.since = Some(inc.opened_at);
                l.view.incident = Some(inc.id);
                l.view.reason = "open incident (taken over from the previous leader)".into();
                l.view.last_healthy = inc.last_healthy.clone();
            }
        }
    }
    tracing::info!(
        open_incidents = open_map.len(),
        "evaluator state rebuilt from the store"
    );
    inner.active.store(true, Ordering::Release);
    let _ = incidents.send(IncidentCmd::Reset(open_map));
    for monitor in gone {
        let _ = incidents.send(IncidentCmd::Removed {
            monitor,
            reason: None,
        });
    }
}

/// How often the leader looks into the agent inbox when nothing woke it (uploads stored by
/// another replica).
const INBOX_POLL: Duration = Duration::from_millis(250);
/// Inbox rows read per round.
const INBOX_BATCH: usize = 256;

/// The agent inbox reader (the leader only): every agent batch any replica stored, in inbox
/// order, into the evaluator as runs of the agent's location; a row is deleted only after the
/// evaluator handled it while this replica still leads (the delete is fenced by the leader
/// term), so a leader change loses nothing — the next leader judges what is left.
async fn inbox_task(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(INBOX_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    let mut undeleted: Vec<i64> = Vec::new();
    // Uploads stored by another replica (PostgreSQL LISTEN/NOTIFY), when the store has it.
    let signal = inner.store.agent_inbox_signal();
    let elsewhere = || async {
        match &signal {
            Some(s) => s.notified().await,
            None => std::future::pending().await,
        }
    };
    loop {
        tokio::select! {
            _ = inner.cancel.cancelled() => break,
            _ = tick.tick() => {}
            _ = inner.inbox_wake.notified() => {}
            _ = elsewhere() => {}
        }
        if !inner.active.load(Ordering::Acquire) {
            // A later term re-reads whatever is left.
            undeleted.clear();
        }
        while inner.active.load(Ordering::Acquire) && !inner.cancel.is_cancelled() {
            // Judged but not yet deleted: delete first, so nothing is judged twice here.
            if !undeleted.is_empty() {
                if inner.store.agent_inbox_done(&undeleted).await.is_err() {
                    break;
                }
                undeleted.clear();
            }
            let batches = match inner.store.agent_inbox(INBOX_BATCH).await {
                Ok(b) => {
                    if failing {
                        tracing::info!("agent inbox readable again");
                        failing = false;
                    }
                    b
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "cannot read the agent inbox; agents' results wait in the store");
                        failing = true;
                    }
                    break;
                }
            };
            if batches.is_empty() {
                break;
            }
            let full = batches.len() == INBOX_BATCH;
            let ids: Vec<i64> = batches.iter().map(|b| b.id).collect();
            for b in batches {
                for run in b.runs {
                    if let Some(done) =
                        remote_run(&inner, &b.location, &run.monitor, run.observations)
                        && inner.results_tx.send(EvalMsg::Run(done)).await.is_err()
                    {
                        return;
                    }
                }
            }
            let (tx, rx) = oneshot::channel();
            if inner.results_tx.send(EvalMsg::Barrier(tx)).await.is_err() || rx.await.is_err() {
                return;
            }
            if !inner.active.load(Ordering::Acquire) {
                // Stepped down meanwhile: the runs may not have been judged; the next leader
                // reads them again.
                break;
            }
            if let Err(e) = inner.store.agent_inbox_done(&ids).await {
                tracing::warn!(error = %e, rows = ids.len(), "cannot mark agent batches judged; retrying before reading more");
                undeleted = ids;
                break;
            }
            if !full {
                break;
            }
        }
    }
}

/// A run of `monitor` made by an agent at `location` (already stored), for the evaluator;
/// `None` when the monitor is unknown here (not judged).
fn remote_run(
    inner: &Inner,
    location: &str,
    monitor: &str,
    observations: Vec<Observation>,
) -> Option<RunDone> {
    let generation = inner
        .plans
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(monitor)
        .map(|p| p.generation)?;
    let first = observations.first()?;
    // Its place on our monotonic clock: how long ago it started (wall clocks are only
    // compared after the agent corrected its offset).
    let ago = (Utc::now() - first.started_at)
        .to_std()
        .unwrap_or(Duration::ZERO);
    let mono = (MONO_BASE + inner.epoch.elapsed()).saturating_sub(ago);
    Some(RunDone {
        monitor: monitor.into(),
        generation,
        mono,
        observations,
        reply: None,
        remote: Some(location.to_string()),
    })
}

/// On a follower replica, the live views mirror the store every few seconds: the leader's
/// open incidents and the newest observation of each monitor.
async fn follower_task(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = inner.cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        if inner.active.load(Ordering::Acquire) {
            continue;
        }
        let (open, last) = match (
            inner.store.open_incidents().await,
            inner.store.last_observations().await,
        ) {
            (Ok(o), Ok(l)) => (o, l),
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!(error = %e, "follower cannot read the store");
                continue;
            }
        };
        if inner.active.load(Ordering::Acquire) {
            continue; // became the leader meanwhile: its own views win
        }
        let by_monitor: HashMap<&str, &portwarden_core::Incident> =
            open.iter().map(|i| (i.monitor.as_str(), i)).collect();
        let mut live = inner.live.write().unwrap_or_else(|p| p.into_inner());
        for (name, l) in live.iter_mut() {
            if !l.view.enabled {
                continue;
            }
            if let Some(o) = last.get(name) {
                l.view.last = vec![o.clone()];
            }
            match by_monitor.get(name.as_str()) {
                Some(inc) => {
                    l.view.state = inc.state;
                    l.view.since = Some(inc.opened_at);
                    l.view.incident = Some(inc.id);
                    l.view.last_healthy = inc.last_healthy.clone();
                    l.view.reason = "open incident (judged by the leader replica)".into();
                }
                None => {
                    l.view.incident = None;
                    l.view.state = match last.get(name).map(|o| o.outcome) {
                        Some(Outcome::Degraded) => State::Degraded,
                        Some(_) => State::Up,
                        None => State::Pending,
                    };
                    l.view.reason = "no open incident (judged by the leader replica)".into();
                }
            }
        }
    }
}

async fn incident_task(
    inner: Arc<Inner>,
    mut rx: mpsc::UnboundedReceiver<IncidentCmd>,
    mut open: HashMap<String, IncidentId>,
) {
    while let Some(cmd) = rx.recv().await {
        if let IncidentCmd::Reset(now_open) = cmd {
            open = now_open;
            inner.metrics.incidents_open.set(open.len() as i64);
            continue;
        }
        // Retry each change until the store takes it: incidents must not be lost, and they
        // must be applied in order. A follower writes none: the leader owns incidents (and
        // rebuilds from the store when it takes over).
        let mut backoff = Duration::from_millis(200);
        loop {
            if !inner.active.load(Ordering::Acquire) {
                tracing::info!(
                    "not the leader any more: an incident change is left to the new leader"
                );
                break;
            }
            match apply_incident(&inner, &mut open, &cmd).await {
                Ok(()) => break,
                Err(e) => {
                    inner.metrics.incident_write_errors.inc();
                    tracing::warn!(error = %e, retry_in = ?backoff, "could not write an incident change; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = inner.cancel.cancelled() => {
                            // At shutdown, one more try then give up; the next start resumes.
                            let _ = apply_incident(&inner, &mut open, &cmd).await;
                            break;
                        }
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        inner.metrics.incidents_open.set(open.len() as i64);
    }
}

async fn apply_incident(
    inner: &Arc<Inner>,
    open: &mut HashMap<String, IncidentId>,
    cmd: &IncidentCmd,
) -> Result<(), portwarden_store::StoreError> {
    let set_live = |monitor: &str, id: Option<IncidentId>| {
        if let Some(l) = inner
            .live
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(monitor)
        {
            l.view.incident = id;
        }
    };
    match cmd {
        IncidentCmd::Reset(_) => {}
        IncidentCmd::Removed { monitor, reason } => {
            if let Some(id) = open.get(monitor).copied() {
                let now = Utc::now();
                let rows = inner.alerting.on_resolve(id, now);
                inner
                    .store
                    .change_incident_with(
                        id,
                        IncidentChange::Resolve {
                            at: now,
                            event: IncidentEvent::new(
                                now,
                                EventKind::Resolved,
                                reason
                                    .clone()
                                    .unwrap_or_else(|| "monitor removed from the config".into()),
                            ),
                        },
                        rows.clone(),
                    )
                    .await?;
                inner.alerting.resolved(id);
                open.remove(monitor);
            }
        }
        IncidentCmd::Transition {
            monitor,
            severity,
            regional_severity,
            scope,
            prev_scope,
            t,
        } => {
            let existing = open.get(monitor).copied();
            // A regional problem is announced (and routed) at its own, lower severity.
            let incident_severity = if matches!(scope, Scope::Regional(_)) {
                *regional_severity
            } else {
                *severity
            };
            let message = match (&t.error, &t.message) {
                (Some(e), Some(m)) => format!("{} → {}: {} ({e}: {m})", t.from, t.to, t.reason),
                _ => format!("{} → {}: {}", t.from, t.to, t.reason),
            };
            let def = inner
                .plans
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(monitor)
                .map(|p| p.monitor.clone());
            match (existing, t.to.is_bad()) {
                (None, true) => {
                    let message_text = t.message.clone().or_else(|| Some(t.reason.clone()));
                    let (outbox, item, parent) = match &def {
                        Some(m) => {
                            let all: HashMap<String, Arc<Monitor>> = inner
                                .plans
                                .read()
                                .unwrap_or_else(|p| p.into_inner())
                                .iter()
                                .map(|(k, p)| (k.clone(), p.monitor.clone()))
                                .collect();
                            let mut item = crate::alerting::item_for(
                                m,
                                t.to,
                                t.at,
                                None,
                                t.error.clone(),
                                message_text.clone(),
                                t.last_healthy.clone(),
                                scope.clone(),
                            );
                            if matches!(scope, Scope::Regional(_)) {
                                item.severity = incident_severity;
                            }
                            let (rows, _note, parent) =
                                inner.alerting.on_open(m, &all, item.clone());
                            (rows, Some(item), parent)
                        }
                        None => (Vec::new(), None, None),
                    };
                    let rows = outbox.clone();
                    let id = inner
                        .store
                        .open_incident(NewIncident {
                            outbox,
                            monitor: monitor.clone(),
                            state: t.to,
                            severity: incident_severity,
                            scope: scope.clone(),
                            opened_at: t.at,
                            error_kind: t.error.clone(),
                            message: t.message.clone().or_else(|| Some(t.reason.clone())),
                            last_healthy: t.last_healthy.clone(),
                            event: IncidentEvent::new(t.at, EventKind::Opened, message).with_data(serde_json::json!({
                                "from": t.from, "to": t.to, "reason": t.reason, "error_kind": t.error,
                                "scope": scope.as_str(), "locations": scope.locations(),
                            })),
                        })
                        .await?;
                    tracing::warn!(monitor = %monitor, incident = id, state = %t.to, notifications = rows.iter().filter(|r| r.status == portwarden_store::OutboxStatus::Pending).count(), "incident opened");
                    if let (Some(m), Some(item)) = (&def, &item) {
                        inner.alerting.opened(id, m, item, &rows, parent);
                    }
                    open.insert(monitor.clone(), id);
                    set_live(monitor, Some(id));
                }
                (Some(id), true) => {
                    // Regional → global or back: everyone told hears the new scope, once per
                    // change (the key names the change).
                    let rows = match &prev_scope {
                        Some(p) if p.as_str() != scope.as_str() => {
                            let key =
                                format!("scope-{}-{}", scope.as_str(), t.at.timestamp_millis());
                            let rows = inner.alerting.on_scope_change(
                                id,
                                &key,
                                t.to,
                                scope.clone(),
                                incident_severity,
                            );
                            if !rows.is_empty() {
                                tracing::warn!(monitor = %monitor, incident = id, scope = scope.as_str(), "incident scope changed; notifying");
                            }
                            rows
                        }
                        // Degraded or flapping → down: who was told hears it is worse now.
                        _ if t.to.gravity() > t.from.gravity() && t.from.is_bad() => {
                            let key = format!("worse-{}-{}", t.to, t.at.timestamp_millis());
                            let rows = inner.alerting.on_worse(
                                id,
                                &key,
                                t.to,
                                t.error.clone(),
                                t.message.clone().or_else(|| Some(t.reason.clone())),
                                scope.clone(),
                                incident_severity,
                            );
                            if !rows.is_empty() {
                                tracing::warn!(monitor = %monitor, incident = id, from = %t.from, to = %t.to, "incident got worse; notifying");
                            }
                            rows
                        }
                        _ => Vec::new(),
                    };
                    inner
                        .store
                        .change_incident_with(
                            id,
                            IncidentChange::Update {
                                state: Some(t.to),
                                scope: Some(scope.clone()),
                                error_kind: t.error.clone(),
                                message: t.message.clone(),
                                event: IncidentEvent::new(
                                    t.at,
                                    if t.from == t.to {
                                        EventKind::ScopeChanged
                                    } else {
                                        EventKind::StateChanged
                                    },
                                    message,
                                )
                                .with_data(serde_json::json!({
                                    "scope": scope.as_str(), "locations": scope.locations(),
                                })),
                            },
                            rows,
                        )
                        .await?;
                    inner.alerting.wake.notify_one();
                }
                (Some(id), false) if t.to == State::Up => {
                    let rows = inner.alerting.on_resolve(id, t.at);
                    inner
                        .store
                        .change_incident_with(
                            id,
                            IncidentChange::Resolve {
                                at: t.at,
                                event: IncidentEvent::new(t.at, EventKind::Resolved, message),
                            },
                            rows.clone(),
                        )
                        .await?;
                    inner.alerting.resolved(id);
                    tracing::info!(monitor = %monitor, incident = id, "incident resolved");
                    open.remove(monitor);
                    set_live(monitor, None);
                }
                (Some(id), false) => {
                    // Unknown, maintenance, paused: the incident stays open, the timeline says why.
                    inner
                        .store
                        .change_incident(
                            id,
                            IncidentChange::Update {
                                state: None,
                                scope: None,
                                error_kind: None,
                                message: None,
                                event: IncidentEvent::new(t.at, EventKind::Note, message),
                            },
                        )
                        .await?;
                }
                (None, false) => {}
            }
        }
    }
    Ok(())
}
