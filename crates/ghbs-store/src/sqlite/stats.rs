//! Gauges for `/metrics` on SQLite (issue 11). A scan of the jobs table per scrape, like
//! `count_jobs`: scrapes come every few seconds at most.

use chrono::{DateTime, Utc};
use sqlx::SqlitePool;

use super::{db_err, us};
use crate::{QueueStats, StoreResult};

pub(super) async fn queue_stats(pool: &SqlitePool, now: DateTime<Utc>) -> StoreResult<QueueStats> {
    let (waiting, oldest): (i64, Option<i64>) = sqlx::query_as(
        "SELECT COUNT(*), MIN(CASE WHEN q IS NOT NULL AND (nr > ?1 OR q < nr) THEN q ELSE nr END)
         FROM (SELECT j.next_run_at AS nr,
                      (SELECT MIN(r.queued_at) FROM runs r
                       WHERE r.job_id = j.id AND r.status = 'queued') AS q
               FROM jobs j
               WHERE j.paused = 0 AND j.needs_login = 0
                 AND (j.lease_expires_at IS NULL OR j.lease_expires_at <= ?1))
         WHERE nr <= ?1 OR q IS NOT NULL",
    )
    .bind(us(now))
    .fetch_one(pool)
    .await
    .map_err(db_err)?;
    let (last,): (Option<i64>,) = sqlx::query_as(
        "SELECT MIN(last) FROM (
             SELECT MAX(r.finished_at) AS last FROM jobs j JOIN runs r ON r.job_id = j.id
             WHERE j.paused = 0 AND r.status = 'succeeded' AND r.trigger_kind <> 'verify'
             GROUP BY j.id)",
    )
    .fetch_one(pool)
    .await
    .map_err(db_err)?;
    Ok(QueueStats {
        waiting,
        oldest_due: oldest.and_then(DateTime::from_timestamp_micros),
        oldest_last_success: last.and_then(DateTime::from_timestamp_micros),
    })
}
