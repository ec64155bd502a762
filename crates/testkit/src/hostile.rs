//! Listeners that misbehave on purpose, as tokio tasks on the caller's runtime.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, UdpSocket};

async fn bind() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let port = l.local_addr().expect("local addr").port();
    (l, port)
}

/// Accepts, then resets the connection (RST) after `delay`.
pub async fn reset_after_accept(delay: Duration) -> u16 {
    let (l, port) = bind().await;
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                drop(s);
            });
        }
    });
    port
}

/// Accepts and sends `total` bytes of garbage as fast as the peer reads, in 64 KiB chunks.
pub async fn garbage(total: usize) -> u16 {
    let (l, port) = bind().await;
    tokio::spawn(async move {
        let chunk: Vec<u8> = (0..65_536u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        while let Ok((mut s, _)) = l.accept().await {
            let chunk = chunk.clone();
            tokio::spawn(async move {
                let mut sent = 0;
                while sent < total {
                    let n = chunk.len().min(total - sent);
                    if s.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    sent += n;
                }
            });
        }
    });
    port
}

/// Accepts and sends one byte per `every`, forever.
pub async fn trickle(every: Duration) -> u16 {
    let (l, port) = bind().await;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                loop {
                    if s.write_all(b"x").await.is_err() {
                        return;
                    }
                    tokio::time::sleep(every).await;
                }
            });
        }
    });
    port
}

/// Accepts and sends `greeting`, then keeps the connection open silently.
pub async fn greeter(greeting: &'static [u8]) -> u16 {
    let (l, port) = bind().await;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = s.write_all(greeting).await;
                tokio::time::sleep(Duration::from_secs(60)).await;
            });
        }
    });
    port
}

/// A UDP echo server.
pub async fn udp_echo() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
    let port = s.local_addr().expect("local addr").port();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        while let Ok((n, peer)) = s.recv_from(&mut buf).await {
            let _ = s.send_to(&buf[..n], peer).await;
        }
    });
    port
}

/// A UDP socket that receives and never answers (open, but silent).
pub async fn udp_silent() -> (u16, tokio::task::JoinHandle<u64>) {
    let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
    let port = s.local_addr().expect("local addr").port();
    let h = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        let mut n = 0u64;
        while s.recv_from(&mut buf).await.is_ok() {
            n += 1;
        }
        n
    });
    (port, h)
}

/// Loopback address for a port.
pub fn lo(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Accepts every connection; every `n`th (1-based: connections `n`, `2n`, ...) — or, with
/// `fail_first`, the first `fail_first` of every `n` — is reset at once, the others get
/// `greeting`. Models a service failing a known fraction of connections.
pub async fn failing_fraction(
    n: u64,
    fail_first: u64,
    greeting: &'static [u8],
) -> (u16, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let (l, port) = bind().await;
    let count = std::sync::Arc::new(AtomicU64::new(0));
    let c2 = count.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let i = c2.fetch_add(1, Ordering::Relaxed);
            let fail = if fail_first == 0 {
                (i + 1).is_multiple_of(n)
            } else {
                i % n < fail_first
            };
            tokio::spawn(async move {
                if fail {
                    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                    drop(s);
                } else {
                    let _ = s.write_all(greeting).await;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            });
        }
    });
    (port, count)
}

/// Accepts and never says anything (a service that hangs).
pub async fn silent() -> u16 {
    let (l, port) = bind().await;
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
            if held.len() > 4096 {
                held.remove(0);
            }
        }
    });
    port
}
