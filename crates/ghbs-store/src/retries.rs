//! Retries of failed runs and the freshness of jobs (issue 11). Kept apart from `scheduler.rs`:
//! `claim_due` and `finish_run` call in here from inside their transactions.

use chrono::{DateTime, Utc};
use ghbs_wire::RunStatus;
use sqlx::{Pool, Transaction};

use crate::backend::{sql, Backend};
use crate::codec::{to_json, Cols};
use crate::{JobFreshness, RetryPlan, StoreResult};

/// Inside `claim_due`'s transaction: claim up to `limit` jobs whose retry is due before their
/// next slot ([`crate::backend::Dialect::claim_by_retry`]); returns the claimed job rows.
pub(crate) async fn claim_retry_due<D: Backend>(
    tx: &mut Transaction<'static, D>,
    node: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: i64,
) -> StoreResult<Vec<D::Row>> {
    if limit <= 0 {
        return Ok(Vec::new());
    }
    sql(D::SQL.claim_by_retry)
        .time(now)
        .arg(limit)
        .arg(node)
        .time(lease_until)
        .all(tx)
        .await
}

/// Inside `finish_run`'s transaction: the job's pending retry becomes `retry` (or none), and
/// the finished run records when its next attempt starts.
pub(crate) async fn record<D: Backend>(
    tx: &mut Transaction<'static, D>,
    job_id: i64,
    run_id: i64,
    retry: Option<&RetryPlan>,
) -> StoreResult<()> {
    let scope = match retry.and_then(|r| r.scope.as_ref()) {
        Some(v) => Some(to_json(v)?),
        None => None,
    };
    sql("UPDATE jobs SET retry_at = $1, retry_attempt = $2, retry_scope = $3 WHERE id = $4")
        .opt_time(retry.map(|r| r.at))
        .arg(retry.map_or(0, |r| i64::from(r.attempt)))
        .arg(scope)
        .arg(job_id)
        .run(&mut *tx)
        .await?;
    sql("UPDATE runs SET retry_at = $1 WHERE id = $2")
        .opt_time(retry.map(|r| r.at))
        .arg(run_id)
        .run(&mut *tx)
        .await?;
    Ok(())
}

pub(crate) async fn set_run_attempt<D: Backend>(
    pool: &Pool<D>,
    job_id: i64,
    lease_token: i64,
    run_id: i64,
    attempt: u32,
) -> StoreResult<bool> {
    let done = sql("UPDATE runs SET attempt = $1
         WHERE id = $2 AND job_id = $3 AND status = 'running'
           AND EXISTS (SELECT 1 FROM jobs
                       WHERE id = $3 AND lease_token = $4 AND lease_owner IS NOT NULL)")
    .arg(i64::from(attempt))
    .arg(run_id)
    .arg(job_id)
    .arg(lease_token)
    .run(pool)
    .await?;
    Ok(done == 1)
}

pub(crate) async fn job_freshness<D: Backend>(
    pool: &Pool<D>,
    job_ids: &[i64],
) -> StoreResult<Vec<JobFreshness>> {
    if job_ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sql(D::SQL.job_freshness).ids(job_ids).all(pool).await?;
    rows.iter()
        .map(|row| {
            Ok(JobFreshness {
                job_id: row.int("job_id")?,
                last_success_at: row.opt_time("last_success_at")?,
                last_finished: row
                    .opt_text("last_finished")?
                    .as_deref()
                    .and_then(RunStatus::parse),
            })
        })
        .collect()
}
