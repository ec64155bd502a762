//! TLS to PostgreSQL: `sslmode=require` connects with rustls and verifies the server's
//! certificate against `sslrootcert=` (a private server with a certificate from a test CA);
//! a certificate from another CA is refused with a clear error. Needs root (private server).

mod common;

use common::*;
use portwarden_core::Outcome;
use portwarden_store::postgres::PgStore;
use portwarden_store::{Retention, Store, StoreError, StoreMetrics};
use portwarden_testkit::certs::TestCa;

async fn plain_count(port: u16, sql: &str) -> i64 {
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let task = tokio::spawn(conn);
    let v: i64 = c.query_one(sql, &[]).await.unwrap().get(0);
    drop(c);
    let _ = task.await;
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn sslmode_require_verifies_the_server_against_sslrootcert() {
    let ca = TestCa::new();
    let leaf = ca.leaf(&["127.0.0.1", "localhost"], -1, 30);
    let Some(cluster) = portwarden_testkit::pg::Cluster::start_tls(&leaf.cert_pem, &leaf.key_pem)
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ca_path = ca.write(dir.path());
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/postgres?sslmode=require&sslrootcert={}",
        cluster.port,
        ca_path.display()
    );
    let store = PgStore::open(
        &url,
        Retention::default(),
        fast_writer(),
        StoreMetrics::default(),
    )
    .await
    .unwrap();
    assert!(store.submit(rec(obs("m", now_ms(), Outcome::Up, Some(1.0)))));
    store.flush().await.unwrap();
    assert_eq!(store.last_observations().await.unwrap().len(), 1);
    let (tls, plain) = (
        plain_count(
            cluster.port,
            "SELECT COUNT(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'portwarden' AND s.ssl",
        )
        .await,
        plain_count(
            cluster.port,
            "SELECT COUNT(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'portwarden' AND NOT s.ssl",
        )
        .await,
    );
    assert!(tls >= 1, "the store's connections use TLS");
    assert_eq!(plain, 0, "no plain-text connection from the store");
    store.close().await.unwrap();

    // A server certificate from another CA: refused, and the error says why.
    let other = TestCa::new();
    let other_dir = tempfile::tempdir().unwrap();
    let other_path = other.write(other_dir.path());
    let bad = url.replace(
        &ca_path.display().to_string(),
        &other_path.display().to_string(),
    );
    let e = PgStore::open(
        &bad,
        Retention::default(),
        fast_writer(),
        StoreMetrics::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, StoreError::Connect { .. }), "{e}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");

    // A CA file that is not there: named in the error.
    let e = PgStore::open(
        &url.replace(&ca_path.display().to_string(), "/nonexistent/ca.pem"),
        Retention::default(),
        fast_writer(),
        StoreMetrics::default(),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
}
