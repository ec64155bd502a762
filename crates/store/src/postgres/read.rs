//! Queries on pooled connections: the same answers as `sqlite::read`, in PostgreSQL's SQL.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use deadpool_postgres::ClientWrapper as Client;
use portwarden_core::{Incident, IncidentId, Observation};
use tokio_postgres::types::ToSql;

use crate::histogram::LogHistogram;
use crate::sqlite::codec::{
    DAY_MS, HOUR_MS, INCIDENT_COLUMNS, MINUTE_MS, OBS_COLUMNS, day_of, day_start_ms,
    decode_incident_cursor, decode_obs_cursor, encode_incident_cursor, encode_obs_cursor,
    event_from_row, floor_to, from_ms, incident_from_row, observation_from_row, to_ms,
};
use crate::sqlite::read::{DEFAULT_INCIDENT_PAGE, MAX_PAGE, Plan, Window};
use crate::sqlite::rollup::{AGG_COLUMNS, Agg};
use crate::{
    Availability, DayAvailability, IncidentDetail, IncidentFilter, LatencyPoint, ObservationQuery,
    Page, Resolution, Result, StoreError,
};

type Param<'a> = &'a (dyn ToSql + Sync);

pub async fn monitor_id(c: &Client, name: &str) -> Result<i64> {
    let st = c
        .prepare_cached("SELECT id FROM monitors WHERE name = $1")
        .await?;
    match c.query_opt(&st, &[&name]).await? {
        Some(r) => Ok(r.try_get(0)?),
        None => Err(StoreError::NotFound(format!("monitor `{name}`"))),
    }
}

const OBS_FROM: &str = "FROM observations o JOIN monitors m ON m.id = o.monitor_id \
                        JOIN targets t ON t.id = o.target_id";

pub async fn observations(
    c: &Client,
    monitor: &str,
    q: &ObservationQuery,
) -> Result<Page<Observation>> {
    let cursor = q.cursor.as_deref().map(decode_obs_cursor).transpose()?;
    let mid = monitor_id(c, monitor).await?;
    let limit = q.limit.clamp(1, MAX_PAGE);
    let from = q.from.map(to_ms);
    let to = q.to.map(to_ms);
    let mut sql = format!("SELECT {OBS_COLUMNS} {OBS_FROM} WHERE o.monitor_id = $1");
    let mut args: Vec<Param<'_>> = vec![&mid];
    if let Some(from) = &from {
        args.push(from);
        sql.push_str(&format!(" AND o.started_at >= ${}", args.len()));
    }
    if let Some(to) = &to {
        args.push(to);
        sql.push_str(&format!(" AND o.started_at < ${}", args.len()));
    }
    if let Some(loc) = &q.location {
        args.push(loc);
        sql.push_str(&format!(" AND o.location = ${}", args.len()));
    }
    if let Some((t, id)) = &cursor {
        args.push(t);
        args.push(id);
        sql.push_str(&format!(
            " AND (o.started_at, o.id) < (${}, ${})",
            args.len() - 1,
            args.len()
        ));
    }
    let fetch = limit as i64 + 1;
    args.push(&fetch);
    sql.push_str(&format!(
        " ORDER BY o.started_at DESC, o.id DESC LIMIT ${}",
        args.len()
    ));
    let st = c.prepare_cached(&sql).await?;
    let rows = c.query(&st, &args).await?;
    let mut items = Vec::with_capacity(limit.min(rows.len()));
    let mut last = None;
    let mut more = false;
    for row in &rows {
        if items.len() == limit {
            more = true;
            break;
        }
        let (id, t, obs) = observation_from_row(row)?;
        last = Some((t, id));
        items.push(obs);
    }
    let next_cursor = match (more, last) {
        (true, Some((t, id))) => Some(encode_obs_cursor(t, id)),
        _ => None,
    };
    Ok(Page { items, next_cursor })
}

pub async fn last_observations(c: &Client) -> Result<HashMap<String, Observation>> {
    // One index probe per monitor (LATERAL … LIMIT 1 on (monitor_id, started_at, id)).
    let sql = format!(
        "SELECT {OBS_COLUMNS} FROM monitors m CROSS JOIN LATERAL ( \
             SELECT * FROM observations o2 WHERE o2.monitor_id = m.id \
             ORDER BY o2.started_at DESC, o2.id DESC LIMIT 1) o \
         JOIN targets t ON t.id = o.target_id"
    );
    let st = c.prepare_cached(&sql).await?;
    let mut out = HashMap::new();
    for row in c.query(&st, &[]).await? {
        let (_, _, obs) = observation_from_row(&row)?;
        out.insert(obs.monitor.clone(), obs);
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grouping {
    Monitor,
    Day,
    All,
}

/// As `sqlite::read::availability_sql`: three arms (whole hours, leading and trailing minutes)
/// summed. With `Monitor`/`Day` the monitor id is `$1` and the ranges `$2..$7`; with `All`
/// the ranges are `$1..$6` (PostgreSQL refuses unused parameters).
fn availability_sql(g: Grouping) -> String {
    let counts = "SUM(r.up)::bigint AS up, SUM(r.degraded)::bigint AS degraded, \
                  SUM(r.down)::bigint AS down, SUM(r.unknown)::bigint AS unknown, \
                  SUM(r.maintenance)::bigint AS maintenance";
    let first = if g == Grouping::All { 1 } else { 2 };
    let arm = |table: &str, lo: u8, hi: u8| match g {
        Grouping::All => format!(
            "SELECT m.id AS k, m.name AS name, {counts} FROM monitors m JOIN {table} r \
             ON r.monitor_id = m.id WHERE r.bucket >= ${lo} AND r.bucket < ${hi} GROUP BY m.id"
        ),
        Grouping::Day => format!(
            "SELECT r.bucket / {DAY_MS} AS k, NULL::text AS name, {counts} FROM {table} r \
             WHERE r.monitor_id = $1 AND r.bucket >= ${lo} AND r.bucket < ${hi} \
             GROUP BY r.bucket / {DAY_MS}"
        ),
        Grouping::Monitor => format!(
            "SELECT r.monitor_id AS k, NULL::text AS name, {counts} FROM {table} r \
             WHERE r.monitor_id = $1 AND r.bucket >= ${lo} AND r.bucket < ${hi} \
             GROUP BY r.monitor_id"
        ),
    };
    format!(
        "SELECT k, SUM(up)::bigint, SUM(degraded)::bigint, SUM(down)::bigint, \
         SUM(unknown)::bigint, SUM(maintenance)::bigint, MAX(name) \
         FROM ({} UNION ALL {} UNION ALL {}) AS x WHERE k IS NOT NULL GROUP BY k",
        arm("rollup_hour", first, first + 1),
        arm("rollup_minute", first + 2, first + 3),
        arm("rollup_minute", first + 4, first + 5),
    )
}

async fn run_availability(
    c: &Client,
    monitor: Option<i64>,
    g: Grouping,
    p: Plan,
) -> Result<Vec<(i64, Option<String>, Availability)>> {
    let st = c.prepare_cached(&availability_sql(g)).await?;
    let ranges = [p.hour.0, p.hour.1, p.lead.0, p.lead.1, p.trail.0, p.trail.1];
    let mut args: Vec<Param<'_>> = Vec::with_capacity(7);
    if let (Some(m), false) = (&monitor, g == Grouping::All) {
        args.push(m);
    }
    for r in &ranges {
        args.push(r);
    }
    let rows = c.query(&st, &args).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let n = |i: usize| -> Result<u64> {
            let v: Option<i64> = r.try_get(i)?;
            Ok(v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0))
        };
        out.push((
            r.try_get::<_, i64>(0)?,
            r.try_get::<_, Option<String>>(6)?,
            Availability {
                up: n(1)?,
                degraded: n(2)?,
                down: n(3)?,
                unknown: n(4)?,
                maintenance: n(5)?,
                ratio: None,
            }
            .compute_ratio(),
        ));
    }
    Ok(out)
}

pub async fn availability(c: &Client, monitor: &str, w: &Window) -> Result<Availability> {
    let mid = monitor_id(c, monitor).await?;
    let rows = run_availability(c, Some(mid), Grouping::Monitor, w.plan()).await?;
    let mut total = Availability::default();
    for (_, _, a) in rows {
        total.add(&a);
    }
    Ok(total.compute_ratio())
}

pub async fn availability_all(c: &Client, w: &Window) -> Result<HashMap<String, Availability>> {
    Ok(run_availability(c, None, Grouping::All, w.plan())
        .await?
        .into_iter()
        .filter_map(|(_, name, a)| name.map(|n| (n, a)))
        .collect())
}

pub async fn availability_daily(
    c: &Client,
    monitor: &str,
    w: &Window,
) -> Result<Vec<DayAvailability>> {
    let mid = monitor_id(c, monitor).await?;
    let (from, to) = (to_ms(w.from), to_ms(w.to));
    if to <= from {
        return Ok(Vec::new());
    }
    let by_day: HashMap<i64, Availability> =
        run_availability(c, Some(mid), Grouping::Day, w.plan())
            .await?
            .into_iter()
            .map(|(k, _, a)| (k, a))
            .collect();
    let mut out = Vec::new();
    let mut day = day_of(from)?;
    let last = day_of(to - 1)?;
    while day <= last {
        let k = day_start_ms(day) / DAY_MS;
        out.push(DayAvailability {
            day,
            availability: by_day.get(&k).copied().unwrap_or_default().compute_ratio(),
        });
        day = match day.succ_opt() {
            Some(d) => d,
            None => break,
        };
    }
    Ok(out)
}

pub async fn latency_series(
    c: &Client,
    monitor: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    resolution: Resolution,
) -> Result<Vec<LatencyPoint>> {
    let mid = monitor_id(c, monitor).await?;
    let (table, unit) = match resolution {
        Resolution::Minute => ("rollup_minute", MINUTE_MS),
        Resolution::Hour => ("rollup_hour", HOUR_MS),
        Resolution::Day => ("rollup_hour", DAY_MS),
    };
    let st = c
        .prepare_cached(&format!(
            "SELECT bucket, {AGG_COLUMNS} FROM {table} \
             WHERE monitor_id = $1 AND bucket >= $2 AND bucket < $3 ORDER BY bucket"
        ))
        .await?;
    let lo = floor_to(to_ms(from), unit);
    let hi = to_ms(to);
    let mut points: BTreeMap<i64, Agg> = BTreeMap::new();
    for row in c.query(&st, &[&mid, &lo, &hi]).await? {
        let bucket: i64 = row.try_get(0)?;
        let agg = Agg::from_cols(&row, 1)?;
        points
            .entry(floor_to(bucket, unit))
            .or_default()
            .merge(&agg);
    }
    points
        .into_iter()
        .map(|(t, a)| {
            Ok(LatencyPoint {
                t: from_ms(t)?,
                count: a.count(),
                failures: a.down,
                connect_p50_ms: a.connect.quantile_clamped(0.5, a.connect_max),
                connect_p95_ms: a.connect.quantile_clamped(0.95, a.connect_max),
                connect_max_ms: a.connect_max,
                duration_p50_ms: a.duration.quantile_clamped(0.5, a.duration_max),
                duration_p95_ms: a.duration.quantile_clamped(0.95, a.duration_max),
                tls_p50_ms: a.tls.quantile_clamped(0.5, None),
                tls_p95_ms: a.tls.quantile_clamped(0.95, None),
                protocol_p50_ms: a.protocol.quantile_clamped(0.5, None),
                protocol_p95_ms: a.protocol.quantile_clamped(0.95, None),
            })
        })
        .collect()
}

pub async fn connect_sparklines(
    c: &Client,
    from: i64,
    to: i64,
    step: i64,
) -> Result<HashMap<String, Vec<Option<f64>>>> {
    let step = step.max(MINUTE_MS);
    let from = floor_to(from, step);
    let slots = usize::try_from((to - from).div_euclid(step).max(0) + 1).unwrap_or(0);
    let st = c
        .prepare_cached(
            "SELECT m.name, r.bucket, r.connect_hist, r.connect_max FROM monitors m \
             JOIN rollup_minute r ON r.monitor_id = m.id WHERE r.bucket >= $1 \
             AND r.bucket < $2 AND r.connect_hist IS NOT NULL ORDER BY m.id, r.bucket",
        )
        .await?;
    let mut acc: HashMap<String, Vec<(LogHistogram, Option<f64>)>> = HashMap::new();
    for row in c.query(&st, &[&from, &to]).await? {
        let name: String = row.try_get(0)?;
        let bucket: i64 = row.try_get(1)?;
        let blob: Vec<u8> = row.try_get(2)?;
        let max: Option<f64> = row.try_get(3)?;
        let Ok(h) = LogHistogram::decode(&blob) else {
            continue;
        };
        let hs = acc
            .entry(name)
            .or_insert_with(|| vec![(LogHistogram::new(), None); slots]);
        let i = usize::try_from((bucket - from) / step).unwrap_or(usize::MAX);
        if let Some(slot) = hs.get_mut(i) {
            slot.0.merge(&h);
            slot.1 = match (slot.1, max) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
    }
    Ok(acc
        .into_iter()
        .map(|(name, hs)| {
            let v = hs
                .into_iter()
                .map(|(h, max)| {
                    if h.is_empty() {
                        None
                    } else {
                        h.quantile_clamped(0.5, max)
                    }
                })
                .collect();
            (name, v)
        })
        .collect())
}

const INCIDENT_FROM: &str = "FROM incidents i JOIN monitors m ON m.id = i.monitor_id";

pub async fn open_incidents(c: &Client) -> Result<Vec<Incident>> {
    let st = c
        .prepare_cached(&format!(
            "SELECT {INCIDENT_COLUMNS} {INCIDENT_FROM} WHERE i.status = 'open' ORDER BY i.id"
        ))
        .await?;
    c.query(&st, &[])
        .await?
        .iter()
        .map(incident_from_row)
        .collect()
}

pub async fn incidents(c: &Client, f: &IncidentFilter) -> Result<Page<Incident>> {
    let cursor = f
        .cursor
        .as_deref()
        .map(decode_incident_cursor)
        .transpose()?;
    let limit = if f.limit == 0 {
        DEFAULT_INCIDENT_PAGE
    } else {
        f.limit.min(MAX_PAGE)
    };
    let status = f.status.map(|s| s.as_str().to_string());
    let mut sql = format!("SELECT {INCIDENT_COLUMNS} {INCIDENT_FROM} WHERE TRUE");
    let mut args: Vec<Param<'_>> = Vec::new();
    if let Some(s) = &status {
        args.push(s);
        sql.push_str(&format!(" AND i.status = ${}", args.len()));
    }
    if let Some(m) = &f.monitor {
        args.push(m);
        sql.push_str(&format!(" AND m.name = ${}", args.len()));
    }
    if let Some(id) = &cursor {
        args.push(id);
        sql.push_str(&format!(" AND i.id < ${}", args.len()));
    }
    let fetch = limit as i64 + 1;
    args.push(&fetch);
    sql.push_str(&format!(" ORDER BY i.id DESC LIMIT ${}", args.len()));
    let st = c.prepare_cached(&sql).await?;
    let rows = c.query(&st, &args).await?;
    let mut items = Vec::with_capacity(limit.min(rows.len()));
    let mut more = false;
    for row in &rows {
        if items.len() == limit {
            more = true;
            break;
        }
        items.push(incident_from_row(row)?);
    }
    let next_cursor = match (more, items.last()) {
        (true, Some(i)) => Some(encode_incident_cursor(i.id)),
        _ => None,
    };
    Ok(Page { items, next_cursor })
}

pub async fn incident(c: &Client, id: IncidentId) -> Result<Option<IncidentDetail>> {
    let st = c
        .prepare_cached(&format!(
            "SELECT {INCIDENT_COLUMNS} {INCIDENT_FROM} WHERE i.id = $1"
        ))
        .await?;
    let Some(row) = c.query_opt(&st, &[&id]).await? else {
        return Ok(None);
    };
    let incident = incident_from_row(&row)?;
    let ev = c
        .prepare_cached(
            "SELECT at, kind, message, data FROM incident_events WHERE incident_id = $1 \
             ORDER BY at, id",
        )
        .await?;
    let timeline = c
        .query(&ev, &[&id])
        .await?
        .iter()
        .map(event_from_row)
        .collect::<Result<Vec<_>>>()?;
    let notifications = super::outbox::incident_notifications(c, id).await?;
    Ok(Some(IncidentDetail {
        incident,
        timeline,
        notifications,
    }))
}
