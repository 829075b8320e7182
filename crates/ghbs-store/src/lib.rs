//! State of github-backup-scheduler: users, API keys, jobs, runs, snapshots, per-repository
//! engine state and remembered HTTP validators.
//!
//! [`Store`] is the one interface; [`sqlite::SqliteStore`] and [`postgres::PgStore`] implement it,
//! each with its own migrations. [`connect`] picks the backend from the URL at run time.

mod accounts;
mod audit;
mod backend;
mod codec;
mod error;
mod jobs;
mod model;
mod notify;
mod repos;
mod retries;
mod retry;
mod scheduler;
mod stats;
mod store;
mod verify;

pub use audit::{AuditRow, NewApiKey, NewAuditEntry};
pub use error::{StoreError, StoreResult};
pub use model::*;
pub use notify::*;
pub use retry::{JobFreshness, RetryPlan};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// `last_used_at` of an API key is precise to this many seconds (see `authenticate_key`).
pub const LAST_USED_GRANULARITY_SECS: i64 = 60;

/// Everything the server and the scheduler persist.
///
/// Methods that take a `user_id` scope the lookup to that user: another user's row answers
/// `NotFound` exactly like a missing one.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Cheap round trip for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;

    // --- users and API keys -------------------------------------------------------------------

    /// Create the user for `github_id`, or update login and token of the existing one.
    /// Clears `needs_login` on all the user's jobs (a new login fixes a rejected token).
    async fn upsert_user(
        &self,
        github_id: i64,
        login: &str,
        token_sealed: &[u8],
        now: DateTime<Utc>,
    ) -> StoreResult<UserRow>;
    async fn get_user(&self, user_id: i64) -> StoreResult<UserRow>;

    /// Store a new key by its hash (hex of SHA-256 of the key).
    async fn create_api_key(
        &self,
        user_id: i64,
        key_hash: &str,
        label: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<ApiKeyRow>;
    /// The live (not revoked) key with this hash and its user; records `last_used_at = now`
    /// unless it was recorded less than [`LAST_USED_GRANULARITY_SECS`] ago.
    async fn authenticate_key(
        &self,
        key_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<(ApiKeyRow, UserRow)>;
    async fn list_api_keys(&self, user_id: i64) -> StoreResult<Vec<ApiKeyRow>>;
    /// Revoke one of the user's keys; `NotFound` if it is not theirs or already revoked.
    async fn revoke_api_key(&self, user_id: i64, key_id: i64) -> StoreResult<()>;

    // --- jobs ---------------------------------------------------------------------------------

    /// `Conflict { existing_id: Some(job id) }` when the user already has a job for the target.
    async fn create_job(&self, job: NewJob) -> StoreResult<JobRow>;
    async fn get_job(&self, user_id: i64, job_id: i64) -> StoreResult<JobRow>;
    /// The user's jobs ordered by id.
    async fn list_jobs(&self, user_id: i64) -> StoreResult<Vec<JobRow>>;
    /// One page of the user's jobs in id order, those with an id above `after` (keyset
    /// pagination: a page never shifts when jobs before it are added or deleted), at most
    /// `limit`, each with its newest run and freshness, in one statement.
    async fn list_jobs_page(
        &self,
        user_id: i64,
        after: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<JobListing>>;
    async fn update_job(&self, user_id: i64, job_id: i64, patch: JobPatch) -> StoreResult<JobRow>;
    /// Delete the job and its runs. Snapshots rows go too only when `purge`; otherwise they stay
    /// (orphaned from the job list but kept, as are the backups on disk).
    async fn delete_job(&self, user_id: i64, job_id: i64, purge: bool) -> StoreResult<()>;
    /// Number of jobs in the whole store (metrics).
    async fn count_jobs(&self) -> StoreResult<i64>;

    // --- runs and the scheduler ---------------------------------------------------------------

    /// Queue a manual run unless the job already has a queued or running one, in which case that
    /// run is returned (idempotent "run now"). `NotFound` if the job is not the user's.
    async fn request_run(
        &self,
        user_id: i64,
        job_id: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<RunRow>;
    /// Manual runs of the job queued at or after `since` (rate limit of "run now").
    async fn count_manual_runs_since(&self, job_id: i64, since: DateTime<Utc>) -> StoreResult<i64>;

    /// Claim up to `limit` jobs that are due and free, in one guarded statement per job
    /// (`FOR UPDATE SKIP LOCKED` on PostgreSQL, a write transaction on SQLite).
    ///
    /// A job is claimable when it is not paused, not `needs_login`, its lease is absent or
    /// expired (`lease_expires_at <= now`), and either it has a queued run or
    /// `next_run_at <= now`. Claiming sets `lease_owner = node`, `lease_expires_at = lease_until`,
    /// increments `lease_token`, and moves the queued run (or a new `schedule` run) to `running`
    /// with `started_at = now`. A run left `running` by a node whose lease expired is marked
    /// `failed` with an error saying the node stopped and the job was taken over.
    ///
    /// A job due by its schedule goes first to its warm node (the node that finished its last
    /// run, whose cache holds the mirrors); another node takes it only once it has been due since
    /// `others_after` or earlier (the scheduler passes now minus `--warm-cache-delay-secs`), so a
    /// busy or dead warm node delays a job by that much at most. Queued and retried runs are not
    /// held back.
    async fn claim_due_placed(
        &self,
        node: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
        others_after: DateTime<Utc>,
    ) -> StoreResult<Vec<Claim>>;
    /// [`Store::claim_due_placed`] without placement: any node takes any due job at once.
    async fn claim_due(
        &self,
        node: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<Claim>> {
        self.claim_due_placed(node, now, lease_until, limit, now)
            .await
    }
    /// Takes the cluster-wide periodic `task` for `node` when no node has started it after
    /// `not_since`: true means this node should run it now (and it is recorded as started).
    async fn claim_maintenance(
        &self,
        task: &str,
        node: &str,
        now: DateTime<Utc>,
        not_since: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Extend a lease; false when the token is stale (another node took the job over).
    async fn heartbeat(
        &self,
        job_id: i64,
        lease_token: i64,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Update the run's human-readable progress line; false when the token is stale.
    async fn set_run_progress(
        &self,
        job_id: i64,
        lease_token: i64,
        run_id: i64,
        progress: Option<&str>,
    ) -> StoreResult<bool>;
    /// Finish a run: write the outcome, set the job's `next_run_at`, release the lease; with
    /// `needs_login`, flag all of the user's jobs. False (and nothing written) when the token is
    /// stale.
    async fn finish_run(
        &self,
        job_id: i64,
        lease_token: i64,
        run_id: i64,
        outcome: RunOutcome,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Give a claim back without finishing it (graceful shutdown): the run returns to `queued`
    /// so the next claim, here or on another node, resumes it. False when the token is stale.
    async fn release(&self, job_id: i64, lease_token: i64, run_id: i64) -> StoreResult<bool>;
    /// Give back every lease `node` holds, whatever its token or expiry: a node calls this for
    /// its own id when it starts, since a new process holds no lease yet and any lease under
    /// its id belongs to a previous incarnation that died (killed, crashed) with runs in
    /// flight. Those runs return to `queued` and run again at the next claim. Leases of other
    /// nodes are untouched. Returns how many runs were requeued.
    async fn release_node(&self, node: &str) -> StoreResult<u64>;
    /// A cheap real write (one row per node) for readiness: fails while the database cannot
    /// write, for example on a full disk.
    async fn probe_write(&self, node: &str, now: DateTime<Utc>) -> StoreResult<()>;
    /// Newest first.
    async fn list_runs(&self, user_id: i64, job_id: i64, limit: i64) -> StoreResult<Vec<RunRow>>;
    async fn get_run(&self, user_id: i64, run_id: i64) -> StoreResult<RunRow>;
    /// The newest run of each of the given jobs (for job listings).
    async fn last_runs(&self, job_ids: &[i64]) -> StoreResult<Vec<RunRow>>;

    // --- snapshots ----------------------------------------------------------------------------

    /// Record a snapshot whose data is already durable. This row is what makes it visible.
    async fn insert_snapshot(&self, snapshot: NewSnapshot) -> StoreResult<SnapshotRow>;
    /// Newest first; `NotFound` if the job is not the user's.
    async fn list_snapshots(&self, user_id: i64, job_id: i64) -> StoreResult<Vec<SnapshotRow>>;
    async fn get_snapshot(&self, user_id: i64, snapshot_id: i64) -> StoreResult<SnapshotRow>;
    /// All snapshots of a job, newest first, without user scoping (engine, retention).
    async fn job_snapshots(&self, job_id: i64) -> StoreResult<Vec<SnapshotRow>>;
    /// The ids of every job with at least one snapshot, ascending (all users).
    async fn snapshot_job_ids(&self) -> StoreResult<Vec<i64>>;
    async fn delete_snapshots(&self, snapshot_ids: &[i64]) -> StoreResult<()>;
    /// Whether a snapshot row holds the engine snapshot `key` (its manifest's `snapshot_key`).
    /// At startup this tells a snapshot whose row was inserted before a crash from one that
    /// never got a row.
    async fn snapshot_key_exists(&self, key: &str) -> StoreResult<bool>;

    // --- per-repository engine state ----------------------------------------------------------

    /// The row for (job, full_name), created on first sight. Matching prefers `github_id` when
    /// given, so a renamed repository keeps its row (and mirror); `full_name` is then updated.
    async fn job_repo(
        &self,
        job_id: i64,
        full_name: &str,
        github_id: Option<i64>,
    ) -> StoreResult<JobRepoRow>;
    async fn list_job_repos(&self, job_id: i64) -> StoreResult<Vec<JobRepoRow>>;
    /// Forgets one repository of a job (`forget-repo`): its row, so later runs neither carry it
    /// forward nor keep its last snapshot beyond retention. `NotFound` when the job has no such row.
    async fn delete_job_repo(&self, job_id: i64, job_repo_id: i64) -> StoreResult<()>;
    async fn set_job_repo_state(
        &self,
        job_repo_id: i64,
        state: &serde_json::Value,
    ) -> StoreResult<()>;

    // --- remembered validators for conditional GitHub requests ---------------------------------

    async fn get_http_cache(&self, user_id: i64, url: &str) -> StoreResult<Option<HttpCacheRow>>;
    async fn put_http_cache(&self, row: &HttpCacheRow) -> StoreResult<()>;

    // --- notifications (issue 11; statements in `notify.rs`) -----------------

    async fn create_notify_target(&self, target: NewNotifyTarget) -> StoreResult<NotifyTargetRow>;
    /// The user's targets ordered by id.
    async fn list_notify_targets(&self, user_id: i64) -> StoreResult<Vec<NotifyTargetRow>>;
    async fn get_notify_target(&self, user_id: i64, target_id: i64)
        -> StoreResult<NotifyTargetRow>;
    /// Delete a target and its queued deliveries; `NotFound` if it is not the user's.
    async fn delete_notify_target(&self, user_id: i64, target_id: i64) -> StoreResult<()>;
    /// Queue `event` for every target of the user subscribed to it (`events` is `all` or lists
    /// it), in one statement. Returns how many deliveries were queued.
    async fn enqueue_notification(
        &self,
        user_id: i64,
        event: &str,
        payload: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<u64>;
    /// Claim up to `limit` pending deliveries that are due and not leased: sets the lease and
    /// increments `attempts` (the fencing token), in one guarded statement.
    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<ClaimedDelivery>>;
    /// Record an attempt: delivered, pending again at `retry_at`, or failed for good; and the
    /// target's last result. False (nothing written) when the claim is stale.
    async fn finish_delivery(&self, result: DeliveryResult) -> StoreResult<bool>;
    /// Record a delivery made outside the queue (`notify test`) as the target's last result.
    async fn record_notify_result(
        &self,
        target_id: i64,
        event: &str,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// A target's deliveries, oldest first (tests and diagnostics).
    async fn target_deliveries(&self, target_id: i64) -> StoreResult<Vec<DeliveryRow>>;
    /// Every job that is not paused, with the time its newest run succeeded.
    async fn stale_candidates(&self) -> StoreResult<Vec<StaleCandidate>>;
    /// Remember that a stale notification for `job_id` was sent for `basis` (its last success,
    /// or its creation). True when this is new (notify now); false when already recorded.
    async fn mark_stale_notified(&self, job_id: i64, basis: DateTime<Utc>) -> StoreResult<bool>;
    // --- scoped keys and the audit trail (issue 15) -------------------------------------------

    /// Store a new key with its scope and expiry, unless the user already holds
    /// `key.max_live` live keys (not revoked, not expired at `key.now`): then `Conflict`.
    /// The count and the insert are one transaction, so concurrent logins cannot pass the cap.
    async fn create_scoped_api_key(&self, key: NewApiKey<'_>) -> StoreResult<ApiKeyRow>;
    /// Append one entry to a user's audit trail.
    async fn record_audit(&self, entry: &NewAuditEntry) -> StoreResult<()>;
    /// The user's entries, newest first, with ids below `before_id` when given (paging).
    async fn list_audit(
        &self,
        user_id: i64,
        before_id: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<AuditRow>>;
    /// Delete entries older than `older_than` (every user's); returns how many went.
    async fn prune_audit(&self, older_than: DateTime<Utc>) -> StoreResult<u64>;
    // --- retries and freshness (issue 11) ------------------------------------------------------
    // Claims of due retries happen inside `claim_due` (jobs whose `retry_at` has come before
    // their `next_run_at`); `finish_run` writes `RunOutcome::retry` in its transaction.

    /// Record which attempt at its slot a claimed run is; false when the token is stale.
    async fn set_run_attempt(
        &self,
        job_id: i64,
        lease_token: i64,
        run_id: i64,
        attempt: u32,
    ) -> StoreResult<bool>;
    /// For each of the given jobs: when it last recorded a snapshot and how its newest finished
    /// run ended (job listings: freshness, stale and failing flags).
    async fn job_freshness(&self, job_ids: &[i64]) -> StoreResult<Vec<JobFreshness>>;
    // --- verification (issue 11) --------------------------------------------------------------

    /// Queue a `verify` run of the user's job (of one snapshot when `snapshot_id` is given; the
    /// caller checks it is the job's). While a run is queued or running, the same verification
    /// is returned (idempotent) and anything else is `Conflict` with that run's id.
    async fn request_verify(
        &self,
        user_id: i64,
        job_id: i64,
        snapshot_id: Option<i64>,
        now: DateTime<Utc>,
    ) -> StoreResult<RunRow>;
    /// Up to `limit` jobs that have no verification slot yet (oldest first).
    async fn unscheduled_verify_jobs(&self, limit: i64) -> StoreResult<Vec<JobRow>>;
    /// Gives a job its first verification slot; no-op if it has one (or the job is gone).
    async fn schedule_verify(&self, job_id: i64, at: DateTime<Utc>) -> StoreResult<()>;
    /// Jobs (claimable: not paused, not `needs_login`; backup not due, a due backup goes first)
    /// whose verification slot is at or before `now`, with that slot, earliest first.
    async fn due_verifies(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<(JobRow, DateTime<Utc>)>>;
    /// Moves the job's verification slot from `slot` to `next` and queues a `verify` run, in one
    /// transaction; false (nothing written) when another node moved the slot first or the job
    /// has a run queued or running (it stays due and is tried again later).
    async fn queue_scheduled_verify(
        &self,
        job_id: i64,
        slot: DateTime<Utc>,
        next: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;

    // --- gauges for /metrics (issue 11) -------------------------------------------------------

    /// Jobs waiting for a worker and since when, and the oldest last success (see [`QueueStats`]).
    async fn queue_stats(&self, now: DateTime<Utc>) -> StoreResult<QueueStats>;
}

/// Open the store named by `url`: `sqlite://PATH` (created if missing, WAL mode) or
/// `postgres://…` / `postgresql://…`. Runs pending migrations.
pub async fn connect(url: &str) -> StoreResult<std::sync::Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(sqlite::SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(postgres::PgStore::open(url).await?))
    } else {
        Err(StoreError::Other(format!(
            "unsupported database URL (expected sqlite:// or postgres://): {}",
            url.split(':').next().unwrap_or("")
        )))
    }
}

pub mod postgres;
pub mod sqlite;
