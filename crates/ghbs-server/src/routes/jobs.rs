//! Jobs: create, list, show, change, pause, resume, delete.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use ghbs_core::Target;
use ghbs_store::{JobFreshness, JobPatch, JobRow, NewJob, StoreError};
use ghbs_wire::{
    codes, ErrorBody, ForgetRepo, Job, JobCreate, JobList, JobRetry, JobState, JobUpdate,
    RepoForgotten, Retention,
};
use serde::Deserialize;

use crate::auth::Caller;
use crate::error::{ApiError, OrNotFound};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::planning::{spread_key, Plan};
use crate::state::AppState;

/// A job as the API shows it: its row, newest run, freshness and pending retry.
pub fn job_json(
    app: &AppState,
    job: JobRow,
    last_run: Option<ghbs_wire::Run>,
    fresh: Option<JobFreshness>,
) -> Job {
    let last_success_at = fresh.as_ref().and_then(|f| f.last_success_at);
    let stale = !job.paused && crate::planning::is_stale(&job, last_success_at, app.clock.now());
    let failing = job.retry_at.is_some()
        || fresh.and_then(|f| f.last_finished) == Some(ghbs_wire::RunStatus::Failed);
    let retry = job.retry_at.map(|at| JobRetry {
        attempt: job.retry_attempt,
        max_attempts: app.cfg.retry.max_attempts(),
        at,
    });
    let state = if job.paused {
        JobState::Paused
    } else if job.needs_login {
        JobState::NeedsLogin
    } else {
        JobState::Active
    };
    Job {
        id: job.id,
        target: job.target,
        target_kind: job.target_kind,
        schedule: job.schedule.canonical(),
        timezone: job.timezone.name().to_owned(),
        retention: job.retention,
        options: job.options,
        state,
        next_run_at: job.next_run_at,
        created_at: job.created_at,
        last_run,
        last_success_at,
        stale,
        failing,
        retry,
    }
}

fn check_retention(r: &Retention) -> Result<(), ApiError> {
    let limit = 10_000;
    if r.keep_last == 0 && r.keep_daily == 0 && r.keep_weekly == 0 && r.keep_monthly == 0 {
        return Err(ApiError::bad_request(
            codes::BAD_REQUEST,
            "retention keeps nothing: set keep_last (default 30) or a daily/weekly/monthly keep",
        ));
    }
    if [r.keep_last, r.keep_daily, r.keep_weekly, r.keep_monthly]
        .iter()
        .any(|&n| n > limit)
    {
        return Err(ApiError::bad_request(
            codes::BAD_REQUEST,
            format!("retention counts are limited to {limit}"),
        ));
    }
    Ok(())
}

pub async fn with_last_run(state: &AppState, job: JobRow) -> Result<Job, ApiError> {
    let last = state.store.last_runs(&[job.id]).await?.into_iter().next();
    let fresh = state
        .store
        .job_freshness(&[job.id])
        .await?
        .into_iter()
        .next();
    Ok(job_json(state, job, last, fresh))
}

#[utoipa::path(post, path = "/api/v1/jobs", request_body = JobCreate,
    responses((status = 201, body = Job), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(req): ApiJson<JobCreate>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    let github_host = ghbs_core::web_host(&state.cfg.github_api_url);
    let target = Target::parse_on(&req.target, &github_host)
        .map_err(|e| ApiError::bad_request(codes::INVALID_TARGET, e.to_string()))?;
    let timezone = req.timezone.clone().unwrap_or_else(|| "UTC".into());
    let plan = Plan::parse(&req.schedule, &timezone, state.cfg.min_interval)?;
    let retention = req.retention.unwrap_or_default();
    check_retention(&retention)?;
    let now = state.clock.now();
    let canonical = target.canonical();
    let next_run_at = plan.next_after(now, now, spread_key(caller.user.id, &canonical));
    let created = state
        .store
        .create_job(NewJob {
            user_id: caller.user.id,
            target: canonical.clone(),
            target_kind: target.kind(),
            schedule: plan.schedule.clone(),
            timezone: plan.tz,
            retention,
            options: req.options.unwrap_or_default(),
            next_run_at,
            created_at: now,
        })
        .await;
    match created {
        Ok(job) => {
            tracing::info!(user.id = caller.user.id, job.id = job.id, "job created");
            let detail = [("target", job.target.clone())];
            caller
                .audit(
                    &state,
                    crate::audit::Action::JobCreate,
                    Some(job.id),
                    &detail,
                )
                .await;
            Ok((StatusCode::CREATED, Json(job_json(&state, job, None, None))))
        }
        Err(StoreError::Conflict { existing_id, .. }) => Err(ApiError::new(
            StatusCode::CONFLICT,
            codes::CONFLICT,
            match existing_id {
                Some(id) => format!(
                    "you already have job {id} for {canonical}; change it with `job edit {id}`"
                ),
                None => format!("you already have a job for {canonical}"),
            },
        )),
        Err(e) => Err(e.into()),
    }
}

/// Jobs on one page unless `limit` says otherwise, and the most one page may hold.
pub const DEFAULT_PAGE: i64 = 100;
pub const MAX_PAGE: i64 = 500;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JobListQuery {
    /// At most this many jobs, in id order (1–500, default 100).
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page, unchanged; without it the first page.
    pub cursor: Option<String>,
}

/// What a cursor says: "after job id N". Opaque to clients (base64url of `jobs:N`) so that
/// its form can change; a client only hands back what it was given.
mod cursor {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    const PREFIX: &str = "jobs:";

    pub fn encode(after_id: i64) -> String {
        URL_SAFE_NO_PAD.encode(format!("{PREFIX}{after_id}"))
    }

    pub fn decode(cursor: &str) -> Option<i64> {
        if cursor.len() > 64 {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(cursor).ok()?;
        let text = std::str::from_utf8(&raw).ok()?;
        let id: i64 = text.strip_prefix(PREFIX)?.parse().ok()?;
        (id > 0 && encode(id) == cursor).then_some(id)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn round_trips_and_refuses_anything_else() {
            for id in [1, 42, i64::MAX] {
                assert_eq!(super::decode(&super::encode(id)), Some(id));
            }
            for bad in [
                "",
                "x",
                "am9iczo",
                "am9iczotMQ",
                "am9iczowMQ",
                "bm9wZTo1",
                "@@@",
            ] {
                assert_eq!(super::decode(bad), None, "{bad}");
            }
        }
    }
}

#[utoipa::path(get, path = "/api/v1/jobs", params(JobListQuery),
    responses((status = 200, body = JobList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<JobListQuery>,
) -> Result<Json<JobList>, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            codes::BAD_REQUEST,
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    let after = match q.cursor.as_deref() {
        None => None,
        Some(c) => Some(cursor::decode(c).ok_or_else(|| {
            ApiError::bad_request(
                codes::BAD_REQUEST,
                "malformed cursor: pass the `next_cursor` of the previous page unchanged, \
                 or leave `cursor` out for the first page",
            )
        })?),
    };
    // One row more than the page tells whether another page follows.
    let mut page = state
        .store
        .list_jobs_page(caller.user.id, after, limit + 1)
        .await?;
    let more = page.len() as i64 > limit;
    page.truncate(limit as usize);
    let next_cursor = more
        .then(|| page.last().map(|l| cursor::encode(l.job.id)))
        .flatten();
    Ok(Json(JobList {
        jobs: page
            .into_iter()
            .map(|l| job_json(&state, l.job, l.last_run, Some(l.freshness)))
            .collect(),
        next_cursor,
    }))
}

#[utoipa::path(get, path = "/api/v1/jobs/{id}", params(("id" = i64, Path)),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
pub async fn show(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Job>, ApiError> {
    let job = state
        .store
        .get_job(caller.user.id, id)
        .await
        .or_not_found("job")?;
    Ok(Json(with_last_run(&state, job).await?))
}

#[utoipa::path(patch, path = "/api/v1/jobs/{id}", params(("id" = i64, Path)), request_body = JobUpdate,
    responses((status = 200, body = Job), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn update(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<JobUpdate>,
) -> Result<Json<Job>, ApiError> {
    let job = state
        .store
        .get_job(caller.user.id, id)
        .await
        .or_not_found("job")?;
    let mut patch = JobPatch::default();
    if req.schedule.is_some() || req.timezone.is_some() {
        let schedule = req
            .schedule
            .clone()
            .unwrap_or_else(|| job.schedule.canonical());
        let tz = req
            .timezone
            .clone()
            .unwrap_or_else(|| job.timezone.name().to_owned());
        let plan = Plan::parse(&schedule, &tz, state.cfg.min_interval)?;
        let now = state.clock.now();
        patch.next_run_at =
            Some(plan.next_after(now, job.created_at, spread_key(job.user_id, &job.target)));
        patch.schedule = Some(plan.schedule.clone());
        patch.timezone = Some(plan.tz);
    }
    if let Some(r) = req.retention {
        check_retention(&r)?;
        patch.retention = Some(r);
    }
    patch.options = req.options;
    let job = state
        .store
        .update_job(caller.user.id, id, patch)
        .await
        .or_not_found("job")?;
    caller
        .audit(&state, crate::audit::Action::JobUpdate, Some(id), &[])
        .await;
    Ok(Json(with_last_run(&state, job).await?))
}

async fn set_paused(
    state: &AppState,
    caller: &Caller,
    id: i64,
    paused: bool,
) -> Result<Json<Job>, ApiError> {
    let mut patch = JobPatch {
        paused: Some(paused),
        ..Default::default()
    };
    if !paused {
        // A resumed job does not replay what it missed while paused: it runs at its next slot.
        let job = state
            .store
            .get_job(caller.user.id, id)
            .await
            .or_not_found("job")?;
        let plan = Plan::of(&job);
        let now = state.clock.now();
        if job.next_run_at <= now {
            patch.next_run_at =
                Some(plan.next_after(now, job.created_at, spread_key(job.user_id, &job.target)));
        }
    }
    let job = state
        .store
        .update_job(caller.user.id, id, patch)
        .await
        .or_not_found("job")?;
    let action = if paused {
        crate::audit::Action::JobPause
    } else {
        crate::audit::Action::JobResume
    };
    caller.audit(state, action, Some(id), &[]).await;
    Ok(Json(with_last_run(state, job).await?))
}

#[utoipa::path(post, path = "/api/v1/jobs/{id}/pause", params(("id" = i64, Path)),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
pub async fn pause(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Job>, ApiError> {
    set_paused(&state, &caller, id, true).await
}

#[utoipa::path(post, path = "/api/v1/jobs/{id}/resume", params(("id" = i64, Path)),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
pub async fn resume(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Job>, ApiError> {
    set_paused(&state, &caller, id, false).await
}

/// Stop keeping a repository that is gone upstream (deleted, made private, transferred, or
/// excluded by the job's filters): it is no longer carried forward into new snapshots nor kept
/// beyond retention. 409 for a repository GitHub still shows this job, or while a run is going.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/forget-repo", params(("id" = i64, Path)),
    request_body = ForgetRepo,
    responses((status = 200, body = RepoForgotten), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn forget_repo(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<ForgetRepo>,
) -> Result<Json<RepoForgotten>, ApiError> {
    let repo = body.repo.trim();
    if repo.is_empty() || repo.len() > 300 || repo.split('/').count() != 2 {
        return Err(ApiError::bad_request(
            codes::BAD_REQUEST,
            format!("repo must be owner/name, got {repo:?}"),
        ));
    }
    let forgotten = crate::backup::forget_repo(&state, caller.user.id, id, repo).await?;
    caller
        .audit(
            &state,
            crate::audit::Action::RepoForget,
            Some(id),
            &[("repo", repo.to_owned())],
        )
        .await;
    Ok(Json(forgotten))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Also delete the job's snapshots and mirrors. Without it, backups are kept.
    #[serde(default)]
    pub purge: bool,
}

#[utoipa::path(delete, path = "/api/v1/jobs/{id}", params(("id" = i64, Path), DeleteQuery),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> Result<StatusCode, ApiError> {
    let job = state
        .store
        .get_job(caller.user.id, id)
        .await
        .or_not_found("job")?;
    if q.purge {
        crate::backup::purge_backups(&state, &job).await?;
    }
    state
        .store
        .delete_job(caller.user.id, id, q.purge)
        .await
        .or_not_found("job")?;
    tracing::info!(
        user.id = caller.user.id,
        job.id = id,
        purge = q.purge,
        "job deleted"
    );
    let action = if q.purge {
        crate::audit::Action::JobPurge
    } else {
        crate::audit::Action::JobDelete
    };
    caller
        .audit(&state, action, Some(id), &[("target", job.target.clone())])
        .await;
    Ok(StatusCode::NO_CONTENT)
}
