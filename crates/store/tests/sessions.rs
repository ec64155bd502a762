//! Web sessions and locally created users: saved, found, touched, revoked, purged; survive a
//! reopen.

#[macro_use]
mod common;

use chrono::{Duration, Utc};
use common::*;
use portwarden_store::{LocalUser, RevokeSessions, SessionRecord};

fn session(id: &str, user: &str, ttl_min: i64) -> SessionRecord {
    let now = Utc::now();
    SessionRecord {
        id: id.into(),
        user: user.into(),
        csrf: format!("csrf-{id}"),
        created_at: now,
        expires_at: now + Duration::minutes(ttl_min),
        last_seen: now,
        revoked_at: None,
        remote: Some("127.0.0.1".into()),
        user_agent: Some("test".into()),
    }
}

async fn sessions_live_expire_and_are_revoked(db: Db) {
    let store = db.open().await;
    store
        .create_session(session("a1", "alice", 60))
        .await
        .unwrap();
    store
        .create_session(session("a2", "alice", 60))
        .await
        .unwrap();
    store
        .create_session(session("b1", "bob", 60))
        .await
        .unwrap();
    store
        .create_session(session("old", "bob", -5))
        .await
        .unwrap();
    // The same id twice is refused (ids are random; a clash is a bug).
    assert!(
        store
            .create_session(session("a1", "alice", 60))
            .await
            .is_err()
    );

    let s = store.session("a1").await.unwrap().unwrap();
    assert_eq!(s.user, "alice");
    assert_eq!(s.csrf, "csrf-a1");
    assert!(store.session("nope").await.unwrap().is_none());

    let later = Utc::now() + Duration::minutes(3);
    store.touch_session("a1", later).await.unwrap();
    let s = store.session("a1").await.unwrap().unwrap();
    assert_eq!(s.last_seen.timestamp_millis(), later.timestamp_millis());

    let active = store.active_sessions(Utc::now()).await.unwrap();
    let ids: Vec<&str> = active.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(!ids.contains(&"old"));

    assert_eq!(
        store
            .revoke_sessions(RevokeSessions::One("a2".into()), Utc::now())
            .await
            .unwrap(),
        1
    );
    assert!(
        store
            .session("a2")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
    assert_eq!(
        store
            .revoke_sessions(RevokeSessions::User("alice".into()), Utc::now())
            .await
            .unwrap(),
        1,
        "a2 was already revoked"
    );
    let active = store.active_sessions(Utc::now()).await.unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].id, "b1");

    // Purge removes expired and revoked ones.
    let n = store
        .purge_sessions(Utc::now() + Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(n, 3);
    assert!(store.session("old").await.unwrap().is_none());
    assert!(store.session("b1").await.unwrap().is_some());

    assert_eq!(
        store
            .revoke_sessions(RevokeSessions::All, Utc::now())
            .await
            .unwrap(),
        1
    );
    store.close().await.unwrap();
}

async fn local_users_are_created_once_and_kept(db: Db) {
    let store = db.open().await;
    let u = LocalUser {
        name: "admin".into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        role: "admin".into(),
        created_at: Utc::now(),
    };
    assert!(store.create_local_user(u.clone()).await.unwrap());
    let other = LocalUser {
        password_hash: "$argon2id$other".into(),
        ..u.clone()
    };
    assert!(
        !store.create_local_user(other).await.unwrap(),
        "never replaced"
    );
    store.close().await.unwrap();
    let store = db.open().await;
    let got = store.local_user("admin").await.unwrap().unwrap();
    assert_eq!(got.password_hash, u.password_hash);
    assert!(store.local_user("root").await.unwrap().is_none());
    store.close().await.unwrap();
}

/// A shared key (the acknowledge-link key): the first candidate stored wins; every later
/// caller, on this store or after a restart (another replica), gets that one.
async fn shared_keys_first_candidate_wins(db: Db) {
    let store = db.open().await;
    let first = [7u8; 32];
    assert_eq!(store.shared_key("ack-link", &first).await.unwrap(), first);
    assert_eq!(
        store.shared_key("ack-link", &[9u8; 32]).await.unwrap(),
        first,
        "never replaced"
    );
    assert_eq!(
        store.shared_key("other", &[1, 2, 3]).await.unwrap(),
        [1, 2, 3]
    );
    store.close().await.unwrap();
    let store = db.open().await;
    assert_eq!(
        store.shared_key("ack-link", &[0u8; 32]).await.unwrap(),
        first
    );
    store.close().await.unwrap();
}

/// Rollups also keep the TLS and protocol phases (migration 3), and the sparkline query gives
/// every monitor's median connect time per step.
async fn rollups_keep_tls_and_protocol_phases_and_sparklines(db: Db) {
    use portwarden_core::Outcome;
    use portwarden_store::Resolution;
    let store = db.open().await;
    let base = now_ms() / HOUR * HOUR - 2 * HOUR;
    for i in 0..60 {
        let mut o = obs(
            "tls-db",
            base + i * MIN,
            Outcome::Up,
            Some(1.0 + (i % 3) as f64),
        );
        o.phases.tls_ms = Some(10.0 + (i % 5) as f64);
        o.phases.protocol_ms = Some(3.0);
        assert!(store.submit(rec(o)));
        assert!(store.submit(rec(obs("plain", base + i * MIN, Outcome::Up, Some(0.5)))));
    }
    store.flush().await.unwrap();
    let pts = store
        .latency_series("tls-db", t(base), t(base + HOUR), Resolution::Hour)
        .await
        .unwrap();
    assert_eq!(pts.len(), 1);
    let p50 = pts[0].tls_p50_ms.unwrap();
    assert!((11.5..=12.5).contains(&p50), "tls p50 {p50}");
    assert!(pts[0].tls_p95_ms.unwrap() >= 13.5);
    assert!((pts[0].protocol_p50_ms.unwrap() - 3.0).abs() < 0.1);
    let minute = store
        .latency_series("plain", t(base), t(base + HOUR), Resolution::Minute)
        .await
        .unwrap();
    assert_eq!(minute.len(), 60);
    assert!(minute[0].tls_p50_ms.is_none(), "no TLS, no TLS quantiles");

    let sp = store
        .connect_sparklines(t(base), t(base + HOUR), std::time::Duration::from_secs(300))
        .await
        .unwrap();
    let plain = &sp["plain"];
    assert!(plain.len() >= 12, "{plain:?}");
    assert!(
        plain[..12]
            .iter()
            .all(|v| v.is_some_and(|v| (v - 0.5).abs() < 0.02)),
        "{plain:?}"
    );
    let db = &sp["tls-db"];
    assert!(
        db[..12]
            .iter()
            .all(|v| v.is_some_and(|v| (1.0..=3.1).contains(&v))),
        "{db:?}"
    );
    store.close().await.unwrap();
}

on_both_backends!(
    sessions_live_expire_and_are_revoked,
    local_users_are_created_once_and_kept,
    shared_keys_first_candidate_wins,
    rollups_keep_tls_and_protocol_phases_and_sparklines,
);
