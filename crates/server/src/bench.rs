//! `portwarden bench ingest`: one server (in this process, SQLite) ingesting from N simulated
//! agents over real HTTP on loopback. Each agent enrols, heartbeats, fetches its share of the
//! monitors (rendezvous hashing over the live agents of the location), and uploads one
//! observation per monitor per interval, at the monitor's phase offset, in batches every
//! `batch_every`. Measured: ingest lag (from the end of the oldest probe in a batch to the
//! server's answer: what `portwarden_agent_ingest_lag_seconds` measures plus the way back),
//! judge lag (how long stored batches wait in the agent inbox for the evaluator, sampled every
//! 100 ms as the age of the oldest unjudged row), observations and batches per second, server
//! CPU and RSS.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use portwarden_agent_api as wire;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{Daemon, ServeOptions};

#[derive(Debug, Clone)]
pub struct IngestBenchOptions {
    pub agents: usize,
    pub monitors: usize,
    pub interval: Duration,
    pub duration: Duration,
    pub warmup: Duration,
    pub batch_every: Duration,
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IngestBenchReport {
    pub machine: String,
    pub agents: usize,
    pub monitors: usize,
    pub interval_s: f64,
    pub batch_every_ms: f64,
    pub measured_s: f64,
    pub observations: u64,
    pub observations_per_s: f64,
    pub batches_per_s: f64,
    pub lag_p50_ms: f64,
    pub lag_p99_ms: f64,
    pub lag_max_ms: f64,
    /// Age of the oldest batch waiting in the agent inbox (stored, not yet judged), sampled.
    pub judge_wait_p99_ms: f64,
    pub judge_wait_max_ms: f64,
    /// Server process CPU over the measured time (all threads, cores used on average).
    pub cpu_cores: f64,
    pub rss_mb: f64,
    pub startup_s: f64,
    pub failed_uploads: u64,
}

impl fmt::Display for IngestBenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "machine:          {}", self.machine)?;
        writeln!(
            f,
            "setup:            {} agents, {} monitors every {:.0} s, batches every {:.0} ms",
            self.agents, self.monitors, self.interval_s, self.batch_every_ms
        )?;
        writeln!(
            f,
            "measured:         {:.0} s (server start {:.1} s)",
            self.measured_s, self.startup_s
        )?;
        writeln!(
            f,
            "ingest:           {:.0} observations/s, {:.1} batches/s ({} observations, {} failed uploads)",
            self.observations_per_s, self.batches_per_s, self.observations, self.failed_uploads
        )?;
        writeln!(
            f,
            "ingest lag:       p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (probe end → stored, queued for judging)",
            self.lag_p50_ms, self.lag_p99_ms, self.lag_max_ms
        )?;
        writeln!(
            f,
            "judge wait:       p99 {:.0} ms, max {:.0} ms (stored → taken by the evaluator)",
            self.judge_wait_p99_ms, self.judge_wait_max_ms
        )?;
        write!(
            f,
            "server:           {:.2} cores, {:.0} MiB RSS",
            self.cpu_cores, self.rss_mb
        )
    }
}

/// A minimal HTTP/1.1 client on one keep-alive connection (the bench needs no client crate).
struct Conn {
    addr: SocketAddr,
    stream: Option<tokio::net::TcpStream>,
}

impl Conn {
    async fn call(
        &mut self,
        method: &str,
        path: &str,
        token: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), String> {
        for attempt in 0..2 {
            if self.stream.is_none() {
                let s = tokio::net::TcpStream::connect(self.addr)
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = s.set_nodelay(true);
                self.stream = Some(s);
            }
            let Some(s) = self.stream.as_mut() else {
                continue;
            };
            let head = format!(
                "{method} {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n{}: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                wire::VERSION_HEADER,
                wire::API_VERSION,
                body.len()
            );
            let r = async {
                s.write_all(head.as_bytes()).await?;
                s.write_all(body).await?;
                read_response(s).await
            }
            .await;
            match r {
                Ok(v) => return Ok(v),
                Err(e) => {
                    self.stream = None;
                    if attempt == 1 {
                        return Err(e.to_string());
                    }
                }
            }
        }
        Err("no connection".into())
    }
}

async fn read_response(s: &mut tokio::net::TcpStream) -> std::io::Result<(u16, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    let mut tmp = [0u8; 4096];
    let header_end = loop {
        let n = s.read(&mut tmp).await?;
        if n == 0 {
            return Err(std::io::Error::other("connection closed"));
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[header_end..].to_vec();
    while body.len() < len {
        let n = s.read(&mut tmp).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&tmp[..n]);
    }
    Ok((status, body))
}

fn phase(name: &str, interval: Duration) -> Duration {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    Duration::from_nanos(h % (interval.as_nanos().max(1) as u64))
}

struct AgentResult {
    lags_ms: Vec<f64>,
    observations: u64,
    batches: u64,
    failed: u64,
}

async fn run_agent(
    addr: SocketAddr,
    token: String,
    monitors: Vec<String>,
    opts: IngestBenchOptions,
    measure_from: Instant,
    measure_to: Instant,
) -> AgentResult {
    let mut conn = Conn { addr, stream: None };
    let stream = format!("bench-{token}");
    let mut seq = 0u64;
    let mut res = AgentResult {
        lags_ms: Vec::new(),
        observations: 0,
        batches: 0,
        failed: 0,
    };
    // Each monitor's next due time, by its phase within the interval.
    let start = Instant::now();
    let wall0 = Utc::now();
    let mut due: Vec<(Duration, usize)> = monitors
        .iter()
        .enumerate()
        .map(|(i, m)| (phase(m, opts.interval), i))
        .collect();
    due.sort_unstable();
    let mut next = 0usize;
    let mut round = 0u32;
    let mut tick = tokio::time::interval(opts.batch_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_hb = Instant::now();
    while Instant::now() < measure_to {
        tick.tick().await;
        let now = start.elapsed();
        let mut runs = Vec::new();
        loop {
            if next == due.len() {
                next = 0;
                round += 1;
            }
            let at = due[next].0 + opts.interval * round;
            if at > now {
                break;
            }
            let name = &monitors[due[next].1];
            let started = wall0 + chrono::Duration::from_std(at).unwrap_or_default();
            let o = portwarden_core::Observation {
                monitor: name.clone(),
                location: "bench".into(),
                target: "tcp://192.0.2.1:5432".into(),
                check: "tcp".into(),
                address: Some(SocketAddr::from(([192, 0, 2, 1], 5432))),
                outcome: portwarden_core::Outcome::Up,
                error: None,
                note: None,
                phases: portwarden_core::Phases {
                    connect_ms: Some(0.4),
                    ..Default::default()
                },
                started_at: started,
                duration_ms: 0.5,
                scheduled_at: Some(started),
                lateness_ms: Some(0.1),
                details: serde_json::Map::new(),
            };
            runs.push(wire::Run {
                monitor: name.clone(),
                observations: vec![o],
            });
            next += 1;
        }
        if last_hb.elapsed() > Duration::from_secs(2) {
            last_hb = Instant::now();
            let hb = wire::Heartbeat {
                agent_version: "bench".into(),
                location: "bench".into(),
                stream: stream.clone(),
                sent_at: Utc::now(),
                clock_offset_ms: 0.0,
                queued: 0,
                oldest_queued_at: None,
                assignment_version: String::new(),
                running: monitors.len() as u64,
                lateness_p99_ms: 0.0,
            };
            let body = serde_json::to_vec(&hb).unwrap_or_default();
            let _ = conn.call("POST", wire::PATH_HEARTBEAT, &token, &body).await;
        }
        if runs.is_empty() {
            continue;
        }
        seq += 1;
        let n = runs.len() as u64;
        let oldest_end = runs
            .first()
            .and_then(|r| r.observations.first())
            .map(|o| o.started_at + chrono::Duration::microseconds(500));
        let batch = wire::ObservationBatch {
            stream: stream.clone(),
            seq,
            runs,
        };
        let body = serde_json::to_vec(&batch).unwrap_or_default();
        let r = conn
            .call("POST", wire::PATH_OBSERVATIONS, &token, &body)
            .await;
        let measuring = Instant::now() >= measure_from;
        match r {
            Ok((200, _)) => {
                if measuring {
                    res.observations += n;
                    res.batches += 1;
                    if let Some(t) = oldest_end {
                        res.lags_ms
                            .push((Utc::now() - t).num_microseconds().unwrap_or(0) as f64 / 1000.0);
                    }
                }
            }
            _ => res.failed += 1,
        }
    }
    res
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs the ingest benchmark.
pub async fn run(opts: IngestBenchOptions) -> Result<IngestBenchReport, String> {
    let tmp = tempfile_dir(opts.data_dir.clone())?;
    let dir = tmp.path().to_path_buf();
    let tokens: Vec<String> = (0..opts.agents)
        .map(|_| crate::auth::random_token(32))
        .collect();
    let mut yaml = String::with_capacity(opts.monitors * 120);
    yaml.push_str("monitors:\n");
    let iv = opts.interval.as_secs().max(1);
    for i in 0..opts.monitors {
        yaml.push_str(&format!(
            "  - {{name: m{i:06}, target: \"tcp://192.0.2.1:{}\", interval: {iv}s, timeout: 2s, locations: [bench]}}\n",
            1 + i % 60_000
        ));
    }
    yaml.push_str("agents:\n");
    for (i, t) in tokens.iter().enumerate() {
        yaml.push_str(&format!(
            "  - {{name: bench-{i}, location: bench, token_sha256: {}}}\n",
            crate::auth::sha256_hex(t)
        ));
    }
    yaml.push_str(&format!(
        "auth:\n  tokens:\n    - {{name: bench, secret: \"{}\", role: viewer}}\n",
        crate::auth::random_token(24)
    ));
    let cfg = dir.join("bench.yaml");
    std::fs::write(&cfg, yaml).map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let daemon = Daemon::start(ServeOptions {
        config: cfg,
        data_dir: Some(dir.join("data")),
        listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        store: None,
    })
    .await
    .map_err(|e| e.to_string())?;
    let startup_s = t0.elapsed().as_secs_f64();
    let addr = daemon.addr;

    // Every agent calls in first, so each assignment is its final share.
    for t in &tokens {
        let mut c = Conn { addr, stream: None };
        let hb = wire::Heartbeat {
            agent_version: "bench".into(),
            location: "bench".into(),
            stream: format!("bench-{t}"),
            sent_at: Utc::now(),
            clock_offset_ms: 0.0,
            queued: 0,
            oldest_queued_at: None,
            assignment_version: String::new(),
            running: 0,
            lateness_p99_ms: 0.0,
        };
        let (st, b) = c
            .call(
                "POST",
                wire::PATH_HEARTBEAT,
                t,
                &serde_json::to_vec(&hb).unwrap_or_default(),
            )
            .await?;
        if st != 200 {
            return Err(format!(
                "heartbeat refused ({st}): {}",
                String::from_utf8_lossy(&b)
            ));
        }
    }
    let mut shares = Vec::new();
    for t in &tokens {
        let mut c = Conn { addr, stream: None };
        let (st, b) = c.call("GET", wire::PATH_ASSIGNMENT, t, b"").await?;
        if st != 200 {
            return Err(format!("assignment refused ({st})"));
        }
        let a: wire::Assignment = serde_json::from_slice(&b).map_err(|e| e.to_string())?;
        shares.push(a.monitors.into_iter().map(|m| m.name).collect::<Vec<_>>());
    }
    let assigned: usize = shares.iter().map(Vec::len).sum();
    if assigned != opts.monitors {
        return Err(format!(
            "assignments cover {assigned} of {} monitors",
            opts.monitors
        ));
    }
    let measure_from = Instant::now() + opts.warmup;
    let measure_to = measure_from + opts.duration;
    let cpu_at = Arc::new(std::sync::Mutex::new(0.0f64));
    let cpu_probe = {
        let cpu_at = cpu_at.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            *cpu_at.lock().unwrap_or_else(|p| p.into_inner()) =
                portwarden_engine::bench::cpu_seconds();
        })
    };
    // The judge's backlog: the age of the oldest batch still in the inbox.
    let judge_probe = {
        let store = daemon.state.store.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            let mut waits = Vec::new();
            while Instant::now() < measure_to {
                if let Ok(rows) = store.agent_inbox(1).await {
                    let age = rows.first().map_or(0.0, |b| {
                        (Utc::now() - b.received_at).num_milliseconds().max(0) as f64
                    });
                    waits.push(age);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            waits
        })
    };
    let mut tasks = Vec::new();
    for (t, share) in tokens.iter().zip(shares) {
        tasks.push(tokio::spawn(run_agent(
            addr,
            t.clone(),
            share,
            opts.clone(),
            measure_from,
            measure_to,
        )));
    }
    let mut lags = Vec::new();
    let (mut obs, mut batches, mut failed) = (0u64, 0u64, 0u64);
    for t in tasks {
        let r = t.await.map_err(|e| e.to_string())?;
        lags.extend(r.lags_ms);
        obs += r.observations;
        batches += r.batches;
        failed += r.failed;
    }
    let _ = cpu_probe.await;
    let mut waits = judge_probe.await.unwrap_or_default();
    waits.sort_by(|a, b| a.total_cmp(b));
    let cpu =
        portwarden_engine::bench::cpu_seconds() - *cpu_at.lock().unwrap_or_else(|p| p.into_inner());
    let rss = portwarden_engine::bench::rss_mb();
    daemon.stop().await;
    lags.sort_by(|a, b| a.total_cmp(b));
    let secs = opts.duration.as_secs_f64();
    Ok(IngestBenchReport {
        machine: portwarden_engine::bench::machine(),
        agents: opts.agents,
        monitors: opts.monitors,
        interval_s: opts.interval.as_secs_f64(),
        batch_every_ms: opts.batch_every.as_secs_f64() * 1000.0,
        measured_s: secs,
        observations: obs,
        observations_per_s: obs as f64 / secs,
        batches_per_s: batches as f64 / secs,
        lag_p50_ms: quantile(&lags, 0.5),
        lag_p99_ms: quantile(&lags, 0.99),
        lag_max_ms: lags.last().copied().unwrap_or(0.0),
        judge_wait_p99_ms: quantile(&waits, 0.99),
        judge_wait_max_ms: waits.last().copied().unwrap_or(0.0),
        cpu_cores: cpu / secs,
        rss_mb: rss,
        startup_s,
        failed_uploads: failed,
    })
}

/// A temporary directory, or the given one kept.
enum Dir {
    Temp(PathBuf),
    Kept(PathBuf),
}

impl Dir {
    fn path(&self) -> &std::path::Path {
        match self {
            Dir::Temp(p) | Dir::Kept(p) => p,
        }
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        if let Dir::Temp(p) = self {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

fn tempfile_dir(keep: Option<PathBuf>) -> Result<Dir, String> {
    match keep {
        Some(p) => {
            std::fs::create_dir_all(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            Ok(Dir::Kept(p))
        }
        None => {
            let p = std::env::temp_dir().join(format!(
                "portwarden-bench-ingest-{}-{}",
                std::process::id(),
                Utc::now().timestamp_millis()
            ));
            std::fs::create_dir_all(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            Ok(Dir::Temp(p))
        }
    }
}
