//! `ntp`: NTP servers, with an SNTP client request (RFC 4330: 48 bytes, version 4, mode 3).
//!
//! Reports `stratum`, `offset_ms` (server clock minus ours), `delay_ms` (round trip),
//! `root_delay_ms`, `root_dispersion_ms`, `root_distance_ms` (how far from true time the server
//! may be, as seen from here), `reference_id`, `leap`. Stratum 0 (kiss-of-death: `RATE`, `DENY`,
//! ...) and stratum 16 or leap indicator 3 (not synchronised) are `unhealthy`.
//! `max_offset: {warn, crit}` judges |offset|, `max_root_distance` the root distance
//! (warn → degraded, crit → unhealthy). Answers whose origin timestamp is not our transmit
//! timestamp are ignored (stale or spoofed). ICMP port unreachable → `closed`; silence →
//! `no_response` (down).
//!
//! T1 is read from the wall clock once; T4 is T1 plus the monotonic time elapsed, so a clock
//! step during the exchange cannot distort the offset.
//!
//! ```yaml
//! - name: ntp1
//!   target: ntp://10.0.0.123
//!   check: {type: ntp, max_offset: {warn: 100ms, crit: 1s}, max_root_distance: {crit: 1s}}
//! ```

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use portwarden_core::{ErrorKind, Transport};
use portwarden_wire::ntp;
use serde::{Deserialize, Serialize};

use super::common::{judge_level, protocol_error, udp_exchange_with};
use super::{Check, CheckInfo, DurationLevels};
use crate::PrepareError;
use crate::cx::{CheckResult, Failure, RunCx, Verdict};

pub static INFO: CheckInfo = CheckInfo {
    name: "ntp",
    transport: Transport::Udp,
    default_port: Some(123),
    summary: "NTP (SNTP request): stratum, clock offset, root distance; kiss-of-death and stratum 16 are unhealthy",
    options: &[
        (
            "max_offset",
            "{warn, crit} levels for |offset|, e.g. {warn: 100ms, crit: 1s}",
        ),
        (
            "max_root_distance",
            "{warn, crit} levels for the root distance",
        ),
        (
            "max_stratum",
            "stratum above this is unhealthy (default 15)",
        ),
        ("attempts", "datagrams sent before giving up (default 2)"),
    ],
};

/// `check: {type: ntp, max_offset: {warn: 100ms, crit: 1s}}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NtpCheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_offset: Option<DurationLevels>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_root_distance: Option<DurationLevels>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_stratum: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
}

impl NtpCheck {
    pub fn prepare(&self) -> Result<PreparedNtp, PrepareError> {
        let attempts = self.attempts.unwrap_or(2);
        if !(1..=10).contains(&attempts) {
            return Err(PrepareError::new("attempts", "must be between 1 and 10"));
        }
        let max_stratum = self.max_stratum.unwrap_or(15);
        if !(1..=15).contains(&max_stratum) {
            return Err(PrepareError::new("max_stratum", "must be between 1 and 15"));
        }
        Ok(PreparedNtp {
            max_offset: self.max_offset.unwrap_or_default(),
            max_root_distance: self.max_root_distance.unwrap_or_default(),
            max_stratum,
            attempts,
        })
    }
}

pub struct PreparedNtp {
    max_offset: DurationLevels,
    max_root_distance: DurationLevels,
    max_stratum: u8,
    attempts: u32,
}

fn secs_ms(s: f64) -> f64 {
    (s * 1_000_000.0).round() / 1000.0
}

impl Check for PreparedNtp {
    fn run<'a>(&'a self, cx: &'a mut RunCx<'_>) -> BoxFuture<'a, CheckResult> {
        Box::pin(async move {
            let addr = cx.addr;
            // One wall-clock reading; every later time is it plus monotonic time elapsed.
            let wall = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let mono = Instant::now();
            let now = move || ntp::ntp_timestamp(wall + mono.elapsed());
            // Each attempt carries its own transmit time; the answer's origin says which.
            let sent = std::sync::Mutex::new(Vec::with_capacity(self.attempts as usize));
            let (r, _) = udp_exchange_with(
                cx,
                |_| {
                    let t1 = now();
                    if let Ok(mut v) = sent.lock() {
                        v.push(t1);
                    }
                    ntp::request(t1).to_vec()
                },
                self.attempts,
                "an NTP request",
                |b| match ntp::parse(b) {
                    Ok(r) if sent.lock().is_ok_and(|v| v.contains(&r.origin)) => {
                        let t4 = now();
                        Ok(Some((r, t4)))
                    }
                    Ok(_) => Ok(None),
                    Err(e) => Err(protocol_error(addr, "NTP", &e, b)),
                },
            )
            .await?;
            let (resp, t4) = r;
            let t1 = resp.origin;
            cx.detail("stratum", resp.stratum);
            cx.detail("leap", resp.leap);
            cx.detail("version", resp.version);
            cx.detail("reference_id", super::common::clean(&resp.reference_text()));
            if let Some(code) = resp.kiss_code() {
                return Err(Failure::new(
                    ErrorKind::Unhealthy,
                    format!("{addr} sent a kiss-of-death ({code}): it refuses to serve time to us"),
                ));
            }
            let (offset, delay) = resp.offset_delay(t1, t4);
            let root_distance = resp.root_distance(delay);
            cx.detail("offset_ms", secs_ms(offset));
            cx.detail("delay_ms", secs_ms(delay));
            cx.detail("root_delay_ms", secs_ms(resp.root_delay));
            cx.detail("root_dispersion_ms", secs_ms(resp.root_dispersion));
            cx.detail("root_distance_ms", secs_ms(root_distance));
            if resp.unsynchronised() {
                return Err(Failure::new(
                    ErrorKind::Unhealthy,
                    format!(
                        "{addr} is not synchronised (stratum {}, leap indicator {})",
                        resp.stratum, resp.leap
                    ),
                ));
            }
            if resp.stratum > self.max_stratum {
                return Err(Failure::new(
                    ErrorKind::Unhealthy,
                    format!(
                        "{addr} is at stratum {} (max_stratum {})",
                        resp.stratum, self.max_stratum
                    ),
                ));
            }
            let dur = |s: f64| std::time::Duration::from_secs_f64(s.abs().min(1e9));
            let v1 = judge_level(
                self.max_offset.judge(dur(offset)),
                format!("clock offset {:.3}ms is over the limit", offset * 1000.0),
            )?;
            let v2 = judge_level(
                self.max_root_distance.judge(dur(root_distance)),
                format!(
                    "root distance {:.3}ms is over the limit",
                    root_distance * 1000.0
                ),
            )?;
            Ok(Verdict::worst(v1, v2))
        })
    }
}
