//! `portwarden notify test` against a real HTTP receiver on loopback (a plain TCP listener in
//! the test that speaks just enough HTTP/1.1), and `portwarden validate` on receiver problems.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::mpsc;

fn portwarden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portwarden"))
        .args(args)
        .env("PORTWARDEN_LOG", "trace")
        .output()
        .expect("run portwarden")
}

struct Request {
    head: String,
    body: String,
}

/// Answers one request with `status` and `body`, and hands the request back.
fn receiver(status: &'static str, body: &'static str) -> (u16, mpsc::Receiver<Request>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let Ok((s, _)) = l.accept() else { return };
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut head = String::new();
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
            head.push_str(&line);
        }
        let mut b = vec![0; len];
        let _ = r.read_exact(&mut b);
        let mut s = s;
        let _ = write!(
            s,
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = tx.send(Request {
            head,
            body: String::from_utf8_lossy(&b).into_owned(),
        });
    });
    (port, rx)
}

fn config(dir: &std::path::Path, url: &str) -> String {
    let p = dir.join("c.yaml");
    std::fs::write(
        &p,
        format!(
            "receivers:\n  hook:\n    type: webhook\n    url: \"{url}\"\n    secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n  slack:\n    type: slack\n    url: \"{url}\"\n"
        ),
    )
    .unwrap();
    p.display().to_string()
}

#[test]
fn notify_test_sends_a_sample_through_the_real_channel() {
    let dir = tempfile::tempdir().unwrap();
    let (port, rx) = receiver("200 OK", "ok");
    let cfg = config(
        dir.path(),
        &format!("http://127.0.0.1:{port}/hook/tok3n-s3cret"),
    );
    let o = portwarden(&["notify", "test", "--config", &cfg, "--receiver", "hook"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out.starts_with(&format!(
            "receiver `hook` (webhook → 127.0.0.1:{port}): delivered (status 200, "
        )),
        "{out}"
    );
    let req = rx.recv().unwrap();
    assert!(
        req.head.starts_with("POST /hook/tok3n-s3cret HTTP/1.1"),
        "{}",
        req.head
    );
    let lower = req.head.to_ascii_lowercase();
    assert!(
        lower.contains("idempotency-key: pw-test-") && lower.contains("webhook-signature: v1,"),
        "{}",
        req.head
    );
    let n: serde_json::Value = serde_json::from_str(&req.body).unwrap();
    assert_eq!(n["event"], "test");
    assert_eq!(n["items"][0]["monitor"], "orders-db-primary");
    assert!(!String::from_utf8_lossy(&o.stderr).contains("tok3n-s3cret"));
}

#[test]
fn notify_test_reports_failures_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let (port, _rx) = receiver("403 Forbidden", "invalid_token tok3n-s3cret");
    let cfg = config(
        dir.path(),
        &format!("http://127.0.0.1:{port}/services/tok3n-s3cret"),
    );
    let o = portwarden(&[
        "notify",
        "test",
        "--config",
        &cfg,
        "--receiver",
        "slack",
        "--event",
        "trigger",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("receiver `slack` (slack → 127.0.0.1:{port}): failed (permanent; fix the receiver): slack to 127.0.0.1:{port}: HTTP 403 Forbidden: invalid_token ***")),
        "{err}"
    );
    assert!(
        !err.contains("tok3n-s3cret")
            && !String::from_utf8_lossy(&o.stdout).contains("tok3n-s3cret"),
        "{err}"
    );

    // Nobody listening: retryable.
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = config(dir.path(), &format!("http://127.0.0.1:{dead}/x"));
    let o = portwarden(&["notify", "test", "--config", &cfg, "--receiver", "hook"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("failed (retryable") && err.contains("cannot connect"),
        "{err}"
    );

    // Unknown receiver: the known ones are listed.
    let o = portwarden(&["notify", "test", "--config", &cfg, "--receiver", "hokk"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("no receiver `hokk`; the config defines: hook, slack")
    );
}

#[test]
fn validate_builds_the_channels() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.yaml");
    std::fs::write(
        &p,
        "receivers:\n  hook:\n    type: webhook\n    url: http://127.0.0.1:1/x\n    body_template: \"{{ event \"\n  mail:\n    type: email\n    host: localhost\n    from: not-an-address\n    to: [a@example.com]\n",
    )
    .unwrap();
    let o = portwarden(&["validate", "--config", p.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("c.yaml:2: receiver `hook`: template `body`"),
        "{err}"
    );
    assert!(
        err.contains("c.yaml:6: receiver `mail`: `from` address `not-an-address`"),
        "{err}"
    );
    assert!(err.contains("2 receiver errors found"), "{err}");
}
