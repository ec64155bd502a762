//! Replication and pool use, for real: test-owned PostgreSQL primary + streaming replica
//! (`initdb`, `pg_basebackup -R`), a Redis primary + replica (`--replicaof`), and a PostgreSQL
//! with a small `max_connections` filled up by real sessions.

mod common;
mod dbkit;

use std::time::{Duration, Instant};

use common::*;
use portwarden_core::{ErrorKind, Observation, Outcome};
use portwarden_testkit as tk;
use serde_json::json;

const T: Duration = Duration::from_secs(5);

fn detail<'a>(o: &'a Observation, k: &str) -> &'a serde_json::Value {
    o.details.get(k).unwrap_or(&serde_json::Value::Null)
}

/// Probes until `done` holds or `limit` passes; returns the last observation.
async fn probe_until(
    target: &str,
    spec: serde_json::Value,
    limit: Duration,
    done: impl Fn(&Observation) -> bool,
) -> Observation {
    let start = Instant::now();
    loop {
        let o = probe1(target, check(spec.clone()), T).await;
        if done(&o) || start.elapsed() > limit {
            return o;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_streaming_replica_role_lag_and_broken_link() {
    if !dbkit::need_pg() || tk::need_binary("psql").is_none() {
        return;
    }
    let mut primary = tokio::task::block_in_place(|| dbkit::Pg::primary(20));
    let pport = primary.port;
    dbkit::psql(
        pport,
        "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 1000)",
    )
    .unwrap();
    let replica = {
        let p = &primary;
        // pg_basebackup and start are blocking; they are quick on loopback.
        tokio::task::block_in_place(|| dbkit::Pg::replica_of(p))
    };
    let rtarget = format!("postgres://127.0.0.1:{}", replica.port);
    let deep = json!({"postgres": {"mode": "deep", "user": "postgres",
        "max_replication_lag": {"warn": "1h", "crit": "2h"}}});

    // The replica streams: role, link and lag are reported.
    let o = probe_until(&rtarget, deep.clone(), Duration::from_secs(30), |o| {
        detail(o, "replication_link") == &json!("up")
    })
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}\n{}", replica.log());
    assert_eq!(detail(&o, "role"), &json!("replica"), "{o:?}");
    assert_eq!(detail(&o, "read_only"), &json!(true));
    assert_eq!(detail(&o, "replication_link"), &json!("up"));
    assert!(
        detail(&o, "replication_lag_seconds").as_f64().is_some(),
        "{o:?}"
    );
    assert!(
        detail(&o, "replication_lag_bytes").as_u64().is_some(),
        "{o:?}"
    );
    assert!(detail(&o, "server_version").as_str().is_some());
    // Handshake on the replica works too (a hot standby accepts connections).
    let h = probe1(&rtarget, check(json!({"postgres": {}})), T).await;
    assert_eq!(h.outcome, Outcome::Up, "{h:?}");
    assert_eq!(
        detail(&h, "role"),
        &json!("replica"),
        "in_hot_standby: {h:?}"
    );
    assert_eq!(detail(&h, "read_only"), &json!(true));

    // The primary knows it is the primary.
    let p = probe1(
        &format!("postgres://127.0.0.1:{pport}"),
        check(deep.clone()),
        T,
    )
    .await;
    assert_eq!(p.outcome, Outcome::Up, "{p:?}");
    assert_eq!(detail(&p, "role"), &json!("primary"));
    assert!(detail(&p, "replication_link").is_null());

    // Data written on the primary arrives on the replica.
    dbkit::psql(pport, "INSERT INTO t SELECT generate_series(1, 1000)").unwrap();

    // A lag level of 0s makes any measured lag a warning: the judgement is wired up.
    let strict = json!({"postgres": {"mode": "deep", "user": "postgres",
        "max_replication_lag": {"warn": "0s"}}});
    let o = probe1(&rtarget, check(strict), T).await;
    assert_eq!(o.outcome, Outcome::Degraded, "{o:?}");
    assert!(
        o.note.as_deref().unwrap_or("").contains("replication lag"),
        "{o:?}"
    );

    // Stop the primary: the replica's WAL receiver goes away → broken link, unhealthy.
    tokio::task::block_in_place(|| primary.stop());
    let o = probe_until(&rtarget, deep.clone(), Duration::from_secs(30), |o| {
        o.outcome == Outcome::Down
    })
    .await;
    assert_eq!(o.outcome, Outcome::Down, "{o:?}\n{}", replica.log());
    assert_eq!(o.error_kind(), Some(ErrorKind::Unhealthy), "{o:?}");
    assert_eq!(detail(&o, "replication_link"), &json!("down"), "{o:?}");
    assert_eq!(detail(&o, "role"), &json!("replica"));
    // Handshake mode still sees a live server: liveness and health are separate questions.
    let h = probe1(&rtarget, check(json!({"postgres": {}})), T).await;
    assert_eq!(h.outcome, Outcome::Up, "{h:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_pool_use_degrades_then_too_many_clients_is_unhealthy() {
    if !dbkit::need_pg() || tk::need_binary("psql").is_none() {
        return;
    }
    let pg = tokio::task::block_in_place(|| dbkit::Pg::primary(10));
    let target = format!("postgres://127.0.0.1:{}", pg.port);
    let levels = json!({"postgres": {"mode": "deep", "user": "postgres",
        "max_connection_use": {"warn": 50.0, "crit": 95.0}}});

    let o = probe1(&target, check(levels.clone()), T).await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert_eq!(detail(&o, "connections_max"), &json!(10));

    // 6 sessions + the probe's own = 7 of 10 → 70 % ≥ 50 % warning → degraded.
    let mut sessions = Vec::new();
    for _ in 0..6 {
        sessions.push(dbkit::pg_session(pg.port).await.unwrap());
    }
    let o = probe1(&target, check(levels.clone()), T).await;
    assert_eq!(o.outcome, Outcome::Degraded, "{o:?}");
    assert!(
        detail(&o, "pool_use_percent").as_f64().unwrap() >= 50.0,
        "{o:?}"
    );
    assert!(o.note.as_deref().unwrap_or("").contains("pool"), "{o:?}");

    // Fill every slot: the server now refuses with 53300 "too many clients" → the handshake
    // probe reports unhealthy with the server's message.
    while let Ok(s) = dbkit::pg_session(pg.port).await {
        sessions.push(s);
        assert!(sessions.len() < 20, "max_connections was not enforced");
    }
    let o = probe1(&target, check(json!({"postgres": {}})), T).await;
    assert_eq!(o.outcome, Outcome::Down, "{o:?}");
    assert_eq!(o.error_kind(), Some(ErrorKind::Unhealthy), "{o:?}");
    let msg = o
        .error
        .as_ref()
        .map(|e| e.message.clone())
        .unwrap_or_default();
    assert!(
        msg.contains("53300") && msg.contains("too many clients"),
        "{msg}"
    );
    drop(sessions);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_replica_role_lag_and_broken_link() {
    if tk::need_binary("redis-server").is_none() {
        return;
    }
    let mut primary = dbkit::redis(None).unwrap();
    let replica = dbkit::redis(Some(primary.port)).unwrap();
    let rtarget = format!("redis://127.0.0.1:{}", replica.port);
    let ptarget = format!("redis://127.0.0.1:{}", primary.port);
    let deep = json!({"redis": {"mode": "deep"}});

    let o = probe_until(&rtarget, deep.clone(), Duration::from_secs(20), |o| {
        detail(o, "replication_link") == &json!("up")
    })
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert_eq!(detail(&o, "role"), &json!("replica"));
    assert_eq!(detail(&o, "read_only"), &json!(true));
    assert!(
        detail(&o, "replication_lag_seconds").as_f64().is_some(),
        "{o:?}"
    );

    let p = probe_until(&ptarget, deep.clone(), Duration::from_secs(10), |o| {
        detail(o, "connected_replicas") == &json!(1)
    })
    .await;
    assert_eq!(p.outcome, Outcome::Up, "{p:?}");
    assert_eq!(detail(&p, "role"), &json!("primary"));
    assert_eq!(detail(&p, "connected_replicas"), &json!(1));
    assert!(
        detail(&p, "replication_lag_bytes").as_i64().is_some(),
        "{p:?}"
    );

    primary.kill();
    let o = probe_until(&rtarget, deep.clone(), Duration::from_secs(15), |o| {
        o.outcome == Outcome::Down
    })
    .await;
    assert_eq!(o.outcome, Outcome::Down, "{o:?}");
    assert_eq!(o.error_kind(), Some(ErrorKind::Unhealthy), "{o:?}");
    assert_eq!(detail(&o, "replication_link"), &json!("down"));
    // Handshake: the replica itself is alive.
    let h = probe1(&rtarget, check(json!({"redis": {}})), T).await;
    assert_eq!(h.outcome, Outcome::Up, "{h:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_replica_threads_lag_and_broken_link() {
    if tk::need_binary("mariadb-install-db").is_none() || tk::need_binary("mariadbd").is_none() {
        return;
    }
    let (mut primary, replica) = tokio::task::block_in_place(|| {
        let p = dbkit::Maria::start(1).unwrap();
        let r = dbkit::Maria::start(2).unwrap();
        (p, r)
    });
    tokio::task::block_in_place(|| {
        primary
            .sql("CREATE DATABASE shop; CREATE TABLE shop.t (id INT)")
            .unwrap();
        replica
            .sql(&format!(
                "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, MASTER_USER='root', \
                 MASTER_PASSWORD='', MASTER_CONNECT_RETRY=1; START SLAVE",
                primary.port()
            ))
            .unwrap();
    });
    let rtarget = format!("mysql://127.0.0.1:{}", replica.port());
    let deep = json!({"mysql": {"mode": "deep", "user": "root",
        "max_replication_lag": {"warn": "1h"}}});
    let o = probe_until(&rtarget, deep.clone(), Duration::from_secs(30), |o| {
        detail(o, "replication_link") == &json!("up")
    })
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert_eq!(detail(&o, "role"), &json!("replica"));
    assert_eq!(detail(&o, "replication_io_running"), &json!("Yes"));
    assert_eq!(detail(&o, "replication_sql_running"), &json!("Yes"));
    assert!(
        detail(&o, "replication_lag_seconds").as_f64().is_some(),
        "{o:?}"
    );
    // The table created on the primary arrived.
    let n = tokio::task::block_in_place(|| replica.sql("SELECT COUNT(*) FROM shop.t")).unwrap();
    assert_eq!(n, "0");

    let p = probe1(
        &format!("mysql://127.0.0.1:{}", primary.port()),
        check(deep.clone()),
        T,
    )
    .await;
    assert_eq!(p.outcome, Outcome::Up, "{p:?}");
    assert_eq!(detail(&p, "role"), &json!("primary"));

    primary.server.kill();
    let o = probe_until(&rtarget, deep.clone(), Duration::from_secs(20), |o| {
        o.outcome == Outcome::Down
    })
    .await;
    assert_eq!(o.outcome, Outcome::Down, "{o:?}");
    assert_eq!(o.error_kind(), Some(ErrorKind::Unhealthy), "{o:?}");
    assert_eq!(detail(&o, "replication_link"), &json!("down"));
    assert!(
        o.error.as_ref().unwrap().message.contains("IO thread"),
        "{o:?}"
    );
}

/// Our SCRAM-SHA-256 client (used by the MongoDB deep mode) validated against a real server:
/// PostgreSQL speaks the same RFC 5802/7677 exchange, inside its SASL messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_sha256_client_against_real_postgres() {
    use portwarden_wire::postgres::{self as pgw, Auth, Backend};
    use portwarden_wire::scram::{Scram, ScramError};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    if !dbkit::need_pg() || tk::need_binary("psql").is_none() {
        return;
    }
    let pg = tokio::task::block_in_place(|| dbkit::Pg::primary(10));
    dbkit::psql(pg.port, "SET password_encryption = 'scram-sha-256'; CREATE ROLE scram_ascii LOGIN PASSWORD 'pa ss,=word'; CREATE ROLE scram_utf8 LOGIN PASSWORD 'pässwörd ÅÉ'").unwrap();
    let hba = pg.data.join("pg_hba.conf");
    let old = std::fs::read_to_string(&hba).unwrap();
    std::fs::write(
        &hba,
        format!("host all scram_ascii,scram_utf8 127.0.0.1/32 scram-sha-256\n{old}"),
    )
    .unwrap();
    dbkit::psql(pg.port, "SELECT pg_reload_conf()").unwrap();

    async fn next(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Backend {
        loop {
            if let Some((m, used)) = pgw::parse_backend(buf, pgw::MAX_MESSAGE).unwrap() {
                buf.drain(..used);
                return m;
            }
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "server closed");
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Runs the exchange; Ok(()) when the server says AuthenticationOk after verifying us and
    /// we verified it.
    async fn login(port: u16, user: &str, password: &str) -> Result<(), String> {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let mut buf = Vec::new();
        s.write_all(&pgw::startup_message(&[
            ("user", user),
            ("database", "postgres"),
        ]))
        .await
        .unwrap();
        let Backend::Authentication(Auth::Sasl(mechs)) = next(&mut s, &mut buf).await else {
            return Err("no SASL request".into());
        };
        assert!(mechs.iter().any(|m| m == "SCRAM-SHA-256"), "{mechs:?}");
        let mut scram = Scram::new("", password, "fyko+d2lbbFgONRv9qkxdawL");
        s.write_all(&pgw::sasl_initial_response(
            "SCRAM-SHA-256",
            scram.client_first().as_bytes(),
        ))
        .await
        .unwrap();
        let Backend::Authentication(Auth::SaslContinue(first)) = next(&mut s, &mut buf).await
        else {
            return Err("no SASL continue".into());
        };
        let fin = scram.client_final(&first).map_err(|e| e.to_string())?;
        s.write_all(&pgw::sasl_response(fin.as_bytes()))
            .await
            .unwrap();
        match next(&mut s, &mut buf).await {
            Backend::Authentication(Auth::SaslFinal(v)) => {
                scram
                    .verify_server_final(&v)
                    .map_err(|e: ScramError| e.to_string())?;
            }
            Backend::Error(e) => return Err(format!("{} {}", e.code, e.message)),
            other => return Err(format!("{other:?}")),
        }
        match next(&mut s, &mut buf).await {
            Backend::Authentication(Auth::Ok) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    }

    // The postgres probe's handshake against that role: an auth request proves liveness.
    let o = probe1(
        &format!("postgres://127.0.0.1:{}", pg.port),
        check(json!({"postgres": {"user": "scram_ascii"}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert_eq!(detail(&o, "auth_required"), &json!(true));
    assert!(
        detail(&o, "auth_method")
            .as_str()
            .unwrap_or("")
            .contains("SCRAM-SHA-256"),
        "{o:?}"
    );
    // Deep mode with the password (tokio-postgres does its own SCRAM) and without.
    let deep = |pw: &str| {
        check(json!({"postgres": {"mode": "deep", "user": "scram_ascii", "password": pw}}))
    };
    let o = probe1(
        &format!("postgres://127.0.0.1:{}", pg.port),
        deep("pa ss,=word"),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    let o = probe1(
        &format!("postgres://127.0.0.1:{}", pg.port),
        deep("wrong"),
        T,
    )
    .await;
    assert_eq!(o.error_kind(), Some(ErrorKind::Auth), "{o:?}");
    assert!(!format!("{o:?}").contains("pa ss"));

    login(pg.port, "scram_ascii", "pa ss,=word").await.unwrap();
    login(pg.port, "scram_utf8", "pässwörd ÅÉ").await.unwrap();
    let e = login(pg.port, "scram_ascii", "wrong").await.unwrap_err();
    assert!(e.contains("28P01"), "{e}");
}
