//! The "at most once per interval" rule.

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::next::{cron_next, month_day};
use super::{Schedule, ScheduleError};

const DAY: Duration = Duration::from_secs(86_400);
const HOUR: Duration = Duration::from_secs(3_600);
/// How far cron expressions are walked: more than a year, so every DST change and month length
/// is met at least once.
const CRON_WALK_DAYS: i64 = 400;

pub(super) fn validate(schedule: &Schedule, tz: Tz, min: Duration) -> Result<(), ScheduleError> {
    let shortest_days = match *schedule {
        Schedule::Daily { .. } => 1,
        Schedule::Weekly { .. } => 7,
        Schedule::Monthly { day, .. } => shortest_monthly_gap_days(day),
        Schedule::EveryDays { n, .. } => u64::from(n.max(1)),
        Schedule::Cron(ref expr) => return validate_cron(schedule, expr, tz, min),
    };
    let shortest = DAY.saturating_mul(u32::try_from(shortest_days).unwrap_or(u32::MAX));
    if shortest < min {
        return Err(ScheduleError::TooFrequent(format!(
            "`{}` can run {} apart, but backups run at most once every {} — use {}",
            schedule.canonical(),
            human(shortest),
            human(min),
            suggestion(min)
        )));
    }
    Ok(())
}

/// The shortest distance between two consecutive runs of `monthly on DAY`, over a leap cycle.
fn shortest_monthly_gap_days(day: u32) -> u64 {
    let dates: Vec<_> = (0..48)
        .filter_map(|i| month_day(2024 + i / 12, (i % 12) as u32 + 1, day.clamp(1, 31)))
        .collect();
    dates
        .windows(2)
        .map(|w| (w[1] - w[0]).num_days().unsigned_abs())
        .min()
        .unwrap_or(28)
}

fn validate_cron(
    schedule: &Schedule,
    expr: &str,
    tz: Tz,
    min: Duration,
) -> Result<(), ScheduleError> {
    let cron = croner::Cron::new(expr).parse().map_err(|e| {
        ScheduleError::Invalid(format!("cron expression `{expr}` is invalid ({e})"))
    })?;
    // One hour of slack: a daily cron is 23 hours apart on the night clocks spring forward.
    let threshold = min.saturating_sub(HOUR);
    let start: DateTime<Utc> = DateTime::from_timestamp(1_704_067_200, 0) // 2024-01-01T00:00Z
        .unwrap_or_default();
    let end = start + chrono::Duration::days(CRON_WALK_DAYS);
    let Some(mut prev) = cron_next(&cron, start, tz) else {
        return Err(ScheduleError::Invalid(format!(
            "cron expression `{expr}` never fires"
        )));
    };
    while prev < end {
        let Some(next) = cron_next(&cron, prev, tz) else {
            break;
        };
        let gap = (next - prev).to_std().unwrap_or_default();
        if gap < threshold {
            return Err(ScheduleError::TooFrequent(format!(
                "`{}` would run twice within {} (for example at {} and {}); backups run at most \
                 once every {} — use {}",
                schedule.canonical(),
                human(gap),
                prev.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z"),
                next.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z"),
                human(min),
                suggestion(min)
            )));
        }
        prev = next;
    }
    Ok(())
}

/// What to write instead, given the minimum interval.
fn suggestion(min: Duration) -> String {
    if min <= DAY {
        "`daily` (optionally `daily at 03:00`)".to_string()
    } else {
        let days = min.as_secs().div_ceil(DAY.as_secs());
        format!("`every {days} days`")
    }
}

/// `30 minutes`, `12 hours`, `1 hour 30 minutes`, `2 days`.
pub(super) fn human(d: Duration) -> String {
    fn unit(n: u64, one: &str) -> String {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {one}s")
        }
    }
    let mins = d.as_secs() / 60;
    // Up to two days read better in hours ("36 hours" rather than "1 day 12 hours").
    let (days, hours, minutes) = if mins < 48 * 60 {
        (0, mins / 60, mins % 60)
    } else {
        (mins / 1440, (mins / 60) % 24, mins % 60)
    };
    let parts: Vec<String> = [(days, "day"), (hours, "hour"), (minutes, "minute")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, name)| unit(n, name))
        .collect();
    if parts.is_empty() {
        unit(d.as_secs(), "second")
    } else {
        parts.join(" ")
    }
}
