//! Web sessions and locally created users: writes run on the writer thread (one transaction
//! each, like incidents), reads on read-only connections.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use super::codec::{from_ms, to_ms};
use crate::{LocalUser, Result, RevokeSessions, SessionRecord};

/// A write the writer thread applies.
#[derive(Debug)]
pub enum AuthWrite {
    CreateSession(Box<SessionRecord>),
    Touch {
        id: String,
        at: DateTime<Utc>,
    },
    Revoke {
        which: RevokeSessions,
        at: DateTime<Utc>,
    },
    Purge {
        before: DateTime<Utc>,
    },
    CreateLocalUser(Box<LocalUser>),
    /// Stores a shared key unless one with that name exists.
    SharedKey {
        name: String,
        value: Vec<u8>,
        at: DateTime<Utc>,
    },
}

/// Applies one write; returns the rows it affected.
pub fn apply(tx: &Transaction<'_>, w: &AuthWrite) -> Result<u64> {
    let n = match w {
        AuthWrite::CreateSession(s) => tx.execute(
            "INSERT INTO sessions (id, user_name, csrf, created_at, expires_at, last_seen, \
             revoked_at, remote, user_agent) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                s.id,
                s.user,
                s.csrf,
                to_ms(s.created_at),
                to_ms(s.expires_at),
                to_ms(s.last_seen),
                s.revoked_at.map(to_ms),
                s.remote,
                s.user_agent,
            ],
        )?,
        AuthWrite::Touch { id, at } => tx.execute(
            "UPDATE sessions SET last_seen = max(last_seen, ?2) WHERE id = ?1",
            params![id, to_ms(*at)],
        )?,
        AuthWrite::Revoke { which, at } => {
            let at = to_ms(*at);
            let active = "revoked_at IS NULL AND expires_at > ?1";
            match which {
                RevokeSessions::One(id) => tx.execute(
                    &format!("UPDATE sessions SET revoked_at = ?1 WHERE {active} AND id = ?2"),
                    params![at, id],
                )?,
                RevokeSessions::User(u) => tx.execute(
                    &format!(
                        "UPDATE sessions SET revoked_at = ?1 WHERE {active} AND user_name = ?2"
                    ),
                    params![at, u],
                )?,
                RevokeSessions::All => tx.execute(
                    &format!("UPDATE sessions SET revoked_at = ?1 WHERE {active}"),
                    params![at],
                )?,
            }
        }
        AuthWrite::Purge { before } => tx.execute(
            "DELETE FROM sessions WHERE expires_at < ?1 OR revoked_at < ?1",
            params![to_ms(*before)],
        )?,
        AuthWrite::CreateLocalUser(u) => tx.execute(
            "INSERT INTO local_users (name, password_hash, role, created_at) \
             VALUES (?1, ?2, ?3, ?4) ON CONFLICT (name) DO NOTHING",
            params![u.name, u.password_hash, u.role, to_ms(u.created_at)],
        )?,
        AuthWrite::SharedKey { name, value, at } => tx.execute(
            "INSERT INTO shared_keys (name, value, created_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (name) DO NOTHING",
            params![name, value, to_ms(*at)],
        )?,
    };
    Ok(n as u64)
}

/// A shared key by name.
pub fn shared_key(conn: &Connection, name: &str) -> Result<Option<Vec<u8>>> {
    let mut stmt = conn.prepare_cached("SELECT value FROM shared_keys WHERE name = ?1")?;
    let mut rows = stmt.query([name])?;
    match rows.next()? {
        Some(r) => Ok(Some(r.get(0)?)),
        None => Ok(None),
    }
}

const SESSION_COLUMNS: &str =
    "id, user_name, csrf, created_at, expires_at, last_seen, revoked_at, remote, user_agent";

fn session_from_row(r: &Row<'_>) -> Result<SessionRecord> {
    let revoked: Option<i64> = r.get(6)?;
    Ok(SessionRecord {
        id: r.get(0)?,
        user: r.get(1)?,
        csrf: r.get(2)?,
        created_at: from_ms(r.get(3)?)?,
        expires_at: from_ms(r.get(4)?)?,
        last_seen: from_ms(r.get(5)?)?,
        revoked_at: revoked.map(from_ms).transpose()?,
        remote: r.get(7)?,
        user_agent: r.get(8)?,
    })
}

pub fn session(conn: &Connection, id: &str) -> Result<Option<SessionRecord>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1"
    ))?;
    let mut rows = stmt.query([id])?;
    match rows.next()? {
        Some(r) => Ok(Some(session_from_row(r)?)),
        None => Ok(None),
    }
}

pub fn active_sessions(conn: &Connection, now: DateTime<Utc>) -> Result<Vec<SessionRecord>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SESSION_COLUMNS} FROM sessions WHERE revoked_at IS NULL AND expires_at > ?1 \
         ORDER BY created_at DESC LIMIT 1000"
    ))?;
    let mut rows = stmt.query([to_ms(now)])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(session_from_row(r)?);
    }
    Ok(out)
}

pub fn local_user(conn: &Connection, name: &str) -> Result<Option<LocalUser>> {
    let row = conn
        .prepare_cached(
            "SELECT name, password_hash, role, created_at FROM local_users WHERE name = ?1",
        )?
        .query_row([name], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .optional()?;
    row.map(|(name, password_hash, role, at)| {
        Ok(LocalUser {
            name,
            password_hash,
            role,
            created_at: from_ms(at)?,
        })
    })
    .transpose()
}
