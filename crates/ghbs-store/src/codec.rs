//! What both backends share: turning rows into model types and enums into column text, so that
//! the two schemas cannot drift apart in how they spell a value.

use chrono::{DateTime, Utc};
use ghbs_wire::{RunStatus, RunTrigger, TargetKind};
use serde::{de::DeserializeOwned, Serialize};
use sqlx::{ColumnIndex, Database, Decode, Encode, Row, Type};

use crate::{
    ApiKeyRow, HttpCacheRow, JobRepoRow, JobRow, RunRow, SnapshotRow, StoreError, StoreResult,
    UserRow,
};

/// Error written on a run whose node stopped heartbeating and whose job another claim took over.
pub(crate) const TAKEOVER_ERROR: &str =
    "the server node running this backup stopped before it finished; the job was taken over";

/// Typed column access with the backend's own encoding of timestamps and booleans hidden.
pub trait Cols {
    fn int(&self, col: &str) -> StoreResult<i64>;
    fn opt_int(&self, col: &str) -> StoreResult<Option<i64>>;
    fn text(&self, col: &str) -> StoreResult<String>;
    fn opt_text(&self, col: &str) -> StoreResult<Option<String>>;
    fn flag(&self, col: &str) -> StoreResult<bool>;
    fn bytes(&self, col: &str) -> StoreResult<Vec<u8>>;
    fn opt_bytes(&self, col: &str) -> StoreResult<Option<Vec<u8>>>;
    fn time(&self, col: &str) -> StoreResult<DateTime<Utc>>;
    fn opt_time(&self, col: &str) -> StoreResult<Option<DateTime<Utc>>>;
}

/// How a backend stores a timestamp (implemented in `sqlite.rs` and `postgres.rs`).
pub trait TimeCodec: Database {
    type Time: for<'q> Encode<'q, Self> + for<'r> Decode<'r, Self> + Type<Self> + Send + 'static;
    fn encode_time(t: DateTime<Utc>) -> Self::Time;
    fn decode_time(col: &str, v: Self::Time) -> StoreResult<DateTime<Utc>>;
}

fn get<R: Row, T: for<'r> Decode<'r, R::Database> + Type<R::Database>>(
    r: &R,
    col: &str,
) -> StoreResult<T>
where
    for<'a> &'a str: ColumnIndex<R>,
{
    r.try_get(col).map_err(|e| decode_err(col, e))
}

/// The one implementation for both backends' rows.
impl<R: Row> Cols for R
where
    R::Database: TimeCodec,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    fn int(&self, col: &str) -> StoreResult<i64> {
        get(self, col)
    }
    fn opt_int(&self, col: &str) -> StoreResult<Option<i64>> {
        get(self, col)
    }
    fn text(&self, col: &str) -> StoreResult<String> {
        get(self, col)
    }
    fn opt_text(&self, col: &str) -> StoreResult<Option<String>> {
        get(self, col)
    }
    fn flag(&self, col: &str) -> StoreResult<bool> {
        get(self, col)
    }
    fn bytes(&self, col: &str) -> StoreResult<Vec<u8>> {
        get(self, col)
    }
    fn opt_bytes(&self, col: &str) -> StoreResult<Option<Vec<u8>>> {
        get(self, col)
    }
    fn time(&self, col: &str) -> StoreResult<DateTime<Utc>> {
        <R::Database as TimeCodec>::decode_time(col, get(self, col)?)
    }
    fn opt_time(&self, col: &str) -> StoreResult<Option<DateTime<Utc>>> {
        get::<R, Option<<R::Database as TimeCodec>::Time>>(self, col)?
            .map(|v| <R::Database as TimeCodec>::decode_time(col, v))
            .transpose()
    }
}

pub(crate) fn decode_err(col: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Other(format!("cannot decode column {col}: {e}"))
}

pub(crate) fn kind_str(kind: TargetKind) -> &'static str {
    match kind {
        TargetKind::Repository => "repository",
        TargetKind::Account => "account",
    }
}

fn parse_kind(s: &str) -> StoreResult<TargetKind> {
    match s {
        "repository" => Ok(TargetKind::Repository),
        "account" => Ok(TargetKind::Account),
        other => Err(decode_err("target_kind", format!("unknown kind {other:?}"))),
    }
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Other(format!("cannot encode JSON: {e}")))
}

fn from_json<T: DeserializeOwned>(col: &str, text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| decode_err(col, e))
}

pub(crate) fn user<R: Cols>(r: &R) -> StoreResult<UserRow> {
    Ok(UserRow {
        id: r.int("id")?,
        github_id: r.int("github_id")?,
        login: r.text("login")?,
        token_sealed: r.bytes("token_sealed")?,
        created_at: r.time("created_at")?,
    })
}

pub(crate) fn api_key<R: Cols>(r: &R) -> StoreResult<ApiKeyRow> {
    Ok(ApiKeyRow {
        id: r.int("id")?,
        user_id: r.int("user_id")?,
        label: r.opt_text("label")?,
        created_at: r.time("created_at")?,
        last_used_at: r.opt_time("last_used_at")?,
        read_only: r.flag("read_only")?,
        expires_at: r.opt_time("expires_at")?,
    })
}

pub(crate) fn job<R: Cols>(r: &R) -> StoreResult<JobRow> {
    let id = r.int("id")?;
    let schedule = r.text("schedule")?;
    let schedule = ghbs_core::Schedule::parse(&schedule).map_err(|e| {
        decode_err(
            "schedule",
            format!("job {id}: {schedule:?} does not parse: {e}"),
        )
    })?;
    let timezone = r.text("timezone")?;
    let timezone = ghbs_core::parse_timezone(&timezone).map_err(|e| {
        decode_err(
            "timezone",
            format!("job {id}: {timezone:?} does not parse: {e}"),
        )
    })?;
    Ok(JobRow {
        id,
        user_id: r.int("user_id")?,
        target: r.text("target")?,
        target_kind: parse_kind(&r.text("target_kind")?)?,
        schedule,
        timezone,
        retention: from_json("retention", &r.text("retention")?)?,
        options: from_json("options", &r.text("options")?)?,
        paused: r.flag("paused")?,
        needs_login: r.flag("needs_login")?,
        next_run_at: r.time("next_run_at")?,
        created_at: r.time("created_at")?,
        lease_owner: r.opt_text("lease_owner")?,
        lease_expires_at: r.opt_time("lease_expires_at")?,
        lease_token: r.int("lease_token")?,
        retry_at: r.opt_time("retry_at")?,
        retry_attempt: u32::try_from(r.int("retry_attempt")?).unwrap_or(0),
        retry_scope: r
            .opt_text("retry_scope")?
            .map(|t| from_json("retry_scope", &t))
            .transpose()?,
    })
}

pub(crate) fn run<R: Cols>(r: &R) -> StoreResult<RunRow> {
    let trigger = r.text("trigger_kind")?;
    let status = r.text("status")?;
    Ok(RunRow {
        id: r.int("id")?,
        job_id: r.int("job_id")?,
        trigger: RunTrigger::parse(&trigger)
            .ok_or_else(|| decode_err("trigger_kind", format!("unknown trigger {trigger:?}")))?,
        status: RunStatus::parse(&status)
            .ok_or_else(|| decode_err("status", format!("unknown status {status:?}")))?,
        queued_at: r.time("queued_at")?,
        started_at: r.opt_time("started_at")?,
        finished_at: r.opt_time("finished_at")?,
        error: r.opt_text("error")?,
        progress: r.opt_text("progress")?,
        bytes_fetched: r.int("bytes_fetched")?,
        api_requests: r.int("api_requests")?,
        api_requests_conditional: r.int("api_requests_conditional")?,
        snapshot_id: r.opt_int("snapshot_id")?,
        attempt: u32::try_from(r.int("attempt")?).unwrap_or(1),
        retry_at: r.opt_time("retry_at")?,
    })
}

pub(crate) fn snapshot<R: Cols>(r: &R) -> StoreResult<SnapshotRow> {
    Ok(SnapshotRow {
        id: r.int("id")?,
        job_id: r.int("job_id")?,
        run_id: r.int("run_id")?,
        created_at: r.time("created_at")?,
        refs: u64::try_from(r.int("refs")?).map_err(|e| decode_err("refs", e))?,
        size_bytes: r.int("size_bytes")?,
        repos: from_json("repos", &r.text("repos")?)?,
        manifest: from_json("manifest", &r.text("manifest")?)?,
    })
}

pub(crate) fn job_repo<R: Cols>(r: &R) -> StoreResult<JobRepoRow> {
    Ok(JobRepoRow {
        id: r.int("id")?,
        job_id: r.int("job_id")?,
        full_name: r.text("full_name")?,
        github_id: r.opt_int("github_id")?,
        state: from_json("state", &r.text("state")?)?,
    })
}

pub(crate) fn http_cache<R: Cols>(r: &R) -> StoreResult<HttpCacheRow> {
    Ok(HttpCacheRow {
        user_id: r.int("user_id")?,
        url: r.text("url")?,
        etag: r.opt_text("etag")?,
        last_modified: r.opt_text("last_modified")?,
        body: r.opt_bytes("body")?,
    })
}

pub(crate) fn refs_i64(refs: u64) -> StoreResult<i64> {
    i64::try_from(refs).map_err(|_| StoreError::Other(format!("ref count {refs} out of range")))
}

/// `NotFound` when a write that names its row by id changed no row.
pub(crate) fn changed(rows: u64) -> StoreResult<()> {
    if rows == 0 {
        Err(StoreError::NotFound)
    } else {
        Ok(())
    }
}

/// Only a finished status may end a run.
pub(crate) fn finished_status(status: RunStatus) -> StoreResult<&'static str> {
    if status.is_finished() {
        Ok(status.as_str())
    } else {
        Err(StoreError::Other(format!(
            "finish_run needs a finished status, got {}",
            status.as_str()
        )))
    }
}

/// `transient` recognises the backend's error codes that mean "try again later".
pub(crate) fn db_error(
    e: sqlx::Error,
    transient: fn(&str) -> bool,
    full: fn(&str) -> bool,
) -> StoreError {
    match &e {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        sqlx::Error::Io(io) if is_storage_full(io) => StoreError::StorageFull(e.to_string()),
        sqlx::Error::Database(db) if db.code().is_some_and(|c| full(&c)) => {
            StoreError::StorageFull(e.to_string())
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict {
            what: "already exists".into(),
            existing_id: None,
        },
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
        sqlx::Error::Database(db) if db.code().is_some_and(|c| transient(&c)) => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Other(e.to_string()),
    }
}

/// ENOSPC, however the standard library spells it.
fn is_storage_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(28)
}

/// Whether a connection coming back to the pool may serve the next caller. One still inside a
/// transaction is closed instead: it happens when the database ended the transaction on its own
/// (SQLite rolls back by itself on a full disk, so the driver's ROLLBACK then fails and its
/// depth count stays up), and such a connection would refuse every later `begin_with`.
pub(crate) fn reusable_after_release(in_transaction: bool) -> bool {
    if in_transaction {
        tracing::warn!("closing a database connection left inside a transaction after an error");
    }
    !in_transaction
}

/// Name a bare conflict from [`db_error`] after what the call site was writing.
pub(crate) fn conflict(
    what: &str,
    existing_id: Option<i64>,
) -> impl Fn(StoreError) -> StoreError + '_ {
    move |e| match e {
        StoreError::Conflict { .. } => StoreError::Conflict {
            what: what.to_string(),
            existing_id,
        },
        other => other,
    }
}
