//! TLS probes with certificates minted at test time (rcgen).

mod common;

use std::time::Duration;

use common::*;
use portwarden_core::{ErrorKind, Outcome, TlsFailure};
use portwarden_testkit::certs::{TestCa, tls_server};
use serde_json::json;

struct Fixture {
    ca: TestCa,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            ca: TestCa::new(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn ca_file(&self) -> String {
        self.ca.write(self.dir.path()).display().to_string()
    }

    async fn serve(&self, names: &[&str], from_days: i64, to_days: i64) -> u16 {
        tls_server(&self.ca.leaf(names, from_days, to_days), None).await
    }
}

const T: Duration = Duration::from_secs(3);

#[tokio::test]
async fn valid_certificate_is_up_with_days_left() {
    let f = Fixture::new();
    let port = f.serve(&["localhost", "127.0.0.1"], -1, 90).await;
    let o = probe1(
        &format!("tls://127.0.0.1:{port}"),
        check(json!({"tls": {"ca_file": f.ca_file()}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    let days = o.details["cert_days_left"].as_i64().unwrap();
    assert!((88..=90).contains(&days), "{days}");
    assert!(o.phases.tls_ms.is_some() && o.phases.connect_ms.is_some());
    assert!(
        o.details["cert_sans"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "localhost")
    );
    assert!(
        o.details["cert_issuer"]
            .as_str()
            .unwrap()
            .contains("Portwarden Test CA")
    );
    // By name, with SNI.
    let all = probe(
        &format!("tls://localhost:{port}"),
        check(json!({"tls": {"ca_file": f.ca_file()}})),
        T,
    )
    .await;
    let v4 = all
        .iter()
        .find(|o| o.address.is_some_and(|a| a.is_ipv4()))
        .expect("an IPv4 result");
    assert_eq!(v4.outcome, Outcome::Up, "{v4:?}");
}

#[tokio::test]
async fn expired_certificate_is_down() {
    let f = Fixture::new();
    let port = f.serve(&["127.0.0.1"], -30, -3).await;
    let o = probe1(
        &format!("tls://127.0.0.1:{port}"),
        check(json!({"tls": {"ca_file": f.ca_file()}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Down);
    assert_eq!(
        o.error_kind(),
        Some(ErrorKind::Tls(TlsFailure::Expired)),
        "{o:?}"
    );
    assert!(
        o.details["cert_days_left"].as_i64().unwrap() < 0,
        "details still reported"
    );
}

#[tokio::test]
async fn wrong_name_is_name_mismatch() {
    let f = Fixture::new();
    let port = f.serve(&["other.example"], -1, 90).await;
    let o = probe1(
        &format!("tls://127.0.0.1:{port}"),
        check(json!({"tls": {"ca_file": f.ca_file()}})),
        T,
    )
    .await;
    assert_eq!(
        o.error_kind(),
        Some(ErrorKind::Tls(TlsFailure::NameMismatch)),
        "{o:?}"
    );
    // With the right server_name it is fine.
    let o = probe1(
        &format!("tls://127.0.0.1:{port}"),
        check(json!({"tls": {"ca_file": f.ca_file(), "server_name": "other.example"}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
}

#[tokio::test]
async fn close_to_expiry_is_degraded() {
    let f = Fixture::new();
    let port = f.serve(&["127.0.0.1"], -80, 10).await;
    let o = probe1(
        &format!("tls://127.0.0.1:{port}"),
        check(json!({"tls": {"ca_file": f.ca_file()}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Degraded, "{o:?}");
    assert!(o.note.as_deref().unwrap().contains("expires in"), "{o:?}");
    let o = probe1(
        &format!("tls://127.0.0.1:{port}"),
        check(json!({"tls": {"ca_file": f.ca_file(), "expiry_warn_days": 5}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
}

#[tokio::test]
async fn untrusted_and_insecure() {
    let f = Fixture::new();
    let port = f.serve(&["127.0.0.1"], -1, 10).await;
    let target = format!("tls://127.0.0.1:{port}");
    let o = probe1(&target, check(json!({"tls": {}})), T).await;
    assert_eq!(
        o.error_kind(),
        Some(ErrorKind::Tls(TlsFailure::Untrusted)),
        "{o:?}"
    );
    // Skipping verification still judges expiry.
    let o = probe1(
        &target,
        check(json!({"tls": {"insecure_skip_verify": true}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Degraded, "{o:?}");
}

#[tokio::test]
async fn not_tls_is_a_handshake_failure() {
    let port = portwarden_testkit::hostile::greeter(b"220 plain text here\r\n").await;
    let o = probe1(
        &format!("tls://127.0.0.1:{port}"),
        check(json!({"tls": {}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Down);
    assert_eq!(
        o.error_kind(),
        Some(ErrorKind::Tls(TlsFailure::Handshake)),
        "{o:?}"
    );
}

#[tokio::test]
async fn conversation_over_tls() {
    let f = Fixture::new();
    let leaf = f.ca.leaf(&["127.0.0.1"], -1, 90);
    let port = tls_server(&leaf, Some(b"* OK hello\r\n")).await;
    let o = probe1(
        &format!("tls://127.0.0.1:{port}"),
        check(json!({"send_expect": {"transport": "tls", "tls": {"ca_file": f.ca_file()}, "steps": [{"expect": "* OK"}]}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
}
