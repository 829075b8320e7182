//! Users and API keys on SQLite.

use chrono::{DateTime, Utc};
use sqlx::SqlitePool;

use super::{db_err, us};
use crate::codec::{self, conflict};
use crate::LAST_USED_GRANULARITY_SECS;
use crate::{ApiKeyRow, StoreError, StoreResult, UserRow};

pub(super) async fn upsert_user(
    pool: &SqlitePool,
    github_id: i64,
    login: &str,
    token_sealed: &[u8],
    now: DateTime<Utc>,
) -> StoreResult<UserRow> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
    let row = sqlx::query(
        "INSERT INTO users (github_id, login, token_sealed, created_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (github_id) DO UPDATE
             SET login = excluded.login, token_sealed = excluded.token_sealed
         RETURNING *",
    )
    .bind(github_id)
    .bind(login)
    .bind(token_sealed)
    .bind(us(now))
    .fetch_one(&mut *tx)
    .await
    .map_err(db_err)?;
    let user = codec::user(&row)?;
    sqlx::query("UPDATE jobs SET needs_login = 0 WHERE user_id = ? AND needs_login = 1")
        .bind(user.id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    Ok(user)
}

pub(super) async fn get_user(pool: &SqlitePool, user_id: i64) -> StoreResult<UserRow> {
    let row = sqlx::query("SELECT * FROM users WHERE id = ?")
        .bind(user_id)
        .fetch_one(pool)
        .await
        .map_err(db_err)?;
    codec::user(&row)
}

pub(super) async fn create_api_key(
    pool: &SqlitePool,
    user_id: i64,
    key_hash: &str,
    label: Option<&str>,
    now: DateTime<Utc>,
) -> StoreResult<ApiKeyRow> {
    let row = sqlx::query(
        "INSERT INTO api_keys (user_id, key_hash, label, created_at) VALUES (?, ?, ?, ?)
         RETURNING *",
    )
    .bind(user_id)
    .bind(key_hash)
    .bind(label)
    .bind(us(now))
    .fetch_one(pool)
    .await
    .map_err(db_err)
    .map_err(conflict("an API key with this hash already exists", None))?;
    codec::api_key(&row)
}

pub(super) async fn authenticate_key(
    pool: &SqlitePool,
    key_hash: &str,
    now: DateTime<Utc>,
) -> StoreResult<(ApiKeyRow, UserRow)> {
    let row = sqlx::query("SELECT * FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL")
        .bind(key_hash)
        .fetch_one(pool)
        .await
        .map_err(db_err)?;
    let mut key = codec::api_key(&row)?;
    // Authentication is a read on every request: `last_used_at` is refreshed at most once a
    // minute so that reads do not queue behind a write each (SQLite has one writer).
    let stale_before = now - chrono::Duration::seconds(LAST_USED_GRANULARITY_SECS);
    if key.last_used_at.is_none_or(|t| t < stale_before) {
        let refreshed = sqlx::query(
            "UPDATE api_keys SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
        )
        .bind(us(now))
        .bind(key.id)
        .bind(us(stale_before))
        .execute(pool)
        .await;
        // Bookkeeping only: a database that cannot write (a full disk) must not turn every
        // authenticated read into an error.
        match refreshed {
            Ok(_) => key.last_used_at = Some(now),
            Err(e) => {
                tracing::warn!(error = %db_err(e), key.id = key.id, "could not record the API key's last use")
            }
        }
    }
    let user = get_user(pool, key.user_id).await?;
    Ok((key, user))
}

pub(super) async fn list_api_keys(pool: &SqlitePool, user_id: i64) -> StoreResult<Vec<ApiKeyRow>> {
    let rows =
        sqlx::query("SELECT * FROM api_keys WHERE user_id = ? AND revoked_at IS NULL ORDER BY id")
            .bind(user_id)
            .fetch_all(pool)
            .await
            .map_err(db_err)?;
    rows.iter().map(codec::api_key).collect()
}

pub(super) async fn revoke_api_key(
    pool: &SqlitePool,
    user_id: i64,
    key_id: i64,
) -> StoreResult<()> {
    let done = sqlx::query(
        "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND user_id = ? AND revoked_at IS NULL",
    )
    .bind(us(Utc::now()))
    .bind(key_id)
    .bind(user_id)
    .execute(pool)
    .await
    .map_err(db_err)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}
