//! Bearer API keys: the extractor that turns `Authorization: Bearer <key>` into the caller.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use ghbs_store::{StoreError, UserRow};

use crate::app::AppState;
use crate::crypto::hash_api_key;
use crate::error::ApiError;

/// The authenticated caller of a request.
pub struct Caller {
    pub user: UserRow,
    pub key_id: i64,
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "missing API key: send `Authorization: Bearer <key>` (run `github-backup-scheduler login`)",
                )
            })?;
        let key = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty() && k.len() <= 200)
            .ok_or_else(|| {
                ApiError::unauthorized("malformed Authorization header: expected `Bearer <key>`")
            })?;
        match state.store.authenticate_key(&hash_api_key(key), state.clock.now()).await {
            Ok((k, user)) => Ok(Caller { user, key_id: k.id }),
            Err(StoreError::NotFound) => Err(ApiError::unauthorized(
                "API key not recognised (revoked or never issued): run `github-backup-scheduler login`",
            )),
            Err(e) => Err(e.into()),
        }
    }
}
