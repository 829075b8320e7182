//! Verification runs and their schedule on SQLite (issue 11).

use chrono::{DateTime, Utc};
use sqlx::{Row, SqlitePool};

use super::jobs::owns_job;
use super::{db_err, us};
use crate::codec;
use crate::verify::same_verify;
use crate::{JobRow, RunRow, StoreResult};

pub(super) async fn request_verify(
    pool: &SqlitePool,
    user_id: i64,
    job_id: i64,
    snapshot_id: Option<i64>,
    now: DateTime<Utc>,
) -> StoreResult<RunRow> {
    // The write lock makes check-then-insert safe; the unique index on active runs would refuse
    // a second active run anyway.
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
    owns_job(&mut *tx, user_id, job_id).await?;
    let active =
        sqlx::query("SELECT * FROM runs WHERE job_id = ? AND status IN ('queued', 'running')")
            .bind(job_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
    if let Some(row) = active {
        let run = codec::run(&row)?;
        return same_verify(run, snapshot_id);
    }
    let row = sqlx::query(
        "INSERT INTO runs (job_id, trigger_kind, status, queued_at, snapshot_id)
         VALUES (?, 'verify', 'queued', ?, ?)
         RETURNING *",
    )
    .bind(job_id)
    .bind(us(now))
    .bind(snapshot_id)
    .fetch_one(&mut *tx)
    .await
    .map_err(db_err)?;
    let run = codec::run(&row)?;
    tx.commit().await.map_err(db_err)?;
    Ok(run)
}

pub(super) async fn unscheduled_verify_jobs(
    pool: &SqlitePool,
    limit: i64,
) -> StoreResult<Vec<JobRow>> {
    let rows = sqlx::query(
        "SELECT j.* FROM jobs j
         WHERE NOT EXISTS (SELECT 1 FROM verify_schedule v WHERE v.job_id = j.id)
         ORDER BY j.id LIMIT ?",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    rows.iter().map(codec::job).collect()
}

pub(super) async fn schedule_verify(
    pool: &SqlitePool,
    job_id: i64,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO verify_schedule (job_id, next_verify_at)
         SELECT id, ? FROM jobs WHERE id = ?
         ON CONFLICT (job_id) DO NOTHING",
    )
    .bind(us(at))
    .bind(job_id)
    .execute(pool)
    .await
    .map_err(db_err)?;
    Ok(())
}

pub(super) async fn due_verifies(
    pool: &SqlitePool,
    now: DateTime<Utc>,
    limit: i64,
) -> StoreResult<Vec<(JobRow, DateTime<Utc>)>> {
    let rows = sqlx::query(
        "SELECT j.*, v.next_verify_at FROM verify_schedule v CROSS JOIN jobs j ON j.id = v.job_id
         WHERE v.next_verify_at <= ? AND j.paused = 0 AND j.needs_login = 0
         ORDER BY v.next_verify_at, v.job_id LIMIT ?",
    )
    .bind(us(now))
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|row| {
            let job = codec::job(row)?;
            let at: i64 = row.try_get("next_verify_at").map_err(db_err)?;
            let at = DateTime::from_timestamp_micros(at)
                .ok_or_else(|| codec::decode_err("next_verify_at", at))?;
            Ok((job, at))
        })
        .collect()
}

pub(super) async fn queue_scheduled_verify(
    pool: &SqlitePool,
    job_id: i64,
    slot: DateTime<Utc>,
    next: DateTime<Utc>,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
    let busy =
        sqlx::query("SELECT 1 FROM runs WHERE job_id = ? AND status IN ('queued', 'running')")
            .bind(job_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
    if busy.is_some() {
        return Ok(false);
    }
    let moved = sqlx::query(
        "UPDATE verify_schedule SET next_verify_at = ? WHERE job_id = ? AND next_verify_at = ?",
    )
    .bind(us(next))
    .bind(job_id)
    .bind(us(slot))
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    if moved.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO runs (job_id, trigger_kind, status, queued_at) VALUES (?, 'verify', 'queued', ?)",
    )
    .bind(job_id)
    .bind(us(now))
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    Ok(true)
}
