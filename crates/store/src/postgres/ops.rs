//! Writes that the caller awaits (registry, incidents, sessions, local users) and retention:
//! one transaction each on a pooled connection, with the same rules as the SQLite writer.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::{ClientWrapper as Client, Transaction};
use portwarden_core::{IncidentEvent, IncidentId, IncidentStatus, State};

use crate::sqlite::codec::{encode_scope, from_ms, json_or_null, to_ms};
use crate::sqlite::rollup::Grain;
use crate::{
    IncidentChange, LocalUser, MonitorId, MonitorRecord, NewIncident, Result, RevokeSessions,
    SessionRecord, StoreError,
};

pub async fn sync_monitors(
    c: &mut Client,
    monitors: &[MonitorRecord],
) -> Result<HashMap<String, MonitorId>> {
    // Sorted by name: replicas syncing at once take the unique-index locks in one order.
    let mut sorted: Vec<&MonitorRecord> = monitors.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    sorted.dedup_by(|a, b| a.name == b.name);
    let now = Utc::now().timestamp_millis();
    let mut out = HashMap::with_capacity(sorted.len());
    let tx = c.transaction().await?;
    for chunk in sorted.chunks(1000) {
        let names: Vec<&str> = chunk.iter().map(|m| m.name.as_str()).collect();
        let targets: Vec<&str> = chunk.iter().map(|m| m.target.as_str()).collect();
        let checks: Vec<&str> = chunk.iter().map(|m| m.check.as_str()).collect();
        let tiers: Vec<&str> = chunk.iter().map(|m| m.tier.as_str()).collect();
        let metas: Vec<String> = chunk.iter().map(|m| m.meta.to_string()).collect();
        let rows = tx
            .query(
                "INSERT INTO monitors (name, target, check_kind, tier, meta, first_seen, last_seen)
                 SELECT n, t, c, ti, me, $6, $6
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
                   AS u(n, t, c, ti, me)
                 ON CONFLICT (name) DO UPDATE SET target = excluded.target,
                     check_kind = excluded.check_kind, tier = excluded.tier,
                     meta = excluded.meta, last_seen = excluded.last_seen
                 RETURNING name, id",
                &[&names, &targets, &checks, &tiers, &metas, &now],
            )
            .await?;
        for r in rows {
            out.insert(r.try_get(0)?, r.try_get(1)?);
        }
    }
    tx.commit().await?;
    Ok(out)
}

/// The id of a monitor, registering the name when it is new.
async fn monitor_id(tx: &Transaction<'_>, name: &str) -> Result<i64> {
    let now = Utc::now().timestamp_millis();
    tx.execute(
        "INSERT INTO monitors (name, first_seen, last_seen) VALUES ($1, $2, $2)
         ON CONFLICT (name) DO NOTHING",
        &[&name, &now],
    )
    .await?;
    Ok(tx
        .query_one("SELECT id FROM monitors WHERE name = $1", &[&name])
        .await?
        .try_get(0)?)
}

pub(crate) async fn insert_event(
    tx: &Transaction<'_>,
    incident: IncidentId,
    e: &IncidentEvent,
) -> Result<()> {
    let st = tx
        .prepare_cached(
            "INSERT INTO incident_events (incident_id, at, kind, message, data)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .await?;
    tx.execute(
        &st,
        &[
            &incident,
            &to_ms(e.at),
            &e.kind.as_str(),
            &e.message,
            &json_or_null(&e.data),
        ],
    )
    .await?;
    Ok(())
}

/// Refuses the transaction's writes unless `fence` is the database's leader term: a replica
/// that lost leadership (and may not know it yet) cannot change incidents or claim
/// notifications. `0` = not fenced (no leadership in this process). The row is read
/// `FOR SHARE`, so a new leader's term change waits for transactions already checked.
pub(crate) async fn check_fence(tx: &Transaction<'_>, fence: i64) -> Result<()> {
    if fence == 0 {
        return Ok(());
    }
    let term: i64 = tx
        .query_one("SELECT term FROM leader_term WHERE id = 1 FOR SHARE", &[])
        .await?
        .try_get(0)?;
    if fence < 0 || term != fence {
        return Err(StoreError::Db(format!(
            "this replica is not the leader (its term {}, the database's {term}); the change \
             is left to the leader",
            fence.max(0)
        )));
    }
    Ok(())
}

pub async fn open_incident(c: &mut Client, new: &NewIncident, fence: i64) -> Result<IncidentId> {
    let tx = c.transaction().await?;
    check_fence(&tx, fence).await?;
    let id = open_incident_tx(&tx, new).await?;
    tx.commit().await?;
    Ok(id)
}

/// Opens an incident inside the caller's transaction (with its event and outbox rows).
pub(crate) async fn open_incident_tx(
    tx: &Transaction<'_>,
    new: &NewIncident,
) -> Result<IncidentId> {
    let mid = monitor_id(tx, &new.monitor).await?;
    let (scope, locations) = encode_scope(&new.scope);
    let last_healthy = match &new.last_healthy {
        Some(h) => Some(
            serde_json::to_string(h)
                .map_err(|e| StoreError::Db(format!("cannot encode last_healthy: {e}")))?,
        ),
        None => None,
    };
    let id: i64 = tx
        .query_one(
            "INSERT INTO incidents (monitor_id, status, state, severity, scope, locations,
                 opened_at, error_kind, message, last_healthy)
             VALUES ($1, 'open', $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            &[
                &mid,
                &new.state.as_str(),
                &new.severity.as_str(),
                &scope,
                &locations,
                &to_ms(new.opened_at),
                &new.error_kind,
                &new.message,
                &last_healthy,
            ],
        )
        .await?
        .try_get(0)?;
    insert_event(tx, id, &new.event).await?;
    super::outbox::insert_rows(tx, Some(id), &new.outbox, Utc::now()).await?;
    Ok(id)
}

fn badness(s: State) -> u8 {
    match s {
        State::Down => 3,
        State::Flapping => 2,
        State::Degraded => 1,
        _ => 0,
    }
}

pub async fn change_incident(
    c: &mut Client,
    id: IncidentId,
    change: &IncidentChange,
    outbox: &[crate::NewOutbox],
    fence: i64,
) -> Result<()> {
    let tx = c.transaction().await?;
    // Acknowledgements come from people, on any replica: never fenced.
    if !matches!(change, IncidentChange::Acknowledge { .. }) {
        check_fence(&tx, fence).await?;
    }
    change_incident_tx(&tx, id, change, outbox).await?;
    tx.commit().await?;
    Ok(())
}

/// Applies an incident change inside the caller's transaction.
pub(crate) async fn change_incident_tx(
    tx: &Transaction<'_>,
    id: IncidentId,
    change: &IncidentChange,
    outbox: &[crate::NewOutbox],
) -> Result<()> {
    // FOR UPDATE: two replicas changing one incident apply their changes one after the other.
    let cur = tx
        .query_opt(
            "SELECT status, state FROM incidents WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await?;
    let Some(cur) = cur else {
        return Err(StoreError::NotFound(format!("incident {id}")));
    };
    let status: String = cur.try_get(0)?;
    let state: String = cur.try_get(1)?;
    let resolved = status == IncidentStatus::Resolved.as_str();
    match change {
        IncidentChange::Update {
            state: new_state,
            scope,
            error_kind,
            message,
            event,
        } => {
            if let Some(s) = new_state {
                let keep = State::parse(&state).is_some_and(|cur| badness(cur) > badness(*s));
                if !keep {
                    tx.execute(
                        "UPDATE incidents SET state = $2 WHERE id = $1",
                        &[&id, &s.as_str()],
                    )
                    .await?;
                }
            }
            if let Some(scope) = scope {
                let (scope, locations) = encode_scope(scope);
                tx.execute(
                    "UPDATE incidents SET scope = $2, locations = $3 WHERE id = $1",
                    &[&id, &scope, &locations],
                )
                .await?;
            }
            if let Some(k) = error_kind {
                tx.execute(
                    "UPDATE incidents SET error_kind = $2 WHERE id = $1",
                    &[&id, k],
                )
                .await?;
            }
            if let Some(m) = message {
                tx.execute("UPDATE incidents SET message = $2 WHERE id = $1", &[&id, m])
                    .await?;
            }
            insert_event(tx, id, event).await?;
        }
        IncidentChange::Acknowledge { by, event } => {
            tx.execute(
                "UPDATE incidents SET acknowledged_at = COALESCE(acknowledged_at, $2),
                     acknowledged_by = COALESCE(acknowledged_by, $3) WHERE id = $1",
                &[&id, &to_ms(event.at), by],
            )
            .await?;
            insert_event(tx, id, event).await?;
        }
        IncidentChange::Resolve { at, event } => {
            if !resolved {
                tx.execute(
                    "UPDATE incidents SET status = 'resolved', resolved_at = $2 WHERE id = $1",
                    &[&id, &to_ms(*at)],
                )
                .await?;
                insert_event(tx, id, event).await?;
            }
        }
    }
    super::outbox::insert_rows(tx, Some(id), outbox, Utc::now()).await?;
    Ok(())
}

const RETENTION_MONITORS_PER_STEP: i64 = 500;
const RETENTION_DELETE_CHUNK: i64 = 5_000;

/// Deletes rows older than `cutoff_ms` from one table, monitor by monitor in bounded chunks
/// (each chunk its own statement: no long transaction, no lock on everything).
pub async fn retain(c: &Client, table: RetentionTable, cutoff_ms: i64) -> Result<u64> {
    let (sql, bound) = match table {
        RetentionTable::Observations => (
            "DELETE FROM observations WHERE id IN (SELECT id FROM observations
                 WHERE monitor_id = $1 AND started_at < $2 LIMIT $3)",
            cutoff_ms,
        ),
        RetentionTable::Minute => (
            "DELETE FROM rollup_minute WHERE (monitor_id, bucket, location) IN (
                 SELECT monitor_id, bucket, location FROM rollup_minute
                 WHERE monitor_id = $1 AND bucket < $2 LIMIT $3)",
            cutoff_ms - Grain::Minute.width_ms() + 1,
        ),
        RetentionTable::Hour => (
            "DELETE FROM rollup_hour WHERE (monitor_id, bucket, location) IN (
                 SELECT monitor_id, bucket, location FROM rollup_hour
                 WHERE monitor_id = $1 AND bucket < $2 LIMIT $3)",
            cutoff_ms - Grain::Hour.width_ms() + 1,
        ),
    };
    let del = c.prepare_cached(sql).await?;
    let list = c
        .prepare_cached("SELECT id FROM monitors WHERE id > $1 ORDER BY id LIMIT $2")
        .await?;
    let mut total = 0u64;
    let mut after = i64::MIN;
    loop {
        let ids: Vec<i64> = c
            .query(&list, &[&after, &RETENTION_MONITORS_PER_STEP])
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<_, _>>()?;
        for &mid in &ids {
            loop {
                let n = c
                    .execute(&del, &[&mid, &bound, &RETENTION_DELETE_CHUNK])
                    .await?;
                total += n;
                if (n as i64) < RETENTION_DELETE_CHUNK {
                    break;
                }
            }
            after = mid;
        }
        if (ids.len() as i64) < RETENTION_MONITORS_PER_STEP {
            return Ok(total);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetentionTable {
    Observations,
    Minute,
    Hour,
}

// --- sessions and local users ---

const SESSION_COLUMNS: &str =
    "id, user_name, csrf, created_at, expires_at, last_seen, revoked_at, remote, user_agent";

fn session_from_row(r: &tokio_postgres::Row) -> Result<SessionRecord> {
    let revoked: Option<i64> = r.try_get(6)?;
    Ok(SessionRecord {
        id: r.try_get(0)?,
        user: r.try_get(1)?,
        csrf: r.try_get(2)?,
        created_at: from_ms(r.try_get(3)?)?,
        expires_at: from_ms(r.try_get(4)?)?,
        last_seen: from_ms(r.try_get(5)?)?,
        revoked_at: revoked.map(from_ms).transpose()?,
        remote: r.try_get(7)?,
        user_agent: r.try_get(8)?,
    })
}

pub async fn create_session(c: &Client, s: &SessionRecord) -> Result<()> {
    c.execute(
        "INSERT INTO sessions (id, user_name, csrf, created_at, expires_at, last_seen,
             revoked_at, remote, user_agent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &s.id,
            &s.user,
            &s.csrf,
            &to_ms(s.created_at),
            &to_ms(s.expires_at),
            &to_ms(s.last_seen),
            &s.revoked_at.map(to_ms),
            &s.remote,
            &s.user_agent,
        ],
    )
    .await?;
    Ok(())
}

pub async fn session(c: &Client, id: &str) -> Result<Option<SessionRecord>> {
    let st = c
        .prepare_cached(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1"
        ))
        .await?;
    c.query_opt(&st, &[&id])
        .await?
        .as_ref()
        .map(session_from_row)
        .transpose()
}

pub async fn touch_session(c: &Client, id: &str, at: DateTime<Utc>) -> Result<()> {
    let st = c
        .prepare_cached("UPDATE sessions SET last_seen = GREATEST(last_seen, $2) WHERE id = $1")
        .await?;
    c.execute(&st, &[&id, &to_ms(at)]).await?;
    Ok(())
}

pub async fn revoke_sessions(c: &Client, which: &RevokeSessions, at: DateTime<Utc>) -> Result<u64> {
    let at = to_ms(at);
    let active = "revoked_at IS NULL AND expires_at > $1";
    Ok(match which {
        RevokeSessions::One(id) => {
            c.execute(
                &format!("UPDATE sessions SET revoked_at = $1 WHERE {active} AND id = $2"),
                &[&at, id],
            )
            .await?
        }
        RevokeSessions::User(u) => {
            c.execute(
                &format!("UPDATE sessions SET revoked_at = $1 WHERE {active} AND user_name = $2"),
                &[&at, u],
            )
            .await?
        }
        RevokeSessions::All => {
            c.execute(
                &format!("UPDATE sessions SET revoked_at = $1 WHERE {active}"),
                &[&at],
            )
            .await?
        }
    })
}

pub async fn active_sessions(c: &Client, now: DateTime<Utc>) -> Result<Vec<SessionRecord>> {
    c.query(
        &format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE revoked_at IS NULL AND expires_at > $1 \
             ORDER BY created_at DESC LIMIT 1000"
        ),
        &[&to_ms(now)],
    )
    .await?
    .iter()
    .map(session_from_row)
    .collect()
}

pub async fn purge_sessions(c: &Client, before: DateTime<Utc>) -> Result<u64> {
    Ok(c.execute(
        "DELETE FROM sessions WHERE expires_at < $1 OR revoked_at < $1",
        &[&to_ms(before)],
    )
    .await?)
}

pub async fn local_user(c: &Client, name: &str) -> Result<Option<LocalUser>> {
    let row = c
        .query_opt(
            "SELECT name, password_hash, role, created_at FROM local_users WHERE name = $1",
            &[&name],
        )
        .await?;
    row.map(|r| {
        Ok(LocalUser {
            name: r.try_get(0)?,
            password_hash: r.try_get(1)?,
            role: r.try_get(2)?,
            created_at: from_ms(r.try_get(3)?)?,
        })
    })
    .transpose()
}

/// Stores `candidate` under `name` unless a key is there; returns the stored key.
pub async fn shared_key(c: &Client, name: &str, candidate: &[u8]) -> Result<Vec<u8>> {
    c.execute(
        "INSERT INTO shared_keys (name, value, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO NOTHING",
        &[&name, &candidate, &to_ms(chrono::Utc::now())],
    )
    .await?;
    let row = c
        .query_one("SELECT value FROM shared_keys WHERE name = $1", &[&name])
        .await?;
    Ok(row.try_get(0)?)
}

pub async fn create_local_user(c: &Client, u: &LocalUser) -> Result<bool> {
    let n = c
        .execute(
            "INSERT INTO local_users (name, password_hash, role, created_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
            &[&u.name, &u.password_hash, &u.role, &to_ms(u.created_at)],
        )
        .await?;
    Ok(n > 0)
}
