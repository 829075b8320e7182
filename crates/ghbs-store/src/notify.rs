//! Rows of the notification tables (issue 11) and their decoding, shared by both backends.
//! The server owns what the columns mean (event names, formats, sealing); the store keeps them.

use chrono::{DateTime, Utc};

use crate::codec::Cols;
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
pub struct JobFreshness {
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
