//! Claims, leases and the end of runs on SQLite.
//!
//! Each of these runs in a `BEGIN IMMEDIATE` transaction: holding SQLite's single write lock
//! for the whole read-modify-write is what makes a claim exclusive across processes.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::{Row, SqlitePool};

use super::{db_err, id_list, us};
use crate::codec::{self, finished_status, TAKEOVER_ERROR};
use crate::{Claim, RunOutcome, RunRow, StoreResult};

/// Claim jobs whose schedule is due: a range scan on `next_run_at` that stops at `now`, so an
/// idle poll costs nothing however many jobs exist.
const CLAIM_BY_SCHEDULE: &str = "
    UPDATE jobs SET lease_owner = ?1, lease_expires_at = ?2, lease_token = lease_token + 1
    WHERE id IN (
        SELECT id FROM jobs
        WHERE next_run_at <= ?3 AND paused = 0 AND needs_login = 0
          AND (lease_expires_at IS NULL OR lease_expires_at <= ?3)
        ORDER BY next_run_at, id
        LIMIT ?4)
    RETURNING *";

/// Claim jobs not due by schedule that have a queued run, or a running run whose lease expired
/// (a node died during a manual run). Driven by the partial index on active runs, which holds
/// only as many rows as runs in flight; asked only when the first set left room in the batch.
/// `CROSS JOIN` pins SQLite's join order to runs-then-jobs whatever its statistics say.
const CLAIM_BY_RUN: &str = "
    UPDATE jobs SET lease_owner = ?1, lease_expires_at = ?2, lease_token = lease_token + 1
    WHERE id IN (
        SELECT j.id FROM runs r CROSS JOIN jobs j ON j.id = r.job_id
        WHERE r.status IN ('queued', 'running')
          AND j.next_run_at > ?3 AND j.paused = 0 AND j.needs_login = 0
          AND (j.lease_expires_at IS NULL OR j.lease_expires_at <= ?3)
        LIMIT ?4)
    RETURNING *";

pub(super) async fn claim_due(
    pool: &SqlitePool,
    node: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: i64,
) -> StoreResult<Vec<Claim>> {
    if limit <= 0 {
        return Ok(Vec::new());
    }
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
    let mut rows = sqlx::query(CLAIM_BY_SCHEDULE)
        .bind(node)
        .bind(us(lease_until))
        .bind(us(now))
        .bind(limit)
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
            .bind(node)
            .bind(us(lease_until))
            .bind(us(now))
            .bind(left)
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
    let ids = id_list(&jobs.iter().map(|j| j.id).collect::<Vec<_>>());

    // Runs left running by a node whose lease expired: fail them, and remember their trigger
    // so that the run taking over is of the same kind.
    let stale = sqlx::query(
        "UPDATE runs SET status = 'failed', finished_at = ?, error = ?
         WHERE status = 'running' AND job_id IN (SELECT value FROM json_each(?))
         RETURNING job_id, trigger_kind",
    )
    .bind(us(now))
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
        "UPDATE runs SET status = 'running', started_at = ?
         WHERE status = 'queued' AND job_id IN (SELECT value FROM json_each(?))
         RETURNING *",
    )
    .bind(us(now))
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_err)?;
    let mut runs: HashMap<i64, RunRow> = HashMap::new();
    for row in &started {
        let run = codec::run(row)?;
        runs.insert(run.job_id, run);
    }

    let missing: Vec<serde_json::Value> = jobs
        .iter()
        .filter(|j| !runs.contains_key(&j.id))
        .map(|j| {
            let trigger = taken_over.get(&j.id).map_or("schedule", String::as_str);
            serde_json::json!([j.id, trigger])
        })
        .collect();
    if !missing.is_empty() {
        let inserted = sqlx::query(
            "INSERT INTO runs (job_id, trigger_kind, status, queued_at, started_at)
             SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), 'running', ?, ?
             FROM json_each(?)
             RETURNING *",
        )
        .bind(us(now))
        .bind(us(now))
        .bind(serde_json::Value::Array(missing).to_string())
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
    pool: &SqlitePool,
    job_id: i64,
    lease_token: i64,
    lease_until: DateTime<Utc>,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE jobs SET lease_expires_at = ?
         WHERE id = ? AND lease_token = ? AND lease_owner IS NOT NULL",
    )
    .bind(us(lease_until))
    .bind(job_id)
    .bind(lease_token)
    .execute(pool)
    .await
    .map_err(db_err)?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn set_run_progress(
    pool: &SqlitePool,
    job_id: i64,
    lease_token: i64,
    run_id: i64,
    progress: Option<&str>,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "UPDATE runs SET progress = ?
         WHERE id = ? AND job_id = ? AND status = 'running'
           AND EXISTS (SELECT 1 FROM jobs
                       WHERE id = ? AND lease_token = ? AND lease_owner IS NOT NULL)",
    )
    .bind(progress)
    .bind(run_id)
    .bind(job_id)
    .bind(job_id)
    .bind(lease_token)
    .execute(pool)
    .await
    .map_err(db_err)?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn finish_run(
    pool: &SqlitePool,
    job_id: i64,
    lease_token: i64,
    run_id: i64,
    outcome: RunOutcome,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let status = finished_status(outcome.status)?;
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
    let user: Option<(i64,)> = sqlx::query_as(
        "UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL, next_run_at = ?
         WHERE id = ? AND lease_token = ? AND lease_owner IS NOT NULL
         RETURNING user_id",
    )
    .bind(us(outcome.next_run_at))
    .bind(job_id)
    .bind(lease_token)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err)?;
    let Some((user_id,)) = user else {
        return Ok(false);
    };
    let done = sqlx::query(
        "UPDATE runs SET status = ?, finished_at = ?, error = ?, progress = NULL,
                         bytes_fetched = ?, api_requests = ?, api_requests_conditional = ?,
                         snapshot_id = ?
         WHERE id = ? AND job_id = ? AND status = 'running'",
    )
    .bind(status)
    .bind(us(now))
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
    if outcome.needs_login {
        sqlx::query("UPDATE jobs SET needs_login = 1 WHERE user_id = ?")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
    }
    tx.commit().await.map_err(db_err)?;
    Ok(true)
}

pub(super) async fn release(
    pool: &SqlitePool,
    job_id: i64,
    lease_token: i64,
    run_id: i64,
) -> StoreResult<bool> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
    let done = sqlx::query(
        "UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL
         WHERE id = ? AND lease_token = ? AND lease_owner IS NOT NULL",
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
         WHERE id = ? AND job_id = ? AND status = 'running'",
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

pub(super) async fn release_node(pool: &SqlitePool, node: &str) -> StoreResult<u64> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
    let jobs: Vec<(i64,)> = sqlx::query_as(
        "UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL
         WHERE lease_owner = ? RETURNING id",
    )
    .bind(node)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_err)?;
    if jobs.is_empty() {
        return Ok(0);
    }
    let ids = id_list(&jobs.iter().map(|(id,)| *id).collect::<Vec<_>>());
    let done = sqlx::query(
        "UPDATE runs SET status = 'queued', started_at = NULL, progress = NULL
         WHERE status = 'running' AND job_id IN (SELECT value FROM json_each(?))",
    )
    .bind(&ids)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    Ok(done.rows_affected())
}

pub(super) async fn probe_write(
    pool: &SqlitePool,
    node: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO write_probe (node, probed_at) VALUES (?, ?)
         ON CONFLICT (node) DO UPDATE SET probed_at = excluded.probed_at",
    )
    .bind(node)
    .bind(us(now))
    .execute(pool)
    .await
    .map_err(db_err)?;
    Ok(())
}
