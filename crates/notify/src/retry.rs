//! When to try a failed notification again.

use std::time::Duration;

/// Exponential backoff with jitter, bounded, honouring the receiver's `Retry-After`.
///
/// ```
/// use std::time::Duration;
/// use portwarden_notify::RetryPolicy;
/// let p = RetryPolicy::default();
/// // Attempt 1 failed: wait about `initial` (between half of it and all of it).
/// let d = p.next_delay(1, None);
/// assert!(d >= p.initial / 2 && d <= p.initial);
/// // The receiver said `Retry-After: 2`: wait at least 2 s.
/// assert!(p.next_delay(1, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The delay after the first failed attempt (before jitter).
    pub initial: Duration,
    /// The longest delay between two attempts (before jitter).
    pub max: Duration,
    /// Stop trying once the notification is this old, and mark it given up.
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(300),
            give_up_after: Duration::from_secs(24 * 3600),
        }
    }
}

/// The longest `Retry-After` honoured as given; longer requests are capped here.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

impl RetryPolicy {
    /// The delay before the next attempt, after `attempt` attempts failed (1 = the first).
    ///
    /// Without `retry_after`: `min(initial * 2^(attempt-1), max)` with "equal jitter" (a uniform
    /// pick between half of it and all of it), so receivers that come back are not hit by every
    /// queued message at once. With `retry_after`: at least what the receiver asked for (capped at
    /// [`MAX_RETRY_AFTER`]), plus up to 10% (at most 1 s) of jitter.
    pub fn next_delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        self.next_delay_with(attempt, retry_after, fastrand::f64())
    }

    /// [`next_delay`](Self::next_delay) with the random draw given (`jitter` in `0.0..=1.0`).
    pub fn next_delay_with(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Duration {
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.5
        };
        if let Some(ra) = retry_after {
            let ra = ra.min(MAX_RETRY_AFTER);
            let extra = (ra / 10).min(Duration::from_secs(1)).mul_f64(jitter);
            return ra + extra;
        }
        let exp = attempt.saturating_sub(1).min(30);
        let base = self
            .initial
            .checked_mul(1u32 << exp)
            .unwrap_or(self.max)
            .min(self.max);
        base / 2 + (base / 2).mul_f64(jitter)
    }

    /// Whether a notification first queued `age` ago should be given up.
    pub fn gives_up(&self, age: Duration) -> bool {
        age >= self.give_up_after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps() {
        let p = RetryPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(10),
            give_up_after: Duration::from_secs(60),
        };
        let full: Vec<u64> = (1..=6)
            .map(|a| p.next_delay_with(a, None, 1.0).as_secs())
            .collect();
        assert_eq!(full, [1, 2, 4, 8, 10, 10]);
        assert_eq!(p.next_delay_with(3, None, 0.0), Duration::from_secs(2));
        assert_eq!(
            p.next_delay_with(u32::MAX, None, 1.0),
            Duration::from_secs(10)
        );
        assert_eq!(p.next_delay_with(0, None, 1.0), Duration::from_secs(1));
        assert!(p.gives_up(Duration::from_secs(60)) && !p.gives_up(Duration::from_secs(59)));
    }

    #[test]
    fn honours_retry_after() {
        let p = RetryPolicy::default();
        let two = Duration::from_secs(2);
        assert_eq!(p.next_delay_with(1, Some(two), 0.0), two);
        assert_eq!(
            p.next_delay_with(1, Some(two), 1.0),
            Duration::from_millis(2200)
        );
        assert_eq!(
            p.next_delay_with(1, Some(Duration::from_secs(86_400)), 0.0),
            MAX_RETRY_AFTER
        );
        for _ in 0..100 {
            let d = p.next_delay(4, None);
            assert!(
                d >= Duration::from_secs(8) && d <= Duration::from_secs(16),
                "{d:?}"
            );
        }
    }
}
