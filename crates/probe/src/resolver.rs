//! One shared, caching resolver for every probe (hickory-resolver).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
    ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use portwarden_core::{DnsFailure, ErrorKind, Host, ProbeError};

use crate::cx::{fmt_ms, ms};

/// Where name lookups go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ResolverSpec {
    /// The system's configuration (`/etc/resolv.conf`, `/etc/hosts`).
    #[default]
    System,
    /// One DNS server (UDP, falling back to TCP), e.g. `127.0.0.1:5353`.
    Server(SocketAddr),
}

/// Why the resolver could not be built.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot set up the DNS resolver: {0}; pass --resolver IP:PORT or set `resolver:` in config"
)]
pub struct ResolverSetupError(String);

/// The shared resolver. Cheap to clone (an `Arc` inside hickory).
#[derive(Clone)]
pub struct Resolver {
    inner: Option<TokioResolver>,
    setup_error: Option<String>,
}

impl Resolver {
    /// Builds the resolver. With `System`, a missing `/etc/resolv.conf` is not fatal: IP
    /// targets still work and name lookups report a `local` error.
    pub fn new(spec: &ResolverSpec) -> Result<Resolver, ResolverSetupError> {
        let mut opts = ResolverOpts::default();
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        opts.cache_size = 16_384;
        opts.use_hosts_file = ResolveHosts::Always;
        // Many probes resolve at once; hickory's default of 32 in-flight requests per
        // connection would turn bursts into `busy` errors.
        opts.max_active_requests = 4_096;
        opts.timeout = Duration::from_secs(3);
        opts.attempts = 2;
        match spec {
            ResolverSpec::Server(addr) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                let ns = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
                let cfg = ResolverConfig::from_name_servers(vec![ns]);
                let r = TokioResolver::builder_with_config(cfg, TokioRuntimeProvider::default())
                    .with_options(opts)
                    .build()
                    .map_err(|e| ResolverSetupError(e.to_string()))?;
                Ok(Resolver {
                    inner: Some(r),
                    setup_error: None,
                })
            }
            ResolverSpec::System => match TokioResolver::builder_tokio() {
                Ok(mut b) => {
                    let sys = b.options_mut().clone();
                    opts.ndots = sys.ndots;
                    let r = b
                        .with_options(opts)
                        .build()
                        .map_err(|e| ResolverSetupError(e.to_string()))?;
                    Ok(Resolver {
                        inner: Some(r),
                        setup_error: None,
                    })
                }
                Err(e) => Ok(Resolver {
                    inner: None,
                    setup_error: Some(format!("system resolver configuration unusable: {e}")),
                }),
            },
        }
    }

    /// Resolves `host` to addresses. IP literals come back at once without a lookup (and
    /// without a `dns_ms` phase: the returned duration is `None`).
    pub async fn resolve(
        &self,
        host: &Host,
        deadline: Instant,
    ) -> Result<(Vec<IpAddr>, Option<f64>), ProbeError> {
        let name = match host {
            Host::Ip(ip) => return Ok((vec![*ip], None)),
            Host::Name(n) => n,
        };
        let Some(r) = &self.inner else {
            return Err(ProbeError::new(
                ErrorKind::Local,
                self.setup_error
                    .clone()
                    .unwrap_or_else(|| "no resolver".into()),
            ));
        };
        let start = Instant::now();
        let res = tokio::time::timeout_at(deadline.into(), r.lookup_ip(name.as_str())).await;
        let took = start.elapsed();
        match res {
            Err(_) => Err(ProbeError::new(
                ErrorKind::Dns(DnsFailure::Timeout),
                format!("no DNS answer for `{name}` within {}", fmt_ms(took)),
            )),
            Ok(Err(e)) => Err(classify_dns(name, &e)),
            Ok(Ok(lookup)) => {
                let ips: Vec<IpAddr> = lookup.iter().collect();
                if ips.is_empty() {
                    Err(ProbeError::new(
                        ErrorKind::Dns(DnsFailure::NoAddress),
                        format!("`{name}` exists but has no A/AAAA record"),
                    ))
                } else {
                    Ok((ips, Some(ms(took))))
                }
            }
        }
    }
}

/// Maps a resolver error to an error kind: NXDOMAIN and SERVFAIL are about the target's name
/// (`down`); a resolver we cannot reach is our problem (`local`, outcome `unknown`).
pub fn classify_dns(name: &str, e: &NetError) -> ProbeError {
    if e.is_nx_domain() {
        return ProbeError::new(
            ErrorKind::Dns(DnsFailure::Nxdomain),
            format!("`{name}` does not exist (NXDOMAIN)"),
        );
    }
    match e {
        NetError::Dns(DnsError::NoRecordsFound(_)) => ProbeError::new(
            ErrorKind::Dns(DnsFailure::NoAddress),
            format!("`{name}` exists but has no A/AAAA record"),
        ),
        NetError::Dns(DnsError::ResponseCode(code)) => {
            let what = match code {
                ResponseCode::ServFail => "SERVFAIL".to_string(),
                ResponseCode::Refused => "REFUSED".to_string(),
                other => other.to_string(),
            };
            ProbeError::new(
                ErrorKind::Dns(DnsFailure::Servfail),
                format!("resolver answered {what} for `{name}`"),
            )
        }
        NetError::Timeout => ProbeError::new(
            ErrorKind::Dns(DnsFailure::Timeout),
            format!("resolver did not answer for `{name}` in time"),
        ),
        NetError::Io(_) | NetError::NoConnections | NetError::Busy => ProbeError::new(
            ErrorKind::Local,
            format!("our resolver is unreachable or overloaded while looking up `{name}`: {e}"),
        ),
        other => ProbeError::new(
            ErrorKind::Dns(DnsFailure::Servfail),
            format!("lookup of `{name}` failed: {other}"),
        ),
    }
}
