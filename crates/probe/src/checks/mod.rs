//! Check kinds. One module per kind, each with its config struct (what users write under
//! `check:`), its `prepare` (turning config into something ready to run, once per monitor) and
//! its executor. Adding a kind = one module + one arm in [`CheckSpec`] + one line in
//! [`CATALOGUE`].

use std::sync::Arc;

use futures::future::BoxFuture;
use portwarden_core::Transport;
use serde::{Deserialize, Serialize};

use crate::PrepareError;
use crate::cx::{CheckResult, RunCx};

pub mod amqp;
pub mod common;
pub mod dbcommon;
pub mod dns;
pub mod elasticsearch;
pub mod ftp;
pub mod imap;
pub mod kafka;
pub mod memcached;
pub mod mongodb;
pub mod mqtt;
pub mod mysql;
pub mod nats;
pub mod ntp;
pub mod pop3;
pub mod postgres;
pub mod redis;
pub mod send_expect;
pub mod smtp;
pub mod snmp;
pub mod ssh;
pub mod tcp;
pub mod textproto;
pub mod tls;
pub mod udp;

/// What `--list-checks` and the docs say about a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CheckInfo {
    /// The `type:` value and URL scheme.
    pub name: &'static str,
    pub transport: Transport,
    /// Port used when a target omits it (`redis://cache` → 6379).
    pub default_port: Option<u16>,
    pub summary: &'static str,
    /// `(option, description)` pairs.
    pub options: &'static [(&'static str, &'static str)],
}

/// Every kind, in `--list-checks` order.
pub static CATALOGUE: &[&CheckInfo] = &[
    &tcp::INFO,
    &udp::INFO,
    &tls::INFO,
    &send_expect::INFO,
    &postgres::INFO,
    &mysql::INFO,
    &redis::INFO,
    &mongodb::INFO,
    &memcached::INFO,
    &elasticsearch::INFO,
    &amqp::INFO,
    &kafka::INFO,
    &nats::INFO,
    &mqtt::INFO,
    &ssh::INFO,
    &smtp::INFO,
    &imap::INFO,
    &pop3::INFO,
    &ftp::INFO,
    &dns::INFO,
    &ntp::INFO,
    &snmp::INFO,
];

/// Finds a kind by name (`tcp`, `send_expect`, ...).
pub fn info(name: &str) -> Option<&'static CheckInfo> {
    CATALOGUE.iter().copied().find(|i| i.name == name)
}

/// A check as configured: `check: {type: tls, expiry_warn_days: 30}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckSpec {
    Tcp(tcp::TcpCheck),
    Udp(udp::UdpCheck),
    Tls(tls::TlsCheck),
    SendExpect(send_expect::SendExpectCheck),
    Postgres(postgres::PostgresCheck),
    Mysql(mysql::MysqlCheck),
    Redis(redis::RedisCheck),
    Mongodb(mongodb::MongodbCheck),
    Memcached(memcached::MemcachedCheck),
    Elasticsearch(elasticsearch::ElasticsearchCheck),
    Amqp(amqp::AmqpCheck),
    Kafka(kafka::KafkaCheck),
    Nats(nats::NatsCheck),
    Mqtt(mqtt::MqttCheck),
    Ssh(ssh::SshCheck),
    Smtp(smtp::SmtpCheck),
    Imap(imap::ImapCheck),
    Pop3(pop3::Pop3Check),
    Ftp(ftp::FtpCheck),
    Dns(dns::DnsCheck),
    Ntp(ntp::NtpCheck),
    Snmp(snmp::SnmpCheck),
}

impl CheckSpec {
    pub fn info(&self) -> &'static CheckInfo {
        match self {
            CheckSpec::Tcp(_) => &tcp::INFO,
            CheckSpec::Udp(_) => &udp::INFO,
            CheckSpec::Tls(_) => &tls::INFO,
            CheckSpec::SendExpect(_) => &send_expect::INFO,
            CheckSpec::Postgres(_) => &postgres::INFO,
            CheckSpec::Mysql(_) => &mysql::INFO,
            CheckSpec::Redis(_) => &redis::INFO,
            CheckSpec::Mongodb(_) => &mongodb::INFO,
            CheckSpec::Memcached(_) => &memcached::INFO,
            CheckSpec::Elasticsearch(_) => &elasticsearch::INFO,
            CheckSpec::Amqp(_) => &amqp::INFO,
            CheckSpec::Kafka(_) => &kafka::INFO,
            CheckSpec::Nats(_) => &nats::INFO,
            CheckSpec::Mqtt(_) => &mqtt::INFO,
            CheckSpec::Ssh(_) => &ssh::INFO,
            CheckSpec::Smtp(_) => &smtp::INFO,
            CheckSpec::Imap(_) => &imap::INFO,
            CheckSpec::Pop3(_) => &pop3::INFO,
            CheckSpec::Ftp(_) => &ftp::INFO,
            CheckSpec::Dns(_) => &dns::INFO,
            CheckSpec::Ntp(_) => &ntp::INFO,
            CheckSpec::Snmp(_) => &snmp::INFO,
        }
    }

    pub fn kind(&self) -> &'static str {
        self.info().name
    }

    /// The transport this check uses on the wire.
    pub fn transport(&self) -> Transport {
        match self {
            CheckSpec::SendExpect(c) => c.transport(),
            CheckSpec::Dns(c) => c.transport(),
            other => other.info().transport,
        }
    }

    /// The default check for a URL scheme (`tcp://`, `udp://`, `tls://`, ...).
    pub fn for_scheme(scheme: &str) -> Option<CheckSpec> {
        Some(match scheme {
            "tcp" => CheckSpec::Tcp(Default::default()),
            "udp" => CheckSpec::Udp(Default::default()),
            "tls" => CheckSpec::Tls(Default::default()),
            "postgres" | "postgresql" => CheckSpec::Postgres(Default::default()),
            "mysql" | "mariadb" => CheckSpec::Mysql(Default::default()),
            "redis" => CheckSpec::Redis(Default::default()),
            "mongodb" => CheckSpec::Mongodb(Default::default()),
            "memcached" => CheckSpec::Memcached(Default::default()),
            "elasticsearch" => CheckSpec::Elasticsearch(Default::default()),
            "amqp" => CheckSpec::Amqp(Default::default()),
            "kafka" => CheckSpec::Kafka(Default::default()),
            "nats" => CheckSpec::Nats(Default::default()),
            "mqtt" => CheckSpec::Mqtt(Default::default()),
            "ssh" => CheckSpec::Ssh(Default::default()),
            "smtp" => CheckSpec::Smtp(Default::default()),
            "imap" => CheckSpec::Imap(Default::default()),
            "pop3" => CheckSpec::Pop3(Default::default()),
            "ftp" => CheckSpec::Ftp(Default::default()),
            "dns" => CheckSpec::Dns(Default::default()),
            "ntp" => CheckSpec::Ntp(Default::default()),
            "snmp" => CheckSpec::Snmp(Default::default()),
            _ => return None,
        })
    }

    /// Turns the config into a ready-to-run check: compiles regexes, decodes payloads, loads
    /// CA files. Done once per monitor (and again on reload), never per run.
    pub fn prepare(&self) -> Result<Arc<dyn Check>, PrepareError> {
        Ok(match self {
            CheckSpec::Tcp(c) => Arc::new(c.prepare()?),
            CheckSpec::Udp(c) => Arc::new(c.prepare()?),
            CheckSpec::Tls(c) => Arc::new(c.prepare()?),
            CheckSpec::SendExpect(c) => Arc::new(c.prepare()?),
            CheckSpec::Postgres(c) => Arc::new(c.prepare()?),
            CheckSpec::Mysql(c) => Arc::new(c.prepare()?),
            CheckSpec::Redis(c) => Arc::new(c.prepare()?),
            CheckSpec::Mongodb(c) => Arc::new(c.prepare()?),
            CheckSpec::Memcached(c) => Arc::new(c.prepare()?),
            CheckSpec::Elasticsearch(c) => Arc::new(c.prepare()?),
            CheckSpec::Amqp(c) => Arc::new(c.prepare()?),
            CheckSpec::Kafka(c) => Arc::new(c.prepare()?),
            CheckSpec::Nats(c) => Arc::new(c.prepare()?),
            CheckSpec::Mqtt(c) => Arc::new(c.prepare()?),
            CheckSpec::Ssh(c) => Arc::new(c.prepare()?),
            CheckSpec::Smtp(c) => Arc::new(c.prepare()?),
            CheckSpec::Imap(c) => Arc::new(c.prepare()?),
            CheckSpec::Pop3(c) => Arc::new(c.prepare()?),
            CheckSpec::Ftp(c) => Arc::new(c.prepare()?),
            CheckSpec::Dns(c) => Arc::new(c.prepare()?),
            CheckSpec::Ntp(c) => Arc::new(c.prepare()?),
            CheckSpec::Snmp(c) => Arc::new(c.prepare()?),
        })
    }

    /// Warnings about a config that is valid but probably not what the user wants.
    pub fn warnings(&self) -> Vec<String> {
        match self {
            CheckSpec::Udp(c) => c.warnings(),
            _ => Vec::new(),
        }
    }
}

/// A prepared, ready-to-run check.
pub trait Check: Send + Sync {
    /// Probes `cx.addr` within `cx.deadline`, recording phases and details in `cx`.
    fn run<'a>(&'a self, cx: &'a mut RunCx<'_>) -> BoxFuture<'a, CheckResult>;
}

/// Warning and critical levels for a measured value (replication lag, pool use...):
/// at or above `warn` → degraded; at or above `crit` → down with `unhealthy`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PercentLevels {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warn: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crit: Option<f64>,
}

/// The same for durations written as `10s`, `2m`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DurationLevels {
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub warn: Option<std::time::Duration>,
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub crit: Option<std::time::Duration>,
}

/// Where a measured value falls against its levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevelHit {
    Ok,
    Warn,
    Crit,
}

impl PercentLevels {
    pub fn judge(&self, v: f64) -> LevelHit {
        judge(v, self.warn, self.crit)
    }
}

impl DurationLevels {
    pub fn judge(&self, v: std::time::Duration) -> LevelHit {
        judge(v, self.warn, self.crit)
    }
}

fn judge<T: PartialOrd>(v: T, warn: Option<T>, crit: Option<T>) -> LevelHit {
    if crit.is_some_and(|c| v >= c) {
        LevelHit::Crit
    } else if warn.is_some_and(|w| v >= w) {
        LevelHit::Warn
    } else {
        LevelHit::Ok
    }
}

/// Serde helper: `Option<Duration>` fields written as `500ms`, `2s`.
pub(crate) mod opt_duration {
    pub use portwarden_core::duration::serde_human::option::{deserialize, serialize};
}
