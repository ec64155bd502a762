//! `kubernetes`: Services selected by namespace and label selector, watched through the API
//! (kube-rs watcher: list, then watch, relist after errors with backoff). By default one target
//! per Service port (the Service's DNS name or cluster IP: churn-free, what users reach);
//! `endpoints: pod` gives one target per ready endpoint address in the Services'
//! EndpointSlices (watched too). In-cluster config, or a kubeconfig file and context.
//!
//! RBAC: get/list/watch on `services` and `endpointslices.discovery.k8s.io` — see
//! `deploy/kubernetes/rbac.yaml`.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Config, ResourceExt};
use portwarden_config::Diagnostic;
use portwarden_config::node::Node;
use serde::Deserialize;

use super::{Reporter, Snapshot, SourceCx, SourceEvent};
use crate::target::Target;

/// Label EndpointSlices carry with their Service's name.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// One monitor per Service port, or per endpoint (pod) address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoints {
    #[default]
    Service,
    Pod,
}

/// What `address` is for a Service-level target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceAddress {
    /// `name.namespace.svc.<cluster_domain>`.
    #[default]
    Dns,
    /// The cluster IP (headless Services fall back to the DNS name).
    ClusterIp,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesSource {
    /// A kubeconfig file (default: in-cluster service account, else `$KUBECONFIG` or
    /// `~/.kube/config`).
    #[serde(default)]
    pub kubeconfig: Option<String>,
    /// Context of the kubeconfig (default: its current context).
    #[serde(default)]
    pub context: Option<String>,
    /// Namespaces to watch (default: all).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Label selector on Services (`app.kubernetes.io/part-of=shop,tier!=batch`).
    #[serde(default)]
    pub selector: Option<String>,
    /// `service` (default) or `pod`.
    #[serde(default)]
    pub endpoints: Endpoints,
    /// Service-level address: `dns` (default) or `cluster_ip`.
    #[serde(default)]
    pub address: ServiceAddress,
    /// Only these Service ports (names or numbers); default all.
    #[serde(default)]
    pub ports: Vec<String>,
    /// Per-pod: also endpoints that are not ready (default false).
    #[serde(default)]
    pub include_not_ready: bool,
    /// Cluster DNS domain (default `cluster.local`).
    #[serde(default)]
    pub cluster_domain: Option<String>,
}

impl KubernetesSource {
    pub fn check(&self, node: &Node) -> Vec<Diagnostic> {
        let mut d = Vec::new();
        if let Some(sel) = &self.selector
            && (sel.trim().is_empty() || sel.contains(char::is_control))
        {
            d.push(
                Diagnostic::error(
                    node.loc_of("selector"),
                    "`selector` is empty or has control characters",
                )
                .hint("write a label selector like `app=pg,env in (prod)` or omit it"),
            );
        }
        for (i, ns) in self.namespaces.iter().enumerate() {
            let ok = !ns.is_empty()
                && ns.len() <= 63
                && ns
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !ok {
                d.push(
                    Diagnostic::error(
                        node.loc_of(&format!("namespaces[{i}]")),
                        format!("`{ns}` is not a namespace name"),
                    )
                    .hint("namespace names are lower-case letters, digits and `-`"),
                );
            }
        }
        d
    }
}

async fn client(spec: &KubernetesSource, cx: &SourceCx) -> Result<Client, String> {
    let opts = KubeConfigOptions {
        context: spec.context.clone(),
        ..Default::default()
    };
    let config = match &spec.kubeconfig {
        Some(p) => {
            let path = cx.path(p);
            let kc = Kubeconfig::read_from(&path)
                .map_err(|e| format!("kubeconfig `{}`: {e}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &opts)
                .await
                .map_err(|e| format!("kubeconfig `{}`: {e}", path.display()))?
        }
        None if spec.context.is_some() => Config::from_kubeconfig(&opts)
            .await
            .map_err(|e| format!("kubeconfig: {e}"))?,
        None => Config::infer().await.map_err(|e| {
            format!(
                "no in-cluster service account and no usable kubeconfig: {e}; set `kubeconfig:`"
            )
        })?,
    };
    Client::try_from(config).map_err(|e| format!("cannot build the Kubernetes client: {e}"))
}

type Key = (String, String);

// Boxed-free on purpose: one event at a time flows through, size does not matter.
#[allow(clippy::large_enum_variant)]
enum Ev {
    Svc(usize, Result<Event<Service>, watcher::Error>),
    Slice(usize, Result<Event<EndpointSlice>, watcher::Error>),
}

/// Objects seen by one watch stream (one per namespace and kind), with its relist buffer.
struct Store<K> {
    objects: HashMap<Key, K>,
    buffer: Option<HashMap<Key, K>>,
    synced: bool,
}

impl<K: ResourceExt> Store<K> {
    fn new() -> Self {
        Store {
            objects: HashMap::new(),
            buffer: None,
            synced: false,
        }
    }

    fn key(o: &K) -> Key {
        (o.namespace().unwrap_or_default(), o.name_any())
    }

    /// Applies an event; true when the visible set changed.
    fn apply(&mut self, e: Event<K>) -> bool {
        match e {
            Event::Init => {
                self.buffer = Some(HashMap::new());
                false
            }
            Event::InitApply(o) => {
                let k = Self::key(&o);
                self.buffer.get_or_insert_with(HashMap::new).insert(k, o);
                false
            }
            Event::InitDone => {
                self.objects = self.buffer.take().unwrap_or_default();
                self.synced = true;
                true
            }
            Event::Apply(o) => {
                self.objects.insert(Self::key(&o), o);
                true
            }
            Event::Delete(o) => {
                self.objects.remove(&Self::key(&o));
                true
            }
        }
    }
}

type Boxed = Pin<Box<dyn Stream<Item = Ev> + Send>>;

/// Runs the watch until cancelled: a snapshot after the first complete listing and after every
/// change (coalesced over 250 ms). A watch error is reported (the last good set stays) and the
/// watch is started again from a fresh listing after a backoff (0.5 s doubling to 30 s), so the
/// first complete listing afterwards clears the failure even when nothing changed.
pub async fn run(spec: KubernetesSource, cx: SourceCx, out: Reporter) {
    let mut backoff = Duration::from_millis(500);
    let mut last: Option<usize> = None;
    loop {
        let outcome = match client(&spec, &cx).await {
            Ok(c) => session(&spec, &cx, &out, c, &mut last).await,
            Err(e) => Session::Failed(e, false),
        };
        let (e, synced) = match outcome {
            Session::Cancelled => return,
            Session::Failed(e, synced) => (e, synced),
        };
        if synced {
            backoff = Duration::from_millis(500);
        }
        tracing::warn!(source = %cx.name, error = %e, retry_in = ?backoff, "kubernetes watch failed; relisting after a backoff");
        out.send(SourceEvent::Failed(e)).await;
        tokio::select! {
            _ = cx.cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

enum Session {
    Cancelled,
    /// The error, and whether this session had completed a listing.
    Failed(String, bool),
}

async fn session(
    spec: &KubernetesSource,
    cx: &SourceCx,
    out: &Reporter,
    client: Client,
    last: &mut Option<usize>,
) -> Session {
    let namespaces: Vec<Option<String>> = if spec.namespaces.is_empty() {
        vec![None]
    } else {
        spec.namespaces.iter().cloned().map(Some).collect()
    };
    let mut svc_cfg = watcher::Config::default();
    if let Some(sel) = &spec.selector {
        svc_cfg = svc_cfg.labels(sel);
    }
    let slice_cfg = watcher::Config::default().labels(SERVICE_NAME_LABEL);
    let mut streams: Vec<Boxed> = Vec::new();
    for (i, ns) in namespaces.iter().enumerate() {
        let api: Api<Service> = match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        streams.push(Box::pin(
            watcher::watcher(api, svc_cfg.clone()).map(move |e| Ev::Svc(i, e)),
        ));
        if spec.endpoints == Endpoints::Pod {
            let api: Api<EndpointSlice> = match ns {
                Some(ns) => Api::namespaced(client.clone(), ns),
                None => Api::all(client.clone()),
            };
            streams.push(Box::pin(
                watcher::watcher(api, slice_cfg.clone()).map(move |e| Ev::Slice(i, e)),
            ));
        }
    }
    let mut merged = futures::stream::select_all(streams);
    let mut services: Vec<Store<Service>> = namespaces.iter().map(|_| Store::new()).collect();
    let mut slices: Vec<Store<EndpointSlice>> = namespaces.iter().map(|_| Store::new()).collect();
    let mut dirty = false;
    let mut synced_once = false;
    let coalesce = Duration::from_millis(250);
    let mut flush_at: Option<tokio::time::Instant> = None;
    loop {
        let timer = async {
            match flush_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = cx.cancel.cancelled() => return Session::Cancelled,
            _ = timer => {
                flush_at = None;
                let synced = services.iter().all(|s| s.synced)
                    && (spec.endpoints == Endpoints::Service || slices.iter().all(|s| s.synced));
                if dirty && synced {
                    dirty = false;
                    synced_once = true;
                    let targets = targets(spec, &services, &slices);
                    *last = Some(targets.len());
                    out.send(SourceEvent::Snapshot {
                        snapshot: Snapshot { targets, problems: Vec::new() },
                        refresh: false,
                    })
                    .await;
                }
            }
            ev = merged.next() => {
                let Some(ev) = ev else {
                    return Session::Failed("the Kubernetes watch ended".into(), synced_once);
                };
                let changed = match ev {
                    Ev::Svc(i, Ok(e)) => services[i].apply(e),
                    Ev::Slice(i, Ok(e)) => slices[i].apply(e),
                    Ev::Svc(i, Err(e)) | Ev::Slice(i, Err(e)) => {
                        let what = namespaces[i]
                            .as_deref()
                            .map(|n| format!("namespace `{n}`"))
                            .unwrap_or_else(|| "all namespaces".into());
                        let kept = last.unwrap_or(0);
                        return Session::Failed(
                            format!("watch of {what} failed: {e}; relisting ({kept} target(s) from the last good listing kept)"),
                            synced_once,
                        );
                    }
                };
                if changed {
                    dirty = true;
                    if flush_at.is_none() {
                        flush_at = Some(tokio::time::Instant::now() + coalesce);
                    }
                }
            }
        }
    }
}

fn port_wanted(spec: &KubernetesSource, name: Option<&str>, numbers: &[i32]) -> bool {
    spec.ports.is_empty()
        || spec
            .ports
            .iter()
            .any(|p| Some(p.as_str()) == name || numbers.iter().any(|n| p == &n.to_string()))
}

fn transport(protocol: Option<&str>) -> Option<&'static str> {
    match protocol.unwrap_or("TCP") {
        "TCP" => Some("tcp"),
        "UDP" => Some("udp"),
        _ => None, // SCTP: nothing we probe
    }
}

/// Targets from the current objects (pure; unit-tested).
fn targets(
    spec: &KubernetesSource,
    services: &[Store<Service>],
    slices: &[Store<EndpointSlice>],
) -> Vec<Target> {
    let domain = spec.cluster_domain.as_deref().unwrap_or("cluster.local");
    let svcs: BTreeMap<&Key, &Service> = services.iter().flat_map(|s| s.objects.iter()).collect();
    let mut out = Vec::new();
    match spec.endpoints {
        Endpoints::Service => {
            for ((ns, name), svc) in &svcs {
                let Some(s) = &svc.spec else { continue };
                let dns = format!("{name}.{ns}.svc.{domain}");
                let address = if s.type_.as_deref() == Some("ExternalName") {
                    match &s.external_name {
                        Some(e) => e.trim_end_matches('.').to_string(),
                        None => continue,
                    }
                } else {
                    match (spec.address, s.cluster_ip.as_deref()) {
                        (ServiceAddress::ClusterIp, Some(ip)) if ip != "None" && !ip.is_empty() => {
                            ip.to_string()
                        }
                        _ => dns.clone(),
                    }
                };
                for p in s.ports.iter().flatten() {
                    let Some(tr) = transport(p.protocol.as_deref()) else {
                        continue;
                    };
                    if !port_wanted(spec, p.name.as_deref(), &[p.port]) {
                        continue;
                    }
                    let Ok(port) = u16::try_from(p.port) else {
                        continue;
                    };
                    let mut t = Target::new(address.clone(), Some(port));
                    t.transport = tr.into();
                    t.labels = svc.labels().clone();
                    t.meta.insert("namespace".into(), ns.clone());
                    t.meta.insert("service".into(), name.clone());
                    t.meta
                        .insert("port_name".into(), p.name.clone().unwrap_or_default());
                    t.meta.insert("protocol".into(), tr.into());
                    t.meta.insert("dns_name".into(), dns.clone());
                    t.meta.insert(
                        "cluster_ip".into(),
                        s.cluster_ip.clone().unwrap_or_default(),
                    );
                    t.meta.insert(
                        "type".into(),
                        s.type_.clone().unwrap_or_else(|| "ClusterIP".into()),
                    );
                    out.push(t);
                }
            }
        }
        Endpoints::Pod => {
            for store in slices {
                for ((ns, _), slice) in &store.objects {
                    let Some(svc_name) = slice.labels().get(SERVICE_NAME_LABEL) else {
                        continue;
                    };
                    let key = (ns.clone(), svc_name.clone());
                    let Some(svc) = svcs.get(&key) else { continue };
                    let svc_ports: Vec<(Option<&str>, i32)> = svc
                        .spec
                        .as_ref()
                        .and_then(|s| s.ports.as_ref())
                        .map(|ps| ps.iter().map(|p| (p.name.as_deref(), p.port)).collect())
                        .unwrap_or_default();
                    for p in slice.ports.iter().flatten() {
                        let Some(tr) = transport(p.protocol.as_deref()) else {
                            continue;
                        };
                        let Some(port) = p.port.and_then(|n| u16::try_from(n).ok()) else {
                            continue;
                        };
                        let name = p.name.as_deref();
                        let mut numbers = vec![i32::from(port)];
                        // The Service port of the same name (unnamed matches unnamed).
                        numbers.extend(
                            svc_ports
                                .iter()
                                .filter(|(n, _)| n.unwrap_or("") == name.unwrap_or(""))
                                .map(|(_, n)| *n),
                        );
                        if !port_wanted(spec, name, &numbers) {
                            continue;
                        }
                        for ep in &slice.endpoints {
                            let ready =
                                ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                            if !ready && !spec.include_not_ready {
                                continue;
                            }
                            for addr in &ep.addresses {
                                let mut t = Target::new(addr.clone(), Some(port));
                                t.transport = tr.into();
                                t.labels = svc.labels().clone();
                                t.meta.insert("namespace".into(), ns.clone());
                                t.meta.insert("service".into(), svc_name.clone());
                                t.meta.insert(
                                    "port_name".into(),
                                    name.unwrap_or_default().to_string(),
                                );
                                t.meta.insert("protocol".into(), tr.into());
                                t.meta.insert("ready".into(), ready.to_string());
                                if let Some(r) = &ep.target_ref
                                    && r.kind.as_deref() == Some("Pod")
                                {
                                    t.meta
                                        .insert("pod".into(), r.name.clone().unwrap_or_default());
                                }
                                if let Some(n) = &ep.node_name {
                                    t.meta.insert("node".into(), n.clone());
                                }
                                if let Some(z) = &ep.zone {
                                    t.meta.insert("zone".into(), z.clone());
                                }
                                if let Some(h) = &ep.hostname {
                                    t.meta.insert("hostname".into(), h.clone());
                                }
                                out.push(t);
                            }
                        }
                    }
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store<K: ResourceExt + serde::de::DeserializeOwned>(items: serde_json::Value) -> Store<K> {
        let mut s = Store::new();
        s.apply(Event::Init);
        for i in items.as_array().unwrap() {
            s.apply(Event::InitApply(serde_json::from_value(i.clone()).unwrap()));
        }
        s.apply(Event::InitDone);
        s
    }

    fn spec(endpoints: Endpoints) -> KubernetesSource {
        KubernetesSource {
            kubeconfig: None,
            context: None,
            namespaces: vec![],
            selector: None,
            endpoints,
            address: ServiceAddress::Dns,
            ports: vec![],
            include_not_ready: false,
            cluster_domain: None,
        }
    }

    #[test]
    fn service_and_pod_targets() {
        let svcs = store::<Service>(serde_json::json!([
            {"metadata": {"name": "pg", "namespace": "shop", "labels": {"app": "pg"}},
             "spec": {"clusterIP": "10.96.0.7", "ports": [{"name": "sql", "port": 5432, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "x", "port": 9, "protocol": "SCTP"}]}},
            {"metadata": {"name": "ext", "namespace": "shop"}, "spec": {"type": "ExternalName", "externalName": "db.example.", "ports": [{"port": 5432}]}}
        ]));
        let slices = store::<EndpointSlice>(serde_json::json!([
            {"metadata": {"name": "pg-abc", "namespace": "shop", "labels": {"kubernetes.io/service-name": "pg"}},
             "addressType": "IPv4",
             "ports": [{"name": "sql", "port": 15432, "protocol": "TCP"}],
             "endpoints": [
                {"addresses": ["10.1.0.5"], "conditions": {"ready": true}, "targetRef": {"kind": "Pod", "name": "pg-0"}, "nodeName": "n1", "zone": "a"},
                {"addresses": ["10.1.0.6"], "conditions": {"ready": false}, "targetRef": {"kind": "Pod", "name": "pg-1"}}
             ]},
            {"metadata": {"name": "other-x", "namespace": "shop", "labels": {"kubernetes.io/service-name": "other"}},
             "addressType": "IPv4", "ports": [{"port": 80}], "endpoints": [{"addresses": ["10.1.0.9"]}]}
        ]));
        let t = targets(&spec(Endpoints::Service), std::slice::from_ref(&svcs), &[]);
        let hp: Vec<String> = t
            .iter()
            .map(|t| format!("{}/{}", t.transport, t.hostport()))
            .collect();
        assert_eq!(
            hp,
            vec![
                "tcp/db.example:5432",
                "udp/pg.shop.svc.cluster.local:53",
                "tcp/pg.shop.svc.cluster.local:5432"
            ]
        );
        let mut s = spec(Endpoints::Service);
        s.address = ServiceAddress::ClusterIp;
        s.ports = vec!["sql".into()];
        let t = targets(&s, std::slice::from_ref(&svcs), &[]);
        assert_eq!(
            t.iter().map(Target::hostport).collect::<Vec<_>>(),
            vec!["10.96.0.7:5432"]
        );
        assert_eq!(t[0].labels["app"], "pg");
        let t = targets(
            &spec(Endpoints::Pod),
            std::slice::from_ref(&svcs),
            std::slice::from_ref(&slices),
        );
        assert_eq!(t.len(), 1, "{t:?}");
        assert_eq!(t[0].hostport(), "10.1.0.5:15432");
        assert_eq!(t[0].meta["pod"], "pg-0");
        let mut s = spec(Endpoints::Pod);
        s.include_not_ready = true;
        s.ports = vec!["5432".into()];
        let t = targets(
            &s,
            std::slice::from_ref(&svcs),
            std::slice::from_ref(&slices),
        );
        assert_eq!(
            t.len(),
            2,
            "service port number selects the slice port: {t:?}"
        );
    }
}
