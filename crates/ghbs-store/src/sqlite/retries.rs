//! Retries of failed runs and the freshness of jobs on SQLite (issue 11). Kept apart from
//! `scheduler.rs`: `claim_due` and `finish_run` call in here from inside their transactions.

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection, SqlitePool};

use super::{db_err, from_us, id_list, us};
use crate::codec::to_json;
use crate::{JobFreshness, RetryPlan, StoreResult};
use ghbs_wire::RunStatus;

/// Claim jobs whose retry is due, before their next slot (a slot that came is claimed by
/// schedule, and that run starts over at attempt 1). Driven by the partial index on
/// `retry_at`, which holds only the jobs with a retry pending.
const CLAIM_BY_RETRY: &str = "
    UPDATE jobs SET lease_owner = ?1, lease_expires_at = ?2, lease_token = lease_token + 1
    WHERE id IN (
        SELECT id FROM jobs
        WHERE retry_at IS NOT NULL AND retry_at <= ?3 AND next_run_at > ?3
          AND paused = 0 AND needs_login = 0
          AND (lease_expires_at IS NULL OR lease_expires_at <= ?3)
        ORDER BY retry_at, id
        LIMIT ?4)
    RETURNING *";

pub(super) async fn claim_retry_due(
    conn: &mut SqliteConnection,
    node: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: i64,
) -> StoreResult<Vec<SqliteRow>> {
    if limit <= 0 {
        return Ok(Vec::new());
    }
    sqlx::query(CLAIM_BY_RETRY)
        .bind(node)
        .bind(us(lease_until))
        .bind(us(now))
        .bind(limit)
        .fetch_all(conn)
        .await
        .map_err(db_err)
}

/// Inside `finish_run`'s transaction: the job's pending retry becomes `retry` (or none), and
/// the finished run records when its next attempt starts.
pub(super) async fn record(
    conn: &mut SqliteConnection,
    job_id: i64,
    run_id: i64,
    retry: Option<&RetryPlan>,
) -> StoreResult<()> {
    let scope = match retry.and_then(|r| r.scope.as_ref()) {
        Some(v) => Some(to_json(v)?),
        None => None,
    };
    sqlx::query("UPDATE jobs SET retry_at = ?, retry_attempt = ?, retry_scope = ? WHERE id = ?")
        .bind(retry.map(|r| us(r.at)))
        .bind(retry.map_or(0, |r| i64::from(r.attempt)))
        .bind(scope)
        .bind(job_id)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    sqlx::query("UPDATE runs SET retry_at = ? WHERE id = ?")
        .bind(retry.map(|r| us(r.at)))
        .bind(run_id)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(())
}

pub(super) async fn set_run_attempt(
    pool: &SqlitePool,
    job_id: i64,
    lease_token: i64,
    run_id: i64,
    attempt: u32,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE runs SET attempt = ?
         WHERE id = ? AND job_id = ? AND status = 'running'
           AND EXISTS (SELECT 1 FROM jobs
                       WHERE id = ? AND lease_token = ? AND lease_owner IS NOT NULL)",
    )
    .bind(i64::from(attempt))
    .bind(run_id)
    .bind(job_id)
    .bind(job_id)
    .bind(lease_token)
    .execute(pool)
    .await
    .map_err(db_err)?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn job_freshness(
    pool: &SqlitePool,
    job_ids: &[i64],
) -> StoreResult<Vec<JobFreshness>> {
    if job_ids.is_empty() {
        return Ok(Vec::new());
    }
    // Both answered from the `runs_job (job_id, id)` index: the newest successful and the
    // newest finished run of each job.
    let rows = sqlx::query(
        "SELECT j.value AS job_id,
           (SELECT finished_at FROM runs
             WHERE job_id = j.value AND status IN ('succeeded', 'partial')
             ORDER BY id DESC LIMIT 1) AS last_success_at,
           (SELECT status FROM runs
             WHERE job_id = j.value AND status IN ('succeeded', 'partial', 'failed')
             ORDER BY id DESC LIMIT 1) AS last_finished
         FROM json_each(?) j",
    )
    .bind(id_list(job_ids))
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|row| {
            let at: Option<i64> = row.try_get("last_success_at").map_err(db_err)?;
            let status: Option<String> = row.try_get("last_finished").map_err(db_err)?;
            Ok(JobFreshness {
                job_id: row.try_get("job_id").map_err(db_err)?,
                last_success_at: at.map(|v| from_us("last_success_at", v)).transpose()?,
                last_finished: status.as_deref().and_then(RunStatus::parse),
            })
        })
        .collect()
}
