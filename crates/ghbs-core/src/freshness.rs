//! Whether a job's backups are fresh: the rule behind the `stale` flag of `jobs` (and of the
//! "backup stale" notification): no successful run for twice the schedule's interval.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use crate::Schedule;

/// A job is stale after this many schedule intervals without a successful run.
pub const STALE_AFTER_INTERVALS: i32 = 2;

/// The schedule's interval around `after`: the gap between its next two fire times (a day for
/// `daily`, seven for `weekly`, 28 to 31 for `monthly`, the cron expression's own gap).
pub fn schedule_interval(
    schedule: &Schedule,
    tz: Tz,
    after: DateTime<Utc>,
    anchor: DateTime<Utc>,
    offset: std::time::Duration,
) -> Duration {
    let first = schedule.next_after(after, tz, anchor, offset);
    let second = schedule.next_after(first, tz, anchor, offset);
    (second - first).max(Duration::hours(1))
}

/// Whether a job's backup is stale at `now`: its last success (or, when it never succeeded, its
/// creation) lies more than [`STALE_AFTER_INTERVALS`] × `interval` in the past.
pub fn backup_is_stale(
    last_success: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    interval: Duration,
    now: DateTime<Utc>,
) -> bool {
    let since = last_success.unwrap_or(created_at);
    now - since > interval * STALE_AFTER_INTERVALS
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, d, h, 0, 0).unwrap()
    }

    #[test]
    fn intervals_follow_the_schedule() {
        let z = std::time::Duration::ZERO;
        let daily = Schedule::parse("daily at 03:00").unwrap();
        let weekly = Schedule::parse("weekly on monday at 03:00").unwrap();
        let every = Schedule::parse("every 3 days at 03:00").unwrap();
        let tz = chrono_tz::UTC;
        assert_eq!(
            schedule_interval(&daily, tz, at(2, 8), at(1, 0), z),
            Duration::days(1)
        );
        assert_eq!(
            schedule_interval(&weekly, tz, at(2, 8), at(1, 0), z),
            Duration::days(7)
        );
        assert_eq!(
            schedule_interval(&every, tz, at(2, 8), at(1, 0), z),
            Duration::days(3)
        );
    }

    #[test]
    fn stale_after_two_intervals_without_success() {
        let day = Duration::days(1);
        // Succeeded 47 h ago: fresh; 49 h ago: stale.
        assert!(!backup_is_stale(Some(at(1, 9)), at(1, 0), day, at(3, 8)));
        assert!(backup_is_stale(Some(at(1, 9)), at(1, 0), day, at(3, 10)));
        // Never succeeded: counted from creation.
        assert!(!backup_is_stale(None, at(2, 0), day, at(3, 0)));
        assert!(backup_is_stale(None, at(1, 0), day, at(3, 1)));
    }
}
