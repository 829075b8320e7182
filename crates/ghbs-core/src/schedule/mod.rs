//! When a job runs: a small human grammar (`daily at 03:00`, `weekly on monday`, ...) or a
//! five-field cron expression, always read in the job's IANA timezone.
//!
//! A backup runs at most once a day per job, so this module refuses anything that could fire more
//! often, with a message that says so and suggests `daily`, instead of silently clamping it.

mod interval;
mod next;
#[cfg(test)]
mod next_tests;
mod parse;
#[cfg(test)]
mod parse_tests;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{NaiveTime, Weekday};
use chrono_tz::Tz;
use sha2::{Digest, Sha256};

/// A parsed schedule. `at: None` means "the job's spread time of day" (see [`spread_offset`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Schedule {
    Daily {
        at: Option<NaiveTime>,
    },
    Weekly {
        day: Weekday,
        at: Option<NaiveTime>,
    },
    /// `day` is 1..=31; in shorter months the job runs on the month's last day.
    Monthly {
        day: u32,
        at: Option<NaiveTime>,
    },
    /// Every `n` days (n >= 1), counted from the local date the job was created.
    EveryDays {
        n: u32,
        at: Option<NaiveTime>,
    },
    /// Five cron fields (minute hour day-of-month month day-of-week), lower case, single spaces,
    /// read in the job's timezone.
    Cron(String),
}

/// Why a schedule or timezone was refused. Each message is meant to be shown to a person as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Not a schedule at all; the message lists the accepted forms.
    #[error("{0}")]
    Invalid(String),
    /// A schedule that would run more than once in the allowed interval.
    #[error("{0}")]
    TooFrequent(String),
    #[error("{0}")]
    UnknownTimezone(String),
}

/// The one-line summary of the grammar, used in error messages.
pub(crate) const ACCEPTED: &str = "`daily`, `daily at HH:MM`, `weekly on monday [at HH:MM]`, \
     `monthly on 15 [at HH:MM]`, `every N days [at HH:MM]`, or `cron M H DOM MON DOW`";

impl Schedule {
    /// Parses the grammar described in the module documentation (case-insensitive, any spacing).
    pub fn parse(input: &str) -> Result<Schedule, ScheduleError> {
        parse::parse(input)
    }

    /// The normal form, e.g. `weekly on monday at 03:00`. `Schedule::parse(&s.canonical())`
    /// gives back `s`.
    pub fn canonical(&self) -> String {
        fn at_suffix(at: &Option<NaiveTime>) -> String {
            at.map(|t| format!(" at {}", t.format("%H:%M")))
                .unwrap_or_default()
        }
        match self {
            Schedule::Daily { at } => format!("daily{}", at_suffix(at)),
            Schedule::Weekly { day, at } => {
                format!("weekly on {}{}", weekday_name(*day), at_suffix(at))
            }
            Schedule::Monthly { day, at } => format!("monthly on {day}{}", at_suffix(at)),
            Schedule::EveryDays { n, at } => format!("every {n} days{}", at_suffix(at)),
            Schedule::Cron(expr) => format!("cron {expr}"),
        }
    }

    /// Refuses any schedule that could fire twice within `min` (the server's default is 24 hours).
    ///
    /// Built-in forms are judged by their shortest nominal gap (a month can be 28 days); cron
    /// expressions are walked in `tz` over more than a year, with one hour of slack so that a
    /// daily cron is not refused on the night clocks change.
    pub fn validate_interval(&self, tz: Tz, min: Duration) -> Result<(), ScheduleError> {
        interval::validate(self, tz, min)
    }

    /// The first fire time strictly after `after`.
    ///
    /// `anchor` is the job's creation time (`every N days` counts days from its local date);
    /// `spread` is the time of day used when the schedule names none (see [`spread_offset`]).
    /// A local time skipped by a DST change runs at the first instant after the gap; a local time
    /// that happens twice runs at the earlier instant.
    pub fn next_after(
        &self,
        after: chrono::DateTime<chrono::Utc>,
        tz: Tz,
        anchor: chrono::DateTime<chrono::Utc>,
        spread: Duration,
    ) -> chrono::DateTime<chrono::Utc> {
        next::next_after(self, after, tz, anchor, spread)
    }

    /// Whether the schedule names its time of day (cron always does); if not, the spread applies.
    pub fn has_time(&self) -> bool {
        match self {
            Schedule::Daily { at }
            | Schedule::Weekly { at, .. }
            | Schedule::Monthly { at, .. }
            | Schedule::EveryDays { at, .. } => at.is_some(),
            Schedule::Cron(_) => true,
        }
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Schedule::parse(s)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

impl TryFrom<String> for Schedule {
    type Error = ScheduleError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Schedule::parse(&s)
    }
}

impl From<Schedule> for String {
    fn from(s: Schedule) -> String {
        s.canonical()
    }
}

pub(crate) fn weekday_name(day: Weekday) -> &'static str {
    match day {
        Weekday::Mon => "monday",
        Weekday::Tue => "tuesday",
        Weekday::Wed => "wednesday",
        Weekday::Thu => "thursday",
        Weekday::Fri => "friday",
        Weekday::Sat => "saturday",
        Weekday::Sun => "sunday",
    }
}

/// Parses an IANA timezone name (`Europe/Berlin`, `UTC`); letter case is forgiven.
pub fn parse_timezone(name: &str) -> Result<Tz, ScheduleError> {
    let name = name.trim();
    let hint = "use an IANA name such as `Europe/Berlin`, `America/New_York` or `UTC`";
    if name.is_empty() {
        return Err(ScheduleError::UnknownTimezone(format!(
            "the timezone is empty; {hint}"
        )));
    }
    if let Ok(tz) = name.parse::<Tz>() {
        return Ok(tz);
    }
    chrono_tz::TZ_VARIANTS
        .iter()
        .copied()
        .find(|tz| tz.name().eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            ScheduleError::UnknownTimezone(format!(
                "unknown timezone `{}`; {hint}",
                parse::quote(name)
            ))
        })
}

/// A stable time of day in [0, 24h), at minute granularity, derived from the job id.
///
/// SHA-256 spreads consecutive ids evenly, so thousands of jobs without a time do not all start
/// at midnight, and a job keeps its slot across restarts and edits.
pub fn spread_offset(job_id: i64) -> Duration {
    let mut hasher = Sha256::new();
    hasher.update(b"ghbs-spread-offset:");
    hasher.update(job_id.to_be_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let minutes = u64::from_be_bytes(first) % (24 * 60);
    Duration::from_secs(minutes * 60)
}
