//! Sources: where targets come from. One module per kind, each with its config struct (what
//! users write under `source:`) and its runner. Adding a kind touches its file and one arm of
//! [`SourceSpec`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use portwarden_config::Diagnostic;
use portwarden_config::node::Node;
use portwarden_probe::ResolverSpec;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::target::Target;

pub mod dns;
pub mod files;
pub mod http;
pub mod kubernetes;

/// `source:` of a `discover:` entry, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceSpec {
    /// Prometheus `file_sd` groups in YAML/JSON files under a directory.
    Files(files::FilesSource),
    /// Prometheus `http_sd` groups from a URL.
    Http(http::HttpSource),
    /// SRV records, or every A/AAAA address of names.
    Dns(dns::DnsSource),
    /// Kubernetes Services (and their EndpointSlices for per-pod targets), watched.
    Kubernetes(kubernetes::KubernetesSource),
}

impl SourceSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            SourceSpec::Files(_) => "files",
            SourceSpec::Http(_) => "http",
            SourceSpec::Dns(_) => "dns",
            SourceSpec::Kubernetes(_) => "kubernetes",
        }
    }

    /// Whether the source pushes changes as they happen (a watch) rather than per refresh.
    pub fn is_watch(&self) -> bool {
        matches!(self, SourceSpec::Kubernetes(_))
    }

    /// Checks that need more than the types (URLs, required combinations); located at the
    /// `source:` node.
    pub fn check(&self, node: &Node) -> Vec<Diagnostic> {
        match self {
            SourceSpec::Files(s) => s.check(node),
            SourceSpec::Http(s) => s.check(node),
            SourceSpec::Dns(s) => s.check(node),
            SourceSpec::Kubernetes(s) => s.check(node),
        }
    }

    /// A plausible target of this source, for checking templates at load time.
    pub fn sample(&self) -> Target {
        let mut t = Target::new("192.0.2.10", Some(5432));
        match self {
            SourceSpec::Dns(d) => {
                if let Some(p) = d.port {
                    t.port = Some(p);
                }
            }
            SourceSpec::Files(_) | SourceSpec::Http(_) | SourceSpec::Kubernetes(_) => {}
        }
        t
    }

    /// Starts the runner: it refreshes (or watches) until `cx.cancel` fires and reports every
    /// result through `out`.
    pub fn spawn(&self, cx: SourceCx, out: Reporter) -> tokio::task::JoinHandle<()> {
        match self {
            SourceSpec::Files(s) => {
                let s = files::Runner::new(s.clone(), &cx);
                tokio::spawn(poll(s, cx, out))
            }
            SourceSpec::Http(s) => match http::Runner::new(s.clone(), &cx) {
                Ok(r) => tokio::spawn(poll(r, cx, out)),
                Err(e) => tokio::spawn(async move { fail_forever(e, cx, out).await }),
            },
            SourceSpec::Dns(s) => match dns::Runner::new(s.clone(), &cx) {
                Ok(r) => tokio::spawn(poll(r, cx, out)),
                Err(e) => tokio::spawn(async move { fail_forever(e, cx, out).await }),
            },
            SourceSpec::Kubernetes(s) => tokio::spawn(kubernetes::run(s.clone(), cx, out)),
        }
    }
}

/// What a runner knows about its surroundings.
#[derive(Debug, Clone)]
pub struct SourceCx {
    /// The `discover:` entry's name.
    pub name: Arc<str>,
    pub refresh: Duration,
    /// Relative paths (files `dir`, `kubeconfig`, `ca_file`) start here.
    pub base_dir: PathBuf,
    /// The config's `resolver:` (a DNS source without `server:` uses it).
    pub resolver: ResolverSpec,
    pub cancel: CancellationToken,
}

impl SourceCx {
    pub fn path(&self, p: &str) -> PathBuf {
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            self.base_dir.join(p)
        }
    }
}

/// A successful look at the source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub targets: Vec<Target>,
    /// Parts that failed while the rest answered (one unreadable file: its last good
    /// targets are in `targets`).
    pub problems: Vec<String>,
}

/// One report of a runner.
#[derive(Debug, Clone)]
pub enum SourceEvent {
    /// The whole current set. `refresh`: it counts as a refresh for the grace period (polling
    /// sources); a watch's change events do not (the manager counts its own ticks).
    Snapshot { snapshot: Snapshot, refresh: bool },
    /// The source could not be read; the last good set stays.
    Failed(String),
}

/// Sends a runner's events, tagged with the entry and its generation.
#[derive(Debug, Clone)]
pub struct Reporter {
    pub block: Arc<str>,
    pub generation: u64,
    pub tx: mpsc::Sender<(Arc<str>, u64, SourceEvent)>,
}

impl Reporter {
    pub async fn send(&self, e: SourceEvent) {
        let _ = self.tx.send((self.block.clone(), self.generation, e)).await;
    }
}

/// A source read once per refresh.
#[async_trait::async_trait]
pub trait Poll: Send + 'static {
    async fn fetch(&mut self) -> Result<Snapshot, String>;
}

async fn poll(mut p: impl Poll, cx: SourceCx, out: Reporter) {
    let mut tick = tokio::time::interval(cx.refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cx.cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let r = tokio::select! {
            _ = cx.cancel.cancelled() => return,
            r = p.fetch() => r,
        };
        out.send(match r {
            Ok(snapshot) => SourceEvent::Snapshot {
                snapshot,
                refresh: true,
            },
            Err(e) => SourceEvent::Failed(e),
        })
        .await;
    }
}

/// A runner that could not even be built (bad CA file...): says so every refresh.
async fn fail_forever(e: String, cx: SourceCx, out: Reporter) {
    let mut tick = tokio::time::interval(cx.refresh);
    loop {
        tokio::select! {
            _ = cx.cancel.cancelled() => return,
            _ = tick.tick() => out.send(SourceEvent::Failed(e.clone())).await,
        }
    }
}
