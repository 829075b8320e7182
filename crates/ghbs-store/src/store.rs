//! The one [`Store`] implementation: each method hands its pool to the function that holds
//! the statements, in the module named after what it stores.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::backend::{sql, Backend, SqlStore};
use crate::{accounts, jobs, notify, repos, retries, scheduler, stats, verify};
use crate::{
    ApiKeyRow, Claim, HttpCacheRow, JobPatch, JobRepoRow, JobRow, NewJob, NewSnapshot, RunOutcome,
    RunRow, SnapshotRow, Store, StoreResult, UserRow,
};
use crate::{
    ClaimedDelivery, DeliveryResult, DeliveryRow, NewNotifyTarget, NotifyTargetRow, StaleCandidate,
};

#[async_trait]
impl<D: Backend> Store for SqlStore<D> {
    async fn ping(&self) -> StoreResult<()> {
        sql("SELECT 1").run(&self.pool).await.map(|_| ())
    }

    async fn upsert_user(
        &self,
        github_id: i64,
        login: &str,
        token_sealed: &[u8],
        now: DateTime<Utc>,
    ) -> StoreResult<UserRow> {
        accounts::upsert_user(&self.pool, github_id, login, token_sealed, now).await
    }
    async fn get_user(&self, user_id: i64) -> StoreResult<UserRow> {
        accounts::get_user(&self.pool, user_id).await
    }
    async fn create_api_key(
        &self,
        user_id: i64,
        key_hash: &str,
        label: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<ApiKeyRow> {
        accounts::create_api_key(&self.pool, user_id, key_hash, label, now).await
    }
    async fn authenticate_key(
        &self,
        key_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<(ApiKeyRow, UserRow)> {
        accounts::authenticate_key(&self.pool, key_hash, now).await
    }
    async fn list_api_keys(&self, user_id: i64) -> StoreResult<Vec<ApiKeyRow>> {
        accounts::list_api_keys(&self.pool, user_id).await
    }
    async fn revoke_api_key(&self, user_id: i64, key_id: i64) -> StoreResult<()> {
        accounts::revoke_api_key(&self.pool, user_id, key_id).await
    }

    async fn create_job(&self, job: NewJob) -> StoreResult<JobRow> {
        jobs::create_job(&self.pool, job).await
    }
    async fn get_job(&self, user_id: i64, job_id: i64) -> StoreResult<JobRow> {
        jobs::get_job(&self.pool, user_id, job_id).await
    }
    async fn list_jobs(&self, user_id: i64) -> StoreResult<Vec<JobRow>> {
        jobs::list_jobs(&self.pool, user_id).await
    }
    async fn list_jobs_page(
        &self,
        user_id: i64,
        after: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<crate::JobListing>> {
        jobs::list_jobs_page(&self.pool, user_id, after, limit).await
    }
    async fn update_job(&self, user_id: i64, job_id: i64, patch: JobPatch) -> StoreResult<JobRow> {
        jobs::update_job(&self.pool, user_id, job_id, patch).await
    }
    async fn delete_job(&self, user_id: i64, job_id: i64, purge: bool) -> StoreResult<()> {
        jobs::delete_job(&self.pool, user_id, job_id, purge).await
    }
    async fn count_jobs(&self) -> StoreResult<i64> {
        jobs::count_jobs(&self.pool).await
    }

    async fn request_run(
        &self,
        user_id: i64,
        job_id: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<RunRow> {
        jobs::request_run(&self.pool, user_id, job_id, now).await
    }
    async fn count_manual_runs_since(&self, job_id: i64, since: DateTime<Utc>) -> StoreResult<i64> {
        jobs::count_manual_runs_since(&self.pool, job_id, since).await
    }
    async fn claim_due_placed(
        &self,
        node: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
        others_after: DateTime<Utc>,
    ) -> StoreResult<Vec<Claim>> {
        scheduler::claim_due(&self.pool, node, now, lease_until, limit, others_after).await
    }
    async fn claim_maintenance(
        &self,
        task: &str,
        node: &str,
        now: DateTime<Utc>,
        not_since: DateTime<Utc>,
    ) -> StoreResult<bool> {
        scheduler::claim_maintenance(&self.pool, task, node, now, not_since).await
    }
    async fn heartbeat(
        &self,
        job_id: i64,
        lease_token: i64,
        lease_until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        scheduler::heartbeat(&self.pool, job_id, lease_token, lease_until).await
    }
    async fn set_run_progress(
        &self,
        job_id: i64,
        lease_token: i64,
        run_id: i64,
        progress: Option<&str>,
    ) -> StoreResult<bool> {
        scheduler::set_run_progress(&self.pool, job_id, lease_token, run_id, progress).await
    }
    async fn finish_run(
        &self,
        job_id: i64,
        lease_token: i64,
        run_id: i64,
        outcome: RunOutcome,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        scheduler::finish_run(&self.pool, job_id, lease_token, run_id, outcome, now).await
    }
    async fn release(&self, job_id: i64, lease_token: i64, run_id: i64) -> StoreResult<bool> {
        scheduler::release(&self.pool, job_id, lease_token, run_id).await
    }
    async fn release_node(&self, node: &str) -> StoreResult<u64> {
        scheduler::release_node(&self.pool, node).await
    }
    async fn probe_write(&self, node: &str, now: DateTime<Utc>) -> StoreResult<()> {
        scheduler::probe_write(&self.pool, node, now).await
    }
    async fn list_runs(&self, user_id: i64, job_id: i64, limit: i64) -> StoreResult<Vec<RunRow>> {
        jobs::list_runs(&self.pool, user_id, job_id, limit).await
    }
    async fn get_run(&self, user_id: i64, run_id: i64) -> StoreResult<RunRow> {
        jobs::get_run(&self.pool, user_id, run_id).await
    }
    async fn last_runs(&self, job_ids: &[i64]) -> StoreResult<Vec<RunRow>> {
        jobs::last_runs(&self.pool, job_ids).await
    }

    async fn insert_snapshot(&self, snapshot: NewSnapshot) -> StoreResult<SnapshotRow> {
        repos::insert_snapshot(&self.pool, snapshot).await
    }
    async fn list_snapshots(&self, user_id: i64, job_id: i64) -> StoreResult<Vec<SnapshotRow>> {
        repos::list_snapshots(&self.pool, user_id, job_id).await
    }
    async fn get_snapshot(&self, user_id: i64, snapshot_id: i64) -> StoreResult<SnapshotRow> {
        repos::get_snapshot(&self.pool, user_id, snapshot_id).await
    }
    async fn job_snapshots(&self, job_id: i64) -> StoreResult<Vec<SnapshotRow>> {
        repos::job_snapshots(&self.pool, job_id).await
    }
    async fn snapshot_job_ids(&self) -> StoreResult<Vec<i64>> {
        repos::snapshot_job_ids(&self.pool).await
    }
    async fn delete_snapshots(&self, snapshot_ids: &[i64]) -> StoreResult<()> {
        repos::delete_snapshots(&self.pool, snapshot_ids).await
    }
    async fn snapshot_key_exists(&self, key: &str) -> StoreResult<bool> {
        repos::snapshot_key_exists(&self.pool, key).await
    }

    async fn job_repo(
        &self,
        job_id: i64,
        full_name: &str,
        github_id: Option<i64>,
    ) -> StoreResult<JobRepoRow> {
        repos::job_repo(&self.pool, job_id, full_name, github_id).await
    }
    async fn list_job_repos(&self, job_id: i64) -> StoreResult<Vec<JobRepoRow>> {
        repos::list_job_repos(&self.pool, job_id).await
    }
    async fn delete_job_repo(&self, job_id: i64, job_repo_id: i64) -> StoreResult<()> {
        repos::delete_job_repo(&self.pool, job_id, job_repo_id).await
    }
    async fn set_job_repo_state(
        &self,
        job_repo_id: i64,
        state: &serde_json::Value,
    ) -> StoreResult<()> {
        repos::set_job_repo_state(&self.pool, job_repo_id, state).await
    }

    async fn get_http_cache(&self, user_id: i64, url: &str) -> StoreResult<Option<HttpCacheRow>> {
        repos::get_http_cache(&self.pool, user_id, url).await
    }
    async fn put_http_cache(&self, row: &HttpCacheRow) -> StoreResult<()> {
        repos::put_http_cache(&self.pool, row).await
    }

    async fn create_notify_target(&self, target: NewNotifyTarget) -> StoreResult<NotifyTargetRow> {
        notify::create_target(&self.pool, target).await
    }
    async fn list_notify_targets(&self, user_id: i64) -> StoreResult<Vec<NotifyTargetRow>> {
        notify::list_targets(&self.pool, user_id).await
    }
    async fn get_notify_target(
        &self,
        user_id: i64,
        target_id: i64,
    ) -> StoreResult<NotifyTargetRow> {
        notify::get_target(&self.pool, user_id, target_id).await
    }
    async fn delete_notify_target(&self, user_id: i64, target_id: i64) -> StoreResult<()> {
        notify::delete_target(&self.pool, user_id, target_id).await
    }
    async fn enqueue_notification(
        &self,
        user_id: i64,
        event: &str,
        payload: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        notify::enqueue(&self.pool, user_id, event, payload, now).await
    }
    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        notify::claim(&self.pool, now, lease_until, limit).await
    }
    async fn finish_delivery(&self, result: DeliveryResult) -> StoreResult<bool> {
        notify::finish(&self.pool, result).await
    }
    async fn record_notify_result(
        &self,
        target_id: i64,
        event: &str,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        notify::record_result(&self.pool, target_id, event, error, now).await
    }
    async fn target_deliveries(&self, target_id: i64) -> StoreResult<Vec<DeliveryRow>> {
        notify::target_deliveries(&self.pool, target_id).await
    }
    async fn stale_candidates(&self) -> StoreResult<Vec<StaleCandidate>> {
        notify::stale_candidates(&self.pool).await
    }
    async fn mark_stale_notified(&self, job_id: i64, basis: DateTime<Utc>) -> StoreResult<bool> {
        notify::mark_stale(&self.pool, job_id, basis).await
    }
    async fn create_scoped_api_key(&self, key: crate::NewApiKey<'_>) -> StoreResult<ApiKeyRow> {
        crate::audit::create_scoped_api_key(&self.pool, key).await
    }
    async fn record_audit(&self, entry: &crate::NewAuditEntry) -> StoreResult<()> {
        crate::audit::record_audit(&self.pool, entry).await
    }
    async fn list_audit(
        &self,
        user_id: i64,
        before_id: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<crate::AuditRow>> {
        crate::audit::list_audit(&self.pool, user_id, before_id, limit).await
    }
    async fn prune_audit(&self, older_than: DateTime<Utc>) -> StoreResult<u64> {
        crate::audit::prune_audit(&self.pool, older_than).await
    }
    async fn set_run_attempt(
        &self,
        job_id: i64,
        lease_token: i64,
        run_id: i64,
        attempt: u32,
    ) -> StoreResult<bool> {
        retries::set_run_attempt(&self.pool, job_id, lease_token, run_id, attempt).await
    }
    async fn job_freshness(&self, job_ids: &[i64]) -> StoreResult<Vec<crate::JobFreshness>> {
        retries::job_freshness(&self.pool, job_ids).await
    }
    async fn request_verify(
        &self,
        user_id: i64,
        job_id: i64,
        snapshot_id: Option<i64>,
        now: DateTime<Utc>,
    ) -> StoreResult<RunRow> {
        verify::request_verify(&self.pool, user_id, job_id, snapshot_id, now).await
    }
    async fn unscheduled_verify_jobs(&self, limit: i64) -> StoreResult<Vec<JobRow>> {
        verify::unscheduled_verify_jobs(&self.pool, limit).await
    }
    async fn schedule_verify(&self, job_id: i64, at: DateTime<Utc>) -> StoreResult<()> {
        verify::schedule_verify(&self.pool, job_id, at).await
    }
    async fn due_verifies(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<(JobRow, DateTime<Utc>)>> {
        verify::due_verifies(&self.pool, now, limit).await
    }
    async fn queue_scheduled_verify(
        &self,
        job_id: i64,
        slot: DateTime<Utc>,
        next: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        verify::queue_scheduled_verify(&self.pool, job_id, slot, next, now).await
    }

    async fn queue_stats(&self, now: DateTime<Utc>) -> StoreResult<crate::QueueStats> {
        stats::queue_stats(&self.pool, now).await
    }
}
