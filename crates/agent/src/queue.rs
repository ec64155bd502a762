//! The agent's bounded on-disk queue: one file per batch (`<seq>.json`, written to a temporary
//! name, synced and renamed, so a crash leaves whole batches only), uploaded oldest first and
//! deleted once the server acknowledged it. When the queue passes its byte limit the oldest
//! batches are dropped and counted: the newest results matter most after a long outage.
//!
//! The stream id (random, in `stream`) and the next sequence number (`next_seq`, and never
//! below the newest queued batch + 1) survive restarts, so the server's de-duplication by
//! (agent, stream, sequence) stays exact.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use portwarden_agent_api::ObservationBatch;

/// Why the queue cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("agent data directory `{0}`: {1}")]
    Io(String, String),
    #[error("queued batch `{0}` is unreadable: {1}")]
    Corrupt(String, String),
}

fn io(path: &Path, e: std::io::Error) -> QueueError {
    QueueError::Io(path.display().to_string(), e.to_string())
}

struct State {
    next_seq: u64,
    /// Queued batch files, oldest first: (seq, bytes).
    files: std::collections::VecDeque<(u64, u64)>,
    bytes: u64,
}

/// The queue. Cheap to share (`Arc`).
pub struct Queue {
    dir: PathBuf,
    stream: String,
    limit_bytes: u64,
    state: Mutex<State>,
    /// Batches dropped because the queue was full.
    pub dropped_batches: AtomicU64,
    pub dropped_observations: AtomicU64,
}

fn random_id() -> String {
    let mut b = [0u8; 16];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).is_err() {
        // No system randomness: time and pid are unique enough for a stream id.
        let t = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as u128;
        b = (t ^ (u128::from(std::process::id()) << 64)).to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<(), QueueError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| io(&tmp, e))?;
    f.write_all(data).map_err(|e| io(&tmp, e))?;
    f.sync_data().map_err(|e| io(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))
}

impl Queue {
    /// Opens (or creates) the queue under `data_dir`.
    pub fn open(data_dir: &Path, limit_bytes: u64) -> Result<Queue, QueueError> {
        let dir = data_dir.join("queue");
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let stream_file = data_dir.join("stream");
        let stream = match std::fs::read_to_string(&stream_file) {
            Ok(s) if !s.trim().is_empty() && s.trim().len() <= 128 => s.trim().to_string(),
            _ => {
                let s = random_id();
                write_atomic(&stream_file, s.as_bytes())?;
                s
            }
        };
        let mut files = Vec::new();
        for e in std::fs::read_dir(&dir).map_err(|e| io(&dir, e))? {
            let e = e.map_err(|e| io(&dir, e))?;
            let name = e.file_name().to_string_lossy().to_string();
            if let Some(seq) = name
                .strip_suffix(".json")
                .and_then(|s| s.parse::<u64>().ok())
            {
                let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                files.push((seq, len));
            } else if name.ends_with(".tmp") {
                // A batch that was being written when we stopped: never acknowledged, never
                // numbered for the server; drop it.
                let _ = std::fs::remove_file(e.path());
            }
        }
        files.sort_unstable();
        let saved = std::fs::read_to_string(data_dir.join("next_seq"))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(1);
        let next_seq = saved.max(files.last().map_or(1, |(s, _)| s + 1)).max(1);
        let bytes = files.iter().map(|(_, b)| b).sum();
        Ok(Queue {
            dir,
            stream,
            limit_bytes,
            state: Mutex::new(State {
                next_seq,
                files: files.into(),
                bytes,
            }),
            dropped_batches: AtomicU64::new(0),
            dropped_observations: AtomicU64::new(0),
        })
    }

    pub fn stream(&self) -> &str {
        &self.stream
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.json"))
    }

    /// Makes sure new batches are numbered above `seq` (what the server has committed).
    pub fn advance_past(&self, seq: u64) -> Result<(), QueueError> {
        let mut st = self.lock();
        if st.next_seq <= seq {
            st.next_seq = seq + 1;
            self.save_next(st.next_seq)?;
        }
        Ok(())
    }

    fn save_next(&self, next: u64) -> Result<(), QueueError> {
        let p = self.dir.parent().unwrap_or(&self.dir).join("next_seq");
        write_atomic(&p, next.to_string().as_bytes())
    }

    /// Numbers and writes a batch of runs; returns its sequence number.
    pub fn push(&self, runs: Vec<portwarden_agent_api::Run>) -> Result<u64, QueueError> {
        let mut st = self.lock();
        let seq = st.next_seq;
        let batch = ObservationBatch {
            stream: self.stream.clone(),
            seq,
            runs,
        };
        let data = serde_json::to_vec(&batch)
            .map_err(|e| QueueError::Corrupt(seq.to_string(), e.to_string()))?;
        let path = self.path(seq);
        write_atomic(&path, &data)?;
        st.next_seq = seq + 1;
        self.save_next(st.next_seq)?;
        st.files.push_back((seq, data.len() as u64));
        st.bytes += data.len() as u64;
        // Bounded: drop the oldest batches beyond the limit (never the one just written).
        while st.bytes > self.limit_bytes && st.files.len() > 1 {
            if let Some((old, len)) = st.files.pop_front() {
                st.bytes = st.bytes.saturating_sub(len);
                let p = self.path(old);
                let n = std::fs::read(&p)
                    .ok()
                    .and_then(|d| serde_json::from_slice::<ObservationBatch>(&d).ok())
                    .map_or(0, |b| {
                        b.runs.iter().map(|r| r.observations.len() as u64).sum()
                    });
                let _ = std::fs::remove_file(&p);
                self.dropped_batches.fetch_add(1, Ordering::Relaxed);
                self.dropped_observations.fetch_add(n, Ordering::Relaxed);
                tracing::warn!(
                    seq = old,
                    observations = n,
                    limit_bytes = self.limit_bytes,
                    "agent queue full: dropped the oldest batch"
                );
            }
        }
        Ok(seq)
    }

    /// The oldest queued batch (read from disk), if any.
    pub fn front(&self) -> Result<Option<ObservationBatch>, QueueError> {
        let seq = match self.lock().files.front() {
            Some((s, _)) => *s,
            None => return Ok(None),
        };
        let path = self.path(seq);
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) => {
                // Removed under us (queue full): skip it.
                self.forget(seq);
                return Err(io(&path, e));
            }
        };
        match serde_json::from_slice::<ObservationBatch>(&data) {
            Ok(b) => Ok(Some(b)),
            Err(e) => {
                tracing::error!(seq, error = %e, "unreadable queued batch; dropping it");
                self.remove(seq);
                Err(QueueError::Corrupt(
                    path.display().to_string(),
                    e.to_string(),
                ))
            }
        }
    }

    fn forget(&self, seq: u64) {
        let mut st = self.lock();
        if let Some(i) = st.files.iter().position(|(s, _)| *s == seq)
            && let Some((_, len)) = st.files.remove(i)
        {
            st.bytes = st.bytes.saturating_sub(len);
        }
    }

    /// Deletes an acknowledged batch.
    pub fn remove(&self, seq: u64) {
        self.forget(seq);
        let _ = std::fs::remove_file(self.path(seq));
    }

    /// (batches, bytes) queued.
    pub fn len(&self) -> (usize, u64) {
        let st = self.lock();
        (st.files.len(), st.bytes)
    }

    pub fn is_empty(&self) -> bool {
        self.lock().files.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portwarden_agent_api::Run;

    fn run(name: &str) -> Run {
        Run {
            monitor: name.into(),
            observations: vec![],
        }
    }

    #[test]
    fn survives_restart_in_order_and_numbers_on() {
        let d = tempfile::tempdir().unwrap();
        let q = Queue::open(d.path(), 1 << 20).unwrap();
        let stream = q.stream().to_string();
        assert_eq!(q.push(vec![run("a")]).unwrap(), 1);
        assert_eq!(q.push(vec![run("b")]).unwrap(), 2);
        drop(q);
        let q = Queue::open(d.path(), 1 << 20).unwrap();
        assert_eq!(q.stream(), stream);
        let f = q.front().unwrap().unwrap();
        assert_eq!((f.seq, f.runs[0].monitor.as_str()), (1, "a"));
        q.remove(1);
        assert_eq!(q.front().unwrap().unwrap().seq, 2);
        q.remove(2);
        assert!(q.is_empty());
        drop(q);
        // Empty queue after a restart: numbering goes on, never reuses an acknowledged seq.
        let q = Queue::open(d.path(), 1 << 20).unwrap();
        assert_eq!(q.push(vec![run("c")]).unwrap(), 3);
        q.advance_past(10).unwrap();
        assert_eq!(q.push(vec![run("d")]).unwrap(), 11);
    }

    #[test]
    fn bounded_drops_oldest() {
        let d = tempfile::tempdir().unwrap();
        let q = Queue::open(d.path(), 200).unwrap();
        for i in 0..20 {
            q.push(vec![run(&format!("m{i}"))]).unwrap();
        }
        let (n, bytes) = q.len();
        assert!(bytes <= 200 || n == 1, "{n} {bytes}");
        assert!(q.dropped_batches.load(Ordering::Relaxed) > 0);
        // What is left is the newest, in order.
        let first = q.front().unwrap().unwrap().seq;
        assert_eq!(first as usize, 20 - n + 1);
    }
}
