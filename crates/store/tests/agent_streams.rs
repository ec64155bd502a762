//! Agent uploads: a batch is stored exactly once per (agent, stream, sequence), with its
//! rollups, in one transaction; the sequence survives a restart. On both backends.

#[macro_use]
mod common;

use common::*;
use portwarden_core::Outcome;
use portwarden_store::IngestBatch;

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
    }
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

on_both_backends!(batches_are_stored_exactly_once);
