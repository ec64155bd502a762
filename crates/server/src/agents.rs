//! The server's side of probe agents: who they are (`agents:` in config, tokens hashed),
//! what each one probes (assignment: the monitors of its location, shared among the
//! location's live agents by rendezvous hashing), the upload endpoint (exactly once per
//! (agent, stream, sequence), then judged like local results), and who went silent.
//!
//! Agent routes live under `/agent/v1/` and authenticate with the agent's own token, never
//! with a user's; user routes never accept an agent token.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use portwarden_agent_api as wire;
use portwarden_config::{AgentEntry, Monitor};
use portwarden_store::{IngestBatch, Record, RemoteRun};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use serde::Serialize;

use crate::AppState;
use crate::auth::{constant_eq, sha256_hex};

/// What the server knows about one agent: a mirror of the store's `agent_status` (which
/// every replica writes and reads), refreshed every second and updated at once by this
/// replica's own requests.
#[derive(Debug, Clone, Default)]
struct Live {
    last_contact: Option<DateTime<Utc>>,
    hb: HeartbeatState,
    last_batch_at: Option<DateTime<Utc>>,
    last_seq: u64,
    lag_ms: Option<f64>,
    observations: u64,
    duplicates: u64,
}

/// What the agent said in its last heartbeat (stored as JSON in `agent_status.heartbeat`).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
#[serde(default)]
struct HeartbeatState {
    version: String,
    stream: String,
    clock_offset_ms: f64,
    queued: u64,
    oldest_queued_at: Option<DateTime<Utc>>,
    assignment_version: String,
    running: u64,
    lateness_p99_ms: f64,
    address: String,
}

impl Live {
    fn from_status(st: &portwarden_store::AgentStatus) -> Live {
        Live {
            last_contact: st.last_contact,
            hb: st
                .heartbeat
                .clone()
                .and_then(|h| serde_json::from_value(h).ok())
                .unwrap_or_default(),
            last_batch_at: st.last_batch_at,
            last_seq: st.last_seq,
            lag_ms: st.lag_ms,
            observations: st.observations,
            duplicates: st.duplicates,
        }
    }
}

struct Registry {
    entries: Vec<AgentEntry>,
    all_locations: Vec<String>,
    silent_after: Duration,
    live: HashMap<String, Live>,
    /// Per agent: (cache key, assignment).
    cache: HashMap<String, (u64, Arc<wire::Assignment>)>,
    started: Instant,
    /// The silent locations last told to the engine.
    pushed: Option<(Vec<String>, Vec<String>)>,
    /// Agents must present a client certificate verified against `server.tls.client_ca`.
    client_cert_required: bool,
    /// ... that names them (`server.tls.bind_agent_names`).
    bind_agent_names: bool,
}

fn client_cert_required(config: &portwarden_config::Config) -> bool {
    config.server.tls.as_ref().is_some_and(|t| {
        t.client_ca.is_some() && t.client_auth != portwarden_config::ClientAuth::Optional
    })
}

fn bind_agent_names(config: &portwarden_config::Config) -> bool {
    client_cert_required(config)
        && config
            .server
            .tls
            .as_ref()
            .is_some_and(|t| t.bind_agent_names)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AgentLabels {
    pub agent: String,
    pub location: String,
}

/// Agent metrics (`portwarden_agent_*`).
#[derive(Clone)]
pub struct AgentMetrics {
    pub up: Family<AgentLabels, Gauge>,
    pub last_contact: Family<AgentLabels, Gauge>,
    pub queued: Family<AgentLabels, Gauge>,
    pub ingest_lag: Histogram,
    pub batches: prometheus_client::metrics::counter::Counter,
    pub duplicates: prometheus_client::metrics::counter::Counter,
    pub rejected: prometheus_client::metrics::counter::Counter,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        AgentMetrics {
            up: Family::default(),
            last_contact: Family::default(),
            queued: Family::default(),
            ingest_lag: Histogram::new([
                0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 120.0, 600.0,
            ]),
            batches: Default::default(),
            duplicates: Default::default(),
            rejected: Default::default(),
        }
    }
}

impl AgentMetrics {
    pub fn register(&self, r: &mut prometheus_client::registry::Registry) {
        r.register(
            "portwarden_agent_up",
            "1 while the agent reports, 0 when silent",
            self.up.clone(),
        );
        r.register(
            "portwarden_agent_last_contact_timestamp_seconds",
            "When the agent last reached the server (unix seconds)",
            self.last_contact.clone(),
        );
        r.register(
            "portwarden_agent_queued_observations",
            "Observations waiting in the agent's on-disk queue (as it last said)",
            self.queued.clone(),
        );
        r.register(
            "portwarden_agent_ingest_lag_seconds",
            "From the end of the oldest probe in a batch to the batch being stored",
            self.ingest_lag.clone(),
        );
        r.register(
            "portwarden_agent_batches",
            "Observation batches stored",
            self.batches.clone(),
        );
        r.register(
            "portwarden_agent_duplicate_batches",
            "Batches received again and not stored twice",
            self.duplicates.clone(),
        );
        r.register(
            "portwarden_agent_rejected_requests",
            "Agent requests refused (bad token, version, location or body)",
            self.rejected.clone(),
        );
    }
}

/// Every enrolled agent and what it is doing.
pub struct Agents {
    reg: RwLock<Registry>,
    pub metrics: AgentMetrics,
}

/// One agent in `/api/v1/agents`.
#[derive(Debug, Clone, Serialize)]
pub struct AgentView {
    pub name: String,
    pub location: String,
    /// `ok`, `silent`, `never_seen` or `revoked`.
    pub status: &'static str,
    pub last_contact: Option<DateTime<Utc>>,
    pub version: Option<String>,
    /// From the end of a probe to its result being stored, for the last batch (ms).
    pub lag_ms: Option<f64>,
    /// Observations waiting in the agent's queue.
    pub queued: u64,
    pub oldest_queued_at: Option<DateTime<Utc>>,
    /// Server clock minus agent clock (ms), corrected in the agent's timestamps.
    pub clock_offset_ms: f64,
    pub lateness_p99_ms: f64,
    pub assignment_version: Option<String>,
    /// How many monitors it is assigned now.
    pub assigned: usize,
    pub running: u64,
    pub last_batch_at: Option<DateTime<Utc>>,
    pub last_seq: u64,
    pub observations: u64,
    pub duplicate_batches: u64,
    pub address: Option<String>,
    /// Monitor names (only in `/api/v1/agents/{name}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitors: Option<Vec<String>>,
}

/// Rendezvous (highest random weight) hash: the agent with the largest weight owns the
/// monitor, so an agent joining or leaving moves only its own share.
fn weight(agent: &str, monitor: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in agent.bytes().chain([0u8]).chain(monitor.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Finalise (splitmix64) so similar names spread.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The agent among `peers` that probes `monitor`.
pub fn owner<'a>(peers: &[&'a str], monitor: &str) -> Option<&'a str> {
    peers
        .iter()
        .copied()
        .max_by_key(|p| (weight(p, monitor), *p))
}

fn fnv(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Agents {
    pub fn new(config: &portwarden_config::Config) -> Agents {
        Agents {
            reg: RwLock::new(Registry {
                entries: config.agents.clone(),
                all_locations: config.all_locations(),
                silent_after: config.server.agent_silent_after,
                live: HashMap::new(),
                cache: HashMap::new(),
                started: Instant::now(),
                pushed: None,
                client_cert_required: client_cert_required(config),
                bind_agent_names: bind_agent_names(config),
            }),
            metrics: AgentMetrics::default(),
        }
    }

    /// Follows a reloaded config: new, removed and revoked agents take effect at once.
    pub fn update(&self, config: &portwarden_config::Config) {
        let mut r = self.reg.write().unwrap_or_else(|p| p.into_inner());
        r.entries = config.agents.clone();
        r.all_locations = config.all_locations();
        r.silent_after = config.server.agent_silent_after;
        r.client_cert_required = client_cert_required(config);
        r.bind_agent_names = bind_agent_names(config);
        r.cache.clear();
        let names: HashSet<String> = r.entries.iter().map(|a| a.name.clone()).collect();
        r.live.retain(|n, _| names.contains(n));
        r.pushed = None;
    }

    /// The enrolled, not revoked agent whose token hashes to `token`'s hash.
    fn by_token(&self, token: &str) -> Option<AgentEntry> {
        let hash = sha256_hex(token);
        let r = self.reg.read().unwrap_or_else(|p| p.into_inner());
        // Compare against every entry (no early exit on a match position).
        let mut found = None;
        for a in &r.entries {
            if constant_eq(&a.token_sha256, &hash) && !a.revoked {
                found = Some(a.clone());
            }
        }
        found
    }

    fn is_alive(r: &Registry, name: &str, now: DateTime<Utc>) -> bool {
        r.live
            .get(name)
            .and_then(|l| l.last_contact)
            .is_some_and(|t| (now - t).to_std().unwrap_or_default() < r.silent_after)
    }

    /// Takes the store's view of every agent (written by whichever replica each agent talks
    /// to). A newer contact seen here first is kept.
    fn refresh(&self, rows: &[portwarden_store::AgentStatus]) {
        let mut r = self.reg.write().unwrap_or_else(|p| p.into_inner());
        let enrolled: HashSet<String> = r.entries.iter().map(|a| a.name.clone()).collect();
        for st in rows.iter().filter(|st| enrolled.contains(&st.agent)) {
            let mut l = Live::from_status(st);
            if let Some(mine) = r.live.get(&st.agent) {
                l.last_contact = l.last_contact.max(mine.last_contact);
                l.last_batch_at = l.last_batch_at.max(mine.last_batch_at);
                l.last_seq = l.last_seq.max(mine.last_seq);
                l.observations = l.observations.max(mine.observations);
                l.duplicates = l.duplicates.max(mine.duplicates);
            }
            r.live.insert(st.agent.clone(), l);
        }
    }

    /// Live agents of `location` (sorted), with `me` counted as live.
    fn peers(r: &Registry, location: &str, me: &str, now: DateTime<Utc>) -> Vec<String> {
        let mut v: Vec<String> = r
            .entries
            .iter()
            .filter(|a| !a.revoked && a.location == location)
            .filter(|a| a.name == me || Self::is_alive(r, &a.name, now))
            .map(|a| a.name.clone())
            .collect();
        v.sort();
        v
    }

    /// The monitors `agent` probes now (cached until the monitor list or its peers change).
    pub fn assignment(
        &self,
        engine: &portwarden_engine::Engine,
        agent: &AgentEntry,
    ) -> Arc<wire::Assignment> {
        let now = Utc::now();
        let list_version = engine.list_version();
        let (peers, all) = {
            let r = self.reg.read().unwrap_or_else(|p| p.into_inner());
            (
                Self::peers(&r, &agent.location, &agent.name, now),
                r.all_locations.clone(),
            )
        };
        let mut key = fnv(&list_version.to_le_bytes(), 0xcbf2_9ce4_8422_2325);
        for p in &peers {
            key = fnv(p.as_bytes(), fnv(&[0], key));
        }
        for l in &all {
            key = fnv(l.as_bytes(), fnv(&[1], key));
        }
        if let Some((k, a)) = self
            .reg
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .cache
            .get(&agent.name)
            && *k == key
        {
            return a.clone();
        }
        let peer_refs: Vec<&str> = peers.iter().map(String::as_str).collect();
        let mut defs = engine.monitor_defs();
        defs.sort_by(|a, b| a.name.cmp(&b.name));
        let monitors: Vec<wire::AssignedMonitor> = defs
            .iter()
            .filter(|m| m.enabled && at_location(m, &agent.location, &all))
            .filter(|m| owner(&peer_refs, &m.name) == Some(agent.name.as_str()))
            .filter_map(|m| assigned(m))
            .collect();
        let mut version = 0xcbf2_9ce4_8422_2325u64;
        for m in &monitors {
            // Secrets stay out of the version string; their change still changes the check's
            // JSON, which is hashed inside the reveal scope.
            let j = portwarden_core::secret::reveal_for_wire(|| {
                serde_json::to_vec(m).unwrap_or_default()
            });
            version = fnv(&j, version);
        }
        let a = Arc::new(wire::Assignment {
            version: format!("{version:016x}-{}", monitors.len()),
            agent: agent.name.clone(),
            location: agent.location.clone(),
            monitors,
        });
        self.reg
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .cache
            .insert(agent.name.clone(), (key, a.clone()));
        a
    }

    /// Marks silent agents and tells the engine which locations have nobody reporting.
    /// Called every second.
    pub fn tick(&self, engine: &portwarden_engine::Engine) {
        let now = Utc::now();
        let mut r = self.reg.write().unwrap_or_else(|p| p.into_inner());
        let grace_over = r.started.elapsed() >= r.silent_after;
        let mut by_location: BTreeMap<String, bool> = BTreeMap::new();
        for a in r.entries.iter().filter(|a| !a.revoked) {
            let alive = Self::is_alive(&r, &a.name, now);
            let never = r.live.get(&a.name).and_then(|l| l.last_contact).is_none();
            // Right after start nobody has had time to call in yet: not silent until the
            // grace period is over.
            let reporting = alive || (never && !grace_over);
            *by_location.entry(a.location.clone()).or_insert(false) |= reporting;
            let labels = AgentLabels {
                agent: a.name.clone(),
                location: a.location.clone(),
            };
            self.metrics.up.get_or_create(&labels).set(i64::from(alive));
        }
        let silent: Vec<String> = by_location
            .into_iter()
            .filter(|(_, any)| !any)
            .map(|(l, _)| l)
            .collect();
        let all = r.all_locations.clone();
        if r.pushed.as_ref() != Some(&(all.clone(), silent.clone())) {
            if !silent.is_empty() {
                tracing::warn!(locations = ?silent, "no agent reporting from these locations: their results count as unknown");
            }
            engine.set_locations(all.clone(), silent.iter().cloned().collect());
            r.pushed = Some((all, silent));
        }
    }

    /// Problems for `/api/v1/health` (a silent agent raises its own alert).
    pub fn problems(&self) -> Vec<String> {
        let now = Utc::now();
        let r = self.reg.read().unwrap_or_else(|p| p.into_inner());
        let grace_over = r.started.elapsed() >= r.silent_after;
        let mut out = Vec::new();
        for a in r.entries.iter().filter(|a| !a.revoked) {
            if Self::is_alive(&r, &a.name, now) {
                continue;
            }
            match r.live.get(&a.name).and_then(|l| l.last_contact) {
                Some(t) => out.push(format!(
                    "agent `{}` (location `{}`) silent since {}: its monitors there are unknown, not down; check the agent process and its network path to this server",
                    a.name,
                    a.location,
                    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )),
                None if grace_over => out.push(format!(
                    "agent `{}` (location `{}`) has not called in since this server started; start it with its token (`portwarden agent --server ... --location {}`)",
                    a.name, a.location, a.location
                )),
                None => {}
            }
        }
        out
    }

    /// Every agent for the API.
    pub fn views(
        &self,
        engine: &portwarden_engine::Engine,
        with_monitors: Option<&str>,
    ) -> Vec<AgentView> {
        let now = Utc::now();
        let entries = self
            .reg
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .entries
            .clone();
        let mut out = Vec::new();
        for a in &entries {
            if with_monitors.is_some_and(|n| n != a.name) {
                continue;
            }
            let assignment = (!a.revoked).then(|| self.assignment(engine, a));
            let r = self.reg.read().unwrap_or_else(|p| p.into_inner());
            let l = r.live.get(&a.name).cloned().unwrap_or_default();
            let alive = Self::is_alive(&r, &a.name, now);
            let status = if a.revoked {
                "revoked"
            } else if alive {
                "ok"
            } else if l.last_contact.is_none() {
                "never_seen"
            } else {
                "silent"
            };
            // A silent agent's share has moved to its peers: it is assigned nothing now.
            let assigned_now = if alive { assignment.as_ref() } else { None };
            out.push(AgentView {
                name: a.name.clone(),
                location: a.location.clone(),
                status,
                last_contact: l.last_contact,
                version: (!l.hb.version.is_empty()).then(|| l.hb.version.clone()),
                lag_ms: l.lag_ms,
                queued: l.hb.queued,
                oldest_queued_at: l.hb.oldest_queued_at,
                clock_offset_ms: l.hb.clock_offset_ms,
                lateness_p99_ms: l.hb.lateness_p99_ms,
                assignment_version: (!l.hb.assignment_version.is_empty())
                    .then(|| l.hb.assignment_version.clone()),
                assigned: assigned_now.map_or(0, |x| x.monitors.len()),
                running: l.hb.running,
                last_batch_at: l.last_batch_at,
                last_seq: l.last_seq,
                observations: l.observations,
                duplicate_batches: l.duplicates,
                address: (!l.hb.address.is_empty()).then(|| l.hb.address.clone()),
                monitors: with_monitors.map(|_| {
                    assigned_now
                        .map(|x| x.monitors.iter().map(|m| m.name.clone()).collect())
                        .unwrap_or_default()
                }),
            });
        }
        out
    }
}

/// Whether `m` is probed at `location` (`all`: every location, for monitors without
/// `locations:`).
fn at_location(m: &Monitor, location: &str, all: &[String]) -> bool {
    if m.locations.is_empty() {
        all.iter().any(|l| l == location)
    } else {
        m.runs_at(location)
    }
}

fn assigned(m: &Monitor) -> Option<wire::AssignedMonitor> {
    let check = portwarden_core::secret::reveal_for_wire(|| serde_json::to_value(&m.check));
    let check = match check {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(monitor = %m.name, error = %e, "cannot encode a check for agents; not assigned");
            return None;
        }
    };
    Some(wire::AssignedMonitor {
        name: m.name.clone(),
        target: m.target.to_string(),
        check,
        tier: m.tier.as_str().to_string(),
        interval_ms: m.interval.as_millis() as u64,
        timeout_ms: m.timeout.as_millis() as u64,
        addresses: match m.addresses {
            portwarden_core::AddressPolicy::First => "first".into(),
            portwarden_core::AddressPolicy::All => "all".into(),
        },
    })
}

/// The agent routes. Mounted outside the user authentication layer: they check agent tokens.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(wire::PATH_HEARTBEAT, post(heartbeat))
        .route(wire::PATH_ASSIGNMENT, get(assignment))
        .route(wire::PATH_OBSERVATIONS, post(observations))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            wire::MAX_BATCH_BYTES,
        ))
}

fn refuse(s: &AppState, status: StatusCode, error: &str, detail: impl Into<String>) -> Response {
    s.agents.metrics.rejected.inc();
    let mut r = (
        status,
        Json(wire::ApiError {
            error: error.into(),
            detail: detail.into(),
        }),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED
        && let Ok(v) = header::HeaderValue::from_str("Bearer realm=\"portwarden-agent\"")
    {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// The client's address, and the verified client certificate it presented.
fn peer(
    req: &Request,
) -> (
    String,
    Option<Arc<rustls_pki_types::CertificateDer<'static>>>,
) {
    let cert = req
        .extensions()
        .get::<axum::extract::ConnectInfo<crate::tls::ClientAddr>>()
        .and_then(|c| c.0.1.clone());
    (crate::auth::middleware::client_ip(req), cert)
}

/// Authenticates the agent and checks the protocol version.
// The refusal is the response itself, built once per refused request.
#[allow(clippy::result_large_err)]
fn admit(
    s: &AppState,
    headers: &HeaderMap,
    (ip, cert): (&str, Option<&rustls_pki_types::CertificateDer<'static>>),
    path: &str,
) -> Result<AgentEntry, Response> {
    let (required, bind) = {
        let reg = s.agents.reg.read().unwrap_or_else(|p| p.into_inner());
        (reg.client_cert_required, reg.bind_agent_names)
    };
    if required && cert.is_none() {
        tracing::warn!(%ip, path, "refused an agent: no client certificate");
        return Err(refuse(
            s,
            StatusCode::FORBIDDEN,
            "client_certificate",
            "this server requires agents to present a client certificate signed by its `server.tls.client_ca`; start the agent with --client-cert and --client-key",
        ));
    }
    let key = format!("agent-ip:{ip}");
    if let Some(wait) = s.auth.limiter.blocked(&[&key], 4) {
        return Err(refuse(
            s,
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            format!(
                "too many refused agent tokens from this address; retry in {} s",
                wait.as_secs().max(1)
            ),
        ));
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 512);
    let agent = match token.and_then(|t| s.agents.by_token(t)) {
        Some(a) => a,
        None => {
            s.auth.limiter.fail(&[&key]);
            // Never log the token, not even a prefix.
            tracing::warn!(%ip, path, token_given = token.is_some(), "refused an agent: unknown or revoked token");
            return Err(refuse(
                s,
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "unknown or revoked agent token; enrol the agent under `agents:` with the SHA-256 of its token",
            ));
        }
    };
    let names = cert
        .filter(|_| bind)
        .map(|c| crate::tls::CertNames::of(c))
        .unwrap_or_default();
    if bind && !names.names(&agent.name) {
        let named = names.0;
        // The token was right but the key is someone else's: never log the token.
        tracing::warn!(%ip, path, agent = %agent.name, certificate_names = ?named, "refused an agent: its client certificate names another agent");
        return Err(refuse(
            s,
            StatusCode::FORBIDDEN,
            "client_certificate",
            format!(
                "this server binds agents to their certificates (`server.tls.bind_agent_names`): the client certificate must name agent `{}` (a DNS subject alternative name), it names {named:?}",
                agent.name
            ),
        ));
    }
    let theirs = headers
        .get(wire::VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok());
    match theirs.map(wire::negotiate) {
        Some(Ok(_)) => Ok(agent),
        Some(Err(e)) => Err(refuse(
            s,
            StatusCode::UPGRADE_REQUIRED,
            "version",
            e.to_string(),
        )),
        None => Err(refuse(
            s,
            StatusCode::BAD_REQUEST,
            "version",
            format!(
                "send the `{}` header with the agent API version",
                wire::VERSION_HEADER
            ),
        )),
    }
}

#[allow(clippy::result_large_err)]
async fn body_json<T: serde::de::DeserializeOwned>(
    s: &AppState,
    body: axum::body::Body,
) -> Result<T, Response> {
    let bytes = axum::body::to_bytes(body, wire::MAX_BATCH_BYTES)
        .await
        .map_err(|_| {
            refuse(
                s,
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "request body above {} bytes; send smaller batches",
                    wire::MAX_BATCH_BYTES
                ),
            )
        })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        refuse(
            s,
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!(
                "invalid JSON body at line {} column {}: {e}",
                e.line(),
                e.column()
            ),
        )
    })
}

async fn heartbeat(State(s): State<AppState>, req: Request) -> Response {
    let received_at = Utc::now();
    let (ip, cert) = peer(&req);
    let (parts, body) = req.into_parts();
    let agent = match admit(
        &s,
        &parts.headers,
        (&ip, cert.as_deref()),
        wire::PATH_HEARTBEAT,
    ) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let hb: wire::Heartbeat = match body_json(&s, body).await {
        Ok(h) => h,
        Err(r) => return r,
    };
    if hb.location != agent.location {
        return refuse(
            &s,
            StatusCode::CONFLICT,
            "location",
            format!(
                "this token belongs to agent `{}` at location `{}`, but the agent says `{}`; start it with --location {}",
                agent.name, agent.location, hb.location, agent.location
            ),
        );
    }
    if hb.stream.is_empty() || hb.stream.len() > 128 {
        return refuse(
            &s,
            StatusCode::BAD_REQUEST,
            "bad_request",
            "`stream` must be 1-128 characters",
        );
    }
    let last_seq = match s.store.agent_last_seq(&agent.name, &hb.stream).await {
        Ok(v) => v,
        Err(e) => {
            return refuse(
                &s,
                StatusCode::SERVICE_UNAVAILABLE,
                "store",
                format!("cannot read the upload state: {e}; retry later"),
            );
        }
    };
    let state = HeartbeatState {
        version: hb.agent_version.chars().take(64).collect(),
        stream: hb.stream.clone(),
        clock_offset_ms: hb.clock_offset_ms,
        queued: hb.queued,
        oldest_queued_at: hb.oldest_queued_at,
        assignment_version: hb.assignment_version.chars().take(64).collect(),
        running: hb.running,
        lateness_p99_ms: hb.lateness_p99_ms,
        address: ip.clone(),
    };
    // In the store, so every replica lists the agent the same way (and the leader sees it
    // alive whichever replica it talks to).
    if let Err(e) = s
        .store
        .agent_heartbeat(
            &agent.name,
            &agent.location,
            received_at,
            serde_json::to_value(&state).unwrap_or_default(),
        )
        .await
    {
        tracing::warn!(agent = %agent.name, error = %e, "cannot record the agent's heartbeat in the store");
    }
    {
        let mut r = s.agents.reg.write().unwrap_or_else(|p| p.into_inner());
        let l = r.live.entry(agent.name.clone()).or_default();
        let first = l.last_contact.is_none();
        l.last_contact = l.last_contact.max(Some(received_at));
        if first {
            tracing::info!(agent = %agent.name, location = %agent.location, %ip, version = %state.version, "agent connected");
        }
        l.hb = state;
    }
    let labels = AgentLabels {
        agent: agent.name.clone(),
        location: agent.location.clone(),
    };
    s.agents
        .metrics
        .last_contact
        .get_or_create(&labels)
        .set(received_at.timestamp());
    s.agents
        .metrics
        .queued
        .get_or_create(&labels)
        .set(i64::try_from(hb.queued).unwrap_or(i64::MAX));
    let a = s.agents.assignment(&s.engine, &agent);
    let silent_after = s
        .agents
        .reg
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .silent_after;
    Json(wire::HeartbeatReply {
        api_version: wire::API_VERSION,
        agent: agent.name,
        location: agent.location,
        received_at,
        replied_at: Utc::now(),
        assignment_version: a.version.clone(),
        last_seq,
        heartbeat_every_ms: (silent_after.as_millis() as u64 / 4).clamp(500, 10_000),
    })
    .into_response()
}

async fn assignment(State(s): State<AppState>, req: Request) -> Response {
    let (ip, cert) = peer(&req);
    let agent = match admit(
        &s,
        req.headers(),
        (&ip, cert.as_deref()),
        wire::PATH_ASSIGNMENT,
    ) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let a = s.agents.assignment(&s.engine, &agent);
    // Serialized with the secrets its own checks need: this one response, to this agent.
    match portwarden_core::secret::reveal_for_wire(|| serde_json::to_vec(&*a)) {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response(),
        Err(e) => refuse(
            &s,
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("cannot encode the assignment: {e}"),
        ),
    }
}

async fn observations(State(s): State<AppState>, req: Request) -> Response {
    let (ip, cert) = peer(&req);
    let (parts, body) = req.into_parts();
    let agent = match admit(
        &s,
        &parts.headers,
        (&ip, cert.as_deref()),
        wire::PATH_OBSERVATIONS,
    ) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let batch: wire::ObservationBatch = match body_json(&s, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if batch.stream.is_empty() || batch.stream.len() > 128 || batch.seq == 0 {
        return refuse(
            &s,
            StatusCode::BAD_REQUEST,
            "bad_request",
            "`stream` must be 1-128 characters and `seq` at least 1",
        );
    }
    // Only results for monitors probed at this agent's location are taken, and they are
    // recorded under the agent's location whatever the body says.
    let all = s
        .agents
        .reg
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .all_locations
        .clone();
    let mut known: HashMap<String, Option<Arc<Monitor>>> = HashMap::new();
    for r in &batch.runs {
        if !known.contains_key(&r.monitor) {
            known.insert(r.monitor.clone(), s.engine.monitor_def(&r.monitor));
        }
    }
    let mut runs: Vec<wire::Run> = Vec::with_capacity(batch.runs.len());
    let mut ignored = 0usize;
    for mut run in batch.runs {
        let ok = known
            .get(&run.monitor)
            .and_then(Option::as_ref)
            .is_some_and(|m| at_location(m, &agent.location, &all));
        if !ok || run.observations.is_empty() {
            ignored += 1;
            continue;
        }
        for o in &mut run.observations {
            o.location = agent.location.clone();
            o.monitor = run.monitor.clone();
        }
        runs.push(run);
    }
    if ignored > 0 {
        tracing::info!(agent = %agent.name, ignored, "batch had runs of monitors not probed at this location; ignored");
    }
    // Taken inside a maintenance window: kept apart from availability, like local results.
    let engine = &s.engine;
    let records: Vec<Record> = runs
        .iter()
        .flat_map(|r| {
            let def = known.get(&r.monitor).and_then(Option::as_ref);
            r.observations.iter().map(move |o| Record {
                obs: o.clone(),
                maintenance: def.is_some_and(|m| engine.in_maintenance(m, o.started_at)),
            })
        })
        .collect();
    let stored = records.len() as u64;
    let oldest_end = runs
        .iter()
        .flat_map(|r| r.observations.iter())
        .map(|o| o.started_at + chrono::Duration::microseconds((o.duration_ms * 1000.0) as i64))
        .min();
    let lag_ms = oldest_end.map(|t| (Utc::now() - t).num_milliseconds().max(0) as f64);
    // The runs go to the store's agent inbox in the same transaction; the leader (this
    // replica or another) reads them from there and judges them.
    let runs: Vec<RemoteRun> = runs
        .into_iter()
        .map(|r| RemoteRun {
            monitor: r.monitor,
            observations: r.observations,
        })
        .collect();
    let outcome = match s
        .store
        .ingest_batch(IngestBatch {
            agent: agent.name.clone(),
            stream: batch.stream.clone(),
            seq: batch.seq,
            records,
            location: agent.location.clone(),
            runs,
            lag_ms,
        })
        .await
    {
        Ok(o) => o,
        Err(e) => {
            return refuse(
                &s,
                StatusCode::SERVICE_UNAVAILABLE,
                "store",
                format!("cannot store the batch: {e}; keep it and retry"),
            );
        }
    };
    let now = Utc::now();
    let lag_ms = oldest_end.map(|t| (now - t).num_milliseconds().max(0) as f64);
    if outcome.duplicate {
        s.agents.metrics.duplicates.inc();
    } else {
        s.agents.metrics.batches.inc();
        if let Some(l) = lag_ms {
            s.agents.metrics.ingest_lag.observe(l / 1000.0);
        }
        s.engine.agent_batch_stored();
    }
    {
        let mut r = s.agents.reg.write().unwrap_or_else(|p| p.into_inner());
        let l = r.live.entry(agent.name.clone()).or_default();
        l.last_contact = l.last_contact.max(Some(now));
        l.last_seq = outcome.last_seq;
        if outcome.duplicate {
            l.duplicates += 1;
        } else {
            l.last_batch_at = Some(now);
            l.observations += stored;
            if lag_ms.is_some() {
                l.lag_ms = lag_ms;
            }
        }
    }
    Json(wire::IngestReply {
        duplicate: outcome.duplicate,
        last_seq: outcome.last_seq,
        stored: if outcome.duplicate { 0 } else { stored },
    })
    .into_response()
}

/// `GET /api/v1/agents`.
pub async fn list(State(s): State<AppState>) -> Response {
    let agents = s.agents.views(&s.engine, None);
    Json(serde_json::json!({ "agents": agents })).into_response()
}

/// `GET /api/v1/agents/{name}`: one agent with the names of the monitors it probes.
pub async fn one(
    State(s): State<AppState>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Response {
    match s.agents.views(&s.engine, Some(&name)).pop() {
        Some(v) => Json(v).into_response(),
        None => crate::error::ApiError::not_found(format!(
            "no agent named `{name}`; GET /api/v1/agents lists them"
        ))
        .into_response(),
    }
}

/// Marks silent agents every second.
pub async fn watch(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                // Every replica's view of the agents comes from the store.
                match state.store.agent_statuses().await {
                    Ok(rows) => state.agents.refresh(&rows),
                    Err(e) => tracing::debug!(error = %e, "cannot read agent status from the store"),
                }
                state.agents.tick(&state.engine);
            }
            _ = crate::stopped(&mut stop) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_moves_only_the_leavers_share() {
        let monitors: Vec<String> = (0..2000).map(|i| format!("m{i}")).collect();
        let three = ["a", "b", "c"];
        let two = ["a", "b"];
        let mut counts: HashMap<&str, usize> = HashMap::new();
        let mut moved = 0;
        for m in &monitors {
            let o3 = owner(&three, m).unwrap();
            *counts.entry(o3).or_default() += 1;
            let o2 = owner(&two, m).unwrap();
            if o3 != "c" {
                assert_eq!(o3, o2, "{m} moved although its owner stayed");
            } else {
                moved += 1;
            }
        }
        for (a, n) in &counts {
            assert!((500..=850).contains(n), "{a} got {n} of 2000");
        }
        assert_eq!(moved, counts["c"]);
    }
}
