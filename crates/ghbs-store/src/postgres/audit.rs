//! Scoped API keys and the audit trail on PostgreSQL.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::db_err;
use crate::audit::audit_row;
use crate::codec::{self, conflict};
use crate::{ApiKeyRow, AuditRow, NewApiKey, NewAuditEntry, StoreError, StoreResult};

/// The user's row is locked first (`FOR UPDATE`), so two concurrent logins of one user are
/// serialised and cannot both pass the cap; other users are not blocked.
pub(super) async fn create_scoped_api_key(
    pool: &PgPool,
    key: NewApiKey<'_>,
) -> StoreResult<ApiKeyRow> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
        .bind(key.user_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
    let live: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL
           AND (expires_at IS NULL OR expires_at > $2)",
    )
    .bind(key.user_id)
    .bind(key.now)
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
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
    )
    .bind(key.user_id)
    .bind(key.key_hash)
    .bind(key.label)
    .bind(key.now)
    .bind(key.read_only)
    .bind(key.expires_at)
    .fetch_one(&mut *tx)
    .await
    .map_err(db_err)
    .map_err(conflict("an API key with this hash already exists", None))?;
    let key = codec::api_key(&row)?;
    tx.commit().await.map_err(db_err)?;
    Ok(key)
}

pub(super) async fn record_audit(pool: &PgPool, e: &NewAuditEntry) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO audit_log (user_id, at, action, key_id, client_addr, job_id, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(e.user_id)
    .bind(e.at)
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
    pool: &PgPool,
    user_id: i64,
    before_id: Option<i64>,
    limit: i64,
) -> StoreResult<Vec<AuditRow>> {
    let rows = sqlx::query(
        "SELECT * FROM audit_log WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
    )
    .bind(user_id)
    .bind(before_id.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(db_err)?;
    rows.iter().map(audit_row).collect()
}

pub(super) async fn prune_audit(pool: &PgPool, older_than: DateTime<Utc>) -> StoreResult<u64> {
    let done = sqlx::query("DELETE FROM audit_log WHERE at < $1")
        .bind(older_than)
        .execute(pool)
        .await
        .map_err(db_err)?;
    Ok(done.rows_affected())
}
