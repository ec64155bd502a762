//! The exposure guard inside `serve`: scans every baseline on its interval (each at a fixed
//! phase offset inside the interval, so baselines spread out instead of bursting), compares
//! with the baseline, and stores the scan, its findings and their incidents in one
//! transaction. A finding stays open while scans keep seeing it and resolves (with its
//! incident) when the next scan no longer does.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use portwarden_core::{EventKind, IncidentEvent, IncidentId, Scope, State, Transport};
use portwarden_store::{
    FindingFilter, FindingRecord, GoneFinding, IncidentChange, NewFinding, NewIncident, NewOutbox,
    ScanApplied, ScanApply, ScanFilter, ScanRecord, SeenFinding, Store,
};
use tokio::sync::{Notify, watch};

use crate::baseline::{self, Baseline, FindingKey, FindingKind, Fingerprints, Observed};
use crate::{PortState, ScanReport, ScanRequest, Scanner, ServiceGuess};

/// A finding's incident opening or resolving: what its notification says.
#[derive(Debug, Clone, PartialEq)]
pub struct FindingNote {
    pub kind: FindingKind,
    pub host: IpAddr,
    pub port: u16,
    pub transport: Transport,
    /// The port's state in the scan that saw the finding.
    pub state: PortState,
    /// What was seen and what was expected, for people.
    pub message: String,
    pub service: Option<ServiceGuess>,
    pub expected_service: Option<String>,
    pub previous_fingerprint: Option<String>,
    pub first_seen: DateTime<Utc>,
    /// Set when it resolves: the incident and when.
    pub resolved: Option<(IncidentId, DateTime<Utc>)>,
}

/// Builds the notifications (outbox rows) of a finding's incident opening (`resolved: None`)
/// or resolving — through the same routes, silences and idempotency keys as monitors'
/// incidents. Given by the server (`serve` wires the engine's alerting here); the rows are
/// written in the scan's transaction.
pub type OutboxHook =
    Arc<dyn Fn(Arc<Baseline>, FindingNote) -> BoxFuture<'static, Vec<NewOutbox>> + Send + Sync>;

/// The hosts of the monitors (written and discovered, as they are now) whose labels include
/// all of these. Given by the server; read at each scan of a baseline with `labels:`.
pub type LabelHosts =
    Arc<dyn Fn(&std::collections::BTreeMap<String, String>) -> Vec<String> + Send + Sync>;

/// One baseline to run, with the hosts its `labels` selected from the monitors.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub baseline: Baseline,
    /// `targets` plus the hosts of matching monitors.
    pub targets: Vec<String>,
}

/// The latest result per baseline (for the API and the UI).
#[derive(Debug, Clone, serde::Serialize)]
pub struct BaselineStatus {
    pub name: String,
    pub interval_s: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_scan: Option<ScanRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_scan_in_s: Option<u64>,
    pub running: bool,
}

struct Slot {
    plan: Plan,
    next: Instant,
    running: bool,
    last: Option<ScanRecord>,
}

/// The guard: owns the schedule; scans run one at a time (they are heavy by nature).
pub struct Guard {
    store: Arc<dyn Store>,
    scanner: Scanner,
    hook: Option<OutboxHook>,
    slots: Mutex<BTreeMap<String, Slot>>,
    /// Last fingerprints per baseline (service_changed compares against them).
    fingerprints: Mutex<HashMap<String, Fingerprints>>,
    wake: Notify,
    /// This replica runs the schedule (the leader; always with SQLite).
    leading: std::sync::atomic::AtomicBool,
    /// The configured baselines changed: look for open findings of removed ones.
    retire: std::sync::atomic::AtomicBool,
    label_hosts: Mutex<Option<LabelHosts>>,
}

/// Resolves once `rx` holds `want`; never when its sender is gone.
async fn until(rx: &mut watch::Receiver<bool>, want: bool) {
    if rx.wait_for(|v| *v == want).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// FNV-1a of the name: a stable phase offset inside the interval.
fn phase(name: &str, interval: Duration) -> Duration {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let ms = interval.as_millis().max(1) as u64;
    Duration::from_millis(h % ms)
}

impl Guard {
    pub fn new(store: Arc<dyn Store>, scanner: Scanner, hook: Option<OutboxHook>) -> Arc<Guard> {
        Arc::new(Guard {
            store,
            scanner,
            hook,
            slots: Mutex::new(BTreeMap::new()),
            fingerprints: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            leading: std::sync::atomic::AtomicBool::new(false),
            retire: std::sync::atomic::AtomicBool::new(true),
            label_hosts: Mutex::new(None),
        })
    }

    /// Lets each scan of a baseline with `labels:` take the matching monitors' hosts as they
    /// are then (discovered monitors come and go between reloads).
    pub fn set_label_hosts(&self, f: LabelHosts) {
        *self.label_hosts.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
    }

    /// The plan with the hosts its labels select now.
    fn current(&self, mut plan: Plan) -> Plan {
        if plan.baseline.labels.is_empty() {
            return plan;
        }
        let f = self
            .label_hosts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(f) = f {
            for h in f(&plan.baseline.labels) {
                if !plan.targets.contains(&h) {
                    plan.targets.push(h);
                }
            }
        }
        plan
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies the baselines of a (re)loaded config. Unchanged baselines keep their schedule;
    /// new or changed ones start at their phase offset inside the interval.
    pub fn apply(&self, plans: Vec<Plan>) {
        let now = Instant::now();
        let mut slots = self.slots();
        let mut next: BTreeMap<String, Slot> = BTreeMap::new();
        for p in plans {
            let name = p.baseline.name.clone();
            match slots.remove(&name) {
                Some(mut s) if s.plan.baseline.interval == p.baseline.interval => {
                    s.plan = p;
                    next.insert(name, s);
                }
                old => {
                    let first = now + phase(&name, p.baseline.interval);
                    next.insert(
                        name,
                        Slot {
                            next: first,
                            running: false,
                            last: old.and_then(|o| o.last),
                            plan: p,
                        },
                    );
                }
            }
        }
        *slots = next;
        drop(slots);
        self.retire
            .store(true, std::sync::atomic::Ordering::Release);
        self.wake.notify_one();
    }

    /// Makes a baseline due now (the API's "scan now"). False when there is no such baseline.
    pub fn trigger(&self, name: &str) -> bool {
        let found = match self.slots().get_mut(name) {
            Some(s) => {
                s.next = Instant::now();
                true
            }
            None => false,
        };
        self.wake.notify_one();
        found
    }

    /// Each baseline's last scan and, on the replica that runs the schedule, when the next is due.
    pub fn status(&self) -> Vec<BaselineStatus> {
        let now = Instant::now();
        let leading = self.is_leading();
        self.slots()
            .values()
            .map(|s| BaselineStatus {
                name: s.plan.baseline.name.clone(),
                interval_s: s.plan.baseline.interval.as_secs(),
                last_scan: s.last.clone(),
                next_scan_in_s: (leading && !s.running)
                    .then(|| s.next.saturating_duration_since(now).as_secs()),
                running: s.running,
            })
            .collect()
    }

    pub fn baselines(&self) -> Vec<Baseline> {
        self.slots()
            .values()
            .map(|s| s.plan.baseline.clone())
            .collect()
    }

    /// Runs until `stop` turns true: waits for the earliest due baseline, scans it, repeats.
    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let (_always, leader) = watch::channel(true);
        self.run_led(stop, leader).await;
    }

    /// [`run`](Self::run) while this replica leads (`leader` is true). With several replicas on
    /// one PostgreSQL database only the leader scans (the store fences its writes to the
    /// leader's term): a follower scans nothing, refreshes each baseline's last scan from the
    /// store for its status, and on becoming the leader reads the last scans again (the
    /// fingerprints `service_changed` compares with) and takes over the schedule. A scan
    /// running when leadership is lost is dropped unrecorded.
    pub async fn run_led(
        self: Arc<Self>,
        mut stop: watch::Receiver<bool>,
        mut leader: watch::Receiver<bool>,
    ) {
        loop {
            if *stop.borrow() {
                return;
            }
            if !*leader.borrow_and_update() {
                self.leading
                    .store(false, std::sync::atomic::Ordering::Release);
                self.refresh_last().await;
                tokio::select! {
                    _ = until(&mut leader, true) => {}
                    _ = stop.changed() => {}
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                }
                continue;
            }
            self.leading
                .store(true, std::sync::atomic::Ordering::Release);
            self.retire
                .store(true, std::sync::atomic::Ordering::Release);
            self.load_last().await;
            tracing::info!(
                baselines = self.slots().len(),
                "exposure guard: scheduled scans run on this replica"
            );
            self.lead(&mut stop, &mut leader).await;
        }
    }

    /// The schedule, while leading: returns when `stop` turns true or leadership is lost.
    async fn lead(&self, stop: &mut watch::Receiver<bool>, leader: &mut watch::Receiver<bool>) {
        loop {
            if *stop.borrow() || !*leader.borrow() {
                return;
            }
            if self.retire.swap(false, std::sync::atomic::Ordering::AcqRel) {
                self.retire_removed().await;
            }
            let due = {
                let slots = self.slots();
                slots
                    .values()
                    .min_by_key(|s| s.next)
                    .map(|s| (s.plan.baseline.name.clone(), s.next))
            };
            let wait = match &due {
                Some((_, at)) => at.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if !wait.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.wake.notified() => {}
                    _ = stop.changed() => {}
                    _ = until(leader, false) => {}
                }
                continue;
            }
            let Some((name, _)) = due else { continue };
            let plan = {
                let mut slots = self.slots();
                let Some(s) = slots.get_mut(&name) else {
                    continue;
                };
                s.running = true;
                // Next due = this due + interval (no drift); after a long stall, realign.
                let interval = s.plan.baseline.interval;
                s.next += interval;
                if s.next <= Instant::now() {
                    s.next = Instant::now() + interval;
                }
                s.plan.clone()
            };
            let plan = self.current(plan);
            let rec = tokio::select! {
                r = self.scan_once(&plan) => r,
                _ = stop.changed() => None,
                _ = until(leader, false) => {
                    tracing::info!(baseline = %name, "not the leader any more: scan dropped");
                    None
                }
            };
            let mut slots = self.slots();
            match slots.get_mut(&name) {
                Some(s) => {
                    s.running = false;
                    if rec.is_some() {
                        s.last = rec;
                    }
                }
                // Removed from the config while it scanned: what it just recorded retires.
                None => self
                    .retire
                    .store(true, std::sync::atomic::Ordering::Release),
            }
        }
    }

    /// Open findings of baselines no longer in the config are resolved, with their incidents
    /// (and resolve notifications to whoever heard the trigger), by a record per baseline that
    /// says why — as a monitor removed from the config resolves its incident.
    async fn retire_removed(&self) {
        let configured: std::collections::HashSet<String> = self.slots().keys().cloned().collect();
        let open = match self
            .store
            .findings(&FindingFilter {
                status: Some("open".into()),
                limit: 10_000,
                ..Default::default()
            })
            .await
        {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read open findings; retrying later");
                self.retire
                    .store(true, std::sync::atomic::Ordering::Release);
                return;
            }
        };
        let mut by: BTreeMap<String, Vec<FindingRecord>> = BTreeMap::new();
        for f in open {
            if !configured.contains(&f.baseline) {
                by.entry(f.baseline.clone()).or_default().push(f);
            }
        }
        for (name, list) in by {
            let b = Arc::new(Baseline::removed(&name));
            let now = Utc::now();
            let why = "baseline removed from the config";
            let mut gone = Vec::new();
            for f in &list {
                let outbox = match (&self.hook, f.incident_id, key_of(f)) {
                    (Some(h), Some(iid), Some(k)) => {
                        let mut note = note_of(f, &k, now, iid);
                        note.message = format!("{why}: {}", f.message);
                        h(b.clone(), note).await
                    }
                    _ => vec![],
                };
                gone.push(GoneFinding {
                    id: f.id,
                    incident: f.incident_id.map(|iid| {
                        (
                            iid,
                            IncidentChange::Resolve {
                                at: now,
                                event: IncidentEvent::new(
                                    now,
                                    EventKind::Resolved,
                                    format!("{why}: {}", f.message),
                                ),
                            },
                        )
                    }),
                    outbox,
                });
            }
            let rec = ScanRecord {
                id: 0,
                baseline: Some(name.clone()),
                started_at: now,
                finished_at: now,
                duration_ms: 0.0,
                targets: vec![],
                hosts: 0,
                probes: 0,
                open_ports: 0,
                findings_opened: 0,
                findings_open: 0,
                findings_resolved: gone.len() as u64,
                coverage: serde_json::json!({}),
                error: Some(format!(
                    "{why}: nothing scanned; its {} open finding(s) are resolved",
                    gone.len()
                )),
                report: None,
            };
            match self
                .store
                .apply_scan(ScanApply {
                    scan: rec,
                    opened: vec![],
                    seen: vec![],
                    gone,
                })
                .await
            {
                Ok(_) => {
                    tracing::info!(baseline = %name, findings = list.len(), "baseline removed: its open findings are resolved")
                }
                Err(e) => {
                    tracing::warn!(baseline = %name, error = %e, "cannot resolve the findings of a removed baseline; retrying later");
                    self.retire
                        .store(true, std::sync::atomic::Ordering::Release);
                }
            }
        }
    }

    /// Each configured baseline's last stored scan (those that have one).
    async fn last_scans(&self) -> Vec<(String, ScanRecord)> {
        let names: Vec<String> = self.slots().keys().cloned().collect();
        let mut out = Vec::new();
        for name in names {
            let filter = ScanFilter {
                baseline: Some(name.clone()),
                limit: 1,
                ..Default::default()
            };
            if let Ok(list) = self.store.scans(&filter).await
                && let Some(last) = list.into_iter().next()
            {
                out.push((name, last));
            }
        }
        out
    }

    /// A follower's view: each baseline's last scan as the leader recorded it.
    async fn refresh_last(&self) {
        for (name, last) in self.last_scans().await {
            if let Some(s) = self.slots().get_mut(&name) {
                s.running = false;
                s.last = Some(last);
            }
        }
    }

    /// Whether this replica runs the schedule (false on a follower).
    pub fn is_leading(&self) -> bool {
        self.leading.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Reads each baseline's last scan (status and fingerprints survive a restart).
    async fn load_last(&self) {
        for (name, last) in self.last_scans().await {
            if let Ok(Some(full)) = self.store.scan(last.id).await
                && let Some(r) = full
                    .report
                    .and_then(|v| serde_json::from_value::<ScanReport>(v).ok())
            {
                self.fingerprints
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(name.clone(), baseline::fingerprints(&r));
            }
            if let Some(s) = self.slots().get_mut(&name) {
                s.last = Some(last);
            }
        }
    }

    /// Scans one baseline now and records the result. Returns the stored scan.
    pub async fn scan_once(&self, plan: &Plan) -> Option<ScanRecord> {
        let b = &plan.baseline;
        let req = ScanRequest {
            targets: plan.targets.clone(),
            tcp_ports: (!b.tcp_ports.is_empty()).then(|| b.tcp_ports.clone()),
            udp_ports: b.udp_ports.clone(),
            options: b.options.clone(),
        };
        let started = Utc::now();
        let t0 = Instant::now();
        let report = match self.scanner.run(&req, None).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(baseline = %b.name, error = %e, "scheduled scan failed");
                let rec = ScanRecord {
                    id: 0,
                    baseline: Some(b.name.clone()),
                    started_at: started,
                    finished_at: Utc::now(),
                    duration_ms: t0.elapsed().as_secs_f64() * 1000.0,
                    targets: plan.targets.clone(),
                    hosts: 0,
                    probes: 0,
                    open_ports: 0,
                    findings_opened: 0,
                    findings_open: 0,
                    findings_resolved: 0,
                    coverage: serde_json::json!({}),
                    error: Some(e.to_string()),
                    report: None,
                };
                // Findings stay as they are: a failed scan proves nothing either way.
                return self
                    .store
                    .apply_scan(ScanApply {
                        scan: rec.clone(),
                        opened: vec![],
                        seen: vec![],
                        gone: vec![],
                    })
                    .await
                    .ok()
                    .map(|a| ScanRecord {
                        id: a.scan_id,
                        ..rec
                    });
            }
        };
        match self.record(plan, report).await {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::error!(baseline = %b.name, error = %e, "cannot store the scan");
                None
            }
        }
    }

    /// Compares a finished scan with the baseline and stores everything in one transaction.
    pub async fn record(
        &self,
        plan: &Plan,
        report: ScanReport,
    ) -> portwarden_store::Result<ScanRecord> {
        let b = &plan.baseline;
        let previous = self
            .fingerprints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&b.name)
            .cloned();
        let observed = baseline::compare(b, &report, previous.as_ref());
        let open = self
            .store
            .findings(&FindingFilter {
                status: Some("open".into()),
                baseline: Some(b.name.clone()),
                limit: 10_000,
                ..Default::default()
            })
            .await?;
        let scanned: HashMap<IpAddr, ()> = report.hosts.iter().map(|h| (h.addr, ())).collect();
        let mut by_key: HashMap<FindingKey, &FindingRecord> = HashMap::new();
        for f in &open {
            if let Some(k) = key_of(f) {
                by_key.insert(k, f);
            }
        }
        let now = report.finished_at;
        let monitor = b.incident_monitor();
        let shared = Arc::new(b.clone());
        let mut apply = ScanApply {
            scan: ScanRecord {
                id: 0,
                baseline: Some(b.name.clone()),
                started_at: report.started_at,
                finished_at: report.finished_at,
                duration_ms: report.duration_ms,
                targets: plan.targets.clone(),
                hosts: report.hosts.len() as u64,
                probes: report.probes,
                open_ports: report.open_ports().count() as u64,
                findings_opened: 0,
                findings_open: 0,
                findings_resolved: 0,
                coverage: coverage(b, &report),
                error: None,
                report: serde_json::to_value(&report).ok(),
            },
            opened: vec![],
            seen: vec![],
            gone: vec![],
        };
        let mut seen_keys = std::collections::HashSet::new();
        for o in &observed {
            seen_keys.insert(o.key.clone());
            let detail = detail(o);
            match by_key.get(&o.key) {
                Some(f) => apply.seen.push(SeenFinding {
                    id: f.id,
                    message: o.message.clone(),
                    detail,
                }),
                None => {
                    let mut incident = NewIncident {
                        monitor: monitor.clone(),
                        state: State::Down,
                        severity: b.severity,
                        scope: Scope::Global,
                        opened_at: now,
                        error_kind: Some(o.key.kind.as_str().to_string()),
                        message: Some(o.message.clone()),
                        last_healthy: None,
                        event: IncidentEvent::new(now, EventKind::Opened, o.message.clone())
                            .with_data(detail.clone()),
                        outbox: vec![],
                    };
                    if let Some(h) = &self.hook {
                        let note = FindingNote {
                            kind: o.key.kind,
                            host: o.key.host,
                            port: o.key.port,
                            transport: o.key.transport,
                            state: o.state,
                            message: o.message.clone(),
                            service: o.service.clone(),
                            expected_service: o.expected_service.clone(),
                            previous_fingerprint: o.previous_fingerprint.clone(),
                            first_seen: now,
                            resolved: None,
                        };
                        incident.outbox = h(shared.clone(), note).await;
                    }
                    apply.opened.push(NewFinding {
                        baseline: b.name.clone(),
                        kind: o.key.kind.as_str().into(),
                        host: o.key.host.to_string(),
                        port: o.key.port,
                        transport: o.key.transport.as_str().into(),
                        severity: b.severity,
                        message: o.message.clone(),
                        detail,
                        incident: Some(incident),
                    });
                }
            }
        }
        for f in &open {
            let Some(k) = key_of(f) else { continue };
            if seen_keys.contains(&k) {
                continue;
            }
            // A host this scan did not reach (name gone, scan incomplete) proves nothing.
            if !scanned.contains_key(&k.host)
                && plan
                    .targets
                    .iter()
                    .any(|t| t.parse::<IpAddr>().ok() == Some(k.host))
            {
                continue;
            }
            let msg = format!("no longer seen: {}", f.message);
            let outbox = match (&self.hook, f.incident_id) {
                (Some(h), Some(iid)) => {
                    let note = note_of(f, &k, now, iid);
                    h(shared.clone(), note).await
                }
                _ => vec![],
            };
            apply.gone.push(GoneFinding {
                id: f.id,
                incident: f.incident_id.map(|iid: IncidentId| {
                    (
                        iid,
                        IncidentChange::Resolve {
                            at: now,
                            event: IncidentEvent::new(now, EventKind::Resolved, msg.clone()),
                        },
                    )
                }),
                outbox,
            });
        }
        apply.scan.findings_opened = apply.opened.len() as u64;
        apply.scan.findings_open = (apply.opened.len() + apply.seen.len()) as u64;
        apply.scan.findings_resolved = apply.gone.len() as u64;
        let ScanApplied { scan_id, .. } = self.store.apply_scan(apply.clone()).await?;
        self.fingerprints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                b.name.clone(),
                baseline::carry_fingerprints(previous.as_ref(), &report),
            );
        tracing::info!(
            baseline = %b.name,
            scan = scan_id,
            hosts = apply.scan.hosts,
            open_ports = apply.scan.open_ports,
            opened = apply.scan.findings_opened,
            resolved = apply.scan.findings_resolved,
            "scheduled scan done"
        );
        let mut rec = apply.scan;
        rec.id = scan_id;
        rec.report = None;
        Ok(rec)
    }
}

/// The note of a stored finding resolving at `at` (what it saw is in its `detail`).
fn note_of(
    f: &FindingRecord,
    k: &FindingKey,
    at: DateTime<Utc>,
    incident: IncidentId,
) -> FindingNote {
    let d = |name: &str| f.detail.get(name).cloned().unwrap_or_default();
    FindingNote {
        kind: k.kind,
        host: k.host,
        port: k.port,
        transport: k.transport,
        state: serde_json::from_value(d("state")).unwrap_or(PortState::Error),
        message: f.message.clone(),
        service: serde_json::from_value(d("service")).ok().flatten(),
        expected_service: serde_json::from_value(d("expected_service")).ok().flatten(),
        previous_fingerprint: serde_json::from_value(d("previous_fingerprint"))
            .ok()
            .flatten(),
        first_seen: f.first_seen,
        resolved: Some((incident, at)),
    }
}

fn key_of(f: &FindingRecord) -> Option<FindingKey> {
    Some(FindingKey {
        baseline: f.baseline.clone(),
        kind: FindingKind::parse(&f.kind)?,
        host: f.host.parse().ok()?,
        port: f.port,
        transport: match f.transport.as_str() {
            "udp" => Transport::Udp,
            _ => Transport::Tcp,
        },
    })
}

fn detail(o: &Observed) -> serde_json::Value {
    serde_json::json!({
        "state": o.state,
        "service": o.service,
        "expected_service": o.expected_service,
        "previous_fingerprint": o.previous_fingerprint,
    })
}

/// What the scan covered against what the baseline asks for.
pub fn coverage(b: &Baseline, r: &ScanReport) -> serde_json::Value {
    let expected_ports: usize = b
        .allowed_open
        .iter()
        .filter(|a| a.expected)
        .map(|a| a.ports.len())
        .sum();
    let banned: usize = b.must_be_closed.iter().map(|(p, _)| p.len()).sum();
    let errors: u64 = r
        .hosts
        .iter()
        .flat_map(|h| h.ports.iter())
        .filter(|p| p.state == PortState::Error)
        .count() as u64;
    serde_json::json!({
        "hosts_scanned": r.hosts.len(),
        "tcp_ports": b.tcp_ports.len(),
        "udp_ports": b.udp_ports.as_ref().map(|p| p.len()).unwrap_or(0),
        "expected_open_ports": expected_ports,
        "must_be_closed_ports": banned,
        "probes": r.probes,
        "probes_without_answer_class": errors,
        "complete": !r.cancelled && errors == 0,
    })
}
