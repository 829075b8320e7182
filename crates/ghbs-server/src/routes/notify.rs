//! `/api/v1/notifications`: a user's notification targets (issue 11).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use ghbs_core::Secret;
use ghbs_store::NewNotifyTarget;
use ghbs_wire::{
    codes, ErrorBody, NotifyKind, NotifyTarget, NotifyTargetCreate, NotifyTargetCreated,
    NotifyTargetList, NotifyTestResult,
};

use crate::auth::Caller;
use crate::error::{ApiError, OrNotFound};
use crate::extract::{ApiJson, ApiPath};
use crate::notify::target::{check_address, check_url, mask_url, parse_events, target_json};
use crate::notify::{deliver, Deliverer};
use crate::state::AppState;

/// Targets one user may have: enough for every channel, few enough that one account cannot
/// fan a single failure out into thousands of requests.
pub const MAX_TARGETS_PER_USER: usize = 20;

#[utoipa::path(get, path = "/api/v1/notifications",
    responses((status = 200, body = NotifyTargetList), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<NotifyTargetList>, ApiError> {
    let rows = state.store.list_notify_targets(caller.user.id).await?;
    Ok(Json(NotifyTargetList {
        targets: rows.iter().map(target_json).collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/notifications/{id}", params(("id" = i64, Path)),
    responses((status = 200, body = NotifyTarget), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn show(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<NotifyTarget>, ApiError> {
    let row = state
        .store
        .get_notify_target(caller.user.id, id)
        .await
        .or_not_found("notification target")?;
    Ok(Json(target_json(&row)))
}

/// Add a webhook (answered with its signing secret, shown once) or an e-mail address.
#[utoipa::path(post, path = "/api/v1/notifications", request_body = NotifyTargetCreate,
    responses((status = 201, body = NotifyTargetCreated), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(req): ApiJson<NotifyTargetCreate>,
) -> Result<(StatusCode, Json<NotifyTargetCreated>), ApiError> {
    let bad = |m: String| ApiError::bad_request(codes::BAD_REQUEST, m);
    let events = parse_events(req.events.as_deref()).map_err(|e| bad(e.to_string()))?;
    let (kind, format, destination, display, secret) = match req.kind {
        NotifyKind::Webhook => {
            if req.address.is_some() {
                return Err(bad("a webhook takes `url`, not `address`".into()));
            }
            let raw = req
                .url
                .as_deref()
                .ok_or_else(|| bad("a webhook needs `url`".into()))?;
            let url = check_url(raw).map_err(|e| bad(e.to_string()))?;
            let format = req.format.unwrap_or_default();
            (
                "webhook",
                format.as_str(),
                Secret::new(url.as_str()),
                mask_url(&url),
                Some(deliver::new_secret()),
            )
        }
        NotifyKind::Email => {
            if req.url.is_some() || req.format.is_some() {
                return Err(bad("an e-mail target takes `address` only".into()));
            }
            let raw = req
                .address
                .as_deref()
                .ok_or_else(|| bad("an e-mail target needs `address`".into()))?;
            let address = check_address(raw).map_err(|e| bad(e.to_string()))?;
            if state.cfg.smtp.is_none() {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    codes::CONFLICT,
                    "this server cannot send e-mail: its operator has not set --smtp-host and \
                     --smtp-from; use a webhook instead",
                ));
            }
            let address = address.to_string();
            (
                "email",
                "email",
                Secret::new(address.clone()),
                address,
                None,
            )
        }
    };
    let existing = state.store.list_notify_targets(caller.user.id).await?;
    if existing.len() >= MAX_TARGETS_PER_USER {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            codes::CONFLICT,
            format!(
                "you already have {MAX_TARGETS_PER_USER} notification targets, the most allowed; remove one first"
            ),
        ));
    }
    let row = state
        .store
        .create_notify_target(NewNotifyTarget {
            user_id: caller.user.id,
            kind: kind.into(),
            format: format.into(),
            destination_sealed: state.sealer.seal(&destination),
            display,
            secret_sealed: secret.as_ref().map(|s| state.sealer.seal(s)),
            events,
            created_at: state.clock.now(),
        })
        .await?;
    tracing::info!(
        user.id = caller.user.id,
        target.id = row.id,
        kind,
        "notification target added"
    );
    Ok((
        StatusCode::CREATED,
        Json(NotifyTargetCreated {
            target: target_json(&row),
            secret: secret.map(|s| s.expose().to_owned()),
        }),
    ))
}

#[utoipa::path(delete, path = "/api/v1/notifications/{id}", params(("id" = i64, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    state
        .store
        .delete_notify_target(caller.user.id, id)
        .await
        .or_not_found("notification target")?;
    Ok(StatusCode::NO_CONTENT)
}

/// Send a `test` event to the target now (bounded by the delivery timeout) and say whether it
/// arrived; recorded as the target's last delivery. Not retried.
#[utoipa::path(post, path = "/api/v1/notifications/{id}/test", params(("id" = i64, Path)),
    responses((status = 200, body = NotifyTestResult), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn test(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<NotifyTestResult>, ApiError> {
    let row = state
        .store
        .get_notify_target(caller.user.id, id)
        .await
        .or_not_found("notification target")?;
    let now = state.clock.now();
    let deliverer = Deliverer::new(state.clone()).map_err(ApiError::internal)?;
    // Test deliveries are not queued, so they have no row id: 0 marks them in the payload.
    let sent = deliverer
        .send(
            &row,
            0,
            "test",
            crate::notify::test_payload(caller.user.id, now),
        )
        .await;
    let error = sent.err().map(|e| e.message);
    state
        .store
        .record_notify_result(row.id, "test", error.as_deref(), state.clock.now())
        .await?;
    Ok(Json(NotifyTestResult {
        delivered: error.is_none(),
        error,
    }))
}

/// The routes' part of the OpenAPI document, merged into [`crate::openapi::document`].
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list, show, create, delete, test),
    components(schemas(
        ghbs_wire::NotifyKind,
        ghbs_wire::WebhookFormat,
        ghbs_wire::NotifyTargetCreate,
        ghbs_wire::NotifyDelivery,
        ghbs_wire::NotifyTarget,
        ghbs_wire::NotifyTargetCreated,
        ghbs_wire::NotifyTargetList,
        ghbs_wire::NotifyTestResult,
    ))
)]
pub struct NotifyDoc;
