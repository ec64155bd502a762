//! Acceptance: observations round-trip every field, page newest first with cursors.

#[macro_use]
mod common;

use common::*;
use portwarden_core::{
    DnsFailure, ErrorKind, Observation, Outcome, Phase, Phases, ProbeError, TlsFailure,
};
use portwarden_store::{MonitorRecord, ObservationQuery, Record, StoreError};
use serde_json::json;

fn query(limit: usize) -> ObservationQuery {
    ObservationQuery {
        from: None,
        to: None,
        location: None,
        limit,
        cursor: None,
    }
}

fn rich(i: i64, base: i64) -> Observation {
    let kinds = [
        None,
        Some((ErrorKind::Timeout(Phase::Tls), Outcome::Down)),
        Some((ErrorKind::Dns(DnsFailure::Nxdomain), Outcome::Down)),
        Some((ErrorKind::Tls(TlsFailure::Expired), Outcome::Down)),
        Some((ErrorKind::Refused, Outcome::Down)),
        Some((ErrorKind::Local, Outcome::Unknown)),
        Some((ErrorKind::Unhealthy, Outcome::Degraded)),
    ];
    let k = kinds[(i as usize) % kinds.len()];
    let mut details = serde_json::Map::new();
    details.insert("server_version".into(), json!(format!("16.{i}")));
    details.insert("replication_lag_s".into(), json!(0.25 * i as f64));
    details.insert(
        "pool".into(),
        json!({"used": i, "max": 100, "names": ["a", "b"], "ok": true, "none": null}),
    );
    Observation {
        monitor: "db".into(),
        location: if i % 3 == 0 {
            "eu-west".into()
        } else {
            "local".into()
        },
        target: "tls://db.example.test:5432".into(),
        check: "postgres".into(),
        address: Some(if i % 2 == 0 {
            "[2001:db8::1]:5432".parse().unwrap()
        } else {
            "192.0.2.7:5432".parse().unwrap()
        }),
        outcome: k.map_or(Outcome::Up, |(_, o)| o),
        error: k.map(|(kind, _)| ProbeError::new(kind, format!("failure #{i} ünïcode"))),
        note: if k.is_none() {
            Some(format!("cert expires in {i} days"))
        } else {
            None
        },
        phases: Phases {
            dns_ms: Some(0.125 + i as f64),
            connect_ms: Some(1.5 * i as f64),
            tls_ms: if i % 4 == 0 { None } else { Some(3.25) },
            protocol_ms: Some(0.001),
        },
        started_at: t(base + i * 1000),
        duration_ms: 7.75 + i as f64,
        scheduled_at: Some(t(base + i * 1000 - 3)),
        lateness_ms: Some(3.0),
        details,
    }
}

async fn observations_round_trip_every_field_newest_first(db: Db) {
    let store = db.open().await;
    let ids = store
        .sync_monitors(&[MonitorRecord {
            name: "db".into(),
            target: "tls://db.example.test:5432".into(),
            check: "postgres".into(),
            tier: "critical".into(),
            meta: json!({"owner": "team-db", "labels": {"env": "prod"}}),
        }])
        .await
        .unwrap();
    assert!(ids["db"] > 0);
    let base = now_ms() / 1000 * 1000 - 3_600_000;
    let input: Vec<Observation> = (0..40).map(|i| rich(i, base)).collect();
    for o in &input {
        assert!(store.submit(Record {
            obs: o.clone(),
            maintenance: false
        }));
    }
    store.flush().await.unwrap();

    let page = store.observations("db", &query(1000)).await.unwrap();
    let mut expected = input.clone();
    expected.reverse();
    assert_eq!(page.items, expected);
    assert_eq!(page.next_cursor, None);

    // a second sync keeps the id and updates the record
    let again = store
        .sync_monitors(&[MonitorRecord {
            name: "db".into(),
            target: "tcp://elsewhere:1".into(),
            check: "tcp".into(),
            tier: "supporting".into(),
            meta: json!({}),
        }])
        .await
        .unwrap();
    assert_eq!(again["db"], ids["db"]);
    // ...without rewriting what old observations probed
    let page = store.observations("db", &query(1)).await.unwrap();
    assert_eq!(page.items[0].target, "tls://db.example.test:5432");

    // filters
    let q = ObservationQuery {
        from: Some(t(base + 10_000)),
        to: Some(t(base + 20_000)),
        location: Some("eu-west".into()),
        ..query(1000)
    };
    let got = store.observations("db", &q).await.unwrap().items;
    let want: Vec<Observation> = expected
        .iter()
        .filter(|o| {
            let ms = o.started_at.timestamp_millis();
            (base + 10_000..base + 20_000).contains(&ms) && o.location == "eu-west"
        })
        .cloned()
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got, want);

    // last observation per monitor
    store.submit(rec(obs("other", base, Outcome::Up, Some(1.0))));
    store.flush().await.unwrap();
    let last = store.last_observations().await.unwrap();
    assert_eq!(last["db"], input[39]);
    assert_eq!(last["other"].started_at, t(base));
    store.close().await.unwrap();
}

async fn observations_page_with_cursors_and_reject_bad_ones(db: Db) {
    let store = db.open().await;
    let base = now_ms() - 3_600_000;
    // 250 rows, in groups of 5 with the same started_at: the cursor must break ties.
    let mut input = Vec::new();
    for i in 0..250 {
        let mut o = obs("web", base + (i / 5) * 1000, Outcome::Up, Some(i as f64));
        o.details.insert("seq".into(), json!(i));
        input.push(o);
    }
    for o in &input {
        assert!(store.submit(rec(o.clone())));
    }
    store.flush().await.unwrap();

    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = store
            .observations(
                "web",
                &ObservationQuery {
                    cursor,
                    ..query(100)
                },
            )
            .await
            .unwrap();
        pages += 1;
        assert!(page.items.len() <= 100);
        seen.extend(page.items);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let seqs: Vec<i64> = seen
        .iter()
        .map(|o| o.details["seq"].as_i64().unwrap())
        .collect();
    let want: Vec<i64> = (0..250).rev().collect();
    assert_eq!(
        seqs, want,
        "newest first, ties by insertion order, no gaps or repeats"
    );

    // an exactly full last page has no next cursor
    let p = store.observations("web", &query(250)).await.unwrap();
    assert_eq!(p.items.len(), 250);
    assert!(p.next_cursor.is_none());

    // limit is clamped to 1..=1000
    assert_eq!(
        store
            .observations("web", &query(0))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(
        store
            .observations("web", &query(5000))
            .await
            .unwrap()
            .items
            .len(),
        250
    );

    for bad in ["garbage!", "", "aGVsbG8", "AAAAAAAAAAAAAAAAAAAAAAAA"] {
        let e = store
            .observations(
                "web",
                &ObservationQuery {
                    cursor: Some(bad.into()),
                    ..query(10)
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::BadCursor), "{bad}: {e}");
    }
    let e = store.observations("nope", &query(10)).await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound(_)), "{e}");
    store.close().await.unwrap();
    // after close: submit refused, calls say Closed
    assert!(!store.submit(rec(obs("web", base, Outcome::Up, None))));
    assert!(matches!(store.flush().await, Err(StoreError::Closed)));
}

async fn reopening_keeps_everything_and_dropping_does_not_hang(db: Db) {
    let base = now_ms() - 60_000;
    {
        let store = db.open().await;
        for i in 0..10 {
            store.submit(rec(obs("a", base + i, Outcome::Up, Some(1.0))));
        }
        store.flush().await.unwrap();
        for i in 10..20 {
            store.submit(rec(obs("a", base + i, Outcome::Up, Some(1.0))));
        }
        // dropped without close: must return at once
        let t0 = std::time::Instant::now();
        drop(store);
        assert!(t0.elapsed() < std::time::Duration::from_millis(500));
    }
    // the writer's last attempt on drop races with the reopen; wait for it a little
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let store = db.open().await;
    let page = store.observations("a", &query(1000)).await.unwrap();
    assert_eq!(page.items.len(), 20, "the drop flushed the last rows");
    store.close().await.unwrap();
}

on_both_backends!(
    observations_round_trip_every_field_newest_first,
    observations_page_with_cursors_and_reject_bad_ones,
    reopening_keeps_everything_and_dropping_does_not_hang,
);

/// A PostgreSQL that cannot be reached, or a URL that is no URL: a clear error naming the
/// database without its password.
#[tokio::test]
async fn postgres_open_reports_an_unreachable_database_without_the_password() {
    let port = portwarden_testkit::free_port();
    let url = format!("postgres://pw:s3cret-pass@127.0.0.1:{port}/nowhere?connect_timeout=2");
    let e = portwarden_store::postgres::PgStore::open(
        &url,
        portwarden_store::Retention::default(),
        fast_writer(),
        portwarden_store::StoreMetrics::default(),
    )
    .await
    .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, StoreError::Connect { .. }), "{msg}");
    assert!(msg.contains(&format!("127.0.0.1:{port}")), "{msg}");
    assert!(msg.contains("nowhere"), "{msg}");
    assert!(!msg.contains("s3cret"), "the password leaked: {msg}");
    for bad in [
        "postgres://pw:s3cret@host:notaport/db",
        "postgres://pw:s3cret@h/db?sslmode=require",
    ] {
        let e = portwarden_store::postgres::PgStore::open(
            bad,
            portwarden_store::Retention::default(),
            fast_writer(),
            portwarden_store::StoreMetrics::default(),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(!e.contains("s3cret"), "the password leaked: {e}");
        assert!(e.contains("PostgreSQL"), "{e}");
    }
}

#[test]
fn open_reports_an_unusable_data_dir() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let e = portwarden_store::sqlite::SqliteStore::open(
        file.path(),
        portwarden_store::Retention::default(),
        fast_writer(),
        portwarden_store::StoreMetrics::default(),
    )
    .unwrap_err();
    assert!(matches!(e, StoreError::Open { .. }), "{e}");
    assert!(
        e.to_string().contains(&file.path().display().to_string()),
        "{e}"
    );
}
