//! Mail and file-transfer probes (smtp, imap, pop3, ftp) against real servers started here on
//! free ports: aiosmtpd (SMTP, STARTTLS and SMTPS), Dovecot (IMAP/POP3), vsftpd (FTP, AUTH
//! TLS), with certificates minted per test. A few server behaviours no real server shows on
//! demand (a 554 or 421 greeting) come from tiny scripted listeners, marked as such.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use portwarden_core::{ErrorKind, Outcome, TlsFailure};
use portwarden_testkit as tk;
use portwarden_testkit::certs::TestCa;
use portwarden_testkit::process::Server;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: Duration = Duration::from_secs(5);

/// A CA, a leaf for 127.0.0.1/localhost, and their files.
struct Certs {
    dir: tempfile::TempDir,
    ca: String,
    cert: String,
    key: String,
}

fn certs() -> Certs {
    let ca = TestCa::new();
    let leaf = ca.leaf(&["localhost", "127.0.0.1"], -1, 90);
    let dir = tempfile::tempdir().unwrap();
    let ca_path = ca.write(dir.path()).display().to_string();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    Certs {
        ca: ca_path,
        cert: cert.display().to_string(),
        key: key.display().to_string(),
        dir,
    }
}

fn have_aiosmtpd() -> bool {
    tk::need(
        Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success()),
        "python3 with aiosmtpd (pip install aiosmtpd)",
    )
}

fn aiosmtpd(extra: &[&str]) -> Server {
    let port = tk::free_port();
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")]);
    cmd.args(extra);
    Server::spawn_tcp("aiosmtpd", cmd, port, Duration::from_secs(15)).unwrap()
}

#[tokio::test]
async fn smtp_starttls_with_certificate_checks() {
    if !have_aiosmtpd() {
        return;
    }
    let c = certs();
    let mut srv = aiosmtpd(&["--tlscert", &c.cert, "--tlskey", &c.key]);
    let target = format!("smtp://127.0.0.1:{}", srv.port);
    let o = probe1(
        &target,
        check(json!({"smtp": {"tls": {"ca_file": c.ca}}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert_eq!(o.details["greeting_code"], 220);
    assert!(
        o.details["banner"]
            .as_str()
            .unwrap()
            .contains("Python SMTP"),
        "{o:?}"
    );
    assert_eq!(o.details["starttls"], true);
    assert!(
        o.details["extensions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "STARTTLS")
    );
    assert!(o.details["cert_days_left"].as_i64().is_some());
    assert!(o.phases.tls_ms.is_some());
    // Same certificate checks as the tls probe: an unknown CA is untrusted.
    let o = probe1(&target, check(json!({"smtp": {}})), T).await;
    assert_eq!(o.outcome, Outcome::Down);
    assert_eq!(
        o.error_kind(),
        Some(ErrorKind::Tls(TlsFailure::Untrusted)),
        "{o:?}"
    );
    // Plain only, on request.
    let o = probe1(&target, check(json!({"smtp": {"security": "none"}})), T).await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert_eq!(o.details["starttls"], false);
    // Killed: refused.
    srv.kill();
    let o = probe1(&target, check(json!({"smtp": {}})), T).await;
    assert_eq!(o.error_kind(), Some(ErrorKind::Refused), "{o:?}");
}

#[tokio::test]
async fn smtp_required_starttls_missing_is_protocol() {
    if !have_aiosmtpd() {
        return;
    }
    let srv = aiosmtpd(&[]);
    let target = format!("smtp://127.0.0.1:{}", srv.port);
    let o = probe1(&target, check(json!({"smtp": {}})), T).await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert_eq!(o.details["starttls"], false);
    let o = probe1(&target, check(json!({"smtp": {"security": "starttls"}})), T).await;
    assert_eq!(o.outcome, Outcome::Down);
    assert_eq!(o.error_kind(), Some(ErrorKind::Protocol), "{o:?}");
    assert!(o.message().unwrap().contains("STARTTLS"));
}

#[tokio::test]
async fn smtps_implicit_tls() {
    if !have_aiosmtpd() {
        return;
    }
    let c = certs();
    let srv = aiosmtpd(&["--smtpscert", &c.cert, "--smtpskey", &c.key]);
    let o = probe1(
        &format!("smtp://127.0.0.1:{}", srv.port),
        check(json!({"smtp": {"security": "implicit", "tls": {"ca_file": c.ca}}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert_eq!(o.details["tls_mode"], "implicit");
    assert_eq!(o.details["greeting_code"], 220);
    let _ = &c.dir;
}

/// A scripted listener (not a real MTA): sends `greeting` and waits. Real servers send 554 or
/// 421 only under conditions a test cannot stage cheaply (blocklisted client, overload).
async fn scripted(greeting: &'static [u8]) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(greeting).await;
                let mut b = [0u8; 512];
                while let Ok(n) = s.read(&mut b).await {
                    if n == 0 {
                        break;
                    }
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn error_greetings_are_unhealthy() {
    for (kind, greeting) in [
        (
            "smtp",
            &b"554 5.3.2 mx.example no SMTP service here\r\n"[..],
        ),
        ("smtp", &b"421 4.3.2 too busy, try later\r\n"[..]),
        ("ftp", &b"421 Too many users\r\n"[..]),
        ("pop3", &b"-ERR [SYS/TEMP] maintenance\r\n"[..]),
        ("imap", &b"* BYE Too many connections\r\n"[..]),
    ] {
        let port = scripted(greeting).await;
        let o = probe1(
            &format!("{kind}://127.0.0.1:{port}"),
            check(json!({ kind: {} })),
            T,
        )
        .await;
        assert_eq!(o.outcome, Outcome::Down, "{kind}: {o:?}");
        assert_eq!(o.error_kind(), Some(ErrorKind::Unhealthy), "{kind}: {o:?}");
    }
}

#[tokio::test]
async fn starttls_injection_is_refused() {
    // Scripted: a server that answers STARTTLS and pipelines extra plaintext after it.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(b"220 x ESMTP\r\n").await;
                let mut b = [0u8; 512];
                let mut seen = Vec::new();
                while let Ok(n) = s.read(&mut b).await {
                    if n == 0 {
                        break;
                    }
                    seen.extend_from_slice(&b[..n]);
                    if seen.ends_with(b"EHLO portwarden.invalid\r\n") {
                        let _ = s.write_all(b"250-x\r\n250 STARTTLS\r\n").await;
                    }
                    if seen.ends_with(b"STARTTLS\r\n") {
                        let _ = s.write_all(b"220 go\r\n250 injected\r\n").await;
                    }
                }
            });
        }
    });
    let o = probe1(
        &format!("smtp://127.0.0.1:{port}"),
        check(json!({"smtp": {}})),
        T,
    )
    .await;
    assert_eq!(o.error_kind(), Some(ErrorKind::Protocol), "{o:?}");
    assert!(
        o.message().unwrap().contains("before the TLS handshake"),
        "{o:?}"
    );
}

/// uid and gid of a system user (from `id`).
fn owner_of(user: &str) -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").arg(flag).arg(user).output().ok()?;
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    let r = id("-u").zip(id("-g"));
    tk::need(
        r.is_some(),
        &format!("system user `{user}` (created by the dovecot package)"),
    );
    r
}

/// Dovecot (IMAP + POP3, plain ports with STARTTLS/STLS and implicit-TLS ports).
struct Dovecot {
    server: Server,
    imap: u16,
    imaps: u16,
    pop3: u16,
    pop3s: u16,
}

fn dovecot(c: &Certs) -> Option<Dovecot> {
    let bin = tk::need_binary("dovecot")?;
    if !tk::need(tk::is_root(), "root (dovecot)") {
        return None;
    }
    use std::os::unix::fs::PermissionsExt;
    let d = c.dir.path().join("dovecot");
    std::fs::create_dir_all(d.join("home")).unwrap();
    // Mail processes run as the `dovecot` user: let it reach and own the home directory.
    for p in [c.dir.path(), d.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let (uid, gid) = owner_of("dovecot")?;
    std::os::unix::fs::chown(d.join("home"), Some(uid), Some(gid)).unwrap();
    let (imap, imaps, pop3, pop3s) = (
        tk::free_port(),
        tk::free_port(),
        tk::free_port(),
        tk::free_port(),
    );
    let conf = format!(
        r#"base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
default_internal_user = dovecot
default_login_user = dovenull
passdb {{
  driver = static
  args = password=pw
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={d}/home
}}
mail_location = maildir:~/Maildir
service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = {imaps}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = {pop3s}
    ssl = yes
  }}
}}
"#,
        d = d.display(),
        cert = c.cert,
        key = c.key,
    );
    let cfg = d.join("dovecot.conf");
    std::fs::write(&cfg, conf).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-F").arg("-c").arg(&cfg);
    let server = Server::spawn_tcp("dovecot", cmd, imap, Duration::from_secs(15)).unwrap();
    for p in [imaps, pop3, pop3s] {
        assert!(
            tk::wait_for_port(p, Duration::from_secs(10)),
            "dovecot port {p}"
        );
    }
    Some(Dovecot {
        server,
        imap,
        imaps,
        pop3,
        pop3s,
    })
}

#[tokio::test]
async fn imap_and_pop3_against_dovecot() {
    let c = certs();
    let Some(mut d) = dovecot(&c) else { return };
    let tls = json!({"ca_file": c.ca});
    // IMAP with STARTTLS.
    let o = probe1(
        &format!("imap://127.0.0.1:{}", d.imap),
        check(json!({"imap": {"tls": tls}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert_eq!(o.details["starttls"], true);
    assert!(
        o.details["banner"].as_str().unwrap().contains("Dovecot"),
        "{o:?}"
    );
    assert!(
        o.details["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "IMAP4REV1"),
        "{o:?}"
    );
    assert!(o.details["cert_days_left"].as_i64().is_some());
    // IMAPS.
    let o = probe1(
        &format!("imap://127.0.0.1:{}", d.imaps),
        check(json!({"imap": {"security": "implicit", "tls": tls}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert_eq!(o.details["tls_mode"], "implicit");
    // POP3 with STLS, then POP3S.
    let o = probe1(
        &format!("pop3://127.0.0.1:{}", d.pop3),
        check(json!({"pop3": {"security": "starttls", "tls": tls}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert_eq!(o.details["starttls"], true);
    assert!(
        o.details["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "STLS"),
        "{o:?}"
    );
    let o = probe1(
        &format!("pop3://127.0.0.1:{}", d.pop3s),
        check(json!({"pop3": {"security": "implicit", "tls": tls}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    // Untrusted certificate: same verdict as the tls check.
    let o = probe1(
        &format!("imap://127.0.0.1:{}", d.imap),
        check(json!({"imap": {}})),
        T,
    )
    .await;
    assert_eq!(
        o.error_kind(),
        Some(ErrorKind::Tls(TlsFailure::Untrusted)),
        "{o:?}"
    );
    d.server.kill();
    // Dovecot's login processes outlive a SIGKILLed master for a moment; wait until they go.
    for p in [d.imap, d.pop3] {
        let start = std::time::Instant::now();
        while tk::tcp_listening(p) && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    for (k, p) in [("imap", d.imap), ("pop3", d.pop3)] {
        let o = probe1(&format!("{k}://127.0.0.1:{p}"), check(json!({ k: {} })), T).await;
        assert_eq!(o.error_kind(), Some(ErrorKind::Refused), "{k}: {o:?}");
    }
}

fn vsftpd(c: &Certs) -> Option<Server> {
    let bin = tk::need_binary("vsftpd")?;
    if !tk::need(tk::is_root(), "root (vsftpd)") {
        return None;
    }
    let d = c.dir.path().join("vsftpd");
    let empty = d.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let port = tk::free_port();
    let conf = format!(
        "listen=YES\nlisten_ipv6=NO\nlisten_address=127.0.0.1\nlisten_port={port}\nbackground=NO\nanonymous_enable=NO\nlocal_enable=YES\nssl_enable=YES\nrsa_cert_file={cert}\nrsa_private_key_file={key}\nsecure_chroot_dir={empty}\nseccomp_sandbox=NO\nftpd_banner=Portwarden test FTP\n",
        cert = c.cert,
        key = c.key,
        empty = empty.display()
    );
    let cfg = d.join("vsftpd.conf");
    std::fs::write(&cfg, conf).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg(&cfg);
    Some(Server::spawn_tcp("vsftpd", cmd, port, Duration::from_secs(10)).unwrap())
}

#[tokio::test]
async fn ftp_auth_tls_against_vsftpd() {
    let c = certs();
    let Some(mut srv) = vsftpd(&c) else { return };
    let target = format!("ftp://127.0.0.1:{}", srv.port);
    let o = probe1(
        &target,
        check(json!({"ftp": {"security": "starttls", "tls": {"ca_file": c.ca}}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert_eq!(o.details["greeting_code"], 220);
    assert_eq!(o.details["banner"], "Portwarden test FTP");
    assert!(
        o.details["features"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "AUTH TLS"),
        "{o:?}"
    );
    assert_eq!(o.details["starttls"], true);
    let o = probe1(&target, check(json!({"ftp": {"security": "none"}})), T).await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    // Deep with an unknown user: vsftpd answers 530 after PASS, over TLS.
    let o = probe1(
        &target,
        check(json!({"ftp": {"tls": {"ca_file": c.ca}, "mode": "deep", "user": "nobody-here", "password": "x"}})),
        T,
    )
    .await;
    assert_eq!(o.error_kind(), Some(ErrorKind::Auth), "{o:?}");
    assert_eq!(
        o.details["starttls"], true,
        "credentials went over TLS: {o:?}"
    );
    srv.kill();
    let o = probe1(&target, check(json!({"ftp": {}})), T).await;
    assert_eq!(o.error_kind(), Some(ErrorKind::Refused), "{o:?}");
}

/// aiosmtpd with AUTH (user `mon`, password `s3cret`), STARTTLS required before AUTH.
const AUTH_SMTPD: &str = r#"
import ssl, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
def auth(server, session, envelope, mechanism, data):
    return AuthResult(success=(data.login == b"mon" and data.password == b"s3cret"), handled=False)
class Handler:
    pass
c = Controller(Handler(), hostname="127.0.0.1", port=port, authenticator=auth,
               auth_require_tls=True, tls_context=ctx, require_starttls=True)
c.start()
while True:
    time.sleep(3600)
"#;

#[tokio::test]
async fn smtp_deep_auth_plain_over_starttls() {
    if !have_aiosmtpd() {
        return;
    }
    let c = certs();
    let port = tk::free_port();
    let mut cmd = Command::new("python3");
    cmd.args(["-c", AUTH_SMTPD, &port.to_string(), &c.cert, &c.key]);
    let _srv = Server::spawn_tcp("aiosmtpd-auth", cmd, port, Duration::from_secs(15)).unwrap();
    let target = format!("smtp://127.0.0.1:{port}");
    let tls = json!({"ca_file": c.ca});
    let o = probe1(
        &target,
        check(json!({"smtp": {"tls": tls, "mode": "deep", "user": "mon", "password": "s3cret"}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert_eq!(o.details["authenticated"], true);
    let o = probe1(
        &target,
        check(json!({"smtp": {"tls": tls, "mode": "deep", "user": "mon", "password": "bad"}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Down, "{o:?}");
    assert_eq!(o.error_kind(), Some(ErrorKind::Auth), "{o:?}");
}

#[tokio::test]
async fn deep_credentials_never_go_in_clear_text() {
    // Refused at load time.
    for k in ["smtp", "imap", "pop3", "ftp"] {
        let c =
            check(json!({ k: {"security": "none", "mode": "deep", "user": "u", "password": "p"} }));
        assert!(c.prepare().is_err(), "{k}");
        let c = check(json!({ k: {"user": "u", "password": "p"} }));
        assert!(c.prepare().is_err(), "{k}: credentials without deep");
        let c = check(json!({ k: {"mode": "deep", "user": "u\r\nQUIT", "password": "p"} }));
        assert!(c.prepare().is_err(), "{k}: CRLF in credentials");
    }
    // At run time: a server without STARTTLS never sees the password (aiosmtpd without TLS).
    if !have_aiosmtpd() {
        return;
    }
    let srv = aiosmtpd(&[]);
    let o = probe1(
        &format!("smtp://127.0.0.1:{}", srv.port),
        check(json!({"smtp": {"mode": "deep", "user": "u", "password": "p"}})),
        T,
    )
    .await;
    assert_eq!(o.error_kind(), Some(ErrorKind::Protocol), "{o:?}");
    assert!(o.message().unwrap().contains("clear text"), "{o:?}");
}
