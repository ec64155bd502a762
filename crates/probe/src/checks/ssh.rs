//! `ssh`: SSH servers.
//!
//! - Banner: the server's identification `SSH-2.0-OpenSSH_9.2p1 ...` (`banner`, `server_version`,
//!   `proto_version`); SSH-1-only servers are `protocol`.
//! - `KEXINIT`: the server's key-exchange and host-key algorithm lists (`kex_algorithms`,
//!   `host_key_algorithms`).
//! - Key exchange (`key_exchange: true`, the default): a curve25519-sha256 exchange (RFC 8731)
//!   up to the server's `KEX_ECDH_REPLY`, which carries the host key. The exchange hash is
//!   computed and the server's signature over it verified (ed25519, ECDSA P-256/P-384,
//!   RSA-SHA2-256/512 via ring), so the key is really the server's. The OpenSSH-style
//!   fingerprint lands in `host_key_sha256` (`SHA256:...`, as `ssh-keygen -lf` prints it).
//!   We stop before `NEWKEYS`: no session, no login.
//! - `host_key: "SHA256:..."` pins the fingerprint: a different key is `down` with `protocol`
//!   ("host key changed"), the alert for a re-installed or impersonated host.
//!
//! No `russh`: its compile cost is large for what a probe needs; the exchange above is ~150
//! lines over `ring`, which we already ship for TLS.
//!
//! ```yaml
//! - name: bastion
//!   target: ssh://bastion:22
//!   check: {type: ssh, host_key: "SHA256:uH0Zc7b3m0nH7VbF3m8nQ5QX4D7o6tO1pL1rJd2KqZ8"}
//! ```

use futures::future::BoxFuture;
use portwarden_core::{ErrorKind, Transport};
use portwarden_wire::ssh;
use ring::agreement;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::TcpStream;

use super::common::{clean, goodbye, read_msg, send};
use super::{Check, CheckInfo};
use crate::cx::{CheckResult, Failure, RunCx, Verdict};
use crate::{PrepareError, net};

pub static INFO: CheckInfo = CheckInfo {
    name: "ssh",
    transport: Transport::Tcp,
    default_port: Some(22),
    summary: "SSH: banner (version), KEXINIT algorithms, host key fingerprint via curve25519 key exchange; pin with host_key",
    options: &[
        (
            "key_exchange",
            "fetch and verify the host key with a curve25519 key exchange (default true)",
        ),
        (
            "host_key",
            "expected fingerprint `SHA256:<base64>` (as `ssh-keygen -lf` prints); a different key is down (protocol)",
        ),
        (
            "host_key_algorithms",
            "host key types to ask for, in order (default ssh-ed25519, ecdsa-sha2-nistp256, ecdsa-sha2-nistp384, rsa-sha2-512, rsa-sha2-256)",
        ),
    ],
};

const DEFAULT_HOST_KEY_ALGS: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "rsa-sha2-512",
    "rsa-sha2-256",
];
const KEX_ALGS: &[&str] = &["curve25519-sha256", "curve25519-sha256@libssh.org"];

/// `check: {type: ssh, host_key: "SHA256:..."}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshCheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_exchange: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_key_algorithms: Vec<String>,
}

impl SshCheck {
    pub fn prepare(&self) -> Result<PreparedSsh, PrepareError> {
        let pin = match &self.host_key {
            None => None,
            Some(p) => {
                let b64 = p
                    .get(..7)
                    .filter(|h| h.eq_ignore_ascii_case("sha256:"))
                    .map(|_| &p[7..])
                    .ok_or_else(|| {
                        PrepareError::new(
                            "host_key",
                            "write the fingerprint as `SHA256:<base64>` (from `ssh-keygen -lf key.pub`)",
                        )
                    })?
                    .trim_end_matches('=');
                if b64.len() != 43
                    || !b64
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
                {
                    return Err(PrepareError::new(
                        "host_key",
                        "a SHA256 fingerprint is 43 base64 characters after `SHA256:`",
                    ));
                }
                Some(b64.to_string())
            }
        };
        let key_exchange = self.key_exchange.unwrap_or(true);
        if pin.is_some() && !key_exchange {
            return Err(PrepareError::new(
                "key_exchange",
                "`host_key` needs the key exchange; remove `key_exchange: false`",
            ));
        }
        let algs: Vec<String> = if self.host_key_algorithms.is_empty() {
            DEFAULT_HOST_KEY_ALGS
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            for a in &self.host_key_algorithms {
                if !DEFAULT_HOST_KEY_ALGS.contains(&a.as_str()) {
                    return Err(PrepareError::new(
                        "host_key_algorithms",
                        format!(
                            "`{a}` is not supported; choose from {}",
                            DEFAULT_HOST_KEY_ALGS.join(", ")
                        ),
                    ));
                }
            }
            self.host_key_algorithms.clone()
        };
        Ok(PreparedSsh {
            key_exchange,
            pin,
            host_key_algs: algs,
        })
    }
}

pub struct PreparedSsh {
    key_exchange: bool,
    pin: Option<String>,
    host_key_algs: Vec<String>,
}

async fn next_packet(
    cx: &mut RunCx<'_>,
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    what: &str,
) -> Result<Vec<u8>, Failure> {
    let addr = cx.addr;
    for _ in 0..16 {
        let p = read_msg(cx, s, buf, ssh::MAX_PACKET + 8, "SSH", what, |b| {
            Ok(ssh::parse_packet(b)?.map(|(p, n)| (p.to_vec(), n)))
        })
        .await?;
        match p.first().copied() {
            Some(ssh::MSG_IGNORE) | Some(ssh::MSG_DEBUG) => continue,
            Some(ssh::MSG_DISCONNECT) => {
                let (code, desc) = ssh::parse_disconnect(&p).unwrap_or((0, String::new()));
                return Err(Failure::new(
                    ErrorKind::Unhealthy,
                    format!(
                        "{addr} disconnected during the key exchange: reason {code}: {}",
                        clean(&desc)
                    ),
                ));
            }
            None => {
                return Err(Failure::new(
                    ErrorKind::Protocol,
                    format!("{addr} sent an empty SSH packet"),
                ));
            }
            _ => return Ok(p),
        }
    }
    Err(Failure::new(
        ErrorKind::Protocol,
        format!("{addr}: 16 packets without {what}"),
    ))
}

/// A polite `SSH_MSG_DISCONNECT` packet (the server logs "disconnected by application").
fn bye() -> Vec<u8> {
    ssh::packet(&ssh::disconnect("portwarden probe done"))
}

fn proto_fail(addr: std::net::SocketAddr, msg: impl std::fmt::Display) -> Failure {
    Failure::new(ErrorKind::Protocol, format!("{addr}: {msg}"))
}

/// Verifies the host's signature over the exchange hash.
fn verify(host_key: &[u8], sig_blob: &[u8], h: &[u8]) -> Result<String, String> {
    let (kind, key) = ssh::parse_host_key(host_key).map_err(|e| e.to_string())?;
    let (alg, sig) = ssh::parse_signature(sig_blob).map_err(|e| e.to_string())?;
    let bad = |_| format!("the {alg} signature over the exchange hash does not verify");
    match (&key, alg.as_str()) {
        (ssh::HostKey::Ed25519(pk), "ssh-ed25519") => {
            signature::UnparsedPublicKey::new(&signature::ED25519, pk)
                .verify(h, sig)
                .map_err(bad)?;
        }
        (ssh::HostKey::Rsa { e, n }, "rsa-sha2-256" | "rsa-sha2-512") => {
            let params = if alg == "rsa-sha2-256" {
                &signature::RSA_PKCS1_2048_8192_SHA256
            } else {
                &signature::RSA_PKCS1_2048_8192_SHA512
            };
            signature::RsaPublicKeyComponents { n: *n, e: *e }
                .verify(params, h, sig)
                .map_err(bad)?;
        }
        (ssh::HostKey::Ecdsa { curve, q }, a) if a == format!("ecdsa-sha2-{curve}") => {
            let (params, width): (&signature::EcdsaVerificationAlgorithm, usize) =
                match curve.as_str() {
                    "nistp256" => (&signature::ECDSA_P256_SHA256_FIXED, 32),
                    "nistp384" => (&signature::ECDSA_P384_SHA384_FIXED, 48),
                    other => return Err(format!("ECDSA curve {other} is not supported")),
                };
            let fixed = ssh::ecdsa_fixed(sig, width).map_err(|e| e.to_string())?;
            signature::UnparsedPublicKey::new(params, q)
                .verify(h, &fixed)
                .map_err(bad)?;
        }
        _ => {
            return Err(format!(
                "signature algorithm {alg} does not match host key type {kind}"
            ));
        }
    }
    Ok(kind)
}

impl PreparedSsh {
    #[allow(clippy::too_many_arguments)]
    async fn key_exchange(
        &self,
        cx: &mut RunCx<'_>,
        s: &mut TcpStream,
        buf: &mut Vec<u8>,
        v_s: &[u8],
        i_c: &[u8],
        i_s: &[u8],
        server_guess_wrong: bool,
    ) -> CheckResult {
        let addr = cx.addr;
        let rng = SystemRandom::new();
        let private = agreement::EphemeralPrivateKey::generate(&agreement::X25519, &rng)
            .map_err(|_| Failure::new(ErrorKind::Local, "cannot generate an X25519 key"))?;
        let q_c = private
            .compute_public_key()
            .map_err(|_| Failure::new(ErrorKind::Local, "cannot compute an X25519 public key"))?;
        send(cx, s, &ssh::packet(&ssh::ecdh_init(q_c.as_ref()))).await?;
        if server_guess_wrong {
            // RFC 4253 §7: the server's guessed first kex packet must be ignored.
            next_packet(cx, s, buf, "KEX_ECDH_REPLY").await?;
        }
        let p = next_packet(cx, s, buf, "KEX_ECDH_REPLY").await?;
        let reply = ssh::parse_ecdh_reply(&p).map_err(|e| proto_fail(addr, e))?;
        let digest = ring::digest::digest(&ring::digest::SHA256, reply.host_key);
        let fp = ssh::base64_nopad(digest.as_ref());
        cx.detail("host_key_sha256", format!("SHA256:{fp}"));
        let k = agreement::agree_ephemeral(
            private,
            &agreement::UnparsedPublicKey::new(&agreement::X25519, reply.q_s),
            |k| k.to_vec(),
        )
        .map_err(|_| proto_fail(addr, "the server's X25519 public key is invalid"))?;
        let input = ssh::exchange_hash_input(
            ssh::CLIENT_ID.as_bytes(),
            v_s,
            i_c,
            i_s,
            reply.host_key,
            q_c.as_ref(),
            reply.q_s,
            &k,
        );
        let h = ring::digest::digest(&ring::digest::SHA256, &input);
        let kind = verify(reply.host_key, reply.signature, h.as_ref()).map_err(|e| {
            proto_fail(
                addr,
                format!("host key proof failed: {e} (a broken server or a man in the middle)"),
            )
        })?;
        cx.detail("host_key_type", kind);
        if let Some(pin) = &self.pin
            && *pin != fp
        {
            return Err(Failure::new(
                ErrorKind::Protocol,
                format!("{addr}: host key changed: expected SHA256:{pin}, got SHA256:{fp}"),
            ));
        }
        Ok(Verdict::up())
    }
}

impl Check for PreparedSsh {
    fn run<'a>(&'a self, cx: &'a mut RunCx<'_>) -> BoxFuture<'a, CheckResult> {
        Box::pin(async move {
            let addr = cx.addr;
            let mut s = net::connect_tcp(cx).await?;
            let mut hello = ssh::CLIENT_ID.as_bytes().to_vec();
            hello.extend_from_slice(b"\r\n");
            send(cx, &mut s, &hello).await?;
            let mut buf = Vec::new();
            let banner = read_msg(
                cx,
                &mut s,
                &mut buf,
                ssh::MAX_BANNER_LINE * (ssh::MAX_PREAMBLE_LINES + 1),
                "SSH",
                "an SSH identification",
                ssh::parse_banner,
            )
            .await?;
            cx.detail("banner", clean(&banner.line));
            cx.detail("server_version", clean(&banner.software));
            cx.detail("proto_version", clean(&banner.proto));
            if banner.proto != "2.0" && banner.proto != "1.99" {
                return Err(proto_fail(
                    addr,
                    format!(
                        "speaks SSH protocol {} only (SSH-2 required)",
                        clean(&banner.proto)
                    ),
                ));
            }
            let mut cookie = [0u8; 16];
            SystemRandom::new()
                .fill(&mut cookie)
                .map_err(|_| Failure::new(ErrorKind::Local, "no randomness for the SSH cookie"))?;
            let algs: Vec<&str> = self.host_key_algs.iter().map(String::as_str).collect();
            let i_c = ssh::kexinit(cookie, KEX_ALGS, &algs);
            send(cx, &mut s, &ssh::packet(&i_c)).await?;
            let i_s = next_packet(cx, &mut s, &mut buf, "KEXINIT").await?;
            let ki = ssh::parse_kexinit(&i_s).map_err(|e| proto_fail(addr, e))?;
            let list =
                |v: &[String]| json!(v.iter().take(32).map(|x| clean(x)).collect::<Vec<_>>());
            cx.detail("kex_algorithms", list(&ki.kex));
            cx.detail("host_key_algorithms", list(&ki.host_key));
            if !self.key_exchange {
                goodbye(&mut s, &bye()).await;
                return Ok(Verdict::up());
            }
            let Some(kex) = KEX_ALGS.iter().find(|a| ki.kex.iter().any(|k| k == *a)) else {
                let msg = format!(
                    "{addr} offers no curve25519 key exchange, so its host key cannot be fetched"
                );
                return if self.pin.is_some() {
                    Err(Failure::new(ErrorKind::Protocol, msg))
                } else {
                    Ok(Verdict {
                        outcome: portwarden_core::Outcome::Up,
                        note: Some(msg),
                    })
                };
            };
            if !algs.iter().any(|a| ki.host_key.iter().any(|k| k == a)) {
                return Err(proto_fail(
                    addr,
                    "no host key algorithm in common with host_key_algorithms",
                ));
            }
            let guess_wrong =
                ki.first_kex_follows && ki.kex.first().map(String::as_str) != Some(kex);
            let v = self
                .key_exchange(
                    cx,
                    &mut s,
                    &mut buf,
                    banner.line.as_bytes(),
                    &i_c,
                    &i_s,
                    guess_wrong,
                )
                .await;
            goodbye(&mut s, &bye()).await;
            v
        })
    }
}
