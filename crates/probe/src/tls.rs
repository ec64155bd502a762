//! TLS client side shared by the `tls` check, `send_expect` over TLS and STARTTLS protocols.
//!
//! The handshake always completes when the peer speaks TLS, even with a bad certificate, so we
//! can report what the certificate says (subject, issuer, SANs, expiry). Trust and name are then
//! checked with rustls' own WebPKI verifier and mapped onto `tls` sub-kinds. Signatures in the
//! handshake are still verified, so the peer proves it holds the certificate's key. No
//! application data is sent over a connection whose certificate failed verification.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use portwarden_core::{ErrorKind, Host, Phase, ProbeError, TlsFailure};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::PrepareError;
use crate::cx::{Failure, RunCx, Verdict};

fn default_warn_days() -> u32 {
    21
}

/// TLS options, shared by every check that speaks TLS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsOptions {
    /// Name sent as SNI and checked against the certificate (default: the target's host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Extra trusted CA certificates (PEM), added to the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM) for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<PathBuf>,
    /// Skip trust and name checks (expiry is still reported and judged).
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Report `degraded` when the certificate expires within this many days.
    #[serde(default = "default_warn_days")]
    pub expiry_warn_days: u32,
    /// ALPN protocols to offer (e.g. `h2`, `http/1.1`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alpn: Vec<String>,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            server_name: None,
            ca_file: None,
            client_cert: None,
            client_key: None,
            insecure_skip_verify: false,
            expiry_warn_days: default_warn_days(),
            alpn: Vec::new(),
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The system's trusted roots, loaded once per process (loading is slow: hundreds of certs).
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut store = RootCertStore::empty();
        let loaded = rustls_native_certs::load_native_certs();
        for e in &loaded.errors {
            tracing::warn!(error = %e, "some system CA certificates could not be loaded");
        }
        let (_ok, bad) = store.add_parsable_certificates(loaded.certs);
        if bad > 0 {
            tracing::debug!(bad, "ignored unparsable system CA certificates");
        }
        store
    })
}

/// TLS options turned into ready-to-use configuration (done once per monitor, not per run).
#[derive(Clone)]
pub struct PreparedTls {
    connector: TlsConnector,
    verifier: Option<Arc<WebPkiServerVerifier>>,
    server_name: Option<String>,
    insecure: bool,
    warn_days: u32,
}

impl PreparedTls {
    pub fn prepare(opts: &TlsOptions) -> Result<PreparedTls, PrepareError> {
        let mut roots = system_roots().clone();
        if let Some(path) = &opts.ca_file {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| {
                    PrepareError::new("ca_file", format!("cannot read `{}`: {e}", path.display()))
                })?
                .collect::<Result<_, _>>()
                .map_err(|e| {
                    PrepareError::new(
                        "ca_file",
                        format!("`{}` is not valid PEM: {e}", path.display()),
                    )
                })?;
            if certs.is_empty() {
                return Err(PrepareError::new(
                    "ca_file",
                    format!("`{}` holds no certificate", path.display()),
                ));
            }
            let (_, bad) = roots.add_parsable_certificates(certs);
            if bad > 0 {
                return Err(PrepareError::new(
                    "ca_file",
                    format!(
                        "`{}`: {bad} certificate(s) could not be parsed",
                        path.display()
                    ),
                ));
            }
        }
        let verifier = if roots.is_empty() {
            None
        } else {
            Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                    .build()
                    .map_err(|e| PrepareError::new("ca_file", e.to_string()))?,
            )
        };
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| PrepareError::new("tls", e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(RecordOnly {
                provider: provider(),
            }));
        let mut config = match (&opts.client_cert, &opts.client_key) {
            (Some(cert), Some(key)) => {
                let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                    .map_err(|e| {
                        PrepareError::new(
                            "client_cert",
                            format!("cannot read `{}`: {e}", cert.display()),
                        )
                    })?
                    .collect::<Result<_, _>>()
                    .map_err(|e| {
                        PrepareError::new(
                            "client_cert",
                            format!("`{}` is not valid PEM: {e}", cert.display()),
                        )
                    })?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    PrepareError::new(
                        "client_key",
                        format!("cannot read a private key from `{}`: {e}", key.display()),
                    )
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| PrepareError::new("client_cert", e.to_string()))?
            }
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => {
                return Err(PrepareError::new(
                    "client_key",
                    "`client_cert` is set but `client_key` is missing",
                ));
            }
            (None, Some(_)) => {
                return Err(PrepareError::new(
                    "client_cert",
                    "`client_key` is set but `client_cert` is missing",
                ));
            }
        };
        config.alpn_protocols = opts.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        config.resumption = rustls::client::Resumption::disabled();
        if let Some(name) = &opts.server_name {
            ServerName::try_from(name.as_str()).map_err(|_| {
                PrepareError::new(
                    "server_name",
                    format!("`{name}` is not a valid DNS name or IP"),
                )
            })?;
        }
        Ok(PreparedTls {
            connector: TlsConnector::from(Arc::new(config)),
            verifier,
            server_name: opts.server_name.clone(),
            insecure: opts.insecure_skip_verify,
            warn_days: opts.expiry_warn_days,
        })
    }

    fn server_name(&self, host: &Host) -> Result<ServerName<'static>, ProbeError> {
        let name = match &self.server_name {
            Some(n) => n.clone(),
            None => host.as_str().into_owned(),
        };
        ServerName::try_from(name.clone()).map_err(|_| {
            ProbeError::new(
                ErrorKind::Tls(TlsFailure::Handshake),
                format!("`{name}` cannot be used as a TLS server name; set `server_name`"),
            )
        })
    }

    /// Performs the handshake over `stream` (timed as the `tls` phase), records certificate
    /// details in the context, and judges trust, name and expiry.
    pub async fn handshake<S>(
        &self,
        cx: &mut RunCx<'_>,
        stream: S,
    ) -> Result<(TlsStream<S>, Verdict), Failure>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let server_name = self.server_name(cx.host)?;
        let addr = cx.addr;
        let connector = self.connector.clone();
        let sn = server_name.clone();
        let tls = cx
            .timed(Phase::Tls, async move {
                connector.connect(sn, stream).await.map_err(|e| {
                    let kind = crate::net::classify_io(&e, Phase::Tls);
                    let kind = match kind {
                        ErrorKind::Reset | ErrorKind::Timeout(_) => kind,
                        _ => ErrorKind::Tls(TlsFailure::Handshake),
                    };
                    ProbeError::new(kind, format!("TLS handshake with {addr} failed: {e}"))
                })
            })
            .await?;
        let verdict = {
            let (_, conn) = tls.get_ref();
            if let Some(v) = conn.protocol_version() {
                cx.detail("tls_version", format!("{v:?}").replace('_', "."));
            }
            if let Some(cs) = conn.negotiated_cipher_suite() {
                cx.detail("tls_cipher", format!("{:?}", cs.suite()));
            }
            if let Some(alpn) = conn.alpn_protocol() {
                cx.detail("alpn", String::from_utf8_lossy(alpn).into_owned());
            }
            let certs = conn.peer_certificates().unwrap_or(&[]);
            self.judge(cx, &server_name, certs)?
        };
        Ok((tls, verdict))
    }

    fn judge(
        &self,
        cx: &mut RunCx<'_>,
        server_name: &ServerName<'static>,
        certs: &[CertificateDer<'static>],
    ) -> Result<Verdict, Failure> {
        let Some(ee) = certs.first() else {
            return Err(Failure::new(
                ErrorKind::Tls(TlsFailure::Handshake),
                "the server sent no certificate",
            ));
        };
        let now = UnixTime::now();
        let days_left = describe_cert(cx, ee, now.as_secs() as i64);
        if !self.insecure {
            let result = match &self.verifier {
                Some(v) => v
                    .verify_server_cert(ee, &certs[1..], server_name, &[], now)
                    .map(|_| ()),
                None => Err(rustls::Error::InvalidCertificate(
                    CertificateError::UnknownIssuer,
                )),
            };
            if let Err(e) = result {
                let sub = match &e {
                    rustls::Error::InvalidCertificate(ce) => match ce {
                        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                            TlsFailure::Expired
                        }
                        CertificateError::NotValidYet
                        | CertificateError::NotValidYetContext { .. } => TlsFailure::NotYetValid,
                        CertificateError::NotValidForName
                        | CertificateError::NotValidForNameContext { .. } => {
                            TlsFailure::NameMismatch
                        }
                        _ => TlsFailure::Untrusted,
                    },
                    _ => TlsFailure::Untrusted,
                };
                let what = match sub {
                    TlsFailure::Expired => {
                        format!("certificate expired {} day(s) ago", -days_left.unwrap_or(0))
                    }
                    TlsFailure::NotYetValid => "certificate is not valid yet".to_string(),
                    TlsFailure::NameMismatch => {
                        format!("certificate is not valid for `{}`", server_name.to_str())
                    }
                    _ => format!("certificate is not trusted: {e}"),
                };
                return Err(Failure::new(ErrorKind::Tls(sub), what));
            }
        }
        match days_left {
            Some(d) if d < 0 => Err(Failure::new(
                ErrorKind::Tls(TlsFailure::Expired),
                format!("certificate expired {} day(s) ago", -d),
            )),
            Some(d) if d < i64::from(self.warn_days) => Ok(Verdict::degraded(format!(
                "certificate expires in {d} day(s) (warning at {} days)",
                self.warn_days
            ))),
            _ => Ok(Verdict::up()),
        }
    }
}

/// Records subject, issuer, SANs, validity and fingerprint of the end-entity certificate.
/// Returns whole days left until notAfter (negative once expired).
fn describe_cert(cx: &mut RunCx<'_>, ee: &CertificateDer<'_>, now_unix: i64) -> Option<i64> {
    use x509_parser::prelude::*;
    let digest = ring::digest::digest(&ring::digest::SHA256, ee.as_ref());
    cx.detail("cert_sha256", hex_lower(digest.as_ref()));
    let (_, cert) = X509Certificate::from_der(ee.as_ref()).ok()?;
    cx.detail("cert_subject", cert.subject().to_string());
    cx.detail("cert_issuer", cert.issuer().to_string());
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for n in &ext.value.general_names {
            match n {
                GeneralName::DNSName(d) => sans.push(json!(d)),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => sans.push(json!(
                        std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string()
                    )),
                    16 => {
                        let mut a = [0u8; 16];
                        a.copy_from_slice(b);
                        sans.push(json!(std::net::Ipv6Addr::from(a).to_string()));
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }
    cx.detail("cert_sans", sans);
    let nb = cert.validity().not_before.timestamp();
    let na = cert.validity().not_after.timestamp();
    if let Some(t) = chrono::DateTime::from_timestamp(nb, 0) {
        cx.detail("cert_not_before", t.to_rfc3339());
    }
    if let Some(t) = chrono::DateTime::from_timestamp(na, 0) {
        cx.detail("cert_not_after", t.to_rfc3339());
    }
    let days = (na - now_unix).div_euclid(86_400);
    cx.detail("cert_days_left", days);
    Some(days)
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Accepts any certificate during the handshake (verification happens right after, so we can
/// report details either way) but still checks handshake signatures properly.
#[derive(Debug)]
struct RecordOnly {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for RecordOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
