//! Bearer API keys: the extractor that turns `Authorization: Bearer <key>` into the caller,
//! and the place where a key's scope and expiry are enforced.
//!
//! Scope is enforced here, for every route at once: a read-only key is refused (403) on any
//! method but GET and HEAD, so a new route that changes something cannot forget the check.
//! The one exception is `POST /api/v1/logout`, which only revokes the calling key itself.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use ghbs_store::{StoreError, UserRow};
use ghbs_wire::codes;

use crate::crypto::hash_api_key;
use crate::error::ApiError;
use crate::state::AppState;

/// Live API keys one user may hold (not revoked, not expired). Each `login` makes one, so this
/// leaves room for many machines and scripts while stopping a runaway loop from minting keys
/// without bound; `keys revoke ID` frees a place.
pub const MAX_LIVE_KEYS_PER_USER: i64 = 100;

/// The authenticated caller of a request.
pub struct Caller {
    pub user: UserRow,
    pub key_id: i64,
    pub read_only: bool,
    /// The client's address (see [`crate::security::client_ip`]), for the audit trail.
    pub client_addr: Option<IpAddr>,
}

/// Whether a request with this method and path is allowed for a read-only key.
/// `path` is as the handler sees it: inside the nested `/api/v1` router the prefix is gone.
pub fn read_only_may(method: &Method, path: &str) -> bool {
    matches!(*method, Method::GET | Method::HEAD)
        || (*method == Method::POST && matches!(path, "/logout" | "/api/v1/logout"))
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
        let addr = crate::security::client_addr_of(parts, state);
        let now = state.clock.now();
        state.auth_limiter.check(addr, now)?;
        let failed = |e: ApiError| {
            state.auth_limiter.fail(addr, now);
            e
        };
        let key = header
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty() && k.len() <= 200)
            .ok_or_else(|| {
                failed(ApiError::unauthorized(
                    "malformed Authorization header: expected `Bearer <key>`",
                ))
            })?;
        let (key, user) = match state.store.authenticate_key(&hash_api_key(key), now).await {
            Ok(found) => found,
            Err(StoreError::NotFound) => {
                return Err(failed(ApiError::unauthorized(
                    "API key not recognised (revoked or never issued): run `github-backup-scheduler login`",
                )))
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(expired) = key.expires_at.filter(|t| *t <= now) {
            return Err(failed(ApiError::new(
                StatusCode::UNAUTHORIZED,
                codes::KEY_EXPIRED,
                format!(
                    "this API key (id {}) expired at {}: run `github-backup-scheduler login` for a new one",
                    key.id,
                    expired.format("%Y-%m-%d %H:%M:%S UTC")
                ),
            )));
        }
        if key.read_only && !read_only_may(&parts.method, parts.uri.path()) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                codes::READ_ONLY_KEY,
                format!(
                    "this API key (id {}) is read-only: it may list, show and download, not change \
                     anything; use a full key (`github-backup-scheduler login`)",
                    key.id
                ),
            ));
        }
        Ok(Caller {
            user,
            key_id: key.id,
            read_only: key.read_only,
            client_addr: addr,
        })
    }
}
