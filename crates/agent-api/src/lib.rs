//! The contract between `portwarden agent` and the server: serde types and the version rule,
//! nothing else (no I/O, no tokio). Both sides depend on this crate, so a change here is a
//! change of the protocol: add fields with `#[serde(default)]`, and bump [`API_VERSION`] only
//! for changes an older peer cannot ignore.
//!
//! ```
//! use portwarden_agent_api::{negotiate, API_VERSION};
//! assert_eq!(negotiate(API_VERSION), Ok(API_VERSION));
//! assert!(negotiate(API_VERSION + 1).is_err());
//! ```
//!
//! The flow (all over HTTPS, `Authorization: Bearer <agent token>`, header
//! [`VERSION_HEADER`] on every request):
//! 1. `POST` [`PATH_HEARTBEAT`] with a [`Heartbeat`] every few seconds → [`HeartbeatReply`]:
//!    the negotiated version, the server's clock (for the offset), the assignment version and
//!    the last sequence number the server committed for this agent's stream.
//! 2. `GET` [`PATH_ASSIGNMENT`] when the version changed → [`Assignment`]: the monitors this
//!    agent probes (only its own, with only the secrets those need).
//! 3. `POST` [`PATH_OBSERVATIONS`] with an [`ObservationBatch`] → [`IngestReply`]. Batches
//!    carry consecutive sequence numbers per stream; the server stores each (agent, stream,
//!    sequence) once and answers a repeat with `duplicate: true`, so an agent that did not see
//!    the answer simply sends the batch again.

use chrono::{DateTime, Utc};
use portwarden_core::Observation;
use serde::{Deserialize, Serialize};

/// The protocol version this build speaks.
pub const API_VERSION: u32 = 1;
/// The oldest version this build still accepts.
pub const MIN_API_VERSION: u32 = 1;
/// Request header carrying the sender's protocol version.
pub const VERSION_HEADER: &str = "x-portwarden-agent-api";

pub const PATH_HEARTBEAT: &str = "/agent/v1/heartbeat";
pub const PATH_ASSIGNMENT: &str = "/agent/v1/assignment";
pub const PATH_OBSERVATIONS: &str = "/agent/v1/observations";

/// Largest batch body the server accepts (bytes). Agents split bigger uploads.
pub const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// Why two peers cannot talk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error(
        "agent API version {0} is older than the oldest this server accepts ({MIN_API_VERSION}); upgrade the agent"
    )]
    TooOld(u32),
    #[error(
        "agent API version {0} is newer than this server speaks ({API_VERSION}); upgrade the server first"
    )]
    TooNew(u32),
}

/// The version both sides use when a peer says it speaks `theirs`.
pub fn negotiate(theirs: u32) -> Result<u32, VersionError> {
    if theirs < MIN_API_VERSION {
        Err(VersionError::TooOld(theirs))
    } else if theirs > API_VERSION {
        Err(VersionError::TooNew(theirs))
    } else {
        Ok(theirs.min(API_VERSION))
    }
}

/// What an agent says about itself, every heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The agent's build (`portwarden --version`).
    pub agent_version: String,
    /// The location the agent was started with; must match the server's record of it.
    pub location: String,
    /// The agent's identity for de-duplication: random, kept in its data directory.
    pub stream: String,
    /// The agent's wall clock when it sent this (uncorrected), for the offset.
    pub sent_at: DateTime<Utc>,
    /// The offset the agent currently applies to its timestamps (ms, server − agent).
    #[serde(default)]
    pub clock_offset_ms: f64,
    /// Observations waiting in the agent's queue (not yet acknowledged).
    #[serde(default)]
    pub queued: u64,
    /// Start time (corrected) of the oldest queued observation.
    #[serde(default)]
    pub oldest_queued_at: Option<DateTime<Utc>>,
    /// The assignment version the agent runs.
    #[serde(default)]
    pub assignment_version: String,
    /// Monitors the agent is running right now.
    #[serde(default)]
    pub running: u64,
    /// The agent engine's p99 lateness over the last minute (ms).
    #[serde(default)]
    pub lateness_p99_ms: f64,
}

/// The server's answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// The version both sides speak.
    pub api_version: u32,
    /// The agent's name on the server.
    pub agent: String,
    pub location: String,
    /// The server's wall clock when it received the heartbeat.
    pub received_at: DateTime<Utc>,
    /// The server's wall clock when it answered.
    pub replied_at: DateTime<Utc>,
    /// The current assignment's version; fetch [`PATH_ASSIGNMENT`] when it differs.
    pub assignment_version: String,
    /// The highest sequence number committed for the agent's stream (0: none).
    pub last_seq: u64,
    /// How often the server wants heartbeats (ms).
    pub heartbeat_every_ms: u64,
}

/// A monitor as an agent runs it: what to probe, how and how often. Judging (rules,
/// severity, routes) stays on the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssignedMonitor {
    pub name: String,
    /// `tcp://host:port` (with the default port filled in).
    pub target: String,
    /// The check as configured (`{"redis": {...}}`), secrets included: only the secrets this
    /// agent's own probes need ever travel, and only in this message.
    pub check: serde_json::Value,
    pub tier: String,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// `first` or `all` addresses of the target's name.
    pub addresses: String,
}

/// The monitors one agent probes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    /// Changes whenever the content changes.
    pub version: String,
    pub agent: String,
    pub location: String,
    pub monitors: Vec<AssignedMonitor>,
}

/// One run of one monitor: its observations (one per address probed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub monitor: String,
    pub observations: Vec<Observation>,
}

/// A batch of runs, in the order they finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservationBatch {
    pub stream: String,
    /// 1, 2, 3, ... per stream, without gaps.
    pub seq: u64,
    pub runs: Vec<Run>,
}

/// The server's answer to a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestReply {
    /// True when the batch had been committed before: nothing was stored twice.
    pub duplicate: bool,
    /// The highest committed sequence number of the stream.
    pub last_seq: u64,
    /// Observations stored from this batch.
    pub stored: u64,
}

/// The body of every non-2xx answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
    pub detail: String,
}

/// NTP-style offset (server − agent, ms) from one exchange: `t0` agent send, `t1` server
/// receive, `t2` server reply, `t3` agent receive. Also returns the round trip (ms).
pub fn clock_offset(
    t0: DateTime<Utc>,
    t1: DateTime<Utc>,
    t2: DateTime<Utc>,
    t3: DateTime<Utc>,
) -> (f64, f64) {
    let ms = |d: chrono::Duration| d.num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0;
    let offset = (ms(t1 - t0) + ms(t2 - t3)) / 2.0;
    let rtt = ms(t3 - t0) - ms(t2 - t1);
    (offset, rtt.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_rule() {
        assert_eq!(negotiate(1), Ok(1));
        assert_eq!(negotiate(0), Err(VersionError::TooOld(0)));
        assert_eq!(negotiate(2), Err(VersionError::TooNew(2)));
    }

    #[test]
    fn offset_of_a_skewed_clock() {
        let t0 = DateTime::from_timestamp_millis(1_000_000).unwrap();
        // The server is 5 s ahead; 10 ms each way; 2 ms inside the server.
        let t1 = t0 + chrono::Duration::milliseconds(5_010);
        let t2 = t1 + chrono::Duration::milliseconds(2);
        let t3 = t0 + chrono::Duration::milliseconds(22);
        let (off, rtt) = clock_offset(t0, t1, t2, t3);
        assert!((off - 5_000.0).abs() < 0.01, "{off}");
        assert!((rtt - 20.0).abs() < 0.01, "{rtt}");
    }

    #[test]
    fn batches_round_trip() {
        let b = ObservationBatch {
            stream: "s".into(),
            seq: 3,
            runs: vec![],
        };
        let j = serde_json::to_string(&b).unwrap();
        assert_eq!(serde_json::from_str::<ObservationBatch>(&j).unwrap(), b);
    }
}
