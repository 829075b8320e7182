//! Verification on demand: queues a `verify` run of a job (all its snapshots, or one), which
//! the scheduler executes like any run (see `crate::verify`). Asynchronous on purpose: `git
//! fsck` of a large mirror takes minutes, longer than an HTTP request should; the client
//! follows the run (`GET /api/v1/runs/{id}`) as it does a backup.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use ghbs_store::StoreError;
use ghbs_wire::{codes, ErrorBody, Run};
use serde::Deserialize;

use crate::auth::Caller;
use crate::error::{ApiError, OrNotFound};
use crate::extract::{ApiPath, ApiQuery};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VerifyQuery {
    /// Verify only this snapshot of the job (default: every snapshot).
    pub snapshot: Option<i64>,
}

/// Queue a verification of the job's snapshots. Idempotent while the same verification is
/// queued or running (that run is returned); 409 while another run of the job is active.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/verify", params(("id" = i64, Path), VerifyQuery),
    responses((status = 202, body = Run), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn verify(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<VerifyQuery>,
) -> Result<(StatusCode, Json<Run>), ApiError> {
    let job = state
        .store
        .get_job(caller.user.id, id)
        .await
        .or_not_found("job")?;
    if let Some(s) = q.snapshot {
        let snap = state
            .store
            .get_snapshot(caller.user.id, s)
            .await
            .or_not_found("snapshot")?;
        if snap.job_id != id {
            return Err(ApiError::not_found(&format!("snapshot {s} of job {id}")));
        }
    }
    // Claims skip paused and needs-login jobs: a queued verification would wait unseen.
    if job.paused {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            codes::CONFLICT,
            format!("job {id} is paused: resume it to verify it"),
        ));
    }
    if job.needs_login {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            codes::GITHUB_TOKEN_REJECTED,
            "GitHub rejected your stored token: run `github-backup-scheduler login` with a new token first",
        ));
    }
    let now = state.clock.now();
    let run = state
        .store
        .request_verify(caller.user.id, id, q.snapshot, now)
        .await
        .map_err(|e| match e {
            StoreError::Conflict {
                existing_id: Some(run),
                ..
            } => ApiError::new(
                StatusCode::CONFLICT,
                codes::CONFLICT,
                format!("job {id} has run {run} queued or in progress: verify it once that run has finished"),
            ),
            other => Err::<(), _>(other).or_not_found("job").unwrap_err(),
        })?;
    state.wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(run)))
}
