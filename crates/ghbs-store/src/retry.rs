//! Rows for retries of failed runs and for the freshness of jobs (issue 11).

use chrono::{DateTime, Utc};
use ghbs_wire::RunStatus;

/// The next attempt at a slot, written by [`crate::Store::finish_run`] together with the run
/// that failed (`RunOutcome::retry`) and cleared by every finish without one.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPlan {
    /// When the attempt becomes claimable (before the job's `next_run_at`).
    pub at: DateTime<Utc>,
    /// Its number (the run that failed was `attempt - 1`).
    pub attempt: u32,
    /// What it should fetch, opaque to the store (an account job's repositories); `None`: all.
    pub scope: Option<serde_json::Value>,
}

/// When a job last recorded a snapshot, and how its newest finished run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFreshness {
    pub job_id: i64,
    /// `finished_at` of its newest `succeeded` or `partial` run.
    pub last_success_at: Option<DateTime<Utc>>,
    /// Status of its newest finished run.
    pub last_finished: Option<RunStatus>,
}
