//! Claims, leases and the end of runs on PostgreSQL.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};

use super::db_err;
use crate::codec::{self, finished_status, TAKEOVER_ERROR};
use crate::{Claim, RunOutcome, RunRow, StoreResult};

/// Claim jobs whose schedule is due. `FOR UPDATE SKIP LOCKED`: a job another node is claiming
/// right now is passed over, never waited for, and never claimed twice. A range scan on
/// `next_run_at` that stops at `now`, so an idle poll costs nothing however many jobs exist.
const CLAIM_BY_SCHEDULE: &str = "
    WITH due AS (
        SELECT id FROM jobs
        WHERE next_run_at <= $1 AND NOT paused AND NOT needs_login
          AND (lease_expires_at IS NULL OR lease_expires_at <= $1)
        ORDER BY next_run_at, id
        LIMIT $2
        FOR UPDATE SKIP LOCKED)
    UPDATE jobs SET lease_owner = $3, lease_expires_at = $4, lease_token = jobs.lease_token + 1
    FROM due WHERE jobs.id = due.id
    RETURNING jobs.*";

/// Claim jobs not due by schedule that have a queued run, or a running run whose lease expired
/// (a node died during a manual run). Driven by the partial index on active runs, which holds
/// only as many rows as runs in flight; asked only when the first set left room in the batch.
const CLAIM_BY_RUN: &str = "
    WITH due AS (
        SELECT id FROM jobs
        WHERE id IN (SELECT job_id FROM runs WHERE status IN ('queued', 'running'))
          AND next_run_at > $1 AND NOT paused AND NOT needs_login
          AND (lease_expires_at IS NULL OR lease_expires_at <= $1)
        LIMIT $2
        FOR UPDATE SKIP LOCKED)
    UPDATE jobs SET lease_owner = $3, lease_expires_at = $4, lease_token = jobs.lease_token + 1
    FROM due WHERE jobs.id = due.id
    RETURNING jobs.*";

pub(super) async fn claim_due(
    pool: &PgPool,
    node: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: i64,
) -> StoreResult<Vec<Claim>> {
    if limit <= 0 {
        return Ok(Vec::new());
    }
    let mut tx = pool.begin().await.map_err(db_err)?;
    let mut rows = sqlx::query(CLAIM_BY_SCHEDULE)
        .bind(now)
        .bind(limit)
        .bind(node)
        .bind(lease_until)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
    let more =
        super::retries::claim_retry_due(&mut tx, node, now, lease_until, limit - rows.len() as i64)
            .await?;
    rows.extend(more);
    let left = limit - rows.len() as i64;
    if left > 0 {
        let more = sqlx::query(CLAIM_BY_RUN)
            .bind(now)
            .bind(left)
            .bind(node)
            .bind(lease_until)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
        rows.extend(more);
    }
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let jobs = rows
        .iter()
        .map(codec::job)
        .collect::<StoreResult<Vec<_>>>()?;
    let ids: Vec<i64> = jobs.iter().map(|j| j.id).collect();

    // Runs left running by a node whose lease expired: fail them, and remember their trigger
    // so that the run taking over is of the same kind.
    let stale = sqlx::query(
        "UPDATE runs SET status = 'failed', finished_at = $1, error = $2
         WHERE status = 'running' AND job_id = ANY($3)
         RETURNING job_id, trigger_kind",
    )
    .bind(now)
    .bind(TAKEOVER_ERROR)
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_err)?;
    let mut taken_over = HashMap::new();
    for row in &stale {
        let job_id: i64 = row.try_get("job_id").map_err(db_err)?;
        let trigger: String = row.try_get("trigger_kind").map_err(db_err)?;
        taken_over.insert(job_id, trigger);
    }

    // The unique index on active runs guarantees at most one queued run per job.
    let started = sqlx::query(
        "UPDATE runs SET status = 'running', started_at = $1
         WHERE status = 'queued' AND job_id = ANY($2)
         RETURNING *",
    )
    .bind(now)
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_err)?;
    let mut runs: HashMap<i64, RunRow> = HashMap::new();
    for row in &started {
        let run = codec::run(row)?;
        runs.insert(run.job_id, run);
    }

    let (new_ids, new_triggers): (Vec<i64>, Vec<String>) = jobs
        .iter()
        .filter(|j| !runs.contains_key(&j.id))
        .map(|j| {
            let trigger = taken_over.get(&j.id).map_or("schedule", String::as_str);
            (j.id, trigger.to_string())
        })
        .unzip();
    if !new_ids.is_empty() {
        let inserted = sqlx::query(
            "INSERT INTO runs (job_id, trigger_kind, status, queued_at, started_at)
             SELECT j, t, 'running', $3, $3 FROM UNNEST($1::BIGINT[], $2::TEXT[]) AS u (j, t)
             RETURNING *",
        )
        .bind(&new_ids)
        .bind(&new_triggers)
        .bind(now)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        for row in &inserted {
            let run = codec::run(row)?;
            runs.insert(run.job_id, run);
        }
    }
    tx.commit().await.map_err(db_err)?;

    let mut claims: Vec<Claim> = jobs
        .into_iter()
        .filter_map(|job| {
            let run = runs.remove(&job.id)?;
            Some(Claim {
                lease_token: job.lease_token,
                job,
                run,
            })
        })
        .collect();
    claims.sort_by_key(|c| (c.job.next_run_at, c.job.id));
    Ok(claims)
}

pub(super) async fn heartbeat(
    pool: &PgPool,
    job_id: i64,
    lease_token: i64,
    lease_until: DateTime<Utc>,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE jobs SET lease_expires_at = $1
         WHERE id = $2 AND lease_token = $3 AND lease_owner IS NOT NULL",
    )
    .bind(lease_until)
    .bind(job_id)
    .bind(lease_token)
    .execute(pool)
    .await
    .map_err(db_err)?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn set_run_progress(
    pool: &PgPool,
    job_id: i64,
    lease_token: i64,
    run_id: i64,
    progress: Option<&str>,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE runs SET progress = $1
         WHERE id = $2 AND job_id = $3 AND status = 'running'
           AND EXISTS (SELECT 1 FROM jobs
                       WHERE id = $3 AND lease_token = $4 AND lease_owner IS NOT NULL)",
    )
    .bind(progress)
    .bind(run_id)
    .bind(job_id)
    .bind(lease_token)
    .execute(pool)
    .await
    .map_err(db_err)?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn finish_run(
    pool: &PgPool,
    job_id: i64,
    lease_token: i64,
    run_id: i64,
    outcome: RunOutcome,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let status = finished_status(outcome.status)?;
    let mut tx = pool.begin().await.map_err(db_err)?;
    let user: Option<(i64,)> = sqlx::query_as(
        "UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL, next_run_at = $1
         WHERE id = $2 AND lease_token = $3 AND lease_owner IS NOT NULL
         RETURNING user_id",
    )
    .bind(outcome.next_run_at)
    .bind(job_id)
    .bind(lease_token)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err)?;
    let Some((user_id,)) = user else {
        return Ok(false);
    };
    let done = sqlx::query(
        "UPDATE runs SET status = $1, finished_at = $2, error = $3, progress = NULL,
                         bytes_fetched = $4, api_requests = $5, api_requests_conditional = $6,
                         snapshot_id = $7
         WHERE id = $8 AND job_id = $9 AND status = 'running'",
    )
    .bind(status)
    .bind(now)
    .bind(outcome.error.as_deref())
    .bind(outcome.bytes_fetched)
    .bind(outcome.api_requests)
    .bind(outcome.api_requests_conditional)
    .bind(outcome.snapshot_id)
    .bind(run_id)
    .bind(job_id)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    if done.rows_affected() == 0 {
        // Not the run this lease holds: write nothing (the transaction rolls back on drop).
        return Ok(false);
    }
    super::retries::record(&mut tx, job_id, run_id, outcome.retry.as_ref()).await?;
    tx.commit().await.map_err(db_err)?;
    if outcome.needs_login {
        // Outside the transaction on purpose: flagging all of a user's jobs while holding one
        // job's row lock could deadlock with another of their jobs finishing the same way.
        // Should this fail, the run is still recorded and the next run of a sibling flags again.
        sqlx::query("UPDATE jobs SET needs_login = TRUE WHERE user_id = $1 AND NOT needs_login")
            .bind(user_id)
            .execute(pool)
            .await
            .map_err(db_err)?;
    }
    Ok(true)
}

pub(super) async fn release(
    pool: &PgPool,
    job_id: i64,
    lease_token: i64,
    run_id: i64,
) -> StoreResult<bool> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    let done = sqlx::query(
        "UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL
         WHERE id = $1 AND lease_token = $2 AND lease_owner IS NOT NULL",
    )
    .bind(job_id)
    .bind(lease_token)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    let done = sqlx::query(
        "UPDATE runs SET status = 'queued', started_at = NULL, progress = NULL
         WHERE id = $1 AND job_id = $2 AND status = 'running'",
    )
    .bind(run_id)
    .bind(job_id)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    tx.commit().await.map_err(db_err)?;
    Ok(true)
}

pub(super) async fn release_node(pool: &PgPool, node: &str) -> StoreResult<u64> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    let jobs: Vec<(i64,)> = sqlx::query_as(
        "UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL
         WHERE lease_owner = $1 RETURNING id",
    )
    .bind(node)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_err)?;
    if jobs.is_empty() {
        return Ok(0);
    }
    let ids: Vec<i64> = jobs.iter().map(|(id,)| *id).collect();
    let done = sqlx::query(
        "UPDATE runs SET status = 'queued', started_at = NULL, progress = NULL
         WHERE status = 'running' AND job_id = ANY($1)",
    )
    .bind(&ids)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    Ok(done.rows_affected())
}

pub(super) async fn probe_write(pool: &PgPool, node: &str, now: DateTime<Utc>) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO write_probe (node, probed_at) VALUES ($1, $2)
         ON CONFLICT (node) DO UPDATE SET probed_at = EXCLUDED.probed_at",
    )
    .bind(node)
    .bind(now)
    .execute(pool)
    .await
    .map_err(db_err)?;
    Ok(())
}
