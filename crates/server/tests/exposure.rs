//! The exposure guard's HTTP surface against real scans of listeners this test starts on
//! 127.0.0.1: the `/exposure` page (baselines, last scan and coverage, open and resolved
//! findings with their incidents, "scan now" with the session's CSRF token, hostile banners
//! rendered inert), and the API (`/api/v1/scans`, `/findings`, `/baselines`, the trigger and
//! `/reports`): real data, 401 without credentials, located 400s, no secrets in the output.

mod common;

use std::time::Duration;

use common::*;
use portwarden_testkit as tk;
use serde_json::Value;
use tk::http::Client;
use tokio::io::AsyncWriteExt;

/// What the rogue service says first: HTML that must never reach a page as markup.
const EVIL_BANNER: &[u8] = b"<script>alert(1)</script><img src=x onerror=alert(2)>\r\n";
/// Secrets in the config that no answer may contain.
const ROUTING_KEY: &str = "R0UT1NGKEYsecret0123456789abcdef";
const USER_PASSWORD: &str = "eve-password-1";
/// The password in the PostgreSQL URL (trust auth ignores it; it must not show up anyway).
const PG_PASSWORD: &str = "pg-url-secret-7c1d";

/// A listener that greets every connection with [`EVIL_BANNER`]; aborting the task closes it.
async fn evil_service() -> (u16, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(EVIL_BANNER).await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        }
    });
    (port, task)
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Baseline `lo` on 127.0.0.1: `evil` is not allowed (unexpected_open), `good` is allowed and
/// listening, `gone` is allowed (expected open) but closed (expected_open_closed).
fn config(evil: u16, good: u16, gone: u16, auth: &str) -> String {
    format!(
        "scan:\n  banner_timeout: 500ms\n  timeout: 500ms\nbaselines:\n  - name: lo\n    targets: [127.0.0.1]\n    ports: \"{evil},{good},{gone}\"\n    interval: 1h\n    allowed_open:\n      - {{port: {good}}}\n      - {{port: {gone}}}\n    severity: high\nreceivers:\n  pager: {{type: pagerduty, routing_key: \"{ROUTING_KEY}\", url: \"http://127.0.0.1:1/\"}}\ncontrols:\n  - id: \"PCI-DSS 1.2.1\"\n    title: Only authorised ports are reachable\n    baselines: [lo]\n{auth}"
    )
}

/// Triggers a scan of `lo` through the API and waits until a scan newer than `after` is stored.
fn scan_now(c: &Client, after: i64) -> Value {
    let r = c.post("/api/v1/baselines/lo/scan", "");
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.json()["baseline"], "lo");
    wait_scan(c, after)
}

/// Waits until this replica leads (PostgreSQL: right after start it may still campaign).
fn wait_leader(c: &Client, want: bool) {
    tk::http::wait_until(Duration::from_secs(20), || {
        (c.json("/api/v1/health")["leadership"]["leader"] == want).then_some(())
    })
    .unwrap_or_else(|| panic!("leadership never became {want}"));
}

fn wait_scan(c: &Client, after: i64) -> Value {
    tk::http::wait_until(Duration::from_secs(30), || {
        let v = c.json("/api/v1/baselines");
        let last = &v["status"][0]["last_scan"];
        (last["id"].as_i64().unwrap_or(0) > after && v["status"][0]["running"] == false)
            .then(|| last.clone())
    })
    .expect("the triggered scan is stored")
}

fn assert_inert(path: &str, body: &str) {
    for raw in ["<script>alert", "<img src=x"] {
        assert!(!body.contains(raw), "{path} contains raw `{raw}`");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exposure_page_shows_real_scans_and_renders_banners_inert() {
    let (evil, evil_task) = evil_service().await;
    let good_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let good = good_l.local_addr().unwrap().port();
    let gone = closed_port();
    let auth = auth_with(
        &[
            ("eve", USER_PASSWORD, "editor"),
            ("vic", "vic-password-1", "viewer"),
        ],
        &[],
    );
    let mut d = TestDaemon::start(&config(evil, good, gone, &auth)).await;
    let c = d.client();
    let addr = d.addr;
    tokio::task::spawn_blocking(move || {
        // Before any scan: the baseline, its schedule, no scan yet.
        let page = c.get("/exposure");
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(
            page.body.contains("href=\"/exposure\" class=\"on\""),
            "in the nav"
        );
        assert!(page.body.contains("none yet"), "{}", page.body);
        assert!(page.body.contains("every 1h"));

        // A session (editor): the page carries the CSRF token; "Scan now" needs it.
        let (eve, csrf) = login(addr, "eve", USER_PASSWORD);
        let r = eve.post_form("/exposure/lo/scan", &[("csrf", "wrong")]);
        assert_eq!(
            r.status, 403,
            "a POST without the session's CSRF token: {}",
            r.body
        );
        let page = eve.get("/exposure");
        assert!(
            page.body.contains("action=\"/exposure/lo/scan\""),
            "Scan now button"
        );
        assert_eq!(scrape_csrf(&page.body).as_deref(), Some(csrf.as_str()));
        let r = eve.post_form("/exposure/lo/scan", &[("csrf", &csrf)]);
        assert_eq!(r.status, 303, "{}", r.body);
        assert_eq!(r.header("location"), Some("/exposure"));
        let r = eve.post_form("/exposure/nope/scan", &[("csrf", &csrf)]);
        assert_eq!(r.status, 404, "{}", r.body);
        let first = wait_scan(&c, 0);
        assert_eq!(first["findings_opened"], 2, "{first:#}");

        // What the scan found, rendered.
        let page = eve.get("/exposure");
        assert_eq!(page.status, 200);
        let b = &page.body;
        assert_inert("/exposure", b);
        assert!(
            b.contains("&lt;script&gt;alert(1)&lt;/script&gt;")
                || b.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
            "the banner is shown as text:\n{b}"
        );
        for needle in [
            "unexpected_open".to_string(),
            "expected_open_closed".into(),
            format!("127.0.0.1:{evil}/tcp"),
            format!("127.0.0.1:{gone}/tcp"),
            format!("#{} at ", first["id"]),
            "3 TCP port(s)".into(),
            "1 host(s) × 3 TCP port(s) = 3 probes".into(),
            "2 expected-open".into(),
            "2 open finding(s)".into(),
        ] {
            assert!(b.contains(&needle), "/exposure lacks `{needle}`:\n{b}");
        }
        // Each open finding links its incident, which exists and names the finding.
        let findings = c.json("/api/v1/findings?status=open");
        for f in findings["findings"].as_array().unwrap() {
            let id = f["incident_id"].as_i64().expect("an incident per finding");
            assert!(
                b.contains(&format!("href=\"/incidents/{id}\"")),
                "link to #{id}"
            );
            let inc = c.json(&format!("/api/v1/incidents/{id}"));
            assert_eq!(inc["monitor"], "scan:lo", "{inc:#}");
            // ... whose page links back to the baseline on the exposure page.
            let page = c.get(&format!("/incidents/{id}"));
            assert!(
                page.body.contains("href=\"/exposure#baseline-lo\""),
                "{}",
                page.body
            );
        }
        assert!(b.contains("id=\"baseline-lo\""));
        let list = c.get("/incidents?monitor=scan%3Alo");
        assert!(list.body.contains("href=\"/exposure#baseline-lo\""));
        assert!(!list.body.contains("href=\"/monitors/scan"));
        // The report form downloads from the API with the session.
        assert!(b.contains("action=\"/api/v1/reports\""));
        let from = (chrono::Utc::now() - chrono::Duration::days(1))
            .format("%Y-%m-%d")
            .to_string();
        let r = eve.get(&format!("/api/v1/reports?from={from}&to=&format=html"));
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body.contains(&format!("127.0.0.1:{evil}/tcp")));
        assert_inert("the HTML report", &r.body);

        // A viewer sees the page but no button, and cannot trigger.
        let (vic, vcsrf) = login(addr, "vic", "vic-password-1");
        let page = vic.get("/exposure");
        assert_eq!(page.status, 200);
        assert!(!page.body.contains("action=\"/exposure/lo/scan\""));
        let r = vic.post_form("/exposure/lo/scan", &[("csrf", &vcsrf)]);
        assert_eq!(r.status, 403, "{}", r.body);
    })
    .await
    .unwrap();

    // The rogue service stops: the next scan resolves its finding (and incident).
    evil_task.abort();
    let _ = evil_task.await;
    let c = d.client();
    tokio::task::spawn_blocking(move || {
        let before = c.json("/api/v1/baselines")["status"][0]["last_scan"]["id"]
            .as_i64()
            .unwrap();
        let second = scan_now(&c, before);
        assert_eq!(second["findings_resolved"], 1, "{second:#}");
        let page = c.get("/exposure");
        let b = &page.body;
        assert_inert("/exposure", b);
        let resolved = &b[b.find("Recently resolved").expect("resolved section")..];
        assert!(
            resolved.contains(&format!("127.0.0.1:{evil}/tcp")),
            "the resolved finding is listed:\n{resolved}"
        );
        assert!(
            resolved.contains("&lt;script&gt;alert(1)")
                || resolved.contains("&#60;script&#62;alert(1)"),
            "with its banner, escaped"
        );
        let open = &b[b.find("Open findings").unwrap()..b.find("Recently resolved").unwrap()];
        assert!(!open.contains(&format!(":{evil}/tcp")), "no longer open");
        assert!(
            open.contains(&format!("127.0.0.1:{gone}/tcp")),
            "still open"
        );
        assert!(b.contains("1 open finding(s)"));
    })
    .await
    .unwrap();
    drop(good_l);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exposure_api_serves_real_scans_refuses_bad_queries_and_keeps_secrets() {
    api_checks("").await;
}

/// The same on PostgreSQL (`store:` in the config; a database this test creates).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exposure_api_on_postgres() {
    let Some(db) = tk::pg::TestDatabase::create() else {
        return;
    };
    let url = db.url().replacen(
        &format!("{}@", tk::pg::USER),
        &format!("{}:{PG_PASSWORD}@", tk::pg::USER),
        1,
    );
    api_checks(&format!("store: \"{url}\"\n")).await;
}

/// Two replicas on one PostgreSQL database: the follower refuses "scan now" (409, no button),
/// says so on its page, and shows the leader's scan from the shared store.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follower_replica_shows_the_leaders_scans_and_refuses_scan_now() {
    let Some(db) = tk::pg::TestDatabase::create() else {
        return;
    };
    let (evil, _evil_task) = evil_service().await;
    let good_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let good = good_l.local_addr().unwrap().port();
    let gone = closed_port();
    let yaml = format!(
        "store: {}\n{}",
        db.url(),
        config(evil, good, gone, &auth_with(&[], &[]))
    );
    let mut leader = TestDaemon::start(&yaml).await;
    let lc = leader.client();
    let lc2 = lc.clone();
    tokio::task::spawn_blocking(move || wait_leader(&lc2, true))
        .await
        .unwrap();
    let mut follower = TestDaemon::start(&yaml).await;
    let fc = follower.client();
    tokio::task::spawn_blocking(move || {
        wait_leader(&fc, false);
        let r = fc.post("/api/v1/baselines/lo/scan", "");
        assert_eq!(r.status, 409, "{}", r.body);
        assert_eq!(r.json()["error"], "not_leader");
        let page = fc.get("/exposure");
        assert_eq!(page.status, 200);
        assert!(page.body.contains("id=\"follower-note\""), "{}", page.body);
        assert!(!page.body.contains("action=\"/exposure/lo/scan\""));
        let r = fc.post_form("/exposure/lo/scan", &[]);
        assert_eq!(r.status, 409, "{}", r.body);
        // The leader scans; the follower's page shows that scan and its findings.
        let last = scan_now(&lc, 0);
        let id = last["id"].as_i64().unwrap();
        let page = tk::http::wait_until(Duration::from_secs(20), || {
            let p = fc.get("/exposure");
            p.body.contains(&format!("#{id} at ")).then_some(p)
        })
        .expect("the follower shows the leader's scan");
        assert!(page.body.contains(&format!("127.0.0.1:{evil}/tcp")));
        assert_inert("/exposure on the follower", &page.body);
    })
    .await
    .unwrap();
    follower.stop().await;
    leader.stop().await;
    drop(good_l);
}

/// The API checks against a daemon whose config ends with `extra`.
async fn api_checks(extra: &str) {
    let (evil, _evil_task) = evil_service().await;
    let good_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let good = good_l.local_addr().unwrap().port();
    let gone = closed_port();
    let auth = auth_with(&[("eve", USER_PASSWORD, "editor")], &[]);
    let mut d = TestDaemon::start(&format!("{extra}{}", config(evil, good, gone, &auth))).await;
    let c = d.client();
    let anon = d.anonymous();
    tokio::task::spawn_blocking(move || {
        // Without credentials: 401 everywhere, nothing scanned.
        for (method, path) in [
            ("GET", "/api/v1/scans"),
            ("GET", "/api/v1/scans/1"),
            ("GET", "/api/v1/findings"),
            ("GET", "/api/v1/baselines"),
            ("POST", "/api/v1/baselines/lo/scan"),
            ("GET", "/api/v1/reports?from=2026-01-01"),
        ] {
            let r = anon.request(method, path, &[], b"").unwrap();
            assert_eq!(r.status, 401, "{method} {path}: {}", r.body);
            assert_eq!(r.json()["error"], "unauthorized");
        }
        assert!(
            c.json("/api/v1/scans")["scans"]
                .as_array()
                .unwrap()
                .is_empty(),
            "the refused trigger scanned nothing"
        );
        wait_leader(&c, true);
        let r = c.post("/api/v1/baselines/nope/scan", "");
        assert_eq!(r.status, 404, "{}", r.body);
        assert!(r.json()["detail"].as_str().unwrap().contains("`nope`"));

        let last = scan_now(&c, 0);
        let id = last["id"].as_i64().unwrap();

        // Scans: the list, one with its full result, filters.
        let v = c.json("/api/v1/scans?baseline=lo&limit=5");
        assert_eq!(v["count"], 1, "{v:#}");
        let s = &v["scans"][0];
        assert_eq!(s["baseline"], "lo");
        assert_eq!(s["targets"][0], "127.0.0.1");
        assert_eq!(s["probes"], 3);
        assert_eq!(s["open_ports"], 2);
        assert_eq!(s["coverage"]["tcp_ports"], 3);
        assert_eq!(s["coverage"]["expected_open_ports"], 2);
        assert!(s.get("report").is_none(), "lists leave the full result out");
        let full = c.json(&format!("/api/v1/scans/{id}"));
        let ports: Vec<(u64, String)> = full["report"]["hosts"][0]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["port"].as_u64().unwrap(),
                    p["state"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert!(
            ports.contains(&(u64::from(evil), "open".into())),
            "{ports:?}"
        );
        assert!(
            ports.contains(&(u64::from(good), "open".into())),
            "{ports:?}"
        );
        assert_eq!(c.json("/api/v1/scans?baseline=other")["count"], 0);
        let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
        let enc = future.replace('+', "%2B");
        assert_eq!(c.json(&format!("/api/v1/scans?from={enc}"))["count"], 0);
        assert_eq!(c.json("/api/v1/scans?from=2020-01-01")["count"], 1);

        // Findings: both kinds, with the banner (as data: JSON is not HTML) and incidents.
        let v = c.json("/api/v1/findings?status=open&baseline=lo");
        assert_eq!(v["count"], 2, "{v:#}");
        let by_kind = |k: &str| {
            v["findings"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["kind"] == k)
                .unwrap_or_else(|| panic!("no {k}: {v:#}"))
                .clone()
        };
        let u = by_kind("unexpected_open");
        assert_eq!(u["port"], evil);
        assert_eq!(u["transport"], "tcp");
        assert_eq!(u["severity"], "high");
        assert!(
            u["detail"]["service"]["banner"]
                .as_str()
                .unwrap()
                .starts_with("<script>alert(1)</script>"),
            "{u:#}"
        );
        assert!(u["incident_id"].is_i64());
        assert_eq!(by_kind("expected_open_closed")["port"], gone);
        assert_eq!(c.json("/api/v1/findings?status=resolved")["count"], 0);

        // Baselines: the configuration and the schedule.
        let v = c.json("/api/v1/baselines");
        assert_eq!(v["count"], 1);
        assert_eq!(v["baselines"][0]["name"], "lo");
        assert_eq!(v["baselines"][0]["severity"], "high");
        assert_eq!(v["status"][0]["interval_s"], 3600);
        assert_eq!(v["status"][0]["last_scan"]["id"], id);
        assert!(v["status"][0]["next_scan_in_s"].as_u64().unwrap() <= 3600);

        // Bad parameters: 400 naming the parameter, never a panic or a silent default.
        for (path, param) in [
            ("/api/v1/scans?limit=0", "limit"),
            ("/api/v1/scans?limit=ten", "limit"),
            ("/api/v1/scans?limit=1001", "limit"),
            ("/api/v1/scans?bogus=1", "bogus"),
            ("/api/v1/scans?from=yesterday", "from"),
            ("/api/v1/scans?from=2026-02-01&to=2026-01-01", "from"),
            ("/api/v1/scans/abc", "id"),
            ("/api/v1/findings?status=closed", "status"),
            ("/api/v1/findings?limit=-1", "limit"),
            ("/api/v1/findings?to=13/01/2026", "to"),
            ("/api/v1/findings?baseline=lo&state=open", "state"),
            ("/api/v1/baselines?name=lo", "name"),
            ("/api/v1/reports", "from"),
            ("/api/v1/reports?from=2026-01-01&format=pdf", "format"),
            ("/api/v1/reports?from=2026-13-01", "from"),
            ("/api/v1/reports?from=2026-01-02&to=2026-01-01", "from"),
        ] {
            let r = c.get(path);
            assert_eq!(r.status, 400, "{path}: {}", r.body);
            let e = r.json();
            assert_eq!(e["error"], "bad_parameter", "{path}");
            assert_eq!(e["parameter"], param, "{path}: {e}");
            assert!(e["detail"].as_str().unwrap().contains(param), "{path}: {e}");
        }
        assert_eq!(c.get("/api/v1/scans/999999").status, 404);

        // Reports: each format is a download whose digest header is the SHA-256 of the body.
        let from = (chrono::Utc::now() - chrono::Duration::hours(1)).timestamp();
        let mut bodies = Vec::new();
        for (format, ctype) in [
            ("json", "application/json"),
            ("html", "text/html"),
            ("csv", "text/csv"),
        ] {
            let r = c.get(&format!("/api/v1/reports?from={from}&format={format}"));
            assert_eq!(r.status, 200, "{format}: {}", r.body);
            assert!(r.header("content-type").unwrap().starts_with(ctype));
            let cd = r.header("content-disposition").unwrap();
            assert!(
                cd.starts_with("attachment; filename=\"portwarden-evidence-")
                    && cd.ends_with(&format!(".{format}\"")),
                "{cd}"
            );
            let digest = r.header("x-portwarden-sha256").unwrap().to_string();
            assert_eq!(
                digest,
                portwarden_scan::evidence::sha256_hex(r.body.as_bytes()),
                "{format}: the digest is over the exact body"
            );
            let mut edited = r.body.clone().into_bytes();
            let i = edited.len() / 2;
            edited[i] ^= 0x01;
            assert_ne!(digest, portwarden_scan::evidence::sha256_hex(&edited));
            bodies.push(r.body);
        }
        let json: Value = serde_json::from_str(&bodies[0]).unwrap();
        assert_eq!(json["scans"][0]["id"], id);
        assert_eq!(json["findings"].as_array().unwrap().len(), 2);
        assert_eq!(json["controls"][0]["id"], "PCI-DSS 1.2.1");
        assert_eq!(json["controls"][0]["findings_open_at_end"], 2);
        assert!(
            json["incidents"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["monitor"] == "scan:lo" && i["error_kind"] == "unexpected_open")
        );
        assert!(bodies[1].contains("PCI-DSS 1.2.1") && bodies[1].contains("unexpected_open"));
        assert!(bodies[2].contains(&format!("127.0.0.1:{evil}/tcp")));

        // No answer carries a secret from the config.
        let mut all = bodies.join("\n");
        for path in [
            "/api/v1/scans".to_string(),
            format!("/api/v1/scans/{id}"),
            "/api/v1/findings".into(),
            "/api/v1/baselines".into(),
            "/api/v1/health".into(),
        ] {
            all.push_str(&c.get(&path).body);
        }
        for secret in [
            ROUTING_KEY,
            TEST_TOKEN,
            USER_PASSWORD,
            PG_PASSWORD,
            "$argon2",
        ] {
            assert!(!all.contains(secret), "an answer contains `{secret}`");
        }
    })
    .await
    .unwrap();
    drop(good_l);
    d.stop().await;
}

/// The report uses the `controls:` of the config in force: a reload replaces them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn report_controls_follow_a_reload() {
    let (evil, _evil_task) = evil_service().await;
    let gone = closed_port();
    let yaml = config(evil, gone, gone, "");
    let mut d = TestDaemon::start(&yaml).await;
    let path = "/api/v1/reports?from=2026-01-01&format=json";
    let v: Value = serde_json::from_str(&d.get(path).await.body).unwrap();
    assert_eq!(v["controls"][0]["id"], "PCI-DSS 1.2.1", "{v:#}");
    d.write_config(&yaml.replace("PCI-DSS 1.2.1", "SOC2 CC6.6"));
    assert!(
        d.daemon.as_ref().unwrap().reload().await,
        "the reload applies"
    );
    let v: Value = serde_json::from_str(&d.get(path).await.body).unwrap();
    assert_eq!(v["controls"].as_array().unwrap().len(), 1, "{v:#}");
    assert_eq!(v["controls"][0]["id"], "SOC2 CC6.6");
    d.stop().await;
}

/// More open findings than the page lists (500): it shows the newest 500, says so, and the
/// badge does not claim an exact count; the API has every one. The findings are stored before
/// the daemon starts (as an earlier scan left them); the baseline's next scan is a day away.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_exposure_page_caps_the_open_findings_and_says_so() {
    use portwarden_core::Severity;
    use portwarden_store::{
        NewFinding, Retention, ScanApply, ScanRecord, Store, StoreMetrics, WriterOptions,
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let store = portwarden_store::sqlite::SqliteStore::open(
            &data,
            Retention::default(),
            WriterOptions::default(),
            StoreMetrics::default(),
        )
        .unwrap();
        let now = chrono::Utc::now();
        let opened = (0..520u16)
            .map(|i| NewFinding {
                baseline: "wide".into(),
                kind: "unexpected_open".into(),
                host: "127.0.0.1".into(),
                port: 20_000 + i,
                transport: "tcp".into(),
                severity: Severity::High,
                message: format!(
                    "127.0.0.1:{}/tcp is open but the baseline does not allow it",
                    20_000 + i
                ),
                detail: serde_json::json!({}),
                incident: None,
            })
            .collect();
        store
            .apply_scan(ScanApply {
                scan: ScanRecord {
                    id: 0,
                    baseline: Some("wide".into()),
                    started_at: now,
                    finished_at: now,
                    duration_ms: 1.0,
                    targets: vec!["127.0.0.1".into()],
                    hosts: 1,
                    probes: 520,
                    open_ports: 520,
                    findings_opened: 520,
                    findings_open: 520,
                    findings_resolved: 0,
                    coverage: serde_json::json!({}),
                    error: None,
                    report: None,
                },
                opened,
                seen: vec![],
                gone: vec![],
            })
            .await
            .unwrap();
        store.close().await.unwrap();
    }
    let config = dir.path().join("portwarden.yaml");
    std::fs::write(
        &config,
        "monitors: []\nbaselines:\n  - name: wide\n    targets: [127.0.0.1]\n    ports: 20000-20519\n    interval: 24h\n    allowed_open: []\n",
    )
    .unwrap();
    let mut d = TestDaemon::start_with(dir, config, Some(data)).await;
    let c = d.client();
    let (page, api) = tokio::task::spawn_blocking(move || {
        (
            c.get("/exposure"),
            c.json("/api/v1/findings?status=open&limit=10000"),
        )
    })
    .await
    .unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("500+ open finding(s)"), "{}", page.body);
    assert!(
        page.body
            .contains("Only the newest 500 open findings are shown"),
        "{}",
        page.body
    );
    let rows = page.body.matches("<tr class=\"s-down\">").count();
    assert_eq!(rows, 500, "rows listed");
    let all = api["items"]
        .as_array()
        .or(api["findings"].as_array())
        .map(|a| a.len());
    assert_eq!(all, Some(520), "the API lists every open finding: {api:#}");
    d.stop().await;
}
