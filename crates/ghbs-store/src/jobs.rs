//! Jobs and the user-facing side of runs.

use chrono::{DateTime, Utc};
use sqlx::Pool;

use crate::backend::{begin, commit, sql, Backend, Db};
use crate::codec::{self, conflict, kind_str, to_json, Cols};
use crate::{JobFreshness, JobListing, JobPatch, JobRow, NewJob, RunRow, StoreError, StoreResult};
use ghbs_wire::RunStatus;

const JOB_EXISTS: &str = "the user already has a job for this target";

/// `NotFound` unless the job exists and is the user's.
pub(crate) async fn owns_job<'c, D: Backend>(
    db: impl Db<'c, D>,
    user_id: i64,
    job_id: i64,
) -> StoreResult<()> {
    sql("SELECT 1 FROM jobs WHERE id = $1 AND user_id = $2")
        .arg(job_id)
        .arg(user_id)
        .opt(db)
        .await?
        .map(|_| ())
        .ok_or(StoreError::NotFound)
}

/// Turn a unique violation on the target into a `Conflict` naming the user's job on `target`
/// (case-insensitive, as the unique index is).
async fn target_conflict<D: Backend>(
    pool: &Pool<D>,
    e: StoreError,
    user_id: i64,
    target: &str,
) -> StoreError {
    let StoreError::Conflict { .. } = e else {
        return e;
    };
    let existing = sql("SELECT id FROM jobs WHERE user_id = $1 AND lower(target) = lower($2)")
        .arg(user_id)
        .arg(target)
        .opt(pool)
        .await
        .and_then(|row| row.map(|r| r.int("id")).transpose());
    match existing {
        Ok(existing) => conflict(JOB_EXISTS, existing)(e),
        Err(lookup) => lookup,
    }
}

pub(crate) async fn create_job<D: Backend>(pool: &Pool<D>, job: NewJob) -> StoreResult<JobRow> {
    let inserted = sql(
        "INSERT INTO jobs (user_id, target, target_kind, schedule, timezone, retention, options,
                           next_run_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         RETURNING *",
    )
    .arg(job.user_id)
    .arg(job.target.as_str())
    .arg(kind_str(job.target_kind))
    .arg(job.schedule.canonical())
    .arg(job.timezone.name())
    .arg(to_json(&job.retention)?)
    .arg(to_json(&job.options)?)
    .time(job.next_run_at)
    .time(job.created_at)
    .one(pool)
    .await;
    match inserted {
        Ok(row) => codec::job(&row),
        Err(e) => Err(target_conflict(pool, e, job.user_id, &job.target).await),
    }
}

pub(crate) async fn get_job<D: Backend>(
    pool: &Pool<D>,
    user_id: i64,
    job_id: i64,
) -> StoreResult<JobRow> {
    let row = sql("SELECT * FROM jobs WHERE id = $1 AND user_id = $2")
        .arg(job_id)
        .arg(user_id)
        .one(pool)
        .await?;
    codec::job(&row)
}

pub(crate) async fn list_jobs<D: Backend>(
    pool: &Pool<D>,
    user_id: i64,
) -> StoreResult<Vec<JobRow>> {
    sql("SELECT * FROM jobs WHERE user_id = $1 ORDER BY id")
        .arg(user_id)
        .all(pool)
        .await?
        .iter()
        .map(codec::job)
        .collect()
}

/// The jobs with their newest run (columns `lr_*`) and freshness (`last_success_at`,
/// `last_finished`, as [`crate::Dialect::job_freshness`] computes them): each from the
/// `runs_job (job_id, id)` index, read newest first, so the cost is per listed job, not per run.
pub(crate) async fn list_jobs_page<D: Backend>(
    pool: &Pool<D>,
    user_id: i64,
    after: Option<i64>,
    limit: i64,
) -> StoreResult<Vec<JobListing>> {
    let rows = sql("SELECT j.*,
              r.id AS lr_id, r.job_id AS lr_job_id, r.trigger_kind AS lr_trigger_kind,
              r.status AS lr_status, r.queued_at AS lr_queued_at, r.started_at AS lr_started_at,
              r.finished_at AS lr_finished_at, r.error AS lr_error, r.progress AS lr_progress,
              r.bytes_fetched AS lr_bytes_fetched, r.api_requests AS lr_api_requests,
              r.api_requests_conditional AS lr_api_requests_conditional,
              r.snapshot_id AS lr_snapshot_id, r.attempt AS lr_attempt,
              r.retry_at AS lr_retry_at,
              (SELECT s.finished_at FROM runs s
                WHERE s.job_id = j.id AND s.status IN ('succeeded', 'partial')
                ORDER BY s.id DESC LIMIT 1) AS last_success_at,
              (SELECT f.status FROM runs f
                WHERE f.job_id = j.id AND f.status IN ('succeeded', 'partial', 'failed')
                ORDER BY f.id DESC LIMIT 1) AS last_finished
         FROM jobs j
         LEFT JOIN runs r ON r.id = (SELECT m.id FROM runs m WHERE m.job_id = j.id
                                     ORDER BY m.id DESC LIMIT 1)
         WHERE j.user_id = $1 AND j.id > $2
         ORDER BY j.id
         LIMIT $3")
    .arg(user_id)
    .arg(after.unwrap_or(0))
    .arg(limit)
    .all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let job = codec::job(row)?;
            let last_run = match row.opt_int("lr_id")? {
                Some(_) => Some(codec::run_as(row, &codec::RunCols::LAST)?),
                None => None,
            };
            let freshness = JobFreshness {
                job_id: job.id,
                last_success_at: row.opt_time("last_success_at")?,
                last_finished: row
                    .opt_text("last_finished")?
                    .as_deref()
                    .and_then(RunStatus::parse),
            };
            Ok(JobListing {
                job,
                last_run,
                freshness,
            })
        })
        .collect()
}

pub(crate) async fn update_job<D: Backend>(
    pool: &Pool<D>,
    user_id: i64,
    job_id: i64,
    patch: JobPatch,
) -> StoreResult<JobRow> {
    let updated = sql("UPDATE jobs SET
             target = COALESCE($1, target),
             schedule = COALESCE($2, schedule),
             timezone = COALESCE($3, timezone),
             retention = COALESCE($4, retention),
             options = COALESCE($5, options),
             paused = COALESCE($6, paused),
             next_run_at = COALESCE($7, next_run_at)
         WHERE id = $8 AND user_id = $9
         RETURNING *")
    .arg(patch.target.as_deref())
    .arg(patch.schedule.as_ref().map(|s| s.canonical()))
    .arg(patch.timezone.map(|tz| tz.name()))
    .arg(patch.retention.as_ref().map(to_json).transpose()?)
    .arg(patch.options.as_ref().map(to_json).transpose()?)
    .arg(patch.paused)
    .opt_time(patch.next_run_at)
    .arg(job_id)
    .arg(user_id)
    .one(pool)
    .await;
    match (updated, patch.target) {
        (Ok(row), _) => codec::job(&row),
        (Err(e), Some(target)) => Err(target_conflict(pool, e, user_id, &target).await),
        (Err(e), None) => Err(e),
    }
}

pub(crate) async fn delete_job<D: Backend>(
    pool: &Pool<D>,
    user_id: i64,
    job_id: i64,
    purge: bool,
) -> StoreResult<()> {
    let mut tx = begin(pool).await?;
    // Runs and job_repos go with the job (ON DELETE CASCADE).
    let done = sql("DELETE FROM jobs WHERE id = $1 AND user_id = $2")
        .arg(job_id)
        .arg(user_id)
        .run(&mut tx)
        .await?;
    if done == 0 {
        return Err(StoreError::NotFound);
    }
    if purge {
        sql("DELETE FROM snapshots WHERE job_id = $1 AND user_id = $2")
            .arg(job_id)
            .arg(user_id)
            .run(&mut tx)
            .await?;
    }
    commit(tx).await
}

pub(crate) async fn count_jobs<D: Backend>(pool: &Pool<D>) -> StoreResult<i64> {
    sql("SELECT COUNT(*) AS n FROM jobs")
        .one(pool)
        .await?
        .int("n")
}

pub(crate) async fn request_run<D: Backend>(
    pool: &Pool<D>,
    user_id: i64,
    job_id: i64,
    now: DateTime<Utc>,
) -> StoreResult<RunRow> {
    // The write transaction (SQLite) or the lock on the job row (PostgreSQL) makes
    // check-then-insert safe here; the unique index on active runs would refuse a second one.
    let mut tx = begin(pool).await?;
    sql(D::SQL.lock_own_job)
        .arg(job_id)
        .arg(user_id)
        .opt(&mut tx)
        .await?
        .ok_or(StoreError::NotFound)?;
    let active = sql("SELECT * FROM runs WHERE job_id = $1 AND status IN ('queued', 'running')")
        .arg(job_id)
        .opt(&mut tx)
        .await?;
    if let Some(row) = active {
        return codec::run(&row);
    }
    let row = sql("INSERT INTO runs (job_id, trigger_kind, status, queued_at)
         VALUES ($1, 'manual', 'queued', $2)
         RETURNING *")
    .arg(job_id)
    .time(now)
    .one(&mut tx)
    .await?;
    let run = codec::run(&row)?;
    commit(tx).await?;
    Ok(run)
}

pub(crate) async fn count_manual_runs_since<D: Backend>(
    pool: &Pool<D>,
    job_id: i64,
    since: DateTime<Utc>,
) -> StoreResult<i64> {
    sql("SELECT COUNT(*) AS n FROM runs
         WHERE job_id = $1 AND trigger_kind = 'manual' AND queued_at >= $2")
    .arg(job_id)
    .time(since)
    .one(pool)
    .await?
    .int("n")
}

pub(crate) async fn list_runs<D: Backend>(
    pool: &Pool<D>,
    user_id: i64,
    job_id: i64,
    limit: i64,
) -> StoreResult<Vec<RunRow>> {
    let rows = sql("SELECT r.* FROM runs r JOIN jobs j ON j.id = r.job_id
         WHERE r.job_id = $1 AND j.user_id = $2
         ORDER BY r.id DESC LIMIT $3")
    .arg(job_id)
    .arg(user_id)
    .arg(limit)
    .all(pool)
    .await?;
    if rows.is_empty() {
        owns_job(pool, user_id, job_id).await?;
    }
    rows.iter().map(codec::run).collect()
}

pub(crate) async fn get_run<D: Backend>(
    pool: &Pool<D>,
    user_id: i64,
    run_id: i64,
) -> StoreResult<RunRow> {
    let row = sql(
        "SELECT r.* FROM runs r JOIN jobs j ON j.id = r.job_id WHERE r.id = $1 AND j.user_id = $2",
    )
    .arg(run_id)
    .arg(user_id)
    .one(pool)
    .await?;
    codec::run(&row)
}

pub(crate) async fn last_runs<D: Backend>(
    pool: &Pool<D>,
    job_ids: &[i64],
) -> StoreResult<Vec<RunRow>> {
    if job_ids.is_empty() {
        return Ok(Vec::new());
    }
    sql(D::SQL.last_runs)
        .ids(job_ids)
        .all(pool)
        .await?
        .iter()
        .map(codec::run)
        .collect()
}
