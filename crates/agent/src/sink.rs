//! The agent's `Store`: the engine hands it observations, it hands them to the batcher. It
//! keeps nothing itself (history lives on the server).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use portwarden_core::{Incident, IncidentId, Observation};
use portwarden_store::{
    Availability, DayAvailability, IncidentChange, IncidentDetail, IncidentFilter, LatencyPoint,
    MonitorId, MonitorRecord, NewIncident, ObservationQuery, Page, Record, Resolution, Result,
    Store, StoreError, StoreHealth,
};
use tokio::sync::mpsc;

pub struct QueueSink {
    tx: mpsc::Sender<Record>,
    dropped: AtomicU64,
}

impl QueueSink {
    pub fn new(tx: mpsc::Sender<Record>) -> QueueSink {
        QueueSink {
            tx,
            dropped: AtomicU64::new(0),
        }
    }
}

fn none<T>() -> Result<T> {
    Err(StoreError::Db(
        "an agent keeps no history; ask the server".into(),
    ))
}

#[async_trait]
impl Store for QueueSink {
    async fn sync_monitors(&self, m: &[MonitorRecord]) -> Result<HashMap<String, MonitorId>> {
        Ok(m.iter()
            .enumerate()
            .map(|(i, r)| (r.name.clone(), i as MonitorId))
            .collect())
    }

    fn submit(&self, record: Record) -> bool {
        if self.tx.try_send(record).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed);
            if n.is_multiple_of(1000) {
                tracing::warn!(dropped = n + 1, "agent batcher is behind; results dropped");
            }
            return false;
        }
        true
    }

    async fn flush(&self) -> Result<()> {
        Ok(())
    }

    async fn open_incident(&self, _new: NewIncident) -> Result<IncidentId> {
        none()
    }

    async fn change_incident(&self, _id: IncidentId, _c: IncidentChange) -> Result<()> {
        none()
    }

    async fn open_incidents(&self) -> Result<Vec<Incident>> {
        Ok(Vec::new())
    }

    async fn incidents(&self, _f: &IncidentFilter) -> Result<Page<Incident>> {
        none()
    }

    async fn incident(&self, _id: IncidentId) -> Result<Option<IncidentDetail>> {
        none()
    }

    async fn observations(&self, _m: &str, _q: &ObservationQuery) -> Result<Page<Observation>> {
        none()
    }

    async fn last_observations(&self) -> Result<HashMap<String, Observation>> {
        Ok(HashMap::new())
    }

    async fn availability(
        &self,
        _m: &str,
        _f: DateTime<Utc>,
        _t: DateTime<Utc>,
    ) -> Result<Availability> {
        none()
    }

    async fn availability_all(
        &self,
        _f: DateTime<Utc>,
        _t: DateTime<Utc>,
    ) -> Result<HashMap<String, Availability>> {
        none()
    }

    async fn availability_daily(
        &self,
        _m: &str,
        _f: DateTime<Utc>,
        _t: DateTime<Utc>,
    ) -> Result<Vec<DayAvailability>> {
        none()
    }

    async fn latency_series(
        &self,
        _m: &str,
        _f: DateTime<Utc>,
        _t: DateTime<Utc>,
        _r: Resolution,
    ) -> Result<Vec<LatencyPoint>> {
        none()
    }

    async fn apply_retention(&self, _now: DateTime<Utc>) -> Result<u64> {
        Ok(0)
    }

    fn health(&self) -> StoreHealth {
        StoreHealth {
            ok: true,
            last_error: None,
            last_error_at: None,
            last_commit_at: None,
            pending_rows: 0,
            dropped_rows: self.dropped.load(Ordering::Relaxed),
            lag_seconds: 0.0,
        }
    }

    async fn close(&self) -> Result<()> {
        Ok(())
    }
}
