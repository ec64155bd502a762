//! `dns`: DNS servers over UDP (default) or TCP.
//!
//! Sends one query (`name`, `type`, recursion desired unless `recursion: false`) and judges the
//! answer: its response code must be `rcode` (default `NOERROR`) — SERVFAIL, REFUSED or any
//! other code is `unhealthy` with the code in the message — and, when `answer` /
//! `answer_regex` is set, one answer record's data must match. An answer with the TC bit over
//! UDP is asked again over TCP. Reports `rcode`, `answers`, `answer_count`, `rtt_ms`,
//! `authoritative`, `recursion_available`; `max_rtt: {warn, crit}` judges the round trip.
//! ICMP port unreachable is `closed`; silence is `no_response` (down). Messages are hickory-proto's.
//!
//! ```yaml
//! - name: resolver
//!   target: dns://10.0.0.53
//!   check: {type: dns, name: www.example.com, query_type: A, max_rtt: {warn: 200ms}}
//! - name: auth-ns
//!   target: dns://ns1.example.com
//!   check: {type: dns, name: example.com, query_type: SOA, recursion: false, transport: tcp}
//! ```

use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use portwarden_core::{ErrorKind, Transport};
use portwarden_wire::dns::{self, Summary};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::common::{clean, judge_level, read_msg, send, udp_exchange};
use super::{Check, CheckInfo, DurationLevels};
use crate::cx::{CheckResult, Failure, RunCx, ms};
use crate::{PrepareError, net};

pub static INFO: CheckInfo = CheckInfo {
    name: "dns",
    transport: Transport::Udp,
    default_port: Some(53),
    summary: "DNS query over UDP or TCP: expected rcode (default NOERROR), optional answer match, RTT",
    options: &[
        ("name", "name to query (default `.`)"),
        (
            "query_type",
            "record type: A, AAAA, MX, TXT, NS, SOA, ... (default A; NS for `.`)",
        ),
        ("transport", "udp (default) | tcp"),
        ("recursion", "set the RD bit (default true)"),
        (
            "rcode",
            "expected response code (default NOERROR; e.g. NXDOMAIN)",
        ),
        (
            "answer",
            "one answer's data must equal this (e.g. 10.0.0.1)",
        ),
        (
            "answer_regex",
            "one answer's data must match this regular expression",
        ),
        (
            "max_rtt",
            "{warn, crit} round-trip levels, e.g. {warn: 100ms, crit: 1s}",
        ),
        (
            "attempts",
            "UDP datagrams sent before giving up (default 2)",
        ),
    ],
};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsTransport {
    #[default]
    Udp,
    Tcp,
}

/// `check: {type: dns, name: x.test, query_type: A, answer: 10.0.0.1}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsCheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<DnsTransport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recursion: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rtt: Option<DurationLevels>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
}

impl DnsCheck {
    pub fn transport(&self) -> Transport {
        match self.transport.unwrap_or_default() {
            DnsTransport::Udp => Transport::Udp,
            DnsTransport::Tcp => Transport::Tcp,
        }
    }

    pub fn prepare(&self) -> Result<PreparedDns, PrepareError> {
        let name = self.name.clone().unwrap_or_else(|| ".".into());
        let qtype = self
            .query_type
            .clone()
            .unwrap_or_else(|| if name == "." { "NS".into() } else { "A".into() });
        // Validate name and type once by building a query.
        dns::query(0, &name, &qtype, true).map_err(|e| match e {
            dns::QueryError::Type(_) => PrepareError::new("query_type", e.to_string()),
            _ => PrepareError::new("name", e.to_string()),
        })?;
        let rcode = match &self.rcode {
            None => 0,
            Some(r) => dns::parse_rcode(r).ok_or_else(|| {
                PrepareError::new(
                    "rcode",
                    format!("`{r}` is not a DNS response code (NOERROR, NXDOMAIN, SERVFAIL, REFUSED, ...)"),
                )
            })?,
        };
        if self.answer.is_some() && self.answer_regex.is_some() {
            return Err(PrepareError::new(
                "answer_regex",
                "set either `answer` or `answer_regex`",
            ));
        }
        let answer_regex = match &self.answer_regex {
            None => None,
            Some(r) => Some(
                regex::RegexBuilder::new(r)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| {
                        PrepareError::new(
                            "answer_regex",
                            format!("invalid regular expression: {e}"),
                        )
                    })?,
            ),
        };
        let attempts = self.attempts.unwrap_or(2);
        if !(1..=10).contains(&attempts) {
            return Err(PrepareError::new("attempts", "must be between 1 and 10"));
        }
        Ok(PreparedDns {
            name,
            qtype,
            tcp: self.transport == Some(DnsTransport::Tcp),
            recursion: self.recursion.unwrap_or(true),
            rcode,
            answer: self.answer.clone(),
            answer_regex,
            max_rtt: self.max_rtt.unwrap_or_default(),
            attempts,
        })
    }
}

pub struct PreparedDns {
    name: String,
    qtype: String,
    tcp: bool,
    recursion: bool,
    rcode: u16,
    answer: Option<String>,
    answer_regex: Option<regex::Regex>,
    max_rtt: DurationLevels,
    attempts: u32,
}

fn random_id() -> u16 {
    let mut b = [0u8; 2];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    u16::from_be_bytes(b)
}

impl PreparedDns {
    fn query(&self, id: u16) -> Result<Vec<u8>, Failure> {
        dns::query(id, &self.name, &self.qtype, self.recursion)
            .map_err(|e| Failure::new(ErrorKind::Local, e.to_string()))
    }

    async fn over_udp(&self, cx: &mut RunCx<'_>) -> Result<(Summary, Duration), Failure> {
        let id = random_id();
        let q = self.query(id)?;
        let addr = cx.addr;
        udp_exchange(cx, &q, self.attempts, "a DNS query", |b| {
            // Another id: a late answer to an earlier query; keep waiting.
            if dns::message_id(b).is_some_and(|i| i != id) {
                return Ok(None);
            }
            dns::parse_response(b, id)
                .map(Some)
                .map_err(|e| super::common::protocol_error(addr, "DNS", &e, b))
        })
        .await
    }

    async fn over_tcp(&self, cx: &mut RunCx<'_>) -> Result<(Summary, Duration), Failure> {
        let id = random_id();
        let q = dns::tcp_frame(&self.query(id)?);
        let mut s = net::connect_tcp(cx).await?;
        let start = Instant::now();
        send(cx, &mut s, &q).await?;
        let mut buf = Vec::new();
        let msg = read_msg(
            cx,
            &mut s,
            &mut buf,
            dns::MAX_MESSAGE + 2,
            "DNS",
            "a DNS answer",
            |b| Ok(dns::split_tcp(b).map(|(m, n)| (m.to_vec(), n))),
        )
        .await?;
        let rtt = start.elapsed();
        let summary = dns::parse_response(&msg, id)
            .map_err(|e| super::common::protocol_error(cx.addr, "DNS", &e, &msg))?;
        Ok((summary, rtt))
    }
}

impl Check for PreparedDns {
    fn run<'a>(&'a self, cx: &'a mut RunCx<'_>) -> BoxFuture<'a, CheckResult> {
        Box::pin(async move {
            let addr = cx.addr;
            let (mut s, mut rtt) = if self.tcp {
                self.over_tcp(cx).await?
            } else {
                self.over_udp(cx).await?
            };
            let mut transport = if self.tcp { "tcp" } else { "udp" };
            if s.truncated && !self.tcp {
                cx.detail("truncated_udp", true);
                (s, rtt) = self.over_tcp(cx).await?;
                transport = "tcp";
            }
            cx.detail("dns_transport", transport);
            cx.detail("rtt_ms", ms(rtt));
            cx.detail("rcode", dns::rcode_name(s.rcode));
            cx.detail("authoritative", s.authoritative);
            cx.detail("recursion_available", s.recursion_available);
            cx.detail("answer_count", s.answer_count);
            let answers: Vec<String> = s.answers.iter().map(|a| clean(&a.data)).collect();
            cx.detail("answers", json!(answers));
            if s.rcode != self.rcode {
                return Err(Failure::new(
                    ErrorKind::Unhealthy,
                    format!(
                        "{addr} answered {} {} with {} (expected {})",
                        self.name,
                        self.qtype,
                        dns::rcode_name(s.rcode),
                        dns::rcode_name(self.rcode)
                    ),
                ));
            }
            let matched = match (&self.answer, &self.answer_regex) {
                (Some(want), _) => s
                    .answers
                    .iter()
                    .any(|a| a.data.trim_end_matches('.') == want.trim_end_matches('.')),
                (_, Some(re)) => s.answers.iter().any(|a| re.is_match(&a.data)),
                _ => true,
            };
            if !matched {
                let want = self
                    .answer
                    .clone()
                    .or_else(|| {
                        self.answer_regex
                            .as_ref()
                            .map(|r| format!("/{}/", r.as_str()))
                    })
                    .unwrap_or_default();
                return Err(Failure::new(
                    ErrorKind::Unhealthy,
                    format!(
                        "{addr}: no answer for {} {} matches {} (got [{}])",
                        self.name,
                        self.qtype,
                        clean(&want),
                        answers.join(", ")
                    ),
                ));
            }
            judge_level(
                self.max_rtt.judge(rtt),
                format!("DNS round trip {:.1}ms is over the limit", ms(rtt)),
            )
        })
    }
}
