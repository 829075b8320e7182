//! Verification runs and their schedule on PostgreSQL (issue 11).

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};

use super::db_err;
use crate::codec;
use crate::verify::same_verify;
use crate::{JobRow, RunRow, StoreError, StoreResult};

pub(super) async fn request_verify(
    pool: &PgPool,
    user_id: i64,
    job_id: i64,
    snapshot_id: Option<i64>,
    now: DateTime<Utc>,
) -> StoreResult<RunRow> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    // Locking the job row serialises this with claims and other requests (as `request_run`).
    sqlx::query("SELECT 1 FROM jobs WHERE id = $1 AND user_id = $2 FOR UPDATE")
        .bind(job_id)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?
        .ok_or(StoreError::NotFound)?;
    let active =
        sqlx::query("SELECT * FROM runs WHERE job_id = $1 AND status IN ('queued', 'running')")
            .bind(job_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
    if let Some(row) = active {
        return same_verify(codec::run(&row)?, snapshot_id);
    }
    let row = sqlx::query(
        "INSERT INTO runs (job_id, trigger_kind, status, queued_at, snapshot_id)
         VALUES ($1, 'verify', 'queued', $2, $3)
         RETURNING *",
    )
    .bind(job_id)
    .bind(now)
    .bind(snapshot_id)
    .fetch_one(&mut *tx)
    .await
    .map_err(db_err)?;
    let run = codec::run(&row)?;
    tx.commit().await.map_err(db_err)?;
    Ok(run)
}

pub(super) async fn unscheduled_verify_jobs(pool: &PgPool, limit: i64) -> StoreResult<Vec<JobRow>> {
    let rows = sqlx::query(
        "SELECT j.* FROM jobs j
         WHERE NOT EXISTS (SELECT 1 FROM verify_schedule v WHERE v.job_id = j.id)
         ORDER BY j.id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    rows.iter().map(codec::job).collect()
}

pub(super) async fn schedule_verify(
    pool: &PgPool,
    job_id: i64,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO verify_schedule (job_id, next_verify_at)
         SELECT id, $1 FROM jobs WHERE id = $2
         ON CONFLICT (job_id) DO NOTHING",
    )
    .bind(at)
    .bind(job_id)
    .execute(pool)
    .await
    .map_err(db_err)?;
    Ok(())
}

pub(super) async fn due_verifies(
    pool: &PgPool,
    now: DateTime<Utc>,
    limit: i64,
) -> StoreResult<Vec<(JobRow, DateTime<Utc>)>> {
    let rows = sqlx::query(
        "SELECT j.*, v.next_verify_at FROM verify_schedule v JOIN jobs j ON j.id = v.job_id
         WHERE v.next_verify_at <= $1 AND NOT j.paused AND NOT j.needs_login
         ORDER BY v.next_verify_at, v.job_id LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|row| {
            let job = codec::job(row)?;
            let at: DateTime<Utc> = row.try_get("next_verify_at").map_err(db_err)?;
            Ok((job, at))
        })
        .collect()
}

pub(super) async fn queue_scheduled_verify(
    pool: &PgPool,
    job_id: i64,
    slot: DateTime<Utc>,
    next: DateTime<Utc>,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    let locked = sqlx::query("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE")
        .bind(job_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
    if locked.is_none() {
        return Ok(false);
    }
    let busy =
        sqlx::query("SELECT 1 FROM runs WHERE job_id = $1 AND status IN ('queued', 'running')")
            .bind(job_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
    if busy.is_some() {
        return Ok(false);
    }
    // Guarded by the slot: of several nodes seeing the same due slot, one moves it.
    let moved = sqlx::query(
        "UPDATE verify_schedule SET next_verify_at = $1 WHERE job_id = $2 AND next_verify_at = $3",
    )
    .bind(next)
    .bind(job_id)
    .bind(slot)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    if moved.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO runs (job_id, trigger_kind, status, queued_at)
         VALUES ($1, 'verify', 'queued', $2)",
    )
    .bind(job_id)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    Ok(true)
}
