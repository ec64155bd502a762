//! Conversions between domain values and their SQLite columns: times, outcomes, cursors, rows.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use portwarden_core::{
    ErrorKind, EventKind, Incident, IncidentEvent, IncidentStatus, LastHealthy, Observation,
    Outcome, Phases, ProbeError, Scope, Severity, State,
};

use crate::{Result, StoreError};

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 86_400_000;

/// Reads a column of a result row, from SQLite or PostgreSQL, so the row mappings below serve
/// both backends.
pub trait Cols {
    fn col<T: FromCol>(&self, i: usize) -> Result<T>;
}

/// A value [`Cols::col`] can read.
pub trait FromCol: Sized {
    fn from_sqlite(row: &rusqlite::Row<'_>, i: usize) -> Result<Self>;
    fn from_pg(row: &tokio_postgres::Row, i: usize) -> Result<Self>;
}

impl Cols for rusqlite::Row<'_> {
    fn col<T: FromCol>(&self, i: usize) -> Result<T> {
        T::from_sqlite(self, i)
    }
}

impl Cols for tokio_postgres::Row {
    fn col<T: FromCol>(&self, i: usize) -> Result<T> {
        T::from_pg(self, i)
    }
}

fn pg_err(row: &tokio_postgres::Row, i: usize, e: tokio_postgres::Error) -> StoreError {
    let name = row.columns().get(i).map_or("?", |c| c.name());
    StoreError::Db(format!("column `{name}`: {e}"))
}

macro_rules! from_col_plain {
    ($($t:ty),*) => {$(
        impl FromCol for $t {
            fn from_sqlite(row: &rusqlite::Row<'_>, i: usize) -> Result<Self> {
                Ok(row.get(i)?)
            }
            fn from_pg(row: &tokio_postgres::Row, i: usize) -> Result<Self> {
                row.try_get(i).map_err(|e| pg_err(row, i, e))
            }
        }
    )*};
}
from_col_plain!(
    String,
    Option<String>,
    f64,
    Option<f64>,
    Option<Vec<u8>>,
    bool
);

/// Integers: PostgreSQL columns may be SMALLINT, INTEGER or BIGINT.
fn pg_int(row: &tokio_postgres::Row, i: usize) -> Result<Option<i64>> {
    use tokio_postgres::types::Type;
    let ty = row.columns().get(i).map(|c| c.type_().clone());
    let r = match ty {
        Some(Type::INT2) => row.try_get::<_, Option<i16>>(i).map(|v| v.map(i64::from)),
        Some(Type::INT4) => row.try_get::<_, Option<i32>>(i).map(|v| v.map(i64::from)),
        _ => row.try_get::<_, Option<i64>>(i),
    };
    r.map_err(|e| pg_err(row, i, e))
}

impl FromCol for i64 {
    fn from_sqlite(row: &rusqlite::Row<'_>, i: usize) -> Result<Self> {
        Ok(row.get(i)?)
    }
    fn from_pg(row: &tokio_postgres::Row, i: usize) -> Result<Self> {
        pg_int(row, i)?.ok_or_else(|| StoreError::Db(format!("column {i} is NULL")))
    }
}

impl FromCol for Option<i64> {
    fn from_sqlite(row: &rusqlite::Row<'_>, i: usize) -> Result<Self> {
        Ok(row.get(i)?)
    }
    fn from_pg(row: &tokio_postgres::Row, i: usize) -> Result<Self> {
        pg_int(row, i)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Db(e.to_string())
    }
}

/// Unix milliseconds (sub-millisecond precision is dropped).
pub fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub fn from_ms(ms: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Db(format!("timestamp {ms} ms out of range")))
}

pub fn floor_to(ms: i64, unit: i64) -> i64 {
    ms.div_euclid(unit) * unit
}

pub fn ceil_to(ms: i64, unit: i64) -> i64 {
    let f = floor_to(ms, unit);
    if f == ms { f } else { f + unit }
}

pub fn day_of(ms: i64) -> Result<NaiveDate> {
    Ok(from_ms(floor_to(ms, DAY_MS))?.date_naive())
}

pub fn day_start_ms(d: NaiveDate) -> i64 {
    Utc.from_utc_datetime(&d.and_time(chrono::NaiveTime::MIN))
        .timestamp_millis()
}

/// Stable small integers for outcomes in the database.
pub fn outcome_code(o: Outcome) -> i64 {
    match o {
        Outcome::Up => 0,
        Outcome::Degraded => 1,
        Outcome::Down => 2,
        Outcome::Unknown => 3,
    }
}

pub fn outcome_from_code(c: i64) -> Result<Outcome> {
    Ok(match c {
        0 => Outcome::Up,
        1 => Outcome::Degraded,
        2 => Outcome::Down,
        3 => Outcome::Unknown,
        _ => return Err(StoreError::Db(format!("unknown outcome code {c}"))),
    })
}

/// Observation cursor: the (started_at, id) of the last row of a page.
pub fn encode_obs_cursor(started_at_ms: i64, id: i64) -> String {
    let mut b = Vec::with_capacity(17);
    b.push(b'o');
    b.extend_from_slice(&started_at_ms.to_be_bytes());
    b.extend_from_slice(&id.to_be_bytes());
    URL_SAFE_NO_PAD.encode(b)
}

pub fn decode_obs_cursor(s: &str) -> Result<(i64, i64)> {
    let b = URL_SAFE_NO_PAD
        .decode(s.as_bytes())
        .map_err(|_| StoreError::BadCursor)?;
    if b.len() != 17 || b[0] != b'o' {
        return Err(StoreError::BadCursor);
    }
    let t = i64::from_be_bytes(b[1..9].try_into().map_err(|_| StoreError::BadCursor)?);
    let id = i64::from_be_bytes(b[9..17].try_into().map_err(|_| StoreError::BadCursor)?);
    Ok((t, id))
}

/// Incident cursor: the id of the last incident of a page.
pub fn encode_incident_cursor(id: i64) -> String {
    let mut b = Vec::with_capacity(9);
    b.push(b'i');
    b.extend_from_slice(&id.to_be_bytes());
    URL_SAFE_NO_PAD.encode(b)
}

pub fn decode_incident_cursor(s: &str) -> Result<i64> {
    let b = URL_SAFE_NO_PAD
        .decode(s.as_bytes())
        .map_err(|_| StoreError::BadCursor)?;
    if b.len() != 9 || b[0] != b'i' {
        return Err(StoreError::BadCursor);
    }
    Ok(i64::from_be_bytes(
        b[1..9].try_into().map_err(|_| StoreError::BadCursor)?,
    ))
}

/// The observation columns in the order [`observation_from_row`] reads them, for
/// `FROM observations o JOIN monitors m ON m.id = o.monitor_id JOIN targets t ON t.id = o.target_id`.
pub const OBS_COLUMNS: &str = "o.id, m.name, o.location, t.target, t.check_kind, o.address, \
     o.outcome, o.error_kind, o.error_subkind, o.message, o.dns_ms, o.connect_ms, o.tls_ms, \
     o.protocol_ms, o.started_at, o.duration_ms, o.scheduled_at, o.lateness_ms, o.details";

/// Reads one row selected with [`OBS_COLUMNS`]; returns (id, started_at ms, observation).
pub fn observation_from_row(row: &impl Cols) -> Result<(i64, i64, Observation)> {
    let id: i64 = row.col(0)?;
    let address: Option<String> = row.col(5)?;
    let address = match address {
        Some(a) => Some(
            a.parse()
                .map_err(|e| StoreError::Db(format!("stored address `{a}`: {e}")))?,
        ),
        None => None,
    };
    let outcome = outcome_from_code(row.col(6)?)?;
    let error_kind: Option<String> = row.col(7)?;
    let error_subkind: Option<String> = row.col(8)?;
    let message: Option<String> = row.col(9)?;
    let (error, note) = match error_kind {
        Some(code) => {
            let kind = ErrorKind::from_codes(&code, error_subkind.as_deref())
                .ok_or_else(|| StoreError::Db(format!("unknown stored error kind `{code}`")))?;
            (
                Some(ProbeError::new(kind, message.unwrap_or_default())),
                None,
            )
        }
        None => (None, message),
    };
    let started_ms: i64 = row.col(14)?;
    let scheduled: Option<i64> = row.col(16)?;
    let details: Option<String> = row.col(18)?;
    let details = match details {
        Some(s) => serde_json::from_str(&s)
            .map_err(|e| StoreError::Db(format!("stored details are not a JSON object: {e}")))?,
        None => serde_json::Map::new(),
    };
    let obs = Observation {
        monitor: row.col(1)?,
        location: row.col(2)?,
        target: row.col(3)?,
        check: row.col(4)?,
        address,
        outcome,
        error,
        note,
        phases: Phases {
            dns_ms: row.col(10)?,
            connect_ms: row.col(11)?,
            tls_ms: row.col(12)?,
            protocol_ms: row.col(13)?,
        },
        started_at: from_ms(started_ms)?,
        duration_ms: row.col(15)?,
        scheduled_at: scheduled.map(from_ms).transpose()?,
        lateness_ms: row.col(17)?,
        details,
    };
    Ok((id, started_ms, obs))
}

/// Incident columns for `FROM incidents i JOIN monitors m ON m.id = i.monitor_id`.
pub const INCIDENT_COLUMNS: &str = "i.id, m.name, i.status, i.state, i.severity, i.scope, \
     i.locations, i.opened_at, i.resolved_at, i.acknowledged_at, i.acknowledged_by, \
     i.error_kind, i.message, i.last_healthy";

pub fn incident_from_row(row: &impl Cols) -> Result<Incident> {
    let status: String = row.col(2)?;
    let status = match status.as_str() {
        "open" => IncidentStatus::Open,
        "resolved" => IncidentStatus::Resolved,
        other => return Err(StoreError::Db(format!("unknown incident status `{other}`"))),
    };
    let state: String = row.col(3)?;
    let state =
        State::parse(&state).ok_or_else(|| StoreError::Db(format!("unknown state `{state}`")))?;
    let severity: String = row.col(4)?;
    let severity = Severity::parse(&severity)
        .ok_or_else(|| StoreError::Db(format!("unknown severity `{severity}`")))?;
    let scope: String = row.col(5)?;
    let locations: String = row.col(6)?;
    let scope = decode_scope(&scope, &locations)?;
    let last_healthy: Option<String> = row.col(13)?;
    let last_healthy: Option<LastHealthy> = match last_healthy {
        Some(s) => Some(
            serde_json::from_str(&s)
                .map_err(|e| StoreError::Db(format!("stored last_healthy: {e}")))?,
        ),
        None => None,
    };
    let opt_time = |i: usize| -> Result<Option<DateTime<Utc>>> {
        let v: Option<i64> = row.col(i)?;
        v.map(from_ms).transpose()
    };
    Ok(Incident {
        id: row.col(0)?,
        monitor: row.col(1)?,
        status,
        state,
        severity,
        scope,
        opened_at: from_ms(row.col(7)?)?,
        resolved_at: opt_time(8)?,
        acknowledged_at: opt_time(9)?,
        acknowledged_by: row.col(10)?,
        error_kind: row.col(11)?,
        message: row.col(12)?,
        last_healthy,
    })
}

pub fn encode_scope(s: &Scope) -> (&'static str, String) {
    let locations = serde_json::to_string(s.locations()).unwrap_or_else(|_| "[]".into());
    (s.as_str(), locations)
}

fn decode_scope(scope: &str, locations: &str) -> Result<Scope> {
    match scope {
        "global" => Ok(Scope::Global),
        "regional" => Ok(Scope::Regional(serde_json::from_str(locations).map_err(
            |e| StoreError::Db(format!("stored incident locations: {e}")),
        )?)),
        other => Err(StoreError::Db(format!("unknown incident scope `{other}`"))),
    }
}

/// Event columns: at, kind, message, data.
pub fn event_from_row(row: &impl Cols) -> Result<IncidentEvent> {
    let kind: String = row.col(1)?;
    let kind = EventKind::parse(&kind)
        .ok_or_else(|| StoreError::Db(format!("unknown incident event kind `{kind}`")))?;
    let data: Option<String> = row.col(3)?;
    let data = match data {
        Some(s) => serde_json::from_str(&s)
            .map_err(|e| StoreError::Db(format!("stored event data: {e}")))?,
        None => serde_json::Value::Null,
    };
    Ok(IncidentEvent {
        at: from_ms(row.col(0)?)?,
        kind,
        message: row.col(2)?,
        data,
    })
}

/// `Null` is stored as SQL NULL.
pub fn json_or_null(v: &serde_json::Value) -> Option<String> {
    if v.is_null() {
        None
    } else {
        Some(v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = encode_obs_cursor(1_700_000_000_123, 42);
        assert_eq!(decode_obs_cursor(&c).unwrap(), (1_700_000_000_123, 42));
        for bad in ["", "!!!", "b2s", &encode_incident_cursor(3)] {
            assert!(matches!(decode_obs_cursor(bad), Err(StoreError::BadCursor)));
        }
        let c = encode_incident_cursor(7);
        assert_eq!(decode_incident_cursor(&c).unwrap(), 7);
        assert!(matches!(
            decode_incident_cursor(&encode_obs_cursor(1, 2)),
            Err(StoreError::BadCursor)
        ));
    }

    #[test]
    fn rounding() {
        assert_eq!(floor_to(125_000, MINUTE_MS), 120_000);
        assert_eq!(ceil_to(125_000, MINUTE_MS), 180_000);
        assert_eq!(ceil_to(120_000, MINUTE_MS), 120_000);
        assert_eq!(floor_to(-1, MINUTE_MS), -60_000);
        let d = day_of(DAY_MS * 3 + 5).unwrap();
        assert_eq!(day_start_ms(d), DAY_MS * 3);
    }
}
