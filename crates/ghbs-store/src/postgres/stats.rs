//! Gauges for `/metrics` on PostgreSQL (issue 11).

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::db_err;
use crate::{QueueStats, StoreResult};

pub(super) async fn queue_stats(pool: &PgPool, now: DateTime<Utc>) -> StoreResult<QueueStats> {
    let (waiting, oldest_due): (i64, Option<DateTime<Utc>>) = sqlx::query_as(
        "SELECT COUNT(*), MIN(CASE WHEN q IS NOT NULL AND (nr > $1 OR q < nr) THEN q ELSE nr END)
         FROM (SELECT j.next_run_at AS nr,
                      (SELECT MIN(r.queued_at) FROM runs r
                       WHERE r.job_id = j.id AND r.status = 'queued') AS q
               FROM jobs j
               WHERE NOT j.paused AND NOT j.needs_login
                 AND (j.lease_expires_at IS NULL OR j.lease_expires_at <= $1)) w
         WHERE nr <= $1 OR q IS NOT NULL",
    )
    .bind(now)
    .fetch_one(pool)
    .await
    .map_err(db_err)?;
    let (oldest_last_success,): (Option<DateTime<Utc>>,) = sqlx::query_as(
        "SELECT MIN(last) FROM (
             SELECT MAX(r.finished_at) AS last FROM jobs j JOIN runs r ON r.job_id = j.id
             WHERE NOT j.paused AND r.status = 'succeeded' AND r.trigger_kind <> 'verify'
             GROUP BY j.id) s",
    )
    .fetch_one(pool)
    .await
    .map_err(db_err)?;
    Ok(QueueStats {
        waiting,
        oldest_due,
        oldest_last_success,
    })
}
