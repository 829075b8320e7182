//! Prometheus counters, rendered by hand: a handful of counters do not justify a metrics crate.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

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
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
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
        out
    }
}
