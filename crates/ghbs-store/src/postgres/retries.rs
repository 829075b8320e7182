//! Retries of failed runs and the freshness of jobs on PostgreSQL (issue 11). Kept apart from
//! `scheduler.rs`: `claim_due` and `finish_run` call in here from inside their transactions.

use chrono::{DateTime, Utc};
use ghbs_wire::RunStatus;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};

use super::db_err;
use crate::codec::to_json;
use crate::{JobFreshness, RetryPlan, StoreResult};

/// Claim jobs whose retry is due, before their next slot (a slot that came is claimed by
/// schedule, and that run starts over at attempt 1). `FOR UPDATE SKIP LOCKED` like the other
/// claims; driven by the partial index on `retry_at`, which holds only jobs with a retry pending.
const CLAIM_BY_RETRY: &str = "
    WITH due AS (
        SELECT id FROM jobs
        WHERE retry_at IS NOT NULL AND retry_at <= $1 AND next_run_at > $1
          AND NOT paused AND NOT needs_login
          AND (lease_expires_at IS NULL OR lease_expires_at <= $1)
        ORDER BY retry_at, id
        LIMIT $2
        FOR UPDATE SKIP LOCKED)
    UPDATE jobs SET lease_owner = $3, lease_expires_at = $4, lease_token = jobs.lease_token + 1
    FROM due WHERE jobs.id = due.id
    RETURNING jobs.*";

pub(super) async fn claim_retry_due(
    conn: &mut PgConnection,
    node: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: i64,
) -> StoreResult<Vec<PgRow>> {
    if limit <= 0 {
        return Ok(Vec::new());
    }
    sqlx::query(CLAIM_BY_RETRY)
        .bind(now)
        .bind(limit)
        .bind(node)
        .bind(lease_until)
        .fetch_all(conn)
        .await
        .map_err(db_err)
}

/// Inside `finish_run`'s transaction: the job's pending retry becomes `retry` (or none), and
/// the finished run records when its next attempt starts.
pub(super) async fn record(
    conn: &mut PgConnection,
    job_id: i64,
    run_id: i64,
    retry: Option<&RetryPlan>,
) -> StoreResult<()> {
    let scope = match retry.and_then(|r| r.scope.as_ref()) {
        Some(v) => Some(to_json(v)?),
        None => None,
    };
    sqlx::query(
        "UPDATE jobs SET retry_at = $1, retry_attempt = $2, retry_scope = $3 WHERE id = $4",
    )
    .bind(retry.map(|r| r.at))
    .bind(retry.map_or(0, |r| i64::from(r.attempt)))
    .bind(scope)
    .bind(job_id)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    sqlx::query("UPDATE runs SET retry_at = $1 WHERE id = $2")
        .bind(retry.map(|r| r.at))
        .bind(run_id)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(())
}

pub(super) async fn set_run_attempt(
    pool: &PgPool,
    job_id: i64,
    lease_token: i64,
    run_id: i64,
    attempt: u32,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE runs SET attempt = $1
         WHERE id = $2 AND job_id = $3 AND status = 'running'
           AND EXISTS (SELECT 1 FROM jobs
                       WHERE id = $3 AND lease_token = $4 AND lease_owner IS NOT NULL)",
    )
    .bind(i64::from(attempt))
    .bind(run_id)
    .bind(job_id)
    .bind(lease_token)
    .execute(pool)
    .await
    .map_err(db_err)?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn job_freshness(
    pool: &PgPool,
    job_ids: &[i64],
) -> StoreResult<Vec<JobFreshness>> {
    if job_ids.is_empty() {
        return Ok(Vec::new());
    }
    // Both answered from the `runs_job (job_id, id)` index: the newest successful and the
    // newest finished run of each job.
    let rows = sqlx::query(
        "SELECT j AS job_id,
           (SELECT finished_at FROM runs
             WHERE job_id = j AND status IN ('succeeded', 'partial')
             ORDER BY id DESC LIMIT 1) AS last_success_at,
           (SELECT status FROM runs
             WHERE job_id = j AND status IN ('succeeded', 'partial', 'failed')
             ORDER BY id DESC LIMIT 1) AS last_finished
         FROM UNNEST($1::BIGINT[]) AS j",
    )
    .bind(job_ids)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|row| {
            let status: Option<String> = row.try_get("last_finished").map_err(db_err)?;
            Ok(JobFreshness {
                job_id: row.try_get("job_id").map_err(db_err)?,
                last_success_at: row.try_get("last_success_at").map_err(db_err)?,
                last_finished: status.as_deref().and_then(RunStatus::parse),
            })
        })
        .collect()
}
