//! HTTPS for the listener (`server.tls: {cert, key}`): rustls with the ring provider. TLS
//! handshakes run in their own tasks (with a timeout), so a slow or silent client never holds
//! up the accept loop.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client has to finish the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Loads `server.tls` into a server config (HTTP/1.1 over ALPN): the certificate chain and
/// key, and with `client_ca` a verifier of client certificates (required at the handshake
/// for `client_auth: all`; otherwise verified when presented, and the agent routes check
/// that one was, for `client_auth: agents`).
pub fn server_config(t: &portwarden_config::TlsFiles) -> Result<Arc<ServerConfig>, String> {
    let (cert, key) = (t.cert.as_path(), t.key.as_path());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read the certificate `{}`: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad PEM in `{}`: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "no certificate in `{}`; give a PEM file with `-----BEGIN CERTIFICATE-----`",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!(
            "cannot read a private key from `{}`: {e}; give a PEM PKCS#8, PKCS#1 or SEC1 key",
            key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let builder = match &t.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            builder.with_client_cert_verifier(client_verifier(ca, t.client_auth, provider)?)
        }
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("the certificate and key do not fit together: {e}"))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Verifies client certificates against the CA file `ca`.
fn client_verifier(
    ca: &Path,
    auth: portwarden_config::ClientAuth,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
        .map_err(|e| format!("cannot read the client CA `{}`: {e}", ca.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad PEM in the client CA `{}`: {e}", ca.display()))?;
    for c in certs {
        roots
            .add(c)
            .map_err(|e| format!("unusable CA certificate in `{}`: {e}", ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!(
            "no certificate in the client CA `{}`; give a PEM file with `-----BEGIN CERTIFICATE-----`",
            ca.display()
        ));
    }
    let b = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let b = match auth {
        portwarden_config::ClientAuth::All => b,
        portwarden_config::ClientAuth::Agents | portwarden_config::ClientAuth::Optional => {
            b.allow_unauthenticated()
        }
    };
    b.build()
        .map_err(|e| format!("client CA `{}`: {e}", ca.display()))
}

/// A listener that yields finished TLS connections.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    _task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(listener: TcpListener, cfg: Arc<ServerConfig>) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(128);
        let acceptor = TlsAcceptor::from(cfg);
        let task = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            rx,
            local,
            _task: task,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self._task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept task never ends on its own; if it did, wait forever (shutdown comes
            // through the graceful signal).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// The client's address, for both listeners (plain and TLS), and the client certificate the
/// handshake verified (against `server.tls.client_ca`), if one was presented. Its names are
/// read only where they matter ([`CertNames::of`], for `bind_agent_names`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr, pub Option<Arc<CertificateDer<'static>>>);

/// Who a verified client certificate names: its DNS subject alternative names, else (only
/// when it has none) its subject common names. Empty when it cannot be parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertNames(pub Vec<String>);

impl CertNames {
    pub fn of(der: &[u8]) -> CertNames {
        use x509_parser::prelude::*;
        let Ok((_, cert)) = X509Certificate::from_der(der) else {
            return CertNames::default();
        };
        let mut names: Vec<String> = Vec::new();
        if let Ok(Some(ext)) = cert.subject_alternative_name() {
            for n in &ext.value.general_names {
                if let GeneralName::DNSName(d) = n {
                    names.push(d.to_string());
                }
            }
        }
        if names.is_empty() {
            names.extend(
                cert.subject()
                    .iter_common_name()
                    .filter_map(|a| a.as_str().ok())
                    .map(str::to_string),
            );
        }
        CertNames(names)
    }

    /// Whether the certificate names `agent` (ASCII case-insensitively, as DNS names are).
    pub fn names(&self, agent: &str) -> bool {
        self.0.iter().any(|n| n.eq_ignore_ascii_case(agent))
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TcpListener>>
    for ClientAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TcpListener>) -> Self {
        ClientAddr(*stream.remote_addr(), None)
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for ClientAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        // Only a verified certificate gets this far (a bad one fails the handshake).
        let cert = stream
            .io()
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| Arc::new(leaf.clone().into_owned()));
        ClientAddr(*stream.remote_addr(), cert)
    }
}
