//! Acceptance 7: the data directory on a tiny tmpfs that fills up → writes fail, health says so,
//! nothing panics, submits keep being accepted into the backlog; when space returns the writer
//! resumes by itself (no reopen) and the backlog lands in the database. Needs root (mount).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use portwarden_core::{ErrorKind, Outcome, ProbeError};
use portwarden_store::sqlite::SqliteStore;
use portwarden_store::{Record, Retention, Store, StoreMetrics, WriterOptions};

/// Unmounts the tmpfs when the test ends, even when it fails.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Option<Mount> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Mount(dir.to_path_buf()))
    }

    fn resize(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(st.success(), "remount failed");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        for _ in 0..20 {
            let ok = Command::new("umount")
                .arg(&self.0)
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn fat(seq: i64, base: i64) -> Record {
    let mut o = obs(
        &format!("m{}", seq % 20),
        base + seq,
        Outcome::Down,
        Some(2.0),
    );
    // ~2 KB per row so a 2 MB file system fills quickly
    o.error = Some(ProbeError::new(
        ErrorKind::Refused,
        format!("{seq}:{}", "x".repeat(2000)),
    ));
    rec(o)
}

async fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn disk_full_keeps_rows_in_memory_and_resumes_without_reopening() {
    if !portwarden_testkit::need(
        portwarden_testkit::is_root(),
        "root (to mount a 2 MB tmpfs)",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("tiny");
    std::fs::create_dir(&mnt).unwrap();
    let Some(mount) = Mount::tmpfs(&mnt, "2m") else {
        assert!(portwarden_testkit::need(
            false,
            "mount -t tmpfs (not permitted here)"
        ));
        return;
    };
    let metrics = StoreMetrics::default();
    let store = SqliteStore::open(
        &mnt,
        Retention::default(),
        WriterOptions {
            flush_every: Duration::from_millis(20),
            batch_rows: 100,
            channel_capacity: 50_000,
            backlog_limit: 100_000,
        },
        metrics.clone(),
    )
    .unwrap();
    let base = now_ms() - HOUR;

    // Fill the disk.
    let mut seq: i64 = 0;
    let t0 = Instant::now();
    while store.health().ok {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "2 MB never filled ({seq} rows)"
        );
        for _ in 0..100 {
            assert!(store.submit(fat(seq, base)));
            seq += 1;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let h = store.health();
    assert!(!h.ok);
    let err = h.last_error.clone().unwrap();
    assert!(
        err.contains("full") || err.contains("disk") || err.contains("I/O"),
        "{err}"
    );
    assert!(h.last_error_at.is_some());
    assert!(metrics.write_errors.get() >= 1);
    assert_eq!(metrics.healthy.get(), 0);
    eprintln!("disk full after {seq} rows: {err}");

    // Still accepting: these land in the backlog.
    let marker = seq;
    for _ in 0..500 {
        assert!(
            store.submit(fat(seq, base)),
            "submit refused while the disk is full"
        );
        seq += 1;
    }
    // A flush tries and reports the failure; nothing panics, nothing is lost.
    assert!(store.flush().await.is_err());
    assert!(
        wait_until(Duration::from_secs(5), || store.health().pending_rows
            >= 500)
        .await
    );
    let h = store.health();
    assert!(!h.ok);
    assert!(h.lag_seconds > 0.0);
    assert_eq!(h.dropped_rows, 0);
    // An incident write either fails with the database error (the engine retries) or, if
    // SQLite found room in pages it already had, commits; it never panics or hangs.
    let incident = store
        .open_incident(portwarden_store::NewIncident {
            outbox: Vec::new(),
            monitor: "m1".into(),
            state: portwarden_core::State::Down,
            severity: portwarden_core::Severity::High,
            scope: portwarden_core::Scope::Global,
            opened_at: t(base),
            error_kind: Some("refused".into()),
            message: None,
            last_healthy: None,
            event: portwarden_core::IncidentEvent::new(
                t(base),
                portwarden_core::EventKind::Opened,
                "down",
            ),
        })
        .await;
    match &incident {
        Ok(_) | Err(portwarden_store::StoreError::Db(_)) => {}
        Err(e) => panic!("unexpected incident error on a full disk: {e}"),
    }
    eprintln!("incident write on a full disk: {incident:?}");
    // Readers keep working on a full disk.
    store
        .availability_all(t(base), t(base + DAY))
        .await
        .unwrap();
    let errors_before = metrics.write_errors.get();
    assert!(
        wait_until(Duration::from_secs(12), || metrics.write_errors.get()
            > errors_before)
        .await,
        "the writer retries by itself (backoff at most 10 s)"
    );
    assert!(!store.health().ok);

    // Space returns: the writer resumes by itself.
    mount.resize("64m");
    assert!(
        wait_until(Duration::from_secs(30), || {
            let h = store.health();
            h.ok && h.pending_rows == 0
        })
        .await,
        "writes did not resume: {:?}",
        store.health()
    );
    let h = store.health();
    assert!(h.last_error.is_none());
    assert!(h.last_commit_at.is_some());
    assert_eq!(metrics.healthy.get(), 1);

    // New rows go straight through, and every row ever submitted is in the database.
    for _ in 0..50 {
        assert!(store.submit(fat(seq, base)));
        seq += 1;
    }
    store.flush().await.unwrap();
    let conn = raw(&mnt.join(SqliteStore::FILE_NAME));
    assert_eq!(count(&conn, "SELECT COUNT(*) FROM observations"), seq);
    assert_eq!(
        count(
            &conn,
            &format!(
                "SELECT COUNT(*) FROM observations WHERE started_at >= {}",
                base + marker
            )
        ),
        seq - marker
    );
    assert_eq!(
        count(
            &conn,
            "SELECT SUM(up + degraded + down + unknown + maintenance) FROM rollup_minute"
        ),
        seq
    );
    assert_eq!(metrics.rows_written.get(), seq as u64);
    if let Ok(id) = incident {
        assert!(store.incident(id).await.unwrap().is_some());
    }
    assert_eq!(metrics.rows_dropped.get(), 0);
    drop(conn);
    store.close().await.unwrap();
    drop(store);
    drop(mount);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_backlog_drops_the_oldest_rows_and_counts_them() {
    if !portwarden_testkit::need(
        portwarden_testkit::is_root(),
        "root (to mount a 1 MB tmpfs)",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("tiny");
    std::fs::create_dir(&mnt).unwrap();
    let Some(mount) = Mount::tmpfs(&mnt, "1m") else {
        assert!(portwarden_testkit::need(
            false,
            "mount -t tmpfs (not permitted here)"
        ));
        return;
    };
    let metrics = StoreMetrics::default();
    let store = SqliteStore::open(
        &mnt,
        Retention::default(),
        WriterOptions {
            flush_every: Duration::from_millis(10),
            batch_rows: 50,
            channel_capacity: 10_000,
            backlog_limit: 300,
        },
        metrics.clone(),
    )
    .unwrap();
    let base = now_ms() - HOUR;
    let mut seq = 0;
    while store.health().ok {
        assert!(seq < 100_000, "1 MB never filled");
        store.submit(fat(seq, base));
        seq += 1;
        if seq % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let failed_at = seq;
    // far more than the backlog holds
    for _ in 0..2_000 {
        assert!(store.submit(fat(seq, base)));
        seq += 1;
    }
    assert!(
        wait_until(Duration::from_secs(5), || store.health().dropped_rows
            >= 1_000)
        .await
    );
    let h = store.health();
    assert!(h.pending_rows <= 300 + 10_000);
    // The writer may still be working through the channel: wait until health and the metric
    // agree (they are updated together, read at two instants here).
    assert!(
        wait_until(Duration::from_secs(5), || metrics.rows_dropped.get()
            == store.health().dropped_rows)
        .await,
        "rows_dropped metric {} vs health {}",
        metrics.rows_dropped.get(),
        store.health().dropped_rows
    );
    mount.resize("64m");
    assert!(
        wait_until(Duration::from_secs(30), || {
            let h = store.health();
            h.ok && h.pending_rows == 0
        })
        .await
    );
    store.flush().await.unwrap();
    let conn = raw(&mnt.join(SqliteStore::FILE_NAME));
    let total = count(&conn, "SELECT COUNT(*) FROM observations");
    let dropped = store.health().dropped_rows as i64;
    assert_eq!(
        total + dropped,
        seq,
        "every row is either written or counted as dropped"
    );
    // the newest rows survived (the oldest were dropped)
    assert_eq!(
        count(
            &conn,
            &format!(
                "SELECT COUNT(*) FROM observations WHERE started_at >= {}",
                base + seq - 300
            )
        ),
        300
    );
    assert!(failed_at > 0);
    drop(conn);
    store.close().await.unwrap();
    drop(store);
    drop(mount);
}
