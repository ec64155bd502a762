//! The public status page: `/status` (HTML), `/status.json` and `/status/feed.atom`.
//!
//! It shows only what `status_page:` in the config names: components (public names, grouped),
//! their current state, 90-day uptime, active and past incidents — never monitor names, targets,
//! host names, ports, error messages or owners unless `expose:` allows them. All three documents
//! are rendered together from one snapshot and served from memory for `status_page.cache`
//! (one rebuild at a time however many requests arrive), with `Cache-Control: public`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use portwarden_config::{Expose, StatusPageSettings};
use portwarden_core::{Incident, IncidentStatus, State as MState};
use portwarden_store::{Availability, IncidentFilter};
use serde::Serialize;

use super::{fmt_ratio, fmt_span, fmt_time, svg};
use crate::AppState;

/// Percent-encodes a path segment (everything but unreserved characters).
pub fn encode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Public state of a component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PublicState {
    Operational,
    Maintenance,
    Unknown,
    Degraded,
    PartialOutage,
    MajorOutage,
}

impl PublicState {
    pub fn as_str(self) -> &'static str {
        match self {
            PublicState::Operational => "operational",
            PublicState::Maintenance => "maintenance",
            PublicState::Unknown => "unknown",
            PublicState::Degraded => "degraded",
            PublicState::PartialOutage => "partial_outage",
            PublicState::MajorOutage => "major_outage",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            PublicState::Operational => "Operational",
            PublicState::Maintenance => "Maintenance",
            PublicState::Unknown => "Unknown",
            PublicState::Degraded => "Degraded performance",
            PublicState::PartialOutage => "Partial outage",
            PublicState::MajorOutage => "Major outage",
        }
    }
}

fn component_state(states: &[MState]) -> PublicState {
    let down = states.iter().filter(|s| **s == MState::Down).count();
    if down > 0 {
        return if down == states.len() {
            PublicState::MajorOutage
        } else {
            PublicState::PartialOutage
        };
    }
    if states
        .iter()
        .any(|s| matches!(s, MState::Degraded | MState::Flapping))
    {
        return PublicState::Degraded;
    }
    if states
        .iter()
        .any(|s| matches!(s, MState::Unknown | MState::Pending))
    {
        return PublicState::Unknown;
    }
    if states
        .iter()
        .any(|s| matches!(s, MState::Maintenance | MState::Paused))
    {
        return PublicState::Maintenance;
    }
    PublicState::Operational
}

#[derive(Debug, Clone, Serialize)]
pub struct PublicDay {
    pub day: NaiveDate,
    /// Share of judged probes that worked; `null` without data.
    pub uptime: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PublicComponent {
    pub name: String,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub status: PublicState,
    pub uptime_90d: Option<f64>,
    pub days: Vec<PublicDay>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PublicGroup {
    pub name: String,
    pub components: Vec<PublicComponent>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PublicIncident {
    pub id: String,
    pub components: Vec<String>,
    pub status: &'static str,
    /// `major_outage` (down), `degraded` (degraded or flapping).
    pub impact: PublicState,
    pub started_at: DateTime<Utc>,
    /// `global`, or `regional` (seen from some locations only).
    pub scope: &'static str,
    /// The affected locations of a regional incident.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PublicStatus {
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub status: PublicState,
    pub updated_at: DateTime<Utc>,
    pub groups: Vec<PublicGroup>,
    pub active_incidents: Vec<PublicIncident>,
    pub past_incidents: Vec<PublicIncident>,
}

/// The three rendered documents of one snapshot.
#[derive(Debug)]
pub struct Rendered {
    pub html: String,
    pub json: String,
    pub atom: String,
    pub at: Instant,
}

/// Status page settings (replaced on reload) and the rendered cache.
#[derive(Debug)]
pub struct StatusPage {
    settings: RwLock<Arc<StatusPageSettings>>,
    cached: RwLock<Option<Arc<Rendered>>>,
    building: tokio::sync::Mutex<()>,
}

impl StatusPage {
    pub fn new(settings: StatusPageSettings) -> StatusPage {
        StatusPage {
            settings: RwLock::new(Arc::new(settings)),
            cached: RwLock::new(None),
            building: tokio::sync::Mutex::new(()),
        }
    }

    pub fn settings(&self) -> Arc<StatusPageSettings> {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Applies a reloaded config (and drops the cache so the change shows at once).
    pub fn update(&self, settings: StatusPageSettings) {
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(settings);
        *self.cached.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn fresh(&self, ttl: Duration) -> Option<Arc<Rendered>> {
        self.cached
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|r| r.at.elapsed() < ttl)
            .cloned()
    }

    /// The current documents, rebuilt when older than the cache time (one build at a time).
    pub async fn get(&self, s: &AppState) -> Arc<Rendered> {
        let settings = self.settings();
        if let Some(r) = self.fresh(settings.cache) {
            return r;
        }
        let _guard = self.building.lock().await;
        if let Some(r) = self.fresh(settings.cache) {
            return r;
        }
        let snapshot = snapshot(s, &settings).await;
        let r = Arc::new(render_all(&snapshot, &settings));
        *self.cached.write().unwrap_or_else(|p| p.into_inner()) = Some(r.clone());
        r
    }
}

fn add_days(
    into: &mut BTreeMap<NaiveDate, Availability>,
    days: &[portwarden_store::DayAvailability],
) {
    for d in days {
        into.entry(d.day).or_default().add(&d.availability);
    }
}

/// Builds the public view from the engine's live states and the store.
pub async fn snapshot(s: &AppState, settings: &StatusPageSettings) -> PublicStatus {
    let now = Utc::now();
    let views: HashMap<String, MState> = s
        .engine
        .monitors()
        .into_iter()
        .map(|v| (v.name.clone(), v.state))
        .collect();
    let owners_of: HashMap<String, Option<String>> = if settings.exposes(Expose::Owners) {
        s.engine
            .monitors()
            .into_iter()
            .map(|v| (v.name.clone(), v.monitor.meta.owner.clone()))
            .collect()
    } else {
        HashMap::new()
    };
    // Per monitor: daily availability (90 days) and incidents within the history.
    let monitors: HashSet<&str> = settings
        .components()
        .flat_map(|c| c.monitors.iter().map(String::as_str))
        .collect();
    let mut daily: HashMap<&str, Vec<portwarden_store::DayAvailability>> = HashMap::new();
    let mut incidents: HashMap<&str, Vec<Incident>> = HashMap::new();
    let history =
        chrono::Duration::from_std(settings.history).unwrap_or(chrono::Duration::days(14));
    for m in &monitors {
        if let Ok(d) = s
            .store
            .availability_daily(m, now - chrono::Duration::days(90), now)
            .await
        {
            daily.insert(m, d);
        }
        let f = IncidentFilter {
            monitor: Some((*m).to_string()),
            limit: 100,
            ..Default::default()
        };
        if let Ok(p) = s.store.incidents(&f).await {
            incidents.insert(
                m,
                p.items
                    .into_iter()
                    .filter(|i| {
                        i.status == IncidentStatus::Open
                            || i.resolved_at.is_some_and(|r| r > now - history)
                    })
                    .collect(),
            );
        }
    }
    let mut groups = Vec::new();
    let mut overall = PublicState::Operational;
    // Incident id → (incident, component names).
    let mut by_incident: BTreeMap<i64, (Incident, Vec<String>)> = BTreeMap::new();
    for g in &settings.groups {
        let mut comps = Vec::new();
        for c in &g.components {
            let states: Vec<MState> = c
                .monitors
                .iter()
                .map(|m| views.get(m).copied().unwrap_or(MState::Unknown))
                .collect();
            let status = component_state(&states);
            overall = overall.max(status);
            let mut days: BTreeMap<NaiveDate, Availability> = BTreeMap::new();
            for m in &c.monitors {
                if let Some(d) = daily.get(m.as_str()) {
                    add_days(&mut days, d);
                }
                for i in incidents.get(m.as_str()).into_iter().flatten() {
                    let e = by_incident
                        .entry(i.id)
                        .or_insert_with(|| (i.clone(), Vec::new()));
                    if !e.1.contains(&c.name) {
                        e.1.push(c.name.clone());
                    }
                }
            }
            let mut total = Availability::default();
            for a in days.values() {
                total.add(a);
            }
            let mut owners: Vec<String> = c
                .monitors
                .iter()
                .filter_map(|m| owners_of.get(m).cloned().flatten())
                .collect();
            owners.sort();
            owners.dedup();
            comps.push(PublicComponent {
                name: c.name.clone(),
                id: c.slug.clone(),
                description: c.description.clone(),
                status,
                uptime_90d: total.compute_ratio().ratio,
                days: days
                    .into_iter()
                    .map(|(day, a)| PublicDay {
                        day,
                        uptime: a.compute_ratio().ratio,
                    })
                    .collect(),
                owners,
            });
        }
        groups.push(PublicGroup {
            name: g.name.clone(),
            components: comps,
        });
    }
    let mut active = Vec::new();
    let mut past = Vec::new();
    for (_, (i, comps)) in by_incident.into_iter().rev() {
        let p = PublicIncident {
            // Not the internal id: a stable opaque reference.
            id: crate::auth::sha256_hex(&format!("incident:{}", i.id))[..16].to_string(),
            components: comps,
            status: i.status.as_str(),
            impact: if i.state == MState::Down {
                PublicState::MajorOutage
            } else {
                PublicState::Degraded
            },
            started_at: i.opened_at,
            scope: i.scope.as_str(),
            locations: i.scope.locations().to_vec(),
            resolved_at: i.resolved_at,
            error_kind: settings
                .exposes(Expose::ErrorKind)
                .then(|| i.error_kind.clone())
                .flatten(),
            message: settings
                .exposes(Expose::Messages)
                .then(|| i.message.clone())
                .flatten(),
        };
        if i.status == IncidentStatus::Open {
            active.push(p);
        } else {
            past.push(p);
        }
    }
    PublicStatus {
        title: settings.title.clone(),
        description: settings.description.clone(),
        status: overall,
        updated_at: now,
        groups,
        active_incidents: active,
        past_incidents: past,
    }
}

pub struct HtmlComponent {
    pub name: String,
    pub id: String,
    pub description: String,
    pub state: &'static str,
    pub label: &'static str,
    pub uptime: String,
    pub bars: Vec<svg::DayBar>,
    pub owners: String,
}

pub struct HtmlGroup {
    pub name: String,
    pub components: Vec<HtmlComponent>,
}

pub struct HtmlIncident {
    pub components: String,
    pub impact: &'static str,
    pub impact_label: &'static str,
    /// Empty for a global incident; "in some regions (eu-west)" for a regional one.
    pub scope: String,
    pub started: String,
    pub resolved: String,
    pub lasted: String,
    pub error_kind: String,
    pub message: String,
}

#[derive(Template)]
#[template(path = "status.html")]
pub struct StatusHtml {
    pub title: String,
    pub description: String,
    pub overall: &'static str,
    pub overall_label: &'static str,
    pub updated: String,
    pub groups: Vec<HtmlGroup>,
    pub active: Vec<HtmlIncident>,
    pub past: Vec<HtmlIncident>,
    pub cache_secs: u64,
}

pub struct AtomEntry {
    pub id: String,
    pub title: String,
    pub updated: String,
    pub published: String,
    pub summary: String,
}

#[derive(Template)]
#[template(path = "feed.xml")]
pub struct AtomFeed {
    pub title: String,
    pub updated: String,
    pub entries: Vec<AtomEntry>,
}

fn html_incident(i: &PublicIncident, now: DateTime<Utc>) -> HtmlIncident {
    HtmlIncident {
        components: i.components.join(", "),
        impact: i.impact.as_str(),
        impact_label: i.impact.label(),
        scope: if i.locations.is_empty() {
            String::new()
        } else {
            format!("in some regions ({})", i.locations.join(", "))
        },
        started: fmt_time(i.started_at),
        resolved: i.resolved_at.map(fmt_time).unwrap_or_default(),
        lasted: fmt_span(i.resolved_at.unwrap_or(now) - i.started_at),
        error_kind: i.error_kind.clone().unwrap_or_default(),
        message: i.message.clone().unwrap_or_default(),
    }
}

/// Renders HTML, JSON and Atom from one snapshot.
pub fn render_all(p: &PublicStatus, settings: &StatusPageSettings) -> Rendered {
    let now = p.updated_at;
    let html = StatusHtml {
        title: p.title.clone(),
        description: p.description.clone().unwrap_or_default(),
        overall: p.status.as_str(),
        overall_label: match p.status {
            PublicState::Operational => "All systems operational",
            other => other.label(),
        },
        updated: fmt_time(now),
        groups: p
            .groups
            .iter()
            .map(|g| HtmlGroup {
                name: g.name.clone(),
                components: g
                    .components
                    .iter()
                    .map(|c| HtmlComponent {
                        name: c.name.clone(),
                        id: c.id.clone(),
                        description: c.description.clone().unwrap_or_default(),
                        state: c.status.as_str(),
                        label: c.status.label(),
                        uptime: fmt_ratio(c.uptime_90d),
                        bars: c
                            .days
                            .iter()
                            .rev()
                            .take(90)
                            .rev()
                            .enumerate()
                            .map(|(i, d)| svg::DayBar {
                                x: i as u32 * 4,
                                class: svg::bar_class(d.uptime),
                                title: format!("{}: {}", d.day, fmt_ratio(d.uptime)),
                            })
                            .collect(),
                        owners: c.owners.join(", "),
                    })
                    .collect(),
            })
            .collect(),
        active: p
            .active_incidents
            .iter()
            .map(|i| html_incident(i, now))
            .collect(),
        past: p
            .past_incidents
            .iter()
            .map(|i| html_incident(i, now))
            .collect(),
        cache_secs: settings.cache.as_secs(),
    };
    let entries = p
        .active_incidents
        .iter()
        .chain(p.past_incidents.iter())
        .map(|i| {
            let updated = i.resolved_at.unwrap_or(i.started_at);
            let mut summary = format!(
                "{} affecting {} since {}",
                i.impact.label(),
                i.components.join(", "),
                fmt_time(i.started_at)
            );
            match i.resolved_at {
                Some(r) => summary.push_str(&format!(
                    "; resolved {} after {}",
                    fmt_time(r),
                    fmt_span(r - i.started_at)
                )),
                None => summary.push_str("; ongoing"),
            }
            if let Some(k) = &i.error_kind {
                summary.push_str(&format!(" ({k})"));
            }
            if let Some(m) = &i.message {
                summary.push_str(&format!(": {m}"));
            }
            AtomEntry {
                id: format!("urn:portwarden:status:incident:{}", i.id),
                title: format!(
                    "{}: {}{}",
                    i.components.join(", "),
                    i.impact.label(),
                    if i.resolved_at.is_some() {
                        " (resolved)"
                    } else {
                        ""
                    }
                ),
                updated: rfc3339(updated),
                published: rfc3339(i.started_at),
                summary,
            }
        })
        .collect();
    let atom = AtomFeed {
        title: p.title.clone(),
        updated: rfc3339(now),
        entries,
    };
    Rendered {
        html: html.render().unwrap_or_else(|e| {
            tracing::error!(error = %e, "status page rendering failed");
            String::from("status page unavailable")
        }),
        json: serde_json::to_string(p).unwrap_or_else(|_| "{}".into()),
        atom: atom.render().unwrap_or_default(),
        at: Instant::now(),
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn cached(body: String, ctype: &'static str, secs: u64) -> Response {
    let cc = format!("public, max-age={secs}");
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(ctype)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_str(&cc).unwrap_or(HeaderValue::from_static("public")),
            ),
            (
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            ),
        ],
        body,
    )
        .into_response()
}

pub async fn html(State(s): State<AppState>) -> Response {
    let secs = s.web.status.settings().cache.as_secs();
    let r = s.web.status.get(&s).await;
    cached(r.html.clone(), "text/html; charset=utf-8", secs)
}

pub async fn json(State(s): State<AppState>) -> Response {
    let secs = s.web.status.settings().cache.as_secs();
    let r = s.web.status.get(&s).await;
    cached(r.json.clone(), "application/json", secs)
}

pub async fn atom(State(s): State<AppState>) -> Response {
    let secs = s.web.status.settings().cache.as_secs();
    let r = s.web.status.get(&s).await;
    cached(r.atom.clone(), "application/atom+xml; charset=utf-8", secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_states() {
        use MState::*;
        assert_eq!(component_state(&[Up, Up]), PublicState::Operational);
        assert_eq!(component_state(&[Up, Down]), PublicState::PartialOutage);
        assert_eq!(component_state(&[Down]), PublicState::MajorOutage);
        assert_eq!(component_state(&[Up, Flapping]), PublicState::Degraded);
        assert_eq!(component_state(&[Pending]), PublicState::Unknown);
        assert_eq!(component_state(&[Up, Paused]), PublicState::Maintenance);
    }

    #[test]
    fn segments() {
        assert_eq!(encode_segment("a b/<c>"), "a%20b%2F%3Cc%3E");
    }
}
