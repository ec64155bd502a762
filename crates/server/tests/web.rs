//! The UI pages against real servers: untrusted text (monitor names, error messages with HTML)
//! renders as text everywhere; the public status page and its JSON and Atom feed show only what
//! `status_page:` exposes; the status page is cached.

mod common;

use std::time::Duration;

use common::*;
use portwarden_testkit as tk;
use tk::http::Client;

const EVIL_NAME: &str = "<script>alert(1)</script>";
const EVIL_REPLY: &[u8] = b"<img src=x onerror=alert(2)><script>alert(3)</script>\r\n";

fn assert_escaped(path: &str, body: &str) {
    for raw in ["<script>alert", "<img src=x"] {
        assert!(
            !body.contains(raw),
            "{path} contains raw `{raw}`:\n{}",
            &body[body.find(raw).unwrap().saturating_sub(200)..][..400.min(body.len())]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_names_and_messages_render_as_text() {
    let evil = tk::hostile::greeter(EVIL_REPLY).await;
    let yaml = format!(
        "monitors:\n  - name: \"{EVIL_NAME}\"\n    target: tcp://127.0.0.1:{evil}\n    tier: critical\n    interval: 1s\n    timeout: 500ms\n    service: \"<b>svc</b>\"\n    owner: \"<i>team</i>\"\n    description: \"<marquee>x</marquee>\"\n    labels: {{ \"<k>\": \"<v>\" }}\n    runbook: \"javascript:alert(4)\"\n    check: {{type: send_expect, steps: [{{expect: \"+PONG\"}}]}}\nstatus_page:\n  title: \"<h1>Status</h1>\"\n  expose: [messages, owners, error_kind]\n  groups:\n    - name: \"<em>Group</em>\"\n      components:\n        - name: \"<script>alert(5)</script>\"\n          description: \"<u>desc</u>\"\n          monitors: [\"{EVIL_NAME}\"]\n"
    );
    let mut d = TestDaemon::start(&yaml).await;
    let enc = "%3Cscript%3Ealert%281%29%3C%2Fscript%3E";
    let v = d
        .wait_monitor(
            enc,
            Duration::from_secs(15),
            "evil down with an incident",
            |v| v["state"] == "down" && v["incident"].is_i64(),
        )
        .await;
    let msg = v["last_observation"]["message"].as_str().unwrap();
    assert!(
        msg.contains("<img src=x"),
        "the message carries HTML: {msg}"
    );
    let id = v["incident"].as_i64().unwrap();
    let c = d.client();
    tokio::task::spawn_blocking(move || {
        let pages = [
            "/".to_string(),
            "/?group=owner".into(),
            "/?group=none&q=script".into(),
            format!("/monitors/{enc}"),
            format!("/monitors/{enc}?range=1h"),
            "/incidents".into(),
            format!("/incidents/{id}"),
            format!("/incidents?monitor={enc}"),
        ];
        for p in &pages {
            let r = c.get(p);
            assert_eq!(r.status, 200, "{p}: {}", r.body);
            assert_escaped(p, &r.body);
            assert!(
                r.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;")
                    || r.body.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
                "{p} shows the name as text"
            );
            assert!(!r.body.contains("<b>svc</b>") && !r.body.contains("<i>team</i>"));
            assert!(!r.body.contains("<marquee>") && !r.body.contains("<k>"));
            assert!(
                !r.body.contains("href=\"javascript:"),
                "{p}: javascript: link"
            );
        }
        let detail = c.get(&format!("/monitors/{enc}")).body;
        assert!(
            detail.contains("&lt;img src=x onerror=alert(2)&gt;")
                || detail.contains("&#60;img src=x onerror=alert(2)&#62;"),
            "the error message is shown, escaped"
        );
        let anon = Client::new(c.addr);
        let status = tk::http::wait_until(Duration::from_secs(40), || {
            let r = anon.get("/status");
            r.body.contains("Major outage").then_some(r)
        })
        .expect("the status page shows the outage");
        assert_escaped("/status", &status.body);
        assert!(!status.body.contains("<h1>Status</h1>") && !status.body.contains("<em>Group"));
        assert!(!status.body.contains("<u>desc</u>") && !status.body.contains("<i>team</i>"));
        let atom = anon.get("/status/feed.atom");
        assert_escaped("/status/feed.atom", &atom.body);
        assert!(
            atom.body.contains("&#60;script&#62;alert(5)")
                || atom.body.contains("&lt;script&gt;alert(5)"),
            "{}",
            atom.body
        );
        let json = anon.get("/status.json");
        let v = json.json();
        assert_eq!(
            v["groups"][0]["components"][0]["name"],
            "<script>alert(5)</script>"
        );
    })
    .await
    .unwrap();
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_page_leaks_nothing_it_does_not_expose() {
    let Some(_) = tk::need_binary("redis-server") else {
        return;
    };
    let mut redis = tk::process::Server::redis().expect("start redis");
    let rport = redis.port;
    // Dual-stack, so `localhost` (127.0.0.1 and ::1) answers on every address.
    let l = std::net::TcpListener::bind("[::]:0").unwrap();
    let wport = l.local_addr().unwrap().port();
    // Two monitors behind two components; a third monitor is not on the status page at all.
    let yaml = format!(
        "monitors:
  - name: internal-cache-primary
    target: tcp://127.0.0.1:{rport}
    tier: critical
    interval: 1s
    timeout: 500ms
    service: redis-internal
    owner: team-secret-ops
    capability: secret-capability
    description: lives on rack 42
    runbook: https://runbooks.internal.example/redis
  - name: internal-web-frontend
    target: tcp://localhost:{wport}
    interval: 1s
    timeout: 500ms
    owner: team-web-secret
  - name: hidden-monitor
    target: tcp://127.0.0.1:{wport}
    interval: 1s
    timeout: 500ms
status_page:
  title: Example status
  cache: 1s
  groups:
    - name: Shop
      components:
        - name: Sessions
          description: Logging in and staying logged in
          monitors: [internal-cache-primary]
        - name: Website
          monitors: [internal-web-frontend]
"
    );
    let mut d = TestDaemon::start(&yaml).await;
    d.wait_monitor(
        "internal-cache-primary",
        Duration::from_secs(10),
        "cache up",
        |v| v["state"] == "up",
    )
    .await;
    redis.kill();
    d.wait_monitor(
        "internal-cache-primary",
        Duration::from_secs(10),
        "cache down with an incident",
        |v| v["state"] == "down" && v["incident"].is_i64(),
    )
    .await;
    let addr = d.addr;
    let (html, json, atom) = tokio::task::spawn_blocking(move || {
        let anon = Client::new(addr);
        let html = tk::http::wait_until(Duration::from_secs(10), || {
            let r = anon.get("/status");
            r.body.contains("Major outage").then_some(r.body)
        })
        .expect("status page shows the outage");
        (
            html,
            anon.get("/status.json").body,
            anon.get("/status/feed.atom").body,
        )
    })
    .await
    .unwrap();
    for (what, doc) in [("/status", &html), ("/status.json", &json), ("feed", &atom)] {
        for secret in [
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "internal-cache-primary".into(),
            "internal-web-frontend".into(),
            "hidden-monitor".into(),
            "redis-internal".into(),
            "team-secret-ops".into(),
            "team-web-secret".into(),
            "secret-capability".into(),
            "rack 42".into(),
            "runbooks.internal".into(),
            "refused".into(),
            "connection".into(),
            "tcp://".into(),
        ] {
            assert!(!doc.contains(&secret), "{what} leaks `{secret}`:\n{doc}");
        }
        // Ports, wherever a port would stand (timestamps and ratios hold digits too).
        for port in [rport, wport] {
            for pat in [
                format!(":{port}"),
                format!(" {port}"),
                format!(">{port}"),
                format!("\"{port}"),
            ] {
                assert!(
                    !doc.contains(&pat),
                    "{what} leaks port {port} (`{pat}`):\n{doc}"
                );
            }
        }
    }
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["status"], "major_outage", "{v:#}");
    let comps = &v["groups"][0]["components"];
    assert_eq!(comps[0]["name"], "Sessions");
    assert_eq!(comps[0]["status"], "major_outage");
    assert_eq!(comps[1]["status"], "operational");
    let active = v["active_incidents"].as_array().unwrap();
    assert_eq!(active.len(), 1, "{v:#}");
    assert_eq!(active[0]["components"][0], "Sessions");
    assert!(active[0].get("message").is_none() && active[0].get("error_kind").is_none());
    assert!(html.contains("Sessions") && html.contains("Logging in and staying logged in"));
    assert!(
        atom.contains("<entry>") && atom.contains("Sessions: Major outage"),
        "{atom}"
    );

    // Exposing the error kind shows it, and still no message or target.
    d.write_config(&yaml.replace("  cache: 1s\n", "  cache: 1s\n  expose: [error_kind]\n"));
    let addr = d.addr;
    let json = tokio::task::spawn_blocking(move || {
        tk::http::wait_until(Duration::from_secs(10), || {
            let b = Client::new(addr).get("/status.json").body;
            b.contains("\"error_kind\":\"refused\"").then_some(b)
        })
        .expect("error kind exposed after reload")
    })
    .await
    .unwrap();
    assert!(!json.contains(&format!(":{rport}")) && !json.contains("localhost"));
    assert!(!json.contains("connection refused"), "{json}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_page_is_served_from_cache() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let yaml = format!(
        "monitors:\n  - name: web\n    target: tcp://127.0.0.1:{port}\n    interval: 1s\n    timeout: 500ms\nstatus_page:\n  cache: 30s\n  groups:\n    - name: All\n      components:\n        - name: Website\n          monitors: [web]\n"
    );
    let mut d = TestDaemon::start(&yaml).await;
    let addr = d.addr;
    tokio::task::spawn_blocking(move || {
        let anon = Client::new(addr);
        let first = anon.get("/status.json");
        assert_eq!(
            first.header("cache-control"),
            Some("public, max-age=30"),
            "{:?}",
            first.headers
        );
        let t0 = first.json()["updated_at"].clone();
        // A burst of requests: every one is answered from the same snapshot.
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let anon = anon.clone();
                std::thread::spawn(move || {
                    (0..25)
                        .map(|_| anon.get("/status.json").json()["updated_at"].clone())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for t in threads {
            for u in t.join().unwrap() {
                assert_eq!(u, t0, "served from the cache");
            }
        }
        let html = anon.get("/status");
        assert_eq!(html.status, 200);
        assert!(html.body.contains("Website"));
    })
    .await
    .unwrap();
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn monitor_page_shows_history_and_incident_page_the_timeline() {
    let Some(_) = tk::need_binary("redis-server") else {
        return;
    };
    let mut redis = tk::process::Server::redis().expect("start redis");
    let port = redis.port;
    let yaml = config(&format!(
        "  - name: cache\n    target: tcp://127.0.0.1:{port}\n    tier: critical\n    interval: 1s\n    timeout: 500ms\n    service: redis\n    owner: team-platform\n    runbook: https://runbooks.example/redis\n"
    ));
    let mut d = TestDaemon::start(&yaml).await;
    d.wait_monitor("cache", Duration::from_secs(10), "up", |v| {
        v["runs"].as_u64() >= Some(3)
    })
    .await;
    redis.kill();
    let id = d
        .wait_monitor("cache", Duration::from_secs(10), "incident", |v| {
            v["incident"].is_i64()
        })
        .await["incident"]
        .as_i64()
        .unwrap();
    let c = d.client();
    tokio::task::spawn_blocking(move || {
        // Acknowledge through the UI-equivalent API call.
        let r = c.post(&format!("/api/v1/incidents/{id}/ack"), "");
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["acknowledged_by"], "test-admin");
        let page = c.get("/").body;
        assert!(page.contains("Open incidents"), "open incidents on top");
        assert!(page.contains(&format!("/incidents/{id}")));
        let mon = c.get("/monitors/cache").body;
        for want in [
            "Latency",
            "data-series=",
            "Availability per day",
            "Recent observations",
            "refused",
            "https://runbooks.example/redis",
            "team-platform",
        ] {
            assert!(mon.contains(want), "monitor page lacks {want}");
        }
        let inc = c.get(&format!("/incidents/{id}")).body;
        for want in [
            "Timeline",
            "opened",
            "acknowledged",
            "test-admin",
            "Last healthy",
            "refused",
        ] {
            assert!(inc.contains(want), "incident page lacks {want}:\n{inc}");
        }
        let list = c.get("/incidents?state=open").body;
        assert!(list.contains(&format!("#{id}")));
    })
    .await
    .unwrap();
    d.stop().await;
}
