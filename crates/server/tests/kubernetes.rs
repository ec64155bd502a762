//! Kubernetes discovery through the daemon.
//!
//! No Kubernetes API server can run on this machine, so this test serves the API itself: a
//! local HTTPS server (its own CA, a bearer token) replaying Service and EndpointSlice list and
//! watch responses written from the Kubernetes API reference — `core/v1` `ServiceList` and
//! `discovery.k8s.io/v1` `EndpointSliceList` bodies, and watch streams of JSON lines
//! `{"type": "ADDED"|"MODIFIED"|"DELETED", "object": {...}}` resumed from `resourceVersion`.
//! The daemon reaches it through a kubeconfig file, so the code path is the one used with a
//! real cluster: kube-rs client (rustls/ring, token auth, CA from the kubeconfig) and watcher
//! (list, watch, relist with backoff after errors). Cluster IPs and endpoint addresses in the
//! recorded objects are loopback addresses so the discovered monitors probe real listeners.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use portwarden_testkit as tk;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const TOKEN: &str = "pw-test-token-7d1c";

#[derive(Default)]
struct ApiState {
    rv: u64,
    /// (kind, namespace, name) → object.
    objects: BTreeMap<(String, String, String), Value>,
    /// (resourceVersion, kind, event line).
    log: Vec<(u64, String, Value)>,
    failing: bool,
    requests: Vec<String>,
}

struct FakeApi {
    state: Mutex<ApiState>,
    wake: tokio::sync::broadcast::Sender<()>,
    port: u16,
}

fn kind_of(obj: &Value) -> &'static str {
    if obj["kind"] == "Service" {
        "services"
    } else {
        "endpointslices"
    }
}

fn matches(selector: Option<&str>, obj: &Value) -> bool {
    let Some(sel) = selector.filter(|s| !s.is_empty()) else {
        return true;
    };
    let labels = &obj["metadata"]["labels"];
    sel.split(',').all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            labels[k] != v
        } else if let Some((k, v)) = term.split_once('=') {
            labels[k.trim_end_matches('=')] == v
        } else {
            !labels[term].is_null()
        }
    })
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl FakeApi {
    fn apply(&self, mut obj: Value) {
        let mut st = self.state.lock().unwrap();
        st.rv += 1;
        let rv = st.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let key = (
            kind_of(&obj).to_string(),
            obj["metadata"]["namespace"].as_str().unwrap().to_string(),
            obj["metadata"]["name"].as_str().unwrap().to_string(),
        );
        let ty = if st.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        st.objects.insert(key.clone(), obj.clone());
        st.log.push((rv, key.0, json!({"type": ty, "object": obj})));
        drop(st);
        let _ = self.wake.send(());
    }

    fn delete(&self, kind: &str, ns: &str, name: &str) {
        let mut st = self.state.lock().unwrap();
        st.rv += 1;
        let rv = st.rv;
        if let Some(mut obj) = st.objects.remove(&(kind.into(), ns.into(), name.into())) {
            obj["metadata"]["resourceVersion"] = json!(rv.to_string());
            st.log
                .push((rv, kind.into(), json!({"type": "DELETED", "object": obj})));
        }
        drop(st);
        let _ = self.wake.send(());
    }

    fn set_failing(&self, f: bool) {
        self.state.lock().unwrap().failing = f;
        let _ = self.wake.send(());
    }

    fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    async fn start(ca: &tk::certs::TestCa) -> Arc<FakeApi> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let leaf = ca.leaf(&["127.0.0.1", "localhost"], -1, 30);
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = Arc::new(FakeApi {
            state: Mutex::new(ApiState::default()),
            wake: tokio::sync::broadcast::channel(1024).0,
            port: l.local_addr().unwrap().port(),
        });
        let api2 = api.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let acceptor = acceptor.clone();
                let api = api2.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(s).await {
                        let _ = api.serve(tls).await;
                    }
                });
            }
        });
        api
    }

    /// HTTP/1.1 over one connection: list requests answered in turn (keep-alive), a watch
    /// request streams chunked JSON lines until the connection is cut.
    async fn serve(
        self: Arc<Self>,
        tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    ) -> std::io::Result<()> {
        let (r, mut w) = tokio::io::split(tls);
        let mut r = BufReader::new(r);
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let mut auth = String::new();
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).await? == 0 {
                    return Ok(());
                }
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':')
                    && k.eq_ignore_ascii_case("authorization")
                {
                    auth = v.trim().to_string();
                }
            }
            let (path, query) = target.split_once('?').unwrap_or((&target, ""));
            let q: BTreeMap<String, String> = query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), decode(v)))
                .collect();
            self.state
                .lock()
                .unwrap()
                .requests
                .push(format!("{path}?{query} [{auth}]"));
            if auth != format!("Bearer {TOKEN}") {
                respond(&mut w, 401, &status(401, "Unauthorized", "bad token")).await?;
                continue;
            }
            if self.state.lock().unwrap().failing {
                respond(
                    &mut w,
                    500,
                    &status(500, "InternalError", "etcdserver: request timed out"),
                )
                .await?;
                continue;
            }
            let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
            let (kind, ns) = match parts.as_slice() {
                ["api", "v1", "services"] => ("services", None),
                ["api", "v1", "namespaces", ns, "services"] => ("services", Some(ns.to_string())),
                ["apis", "discovery.k8s.io", "v1", "endpointslices"] => ("endpointslices", None),
                [
                    "apis",
                    "discovery.k8s.io",
                    "v1",
                    "namespaces",
                    ns,
                    "endpointslices",
                ] => ("endpointslices", Some(ns.to_string())),
                _ => {
                    respond(&mut w, 404, &status(404, "NotFound", "no such path")).await?;
                    continue;
                }
            };
            let selector = q.get("labelSelector").map(String::as_str);
            let in_scope = |o: &Value| {
                ns.as_deref()
                    .is_none_or(|n| o["metadata"]["namespace"] == n)
                    && matches(selector, o)
            };
            if q.get("watch").is_some_and(|v| v == "true" || v == "1") {
                let mut sent: u64 = q
                    .get("resourceVersion")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let mut wake = self.wake.subscribe();
                w.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").await?;
                w.flush().await?;
                loop {
                    let (lines, failing) = {
                        let st = self.state.lock().unwrap();
                        let lines: Vec<(u64, String)> = st
                            .log
                            .iter()
                            .filter(|(rv, k, ev)| {
                                *rv > sent && k == kind && in_scope(&ev["object"])
                            })
                            .map(|(rv, _, ev)| (*rv, format!("{ev}\n")))
                            .collect();
                        (lines, st.failing)
                    };
                    if failing {
                        return Ok(()); // the API server went away: cut the stream
                    }
                    for (rv, l) in lines {
                        w.write_all(format!("{:x}\r\n{l}\r\n", l.len()).as_bytes())
                            .await?;
                        sent = rv;
                    }
                    w.flush().await?;
                    let _ = tokio::time::timeout(Duration::from_secs(5), wake.recv()).await;
                }
            }
            let (items, rv) = {
                let st = self.state.lock().unwrap();
                let items: Vec<Value> = st
                    .objects
                    .iter()
                    .filter(|((k, _, _), o)| k == kind && in_scope(o))
                    .map(|(_, o)| o.clone())
                    .collect();
                (items, st.rv)
            };
            let (list_kind, api_version) = if kind == "services" {
                ("ServiceList", "v1")
            } else {
                ("EndpointSliceList", "discovery.k8s.io/v1")
            };
            let body = json!({
                "kind": list_kind,
                "apiVersion": api_version,
                "metadata": {"resourceVersion": rv.to_string()},
                "items": items,
            });
            respond(&mut w, 200, &body).await?;
        }
    }
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

async fn respond(
    w: &mut (impl tokio::io::AsyncWrite + Unpin),
    code: u16,
    body: &Value,
) -> std::io::Result<()> {
    let b = body.to_string();
    let head = format!(
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        b.len()
    );
    w.write_all(head.as_bytes()).await?;
    w.write_all(b.as_bytes()).await?;
    w.flush().await
}

fn service(ns: &str, name: &str, tier: &str, port: u16) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}"),
                     "labels": {"tier": tier, "app": name}},
        "spec": {"type": "ClusterIP", "clusterIP": "127.0.0.1", "clusterIPs": ["127.0.0.1"],
                 "ports": [{"name": "sql", "port": port, "protocol": "TCP", "targetPort": port}],
                 "selector": {"app": name}},
        "status": {"loadBalancer": {}}
    })
}

fn slice(ns: &str, svc: &str, port: u16, second_ready: bool) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{svc}-x7k2p"), "namespace": ns,
                     "labels": {"kubernetes.io/service-name": svc, "tier": "db",
                                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
        "addressType": "IPv4",
        "ports": [{"name": "sql", "port": port, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["127.0.0.1"], "conditions": {"ready": true, "serving": true, "terminating": false},
             "targetRef": {"kind": "Pod", "name": format!("{svc}-0"), "namespace": ns}, "nodeName": "node-1", "zone": "z1"},
            {"addresses": ["127.0.0.2"], "conditions": {"ready": second_ready, "serving": second_ready, "terminating": false},
             "targetRef": {"kind": "Pod", "name": format!("{svc}-1"), "namespace": ns}, "nodeName": "node-2", "zone": "z2"}
        ]
    })
}

struct Listener(tokio::task::JoinHandle<()>);

impl Drop for Listener {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn listen(addr: &str) -> (u16, Listener) {
    let l = tokio::net::TcpListener::bind(addr).await.unwrap();
    let port = l.local_addr().unwrap().port();
    (
        port,
        Listener(tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                drop(s);
            }
        })),
    )
}

async fn wait_for(
    d: &TestDaemon,
    name: &str,
    limit: Duration,
    what: &str,
    f: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let r = d.get(&format!("/api/v1/monitors/{name}")).await;
        if r.status == 200 {
            let v = r.json();
            if f(&v) {
                return v;
            }
        }
        if start.elapsed() > limit {
            panic!(
                "timed out after {limit:?} waiting for {what}; last: {} {}",
                r.status, r.body
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn names(d: &TestDaemon) -> Vec<String> {
    let v = d.json("/api/v1/monitors").await;
    let mut n: Vec<String> = v["monitors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

async fn source_state(d: &TestDaemon, name: &str) -> Value {
    let v = d.json("/api/v1/discovery").await;
    v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubernetes_services_and_endpointslices_through_list_and_watch() {
    let ca = tk::certs::TestCa::new();
    let api = FakeApi::start(&ca).await;
    let (pa, _la) = listen("127.0.0.1:0").await;
    let (pb, _lb) = listen("127.0.0.1:0").await;
    // The second pod's address, same port as the first (pods of one Service share it).
    let (_, _la2) = listen(&format!("127.0.0.2:{pa}")).await;
    api.apply(service("shop", "pg-a", "db", pa));
    api.apply(service("shop", "web", "frontend", 1));
    api.apply(slice("shop", "pg-a", pa, false));

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: https://127.0.0.1:{}\n    certificate-authority-data: {}\nusers:\n- name: portwarden\n  user:\n    token: {TOKEN}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: portwarden\ncurrent-context: test\n",
        api.port,
        base64::engine::general_purpose::STANDARD.encode(ca.cert_pem.as_bytes())
    );
    std::fs::write(dir.path().join("kubeconfig.yaml"), kubeconfig).unwrap();
    let cfg = dir.path().join("portwarden.yaml");
    std::fs::write(
        &cfg,
        r#"discover:
  - name: k8s
    source:
      type: kubernetes
      kubeconfig: kubeconfig.yaml
      namespaces: [shop]
      selector: "tier=db"
      address: cluster_ip
    refresh: 1s
    template:
      name: "svc-{{ meta.service }}-{{ meta.port_name }}"
      check: tcp
      interval: 300ms
      timeout: 200ms
      labels:
        app: "{{ labels.app }}"
  - name: pods
    source:
      type: kubernetes
      kubeconfig: kubeconfig.yaml
      selector: "tier=db"
      endpoints: pod
    refresh: 1s
    template:
      name: "pod-{{ meta.pod }}"
      check: tcp
      interval: 300ms
      timeout: 200ms
"#,
    )
    .unwrap();
    let mut d = TestDaemon::start_with(dir, cfg, None).await;

    // Service level: one monitor per selected Service port; `web` is not selected.
    let before = wait_for(
        &d,
        "svc-pg-a-sql",
        Duration::from_secs(20),
        "svc-pg-a up",
        |v| v["state"] == "up" && v["runs"].as_u64() >= Some(3),
    )
    .await;
    assert_eq!(before["target"], format!("127.0.0.1:{pa}"));
    assert_eq!(before["labels"]["app"], "pg-a");
    assert_eq!(before["source"], "k8s");
    // Pod level: only the ready endpoint.
    wait_for(
        &d,
        "pod-pg-a-0",
        Duration::from_secs(20),
        "pod-pg-a-0 up",
        |v| v["state"] == "up",
    )
    .await;
    assert_eq!(names(&d).await, vec!["pod-pg-a-0", "svc-pg-a-sql"]);

    // Watch: a Service is created → its monitor appears; the other keeps its state.
    api.apply(service("shop", "pg-b", "db", pb));
    wait_for(
        &d,
        "svc-pg-b-sql",
        Duration::from_secs(10),
        "svc-pg-b up",
        |v| v["state"] == "up",
    )
    .await;
    // The second pod becomes ready → its own monitor.
    api.apply(slice("shop", "pg-a", pa, true));
    let p1 = wait_for(
        &d,
        "pod-pg-a-1",
        Duration::from_secs(10),
        "pod-pg-a-1 up",
        |v| v["state"] == "up",
    )
    .await;
    assert_eq!(p1["target"], format!("127.0.0.2:{pa}"));
    let after = d.monitor("svc-pg-a-sql").await;
    assert_eq!(
        after["since"], before["since"],
        "unchanged monitor keeps its state"
    );
    assert!(after["runs"].as_u64() > before["runs"].as_u64());

    // A Service is deleted → paused at once, retired after the grace period, no incident.
    api.delete("services", "shop", "pg-b");
    wait_for(
        &d,
        "svc-pg-b-sql",
        Duration::from_secs(10),
        "svc-pg-b paused",
        |v| v["state"] == "paused",
    )
    .await;
    tk::http::wait_until(Duration::from_secs(10), || {
        let v = d.client().get("/api/v1/monitors").json();
        (!v.to_string().contains("svc-pg-b-sql")).then_some(())
    })
    .expect("svc-pg-b retired");
    assert_eq!(source_state(&d, "k8s").await["retired_total"], 1);

    // The API server fails: the watch breaks, relists fail; the last good set stays and
    // health says so. When it is back, the watcher relists and the source is healthy again.
    api.set_failing(true);
    let failing = tk::http::wait_until(Duration::from_secs(15), || {
        let v = d.client().get("/api/v1/health").json();
        v["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| {
                p.as_str()
                    .unwrap()
                    .contains("discovery `k8s` (kubernetes) failing")
            })
            .then_some(v)
    })
    .expect("failure reported");
    assert_eq!(failing["status"], "degraded");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        names(&d).await,
        vec!["pod-pg-a-0", "pod-pg-a-1", "svc-pg-a-sql"],
        "nothing removed on errors"
    );
    api.set_failing(false);
    tk::http::wait_until(Duration::from_secs(40), || {
        let v = d.client().get("/api/v1/health").json();
        (v["status"] == "ok").then_some(())
    })
    .expect("healthy again after relist");
    assert_eq!(d.monitor("svc-pg-a-sql").await["since"], before["since"]);
    let inc = d.json("/api/v1/incidents").await;
    assert!(inc["incidents"].as_array().unwrap().is_empty(), "{inc:#}");

    // What the client asked: lists and watches, namespaced and cluster-wide, with the token
    // and the selector.
    let reqs = api.requests();
    let has = |s: &str| reqs.iter().any(|r| r.contains(s));
    assert!(has("/api/v1/namespaces/shop/services?"), "{reqs:#?}");
    assert!(has("/api/v1/services?"), "{reqs:#?}");
    assert!(
        has("/apis/discovery.k8s.io/v1/endpointslices?"),
        "{reqs:#?}"
    );
    assert!(has("watch=true"), "{reqs:#?}");
    assert!(has("labelSelector=tier%3Ddb"), "{reqs:#?}");
    assert!(
        reqs.iter()
            .all(|r| r.ends_with(&format!("[Bearer {TOKEN}]"))),
        "{reqs:#?}"
    );
    d.stop().await;
}
