//! The e-mail channel against a real SMTP server: aiosmtpd (PyPI, installed by `.ci/run`) run
//! by `tests/smtp_server.py` with STARTTLS or implicit TLS (a certificate from a per-test CA),
//! AUTH, and a transient-failure mode. The server parses each message with Python's `email`
//! package and writes what it received as JSON.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{assert_every_field, grouped, single};
use portwarden_notify::{Channel, Event};
use portwarden_testkit::certs::TestCa;

const PASSWORD: &str = "smtp-pass-Zq83hd";

struct Smtp {
    child: Child,
    port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
    ca: PathBuf,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn aiosmtpd_available() -> bool {
    Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn start(mode: &str, auth: bool, fail_first: u32) -> Option<Smtp> {
    if !portwarden_testkit::need(
        aiosmtpd_available(),
        "python3 with aiosmtpd (pip install aiosmtpd; .ci/run does)",
    ) {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let leaf = ca.leaf(&["localhost"], -1, 30);
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    let ca_path = ca.write(dir.path());
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let port = portwarden_testkit::free_port();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_server.py");
    let mut cmd = Command::new("python3");
    cmd.args(["-W", "ignore"])
        .arg(script)
        .args(["--port", &port.to_string(), "--mode", mode])
        .arg("--out")
        .arg(&out)
        .arg("--cert")
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .args(["--fail-first", &fail_first.to_string()]);
    if auth {
        cmd.args(["--user", "alerts", "--password", PASSWORD]);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let s = Smtp {
        child,
        port,
        out,
        _dir: dir,
        ca: ca_path,
    };
    assert!(
        portwarden_testkit::wait_for_port(port, Duration::from_secs(15)),
        "the SMTP server did not start"
    );
    Some(s)
}

fn channel(s: &Smtp, tls: &str, password: &str) -> std::sync::Arc<dyn Channel> {
    let yaml = format!(
        "receivers:\n  mail:\n    type: email\n    host: localhost\n    port: {}\n    tls: {tls}\n    username: alerts\n    password: {password}\n    ca_file: {}\n    from: \"Portwarden <pw@example.com>\"\n    to: [oncall@example.com, \"DBA <dba@example.com>\"]\n    timeout: 10s\n",
        s.port,
        s.ca.display()
    );
    common::channels(&yaml).remove("mail").unwrap()
}

fn received(s: &Smtp) -> Vec<serde_json::Value> {
    let mut files: Vec<_> = std::fs::read_dir(&s.out)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect()
}

fn check_message(m: &serde_json::Value, n: &portwarden_notify::Notification) {
    assert_eq!(m["mail_from"], "pw@example.com");
    assert_eq!(
        m["rcpt_tos"],
        serde_json::json!(["oncall@example.com", "dba@example.com"])
    );
    assert_eq!(m["tls"], true);
    assert_eq!(m["authenticated"], true);
    assert_eq!(m["content_type"], "multipart/alternative");
    assert_eq!(m["parts"], serde_json::json!(["text/plain", "text/html"]));
    let h = &m["headers"];
    assert_eq!(h["Subject"], format!("[portwarden] {}", n.headline()));
    assert_eq!(
        h["Message-ID"],
        format!("<{}@portwarden>", n.idempotency_key)
    );
    assert_eq!(
        h["X-Portwarden-Idempotency-Key"],
        n.idempotency_key.as_str()
    );
    let text = m["text"].as_str().unwrap();
    let html = m["html"].as_str().unwrap();
    assert_every_field("email text", text, n);
    assert_every_field("email html", html, n);
    assert!(html.contains("<table"), "{html}");
}

#[tokio::test]
async fn starttls_auth_multipart() {
    let Some(s) = start("starttls", true, 0) else {
        return;
    };
    let ch = channel(&s, "starttls", PASSWORD);
    assert_eq!(ch.destination(), format!("localhost:{}", s.port));
    let t = single(Event::Trigger);
    let d = ch.send(&t).await.unwrap();
    assert_eq!(d.status, Some(250));
    assert!(
        d.detail.as_deref().unwrap_or("").contains("queued as pw1"),
        "{d:?}"
    );
    let r = single(Event::Resolve);
    ch.send(&r).await.unwrap();
    let g = grouped(3, Event::Trigger);
    ch.send(&g).await.unwrap();
    let got = received(&s);
    assert_eq!(got.len(), 3);
    check_message(&got[0], &t);
    check_message(&got[1], &r);
    check_message(&got[2], &g);
}

#[tokio::test]
async fn implicit_tls() {
    let Some(s) = start("implicit", true, 0) else {
        return;
    };
    let ch = channel(&s, "implicit", PASSWORD);
    let t = single(Event::Trigger);
    ch.send(&t).await.unwrap();
    let got = received(&s);
    assert_eq!(got.len(), 1);
    check_message(&got[0], &t);
}

#[tokio::test]
async fn transient_and_permanent_failures() {
    let Some(s) = start("starttls", true, 1) else {
        return;
    };
    let ch = channel(&s, "starttls", PASSWORD);
    let t = single(Event::Trigger);
    let e = ch.send(&t).await.unwrap_err();
    assert!(e.retryable && e.status == Some(451), "{e:?}");
    ch.send(&t).await.unwrap();
    assert_eq!(received(&s).len(), 1);

    let bad = channel(&s, "starttls", "wrong-password-8812");
    let e = bad.send(&t).await.unwrap_err();
    assert!(!e.retryable && e.status == Some(535), "{e:?}");
    assert!(!e.message.contains("wrong-password-8812"), "{e}");

    // Implicit TLS against a STARTTLS server: a TLS failure, reported, retryable.
    let wrong = channel(&s, "implicit", PASSWORD);
    let e = wrong.send(&t).await.unwrap_err();
    assert!(
        e.retryable && e.message.contains(&format!("localhost:{}", s.port)),
        "{e:?}"
    );
}

#[tokio::test]
async fn untrusted_certificates_are_refused() {
    let Some(s) = start("starttls", true, 0) else {
        return;
    };
    // No ca_file: the per-test CA is not trusted.
    let yaml = format!(
        "receivers:\n  mail:\n    type: email\n    host: localhost\n    port: {}\n    username: alerts\n    password: {PASSWORD}\n    from: pw@example.com\n    to: [oncall@example.com]\n",
        s.port
    );
    let ch = common::channels(&yaml).remove("mail").unwrap();
    let e = ch.send(&single(Event::Trigger)).await.unwrap_err();
    assert!(
        e.message.to_lowercase().contains("certificate") || e.message.contains("tls"),
        "{e}"
    );
    assert!(received(&s).is_empty());
}
