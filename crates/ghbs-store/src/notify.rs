//! Notification targets, the delivery queue and stale marks (issue 11): rows, decoding and
//! statements, written once for both backends. The server owns what the columns mean (event
//! names, formats, sealing); the store keeps them.

use chrono::{DateTime, Utc};
use sqlx::Pool;

use crate::backend::{begin, commit, sql, Backend};
use crate::codec::{self, Cols};
use crate::StoreResult;

/// A user's notification target: a webhook or an e-mail address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyTargetRow {
    pub id: i64,
    pub user_id: i64,
    /// `webhook` or `email`.
    pub kind: String,
    /// `json`, `slack`, `discord` (webhooks) or `email`.
    pub format: String,
    /// The webhook URL or e-mail address, sealed with the server's key (never clear text).
    pub destination_sealed: Vec<u8>,
    /// What listings show: a masked URL or the e-mail address.
    pub display: String,
    /// The webhook's HMAC secret, sealed; `None` for e-mail.
    pub secret_sealed: Option<Vec<u8>>,
    /// `all` or a comma-separated list of event names.
    pub events: String,
    pub created_at: DateTime<Utc>,
    /// The newest delivery attempt: when, why it failed (`None`: it succeeded), which event.
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_event: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewNotifyTarget {
    pub user_id: i64,
    pub kind: String,
    pub format: String,
    pub destination_sealed: Vec<u8>,
    pub display: String,
    pub secret_sealed: Option<Vec<u8>>,
    pub events: String,
    pub created_at: DateTime<Utc>,
}

/// One event queued for one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    pub id: i64,
    pub target_id: i64,
    pub event: String,
    /// The event as JSON (never a secret: no token, no URL).
    pub payload: String,
    /// `pending`, `delivered` or `failed` (given up).
    pub status: String,
    /// Attempts started so far; also the fencing token of the current claim.
    pub attempts: i64,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A claimed delivery with its target, ready to send.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub delivery: DeliveryRow,
    pub target: NotifyTargetRow,
}

/// How one attempt ended. `retry_at` set: try again then; unset after a failure: give up.
#[derive(Debug, Clone)]
pub struct DeliveryResult {
    pub delivery_id: i64,
    /// The `attempts` value the claim returned (fencing).
    pub attempt: i64,
    pub ok: bool,
    pub error: Option<String>,
    pub retry_at: Option<DateTime<Utc>>,
    pub now: DateTime<Utc>,
}

/// A job with the time of its newest successful run, for the stale check.
#[derive(Debug, Clone)]
pub struct StaleCandidate {
    pub job: crate::JobRow,
    pub last_success_at: Option<DateTime<Utc>>,
}

pub(crate) fn notify_target<R: Cols>(r: &R) -> StoreResult<NotifyTargetRow> {
    Ok(NotifyTargetRow {
        id: r.int("id")?,
        user_id: r.int("user_id")?,
        kind: r.text("kind")?,
        format: r.text("format")?,
        destination_sealed: r.bytes("destination_sealed")?,
        display: r.text("display")?,
        secret_sealed: r.opt_bytes("secret_sealed")?,
        events: r.text("events")?,
        created_at: r.time("created_at")?,
        last_attempt_at: r.opt_time("last_attempt_at")?,
        last_error: r.opt_text("last_error")?,
        last_event: r.opt_text("last_event")?,
    })
}

pub(crate) fn delivery<R: Cols>(r: &R) -> StoreResult<DeliveryRow> {
    Ok(DeliveryRow {
        id: r.int("id")?,
        target_id: r.int("target_id")?,
        event: r.text("event")?,
        payload: r.text("payload")?,
        status: r.text("status")?,
        attempts: r.int("attempts")?,
        next_attempt_at: r.time("next_attempt_at")?,
        last_error: r.opt_text("last_error")?,
        created_at: r.time("created_at")?,
        finished_at: r.opt_time("finished_at")?,
    })
}

pub(crate) async fn create_target<D: Backend>(
    pool: &Pool<D>,
    t: NewNotifyTarget,
) -> StoreResult<NotifyTargetRow> {
    let row = sql("INSERT INTO notify_targets
             (user_id, kind, format, destination_sealed, display, secret_sealed, events, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *")
    .arg(t.user_id)
    .arg(t.kind.as_str())
    .arg(t.format.as_str())
    .arg(t.destination_sealed.as_slice())
    .arg(t.display.as_str())
    .arg(t.secret_sealed.as_deref())
    .arg(t.events.as_str())
    .time(t.created_at)
    .one(pool)
    .await?;
    notify_target(&row)
}

pub(crate) async fn list_targets<D: Backend>(
    pool: &Pool<D>,
    user_id: i64,
) -> StoreResult<Vec<NotifyTargetRow>> {
    let rows = sql("SELECT * FROM notify_targets WHERE user_id = $1 ORDER BY id")
        .arg(user_id)
        .all(pool)
        .await?;
    rows.iter().map(notify_target).collect()
}

pub(crate) async fn get_target<D: Backend>(
    pool: &Pool<D>,
    user_id: i64,
    target_id: i64,
) -> StoreResult<NotifyTargetRow> {
    let row = sql("SELECT * FROM notify_targets WHERE id = $1 AND user_id = $2")
        .arg(target_id)
        .arg(user_id)
        .one(pool)
        .await?;
    notify_target(&row)
}

pub(crate) async fn delete_target<D: Backend>(
    pool: &Pool<D>,
    user_id: i64,
    target_id: i64,
) -> StoreResult<()> {
    sql("DELETE FROM notify_targets WHERE id = $1 AND user_id = $2")
        .arg(target_id)
        .arg(user_id)
        .run(pool)
        .await
        .and_then(codec::changed)
}

pub(crate) async fn enqueue<D: Backend>(
    pool: &Pool<D>,
    user_id: i64,
    event: &str,
    payload: &str,
    now: DateTime<Utc>,
) -> StoreResult<u64> {
    sql(
        "INSERT INTO notify_deliveries (target_id, event, payload, status, next_attempt_at, created_at)
         SELECT id, $1, $2, 'pending', $3, $3 FROM notify_targets
         WHERE user_id = $4 AND (events = 'all' OR (',' || events || ',') LIKE ('%,' || $1 || ',%'))",
    )
    .arg(event)
    .arg(payload)
    .time(now)
    .arg(user_id)
    .run(pool)
    .await
}

pub(crate) async fn claim<D: Backend>(
    pool: &Pool<D>,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: i64,
) -> StoreResult<Vec<ClaimedDelivery>> {
    let rows = sql(D::SQL.claim_deliveries)
        .time(lease_until)
        .time(now)
        .arg(limit)
        .all(pool)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let delivery = delivery(row)?;
        let target = sql("SELECT * FROM notify_targets WHERE id = $1")
            .arg(delivery.target_id)
            .one(pool)
            .await?;
        out.push(ClaimedDelivery {
            delivery,
            target: notify_target(&target)?,
        });
    }
    out.sort_by_key(|c| c.delivery.id);
    Ok(out)
}

pub(crate) async fn finish<D: Backend>(pool: &Pool<D>, r: DeliveryResult) -> StoreResult<bool> {
    let status = match (r.ok, r.retry_at) {
        (true, _) => "delivered",
        (false, Some(_)) => "pending",
        (false, None) => "failed",
    };
    let finished_at = (status != "pending").then_some(r.now);
    let mut tx = begin(pool).await?;
    // Guarded by the claim's token (`attempts`) and an open lease: a stale or finished claim
    // writes nothing.
    let row = sql("UPDATE notify_deliveries
         SET status = $1, last_error = $2, next_attempt_at = COALESCE($3, next_attempt_at),
             lease_until = NULL, finished_at = $4
         WHERE id = $5 AND attempts = $6 AND status = 'pending' AND lease_until IS NOT NULL
         RETURNING target_id, event")
    .arg(status)
    .arg(r.error.as_deref())
    .opt_time(r.retry_at)
    .opt_time(finished_at)
    .arg(r.delivery_id)
    .arg(r.attempt)
    .opt(&mut tx)
    .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    sql("UPDATE notify_targets SET last_attempt_at = $1, last_error = $2, last_event = $3 WHERE id = $4")
        .time(r.now)
        .arg(r.error.as_deref())
        .arg(row.text("event")?)
        .arg(row.int("target_id")?)
        .run(&mut tx)
        .await?;
    commit(tx).await?;
    Ok(true)
}

pub(crate) async fn record_result<D: Backend>(
    pool: &Pool<D>,
    target_id: i64,
    event: &str,
    error: Option<&str>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    sql("UPDATE notify_targets SET last_attempt_at = $1, last_error = $2, last_event = $3 WHERE id = $4")
        .time(now)
        .arg(error)
        .arg(event)
        .arg(target_id)
        .run(pool)
        .await
        .map(|_| ())
}

pub(crate) async fn target_deliveries<D: Backend>(
    pool: &Pool<D>,
    target_id: i64,
) -> StoreResult<Vec<DeliveryRow>> {
    let rows = sql("SELECT * FROM notify_deliveries WHERE target_id = $1 ORDER BY id")
        .arg(target_id)
        .all(pool)
        .await?;
    rows.iter().map(delivery).collect()
}

pub(crate) async fn stale_candidates<D: Backend>(
    pool: &Pool<D>,
) -> StoreResult<Vec<StaleCandidate>> {
    let rows = sql("SELECT j.*, (SELECT MAX(r.finished_at) FROM runs r
                      WHERE r.job_id = j.id AND r.status = 'succeeded') AS last_success_at
         FROM jobs j WHERE NOT j.paused ORDER BY j.id")
    .all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(StaleCandidate {
                job: codec::job(row)?,
                last_success_at: row.opt_time("last_success_at")?,
            })
        })
        .collect()
}

pub(crate) async fn mark_stale<D: Backend>(
    pool: &Pool<D>,
    job_id: i64,
    basis: DateTime<Utc>,
) -> StoreResult<bool> {
    let changed = sql("INSERT INTO notify_stale (job_id, basis_at) VALUES ($1, $2)
         ON CONFLICT (job_id) DO UPDATE SET basis_at = excluded.basis_at
         WHERE notify_stale.basis_at <> excluded.basis_at")
    .arg(job_id)
    .time(basis)
    .run(pool)
    .await?;
    Ok(changed > 0)
}
