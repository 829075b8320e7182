//! Runs: "run now" (rate-limited per job) and the run history.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use ghbs_wire::{codes, ErrorBody, Run, RunList};
use serde::Deserialize;

use crate::auth::Caller;
use crate::error::{ApiError, OrNotFound};
use crate::extract::{ApiPath, ApiQuery};
use crate::state::AppState;

/// Queue a run now. Idempotent while a run is queued or running (that run is returned).
#[utoipa::path(post, path = "/api/v1/jobs/{id}/runs", params(("id" = i64, Path)),
    responses((status = 202, body = Run), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn run_now(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<(StatusCode, Json<Run>), ApiError> {
    let job = state
        .store
        .get_job(caller.user.id, id)
        .await
        .or_not_found("job")?;
    if job.needs_login {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            codes::GITHUB_TOKEN_REJECTED,
            "GitHub rejected your stored token: run `github-backup-scheduler login` with a new token first",
        ));
    }
    let now = state.clock.now();
    let recent = state
        .store
        .count_manual_runs_since(id, now - chrono::Duration::hours(1))
        .await?;
    if recent >= i64::from(state.cfg.manual_runs_per_hour) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            codes::RATE_LIMITED,
            format!(
                "job {id} was already run on demand {recent} times in the last hour (limit {}); try again later",
                state.cfg.manual_runs_per_hour
            ),
        ));
    }
    let run = state
        .store
        .request_run(caller.user.id, id, now)
        .await
        .or_not_found("job")?;
    caller
        .audit(
            &state,
            crate::audit::Action::RunRequest,
            Some(id),
            &[("run_id", run.id.to_string())],
        )
        .await;
    state.wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(run)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// At most this many runs, newest first (1–1000, default 50).
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/jobs/{id}/runs", params(("id" = i64, Path), ListQuery),
    responses((status = 200, body = RunList), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<RunList>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            codes::BAD_REQUEST,
            "limit must be between 1 and 1000",
        ));
    }
    let runs = state
        .store
        .list_runs(caller.user.id, id, limit)
        .await
        .or_not_found("job")?;
    Ok(Json(RunList { runs }))
}

#[utoipa::path(get, path = "/api/v1/runs/{id}", params(("id" = i64, Path)),
    responses((status = 200, body = Run), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
pub async fn show(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Run>, ApiError> {
    Ok(Json(
        state
            .store
            .get_run(caller.user.id, id)
            .await
            .or_not_found("run")?,
    ))
}
