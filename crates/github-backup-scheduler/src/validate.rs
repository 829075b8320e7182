//! Early, local checks of what the user typed, so that a mistake is explained before any network
//! round trip (and without a server at all). The server validates everything again; these checks
//! exist for clear messages, not for safety.

use std::str::FromStr;

use crate::exit::{CliError, CliResult};

/// Validates a job target (`owner/name`, `owner`, or a GitHub URL) and returns it trimmed.
pub fn target(input: &str) -> CliResult<String> {
    let input = input.trim();
    ghbs_core::Target::parse_syntax(input).map_err(|e| {
        let msg = e.to_string();
        if msg.contains("owner/name") {
            CliError::usage(msg)
        } else {
            CliError::usage(format!(
                "{msg}; use `owner/name`, a GitHub URL or an account name"
            ))
        }
    })?;
    Ok(input.to_string())
}

/// Validates `owner/name` for `fetch --repo` (one repository of an account job).
pub fn repo_name(input: &str) -> CliResult<String> {
    let input = input.trim();
    let bad = || {
        CliError::usage(format!(
            "`{input}` is not a repository name: use owner/name"
        ))
    };
    if input.split('/').count() != 2 {
        return Err(bad());
    }
    ghbs_core::Target::parse(input).map_err(|_| bad())?;
    Ok(input.to_string())
}

/// An account name (`owner`, GitHub's alphabet), e.g. the target owner of a restore.
pub fn owner_name(input: &str) -> CliResult<String> {
    let input = input.trim();
    match ghbs_core::Target::parse(input) {
        Ok(t) if t.kind() == ghbs_wire::TargetKind::Account && t.canonical() == input => {
            Ok(input.to_string())
        }
        _ => Err(CliError::usage(format!(
            "`{input}` is not an account name: use letters, digits and '-', such as my-org"
        ))),
    }
}

/// Validates an IANA timezone name.
pub fn timezone(input: &str) -> CliResult<String> {
    ghbs_core::parse_timezone(input)
        .map(|tz| tz.name().to_string())
        .map_err(|e| CliError::usage(e.to_string()))
}

/// The user's own timezone (IANA name), or UTC when the system does not say.
pub fn local_timezone() -> String {
    iana_time_zone::get_timezone()
        .ok()
        .filter(|tz| chrono_tz::Tz::from_str(tz).is_ok())
        .unwrap_or_else(|| "UTC".to_string())
}

/// Validates `HH:MM` (24-hour clock) and returns it zero-padded.
pub fn time_of_day(input: &str) -> CliResult<String> {
    let input = input.trim();
    let bad = || {
        CliError::usage(format!(
            "`{input}` is not a time of day: use HH:MM on a 24-hour clock, such as 03:30"
        ))
    };
    let (h, m) = input.split_once(':').ok_or_else(bad)?;
    let h: u32 = parse_digits(h).ok_or_else(bad)?;
    let m: u32 = parse_digits(m).ok_or_else(bad)?;
    if h > 23 || m > 59 || input.split(':').nth(1).map(str::len) != Some(2) {
        return Err(bad());
    }
    Ok(format!("{h:02}:{m:02}"))
}

fn parse_digits(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 2 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

const DAYS: [(&str, &str); 7] = [
    ("monday", "mon"),
    ("tuesday", "tue"),
    ("wednesday", "wed"),
    ("thursday", "thu"),
    ("friday", "fri"),
    ("saturday", "sat"),
    ("sunday", "sun"),
];

/// Names of the days of the week, as offered by the interactive menu.
pub fn weekday_names() -> Vec<&'static str> {
    DAYS.iter().map(|(long, _)| *long).collect()
}

/// Validates a day of the week (`monday`, `mon`, any case) and returns its full lowercase name.
pub fn weekday(input: &str) -> CliResult<String> {
    let lower = input.trim().to_ascii_lowercase();
    DAYS.iter()
        .find(|(long, short)| lower == *long || lower == *short)
        .map(|(long, _)| long.to_string())
        .ok_or_else(|| {
            CliError::usage(format!(
                "`{}` is not a day of the week: use monday … sunday (or mon … sun)",
                input.trim()
            ))
        })
}

/// Validates a day of the month (1 to 31).
pub fn day_of_month(input: &str) -> CliResult<u32> {
    match input.trim().parse::<u32>() {
        Ok(n) if (1..=31).contains(&n) => Ok(n),
        _ => Err(CliError::usage(format!(
            "`{}` is not a day of the month: use a number from 1 to 31",
            input.trim()
        ))),
    }
}

/// The error for any schedule that could fire more than once in 24 hours.
pub fn too_frequent(input: &str) -> CliError {
    CliError::usage(format!(
        "a backup runs at most once a day per job, and `{input}` would run more often: use daily instead (for example `--daily` or `--daily 03:00`), or a cron expression with a single minute and hour such as `0 3 * * *`"
    ))
}

/// Validates a schedule in the server's grammar against the once-a-day rule in `tz`, and returns
/// its canonical form. Old-style intervals (`30m`, `hourly`) get the once-a-day answer.
pub fn schedule(text: &str, tz: &str) -> CliResult<String> {
    use ghbs_core::ScheduleError;
    let text = text.trim();
    let zone = ghbs_core::parse_timezone(tz).map_err(|e| CliError::usage(e.to_string()))?;
    let parsed = ghbs_core::Schedule::parse(text)
        .and_then(|s| {
            s.validate_interval(zone, std::time::Duration::from_secs(24 * 3600))
                .map(|()| s)
        })
        .map_err(|e| match e {
            ScheduleError::TooFrequent(_) => too_frequent(text),
            other => CliError::usage(other.to_string()),
        })?;
    Ok(parsed.canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(time_of_day("3:05").unwrap(), "03:05");
        assert_eq!(time_of_day("23:59").unwrap(), "23:59");
        for bad in ["24:00", "12:60", "12", "a:b", "1:5", "-1:00", "123:00"] {
            assert!(time_of_day(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn weekdays_and_days() {
        assert_eq!(weekday("Mon").unwrap(), "monday");
        assert_eq!(weekday("sunday").unwrap(), "sunday");
        assert!(weekday("someday").is_err());
        assert_eq!(day_of_month("31").unwrap(), 31);
        assert!(day_of_month("0").is_err());
        assert!(day_of_month("32").is_err());
    }

    #[test]
    fn more_than_daily_is_refused_with_the_daily_hint() {
        for text in [
            "cron */30 * * * *",
            "cron 0 * * * *",
            "30m",
            "every 30 minutes",
            "hourly",
        ] {
            let msg = schedule(text, "UTC").unwrap_err().to_string();
            assert!(
                msg.contains("at most once a day") && msg.contains("daily"),
                "{text}: {msg}"
            );
        }
        assert_eq!(
            schedule("cron 0 3 * * 1-5", "Europe/Paris").unwrap(),
            "cron 0 3 * * 1-5"
        );
        assert_eq!(
            schedule("Weekly on Mon", "UTC").unwrap(),
            "weekly on monday"
        );
        let msg = schedule("sometimes", "UTC").unwrap_err().to_string();
        assert!(!msg.contains("once a day"), "{msg}");
    }

    #[test]
    fn timezones() {
        assert_eq!(timezone("Europe/Paris").unwrap(), "Europe/Paris");
        assert_eq!(timezone("Mars/Olympus").unwrap_err().exit_code(), 2);
        assert!(chrono_tz::Tz::from_str(&local_timezone()).is_ok());
    }
}
