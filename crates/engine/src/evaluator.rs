//! The evaluator: turns a stream of run results into a state per monitor and location, without
//! crying wolf. O(1) amortised per result; no I/O, no clock of its own (times are passed in),
//! so every rule is unit-tested with exact sequences.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};
use portwarden_core::{LastHealthy, Observation, Outcome, Rules, State};

/// Nagios keeps 21 results for flap detection (20 transitions).
const FLAP_HISTORY: usize = 21;
/// Connect-time samples before the baseline is trusted.
const BASELINE_WARMUP: u32 = 5;
/// The baseline is a rolling average over about this long.
const BASELINE_HORIZON: Duration = Duration::from_secs(3600);

/// One run of a monitor from one location, reduced to what the rules need.
#[derive(Debug, Clone, PartialEq)]
pub struct RunResult {
    /// Monotonic time of the result (engine clock), for windows and sustain periods.
    pub mono: Duration,
    /// Wall-clock start, for records.
    pub at: DateTime<Utc>,
    /// Worst outcome over the addresses probed in this run.
    pub outcome: Outcome,
    /// Connect time of the slowest address that connected.
    pub connect_ms: Option<f64>,
    pub duration_ms: f64,
    pub address: Option<String>,
    /// `code` or `code/sub` of the worst observation's error.
    pub error: Option<String>,
    pub message: Option<String>,
}

impl RunResult {
    /// Reduces one run's observations (one per address) to a result.
    pub fn from_observations(mono: Duration, obs: &[Observation]) -> Option<RunResult> {
        let worst = obs.iter().max_by_key(|o| o.outcome.badness())?;
        Some(RunResult {
            mono,
            at: worst.started_at,
            outcome: worst.outcome,
            connect_ms: obs
                .iter()
                .filter_map(|o| o.phases.connect_ms)
                .max_by(|a, b| a.total_cmp(b)),
            duration_ms: worst.duration_ms,
            address: worst.address.map(|a| a.to_string()),
            error: worst.error.as_ref().map(|e| e.kind.to_string()),
            message: worst.message().map(str::to_string),
        })
    }
}

/// A change of state with the reason, for the incident timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub from: State,
    pub to: State,
    pub at: DateTime<Utc>,
    pub reason: String,
    pub error: Option<String>,
    pub message: Option<String>,
    pub last_healthy: Option<LastHealthy>,
}

/// Exponentially weighted moving average of connect time (the monitor's own baseline).
#[derive(Debug, Clone, Copy, Default)]
struct Ewma {
    value: f64,
    samples: u32,
}

impl Ewma {
    fn update(&mut self, x: f64, alpha: f64) {
        if self.samples == 0 {
            self.value = x;
        } else {
            // Faster while warming up, then the configured horizon.
            let a = alpha.max(1.0 / f64::from(self.samples + 1));
            self.value += a * (x - self.value);
        }
        self.samples = self.samples.saturating_add(1);
    }

    fn ready(&self) -> Option<f64> {
        (self.samples >= BASELINE_WARMUP).then_some(self.value)
    }
}

/// Evaluation state of one monitor at one location.
#[derive(Debug, Clone)]
pub struct MonitorEval {
    pub rules: Rules,
    pub interval: Duration,
    state: State,
    since: Option<DateTime<Utc>>,
    consecutive_fail: u32,
    consecutive_warn: u32,
    consecutive_good: u32,
    /// Up results in a row (degraded ones break it).
    consecutive_ok: u32,
    consecutive_unknown: u32,
    /// (mono time, failed?) of recent judged runs within `rules.window`.
    window: VecDeque<(Duration, bool)>,
    window_failures: u32,
    /// Raw category of recent judged runs: 0 ok, 1 warn, 2 fail.
    history: VecDeque<u8>,
    flapping: bool,
    baseline: Ewma,
    slow_since: Option<Duration>,
    last_healthy: Option<LastHealthy>,
    /// Why the current state holds (shown in the API and incidents).
    reason: String,
}

impl MonitorEval {
    pub fn new(rules: Rules, interval: Duration) -> Self {
        MonitorEval {
            rules,
            interval,
            state: State::Pending,
            since: None,
            consecutive_fail: 0,
            consecutive_warn: 0,
            consecutive_good: 0,
            consecutive_ok: 0,
            consecutive_unknown: 0,
            window: VecDeque::new(),
            window_failures: 0,
            history: VecDeque::with_capacity(FLAP_HISTORY),
            flapping: false,
            baseline: Ewma::default(),
            slow_since: None,
            last_healthy: None,
            reason: "no result yet".into(),
        }
    }

    /// Starts from a known state (an incident still open after a restart).
    pub fn resume(
        &mut self,
        state: State,
        since: DateTime<Utc>,
        last_healthy: Option<LastHealthy>,
    ) {
        self.state = state;
        self.since = Some(since);
        self.last_healthy = last_healthy;
        self.reason = "resumed after restart with an open incident".into();
        if state == State::Down {
            self.consecutive_fail = self.rules.consecutive_failures;
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn since(&self) -> Option<DateTime<Utc>> {
        self.since
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }

    pub fn last_healthy(&self) -> Option<&LastHealthy> {
        self.last_healthy.as_ref()
    }

    pub fn baseline_ms(&self) -> Option<f64> {
        self.baseline.ready()
    }

    pub fn flap_percent(&self) -> f64 {
        flap_percent(&self.history)
    }

    /// Judges one run. Returns a transition when the state changed.
    pub fn observe(&mut self, r: &RunResult, location: &str) -> Option<Transition> {
        let rules = self.rules;
        // Keep the window to `rules.window`.
        while let Some(&(t, failed)) = self.window.front() {
            if r.mono.saturating_sub(t) > rules.window {
                self.window.pop_front();
                if failed {
                    self.window_failures -= 1;
                }
            } else {
                break;
            }
        }

        let category = match r.outcome {
            Outcome::Up => Some(0u8),
            Outcome::Degraded => Some(1),
            Outcome::Down => Some(2),
            Outcome::Unknown => None,
        };
        match category {
            None => {
                self.consecutive_unknown += 1;
            }
            Some(c) => {
                self.consecutive_unknown = 0;
                let failed = c == 2;
                self.window.push_back((r.mono, failed));
                if failed {
                    self.window_failures += 1;
                }
                if self.history.len() == FLAP_HISTORY {
                    self.history.pop_front();
                }
                self.history.push_back(c);
                match c {
                    2 => {
                        self.consecutive_fail += 1;
                        self.consecutive_warn = 0;
                        self.consecutive_good = 0;
                        self.consecutive_ok = 0;
                    }
                    1 => {
                        self.consecutive_fail = 0;
                        self.consecutive_warn += 1;
                        self.consecutive_good += 1;
                        self.consecutive_ok = 0;
                    }
                    _ => {
                        self.consecutive_fail = 0;
                        self.consecutive_warn = 0;
                        self.consecutive_good += 1;
                        self.consecutive_ok += 1;
                    }
                }
            }
        }

        // Latency: absolute threshold, or k × the monitor's own baseline, sustained.
        let mut slow_note = None;
        if let (Some(c), Some(0..=1)) = (r.connect_ms, category) {
            {
                let abs = rules
                    .latency
                    .connect_above
                    .map(|d| d.as_secs_f64() * 1000.0);
                let base = self.baseline.ready();
                let over_abs = abs.is_some_and(|a| c > a);
                let over_base = match (base, rules.latency.baseline_factor) {
                    (Some(b), Some(k)) => {
                        c > b * k && c - b > rules.latency.baseline_min.as_secs_f64() * 1000.0
                    }
                    _ => false,
                };
                if over_abs || over_base {
                    let since = *self.slow_since.get_or_insert(r.mono);
                    if r.mono.saturating_sub(since) >= rules.latency.sustain {
                        slow_note = Some(match (over_abs, base) {
                            (true, _) => format!(
                                "connect time {c:.1} ms above {:.0} ms for {}",
                                abs.unwrap_or_default(),
                                portwarden_core::format_duration(rules.latency.sustain)
                            ),
                            (false, Some(b)) => format!(
                                "connect time {c:.1} ms is {:.1}× its 1h baseline of {b:.1} ms for {}",
                                c / b.max(f64::MIN_POSITIVE),
                                portwarden_core::format_duration(rules.latency.sustain)
                            ),
                            _ => format!("connect time {c:.1} ms is high"),
                        });
                    }
                } else {
                    self.slow_since = None;
                    let alpha = (self.interval.as_secs_f64() / BASELINE_HORIZON.as_secs_f64())
                        .clamp(1e-4, 1.0);
                    self.baseline.update(c, alpha);
                }
            }
        }

        // Failure rules.
        let n = self.window.len() as u32;
        let ratio = if n > 0 {
            f64::from(self.window_failures) / f64::from(n)
        } else {
            0.0
        };
        let by_consecutive = self.consecutive_fail >= rules.consecutive_failures;
        let by_ratio = n >= rules.min_samples && ratio > rules.failure_ratio;
        let prev = self.state;
        let err = r.error.clone().unwrap_or_default();
        let judged = category.is_some();
        let recovered_from_down =
            prev == State::Down && judged && self.consecutive_good >= rules.recovery;
        let (mut next, mut reason) = if prev == State::Down && judged && !recovered_from_down {
            // Once down, only `recovery` good runs in a row bring it back (the ratio rule
            // opens incidents; it does not hold them open).
            if category == Some(2) {
                (
                    State::Down,
                    format!("{} consecutive failed runs ({err})", self.consecutive_fail),
                )
            } else {
                (
                    State::Down,
                    format!(
                        "recovering: {} of {} good runs",
                        self.consecutive_good, rules.recovery
                    ),
                )
            }
        } else if by_consecutive {
            (
                State::Down,
                format!("{} consecutive failed runs ({err})", self.consecutive_fail),
            )
        } else if by_ratio && !recovered_from_down {
            (
                State::Down,
                format!(
                    "{:.0}% of {n} runs failed in the last {} (threshold {:.0}%)",
                    ratio * 100.0,
                    portwarden_core::format_duration(rules.window),
                    rules.failure_ratio * 100.0
                ),
            )
        } else if self.consecutive_warn >= rules.consecutive_failures {
            (
                State::Degraded,
                r.message.clone().unwrap_or_else(|| "degraded".into()),
            )
        } else if let Some(note) = slow_note {
            (State::Degraded, note)
        } else if prev == State::Degraded && judged && self.consecutive_ok < rules.recovery {
            (
                State::Degraded,
                format!(
                    "recovering: {} of {} good runs",
                    self.consecutive_ok, rules.recovery
                ),
            )
        } else if !judged {
            if self.consecutive_unknown >= rules.consecutive_failures && !prev.is_bad() {
                (
                    State::Unknown,
                    r.message.clone().unwrap_or_else(|| "cannot judge".into()),
                )
            } else {
                (prev, self.reason.clone())
            }
        } else if category == Some(2) {
            // A failure below every threshold changes nothing yet.
            (prev, format!("1 failed run below the thresholds ({err})"))
        } else {
            (State::Up, "ok".into())
        };

        // A recovery starts a new window: the failures that opened the incident must not
        // reopen it on the next good run through the ratio rule.
        if recovered_from_down && next != State::Down {
            self.window.clear();
            self.window.push_back((r.mono, false));
            self.window_failures = 0;
        }

        // Flap detection over the last 21 judged results.
        if rules.flap.enabled && category.is_some() {
            let pct = flap_percent(&self.history);
            if !self.flapping && pct > rules.flap.high {
                self.flapping = true;
            } else if self.flapping && pct < rules.flap.low {
                self.flapping = false;
            }
            if self.flapping && next != State::Unknown {
                reason = format!(
                    "flapping: {pct:.0}% state change over the last {} results (now {next})",
                    self.history.len()
                );
                next = State::Flapping;
            }
        }

        if category == Some(0) || (category == Some(1) && r.connect_ms.is_some()) {
            self.last_healthy = Some(LastHealthy {
                at: r.at,
                connect_ms: r.connect_ms,
                duration_ms: Some(r.duration_ms),
                address: r.address.clone(),
                location: Some(location.to_string()),
            });
        }

        self.reason = reason;
        if next != prev {
            self.state = next;
            self.since = Some(r.at);
            return Some(Transition {
                from: prev,
                to: next,
                at: r.at,
                reason: self.reason.clone(),
                error: r.error.clone(),
                message: r.message.clone(),
                last_healthy: self.last_healthy.clone(),
            });
        }
        if self.since.is_none() {
            self.since = Some(r.at);
        }
        None
    }
}

/// Nagios' weighted percent state change: transitions in the history, newer ones weighing
/// more (0.80 for the oldest up to 1.18 for the newest), over 20 possible transitions.
pub fn flap_percent(history: &VecDeque<u8>) -> f64 {
    if history.len() < 2 {
        return 0.0;
    }
    let skip = FLAP_HISTORY.saturating_sub(history.len());
    let mut weight = 0.80 + 0.02 * skip as f64;
    let mut changes = 0.0;
    let mut it = history.iter();
    let mut prev = it.next();
    for cur in it {
        if Some(cur) != prev {
            changes += weight;
        }
        weight += 0.02;
        prev = Some(cur);
    }
    changes * 100.0 / (FLAP_HISTORY - 1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use portwarden_core::Tier;

    fn run(i: u64, outcome: Outcome, connect: Option<f64>) -> RunResult {
        RunResult {
            mono: Duration::from_secs(i * 10),
            at: DateTime::from_timestamp(1_700_000_000 + (i as i64) * 10, 0).unwrap(),
            outcome,
            connect_ms: connect,
            duration_ms: connect.unwrap_or(1.0),
            address: Some("127.0.0.1:1".into()),
            error: (outcome == Outcome::Down).then(|| "refused".into()),
            message: None,
        }
    }

    fn eval(tier: Tier) -> MonitorEval {
        MonitorEval::new(Rules::for_tier(tier), Duration::from_secs(10))
    }

    fn feed(e: &mut MonitorEval, pattern: &str, start: u64) -> Vec<Transition> {
        pattern
            .chars()
            .enumerate()
            .filter_map(|(i, c)| {
                let o = match c {
                    'u' => Outcome::Up,
                    'd' => Outcome::Down,
                    'g' => Outcome::Degraded,
                    _ => Outcome::Unknown,
                };
                e.observe(&run(start + i as u64, o, Some(1.0)), "local")
            })
            .collect()
    }

    #[test]
    fn consecutive_failures_open_and_recovery_resolves() {
        let mut e = eval(Tier::Critical); // 2 consecutive, recovery 2
        let t = feed(&mut e, "uud", 0);
        assert_eq!(t.len(), 1);
        assert_eq!((t[0].from, t[0].to), (State::Pending, State::Up));
        assert_eq!(e.state(), State::Up);
        let t = feed(&mut e, "d", 3);
        assert_eq!(t[0].to, State::Down);
        assert!(t[0].reason.contains("2 consecutive"), "{}", t[0].reason);
        assert!(t[0].last_healthy.is_some());
        assert!(
            feed(&mut e, "u", 4).is_empty(),
            "one success is not recovery"
        );
        let t = feed(&mut e, "u", 5);
        assert_eq!(t[0].to, State::Up);
    }

    #[test]
    fn one_in_ten_is_tolerated_five_in_ten_is_not() {
        let r = Rules::for_tier(Tier::Critical);
        // Window of 10 samples at 10 s.
        let rules = Rules {
            window: Duration::from_secs(100),
            min_samples: 5,
            ..r
        };
        let mut e = MonitorEval::new(rules, Duration::from_secs(10));
        let t = feed(&mut e, &"uuuuuuuuud".repeat(6), 0);
        assert!(t.iter().all(|t| t.to == State::Up), "{t:?}");
        let mut e = MonitorEval::new(rules, Duration::from_secs(10));
        let t = feed(&mut e, &"ududuuddud".repeat(3), 0);
        assert!(t.iter().any(|t| t.to.is_bad()), "{t:?}");
    }

    #[test]
    fn ratio_rule_with_scattered_failures() {
        let rules = Rules {
            window: Duration::from_secs(100),
            min_samples: 5,
            flap: portwarden_core::rules::FlapRule {
                enabled: false,
                high: 50.0,
                low: 25.0,
            },
            ..Rules::for_tier(Tier::Critical)
        };
        let mut e = MonitorEval::new(rules, Duration::from_secs(10));
        // 3 failures in 10, never two in a row: 30% > 20%.
        let t = feed(&mut e, "uuuduuduud", 0);
        let down = t
            .iter()
            .find(|t| t.to == State::Down)
            .expect("opened by ratio");
        assert!(down.reason.contains("% of"), "{}", down.reason);
    }

    #[test]
    fn recovery_is_not_reopened_by_the_failures_still_in_the_window() {
        let rules = Rules {
            window: Duration::from_secs(300),
            min_samples: 5,
            flap: portwarden_core::rules::FlapRule {
                enabled: false,
                high: 50.0,
                low: 25.0,
            },
            ..Rules::for_tier(Tier::Critical)
        };
        let mut e = MonitorEval::new(rules, Duration::from_secs(10));
        // Up, a 6-run outage, recovery (2 good runs), then healthy: the outage's 6 failures
        // stay in the 5-minute window long after it ended.
        let t = feed(&mut e, "uuuudddddduuuuuuuuuu", 0);
        let states: Vec<State> = t.iter().map(|t| t.to).collect();
        assert_eq!(states, [State::Up, State::Down, State::Up], "{t:?}");
        assert_eq!(e.state(), State::Up);
        // A new failure after the recovery is judged on the new window alone.
        assert!(
            feed(&mut e, "d", 20).is_empty(),
            "one failure below the thresholds"
        );
    }

    #[test]
    fn unknown_never_pages() {
        let mut e = eval(Tier::Critical);
        feed(&mut e, "uu", 0);
        let t = feed(&mut e, "xxxx", 2);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].to, State::Unknown);
        assert!(!t[0].to.is_bad());
        // Unknowns between failures do not break nor make a failure streak.
        let mut e = eval(Tier::Critical);
        feed(&mut e, "uu", 0);
        let t = feed(&mut e, "dxd", 2);
        assert!(t.iter().all(|t| t.to != State::Down) || e.state() == State::Down);
        // An open incident stays open through unknowns.
        let mut e = eval(Tier::Critical);
        feed(&mut e, "uudd", 0);
        assert_eq!(e.state(), State::Down);
        assert!(feed(&mut e, "xxxxx", 4).is_empty());
        assert_eq!(e.state(), State::Down);
    }

    #[test]
    fn degraded_results_degrade() {
        let mut e = eval(Tier::Critical);
        feed(&mut e, "uu", 0);
        let t = feed(&mut e, "gg", 2);
        assert_eq!(t[0].to, State::Degraded);
        let t = feed(&mut e, "uu", 4);
        assert_eq!(t[0].to, State::Up);
    }

    #[test]
    fn rising_connect_time_degrades() {
        let mut e = eval(Tier::Critical); // baseline ×5, min 50 ms, sustain 2 min
        for i in 0..30 {
            e.observe(&run(i, Outcome::Up, Some(10.0)), "local");
        }
        assert_eq!(e.state(), State::Up);
        assert!((e.baseline_ms().unwrap() - 10.0).abs() < 0.01);
        let mut degraded = None;
        for i in 30..50 {
            if let Some(t) = e.observe(&run(i, Outcome::Up, Some(120.0)), "local") {
                degraded = Some((i, t));
                break;
            }
        }
        let (i, t) = degraded.expect("degraded after the sustain period");
        assert_eq!(t.to, State::Degraded);
        assert!(i >= 42, "not before 2 minutes of slowness (at run {i})");
        assert!(t.reason.contains("baseline"), "{}", t.reason);
        // Back to normal.
        let mut up = false;
        for i in 50..60 {
            if let Some(t) = e.observe(&run(i, Outcome::Up, Some(10.0)), "local") {
                up = t.to == State::Up;
            }
        }
        assert!(up);
    }

    #[test]
    fn absolute_latency_threshold() {
        let mut r = Rules::for_tier(Tier::Critical);
        r.latency.connect_above = Some(Duration::from_millis(100));
        r.latency.sustain = Duration::from_secs(20);
        let mut e = MonitorEval::new(r, Duration::from_secs(10));
        let mut ts = Vec::new();
        for i in 0..5 {
            ts.extend(e.observe(&run(i, Outcome::Up, Some(150.0)), "local"));
        }
        assert_eq!(e.state(), State::Degraded, "{ts:?}");
    }

    #[test]
    fn alternating_results_flap_and_notify_once() {
        let mut e = eval(Tier::Critical);
        let t = feed(&mut e, &"ud".repeat(15), 0);
        let flaps = t.iter().filter(|t| t.to == State::Flapping).count();
        assert_eq!(flaps, 1, "{t:?}");
        assert_eq!(e.state(), State::Flapping);
        assert!(e.flap_percent() > 50.0);
        // Stable again: flapping ends once the percent falls below the low threshold.
        let t = feed(&mut e, &"u".repeat(25), 30);
        assert_eq!(t.last().unwrap().to, State::Up, "{t:?}");
    }

    #[test]
    fn flap_percent_matches_nagios() {
        let all_same: VecDeque<u8> = std::iter::repeat_n(0, 21).collect();
        assert_eq!(flap_percent(&all_same), 0.0);
        let alternating: VecDeque<u8> = (0..21).map(|i| (i % 2) as u8).collect();
        // Sum of weights 0.80..=1.18 over 20 transitions = 19.8 → 99%.
        assert!((flap_percent(&alternating) - 99.0).abs() < 1e-9);
    }

    #[test]
    fn resume_keeps_an_open_incident() {
        let mut e = eval(Tier::Critical);
        e.resume(State::Down, Utc::now(), None);
        assert!(
            feed(&mut e, "d", 0).is_empty(),
            "still down, no new transition"
        );
        let t = feed(&mut e, "uu", 1);
        assert_eq!(t[0].to, State::Up);
    }
}
