//! Wire types of the HTTP API under `/api/v1/`: what the server sends and the CLI decodes.
//!
//! This crate holds only serde shapes so that the server and the client agree by construction.
//! The optional `openapi` feature derives `utoipa::ToSchema` for the server's OpenAPI document;
//! the CLI builds without it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// The one error shape of the API. `code` is stable and meant for programs; `message` is for people.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

/// Stable machine codes carried in [`ErrorBody::code`].
pub mod codes {
    pub const BAD_REQUEST: &str = "bad_request";
    pub const INVALID_JSON: &str = "invalid_json";
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    pub const INVALID_TARGET: &str = "invalid_target";
    pub const INVALID_SCHEDULE: &str = "invalid_schedule";
    pub const SCHEDULE_TOO_FREQUENT: &str = "schedule_too_frequent";
    pub const INVALID_TIMEZONE: &str = "invalid_timezone";
    pub const UNAUTHORIZED: &str = "unauthorized";
    pub const GITHUB_TOKEN_REJECTED: &str = "github_token_rejected";
    pub const REGISTRATION_CLOSED: &str = "registration_closed";
    pub const NOT_FOUND: &str = "not_found";
    pub const CONFLICT: &str = "conflict";
    pub const RATE_LIMITED: &str = "rate_limited";
    pub const GITHUB_UNAVAILABLE: &str = "github_unavailable";
    pub const UNAVAILABLE: &str = "unavailable";
    pub const INTERNAL: &str = "internal";
    /// A read-only API key asked to change something (403).
    pub const READ_ONLY_KEY: &str = "read_only_key";
    /// The API key has passed its expiry (401).
    pub const KEY_EXPIRED: &str = "key_expired";
    /// The user already holds the most live API keys allowed (409).
    pub const TOO_MANY_KEYS: &str = "too_many_keys";
    /// The route exists but not with this method (405).
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
}

/// `POST /api/v1/login`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// A GitHub personal access token (classic or fine-grained); read-only scopes suffice.
    pub github_token: String,
    /// A label for the API key created, e.g. the client's host name.
    #[serde(default)]
    pub label: Option<String>,
    /// The key created stops working this many seconds from now (at most ten years);
    /// absent: it never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_seconds: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct LoginResponse {
    /// The new API key. Shown once: the server keeps only its hash.
    pub api_key: String,
    pub key_id: i64,
    pub user: User,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct User {
    pub id: i64,
    pub github_id: i64,
    pub login: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ApiKey {
    pub id: i64,
    pub label: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// True for the key that made this request.
    pub current: bool,
    /// A read-only key may list, show and download, and change nothing.
    #[serde(default)]
    pub read_only: bool,
    /// When the key stops working; absent: never.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// `POST /api/v1/keys`: another key for the caller, e.g. a read-only one for a dashboard.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct KeyCreate {
    #[serde(default)]
    pub label: Option<String>,
    /// Only list, show and download; every route that changes something answers 403.
    #[serde(default)]
    pub read_only: bool,
    /// Seconds from now until the key stops working (at most ten years); absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_seconds: Option<u64>,
}

/// Answer to `POST /api/v1/keys`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct KeyCreated {
    /// The new API key. Shown once: the server keeps only its hash.
    pub api_key: String,
    pub key: ApiKey,
}

/// One entry of the caller's audit trail. Never holds a token or a key, only ids.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// `login`, `key.create`, `key.revoke`, `job.create`, `job.update`, `job.pause`,
    /// `job.resume`, `job.delete`, `job.purge`, `repo.forget`, `run.request`,
    /// `snapshot.download`, `restore`.
    pub action: String,
    /// The API key that made the request (for `login`, the key it created).
    pub key_id: Option<i64>,
    /// The client's address as the server saw it (with `--trust-proxy`, from `X-Forwarded-For`).
    pub client_addr: Option<String>,
    pub job_id: Option<i64>,
    /// What else identifies the action, e.g. `snapshot_id`, `format`, `repo`, `target`.
    pub detail: std::collections::BTreeMap<String, String>,
}

/// `GET /api/v1/audit`: newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AuditList {
    pub entries: Vec<AuditEntry>,
    /// Pass as `before` to get the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ApiKeyList {
    pub keys: Vec<ApiKey>,
}

/// Retention: keep the last N snapshots plus restic-style daily/weekly/monthly keeps.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Retention {
    #[serde(default = "default_keep_last")]
    pub keep_last: u32,
    #[serde(default)]
    pub keep_daily: u32,
    #[serde(default)]
    pub keep_weekly: u32,
    #[serde(default)]
    pub keep_monthly: u32,
}

fn default_keep_last() -> u32 {
    30
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep_last: default_keep_last(),
            keep_daily: 0,
            keep_weekly: 0,
            keep_monthly: 0,
        }
    }
}

/// What a job backs up besides branches and tags, and which repositories of an account it takes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct JobOptions {
    /// Also fetch `refs/pull/*` (pull-request heads).
    #[serde(default)]
    pub pull_refs: bool,
    /// Also mirror the repository's wiki when it has one.
    #[serde(default)]
    pub wiki: bool,
    /// Back up issues, pull requests, labels, milestones and releases as JSON.
    #[serde(default)]
    pub metadata: bool,
    /// With `metadata`: also store the files of release assets (downloaded once, kept while
    /// GitHub lists them unchanged). Off: only their descriptions in `releases.json`.
    #[serde(default = "yes")]
    pub release_assets: bool,
    /// Account jobs: include forks.
    #[serde(default)]
    pub include_forks: bool,
    /// Account jobs: include archived repositories.
    #[serde(default = "yes")]
    pub include_archived: bool,
    /// Account jobs: include private repositories the token can see.
    #[serde(default = "yes")]
    pub include_private: bool,
}

fn yes() -> bool {
    true
}

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions {
            pull_refs: false,
            wiki: false,
            metadata: false,
            release_assets: true,
            include_forks: false,
            include_archived: true,
            include_private: true,
        }
    }
}

/// `POST /api/v1/jobs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct JobCreate {
    /// `owner/name`, a GitHub URL of a repository, or `owner` for a whole account.
    pub target: String,
    /// `daily [at HH:MM]`, `weekly on DAY [at HH:MM]`, `monthly on N [at HH:MM]`,
    /// `every N days [at HH:MM]`, or `cron EXPR` (five fields).
    pub schedule: String,
    /// IANA timezone the schedule is read in; default `UTC`.
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub retention: Option<Retention>,
    #[serde(default)]
    pub options: Option<JobOptions>,
}

/// `PATCH /api/v1/jobs/{id}`: every field optional; absent fields keep their value.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct JobUpdate {
    #[serde(default)]
    pub schedule: Option<String>,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub retention: Option<Retention>,
    #[serde(default)]
    pub options: Option<JobOptions>,
}

/// State of a job as a person sees it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    Active,
    Paused,
    /// GitHub rejected the stored token; `login` again to clear it.
    NeedsLogin,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    Repository,
    Account,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Job {
    pub id: i64,
    /// Canonical target: `owner/name` or `owner`.
    pub target: String,
    pub target_kind: TargetKind,
    pub schedule: String,
    pub timezone: String,
    pub retention: Retention,
    pub options: JobOptions,
    pub state: JobState,
    pub next_run_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub last_run: Option<Run>,
    /// When the job last recorded a snapshot (a `succeeded` or `partial` run); `None` if never.
    #[serde(default)]
    pub last_success_at: Option<DateTime<Utc>>,
    /// No success for twice the schedule's interval (counted from creation if it never
    /// succeeded). Paused jobs are never stale.
    #[serde(default)]
    pub stale: bool,
    /// The newest finished run failed (no snapshot), or a retry of it is pending.
    #[serde(default)]
    pub failing: bool,
    /// The retry pending after a failed attempt, if any.
    #[serde(default)]
    pub retry: Option<JobRetry>,
}

/// A retry of a failed run, due before the job's next scheduled slot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct JobRetry {
    /// The attempt this retry will be (the first run of a slot is attempt 1).
    pub attempt: u32,
    /// Attempts per slot, the first included (`--run-retries` + 1).
    pub max_attempts: u32,
    /// When it starts (always before `next_run_at`).
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct JobList {
    pub jobs: Vec<Job>,
    /// Present when more jobs follow: pass it back unchanged as `cursor` for the next page.
    /// Opaque; pages are in job id order, so a cursor stays valid while jobs are added or
    /// deleted (new jobs appear on later pages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum RunStatus {
    Queued,
    Running,
    Succeeded,
    /// A snapshot was recorded, but some repositories in it were not captured by this run
    /// (failed, or gone upstream) and hold their last good copy, carried forward; or some
    /// metadata could not be fetched.
    Partial,
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Partial => "partial",
            RunStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => RunStatus::Queued,
            "running" => RunStatus::Running,
            "succeeded" => RunStatus::Succeeded,
            "partial" => RunStatus::Partial,
            "failed" => RunStatus::Failed,
            _ => return None,
        })
    }

    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Partial | RunStatus::Failed
        )
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum RunTrigger {
    /// The job's schedule came due.
    Schedule,
    /// A user asked for it (`run`).
    Manual,
    /// A verification of the job's snapshots (`verify`, or the weekly one): reads the backup,
    /// fetches nothing. `snapshot_id` of such a run is the one snapshot it checks, if only one.
    Verify,
}

impl RunTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            RunTrigger::Schedule => "schedule",
            RunTrigger::Manual => "manual",
            RunTrigger::Verify => "verify",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "schedule" => RunTrigger::Schedule,
            "manual" => RunTrigger::Manual,
            "verify" => RunTrigger::Verify,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Run {
    pub id: i64,
    pub job_id: i64,
    pub trigger: RunTrigger,
    pub status: RunStatus,
    pub queued_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// What went wrong, phrased for a person to act on.
    pub error: Option<String>,
    /// What the run is doing now, e.g. "waiting for GitHub rate limit until 14:05:09 UTC".
    pub progress: Option<String>,
    pub bytes_fetched: i64,
    /// GitHub API requests that count against the rate limit.
    pub api_requests: i64,
    /// Conditional GitHub API requests answered 304 (not counted by GitHub).
    pub api_requests_conditional: i64,
    pub snapshot_id: Option<i64>,
    /// Which attempt at its slot this run is: 1, or more for a retry of a failed run.
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    /// Set on a run that failed for a passing reason: when the next attempt starts.
    #[serde(default)]
    pub retry_at: Option<DateTime<Utc>>,
}

fn first_attempt() -> u32 {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct RunList {
    pub runs: Vec<Run>,
}

/// How a snapshot holds one repository.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum CaptureState {
    /// Fetched by this snapshot's own run.
    #[default]
    Captured,
    /// This run could not fetch it (it failed, or it is gone upstream): the snapshot holds the
    /// last good refs and metadata, captured at `captured_at`.
    CarriedForward,
    /// This run could not fetch it and no earlier snapshot holds it: nothing is in here.
    Failed,
}

impl CaptureState {
    pub fn as_str(self) -> &'static str {
        match self {
            CaptureState::Captured => "captured",
            CaptureState::CarriedForward => "carried-forward",
            CaptureState::Failed => "failed",
        }
    }
}

/// One repository inside a snapshot.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SnapshotRepo {
    /// `owner/name` at the time of the snapshot.
    pub full_name: String,
    pub default_branch: Option<String>,
    /// Number of refs (branches, tags, and pull refs when enabled) held.
    pub refs: u64,
    /// `ok`, or what went wrong for this repository, phrased for a person.
    pub status: String,
    /// Metadata item counts per kind (`issues`, `pulls`, ...), when metadata is on.
    #[serde(default)]
    pub metadata: std::collections::BTreeMap<String, u64>,
    /// Captured now, carried forward from an earlier snapshot, or failed with nothing to carry.
    #[serde(default)]
    pub capture: CaptureState,
    /// When the refs held here were fetched from GitHub (the snapshot's own time when captured
    /// now; absent in snapshots made before this field existed).
    #[serde(default)]
    pub captured_at: Option<DateTime<Utc>>,
    /// Set when the repository is no longer on GitHub as this job sees it (deleted, made
    /// private, transferred, or excluded by the job's filters): since when. It is kept, carried
    /// forward, until `forget-repo` removes it.
    #[serde(default)]
    pub gone_since: Option<DateTime<Utc>>,
}

impl SnapshotRepo {
    /// Whether this repository makes its snapshot `partial`: not captured by the snapshot's own
    /// run, or captured with something missing (metadata).
    pub fn is_partial(&self) -> bool {
        self.capture != CaptureState::Captured || self.status != "ok"
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Snapshot {
    pub id: i64,
    pub job_id: i64,
    pub run_id: i64,
    pub created_at: DateTime<Utc>,
    /// Total refs over all repositories.
    pub refs: u64,
    /// Bytes on disk of the objects this snapshot references (shared with other snapshots).
    pub size_bytes: i64,
    /// `succeeded` when every repository was captured whole by this snapshot's run, else
    /// `partial` (see each repository's `capture`, `status` and `gone_since`).
    pub status: RunStatus,
    /// Repositories held as their last good copy from an earlier snapshot.
    pub carried_forward: u64,
    /// Repositories that failed with nothing earlier to carry.
    pub failed: u64,
    /// Repositories gone upstream (also counted in `carried_forward`).
    pub gone: u64,
    pub repos: Vec<SnapshotRepo>,
}

impl Snapshot {
    /// Builds the summary fields (`status` and the counts) from the repositories.
    pub fn summarise(repos: &[SnapshotRepo]) -> (RunStatus, u64, u64, u64) {
        let count =
            |f: &dyn Fn(&SnapshotRepo) -> bool| repos.iter().filter(|r| f(r)).count() as u64;
        let status = if repos.iter().any(SnapshotRepo::is_partial) {
            RunStatus::Partial
        } else {
            RunStatus::Succeeded
        };
        (
            status,
            count(&|r| r.capture == CaptureState::CarriedForward),
            count(&|r| r.capture == CaptureState::Failed),
            count(&|r| r.gone_since.is_some()),
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SnapshotList {
    pub snapshots: Vec<Snapshot>,
}

/// `POST /api/v1/jobs/{id}/forget-repo`: stop keeping a repository that is gone upstream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ForgetRepo {
    /// `owner/name` as the job's snapshots list it.
    pub repo: String,
}

/// The answer to [`ForgetRepo`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct RepoForgotten {
    pub full_name: String,
    /// Snapshots that still hold it: it is no longer carried forward or kept beyond retention,
    /// and leaves with them as retention rolls.
    pub snapshots_holding: u64,
}

/// Download formats of `GET /api/v1/snapshots/{id}/download?format=`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub enum DownloadFormat {
    #[default]
    #[serde(rename = "bundle")]
    Bundle,
    #[serde(rename = "tar.gz")]
    TarGz,
    #[serde(rename = "zip")]
    Zip,
    /// A zip of a static HTML site of the snapshot (README, issues, pull requests, reviews,
    /// releases, wiki) that opens offline in a browser.
    #[serde(rename = "site")]
    Site,
}

impl DownloadFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            DownloadFormat::Bundle => "bundle",
            DownloadFormat::TarGz => "tar.gz",
            DownloadFormat::Zip => "zip",
            DownloadFormat::Site => "site",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "bundle" => DownloadFormat::Bundle,
            "tar.gz" | "tgz" => DownloadFormat::TarGz,
            "zip" => DownloadFormat::Zip,
            "site" => DownloadFormat::Site,
            _ => return None,
        })
    }
}

/// `GET /healthz` and `/readyz`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Health {
    pub status: String,
    #[serde(default)]
    pub version: Option<String>,
}

mod notify;
pub use notify::*;
