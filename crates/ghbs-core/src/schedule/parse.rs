//! The schedule grammar, and recognition of the old prototype's interval strings (`30m`,
//! `every 6 hours`, `hourly`) so that they are refused with a message that explains why.

use chrono::{NaiveTime, Weekday};

use super::{Schedule, ScheduleError, ACCEPTED};

/// `every N days` beyond ten years is surely a typo.
const MAX_EVERY_DAYS: u32 = 3650;

const TOO_OFTEN_TAIL: &str = "backups run at most once every 24 hours — use `daily` \
                              (optionally `daily at 03:00`)";

pub(super) fn parse(input: &str) -> Result<Schedule, ScheduleError> {
    let original = input.trim();
    let lowered = original.to_lowercase();
    let tokens: Vec<&str> = lowered.split_whitespace().collect();
    let invalid = || {
        ScheduleError::Invalid(if original.is_empty() {
            format!("the schedule is empty; use {ACCEPTED}")
        } else {
            format!("`{}` is not a schedule; use {ACCEPTED}", quote(original))
        })
    };
    let too_often = || {
        ScheduleError::TooFrequent(format!(
            "`{}` would run more than once a day; {TOO_OFTEN_TAIL}",
            quote(original)
        ))
    };

    let Some((&first, rest)) = tokens.split_first() else {
        return Err(invalid());
    };
    match first {
        "daily" => Ok(Schedule::Daily {
            at: parse_at(rest, original)?,
        }),
        "weekly" => parse_weekly(rest, original),
        "monthly" => parse_monthly(rest, original),
        "every" => parse_every(rest, original, too_often, invalid),
        "cron" => parse_cron(rest),
        "hourly" | "minutely" | "secondly" | "half-hourly" | "twice" | "@hourly" | "@every" => {
            Err(too_often())
        }
        _ => {
            // A bare five-field cron expression, as people copy it from crontab.
            if tokens.len() == 5 && first.starts_with(|c: char| c.is_ascii_digit() || c == '*') {
                if let Ok(s) = parse_cron(&tokens) {
                    return Ok(s);
                }
            }
            match interval_of(&tokens) {
                Some(Interval::SubDaily) => Err(too_often()),
                Some(Interval::Days(n)) => Err(days_hint(original, n)),
                None => Err(invalid()),
            }
        }
    }
}

/// Shortens and sanitises user input before it is echoed in a message.
pub(crate) fn quote(s: &str) -> String {
    const MAX: usize = 60;
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if clean.chars().count() > MAX {
        let cut: String = clean.chars().take(MAX).collect();
        format!("{cut}…")
    } else {
        clean
    }
}

fn days_hint(original: &str, days: u64) -> ScheduleError {
    let suggestion = if days == 1 {
        "`daily`".to_string()
    } else {
        format!("`every {days} days`")
    };
    ScheduleError::Invalid(format!(
        "`{}` is not a schedule; write {suggestion} instead (accepted forms: {ACCEPTED})",
        quote(original)
    ))
}

enum Interval {
    /// Shorter than a day (or not a whole number of days but less than one).
    SubDaily,
    /// A whole number of days.
    Days(u64),
}

/// Recognises `30m`, `5h`, `90s`, `2d`, `30 minutes`, `6 hours`, `minute`, `hour`, `half hour`.
fn interval_of(tokens: &[&str]) -> Option<Interval> {
    let (number, unit) = match tokens {
        [one] => {
            let split = one.find(|c: char| !c.is_ascii_digit()).unwrap_or(one.len());
            let (n, u) = one.split_at(split);
            (if n.is_empty() { "1" } else { n }, u)
        }
        ["half", unit] if unit_seconds(unit) == Some(3600) => return Some(Interval::SubDaily),
        ["a" | "an", unit] => ("1", *unit),
        [n, unit] => (*n, *unit),
        _ => return None,
    };
    let seconds = unit_seconds(unit)?;
    let n: u64 = number.parse().ok()?;
    let total = n.saturating_mul(seconds);
    if total < 86_400 {
        Some(Interval::SubDaily)
    } else {
        Some(Interval::Days(total.div_ceil(86_400)))
    }
}

fn unit_seconds(unit: &str) -> Option<u64> {
    Some(match unit {
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
        "d" | "day" | "days" => 86_400,
        _ => return None,
    })
}

/// `[at] HH:MM` or nothing.
fn parse_at(rest: &[&str], original: &str) -> Result<Option<NaiveTime>, ScheduleError> {
    let time = match rest {
        [] => return Ok(None),
        ["at", t] => t,
        [t] if t.contains(':') => t,
        _ => {
            return Err(ScheduleError::Invalid(format!(
                "could not read the time in `{}`: expected `at HH:MM` (24-hour clock), e.g. \
                 `daily at 03:00`",
                quote(original)
            )))
        }
    };
    parse_time(time).map(Some)
}

fn parse_time(t: &str) -> Result<NaiveTime, ScheduleError> {
    let bad = || {
        ScheduleError::Invalid(format!(
            "`{}` is not a time of day: expected HH:MM on a 24-hour clock, from 00:00 to 23:59",
            quote(t)
        ))
    };
    let (h, m) = t.split_once(':').ok_or_else(bad)?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || h.len() > 2 || !digits(m) || m.len() != 2 {
        return Err(bad());
    }
    let (h, m) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    NaiveTime::from_hms_opt(h, m, 0).ok_or_else(bad)
}

fn parse_weekday(s: &str) -> Option<Weekday> {
    Some(match s {
        "monday" | "mon" => Weekday::Mon,
        "tuesday" | "tue" => Weekday::Tue,
        "wednesday" | "wed" => Weekday::Wed,
        "thursday" | "thu" => Weekday::Thu,
        "friday" | "fri" => Weekday::Fri,
        "saturday" | "sat" => Weekday::Sat,
        "sunday" | "sun" => Weekday::Sun,
        _ => return None,
    })
}

fn parse_weekly(rest: &[&str], original: &str) -> Result<Schedule, ScheduleError> {
    let rest = rest.strip_prefix(&["on"]).unwrap_or(rest);
    let Some((day, rest)) = rest.split_first() else {
        return Err(ScheduleError::Invalid(
            "say which day a weekly backup runs, e.g. `weekly on monday` or `weekly on sun at 03:00`"
                .into(),
        ));
    };
    let day = parse_weekday(day).ok_or_else(|| {
        ScheduleError::Invalid(format!(
            "`{}` is not a day of the week: use `monday`..`sunday` or `mon`..`sun`",
            quote(day)
        ))
    })?;
    Ok(Schedule::Weekly {
        day,
        at: parse_at(rest, original)?,
    })
}

fn parse_monthly(rest: &[&str], original: &str) -> Result<Schedule, ScheduleError> {
    let rest = rest.strip_prefix(&["on"]).unwrap_or(rest);
    let rest = rest.strip_prefix(&["the"]).unwrap_or(rest);
    let Some((day_token, rest)) = rest.split_first() else {
        return Err(ScheduleError::Invalid(
            "say which day of the month, e.g. `monthly on 1` or `monthly on 15 at 03:00`".into(),
        ));
    };
    let number = ["st", "nd", "rd", "th"]
        .iter()
        .find_map(|suffix| day_token.strip_suffix(suffix))
        .unwrap_or(day_token);
    let day = number
        .parse::<u32>()
        .ok()
        .filter(|d| (1..=31).contains(d))
        .ok_or_else(|| {
            ScheduleError::Invalid(format!(
                "`{}` is not a day of the month: use a number from 1 to 31 (in shorter months a \
                 day past the end means the last day)",
                quote(day_token)
            ))
        })?;
    Ok(Schedule::Monthly {
        day,
        at: parse_at(rest, original)?,
    })
}

fn parse_every(
    rest: &[&str],
    original: &str,
    too_often: impl Fn() -> ScheduleError,
    invalid: impl Fn() -> ScheduleError,
) -> Result<Schedule, ScheduleError> {
    match rest {
        ["day", tail @ ..] => {
            return Ok(Schedule::Daily {
                at: parse_at(tail, original)?,
            })
        }
        [n, "day" | "days", tail @ ..] if n.bytes().all(|b| b.is_ascii_digit()) => {
            let n = n
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_EVERY_DAYS).contains(n))
                .ok_or_else(|| {
                    ScheduleError::Invalid(format!(
                        "`every N days` needs N from 1 to {MAX_EVERY_DAYS}, not `{}`",
                        quote(n)
                    ))
                })?;
            return Ok(Schedule::EveryDays {
                n,
                at: parse_at(tail, original)?,
            });
        }
        _ => {}
    }
    // `every monday [at HH:MM]` reads naturally as a weekly schedule.
    if let [day, tail @ ..] = rest {
        if let Some(day) = parse_weekday(day) {
            return Ok(Schedule::Weekly {
                day,
                at: parse_at(tail, original)?,
            });
        }
    }
    match interval_of(rest) {
        Some(Interval::SubDaily) => Err(too_often()),
        Some(Interval::Days(n)) => Err(days_hint(original, n)),
        None => Err(invalid()),
    }
}

fn parse_cron(fields: &[&str]) -> Result<Schedule, ScheduleError> {
    let syntax = "M H DOM MON DOW, e.g. `cron 0 3 * * *` for 03:00 every day";
    if fields.iter().any(|f| f.contains('@')) {
        return Err(ScheduleError::Invalid(format!(
            "cron nicknames such as `@daily` are not accepted; write the five fields: {syntax}"
        )));
    }
    if fields.len() != 5 {
        return Err(ScheduleError::Invalid(format!(
            "a cron expression has exactly five fields ({syntax}; no seconds field), but {} \
             were given",
            fields.len()
        )));
    }
    let expr = fields.join(" ");
    let cron = croner::Cron::new(&expr).parse().map_err(|e| {
        ScheduleError::Invalid(format!(
            "cron expression `{}` is invalid ({e}); expected {syntax}",
            quote(&expr)
        ))
    })?;
    // A pattern such as `0 0 30 2 *` (or `L` in the minute field) parses but never fires; croner
    // would then search until the year 5000, so this is checked here, cheaply, instead.
    if !fires_at_all(&cron) {
        return Err(ScheduleError::Invalid(format!(
            "cron expression `{}` never fires (no time of day or no date matches it)",
            quote(&expr)
        )));
    }
    Ok(Schedule::Cron(expr))
}

/// Whether some minute, hour and date match. Dates are scanned over eight years, which covers the
/// leap-year cycle and every weekday/day-of-month alignment that matters for five-field cron.
fn fires_at_all(cron: &croner::Cron) -> bool {
    let p = &cron.pattern;
    let any = |range: std::ops::Range<u32>, f: &dyn Fn(u32) -> bool| range.into_iter().any(f);
    let minute = any(0..60, &|m| p.minute_match(m).unwrap_or(false));
    let hour = any(0..24, &|h| p.hour_match(h).unwrap_or(false));
    if !(minute && hour) {
        return false;
    }
    let Some(start) = chrono::NaiveDate::from_ymd_opt(2024, 1, 1) else {
        return false;
    };
    start.iter_days().take(8 * 366).any(|d| {
        use chrono::Datelike;
        p.month_match(d.month()).unwrap_or(false)
            && p.day_match(d.year(), d.month(), d.day()).unwrap_or(false)
    })
}
