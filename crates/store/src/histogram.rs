//! A mergeable latency histogram with fixed logarithmic buckets (the DDSketch idea, without
//! collapsing).
//!
//! Every histogram uses the same bucket boundaries, so two histograms merge by adding counts per
//! bucket — exactly, in any order. That is what lets hour and day rollups be built from minute
//! rollups without ever averaging percentiles.
//!
//! ## Buckets and the error bound
//! With `γ = (1 + α) / (1 − α)` and `α = RELATIVE_ERROR = 0.02`, bucket `i` holds the values in
//! `(γ^(i−1), γ^i]` (milliseconds) and reports them as `2·γ^i / (γ + 1)`. For every value `v` of
//! the bucket the reported value `r` satisfies `|r − v| ≤ α·v`. A quantile is answered with the
//! nearest-rank definition (the `⌈q·n⌉`-th smallest sample, `n` samples): the answer is within
//! **±2 % (relative)** of that exact sample, for samples between 1 µs and 10⁷ ms (≈ 2.8 h). Values
//! at or below 1 µs (and negative ones) are counted as 0; values above 10⁷ ms share the top bucket.
//! Answers are clamped to the exact maximum when the caller knows it.
//!
//! ```
//! use portwarden_store::histogram::LogHistogram;
//! let mut a = LogHistogram::default();
//! let mut b = LogHistogram::default();
//! for v in 1..=50 { a.record(v as f64); }
//! for v in 51..=100 { b.record(v as f64); }
//! a.merge(&b);
//! let p95 = a.quantile(0.95).unwrap();
//! assert!((p95 - 95.0).abs() <= 95.0 * LogHistogram::RELATIVE_ERROR);
//! let back = LogHistogram::decode(&a.encode()).unwrap();
//! assert_eq!(back, a);
//! ```

use std::fmt;

/// `ln(γ)` where `γ = (1 + α) / (1 − α)`.
fn ln_gamma() -> f64 {
    let a = LogHistogram::RELATIVE_ERROR;
    ((1.0 + a) / (1.0 - a)).ln()
}

/// Smallest value (ms) kept apart from zero: 1 µs.
const MIN_VALUE_MS: f64 = 0.001;
/// Largest value (ms) with the error bound: 10⁷ ms.
const MAX_VALUE_MS: f64 = 1.0e7;
/// Stored keys are `index + KEY_OFFSET`; key 0 is the zero bucket.
const KEY_OFFSET: i32 = 200;
/// Version byte at the start of an encoded histogram.
const FORMAT_V1: u8 = 1;

/// A sparse histogram: `(key, count)` pairs sorted by key, only non-empty buckets.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct LogHistogram {
    buckets: Vec<(u16, u64)>,
}

/// A histogram BLOB that is not in the expected format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed latency histogram: {0}")]
pub struct HistogramError(&'static str);

impl fmt::Debug for LogHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.buckets.iter().map(|(k, c)| (key_value(*k), c)))
            .finish()
    }
}

fn key_of(v: f64) -> u16 {
    if v.is_nan() || v <= MIN_VALUE_MS {
        return 0;
    }
    let v = v.min(MAX_VALUE_MS);
    let i = (v.ln() / ln_gamma()).ceil() as i32;
    // i is in about -172..=403 for the clamped range, so the key fits comfortably.
    (i + KEY_OFFSET).clamp(1, i32::from(u16::MAX)) as u16
}

/// The value reported for a bucket.
fn key_value(key: u16) -> f64 {
    if key == 0 {
        return 0.0;
    }
    let a = LogHistogram::RELATIVE_ERROR;
    let gamma = (1.0 + a) / (1.0 - a);
    let i = i32::from(key) - KEY_OFFSET;
    2.0 * (f64::from(i) * ln_gamma()).exp() / (gamma + 1.0)
}

impl LogHistogram {
    /// Relative error bound `α` of every reported value (see the module docs).
    pub const RELATIVE_ERROR: f64 = 0.02;

    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one value in milliseconds.
    pub fn record(&mut self, ms: f64) {
        self.add_key(key_of(ms), 1);
    }

    fn add_key(&mut self, key: u16, n: u64) {
        match self.buckets.binary_search_by_key(&key, |(k, _)| *k) {
            Ok(pos) => self.buckets[pos].1 += n,
            Err(pos) => self.buckets.insert(pos, (key, n)),
        }
    }

    /// Adds every count of `other` (exact: the bucket boundaries are the same everywhere).
    pub fn merge(&mut self, other: &LogHistogram) {
        if self.buckets.is_empty() {
            self.buckets.clone_from(&other.buckets);
            return;
        }
        if other.buckets.len() <= 4 {
            for &(k, c) in &other.buckets {
                self.add_key(k, c);
            }
            return;
        }
        let mut out = Vec::with_capacity(self.buckets.len() + other.buckets.len());
        let (mut a, mut b) = (
            self.buckets.iter().peekable(),
            other.buckets.iter().peekable(),
        );
        loop {
            match (a.peek(), b.peek()) {
                (Some(&&(ka, ca)), Some(&&(kb, cb))) => {
                    if ka == kb {
                        out.push((ka, ca + cb));
                        a.next();
                        b.next();
                    } else if ka < kb {
                        out.push((ka, ca));
                        a.next();
                    } else {
                        out.push((kb, cb));
                        b.next();
                    }
                }
                (Some(&&x), None) => {
                    out.push(x);
                    a.next();
                }
                (None, Some(&&x)) => {
                    out.push(x);
                    b.next();
                }
                (None, None) => break,
            }
        }
        self.buckets = out;
    }

    /// Number of values counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|(_, c)| c).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// The nearest-rank quantile `q` (0..=1): within `RELATIVE_ERROR` of the exact
    /// `⌈q·n⌉`-th smallest value. `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let q = if q.is_nan() { 0.5 } else { q.clamp(0.0, 1.0) };
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for &(key, count) in &self.buckets {
            seen += count;
            if seen >= rank {
                return Some(key_value(key));
            }
        }
        self.buckets.last().map(|&(k, _)| key_value(k))
    }

    /// Like [`quantile`](Self::quantile), never above the known exact maximum.
    pub fn quantile_clamped(&self, q: f64, max: Option<f64>) -> Option<f64> {
        let v = self.quantile(q)?;
        Some(match max {
            Some(m) if m.is_finite() && m >= 0.0 => v.min(m),
            _ => v,
        })
    }

    /// The BLOB form: a version byte, the number of buckets, then per bucket the key delta
    /// and the count, all LEB128 varints. A typical minute of one monitor is under 20 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + self.buckets.len() * 3);
        out.push(FORMAT_V1);
        put_varint(&mut out, self.buckets.len() as u64);
        let mut prev = 0u16;
        for &(key, count) in &self.buckets {
            put_varint(&mut out, u64::from(key - prev));
            put_varint(&mut out, count);
            prev = key;
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<LogHistogram, HistogramError> {
        let (&version, mut rest) = bytes.split_first().ok_or(HistogramError("empty"))?;
        if version != FORMAT_V1 {
            return Err(HistogramError("unknown format version"));
        }
        let n = get_varint(&mut rest)?;
        if n > 4096 {
            return Err(HistogramError("too many buckets"));
        }
        let mut buckets = Vec::with_capacity(n as usize);
        let mut key: u64 = 0;
        for i in 0..n {
            let delta = get_varint(&mut rest)?;
            if i > 0 && delta == 0 {
                return Err(HistogramError("keys not increasing"));
            }
            key += delta;
            let key = u16::try_from(key).map_err(|_| HistogramError("key out of range"))?;
            let count = get_varint(&mut rest)?;
            if count > 0 {
                buckets.push((key, count));
            }
        }
        if !rest.is_empty() {
            return Err(HistogramError("trailing bytes"));
        }
        Ok(LogHistogram { buckets })
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn get_varint(input: &mut &[u8]) -> Result<u64, HistogramError> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = input.split_first().ok_or(HistogramError("truncated"))?;
        *input = rest;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(HistogramError("varint too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact_quantile(sorted: &[f64], q: f64) -> f64 {
        let n = sorted.len();
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        sorted[rank - 1]
    }

    /// A cheap deterministic generator (xorshift), so the test needs no rand crate.
    fn values(seed: u64, n: usize) -> Vec<f64> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // log-uniform between 0.01 ms and 10 s
                let u = (x >> 11) as f64 / (1u64 << 53) as f64;
                10f64.powf(-2.0 + 6.0 * u)
            })
            .collect()
    }

    #[test]
    fn every_value_is_reported_within_the_bound() {
        for v in values(7, 20_000) {
            let r = key_value(key_of(v));
            assert!(
                (r - v).abs() <= v * LogHistogram::RELATIVE_ERROR * (1.0 + 1e-9),
                "{v} reported as {r}"
            );
        }
    }

    #[test]
    fn quantiles_are_within_the_bound_and_merge_exactly() {
        let vals = values(42, 10_000);
        let mut whole = LogHistogram::new();
        let mut parts = vec![LogHistogram::new(); 7];
        for (i, v) in vals.iter().enumerate() {
            whole.record(*v);
            parts[i % 7].record(*v);
        }
        let mut merged = LogHistogram::new();
        for p in parts.iter().rev() {
            merged.merge(p);
        }
        assert_eq!(merged, whole);
        let mut sorted = vals.clone();
        sorted.sort_by(f64::total_cmp);
        for q in [0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0] {
            let exact = exact_quantile(&sorted, q);
            let got = whole.quantile(q).unwrap();
            assert!(
                (got - exact).abs() <= exact * LogHistogram::RELATIVE_ERROR * (1.0 + 1e-9),
                "q{q}: exact {exact}, got {got}"
            );
        }
    }

    #[test]
    fn zero_negative_nan_and_huge() {
        let mut h = LogHistogram::new();
        h.record(0.0);
        h.record(-3.0);
        h.record(f64::NAN);
        assert_eq!(h.quantile(1.0), Some(0.0));
        h.record(1e12);
        assert_eq!(h.count(), 4);
        assert!(h.quantile(1.0).unwrap() > 9.0e6);
        assert_eq!(h.quantile_clamped(1.0, Some(5.0)), Some(5.0));
        assert_eq!(LogHistogram::new().quantile(0.5), None);
    }

    #[test]
    fn encoding_round_trips_and_rejects_garbage() {
        let mut h = LogHistogram::new();
        for v in values(3, 500) {
            h.record(v);
        }
        h.record(0.0);
        let bytes = h.encode();
        assert_eq!(LogHistogram::decode(&bytes).unwrap(), h);
        assert_eq!(
            LogHistogram::decode(&LogHistogram::new().encode()).unwrap(),
            LogHistogram::new()
        );
        assert!(LogHistogram::decode(&[]).is_err());
        assert!(LogHistogram::decode(&[9]).is_err());
        assert!(LogHistogram::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(LogHistogram::decode(&trailing).is_err());
        assert!(
            LogHistogram::decode(&[
                1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1
            ])
            .is_err()
        );
    }
}
