//! Exposure guard: port scans, baselines, findings and evidence reports.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use portwarden_scan::{PortSet, ScanOptions, ScanRequest, Scanner};
//! use portwarden_core::Transport;
//! let scanner = Scanner::system()?;
//! let req = ScanRequest {
//!     targets: vec!["127.0.0.1".into()],
//!     tcp_ports: Some(PortSet::parse("22,80,5432", Transport::Tcp)?),
//!     udp_ports: None,
//!     options: ScanOptions::default(),
//! };
//! let report = scanner.run(&req, None).await?;
//! for p in report.open_ports() { println!("{} {}/{}", p.0, p.1.port, p.1.transport); }
//! # Ok(()) }
//! ```
//!
//! `tcp` is a connect scan on one `mio` loop (fast, bounded, `SO_LINGER 0`); `udp` sends real
//! protocol requests where known and reads ICMP errors from connected sockets; `banner` names
//! the service behind open TCP ports using the protocol probes of `portwarden-probe`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use portwarden_core::Transport;
use portwarden_probe::{Prober, Resolver, ResolverSpec};
use serde::{Deserialize, Serialize};

pub mod banner;
pub mod baseline;
pub mod evidence;
pub mod guard;
pub mod output;
pub mod ports;
pub mod suggest;
pub mod targets;
pub mod tcp;
pub mod udp;

pub use banner::ServiceGuess;
pub use ports::{PortSet, PortSpecError};
pub use targets::{Cidr, ScanHost, TargetPolicy, TargetSpec, TargetSpecError};

/// The state of one port, as nmap names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PortState {
    #[serde(rename = "open")]
    Open,
    #[serde(rename = "closed")]
    Closed,
    #[serde(rename = "filtered")]
    Filtered,
    #[serde(rename = "open|filtered")]
    OpenFiltered,
    /// We could not tell (our own failure, or the scan was stopped).
    #[serde(rename = "error")]
    Error,
}

impl PortState {
    pub fn as_str(self) -> &'static str {
        match self {
            PortState::Open => "open",
            PortState::Closed => "closed",
            PortState::Filtered => "filtered",
            PortState::OpenFiltered => "open|filtered",
            PortState::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<PortState> {
        Some(match s {
            "open" => PortState::Open,
            "closed" => PortState::Closed,
            "filtered" => PortState::Filtered,
            "open|filtered" => PortState::OpenFiltered,
            "error" => PortState::Error,
            _ => return None,
        })
    }
}

impl std::fmt::Display for PortState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a port got its state (stable strings in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// TCP: the connection was accepted.
    SynAck,
    /// TCP: refused (RST).
    Reset,
    /// No answer within the timeout, after the retries.
    Timeout,
    /// ICMP host unreachable (also what Linux reports for admin-prohibited on TCP).
    HostUnreachable,
    NetUnreachable,
    /// ICMP administratively prohibited.
    AdminProhibited,
    /// UDP: a reply came back.
    Reply,
    /// UDP: ICMP port unreachable.
    PortUnreachable,
    /// UDP: silence after every round.
    NoReply,
    /// Our side ran out of something; retried.
    Local,
    /// An unexpected error.
    Error,
    /// Not scanned (stopped early).
    NotScanned,
}

impl Reason {
    pub fn state(self) -> PortState {
        match self {
            Reason::SynAck | Reason::Reply => PortState::Open,
            Reason::Reset | Reason::PortUnreachable => PortState::Closed,
            Reason::Timeout
            | Reason::HostUnreachable
            | Reason::NetUnreachable
            | Reason::AdminProhibited => PortState::Filtered,
            Reason::NoReply => PortState::OpenFiltered,
            Reason::Local | Reason::Error | Reason::NotScanned => PortState::Error,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::SynAck => "syn-ack",
            Reason::Reset => "reset",
            Reason::Timeout => "timeout",
            Reason::HostUnreachable => "host-unreachable",
            Reason::NetUnreachable => "net-unreachable",
            Reason::AdminProhibited => "admin-prohibited",
            Reason::Reply => "reply",
            Reason::PortUnreachable => "port-unreachable",
            Reason::NoReply => "no-reply",
            Reason::Local => "local",
            Reason::Error => "error",
            Reason::NotScanned => "not-scanned",
        }
    }
}

/// A token bucket over the whole scan: at most `rate` starts per second, bursts of rate/10.
pub(crate) struct RateLimiter {
    rate: Option<u32>,
    start: Instant,
    sent: u64,
}

impl RateLimiter {
    pub(crate) fn new(rate: Option<u32>) -> RateLimiter {
        RateLimiter {
            rate: rate.filter(|r| *r > 0),
            start: Instant::now(),
            sent: 0,
        }
    }

    /// How long to wait before the next start (`None`: go now).
    pub(crate) fn wait(&self) -> Option<Duration> {
        let rate = f64::from(self.rate?);
        let burst = (rate / 10.0).max(1.0);
        let allowed = self.start.elapsed().as_secs_f64() * rate + burst;
        if (self.sent as f64) < allowed {
            None
        } else {
            Some(Duration::from_secs_f64(
                ((self.sent as f64 + 1.0 - allowed) / rate).max(0.000_5),
            ))
        }
    }

    pub(crate) fn take(&mut self) {
        self.sent += 1;
    }
}

/// How to scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanOptions {
    /// TCP connect timeout per attempt.
    #[serde(with = "portwarden_core::duration::serde_human")]
    pub timeout: Duration,
    /// Extra TCP attempts for ports that timed out.
    pub retries: u32,
    /// Probes in flight at once, in total (`0`: from the file descriptor limit).
    pub concurrency: usize,
    /// Probes in flight at once to one host.
    pub per_host: usize,
    /// Probes started per second, in total (`None`: as fast as the limits allow).
    pub rate: Option<u32>,
    /// Read banners and guess services on open TCP ports.
    pub banners: bool,
    #[serde(with = "portwarden_core::duration::serde_human")]
    pub banner_timeout: Duration,
    #[serde(with = "portwarden_core::duration::serde_human")]
    pub udp_timeout: Duration,
    /// Extra UDP rounds for silent ports.
    pub udp_retries: u32,
    #[serde(with = "portwarden_core::duration::serde_human")]
    pub udp_round_pause: Duration,
    /// Keep `closed` ports in the report (they are always counted).
    pub keep_closed: bool,
    #[serde(skip)]
    pub policy: TargetPolicy,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            timeout: Duration::from_millis(1500),
            retries: 1,
            concurrency: 0,
            per_host: 1024,
            rate: None,
            banners: true,
            banner_timeout: Duration::from_secs(3),
            udp_timeout: Duration::from_millis(1500),
            udp_retries: 2,
            udp_round_pause: Duration::from_secs(1),
            keep_closed: false,
            policy: TargetPolicy::default(),
        }
    }
}

/// What to scan.
#[derive(Debug, Clone)]
pub struct ScanRequest {
    /// Host names, IP addresses and CIDR blocks, as written.
    pub targets: Vec<String>,
    pub tcp_ports: Option<PortSet>,
    pub udp_ports: Option<PortSet>,
    pub options: ScanOptions,
}

/// One port's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortReport {
    pub port: u16,
    pub transport: Transport,
    pub state: PortState,
    pub reason: Reason,
    pub rtt_ms: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceGuess>,
}

/// One host's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostReport {
    pub addr: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Every port scanned except `closed` ones (unless `keep_closed`), ascending, TCP first.
    pub ports: Vec<PortReport>,
    /// Ports per `transport/state` (`tcp/closed: 65530`).
    pub counts: BTreeMap<String, u64>,
}

impl HostReport {
    pub fn port(&self, port: u16, transport: Transport) -> Option<&PortReport> {
        self.ports
            .iter()
            .find(|p| p.port == port && p.transport == transport)
    }

    /// The state of a port (`closed` when it was scanned but not kept).
    pub fn state(
        &self,
        port: u16,
        transport: Transport,
        scanned: &ScanReport,
    ) -> Option<PortState> {
        if let Some(p) = self.port(port, transport) {
            return Some(p.state);
        }
        scanned.covers(port, transport).then_some(PortState::Closed)
    }
}

/// A whole scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanReport {
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: f64,
    pub targets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_ports: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp_ports: Option<String>,
    /// Ports probed (hosts × ports, both transports).
    pub probes: u64,
    pub hosts: Vec<HostReport>,
    /// True when the scan was stopped before the end.
    #[serde(default)]
    pub cancelled: bool,
}

impl ScanReport {
    /// Every open port, as `(host, port)`.
    pub fn open_ports(&self) -> impl Iterator<Item = (IpAddr, &PortReport)> {
        self.hosts.iter().flat_map(|h| {
            h.ports
                .iter()
                .filter(|p| p.state == PortState::Open)
                .map(move |p| (h.addr, p))
        })
    }

    /// Was `port` part of the scan?
    pub fn covers(&self, port: u16, transport: Transport) -> bool {
        let spec = match transport {
            Transport::Tcp => &self.tcp_ports,
            Transport::Udp => &self.udp_ports,
        };
        spec.as_deref()
            .and_then(|s| PortSet::parse(s, transport).ok())
            .is_some_and(|p| p.contains(port))
    }

    pub fn counts(&self) -> BTreeMap<String, u64> {
        let mut all = BTreeMap::new();
        for h in &self.hosts {
            for (k, v) in &h.counts {
                *all.entry(k.clone()).or_insert(0) += v;
            }
        }
        all
    }
}

/// Why a scan could not run. Nothing was scanned.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Target(#[from] TargetSpecError),
    #[error("nothing to scan: give TCP ports (--ports) and/or UDP ports (--udp)")]
    NoPorts,
    #[error(
        "the scan has {probes} probes ({hosts} hosts × {ports} ports), more than the limit of {limit}; scan fewer hosts or ports at a time"
    )]
    TooBig {
        probes: u64,
        hosts: usize,
        ports: usize,
        limit: u64,
    },
    #[error("scan I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Upper bound on hosts × ports for one scan (results are kept in memory).
pub const MAX_PROBES: u64 = 200_000_000;

/// Progress counters a caller can watch (a terminal progress bar, the API).
#[derive(Debug, Default)]
pub struct Progress {
    pub total: AtomicU64,
    pub done: Arc<AtomicU64>,
    pub cancel: AtomicBool,
}

/// Runs scans. Holds the prober (its resolver and protocol probes) used for names and banners.
#[derive(Clone)]
pub struct Scanner {
    prober: Prober,
}

impl Scanner {
    pub fn new(prober: Prober) -> Scanner {
        Scanner { prober }
    }

    /// A scanner with the system resolver.
    pub fn system() -> Result<Scanner, portwarden_probe::ResolverSetupError> {
        Ok(Scanner::new(Prober::new(
            Resolver::new(&ResolverSpec::System)?,
            "local",
        )))
    }

    pub fn prober(&self) -> &Prober {
        &self.prober
    }

    /// Checks every target (size, allowlist, names) and returns the hosts; nothing is sent.
    pub async fn resolve(&self, req: &ScanRequest) -> Result<Vec<ScanHost>, ScanError> {
        Ok(
            targets::resolve_targets(&req.targets, &req.options.policy, self.prober.resolver())
                .await?,
        )
    }

    /// Runs the scan: validates everything first (a bad target scans nothing), then TCP, UDP
    /// and banners.
    pub async fn run(
        &self,
        req: &ScanRequest,
        progress: Option<Arc<Progress>>,
    ) -> Result<ScanReport, ScanError> {
        let tcp_ports: Vec<u16> = req
            .tcp_ports
            .as_ref()
            .map(|p| p.ports().to_vec())
            .unwrap_or_default();
        let udp_ports: Vec<u16> = req
            .udp_ports
            .as_ref()
            .map(|p| p.ports().to_vec())
            .unwrap_or_default();
        if tcp_ports.is_empty() && udp_ports.is_empty() {
            return Err(ScanError::NoPorts);
        }
        let hosts = self.resolve(req).await?;
        let n_ports = tcp_ports.len() + udp_ports.len();
        let probes = hosts.len() as u64 * n_ports as u64;
        if probes > MAX_PROBES {
            return Err(ScanError::TooBig {
                probes,
                hosts: hosts.len(),
                ports: n_ports,
                limit: MAX_PROBES,
            });
        }
        let progress = progress.unwrap_or_default();
        progress.total.store(probes, Ordering::Relaxed);
        let o = &req.options;
        let nofile = raise_nofile();
        let concurrency = if o.concurrency == 0 {
            (nofile.saturating_sub(256) / 2).clamp(64, 4096) as usize
        } else {
            o.concurrency
        };
        let started_at = Utc::now();
        let start = Instant::now();
        let addrs: Vec<IpAddr> = hosts.iter().map(|h| h.addr).collect();

        let tcp_results = if tcp_ports.is_empty() {
            vec![Vec::new(); addrs.len()]
        } else {
            let cfg = tcp::TcpScanConfig {
                timeout: o.timeout,
                retries: o.retries,
                concurrency,
                per_host: o.per_host,
                rate: o.rate,
            };
            let (a, p, pr) = (addrs.clone(), tcp_ports.clone(), progress.clone());
            tokio::task::spawn_blocking(move || {
                tcp::connect_scan(&a, &p, &cfg, &pr.done, &pr.cancel)
            })
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))??
        };
        let udp_results = if udp_ports.is_empty() || progress.cancel.load(Ordering::Relaxed) {
            vec![Vec::new(); addrs.len()]
        } else {
            let cfg = udp::UdpScanConfig {
                timeout: o.udp_timeout,
                retries: o.udp_retries,
                concurrency: concurrency.min(1024),
                per_host: o.per_host.min(256),
                rate: o.rate,
                round_pause: o.udp_round_pause,
            };
            udp::scan(&addrs, &udp_ports, &cfg, progress.done.clone()).await
        };

        let mut reports = Vec::with_capacity(hosts.len());
        for (i, h) in hosts.iter().enumerate() {
            let mut counts: BTreeMap<String, u64> = BTreeMap::new();
            let mut ports = Vec::new();
            for (j, (reason, rtt)) in tcp_results[i].iter().enumerate() {
                let state = reason.state();
                *counts.entry(format!("tcp/{state}")).or_insert(0) += 1;
                if state != PortState::Closed || o.keep_closed {
                    ports.push(PortReport {
                        port: tcp_ports[j],
                        transport: Transport::Tcp,
                        state,
                        reason: *reason,
                        rtt_ms: (rtt * 1000.0).round() / 1000.0,
                        service: None,
                    });
                }
            }
            for (j, (reason, rtt, reply)) in udp_results[i].iter().enumerate() {
                let state = reason.state();
                *counts.entry(format!("udp/{state}")).or_insert(0) += 1;
                if state != PortState::Closed || o.keep_closed {
                    ports.push(PortReport {
                        port: udp_ports[j],
                        transport: Transport::Udp,
                        state,
                        reason: *reason,
                        rtt_ms: (rtt * 1000.0).round() / 1000.0,
                        service: reply.as_ref().map(|r| ServiceGuess {
                            service: r
                                .service
                                .or_else(|| banner::well_known(udp_ports[j]))
                                .map(str::to_string),
                            version: None,
                            banner: Some(r.banner.clone()),
                            method: Some("reply".into()),
                        }),
                    });
                }
            }
            reports.push(HostReport {
                addr: h.addr,
                name: h.name.clone(),
                ports,
                counts,
            });
        }

        if o.banners && !progress.cancel.load(Ordering::Relaxed) {
            let jobs: Vec<(usize, usize, std::net::SocketAddr)> = reports
                .iter()
                .enumerate()
                .flat_map(|(hi, h)| {
                    h.ports
                        .iter()
                        .enumerate()
                        .filter(|(_, p)| {
                            p.state == PortState::Open && p.transport == Transport::Tcp
                        })
                        .map(move |(pi, p)| (hi, pi, std::net::SocketAddr::new(h.addr, p.port)))
                })
                .collect();
            use futures::StreamExt;
            let prober = &self.prober;
            let guesses: Vec<(usize, usize, ServiceGuess)> = futures::stream::iter(jobs)
                .map(|(hi, pi, addr)| async move {
                    (hi, pi, banner::guess(prober, addr, o.banner_timeout).await)
                })
                .buffer_unordered(concurrency.clamp(1, 256))
                .collect()
                .await;
            for (hi, pi, g) in guesses {
                reports[hi].ports[pi].service = Some(g);
            }
        }

        Ok(ScanReport {
            started_at,
            finished_at: Utc::now(),
            duration_ms: start.elapsed().as_secs_f64() * 1000.0,
            targets: req.targets.clone(),
            tcp_ports: req.tcp_ports.as_ref().map(|p| p.spec().to_string()),
            udp_ports: req.udp_ports.as_ref().map(|p| p.spec().to_string()),
            probes,
            hosts: reports,
            cancelled: progress.cancel.load(Ordering::Relaxed),
        })
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit.
pub fn raise_nofile() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX)
        .or_else(|_| rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(s, _)| s))
        .unwrap_or(1024)
}
