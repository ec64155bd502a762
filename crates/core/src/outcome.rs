//! Outcomes and error kinds: the stable words that reach the API, alerts and metrics.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The result of one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Reachable and answering as expected.
    Up,
    /// Works, but slow, trending worse, about to expire, or reporting an application warning.
    Degraded,
    /// Not working; the error kind says how.
    Down,
    /// The monitor itself could not judge (our side failed). Never pages as `down`.
    Unknown,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Up,
        Outcome::Degraded,
        Outcome::Down,
        Outcome::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Up => "up",
            Outcome::Degraded => "degraded",
            Outcome::Down => "down",
            Outcome::Unknown => "unknown",
        }
    }

    /// Nagios plugin exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    pub fn nagios_code(self) -> i32 {
        match self {
            Outcome::Up => 0,
            Outcome::Degraded => 1,
            Outcome::Down => 2,
            Outcome::Unknown => 3,
        }
    }

    /// Severity order used to combine several outcomes: down > unknown > degraded > up.
    pub fn badness(self) -> u8 {
        match self {
            Outcome::Up => 0,
            Outcome::Degraded => 1,
            Outcome::Unknown => 2,
            Outcome::Down => 3,
        }
    }

    /// The worst of several outcomes (down beats unknown beats degraded beats up).
    pub fn worst(items: impl IntoIterator<Item = Outcome>) -> Option<Outcome> {
        items.into_iter().max_by_key(|o| o.badness())
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Phases of a probe, in order. Timings are reported per phase; a timeout says which phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Dns,
    Connect,
    Tls,
    Protocol,
}

impl Phase {
    pub const ALL: [Phase; 4] = [Phase::Dns, Phase::Connect, Phase::Tls, Phase::Protocol];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Dns => "dns",
            Phase::Connect => "connect",
            Phase::Tls => "tls",
            Phase::Protocol => "protocol",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a name lookup failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DnsFailure {
    /// The name does not exist.
    Nxdomain,
    /// The name exists but has no address of the wanted family.
    NoAddress,
    /// The resolver answered SERVFAIL (or REFUSED and friends).
    Servfail,
    /// The resolver did not answer in time.
    Timeout,
}

impl DnsFailure {
    pub const ALL: [DnsFailure; 4] = [
        DnsFailure::Nxdomain,
        DnsFailure::NoAddress,
        DnsFailure::Servfail,
        DnsFailure::Timeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DnsFailure::Nxdomain => "nxdomain",
            DnsFailure::NoAddress => "no_address",
            DnsFailure::Servfail => "servfail",
            DnsFailure::Timeout => "timeout",
        }
    }
}

/// How a TLS handshake or certificate check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsFailure {
    /// The handshake itself failed (alert, no common cipher, not TLS at all...).
    Handshake,
    /// The certificate's notAfter is in the past.
    Expired,
    /// The certificate's notBefore is in the future.
    NotYetValid,
    /// The certificate is not valid for the name we asked for.
    NameMismatch,
    /// The chain does not lead to a trusted root (self-signed, unknown CA, bad signature...).
    Untrusted,
}

impl TlsFailure {
    pub const ALL: [TlsFailure; 5] = [
        TlsFailure::Handshake,
        TlsFailure::Expired,
        TlsFailure::NotYetValid,
        TlsFailure::NameMismatch,
        TlsFailure::Untrusted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TlsFailure::Handshake => "handshake",
            TlsFailure::Expired => "expired",
            TlsFailure::NotYetValid => "not_yet_valid",
            TlsFailure::NameMismatch => "name_mismatch",
            TlsFailure::Untrusted => "untrusted",
        }
    }
}

/// Why a probe failed. Each has a stable code (`as_str`) and, for some, a stable sub-code
/// (`sub`): `timeout`/`connect`, `dns`/`nxdomain`, `tls`/`expired`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// TCP RST in answer to our SYN: nothing listens.
    Refused,
    /// No answer within the budget, during the given phase.
    Timeout(Phase),
    /// The peer reset an established connection.
    Reset,
    /// ICMP host unreachable (or admin-prohibited) on the way.
    HostUnreachable,
    /// ICMP network unreachable, or no route.
    NetUnreachable,
    /// Name resolution failed.
    Dns(DnsFailure),
    /// TLS handshake or certificate problem.
    Tls(TlsFailure),
    /// UDP: ICMP port unreachable, so the port is closed.
    Closed,
    /// UDP: no reply at all, so the port is open or filtered.
    NoResponse,
    /// The peer answered with bytes we did not expect.
    Protocol,
    /// The service refused our credentials.
    Auth,
    /// The service answered and said it is not well (read-only, replication broken, full...).
    Unhealthy,
    /// Our own side failed (out of file descriptors or ports, resolver unreachable...).
    Local,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Refused => "refused",
            ErrorKind::Timeout(_) => "timeout",
            ErrorKind::Reset => "reset",
            ErrorKind::HostUnreachable => "host_unreachable",
            ErrorKind::NetUnreachable => "net_unreachable",
            ErrorKind::Dns(_) => "dns",
            ErrorKind::Tls(_) => "tls",
            ErrorKind::Closed => "closed",
            ErrorKind::NoResponse => "no_response",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Auth => "auth",
            ErrorKind::Unhealthy => "unhealthy",
            ErrorKind::Local => "local",
        }
    }

    /// The sub-code: the phase of a timeout, the kind of DNS or TLS failure.
    pub fn sub(self) -> Option<&'static str> {
        match self {
            ErrorKind::Timeout(p) => Some(p.as_str()),
            ErrorKind::Dns(d) => Some(d.as_str()),
            ErrorKind::Tls(t) => Some(t.as_str()),
            _ => None,
        }
    }

    /// Every top-level code, for metrics label pre-registration and docs.
    pub const CODES: [&'static str; 13] = [
        "refused",
        "timeout",
        "reset",
        "host_unreachable",
        "net_unreachable",
        "dns",
        "tls",
        "closed",
        "no_response",
        "protocol",
        "auth",
        "unhealthy",
        "local",
    ];

    /// Rebuilds a kind from its code and sub-code (as stored or sent over the wire).
    pub fn from_codes(code: &str, sub: Option<&str>) -> Option<ErrorKind> {
        Some(match code {
            "refused" => ErrorKind::Refused,
            "timeout" => ErrorKind::Timeout(sub.and_then(Phase::parse).unwrap_or(Phase::Connect)),
            "reset" => ErrorKind::Reset,
            "host_unreachable" => ErrorKind::HostUnreachable,
            "net_unreachable" => ErrorKind::NetUnreachable,
            "dns" => ErrorKind::Dns(
                DnsFailure::ALL
                    .into_iter()
                    .find(|d| Some(d.as_str()) == sub)
                    .unwrap_or(DnsFailure::Servfail),
            ),
            "tls" => ErrorKind::Tls(
                TlsFailure::ALL
                    .into_iter()
                    .find(|t| Some(t.as_str()) == sub)
                    .unwrap_or(TlsFailure::Handshake),
            ),
            "closed" => ErrorKind::Closed,
            "no_response" => ErrorKind::NoResponse,
            "protocol" => ErrorKind::Protocol,
            "auth" => ErrorKind::Auth,
            "unhealthy" => ErrorKind::Unhealthy,
            "local" => ErrorKind::Local,
            _ => return None,
        })
    }

    /// The outcome this kind implies unless a check decides otherwise: our own failures and a
    /// silent resolver are `unknown` (they say nothing about the target), everything else `down`.
    pub fn default_outcome(self) -> Outcome {
        match self {
            ErrorKind::Local | ErrorKind::Dns(DnsFailure::Timeout) => Outcome::Unknown,
            _ => Outcome::Down,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.sub() {
            Some(sub) => write!(f, "{}/{}", self.as_str(), sub),
            None => f.write_str(self.as_str()),
        }
    }
}

/// A failure with its kind and a human message (never containing secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ProbeError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ProbeError {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for ProbeError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        let kinds = [
            ErrorKind::Refused,
            ErrorKind::Timeout(Phase::Tls),
            ErrorKind::Dns(DnsFailure::Nxdomain),
            ErrorKind::Tls(TlsFailure::NameMismatch),
            ErrorKind::NoResponse,
            ErrorKind::Local,
        ];
        for k in kinds {
            assert_eq!(ErrorKind::from_codes(k.as_str(), k.sub()), Some(k));
        }
        for code in ErrorKind::CODES {
            assert_eq!(
                ErrorKind::from_codes(code, None).map(|k| k.as_str()),
                Some(code)
            );
        }
    }

    #[test]
    fn local_is_never_down() {
        assert_eq!(ErrorKind::Local.default_outcome(), Outcome::Unknown);
        assert_eq!(ErrorKind::Refused.default_outcome(), Outcome::Down);
        assert_eq!(
            Outcome::worst([Outcome::Up, Outcome::Unknown, Outcome::Degraded]),
            Some(Outcome::Unknown)
        );
        assert_eq!(
            Outcome::worst([Outcome::Unknown, Outcome::Down]),
            Some(Outcome::Down)
        );
    }
}
