//! Which snapshots a retention policy keeps, with the semantics of restic's `forget`.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Utc};
use chrono_tz::Tz;
use ghbs_wire::Retention;

/// Maps a local time to its day, ISO week or month.
type BucketOf = fn(&DateTime<Tz>) -> (i32, u32);

/// Returns the ids of the snapshots to keep.
///
/// Snapshots are considered newest first. `keep_last` keeps the N newest; `keep_daily` keeps the
/// newest snapshot of each of the N most recent local days that have snapshots, and likewise
/// `keep_weekly` (ISO weeks) and `keep_monthly`. Days, weeks and months are read in `tz`, the
/// job's timezone. A snapshot kept by any rule is kept. The newest snapshot is always kept, so
/// the result is never empty when `snapshots` is not.
pub fn select_kept(
    snapshots: &[(i64, DateTime<Utc>)],
    policy: &Retention,
    tz: Tz,
) -> BTreeSet<i64> {
    let mut sorted: Vec<(i64, DateTime<Utc>)> = snapshots.to_vec();
    // Newest first; ties broken by id so the result does not depend on input order.
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));

    let mut kept = BTreeSet::new();
    if let Some((newest, _)) = sorted.first() {
        kept.insert(*newest);
    }
    kept.extend(sorted.iter().take(policy.keep_last as usize).map(|s| s.0));

    let buckets: [(u32, BucketOf); 3] = [
        (policy.keep_daily, |t| (t.year(), t.ordinal())),
        (policy.keep_weekly, |t| {
            let w = t.iso_week();
            (w.year(), w.week())
        }),
        (policy.keep_monthly, |t| (t.year(), t.month())),
    ];
    for (count, bucket_of) in buckets {
        let mut left = count;
        let mut last = None;
        for (id, at) in &sorted {
            if left == 0 {
                break;
            }
            let bucket = bucket_of(&at.with_timezone(&tz));
            if last != Some(bucket) {
                kept.insert(*id);
                last = Some(bucket);
                left -= 1;
            }
        }
    }
    kept
}

/// One snapshot as the last-good-copy rule sees it: its id, time, and for each repository it
/// holds, the repository's key and whether this snapshot's own run captured it (`false` when it
/// was carried forward from an earlier snapshot).
pub struct HeldRepos<'a> {
    pub id: i64,
    pub created_at: DateTime<Utc>,
    pub repos: Vec<(&'a str, bool)>,
}

/// The snapshots that must survive any retention policy: for each repository `still_known`
/// accepts, the newest snapshot that captured it itself. Retention may remove a repository's
/// data only when a newer kept snapshot holds that repository as successfully captured; the
/// newest own capture has no newer one, so it stays until the repository is captured again
/// or forgotten (then `still_known` rejects it).
pub fn last_captures(
    snapshots: &[HeldRepos<'_>],
    still_known: impl Fn(&str) -> bool,
) -> BTreeSet<i64> {
    let mut order: Vec<&HeldRepos<'_>> = snapshots.iter().collect();
    order.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    let mut seen = BTreeSet::new();
    let mut pinned = BTreeSet::new();
    for snapshot in order {
        for (key, own) in &snapshot.repos {
            if *own && still_known(key) && seen.insert(*key) {
                pinned.insert(snapshot.id);
            }
        }
    }
    pinned
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn policy(last: u32, daily: u32, weekly: u32, monthly: u32) -> Retention {
        Retention {
            keep_last: last,
            keep_daily: daily,
            keep_weekly: weekly,
            keep_monthly: monthly,
        }
    }

    fn ids(v: &[i64]) -> BTreeSet<i64> {
        v.iter().copied().collect()
    }

    /// Snapshots, oldest first (ids in time order):
    ///  1: 2024-12-30 (Mon, ISO 2025-W01, Dec)   2: 2025-01-05 (Sun, W01, Jan)
    ///  3: 2025-01-06 (Mon, W02)                  4: 2025-01-06 later same day
    ///  5: 2025-01-12 (Sun, W02)                  6: 2025-01-13 (Mon, W03)
    ///  7: 2025-02-01 (Sat, W05, Feb)             8: 2025-02-02 10:00 (Sun, W05)
    ///  9: 2025-02-02 20:00 (same day)
    fn history() -> Vec<(i64, DateTime<Utc>)> {
        vec![
            (1, at("2024-12-30T12:00:00Z")),
            (2, at("2025-01-05T12:00:00Z")),
            (3, at("2025-01-06T08:00:00Z")),
            (4, at("2025-01-06T18:00:00Z")),
            (5, at("2025-01-12T12:00:00Z")),
            (6, at("2025-01-13T12:00:00Z")),
            (7, at("2025-02-01T12:00:00Z")),
            (8, at("2025-02-02T10:00:00Z")),
            (9, at("2025-02-02T20:00:00Z")),
        ]
    }

    #[test]
    fn keep_last_keeps_the_newest_n() {
        let kept = select_kept(&history(), &policy(3, 0, 0, 0), Tz::UTC);
        assert_eq!(kept, ids(&[7, 8, 9]));
    }

    #[test]
    fn keep_daily_keeps_the_newest_of_each_recent_day() {
        // Days newest first: 02-02 (9), 02-01 (7), 01-13 (6), 01-12 (5).
        let kept = select_kept(&history(), &policy(0, 4, 0, 0), Tz::UTC);
        assert_eq!(kept, ids(&[5, 6, 7, 9]));
    }

    #[test]
    fn keep_weekly_uses_iso_weeks() {
        // Weeks newest first: W05 (9), W03 (6), W02 (5), W01 (2; 1 is also W01 of 2025).
        let kept = select_kept(&history(), &policy(0, 0, 4, 0), Tz::UTC);
        assert_eq!(kept, ids(&[2, 5, 6, 9]));
        let kept = select_kept(&history(), &policy(0, 0, 10, 0), Tz::UTC);
        assert_eq!(kept, ids(&[2, 5, 6, 9]));
    }

    #[test]
    fn keep_monthly_keeps_the_newest_of_each_month() {
        // Months newest first: Feb (9), Jan (6), Dec (1).
        let kept = select_kept(&history(), &policy(0, 0, 0, 12), Tz::UTC);
        assert_eq!(kept, ids(&[1, 6, 9]));
    }

    #[test]
    fn mixed_policies_are_a_union() {
        // last 2: {8, 9}; daily 3: {9, 7, 6}; weekly 2: {9, 6}; monthly 3: {9, 6, 1}.
        let kept = select_kept(&history(), &policy(2, 3, 2, 3), Tz::UTC);
        assert_eq!(kept, ids(&[1, 6, 7, 8, 9]));
    }

    #[test]
    fn days_are_local_to_the_timezone() {
        // In Tokyo (UTC+9) snapshot 8 (10:00Z) is 19:00 on 02-02 and 9 (20:00Z) is 05:00 on 02-03,
        // so 8 becomes the newest of its own day.
        let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
        let kept = select_kept(&history(), &policy(0, 2, 0, 0), tokyo);
        assert_eq!(kept, ids(&[8, 9]));
        let kept = select_kept(&history(), &policy(0, 2, 0, 0), Tz::UTC);
        assert_eq!(kept, ids(&[7, 9]));
    }

    #[test]
    fn newest_is_always_kept_and_input_order_does_not_matter() {
        let mut h = history();
        h.reverse();
        assert_eq!(select_kept(&h, &policy(0, 0, 0, 0), Tz::UTC), ids(&[9]));
        assert_eq!(
            select_kept(&h, &policy(2, 3, 2, 3), Tz::UTC),
            ids(&[1, 6, 7, 8, 9])
        );
        assert!(select_kept(&[], &policy(5, 5, 5, 5), Tz::UTC).is_empty());
    }

    #[test]
    fn larger_counts_than_snapshots_keep_everything_relevant() {
        let kept = select_kept(&history(), &policy(100, 0, 0, 0), Tz::UTC);
        assert_eq!(kept, ids(&[1, 2, 3, 4, 5, 6, 7, 8, 9]));
    }

    #[test]
    fn the_newest_own_capture_of_each_repository_is_pinned() {
        use chrono::TimeZone;
        let at = |d: i64| Utc.timestamp_opt(1_700_000_000 + d * 86_400, 0).unwrap();
        let snaps = vec![
            HeldRepos {
                id: 1,
                created_at: at(1),
                repos: vec![("a", true), ("b", true), ("c", true)],
            },
            HeldRepos {
                id: 2,
                created_at: at(2),
                repos: vec![("a", true), ("b", false), ("c", true)],
            },
            HeldRepos {
                id: 3,
                created_at: at(3),
                repos: vec![("a", true), ("b", false)],
            },
        ];
        // a: newest own capture is 3; b: only 1 captured it itself; c: 2.
        assert_eq!(
            last_captures(&snaps, |_| true),
            [1, 2, 3].into_iter().collect()
        );
        // A forgotten repository pins nothing.
        assert_eq!(
            last_captures(&snaps, |k| k != "b"),
            [2, 3].into_iter().collect()
        );
        // Input order does not matter.
        let mut reversed = snaps;
        reversed.reverse();
        assert_eq!(
            last_captures(&reversed, |_| true),
            [1, 2, 3].into_iter().collect()
        );
        assert!(last_captures(&[], |_| true).is_empty());
    }
}
