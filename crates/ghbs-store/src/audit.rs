//! Rows of scoped API keys and the audit trail (kept apart from `model.rs` so the additions of
//! issue 15 stay in their own files).

use chrono::{DateTime, Utc};

/// A key to store: [`crate::Store::create_scoped_api_key`].
#[derive(Debug, Clone)]
pub struct NewApiKey<'a> {
    pub user_id: i64,
    /// Hex of SHA-256 of the key; the key itself never reaches the store.
    pub key_hash: &'a str,
    pub label: Option<&'a str>,
    pub read_only: bool,
    pub expires_at: Option<DateTime<Utc>>,
    pub now: DateTime<Utc>,
    /// Refuse (`Conflict`) when the user already holds this many live keys (not revoked, not
    /// expired at `now`).
    pub max_live: i64,
}

/// One entry of a user's audit trail. Ids only: never a token, a key or a key hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub id: i64,
    pub user_id: i64,
    pub at: DateTime<Utc>,
    /// Stable name, e.g. `login`, `job.delete` (see `ghbs-server`'s `audit`).
    pub action: String,
    /// The key that made the request (for `login`, the key it created).
    pub key_id: Option<i64>,
    /// The client's address as the server saw it (after `--trust-proxy`).
    pub client_addr: Option<String>,
    pub job_id: Option<i64>,
    /// Small JSON object with what else identifies the action (snapshot id, format, purge …).
    pub detail: serde_json::Value,
}

/// An entry to append; `id` is assigned by the store.
#[derive(Debug, Clone)]
pub struct NewAuditEntry {
    pub user_id: i64,
    pub at: DateTime<Utc>,
    pub action: String,
    pub key_id: Option<i64>,
    pub client_addr: Option<String>,
    pub job_id: Option<i64>,
    pub detail: serde_json::Value,
}

pub(crate) fn audit_row<R: crate::codec::Cols>(r: &R) -> crate::StoreResult<AuditRow> {
    let detail = r.text("detail")?;
    Ok(AuditRow {
        id: r.int("id")?,
        user_id: r.int("user_id")?,
        at: r.time("at")?,
        action: r.text("action")?,
        key_id: r.opt_int("key_id")?,
        client_addr: r.opt_text("client_addr")?,
        job_id: r.opt_int("job_id")?,
        detail: serde_json::from_str(&detail).map_err(|e| crate::codec::decode_err("detail", e))?,
    })
}
