//! The notification outbox, delivery attempts and silences on PostgreSQL: the same rules as
//! `sqlite::outbox`, with claims taken by `FOR UPDATE SKIP LOCKED` so dispatchers on several
//! replicas (during a handover) never claim one row twice.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use deadpool_postgres::{ClientWrapper as Client, Transaction};
use portwarden_core::{EventKind, IncidentEvent, IncidentId};

use super::ops::{check_fence, insert_event};
use crate::sqlite::codec::{from_ms, to_ms};
use crate::sqlite::outbox::idempotency_key;
use crate::{
    AttemptRecord, AttemptResult, NewOutbox, NotificationRecord, OutboxRow, OutboxStatus, Result,
    Silence, StoreError,
};

/// Inserts rows, skipping those already queued (same receiver and key). Runs inside the
/// incident transactions too.
pub async fn insert_rows(
    tx: &Transaction<'_>,
    incident: Option<IncidentId>,
    rows: &[NewOutbox],
    now: DateTime<Utc>,
) -> Result<u64> {
    let mut n = 0;
    for r in rows {
        let done = (r.status != OutboxStatus::Pending).then(|| to_ms(now));
        let st = tx
            .prepare_cached(
                "INSERT INTO outbox (incident_id, monitor, event, route, receiver, idempotency_key,
                     group_key, payload, status, created_at, due_at, last_error, done_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                 ON CONFLICT (receiver, idempotency_key) DO NOTHING",
            )
            .await?;
        n += tx
            .execute(
                &st,
                &[
                    &incident,
                    &r.monitor,
                    &r.event,
                    &r.route,
                    &r.receiver,
                    &idempotency_key(incident, &r.key),
                    &r.group_key,
                    &r.payload.to_string(),
                    &r.status.as_str(),
                    &to_ms(now),
                    &to_ms(r.due_at),
                    &r.note,
                    &done,
                ],
            )
            .await?;
    }
    Ok(n)
}

pub async fn enqueue(
    c: &mut Client,
    incident: Option<IncidentId>,
    rows: &[NewOutbox],
    event: Option<&IncidentEvent>,
    fence: i64,
) -> Result<u64> {
    let tx = c.transaction().await?;
    check_fence(&tx, fence).await?;
    let n = insert_rows(&tx, incident, rows, Utc::now()).await?;
    if n > 0
        && let (Some(id), Some(e)) = (incident, event)
    {
        insert_event(&tx, id, e).await?;
    }
    tx.commit().await?;
    Ok(n)
}

const ROW_COLUMNS: &str = "id, incident_id, monitor, event, route, receiver, idempotency_key, \
     group_key, payload, status, created_at, due_at, attempts, last_error, done_at";

fn row_from(r: &tokio_postgres::Row) -> Result<OutboxRow> {
    let payload: String = r.try_get(8)?;
    let status: String = r.try_get(9)?;
    Ok(OutboxRow {
        id: r.try_get(0)?,
        incident_id: r.try_get(1)?,
        monitor: r.try_get(2)?,
        event: r.try_get(3)?,
        route: r.try_get(4)?,
        receiver: r.try_get(5)?,
        idempotency_key: r.try_get(6)?,
        group_key: r.try_get(7)?,
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
        status: OutboxStatus::parse(&status)
            .ok_or_else(|| StoreError::Db(format!("unknown outbox status `{status}`")))?,
        created_at: from_ms(r.try_get(10)?)?,
        due_at: from_ms(r.try_get(11)?)?,
        attempts: r.try_get::<_, i64>(12)?.clamp(0, i64::from(u32::MAX)) as u32,
        last_error: r.try_get(13)?,
        done_at: r.try_get::<_, Option<i64>>(14)?.map(from_ms).transpose()?,
    })
}

/// Claims due rows and the pending rows of their groups, oldest first. Rows another
/// transaction is claiming right now are skipped, not waited for.
pub async fn claim(
    c: &mut Client,
    now: i64,
    lease_ms: i64,
    limit: usize,
    fence: i64,
) -> Result<Vec<OutboxRow>> {
    let cols = ROW_COLUMNS
        .split(',')
        .map(|c| format!("o.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "WITH picked AS (
             SELECT id FROM outbox o
             WHERE status = 'pending' AND (claimed_until IS NULL OR claimed_until <= $1)
               AND (due_at <= $1 OR (group_key IS NOT NULL AND EXISTS (
                   SELECT 1 FROM outbox d WHERE d.status = 'pending' AND d.due_at <= $1
                     AND (d.claimed_until IS NULL OR d.claimed_until <= $1)
                     AND d.receiver = o.receiver AND d.event = o.event
                     AND d.group_key = o.group_key)))
             ORDER BY id LIMIT $2
             FOR UPDATE SKIP LOCKED)
         UPDATE outbox o SET claimed_until = $3 FROM picked WHERE o.id = picked.id
         RETURNING {cols}"
    );
    let tx = c.transaction().await?;
    check_fence(&tx, fence).await?;
    let st = tx.prepare_cached(&sql).await?;
    let until = now.saturating_add(lease_ms);
    let mut out = tx
        .query(&st, &[&now, &(limit as i64), &until])
        .await?
        .iter()
        .map(row_from)
        .collect::<Result<Vec<_>>>()?;
    tx.commit().await?;
    out.sort_by_key(|r| r.id);
    Ok(out)
}

pub async fn release_claims(c: &Client) -> Result<u64> {
    Ok(c
        .execute(
            "UPDATE outbox SET claimed_until = NULL WHERE status = 'pending' AND claimed_until IS NOT NULL",
            &[],
        )
        .await?)
}

pub async fn finish(
    c: &mut Client,
    ids: &[i64],
    a: &AttemptRecord,
    result: &AttemptResult,
) -> Result<()> {
    let tx = c.transaction().await?;
    let at = to_ms(a.at);
    let mut incidents: BTreeSet<(IncidentId, String, String)> = BTreeSet::new();
    let http_status = a.http_status.map(i32::from);
    let retry_at = a.retry_at.map(to_ms);
    for id in ids {
        if !matches!(result, AttemptResult::Suppress(_)) {
            tx.execute(
                "INSERT INTO outbox_attempts (outbox_id, at, ok, http_status, latency_ms, error, retry_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[id, &at, &a.ok, &http_status, &a.latency_ms, &a.error, &retry_at],
            )
            .await?;
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
        tx.execute(
            "UPDATE outbox SET status = $2, due_at = COALESCE($3, due_at), done_at = $4,
                 attempts = attempts + CASE WHEN status = 'pending' AND $2 = 'suppressed' THEN 0 ELSE 1 END, last_error = $5, claimed_until = NULL
             WHERE id = $1 AND status = 'pending'",
            &[id, &status, &due, &done, &note],
        )
        .await?;
        if !matches!(result, AttemptResult::RetryAt(_))
            && let Some(r) = tx
                .query_opt(
                    "SELECT incident_id, receiver, event FROM outbox WHERE id = $1",
                    &[id],
                )
                .await?
            && let Some(inc) = r.try_get::<_, Option<i64>>(0)?
        {
            incidents.insert((inc, r.try_get(1)?, r.try_get(2)?));
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
        insert_event(&tx, inc, &e).await?;
    }
    tx.commit().await?;
    Ok(())
}

pub async fn incident_notifications(c: &Client, id: IncidentId) -> Result<Vec<NotificationRecord>> {
    let st = c
        .prepare_cached(&format!(
            "SELECT {ROW_COLUMNS} FROM outbox WHERE incident_id = $1 ORDER BY id"
        ))
        .await?;
    let mut out = Vec::new();
    for r in c.query(&st, &[&id]).await? {
        out.push(NotificationRecord {
            row: row_from(&r)?,
            attempt_log: Vec::new(),
        });
    }
    let st = c
        .prepare_cached(
            "SELECT at, ok, http_status, latency_ms, error, retry_at FROM outbox_attempts
             WHERE outbox_id = $1 ORDER BY id",
        )
        .await?;
    for n in &mut out {
        for r in c.query(&st, &[&n.row.id]).await? {
            n.attempt_log.push(AttemptRecord {
                at: from_ms(r.try_get(0)?)?,
                ok: r.try_get(1)?,
                http_status: r
                    .try_get::<_, Option<i32>>(2)?
                    .and_then(|s| u16::try_from(s).ok()),
                latency_ms: r.try_get(3)?,
                error: r.try_get(4)?,
                retry_at: r.try_get::<_, Option<i64>>(5)?.map(from_ms).transpose()?,
            });
        }
    }
    Ok(out)
}

pub async fn pending(c: &Client) -> Result<u64> {
    let n: i64 = c
        .query_one("SELECT COUNT(*) FROM outbox WHERE status = 'pending'", &[])
        .await?
        .try_get(0)?;
    Ok(n.max(0) as u64)
}

pub async fn create_silence(c: &Client, s: &Silence) -> Result<i64> {
    let matcher = serde_json::json!({
        "monitors": s.monitors, "hosts": s.hosts, "labels": s.labels,
    });
    Ok(c.query_one(
        "INSERT INTO silences (matcher, comment, created_by, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        &[
            &matcher.to_string(),
            &s.comment,
            &s.created_by,
            &to_ms(s.created_at),
            &to_ms(s.expires_at),
        ],
    )
    .await?
    .try_get(0)?)
}

pub async fn delete_silence(c: &Client, id: i64, now: DateTime<Utc>) -> Result<bool> {
    Ok(c.execute(
        "UPDATE silences SET expires_at = $2 WHERE id = $1 AND expires_at > $2",
        &[&id, &to_ms(now)],
    )
    .await?
        > 0)
}

pub async fn silences(c: &Client, now: DateTime<Utc>) -> Result<Vec<Silence>> {
    let rows = c
        .query(
            "SELECT id, matcher, comment, created_by, created_at, expires_at FROM silences
             WHERE expires_at > $1 ORDER BY id DESC",
            &[&to_ms(now)],
        )
        .await?;
    let mut out = Vec::new();
    for r in rows {
        let matcher: String = r.try_get(1)?;
        let m: serde_json::Value = serde_json::from_str(&matcher).unwrap_or_default();
        let list = |k: &str| -> Vec<String> {
            m.get(k)
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default()
        };
        out.push(Silence {
            id: r.try_get(0)?,
            monitors: list("monitors"),
            hosts: list("hosts"),
            labels: m
                .get("labels")
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default(),
            comment: r.try_get(2)?,
            created_by: r.try_get(3)?,
            created_at: from_ms(r.try_get(4)?)?,
            expires_at: from_ms(r.try_get(5)?)?,
        });
    }
    Ok(out)
}
