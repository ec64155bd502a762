//! Acceptance: rollups give exact availability counts and latency quantiles within the
//! histogram's bound (±2 % relative, `LogHistogram::RELATIVE_ERROR`); hour and day rollups agree
//! with the minute ones.

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use portwarden_core::{Observation, Outcome};
use portwarden_store::histogram::LogHistogram;
use portwarden_store::{Availability, Record, Resolution, Retention, Store, StoreMetrics};

const ALPHA: f64 = LogHistogram::RELATIVE_ERROR;

/// Synthetic day-long series: one probe every 20 s, outcomes by a fixed pattern, connect times
/// known; a few probes from a second location.
fn synthetic(monitor: &str, start: i64, end: i64, salt: i64) -> Vec<Record> {
    let mut out = Vec::new();
    let mut i = 0i64;
    let mut ts = start;
    while ts < end {
        let k = i + salt;
        let outcome = if k % 10 == 0 {
            Outcome::Down
        } else if k % 10 == 1 {
            Outcome::Degraded
        } else if k % 17 == 0 {
            Outcome::Unknown
        } else {
            Outcome::Up
        };
        let connect = match outcome {
            Outcome::Down if k % 20 == 0 => None, // refused before connecting
            _ => Some(0.2 + ((k * 7919) % 997) as f64 * 0.731),
        };
        let mut o = obs(monitor, ts, outcome, connect);
        if k % 7 == 0 {
            o.location = "eu-west".into();
        }
        out.push(Record {
            obs: o,
            maintenance: k % 50 == 3,
        });
        i += 1;
        ts += 20_000 + (k % 3) * 1000; // a little irregular
    }
    out
}

fn expected(records: &[Record], from: i64, to: i64) -> Availability {
    let mut a = Availability::default();
    for r in records {
        let ms = r.obs.started_at.timestamp_millis();
        if ms < from || ms >= to {
            continue;
        }
        if r.maintenance {
            a.maintenance += 1;
            continue;
        }
        match r.obs.outcome {
            Outcome::Up => a.up += 1,
            Outcome::Degraded => a.degraded += 1,
            Outcome::Down => a.down += 1,
            Outcome::Unknown => a.unknown += 1,
        }
    }
    a.compute_ratio()
}

fn nearest_rank(mut v: Vec<f64>, q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

fn within(got: Option<f64>, exact: Option<f64>, what: &str) {
    match (got, exact) {
        (Some(g), Some(e)) => assert!(
            (g - e).abs() <= e * ALPHA * (1.0 + 1e-9),
            "{what}: exact {e}, got {g} (bound ±{}%)",
            ALPHA * 100.0
        ),
        (None, None) => {}
        _ => panic!("{what}: got {got:?}, exact {exact:?}"),
    }
}

fn floor(ms: i64, unit: i64) -> i64 {
    ms.div_euclid(unit) * unit
}

async fn load(store: &dyn Store, records: &[Record]) {
    for r in records {
        assert!(store.submit(r.clone()));
    }
    store.flush().await.unwrap();
}

async fn availability_counts_are_exact_over_days_hours_and_edges(sdb: Db) {
    let store = sdb.open().await;
    let start = days_ago(4);
    let end = start + 3 * DAY;
    let db = synthetic("db", start, end, 0);
    let web = synthetic("web", start + 7 * HOUR, end, 5);
    load(&*store, &db).await;
    load(&*store, &web).await;

    let windows = [
        (start, end), // whole days
        (
            start + 5 * HOUR + 17 * MIN,
            start + 2 * DAY + 13 * HOUR + 43 * MIN,
        ), // partial hours at both edges
        (start + 30 * HOUR + 5 * MIN, start + 30 * HOUR + 50 * MIN), // inside one hour
        (start + DAY, start + DAY + 2 * HOUR), // aligned hours
        (start - DAY, start + 10 * MIN), // mostly before the data
    ];
    for (from, to) in windows {
        let got = store.availability("db", t(from), t(to)).await.unwrap();
        let want = expected(&db, from, to);
        assert_eq!(got, want, "window {from}..{to}");
        assert!(got.judged() > 0 || to - from < HOUR);
        if let Some(r) = got.ratio {
            let w = (want.up + want.degraded) as f64 / (want.up + want.degraded + want.down) as f64;
            assert!((r - w).abs() < 1e-12);
        }
    }
    // not minute-aligned: widened to whole minutes
    let (from, to) = (
        start + 3 * HOUR + 10 * MIN + 25_000,
        start + 9 * HOUR + 2 * MIN + 1,
    );
    let got = store.availability("db", t(from), t(to)).await.unwrap();
    assert_eq!(got, expected(&db, floor(from, MIN), floor(to, MIN) + MIN));

    // all monitors in one query agree with the single-monitor answers
    let (from, to) = (start + 5 * HOUR + 17 * MIN, end - 3 * MIN);
    let all = store.availability_all(t(from), t(to)).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all["db"], expected(&db, from, to));
    assert_eq!(all["web"], expected(&web, from, to));
    assert_eq!(
        all["web"],
        store.availability("web", t(from), t(to)).await.unwrap()
    );

    // per UTC day, including partial first and last days
    let (from, to) = (start + 20 * HOUR + 30 * MIN, start + 2 * DAY + 4 * HOUR);
    let days = store
        .availability_daily("db", t(from), t(to))
        .await
        .unwrap();
    assert_eq!(days.len(), 3);
    for (n, d) in days.iter().enumerate() {
        let day_start = start + n as i64 * DAY;
        assert_eq!(d.day, t(day_start).date_naive());
        let want = expected(&db, from.max(day_start), to.min(day_start + DAY));
        assert_eq!(d.availability, want, "day {}", d.day);
    }
    // a day without data is present with nothing judged
    let days = store
        .availability_daily("db", t(start - 2 * DAY), t(start))
        .await
        .unwrap();
    assert_eq!(days.len(), 2);
    assert!(
        days.iter()
            .all(|d| d.availability.judged() == 0 && d.availability.ratio.is_none())
    );
    store.close().await.unwrap();
}

async fn latency_series_quantiles_are_within_the_bound_and_merge_exactly(sdb: Db) {
    let store = sdb.open().await;
    let start = days_ago(3);
    let end = start + 2 * DAY;
    let db = synthetic("db", start, end, 0);
    load(&*store, &db).await;

    for (res, unit) in [
        (Resolution::Minute, MIN),
        (Resolution::Hour, HOUR),
        (Resolution::Day, DAY),
    ] {
        let (from, to) = match res {
            Resolution::Minute => (start + 10 * HOUR, start + 13 * HOUR),
            _ => (start, end),
        };
        let points = store
            .latency_series("db", t(from), t(to), res)
            .await
            .unwrap();
        // group the raw data the same way
        let mut groups: BTreeMap<i64, Vec<&Observation>> = BTreeMap::new();
        for r in &db {
            let ms = r.obs.started_at.timestamp_millis();
            if ms >= from && ms < to {
                groups.entry(floor(ms, unit)).or_default().push(&r.obs);
            }
        }
        assert_eq!(points.len(), groups.len(), "{res:?}");
        for (p, (bucket, obs)) in points.iter().zip(&groups) {
            assert_eq!(p.t.timestamp_millis(), *bucket);
            assert_eq!(p.count, obs.len() as u64);
            assert_eq!(
                p.failures,
                db.iter()
                    .filter(|r| {
                        let ms = r.obs.started_at.timestamp_millis();
                        floor(ms, unit) == *bucket
                            && !r.maintenance
                            && r.obs.outcome == Outcome::Down
                    })
                    .count() as u64
            );
            let connects: Vec<f64> = obs.iter().filter_map(|o| o.phases.connect_ms).collect();
            let durations: Vec<f64> = obs
                .iter()
                .filter(|o| matches!(o.outcome, Outcome::Up | Outcome::Degraded))
                .map(|o| o.duration_ms)
                .collect();
            let what = format!("{res:?} bucket {bucket}");
            within(
                p.connect_p50_ms,
                nearest_rank(connects.clone(), 0.5),
                &format!("{what} connect p50"),
            );
            within(
                p.connect_p95_ms,
                nearest_rank(connects.clone(), 0.95),
                &format!("{what} connect p95"),
            );
            assert_eq!(p.connect_max_ms, connects.iter().copied().reduce(f64::max));
            within(
                p.duration_p50_ms,
                nearest_rank(durations.clone(), 0.5),
                &format!("{what} duration p50"),
            );
            within(
                p.duration_p95_ms,
                nearest_rank(durations, 0.95),
                &format!("{what} duration p95"),
            );
        }
    }
    store.close().await.unwrap();

    // The stored hour histograms are exactly the merge of their minute histograms, and the
    // hour counts the sum of the minute counts (checked on the file itself).
    let hist = |v: &Val| {
        v.blob()
            .map(|b| LogHistogram::decode(&b).unwrap())
            .unwrap_or_default()
    };
    let mut checked = 0;
    let hours = sdb
        .query("SELECT monitor_id, bucket, location, up, degraded, down, unknown, maintenance, connect_hist, duration_hist, connect_max FROM rollup_hour")
        .await;
    for row in hours {
        let (mid, bucket, loc) = (row[0].int(), row[1].int(), row[2].text());
        let counts: Vec<i64> = row[3..8].iter().map(Val::int).collect();
        let minutes = sdb
            .query(&format!(
                "SELECT up, degraded, down, unknown, maintenance, connect_hist, duration_hist, connect_max FROM rollup_minute WHERE monitor_id = {mid} AND location = '{loc}' AND bucket >= {bucket} AND bucket < {}",
                bucket + HOUR
            ))
            .await;
        let mut sum = vec![0i64; 5];
        let (mut cm, mut dm) = (LogHistogram::new(), LogHistogram::new());
        let mut max: Option<f64> = None;
        for r in &minutes {
            for (i, v) in sum.iter_mut().enumerate() {
                *v += r[i].int();
            }
            cm.merge(&hist(&r[5]));
            dm.merge(&hist(&r[6]));
            if let Some(m) = r[7].real() {
                max = Some(max.map_or(m, |x: f64| x.max(m)));
            }
        }
        assert_eq!(sum, counts);
        assert_eq!(hist(&row[8]), cm);
        assert_eq!(hist(&row[9]), dm);
        assert_eq!(row[10].real(), max);
        checked += 1;
    }
    assert!(checked >= 48, "checked {checked} hour rows");
}

async fn rollups_survive_a_restart_and_late_rows_merge_into_stored_buckets(sdb: Db) {
    let start = days_ago(1) + 10 * HOUR;
    let first = synthetic("db", start, start + HOUR, 0);
    let second = synthetic("db", start + 30 * MIN + 7_000, start + 2 * HOUR, 3);
    {
        let store = sdb.open().await;
        load(&*store, &first).await;
        store.close().await.unwrap();
    }
    let store = sdb.open().await; // empty cache: the same buckets are read back and merged
    load(&*store, &second).await;
    let all: Vec<Record> = first.iter().chain(&second).cloned().collect();
    let (from, to) = (start + 20 * MIN, start + 2 * HOUR);
    assert_eq!(
        store.availability("db", t(from), t(to)).await.unwrap(),
        expected(&all, from, to)
    );
    let points = store
        .latency_series("db", t(start), t(start + 2 * HOUR), Resolution::Hour)
        .await
        .unwrap();
    assert_eq!(
        points.iter().map(|p| p.count).sum::<u64>(),
        all.len() as u64
    );
    store.close().await.unwrap();
}

async fn edges_older_than_the_minute_retention_come_from_hour_rollups(sdb: Db) {
    let retention = Retention {
        raw: Duration::from_secs(86_400),
        minute: Duration::from_secs(86_400),
        hour: Duration::from_secs(400 * 86_400),
    };
    let store = sdb
        .open_with(retention, fast_writer(), StoreMetrics::default())
        .await;
    let start = days_ago(4);
    let db = synthetic("db", start, start + DAY, 0);
    load(&*store, &db).await;
    // minute rollups of that day are gone after retention...
    store.apply_retention(chrono::Utc::now()).await.unwrap();
    // ...so a window with ragged edges is answered from whole hours
    let (from, to) = (start + 5 * HOUR + 17 * MIN, start + 13 * HOUR + 43 * MIN);
    let got = store.availability("db", t(from), t(to)).await.unwrap();
    assert_eq!(got, expected(&db, start + 5 * HOUR, start + 14 * HOUR));
    store.close().await.unwrap();
}

on_both_backends!(
    availability_counts_are_exact_over_days_hours_and_edges,
    latency_series_quantiles_are_within_the_bound_and_merge_exactly,
    rollups_survive_a_restart_and_late_rows_merge_into_stored_buckets,
    edges_older_than_the_minute_retention_come_from_hour_rollups,
);
