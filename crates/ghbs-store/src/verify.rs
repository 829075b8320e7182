//! Verification runs (trigger `verify`) and each job's next scheduled verification (issue 11).

use chrono::{DateTime, Utc};
use sqlx::Pool;

use crate::backend::{begin, commit, sql, Backend};
use crate::codec::{self, Cols};
use crate::{JobRow, RunRow, StoreError, StoreResult};

/// What a conflict with a run in progress says.
const BUSY: &str = "the job has a run queued or in progress";

const ACTIVE_RUN: &str = "SELECT * FROM runs WHERE job_id = $1 AND status IN ('queued', 'running')";

/// The active run answers a verify request when it is the same verification (idempotent);
/// otherwise the request conflicts with it.
fn same_verify(run: RunRow, snapshot_id: Option<i64>) -> StoreResult<RunRow> {
    if run.trigger == ghbs_wire::RunTrigger::Verify && run.snapshot_id == snapshot_id {
        Ok(run)
    } else {
        Err(StoreError::Conflict {
            what: BUSY.to_owned(),
            existing_id: Some(run.id),
        })
    }
}

pub(crate) async fn request_verify<D: Backend>(
    pool: &Pool<D>,
    user_id: i64,
    job_id: i64,
    snapshot_id: Option<i64>,
    now: DateTime<Utc>,
) -> StoreResult<RunRow> {
    // As `request_run`: the write transaction (SQLite) or the job row's lock (PostgreSQL) makes
    // check-then-insert safe; the unique index on active runs would refuse a second one anyway.
    let mut tx = begin(pool).await?;
    sql(D::SQL.lock_own_job)
        .arg(job_id)
        .arg(user_id)
        .opt(&mut tx)
        .await?
        .ok_or(StoreError::NotFound)?;
    if let Some(row) = sql(ACTIVE_RUN).arg(job_id).opt(&mut tx).await? {
        return same_verify(codec::run(&row)?, snapshot_id);
    }
    let row = sql(
        "INSERT INTO runs (job_id, trigger_kind, status, queued_at, snapshot_id)
         VALUES ($1, 'verify', 'queued', $2, $3)
         RETURNING *",
    )
    .arg(job_id)
    .time(now)
    .arg(snapshot_id)
    .one(&mut tx)
    .await?;
    let run = codec::run(&row)?;
    commit(tx).await?;
    Ok(run)
}

pub(crate) async fn unscheduled_verify_jobs<D: Backend>(
    pool: &Pool<D>,
    limit: i64,
) -> StoreResult<Vec<JobRow>> {
    sql("SELECT j.* FROM jobs j
         WHERE NOT EXISTS (SELECT 1 FROM verify_schedule v WHERE v.job_id = j.id)
         ORDER BY j.id LIMIT $1")
    .arg(limit)
    .all(pool)
    .await?
    .iter()
    .map(codec::job)
    .collect()
}

pub(crate) async fn schedule_verify<D: Backend>(
    pool: &Pool<D>,
    job_id: i64,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    sql("INSERT INTO verify_schedule (job_id, next_verify_at)
         SELECT id, $1 FROM jobs WHERE id = $2
         ON CONFLICT (job_id) DO NOTHING")
    .time(at)
    .arg(job_id)
    .run(pool)
    .await?;
    Ok(())
}

pub(crate) async fn due_verifies<D: Backend>(
    pool: &Pool<D>,
    now: DateTime<Utc>,
    limit: i64,
) -> StoreResult<Vec<(JobRow, DateTime<Utc>)>> {
    sql(
        "SELECT j.*, v.next_verify_at FROM verify_schedule v JOIN jobs j ON j.id = v.job_id
         WHERE v.next_verify_at <= $1 AND j.next_run_at > $1 AND NOT j.paused AND NOT j.needs_login
         ORDER BY v.next_verify_at, v.job_id LIMIT $2",
    )
    .time(now)
    .arg(limit)
    .all(pool)
    .await?
    .iter()
    .map(|row| Ok((codec::job(row)?, row.time("next_verify_at")?)))
    .collect()
}

pub(crate) async fn queue_scheduled_verify<D: Backend>(
    pool: &Pool<D>,
    job_id: i64,
    slot: DateTime<Utc>,
    next: DateTime<Utc>,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    // Of several nodes seeing the same due slot, the guarded update lets one move it; a run
    // that became active meanwhile makes the insert hit the unique index on active runs, and
    // the transaction (slot included) rolls back, to be tried again at the next look.
    let mut tx = begin(pool).await?;
    if sql(ACTIVE_RUN).arg(job_id).opt(&mut tx).await?.is_some() {
        return Ok(false);
    }
    let moved = sql(
        "UPDATE verify_schedule SET next_verify_at = $1 WHERE job_id = $2 AND next_verify_at = $3",
    )
    .time(next)
    .arg(job_id)
    .time(slot)
    .run(&mut tx)
    .await?;
    if moved == 0 {
        return Ok(false);
    }
    sql("INSERT INTO runs (job_id, trigger_kind, status, queued_at)
         VALUES ($1, 'verify', 'queued', $2)")
    .arg(job_id)
    .time(now)
    .run(&mut tx)
    .await?;
    commit(tx).await?;
    Ok(true)
}
