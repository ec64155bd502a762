//! Failed-login limiting: at most N failures per key (client address, user name) within a
//! sliding window; past that, attempts are refused with `429` until the oldest failure ages out
//! — without even checking the password.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys tracked at most (oldest dropped past it, so a flood of addresses cannot exhaust memory).
const MAX_KEYS: usize = 50_000;

#[derive(Debug)]
struct Inner {
    attempts: u32,
    window: Duration,
    failures: HashMap<String, VecDeque<Instant>>,
}

#[derive(Debug)]
pub struct Limiter {
    inner: Mutex<Inner>,
}

impl Limiter {
    pub fn new(attempts: u32, window: Duration) -> Limiter {
        Limiter {
            inner: Mutex::new(Inner {
                attempts: attempts.max(1),
                window,
                failures: HashMap::new(),
            }),
        }
    }

    pub fn configure(&self, attempts: u32, window: Duration) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.attempts = attempts.max(1);
        g.window = window;
    }

    /// `Some(wait)` when any of `keys` is blocked (scaled: `factor` × the configured attempts).
    pub fn blocked(&self, keys: &[&str], factor: u32) -> Option<Duration> {
        let now = Instant::now();
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (limit, window) = (g.attempts.saturating_mul(factor.max(1)) as usize, g.window);
        let mut wait = None;
        for k in keys {
            if let Some(q) = g.failures.get_mut(*k) {
                while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
                    q.pop_front();
                }
                if q.len() >= limit
                    && let Some(first) = q.front()
                {
                    let w = window.saturating_sub(now.duration_since(*first));
                    wait = Some(wait.map_or(w, |x: Duration| x.max(w)));
                }
            }
        }
        wait
    }

    /// Records a failure under every key.
    pub fn fail(&self, keys: &[&str]) {
        let now = Instant::now();
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.failures.len() >= MAX_KEYS {
            let window = g.window;
            g.failures
                .retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
            if g.failures.len() >= MAX_KEYS {
                g.failures.clear();
            }
        }
        for k in keys {
            let q = g.failures.entry((*k).to_string()).or_default();
            q.push_back(now);
            if q.len() > 1000 {
                q.pop_front();
            }
        }
    }

    /// Forgets failures of a key (after a successful login for that user).
    pub fn clear(&self, key: &str) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .failures
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_n_failures_within_the_window() {
        let l = Limiter::new(3, Duration::from_millis(200));
        for _ in 0..2 {
            assert!(l.blocked(&["ip:a", "user:x"], 1).is_none());
            l.fail(&["ip:a", "user:x"]);
        }
        assert!(l.blocked(&["ip:a"], 1).is_none());
        l.fail(&["ip:a", "user:x"]);
        assert!(l.blocked(&["ip:a"], 1).is_some());
        assert!(l.blocked(&["user:x"], 1).is_some());
        assert!(l.blocked(&["ip:b"], 1).is_none());
        assert!(l.blocked(&["ip:a"], 2).is_none(), "a larger allowance");
        std::thread::sleep(Duration::from_millis(250));
        assert!(l.blocked(&["ip:a"], 1).is_none(), "the window slid");
        l.fail(&["user:y"]);
        l.clear("user:y");
        assert!(l.blocked(&["user:y"], 1).is_none());
    }
}
