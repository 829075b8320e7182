//! Per-token politeness: the concurrency bound, the primary rate-limit budget GitHub reports in
//! `X-RateLimit-*` headers, and the backoff arithmetic for secondary limits and transient failures.
//!
//! State is per token (not per session) because GitHub's budget is per token: two runs of the same
//! user share one budget and must both see when it is exhausted.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use http::HeaderMap;
use rand::Rng;
use tokio::sync::Semaphore;

/// Secondary limits without `Retry-After`: GitHub asks for at least a minute between attempts.
const SECONDARY_FIRST_WAIT_UNITS: u32 = 60;
/// Secondary-limit backoff never exceeds 15 minutes (in units of `retry_base`).
const SECONDARY_MAX_WAIT_UNITS: u32 = 15 * 60;
/// Transient backoff never exceeds 30 seconds (in units of `retry_base`).
const TRANSIENT_MAX_WAIT_UNITS: u32 = 30;

/// What one token may do right now.
pub(crate) struct TokenState {
    /// Bounds the requests of this token in flight at once.
    pub(crate) permits: Semaphore,
    budget: Mutex<Budget>,
}

#[derive(Default)]
struct Budget {
    remaining: Option<u64>,
    reset: Option<DateTime<Utc>>,
}

impl TokenState {
    pub(crate) fn new(max_concurrent: usize) -> Self {
        TokenState {
            permits: Semaphore::new(max_concurrent.max(1)),
            budget: Mutex::new(Budget::default()),
        }
    }

    fn budget(&self) -> std::sync::MutexGuard<'_, Budget> {
        // Two plain fields: a panic elsewhere cannot leave them inconsistent.
        self.budget.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the budget GitHub reported in a response, if it reported one.
    pub(crate) fn observe(&self, headers: &HeaderMap) {
        let remaining = header_u64(headers, "x-ratelimit-remaining");
        let reset = reset_time(headers);
        if remaining.is_none() && reset.is_none() {
            return;
        }
        let mut b = self.budget();
        if remaining.is_some() {
            b.remaining = remaining;
        }
        if reset.is_some() {
            b.reset = reset;
        }
    }

    /// Marks the budget as spent until `until` (a 403/429 said so).
    pub(crate) fn exhaust(&self, until: DateTime<Utc>) {
        let mut b = self.budget();
        b.remaining = Some(0);
        b.reset = Some(until);
    }

    /// When the budget is spent: the reset time to wait for. A reset already in the past means
    /// the budget has been refilled, so the record is cleared and requests may go.
    pub(crate) fn exhausted_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut b = self.budget();
        match (b.remaining, b.reset) {
            (Some(0), Some(reset)) if reset > now => Some(reset),
            (Some(0), _) => {
                b.remaining = None;
                None
            }
            _ => None,
        }
    }
}

pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

pub(crate) fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    header_str(headers, name)?.parse().ok()
}

/// `X-RateLimit-Reset`: seconds since the Unix epoch.
pub(crate) fn reset_time(headers: &HeaderMap) -> Option<DateTime<Utc>> {
    let secs = i64::try_from(header_u64(headers, "x-ratelimit-reset")?).ok()?;
    Utc.timestamp_opt(secs, 0).single()
}

/// `Retry-After`: either seconds or an HTTP date (GitHub sends seconds).
pub(crate) fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let v = header_str(headers, "retry-after")?;
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(v).ok()?.with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// A uniformly random duration in `[0, max)`; jitter keeps many clients from retrying in step.
fn jitter(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::thread_rng().gen_range(0..nanos))
}

fn exponential(base: Duration, first_units: u32, attempt: u32, max_units: u32) -> Duration {
    let units = u64::from(first_units)
        .saturating_mul(1u64 << attempt.min(20))
        .min(u64::from(max_units));
    base.saturating_mul(u32::try_from(units).unwrap_or(u32::MAX))
}

/// Backoff after the `attempt`-th (0-based) transient failure: exponential with full jitter.
pub(crate) fn transient_backoff(base: Duration, attempt: u32) -> Duration {
    jitter(exponential(base, 1, attempt, TRANSIENT_MAX_WAIT_UNITS))
}

/// Backoff after the `attempt`-th (0-based) secondary limit that came without `Retry-After`:
/// 60 × `retry_base`, doubling, capped at 15 minutes' worth, plus up to one `retry_base` of jitter.
pub(crate) fn secondary_backoff(base: Duration, attempt: u32) -> Duration {
    exponential(
        base,
        SECONDARY_FIRST_WAIT_UNITS,
        attempt,
        SECONDARY_MAX_WAIT_UNITS,
    ) + jitter(base)
}

/// The wait for a secondary limit that came with `Retry-After`: at least what GitHub asked, plus
/// up to one `retry_base` of jitter.
pub(crate) fn honour_retry_after(asked: Duration, base: Duration) -> Duration {
    asked + jitter(base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn budget_exhaustion_follows_headers_and_clears_after_reset() {
        let state = TokenState::new(4);
        let now = Utc.timestamp_opt(1_000, 0).unwrap();
        state.observe(&headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1010"),
        ]));
        assert_eq!(
            state.exhausted_until(now),
            Utc.timestamp_opt(1_010, 0).single()
        );
        let later = Utc.timestamp_opt(1_011, 0).unwrap();
        assert_eq!(state.exhausted_until(later), None);
        // Cleared: even an earlier clock no longer sees it exhausted.
        assert_eq!(state.exhausted_until(now), None);
        state.observe(&headers(&[("x-ratelimit-remaining", "4999")]));
        assert_eq!(state.exhausted_until(now), None);
    }

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        let now = Utc.timestamp_opt(0, 0).unwrap();
        assert_eq!(
            retry_after(&headers(&[("retry-after", "7")]), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(
                &headers(&[("retry-after", "Thu, 01 Jan 1970 00:00:30 GMT")]),
                now
            ),
            Some(Duration::from_secs(30))
        );
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn backoffs_grow_and_stay_capped() {
        let base = Duration::from_millis(10);
        for attempt in 0..40 {
            assert!(transient_backoff(base, attempt) < base * TRANSIENT_MAX_WAIT_UNITS);
            let s = secondary_backoff(base, attempt);
            assert!(s >= base * 60 && s < base * (SECONDARY_MAX_WAIT_UNITS + 1));
        }
        assert!(secondary_backoff(base, 1) >= base * 120);
        let asked = Duration::from_secs(1);
        let waited = honour_retry_after(asked, base);
        assert!(waited >= asked && waited < asked + base);
    }
}
