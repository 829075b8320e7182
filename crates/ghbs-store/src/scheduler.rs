//! Claims, leases and the end of runs.
//!
//! Every read-modify-write here runs in a write transaction: on SQLite that holds the single
//! write lock, on PostgreSQL the claim statements lock the rows they take (`SKIP LOCKED`).
//! Leases, not held transactions, cover the minutes a backup takes.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::Pool;

use crate::backend::{begin, commit, sql, Backend};
use crate::codec::{self, finished_status, Cols, TAKEOVER_ERROR};
use crate::{Claim, RunOutcome, RunRow, StoreResult};

pub(crate) async fn claim_due<D: Backend>(
    pool: &Pool<D>,
    node: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: i64,
    others_after: DateTime<Utc>,
) -> StoreResult<Vec<Claim>> {
    if limit <= 0 {
        return Ok(Vec::new());
    }
    let mut tx = begin(pool).await?;
    // Jobs due by schedule first; then, when that left room in the batch, jobs not due that
    // have a queued run, or a running run whose lease expired (a node died during a manual
    // run), driven by the partial index on active runs.
    let mut rows = sql(D::SQL.claim_by_schedule)
        .time(now)
        .arg(limit)
        .arg(node)
        .time(lease_until)
        .time(others_after)
        .all(&mut tx)
        .await?;
    let more =
        crate::retries::claim_retry_due(&mut tx, node, now, lease_until, limit - rows.len() as i64)
            .await?;
    rows.extend(more);
    let left = limit - rows.len() as i64;
    if left > 0 {
        let more = sql(D::SQL.claim_by_run)
            .time(now)
            .arg(left)
            .arg(node)
            .time(lease_until)
            .all(&mut tx)
            .await?;
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
    let stale = sql(D::SQL.fail_stale_runs)
        .time(now)
        .arg(TAKEOVER_ERROR)
        .ids(&ids)
        .all(&mut tx)
        .await?;
    let mut taken_over = HashMap::new();
    for row in &stale {
        taken_over.insert(row.int("job_id")?, row.text("trigger_kind")?);
    }

    // The unique index on active runs guarantees at most one queued run per job.
    let started = sql(D::SQL.start_queued_runs)
        .time(now)
        .ids(&ids)
        .all(&mut tx)
        .await?;
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
        let inserted = sql(D::SQL.insert_running_runs)
            .arg(serde_json::Value::Array(missing).to_string())
            .time(now)
            .all(&mut tx)
            .await?;
        for row in &inserted {
            let run = codec::run(row)?;
            runs.insert(run.job_id, run);
        }
    }
    commit(tx).await?;

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

pub(crate) async fn heartbeat<D: Backend>(
    pool: &Pool<D>,
    job_id: i64,
    lease_token: i64,
    lease_until: DateTime<Utc>,
) -> StoreResult<bool> {
    let done = sql("UPDATE jobs SET lease_expires_at = $1
         WHERE id = $2 AND lease_token = $3 AND lease_owner IS NOT NULL")
    .time(lease_until)
    .arg(job_id)
    .arg(lease_token)
    .run(pool)
    .await?;
    Ok(done == 1)
}

pub(crate) async fn set_run_progress<D: Backend>(
    pool: &Pool<D>,
    job_id: i64,
    lease_token: i64,
    run_id: i64,
    progress: Option<&str>,
) -> StoreResult<bool> {
    let done = sql("UPDATE runs SET progress = $1
         WHERE id = $2 AND job_id = $3 AND status = 'running'
           AND EXISTS (SELECT 1 FROM jobs
                       WHERE id = $3 AND lease_token = $4 AND lease_owner IS NOT NULL)")
    .arg(progress)
    .arg(run_id)
    .arg(job_id)
    .arg(lease_token)
    .run(pool)
    .await?;
    Ok(done == 1)
}

pub(crate) async fn finish_run<D: Backend>(
    pool: &Pool<D>,
    job_id: i64,
    lease_token: i64,
    run_id: i64,
    outcome: RunOutcome,
    now: DateTime<Utc>,
) -> StoreResult<bool> {
    let status = finished_status(outcome.status)?;
    let mut tx = begin(pool).await?;
    let user = sql(
        "UPDATE jobs SET warm_node = lease_owner, lease_owner = NULL, lease_expires_at = NULL,
                         next_run_at = $1
         WHERE id = $2 AND lease_token = $3 AND lease_owner IS NOT NULL
         RETURNING user_id",
    )
    .time(outcome.next_run_at)
    .arg(job_id)
    .arg(lease_token)
    .opt(&mut tx)
    .await?;
    let Some(user) = user else {
        return Ok(false);
    };
    let user_id = user.int("user_id")?;
    let done = sql(
        "UPDATE runs SET status = $1, finished_at = $2, error = $3, progress = NULL,
                         bytes_fetched = $4, api_requests = $5, api_requests_conditional = $6,
                         snapshot_id = $7
         WHERE id = $8 AND job_id = $9 AND status = 'running'",
    )
    .arg(status)
    .time(now)
    .arg(outcome.error.as_deref())
    .arg(outcome.bytes_fetched)
    .arg(outcome.api_requests)
    .arg(outcome.api_requests_conditional)
    .arg(outcome.snapshot_id)
    .arg(run_id)
    .arg(job_id)
    .run(&mut tx)
    .await?;
    if done == 0 {
        // Not the run this lease holds: write nothing (the transaction rolls back on drop).
        return Ok(false);
    }
    crate::retries::record(&mut tx, job_id, run_id, outcome.retry.as_ref()).await?;
    let flag = "UPDATE jobs SET needs_login = TRUE WHERE user_id = $1 AND NOT needs_login";
    if !outcome.needs_login {
        commit(tx).await?;
    } else if D::ROW_LOCKS {
        // After the commit on purpose: flagging all of a user's jobs while holding one job's
        // row lock could deadlock with another of their jobs finishing the same way. Should
        // this fail, the run is still recorded and the next run of a sibling flags again.
        commit(tx).await?;
        sql(flag).arg(user_id).run(pool).await?;
    } else {
        // One writer, no row locks: in the same transaction as the outcome.
        sql(flag).arg(user_id).run(&mut tx).await?;
        commit(tx).await?;
    }
    Ok(true)
}

pub(crate) async fn release<D: Backend>(
    pool: &Pool<D>,
    job_id: i64,
    lease_token: i64,
    run_id: i64,
) -> StoreResult<bool> {
    let mut tx = begin(pool).await?;
    let done = sql("UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL
         WHERE id = $1 AND lease_token = $2 AND lease_owner IS NOT NULL")
    .arg(job_id)
    .arg(lease_token)
    .run(&mut tx)
    .await?;
    if done == 0 {
        return Ok(false);
    }
    let done = sql(
        "UPDATE runs SET status = 'queued', started_at = NULL, progress = NULL
         WHERE id = $1 AND job_id = $2 AND status = 'running'",
    )
    .arg(run_id)
    .arg(job_id)
    .run(&mut tx)
    .await?;
    if done == 0 {
        return Ok(false);
    }
    commit(tx).await?;
    Ok(true)
}

pub(crate) async fn release_node<D: Backend>(pool: &Pool<D>, node: &str) -> StoreResult<u64> {
    let mut tx = begin(pool).await?;
    let jobs = sql("UPDATE jobs SET lease_owner = NULL, lease_expires_at = NULL
         WHERE lease_owner = $1 RETURNING id")
    .arg(node)
    .all(&mut tx)
    .await?;
    if jobs.is_empty() {
        return Ok(0);
    }
    let ids = jobs
        .iter()
        .map(|r| r.int("id"))
        .collect::<StoreResult<Vec<_>>>()?;
    let requeued = sql(D::SQL.requeue_runs).ids(&ids).run(&mut tx).await?;
    commit(tx).await?;
    Ok(requeued)
}

pub(crate) async fn claim_maintenance<D: Backend>(
    pool: &Pool<D>,
    task: &str,
    node: &str,
    now: DateTime<Utc>,
    not_since: DateTime<Utc>,
) -> StoreResult<bool> {
    let done = sql(
        "INSERT INTO maintenance (task, last_run_at, node) VALUES ($1, $2, $3)
         ON CONFLICT (task) DO UPDATE SET last_run_at = excluded.last_run_at, node = excluded.node
         WHERE maintenance.last_run_at <= $4",
    )
    .arg(task)
    .time(now)
    .arg(node)
    .time(not_since)
    .run(pool)
    .await?;
    Ok(done == 1)
}

pub(crate) async fn probe_write<D: Backend>(
    pool: &Pool<D>,
    node: &str,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    sql("INSERT INTO write_probe (node, probed_at) VALUES ($1, $2)
         ON CONFLICT (node) DO UPDATE SET probed_at = excluded.probed_at")
    .arg(node)
    .time(now)
    .run(pool)
    .await?;
    Ok(())
}
