//! Scoped, expiring API keys with a live-key cap, and the per-user audit trail (issue 15):
//! their rows and statements, written once for both backends.

use chrono::{DateTime, Utc};
use sqlx::Pool;

use crate::backend::{begin, commit, sql, Backend};
use crate::codec::{self, conflict, Cols};
use crate::{ApiKeyRow, StoreError, StoreResult};

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

fn audit_row<R: Cols>(r: &R) -> StoreResult<AuditRow> {
    let detail = r.text("detail")?;
    Ok(AuditRow {
        id: r.int("id")?,
        user_id: r.int("user_id")?,
        at: r.time("at")?,
        action: r.text("action")?,
        key_id: r.opt_int("key_id")?,
        client_addr: r.opt_text("client_addr")?,
        job_id: r.opt_int("job_id")?,
        detail: serde_json::from_str(&detail).map_err(|e| codec::decode_err("detail", e))?,
    })
}

/// Lock the user (PostgreSQL; SQLite's write transaction serialises already), count, insert.
pub(crate) async fn create_scoped_api_key<D: Backend>(
    pool: &Pool<D>,
    key: NewApiKey<'_>,
) -> StoreResult<ApiKeyRow> {
    let mut tx = begin(pool).await?;
    sql(D::SQL.lock_user)
        .arg(key.user_id)
        .opt(&mut tx)
        .await?
        .ok_or(StoreError::NotFound)?;
    let live = sql(
        "SELECT COUNT(*) AS n FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL
           AND (expires_at IS NULL OR expires_at > $2)",
    )
    .arg(key.user_id)
    .time(key.now)
    .one(&mut tx)
    .await?
    .int("n")?;
    if live >= key.max_live {
        return Err(StoreError::Conflict {
            what: format!("the user already holds {live} live API keys"),
            existing_id: None,
        });
    }
    let row = sql(
        "INSERT INTO api_keys (user_id, key_hash, label, created_at, read_only, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
    )
    .arg(key.user_id)
    .arg(key.key_hash)
    .arg(key.label)
    .time(key.now)
    .arg(Some(key.read_only))
    .opt_time(key.expires_at)
    .one(&mut tx)
    .await
    .map_err(conflict("an API key with this hash already exists", None))?;
    let key = codec::api_key(&row)?;
    commit(tx).await?;
    Ok(key)
}

pub(crate) async fn record_audit<D: Backend>(pool: &Pool<D>, e: &NewAuditEntry) -> StoreResult<()> {
    sql(
        "INSERT INTO audit_log (user_id, at, action, key_id, client_addr, job_id, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .arg(e.user_id)
    .time(e.at)
    .arg(e.action.as_str())
    .arg(e.key_id)
    .arg(e.client_addr.as_deref())
    .arg(e.job_id)
    .arg(codec::to_json(&e.detail)?)
    .run(pool)
    .await?;
    Ok(())
}

pub(crate) async fn list_audit<D: Backend>(
    pool: &Pool<D>,
    user_id: i64,
    before_id: Option<i64>,
    limit: i64,
) -> StoreResult<Vec<AuditRow>> {
    let rows =
        sql("SELECT * FROM audit_log WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3")
            .arg(user_id)
            .arg(before_id.unwrap_or(i64::MAX))
            .arg(limit)
            .all(pool)
            .await?;
    rows.iter().map(audit_row).collect()
}

pub(crate) async fn prune_audit<D: Backend>(
    pool: &Pool<D>,
    older_than: DateTime<Utc>,
) -> StoreResult<u64> {
    sql("DELETE FROM audit_log WHERE at < $1")
        .time(older_than)
        .run(pool)
        .await
}
