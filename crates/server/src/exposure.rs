//! Notifications of the exposure guard's findings: `serve` gives the guard this hook, so a
//! finding's incident notifies through the engine's alerting exactly like a monitor's — the
//! baseline's `routes:` (else the routes matching it, else the default route), silences and
//! maintenance windows, and the incident's idempotency keys (`pw-<incident>-trigger`,
//! `pw-<incident>-resolve`) so nothing doubles across restarts or replicas.

use std::sync::Arc;

use portwarden_core::{MonitorMeta, Scope, State, Tier};
use portwarden_engine::alerting::{Alerting, FindingLookup, Subject};
use portwarden_notify::{AlertItem, FindingFacts};
use portwarden_scan::baseline::Baseline;
use portwarden_scan::guard::{FindingNote, Guard, OutboxHook};
use portwarden_store::Store;

/// The engine's ticker asks this for the repeats and escalations of findings' incidents.
pub fn finding_lookup(guard: &Arc<Guard>) -> FindingLookup {
    let guard = Arc::downgrade(guard);
    Arc::new(move |monitor: &str| {
        let g = guard.upgrade()?;
        g.baselines()
            .into_iter()
            .find(|b| b.incident_monitor() == monitor)
            .map(|b| meta_of(&b))
    })
}

/// What routes and silences match a baseline's findings on (owner, severity, labels) and what
/// their notifications carry besides (runbook, capability).
fn meta_of(b: &Baseline) -> MonitorMeta {
    MonitorMeta {
        owner: b.owner.clone(),
        runbook: b.runbook.clone(),
        capability: b.capability.clone(),
        severity: b.severity,
        labels: b.labels.clone(),
        ..Default::default()
    }
}

fn host_text(n: &FindingNote) -> String {
    n.host.to_string()
}

/// The message content of a finding (trigger, or resolve when `n.resolved` is set).
pub fn finding_item(b: &Baseline, n: &FindingNote) -> AlertItem {
    let host = host_text(n);
    let target = format!(
        "{}:{}/{}",
        portwarden_scan::baseline::fmt_host(n.host),
        n.port,
        n.transport
    );
    let seen = n
        .service
        .as_ref()
        .filter(|s| s.service.is_some() || s.version.is_some())
        .map(|s| s.fingerprint());
    let meta = meta_of(b);
    AlertItem {
        monitor: b.incident_monitor(),
        target,
        check: "exposure scan".into(),
        state: if n.resolved.is_some() {
            State::Up
        } else {
            State::Down
        },
        error_kind: Some(n.kind.as_str().to_string()),
        error_message: Some(n.message.clone()),
        service: meta.service,
        capability: meta.capability,
        owner: meta.owner,
        severity: b.severity,
        scope: Scope::Global,
        since: n.first_seen,
        recovered_at: n.resolved.map(|(_, at)| at),
        last_healthy: None,
        runbook: meta.runbook,
        incident_id: n.resolved.map(|(id, _)| id),
        incident_url: None,
        ack_url: None,
        labels: b.labels.clone(),
        dependents: Vec::new(),
        finding: Some(FindingFacts {
            kind: n.kind.as_str().to_string(),
            baseline: b.name.clone(),
            host,
            port: n.port,
            transport: n.transport.as_str().to_string(),
            state: n.state.to_string(),
            service_seen: seen,
            banner: n.service.as_ref().and_then(|s| s.banner.clone()),
            expected_service: n.expected_service.clone(),
            previous: n.previous_fingerprint.clone(),
        }),
    }
}

/// The guard's hook: outbox rows for a finding's incident opening or resolving.
pub fn finding_notifier(alerting: Arc<Alerting>, store: Arc<dyn Store>) -> OutboxHook {
    Arc::new(move |b: Arc<Baseline>, n: FindingNote| {
        let (al, store) = (alerting.clone(), store.clone());
        Box::pin(async move {
            let meta = meta_of(&b);
            let name = b.incident_monitor();
            let subject = Subject {
                name: &name,
                host: host_text(&n),
                tier: Tier::default(),
                meta: &meta,
            };
            let item = finding_item(&b, &n);
            // Rows are committed with the scan; the dispatcher finds them on its next poll.
            match n.resolved {
                None => al.rows_for_open(&subject, &b.routes, &item),
                Some((id, _)) => match al.rows_for_resolve(&*store, id, &subject, &item).await {
                    Ok(r) => r,
                    Err(e) => {
                        // The finding still resolves; its receivers miss the resolve.
                        tracing::warn!(incident = id, error = %e, "cannot read who was told about a finding; no resolve notification");
                        Vec::new()
                    }
                },
            }
        })
    })
}
