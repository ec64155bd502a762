//! Exposure scans, findings and config versions on PostgreSQL: the same semantics as
//! `sqlite::exposure` (a scan and everything it changes in one transaction).

use chrono::{DateTime, Utc};
use deadpool_postgres::ClientWrapper as Client;
use portwarden_core::Severity;
use tokio_postgres::Row;

use crate::sqlite::codec::{from_ms, to_ms};
use crate::{
    ConfigVersion, FindingFilter, FindingRecord, Result, ScanApplied, ScanApply, ScanFilter,
    ScanRecord, StoreError,
};

fn json(v: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Db(format!("cannot encode JSON: {e}")))
}

fn parse_json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or(serde_json::Value::Null)
}

/// `fence`: the leader's term (scheduled scans run on the leader only; see `ops::check_fence`).
pub async fn apply_scan(c: &mut Client, a: &ScanApply, fence: i64) -> Result<ScanApplied> {
    let tx = c.transaction().await?;
    super::ops::check_fence(&tx, fence).await?;
    let s = &a.scan;
    let report = json(s.report.as_ref().unwrap_or(&serde_json::Value::Null))?;
    let scan_id: i64 = tx
        .query_one(
            "INSERT INTO scans (baseline, started_at, finished_at, duration_ms, targets, hosts, probes, \
             open_ports, findings_opened, findings_open, findings_resolved, coverage, error, report) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id",
            &[
                &s.baseline,
                &to_ms(s.started_at),
                &to_ms(s.finished_at),
                &s.duration_ms,
                &json(&s.targets)?,
                &(s.hosts as i64),
                &(s.probes as i64),
                &(s.open_ports as i64),
                &(a.opened.len() as i64),
                &((a.opened.len() + a.seen.len()) as i64),
                &(a.gone.len() as i64),
                &json(&s.coverage)?,
                &s.error,
                &report,
            ],
        )
        .await?
        .try_get(0)?;
    let at = to_ms(s.finished_at);
    let mut ids = Vec::with_capacity(a.opened.len());
    for f in &a.opened {
        let incident = match &f.incident {
            Some(new) => Some(super::ops::open_incident_tx(&tx, new).await?),
            None => None,
        };
        let id: i64 = tx
            .query_one(
                "INSERT INTO findings (baseline, kind, host, port, transport, status, severity, first_seen, \
                 last_seen, first_scan, last_scan, message, detail, incident_id) \
                 VALUES ($1, $2, $3, $4, $5, 'open', $6, $7, $7, $8, $8, $9, $10, $11) RETURNING id",
                &[
                    &f.baseline,
                    &f.kind,
                    &f.host,
                    &i64::from(f.port),
                    &f.transport,
                    &f.severity.as_str(),
                    &at,
                    &scan_id,
                    &f.message,
                    &json(&f.detail)?,
                    &incident,
                ],
            )
            .await?
            .try_get(0)?;
        ids.push(id);
    }
    for f in &a.seen {
        tx.execute(
            "UPDATE findings SET last_seen = $2, last_scan = $3, message = $4, detail = $5 \
             WHERE id = $1 AND status = 'open'",
            &[&f.id, &at, &scan_id, &f.message, &json(&f.detail)?],
        )
        .await?;
    }
    for g in &a.gone {
        tx.execute(
            "UPDATE findings SET status = 'resolved', resolved_at = $2, last_scan = $3 \
             WHERE id = $1 AND status = 'open'",
            &[&g.id, &at, &scan_id],
        )
        .await?;
        if let Some((iid, change)) = &g.incident {
            super::ops::change_incident_tx(&tx, *iid, change, &g.outbox).await?;
        }
    }
    tx.commit().await?;
    Ok(ScanApplied {
        scan_id,
        findings: ids,
    })
}

pub async fn record_config_version(c: &mut Client, v: &ConfigVersion) -> Result<()> {
    let tx = c.transaction().await?;
    // One writer at a time decides whether this version is new.
    tx.execute(
        "LOCK TABLE config_versions IN SHARE ROW EXCLUSIVE MODE",
        &[],
    )
    .await?;
    let last = tx
        .query_opt(
            "SELECT hash, git_commit FROM config_versions ORDER BY loaded_at DESC, id DESC LIMIT 1",
            &[],
        )
        .await?;
    let same = match last {
        Some(r) => {
            let h: String = r.try_get(0)?;
            let g: Option<String> = r.try_get(1)?;
            h == v.hash && g == v.git_commit
        }
        None => false,
    };
    if !same {
        tx.execute(
            "INSERT INTO config_versions (hash, git_commit, git_dirty, path, loaded_at, reason) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &v.hash,
                &v.git_commit,
                &v.git_dirty,
                &v.path,
                &to_ms(v.loaded_at),
                &v.reason,
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

const SCAN_COLS: &str = "id, baseline, started_at, finished_at, duration_ms, targets, hosts, probes, \
    open_ports, findings_opened, findings_open, findings_resolved, coverage, error";

fn scan_row(r: &Row, with_report: bool) -> Result<ScanRecord> {
    let targets: String = r.try_get(5)?;
    let coverage: String = r.try_get(12)?;
    let report = if with_report {
        let s: String = r.try_get(14)?;
        Some(parse_json(&s))
    } else {
        None
    };
    Ok(ScanRecord {
        id: r.try_get(0)?,
        baseline: r.try_get(1)?,
        started_at: from_ms(r.try_get(2)?)?,
        finished_at: from_ms(r.try_get(3)?)?,
        duration_ms: r.try_get(4)?,
        targets: serde_json::from_str(&targets).unwrap_or_default(),
        hosts: r.try_get::<_, i64>(6)? as u64,
        probes: r.try_get::<_, i64>(7)? as u64,
        open_ports: r.try_get::<_, i64>(8)? as u64,
        findings_opened: r.try_get::<_, i64>(9)? as u64,
        findings_open: r.try_get::<_, i64>(10)? as u64,
        findings_resolved: r.try_get::<_, i64>(11)? as u64,
        coverage: parse_json(&coverage),
        error: r.try_get(13)?,
        report,
    })
}

pub async fn scans(c: &Client, f: &ScanFilter) -> Result<Vec<ScanRecord>> {
    let limit = if f.limit == 0 { 100 } else { f.limit.min(1000) } as i64;
    let sql = format!(
        "SELECT {SCAN_COLS} FROM scans WHERE ($1::TEXT IS NULL OR baseline = $1) AND started_at >= $2 \
         AND started_at < $3 AND ($5::BIGINT IS NULL OR started_at < $5 \
         OR (started_at = $5 AND id < $6::BIGINT)) ORDER BY started_at DESC, id DESC LIMIT $4"
    );
    let rows = c
        .query(
            &sql,
            &[
                &f.baseline,
                &f.from.map(to_ms).unwrap_or(i64::MIN),
                &f.to.map(to_ms).unwrap_or(i64::MAX),
                &limit,
                &f.before.map(|(t, _)| to_ms(t)),
                &f.before.map(|(_, id)| id),
            ],
        )
        .await?;
    rows.iter().map(|r| scan_row(r, false)).collect()
}

pub async fn scan(c: &Client, id: i64) -> Result<Option<ScanRecord>> {
    let sql = format!("SELECT {SCAN_COLS}, report FROM scans WHERE id = $1");
    c.query_opt(&sql, &[&id])
        .await?
        .map(|r| scan_row(&r, true))
        .transpose()
}

const FINDING_COLS: &str = "id, baseline, kind, host, port, transport, status, severity, first_seen, \
    last_seen, resolved_at, first_scan, last_scan, message, detail, incident_id";

fn finding_row(r: &Row) -> Result<FindingRecord> {
    let sev: String = r.try_get(7)?;
    let detail: String = r.try_get(14)?;
    let resolved: Option<i64> = r.try_get(10)?;
    Ok(FindingRecord {
        id: r.try_get(0)?,
        baseline: r.try_get(1)?,
        kind: r.try_get(2)?,
        host: r.try_get(3)?,
        port: r.try_get::<_, i64>(4)?.clamp(0, 65535) as u16,
        transport: r.try_get(5)?,
        status: r.try_get(6)?,
        severity: Severity::parse(&sev).unwrap_or_default(),
        first_seen: from_ms(r.try_get(8)?)?,
        last_seen: from_ms(r.try_get(9)?)?,
        resolved_at: resolved.map(from_ms).transpose()?,
        first_scan: r.try_get(11)?,
        last_scan: r.try_get(12)?,
        message: r.try_get(13)?,
        detail: parse_json(&detail),
        incident_id: r.try_get(15)?,
    })
}

pub async fn findings(c: &Client, f: &FindingFilter) -> Result<Vec<FindingRecord>> {
    let limit = if f.limit == 0 {
        500
    } else {
        f.limit.min(10_000)
    } as i64;
    let sql = format!(
        "SELECT {FINDING_COLS} FROM findings WHERE ($1::TEXT IS NULL OR status = $1) \
         AND ($2::TEXT IS NULL OR baseline = $2) AND first_seen < $4 \
         AND (resolved_at IS NULL OR resolved_at >= $3) \
         AND ($6::BIGINT IS NULL OR first_seen < $6 OR (first_seen = $6 AND id < $7::BIGINT)) \
         ORDER BY first_seen DESC, id DESC LIMIT $5"
    );
    let rows = c
        .query(
            &sql,
            &[
                &f.status,
                &f.baseline,
                &f.from.map(to_ms).unwrap_or(i64::MIN),
                &f.to.map(to_ms).unwrap_or(i64::MAX),
                &limit,
                &f.before.map(|(t, _)| to_ms(t)),
                &f.before.map(|(_, id)| id),
            ],
        )
        .await?;
    rows.iter().map(finding_row).collect()
}

pub async fn finding(c: &Client, id: i64) -> Result<Option<FindingRecord>> {
    let sql = format!("SELECT {FINDING_COLS} FROM findings WHERE id = $1");
    c.query_opt(&sql, &[&id])
        .await?
        .map(|r| finding_row(&r))
        .transpose()
}

pub async fn config_versions(
    c: &Client,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<ConfigVersion>> {
    let (from, to) = (to_ms(from), to_ms(to));
    let cols = "hash, git_commit, git_dirty, path, loaded_at, reason";
    let map = |r: &Row| -> Result<ConfigVersion> {
        Ok(ConfigVersion {
            hash: r.try_get(0)?,
            git_commit: r.try_get(1)?,
            git_dirty: r.try_get(2)?,
            path: r.try_get(3)?,
            loaded_at: from_ms(r.try_get(4)?)?,
            reason: r.try_get(5)?,
        })
    };
    let mut out = Vec::new();
    if let Some(r) = c
        .query_opt(
            &format!(
                "SELECT {cols} FROM config_versions WHERE loaded_at < $1 ORDER BY loaded_at DESC, id DESC LIMIT 1"
            ),
            &[&from],
        )
        .await?
    {
        out.push(map(&r)?);
    }
    for r in c
        .query(
            &format!(
                "SELECT {cols} FROM config_versions WHERE loaded_at >= $1 AND loaded_at < $2 ORDER BY loaded_at, id"
            ),
            &[&from, &to],
        )
        .await?
    {
        out.push(map(&r)?);
    }
    Ok(out)
}
