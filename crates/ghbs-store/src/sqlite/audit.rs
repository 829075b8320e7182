//! Scoped API keys and the audit trail on SQLite.

use chrono::{DateTime, Utc};
use sqlx::SqlitePool;

use super::{db_err, us};
use crate::audit::audit_row;
use crate::codec::{self, conflict};
use crate::{ApiKeyRow, AuditRow, NewApiKey, NewAuditEntry, StoreError, StoreResult};

/// Count and insert in one `BEGIN IMMEDIATE` transaction, so two concurrent logins cannot both
/// pass the cap.
pub(super) async fn create_scoped_api_key(
    pool: &SqlitePool,
    key: NewApiKey<'_>,
) -> StoreResult<ApiKeyRow> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
    let live: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM api_keys WHERE user_id = ? AND revoked_at IS NULL
           AND (expires_at IS NULL OR expires_at > ?)",
    )
    .bind(key.user_id)
    .bind(us(key.now))
    .fetch_one(&mut *tx)
    .await
    .map_err(db_err)?;
    if live >= key.max_live {
        return Err(StoreError::Conflict {
            what: format!("the user already holds {live} live API keys"),
            existing_id: None,
        });
    }
    let row = sqlx::query(
        "INSERT INTO api_keys (user_id, key_hash, label, created_at, read_only, expires_at)
         VALUES (?, ?, ?, ?, ?, ?) RETURNING *",
    )
    .bind(key.user_id)
    .bind(key.key_hash)
    .bind(key.label)
    .bind(us(key.now))
    .bind(key.read_only)
    .bind(key.expires_at.map(us))
    .fetch_one(&mut *tx)
    .await
    .map_err(db_err)
    .map_err(conflict("an API key with this hash already exists", None))?;
    let key = codec::api_key(&row)?;
    tx.commit().await.map_err(db_err)?;
    Ok(key)
}

pub(super) async fn record_audit(pool: &SqlitePool, e: &NewAuditEntry) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO audit_log (user_id, at, action, key_id, client_addr, job_id, detail)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(e.user_id)
    .bind(us(e.at))
    .bind(&e.action)
    .bind(e.key_id)
    .bind(&e.client_addr)
    .bind(e.job_id)
    .bind(codec::to_json(&e.detail)?)
    .execute(pool)
    .await
    .map_err(db_err)?;
    Ok(())
}

pub(super) async fn list_audit(
    pool: &SqlitePool,
    user_id: i64,
    before_id: Option<i64>,
    limit: i64,
) -> StoreResult<Vec<AuditRow>> {
    let rows = sqlx::query(
        "SELECT * FROM audit_log WHERE user_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
    )
    .bind(user_id)
    .bind(before_id.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    rows.iter().map(audit_row).collect()
}

pub(super) async fn prune_audit(pool: &SqlitePool, older_than: DateTime<Utc>) -> StoreResult<u64> {
    let done = sqlx::query("DELETE FROM audit_log WHERE at < ?")
        .bind(us(older_than))
        .execute(pool)
        .await
        .map_err(db_err)?;
    Ok(done.rows_affected())
}
