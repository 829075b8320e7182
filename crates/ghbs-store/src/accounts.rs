//! Users and API keys.

use chrono::{DateTime, Utc};
use sqlx::Pool;

use crate::backend::{begin, commit, sql, Backend};
use crate::codec::{self, conflict, Cols};
use crate::{ApiKeyRow, StoreResult, UserRow, LAST_USED_GRANULARITY_SECS};

pub(crate) async fn upsert_user<D: Backend>(
    pool: &Pool<D>,
    github_id: i64,
    login: &str,
    token_sealed: &[u8],
    now: DateTime<Utc>,
) -> StoreResult<UserRow> {
    let mut tx = begin(pool).await?;
    let row = sql(
        "INSERT INTO users (github_id, login, token_sealed, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (github_id) DO UPDATE
             SET login = excluded.login, token_sealed = excluded.token_sealed
         RETURNING *",
    )
    .arg(github_id)
    .arg(login)
    .arg(token_sealed)
    .time(now)
    .one(&mut tx)
    .await?;
    let user = codec::user(&row)?;
    sql("UPDATE jobs SET needs_login = FALSE WHERE user_id = $1 AND needs_login")
        .arg(user.id)
        .run(&mut tx)
        .await?;
    commit(tx).await?;
    Ok(user)
}

pub(crate) async fn get_user<D: Backend>(pool: &Pool<D>, user_id: i64) -> StoreResult<UserRow> {
    let row = sql("SELECT * FROM users WHERE id = $1")
        .arg(user_id)
        .one(pool)
        .await?;
    codec::user(&row)
}

pub(crate) async fn create_api_key<D: Backend>(
    pool: &Pool<D>,
    user_id: i64,
    key_hash: &str,
    label: Option<&str>,
    now: DateTime<Utc>,
) -> StoreResult<ApiKeyRow> {
    let row = sql(
        "INSERT INTO api_keys (user_id, key_hash, label, created_at) VALUES ($1, $2, $3, $4)
         RETURNING *",
    )
    .arg(user_id)
    .arg(key_hash)
    .arg(label)
    .time(now)
    .one(pool)
    .await
    .map_err(conflict("an API key with this hash already exists", None))?;
    codec::api_key(&row)
}

pub(crate) async fn authenticate_key<D: Backend>(
    pool: &Pool<D>,
    key_hash: &str,
    now: DateTime<Utc>,
) -> StoreResult<(ApiKeyRow, UserRow)> {
    // Key and user in one statement: this runs before every authenticated request.
    let row = sql("SELECT k.*, u.github_id AS u_github_id, u.login AS u_login,
                          u.token_sealed AS u_token_sealed, u.created_at AS u_created_at
         FROM api_keys k JOIN users u ON u.id = k.user_id
         WHERE k.key_hash = $1 AND k.revoked_at IS NULL")
    .arg(key_hash)
    .one(pool)
    .await?;
    let mut key = codec::api_key(&row)?;
    let user = UserRow {
        id: key.user_id,
        github_id: row.int("u_github_id")?,
        login: row.text("u_login")?,
        token_sealed: row.bytes("u_token_sealed")?,
        created_at: row.time("u_created_at")?,
    };
    // Authentication is a read on every request: `last_used_at` is refreshed at most once a
    // minute so that reads do not queue behind a write each (SQLite has one writer).
    let stale_before = now - chrono::Duration::seconds(LAST_USED_GRANULARITY_SECS);
    if key.last_used_at.is_none_or(|t| t < stale_before) {
        let refreshed = sql("UPDATE api_keys SET last_used_at = $1
             WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $3)")
        .time(now)
        .arg(key.id)
        .time(stale_before)
        .run(pool)
        .await;
        // Bookkeeping only: a database that cannot write (a full disk) must not turn every
        // authenticated read into an error.
        match refreshed {
            Ok(_) => key.last_used_at = Some(now),
            Err(error) => {
                tracing::warn!(%error, key.id = key.id, "could not record the API key's last use")
            }
        }
    }
    Ok((key, user))
}

pub(crate) async fn list_api_keys<D: Backend>(
    pool: &Pool<D>,
    user_id: i64,
) -> StoreResult<Vec<ApiKeyRow>> {
    sql("SELECT * FROM api_keys WHERE user_id = $1 AND revoked_at IS NULL ORDER BY id")
        .arg(user_id)
        .all(pool)
        .await?
        .iter()
        .map(codec::api_key)
        .collect()
}

pub(crate) async fn revoke_api_key<D: Backend>(
    pool: &Pool<D>,
    user_id: i64,
    key_id: i64,
) -> StoreResult<()> {
    sql("UPDATE api_keys SET revoked_at = $1
         WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL")
    .time(Utc::now())
    .arg(key_id)
    .arg(user_id)
    .run(pool)
    .await
    .and_then(codec::changed)
}
