//! Turning a job's schedule text into validated schedules and next run times.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ghbs_core::{parse_timezone, spread_offset, Schedule, ScheduleError};

/// A schedule that passed every check, with its timezone.
pub struct Plan {
    pub schedule: Schedule,
    pub tz: chrono_tz::Tz,
}

impl Plan {
    /// Parse and check a schedule and timezone as a user sent them. The error says what is
    /// wrong in the user's words; the HTTP layer maps it to a status (`ApiError: From`).
    pub fn parse(
        schedule: &str,
        timezone: &str,
        min_interval: Duration,
    ) -> Result<Plan, ScheduleError> {
        if schedule.len() > 200 {
            return Err(ScheduleError::Invalid("schedule is too long".into()));
        }
        let tz = parse_timezone(timezone)?;
        let schedule = Schedule::parse(schedule)?;
        schedule.validate_interval(tz, min_interval)?;
        Ok(Plan { schedule, tz })
    }

    /// The plan of a stored job (the store parsed its schedule and timezone when it read the
    /// row). No interval check: it walks a year of cron fire times, which the scheduler must not
    /// pay after every run, and a later change of `--min-interval-hours` must not strand
    /// existing jobs.
    pub fn of(job: &ghbs_store::JobRow) -> Plan {
        Plan {
            schedule: job.schedule.clone(),
            tz: job.timezone,
        }
    }

    /// Next fire time strictly after `after` for the job identified by `spread_key`.
    pub fn next_after(
        &self,
        after: DateTime<Utc>,
        anchor: DateTime<Utc>,
        spread_key: i64,
    ) -> DateTime<Utc> {
        self.schedule
            .next_after(after, self.tz, anchor, spread_offset(spread_key))
    }
}

/// The stable key that spreads a job without a time over the day. Derived from the owner and
/// target rather than the row id so that it is known before the row exists.
pub fn spread_key(user_id: i64, target: &str) -> i64 {
    // FNV-1a: tiny, stable across versions and platforms (std's hasher is neither).
    let mut h: u64 = 0xcbf29ce484222325;
    for b in user_id.to_le_bytes().iter().chain(target.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h as i64
}

/// Whether the job's backup is stale at `now` ([`ghbs_core::backup_is_stale`]: no success for
/// twice the schedule's interval, measured from the last success or, failing one, from the
/// job's creation). The one definition behind `jobs`' STALE flag and the `stale` notification.
pub fn is_stale(
    job: &ghbs_store::JobRow,
    last_success_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> bool {
    let plan = Plan::of(job);
    let basis = last_success_at.unwrap_or(job.created_at);
    let offset = spread_offset(spread_key(job.user_id, &job.target));
    let interval =
        ghbs_core::schedule_interval(&plan.schedule, plan.tz, basis, job.created_at, offset);
    ghbs_core::backup_is_stale(last_success_at, job.created_at, interval, now)
}
