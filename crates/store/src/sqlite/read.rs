//! Queries, run on read-only connections (never the writer's).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use portwarden_core::{Incident, IncidentId, Observation};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::codec::{
    DAY_MS, HOUR_MS, INCIDENT_COLUMNS, MINUTE_MS, OBS_COLUMNS, ceil_to, day_of, day_start_ms,
    decode_incident_cursor, decode_obs_cursor, encode_incident_cursor, encode_obs_cursor,
    event_from_row, floor_to, from_ms, incident_from_row, observation_from_row, to_ms,
};
use super::rollup::{AGG_COLUMNS, Agg};
use crate::histogram::LogHistogram;
use crate::{
    Availability, DayAvailability, IncidentDetail, IncidentFilter, LatencyPoint, ObservationQuery,
    Page, Resolution, Result, StoreError,
};

/// Largest page.
pub const MAX_PAGE: usize = 1000;
/// Page size of `incidents()` when the filter says 0.
pub const DEFAULT_INCIDENT_PAGE: usize = 100;

pub fn monitor_id(conn: &Connection, name: &str) -> Result<i64> {
    conn.prepare_cached("SELECT id FROM monitors WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("monitor `{name}`")))
}

const OBS_FROM: &str = "FROM observations o JOIN monitors m ON m.id = o.monitor_id \
                        JOIN targets t ON t.id = o.target_id";

pub fn observations(
    conn: &Connection,
    monitor: &str,
    q: &ObservationQuery,
) -> Result<Page<Observation>> {
    let cursor = q.cursor.as_deref().map(decode_obs_cursor).transpose()?;
    let mid = monitor_id(conn, monitor)?;
    let limit = q.limit.clamp(1, MAX_PAGE);
    let mut sql = format!("SELECT {OBS_COLUMNS} {OBS_FROM} WHERE o.monitor_id = ?");
    let mut args: Vec<Value> = vec![Value::Integer(mid)];
    if let Some(from) = q.from {
        sql.push_str(" AND o.started_at >= ?");
        args.push(Value::Integer(to_ms(from)));
    }
    if let Some(to) = q.to {
        sql.push_str(" AND o.started_at < ?");
        args.push(Value::Integer(to_ms(to)));
    }
    if let Some(loc) = &q.location {
        sql.push_str(" AND o.location = ?");
        args.push(Value::Text(loc.clone()));
    }
    if let Some((t, id)) = cursor {
        sql.push_str(" AND (o.started_at, o.id) < (?, ?)");
        args.push(Value::Integer(t));
        args.push(Value::Integer(id));
    }
    sql.push_str(" ORDER BY o.started_at DESC, o.id DESC LIMIT ?");
    args.push(Value::Integer(limit as i64 + 1));
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params_from_iter(args))?;
    let mut items = Vec::with_capacity(limit);
    let mut last = None;
    let mut more = false;
    while let Some(row) = rows.next()? {
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

pub fn last_observations(conn: &Connection) -> Result<HashMap<String, Observation>> {
    let sql = format!(
        "SELECT {OBS_COLUMNS} FROM monitors m CROSS JOIN observations o \
         JOIN targets t ON t.id = o.target_id \
         WHERE o.id = (SELECT o2.id FROM observations o2 WHERE o2.monitor_id = m.id \
                       ORDER BY o2.started_at DESC, o2.id DESC LIMIT 1)"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query([])?;
    let mut out = HashMap::new();
    while let Some(row) = rows.next()? {
        let (_, _, obs) = observation_from_row(row)?;
        out.insert(obs.monitor.clone(), obs);
    }
    Ok(out)
}

/// Which rollup rows answer a period: whole hours from `rollup_hour`, the partial hours at
/// either edge from `rollup_minute` (half-open ranges, unix ms). The period is widened to whole
/// minutes (the bucket holding `from` and the one holding the last instant before `to` count).
/// Where the minute rollups may already be gone (older than the minute retention), the edge
/// hour is taken whole from `rollup_hour` instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub hour: (i64, i64),
    pub lead: (i64, i64),
    pub trail: (i64, i64),
}

pub fn plan(from: i64, to: i64, now: i64, minute_retention_ms: i64) -> Plan {
    const EMPTY: (i64, i64) = (0, 0);
    let m_from = floor_to(from, MINUTE_MS);
    let m_to = ceil_to(to, MINUTE_MS);
    if m_to <= m_from {
        return Plan {
            hour: EMPTY,
            lead: EMPTY,
            trail: EMPTY,
        };
    }
    let horizon = now.saturating_sub(minute_retention_ms);
    let h_from = ceil_to(m_from, HOUR_MS);
    let h_to = floor_to(m_to, HOUR_MS);
    if h_from >= h_to {
        // No whole hour inside.
        return if m_from < horizon {
            Plan {
                hour: (floor_to(m_from, HOUR_MS), ceil_to(m_to, HOUR_MS)),
                lead: EMPTY,
                trail: EMPTY,
            }
        } else {
            Plan {
                hour: EMPTY,
                lead: (m_from, m_to),
                trail: EMPTY,
            }
        };
    }
    let h_from = if m_from < h_from && m_from < horizon {
        floor_to(m_from, HOUR_MS)
    } else {
        h_from
    };
    let h_to = if h_to < m_to && h_to < horizon {
        ceil_to(m_to, HOUR_MS)
    } else {
        h_to
    };
    Plan {
        hour: (h_from, h_to),
        lead: (m_from, h_from),
        trail: (h_to, m_to),
    }
}

/// What an availability query groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grouping {
    /// One monitor (`?1`), one total.
    Monitor,
    /// One monitor (`?1`), per UTC day.
    Day,
    /// Every monitor, one total each (a per-monitor index seek each).
    All,
}

/// Each arm (hour range, leading and trailing minute ranges) aggregates while it reads, in key
/// order (no sort of raw rollup rows); the outer query adds up the three arms.
fn availability_sql(g: Grouping) -> String {
    let counts = "SUM(r.up) AS up, SUM(r.degraded) AS degraded, SUM(r.down) AS down, \
                  SUM(r.unknown) AS unknown, SUM(r.maintenance) AS maintenance";
    let arm = |table: &str, lo: u8, hi: u8| match g {
        Grouping::All => format!(
            "SELECT m.id AS k, m.name AS name, {counts} FROM monitors m CROSS JOIN {table} r \
             WHERE r.monitor_id = m.id AND r.bucket >= ?{lo} AND r.bucket < ?{hi} GROUP BY m.id"
        ),
        Grouping::Day => format!(
            "SELECT r.bucket / {DAY_MS} AS k, NULL AS name, {counts} FROM {table} r \
             WHERE r.monitor_id = ?1 AND r.bucket >= ?{lo} AND r.bucket < ?{hi} GROUP BY k"
        ),
        Grouping::Monitor => format!(
            "SELECT r.monitor_id AS k, NULL AS name, {counts} FROM {table} r \
             WHERE r.monitor_id = ?1 AND r.bucket >= ?{lo} AND r.bucket < ?{hi}"
        ),
    };
    format!(
        "SELECT k, SUM(up), SUM(degraded), SUM(down), SUM(unknown), SUM(maintenance), MAX(name) \
         FROM ({} UNION ALL {} UNION ALL {}) WHERE k IS NOT NULL GROUP BY k",
        arm("rollup_hour", 2, 3),
        arm("rollup_minute", 4, 5),
        arm("rollup_minute", 6, 7),
    )
}

fn run_availability(
    conn: &Connection,
    monitor: Option<i64>,
    g: Grouping,
    p: Plan,
) -> Result<Vec<(i64, Option<String>, Availability)>> {
    let sql = availability_sql(g);
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        params![
            monitor.unwrap_or(0),
            p.hour.0,
            p.hour.1,
            p.lead.0,
            p.lead.1,
            p.trail.0,
            p.trail.1
        ],
        |r| {
            let n = |i: usize| -> rusqlite::Result<u64> {
                let v: Option<i64> = r.get(i)?;
                Ok(v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0))
            };
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Option<String>>(6)?,
                Availability {
                    up: n(1)?,
                    degraded: n(2)?,
                    down: n(3)?,
                    unknown: n(4)?,
                    maintenance: n(5)?,
                    ratio: None,
                }
                .compute_ratio(),
            ))
        },
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub now: DateTime<Utc>,
    pub minute_retention_ms: i64,
}

impl Window {
    pub(crate) fn plan(&self) -> Plan {
        plan(
            to_ms(self.from),
            to_ms(self.to),
            to_ms(self.now),
            self.minute_retention_ms,
        )
    }
}

pub fn availability(conn: &Connection, monitor: &str, w: &Window) -> Result<Availability> {
    let mid = monitor_id(conn, monitor)?;
    let rows = run_availability(conn, Some(mid), Grouping::Monitor, w.plan())?;
    let mut total = Availability::default();
    for (_, _, a) in rows {
        total.add(&a);
    }
    Ok(total.compute_ratio())
}

pub fn availability_all(conn: &Connection, w: &Window) -> Result<HashMap<String, Availability>> {
    Ok(run_availability(conn, None, Grouping::All, w.plan())?
        .into_iter()
        .filter_map(|(_, name, a)| name.map(|n| (n, a)))
        .collect())
}

pub fn availability_daily(
    conn: &Connection,
    monitor: &str,
    w: &Window,
) -> Result<Vec<DayAvailability>> {
    let mid = monitor_id(conn, monitor)?;
    let (from, to) = (to_ms(w.from), to_ms(w.to));
    if to <= from {
        return Ok(Vec::new());
    }
    let by_day: HashMap<i64, Availability> =
        run_availability(conn, Some(mid), Grouping::Day, w.plan())?
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

pub fn latency_series(
    conn: &Connection,
    monitor: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    resolution: Resolution,
) -> Result<Vec<LatencyPoint>> {
    let mid = monitor_id(conn, monitor)?;
    let (table, unit) = match resolution {
        Resolution::Minute => ("rollup_minute", MINUTE_MS),
        Resolution::Hour => ("rollup_hour", HOUR_MS),
        Resolution::Day => ("rollup_hour", DAY_MS),
    };
    let sql = format!(
        "SELECT bucket, {AGG_COLUMNS} FROM {table} \
         WHERE monitor_id = ?1 AND bucket >= ?2 AND bucket < ?3 ORDER BY bucket"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params![mid, floor_to(to_ms(from), unit), to_ms(to)])?;
    let mut points: BTreeMap<i64, Agg> = BTreeMap::new();
    while let Some(row) = rows.next()? {
        let bucket: i64 = row.get(0)?;
        let agg = Agg::from_row(row, 1)?;
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

/// Median connect time of every monitor per `step` over `[from, to)` from minute rollups, one
/// slot per step (`None` where nothing connected). Each monitor is one index range read.
pub fn connect_sparklines(
    conn: &Connection,
    from: i64,
    to: i64,
    step: i64,
) -> Result<HashMap<String, Vec<Option<f64>>>> {
    let step = step.max(MINUTE_MS);
    let from = floor_to(from, step);
    let slots = usize::try_from((to - from).div_euclid(step).max(0) + 1).unwrap_or(0);
    let mut stmt = conn.prepare_cached(
        "SELECT m.name, r.bucket, r.connect_hist, r.connect_max FROM monitors m          CROSS JOIN rollup_minute r WHERE r.monitor_id = m.id AND r.bucket >= ?1          AND r.bucket < ?2 AND r.connect_hist IS NOT NULL ORDER BY m.id, r.bucket",
    )?;
    let mut rows = stmt.query(params![from, to])?;
    let mut out: HashMap<String, Vec<Option<f64>>> = HashMap::new();
    /// A monitor's name and its slots (merged histogram, maximum).
    type Slots = (String, Vec<(LogHistogram, Option<f64>)>);
    let mut cur: Option<Slots> = None;
    let finish = |out: &mut HashMap<String, Vec<Option<f64>>>, c: Option<Slots>| {
        if let Some((name, hs)) = c {
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
            out.insert(name, v);
        }
    };
    while let Some(row) = rows.next()? {
        let name: String = row.get(0)?;
        let bucket: i64 = row.get(1)?;
        let blob: Vec<u8> = row.get(2)?;
        let max: Option<f64> = row.get(3)?;
        if cur.as_ref().is_none_or(|(n, _)| *n != name) {
            finish(&mut out, cur.take());
            cur = Some((name, vec![(LogHistogram::new(), None); slots]));
        }
        let Ok(h) = LogHistogram::decode(&blob) else {
            continue;
        };
        if let Some((_, hs)) = cur.as_mut() {
            let i = usize::try_from((bucket - from) / step).unwrap_or(usize::MAX);
            if let Some(slot) = hs.get_mut(i) {
                slot.0.merge(&h);
                slot.1 = match (slot.1, max) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
            }
        }
    }
    finish(&mut out, cur.take());
    Ok(out)
}

const INCIDENT_FROM: &str = "FROM incidents i JOIN monitors m ON m.id = i.monitor_id";

pub fn open_incidents(conn: &Connection) -> Result<Vec<Incident>> {
    let sql =
        format!("SELECT {INCIDENT_COLUMNS} {INCIDENT_FROM} WHERE i.status = 'open' ORDER BY i.id");
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(incident_from_row(row)?);
    }
    Ok(out)
}

/// Newest first; `limit` 0 means [`DEFAULT_INCIDENT_PAGE`], at most [`MAX_PAGE`].
pub fn incidents(conn: &Connection, f: &IncidentFilter) -> Result<Page<Incident>> {
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
    let mut sql = format!("SELECT {INCIDENT_COLUMNS} {INCIDENT_FROM} WHERE 1 = 1");
    let mut args: Vec<Value> = Vec::new();
    if let Some(s) = f.status {
        sql.push_str(" AND i.status = ?");
        args.push(Value::Text(s.as_str().to_string()));
    }
    if let Some(m) = &f.monitor {
        sql.push_str(" AND m.name = ?");
        args.push(Value::Text(m.clone()));
    }
    if let Some(id) = cursor {
        sql.push_str(" AND i.id < ?");
        args.push(Value::Integer(id));
    }
    sql.push_str(" ORDER BY i.id DESC LIMIT ?");
    args.push(Value::Integer(limit as i64 + 1));
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params_from_iter(args))?;
    let mut items = Vec::with_capacity(limit.min(64));
    let mut more = false;
    while let Some(row) = rows.next()? {
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

pub fn incident(conn: &Connection, id: IncidentId) -> Result<Option<IncidentDetail>> {
    let sql = format!("SELECT {INCIDENT_COLUMNS} {INCIDENT_FROM} WHERE i.id = ?1");
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query([id])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    let incident = incident_from_row(row)?;
    let mut ev = conn.prepare_cached(
        "SELECT at, kind, message, data FROM incident_events WHERE incident_id = ?1 \
         ORDER BY at, id",
    )?;
    let mut rows = ev.query([id])?;
    let mut timeline = Vec::new();
    while let Some(row) = rows.next()? {
        timeline.push(event_from_row(row)?);
    }
    drop(rows);
    drop(ev);
    let notifications = super::outbox::incident_notifications(conn, id)?;
    Ok(Some(IncidentDetail {
        incident,
        timeline,
        notifications,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = HOUR_MS;
    const M: i64 = MINUTE_MS;

    #[test]
    fn plan_splits_whole_hours_and_edges() {
        let now = 1000 * H;
        let ret = 14 * 24 * H;
        // 10:30 .. 13:15 → hours 11..13, minutes 10:30..11:00 and 13:00..13:15
        let p = plan(900 * H + 30 * M, 903 * H + 15 * M, now, ret);
        assert_eq!(p.hour, (901 * H, 903 * H));
        assert_eq!(p.lead, (900 * H + 30 * M, 901 * H));
        assert_eq!(p.trail, (903 * H, 903 * H + 15 * M));
        // aligned: no edges
        let p = plan(900 * H, 902 * H, now, ret);
        assert_eq!(p.hour, (900 * H, 902 * H));
        assert!(p.lead.0 >= p.lead.1 && p.trail.0 >= p.trail.1);
        // inside one hour: minutes only, widened to whole minutes
        let p = plan(900 * H + 10 * M + 5, 900 * H + 20 * M + 1, now, ret);
        assert_eq!(p.lead, (900 * H + 10 * M, 900 * H + 21 * M));
        assert_eq!(p.hour, (0, 0));
        // leading edge older than the minute retention: whole hour instead
        let p = plan(10 * H + 30 * M, 903 * H, now, ret);
        assert_eq!(p.hour, (10 * H, 903 * H));
        assert!(p.lead.0 >= p.lead.1);
        // empty
        let p = plan(5 * H, 5 * H, now, ret);
        assert_eq!(p.hour, (0, 0));
    }
}

#[cfg(test)]
mod plan_tests {
    use super::*;
    use crate::sqlite::schema;

    /// The hot queries use the indexes: no full scan of observations or rollups (a scan of
    /// `monitors` as the outer loop of `availability_all` is intended).
    #[test]
    fn hot_queries_use_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let mut w = schema::open_writer(&path).unwrap();
        schema::migrate(&mut w).unwrap();
        let plan = |sql: &str| -> String {
            let mut s = w.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let n = s.parameter_count();
            let args: Vec<Value> = (0..n).map(|_| Value::Integer(1)).collect();
            let rows = s
                .query_map(params_from_iter(args), |r| r.get::<_, String>(3))
                .unwrap();
            rows.map(|r| r.unwrap()).collect::<Vec<_>>().join("\n")
        };
        let obs = format!(
            "SELECT {OBS_COLUMNS} {OBS_FROM} WHERE o.monitor_id = ? AND o.started_at >= ? \
             AND (o.started_at, o.id) < (?, ?) ORDER BY o.started_at DESC, o.id DESC LIMIT ?"
        );
        let all = availability_sql(Grouping::All);
        let day = availability_sql(Grouping::Day);
        let one = availability_sql(Grouping::Monitor);
        let del = "DELETE FROM rollup_minute WHERE (monitor_id, bucket, location) IN (
                 SELECT monitor_id, bucket, location FROM rollup_minute
                 WHERE monitor_id = ? AND bucket < ? LIMIT ?)";
        for sql in [obs.as_str(), &all, &day, &one, del] {
            let p = plan(sql);
            for bad in [
                "SCAN o",
                "SCAN r",
                "SCAN rollup",
                "SCAN observations",
                "TEMP B-TREE FOR ORDER",
            ] {
                assert!(!p.contains(bad), "{sql}\n→\n{p}");
            }
        }
    }
}
