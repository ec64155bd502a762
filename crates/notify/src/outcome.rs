//! What a send attempt returns: [`Delivered`] or a [`SendError`] the dispatcher can act on.

use std::fmt;
use std::time::Duration;

/// A message the receiver accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// HTTP status, or the SMTP reply code.
    pub status: Option<u16>,
    /// From the start of the request to the receiver's answer.
    pub latency: Duration,
    /// What the receiver said back, when it is useful and safe (PagerDuty's dedup key, a
    /// Twilio message SID, the SMTP queue id). Never a secret.
    pub detail: Option<String>,
}

/// A send that failed. The message never contains a secret: URLs appear as their host only,
/// response bodies are cut short and scrubbed of every configured secret value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    /// Worth trying again (connection failure, timeout, 408, 429, 5xx, SMTP 4xx).
    pub retryable: bool,
    /// The receiver asked us to wait this long (`Retry-After`, Discord's `retry_after`).
    pub retry_after: Option<Duration>,
    /// HTTP status, or the SMTP reply code, when the receiver answered.
    pub status: Option<u16>,
    pub message: String,
    /// How long the attempt took, when it got that far.
    pub latency: Option<Duration>,
}

impl SendError {
    /// A failure worth retrying.
    pub fn retryable(message: impl Into<String>) -> Self {
        SendError {
            retryable: true,
            retry_after: None,
            status: None,
            message: message.into(),
            latency: None,
        }
    }

    /// A failure that will fail again the same way (bad request, bad credentials).
    pub fn permanent(message: impl Into<String>) -> Self {
        SendError {
            retryable: false,
            ..SendError::retryable(message)
        }
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub fn with_retry_after(mut self, d: Option<Duration>) -> Self {
        self.retry_after = d;
        self
    }

    pub fn with_latency(mut self, d: Duration) -> Self {
        self.latency = Some(d);
        self
    }

    /// Whether an HTTP status is worth retrying: 408, 425, 429 and 5xx.
    pub fn status_is_retryable(status: u16) -> bool {
        matches!(status, 408 | 425 | 429) || status >= 500
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(r) = self.retry_after {
            write!(f, " (retry after {}s)", r.as_secs_f64())?;
        }
        Ok(())
    }
}

impl std::error::Error for SendError {}

/// Replaces every occurrence of each secret (at least 4 characters long) in `text` by `***`.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets {
        if s.len() >= 4 && out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
}

/// The first `max` characters of `text` on one line, with `…` when cut.
pub fn snippet(text: &str, max: usize) -> String {
    let one: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let one = one.trim();
    if one.chars().count() <= max {
        one.to_string()
    } else {
        let mut s: String = one.chars().take(max).collect();
        s.push('…');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_and_snippet() {
        let s = scrub(
            "bad token abcd1234 in /services/T/B/abcd1234",
            &["abcd1234".into(), "x".into()],
        );
        assert_eq!(s, "bad token *** in /services/T/B/***");
        assert_eq!(snippet("a\nb", 10), "a b");
        assert_eq!(snippet("abcdef", 3), "abc…");
        assert!(SendError::status_is_retryable(500));
        assert!(SendError::status_is_retryable(429));
        assert!(SendError::status_is_retryable(408));
        assert!(!SendError::status_is_retryable(404));
        assert!(!SendError::status_is_retryable(400));
    }
}
