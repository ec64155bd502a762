//! The listener over TLS (`server.tls`): HTTPS works with the configured certificate, cookies
//! get `Secure`, responses carry HSTS, and plain HTTP gets no answer.

mod common;

use std::sync::Arc;

use common::*;
use portwarden_testkit as tk;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn https_get(port: u16, ca_pem: &str, path: &str, token: Option<&str>) -> String {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake with the configured certificate");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn https_listener_with_secure_cookies() {
    let dir = tempfile::tempdir().unwrap();
    let ca = tk::certs::TestCa::new();
    let leaf = ca.leaf(&["localhost"], -1, 30);
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    let config = dir.path().join("portwarden.yaml");
    std::fs::write(
        &config,
        format!(
            "server:\n  tls: {{cert: \"{}\", key: \"{}\"}}\nmonitors: []\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let mut d = TestDaemon::start_with(dir, config, None).await;
    let port = d.addr.port();
    let health = https_get(port, &ca.cert_pem, "/api/v1/health", None).await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(
        health
            .to_lowercase()
            .contains("strict-transport-security: max-age="),
        "{health}"
    );
    let login = https_get(port, &ca.cert_pem, "/login", None).await;
    let cookie = login
        .lines()
        .find(|l| l.to_lowercase().starts_with("set-cookie: pw_login="))
        .expect("login cookie");
    assert!(cookie.contains("; Secure"), "{cookie}");
    let api = https_get(port, &ca.cert_pem, "/api/v1/monitors", Some(TEST_TOKEN)).await;
    assert!(api.starts_with("HTTP/1.1 200"), "{api}");
    let anon = https_get(port, &ca.cert_pem, "/api/v1/monitors", None).await;
    assert!(anon.starts_with("HTTP/1.1 401"), "{anon}");
    // Plain HTTP on the TLS port: no HTTP answer.
    let plain = tk::http::request(d.addr, "GET", "/api/v1/health", &[], b"");
    assert!(plain.is_err() || plain.unwrap().status != 200);
    d.stop().await;
}
