//! Agent inbox and agent status (migration 8): writes through the writer thread, reads on
//! the read-only connections.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, Transaction, params};

use super::codec::from_ms;
use crate::{AgentStatus, InboxBatch, RemoteRun, Result, StoreError};

pub enum AgentWrite {
    InboxDone(Vec<i64>),
    Heartbeat {
        agent: String,
        location: String,
        at: DateTime<Utc>,
        heartbeat: serde_json::Value,
    },
}

pub fn apply(tx: &Transaction<'_>, w: &AgentWrite) -> Result<()> {
    match w {
        AgentWrite::InboxDone(ids) => {
            let mut st = tx.prepare_cached("DELETE FROM agent_inbox WHERE id = ?1")?;
            for id in ids {
                st.execute(params![id])?;
            }
        }
        AgentWrite::Heartbeat {
            agent,
            location,
            at,
            heartbeat,
        } => {
            tx.prepare_cached(
                "INSERT INTO agent_status (agent, location, last_contact, heartbeat)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (agent) DO UPDATE SET location = excluded.location,
                     last_contact = MAX(COALESCE(agent_status.last_contact, 0), excluded.last_contact),
                     heartbeat = excluded.heartbeat",
            )?
            .execute(params![
                agent,
                location,
                at.timestamp_millis(),
                heartbeat.to_string()
            ])?;
        }
    }
    Ok(())
}

pub fn inbox(c: &Connection, limit: usize) -> Result<Vec<InboxBatch>> {
    let mut st = c.prepare_cached(
        "SELECT id, agent, seq, location, received_at, runs FROM agent_inbox ORDER BY id LIMIT ?1",
    )?;
    let rows = st.query_map(params![limit as i64], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, String>(5)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, agent, seq, location, received, runs) = row?;
        out.push(inbox_row(id, agent, seq, location, received, &runs)?);
    }
    Ok(out)
}

/// One inbox row from its columns (shared with PostgreSQL).
pub(crate) fn inbox_row(
    id: i64,
    agent: String,
    seq: i64,
    location: String,
    received_ms: i64,
    runs: &str,
) -> Result<InboxBatch> {
    let runs: Vec<RemoteRun> = serde_json::from_str(runs).map_err(|e| {
        StoreError::Db(format!(
            "agent inbox row {id} (agent `{agent}`, seq {seq}) has unreadable runs: {e}"
        ))
    })?;
    Ok(InboxBatch {
        id,
        agent,
        seq: u64::try_from(seq).unwrap_or(0),
        location,
        received_at: from_ms(received_ms)?,
        runs,
    })
}

pub(crate) const STATUS_COLUMNS: &str = "agent, location, last_contact, heartbeat, last_batch_at, last_seq, lag_ms, observations, duplicates";

/// One status row (shared with PostgreSQL).
#[allow(clippy::too_many_arguments)]
pub(crate) fn status_row(
    agent: String,
    location: String,
    last_contact: Option<i64>,
    heartbeat: Option<String>,
    last_batch_at: Option<i64>,
    last_seq: i64,
    lag_ms: Option<f64>,
    observations: i64,
    duplicates: i64,
) -> Result<AgentStatus> {
    Ok(AgentStatus {
        agent,
        location,
        last_contact: last_contact.map(from_ms).transpose()?,
        // An unreadable heartbeat is shown as none rather than failing the list.
        heartbeat: heartbeat.and_then(|h| serde_json::from_str(&h).ok()),
        last_batch_at: last_batch_at.map(from_ms).transpose()?,
        last_seq: u64::try_from(last_seq).unwrap_or(0),
        lag_ms,
        observations: u64::try_from(observations).unwrap_or(0),
        duplicates: u64::try_from(duplicates).unwrap_or(0),
    })
}

pub fn statuses(c: &Connection) -> Result<Vec<AgentStatus>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {STATUS_COLUMNS} FROM agent_status ORDER BY agent"
    ))?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
            r.get(8)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (a, l, lc, hb, lb, seq, lag, obs, dup) = row?;
        out.push(status_row(a, l, lc, hb, lb, seq, lag, obs, dup)?);
    }
    Ok(out)
}
