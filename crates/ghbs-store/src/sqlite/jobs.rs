//! Jobs and the user-facing side of runs on SQLite.

use chrono::{DateTime, Utc};
use sqlx::{Sqlite, SqlitePool};

use super::{db_err, id_list, us};
use crate::codec::{self, conflict, kind_str, to_json};
use crate::{JobPatch, JobRow, NewJob, RunRow, StoreError, StoreResult};

const JOB_EXISTS: &str = "the user already has a job for this target";

/// `NotFound` unless the job exists and is the user's.
pub(super) async fn owns_job(
    db: impl sqlx::Executor<'_, Database = Sqlite>,
    user_id: i64,
    job_id: i64,
) -> StoreResult<()> {
    sqlx::query("SELECT 1 FROM jobs WHERE id = ? AND user_id = ?")
        .bind(job_id)
        .bind(user_id)
        .fetch_optional(db)
        .await
        .map_err(db_err)?
        .map(|_| ())
        .ok_or(StoreError::NotFound)
}

/// The id of the user's job on `target` (case-insensitive, as the unique index is).
async fn job_with_target(
    pool: &SqlitePool,
    user_id: i64,
    target: &str,
) -> StoreResult<Option<i64>> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT id FROM jobs WHERE user_id = ? AND lower(target) = lower(?)")
            .bind(user_id)
            .bind(target)
            .fetch_optional(pool)
            .await
            .map_err(db_err)?;
    Ok(row.map(|(id,)| id))
}

/// Turn a unique violation on the target into a `Conflict` naming the job that holds it.
async fn target_conflict(
    pool: &SqlitePool,
    e: StoreError,
    user_id: i64,
    target: &str,
) -> StoreError {
    match e {
        StoreError::Conflict { .. } => match job_with_target(pool, user_id, target).await {
            Ok(existing) => conflict(JOB_EXISTS, existing)(e),
            Err(lookup) => lookup,
        },
        other => other,
    }
}

pub(super) async fn create_job(pool: &SqlitePool, job: NewJob) -> StoreResult<JobRow> {
    let inserted = sqlx::query(
        "INSERT INTO jobs (user_id, target, target_kind, schedule, timezone, retention, options,
                           next_run_at, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
         RETURNING *",
    )
    .bind(job.user_id)
    .bind(&job.target)
    .bind(kind_str(job.target_kind))
    .bind(&job.schedule)
    .bind(&job.timezone)
    .bind(to_json(&job.retention)?)
    .bind(to_json(&job.options)?)
    .bind(us(job.next_run_at))
    .bind(us(job.created_at))
    .fetch_one(pool)
    .await
    .map_err(db_err);
    match inserted {
        Ok(row) => codec::job(&row),
        Err(e) => Err(target_conflict(pool, e, job.user_id, &job.target).await),
    }
}

pub(super) async fn get_job(pool: &SqlitePool, user_id: i64, job_id: i64) -> StoreResult<JobRow> {
    let row = sqlx::query("SELECT * FROM jobs WHERE id = ? AND user_id = ?")
        .bind(job_id)
        .bind(user_id)
        .fetch_one(pool)
        .await
        .map_err(db_err)?;
    codec::job(&row)
}

pub(super) async fn list_jobs(pool: &SqlitePool, user_id: i64) -> StoreResult<Vec<JobRow>> {
    let rows = sqlx::query("SELECT * FROM jobs WHERE user_id = ? ORDER BY id")
        .bind(user_id)
        .fetch_all(pool)
        .await
        .map_err(db_err)?;
    rows.iter().map(codec::job).collect()
}

pub(super) async fn update_job(
    pool: &SqlitePool,
    user_id: i64,
    job_id: i64,
    patch: JobPatch,
) -> StoreResult<JobRow> {
    let updated = sqlx::query(
        "UPDATE jobs SET
             target = COALESCE(?, target),
             schedule = COALESCE(?, schedule),
             timezone = COALESCE(?, timezone),
             retention = COALESCE(?, retention),
             options = COALESCE(?, options),
             paused = COALESCE(?, paused),
             next_run_at = COALESCE(?, next_run_at)
         WHERE id = ? AND user_id = ?
         RETURNING *",
    )
    .bind(patch.target.as_deref())
    .bind(patch.schedule.as_deref())
    .bind(patch.timezone.as_deref())
    .bind(patch.retention.as_ref().map(to_json).transpose()?)
    .bind(patch.options.as_ref().map(to_json).transpose()?)
    .bind(patch.paused)
    .bind(patch.next_run_at.map(us))
    .bind(job_id)
    .bind(user_id)
    .fetch_one(pool)
    .await
    .map_err(db_err);
    match (updated, patch.target) {
        (Ok(row), _) => codec::job(&row),
        (Err(e), Some(target)) => Err(target_conflict(pool, e, user_id, &target).await),
        (Err(e), None) => Err(e),
    }
}

pub(super) async fn delete_job(
    pool: &SqlitePool,
    user_id: i64,
    job_id: i64,
    purge: bool,
) -> StoreResult<()> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
    // Runs and job_repos go with the job (ON DELETE CASCADE).
    let done = sqlx::query("DELETE FROM jobs WHERE id = ? AND user_id = ?")
        .bind(job_id)
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    if purge {
        sqlx::query("DELETE FROM snapshots WHERE job_id = ? AND user_id = ?")
            .bind(job_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
    }
    tx.commit().await.map_err(db_err)
}

pub(super) async fn count_jobs(pool: &SqlitePool) -> StoreResult<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM jobs")
        .fetch_one(pool)
        .await
        .map_err(db_err)?;
    Ok(n)
}

pub(super) async fn request_run(
    pool: &SqlitePool,
    user_id: i64,
    job_id: i64,
    now: DateTime<Utc>,
) -> StoreResult<RunRow> {
    // The write lock makes check-then-insert safe here; the unique index on active runs would
    // refuse a second one anyway.
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
    owns_job(&mut *tx, user_id, job_id).await?;
    let active =
        sqlx::query("SELECT * FROM runs WHERE job_id = ? AND status IN ('queued', 'running')")
            .bind(job_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
    if let Some(row) = active {
        return codec::run(&row);
    }
    let row = sqlx::query(
        "INSERT INTO runs (job_id, trigger_kind, status, queued_at) VALUES (?, 'manual', 'queued', ?)
         RETURNING *",
    )
    .bind(job_id)
    .bind(us(now))
    .fetch_one(&mut *tx)
    .await
    .map_err(db_err)?;
    let run = codec::run(&row)?;
    tx.commit().await.map_err(db_err)?;
    Ok(run)
}

pub(super) async fn count_manual_runs_since(
    pool: &SqlitePool,
    job_id: i64,
    since: DateTime<Utc>,
) -> StoreResult<i64> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM runs WHERE job_id = ? AND trigger_kind = 'manual' AND queued_at >= ?",
    )
    .bind(job_id)
    .bind(us(since))
    .fetch_one(pool)
    .await
    .map_err(db_err)?;
    Ok(n)
}

pub(super) async fn list_runs(
    pool: &SqlitePool,
    user_id: i64,
    job_id: i64,
    limit: i64,
) -> StoreResult<Vec<RunRow>> {
    let rows = sqlx::query(
        "SELECT r.* FROM runs r JOIN jobs j ON j.id = r.job_id
         WHERE r.job_id = ? AND j.user_id = ?
         ORDER BY r.id DESC LIMIT ?",
    )
    .bind(job_id)
    .bind(user_id)
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    if rows.is_empty() {
        owns_job(pool, user_id, job_id).await?;
    }
    rows.iter().map(codec::run).collect()
}

pub(super) async fn get_run(pool: &SqlitePool, user_id: i64, run_id: i64) -> StoreResult<RunRow> {
    let row = sqlx::query(
        "SELECT r.* FROM runs r JOIN jobs j ON j.id = r.job_id WHERE r.id = ? AND j.user_id = ?",
    )
    .bind(run_id)
    .bind(user_id)
    .fetch_one(pool)
    .await
    .map_err(db_err)?;
    codec::run(&row)
}

pub(super) async fn last_runs(pool: &SqlitePool, job_ids: &[i64]) -> StoreResult<Vec<RunRow>> {
    if job_ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT * FROM runs WHERE id IN (
             SELECT MAX(id) FROM runs WHERE job_id IN (SELECT value FROM json_each(?))
             GROUP BY job_id)
         ORDER BY job_id",
    )
    .bind(id_list(job_ids))
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    rows.iter().map(codec::run).collect()
}
