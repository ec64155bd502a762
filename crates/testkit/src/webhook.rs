//! A webhook receiver for end-to-end tests: a plain TCP listener on loopback that speaks just
//! enough HTTP/1.1, answers every request `200 OK` and keeps each one (idempotency key, JSON
//! body) for the test to inspect.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One delivered request.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The `Idempotency-Key` (or `webhook-id`) header.
    pub key: String,
    pub body: serde_json::Value,
}

impl Delivery {
    /// The body's `event` (`trigger`, `resolve`, ...).
    pub fn event(&self) -> &str {
        self.body["event"].as_str().unwrap_or("")
    }
}

/// The receiver; it runs until the test process ends.
#[derive(Clone)]
pub struct Receiver {
    pub port: u16,
    got: Arc<Mutex<Vec<Delivery>>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        Receiver::start_on(0)
    }

    /// On a chosen port (0: any free one), e.g. one the config named while nothing listened.
    pub fn start_on(port: u16) -> Receiver {
        let l = TcpListener::bind(("127.0.0.1", port)).expect("webhook receiver binds");
        let port = l.local_addr().expect("local addr").port();
        let got: Arc<Mutex<Vec<Delivery>>> = Arc::default();
        let keep = got.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                let got = keep.clone();
                std::thread::spawn(move || handle(s, &got));
            }
        });
        Receiver { port, got }
    }

    /// `http://127.0.0.1:PORT/hook`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// Every request so far, in arrival order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.got.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Deliveries per (idempotency key, event).
    pub fn counts(&self) -> std::collections::HashMap<(String, String), u32> {
        let mut m = std::collections::HashMap::new();
        for d in self.deliveries() {
            *m.entry((d.key.clone(), d.event().to_string())).or_default() += 1;
        }
        m
    }

    /// How many deliveries of `event` arrived.
    pub fn events(&self, event: &str) -> u32 {
        self.deliveries()
            .iter()
            .filter(|d| d.event() == event)
            .count() as u32
    }

    /// Waits up to `limit` for a delivery `f` accepts.
    pub fn wait_for(&self, limit: Duration, f: impl Fn(&Delivery) -> bool) -> Option<Delivery> {
        crate::http::wait_until(limit, || self.deliveries().into_iter().find(|d| f(d)))
    }
}

fn handle(mut s: std::net::TcpStream, got: &Mutex<Vec<Delivery>>) {
    let Ok(clone) = s.try_clone() else { return };
    let mut r = BufReader::new(clone);
    let (mut key, mut len, mut line) = (String::new(), 0usize, String::new());
    loop {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let lower = l.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        for h in ["idempotency-key:", "webhook-id:"] {
            if lower.starts_with(h) {
                key = l[h.len()..].trim().to_string();
            }
        }
    }
    let mut body = vec![0; len];
    if r.read_exact(&mut body).is_err() {
        return;
    }
    let body = serde_json::from_slice(&body).unwrap_or_default();
    got.lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Delivery { key, body });
    let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
}
