//! `dns`: SRV records (each answer a target: its host name and port), or every A/AAAA address
//! of names (one target per address, so one dead replica behind a round-robin name is seen).
//! Asked fresh every refresh (no cache between refreshes). NXDOMAIN or no records is an empty
//! answer; a server that does not answer is a failed refresh (the last good set stays).

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::rr::{RData, RecordType};
use portwarden_config::Diagnostic;
use portwarden_config::node::Node;
use portwarden_core::duration::serde_human::option as opt_dur;
use portwarden_probe::ResolverSpec;
use serde::Deserialize;

use super::{Poll, Snapshot, SourceCx};
use crate::target::Target;

/// Which records to ask for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsRecord {
    /// `_service._proto.name` SRV: targets and ports from the answers.
    #[default]
    Srv,
    /// IPv4 addresses of each name, with `port`.
    A,
    /// IPv6 addresses of each name, with `port`.
    Aaaa,
    /// Both A and AAAA.
    Ip,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSource {
    /// Names to look up (`_postgresql._tcp.db.internal` for SRV, `web.internal` for A/AAAA).
    pub names: Vec<String>,
    /// `srv` (default), `a`, `aaaa` or `ip` (A and AAAA).
    #[serde(default)]
    pub record: DnsRecord,
    /// The port of A/AAAA targets (SRV answers carry their own).
    #[serde(default)]
    pub port: Option<u16>,
    /// `udp` targets instead of `tcp` (A/AAAA; SRV names say `_udp`).
    #[serde(default)]
    pub transport: Option<String>,
    /// DNS server `IP:PORT` to ask (default: the config's `resolver:`, else the system's).
    #[serde(default)]
    pub server: Option<String>,
    /// Per-query timeout (default 5s).
    #[serde(default, with = "opt_dur")]
    pub timeout: Option<Duration>,
}

impl DnsSource {
    pub fn check(&self, node: &Node) -> Vec<Diagnostic> {
        let mut d = Vec::new();
        if self.names.is_empty() {
            d.push(
                Diagnostic::error(node.loc_of("names"), "`names` is empty")
                    .hint("list the names to look up, e.g. `[_postgresql._tcp.db.internal]`"),
            );
        }
        match self.record {
            DnsRecord::Srv => {
                if self.port.is_some() {
                    d.push(
                        Diagnostic::error(
                            node.loc_of("port"),
                            "`port` is not used with SRV records: their answers carry the port",
                        )
                        .hint("remove `port`, or set `record: a` to expand a name's addresses"),
                    );
                }
            }
            _ => {
                if self.port.is_none_or(|p| p == 0) {
                    d.push(
                        Diagnostic::error(
                            node.loc_of("record"),
                            "A/AAAA discovery needs `port` (1-65535)",
                        )
                        .hint("add `port: 5432` (the port every address is checked on)"),
                    );
                }
            }
        }
        if let Some(t) = &self.transport
            && t != "tcp"
            && t != "udp"
        {
            d.push(
                Diagnostic::error(
                    node.loc_of("transport"),
                    format!("`transport` must be `tcp` or `udp`, not `{t}`"),
                )
                .hint("omit it for tcp"),
            );
        }
        if let Some(s) = &self.server
            && let Err(e) = portwarden_config::parse_resolver(s)
        {
            d.push(
                Diagnostic::error(node.loc_of("server"), e)
                    .hint("write `IP:PORT`, e.g. `127.0.0.1:53`"),
            );
        }
        for (i, n) in self.names.iter().enumerate() {
            if hickory_resolver::proto::rr::Name::from_utf8(n).is_err() || n.trim().is_empty() {
                d.push(
                    Diagnostic::error(
                        node.loc_of(&format!("names[{i}]")),
                        format!("`{n}` is not a DNS name"),
                    )
                    .hint("write a name like `_postgresql._tcp.db.internal`"),
                );
            }
        }
        d
    }
}

pub struct Runner {
    spec: DnsSource,
    resolver: TokioResolver,
    server: String,
}

impl Runner {
    pub fn new(spec: DnsSource, cx: &SourceCx) -> Result<Runner, String> {
        let server = match &spec.server {
            Some(s) => ResolverSpec::Server(portwarden_config::parse_resolver(s)?),
            None => cx.resolver.clone(),
        };
        let mut opts = ResolverOpts::default();
        opts.timeout = spec.timeout.unwrap_or(Duration::from_secs(5));
        opts.attempts = 2;
        opts.use_hosts_file = ResolveHosts::Never;
        let (resolver, shown) = match &server {
            ResolverSpec::Server(addr) => (build(*addr, opts)?, addr.to_string()),
            ResolverSpec::System => {
                let mut b = TokioResolver::builder_tokio().map_err(|e| {
                    format!("system resolver configuration unusable: {e}; set `server:`")
                })?;
                let ndots = b.options_mut().ndots;
                opts.ndots = ndots;
                let r = b
                    .with_options(opts)
                    .build()
                    .map_err(|e| format!("cannot set up the resolver: {e}"))?;
                (r, "the system resolver".to_string())
            }
        };
        Ok(Runner {
            spec,
            resolver,
            server: shown,
        })
    }

    async fn lookup(&self, name: &str, rt: RecordType) -> Result<Vec<RData>, String> {
        match self.resolver.lookup(name, rt).await {
            Ok(l) => Ok(l.answers().iter().map(|r| r.data.clone()).collect()),
            Err(e) if e.is_nx_domain() => Ok(Vec::new()),
            Err(NetError::Dns(DnsError::NoRecordsFound(_))) => Ok(Vec::new()),
            Err(e) => Err(format!(
                "{rt} lookup of `{name}` at {} failed: {e}",
                self.server
            )),
        }
    }
}

fn build(addr: SocketAddr, opts: ResolverOpts) -> Result<TokioResolver, String> {
    let mut udp = ConnectionConfig::udp();
    udp.port = addr.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = addr.port();
    let ns = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
    let cfg = ResolverConfig::from_name_servers(vec![ns]);
    TokioResolver::builder_with_config(cfg, TokioRuntimeProvider::default())
        .with_options(opts)
        .build()
        .map_err(|e| format!("cannot set up the resolver for {addr}: {e}"))
}

#[async_trait::async_trait]
impl Poll for Runner {
    async fn fetch(&mut self) -> Result<Snapshot, String> {
        // Fresh answers every refresh: an added record shows within one refresh.
        self.resolver.clear_cache();
        let transport = self.spec.transport.clone().unwrap_or_else(|| "tcp".into());
        let mut targets = Vec::new();
        for name in &self.spec.names {
            match self.spec.record {
                DnsRecord::Srv => {
                    let udp = name.contains("._udp.");
                    for rd in self.lookup(name, RecordType::SRV).await? {
                        let RData::SRV(srv) = rd else { continue };
                        let host = srv.target.to_utf8();
                        let host = host.trim_end_matches('.');
                        // "." means "no service here" (RFC 2782).
                        if host.is_empty() || srv.port == 0 {
                            continue;
                        }
                        let mut t = Target::new(host, Some(srv.port));
                        t.transport = if udp { "udp".into() } else { transport.clone() };
                        t.meta.insert("name".into(), name.clone());
                        t.meta.insert("record".into(), "SRV".into());
                        t.meta.insert("priority".into(), srv.priority.to_string());
                        t.meta.insert("weight".into(), srv.weight.to_string());
                        targets.push(t);
                    }
                }
                rec => {
                    let types: &[RecordType] = match rec {
                        DnsRecord::A => &[RecordType::A],
                        DnsRecord::Aaaa => &[RecordType::AAAA],
                        _ => &[RecordType::A, RecordType::AAAA],
                    };
                    for rt in types {
                        for rd in self.lookup(name, *rt).await? {
                            let (ip, kind) = match rd {
                                RData::A(a) => (std::net::IpAddr::V4(a.0), "A"),
                                RData::AAAA(a) => (std::net::IpAddr::V6(a.0), "AAAA"),
                                _ => continue,
                            };
                            let mut t = Target::new(ip.to_string(), self.spec.port);
                            t.transport = transport.clone();
                            t.meta.insert("name".into(), name.clone());
                            t.meta.insert("record".into(), kind.into());
                            targets.push(t);
                        }
                    }
                }
            }
        }
        Ok(Snapshot {
            targets,
            problems: Vec::new(),
        })
    }
}
