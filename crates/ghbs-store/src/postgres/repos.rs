//! Snapshots, per-repository engine state and the HTTP validator cache on PostgreSQL.

use chrono::Utc;
use sqlx::{PgPool, Row};

use super::{db_err, jobs::owns_job};
use crate::codec::{self, conflict, refs_i64, to_json};
use crate::{HttpCacheRow, JobRepoRow, NewSnapshot, SnapshotRow, StoreError, StoreResult};

pub(super) async fn insert_snapshot(pool: &PgPool, s: NewSnapshot) -> StoreResult<SnapshotRow> {
    // The owner is copied from the job so that reads stay scoped after the job is deleted.
    let row = sqlx::query(
        "INSERT INTO snapshots
             (user_id, job_id, run_id, created_at, refs, size_bytes, repos, manifest)
         SELECT user_id, id, $1, $2, $3, $4, $5, $6 FROM jobs WHERE id = $7
         RETURNING *",
    )
    .bind(s.run_id)
    .bind(s.created_at)
    .bind(refs_i64(s.refs)?)
    .bind(s.size_bytes)
    .bind(to_json(&s.repos)?)
    .bind(to_json(&s.manifest)?)
    .bind(s.job_id)
    .fetch_optional(pool)
    .await
    .map_err(db_err)?
    .ok_or(StoreError::NotFound)?;
    codec::snapshot(&row)
}

pub(super) async fn list_snapshots(
    pool: &PgPool,
    user_id: i64,
    job_id: i64,
) -> StoreResult<Vec<SnapshotRow>> {
    let rows =
        sqlx::query("SELECT * FROM snapshots WHERE user_id = $1 AND job_id = $2 ORDER BY id DESC")
            .bind(user_id)
            .bind(job_id)
            .fetch_all(pool)
            .await
            .map_err(db_err)?;
    if rows.is_empty() {
        // Kept snapshots of a deleted job are listed above; an empty list needs a live job.
        owns_job(pool, user_id, job_id).await?;
    }
    rows.iter().map(codec::snapshot).collect()
}

pub(super) async fn get_snapshot(
    pool: &PgPool,
    user_id: i64,
    snapshot_id: i64,
) -> StoreResult<SnapshotRow> {
    let row = sqlx::query("SELECT * FROM snapshots WHERE id = $1 AND user_id = $2")
        .bind(snapshot_id)
        .bind(user_id)
        .fetch_one(pool)
        .await
        .map_err(db_err)?;
    codec::snapshot(&row)
}

pub(super) async fn job_snapshots(pool: &PgPool, job_id: i64) -> StoreResult<Vec<SnapshotRow>> {
    let rows = sqlx::query("SELECT * FROM snapshots WHERE job_id = $1 ORDER BY id DESC")
        .bind(job_id)
        .fetch_all(pool)
        .await
        .map_err(db_err)?;
    rows.iter().map(codec::snapshot).collect()
}

pub(super) async fn delete_snapshots(pool: &PgPool, snapshot_ids: &[i64]) -> StoreResult<()> {
    if snapshot_ids.is_empty() {
        return Ok(());
    }
    sqlx::query("DELETE FROM snapshots WHERE id = ANY($1)")
        .bind(snapshot_ids)
        .execute(pool)
        .await
        .map_err(db_err)?;
    Ok(())
}

pub(super) async fn snapshot_key_exists(pool: &PgPool, key: &str) -> StoreResult<bool> {
    // A scan of the snapshot rows: this runs once per crash-leftover at startup.
    let row = sqlx::query("SELECT EXISTS (SELECT 1 FROM snapshots WHERE manifest::jsonb->>'snapshot_key' = $1) AS found")
        .bind(key)
        .fetch_one(pool)
        .await
        .map_err(db_err)?;
    row.try_get("found").map_err(db_err)
}

pub(super) async fn job_repo(
    pool: &PgPool,
    job_id: i64,
    full_name: &str,
    github_id: Option<i64>,
) -> StoreResult<JobRepoRow> {
    let mut tx = pool.begin().await.map_err(db_err)?;
    // Another row holding `full_name` with a different identity is a repository that is gone
    // (deleted, or renamed away): it keeps its id and mirror under a name marking it so.
    let displace = "UPDATE job_repos SET full_name = full_name || ' (gone, row ' || id || ')'
                    WHERE job_id = $1 AND full_name = $2 AND id <> $3";

    if let Some(gid) = github_id {
        let found = sqlx::query("SELECT * FROM job_repos WHERE job_id = $1 AND github_id = $2")
            .bind(job_id)
            .bind(gid)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        if let Some(row) = found {
            let mut repo = codec::job_repo(&row)?;
            if repo.full_name != full_name {
                sqlx::query(displace)
                    .bind(job_id)
                    .bind(full_name)
                    .bind(repo.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                sqlx::query("UPDATE job_repos SET full_name = $1 WHERE id = $2")
                    .bind(full_name)
                    .bind(repo.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                repo.full_name = full_name.to_string();
            }
            tx.commit().await.map_err(db_err)?;
            return Ok(repo);
        }
    }

    let found = sqlx::query("SELECT * FROM job_repos WHERE job_id = $1 AND full_name = $2")
        .bind(job_id)
        .bind(full_name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
    if let Some(row) = found {
        let mut repo = codec::job_repo(&row)?;
        match (repo.github_id, github_id) {
            (None, Some(gid)) => {
                sqlx::query("UPDATE job_repos SET github_id = $1 WHERE id = $2")
                    .bind(gid)
                    .bind(repo.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                repo.github_id = Some(gid);
                tx.commit().await.map_err(db_err)?;
                return Ok(repo);
            }
            (Some(old), Some(new)) if old != new => {
                sqlx::query(displace)
                    .bind(job_id)
                    .bind(full_name)
                    .bind(0_i64)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
            }
            _ => return Ok(repo),
        }
    }

    let row = sqlx::query(
        "INSERT INTO job_repos (job_id, full_name, github_id) VALUES ($1, $2, $3) RETURNING *",
    )
    .bind(job_id)
    .bind(full_name)
    .bind(github_id)
    .fetch_one(&mut *tx)
    .await
    .map_err(db_err)
    .map_err(conflict(
        "a repository row with this name already exists",
        None,
    ))?;
    let repo = codec::job_repo(&row)?;
    tx.commit().await.map_err(db_err)?;
    Ok(repo)
}

pub(super) async fn list_job_repos(pool: &PgPool, job_id: i64) -> StoreResult<Vec<JobRepoRow>> {
    let rows = sqlx::query("SELECT * FROM job_repos WHERE job_id = $1 ORDER BY id")
        .bind(job_id)
        .fetch_all(pool)
        .await
        .map_err(db_err)?;
    rows.iter().map(codec::job_repo).collect()
}

pub(super) async fn delete_job_repo(
    pool: &PgPool,
    job_id: i64,
    job_repo_id: i64,
) -> StoreResult<()> {
    let done = sqlx::query("DELETE FROM job_repos WHERE job_id = $1 AND id = $2")
        .bind(job_id)
        .bind(job_repo_id)
        .execute(pool)
        .await
        .map_err(db_err)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

pub(super) async fn set_job_repo_state(
    pool: &PgPool,
    job_repo_id: i64,
    state: &serde_json::Value,
) -> StoreResult<()> {
    let done = sqlx::query("UPDATE job_repos SET state = $1 WHERE id = $2")
        .bind(to_json(state)?)
        .bind(job_repo_id)
        .execute(pool)
        .await
        .map_err(db_err)?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

pub(super) async fn get_http_cache(
    pool: &PgPool,
    user_id: i64,
    url: &str,
) -> StoreResult<Option<HttpCacheRow>> {
    sqlx::query("SELECT * FROM http_cache WHERE user_id = $1 AND url = $2")
        .bind(user_id)
        .bind(url)
        .fetch_optional(pool)
        .await
        .map_err(db_err)?
        .as_ref()
        .map(codec::http_cache)
        .transpose()
}

pub(super) async fn put_http_cache(pool: &PgPool, row: &HttpCacheRow) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO http_cache (user_id, url, etag, last_modified, body, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (user_id, url) DO UPDATE
             SET etag = EXCLUDED.etag, last_modified = EXCLUDED.last_modified,
                 body = EXCLUDED.body, updated_at = EXCLUDED.updated_at",
    )
    .bind(row.user_id)
    .bind(&row.url)
    .bind(row.etag.as_deref())
    .bind(row.last_modified.as_deref())
    .bind(row.body.as_deref())
    .bind(Utc::now())
    .execute(pool)
    .await
    .map_err(db_err)?;
    Ok(())
}
