//! Database probes against real servers: the shared PostgreSQL, MariaDB and Redis of this
//! machine (handshake and deep), a test-owned memcached (killed → refused), and every database
//! probe pointed at every other service (wrong protocol → protocol error, never a hang).

mod common;
mod dbkit;

use std::time::{Duration, Instant};

use common::*;
use portwarden_core::{ErrorKind, Outcome, Phase};
use portwarden_probe::CheckSpec;
use portwarden_testkit as tk;
use serde_json::json;

const T: Duration = Duration::from_secs(5);

fn detail<'a>(o: &'a portwarden_core::Observation, k: &str) -> &'a serde_json::Value {
    o.details.get(k).unwrap_or(&serde_json::Value::Null)
}

#[tokio::test]
async fn postgres_handshake_and_deep_against_shared_server() {
    if !tk::need_service("PostgreSQL", 5432) {
        return;
    }
    // Default check for the scheme: handshake on the default port.
    let o = probe1(
        "postgres://127.0.0.1",
        CheckSpec::for_scheme("postgres").unwrap(),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert_eq!(o.address.unwrap().port(), 5432);
    assert!(
        detail(&o, "server_version")
            .as_str()
            .is_some_and(|v| !v.is_empty()),
        "{o:?}"
    );
    assert_eq!(
        detail(&o, "auth_required"),
        &json!(false),
        "trust auth here"
    );
    assert!(o.phases.connect_ms.is_some() && o.phases.protocol_ms.is_some());

    let o = probe1(
        "postgres://127.0.0.1:5432",
        check(json!({"postgres": {"mode": "deep", "user": "postgres", "database": "test"}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert!(detail(&o, "server_version").as_str().is_some(), "{o:?}");
    assert_eq!(detail(&o, "role"), &json!("primary"));
    assert_eq!(detail(&o, "read_only"), &json!(false));
    assert!(detail(&o, "connections_used").as_u64().unwrap() >= 1);
    assert!(detail(&o, "connections_max").as_u64().unwrap() >= 1);
    assert!(detail(&o, "pool_use_percent").as_f64().is_some());

    // A role that does not exist still proves the server is alive (up, with a note).
    let o = probe1(
        "postgres://127.0.0.1:5432",
        check(json!({"postgres": {"user": "no_such_role_pw"}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert!(o.note.as_deref().unwrap_or("").contains("28000"), "{o:?}");
    // ...but in deep mode it is an auth failure.
    let o = probe1(
        "postgres://127.0.0.1:5432",
        check(json!({"postgres": {"mode": "deep", "user": "no_such_role_pw"}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Down, "{o:?}");
    assert_eq!(o.error_kind(), Some(ErrorKind::Auth), "{o:?}");
}

#[tokio::test]
async fn mysql_handshake_and_deep_against_shared_mariadb() {
    if !tk::need_service("MariaDB", 3306) {
        return;
    }
    let o = probe1(
        "mysql://127.0.0.1",
        CheckSpec::for_scheme("mysql").unwrap(),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    let v = detail(&o, "server_version")
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(v.contains("MariaDB") && !v.starts_with("5.5.5-"), "{o:?}");
    assert!(detail(&o, "connection_id").as_u64().is_some());

    let o = probe1(
        "mysql://127.0.0.1:3306",
        check(json!({"mysql": {"mode": "deep", "user": "root", "database": "test"}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert!(detail(&o, "server_version").as_str().is_some(), "{o:?}");
    assert_eq!(detail(&o, "role"), &json!("primary"));
    assert!(
        detail(&o, "connections_used").as_u64().unwrap() >= 1,
        "{o:?}"
    );
    assert!(detail(&o, "connections_max").as_u64().unwrap() >= 1);

    // Wrong password in deep mode: auth.
    let o = probe1(
        "mysql://127.0.0.1:3306",
        check(json!({"mysql": {"mode": "deep", "user": "root", "password": "definitely-wrong"}})),
        T,
    )
    .await;
    // root uses unix_socket auth on Debian's MariaDB, or the password is simply wrong.
    assert_eq!(o.outcome, Outcome::Down, "{o:?}");
    assert_eq!(o.error_kind(), Some(ErrorKind::Auth), "{o:?}");
}

#[tokio::test]
async fn redis_handshake_and_deep_against_shared_server() {
    if !tk::need_service("Redis", 6379) {
        return;
    }
    let o = probe1(
        "redis://127.0.0.1",
        CheckSpec::for_scheme("redis").unwrap(),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert!(detail(&o, "server_version").as_str().is_some(), "{o:?}");
    assert_eq!(detail(&o, "auth_required"), &json!(false));

    let o = probe1(
        "redis://127.0.0.1:6379",
        check(json!({"redis": {"mode": "deep"}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert!(detail(&o, "server_version").as_str().is_some(), "{o:?}");
    assert!(detail(&o, "role").as_str().is_some(), "{o:?}");
    assert!(
        detail(&o, "connections_max").as_u64().unwrap() >= 1,
        "{o:?}"
    );
    assert!(detail(&o, "pool_use_percent").as_f64().is_some());
}

#[tokio::test]
async fn redis_with_password_noauth_and_wrong_password() {
    let Some(_) = tk::need_binary("redis-server") else {
        return;
    };
    let port = tk::free_port();
    let mut cmd = std::process::Command::new(tk::which("redis-server").unwrap());
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ])
    .args(["--requirepass", "s3cret"]);
    let _srv =
        tk::process::Server::spawn_tcp("redis-server", cmd, port, Duration::from_secs(10)).unwrap();
    let target = format!("redis://127.0.0.1:{port}");
    // No password: -NOAUTH proves liveness.
    let o = probe1(&target, check(json!({"redis": {}})), T).await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert_eq!(detail(&o, "auth_required"), &json!(true));
    assert!(o.note.as_deref().unwrap_or("").contains("NOAUTH"), "{o:?}");
    // Deep without password: auth.
    let o = probe1(&target, check(json!({"redis": {"mode": "deep"}})), T).await;
    assert_eq!(o.error_kind(), Some(ErrorKind::Auth), "{o:?}");
    // Right password, deep: up.
    let o = probe1(
        &target,
        check(json!({"redis": {"mode": "deep", "password": "s3cret"}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    // Wrong password: auth, and the secret never shows.
    let o = probe1(
        &target,
        check(json!({"redis": {"password": "nope-nope"}})),
        T,
    )
    .await;
    assert_eq!(o.error_kind(), Some(ErrorKind::Auth), "{o:?}");
    assert!(!format!("{o:?}").contains("nope-nope"));
}

#[tokio::test]
async fn memcached_own_server_up_then_killed_is_refused() {
    let Some(bin) = tk::need_binary("memcached") else {
        return;
    };
    let mut srv = dbkit::memcached(&bin, 64).unwrap();
    let target = format!("memcached://127.0.0.1:{}", srv.port);
    let o = probe1(&target, check(json!({"memcached": {}})), T).await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert!(detail(&o, "server_version").as_str().is_some(), "{o:?}");

    let o = probe1(&target, check(json!({"memcached": {"mode": "deep"}})), T).await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert_eq!(detail(&o, "connections_max"), &json!(64));
    assert!(detail(&o, "connections_used").as_u64().unwrap() >= 1);

    // Pool levels are honoured: with a warning at 1 % any use is degraded.
    let o = probe1(
        &target,
        check(json!({"memcached": {"mode": "deep", "max_connection_use": {"warn": 1.0}}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Degraded, "{o:?}");

    srv.kill();
    let o = probe1(&target, check(json!({"memcached": {}})), T).await;
    assert_eq!(o.outcome, Outcome::Down, "{o:?}");
    assert_eq!(o.error_kind(), Some(ErrorKind::Refused), "{o:?}");
}

/// Every database probe pointed at every other shared service (and at a garbage spewer) must
/// fail fast with a protocol-level error: `protocol`, or for probes that wait for a server
/// greeting and meet a server that waits for the client, a `timeout` in the protocol phase
/// (silence cannot be told from a slow server); a peer that hangs up on our bytes may show
/// as `reset`. Never up, never a hang past the timeout, never a panic.
#[tokio::test]
async fn wrong_protocol_matrix() {
    let services: Vec<(&str, u16)> = [("postgres", 5432u16), ("mysql", 3306), ("redis", 6379)]
        .into_iter()
        .filter(|(name, port)| tk::need_service(name, *port))
        .collect();
    let garbage = tk::hostile::garbage(1 << 20).await;
    // Handshake and deep mode of every kind (deep logs in, so it takes other code paths).
    let probes = [
        ("postgres", json!({"postgres": {}})),
        (
            "postgres",
            json!({"postgres": {"mode": "deep", "user": "postgres"}}),
        ),
        ("mysql", json!({"mysql": {}})),
        ("mysql", json!({"mysql": {"mode": "deep", "user": "root"}})),
        ("redis", json!({"redis": {}})),
        ("redis", json!({"redis": {"mode": "deep"}})),
        ("memcached", json!({"memcached": {}})),
        ("memcached", json!({"memcached": {"mode": "deep"}})),
        ("mongodb", json!({"mongodb": {}})),
        (
            "mongodb",
            json!({"mongodb": {"mode": "deep", "user": "u", "password": "p"}}),
        ),
        ("elasticsearch", json!({"elasticsearch": {}})),
        ("elasticsearch", json!({"elasticsearch": {"mode": "deep"}})),
    ];
    let timeout = Duration::from_secs(2);
    let mut runs = Vec::new();
    for (kind, spec) in &probes {
        for &(svc, port) in &services {
            if svc == *kind {
                continue;
            }
            runs.push((*kind, spec.clone(), svc, port));
        }
        runs.push((*kind, spec.clone(), "garbage", garbage));
    }
    let futs = runs.iter().map(|(kind, spec, svc, port)| async move {
        let start = Instant::now();
        let o = probe1(
            &format!("{kind}://127.0.0.1:{port}"),
            check(spec.clone()),
            timeout,
        )
        .await;
        (*kind, *svc, o, start.elapsed())
    });
    let results = futures::future::join_all(futs).await;
    let mut bad = Vec::new();
    for (kind, svc, o, took) in &results {
        let k = o.error_kind();
        let ok_kind = matches!(
            k,
            Some(ErrorKind::Protocol)
                | Some(ErrorKind::Timeout(Phase::Protocol))
                | Some(ErrorKind::Reset)
        );
        if o.outcome != Outcome::Down || !ok_kind || *took > timeout + Duration::from_millis(500) {
            bad.push(format!(
                "{kind} at {svc}: {} {:?} in {took:?}: {:?}",
                o.outcome, k, o.error
            ));
        }
        eprintln!(
            "{kind:>13} at {svc:<8} → {} {} ({took:?})",
            o.outcome,
            kind_str(o)
        );
    }
    assert!(
        bad.is_empty(),
        "wrong-protocol failures:\n{}",
        bad.join("\n")
    );
    // Against a server that speaks first with other bytes, the verdict is `protocol`, at once.
    for (kind, svc, o, _) in &results {
        if *svc == "mysql" || *svc == "garbage" {
            assert_eq!(
                o.error_kind(),
                Some(ErrorKind::Protocol),
                "{kind} at {svc}: {o:?}"
            );
        }
    }
}

fn kind_str(o: &portwarden_core::Observation) -> String {
    kind(o)
}

#[test]
fn config_shape_and_catalogue() {
    // Uniform options; unknown fields rejected; secrets never serialized.
    let c: CheckSpec = serde_json::from_value(json!({"postgres": {
        "mode": "deep", "user": "u", "password": "pw", "database": "d",
        "max_replication_lag": {"warn": "10s", "crit": "1m"},
        "max_connection_use": {"warn": 80.0, "crit": 95.0}
    }}))
    .unwrap();
    assert!(!serde_json::to_string(&c).unwrap().contains("\"pw\""));
    assert!(c.prepare().is_ok());
    assert!(serde_json::from_value::<CheckSpec>(json!({"redis": {"pasword": "x"}})).is_err());
    for (scheme, port) in [
        ("postgres", 5432),
        ("mysql", 3306),
        ("redis", 6379),
        ("mongodb", 27017),
        ("memcached", 11211),
        ("elasticsearch", 9200),
    ] {
        let spec = CheckSpec::for_scheme(scheme).unwrap_or_else(|| panic!("{scheme}"));
        assert_eq!(spec.info().default_port, Some(port));
        assert!(portwarden_probe::checks::info(scheme).is_some());
        assert!(spec.prepare().is_ok(), "{scheme} default prepares");
    }
    // Misconfigurations are caught at prepare time with the field named.
    let e = serde_json::from_value::<CheckSpec>(json!({"mongodb": {"mode": "deep", "user": "u"}}))
        .unwrap()
        .prepare()
        .err()
        .unwrap();
    assert_eq!(e.field, "password");
    let e = serde_json::from_value::<CheckSpec>(json!({"mysql": {"mode": "deep"}}))
        .unwrap()
        .prepare()
        .err()
        .unwrap();
    assert_eq!(e.field, "user");
    let e = serde_json::from_value::<CheckSpec>(
        json!({"redis": {"mode": "deep", "max_connection_use": {"warn": 90.0, "crit": 80.0}}}),
    )
    .unwrap()
    .prepare()
    .err()
    .unwrap();
    assert_eq!(e.field, "max_connection_use");
    let e = serde_json::from_value::<CheckSpec>(
        json!({"postgres": {"mode": "deep", "max_replication_lag": {"warn": "1m", "crit": "10s"}}}),
    )
    .unwrap()
    .prepare()
    .err()
    .unwrap();
    assert_eq!(e.field, "max_replication_lag");
}

/// The shared PostgreSQL has `ssl = on` with Debian's self-signed "snakeoil" certificate:
/// SSLRequest + TLS works in both modes, and certificate verification is really applied.
#[tokio::test]
async fn postgres_over_tls_handshake_and_deep() {
    if !tk::need_service("PostgreSQL", 5432) {
        return;
    }
    let o = probe1(
        "postgres://127.0.0.1:5432",
        check(json!({"postgres": {"tls": {"insecure_skip_verify": true}}})),
        T,
    )
    .await;
    if o.error_kind() == Some(ErrorKind::Tls(portwarden_core::TlsFailure::Handshake))
        && o.error
            .as_ref()
            .is_some_and(|e| e.message.contains("refused TLS"))
    {
        tk::need(false, "PostgreSQL on 5432 with ssl = on");
        return;
    }
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert!(detail(&o, "tls_version").as_str().is_some(), "{o:?}");
    assert!(detail(&o, "server_version").as_str().is_some(), "{o:?}");
    assert!(o.phases.tls_ms.is_some());

    let o = probe1(
        "postgres://127.0.0.1:5432",
        check(
            json!({"postgres": {"mode": "deep", "user": "postgres", "database": "test",
            "tls": {"insecure_skip_verify": true}}}),
        ),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert_eq!(detail(&o, "role"), &json!("primary"));
    assert!(detail(&o, "tls_version").as_str().is_some(), "{o:?}");

    // Verification on: the snakeoil certificate is not trusted.
    let o = probe1(
        "postgres://127.0.0.1:5432",
        check(json!({"postgres": {"tls": {}}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Down, "{o:?}");
    assert!(matches!(o.error_kind(), Some(ErrorKind::Tls(_))), "{o:?}");
}

/// MariaDB here offers no TLS: asking for it is a TLS failure that says so, not a hang.
#[tokio::test]
async fn mysql_tls_requested_but_not_offered() {
    if !tk::need_service("MariaDB", 3306) {
        return;
    }
    let o = probe1(
        "mysql://127.0.0.1:3306",
        check(json!({"mysql": {"tls": {}}})),
        T,
    )
    .await;
    if detail(&o, "tls_offered") == &json!(true) {
        return; // a MariaDB with TLS: nothing to check here
    }
    assert!(matches!(o.error_kind(), Some(ErrorKind::Tls(_))), "{o:?}");
}

/// Redis with `tls-port` and a test CA: implicit TLS, verified against `ca_file`.
#[tokio::test]
async fn redis_over_tls_with_test_ca() {
    let Some(bin) = tk::need_binary("redis-server") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ca = tk::certs::TestCa::new();
    let leaf = ca.leaf(&["localhost"], -1, 90);
    let ca_path = ca.write(dir.path());
    std::fs::write(dir.path().join("cert.pem"), &leaf.cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), &leaf.key_pem).unwrap();
    let port = tk::free_port();
    let mut cmd = std::process::Command::new(bin);
    cmd.args([
        "--port",
        "0",
        "--tls-port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
    ])
    .args([
        "--save",
        "",
        "--appendonly",
        "no",
        "--tls-auth-clients",
        "no",
    ])
    .arg("--tls-cert-file")
    .arg(dir.path().join("cert.pem"))
    .arg("--tls-key-file")
    .arg(dir.path().join("key.pem"))
    .arg("--tls-ca-cert-file")
    .arg(&ca_path);
    let srv = match tk::process::Server::spawn_tcp(
        "redis-server (tls)",
        cmd,
        port,
        Duration::from_secs(10),
    ) {
        Ok(s) => s,
        Err(e) => {
            tk::need(false, &format!("redis-server built with TLS: {e}"));
            return;
        }
    };
    let target = format!("redis://127.0.0.1:{}", srv.port);
    let tls = json!({"ca_file": ca_path, "server_name": "localhost"});
    let o = probe1(
        &target,
        check(json!({"redis": {"mode": "deep", "tls": tls}})),
        T,
    )
    .await;
    assert_eq!(o.outcome, Outcome::Up, "{o:?}");
    assert!(detail(&o, "server_version").as_str().is_some());
    assert!(detail(&o, "tls_version").as_str().is_some());
    // Without TLS the TLS port does not speak RESP.
    let o = probe1(&target, check(json!({"redis": {}})), Duration::from_secs(2)).await;
    assert_eq!(o.outcome, Outcome::Down, "{o:?}");
}
