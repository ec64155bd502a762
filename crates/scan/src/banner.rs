//! Service guessing for open TCP ports: read what the server says first (SSH, SMTP, FTP, POP3,
//! IMAP, MySQL, NATS, VNC... greet), else run the protocol probe Portwarden has for the port's
//! well-known service (PostgreSQL on 5432, Redis on 6379, ...), else try an HTTP request.
//! Reads are bounded; everything shown is escaped.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use portwarden_core::{ErrorKind, Outcome, TargetUrl, Transport};
use portwarden_probe::{CATALOGUE, CheckSpec, ProbeSpec, Prober};
use portwarden_wire::printable;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

/// What we learned about the service behind an open port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceGuess {
    /// `ssh`, `postgres`, `http`, ... or `None` when nothing could be told.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Version or product when the service said so (`OpenSSH_9.2p1`, `PostgreSQL 16.4`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The first bytes the service sent (escaped, at most 120 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub banner: Option<String>,
    /// How we know: `banner`, `probe`, `http`, `port` (only the port number's usual service).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

impl ServiceGuess {
    /// A stable fingerprint for drift detection: service plus version or banner line.
    pub fn fingerprint(&self) -> String {
        let svc = self.service.as_deref().unwrap_or("unknown");
        match (&self.version, &self.banner) {
            (Some(v), _) => format!("{svc} {v}"),
            (None, Some(b)) => format!("{svc} {}", b.lines().next().unwrap_or_default()),
            (None, None) => svc.to_string(),
        }
    }
}

const BANNER_LIMIT: usize = 1024;

/// Guesses the service on an open TCP port within `timeout`.
pub async fn guess(prober: &Prober, addr: SocketAddr, timeout: Duration) -> ServiceGuess {
    let deadline = Instant::now() + timeout;
    // 1. Passive banner.
    let mut bytes = Vec::new();
    if let Ok(Ok(mut s)) = tokio::time::timeout(timeout, connect(addr)).await {
        let wait = timeout.mul_f64(0.4).min(Duration::from_millis(1500));
        let _ = tokio::time::timeout(wait, read_some(&mut s, &mut bytes)).await;
    }
    if !bytes.is_empty() {
        let mut g = classify_banner(addr.port(), &bytes);
        g.method = Some("banner".into());
        return g;
    }
    // 2. The protocol probe for the port's well-known service.
    if let Some(kind) = probe_kind_for_port(addr.port()) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left > Duration::from_millis(50)
            && let Some(g) = run_probe(prober, addr, kind, left).await
        {
            return g;
        }
    }
    // 3. HTTP.
    let left = deadline.saturating_duration_since(Instant::now());
    if left > Duration::from_millis(50)
        && let Some(g) = http(addr, left).await
    {
        return g;
    }
    ServiceGuess {
        service: well_known(addr.port()).map(str::to_string),
        method: well_known(addr.port()).map(|_| "port".to_string()),
        ..Default::default()
    }
}

async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    let _ = socket2::SockRef::from(&sock).set_linger(Some(Duration::ZERO));
    let s = sock.connect(addr).await?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

async fn read_some(s: &mut TcpStream, buf: &mut Vec<u8>) {
    // Read until a line ends or the limit; a greeting is usually one segment.
    while buf.len() < BANNER_LIMIT {
        match portwarden_probe::net::read_bounded(s, buf, BANNER_LIMIT).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if buf.contains(&b'\n') || looks_binary_greeting(buf) {
                    return;
                }
            }
        }
    }
}

fn looks_binary_greeting(b: &[u8]) -> bool {
    // MySQL handshake: 3-byte length, sequence 0, protocol 10.
    b.len() >= 5 && b[3] == 0 && b[4] == 10
}

/// Names the service from its greeting.
pub fn classify_banner(port: u16, b: &[u8]) -> ServiceGuess {
    let text = String::from_utf8_lossy(&b[..b.len().min(BANNER_LIMIT)]);
    let first = text.lines().next().unwrap_or_default().trim().to_string();
    let banner = Some(printable::escape(first.as_bytes(), 120));
    let g = |service: &str, version: Option<String>| ServiceGuess {
        service: Some(service.to_string()),
        version,
        banner: banner.clone(),
        method: None,
    };
    if let Some(rest) = first.strip_prefix("SSH-") {
        let v = rest.split_once('-').map(|(_, v)| v).unwrap_or(rest);
        return g("ssh", Some(printable::escape(v.as_bytes(), 80)));
    }
    if looks_binary_greeting(b) {
        // Server version is a NUL-terminated string after the protocol byte.
        let v = b[5..].split(|c| *c == 0).next().unwrap_or_default();
        let mut r = g("mysql", Some(printable::escape(v, 80)));
        r.banner = Some(printable::escape(&b[..b.len().min(40)], 120));
        return r;
    }
    let up = first.to_ascii_uppercase();
    if up.starts_with("220") {
        if up.contains("FTP") || port == 21 {
            return g("ftp", None);
        }
        if up.contains("SMTP") || up.contains("MAIL") || matches!(port, 25 | 465 | 587) {
            return g("smtp", None);
        }
        return g("smtp-or-ftp", None);
    }
    if up.starts_with("+OK") {
        return g("pop3", None);
    }
    if up.starts_with("* OK") || up.starts_with("* PREAUTH") {
        return g("imap", None);
    }
    if up.starts_with("INFO {") {
        let v = text
            .split("\"version\":\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .map(|v| printable::escape(v.as_bytes(), 40));
        return g("nats", v);
    }
    if up.starts_with("RFB ") {
        return g("vnc", Some(first[4..].to_string()));
    }
    if up.starts_with("HTTP/") {
        return g("http", None);
    }
    if up.starts_with("-ERR") || up.starts_with("-NOAUTH") || up.starts_with("-DENIED") {
        return g("redis", None);
    }
    ServiceGuess {
        service: well_known(port).map(str::to_string),
        banner,
        ..Default::default()
    }
}

/// The protocol probe kind whose default port is `port` (TCP, not the generic ones).
pub fn probe_kind_for_port(port: u16) -> Option<&'static str> {
    CATALOGUE
        .iter()
        .find(|i| {
            i.transport == Transport::Tcp
                && i.default_port == Some(port)
                && !matches!(i.name, "tcp" | "udp" | "send_expect" | "dns")
        })
        .map(|i| i.name)
}

async fn run_probe(
    prober: &Prober,
    addr: SocketAddr,
    kind: &str,
    timeout: Duration,
) -> Option<ServiceGuess> {
    let check = CheckSpec::for_scheme(kind)?;
    let target = TargetUrl {
        scheme: Some(kind.to_string()),
        host: portwarden_core::Host::Ip(addr.ip()),
        port: Some(addr.port()),
    };
    let spec = ProbeSpec::new("scan", target, check, timeout).ok()?;
    let obs = prober.probe(&spec).await.into_iter().next()?;
    let spoke = match obs.outcome {
        Outcome::Up | Outcome::Degraded => true,
        _ => matches!(
            obs.error_kind(),
            Some(ErrorKind::Auth | ErrorKind::Unhealthy) | Some(ErrorKind::Tls(_))
        ),
    };
    if !spoke {
        return None;
    }
    let detail = |k: &str| {
        obs.details.get(k).map(|v| match v {
            serde_json::Value::String(s) => printable::escape(s.as_bytes(), 80),
            other => printable::escape(other.to_string().as_bytes(), 80),
        })
    };
    Some(ServiceGuess {
        service: Some(kind.to_string()),
        version: detail("server_version").or_else(|| detail("version")),
        banner: detail("banner"),
        method: Some("probe".into()),
    })
}

async fn http(addr: SocketAddr, timeout: Duration) -> Option<ServiceGuess> {
    let fut = async {
        let mut s = connect(addr).await.ok()?;
        s.write_all(b"HEAD / HTTP/1.0\r\nUser-Agent: portwarden-scan\r\n\r\n")
            .await
            .ok()?;
        let mut buf = Vec::new();
        while buf.len() < 4096 {
            match portwarden_probe::net::read_bounded(&mut s, &mut buf, 4096).await {
                Ok(0) | Err(_) => break,
                Ok(_) if buf.windows(4).any(|w| w == b"\r\n\r\n") => break,
                Ok(_) => {}
            }
        }
        Some(buf)
    };
    let buf = tokio::time::timeout(timeout, fut).await.ok()??;
    if !buf.starts_with(b"HTTP/") {
        if buf.is_empty() {
            return None;
        }
        let mut g = classify_banner(addr.port(), &buf);
        g.method = Some("http".into());
        return Some(g);
    }
    let text = String::from_utf8_lossy(&buf);
    let status = text.lines().next().unwrap_or_default();
    let server = text
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("server"))
                .map(|(_, v)| v.trim())
        })
        .map(|v| printable::escape(v.as_bytes(), 80));
    Some(ServiceGuess {
        service: Some("http".into()),
        version: server,
        banner: Some(printable::escape(status.as_bytes(), 120)),
        method: Some("http".into()),
    })
}

/// The usual service on a port (a hint only, shown when nothing better is known).
pub fn well_known(port: u16) -> Option<&'static str> {
    if let Some(k) = probe_kind_for_port(port) {
        return Some(k);
    }
    Some(match port {
        20 => "ftp-data",
        23 => "telnet",
        53 => "dns",
        80 | 8000 | 8008 | 8080 | 8888 => "http",
        111 => "rpcbind",
        135 => "msrpc",
        139 => "netbios-ssn",
        389 => "ldap",
        443 | 8443 => "https",
        445 => "microsoft-ds",
        465 => "smtps",
        587 => "submission",
        631 => "ipp",
        636 => "ldaps",
        993 => "imaps",
        995 => "pop3s",
        1433 => "mssql",
        1521 => "oracle",
        2049 => "nfs",
        2375 | 2376 => "docker",
        2379 | 2380 => "etcd",
        3389 => "rdp",
        5000 => "upnp",
        5671 => "amqps",
        5900 => "vnc",
        5984 => "couchdb",
        6443 => "kubernetes-api",
        8222 => "nats-monitor",
        8883 => "mqtts",
        9090 => "prometheus",
        9100 => "node-exporter",
        9093 => "alertmanager",
        10250 => "kubelet",
        15672 => "rabbitmq-management",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_greetings() {
        let g = classify_banner(22, b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n");
        assert_eq!(g.service.as_deref(), Some("ssh"));
        assert_eq!(g.version.as_deref(), Some("OpenSSH_9.2p1 Debian-2"));
        assert_eq!(
            classify_banner(25, b"220 mx.test ESMTP Postfix\r\n")
                .service
                .as_deref(),
            Some("smtp")
        );
        assert_eq!(
            classify_banner(2121, b"220 ready\r\n").service.as_deref(),
            Some("smtp-or-ftp")
        );
        assert_eq!(
            classify_banner(21, b"220 (vsFTPd 3.0.3)\r\n")
                .service
                .as_deref(),
            Some("ftp")
        );
        assert_eq!(
            classify_banner(110, b"+OK ready\r\n").service.as_deref(),
            Some("pop3")
        );
        assert_eq!(
            classify_banner(143, b"* OK IMAP4rev1\r\n")
                .service
                .as_deref(),
            Some("imap")
        );
        let g = classify_banner(
            4222,
            b"INFO {\"server_id\":\"x\",\"version\":\"2.10.1\"}\r\n",
        );
        assert_eq!(
            (g.service.as_deref(), g.version.as_deref()),
            (Some("nats"), Some("2.10.1"))
        );
        let my = b"\x4a\x00\x00\x00\x0a11.8.3-MariaDB\x00\x01\x02";
        let g = classify_banner(3306, my);
        assert_eq!(
            (g.service.as_deref(), g.version.as_deref()),
            (Some("mysql"), Some("11.8.3-MariaDB"))
        );
        let g = classify_banner(9999, b"\x00\x01garbage");
        assert_eq!(g.service, None);
        assert!(g.banner.is_some());
        assert_eq!(probe_kind_for_port(5432), Some("postgres"));
        assert_eq!(probe_kind_for_port(6379), Some("redis"));
        assert_eq!(probe_kind_for_port(443), Some("tls"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), port in 1u16..) {
            let g = classify_banner(port, &b);
            let _ = g.fingerprint();
        }
    }
}
