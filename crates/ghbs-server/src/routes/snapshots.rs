//! Snapshots: list, show, and download (bundle, tar.gz, zip) with Range support.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ghbs_store::SnapshotRow;
use ghbs_wire::{codes, DownloadFormat, ErrorBody, Snapshot, SnapshotList};
use serde::Deserialize;
use tower::ServiceExt;

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, OrNotFound};
use crate::extract::{ApiPath, ApiQuery};

pub fn snapshot_json(s: SnapshotRow) -> Snapshot {
    let (status, carried_forward, failed, gone) = Snapshot::summarise(&s.repos);
    Snapshot {
        id: s.id,
        job_id: s.job_id,
        run_id: s.run_id,
        created_at: s.created_at,
        refs: s.refs,
        size_bytes: s.size_bytes,
        status,
        carried_forward,
        failed,
        gone,
        repos: s.repos,
    }
}

#[utoipa::path(get, path = "/api/v1/jobs/{id}/snapshots", params(("id" = i64, Path)),
    responses((status = 200, body = SnapshotList), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<SnapshotList>, ApiError> {
    let rows = state
        .store
        .list_snapshots(caller.user.id, id)
        .await
        .or_not_found("job")?;
    Ok(Json(SnapshotList {
        snapshots: rows.into_iter().map(snapshot_json).collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/snapshots/{id}", params(("id" = i64, Path)),
    responses((status = 200, body = Snapshot), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
pub async fn show(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Snapshot>, ApiError> {
    Ok(Json(snapshot_json(
        state
            .store
            .get_snapshot(caller.user.id, id)
            .await
            .or_not_found("snapshot")?,
    )))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DownloadQuery {
    /// `bundle` (default), `tar.gz` or `zip`.
    pub format: Option<String>,
    /// For account jobs: only this repository (`owner/name`).
    pub repo: Option<String>,
}

/// Stream a snapshot. The artifact is built once into a file (cached per snapshot and format), so
/// `Content-Length` is exact and `Range: bytes=N-` resumes an interrupted download.
#[utoipa::path(get, path = "/api/v1/snapshots/{id}/download", params(("id" = i64, Path), DownloadQuery),
    responses((status = 200, description = "the artifact", content_type = "application/octet-stream"),
              (status = 206, description = "a range of the artifact"), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn download(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<DownloadQuery>,
    req: Request,
) -> Result<Response, ApiError> {
    let format = match q.format.as_deref() {
        None => DownloadFormat::Bundle,
        Some(f) => DownloadFormat::parse(f).ok_or_else(|| {
            ApiError::bad_request(
                codes::BAD_REQUEST,
                format!("unknown format {f:?}: use bundle, tar.gz or zip"),
            )
        })?,
    };
    let snap = state
        .store
        .get_snapshot(caller.user.id, id)
        .await
        .or_not_found("snapshot")?;
    let manifest: ghbs_engine::Manifest =
        serde_json::from_value(snap.manifest.clone()).map_err(|e| {
            ApiError::internal(format!("snapshot {id} has an unreadable manifest: {e}"))
        })?;
    if let Some(repo) = &q.repo {
        if !manifest.repos.iter().any(|r| &r.full_name == repo) {
            return Err(ApiError::not_found(&format!(
                "repository {repo} in snapshot {id}"
            )));
        }
    }
    let artifact = state
        .engine
        .export(&manifest, format, q.repo.as_deref())
        .await
        .map_err(|e| match e.kind {
            ghbs_core::FailureKind::Permanent => {
                ApiError::bad_request(codes::BAD_REQUEST, e.message)
            }
            _ => ApiError::internal(e.message),
        })?;
    let served = tower_http::services::ServeFile::new(&artifact.path)
        .oneshot(req)
        .await
        .map_err(ApiError::internal)?;
    let mut resp = served.map(Body::new).into_response();
    let headers = resp.headers_mut();
    if let Ok(v) =
        HeaderValue::from_str(&format!("attachment; filename=\"{}\"", artifact.file_name))
    {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(artifact.content_type),
    );
    Ok(resp)
}
