//! Snapshots, per-repository engine state and the HTTP validator cache.

use chrono::Utc;
use sqlx::Pool;

use crate::backend::{begin, commit, sql, Backend};
use crate::codec::{self, conflict, refs_i64, to_json, Cols};
use crate::jobs::owns_job;
use crate::{HttpCacheRow, JobRepoRow, NewSnapshot, SnapshotRow, StoreError, StoreResult};

pub(crate) async fn insert_snapshot<D: Backend>(
    pool: &Pool<D>,
    s: NewSnapshot,
) -> StoreResult<SnapshotRow> {
    // The owner is copied from the job so that reads stay scoped after the job is deleted.
    let row = sql("INSERT INTO snapshots
             (user_id, job_id, run_id, created_at, refs, size_bytes, repos, manifest)
         SELECT user_id, id, $1, $2, $3, $4, $5, $6 FROM jobs WHERE id = $7
         RETURNING *")
    .arg(s.run_id)
    .time(s.created_at)
    .arg(refs_i64(s.refs)?)
    .arg(s.size_bytes)
    .arg(to_json(&s.repos)?)
    .arg(to_json(&s.manifest)?)
    .arg(s.job_id)
    .opt(pool)
    .await?
    .ok_or(StoreError::NotFound)?;
    codec::snapshot(&row)
}

pub(crate) async fn list_snapshots<D: Backend>(
    pool: &Pool<D>,
    user_id: i64,
    job_id: i64,
) -> StoreResult<Vec<SnapshotRow>> {
    let rows = sql("SELECT * FROM snapshots WHERE user_id = $1 AND job_id = $2 ORDER BY id DESC")
        .arg(user_id)
        .arg(job_id)
        .all(pool)
        .await?;
    if rows.is_empty() {
        // Kept snapshots of a deleted job are listed above; an empty list needs a live job.
        owns_job(pool, user_id, job_id).await?;
    }
    rows.iter().map(codec::snapshot).collect()
}

pub(crate) async fn get_snapshot<D: Backend>(
    pool: &Pool<D>,
    user_id: i64,
    snapshot_id: i64,
) -> StoreResult<SnapshotRow> {
    let row = sql("SELECT * FROM snapshots WHERE id = $1 AND user_id = $2")
        .arg(snapshot_id)
        .arg(user_id)
        .one(pool)
        .await?;
    codec::snapshot(&row)
}

pub(crate) async fn job_snapshots<D: Backend>(
    pool: &Pool<D>,
    job_id: i64,
) -> StoreResult<Vec<SnapshotRow>> {
    sql("SELECT * FROM snapshots WHERE job_id = $1 ORDER BY id DESC")
        .arg(job_id)
        .all(pool)
        .await?
        .iter()
        .map(codec::snapshot)
        .collect()
}

/// Every job that has a snapshot, in id order (`storage migrate` walks them one at a time).
pub(crate) async fn snapshot_job_ids<D: Backend>(pool: &Pool<D>) -> StoreResult<Vec<i64>> {
    sql("SELECT DISTINCT job_id FROM snapshots ORDER BY job_id")
        .all(pool)
        .await?
        .iter()
        .map(|row| row.int("job_id"))
        .collect()
}

pub(crate) async fn delete_snapshots<D: Backend>(
    pool: &Pool<D>,
    snapshot_ids: &[i64],
) -> StoreResult<()> {
    if !snapshot_ids.is_empty() {
        sql(D::SQL.delete_snapshots)
            .ids(snapshot_ids)
            .run(pool)
            .await?;
    }
    Ok(())
}

pub(crate) async fn snapshot_key_exists<D: Backend>(
    pool: &Pool<D>,
    key: &str,
) -> StoreResult<bool> {
    // A scan of the snapshot rows: this runs once per crash-leftover at startup.
    sql(D::SQL.snapshot_key_exists)
        .arg(key)
        .one(pool)
        .await?
        .flag("found")
}

pub(crate) async fn job_repo<D: Backend>(
    pool: &Pool<D>,
    job_id: i64,
    full_name: &str,
    github_id: Option<i64>,
) -> StoreResult<JobRepoRow> {
    let mut tx = begin(pool).await?;
    // Another row holding `full_name` with a different identity is a repository that is gone
    // (deleted, or renamed away): it keeps its id and mirror under a name marking it so.
    let displace = "UPDATE job_repos SET full_name = full_name || ' (gone, row ' || id || ')'
                    WHERE job_id = $1 AND full_name = $2 AND id <> $3";

    if let Some(gid) = github_id {
        let found = sql("SELECT * FROM job_repos WHERE job_id = $1 AND github_id = $2")
            .arg(job_id)
            .arg(gid)
            .opt(&mut tx)
            .await?;
        if let Some(row) = found {
            let mut repo = codec::job_repo(&row)?;
            if repo.full_name != full_name {
                sql(displace)
                    .arg(job_id)
                    .arg(full_name)
                    .arg(repo.id)
                    .run(&mut tx)
                    .await?;
                sql("UPDATE job_repos SET full_name = $1 WHERE id = $2")
                    .arg(full_name)
                    .arg(repo.id)
                    .run(&mut tx)
                    .await?;
                repo.full_name = full_name.to_string();
            }
            commit(tx).await?;
            return Ok(repo);
        }
    }

    let found = sql("SELECT * FROM job_repos WHERE job_id = $1 AND full_name = $2")
        .arg(job_id)
        .arg(full_name)
        .opt(&mut tx)
        .await?;
    if let Some(row) = found {
        let mut repo = codec::job_repo(&row)?;
        match (repo.github_id, github_id) {
            (None, Some(gid)) => {
                sql("UPDATE job_repos SET github_id = $1 WHERE id = $2")
                    .arg(gid)
                    .arg(repo.id)
                    .run(&mut tx)
                    .await?;
                repo.github_id = Some(gid);
                commit(tx).await?;
                return Ok(repo);
            }
            (Some(old), Some(new)) if old != new => {
                sql(displace)
                    .arg(job_id)
                    .arg(full_name)
                    .arg(0_i64)
                    .run(&mut tx)
                    .await?;
            }
            _ => return Ok(repo),
        }
    }

    let row =
        sql("INSERT INTO job_repos (job_id, full_name, github_id) VALUES ($1, $2, $3) RETURNING *")
            .arg(job_id)
            .arg(full_name)
            .arg(github_id)
            .one(&mut tx)
            .await
            .map_err(conflict(
                "a repository row with this name already exists",
                None,
            ))?;
    let repo = codec::job_repo(&row)?;
    commit(tx).await?;
    Ok(repo)
}

pub(crate) async fn list_job_repos<D: Backend>(
    pool: &Pool<D>,
    job_id: i64,
) -> StoreResult<Vec<JobRepoRow>> {
    sql("SELECT * FROM job_repos WHERE job_id = $1 ORDER BY id")
        .arg(job_id)
        .all(pool)
        .await?
        .iter()
        .map(codec::job_repo)
        .collect()
}

pub(crate) async fn delete_job_repo<D: Backend>(
    pool: &Pool<D>,
    job_id: i64,
    job_repo_id: i64,
) -> StoreResult<()> {
    sql("DELETE FROM job_repos WHERE job_id = $1 AND id = $2")
        .arg(job_id)
        .arg(job_repo_id)
        .run(pool)
        .await
        .and_then(codec::changed)
}

pub(crate) async fn set_job_repo_state<D: Backend>(
    pool: &Pool<D>,
    job_repo_id: i64,
    state: &serde_json::Value,
) -> StoreResult<()> {
    sql("UPDATE job_repos SET state = $1 WHERE id = $2")
        .arg(to_json(state)?)
        .arg(job_repo_id)
        .run(pool)
        .await
        .and_then(codec::changed)
}

pub(crate) async fn get_http_cache<D: Backend>(
    pool: &Pool<D>,
    user_id: i64,
    url: &str,
) -> StoreResult<Option<HttpCacheRow>> {
    sql("SELECT * FROM http_cache WHERE user_id = $1 AND url = $2")
        .arg(user_id)
        .arg(url)
        .opt(pool)
        .await?
        .as_ref()
        .map(codec::http_cache)
        .transpose()
}

pub(crate) async fn put_http_cache<D: Backend>(
    pool: &Pool<D>,
    row: &HttpCacheRow,
) -> StoreResult<()> {
    sql(
        "INSERT INTO http_cache (user_id, url, etag, last_modified, body, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (user_id, url) DO UPDATE
             SET etag = excluded.etag, last_modified = excluded.last_modified,
                 body = excluded.body, updated_at = excluded.updated_at",
    )
    .arg(row.user_id)
    .arg(row.url.as_str())
    .arg(row.etag.as_deref())
    .arg(row.last_modified.as_deref())
    .arg(row.body.as_deref())
    .time(Utc::now())
    .run(pool)
    .await?;
    Ok(())
}
