//! The Portwarden daemon: wires config, store, engine and the HTTP surface together.
//!
//! ```no_run
//! # async fn demo() -> Result<(), portwarden_server::ServeError> {
//! use portwarden_server::{serve, ServeOptions};
//! serve(ServeOptions { config: "examples/local.yaml".into(), ..Default::default() }).await
//! # }
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use portwarden_discovery::{Discovery, DiscoveryMetrics};
use portwarden_engine::{Engine, EngineMetrics, EngineOptions, ReloadReport};
use portwarden_probe::{Prober, Resolver};
use portwarden_store::postgres::PgStore;
use portwarden_store::postgres::leader::{LeaderMetrics, Leadership};
use portwarden_store::sqlite::SqliteStore;
use portwarden_store::{Retention, Store, StoreMetrics, WriterOptions};
use prometheus_client::registry::Registry;
use serde::Serialize;

pub mod agents;
pub mod alerting;
pub mod api;
pub mod auth;
pub mod bench;
pub mod error;
pub mod exposure;
pub mod params;
pub mod reload;
pub mod selfmetrics;
pub mod tls;
pub mod web;

/// How `serve` was asked to run.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    pub config: PathBuf,
    /// Overrides `server.data_dir`.
    pub data_dir: Option<PathBuf>,
    /// Overrides `server.listen`.
    pub listen: Option<SocketAddr>,
    /// Overrides `store` (a `postgres://` URL): several replicas on one database.
    pub store: Option<portwarden_core::Secret>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The config has errors (already rendered with file:line:col).
    #[error("{0}")]
    Config(String),
    #[error("cannot use the data directory `{0}`: {1}")]
    DataDir(String, String),
    #[error("store: {0}")]
    Store(#[from] portwarden_store::StoreError),
    #[error("engine: {0}")]
    Engine(#[from] portwarden_engine::EngineError),
    #[error(
        "cannot listen on {0}: {1}; is another Portwarden running? change `server.listen` or pass --listen"
    )]
    Listen(SocketAddr, String),
    #[error("resolver: {0}")]
    Resolver(#[from] portwarden_probe::ResolverSetupError),
    #[error("http server: {0}")]
    Http(String),
    #[error("server.tls: {0}")]
    Tls(String),
}

/// The outcome of the last config (re)load, shown in `/api/v1/health`.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadStatus {
    pub path: String,
    pub ok: bool,
    pub error: Option<String>,
    pub last_attempt_at: DateTime<Utc>,
    pub last_success_at: DateTime<Utc>,
    pub last_changes: ReloadReport,
    pub reloads: u64,
}

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    /// The `discover:` sources; every change of the monitor list goes through it.
    pub discovery: Discovery,
    pub store: Arc<dyn Store>,
    pub registry: Arc<Registry>,
    pub reload: Arc<RwLock<ReloadStatus>>,
    pub self_metrics: selfmetrics::SelfMetrics,
    pub started_at: DateTime<Utc>,
    /// Users, tokens, login limiting (replaced on reload).
    pub auth: Arc<auth::Auth>,
    /// The UI's caches and the status page.
    pub web: Arc<Web>,
    pub data_dir: PathBuf,
    /// Enrolled probe agents: tokens, assignments, who is silent.
    pub agents: Arc<agents::Agents>,
    /// Whether this replica is the leader (always, with SQLite).
    pub leadership: Leadership,
    /// Scheduled exposure scans against the `baselines:` (replaced on reload).
    pub exposure: Arc<portwarden_scan::guard::Guard>,
}

/// The guard's plans from a config: each baseline with its targets plus the hosts of the
/// monitors whose labels include all of the baseline's `labels`.
pub fn exposure_plans(config: &portwarden_config::Config) -> Vec<portwarden_scan::guard::Plan> {
    config
        .baselines
        .iter()
        .map(|b| {
            let mut targets = b.targets.clone();
            if !b.labels.is_empty() {
                for m in &config.monitors {
                    if b.labels
                        .iter()
                        .all(|(k, v)| m.meta.labels.get(k) == Some(v))
                    {
                        let h = m.target.host.as_str().to_string();
                        if !targets.contains(&h) {
                            targets.push(h);
                        }
                    }
                }
            }
            portwarden_scan::guard::Plan {
                baseline: b.clone(),
                targets,
            }
        })
        .collect()
}

/// The `controls:` of a config as the evidence report takes them (shared by the API's
/// `/api/v1/reports` and `portwarden report`).
/// Monitor → availability objective (percent), for the evidence report.
pub fn availability_targets<'a>(
    monitors: impl Iterator<Item = &'a portwarden_config::Monitor>,
) -> std::collections::HashMap<String, f64> {
    monitors
        .filter_map(|m| m.availability_target.map(|t| (m.name.clone(), t)))
        .collect()
}

pub fn control_specs(
    config: &portwarden_config::Config,
) -> Vec<portwarden_scan::evidence::ControlSpec> {
    config
        .controls
        .iter()
        .map(|c| portwarden_scan::evidence::ControlSpec {
            id: c.id.clone(),
            title: c.title.clone(),
            description: c.description.clone(),
            baselines: c.baselines.clone(),
            monitors: c.monitors.clone(),
        })
        .collect()
}

/// Records the config version in force (content hash, git commit) in the store.
pub async fn record_config_version(store: &Arc<dyn Store>, path: &std::path::Path, reason: &str) {
    match portwarden_scan::evidence::config_version(path, reason) {
        Ok(v) => {
            if let Err(e) = store.record_config_version(v).await {
                tracing::warn!(error = %e, "cannot record the config version");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot hash the config file"),
    }
}

/// What the UI keeps between requests.
#[derive(Debug)]
pub struct Web {
    pub overview: Arc<web::cache::OverviewCache>,
    pub status: web::status::StatusPage,
    /// The `controls:` mapping of the config in force (for evidence reports; replaced on
    /// reload).
    pub controls: RwLock<Vec<portwarden_scan::evidence::ControlSpec>>,
}

/// The HTTP routes: API, UI, status page, metrics — behind authentication (public routes
/// excepted) and security headers.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(api::router())
        .merge(alerting::router())
        .merge(web::router())
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::middleware::authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::middleware::security_headers,
        ))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(64 * 1024))
        // Agents authenticate with their own tokens and upload bigger bodies.
        .merge(agents::router())
        .with_state(state)
}

async fn metrics(State(s): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &s.registry) {
        return error::ApiError::internal(format!("cannot encode metrics: {e}")).into_response();
    }
    let wants_openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    if wants_openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            out,
        )
            .into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            openmetrics_to_prometheus(&out),
        )
            .into_response()
    }
}

/// Rewrites OpenMetrics text (what prometheus-client encodes) into the classic Prometheus
/// text format 0.0.4 for scrapers and tools that ask for `text/plain` (curl, `promtool check
/// metrics`): counter families take their `_total` name, `info` becomes a gauge named
/// `_info`, and `# UNIT` / `# EOF` lines go.
pub fn openmetrics_to_prometheus(om: &str) -> String {
    use std::collections::HashMap;
    let mut rename: HashMap<String, String> = HashMap::new();
    let mut kinds: HashMap<String, &str> = HashMap::new();
    for line in om.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((name, kind)) = rest.split_once(' ')
        {
            match kind {
                "counter" => {
                    rename.insert(name.to_string(), format!("{name}_total"));
                    kinds.insert(name.to_string(), "counter");
                }
                "info" => {
                    rename.insert(name.to_string(), format!("{name}_info"));
                    kinds.insert(name.to_string(), "gauge");
                }
                _ => {}
            }
        }
    }
    let mut out = String::with_capacity(om.len());
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let mut rewritten = None;
        for prefix in ["# TYPE ", "# HELP "] {
            if let Some(rest) = line.strip_prefix(prefix) {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if let Some(new) = rename.get(name) {
                    let tail = if prefix == "# TYPE " {
                        kinds.get(name).copied().unwrap_or(tail).to_string()
                    } else {
                        tail.to_string()
                    };
                    rewritten = Some(format!("{prefix}{new} {tail}"));
                }
            }
        }
        out.push_str(rewritten.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// Everything `serve` starts, so tests and the bench can run a daemon in-process.
pub struct Daemon {
    pub state: AppState,
    pub addr: SocketAddr,
    shutdown: tokio::sync::watch::Sender<bool>,
    http: tokio::task::JoinHandle<()>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl Daemon {
    /// Loads the config, opens the store, starts the engine and the HTTP listener.
    pub async fn start(opts: ServeOptions) -> Result<Daemon, ServeError> {
        let loaded = portwarden_discovery::load_file(&opts.config)
            .map_err(|d| ServeError::Config(d.to_string()))?;
        if !loaded.warnings.is_empty() {
            tracing::warn!("{}", loaded.render_warnings());
        }
        let config = loaded.config.clone();
        let data_dir = opts
            .data_dir
            .clone()
            .unwrap_or_else(|| config.server.data_dir.clone());
        std::fs::create_dir_all(&data_dir)
            .map_err(|e| ServeError::DataDir(data_dir.display().to_string(), e.to_string()))?;
        let listen = opts.listen.unwrap_or(config.server.listen);

        let nofile = portwarden_engine::raise_nofile();
        let mut engine_opts = EngineOptions::from_config(&config, nofile);
        tracing::info!(
            nofile,
            concurrency = engine_opts.concurrency,
            per_host = engine_opts.per_host,
            "limits"
        );

        let mut registry = Registry::default();
        let store_metrics = StoreMetrics::default();
        store_metrics.register(&mut registry);
        let engine_metrics = EngineMetrics::default();
        engine_metrics.register(&mut registry);
        let self_metrics = selfmetrics::SelfMetrics::default();
        self_metrics.register(&mut registry);
        let discovery_metrics = DiscoveryMetrics::default();
        discovery_metrics.register(&mut registry);
        let agents = Arc::new(agents::Agents::new(&config));
        agents.metrics.register(&mut registry);

        let retention = Retention {
            raw: config.retention.raw,
            minute: config.retention.minute,
            hour: config.retention.hour,
        };
        let leader_metrics = LeaderMetrics::default();
        leader_metrics.register(&mut registry);
        let store_url = opts.store.clone().or_else(|| config.store.url.clone());
        let (store, leadership): (Arc<dyn Store>, Leadership) = match &store_url {
            Some(url) => {
                let pg = PgStore::open(
                    url.expose(),
                    retention,
                    WriterOptions::default(),
                    store_metrics,
                )
                .await?;
                let leadership = Leadership::campaign(
                    pg.config().clone(),
                    pg.tls(),
                    config.store.takeover,
                    leader_metrics,
                    pg.fence(),
                );
                (Arc::new(pg), leadership)
            }
            None => {
                leader_metrics.leader.set(1);
                (
                    Arc::new(SqliteStore::open(
                        &data_dir,
                        retention,
                        WriterOptions::default(),
                        store_metrics,
                    )?),
                    Leadership::always(),
                )
            }
        };
        // One acknowledge-link key for every replica on this store: a link signed by one
        // verifies on any other (behind a load balancer, after a takeover).
        engine_opts.link_key =
            Some(portwarden_engine::alerting::shared_link_key(&*store, &data_dir).await);
        let prober = Prober::new(Resolver::new(&config.resolver)?, &config.engine.location);
        // Discovered monitors start from each source's cached last good set, so a restart
        // keeps them (and their open incidents) even while a source is down.
        let prepared =
            Discovery::prepare(&loaded, Some(data_dir.join("discovery")), discovery_metrics);
        let start_config = prepared.config();
        let engine = Engine::start_as(
            &start_config,
            engine_opts,
            prober,
            store.clone(),
            engine_metrics,
            leadership.is_leader(),
        )
        .await?;
        let discovery = Discovery::start(prepared, engine.clone());
        record_config_version(&store, &opts.config, "start").await;
        let exposure = portwarden_scan::guard::Guard::new(
            store.clone(),
            portwarden_scan::Scanner::new(Prober::new(
                Resolver::new(&config.resolver)?,
                &config.engine.location,
            )),
            Some(exposure::finding_notifier(
                engine.alerting().clone(),
                store.clone(),
            )),
        );
        exposure.apply(exposure_plans(&config));
        engine
            .alerting()
            .set_finding_lookup(exposure::finding_lookup(&exposure));
        // `labels:` also select discovered monitors, as they are at each scan.
        let defs = engine.clone();
        exposure.set_label_hosts(Arc::new(move |labels| {
            let mut hosts: Vec<String> = Vec::new();
            for m in defs.monitor_defs() {
                let h = m.target.host.as_str().to_string();
                if labels.iter().all(|(k, v)| m.meta.labels.get(k) == Some(v))
                    && !hosts.contains(&h)
                {
                    hosts.push(h);
                }
            }
            hosts
        }));

        let now = Utc::now();
        let reload = Arc::new(RwLock::new(ReloadStatus {
            path: opts.config.display().to_string(),
            ok: true,
            error: None,
            last_attempt_at: now,
            last_success_at: now,
            last_changes: ReloadReport::default(),
            reloads: 0,
        }));
        self_metrics.reload_ok.set(1);
        self_metrics.last_reload.set(now.timestamp());
        let tls = match &config.server.tls {
            Some(t) => Some(tls::server_config(t).map_err(ServeError::Tls)?),
            None => None,
        };
        // A store that refuses writes must not keep the daemon from probing: without the
        // generated admin, API tokens still work and the next start tries again.
        let generated = match auth::ensure_admin(&store, &data_dir, &config.auth).await {
            Ok(g) => g,
            Err(e) => {
                tracing::error!(error = %e, "cannot create the first-start admin; only API tokens can log in until a restart");
                None
            }
        };
        let state = AppState {
            exposure: exposure.clone(),
            engine: engine.clone(),
            discovery,
            store: store.clone(),
            registry: Arc::new(registry),
            reload: reload.clone(),
            self_metrics: self_metrics.clone(),
            started_at: now,
            auth: Arc::new(auth::Auth::new(&config.auth, generated, tls.is_some())),
            web: Arc::new(Web {
                overview: Arc::new(web::cache::OverviewCache::default()),
                status: web::status::StatusPage::new(config.status_page.clone()),
                controls: RwLock::new(control_specs(&config)),
            }),
            data_dir: data_dir.clone(),
            agents,
            leadership: leadership.clone(),
        };
        state.agents.tick(&state.engine);

        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| ServeError::Listen(listen, e.to_string()))?;
        let addr = listener
            .local_addr()
            .map_err(|e| ServeError::Listen(listen, e.to_string()))?;
        let (shutdown, mut shutdown_rx) = tokio::sync::watch::channel(false);
        let app = router(state.clone()).into_make_service_with_connect_info::<tls::ClientAddr>();
        let http = match tls {
            Some(cfg) => {
                let l = tls::TlsListener::new(listener, cfg)
                    .map_err(|e| ServeError::Listen(listen, e.to_string()))?;
                tokio::spawn(async move {
                    let graceful = async move { stopped(&mut shutdown_rx).await };
                    if let Err(e) = axum::serve(l, app).with_graceful_shutdown(graceful).await {
                        tracing::error!(error = %e, "https server stopped");
                    }
                })
            }
            None => tokio::spawn(async move {
                let graceful = async move { stopped(&mut shutdown_rx).await };
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(graceful)
                    .await
                {
                    tracing::error!(error = %e, "http server stopped");
                }
            }),
        };
        tracing::info!(%addr, tls = state.auth.secure_cookies, monitors = start_config.monitors.len(), discover = loaded.discover.len(), data_dir = %data_dir.display(), "portwarden serving");

        let background = vec![
            tokio::spawn(reload::watch(
                opts.config.clone(),
                state.clone(),
                shutdown.subscribe(),
            )),
            tokio::spawn(agents::watch(state.clone(), shutdown.subscribe())),
            // Only the leader scans (followers' writes would be fenced anyway).
            tokio::spawn(
                exposure
                    .clone()
                    .run_led(shutdown.subscribe(), leadership.watch()),
            ),
            tokio::spawn(retention_task(
                store.clone(),
                leadership.clone(),
                shutdown.subscribe(),
            )),
            tokio::spawn(follow_leadership(
                leadership.clone(),
                engine.clone(),
                shutdown.subscribe(),
            )),
            tokio::spawn(web::cache::refresher(
                state.web.overview.clone(),
                store.clone(),
                shutdown.subscribe(),
            )),
        ];
        Ok(Daemon {
            state,
            addr,
            shutdown,
            http,
            background,
        })
    }

    /// Applies the config file again (what SIGHUP and file changes do).
    pub async fn reload(&self) -> bool {
        reload::reload_now(&self.state).await
    }

    /// Graceful stop: no new HTTP requests or runs, running probes finish, queues drain, the
    /// writer flushes.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        self.state.discovery.stop();
        self.state.engine.shutdown().await;
        self.state.leadership.resign().await;
        if let Err(e) = self.state.store.close().await {
            tracing::warn!(error = %e, "store close failed");
        }
        for h in self.background {
            h.abort();
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.http).await;
    }
}

/// Resolves once the shutdown flag is set (without holding the watch guard across awaits).
pub(crate) async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await.map(|_| ());
}

/// Turns this replica's engine on when it becomes the leader (rebuilding its judgement from
/// the store) and off when it stops being the leader.
async fn follow_leadership(
    leadership: Leadership,
    engine: Engine,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut rx = leadership.watch();
    loop {
        let leader = *rx.borrow_and_update();
        let mut backoff = Duration::from_millis(200);
        // Becoming active reads the open incidents; retry while the database is away.
        while let Err(e) = engine.set_active(leader).await {
            tracing::warn!(error = %e, "cannot take over evaluation yet; retrying");
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = crate::stopped(&mut stop) => return,
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
            if *rx.borrow() != leader {
                break;
            }
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = crate::stopped(&mut stop) => return,
        }
    }
}

async fn retention_task(
    store: Arc<dyn Store>,
    leadership: Leadership,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    // First pass a minute after start, then hourly; with several replicas only the leader.
    let mut wait = Duration::from_secs(60);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = crate::stopped(&mut stop) => return,
        }
        if !leadership.is_leader() {
            wait = Duration::from_secs(60);
            continue;
        }
        match store.apply_retention(Utc::now()).await {
            Ok(n) if n > 0 => tracing::info!(deleted = n, "retention applied"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention failed; will retry"),
        }
        // Sessions expired or revoked more than a day ago.
        match store
            .purge_sessions(Utc::now() - chrono::Duration::days(1))
            .await
        {
            Ok(n) if n > 0 => tracing::info!(deleted = n, "old sessions purged"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "session purge failed; will retry"),
        }
        wait = Duration::from_secs(3600);
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn serve(opts: ServeOptions) -> Result<(), ServeError> {
    let daemon = Daemon::start(opts).await?;
    wait_for_signal().await;
    tracing::info!("shutting down");
    daemon.stop().await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
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

/// Loads a config (with its `discover:` entries) for a reload; `Err` holds the rendered
/// diagnostics.
pub fn load_config(path: &std::path::Path) -> Result<portwarden_discovery::Loaded, String> {
    portwarden_discovery::load_file(path).map_err(|d| d.to_string())
}

#[cfg(test)]
mod tests {
    use super::openmetrics_to_prometheus;

    #[test]
    fn converts_openmetrics_to_prometheus_text() {
        let om = "# HELP x_checks Probe results.\n# TYPE x_checks counter\nx_checks_total{a=\"1\"} 3\n# HELP x_build Version.\n# TYPE x_build info\nx_build_info{version=\"1\"} 1\n# HELP x_up Up.\n# TYPE x_up gauge\nx_up 1\n# EOF\n";
        let p = openmetrics_to_prometheus(om);
        assert!(p.contains("# TYPE x_checks_total counter\n"), "{p}");
        assert!(p.contains("# HELP x_checks_total Probe results.\n"), "{p}");
        assert!(p.contains("# TYPE x_build_info gauge\n"), "{p}");
        assert!(p.contains("# TYPE x_up gauge\nx_up 1\n"), "{p}");
        assert!(!p.contains("# EOF"));
    }
}
