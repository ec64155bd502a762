//! Sockets the way a prober wants them: per-phase deadlines, `TCP_NODELAY`, `SO_LINGER 0` on
//! close (no TIME_WAIT pile-up after thousands of checks), and errno mapped to error kinds.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use portwarden_core::{ErrorKind, Phase, ProbeError};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::cx::RunCx;

/// Maps an OS error to an error kind. Failures of our own side (out of descriptors, ports or
/// buffers, blocked by our own firewall) are `local`: they say nothing about the target.
pub fn classify_io(e: &io::Error, phase: Phase) -> ErrorKind {
    if let Some(code) = e.raw_os_error() {
        return match code {
            libc::ECONNREFUSED => ErrorKind::Refused,
            libc::ECONNRESET | libc::EPIPE | libc::ECONNABORTED => ErrorKind::Reset,
            libc::EHOSTUNREACH | libc::EHOSTDOWN => ErrorKind::HostUnreachable,
            libc::ENETUNREACH | libc::ENETDOWN => ErrorKind::NetUnreachable,
            libc::ETIMEDOUT => ErrorKind::Timeout(phase),
            // Our side: descriptors, ports, memory, buffers, local policy.
            libc::EMFILE
            | libc::ENFILE
            | libc::EADDRNOTAVAIL
            | libc::EADDRINUSE
            | libc::ENOBUFS
            | libc::ENOMEM
            | libc::EPERM
            | libc::EACCES
            | libc::EAFNOSUPPORT => ErrorKind::Local,
            _ => ErrorKind::Local,
        };
    }
    match e.kind() {
        io::ErrorKind::ConnectionRefused => ErrorKind::Refused,
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => ErrorKind::Reset,
        io::ErrorKind::TimedOut => ErrorKind::Timeout(phase),
        io::ErrorKind::UnexpectedEof => ErrorKind::Protocol,
        _ => ErrorKind::Local,
    }
}

/// A readable message for an OS error in a phase, naming the address.
pub fn io_error(e: &io::Error, phase: Phase, addr: SocketAddr) -> ProbeError {
    let kind = classify_io(e, phase);
    let what = match kind {
        ErrorKind::Refused => format!("connection refused by {addr} (nothing listening)"),
        ErrorKind::Reset => format!("connection reset by {addr} during {phase}"),
        ErrorKind::HostUnreachable => format!("host unreachable: {addr} ({e})"),
        ErrorKind::NetUnreachable => format!("network unreachable: {addr} ({e})"),
        ErrorKind::Timeout(_) => format!("{phase} to {addr} timed out ({e})"),
        ErrorKind::Local => format!(
            "local failure during {phase} to {addr}: {e}; this is our side (descriptors, ports or policy), not the target"
        ),
        _ => format!("{phase} to {addr}: {e}"),
    };
    ProbeError::new(kind, what)
}

/// Connects over TCP within the context's deadline, recording `connect_ms`.
pub async fn connect_tcp(cx: &mut RunCx<'_>) -> Result<TcpStream, ProbeError> {
    let addr = cx.addr;
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| io_error(&e, Phase::Connect, addr))?;
    // Set linger before connecting so even a connect that we abandon on timeout is reset
    // instead of lingering.
    set_linger_zero(&socket);
    let stream = cx
        .timed(Phase::Connect, async {
            socket
                .connect(addr)
                .await
                .map_err(|e| io_error(&e, Phase::Connect, addr))
        })
        .await?;
    // A closed port in the ephemeral range can "answer" when the kernel picks that very port
    // as our source port: a TCP self-connect. Nothing listens there; it is refused.
    if stream.local_addr().is_ok_and(|l| l == addr) {
        drop(stream);
        return Err(io_error(
            &io::Error::from_raw_os_error(libc::ECONNREFUSED),
            Phase::Connect,
            addr,
        ));
    }
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

fn set_linger_zero<S: std::os::fd::AsFd>(s: &S) {
    // SO_LINGER with a zero timeout never blocks: close sends RST and frees the port at once.
    let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
}

/// One read from `stream`, appended to `buf`, never letting `buf` grow past `limit` bytes.
/// Returns the number of bytes read (0 on EOF, or when `buf` is already at the limit).
pub async fn read_bounded<R: AsyncRead + Unpin>(
    stream: &mut R,
    buf: &mut Vec<u8>,
    limit: usize,
) -> io::Result<usize> {
    let room = limit.saturating_sub(buf.len());
    if room == 0 {
        return Ok(0);
    }
    let mut chunk = vec![0u8; room.min(16 * 1024)];
    let n = stream.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_errnos() {
        let e = |c| io::Error::from_raw_os_error(c);
        assert_eq!(
            classify_io(&e(libc::ECONNREFUSED), Phase::Connect),
            ErrorKind::Refused
        );
        assert_eq!(
            classify_io(&e(libc::EHOSTUNREACH), Phase::Connect),
            ErrorKind::HostUnreachable
        );
        assert_eq!(
            classify_io(&e(libc::ENETUNREACH), Phase::Connect),
            ErrorKind::NetUnreachable
        );
        assert_eq!(
            classify_io(&e(libc::ECONNRESET), Phase::Protocol),
            ErrorKind::Reset
        );
        assert_eq!(
            classify_io(&e(libc::ETIMEDOUT), Phase::Connect),
            ErrorKind::Timeout(Phase::Connect)
        );
        for c in [
            libc::EMFILE,
            libc::ENFILE,
            libc::EADDRNOTAVAIL,
            libc::ENOBUFS,
        ] {
            assert_eq!(
                classify_io(&e(c), Phase::Connect),
                ErrorKind::Local,
                "errno {c}"
            );
        }
    }
}
