//! The one [`Store`] implementation: each method hands its pool to the function that holds
//! the statements, in the module named after what it stores.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::backend::{sql, Backend, SqlStore};
use crate::{accounts, jobs, repos, scheduler, stats, verify};
use crate::{
    ApiKeyRow, Claim, HttpCacheRow, JobPatch, JobRepoRow, JobRow, NewJob, NewSnapshot, RunOutcome,
    RunRow, SnapshotRow, Store, StoreResult, UserRow,
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
    async fn claim_due(
        &self,
        node: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<Claim>> {
        scheduler::claim_due(&self.pool, node, now, lease_until, limit).await
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
