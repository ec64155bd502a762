//! The discovery manager: runs every entry's source, applies the churn rules, and feeds the
//! engine the whole monitor list (written + discovered) through `Engine::apply_config_with`,
//! which keeps the state and schedule of every unchanged monitor. One task owns all state, so
//! config reloads and source updates are applied in order. Each entry's last good target set
//! is cached on disk so a restart (even with the source down) comes back with its monitors.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use portwarden_config::{Config, Monitor};
use portwarden_engine::{ApplyNotes, Engine, ReloadReport};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::churn::{BlockState, Change};
use crate::metrics::{DiscoveryMetrics, MonitorStateLabels, RefreshLabels, SourceLabels};
use crate::sources::{Reporter, SourceCx, SourceEvent};
use crate::spec::{DiscoverSpec, Loaded};
use crate::target::Target;

/// Problems shown per source.
const MAX_PROBLEMS: usize = 10;
/// Retry of a failed engine apply.
const APPLY_RETRY: Duration = Duration::from_secs(5);

/// How one source is doing (in `/api/v1/health` and `/api/v1/discovery`).
#[derive(Debug, Clone, Serialize)]
pub struct SourceStatus {
    pub name: String,
    pub kind: &'static str,
    pub defined_at: String,
    /// `starting` (no answer yet), `ok`, `failing` (last refresh failed), `refused` (above
    /// `max_monitors`).
    pub state: &'static str,
    pub error: Option<String>,
    pub failing_since: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub refreshes: u64,
    pub failures: u64,
    /// Targets in the last good answer.
    pub targets: usize,
    /// Monitors running.
    pub monitors: usize,
    /// Monitors paused because their target left the source (retired after the grace).
    pub paused: usize,
    pub retired_total: u64,
    pub max_monitors: usize,
    pub refresh_ms: u64,
    pub grace_refreshes: u32,
    /// Targets skipped or files kept from an earlier read (first few).
    pub problems: Vec<String>,
    pub problems_total: usize,
    /// The monitors come from the on-disk cache of the last run; no fresh answer yet.
    pub from_cache: bool,
}

impl SourceStatus {
    fn new(spec: &DiscoverSpec) -> SourceStatus {
        SourceStatus {
            name: spec.name.clone(),
            kind: spec.source.kind(),
            defined_at: spec.defined_at.clone(),
            state: "starting",
            error: None,
            failing_since: None,
            last_attempt_at: None,
            last_success_at: None,
            refreshes: 0,
            failures: 0,
            targets: 0,
            monitors: 0,
            paused: 0,
            retired_total: 0,
            max_monitors: spec.max_monitors,
            refresh_ms: spec.refresh.as_millis() as u64,
            grace_refreshes: spec.grace,
            problems: Vec::new(),
            problems_total: 0,
            from_cache: false,
        }
    }

    /// Lines for `/api/v1/health` problems.
    pub fn problem_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        let kept = self.monitors + self.paused;
        match self.state {
            "failing" | "refused" => out.push(format!(
                "discovery `{}` ({}) {}: {}; its last good {kept} monitor(s) are kept",
                self.name,
                self.kind,
                if self.state == "refused" {
                    "refresh refused"
                } else {
                    "failing"
                },
                self.error.as_deref().unwrap_or("unknown error")
            )),
            _ => {}
        }
        if self.problems_total > 0 {
            out.push(format!(
                "discovery `{}` ({}): {} problem(s), e.g. {}",
                self.name,
                self.kind,
                self.problems_total,
                self.problems.first().map(String::as_str).unwrap_or("")
            ));
        }
        out
    }
}

struct Shared {
    status: RwLock<BTreeMap<String, SourceStatus>>,
    metrics: DiscoveryMetrics,
}

struct Block {
    spec: DiscoverSpec,
    state: BlockState,
    generation: u64,
    cancel: CancellationToken,
    next_tick: Instant,
    failing: bool,
    cached_hash: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    source: String,
    saved_at: DateTime<Utc>,
    targets: Vec<Target>,
}

fn fingerprint(spec: &DiscoverSpec) -> String {
    format!("{:?} @ {}", spec.source, spec.base_dir.display())
}

fn hash_targets(t: &[Target]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    t.hash(&mut h);
    h.finish()
}

/// The manager's state (everything but the engine).
pub struct Prepared {
    config: Config,
    blocks: Vec<Block>,
    cache_dir: Option<PathBuf>,
    shared: Arc<Shared>,
    generation: u64,
    removed_notes: HashMap<String, String>,
}

impl Prepared {
    /// The monitor list to start the engine with: written monitors plus every entry's cached
    /// targets.
    pub fn config(&self) -> Config {
        self.compose().0
    }

    fn owners(&self) -> HashMap<String, String> {
        let mut owners: HashMap<String, String> = self
            .config
            .monitors
            .iter()
            .map(|m| {
                (
                    m.name.clone(),
                    format!("monitor `{}` in the config", m.name),
                )
            })
            .collect();
        for b in &self.blocks {
            for n in b.state.entries.keys() {
                owners
                    .entry(n.clone())
                    .or_insert_with(|| format!("discover `{}`", b.spec.name));
            }
        }
        owners
    }

    fn compose(&self) -> (Config, ApplyNotes) {
        let mut config = self.config.clone();
        let mut paused = HashMap::new();
        let mut extra: Vec<Monitor> = Vec::new();
        for b in &self.blocks {
            b.state.monitors(&b.spec, &mut extra, &mut paused);
        }
        config.monitors.extend(extra);
        (
            config,
            ApplyNotes {
                paused,
                removed: self.removed_notes.clone(),
            },
        )
    }

    fn block_mut(&mut self, name: &str) -> Option<&mut Block> {
        self.blocks.iter_mut().find(|b| b.spec.name == name)
    }

    /// Applies a change of one block to its status and metrics.
    fn record(
        &mut self,
        name: &str,
        change: &Change,
        now: DateTime<Utc>,
        snapshot_problems: &[String],
        targets: Option<usize>,
    ) {
        let Some(b) = self.blocks.iter().find(|b| b.spec.name == name) else {
            return;
        };
        let mut st = self
            .shared
            .status
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let s = st
            .entry(name.to_string())
            .or_insert_with(|| SourceStatus::new(&b.spec));
        s.monitors = b.state.active();
        s.paused = b.state.paused();
        s.retired_total += change.retired.len() as u64;
        if let Some(t) = targets {
            s.targets = t;
            s.state = "ok";
            s.error = None;
            s.failing_since = None;
            s.last_success_at = Some(now);
            s.from_cache = false;
            let mut problems: Vec<String> = snapshot_problems.to_vec();
            problems.extend(change.problems.iter().cloned());
            s.problems_total = problems.len();
            problems.truncate(MAX_PROBLEMS);
            s.problems = problems;
        } else if !change.problems.is_empty() {
            s.problems_total = change.problems.len();
            s.problems = change.problems.iter().take(MAX_PROBLEMS).cloned().collect();
        }
        let m = &self.shared.metrics;
        let sl = SourceLabels {
            source: name.to_string(),
            kind: b.spec.source.kind().to_string(),
        };
        m.targets.get_or_create(&sl).set(s.targets as i64);
        m.retired
            .get_or_create(&sl)
            .inc_by(change.retired.len() as u64);
        for (state, n) in [("active", s.monitors), ("paused", s.paused)] {
            m.monitors
                .get_or_create(&MonitorStateLabels {
                    source: name.to_string(),
                    state: state.into(),
                })
                .set(n as i64);
        }
        for r in &change.retired {
            self.removed_notes.insert(
                r.clone(),
                format!(
                    "retired: gone from discover `{name}` for {} refresh(es)",
                    b.spec.grace
                ),
            );
        }
        if !change.touches_monitors() {
            return;
        }
        tracing::info!(
            source = name,
            added = change.added.len(),
            updated = change.updated.len(),
            paused = change.paused.len(),
            resumed = change.resumed.len(),
            retired = change.retired.len(),
            "discovery changed monitors"
        );
    }

    fn record_failure(
        &mut self,
        name: &str,
        state: &'static str,
        error: String,
        now: DateTime<Utc>,
    ) {
        let Some(b) = self.block_mut(name) else {
            return;
        };
        b.failing = true;
        let kind = b.spec.source.kind();
        let spec = b.spec.clone();
        tracing::warn!(source = name, kind, error = %error, "discovery refresh failed; keeping the last good set");
        let mut st = self
            .shared
            .status
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let s = st
            .entry(name.to_string())
            .or_insert_with(|| SourceStatus::new(&spec));
        s.state = state;
        s.error = Some(error);
        s.failing_since.get_or_insert(now);
        s.failures += 1;
        let m = &self.shared.metrics;
        m.source_up
            .get_or_create(&SourceLabels {
                source: name.into(),
                kind: kind.into(),
            })
            .set(0);
        m.refreshes
            .get_or_create(&RefreshLabels {
                source: name.into(),
                result: if state == "refused" {
                    "refused"
                } else {
                    "error"
                }
                .into(),
            })
            .inc();
    }

    /// Handles one report of a source. Returns whether the monitor list changed.
    fn on_event(&mut self, name: &str, generation: u64, ev: SourceEvent) -> bool {
        let now = Utc::now();
        let owners = self.owners();
        let config = self.config.clone();
        let Some(b) = self.block_mut(name) else {
            return false;
        };
        if b.generation != generation {
            return false; // from a runner replaced by a reload
        }
        {
            let mut st = self
                .shared
                .status
                .write()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(s) = st.get_mut(name) {
                s.last_attempt_at = Some(now);
                s.refreshes += 1;
            }
        }
        match ev {
            SourceEvent::Failed(e) => {
                self.record_failure(name, "failing", e, now);
                false
            }
            SourceEvent::Snapshot { snapshot, refresh } => {
                let Some(b) = self.block_mut(name) else {
                    return false;
                };
                let own = format!("discover `{name}`");
                let taken = |n: &str| owners.get(n).filter(|o| **o != own).cloned();
                let n_targets = snapshot.targets.len();
                match b
                    .state
                    .apply(&b.spec, &config, &taken, snapshot.targets, refresh, now)
                {
                    Ok(change) => {
                        b.failing = false;
                        let kind = b.spec.source.kind();
                        let m = &self.shared.metrics;
                        let sl = SourceLabels {
                            source: name.into(),
                            kind: kind.into(),
                        };
                        m.source_up.get_or_create(&sl).set(1);
                        m.last_success.get_or_create(&sl).set(now.timestamp());
                        m.refreshes
                            .get_or_create(&RefreshLabels {
                                source: name.into(),
                                result: "ok".into(),
                            })
                            .inc();
                        let touched = change.touches_monitors();
                        self.record(name, &change, now, &snapshot.problems, Some(n_targets));
                        touched
                    }
                    Err(refused) => {
                        self.record_failure(name, "refused", refused, now);
                        false
                    }
                }
            }
        }
    }

    /// Watch sources: count refresh ticks for absent targets. Returns whether anything retired.
    fn on_tick(&mut self, now: Instant) -> bool {
        let mut changed = false;
        let mut changes = Vec::new();
        for b in &mut self.blocks {
            if !b.spec.source.is_watch() || now < b.next_tick {
                continue;
            }
            b.next_tick = now + b.spec.refresh;
            if b.failing {
                continue; // never count absence while we cannot see the source
            }
            let c = b.state.tick(&b.spec);
            if c.touches_monitors() {
                changed = true;
                changes.push((b.spec.name.clone(), c));
            }
        }
        let utc = Utc::now();
        for (name, c) in changes {
            self.record(&name, &c, utc, &[], None);
        }
        changed
    }

    fn load_cache(&mut self) {
        let Some(dir) = self.cache_dir.clone() else {
            return;
        };
        let owners = self.owners();
        let config = self.config.clone();
        let names: Vec<String> = self.blocks.iter().map(|b| b.spec.name.clone()).collect();
        for name in names {
            let path = dir.join(format!("{name}.json"));
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            let Some(b) = self.block_mut(&name) else {
                continue;
            };
            let cache: CacheFile = match serde_json::from_slice(&bytes) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable discovery cache");
                    continue;
                }
            };
            if cache.source != fingerprint(&b.spec) {
                tracing::info!(source = %name, "discovery cache is from another source definition; ignored");
                continue;
            }
            let own = format!("discover `{name}`");
            let taken = |n: &str| owners.get(n).filter(|o| **o != own).cloned();
            let n = cache.targets.len();
            match b
                .state
                .apply(&b.spec, &config, &taken, cache.targets, false, Utc::now())
            {
                Ok(change) => {
                    b.cached_hash = Some(hash_targets(&b.state.present()));
                    tracing::info!(source = %name, targets = n, saved_at = %cache.saved_at, "discovery: starting from the cached last good set");
                    self.record(&name, &change, Utc::now(), &[], None);
                    let mut st = self
                        .shared
                        .status
                        .write()
                        .unwrap_or_else(|p| p.into_inner());
                    if let Some(s) = st.get_mut(&name) {
                        s.targets = n;
                        s.from_cache = true;
                    }
                }
                Err(e) => tracing::warn!(source = %name, error = %e, "discovery cache refused"),
            }
        }
    }

    /// Saves the present targets of blocks whose set changed since the last save.
    async fn save_cache(&mut self) {
        let Some(dir) = self.cache_dir.clone() else {
            return;
        };
        for b in &mut self.blocks {
            if b.state.entries.is_empty() && b.cached_hash.is_none() {
                continue;
            }
            let present = b.state.present();
            let h = hash_targets(&present);
            if b.cached_hash == Some(h) {
                continue;
            }
            let file = CacheFile {
                source: fingerprint(&b.spec),
                saved_at: Utc::now(),
                targets: present,
            };
            let path = dir.join(format!("{}.json", b.spec.name));
            let dir2 = dir.clone();
            let r = tokio::task::spawn_blocking(move || write_atomic(&dir2, &path, &file)).await;
            match r {
                Ok(Ok(())) => b.cached_hash = Some(h),
                Ok(Err(e)) => {
                    tracing::warn!(source = %b.spec.name, error = %e, "cannot save the discovery cache")
                }
                Err(e) => tracing::warn!(error = %e, "discovery cache task failed"),
            }
        }
    }

    /// Takes a new config: entries added, removed, restarted (source or refresh changed), and
    /// every discovered monitor rendered again (template or defaults may have changed).
    fn reconcile(&mut self, loaded: Loaded, tx: &mpsc::Sender<(Arc<str>, u64, SourceEvent)>) {
        self.config = loaded.config;
        let mut old: HashMap<String, Block> = self
            .blocks
            .drain(..)
            .map(|b| (b.spec.name.clone(), b))
            .collect();
        let mut blocks = Vec::new();
        for spec in loaded.discover {
            let block = match old.remove(&spec.name) {
                Some(mut b) => {
                    let restart = b.spec.source != spec.source
                        || b.spec.refresh != spec.refresh
                        || b.spec.base_dir != spec.base_dir;
                    b.spec = spec;
                    if restart {
                        b.cancel.cancel();
                        self.generation += 1;
                        b.generation = self.generation;
                        b.cancel = CancellationToken::new();
                        b.failing = false;
                        b.cached_hash = None;
                        start_runner(&b, &self.config, tx);
                    }
                    b
                }
                None => {
                    self.generation += 1;
                    let b = Block {
                        state: BlockState::default(),
                        generation: self.generation,
                        cancel: CancellationToken::new(),
                        next_tick: Instant::now() + spec.refresh,
                        failing: false,
                        cached_hash: None,
                        spec,
                    };
                    start_runner(&b, &self.config, tx);
                    b
                }
            };
            blocks.push(block);
        }
        for (name, b) in old {
            b.cancel.cancel();
            for n in b.state.entries.keys() {
                self.removed_notes.insert(
                    n.clone(),
                    format!("discover `{name}` was removed from the config"),
                );
            }
            let mut st = self
                .shared
                .status
                .write()
                .unwrap_or_else(|p| p.into_inner());
            st.remove(&name);
        }
        self.blocks = blocks;
        {
            let mut st = self
                .shared
                .status
                .write()
                .unwrap_or_else(|p| p.into_inner());
            for b in &self.blocks {
                let s = st
                    .entry(b.spec.name.clone())
                    .or_insert_with(|| SourceStatus::new(&b.spec));
                s.defined_at = b.spec.defined_at.clone();
                s.max_monitors = b.spec.max_monitors;
                s.refresh_ms = b.spec.refresh.as_millis() as u64;
                s.grace_refreshes = b.spec.grace;
            }
        }
        // Render everything again against the new template and config.
        let names: Vec<String> = self.blocks.iter().map(|b| b.spec.name.clone()).collect();
        for name in names {
            let owners = self.owners();
            let config = self.config.clone();
            let own = format!("discover `{name}`");
            let Some(b) = self.block_mut(&name) else {
                continue;
            };
            let taken = |n: &str| owners.get(n).filter(|o| **o != own).cloned();
            let c = b.state.rerender(&b.spec, &config, &taken);
            self.record(&name, &c, Utc::now(), &[], None);
        }
    }
}

fn write_atomic(dir: &Path, path: &Path, file: &CacheFile) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec(file).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn start_runner(b: &Block, config: &Config, tx: &mpsc::Sender<(Arc<str>, u64, SourceEvent)>) {
    let cx = SourceCx {
        name: b.spec.name.as_str().into(),
        refresh: b.spec.refresh,
        base_dir: b.spec.base_dir.clone(),
        resolver: config.resolver.clone(),
        cancel: b.cancel.clone(),
    };
    let out = Reporter {
        block: b.spec.name.as_str().into(),
        generation: b.generation,
        tx: tx.clone(),
    };
    b.spec.source.spawn(cx, out);
}

enum Cmd {
    Apply(Box<Loaded>, oneshot::Sender<Result<ReloadReport, String>>),
}

/// A running discovery manager. Cheap to clone.
#[derive(Clone)]
pub struct Discovery {
    tx: mpsc::UnboundedSender<Cmd>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
}

impl Discovery {
    /// Builds the state for `loaded` and loads the cached last good sets from `cache_dir`.
    /// Start the engine with [`Prepared::config`], then call [`Discovery::start`].
    pub fn prepare(
        loaded: &Loaded,
        cache_dir: Option<PathBuf>,
        metrics: DiscoveryMetrics,
    ) -> Prepared {
        let shared = Arc::new(Shared {
            status: RwLock::new(BTreeMap::new()),
            metrics,
        });
        let mut generation = 0;
        let blocks: Vec<Block> = loaded
            .discover
            .iter()
            .map(|spec| {
                generation += 1;
                Block {
                    spec: spec.clone(),
                    state: BlockState::default(),
                    generation,
                    cancel: CancellationToken::new(),
                    next_tick: Instant::now() + spec.refresh,
                    failing: false,
                    cached_hash: None,
                }
            })
            .collect();
        {
            let mut st = shared.status.write().unwrap_or_else(|p| p.into_inner());
            for b in &blocks {
                st.insert(b.spec.name.clone(), SourceStatus::new(&b.spec));
            }
        }
        let mut p = Prepared {
            config: loaded.config.clone(),
            blocks,
            cache_dir,
            shared,
            generation,
            removed_notes: HashMap::new(),
        };
        p.load_cache();
        p
    }

    /// Starts every source; changes go to `engine`.
    pub fn start(prepared: Prepared, engine: Engine) -> Discovery {
        let (tx, rx) = mpsc::unbounded_channel();
        let (src_tx, src_rx) = mpsc::channel(1024);
        let cancel = CancellationToken::new();
        for b in &prepared.blocks {
            start_runner(b, &prepared.config, &src_tx);
        }
        let d = Discovery {
            tx,
            shared: prepared.shared.clone(),
            cancel: cancel.clone(),
        };
        tokio::spawn(actor(prepared, engine, rx, src_tx, src_rx, cancel));
        d
    }

    /// Applies a reloaded config (written monitors and discovery entries) and returns what
    /// changed in the engine.
    pub async fn apply(&self, loaded: Loaded) -> Result<ReloadReport, String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Cmd::Apply(Box::new(loaded), reply))
            .map_err(|_| "discovery stopped".to_string())?;
        rx.await.map_err(|_| "discovery stopped".to_string())?
    }

    /// Every source's status, by name.
    pub fn status(&self) -> Vec<SourceStatus> {
        self.shared
            .status
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Problems for `/api/v1/health`.
    pub fn problems(&self) -> Vec<String> {
        self.status()
            .iter()
            .flat_map(|s| s.problem_lines())
            .collect()
    }

    /// Stops every source.
    pub fn stop(&self) {
        self.cancel.cancel();
    }
}

async fn actor(
    mut p: Prepared,
    engine: Engine,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    src_tx: mpsc::Sender<(Arc<str>, u64, SourceEvent)>,
    mut src_rx: mpsc::Receiver<(Arc<str>, u64, SourceEvent)>,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut dirty = false;
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        let retry = async {
            match retry_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => break,
            cmd = cmds.recv() => {
                let Some(Cmd::Apply(loaded, reply)) = cmd else { break };
                p.reconcile(*loaded, &src_tx);
                let r = apply(&mut p, &engine).await;
                dirty = r.is_err();
                let _ = reply.send(r);
                continue;
            }
            ev = src_rx.recv() => {
                let Some((name, generation, ev)) = ev else { break };
                dirty |= p.on_event(&name, generation, ev);
                // Coalesce what else is queued (a burst of watch events) into one apply.
                while let Ok((name, generation, ev)) = src_rx.try_recv() {
                    dirty |= p.on_event(&name, generation, ev);
                }
            }
            _ = tick.tick() => {
                let retired = p.on_tick(Instant::now());
                dirty |= retired;
                if !retired && !dirty {
                    continue; // nothing changed: no apply, no cache write
                }
            }
            _ = retry => { retry_at = None; }
        }
        if dirty && retry_at.is_none() {
            match apply(&mut p, &engine).await {
                Ok(_) => dirty = false,
                Err(_) => retry_at = Some(tokio::time::Instant::now() + APPLY_RETRY),
            }
        }
        p.save_cache().await;
    }
    for b in &p.blocks {
        b.cancel.cancel();
    }
}

async fn apply(p: &mut Prepared, engine: &Engine) -> Result<ReloadReport, String> {
    let (config, notes) = p.compose();
    match engine.apply_config_with(&config, &notes).await {
        Ok(r) => {
            p.removed_notes.clear();
            if !(r.added.is_empty() && r.removed.is_empty() && r.changed.is_empty()) {
                tracing::debug!(
                    added = r.added.len(),
                    removed = r.removed.len(),
                    changed = r.changed.len(),
                    "monitor list applied"
                );
            }
            Ok(r)
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not apply the discovered monitors; retrying");
            Err(e.to_string())
        }
    }
}

/// `portwarden inventory`: asks every source once (waiting up to `wait` each, in parallel) and
/// resolves the monitor list exactly as the daemon would.
pub async fn inventory(loaded: &Loaded, wait: Duration) -> Inventory {
    let mut p = Discovery::prepare(loaded, None, DiscoveryMetrics::default());
    let (tx, mut rx) = mpsc::channel(1024);
    for b in &p.blocks {
        start_runner(b, &p.config, &tx);
    }
    let mut waiting: HashMap<String, u64> = p
        .blocks
        .iter()
        .map(|b| (b.spec.name.clone(), b.generation))
        .collect();
    let deadline = tokio::time::Instant::now() + wait;
    while !waiting.is_empty() {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((name, generation, ev))) => {
                if waiting.remove(&*name).is_some() {
                    p.on_event(&name, generation, ev);
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    for name in waiting.keys() {
        p.record_failure(
            name,
            "failing",
            format!(
                "no answer within {}",
                portwarden_core::format_duration(wait)
            ),
            Utc::now(),
        );
    }
    for b in &p.blocks {
        b.cancel.cancel();
    }
    let (config, _) = p.compose();
    Inventory {
        monitors: config.monitors,
        sources: p
            .shared
            .status
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect(),
    }
}

/// The resolved monitor list.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// Written monitors first, then discovered ones (`Monitor::source` names the entry).
    pub monitors: Vec<Monitor>,
    pub sources: Vec<SourceStatus>,
}
