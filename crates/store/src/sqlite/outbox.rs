//! The notification outbox, delivery attempts and silences. Writes run on the writer thread
//! (one transaction each, like incidents); reads on read-only connections. The SQL stays
//! plain so the PostgreSQL backend can say the same (claims there: `FOR UPDATE SKIP LOCKED`).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use portwarden_core::{EventKind, IncidentEvent, IncidentId};
use rusqlite::{Connection, Row, Transaction, params};

use super::codec::{from_ms, to_ms};
use crate::{
    AttemptRecord, AttemptResult, NewOutbox, NotificationRecord, OutboxRow, OutboxStatus, Result,
    Silence, StoreError,
};

/// A write the writer thread applies.
#[derive(Debug)]
pub enum OutboxWrite {
    Enqueue {
        incident: Option<IncidentId>,
        rows: Vec<NewOutbox>,
        event: Option<IncidentEvent>,
    },
    Claim {
        now: DateTime<Utc>,
        lease_ms: i64,
        limit: usize,
    },
    ReleaseClaims,
    Finish {
        ids: Vec<i64>,
        attempt: AttemptRecord,
        result: AttemptResult,
    },
    CreateSilence(Box<Silence>),
    DeleteSilence {
        id: i64,
        now: DateTime<Utc>,
    },
}

/// What a write returns.
#[derive(Debug)]
pub enum OutboxOut {
    Count(u64),
    Rows(Vec<OutboxRow>),
}

pub fn apply(tx: &Transaction<'_>, w: &OutboxWrite) -> Result<OutboxOut> {
    match w {
        OutboxWrite::Enqueue {
            incident,
            rows,
            event,
        } => {
            let n = insert_rows(tx, *incident, rows, Utc::now())?;
            if n > 0
                && let (Some(id), Some(e)) = (incident, event)
            {
                insert_event(tx, *id, e)?;
            }
            Ok(OutboxOut::Count(n))
        }
        OutboxWrite::Claim {
            now,
            lease_ms,
            limit,
        } => claim(tx, to_ms(*now), *lease_ms, *limit).map(OutboxOut::Rows),
        OutboxWrite::ReleaseClaims => Ok(OutboxOut::Count(tx.execute(
            "UPDATE outbox SET claimed_until = NULL WHERE status = 'pending' AND claimed_until IS NOT NULL",
            [],
        )? as u64)),
        OutboxWrite::Finish {
            ids,
            attempt,
            result,
        } => finish(tx, ids, attempt, result).map(|()| OutboxOut::Count(ids.len() as u64)),
        OutboxWrite::CreateSilence(s) => {
            let matcher = serde_json::json!({
                "monitors": s.monitors, "hosts": s.hosts, "labels": s.labels,
            });
            tx.execute(
                "INSERT INTO silences (matcher, comment, created_by, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    matcher.to_string(),
                    s.comment,
                    s.created_by,
                    to_ms(s.created_at),
                    to_ms(s.expires_at)
                ],
            )?;
            Ok(OutboxOut::Count(tx.last_insert_rowid() as u64))
        }
        OutboxWrite::DeleteSilence { id, now } => Ok(OutboxOut::Count(tx.execute(
            "UPDATE silences SET expires_at = ?2 WHERE id = ?1 AND expires_at > ?2",
            params![id, to_ms(*now)],
        )? as u64)),
    }
}

fn insert_event(tx: &Transaction<'_>, incident: IncidentId, e: &IncidentEvent) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO incident_events (incident_id, at, kind, message, data)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        incident,
        to_ms(e.at),
        e.kind.as_str(),
        e.message,
        super::codec::json_or_null(&e.data),
    ])?;
    Ok(())
}

/// The idempotency key of a row: stable across restarts and retries.
pub fn idempotency_key(incident: Option<IncidentId>, key: &str) -> String {
    match incident {
        Some(id) => format!("pw-{id}-{key}"),
        None => format!("pw-{key}"),
    }
}

/// Inserts rows, skipping those already queued (same receiver and key). Used inside the
/// incident transactions too.
pub fn insert_rows(
    tx: &Transaction<'_>,
    incident: Option<IncidentId>,
    rows: &[NewOutbox],
    now: DateTime<Utc>,
) -> Result<u64> {
    let mut n = 0;
    for r in rows {
        let done = (r.status != OutboxStatus::Pending).then(|| to_ms(now));
        n += tx
            .prepare_cached(
                "INSERT INTO outbox (incident_id, monitor, event, route, receiver, idempotency_key,
                     group_key, payload, status, created_at, due_at, last_error, done_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                 ON CONFLICT (receiver, idempotency_key) DO NOTHING",
            )?
            .execute(params![
                incident,
                r.monitor,
                r.event,
                r.route,
                r.receiver,
                idempotency_key(incident, &r.key),
                r.group_key,
                r.payload.to_string(),
                r.status.as_str(),
                to_ms(now),
                to_ms(r.due_at),
                r.note,
                done,
            ])? as u64;
    }
    Ok(n)
}

const ROW_COLUMNS: &str = "id, incident_id, monitor, event, route, receiver, idempotency_key, \
     group_key, payload, status, created_at, due_at, attempts, last_error, done_at";

fn row_from(r: &Row<'_>) -> Result<OutboxRow> {
    let payload: String = r.get(8)?;
    let status: String = r.get(9)?;
    Ok(OutboxRow {
        id: r.get(0)?,
        incident_id: r.get(1)?,
        monitor: r.get(2)?,
        event: r.get(3)?,
        route: r.get(4)?,
        receiver: r.get(5)?,
        idempotency_key: r.get(6)?,
        group_key: r.get(7)?,
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
        status: OutboxStatus::parse(&status)
            .ok_or_else(|| StoreError::Db(format!("unknown outbox status `{status}`")))?,
        created_at: from_ms(r.get(10)?)?,
        due_at: from_ms(r.get(11)?)?,
        attempts: r.get::<_, i64>(12)?.clamp(0, i64::from(u32::MAX)) as u32,
        last_error: r.get(13)?,
        done_at: r.get::<_, Option<i64>>(14)?.map(from_ms).transpose()?,
    })
}

/// Claims due rows and the pending rows of their groups.
fn claim(tx: &Transaction<'_>, now: i64, lease_ms: i64, limit: usize) -> Result<Vec<OutboxRow>> {
    let free = "status = 'pending' AND (claimed_until IS NULL OR claimed_until <= ?1)";
    let sql = format!(
        "SELECT {ROW_COLUMNS} FROM outbox WHERE {free} AND (due_at <= ?1 OR (group_key IS NOT NULL
             AND EXISTS (SELECT 1 FROM outbox d WHERE d.status = 'pending' AND d.due_at <= ?1
                 AND (d.claimed_until IS NULL OR d.claimed_until <= ?1)
                 AND d.receiver = outbox.receiver AND d.event = outbox.event
                 AND d.group_key = outbox.group_key)))
         ORDER BY id LIMIT ?2"
    );
    let mut out = Vec::new();
    {
        let mut stmt = tx.prepare_cached(&sql)?;
        let mut rows = stmt.query(params![now, limit as i64])?;
        while let Some(r) = rows.next()? {
            out.push(row_from(r)?);
        }
    }
    let mut upd = tx.prepare_cached("UPDATE outbox SET claimed_until = ?2 WHERE id = ?1")?;
    for r in &out {
        upd.execute(params![r.id, now.saturating_add(lease_ms)])?;
    }
    Ok(out)
}

fn finish(
    tx: &Transaction<'_>,
    ids: &[i64],
    a: &AttemptRecord,
    result: &AttemptResult,
) -> Result<()> {
    let at = to_ms(a.at);
    let mut incidents: BTreeSet<(IncidentId, String, String)> = BTreeSet::new();
    for id in ids {
        if !matches!(result, AttemptResult::Suppress(_)) {
            tx.prepare_cached(
                "INSERT INTO outbox_attempts (outbox_id, at, ok, http_status, latency_ms, error, retry_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                id,
                at,
                a.ok,
                a.http_status,
                a.latency_ms,
                a.error,
                a.retry_at.map(to_ms)
            ])?;
        }
        let (status, due, done) = match result {
            AttemptResult::Delivered => ("delivered", None, Some(at)),
            AttemptResult::RetryAt(t) => ("pending", Some(to_ms(*t)), None),
            AttemptResult::GiveUp(_) => ("given_up", None, Some(at)),
            AttemptResult::Suppress(_) => ("suppressed", None, Some(at)),
        };
        let note = match result {
            AttemptResult::Suppress(why) => Some(why.clone()),
            _ => a.error.clone(),
        };
        tx.prepare_cached(
            "UPDATE outbox SET status = ?2, due_at = COALESCE(?3, due_at), done_at = ?4,
                 attempts = attempts + CASE WHEN status = 'pending' AND ?2 = 'suppressed' THEN 0 ELSE 1 END, last_error = ?5, claimed_until = NULL
             WHERE id = ?1 AND status = 'pending'",
        )?
        .execute(params![id, status, due, done, note])?;
        if !matches!(result, AttemptResult::RetryAt(_)) {
            let row: Option<(Option<i64>, String, String)> = tx
                .prepare_cached("SELECT incident_id, receiver, event FROM outbox WHERE id = ?1")?
                .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .ok();
            if let Some((Some(inc), receiver, event)) = row {
                incidents.insert((inc, receiver, event));
            }
        }
    }
    for (inc, receiver, event) in incidents {
        let (kind, message) = match result {
            AttemptResult::Delivered => (
                EventKind::Notified,
                format!("{event} delivered to `{receiver}`"),
            ),
            AttemptResult::GiveUp(why) => (
                EventKind::Note,
                format!("{event} to `{receiver}` given up: {why}"),
            ),
            AttemptResult::Suppress(why) => (
                EventKind::Note,
                format!("{event} to `{receiver}` not sent: {why}"),
            ),
            AttemptResult::RetryAt(_) => continue,
        };
        let e = IncidentEvent::new(a.at, kind, message).with_data(serde_json::json!({
            "receiver": receiver, "event": event, "ok": a.ok, "http_status": a.http_status,
            "latency_ms": a.latency_ms, "given_up": matches!(result, AttemptResult::GiveUp(_)),
        }));
        insert_event(tx, inc, &e)?;
    }
    Ok(())
}

pub fn incident_notifications(
    conn: &Connection,
    id: IncidentId,
) -> Result<Vec<NotificationRecord>> {
    let mut out = Vec::new();
    {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {ROW_COLUMNS} FROM outbox WHERE incident_id = ?1 ORDER BY id"
        ))?;
        let mut rows = stmt.query([id])?;
        while let Some(r) = rows.next()? {
            out.push(NotificationRecord {
                row: row_from(r)?,
                attempt_log: Vec::new(),
            });
        }
    }
    let mut stmt = conn.prepare_cached(
        "SELECT at, ok, http_status, latency_ms, error, retry_at FROM outbox_attempts
         WHERE outbox_id = ?1 ORDER BY id",
    )?;
    for n in &mut out {
        let mut rows = stmt.query([n.row.id])?;
        while let Some(r) = rows.next()? {
            n.attempt_log.push(AttemptRecord {
                at: from_ms(r.get(0)?)?,
                ok: r.get(1)?,
                http_status: r
                    .get::<_, Option<i64>>(2)?
                    .and_then(|s| u16::try_from(s).ok()),
                latency_ms: r.get(3)?,
                error: r.get(4)?,
                retry_at: r.get::<_, Option<i64>>(5)?.map(from_ms).transpose()?,
            });
        }
    }
    Ok(out)
}

pub fn pending(conn: &Connection) -> Result<u64> {
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM outbox WHERE status = 'pending'",
        [],
        |r| r.get(0),
    )?;
    Ok(n.max(0) as u64)
}

pub fn silences(conn: &Connection, now: DateTime<Utc>) -> Result<Vec<Silence>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, matcher, comment, created_by, created_at, expires_at FROM silences
         WHERE expires_at > ?1 ORDER BY id DESC",
    )?;
    let mut rows = stmt.query([to_ms(now)])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let matcher: String = r.get(1)?;
        let m: serde_json::Value = serde_json::from_str(&matcher).unwrap_or_default();
        let list = |k: &str| -> Vec<String> {
            m.get(k)
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default()
        };
        out.push(Silence {
            id: r.get(0)?,
            monitors: list("monitors"),
            hosts: list("hosts"),
            labels: m
                .get("labels")
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default(),
            comment: r.get(2)?,
            created_by: r.get(3)?,
            created_at: from_ms(r.get(4)?)?,
            expires_at: from_ms(r.get(5)?)?,
        });
    }
    Ok(out)
}
