//! `portwarden agent`: probes from another place and ships the results to the server.
//!
//! ```text
//!  heartbeat loop ──► server (offset, assignment version, last committed seq)
//!        │ new version
//!        ▼
//!  GET assignment ──► Engine::apply_config (the same scheduler and probes as the server,
//!                     judging off: the server judges)
//!                          │ observations (Store::submit)
//!                          ▼
//!                     batcher (every 500 ms / 2 000 runs, clock offset applied)
//!                          │ numbered batch files
//!                          ▼
//!                     on-disk queue ──► uploader (oldest first; deleted when acknowledged)
//! ```
//!
//! While the server is unreachable the engine goes on probing; batches wait on disk (bounded,
//! oldest dropped and counted beyond `queue_limit_bytes`) and go up in order when it returns.

pub mod queue;
mod sink;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use portwarden_agent_api as wire;
use portwarden_config::{Config, Monitor};
use portwarden_core::{AddressPolicy, MonitorMeta, Rules, Tier};
use portwarden_engine::{Engine, EngineMetrics, EngineOptions};
use portwarden_probe::{Prober, Resolver, ResolverSpec};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

pub use queue::Queue;

/// How an agent runs (`portwarden agent` flags).
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// `https://portwarden.example:9797` (http:// only for tests and loopback).
    pub server: String,
    pub token: portwarden_core::Secret,
    pub location: String,
    pub data_dir: PathBuf,
    /// Extra CA bundle (PEM) to trust for the server's certificate.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// The on-disk queue's limit (bytes).
    pub queue_limit_bytes: u64,
    /// How often runs are cut into a batch.
    pub batch_every: Duration,
    /// Most runs in one batch.
    pub batch_runs: usize,
    /// Engine limits (concurrency; `None`: from the file descriptor limit).
    pub concurrency: Option<usize>,
    pub per_host: usize,
}

impl AgentOptions {
    pub fn new(server: &str, token: &str, location: &str, data_dir: PathBuf) -> AgentOptions {
        AgentOptions {
            server: server.trim_end_matches('/').to_string(),
            token: portwarden_core::Secret::new(token),
            location: location.to_string(),
            data_dir,
            ca_file: None,
            client_cert: None,
            queue_limit_bytes: 512 * 1024 * 1024,
            batch_every: Duration::from_millis(500),
            batch_runs: 2000,
            concurrency: None,
            per_host: 8,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("--server `{0}`: {1}")]
    Server(String, String),
    #[error("--location `{0}` must be 1-64 letters, digits, `-`, `_` or `.`")]
    Location(String),
    #[error("{0}")]
    Queue(#[from] queue::QueueError),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("resolver: {0}")]
    Resolver(#[from] portwarden_probe::ResolverSetupError),
    #[error("engine: {0}")]
    Engine(#[from] portwarden_engine::EngineError),
}

/// What the agent knows about itself (for tests, logs and `/metrics`-like output).
#[derive(Debug, Clone, Default)]
pub struct AgentStatus {
    pub connected: bool,
    pub clock_offset_ms: f64,
    pub assignment_version: String,
    pub monitors: usize,
    pub uploaded_batches: u64,
    pub last_error: Option<String>,
}

struct Shared {
    opts: AgentOptions,
    client: reqwest::Client,
    queue: Arc<Queue>,
    engine: Engine,
    status: Mutex<AgentStatus>,
    /// Server − agent clock (ms), as microseconds in an atomic for the batcher.
    offset_us: Arc<std::sync::atomic::AtomicI64>,
    uploaded: AtomicU64,
    wake_upload: Notify,
    cancel: CancellationToken,
    connected: AtomicBool,
}

/// A running agent.
pub struct Agent {
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn tls_config(opts: &AgentOptions) -> Result<rustls::ClientConfig, AgentError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(p) = &opts.ca_file {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(p)
            .map_err(|e| AgentError::Tls(format!("--ca-file `{}`: {e}", p.display())))?
            .collect::<Result<_, _>>()
            .map_err(|e| {
                AgentError::Tls(format!("--ca-file `{}` is not valid PEM: {e}", p.display()))
            })?;
        if certs.is_empty() {
            return Err(AgentError::Tls(format!(
                "--ca-file `{}` holds no certificate",
                p.display()
            )));
        }
        roots.add_parsable_certificates(certs);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| AgentError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    match &opts.client_cert {
        None => Ok(b.with_no_client_auth()),
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| AgentError::Tls(format!("--client-cert `{}`: {e}", cert.display())))?
                .collect::<Result<_, _>>()
                .map_err(|e| {
                    AgentError::Tls(format!(
                        "--client-cert `{}` is not valid PEM: {e}",
                        cert.display()
                    ))
                })?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| AgentError::Tls(format!("--client-key `{}`: {e}", key.display())))?;
            b.with_client_auth_cert(chain, key)
                .map_err(|e| AgentError::Tls(format!("client certificate: {e}")))
        }
    }
}

/// Turns an assigned monitor into one the engine runs. Judging fields (rules, severity) are
/// the tier defaults: the agent does not judge.
pub fn monitor_of(a: &wire::AssignedMonitor) -> Result<Monitor, String> {
    let target = a
        .target
        .parse()
        .map_err(|e| format!("target `{}`: {e}", a.target))?;
    let check: portwarden_probe::CheckSpec =
        serde_json::from_value(a.check.clone()).map_err(|e| format!("check: {e}"))?;
    let tier: Tier = serde_json::from_value(serde_json::Value::String(a.tier.clone()))
        .map_err(|e| format!("tier `{}`: {e}", a.tier))?;
    let m = Monitor {
        name: a.name.clone(),
        target,
        check,
        tier,
        interval: Duration::from_millis(a.interval_ms.max(100)),
        timeout: Duration::from_millis(a.timeout_ms.max(1)),
        addresses: if a.addresses == "first" {
            AddressPolicy::First
        } else {
            AddressPolicy::All
        },
        meta: MonitorMeta::default(),
        rules: Rules::for_tier(tier),
        enabled: true,
        defined_at: "assignment from the server".into(),
        source: None,
        locations: Vec::new(),
        confirm: Default::default(),
        depends_on: Vec::new(),
        availability_target: None,
    };
    // The engine would refuse the whole list for one bad monitor: check each here.
    m.probe_spec().map_err(|e| e.to_string())?;
    Ok(m)
}

fn empty_config() -> Config {
    match portwarden_config::load_str("monitors: []\n", "agent") {
        Ok(l) => l.config,
        // The empty config is a constant; it loads.
        Err(d) => unreachable!("the empty config does not load: {d}"),
    }
}

impl Agent {
    /// Opens the queue, starts the engine (empty until the first assignment) and the
    /// heartbeat, batch and upload tasks.
    pub async fn start(opts: AgentOptions) -> Result<Agent, AgentError> {
        let loc_ok = !opts.location.is_empty()
            && opts.location.len() <= 64
            && opts
                .location
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !loc_ok {
            return Err(AgentError::Location(opts.location.clone()));
        }
        let url = reqwest::Url::parse(&opts.server)
            .map_err(|e| AgentError::Server(opts.server.clone(), e.to_string()))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(AgentError::Server(
                opts.server.clone(),
                "use https://host:port".into(),
            ));
        }
        if url.scheme() == "http"
            && !url.host_str().is_some_and(|h| {
                h == "localhost"
                    || h.parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback() || ip.is_ipv4())
            })
        {
            tracing::warn!(server = %opts.server, "the agent token travels in clear text over http://; use https://");
        }
        std::fs::create_dir_all(&opts.data_dir).map_err(|e| {
            queue::QueueError::Io(opts.data_dir.display().to_string(), e.to_string())
        })?;
        let queue = Arc::new(Queue::open(&opts.data_dir, opts.queue_limit_bytes)?);
        let tls = tls_config(&opts)?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| AgentError::Server(opts.server.clone(), e.to_string()))?;

        let (tx, rx) = mpsc::channel(65_536);
        let sink = Arc::new(sink::QueueSink::new(tx));
        let nofile = portwarden_engine::raise_nofile();
        let engine_opts = EngineOptions {
            concurrency: opts
                .concurrency
                .unwrap_or_else(|| portwarden_engine::default_concurrency(nofile)),
            per_host: opts.per_host,
            lag_threshold: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(5),
            location: opts.location.clone(),
            evaluate: false,
            link_key: None,
        };
        let prober = Prober::new(Resolver::new(&ResolverSpec::System)?, &opts.location);
        let engine = Engine::start(
            &empty_config(),
            engine_opts,
            prober,
            sink,
            EngineMetrics::default(),
        )
        .await?;
        let shared = Arc::new(Shared {
            opts,
            client,
            queue,
            engine,
            status: Mutex::new(AgentStatus::default()),
            offset_us: Arc::new(std::sync::atomic::AtomicI64::new(0)),
            uploaded: AtomicU64::new(0),
            wake_upload: Notify::new(),
            cancel: CancellationToken::new(),
            connected: AtomicBool::new(false),
        });
        tracing::info!(server = %shared.opts.server, location = %shared.opts.location,
            stream = shared.queue.stream(), queued = shared.queue.len().0, "agent starting");
        let tasks = vec![
            tokio::spawn(heartbeat_loop(shared.clone())),
            tokio::spawn(batch_loop(shared.clone(), rx)),
            tokio::spawn(upload_loop(shared.clone())),
        ];
        Ok(Agent { shared, tasks })
    }

    pub fn status(&self) -> AgentStatus {
        let mut s = self
            .shared
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        s.uploaded_batches = self.shared.uploaded.load(Ordering::Relaxed);
        s.connected = self.shared.connected.load(Ordering::Relaxed);
        s
    }

    pub fn queue(&self) -> &Arc<Queue> {
        &self.shared.queue
    }

    /// Stops probing, writes what is pending to the queue, stops the tasks.
    pub async fn stop(self) {
        self.shared.engine.shutdown().await;
        // Give the batcher a moment to cut the last runs into a batch.
        tokio::time::sleep(self.shared.opts.batch_every + Duration::from_millis(100)).await;
        self.shared.cancel.cancel();
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

/// Runs an agent until SIGTERM/SIGINT.
pub async fn run(opts: AgentOptions) -> Result<(), AgentError> {
    let agent = Agent::start(opts).await?;
    wait_for_signal().await;
    tracing::info!("agent shutting down");
    agent.stop().await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {}
                _ = i.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

impl Shared {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.opts.server)
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {}", self.opts.token.expose()),
            )
            .header(wire::VERSION_HEADER, wire::API_VERSION.to_string())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
    }

    fn set_error(&self, e: Option<String>) {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last_error = e;
    }
}

/// What went wrong talking to the server (without the token, ever).
async fn describe(r: reqwest::Response) -> String {
    let status = r.status();
    let body = r.bytes().await.unwrap_or_default();
    match serde_json::from_slice::<wire::ApiError>(&body) {
        Ok(e) => format!("{status}: {}", e.detail),
        Err(_) => format!("{status}"),
    }
}

fn net_error(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

async fn heartbeat_loop(sh: Arc<Shared>) {
    let mut every = Duration::from_secs(5);
    let mut samples: Vec<(f64, f64)> = Vec::new(); // (rtt, offset), the last few
    let mut running_version = String::new();
    let mut failures = 0u32;
    loop {
        let (queued, _) = sh.queue.len();
        let health = sh.engine.health();
        let t0: DateTime<Utc> = Utc::now();
        let hb = wire::Heartbeat {
            agent_version: env!("CARGO_PKG_VERSION").into(),
            location: sh.opts.location.clone(),
            stream: sh.queue.stream().to_string(),
            sent_at: t0,
            clock_offset_ms: sh.offset_us.load(Ordering::Relaxed) as f64 / 1000.0,
            queued: queued as u64,
            oldest_queued_at: None,
            assignment_version: running_version.clone(),
            running: health.monitors as u64,
            lateness_p99_ms: health.lateness_last_minute.p99_ms,
        };
        let body = serde_json::to_vec(&hb).unwrap_or_default();
        let sent = tokio::select! {
            r = sh.request(reqwest::Method::POST, wire::PATH_HEARTBEAT).body(body).send() => r,
            _ = sh.cancel.cancelled() => return,
        };
        let t3 = Utc::now();
        let mut wait = every;
        match sent {
            Ok(r) if r.status().is_success() => {
                match r.json_bytes::<wire::HeartbeatReply>().await {
                    Some(reply) => {
                        failures = 0;
                        let was = sh.connected.swap(true, Ordering::Relaxed);
                        if !was {
                            tracing::info!(agent = %reply.agent, location = %reply.location, "connected to the server");
                        }
                        sh.set_error(None);
                        every = Duration::from_millis(reply.heartbeat_every_ms.clamp(200, 60_000));
                        wait = every;
                        let (off, rtt) =
                            wire::clock_offset(t0, reply.received_at, reply.replied_at, t3);
                        samples.push((rtt, off));
                        if samples.len() > 8 {
                            samples.remove(0);
                        }
                        // The sample with the shortest round trip has the least path asymmetry.
                        if let Some((_, best)) = samples.iter().min_by(|a, b| a.0.total_cmp(&b.0)) {
                            sh.offset_us
                                .store((best * 1000.0) as i64, Ordering::Relaxed);
                        }
                        if let Err(e) = sh.queue.advance_past(reply.last_seq) {
                            tracing::error!(error = %e, "cannot save the sequence number");
                        }
                        if reply.assignment_version != running_version {
                            match fetch_assignment(&sh).await {
                                Ok(v) => running_version = v,
                                Err(e) => {
                                    tracing::warn!(error = %e, "cannot fetch the assignment; retrying");
                                    sh.set_error(Some(e));
                                    wait = Duration::from_secs(1);
                                }
                            }
                        }
                        let mut st = sh.status.lock().unwrap_or_else(|p| p.into_inner());
                        st.clock_offset_ms = sh.offset_us.load(Ordering::Relaxed) as f64 / 1000.0;
                        st.assignment_version = running_version.clone();
                    }
                    None => {
                        sh.set_error(Some(
                            "the server's heartbeat reply is not valid JSON".into(),
                        ));
                    }
                }
            }
            Ok(r) => {
                let status = r.status();
                let msg = describe(r).await;
                failures += 1;
                if status == reqwest::StatusCode::UNAUTHORIZED {
                    tracing::error!(server = %sh.opts.server, "the server refused this agent's token (401): enrol it under `agents:` with the SHA-256 of its token, or check --token");
                } else if failures == 1 || failures.is_multiple_of(20) {
                    tracing::warn!(error = %msg, "heartbeat refused");
                }
                sh.connected.store(false, Ordering::Relaxed);
                sh.set_error(Some(msg));
                wait = Duration::from_secs(2).max(every);
            }
            Err(e) => {
                failures += 1;
                let msg = net_error(&e);
                if failures == 1 || failures.is_multiple_of(20) {
                    tracing::warn!(server = %sh.opts.server, error = %msg, "server unreachable; probing goes on, results wait in the queue");
                }
                sh.connected.store(false, Ordering::Relaxed);
                sh.set_error(Some(msg));
                wait = Duration::from_secs(1);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = sh.cancel.cancelled() => return,
        }
    }
}

trait JsonBytes {
    async fn json_bytes<T: serde::de::DeserializeOwned>(self) -> Option<T>;
}

impl JsonBytes for reqwest::Response {
    async fn json_bytes<T: serde::de::DeserializeOwned>(self) -> Option<T> {
        let b = self.bytes().await.ok()?;
        serde_json::from_slice(&b).ok()
    }
}

/// Fetches the assignment and applies it to the engine; returns its version.
async fn fetch_assignment(sh: &Arc<Shared>) -> Result<String, String> {
    let r = sh
        .request(reqwest::Method::GET, wire::PATH_ASSIGNMENT)
        .send()
        .await
        .map_err(|e| net_error(&e))?;
    if !r.status().is_success() {
        return Err(describe(r).await);
    }
    let a: wire::Assignment = r
        .json_bytes()
        .await
        .ok_or_else(|| "the assignment is not valid JSON".to_string())?;
    let mut config = empty_config();
    for m in &a.monitors {
        match monitor_of(m) {
            Ok(m) => config.monitors.push(m),
            Err(e) => {
                tracing::warn!(monitor = %m.name, error = %e, "cannot run an assigned monitor here; skipped")
            }
        }
    }
    let report = sh
        .engine
        .apply_config(&config)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(version = %a.version, monitors = config.monitors.len(), added = report.added.len(),
        removed = report.removed.len(), changed = report.changed.len(), "assignment applied");
    sh.status.lock().unwrap_or_else(|p| p.into_inner()).monitors = config.monitors.len();
    Ok(a.version)
}

/// Cuts the engine's results into numbered batches on disk.
async fn batch_loop(sh: Arc<Shared>, mut rx: mpsc::Receiver<portwarden_store::Record>) {
    let mut runs: Vec<wire::Run> = Vec::new();
    let mut tick = tokio::time::interval(sh.opts.batch_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let cut = |runs: &mut Vec<wire::Run>| {
        if runs.is_empty() {
            return;
        }
        let batch = std::mem::take(runs);
        match sh.queue.push(batch) {
            Ok(_) => sh.wake_upload.notify_one(),
            Err(e) => tracing::error!(error = %e, "cannot queue a batch; results lost"),
        }
    };
    loop {
        tokio::select! {
            r = rx.recv() => match r {
                Some(rec) => {
                    let offset = chrono::Duration::microseconds(sh.offset_us.load(Ordering::Relaxed));
                    let mut o = rec.obs;
                    o.started_at += offset;
                    o.scheduled_at = o.scheduled_at.map(|t| t + offset);
                    o.location = sh.opts.location.clone();
                    // One run's observations (one per address) arrive one after another.
                    match runs.last_mut() {
                        Some(last) if last.monitor == o.monitor
                            && last.observations.first().is_some_and(|f| f.scheduled_at == o.scheduled_at) => {
                            last.observations.push(o);
                        }
                        _ => runs.push(wire::Run { monitor: o.monitor.clone(), observations: vec![o] }),
                    }
                    if runs.len() >= sh.opts.batch_runs {
                        cut(&mut runs);
                    }
                }
                None => { cut(&mut runs); return; }
            },
            _ = tick.tick() => cut(&mut runs),
            _ = sh.cancel.cancelled() => {
                while let Ok(rec) = rx.try_recv() {
                    runs.push(wire::Run { monitor: rec.obs.monitor.clone(), observations: vec![rec.obs] });
                }
                cut(&mut runs);
                return;
            }
        }
    }
}

/// Sends queued batches, oldest first, one at a time; deletes each once acknowledged.
async fn upload_loop(sh: Arc<Shared>) {
    let mut backoff = Duration::from_millis(500);
    loop {
        if sh.cancel.is_cancelled() {
            return;
        }
        let batch = match sh.queue.front() {
            Ok(Some(b)) => b,
            Ok(None) => {
                tokio::select! {
                    _ = sh.wake_upload.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = sh.cancel.cancelled() => return,
                }
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "skipping a queued batch");
                continue;
            }
        };
        let seq = batch.seq;
        let body = match serde_json::to_vec(&batch) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(seq, error = %e, "cannot encode a queued batch; dropping it");
                sh.queue.remove(seq);
                continue;
            }
        };
        let started = Instant::now();
        let sent = tokio::select! {
            r = sh.request(reqwest::Method::POST, wire::PATH_OBSERVATIONS).body(body).send() => r,
            _ = sh.cancel.cancelled() => return,
        };
        let retry = match sent {
            Ok(r) if r.status().is_success() => {
                let reply: Option<wire::IngestReply> = r.json_bytes().await;
                sh.queue.remove(seq);
                sh.uploaded.fetch_add(1, Ordering::Relaxed);
                backoff = Duration::from_millis(500);
                tracing::debug!(
                    seq,
                    duplicate = reply.as_ref().is_some_and(|r| r.duplicate),
                    ms = started.elapsed().as_millis() as u64,
                    "batch uploaded"
                );
                false
            }
            Ok(r)
                if r.status() == reqwest::StatusCode::BAD_REQUEST
                    || r.status() == reqwest::StatusCode::PAYLOAD_TOO_LARGE =>
            {
                // The server will never take it: keeping it would block the queue forever.
                let msg = describe(r).await;
                tracing::error!(seq, error = %msg, "the server refused a batch as invalid; dropping it");
                sh.queue.remove(seq);
                false
            }
            Ok(r) => {
                let msg = describe(r).await;
                tracing::debug!(seq, error = %msg, "upload refused; will retry");
                sh.set_error(Some(msg));
                true
            }
            Err(e) => {
                tracing::debug!(seq, error = %net_error(&e), "upload failed; will retry");
                true
            }
        };
        if retry {
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = sh.cancel.cancelled() => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}
