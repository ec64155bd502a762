//! A real HTTP receiver on loopback for the channel tests: records every request and answers
//! from a script (status, headers, body), then 200 once the script is used up.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("").to_string())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn new(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }
}

#[derive(Default)]
struct State {
    seen: Vec<Seen>,
    script: VecDeque<Reply>,
    default: Option<Reply>,
    /// Answer with this status and the whole request echoed in the body.
    echo: Option<u16>,
}

#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

impl Receiver {
    /// Starts a receiver on 127.0.0.1 (an ephemeral port).
    pub async fn start() -> Receiver {
        let state: Arc<Mutex<State>> = Arc::default();
        let st = state.clone();
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let st = st.clone();
                async move {
                    let mut s = st.lock().unwrap();
                    s.seen.push(Seen {
                        method: method.to_string(),
                        path: uri.path().to_string(),
                        query: uri.query().map(str::to_string),
                        headers,
                        body: body.to_vec(),
                    });
                    if let Some(status) = s.echo {
                        let last = s.seen.last().unwrap();
                        let echo = format!(
                            "{} {} {:?} {}",
                            last.method,
                            uri,
                            last.headers,
                            String::from_utf8_lossy(&last.body)
                        );
                        return (StatusCode::from_u16(status).unwrap(), echo).into_response();
                    }
                    let r = s
                        .script
                        .pop_front()
                        .or_else(|| s.default.clone())
                        .unwrap_or_else(|| Reply::new(200, "ok"));
                    let mut resp: Response =
                        (StatusCode::from_u16(r.status).unwrap(), r.body.clone()).into_response();
                    for (k, v) in &r.headers {
                        resp.headers_mut().insert(
                            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                            v.parse().unwrap(),
                        );
                    }
                    resp
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            addr,
            state,
            task: Arc::new(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers the next requests with these replies, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.lock().unwrap().script.extend(replies);
    }

    /// Answers with this once the script is used up (default: 200 `ok`).
    pub fn default_reply(&self, r: Reply) {
        self.state.lock().unwrap().default = Some(r);
    }

    /// Answers every request with `status` and the request echoed back (a hostile receiver).
    pub fn echo(&self, status: u16) {
        self.state.lock().unwrap().echo = Some(status);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }
}

/// Loads `receivers:` YAML and builds the channels.
pub fn channels(
    yaml: &str,
) -> std::collections::HashMap<String, std::sync::Arc<dyn portwarden_notify::Channel>> {
    let loaded = portwarden_config::load_str(yaml, "test.yaml").unwrap_or_else(|d| panic!("{d}"));
    portwarden_notify::build(&loaded.config.receivers).unwrap_or_else(|e| panic!("{e}"))
}

/// Every string in a JSON document, one per line (what a reader of the message can see).
pub fn strings(v: &serde_json::Value) -> String {
    let mut out = String::new();
    fn walk(v: &serde_json::Value, out: &mut String) {
        match v {
            serde_json::Value::String(s) => {
                out.push_str(s);
                out.push('\n');
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            serde_json::Value::Object(o) => o.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(v, &mut out);
    out
}

/// Asserts that `text` shows every content field of every item of `n`.
#[track_caller]
pub fn assert_every_field(channel: &str, text: &str, n: &portwarden_notify::Notification) {
    for item in &n.items {
        for (label, value) in item.facts(n.at) {
            assert!(
                text.contains(&value),
                "{channel}: field {label} = {value:?} of {} is missing from:\n{text}",
                item.monitor
            );
        }
    }
}

/// A grouped message: `k` monitors on one host, each with its own details.
pub fn grouped(k: usize, event: portwarden_notify::Event) -> portwarden_notify::Notification {
    use portwarden_notify::{Change, Event};
    let mut n = portwarden_notify::Notification::sample(chrono::Utc::now());
    n.event = event;
    n.incident_id = Some(42);
    n.idempotency_key = portwarden_notify::Notification::key_for(42, event, None);
    n.title = "db1.example.internal".into();
    n.group_key = "host=db1.example.internal".into();
    n.note = None;
    n.incident_url = Some("https://pw.example.com/incidents/42".into());
    n.ack_url = Some("https://pw.example.com/ack/42?sig=abc".into());
    n.route = Some("dba".into());
    let base = n.items[0].clone();
    n.items = (0..k)
        .map(|i| {
            let mut it = base.clone();
            it.monitor = format!("db1-port-{}", 5400 + i);
            it.target = format!("tcp://db1.example.internal:{}", 5400 + i);
            it.service = Some(format!("svc-{i}"));
            it.incident_id = Some(100 + i as i64);
            it.incident_url = Some(format!("https://pw.example.com/incidents/{}", 100 + i));
            if event == Event::Resolve {
                it.state = portwarden_core::State::Up;
                it.recovered_at = Some(it.since + chrono::Duration::seconds(200 + i as i64));
            }
            it
        })
        .collect();
    if event == Event::Resolve {
        n.change = Change::Recovered;
    }
    n
}

/// The sample as a real trigger (or resolve) of incident 7.
pub fn single(event: portwarden_notify::Event) -> portwarden_notify::Notification {
    let mut n = grouped(1, event);
    n.title = n.items[0].monitor.clone();
    n.group_key = format!("monitor={}", n.items[0].monitor);
    n.incident_id = Some(7);
    n.idempotency_key = portwarden_notify::Notification::key_for(7, event, None);
    n.items[0].ack_url = Some("https://pw.example.com/ack/7?sig=xyz".into());
    n.items[0].dependents = vec!["orders-api".into(), "billing-api".into()];
    n
}
