//! The context of one probe run against one address: deadline, phase timings, details.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use portwarden_core::{ErrorKind, Host, Outcome, Phase, Phases, ProbeError};
use serde_json::Value;

/// What a check reports when it did not fail.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub outcome: Outcome,
    pub note: Option<String>,
}

impl Verdict {
    pub fn up() -> Self {
        Verdict {
            outcome: Outcome::Up,
            note: None,
        }
    }

    pub fn degraded(note: impl Into<String>) -> Self {
        Verdict {
            outcome: Outcome::Degraded,
            note: Some(note.into()),
        }
    }

    /// Keeps the worse of two verdicts (degraded beats up).
    pub fn worst(self, other: Verdict) -> Verdict {
        if other.outcome.badness() > self.outcome.badness() {
            other
        } else {
            self
        }
    }
}

/// A failed check: the error and the outcome it means (usually `down`; `unknown` for our own
/// failures; a UDP `no_response` maps per `udp_no_response`).
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub error: ProbeError,
    pub outcome: Outcome,
}

impl Failure {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ProbeError::new(kind, message).into()
    }

    pub fn with_outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }
}

impl From<ProbeError> for Failure {
    fn from(error: ProbeError) -> Self {
        let outcome = error.kind.default_outcome();
        Failure { error, outcome }
    }
}

pub type CheckResult = Result<Verdict, Failure>;

/// Per-run state handed to a check.
pub struct RunCx<'a> {
    /// The address being probed.
    pub addr: SocketAddr,
    /// The host as configured (for SNI, Host headers, EHLO names).
    pub host: &'a Host,
    /// When the whole probe must be over.
    pub deadline: Instant,
    /// The budget the deadline came from (for messages).
    pub budget: Duration,
    pub phases: Phases,
    pub details: serde_json::Map<String, Value>,
}

impl<'a> RunCx<'a> {
    pub fn new(addr: SocketAddr, host: &'a Host, deadline: Instant, budget: Duration) -> Self {
        RunCx {
            addr,
            host,
            deadline,
            budget,
            phases: Phases::default(),
            details: serde_json::Map::new(),
        }
    }

    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Runs `fut` as `phase`, bounded by the deadline; adds the time spent to the phase. A
    /// deadline hit becomes `timeout` with that phase.
    pub async fn timed<T, F>(&mut self, phase: Phase, fut: F) -> Result<T, ProbeError>
    where
        F: Future<Output = Result<T, ProbeError>>,
    {
        self.timed_until(phase, self.deadline, fut).await
    }

    /// Like [`RunCx::timed`] with an earlier deadline of its own (a per-read timeout).
    pub async fn timed_until<T, F>(
        &mut self,
        phase: Phase,
        until: Instant,
        fut: F,
    ) -> Result<T, ProbeError>
    where
        F: Future<Output = Result<T, ProbeError>>,
    {
        let until = until.min(self.deadline);
        let start = Instant::now();
        let r = tokio::time::timeout_at(until.into(), fut).await;
        self.phases.add(phase, ms(start.elapsed()));
        match r {
            Ok(r) => r,
            Err(_) => Err(ProbeError::new(
                ErrorKind::Timeout(phase),
                format!(
                    "{phase} with {} timed out after {}",
                    self.addr,
                    fmt_ms(start.elapsed())
                ),
            )),
        }
    }

    pub fn detail(&mut self, key: &str, value: impl Into<Value>) {
        self.details.insert(key.to_string(), value.into());
    }
}

/// Milliseconds as a float with microsecond precision.
pub fn ms(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

pub fn fmt_ms(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.2}s", d.as_secs_f64())
    } else {
        format!("{:.1}ms", ms(d))
    }
}
