//! Notification targets, the delivery queue and stale marks on PostgreSQL (issue 11).

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::db_err;
use crate::codec::{self, Cols};
use crate::notify::{delivery, notify_target};
use crate::{
    ClaimedDelivery, DeliveryResult, DeliveryRow, JobFreshness, NewNotifyTarget, NotifyTargetRow,
    StoreError, StoreResult,
};

pub(super) async fn create_target(
    pool: &PgPool,
    t: NewNotifyTarget,
) -> StoreResult<NotifyTargetRow> {
    let row = sqlx::query(
        "INSERT INTO notify_targets
             (user_id, kind, format, destination_sealed, display, secret_sealed, events, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
    )
    .bind(t.user_id)
    .bind(&t.kind)
    .bind(&t.format)
    .bind(&t.destination_sealed)
    .bind(&t.display)
    .bind(&t.secret_sealed)
    .bind(&t.events)
    .bind(t.created_at)
    .fetch_one(pool)
    .await
    .map_err(db_err)?;
    notify_target(&row)
}

pub(super) async fn list_targets(pool: &PgPool, user_id: i64) -> StoreResult<Vec<NotifyTargetRow>> {
    let rows = sqlx::query("SELECT * FROM notify_targets WHERE user_id = $1 ORDER BY id")
        .bind(user_id)
        .fetch_all(pool)
        .await
        .map_err(db_err)?;
    rows.iter().map(notify_target).collect()
}

pub(super) async fn get_target(
    pool: &PgPool,
    user_id: i64,
    target_id: i64,
) -> StoreResult<NotifyTargetRow> {
    let row = sqlx::query("SELECT * FROM notify_targets WHERE id = $1 AND user_id = $2")
        .bind(target_id)
        .bind(user_id)
        .fetch_one(pool)
        .await
        .map_err(db_err)?;
    notify_target(&row)
}

pub(super) async fn delete_target(pool: &PgPool, user_id: i64, target_id: i64) -> StoreResult<()> {
    let done = sqlx::query("DELETE FROM notify_targets WHERE id = $1 AND user_id = $2")
        .bind(target_id)
        .bind(user_id)
        .execute(pool)
        .await
        .map_err(db_err)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

pub(super) async fn enqueue(
    pool: &PgPool,
    user_id: i64,
    event: &str,
    payload: &str,
    now: DateTime<Utc>,
) -> StoreResult<u64> {
    let done = sqlx::query(
        "INSERT INTO notify_deliveries (target_id, event, payload, status, next_attempt_at, created_at)
         SELECT id, $1, $2, 'pending', $3, $3 FROM notify_targets
         WHERE user_id = $4 AND (events = 'all' OR (',' || events || ',') LIKE ('%,' || $1 || ',%'))",
    )
    .bind(event)
    .bind(payload)
    .bind(now)
    .bind(user_id)
    .execute(pool)
    .await
    .map_err(db_err)?;
    Ok(done.rows_affected())
}

pub(super) async fn claim(
    pool: &PgPool,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: i64,
) -> StoreResult<Vec<ClaimedDelivery>> {
    // One statement; SKIP LOCKED lets several nodes claim side by side without waiting on or
    // double-claiming each other's rows.
    let rows = sqlx::query(
        "UPDATE notify_deliveries SET attempts = attempts + 1, lease_until = $1
         WHERE id IN (SELECT id FROM notify_deliveries
                      WHERE status = 'pending' AND next_attempt_at <= $2
                        AND (lease_until IS NULL OR lease_until <= $2)
                      ORDER BY next_attempt_at, id LIMIT $3
                      FOR UPDATE SKIP LOCKED)
         RETURNING *",
    )
    .bind(lease_until)
    .bind(now)
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let delivery = delivery(row)?;
        let target = sqlx::query("SELECT * FROM notify_targets WHERE id = $1")
            .bind(delivery.target_id)
            .fetch_one(pool)
            .await
            .map_err(db_err)?;
        out.push(ClaimedDelivery {
            delivery,
            target: notify_target(&target)?,
        });
    }
    out.sort_by_key(|c| c.delivery.id);
    Ok(out)
}

pub(super) async fn finish(pool: &PgPool, r: DeliveryResult) -> StoreResult<bool> {
    let status = match (r.ok, r.retry_at) {
        (true, _) => "delivered",
        (false, Some(_)) => "pending",
        (false, None) => "failed",
    };
    let finished_at = (status != "pending").then_some(r.now);
    let mut tx = pool.begin().await.map_err(db_err)?;
    let row = sqlx::query(
        "UPDATE notify_deliveries
         SET status = $1, last_error = $2, next_attempt_at = COALESCE($3, next_attempt_at),
             lease_until = NULL, finished_at = $4
         WHERE id = $5 AND attempts = $6 AND status = 'pending' AND lease_until IS NOT NULL
         RETURNING target_id, event",
    )
    .bind(status)
    .bind(&r.error)
    .bind(r.retry_at)
    .bind(finished_at)
    .bind(r.delivery_id)
    .bind(r.attempt)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err)?;
    let Some(row) = row else {
        return Ok(false);
    };
    sqlx::query(
        "UPDATE notify_targets SET last_attempt_at = $1, last_error = $2, last_event = $3 WHERE id = $4",
    )
    .bind(r.now)
    .bind(&r.error)
    .bind(row.text("event")?)
    .bind(row.int("target_id")?)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    Ok(true)
}

pub(super) async fn record_result(
    pool: &PgPool,
    target_id: i64,
    event: &str,
    error: Option<&str>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE notify_targets SET last_attempt_at = $1, last_error = $2, last_event = $3 WHERE id = $4",
    )
    .bind(now)
    .bind(error)
    .bind(event)
    .bind(target_id)
    .execute(pool)
    .await
    .map_err(db_err)?;
    Ok(())
}

pub(super) async fn target_deliveries(
    pool: &PgPool,
    target_id: i64,
) -> StoreResult<Vec<DeliveryRow>> {
    let rows = sqlx::query("SELECT * FROM notify_deliveries WHERE target_id = $1 ORDER BY id")
        .bind(target_id)
        .fetch_all(pool)
        .await
        .map_err(db_err)?;
    rows.iter().map(delivery).collect()
}

pub(super) async fn job_freshness(pool: &PgPool) -> StoreResult<Vec<JobFreshness>> {
    let rows = sqlx::query(
        "SELECT j.*, (SELECT MAX(r.finished_at) FROM runs r
                      WHERE r.job_id = j.id AND r.status = 'succeeded') AS last_success_at
         FROM jobs j WHERE NOT j.paused ORDER BY j.id",
    )
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|row| {
            Ok(JobFreshness {
                job: codec::job(row)?,
                last_success_at: row.opt_time("last_success_at")?,
            })
        })
        .collect()
}

pub(super) async fn mark_stale(
    pool: &PgPool,
    job_id: i64,
    basis: DateTime<Utc>,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "INSERT INTO notify_stale (job_id, basis_at) VALUES ($1, $2)
         ON CONFLICT (job_id) DO UPDATE SET basis_at = excluded.basis_at
         WHERE notify_stale.basis_at <> excluded.basis_at",
    )
    .bind(job_id)
    .bind(basis)
    .execute(pool)
    .await
    .map_err(db_err)?;
    Ok(done.rows_affected() > 0)
}
