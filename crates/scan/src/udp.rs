//! UDP scan: one connected socket per probe so the kernel hands ICMP errors back to us
//! (ECONNREFUSED = ICMP port unreachable = `closed`; host/admin unreachable = `filtered`).
//! Known ports get a real protocol request (DNS, NTP, SNMP from `portwarden-wire`), so a live
//! service answers; others get an empty datagram. Silence after every round = `open|filtered`.
//!
//! ICMP rate limits: Linux answers at most ~1 port-unreachable per second per peer after a
//! small burst (`net.ipv4.icmp_ratelimit`), so a closed port can look silent. Unanswered ports
//! are probed again in later rounds with a pause between rounds (`round_pause`) that lets the
//! peer's ICMP budget refill, instead of concluding `open|filtered` from one lost reply.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::net::UdpSocket;
use tokio::sync::{Mutex, Semaphore};

use crate::{RateLimiter, Reason};

#[derive(Debug, Clone)]
pub struct UdpScanConfig {
    /// How long to wait for a reply to one datagram.
    pub timeout: Duration,
    /// Extra rounds for ports that stayed silent.
    pub retries: u32,
    pub concurrency: usize,
    pub per_host: usize,
    pub rate: Option<u32>,
    /// Pause between rounds (lets ICMP rate limits refill).
    pub round_pause: Duration,
}

/// What came back from an open UDP port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpReply {
    pub service: Option<&'static str>,
    pub banner: String,
}

pub type UdpPortResult = (Reason, f32, Option<UdpReply>);

/// The request sent to `port` and the service it speaks when answered.
pub fn payload(port: u16) -> (Vec<u8>, Option<&'static str>) {
    match port {
        53 | 5353 => (
            portwarden_wire::dns::query(0x5057, ".", "NS", false).unwrap_or_default(),
            Some("dns"),
        ),
        123 => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            (
                portwarden_wire::ntp::request(portwarden_wire::ntp::ntp_timestamp(now)).to_vec(),
                Some("ntp"),
            )
        }
        161 => (
            portwarden_wire::snmp::get_request(
                b"public",
                0x5057,
                &[vec![1, 3, 6, 1, 2, 1, 1, 1, 0]],
            ),
            Some("snmp"),
        ),
        _ => (Vec::new(), None),
    }
}

/// Describes a reply for humans (escaped, bounded) using the protocol parser when we know it.
pub fn describe_reply(port: u16, reply: &[u8]) -> UdpReply {
    let (_, service) = payload(port);
    let banner = match service {
        Some("dns") => match portwarden_wire::dns::parse_response(reply, 0x5057) {
            Ok(s) => format!(
                "DNS {} ({} answers)",
                portwarden_wire::dns::rcode_name(s.rcode),
                s.answer_count
            ),
            Err(_) => portwarden_wire::printable::escape(reply, 64),
        },
        Some("ntp") => match portwarden_wire::ntp::parse(reply) {
            Ok(r) => format!(
                "NTP v{} stratum {} ref {}",
                r.version,
                r.stratum,
                r.reference_text()
            ),
            Err(_) => portwarden_wire::printable::escape(reply, 64),
        },
        Some("snmp") => match portwarden_wire::snmp::parse_response(reply) {
            Ok(r) => match r.varbinds.first() {
                Some((_, portwarden_wire::snmp::Value::OctetString(b))) => {
                    format!("SNMP {}", portwarden_wire::printable::escape(b, 120))
                }
                _ => format!(
                    "SNMP {}",
                    portwarden_wire::snmp::error_status_name(r.error_status)
                ),
            },
            Err(_) => portwarden_wire::printable::escape(reply, 64),
        },
        _ => portwarden_wire::printable::escape(reply, 64),
    };
    UdpReply { service, banner }
}

/// Scans `ports` on every host over UDP. Returns, per host, one result per port.
pub async fn scan(
    hosts: &[IpAddr],
    ports: &[u16],
    cfg: &UdpScanConfig,
    done: Arc<AtomicU64>,
) -> Vec<Vec<UdpPortResult>> {
    let global = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
    let limiter = Arc::new(Mutex::new(RateLimiter::new(cfg.rate)));
    let ports: Arc<[u16]> = ports.into();
    let per_host = futures::stream::iter(hosts.iter().copied().map(|ip| {
        let global = global.clone();
        let limiter = limiter.clone();
        let ports = ports.clone();
        let done = done.clone();
        let cfg = cfg.clone();
        async move { scan_host(ip, &ports, &cfg, &global, &limiter, &done).await }
    }))
    .buffered(cfg.concurrency.max(1));
    per_host.collect().await
}

async fn scan_host(
    ip: IpAddr,
    ports: &[u16],
    cfg: &UdpScanConfig,
    global: &Semaphore,
    limiter: &Mutex<RateLimiter>,
    done: &AtomicU64,
) -> Vec<UdpPortResult> {
    let mut results: Vec<UdpPortResult> = vec![(Reason::NotScanned, 0.0, None); ports.len()];
    let mut pending: Vec<usize> = (0..ports.len()).collect();
    for round in 0..=cfg.retries {
        if pending.is_empty() {
            break;
        }
        if round > 0 {
            tokio::time::sleep(cfg.round_pause).await;
        }
        // Later rounds wait longer: slow peers and rate-limited ICMP get more time.
        let timeout = cfg.timeout.mul_f64(1.0 + 0.5 * f64::from(round));
        let outcomes: Vec<(usize, Option<UdpPortResult>)> =
            futures::stream::iter(pending.iter().copied())
                .map(|i| async move {
                    let Ok(_permit) = global.acquire().await else {
                        return (i, Some((Reason::Error, 0.0, None)));
                    };
                    loop {
                        let w = {
                            let mut l = limiter.lock().await;
                            let w = l.wait();
                            if w.is_none() {
                                l.take();
                            }
                            w
                        };
                        match w {
                            Some(d) => tokio::time::sleep(d).await,
                            None => break,
                        }
                    }
                    (i, probe(SocketAddr::new(ip, ports[i]), timeout).await)
                })
                .buffer_unordered(cfg.per_host.max(1))
                .collect()
                .await;
        pending.clear();
        for (i, r) in outcomes {
            match r {
                Some(r) => {
                    results[i] = r;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                None => pending.push(i),
            }
        }
        pending.sort_unstable();
    }
    for i in pending {
        results[i] = (Reason::NoReply, cfg.timeout.as_secs_f32() * 1000.0, None);
        done.fetch_add(1, Ordering::Relaxed);
    }
    results
}

/// One datagram and its answer. `None` = silence (try again in a later round).
async fn probe(addr: SocketAddr, timeout: Duration) -> Option<UdpPortResult> {
    let start = Instant::now();
    let bind: SocketAddr = if addr.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = match UdpSocket::bind(bind).await {
        Ok(s) => s,
        Err(e) => return Some((crate::tcp::reason_of(&e), 0.0, None)),
    };
    if let Err(e) = sock.connect(addr).await {
        return Some((crate::tcp::reason_of(&e), 0.0, None));
    }
    let (data, _) = payload(addr.port());
    let ms = || start.elapsed().as_secs_f32() * 1000.0;
    if let Err(e) = sock.send(&data).await {
        return Some((udp_reason(&e), ms(), None));
    }
    let mut buf = vec![0u8; 2048];
    match tokio::time::timeout(timeout, sock.recv(&mut buf)).await {
        Ok(Ok(n)) => Some((
            Reason::Reply,
            ms(),
            Some(describe_reply(addr.port(), &buf[..n])),
        )),
        Ok(Err(e)) => match udp_reason(&e) {
            Reason::Local => None,
            r => Some((r, ms(), None)),
        },
        Err(_) => None,
    }
}

fn udp_reason(e: &std::io::Error) -> Reason {
    match crate::tcp::reason_of(e) {
        Reason::Reset => Reason::PortUnreachable,
        r => r,
    }
}
