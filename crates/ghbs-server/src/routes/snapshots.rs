//! Snapshots: list, show, and download (bundle, tar.gz, zip) with Range support.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use ghbs_store::SnapshotRow;
use ghbs_wire::{codes, DownloadFormat, ErrorBody, Snapshot, SnapshotList, TargetKind};
use serde::Deserialize;
use tower::ServiceExt;

use crate::auth::Caller;
use crate::error::{ApiError, OrNotFound};
use crate::extract::{ApiPath, ApiQuery};
use crate::state::AppState;

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

/// The bytes of a download, for the OpenAPI document (a binary string); never built.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct Artifact(pub Vec<u8>);

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DownloadQuery {
    /// `bundle` (default), `tar.gz`, `zip` or `site` (a zip of a static HTML site to read offline).
    pub format: Option<String>,
    /// For account jobs: only this repository (`owner/name`).
    pub repo: Option<String>,
    /// `restore` when the CLI downloads to restore (recorded as such in the audit trail);
    /// absent or `download` otherwise.
    pub purpose: Option<String>,
}

/// Stream a snapshot. The artifact is built once into a file (cached per snapshot and format), so
/// `Content-Length` is exact and `Range: bytes=N-` resumes an interrupted download.
///
/// Every answer carries a strong `ETag` (the quoted hex SHA-256 of the file), `Repr-Digest:
/// sha-256=:BASE64:` (RFC 9530, the digest of the whole file, also on a 206) and
/// `X-Checksum-Sha256: HEX`. A `Range` is honoured only when `If-Range` is absent or equal to the
/// current `ETag`; any other `If-Range` (another tag, a weak tag, a date) gets the whole file
/// (200). One range only; a malformed `bytes=` range is answered 416 with an error body.
///
/// Account jobs without `repo` get one archive with a file per repository: bundle → an
/// uncompressed tar of `owner/name.bundle` (`application/x-tar`), zip → a tar of
/// `owner/name.zip`, tar.gz → bundles and metadata per repository. `site` is always one zip: a
/// static HTML site whose top index lists every repository of the snapshot (or just `repo`).
#[utoipa::path(get, path = "/api/v1/snapshots/{id}/download", params(("id" = i64, Path), DownloadQuery,
        ("Range" = Option<String>, Header, description = "one byte range, e.g. `bytes=1000-`"),
        ("If-Range" = Option<String>, Header, description = "the ETag of the partial file held: the range is served only if it is still the current file, else the whole file (200)")),
    responses((status = 200, description = "the artifact: a git bundle, a tar.gz or a zip (`zip` and `site`); for an account job without `repo`, a tar of one bundle or zip per repository (a `site` stays one zip)",
                content((Artifact = "application/x-git-bundle"), (Artifact = "application/gzip"),
                        (Artifact = "application/zip"), (Artifact = "application/x-tar")),
                headers(("ETag" = String, description = "strong validator: the quoted hex SHA-256 of the file"),
                        ("Repr-Digest" = String, description = "sha-256=:BASE64: of the whole file (RFC 9530)"),
                        ("X-Checksum-Sha256" = String, description = "hex SHA-256 of the whole file"))),
              (status = 206, description = "a range of the artifact (Range, with If-Range equal to the ETag or absent)"),
              (status = 404, body = ErrorBody),
              (status = 416, description = "malformed, multiple or unsatisfiable range", body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn download(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<DownloadQuery>,
    mut req: Request,
) -> Result<Response, ApiError> {
    let action = match q.purpose.as_deref() {
        None | Some("download") => crate::audit::Action::SnapshotDownload,
        Some("restore") => crate::audit::Action::Restore,
        Some(p) => {
            return Err(ApiError::bad_request(
                codes::BAD_REQUEST,
                format!("unknown purpose {p:?}: use download or restore"),
            ))
        }
    };
    let format = match q.format.as_deref() {
        None => DownloadFormat::Bundle,
        Some(f) => DownloadFormat::parse(f).ok_or_else(|| {
            ApiError::bad_request(
                codes::BAD_REQUEST,
                format!("unknown format {f:?}: use bundle, tar.gz, zip or site"),
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
    // An account job's download holds one file per repository, however many the snapshot has.
    let account = match state.store.get_job(caller.user.id, snap.job_id).await {
        Ok(job) => job.target_kind == TargetKind::Account,
        Err(_) => manifest.repos.len() > 1,
    };
    let exported = match (&q.repo, account) {
        (None, true) => {
            state
                .engine
                .export_each_as_of(&manifest, Some(snap.created_at), format)
                .await
        }
        (repo, _) => {
            state
                .engine
                .export_as_of(&manifest, Some(snap.created_at), format, repo.as_deref())
                .await
        }
    };
    let artifact = exported.map_err(export_error)?;

    let etag = artifact.etag();
    let mut resp = match check_range(req.headers(), &etag, artifact.size) {
        RangeCheck::Serve => serve(&artifact, req).await?,
        RangeCheck::Whole => {
            req.headers_mut().remove(header::RANGE);
            serve(&artifact, req).await?
        }
        RangeCheck::Refuse(message) => range_refused(&artifact, message),
    };
    let refused = resp.status() == StatusCode::RANGE_NOT_SATISFIABLE;
    if refused
        && resp.headers().get(header::CONTENT_TYPE)
            != Some(&HeaderValue::from_static("application/json"))
    {
        resp = range_refused(
            &artifact,
            format!(
                "the range asked for is outside the file ({} bytes)",
                artifact.size
            ),
        );
    }
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(artifact.sha256)
    )) {
        headers.insert(REPR_DIGEST, v);
    }
    if let Ok(v) = HeaderValue::from_str(&artifact.sha256_hex()) {
        headers.insert(X_CHECKSUM_SHA256, v);
    }
    if let Ok(v) =
        HeaderValue::from_str(&format!("attachment; filename=\"{}\"", artifact.file_name))
    {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    if !refused {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(artifact.content_type),
        );
        let mut detail = vec![
            ("snapshot_id", id.to_string()),
            ("format", format.as_str().to_owned()),
        ];
        if let Some(repo) = &q.repo {
            detail.push(("repo", repo.clone()));
        }
        if resp.status() == StatusCode::PARTIAL_CONTENT {
            detail.push(("resumed", "true".into()));
        }
        caller
            .audit(&state, action, Some(snap.job_id), &detail)
            .await;
    }
    Ok(resp)
}

const REPR_DIGEST: header::HeaderName = header::HeaderName::from_static("repr-digest");
const X_CHECKSUM_SHA256: header::HeaderName = header::HeaderName::from_static("x-checksum-sha256");

async fn serve(artifact: &ghbs_engine::Artifact, req: Request) -> Result<Response, ApiError> {
    let served = tower_http::services::ServeFile::new(&artifact.path)
        .oneshot(req)
        .await
        .map_err(ApiError::internal)?;
    Ok(served.map(Body::new).into_response())
}

/// 416 with the error body and `Content-Range: bytes */SIZE`.
fn range_refused(artifact: &ghbs_engine::Artifact, message: String) -> Response {
    let mut resp = ApiError::new(
        StatusCode::RANGE_NOT_SATISFIABLE,
        codes::BAD_REQUEST,
        message,
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", artifact.size)) {
        resp.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    resp
}

#[derive(Debug, PartialEq)]
enum RangeCheck {
    /// No range, or a single well-formed byte range whose `If-Range` (if any) matches: let
    /// `ServeFile` answer (200, 206, or 416 past the end).
    Serve,
    /// Send the whole file: `If-Range` does not match the current file, or the range is in a unit
    /// we do not serve (which RFC 9110 says to ignore).
    Whole,
    /// A malformed or multiple byte range.
    Refuse(String),
}

/// Decides what a request's `Range` and `If-Range` get, before `ServeFile` (which does not
/// know entity tags) sees them.
fn check_range(headers: &HeaderMap, etag: &str, size: u64) -> RangeCheck {
    let Some(range) = headers.get(header::RANGE) else {
        return RangeCheck::Serve;
    };
    if let Some(if_range) = headers.get(header::IF_RANGE) {
        // Strong comparison: byte-for-byte equal to our tag. Weak tags, dates, other tags and
        // unreadable values all mean "the file you have may not be this one".
        if if_range.as_bytes().trim_ascii() != etag.as_bytes() {
            return RangeCheck::Whole;
        }
    }
    let Ok(range) = range.to_str() else {
        return RangeCheck::Refuse(
            "the Range header is not ASCII: use a single range such as bytes=1000-".into(),
        );
    };
    let Some((unit, spec)) = range.trim().split_once('=') else {
        return RangeCheck::Refuse(format!(
            "malformed Range header {range:?}: use a single range such as bytes=1000-"
        ));
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeCheck::Whole;
    }
    if spec.contains(',') {
        return RangeCheck::Refuse(
            "only one range per request is served: ask for bytes=START- to resume".into(),
        );
    }
    let spec = spec.trim();
    let Some((first, last)) = spec.split_once('-') else {
        return RangeCheck::Refuse(format!(
            "malformed Range header {range:?}: use a single range such as bytes=1000-"
        ));
    };
    let number = |s: &str| -> Option<Option<u64>> {
        let s = s.trim();
        if s.is_empty() {
            Some(None)
        } else if s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse().ok().map(Some)
        } else {
            None
        }
    };
    let (Some(first), Some(last)) = (number(first), number(last)) else {
        return RangeCheck::Refuse(format!(
            "malformed Range header {range:?}: use a single range such as bytes=1000-"
        ));
    };
    match (first, last) {
        (None, None) => RangeCheck::Refuse(format!(
            "malformed Range header {range:?}: use a single range such as bytes=1000-"
        )),
        (Some(a), Some(b)) if b < a => {
            RangeCheck::Refuse(format!("the Range {range:?} ends before it starts"))
        }
        (Some(a), _) if a >= size => RangeCheck::Refuse(format!(
            "the range starts at byte {a} but the file has {size} bytes"
        )),
        _ => RangeCheck::Serve,
    }
}

/// Building a download fails on the server's side (its disk, its mirrors, git run locally):
/// the caller's input was checked before. Only a snapshot without what was asked is the
/// caller's 404; a full disk is a 503; anything else a 500. No body carries the engine's text
/// beyond a 404's (which names repositories only): paths and git's output go to the log.
fn export_error(e: ghbs_engine::EngineError) -> ApiError {
    match e.kind {
        ghbs_core::FailureKind::NotFound => {
            ApiError::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, e.message)
        }
        ghbs_core::FailureKind::StorageFull => {
            tracing::error!(error = %e.message, "download not built: disk full");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                codes::UNAVAILABLE,
                "the server's disk is full: this download cannot be built until space is freed",
            )
        }
        _ => ApiError::internal(format!("building a download failed: {}", e.message)),
    }
}
