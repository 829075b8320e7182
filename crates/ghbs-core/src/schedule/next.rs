//! Fire-time computation in a timezone, with explicit rules for DST gaps and overlaps.

use std::time::Duration;

use chrono::{
    DateTime, Datelike, Days, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc,
};
use chrono_tz::Tz;

use super::Schedule;

/// Used only if a date computation overflows chrono's range or a cron expression that never fires
/// was built without `parse`: the job is then pushed a year out rather than spinning.
fn fallback(after: DateTime<Utc>) -> DateTime<Utc> {
    after
        .checked_add_signed(chrono::Duration::days(366))
        .unwrap_or(after)
}

pub(super) fn next_after(
    schedule: &Schedule,
    after: DateTime<Utc>,
    tz: Tz,
    anchor: DateTime<Utc>,
    spread: Duration,
) -> DateTime<Utc> {
    match schedule {
        Schedule::Cron(expr) => match croner::Cron::new(expr).parse() {
            Ok(cron) => cron_next(&cron, after, tz),
            Err(_) => None,
        },
        _ => builtin_next(schedule, after, tz, anchor, spread),
    }
    .unwrap_or_else(|| fallback(after))
}

/// The spread as a time of day; durations of a day or more wrap around.
fn spread_time(spread: Duration) -> NaiveTime {
    let secs = (spread.as_secs() % 86_400) as u32;
    NaiveTime::from_num_seconds_from_midnight_opt(secs, 0).unwrap_or(NaiveTime::MIN)
}

fn builtin_next(
    schedule: &Schedule,
    after: DateTime<Utc>,
    tz: Tz,
    anchor: DateTime<Utc>,
    spread: Duration,
) -> Option<DateTime<Utc>> {
    let (at, matcher): (Option<NaiveTime>, DateMatcher) = match *schedule {
        Schedule::Daily { at } => (at, DateMatcher::Daily),
        Schedule::Weekly { day, at } => (at, DateMatcher::Weekly(day)),
        Schedule::Monthly { day, at } => (at, DateMatcher::Monthly(day.clamp(1, 31))),
        Schedule::EveryDays { n, at } => (
            at,
            DateMatcher::EveryDays {
                n: n.max(1),
                anchor: anchor.with_timezone(&tz).date_naive(),
            },
        ),
        Schedule::Cron(_) => return None,
    };
    let time = at.unwrap_or_else(|| spread_time(spread));
    // Start a day early: a DST gap can push a fire time forward across `after`.
    let mut date = after
        .with_timezone(&tz)
        .date_naive()
        .checked_sub_days(Days::new(1))?;
    // Each iteration moves to a later matching date; resolved instants grow with the date, so
    // a handful of iterations always suffices. The bound only guards against bugs.
    for _ in 0..64 {
        date = matcher.first_on_or_after(date)?;
        let fire = resolve_local(&tz, date.and_time(time))?;
        if fire > after {
            return Some(fire);
        }
        date = date.succ_opt()?;
    }
    None
}

/// The dates a built-in schedule runs on.
enum DateMatcher {
    Daily,
    Weekly(chrono::Weekday),
    Monthly(u32),
    EveryDays { n: u32, anchor: NaiveDate },
}

impl DateMatcher {
    fn first_on_or_after(&self, from: NaiveDate) -> Option<NaiveDate> {
        match *self {
            DateMatcher::Daily => Some(from),
            DateMatcher::Weekly(day) => {
                let ahead =
                    (7 + day.num_days_from_monday() - from.weekday().num_days_from_monday()) % 7;
                from.checked_add_days(Days::new(u64::from(ahead)))
            }
            DateMatcher::Monthly(day) => {
                let this_month = month_day(from.year(), from.month(), day)?;
                if this_month >= from {
                    return Some(this_month);
                }
                let (y, m) = if from.month() == 12 {
                    (from.year() + 1, 1)
                } else {
                    (from.year(), from.month() + 1)
                };
                month_day(y, m, day)
            }
            DateMatcher::EveryDays { n, anchor } => {
                let n = i64::from(n);
                let behind = (from - anchor).num_days().rem_euclid(n);
                let ahead = if behind == 0 { 0 } else { n - behind };
                from.checked_add_days(Days::new(ahead as u64))
            }
        }
    }
}

/// Day `day` of the month, or the month's last day if it is shorter.
pub(super) fn month_day(year: i32, month: u32, day: u32) -> Option<NaiveDate> {
    (1..=day)
        .rev()
        .find_map(|d| NaiveDate::from_ymd_opt(year, month, d))
}

/// Maps a local wall-clock time to an instant: in a DST gap, the first instant after the gap; in
/// an overlap, the earlier of the two instants.
pub(super) fn resolve_local(tz: &Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => Some(a.min(b).with_timezone(&Utc)),
        LocalResult::None => {
            // Transitions in the tz database fall on whole minutes, so stepping by minutes from
            // the start of the minute finds the exact instant the gap ends. Gaps are at most a
            // day (Samoa skipped 2011-12-30).
            let start = local.date().and_hms_opt(
                chrono::Timelike::hour(&local),
                chrono::Timelike::minute(&local),
                0,
            )?;
            (1..=48 * 60).find_map(|m| {
                let probe = start.checked_add_signed(chrono::Duration::minutes(m))?;
                match tz.from_local_datetime(&probe) {
                    LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
                    LocalResult::Ambiguous(a, b) => Some(a.min(b).with_timezone(&Utc)),
                    LocalResult::None => None,
                }
            })
        }
    }
}

/// The first cron fire strictly after `after`, in `tz`.
///
/// croner searches in local wall-clock time and resolves overlaps to the earlier instant, so a
/// match inside an overlap can lie before `after`; the cursor then moves past that wall-clock time
/// and searches again.
pub(super) fn cron_next(
    cron: &croner::Cron,
    after: DateTime<Utc>,
    tz: Tz,
) -> Option<DateTime<Utc>> {
    let mut cursor = after.with_timezone(&tz);
    for _ in 0..2048 {
        let fire = cron.find_next_occurrence(&cursor, false).ok()?;
        if fire.with_timezone(&Utc) > after {
            return Some(fire.with_timezone(&Utc));
        }
        cursor = fire;
    }
    None
}
