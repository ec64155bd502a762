//! Authentication and authorization of the UI and the API: every non-public route refuses
//! anonymous requests, viewers cannot change anything, forms need their CSRF token, sessions
//! expire and can be revoked, logins are rate limited, the first start creates `admin` with a
//! random password, responses carry the security headers.

mod common;

use std::time::Duration;

use common::*;
use portwarden_testkit as tk;
use tk::http::Client;

const VIEWER: &str = "pw-viewer-token-1234567890";
const EDITOR: &str = "pw-editor-token-1234567890";

fn monitor(port: u16) -> String {
    format!(
        "monitors:\n  - name: web\n    target: tcp://127.0.0.1:{port}\n    interval: 1s\n    timeout: 500ms\n"
    )
}

fn listener() -> (std::net::TcpListener, u16) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

/// Fills `{name}` / `{id}` in a documented route.
fn concrete(route: &str) -> String {
    route.replace("{name}", "web").replace("{id}", "1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn anonymous_requests_get_401_or_the_login_page() {
    let (_l, port) = listener();
    let yaml = monitor(port) + &auth_with(&[("alice", "alice-password-1", "editor")], &[]);
    let mut d = TestDaemon::start(&yaml).await;
    let anon = d.anonymous();
    let c = tokio::task::spawn_blocking(move || {
        let public = [
            "/status",
            "/status.json",
            "/status/feed.atom",
            "/api/v1/health",
            "/login",
            "/assets/app.css",
            "/metrics",
        ];
        for p in public {
            let r = anon.get(p);
            assert_eq!(r.status, 200, "{p} is public: {}", r.body);
        }
        // Every documented API route, with every method it has, refuses without credentials.
        for route in portwarden_server::api::documented_paths() {
            let path = concrete(&route);
            if public.contains(&path.as_str()) {
                continue;
            }
            if path.starts_with("/ack/") {
                // Signed acknowledge links need no login: the HMAC is the credential, and a
                // forged one is refused.
                for method in ["GET", "POST"] {
                    let r = anon.request(method, &path, &[], b"").unwrap();
                    assert_eq!(r.status, 403, "{method} {path}: {}", r.body);
                }
                continue;
            }
            for (method, r) in [
                ("GET", anon.request("GET", &path, &[], b"").unwrap()),
                ("POST", anon.request("POST", &path, &[], b"").unwrap()),
            ] {
                if r.status == 405 {
                    continue;
                }
                assert_eq!(
                    r.status, 401,
                    "{method} {path} without credentials: {}",
                    r.body
                );
                assert_eq!(r.json()["error"], "unauthorized");
                assert!(r.header("www-authenticate").is_some());
            }
        }
        // UI pages redirect to the login form (keeping where to go back to).
        for path in [
            "/",
            "/monitors/web",
            "/incidents",
            "/incidents/1",
            "/sessions",
            "/exposure",
            "/silences",
            "/?q=x",
        ] {
            let r = anon.get(path);
            assert_eq!(r.status, 303, "GET {path}: {}", r.body);
            let loc = r.header("location").unwrap();
            assert!(loc.starts_with("/login?next=/"), "{path} → {loc}");
        }
        for path in [
            "/monitors/web/check",
            "/incidents/1/ack",
            "/exposure/lo/scan",
            "/sessions/revoke",
            "/silences",
            "/silences/1/end",
            "/logout",
        ] {
            let r = anon.post_form(path, &[("csrf", "x")]);
            assert_eq!(r.status, 303, "POST {path}: {}", r.body);
        }
        // A wrong token is 401, not a redirect.
        let r = Client::bearer(anon.addr, "not-a-real-token-at-all").get("/api/v1/monitors");
        assert_eq!(r.status, 401);
        anon
    })
    .await
    .unwrap();
    drop(c);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_can_require_a_token() {
    let yaml = format!(
        "monitors: []\n{}  metrics: token\n",
        auth_with(&[], &[("prom", VIEWER, "viewer")])
    );
    let mut d = TestDaemon::start(&yaml).await;
    let addr = d.addr;
    tokio::task::spawn_blocking(move || {
        assert_eq!(Client::new(addr).get("/metrics").status, 401);
        assert_eq!(Client::bearer(addr, VIEWER).get("/metrics").status, 200);
        assert_eq!(Client::new(addr).get("/api/v1/health").status, 200);
    })
    .await
    .unwrap();
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn viewers_cannot_change_anything() {
    let (_l, port) = listener();
    let yaml = monitor(port)
        + &auth_with(
            &[("vera", "vera-password-1", "viewer")],
            &[("viewer", VIEWER, "viewer"), ("editor", EDITOR, "editor")],
        );
    let mut d = TestDaemon::start(&yaml).await;
    // An incident to acknowledge: none exists yet, so use a non-existent id; the role check
    // comes before the handler.
    let addr = d.addr;
    tokio::task::spawn_blocking(move || {
        let viewer = Client::bearer(addr, VIEWER);
        assert_eq!(viewer.get("/api/v1/monitors").status, 200, "viewers read");
        assert_eq!(viewer.get("/").status, 200, "viewers see the UI");
        for path in [
            "/api/v1/monitors/web/check",
            "/api/v1/incidents/1/ack",
            "/monitors/web/check",
            "/incidents/1/ack",
            "/api/v1/baselines/lo/scan",
            "/exposure/lo/scan",
            "/api/v1/silences",
            "/silences",
            "/silences/1/end",
        ] {
            let r = viewer.post(path, "");
            assert_eq!(r.status, 403, "viewer POST {path}: {}", r.body);
        }
        assert_eq!(
            viewer.get("/sessions").status,
            403,
            "sessions are for admins"
        );
        let r = viewer.post_form("/sessions/revoke", &[("all", "1")]);
        assert_eq!(r.status, 403);
        // The same through a browser session.
        let (browser, csrf) = login(addr, "vera", "vera-password-1");
        let page = browser.get("/monitors/web");
        assert_eq!(page.status, 200);
        assert!(
            !page.body.contains("Check now"),
            "no change buttons for viewers"
        );
        let r = browser.post_form("/monitors/web/check", &[("csrf", &csrf)]);
        assert_eq!(r.status, 403, "{}", r.body);
        // Editors may.
        let editor = Client::bearer(addr, EDITOR);
        let r = editor.post("/api/v1/monitors/web/check", "");
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(editor.get("/sessions").status, 403);
        assert_eq!(
            editor.post("/api/v1/incidents/999/ack", "").status,
            404,
            "editors reach the handler"
        );
    })
    .await
    .unwrap();
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forms_need_their_csrf_token_and_sessions_can_be_revoked() {
    let (_l, port) = listener();
    let yaml = monitor(port)
        + &auth_with(
            &[
                ("alice", "alice-password-1", "editor"),
                ("root", "root-password-1", "admin"),
            ],
            &[],
        );
    let mut d = TestDaemon::start(&yaml).await;
    let addr = d.addr;
    tokio::task::spawn_blocking(move || {
        // Login itself needs the form's token (login CSRF).
        let r = Client::new(addr).post_form(
            "/login",
            &[("user", "alice"), ("password", "alice-password-1")],
        );
        assert_eq!(r.status, 403, "{}", r.body);
        assert!(r.cookies().iter().all(|(n, _)| n != "pw_session"));

        let (alice, csrf) = login(addr, "alice", "alice-password-1");
        // Without the token: refused, nothing runs.
        let r = alice.post_form("/monitors/web/check", &[]);
        assert_eq!(r.status, 403, "{}", r.body);
        assert!(r.body.contains("CSRF"), "{}", r.body);
        let r = alice.post_form("/monitors/web/check", &[("csrf", "forged-token")]);
        assert_eq!(r.status, 403);
        // Through the API with the cookie: the header works, nothing else.
        assert_eq!(alice.post("/api/v1/monitors/web/check", "").status, 403);
        let r = alice
            .request(
                "POST",
                "/api/v1/monitors/web/check",
                &[("X-CSRF-Token", &csrf)],
                b"",
            )
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        // With the token: it runs and redirects back.
        let r = alice.post_form("/monitors/web/check", &[("csrf", &csrf)]);
        assert_eq!(r.status, 303, "{}", r.body);
        assert_eq!(r.header("location"), Some("/monitors/web?checked=1"));

        // An admin revokes alice's sessions: her cookie stops working at once.
        let (root, root_csrf) = login(addr, "root", "root-password-1");
        let page = root.get("/sessions");
        assert_eq!(page.status, 200);
        assert!(page.body.contains("alice"), "{}", page.body);
        let r = root.post_form(
            "/sessions/revoke",
            &[("csrf", &root_csrf), ("user", "alice")],
        );
        assert_eq!(r.status, 303, "{}", r.body);
        let r = alice.get("/");
        assert_eq!(r.status, 303, "revoked session goes to the login page");
        // Logout revokes the session server-side (the old cookie is dead even if kept).
        let r = root.post_form("/logout", &[("csrf", &root_csrf)]);
        assert_eq!(r.status, 303);
        assert_eq!(root.get("/").status, 303);
        assert_eq!(root.get("/api/v1/monitors").status, 401);
    })
    .await
    .unwrap();
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_expire_when_idle_and_cookies_are_locked_down() {
    let yaml = format!(
        "monitors: []\n{}  session_idle: 2s\n",
        auth_with(&[("alice", "alice-password-1", "viewer")], &[])
    );
    let mut d = TestDaemon::start(&yaml).await;
    let addr = d.addr;
    tokio::task::spawn_blocking(move || {
        let anon = Client::new(addr);
        let form = anon.get("/login");
        let login_cookie = form.set_cookie("pw_login").unwrap().to_string();
        assert!(login_cookie.contains("HttpOnly") && login_cookie.contains("SameSite=Strict"));
        let token = form
            .cookies()
            .into_iter()
            .find(|(n, _)| n == "pw_login")
            .unwrap()
            .1;
        let r = anon
            .clone()
            .with_header("Cookie", &format!("pw_login={token}"))
            .post_form(
                "/login",
                &[
                    ("csrf", &token),
                    ("user", "alice"),
                    ("password", "alice-password-1"),
                ],
            );
        assert_eq!(r.status, 303);
        let sc = r.set_cookie("pw_session").unwrap();
        assert!(sc.contains("HttpOnly"), "{sc}");
        assert!(sc.contains("SameSite=Lax"), "{sc}");
        assert!(sc.contains("Path=/"), "{sc}");
        assert!(!sc.contains("Secure"), "no Secure flag without TLS: {sc}");
        let (alice, _) = login(addr, "alice", "alice-password-1");
        assert_eq!(alice.get("/").status, 200);
        std::thread::sleep(Duration::from_millis(3200));
        assert_eq!(alice.get("/").status, 303, "idle session expired");
    })
    .await
    .unwrap();
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_logins_are_rate_limited() {
    let yaml = format!(
        "monitors: []\n{}  login_attempts: 3\n  login_window: 1m\n",
        auth_with(&[("alice", "alice-password-1", "viewer")], &[])
    );
    let mut d = TestDaemon::start(&yaml).await;
    let addr = d.addr;
    tokio::task::spawn_blocking(move || {
        let attempt = |password: &str| {
            let anon = Client::new(addr);
            let form = anon.get("/login");
            let token = form
                .cookies()
                .into_iter()
                .find(|(n, _)| n == "pw_login")
                .unwrap()
                .1;
            anon.with_header("Cookie", &format!("pw_login={token}"))
                .post_form(
                    "/login",
                    &[("csrf", &token), ("user", "alice"), ("password", password)],
                )
        };
        for _ in 0..3 {
            let r = attempt("wrong");
            assert_eq!(r.status, 401, "{}", r.body);
            assert!(r.body.contains("Wrong user name or password"));
        }
        // Blocked now, even with the right password.
        let r = attempt("alice-password-1");
        assert_eq!(r.status, 429, "{}", r.body);
        assert!(r.header("retry-after").is_some());
    })
    .await
    .unwrap();
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn first_start_creates_admin_with_a_random_password_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portwarden.yaml");
    std::fs::write(&config, "monitors: []\n").unwrap();
    let data = dir.path().join("data");
    let mut d = TestDaemon::start_with(dir, config.clone(), Some(data.clone())).await;
    let file = data.join("admin-password");
    let password = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert!(password.len() >= 20, "long random password");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let addr = d.addr;
    let pw = password.clone();
    tokio::task::spawn_blocking(move || {
        let (admin, _) = login(addr, "admin", &pw);
        assert_eq!(
            admin.get("/sessions").status,
            200,
            "the generated user is admin"
        );
        let page = Client::new(addr).get("/login");
        assert!(
            page.body.contains("admin-password"),
            "the login page says where to look"
        );
    })
    .await
    .unwrap();
    d.stop().await;
    // A second start keeps the same admin and never rewrites the file.
    std::fs::remove_file(&file).unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    let config2 = dir2.path().join("portwarden.yaml");
    std::fs::copy(&config, &config2).unwrap();
    let mut d2 = TestDaemon::start_with(dir2, config2, Some(data.clone())).await;
    assert!(!file.exists(), "no new password file");
    let addr = d2.addr;
    tokio::task::spawn_blocking(move || {
        login(addr, "admin", &password);
    })
    .await
    .unwrap();
    d2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn responses_carry_security_headers_and_pages_have_no_inline_script() {
    let (_l, port) = listener();
    let yaml = monitor(port) + &auth_with(&[("alice", "alice-password-1", "editor")], &[]);
    let mut d = TestDaemon::start(&yaml).await;
    let addr = d.addr;
    tokio::task::spawn_blocking(move || {
        let (alice, _) = login(addr, "alice", "alice-password-1");
        for path in [
            "/",
            "/monitors/web",
            "/incidents",
            "/status",
            "/login",
            "/api/v1/monitors",
        ] {
            let r = if path == "/login" || path == "/status" {
                Client::new(addr).get(path)
            } else {
                alice.get(path)
            };
            assert_eq!(r.status, 200, "{path}");
            let csp = r.header("content-security-policy").unwrap();
            assert!(csp.contains("script-src 'self'"), "{csp}");
            assert!(!csp.contains("unsafe-inline"), "{csp}");
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
            assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
            assert_eq!(r.header("referrer-policy"), Some("same-origin"));
            assert_eq!(r.header("x-frame-options"), Some("DENY"));
            if path != "/status" {
                assert_eq!(r.header("cache-control"), Some("no-store"), "{path}");
            }
            // Every script is an external file of ours.
            for (i, _) in r.body.match_indices("<script") {
                let tag = &r.body[i..i + r.body[i..].find('>').unwrap()];
                assert!(
                    tag.contains("src=\"/assets/"),
                    "{path}: inline script {tag}"
                );
            }
            assert!(!r.body.contains(" onload=") && !r.body.contains(" onclick="));
        }
    })
    .await
    .unwrap();
    d.stop().await;
}
