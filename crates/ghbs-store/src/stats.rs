//! Gauges for `/metrics` (issue 11). A scan of the jobs table per scrape, like `count_jobs`:
//! scrapes come every few seconds at most.

use chrono::{DateTime, Utc};
use sqlx::Pool;

use crate::backend::{sql, Backend};
use crate::codec::Cols;
use crate::{QueueStats, StoreResult};

pub(crate) async fn queue_stats<D: Backend>(
    pool: &Pool<D>,
    now: DateTime<Utc>,
) -> StoreResult<QueueStats> {
    // A job waits since its slot, or since its queued run when that is earlier or the slot
    // has not come yet.
    let row = sql("SELECT COUNT(*) AS n,
                MIN(CASE WHEN q IS NOT NULL AND (nr > $1 OR q < nr) THEN q ELSE nr END) AS oldest
         FROM (SELECT j.next_run_at AS nr,
                      (SELECT MIN(r.queued_at) FROM runs r
                       WHERE r.job_id = j.id AND r.status = 'queued') AS q
               FROM jobs j
               WHERE NOT j.paused AND NOT j.needs_login
                 AND (j.lease_expires_at IS NULL OR j.lease_expires_at <= $1)) w
         WHERE nr <= $1 OR q IS NOT NULL")
    .time(now)
    .one(pool)
    .await?;
    let last = sql("SELECT MIN(last) AS oldest FROM (
             SELECT MAX(r.finished_at) AS last FROM jobs j JOIN runs r ON r.job_id = j.id
             WHERE NOT j.paused AND r.status = 'succeeded' AND r.trigger_kind <> 'verify'
             GROUP BY j.id) s")
    .one(pool)
    .await?;
    // A job's mirrors hold every object of its snapshots, so its newest snapshot's size is what
    // the job keeps in git; kept snapshots of deleted (unpurged) jobs count too.
    // The cast: PostgreSQL sums BIGINT as NUMERIC.
    let stored = sql(
        "SELECT CAST(COALESCE(SUM(s.size_bytes), 0) AS BIGINT) AS bytes FROM snapshots s
         WHERE s.id IN (SELECT MAX(id) FROM snapshots GROUP BY job_id)",
    )
    .one(pool)
    .await?;
    Ok(QueueStats {
        waiting: row.int("n")?,
        oldest_due: row.opt_time("oldest")?,
        oldest_last_success: last.opt_time("oldest")?,
        stored_bytes: stored.int("bytes")?,
    })
}
