//! Prometheus counters, rendered by hand: a handful of counters, a few fixed label values and one
//! small histogram do not justify a metrics crate (and its build time on 2 cores). No label
//! ever holds a job, user or repository: cardinality stays fixed whatever the number of jobs.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use ghbs_core::FailureKind;
use ghbs_wire::RunStatus;

#[derive(Default)]
pub struct Metrics {
    pub runs_claimed: AtomicU64,
    pub runs_succeeded: AtomicU64,
    pub runs_partial: AtomicU64,
    pub runs_failed: AtomicU64,
    pub runs_released: AtomicU64,
    pub runs_in_progress: AtomicU64,
    pub bytes_fetched: AtomicU64,
    pub github_requests: AtomicU64,
    pub github_conditional_hits: AtomicU64,
    pub verify_succeeded: AtomicU64,
    pub verify_failed: AtomicU64,
    /// Backup run durations by outcome (succeeded, partial, failed).
    pub run_durations: [Histogram; 3],
    /// Repositories a run could not capture, by [`FailureKind`] (see [`kind_index`]).
    pub repos_failed: [AtomicU64; 6],
    /// Notifications delivered, and deliveries that failed (incremented by the notifier).
    pub notifications_delivered: AtomicU64,
    pub notifications_failed: AtomicU64,
    /// Milliseconds runs spent waiting for GitHub rate limits (primary and secondary).
    pub rate_limit_wait_ms: AtomicU64,
}

/// Upper bounds (seconds) of the run duration histogram's buckets.
pub const DURATION_BUCKETS: [f64; 8] = [1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0];

/// A cumulative histogram with [`DURATION_BUCKETS`].
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; 8],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        for (bound, bucket) in DURATION_BUCKETS.iter().zip(&self.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }
}

/// Outcome labels, in the order of [`Metrics::run_durations`].
const OUTCOMES: [&str; 3] = ["succeeded", "partial", "failed"];

/// Failure-kind labels, in the order of [`Metrics::repos_failed`].
const KINDS: [&str; 6] = [
    "permanent",
    "transient",
    "rate_limited",
    "unauthorized",
    "not_found",
    "storage_full",
];

/// Where a [`FailureKind`] is counted in [`Metrics::repos_failed`].
pub fn kind_index(kind: FailureKind) -> usize {
    match kind {
        FailureKind::Permanent => 0,
        FailureKind::Transient => 1,
        FailureKind::RateLimited { .. } => 2,
        FailureKind::Unauthorized => 3,
        FailureKind::NotFound => 4,
        FailureKind::StorageFull => 5,
    }
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// A repository a run could not capture.
    pub fn repo_failed(&self, kind: FailureKind) {
        Metrics::add(&self.repos_failed[kind_index(kind)], 1);
    }

    /// How long a finished backup run took.
    pub fn observe_run(&self, status: RunStatus, took: std::time::Duration) {
        let i = match status {
            RunStatus::Succeeded => 0,
            RunStatus::Partial => 1,
            _ => 2,
        };
        self.run_durations[i].observe(took);
    }

    /// The labelled families (runs, durations, repositories, verifications, notifications).
    fn render_families(&self, out: &mut String) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let family = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        family(
            out,
            "ghbs_runs_total",
            "counter",
            "Backup runs finished on this node, by outcome.",
        );
        let counts = [&self.runs_succeeded, &self.runs_partial, &self.runs_failed];
        for (outcome, c) in OUTCOMES.iter().zip(counts) {
            let _ = writeln!(out, "ghbs_runs_total{{outcome=\"{outcome}\"}} {}", get(c));
        }
        family(
            out,
            "ghbs_run_duration_seconds",
            "histogram",
            "Wall-clock duration of backup runs on this node, by outcome.",
        );
        for (outcome, h) in OUTCOMES.iter().zip(&self.run_durations) {
            for (bound, bucket) in DURATION_BUCKETS.iter().zip(&h.buckets) {
                let _ = writeln!(
                    out,
                    "ghbs_run_duration_seconds_bucket{{outcome=\"{outcome}\",le=\"{bound}\"}} {}",
                    get(bucket)
                );
            }
            let count = get(&h.count);
            let _ = writeln!(
                out,
                "ghbs_run_duration_seconds_bucket{{outcome=\"{outcome}\",le=\"+Inf\"}} {count}\n\
                 ghbs_run_duration_seconds_sum{{outcome=\"{outcome}\"}} {}\n\
                 ghbs_run_duration_seconds_count{{outcome=\"{outcome}\"}} {count}",
                get(&h.sum_micros) as f64 / 1e6
            );
        }
        family(
            out,
            "ghbs_repos_failed_total",
            "counter",
            "Repositories a run could not capture, by failure kind.",
        );
        for (kind, c) in KINDS.iter().zip(&self.repos_failed) {
            let _ = writeln!(out, "ghbs_repos_failed_total{{kind=\"{kind}\"}} {}", get(c));
        }
        family(
            out,
            "ghbs_verify_runs_total",
            "counter",
            "Verification runs finished on this node, by outcome.",
        );
        for (outcome, c) in [
            ("succeeded", &self.verify_succeeded),
            ("failed", &self.verify_failed),
        ] {
            let _ = writeln!(
                out,
                "ghbs_verify_runs_total{{outcome=\"{outcome}\"}} {}",
                get(c)
            );
        }
        family(
            out,
            "ghbs_storage_cache_total",
            "counter",
            "Shared storage: mirrors this node found in step with the bucket (hit) or rebuilt from it (miss); 0 on file storage.",
        );
        let (hits, misses) = ghbs_engine::cache_counts();
        for (result, n) in [("hit", hits), ("miss", misses)] {
            let _ = writeln!(out, "ghbs_storage_cache_total{{result=\"{result}\"}} {n}");
        }
        family(
            out,
            "ghbs_notifications_total",
            "counter",
            "Notification deliveries from this node, by result.",
        );
        for (result, c) in [
            ("delivered", &self.notifications_delivered),
            ("failed", &self.notifications_failed),
        ] {
            let _ = writeln!(
                out,
                "ghbs_notifications_total{{result=\"{result}\"}} {}",
                get(c)
            );
        }
    }

    pub fn render(&self, jobs: i64) -> String {
        let mut out = String::new();
        let mut line = |name: &str, kind: &str, help: &str, v: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed).to_string();
        line(
            "ghbs_jobs",
            "gauge",
            "Jobs in the database (all nodes).",
            jobs.to_string(),
        );
        line(
            "ghbs_runs_claimed_total",
            "counter",
            "Runs claimed by this node.",
            get(&self.runs_claimed),
        );
        line(
            "ghbs_runs_succeeded_total",
            "counter",
            "Runs that captured every repository.",
            get(&self.runs_succeeded),
        );
        line(
            "ghbs_runs_partial_total",
            "counter",
            "Runs that made a snapshot carrying some repositories' last good copy forward.",
            get(&self.runs_partial),
        );
        line(
            "ghbs_runs_failed_total",
            "counter",
            "Runs that failed.",
            get(&self.runs_failed),
        );
        line(
            "ghbs_runs_released_total",
            "counter",
            "Runs handed back at shutdown.",
            get(&self.runs_released),
        );
        line(
            "ghbs_runs_in_progress",
            "gauge",
            "Runs executing on this node.",
            get(&self.runs_in_progress),
        );
        line(
            "ghbs_bytes_fetched_total",
            "counter",
            "Bytes fetched from git remotes.",
            get(&self.bytes_fetched),
        );
        line(
            "ghbs_github_requests_total",
            "counter",
            "GitHub API requests counted against rate limits.",
            get(&self.github_requests),
        );
        line(
            "ghbs_github_conditional_hits_total",
            "counter",
            "GitHub API requests answered 304.",
            get(&self.github_conditional_hits),
        );
        let _ = writeln!(
            out,
            "# HELP ghbs_github_rate_limit_wait_seconds_total Time runs spent waiting for GitHub rate limits.\n\
             # TYPE ghbs_github_rate_limit_wait_seconds_total counter\n\
             ghbs_github_rate_limit_wait_seconds_total {:.3}",
            self.rate_limit_wait_ms.load(Ordering::Relaxed) as f64 / 1000.0
        );
        self.render_families(&mut out);
        out
    }
}

/// Jobs (all nodes) whose backup is stale: no success for twice the schedule's interval.
pub fn render_stale(out: &mut String, stale: usize) {
    let _ = writeln!(
        out,
        "# HELP ghbs_jobs_stale Active jobs without a successful backup for twice their schedule's interval (all nodes).\n\
         # TYPE ghbs_jobs_stale gauge\nghbs_jobs_stale {stale}"
    );
}

/// The database's gauges (all nodes): jobs waiting for a worker, how long the longest has
/// waited, and the age of the oldest last successful backup (0 when there is none).
pub fn render_queue(
    out: &mut String,
    stats: &ghbs_store::QueueStats,
    now: chrono::DateTime<chrono::Utc>,
) {
    let age =
        |t: Option<chrono::DateTime<chrono::Utc>>| t.map_or(0, |t| (now - t).num_seconds().max(0));
    let _ = writeln!(
        out,
        "# HELP ghbs_queue_waiting_jobs Jobs due or with a queued run, not yet claimed (all nodes).\n\
         # TYPE ghbs_queue_waiting_jobs gauge\nghbs_queue_waiting_jobs {}\n\
         # HELP ghbs_queue_oldest_due_seconds How long the longest-waiting job has been due.\n\
         # TYPE ghbs_queue_oldest_due_seconds gauge\nghbs_queue_oldest_due_seconds {}\n\
         # HELP ghbs_oldest_last_success_age_seconds Age of the oldest last successful backup over active jobs that ever succeeded.\n\
         # TYPE ghbs_oldest_last_success_age_seconds gauge\nghbs_oldest_last_success_age_seconds {}\n\
         # HELP ghbs_stored_bytes Git bytes kept: each job's newest snapshot's mirror size (all nodes).\n\
         # TYPE ghbs_stored_bytes gauge\nghbs_stored_bytes {}",
        stats.waiting,
        age(stats.oldest_due),
        age(stats.oldest_last_success),
        stats.stored_bytes
    );
}
