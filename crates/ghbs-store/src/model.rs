//! Rows the store reads and writes. Plain data: no behaviour beyond conversions.

use chrono::{DateTime, Utc};
use ghbs_wire::{JobOptions, Retention, RunStatus, SnapshotRepo, TargetKind};

/// A user: one GitHub identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: i64,
    pub github_id: i64,
    pub login: String,
    /// The GitHub token sealed with the server's AEAD key (nonce || ciphertext). Never clear text.
    pub token_sealed: Vec<u8>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRow {
    pub id: i64,
    pub user_id: i64,
    pub label: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// May only read (list, show, download); see `ghbs-server`'s `auth`.
    pub read_only: bool,
    /// `None`: never expires.
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    pub id: i64,
    pub user_id: i64,
    /// Canonical target (`owner/name` or `owner`), unique per user.
    pub target: String,
    pub target_kind: TargetKind,
    /// Parsed when the row is read: a stored schedule or timezone that does not parse is a
    /// decode error naming the job, never a silent default.
    pub schedule: ghbs_core::Schedule,
    pub timezone: chrono_tz::Tz,
    pub retention: Retention,
    pub options: JobOptions,
    pub paused: bool,
    pub needs_login: bool,
    pub next_run_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// Node holding the lease while a run is in progress.
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Incremented at every claim: a worker whose token is stale can no longer write (fencing).
    pub lease_token: i64,
    /// A retry of a failed run is due then (before `next_run_at`); see [`crate::RetryPlan`].
    pub retry_at: Option<DateTime<Utc>>,
    /// The attempt number of that retry (0 when none is pending).
    pub retry_attempt: u32,
    /// What that retry fetches (opaque JSON; `None`: everything).
    pub retry_scope: Option<serde_json::Value>,
}

#[derive(Debug, Clone)]
pub struct NewJob {
    pub user_id: i64,
    pub target: String,
    pub target_kind: TargetKind,
    /// Typed like [`JobRow`]'s: the caller parsed the user's text; the store writes the
    /// canonical form, so a row it wrote always reads back.
    pub schedule: ghbs_core::Schedule,
    pub timezone: chrono_tz::Tz,
    pub retention: Retention,
    pub options: JobOptions,
    pub next_run_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// A change to a job; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct JobPatch {
    pub target: Option<String>,
    pub schedule: Option<ghbs_core::Schedule>,
    pub timezone: Option<chrono_tz::Tz>,
    pub retention: Option<Retention>,
    pub options: Option<JobOptions>,
    pub paused: Option<bool>,
    pub next_run_at: Option<DateTime<Utc>>,
}

/// A run as stored is exactly a run as the API shows it.
pub type RunRow = ghbs_wire::Run;

/// One entry of a job listing: the job, its newest run and its freshness, read together by
/// [`crate::Store::list_jobs_page`] in one statement.
#[derive(Debug, Clone, PartialEq)]
pub struct JobListing {
    pub job: JobRow,
    pub last_run: Option<RunRow>,
    pub freshness: crate::JobFreshness,
}

/// What a claim hands a worker: the job, the run it now owns, and its fencing token.
#[derive(Debug, Clone)]
pub struct Claim {
    pub job: JobRow,
    pub run: RunRow,
    pub lease_token: i64,
}

/// How a run ended, written by [`crate::Store::finish_run`].
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub status: RunStatus,
    pub error: Option<String>,
    pub bytes_fetched: i64,
    pub api_requests: i64,
    pub api_requests_conditional: i64,
    pub snapshot_id: Option<i64>,
    /// GitHub rejected the user's token: mark every job of the user `needs-login`.
    pub needs_login: bool,
    /// When the job runs next (computed by the scheduler from the schedule).
    pub next_run_at: DateTime<Utc>,
    /// The next attempt at this slot, if the run failed for a passing reason; `None` clears a
    /// pending retry.
    pub retry: Option<crate::RetryPlan>,
}

#[derive(Debug, Clone)]
pub struct NewSnapshot {
    pub job_id: i64,
    pub run_id: i64,
    pub created_at: DateTime<Utc>,
    pub refs: u64,
    pub size_bytes: i64,
    pub repos: Vec<SnapshotRepo>,
    /// The engine's manifest (which refs at which commits, per repository). Opaque to the store.
    pub manifest: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct SnapshotRow {
    pub id: i64,
    pub job_id: i64,
    pub run_id: i64,
    pub created_at: DateTime<Utc>,
    pub refs: u64,
    pub size_bytes: i64,
    pub repos: Vec<SnapshotRepo>,
    pub manifest: serde_json::Value,
}

/// Per-job, per-repository state the engine carries between runs (account jobs have many).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRepoRow {
    /// Internal id: mirrors are stored under it, never under a name built from user input.
    pub id: i64,
    pub job_id: i64,
    pub full_name: String,
    pub github_id: Option<i64>,
    /// Opaque engine state (ETag, pushed_at, runs since a full fetch, ...), JSON.
    pub state: serde_json::Value,
}

/// A remembered conditional-request validator for one URL and user (GitHub etiquette).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCacheRow {
    pub user_id: i64,
    pub url: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// The body GitHub sent with that validator, so a 304 can be answered from it.
    pub body: Option<Vec<u8>>,
}

/// Gauges for `/metrics`, read in one go (see [`crate::Store::queue_stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Claimable jobs waiting for a worker: due by schedule or with a queued run, no lease.
    pub waiting: i64,
    /// When the longest-waiting of them became due (its slot or its queued run).
    pub oldest_due: Option<DateTime<Utc>>,
    /// The oldest "last successful backup" over active jobs that ever succeeded.
    pub oldest_last_success: Option<DateTime<Utc>>,
    /// Git bytes kept: over every job with snapshots, its newest snapshot's mirror size
    /// (metadata and download caches not counted).
    pub stored_bytes: i64,
}
