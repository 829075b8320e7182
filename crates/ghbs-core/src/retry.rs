//! Retries of a failed run at the same scheduled slot: when the next attempt starts, if at all.
//!
//! A run that fails for a reason that may pass by itself ([`crate::FailureKind::retried_at_slot`])
//! is attempted again after a growing delay (5 min, 20 min, 1 h, then 4 h each), with jitter so
//! that jobs failing together (a GitHub outage) do not retry in step. Retries never move the
//! job's next scheduled slot: an attempt that would not start before it is dropped, and the slot
//! itself is the next chance.

use chrono::{DateTime, Duration, Utc};

/// Delays before the 2nd, 3rd, 4th and 5th attempt; later attempts wait as long as the last.
pub const RETRY_DELAYS_SECS: [i64; 4] = [5 * 60, 20 * 60, 60 * 60, 4 * 60 * 60];

/// Default number of retries after a failed attempt (so at most five attempts per slot).
pub const DEFAULT_RETRIES: u32 = 4;

/// How many times a failed run is attempted again before its next slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt; 0 disables retries.
    pub retries: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: DEFAULT_RETRIES,
        }
    }
}

impl RetryPolicy {
    /// Attempts per slot, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.retries.saturating_add(1)
    }

    /// The delay before attempt `failed_attempt + 1` (attempts count from 1), without jitter.
    pub fn delay_after(failed_attempt: u32) -> Duration {
        let i = (failed_attempt.max(1) - 1) as usize;
        Duration::seconds(RETRY_DELAYS_SECS[i.min(RETRY_DELAYS_SECS.len() - 1)])
    }

    /// When attempt `failed_attempt + 1` starts, or `None` when there is none: the bound is
    /// reached, or it would not start strictly before `next_slot`.
    ///
    /// `not_before` is a time the failure itself named (a rate limit's reset). `jitter` in
    /// `[0, 1)` adds up to a fifth of the delay; the caller draws it (this module does no I/O).
    pub fn next_attempt_at(
        &self,
        failed_attempt: u32,
        failed_at: DateTime<Utc>,
        next_slot: DateTime<Utc>,
        not_before: Option<DateTime<Utc>>,
        jitter: f64,
    ) -> Option<DateTime<Utc>> {
        if failed_attempt >= self.max_attempts() {
            return None;
        }
        let delay = Self::delay_after(failed_attempt);
        let extra_ms = (delay.num_milliseconds() as f64 / 5.0 * jitter.clamp(0.0, 0.999)) as i64;
        let mut at = failed_at + delay + Duration::milliseconds(extra_ms);
        if let Some(t) = not_before {
            // A second past the reset: GitHub's reset header has whole seconds.
            at = at.max(t + Duration::seconds(1));
        }
        (at < next_slot).then_some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, h, m, 0).unwrap()
    }

    #[test]
    fn delays_grow_then_stay_at_four_hours() {
        let m = |n| Duration::minutes(n);
        assert_eq!(RetryPolicy::delay_after(1), m(5));
        assert_eq!(RetryPolicy::delay_after(2), m(20));
        assert_eq!(RetryPolicy::delay_after(3), m(60));
        assert_eq!(RetryPolicy::delay_after(4), m(240));
        assert_eq!(RetryPolicy::delay_after(9), m(240));
    }

    #[test]
    fn attempts_are_bounded_and_stay_before_the_next_slot() {
        let p = RetryPolicy::default();
        let slot = t(9, 0) + Duration::days(1);
        assert_eq!(p.max_attempts(), 5);
        assert_eq!(
            p.next_attempt_at(1, t(9, 0), slot, None, 0.0),
            Some(t(9, 5))
        );
        assert_eq!(
            p.next_attempt_at(2, t(9, 5), slot, None, 0.0),
            Some(t(9, 25))
        );
        assert!(p.next_attempt_at(4, t(11, 0), slot, None, 0.0).is_some());
        // The fifth attempt was the last.
        assert_eq!(p.next_attempt_at(5, t(12, 0), slot, None, 0.0), None);
        // An attempt that would start at or after the slot is dropped.
        assert_eq!(p.next_attempt_at(1, t(8, 55), t(9, 0), None, 0.0), None);
        assert_eq!(
            p.next_attempt_at(1, t(8, 50), t(9, 0), None, 0.0),
            Some(t(8, 55))
        );
        // No retries at all when disabled.
        let off = RetryPolicy { retries: 0 };
        assert_eq!(off.next_attempt_at(1, t(9, 0), slot, None, 0.0), None);
    }

    #[test]
    fn jitter_adds_at_most_a_fifth_and_a_reset_pushes_the_attempt_back() {
        let p = RetryPolicy::default();
        let slot = t(23, 0);
        let at = p.next_attempt_at(1, t(9, 0), slot, None, 0.99).unwrap();
        assert!(at > t(9, 5) && at < t(9, 6), "{at}");
        let reset = t(9, 40);
        assert_eq!(
            p.next_attempt_at(1, t(9, 0), slot, Some(reset), 0.0),
            Some(reset + Duration::seconds(1))
        );
        // A reset past the slot: no retry, the slot comes first.
        assert_eq!(
            p.next_attempt_at(1, t(9, 0), t(9, 30), Some(reset), 0.0),
            None
        );
    }
}
