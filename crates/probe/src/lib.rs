//! Probe executors: run a check against a target once, honestly timed.
//!
//! ```no_run
//! # async fn demo() {
//! use std::time::Duration;
//! use portwarden_probe::{Prober, ProbeSpec, Resolver, ResolverSpec, CheckSpec};
//! let prober = Prober::new(Resolver::new(&ResolverSpec::System).unwrap(), "local");
//! let spec = ProbeSpec::new("redis", "tcp://127.0.0.1:6379".parse().unwrap(),
//!     CheckSpec::for_scheme("tcp").unwrap(), Duration::from_secs(5)).unwrap();
//! for obs in prober.probe(&spec).await {
//!     println!("{} {}", obs.outcome, obs.phases.connect_ms.unwrap_or_default());
//! }
//! # }
//! ```
//!
//! Byte-level logic lives in `portwarden-wire`; this crate owns sockets, deadlines, TLS and
//! name resolution. A failure on our own side (out of descriptors or ports, resolver down) is
//! reported as outcome `unknown` with error kind `local`, never as the target being down.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use portwarden_core::{AddressPolicy, Host, Observation, Outcome, TargetUrl};

pub mod checks;
pub mod cx;
pub mod net;
pub mod resolver;
pub mod tls;

pub use checks::{CATALOGUE, Check, CheckInfo, CheckSpec};
pub use cx::{CheckResult, Failure, RunCx, Verdict};
pub use resolver::{Resolver, ResolverSetupError, ResolverSpec};

/// A check's config could not be turned into a runnable check. `field` names the option.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {message}")]
pub struct PrepareError {
    pub field: String,
    pub message: String,
}

impl PrepareError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        PrepareError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Why a probe spec could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("target `{0}` has no port and check `{1}` has no default port; add `:PORT`")]
    NoPort(String, &'static str),
    #[error("check `{kind}`: {err}")]
    Prepare {
        kind: &'static str,
        err: PrepareError,
    },
}

/// Everything needed to probe one monitor, prepared once.
#[derive(Clone)]
pub struct ProbeSpec {
    pub monitor: String,
    /// Display form, e.g. `tcp://db1:5432`.
    pub target: String,
    pub host: Host,
    pub port: u16,
    pub kind: &'static str,
    pub check: Arc<dyn Check>,
    pub timeout: Duration,
    pub addresses: AddressPolicy,
}

impl ProbeSpec {
    /// Builds a spec from a target and a check, filling the port from the check's default.
    pub fn new(
        monitor: impl Into<String>,
        target: TargetUrl,
        check: CheckSpec,
        timeout: Duration,
    ) -> Result<ProbeSpec, SpecError> {
        let info = check.info();
        let port = target
            .port
            .or(info.default_port)
            .ok_or_else(|| SpecError::NoPort(target.to_string(), info.name))?;
        let prepared = check.prepare().map_err(|err| SpecError::Prepare {
            kind: info.name,
            err,
        })?;
        let scheme = target
            .scheme
            .clone()
            .unwrap_or_else(|| info.name.to_string());
        let display = TargetUrl {
            scheme: Some(scheme),
            host: target.host.clone(),
            port: Some(port),
        }
        .to_string();
        Ok(ProbeSpec {
            monitor: monitor.into(),
            target: display,
            host: target.host,
            port,
            kind: info.name,
            check: prepared,
            timeout,
            addresses: AddressPolicy::All,
        })
    }

    pub fn with_addresses(mut self, p: AddressPolicy) -> Self {
        self.addresses = p;
        self
    }
}

/// Runs probes. One per process (or per agent); cheap to share behind an `Arc`.
#[derive(Clone)]
pub struct Prober {
    resolver: Resolver,
    location: Arc<str>,
}

impl Prober {
    pub fn new(resolver: Resolver, location: &str) -> Prober {
        Prober {
            resolver,
            location: location.into(),
        }
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    /// Probes the spec once: resolves the host (one shared caching resolver), then runs the
    /// check against the first or every address. Returns one observation per address probed
    /// (one in total when resolution fails). Never takes longer than the timeout (+ scheduling).
    pub async fn probe(&self, spec: &ProbeSpec) -> Vec<Observation> {
        let started_at = Utc::now();
        let start = Instant::now();
        let deadline = start + spec.timeout;
        let (ips, dns_ms) = match self.resolver.resolve(&spec.host, deadline).await {
            Ok(r) => r,
            Err(error) => {
                let phases = portwarden_core::Phases {
                    dns_ms: Some(cx::ms(start.elapsed())),
                    ..Default::default()
                };
                let outcome = error.kind.default_outcome();
                return vec![Observation {
                    monitor: spec.monitor.clone(),
                    location: self.location.to_string(),
                    target: spec.target.clone(),
                    check: spec.kind.to_string(),
                    address: None,
                    outcome,
                    error: Some(error),
                    note: None,
                    phases,
                    started_at,
                    duration_ms: cx::ms(start.elapsed()),
                    scheduled_at: None,
                    lateness_ms: None,
                    details: Default::default(),
                }];
            }
        };
        let mut ips: Vec<IpAddr> = ips;
        let mut seen = std::collections::HashSet::new();
        ips.retain(|ip| seen.insert(*ip));
        if spec.addresses == AddressPolicy::First {
            ips.truncate(1);
        }
        let runs = ips.into_iter().map(|ip| {
            let addr = SocketAddr::new(ip, spec.port);
            self.run_one(spec, addr, started_at, start, deadline, dns_ms)
        });
        futures::future::join_all(runs).await
    }

    async fn run_one(
        &self,
        spec: &ProbeSpec,
        addr: SocketAddr,
        started_at: chrono::DateTime<Utc>,
        start: Instant,
        deadline: Instant,
        dns_ms: Option<f64>,
    ) -> Observation {
        let mut cx = RunCx::new(addr, &spec.host, deadline, spec.timeout);
        cx.phases.dns_ms = dns_ms;
        let result = spec.check.run(&mut cx).await;
        let (outcome, error, note) = match result {
            Ok(v) => (v.outcome, None, v.note),
            Err(f) => (f.outcome, Some(f.error), None),
        };
        Observation {
            monitor: spec.monitor.clone(),
            location: self.location.to_string(),
            target: spec.target.clone(),
            check: spec.kind.to_string(),
            address: Some(addr),
            outcome,
            error,
            note,
            phases: cx.phases,
            started_at,
            duration_ms: cx::ms(start.elapsed()),
            scheduled_at: None,
            lateness_ms: None,
            details: cx.details,
        }
    }
}

/// Convenience for callers that only care whether all observations were `up`.
pub fn all_up(obs: &[Observation]) -> bool {
    obs.iter().all(|o| o.outcome == Outcome::Up)
}
