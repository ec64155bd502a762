//! `portwarden bench`: the real engine and the real store against loopback targets, with a
//! plain tokio connect loop over the same targets in the same process for a ratio.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use portwarden_probe::{Prober, Resolver, ResolverSpec};
use portwarden_store::sqlite::SqliteStore;
use portwarden_store::{Retention, Store, StoreMetrics, WriterOptions};
use tokio::net::{TcpListener, TcpSocket};

use crate::lateness::LatenessSummary;
use crate::{Engine, EngineMetrics, EngineOptions};

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub monitors: usize,
    pub interval: Duration,
    pub duration: Duration,
    pub warmup: Duration,
    /// Loopback listeners (open ports).
    pub listeners: usize,
    /// Ports with nothing listening (refused).
    pub closed: usize,
    pub timeout: Duration,
    /// Engine concurrency (default: derived from the descriptor limit).
    pub concurrency: Option<usize>,
    /// Also run a plain tokio connect loop over the same targets.
    pub baseline: bool,
    /// Concurrency of the baseline loop.
    pub baseline_concurrency: usize,
    /// Where the benchmark's database goes (default: a temporary directory).
    pub data_dir: Option<PathBuf>,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            monitors: 10_000,
            interval: Duration::from_secs(10),
            duration: Duration::from_secs(60),
            warmup: Duration::from_secs(10),
            listeners: 1_000,
            closed: 50,
            timeout: Duration::from_secs(2),
            concurrency: None,
            baseline: false,
            baseline_concurrency: 256,
            data_dir: None,
        }
    }
}

/// Measured figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    pub machine: String,
    pub monitors: usize,
    pub interval_s: f64,
    pub duration_s: f64,
    pub checks: u64,
    pub checks_per_s: f64,
    pub cpu_s_per_1000: f64,
    pub peak_rss_mb: f64,
    pub rss_mb: f64,
    pub lateness: LatenessSummary,
    pub store_rows: u64,
    pub store_rows_per_s: f64,
    pub skipped: u64,
    pub late_unknown: u64,
    pub baseline: Option<BaselineReport>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BaselineReport {
    pub checks: u64,
    pub checks_per_s: f64,
    pub cpu_s_per_1000: f64,
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "machine          {}", self.machine)?;
        writeln!(
            f,
            "workload         {} monitors every {}s for {:.0}s (after warm-up)",
            self.monitors, self.interval_s, self.duration_s
        )?;
        writeln!(
            f,
            "checks           {} ({:.0}/s)",
            self.checks, self.checks_per_s
        )?;
        writeln!(
            f,
            "cpu              {:.3} CPU s per 1000 checks",
            self.cpu_s_per_1000
        )?;
        writeln!(
            f,
            "memory           RSS {:.0} MB (peak {:.0} MB)",
            self.rss_mb, self.peak_rss_mb
        )?;
        writeln!(
            f,
            "lateness         p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
            self.lateness.p50_ms, self.lateness.p99_ms, self.lateness.max_ms
        )?;
        writeln!(
            f,
            "store            {} rows ({:.0} rows/s)",
            self.store_rows, self.store_rows_per_s
        )?;
        writeln!(f, "skipped runs     {}", self.skipped)?;
        write!(f, "late → unknown   {}", self.late_unknown)?;
        if let Some(b) = &self.baseline {
            writeln!(f)?;
            writeln!(
                f,
                "raw connect loop {:.0} checks/s, {:.3} CPU s per 1000",
                b.checks_per_s, b.cpu_s_per_1000
            )?;
            write!(
                f,
                "ratio            portwarden/raw = {:.2} (throughput), raw/portwarden = {:.2} (CPU per check)",
                self.checks_per_s / b.checks_per_s.max(f64::MIN_POSITIVE),
                b.cpu_s_per_1000 / self.cpu_s_per_1000.max(f64::MIN_POSITIVE)
            )?;
        }
        Ok(())
    }
}

fn rusage() -> Option<libc::rusage> {
    // SAFETY: getrusage fills the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    (unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } == 0).then_some(ru)
}

pub fn cpu_seconds() -> f64 {
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    rusage()
        .map(|ru| t(ru.ru_utime) + t(ru.ru_stime))
        .unwrap_or(0.0)
}

fn peak_rss_mb() -> f64 {
    rusage()
        .map(|ru| ru.ru_maxrss as f64 / 1024.0)
        .unwrap_or(0.0)
}

pub fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

pub fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpus} CPUs, {model}, {}", std::env::consts::ARCH)
}

async fn start_listeners(n: usize) -> Result<Vec<u16>, String> {
    let mut ports = Vec::with_capacity(n);
    for _ in 0..n {
        let l = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("bind a listener: {e}"))?;
        ports.push(l.local_addr().map_err(|e| e.to_string())?.port());
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                drop(s);
            }
        });
    }
    Ok(ports)
}

fn closed_ports(n: usize) -> Vec<u16> {
    (0..n)
        .filter_map(|_| std::net::TcpListener::bind("127.0.0.1:0").ok())
        .filter_map(|l| l.local_addr().ok().map(|a| a.port()))
        .collect()
}

/// Runs the benchmark.
pub async fn run(opts: BenchOptions) -> Result<BenchReport, String> {
    let nofile = crate::raise_nofile();
    let open = start_listeners(opts.listeners).await?;
    let closed = closed_ports(opts.closed);
    let targets: Vec<u16> = open.iter().chain(closed.iter()).copied().collect();
    if targets.is_empty() {
        return Err("no targets: give --listeners or --closed".into());
    }

    let concurrency = opts
        .concurrency
        .unwrap_or_else(|| crate::default_concurrency(nofile));
    let mut yaml = format!(
        "engine:\n  concurrency: {concurrency}\n  per_host: {concurrency}\n  lag_threshold: 1s\nmonitors:\n"
    );
    let interval = portwarden_core::format_duration(opts.interval);
    let timeout = portwarden_core::format_duration(opts.timeout.min(opts.interval / 2));
    for i in 0..opts.monitors {
        let port = targets[i % targets.len()];
        yaml.push_str(&format!(
            "  - {{name: bench-{i}, target: \"tcp://127.0.0.1:{port}\", interval: {interval}, timeout: {timeout}, rules: {{flap: {{enabled: false}}}}}}\n"
        ));
    }
    let config = portwarden_config::load_str(&yaml, "bench.yaml")
        .map_err(|d| format!("bench config: {d}"))?
        .config;

    let tmp;
    let dir = match &opts.data_dir {
        Some(d) => d.clone(),
        None => {
            tmp = std::env::temp_dir().join(format!("portwarden-bench-{}", std::process::id()));
            tmp.clone()
        }
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("data dir {}: {e}", dir.display()))?;
    let store_metrics = StoreMetrics::default();
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(
            &dir,
            Retention::default(),
            WriterOptions::default(),
            store_metrics.clone(),
        )
        .map_err(|e| e.to_string())?,
    );
    let prober = Prober::new(
        Resolver::new(&ResolverSpec::System).map_err(|e| e.to_string())?,
        "local",
    );
    let engine_opts = EngineOptions {
        concurrency,
        per_host: concurrency,
        lag_threshold: Duration::from_secs(1),
        shutdown_grace: Duration::from_secs(5),
        location: "local".into(),
        evaluate: true,
        link_key: None,
    };
    let engine = Engine::start(
        &config,
        engine_opts,
        prober,
        store.clone(),
        EngineMetrics::default(),
    )
    .await
    .map_err(|e| e.to_string())?;

    tokio::time::sleep(opts.warmup).await;
    engine.reset_lateness_stats();
    let h0 = engine.health();
    let rows0 = store_metrics.rows_written.get();
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    tokio::time::sleep(opts.duration).await;
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let h1 = engine.health();
    let rows = store_metrics.rows_written.get() - rows0;
    let lateness = engine.lateness_since_reset();
    let rss = rss_mb();
    engine.shutdown().await;
    let _ = store.close().await;
    if opts.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let checks = h1.runs_total - h0.runs_total;

    let baseline = if opts.baseline {
        Some(
            raw_loop(
                &targets,
                opts.baseline_concurrency,
                opts.duration.min(Duration::from_secs(20)),
            )
            .await,
        )
    } else {
        None
    };
    Ok(BenchReport {
        machine: machine(),
        monitors: opts.monitors,
        interval_s: opts.interval.as_secs_f64(),
        duration_s: elapsed,
        checks,
        checks_per_s: checks as f64 / elapsed,
        cpu_s_per_1000: if checks > 0 {
            cpu / checks as f64 * 1000.0
        } else {
            0.0
        },
        peak_rss_mb: peak_rss_mb(),
        rss_mb: rss,
        lateness,
        store_rows: rows,
        store_rows_per_s: rows as f64 / elapsed,
        skipped: h1.skipped_total - h0.skipped_total,
        late_unknown: h1.late_unknown_total - h0.late_unknown_total,
        baseline,
    })
}

/// A plain tokio connect loop: connect, `SO_LINGER 0`, close, next target. The physical
/// limit Portwarden's engine is compared with.
async fn raw_loop(targets: &[u16], concurrency: usize, duration: Duration) -> BaselineReport {
    let count = Arc::new(AtomicU64::new(0));
    let targets: Arc<Vec<u16>> = Arc::new(targets.to_vec());
    let deadline = Instant::now() + duration;
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let count = count.clone();
        let targets = targets.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while Instant::now() < deadline {
                let port = targets[i % targets.len()];
                i += concurrency;
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                if let Ok(s) = TcpSocket::new_v4() {
                    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                    let _ = tokio::time::timeout(Duration::from_secs(2), s.connect(addr)).await;
                }
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let n = count.load(Ordering::Relaxed);
    BaselineReport {
        checks: n,
        checks_per_s: n as f64 / elapsed,
        cpu_s_per_1000: if n > 0 { cpu / n as f64 * 1000.0 } else { 0.0 },
    }
}
