//! TCP connect scan: many non-blocking connects driven by one `mio` poll loop on a blocking
//! thread (no task per port), bounded globally, per host and by a packet rate. Every socket has
//! `SO_LINGER 0`, so closing an accepted connection sends RST and leaves no TIME_WAIT behind.
//!
//! Per port: connection accepted → `open`; RST (ECONNREFUSED) → `closed`; no answer within the
//! timeout (after the retries) or an ICMP unreachable (host, network, admin-prohibited) →
//! `filtered`. Our own failures (out of descriptors or ports) are retried after a pause with
//! less concurrency, never reported as a port state.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, Socket, Type};

use crate::{RateLimiter, Reason};

/// Knobs of a connect scan.
#[derive(Debug, Clone)]
pub struct TcpScanConfig {
    pub timeout: Duration,
    /// Extra attempts for ports that timed out.
    pub retries: u32,
    /// Connects in flight at once, in total.
    pub concurrency: usize,
    /// Connects in flight at once to one host.
    pub per_host: usize,
    /// Connection attempts per second, in total (`None`: unlimited).
    pub rate: Option<u32>,
}

struct Slot {
    stream: TcpStream,
    host: usize,
    port_idx: u32,
    attempt: u32,
    started: Instant,
    generation: u64,
}

/// Result of one port: the reason (which implies the state) and the round-trip time in ms.
pub type PortResult = (Reason, f32);

struct HostQueue {
    next: u32,
    retry: VecDeque<(u32, u32)>,
    inflight: usize,
}

/// Scans every `ports` on every `hosts`. Returns, per host, one result per port (same order).
/// `done` counts finished ports (for a progress bar); `cancel` stops early (remaining ports
/// are `Reason::NotScanned`).
pub fn connect_scan(
    hosts: &[IpAddr],
    ports: &[u16],
    cfg: &TcpScanConfig,
    done: &AtomicU64,
    cancel: &AtomicBool,
) -> io::Result<Vec<Vec<PortResult>>> {
    let mut results: Vec<Vec<PortResult>> = hosts
        .iter()
        .map(|_| vec![(Reason::NotScanned, 0.0); ports.len()])
        .collect();
    if hosts.is_empty() || ports.is_empty() {
        return Ok(results);
    }
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut slots: Vec<Option<Slot>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut deadlines: VecDeque<(Instant, usize, u64)> = VecDeque::new();
    let mut queues: Vec<HostQueue> = hosts
        .iter()
        .map(|_| HostQueue {
            next: 0,
            retry: VecDeque::new(),
            inflight: 0,
        })
        .collect();
    // Hosts with queued work (new ports or retries), round-robin.
    let mut active: VecDeque<usize> = (0..hosts.len()).collect();
    let mut in_active: Vec<bool> = vec![true; hosts.len()];
    let mut inflight = 0usize;
    let mut limit = cfg.concurrency.max(1);
    let per_host = cfg.per_host.max(1);
    let mut generation = 0u64;
    let mut limiter = RateLimiter::new(cfg.rate);
    let mut pause_until: Option<Instant> = None;
    let n_ports = ports.len() as u32;

    let finish =
        |results: &mut Vec<Vec<PortResult>>, host: usize, idx: u32, r: Reason, rtt: f32| {
            results[host][idx as usize] = (r, rtt);
            done.fetch_add(1, Ordering::Relaxed);
        };
    let requeue = |queues: &mut Vec<HostQueue>,
                   active: &mut VecDeque<usize>,
                   in_active: &mut Vec<bool>,
                   h: usize,
                   job: (u32, u32),
                   front: bool| {
        if front {
            queues[h].retry.push_front(job);
        } else {
            queues[h].retry.push_back(job);
        }
        if !in_active[h] {
            in_active[h] = true;
            active.push_back(h);
        }
    };

    loop {
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        if pause_until.is_some_and(|t| Instant::now() >= t) {
            pause_until = None;
        }
        let mut rate_wait: Option<Duration> = None;
        if pause_until.is_none() {
            let mut skipped = 0;
            while inflight < limit && skipped < active.len() {
                let Some(h) = active.pop_front() else { break };
                let q = &mut queues[h];
                if q.retry.is_empty() && q.next >= n_ports {
                    in_active[h] = false;
                    continue;
                }
                if q.inflight >= per_host {
                    active.push_back(h);
                    skipped += 1;
                    continue;
                }
                if let Some(w) = limiter.wait() {
                    rate_wait = Some(w);
                    active.push_front(h);
                    break;
                }
                skipped = 0;
                let (idx, attempt) = match q.retry.pop_front() {
                    Some(x) => x,
                    None => {
                        q.next += 1;
                        (q.next - 1, 0)
                    }
                };
                if q.retry.is_empty() && q.next >= n_ports {
                    in_active[h] = false;
                } else {
                    active.push_back(h);
                }
                limiter.take();
                let addr = SocketAddr::new(hosts[h], ports[idx as usize]);
                let started = Instant::now();
                match start_connect(addr) {
                    Ok(Started::Done(r)) => {
                        let rtt = started.elapsed().as_secs_f32() * 1000.0;
                        finish(&mut results, h, idx, r, rtt);
                    }
                    Ok(Started::Pending(mut stream)) => {
                        let slot = free.pop().unwrap_or_else(|| {
                            slots.push(None);
                            slots.len() - 1
                        });
                        poll.registry()
                            .register(&mut stream, Token(slot), Interest::WRITABLE)?;
                        generation += 1;
                        slots[slot] = Some(Slot {
                            stream,
                            host: h,
                            port_idx: idx,
                            attempt,
                            started,
                            generation,
                        });
                        deadlines.push_back((started + cfg.timeout, slot, generation));
                        inflight += 1;
                        queues[h].inflight += 1;
                    }
                    Err(e) => {
                        // Out of descriptors, ports or buffers: our side. Put the port back,
                        // shrink concurrency and pause briefly.
                        requeue(
                            &mut queues,
                            &mut active,
                            &mut in_active,
                            h,
                            (idx, attempt),
                            true,
                        );
                        limit = (inflight * 3 / 4).max(1);
                        pause_until = Some(Instant::now() + Duration::from_millis(50));
                        tracing::warn!(error = %e, new_limit = limit, "scan: local resource limit hit; slowing down");
                        break;
                    }
                }
            }
        }
        if inflight == 0 && active.is_empty() {
            break;
        }
        // Wait for events until the earliest deadline (or the rate limiter / pause).
        let now = Instant::now();
        let mut wait = deadlines
            .front()
            .map(|(d, _, _)| d.saturating_duration_since(now))
            .unwrap_or(Duration::from_millis(100));
        if let Some(w) = rate_wait {
            wait = wait.min(w);
        }
        if let Some(t) = pause_until {
            wait = wait.min(t.saturating_duration_since(now));
        }
        if inflight == 0 && wait.is_zero() {
            continue;
        }
        match poll.poll(&mut events, Some(wait.min(Duration::from_millis(200)))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for ev in events.iter() {
            let slot = ev.token().0;
            let Some(s) = slots.get_mut(slot).and_then(|s| s.as_mut()) else {
                continue;
            };
            let outcome = match s.stream.take_error() {
                Ok(Some(e)) | Err(e) => Some(reason_of(&e)),
                Ok(None) => match s.stream.peer_addr() {
                    // A connect to our own ephemeral port on loopback "succeeds" by TCP
                    // simultaneous open with itself: nothing listens there.
                    Ok(peer) if s.stream.local_addr().is_ok_and(|l| l == peer) => {
                        Some(Reason::Reset)
                    }
                    Ok(_) => Some(Reason::SynAck),
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                        if ev.is_error() || ev.is_write_closed() {
                            Some(Reason::Reset)
                        } else {
                            None
                        }
                    }
                    Err(e) => Some(reason_of(&e)),
                },
            };
            if let Some(r) = outcome
                && let Some(mut s) = slots[slot].take()
            {
                let _ = poll.registry().deregister(&mut s.stream);
                let rtt = s.started.elapsed().as_secs_f32() * 1000.0;
                inflight -= 1;
                queues[s.host].inflight -= 1;
                free.push(slot);
                if r == Reason::Local && s.attempt < cfg.retries + 3 {
                    requeue(
                        &mut queues,
                        &mut active,
                        &mut in_active,
                        s.host,
                        (s.port_idx, s.attempt + 1),
                        false,
                    );
                } else {
                    finish(&mut results, s.host, s.port_idx, r, rtt);
                }
            }
        }
        // Expire connects past their deadline (retry, or `filtered`).
        let now = Instant::now();
        while let Some(&(d, slot, g)) = deadlines.front() {
            if d > now {
                break;
            }
            deadlines.pop_front();
            let live = slots
                .get(slot)
                .and_then(|s| s.as_ref())
                .is_some_and(|s| s.generation == g);
            if !live {
                continue;
            }
            if let Some(mut s) = slots[slot].take() {
                let _ = poll.registry().deregister(&mut s.stream);
                inflight -= 1;
                queues[s.host].inflight -= 1;
                free.push(slot);
                if s.attempt < cfg.retries {
                    requeue(
                        &mut queues,
                        &mut active,
                        &mut in_active,
                        s.host,
                        (s.port_idx, s.attempt + 1),
                        false,
                    );
                } else {
                    let rtt = s.started.elapsed().as_secs_f32() * 1000.0;
                    finish(&mut results, s.host, s.port_idx, Reason::Timeout, rtt);
                }
            }
        }
        // Recover concurrency slowly after a local limit.
        if limit < cfg.concurrency.max(1) {
            limit += 1;
        }
    }
    Ok(results)
}

enum Started {
    Done(Reason),
    Pending(TcpStream),
}

fn start_connect(addr: SocketAddr) -> io::Result<Started> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let sock = match Socket::new(
        domain,
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    ) {
        Ok(s) => s,
        Err(e) if is_local(&e) => return Err(e),
        Err(_) => return Ok(Started::Done(Reason::Error)),
    };
    // Set before connecting: even an abandoned connect is reset, never left in TIME_WAIT.
    let _ = sock.set_linger(Some(Duration::ZERO));
    match sock.connect(&addr.into()) {
        Ok(()) if sock.local_addr().ok().and_then(|a| a.as_socket()) == Some(addr) => {
            Ok(Started::Done(Reason::Reset))
        }
        Ok(()) => Ok(Started::Done(Reason::SynAck)),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(Started::Pending(
            TcpStream::from_std(std::net::TcpStream::from(sock)),
        )),
        Err(e) if is_local(&e) => Err(e),
        Err(e) => Ok(Started::Done(reason_of(&e))),
    }
}

fn is_local(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EMFILE
                | libc::ENFILE
                | libc::EADDRNOTAVAIL
                | libc::ENOBUFS
                | libc::ENOMEM
                | libc::EAGAIN
        )
    )
}

/// The port's reason from a connect error.
pub(crate) fn reason_of(e: &io::Error) -> Reason {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => Reason::Reset,
        Some(libc::ETIMEDOUT) => Reason::Timeout,
        Some(libc::EHOSTUNREACH | libc::EHOSTDOWN) => Reason::HostUnreachable,
        Some(libc::ENETUNREACH | libc::ENETDOWN) => Reason::NetUnreachable,
        // ICMP administratively prohibited (and our own firewall's REJECT) surface as EACCES/EPERM.
        Some(libc::EACCES | libc::EPERM) => Reason::AdminProhibited,
        Some(libc::ECONNRESET) => Reason::Reset,
        _ if is_local(e) => Reason::Local,
        _ => Reason::Error,
    }
}
