//! Tests of the grammar, canonical forms, timezones and the spread.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, NaiveTime, Weekday};
use chrono_tz::Tz;

use super::*;

const DAY: Duration = Duration::from_secs(86_400);

fn hm(h: u32, m: u32) -> Option<NaiveTime> {
    NaiveTime::from_hms_opt(h, m, 0)
}

fn ok(input: &str) -> Schedule {
    Schedule::parse(input).unwrap_or_else(|e| panic!("`{input}` refused: {e}"))
}

fn berlin() -> Tz {
    "Europe/Berlin".parse().unwrap()
}

fn new_york() -> Tz {
    "America/New_York".parse().unwrap()
}

#[test]
fn parses_every_grammar_form() {
    let cases = [
        ("daily", Schedule::Daily { at: None }),
        ("daily at 03:00", Schedule::Daily { at: hm(3, 0) }),
        ("daily 3:05", Schedule::Daily { at: hm(3, 5) }),
        ("  DAILY   At  23:59 ", Schedule::Daily { at: hm(23, 59) }),
        ("every day", Schedule::Daily { at: None }),
        ("every day at 00:00", Schedule::Daily { at: hm(0, 0) }),
        (
            "weekly on monday",
            Schedule::Weekly {
                day: Weekday::Mon,
                at: None,
            },
        ),
        (
            "weekly on Sun at 04:30",
            Schedule::Weekly {
                day: Weekday::Sun,
                at: hm(4, 30),
            },
        ),
        (
            "weekly thursday 12:00",
            Schedule::Weekly {
                day: Weekday::Thu,
                at: hm(12, 0),
            },
        ),
        (
            "every friday at 18:00",
            Schedule::Weekly {
                day: Weekday::Fri,
                at: hm(18, 0),
            },
        ),
        ("monthly on 15", Schedule::Monthly { day: 15, at: None }),
        (
            "monthly on the 1st at 02:00",
            Schedule::Monthly {
                day: 1,
                at: hm(2, 0),
            },
        ),
        ("Monthly On 31", Schedule::Monthly { day: 31, at: None }),
        ("every 3 days", Schedule::EveryDays { n: 3, at: None }),
        ("every 1 day", Schedule::EveryDays { n: 1, at: None }),
        (
            "every 14 days at 06:15",
            Schedule::EveryDays {
                n: 14,
                at: hm(6, 15),
            },
        ),
        ("cron 0 3 * * *", Schedule::Cron("0 3 * * *".into())),
        (
            "CRON  0  3  *  *  MON",
            Schedule::Cron("0 3 * * mon".into()),
        ),
        ("0 4 1 * *", Schedule::Cron("0 4 1 * *".into())),
    ];
    for (input, want) in cases {
        assert_eq!(ok(input), want, "input `{input}`");
    }
    let days = [
        ("mon", Weekday::Mon),
        ("tuesday", Weekday::Tue),
        ("tue", Weekday::Tue),
        ("wednesday", Weekday::Wed),
        ("wed", Weekday::Wed),
        ("thu", Weekday::Thu),
        ("friday", Weekday::Fri),
        ("saturday", Weekday::Sat),
        ("sat", Weekday::Sat),
        ("sunday", Weekday::Sun),
    ];
    for (name, day) in days {
        assert_eq!(
            ok(&format!("weekly on {name}")),
            Schedule::Weekly { day, at: None }
        );
    }
}

#[test]
fn canonical_round_trips() {
    for input in [
        "daily",
        "daily at 7:05",
        "every day at 22:00",
        "weekly on tue",
        "weekly on saturday at 01:00",
        "monthly on 31 at 23:59",
        "monthly on 2nd",
        "every 1 days",
        "every 10 days at 10:10",
        "cron 0 3 * * *",
        "cron 15 4 1-7 * MON",
        "0 3 * * *",
    ] {
        let s = ok(input);
        let canonical = s.canonical();
        assert_eq!(ok(&canonical), s, "`{input}` -> `{canonical}`");
        assert_eq!(s.to_string(), canonical);
        assert_eq!(canonical.parse::<Schedule>().unwrap(), s);
    }
    assert_eq!(ok("daily at 7:05").canonical(), "daily at 07:05");
    assert_eq!(
        ok("Weekly On SUN At 4:00").canonical(),
        "weekly on sunday at 04:00"
    );
    assert_eq!(ok("every day").canonical(), "daily");
    assert_eq!(ok("cron  0 3 * *   *").canonical(), "cron 0 3 * * *");
}

#[test]
fn serde_uses_the_canonical_string() {
    let s = ok("weekly on mon at 03:00");
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(json, "\"weekly on monday at 03:00\"");
    assert_eq!(serde_json::from_str::<Schedule>(&json).unwrap(), s);
    assert!(serde_json::from_str::<Schedule>("\"30m\"").is_err());
}

#[test]
fn has_time_only_when_named() {
    assert!(!ok("daily").has_time());
    assert!(ok("daily at 03:00").has_time());
    assert!(!ok("weekly on mon").has_time());
    assert!(!ok("monthly on 3").has_time());
    assert!(ok("every 2 days at 01:00").has_time());
    assert!(ok("cron 0 3 * * *").has_time());
}

#[test]
fn refuses_prototype_intervals_as_too_frequent() {
    for input in [
        "30m",
        "5h",
        "12h",
        "1h",
        "90s",
        "30 minutes",
        "every 30 minutes",
        "every 6 hours",
        "every hour",
        "every minute",
        "every 12h",
        "every half hour",
        "hourly",
        "HOURLY",
        "twice a day",
    ] {
        match Schedule::parse(input) {
            Err(ScheduleError::TooFrequent(msg)) => {
                assert!(msg.contains(&format!("`{input}`")), "{msg}");
                assert!(msg.contains("more than once a day"), "{msg}");
                assert!(msg.contains("`daily`"), "{msg}");
            }
            other => panic!("`{input}`: expected TooFrequent, got {other:?}"),
        }
    }
    assert_eq!(
        Schedule::parse("30m").unwrap_err().to_string(),
        "`30m` would run more than once a day; backups run at most once every 24 hours — use \
         `daily` (optionally `daily at 03:00`)"
    );
}

#[test]
fn refuses_garbage_with_a_useful_message() {
    let cases = [
        ("", "empty"),
        ("whenever", "daily at HH:MM"),
        ("sometimes at noon", "cron M H DOM MON DOW"),
        ("daily at 25:00", "not a time of day"),
        ("daily at 3", "not a time of day"),
        ("daily at 03:0", "not a time of day"),
        ("daily at", "expected `at HH:MM`"),
        ("daily at 03:00 please", "expected `at HH:MM`"),
        ("weekly", "which day"),
        ("weekly on funday", "not a day of the week"),
        ("monthly", "which day of the month"),
        ("monthly on 32", "1 to 31"),
        ("monthly on 0", "1 to 31"),
        ("every 0 days", "from 1 to"),
        ("every 99999 days", "from 1 to"),
        ("every fortnight", "daily at HH:MM"),
        ("24h", "`daily`"),
        ("every 48 hours", "`every 2 days`"),
        ("2d", "`every 2 days`"),
        ("cron * * * *", "exactly five fields"),
        ("cron 0 0 * * * *", "exactly five fields"),
        ("cron", "exactly five fields"),
        ("cron @daily", "nicknames"),
        ("cron 61 * * * *", "invalid"),
        ("cron 0 0 * 13 *", "invalid"),
        ("cron */0 * * * *", "invalid"),
        ("cron a b c d e", "invalid"),
        ("cron 0 0 30 2 *", "never fires"),
    ];
    for (input, needle) in cases {
        match Schedule::parse(input) {
            Err(ScheduleError::Invalid(msg)) => {
                assert!(msg.contains(needle), "`{input}`: `{msg}` lacks `{needle}`")
            }
            other => panic!("`{input}`: expected Invalid, got {other:?}"),
        }
    }
}

#[test]
fn long_garbage_is_not_echoed_in_full() {
    let input = "x".repeat(10_000);
    let msg = Schedule::parse(&input).unwrap_err().to_string();
    assert!(msg.len() < 400, "{}", msg.len());
}

#[test]
fn timezones() {
    assert_eq!(parse_timezone("UTC").unwrap(), Tz::UTC);
    assert_eq!(parse_timezone(" utc ").unwrap(), Tz::UTC);
    assert_eq!(parse_timezone("Europe/Berlin").unwrap(), berlin());
    assert_eq!(parse_timezone("america/new_york").unwrap(), new_york());
    for bad in ["Mars/Base", "", "Europe/Berlin; DROP TABLE"] {
        match parse_timezone(bad) {
            Err(ScheduleError::UnknownTimezone(msg)) => {
                assert!(msg.contains("IANA"), "{msg}");
            }
            other => panic!("`{bad}`: {other:?}"),
        }
    }
    let msg = parse_timezone("Mars/Base").unwrap_err().to_string();
    assert!(msg.contains("`Mars/Base`"), "{msg}");
}

#[test]
fn spread_offset_is_stable_and_spread() {
    assert_eq!(spread_offset(42), spread_offset(42));
    let mut minutes = HashSet::new();
    for id in 0..10_000 {
        let d = spread_offset(id);
        assert!(d < DAY);
        assert_eq!(d.as_secs() % 60, 0);
        minutes.insert(d.as_secs() / 60);
    }
    assert!(minutes.len() > 1000, "{}", minutes.len());
    assert!(spread_offset(-1) < DAY);
}

/// Odd cron fields (empty lists, `L` where it means nothing, reversed ranges, zero steps) must be
/// refused or accepted without panicking, and accepted ones must be usable. Before `fires_at_all`
/// some of these made croner search until the year 5000.
#[test]
fn odd_cron_fields_never_panic_or_search_forever() {
    let atoms = [
        "*",
        "*/0",
        "0-",
        "-1",
        "5-1",
        "1#9",
        "L",
        "5L",
        "15W",
        "0/",
        "/5",
        "1,",
        ",",
        "99999999999",
        "?",
        "#",
        "1-2/0",
        "jan-dec",
        "sun-sat",
        "7",
        "8",
        "0#1",
        "LW",
        "w",
        "1-7/2",
        "32",
        "-",
        "1--2",
        "29",
        "31",
        "2",
    ];
    let new_york: Tz = "America/New_York".parse().unwrap();
    let after = DateTime::parse_from_rfc3339("2025-06-01T00:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    for a in atoms {
        for b in atoms {
            for pos in 0..5 {
                let mut f = ["0", "3", "*", "*", "*"];
                f[pos] = a;
                if pos < 4 {
                    f[pos + 1] = b;
                }
                let input = format!("cron {}", f.join(" "));
                if let Ok(s) = Schedule::parse(&input) {
                    let _ = s.validate_interval(new_york, DAY);
                    let next = s.next_after(after, new_york, after, DAY);
                    assert!(next > after, "`{input}`");
                }
            }
        }
    }
}
