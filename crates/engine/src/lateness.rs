//! Lateness over the last minute: a ring of per-second log-bucket histograms, so the p99 is
//! cheap to compute at any rate of checks.

use std::time::Duration;

/// Bucket upper bounds grow by 25 % from 0.1 ms; bucket 0 is "on time" (< 0.1 ms).
const BUCKETS: usize = 80;
const BASE_MS: f64 = 0.1;
const GROWTH: f64 = 1.25;
const SECONDS: usize = 60;

fn bucket_of(ms: f64) -> usize {
    if ms < BASE_MS {
        return 0;
    }
    let b = ((ms / BASE_MS).ln() / GROWTH.ln()).floor() as usize + 1;
    b.min(BUCKETS - 1)
}

fn upper_ms(bucket: usize) -> f64 {
    if bucket == 0 {
        BASE_MS
    } else {
        BASE_MS * GROWTH.powi(bucket as i32)
    }
}

/// Lateness samples of the last 60 seconds (and, for benchmarks, since a reset).
pub struct LatenessWindow {
    slots: Vec<[u32; BUCKETS]>,
    slot_second: Vec<u64>,
    max_ms: Vec<f64>,
    cumulative: [u64; BUCKETS],
    cumulative_max: f64,
}

impl Default for LatenessWindow {
    fn default() -> Self {
        LatenessWindow {
            slots: vec![[0; BUCKETS]; SECONDS],
            slot_second: vec![u64::MAX; SECONDS],
            max_ms: vec![0.0; SECONDS],
            cumulative: [0; BUCKETS],
            cumulative_max: 0.0,
        }
    }
}

fn summarize(merged: &[u64; BUCKETS], max_ms: f64) -> LatenessSummary {
    let total: u64 = merged.iter().sum();
    if total == 0 {
        return LatenessSummary::default();
    }
    let q = |p: f64| {
        let rank = ((total as f64) * p).ceil().max(1.0) as u64;
        let mut acc = 0;
        for (b, c) in merged.iter().enumerate() {
            acc += c;
            if acc >= rank {
                return upper_ms(b).min(max_ms.max(BASE_MS));
            }
        }
        max_ms
    };
    LatenessSummary {
        samples: total,
        p50_ms: q(0.50),
        p99_ms: q(0.99),
        max_ms,
    }
}

/// Summary of the last minute.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct LatenessSummary {
    pub samples: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl LatenessWindow {
    /// Records one run's lateness; `second` is the engine's monotonic second.
    pub fn record(&mut self, second: u64, lateness: Duration) {
        let i = (second % SECONDS as u64) as usize;
        if self.slot_second[i] != second {
            self.slots[i] = [0; BUCKETS];
            self.slot_second[i] = second;
            self.max_ms[i] = 0.0;
        }
        let ms = lateness.as_secs_f64() * 1000.0;
        let b = bucket_of(ms);
        self.slots[i][b] += 1;
        if ms > self.max_ms[i] {
            self.max_ms[i] = ms;
        }
        self.cumulative[b] += 1;
        if ms > self.cumulative_max {
            self.cumulative_max = ms;
        }
    }

    /// Starts the since-reset statistics afresh (benchmarks call it after a warm-up).
    pub fn reset_cumulative(&mut self) {
        self.cumulative = [0; BUCKETS];
        self.cumulative_max = 0.0;
    }

    /// p50/p99/max since the last reset.
    pub fn cumulative_summary(&self) -> LatenessSummary {
        summarize(&self.cumulative, self.cumulative_max)
    }

    /// p50/p99/max over the 60 seconds up to `now_second` (quantiles are bucket upper bounds,
    /// at most 25 % above the true value).
    pub fn summary(&self, now_second: u64) -> LatenessSummary {
        let mut merged = [0u64; BUCKETS];
        let mut max_ms: f64 = 0.0;
        for i in 0..SECONDS {
            let s = self.slot_second[i];
            if s != u64::MAX && s + SECONDS as u64 > now_second && s <= now_second {
                for (m, c) in merged.iter_mut().zip(self.slots[i].iter()) {
                    *m += u64::from(*c);
                }
                max_ms = max_ms.max(self.max_ms[i]);
            }
        }
        summarize(&merged, max_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_expiry() {
        let mut w = LatenessWindow::default();
        for i in 0..1000u64 {
            let ms = if i % 100 == 0 { 2000 } else { 5 };
            w.record(10, Duration::from_millis(ms));
        }
        let s = w.summary(10);
        assert_eq!(s.samples, 1000);
        assert!(s.p50_ms >= 5.0 && s.p50_ms <= 6.25, "{s:?}");
        assert!(
            s.p99_ms >= 5.0 && s.p99_ms <= 6.25,
            "1% at 2s is the p99 edge: {s:?}"
        );
        assert_eq!(s.max_ms, 2000.0);
        // A minute later the samples are gone.
        assert_eq!(w.summary(75).samples, 0);
    }
}
