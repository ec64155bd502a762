//! Test fixtures shared by Portwarden's test suites.
//!
//! Tests talk to real things: servers started on free ports, listeners that misbehave on
//! purpose, network namespaces with iptables rules, certificates minted per test. When a
//! needed service or privilege is missing a test *skips with a loud message* — unless
//! `PORTWARDEN_REQUIRE_SERVICES=1` (set by `.ci/run`), where it fails instead.

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

pub mod certs;
pub mod hostile;
pub mod http;
pub mod netns;
pub mod pg;
pub mod process;
pub mod tmpfs;
pub mod webhook;

/// True when missing services must fail tests instead of skipping them.
pub fn services_required() -> bool {
    std::env::var("PORTWARDEN_REQUIRE_SERVICES").is_ok_and(|v| v == "1" || v == "true")
}

/// Skips the current test loudly, or fails it when services are required.
/// Use as `if !testkit::need(cond, "why") { return; }`.
#[track_caller]
pub fn need(available: bool, what: &str) -> bool {
    if available {
        return true;
    }
    if services_required() {
        panic!("REQUIRED but missing: {what} (PORTWARDEN_REQUIRE_SERVICES=1)");
    }
    let loc = std::panic::Location::caller();
    eprintln!(
        "\n!!!!!!!! SKIPPED {}:{}: {what} — set PORTWARDEN_REQUIRE_SERVICES=1 to make this a failure !!!!!!!!\n",
        loc.file(),
        loc.line()
    );
    false
}

/// Is something accepting TCP connections on 127.0.0.1:`port`?
pub fn tcp_listening(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

/// Checks a shared service on its standard port (skip or fail as [`need`] says).
#[track_caller]
pub fn need_service(name: &str, port: u16) -> bool {
    need(
        tcp_listening(port),
        &format!(
            "{name} on 127.0.0.1:{port} (see the `env` entry of the tool library to start it)"
        ),
    )
}

/// A binary on PATH (or in a well-known sbin directory).
pub fn which(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/sbin", "/sbin", "/usr/local/sbin"];
    std::env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

/// Checks a binary is installed (skip or fail as [`need`] says).
#[track_caller]
pub fn need_binary(bin: &str) -> Option<PathBuf> {
    let found = which(bin);
    if need(
        found.is_some(),
        &format!("the `{bin}` program (installed by .ci/run)"),
    ) {
        found
    } else {
        None
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// A UDP port nobody listens on right now.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Waits until 127.0.0.1:`port` accepts connections, up to `limit`.
pub fn wait_for_port(port: u16, limit: Duration) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if tcp_listening(port) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Resident set size of this process in bytes (Linux), for memory-bound tests.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}
