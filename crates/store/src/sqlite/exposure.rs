//! Exposure scans, findings and config versions: writes on the writer thread (a scan and all
//! it changes — findings and their incidents — in ONE transaction), reads on read-only
//! connections. Plain SQL (no SQLite-only functions) so the PostgreSQL backend can mirror it.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use super::codec::{from_ms, to_ms};
use super::writer::Caches;
use crate::{
    ConfigVersion, FindingFilter, FindingRecord, Result, ScanApplied, ScanApply, ScanFilter,
    ScanRecord, StoreError,
};
use portwarden_core::Severity;

/// A write the writer thread applies.
#[derive(Debug)]
pub enum ExposureWrite {
    ApplyScan(Box<ScanApply>),
    ConfigVersion(Box<ConfigVersion>),
}

/// What a write returns.
#[derive(Debug)]
pub enum ExposureDone {
    Scan(ScanApplied),
    Config,
}

fn json(v: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Db(format!("cannot encode JSON: {e}")))
}

fn parse_json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or(serde_json::Value::Null)
}

pub fn apply(tx: &Transaction<'_>, caches: &mut Caches, w: &ExposureWrite) -> Result<ExposureDone> {
    match w {
        ExposureWrite::ApplyScan(a) => apply_scan(tx, caches, a).map(ExposureDone::Scan),
        ExposureWrite::ConfigVersion(v) => {
            let last: Option<(String, Option<String>)> = tx
                .prepare_cached("SELECT hash, git_commit FROM config_versions ORDER BY loaded_at DESC, id DESC LIMIT 1")?
                .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            if last.as_ref() != Some(&(v.hash.clone(), v.git_commit.clone())) {
                tx.prepare_cached(
                    "INSERT INTO config_versions (hash, git_commit, git_dirty, path, loaded_at, reason) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![v.hash, v.git_commit, v.git_dirty, v.path, to_ms(v.loaded_at), v.reason])?;
            }
            Ok(ExposureDone::Config)
        }
    }
}

fn apply_scan(tx: &Transaction<'_>, caches: &mut Caches, a: &ScanApply) -> Result<ScanApplied> {
    let s = &a.scan;
    tx.prepare_cached(
        "INSERT INTO scans (baseline, started_at, finished_at, duration_ms, targets, hosts, probes, \
         open_ports, findings_opened, findings_open, findings_resolved, coverage, error, report) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?
    .execute(params![
        s.baseline,
        to_ms(s.started_at),
        to_ms(s.finished_at),
        s.duration_ms,
        json(&s.targets)?,
        s.hosts as i64,
        s.probes as i64,
        s.open_ports as i64,
        a.opened.len() as i64,
        (a.opened.len() + a.seen.len()) as i64,
        a.gone.len() as i64,
        json(&s.coverage)?,
        s.error,
        json(s.report.as_ref().unwrap_or(&serde_json::Value::Null))?,
    ])?;
    let scan_id = tx.last_insert_rowid();
    let at = to_ms(s.finished_at);
    let mut ids = Vec::with_capacity(a.opened.len());
    for f in &a.opened {
        let incident = match &f.incident {
            Some(new) => Some(super::writer::open_incident(tx, caches, new)?),
            None => None,
        };
        tx.prepare_cached(
            "INSERT INTO findings (baseline, kind, host, port, transport, status, severity, first_seen, \
             last_seen, first_scan, last_scan, message, detail, incident_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, 'open', ?6, ?7, ?7, ?8, ?8, ?9, ?10, ?11)",
        )?
        .execute(params![
            f.baseline,
            f.kind,
            f.host,
            i64::from(f.port),
            f.transport,
            f.severity.as_str(),
            at,
            scan_id,
            f.message,
            json(&f.detail)?,
            incident,
        ])?;
        ids.push(tx.last_insert_rowid());
    }
    for f in &a.seen {
        tx.prepare_cached(
            "UPDATE findings SET last_seen = ?2, last_scan = ?3, message = ?4, detail = ?5 \
             WHERE id = ?1 AND status = 'open'",
        )?
        .execute(params![f.id, at, scan_id, f.message, json(&f.detail)?])?;
    }
    for g in &a.gone {
        tx.prepare_cached(
            "UPDATE findings SET status = 'resolved', resolved_at = ?2, last_scan = ?3 \
             WHERE id = ?1 AND status = 'open'",
        )?
        .execute(params![g.id, at, scan_id])?;
        if let Some((iid, change)) = &g.incident {
            super::writer::change_incident(tx, *iid, change)?;
            super::outbox::insert_rows(tx, Some(*iid), &g.outbox, chrono::Utc::now())?;
        }
    }
    Ok(ScanApplied {
        scan_id,
        findings: ids,
    })
}

const SCAN_COLS: &str = "id, baseline, started_at, finished_at, duration_ms, targets, hosts, probes, \
    open_ports, findings_opened, findings_open, findings_resolved, coverage, error";

fn scan_row(r: &Row<'_>, with_report: bool) -> rusqlite::Result<(ScanRecord, i64, i64)> {
    let targets: String = r.get(5)?;
    let coverage: String = r.get(12)?;
    let report = if with_report {
        let s: String = r.get(14)?;
        Some(parse_json(&s))
    } else {
        None
    };
    Ok((
        ScanRecord {
            id: r.get(0)?,
            baseline: r.get(1)?,
            started_at: DateTime::<Utc>::MIN_UTC,
            finished_at: DateTime::<Utc>::MIN_UTC,
            duration_ms: r.get(4)?,
            targets: serde_json::from_str(&targets).unwrap_or_default(),
            hosts: r.get::<_, i64>(6)? as u64,
            probes: r.get::<_, i64>(7)? as u64,
            open_ports: r.get::<_, i64>(8)? as u64,
            findings_opened: r.get::<_, i64>(9)? as u64,
            findings_open: r.get::<_, i64>(10)? as u64,
            findings_resolved: r.get::<_, i64>(11)? as u64,
            coverage: parse_json(&coverage),
            error: r.get(13)?,
            report,
        },
        r.get(2)?,
        r.get(3)?,
    ))
}

fn finish_scan((mut s, started, finished): (ScanRecord, i64, i64)) -> Result<ScanRecord> {
    s.started_at = from_ms(started)?;
    s.finished_at = from_ms(finished)?;
    Ok(s)
}

pub fn scans(c: &Connection, f: &ScanFilter) -> Result<Vec<ScanRecord>> {
    let limit = if f.limit == 0 { 100 } else { f.limit.min(1000) } as i64;
    let sql = format!(
        "SELECT {SCAN_COLS} FROM scans WHERE (?1 IS NULL OR baseline = ?1) AND started_at >= ?2 \
         AND started_at < ?3 AND (?5 IS NULL OR started_at < ?5 OR (started_at = ?5 AND id < ?6)) \
         ORDER BY started_at DESC, id DESC LIMIT ?4"
    );
    let mut st = c.prepare_cached(&sql)?;
    let rows = st.query_map(
        params![
            f.baseline,
            f.from.map(to_ms).unwrap_or(i64::MIN),
            f.to.map(to_ms).unwrap_or(i64::MAX),
            limit,
            f.before.map(|(t, _)| to_ms(t)),
            f.before.map(|(_, id)| id),
        ],
        |r| scan_row(r, false),
    )?;
    let mut out = Vec::new();
    for r in rows {
        out.push(finish_scan(r?)?);
    }
    Ok(out)
}

pub fn scan(c: &Connection, id: i64) -> Result<Option<ScanRecord>> {
    let sql = format!("SELECT {SCAN_COLS}, report FROM scans WHERE id = ?1");
    let row = c
        .prepare_cached(&sql)?
        .query_row([id], |r| scan_row(r, true))
        .optional()?;
    row.map(finish_scan).transpose()
}

const FINDING_COLS: &str = "id, baseline, kind, host, port, transport, status, severity, first_seen, \
    last_seen, resolved_at, first_scan, last_scan, message, detail, incident_id";

fn finding_row(r: &Row<'_>) -> rusqlite::Result<(FindingRecord, i64, i64, Option<i64>)> {
    let sev: String = r.get(7)?;
    let detail: String = r.get(14)?;
    Ok((
        FindingRecord {
            id: r.get(0)?,
            baseline: r.get(1)?,
            kind: r.get(2)?,
            host: r.get(3)?,
            port: r.get::<_, i64>(4)?.clamp(0, 65535) as u16,
            transport: r.get(5)?,
            status: r.get(6)?,
            severity: Severity::parse(&sev).unwrap_or_default(),
            first_seen: DateTime::<Utc>::MIN_UTC,
            last_seen: DateTime::<Utc>::MIN_UTC,
            resolved_at: None,
            first_scan: r.get(11)?,
            last_scan: r.get(12)?,
            message: r.get(13)?,
            detail: parse_json(&detail),
            incident_id: r.get(15)?,
        },
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
    ))
}

fn finish_finding(
    (mut f, first, last, resolved): (FindingRecord, i64, i64, Option<i64>),
) -> Result<FindingRecord> {
    f.first_seen = from_ms(first)?;
    f.last_seen = from_ms(last)?;
    f.resolved_at = resolved.map(from_ms).transpose()?;
    Ok(f)
}

pub fn findings(c: &Connection, f: &FindingFilter) -> Result<Vec<FindingRecord>> {
    let limit = if f.limit == 0 {
        500
    } else {
        f.limit.min(10_000)
    } as i64;
    // Open at some time in [from, to): first seen before `to`, and not resolved before `from`.
    let sql = format!(
        "SELECT {FINDING_COLS} FROM findings WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR baseline = ?2) \
         AND first_seen < ?4 AND (resolved_at IS NULL OR resolved_at >= ?3) \
         AND (?6 IS NULL OR first_seen < ?6 OR (first_seen = ?6 AND id < ?7)) \
         ORDER BY first_seen DESC, id DESC LIMIT ?5"
    );
    let mut st = c.prepare_cached(&sql)?;
    let rows = st.query_map(
        params![
            f.status,
            f.baseline,
            f.from.map(to_ms).unwrap_or(i64::MIN),
            f.to.map(to_ms).unwrap_or(i64::MAX),
            limit,
            f.before.map(|(t, _)| to_ms(t)),
            f.before.map(|(_, id)| id),
        ],
        finding_row,
    )?;
    let mut out = Vec::new();
    for r in rows {
        out.push(finish_finding(r?)?);
    }
    Ok(out)
}

pub fn finding(c: &Connection, id: i64) -> Result<Option<FindingRecord>> {
    let sql = format!("SELECT {FINDING_COLS} FROM findings WHERE id = ?1");
    let row = c
        .prepare_cached(&sql)?
        .query_row([id], finding_row)
        .optional()?;
    row.map(finish_finding).transpose()
}

pub fn config_versions(
    c: &Connection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<ConfigVersion>> {
    let (from, to) = (to_ms(from), to_ms(to));
    let mut out = Vec::new();
    let map = |r: &Row<'_>| -> rusqlite::Result<(ConfigVersion, i64)> {
        Ok((
            ConfigVersion {
                hash: r.get(0)?,
                git_commit: r.get(1)?,
                git_dirty: r.get(2)?,
                path: r.get(3)?,
                loaded_at: DateTime::<Utc>::MIN_UTC,
                reason: r.get(5)?,
            },
            r.get(4)?,
        ))
    };
    let cols = "hash, git_commit, git_dirty, path, loaded_at, reason";
    let before = c
        .prepare_cached(&format!(
            "SELECT {cols} FROM config_versions WHERE loaded_at < ?1 ORDER BY loaded_at DESC, id DESC LIMIT 1"
        ))?
        .query_row([from], map)
        .optional()?;
    let mut st = c.prepare_cached(&format!(
        "SELECT {cols} FROM config_versions WHERE loaded_at >= ?1 AND loaded_at < ?2 ORDER BY loaded_at, id"
    ))?;
    let rows = st.query_map([from, to], map)?;
    for r in before.into_iter().map(Ok).chain(rows) {
        let (mut v, at) = r?;
        v.loaded_at = from_ms(at)?;
        out.push(v);
    }
    Ok(out)
}
