//! Whether a job's backups are stale: no success for twice its schedule's interval.
//!
//! A small stand-in written for notifications (issue 11); the freshness work of the same issue
//! may bring a richer computation, which should then replace this one.

use chrono::{DateTime, Duration, Utc};

/// True when more than `2 × interval` passed since the job last succeeded, or since it was
/// created if it never did. A job younger than that is not stale yet, whatever its runs did.
pub fn is_stale(
    last_success: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    interval: Duration,
    now: DateTime<Utc>,
) -> bool {
    let basis = last_success.unwrap_or(created_at);
    now - basis > interval * 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::hours(h)
    }

    #[test]
    fn stale_after_twice_the_interval_since_the_last_success() {
        let day = Duration::days(1);
        assert!(!is_stale(Some(t(0)), t(-100), day, t(47)));
        assert!(!is_stale(Some(t(0)), t(-100), day, t(48)));
        assert!(is_stale(Some(t(0)), t(-100), day, t(49)));
        // Weekly: two days without success is normal.
        assert!(!is_stale(Some(t(0)), t(-100), Duration::days(7), t(49)));
    }

    #[test]
    fn a_job_that_never_succeeded_counts_from_its_creation() {
        let day = Duration::days(1);
        assert!(!is_stale(None, t(0), day, t(30)));
        assert!(is_stale(None, t(0), day, t(49)));
    }
}
