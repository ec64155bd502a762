//! Query parameters parsed by hand so a bad one gets a message that names it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::error::ApiError;

/// A point in time as people and scripts write it: RFC 3339 (`2026-11-25T13:00:00Z`), a date
/// (`2026-11-25`, midnight UTC) or Unix seconds. Shared by the API and `portwarden report`.
pub fn parse_instant(v: &str) -> Option<DateTime<Utc>> {
    let v = v.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    }
    v.parse::<i64>()
        .ok()
        .and_then(|secs| DateTime::from_timestamp(secs, 0))
}

pub struct Params {
    map: HashMap<String, String>,
}

impl Params {
    /// Accepts only `allowed` parameters; anything else is a 400 naming it.
    pub fn new(map: HashMap<String, String>, allowed: &[&str]) -> Result<Params, ApiError> {
        for k in map.keys() {
            if !allowed.contains(&k.as_str()) {
                return Err(ApiError::bad_parameter(
                    k,
                    format!("unknown parameter `{k}`; allowed: {}", allowed.join(", ")),
                ));
            }
        }
        Ok(Params { map })
    }

    pub fn str(&self, k: &str) -> Option<&str> {
        self.map
            .get(k)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// RFC 3339 (`2026-11-25T13:00:00Z`), a date (`2026-11-25`, midnight UTC) or Unix seconds.
    pub fn time(&self, k: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        let Some(v) = self.str(k) else {
            return Ok(None);
        };
        parse_instant(v).map(Some).ok_or_else(|| {
            ApiError::bad_parameter(
                k,
                format!(
                    "`{k}={v}` is not a time; use RFC 3339 (2026-11-25T13:00:00Z), a date (2026-11-25) or Unix seconds"
                ),
            )
        })
    }

    pub fn usize_in(
        &self,
        k: &str,
        default: usize,
        min: usize,
        max: usize,
    ) -> Result<usize, ApiError> {
        let Some(v) = self.str(k) else {
            return Ok(default);
        };
        match v.parse::<usize>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_parameter(
                k,
                format!("`{k}={v}` must be a whole number from {min} to {max}"),
            )),
        }
    }

    pub fn one_of<'a>(&self, k: &str, options: &[&'a str]) -> Result<Option<&'a str>, ApiError> {
        let Some(v) = self.str(k) else {
            return Ok(None);
        };
        options
            .iter()
            .find(|o| **o == v)
            .copied()
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_parameter(
                    k,
                    format!("`{k}={v}` must be one of: {}", options.join(", ")),
                )
            })
    }
}
