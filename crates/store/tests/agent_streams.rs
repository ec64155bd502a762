//! Agent uploads: a batch is stored exactly once per (agent, stream, sequence), with its
//! rollups, in one transaction; the sequence survives a restart. On both backends.

#[macro_use]
mod common;

use common::*;
use portwarden_core::Outcome;
use portwarden_store::{IngestBatch, RemoteRun};
use std::time::Duration;

fn batch(agent: &str, stream: &str, seq: u64, base: i64, n: i64) -> IngestBatch {
    IngestBatch {
        agent: agent.into(),
        stream: stream.into(),
        seq,
        records: (0..n)
            .map(|i| {
                let mut o = obs("db", base + i * 1000, Outcome::Up, Some(1.0));
                o.location = "eu-west".into();
                rec(o)
            })
            .collect(),
        location: "eu-west".into(),
        runs: Vec::new(),
        lag_ms: None,
    }
}

/// A batch whose runs are queued for judging (one run per observation).
fn judged(agent: &str, stream: &str, seq: u64, base: i64, n: i64) -> IngestBatch {
    let mut b = batch(agent, stream, seq, base, n);
    b.runs = b
        .records
        .iter()
        .map(|r| RemoteRun {
            monitor: r.obs.monitor.clone(),
            observations: vec![r.obs.clone()],
        })
        .collect();
    b.lag_ms = Some(40.0 + seq as f64);
    b
}

async fn batches_are_stored_exactly_once(db: Db) {
    let base = now_ms() - 3_600_000;
    {
        let s = db.open().await;
        assert_eq!(s.agent_last_seq("a", "s1").await.unwrap(), 0);
        let o = s.ingest_batch(batch("a", "s1", 1, base, 5)).await.unwrap();
        assert!(!o.duplicate);
        assert_eq!(o.last_seq, 1);
        // The same batch again (the agent did not see the answer): nothing written.
        let o = s.ingest_batch(batch("a", "s1", 1, base, 5)).await.unwrap();
        assert!(o.duplicate);
        let o = s
            .ingest_batch(batch("a", "s1", 2, base + 5000, 5))
            .await
            .unwrap();
        assert!(!o.duplicate);
        // Another agent, or another stream of the same agent, counts on its own.
        assert!(
            !s.ingest_batch(batch("b", "s1", 1, base, 1))
                .await
                .unwrap()
                .duplicate
        );
        assert!(
            !s.ingest_batch(batch("a", "s2", 1, base, 1))
                .await
                .unwrap()
                .duplicate
        );
        s.close().await.unwrap();
    }
    let s = db.open().await;
    assert_eq!(s.agent_last_seq("a", "s1").await.unwrap(), 2);
    assert!(
        s.ingest_batch(batch("a", "s1", 2, base, 5))
            .await
            .unwrap()
            .duplicate
    );
    s.close().await.unwrap();
    assert_eq!(db.count("SELECT COUNT(*) FROM observations").await, 12);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM observations WHERE location = 'eu-west'")
            .await,
        12
    );
    // Rollups count every stored observation once.
    assert_eq!(
        db.count("SELECT COALESCE(SUM(up), 0) FROM rollup_hour")
            .await,
        12
    );
}

/// Any replica writes the inbox in the upload's transaction; the reader gets batches in
/// order, a repeat adds nothing, consumed rows go away, and the agent's status (contact,
/// counters, last heartbeat) is the same for every reader.
async fn inbox_and_status_are_shared(db: Db) {
    let base = now_ms() - 600_000;
    let s = db.open().await;
    let other = db.open().await;
    assert!(s.agent_inbox(10).await.unwrap().is_empty());
    // PostgreSQL: a batch stored by another replica wakes this one's inbox reader.
    if let Some(signal) = s.agent_inbox_signal() {
        // The listener connects (and wakes once then).
        let _ = tokio::time::timeout(Duration::from_secs(3), signal.notified()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let waiting = signal.notified();
        assert!(
            !other
                .ingest_batch(judged("z", "s0", 1, base, 1))
                .await
                .unwrap()
                .duplicate
        );
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("NOTIFY from the other replica wakes the reader");
        let z = s.agent_inbox(10).await.unwrap();
        s.agent_inbox_done(&z.iter().map(|b| b.id).collect::<Vec<_>>())
            .await
            .unwrap();
    }
    assert!(
        !s.ingest_batch(judged("a", "s1", 1, base, 2))
            .await
            .unwrap()
            .duplicate
    );
    // The second batch reaches another replica.
    assert!(
        !other
            .ingest_batch(judged("a", "s1", 2, base + 2000, 3))
            .await
            .unwrap()
            .duplicate
    );
    assert!(
        other
            .ingest_batch(judged("a", "s1", 2, base + 2000, 3))
            .await
            .unwrap()
            .duplicate
    );
    // Stored only (no runs): not queued.
    assert!(
        !s.ingest_batch(batch("b", "s9", 1, base, 1))
            .await
            .unwrap()
            .duplicate
    );
    let inbox = s.agent_inbox(10).await.unwrap();
    assert_eq!(inbox.iter().map(|b| b.seq).collect::<Vec<_>>(), vec![1, 2]);
    assert!(inbox[0].id < inbox[1].id);
    assert_eq!(inbox[1].location, "eu-west");
    assert_eq!(inbox[1].agent, "a");
    assert_eq!(inbox[1].runs.len(), 3);
    assert_eq!(
        inbox[1].runs[0].observations[0]
            .started_at
            .timestamp_millis(),
        base + 2000
    );
    s.agent_inbox_done(&[inbox[0].id]).await.unwrap();
    let left = other.agent_inbox(10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].seq, 2);
    s.agent_heartbeat(
        "a",
        "eu-west",
        chrono::Utc::now(),
        serde_json::json!({"version": "9.9"}),
    )
    .await
    .unwrap();
    let st = other.agent_statuses().await.unwrap();
    let st: Vec<_> = st.into_iter().filter(|a| a.agent != "z").collect();
    assert_eq!(st.len(), 2);
    let a = &st[0];
    assert_eq!(a.agent, "a");
    assert_eq!(a.location, "eu-west");
    assert_eq!(a.last_seq, 2);
    assert_eq!(a.observations, 5);
    assert_eq!(a.duplicates, 1);
    assert_eq!(a.lag_ms, Some(42.0));
    assert!(a.last_contact.is_some() && a.last_batch_at.is_some());
    assert_eq!(a.heartbeat.as_ref().unwrap()["version"], "9.9");
    assert_eq!(st[1].agent, "b");
    assert!(st[1].heartbeat.is_none());
    s.close().await.unwrap();
    other.close().await.unwrap();
}

on_both_backends!(batches_are_stored_exactly_once, inbox_and_status_are_shared);
