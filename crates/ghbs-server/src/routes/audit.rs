//! `GET /api/v1/audit`: the caller's own audit trail, newest first, in pages.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use ghbs_wire::{codes, AuditEntry, AuditList, ErrorBody};
use serde::Deserialize;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// At most this many entries (1–1000, default 100).
    pub limit: Option<i64>,
    /// Only entries older than this id (the previous page's `next_before`).
    pub before: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/audit", params(AuditQuery),
    responses((status = 200, body = AuditList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<AuditList>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            codes::BAD_REQUEST,
            format!("limit must be between 1 and 1000, got {limit}"),
        ));
    }
    if q.before.is_some_and(|b| b < 1) {
        return Err(ApiError::bad_request(
            codes::BAD_REQUEST,
            "before must be an entry id (1 or more)",
        ));
    }
    let rows = state
        .store
        .list_audit(caller.user.id, q.before, limit)
        .await?;
    let next_before = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    let entries = rows
        .into_iter()
        .map(|r| AuditEntry {
            id: r.id,
            at: r.at,
            action: r.action,
            key_id: r.key_id,
            client_addr: r.client_addr,
            job_id: r.job_id,
            detail: r
                .detail
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| {
                            let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                            (k.clone(), v)
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect();
    Ok(Json(AuditList {
        entries,
        next_before,
    }))
}
