//! Tests of `validate_interval` and `next_after`, including DST transitions.

use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::*;

const DAY: Duration = Duration::from_secs(86_400);

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
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

/// `next_after` with the anchor at the Unix epoch and no spread.
fn next(s: &Schedule, after: &str, tz: Tz) -> DateTime<Utc> {
    s.next_after(utc(after), tz, utc("1970-01-01T00:00:00Z"), Duration::ZERO)
}

#[test]
fn validate_interval_accepts_daily_and_slower_at_24h() {
    for input in [
        "daily",
        "daily at 02:30",
        "weekly on mon",
        "monthly on 31",
        "every 2 days",
        "every 1 days",
        "cron 0 3 * * *",
        "cron 30 2 * * *",
        "cron 30 1 * * *",
        "cron 0 0 * * 1,2",
        "cron 0 4 1 1 *",
    ] {
        for tz in [Tz::UTC, berlin(), new_york()] {
            ok(input)
                .validate_interval(tz, DAY)
                .unwrap_or_else(|e| panic!("`{input}` in {tz}: {e}"));
        }
    }
}

#[test]
fn validate_interval_refuses_frequent_crons() {
    let cases = [
        ("cron */30 * * * *", "30 minutes"),
        ("cron 0 */12 * * *", "12 hours"),
        ("cron * * * * *", "1 minute"),
        ("cron 0 3,15 * * *", "12 hours"),
        ("cron 0 1,23 * * *", "2 hours"),
        ("cron 0 3 * * *  ", ""),
    ];
    for (input, needle) in &cases[..5] {
        match ok(input).validate_interval(berlin(), DAY) {
            Err(ScheduleError::TooFrequent(msg)) => {
                assert!(msg.contains(needle), "`{input}`: {msg}");
                assert!(msg.contains("`daily`"), "`{input}`: {msg}");
                assert!(msg.contains("24 hours"), "`{input}`: {msg}");
            }
            other => panic!("`{input}`: {other:?}"),
        }
    }
    assert!(ok(cases[5].0).validate_interval(berlin(), DAY).is_ok());
}

#[test]
fn validate_interval_honours_larger_minimums() {
    let two_days = 2 * DAY;
    match ok("daily").validate_interval(Tz::UTC, two_days) {
        Err(ScheduleError::TooFrequent(msg)) => {
            assert!(msg.contains("`every 2 days`"), "{msg}");
            assert!(msg.contains("2 days"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    assert!(ok("every 2 days")
        .validate_interval(Tz::UTC, two_days)
        .is_ok());
    assert!(ok("weekly on mon")
        .validate_interval(Tz::UTC, 7 * DAY)
        .is_ok());
    assert!(ok("weekly on mon")
        .validate_interval(Tz::UTC, 8 * DAY)
        .is_err());
    assert!(ok("monthly on 15")
        .validate_interval(Tz::UTC, 28 * DAY)
        .is_ok());
    assert!(ok("monthly on 15")
        .validate_interval(Tz::UTC, 29 * DAY)
        .is_err());
    // 29th: Feb 28 -> Mar 29 (non-leap) and Feb 29 -> Mar 29 (leap) are 29 and 29 days;
    // Jan 29 -> Feb 28 is 30; so the shortest gap is 29 days.
    assert!(ok("monthly on 29")
        .validate_interval(Tz::UTC, 29 * DAY)
        .is_ok());
    assert!(ok("monthly on 29")
        .validate_interval(Tz::UTC, 30 * DAY)
        .is_err());
    // 31st: Jan 31 -> Feb 28 is 28 days.
    assert!(ok("monthly on 31")
        .validate_interval(Tz::UTC, 29 * DAY)
        .is_err());
    assert!(ok("cron 0 0 * * 1,2")
        .validate_interval(Tz::UTC, two_days)
        .is_err());
    assert!(ok("cron 0 3 * * 1")
        .validate_interval(berlin(), 7 * DAY)
        .is_ok());
    assert!(ok("cron 0 3 */2 * *")
        .validate_interval(Tz::UTC, two_days)
        .is_err());
}

#[test]
fn next_after_daily_crosses_dst_in_berlin() {
    let s = ok("daily at 02:30");
    // 2025-03-30: 02:00 CET jumps to 03:00 CEST; 02:30 does not exist -> 03:00 CEST = 01:00Z.
    assert_eq!(
        next(&s, "2025-03-29T12:00:00Z", berlin()),
        utc("2025-03-30T01:00:00Z")
    );
    assert_eq!(
        next(&s, "2025-03-30T01:00:00Z", berlin()),
        utc("2025-03-31T00:30:00Z")
    );
    // 2025-10-26: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice -> the earlier (CEST).
    assert_eq!(
        next(&s, "2025-10-25T12:00:00Z", berlin()),
        utc("2025-10-26T00:30:00Z")
    );
    // ...and only once: the next run is the following day, not the repeated 02:30 CET.
    assert_eq!(
        next(&s, "2025-10-26T00:30:00Z", berlin()),
        utc("2025-10-27T01:30:00Z")
    );
}

#[test]
fn next_after_crosses_dst_in_new_york() {
    let s = ok("daily at 02:30");
    // 2025-03-09: 02:00 EST jumps to 03:00 EDT (07:00Z).
    assert_eq!(
        next(&s, "2025-03-08T12:00:00Z", new_york()),
        utc("2025-03-09T07:00:00Z")
    );
    let s = ok("daily at 01:30");
    // 2025-11-02: 02:00 EDT falls back to 01:00 EST; 01:30 EDT is 05:30Z, 01:30 EST is 06:30Z.
    assert_eq!(
        next(&s, "2025-11-01T12:00:00Z", new_york()),
        utc("2025-11-02T05:30:00Z")
    );
    assert_eq!(
        next(&s, "2025-11-02T05:30:00Z", new_york()),
        utc("2025-11-03T06:30:00Z")
    );
    // Cron follows the same rules.
    let c = ok("cron 30 1 * * *");
    assert_eq!(
        next(&c, "2025-11-02T05:00:00Z", new_york()),
        utc("2025-11-02T05:30:00Z")
    );
    // From inside the repeated hour the repeated 01:30 EST is skipped.
    assert_eq!(
        next(&c, "2025-11-02T06:10:00Z", new_york()),
        utc("2025-11-03T06:30:00Z")
    );
    let c = ok("cron 30 2 * * *");
    assert_eq!(
        next(&c, "2025-03-08T12:00:00Z", new_york()),
        utc("2025-03-09T07:00:00Z")
    );
    // A fire after the repeated hour is not skipped when `after` lies inside it.
    let c = ok("cron */15 * * * *");
    assert_eq!(
        next(&c, "2025-11-02T06:40:00Z", new_york()),
        utc("2025-11-02T07:00:00Z")
    );
}

#[test]
fn next_after_cron_in_berlin() {
    let c = ok("cron 0 3 * * *");
    assert_eq!(
        next(&c, "2025-03-29T12:00:00Z", berlin()),
        utc("2025-03-30T01:00:00Z")
    );
    let c = ok("cron 30 2 * * *");
    assert_eq!(
        next(&c, "2025-03-29T12:00:00Z", berlin()),
        utc("2025-03-30T01:00:00Z")
    );
    assert_eq!(
        next(&c, "2025-03-30T01:00:00Z", berlin()),
        utc("2025-03-31T00:30:00Z")
    );
}

#[test]
fn next_after_is_strictly_after() {
    let s = ok("daily at 03:00");
    assert_eq!(
        next(&s, "2025-01-10T03:00:00Z", Tz::UTC),
        utc("2025-01-11T03:00:00Z")
    );
    assert_eq!(
        next(&s, "2025-01-10T02:59:59Z", Tz::UTC),
        utc("2025-01-10T03:00:00Z")
    );
    let c = ok("cron 0 3 * * *");
    assert_eq!(
        next(&c, "2025-01-10T03:00:00Z", Tz::UTC),
        utc("2025-01-11T03:00:00Z")
    );
}

#[test]
fn next_after_weekly() {
    let s = ok("weekly on monday at 03:00");
    // 2025-01-01 is a Wednesday.
    assert_eq!(
        next(&s, "2025-01-01T00:00:00Z", Tz::UTC),
        utc("2025-01-06T03:00:00Z")
    );
    assert_eq!(
        next(&s, "2025-01-06T02:00:00Z", Tz::UTC),
        utc("2025-01-06T03:00:00Z")
    );
    assert_eq!(
        next(&s, "2025-01-06T03:00:00Z", Tz::UTC),
        utc("2025-01-13T03:00:00Z")
    );
    // Monday 03:00 in Berlin (CET) is Monday 02:00Z.
    assert_eq!(
        next(&s, "2025-01-01T00:00:00Z", berlin()),
        utc("2025-01-06T02:00:00Z")
    );
}

#[test]
fn next_after_monthly_on_31_uses_the_last_day_of_short_months() {
    let s = ok("monthly on 31 at 03:00");
    assert_eq!(
        next(&s, "2025-02-01T00:00:00Z", Tz::UTC),
        utc("2025-02-28T03:00:00Z")
    );
    assert_eq!(
        next(&s, "2025-02-28T03:00:00Z", Tz::UTC),
        utc("2025-03-31T03:00:00Z")
    );
    assert_eq!(
        next(&s, "2025-03-31T03:00:00Z", Tz::UTC),
        utc("2025-04-30T03:00:00Z")
    );
    assert_eq!(
        next(&s, "2024-02-01T00:00:00Z", Tz::UTC),
        utc("2024-02-29T03:00:00Z")
    );
    assert_eq!(
        next(&s, "2025-12-31T04:00:00Z", Tz::UTC),
        utc("2026-01-31T03:00:00Z")
    );
    let s = ok("monthly on 15");
    assert_eq!(
        next(&s, "2025-01-15T00:00:01Z", Tz::UTC),
        utc("2025-02-15T00:00:00Z")
    );
}

#[test]
fn next_after_every_3_days_counts_from_the_anchor() {
    let s = ok("every 3 days at 09:00");
    let anchor = utc("2025-01-10T15:00:00Z");
    let mut t = anchor;
    let mut fires = Vec::new();
    for _ in 0..4 {
        t = s.next_after(t, Tz::UTC, anchor, Duration::ZERO);
        fires.push(t);
    }
    assert_eq!(
        fires,
        [
            utc("2025-01-13T09:00:00Z"),
            utc("2025-01-16T09:00:00Z"),
            utc("2025-01-19T09:00:00Z"),
            utc("2025-01-22T09:00:00Z"),
        ]
    );
    // Created before 09:00: the first run is on the anchor's own day.
    let early = utc("2025-01-10T08:00:00Z");
    assert_eq!(
        s.next_after(early, Tz::UTC, early, Duration::ZERO),
        utc("2025-01-10T09:00:00Z")
    );
    // The anchor's *local* date counts: 23:30Z on the 9th is already the 10th in Berlin.
    let anchor = utc("2025-01-09T23:30:00Z");
    assert_eq!(
        s.next_after(anchor, berlin(), anchor, Duration::ZERO),
        utc("2025-01-10T08:00:00Z")
    );
    // Across a year boundary and a month of 31 days, still every third day.
    let after = utc("2025-12-30T10:00:00Z");
    let n = s.next_after(after, Tz::UTC, utc("2025-01-10T15:00:00Z"), Duration::ZERO);
    let days = (n.date_naive() - utc("2025-01-10T00:00:00Z").date_naive()).num_days();
    assert_eq!(days % 3, 0);
    assert!(n > after && n - after <= chrono::Duration::days(3));
}

#[test]
fn next_after_uses_the_spread_when_no_time_is_named() {
    let s = ok("daily");
    let spread = Duration::from_secs(90 * 60);
    let t = s.next_after(
        utc("2025-01-10T12:00:00Z"),
        berlin(),
        utc("2025-01-01T00:00:00Z"),
        spread,
    );
    // 01:30 Berlin (CET) = 00:30Z.
    assert_eq!(t, utc("2025-01-11T00:30:00Z"));
    // A named time ignores the spread.
    let s = ok("daily at 05:00");
    let t = s.next_after(
        utc("2025-01-10T12:00:00Z"),
        Tz::UTC,
        utc("2025-01-01T00:00:00Z"),
        spread,
    );
    assert_eq!(t, utc("2025-01-11T05:00:00Z"));
}

#[test]
fn walking_many_fires_is_monotonic_and_daily_is_never_twice_a_day() {
    // A year of daily fires in New York, with the spread in the repeated hour.
    let s = ok("daily");
    let spread = Duration::from_secs(90 * 60);
    let anchor = utc("2025-01-01T00:00:00Z");
    let mut t = s.next_after(anchor, new_york(), anchor, spread);
    for _ in 0..400 {
        let n = s.next_after(t, new_york(), anchor, spread);
        assert!(n > t);
        let gap = n - t;
        assert!(gap >= chrono::Duration::hours(23), "{t} -> {n}");
        assert!(gap <= chrono::Duration::hours(25), "{t} -> {n}");
        t = n;
    }
}
