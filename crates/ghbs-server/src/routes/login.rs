//! Login (GitHub token → API key), logout, whoami and API key management.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use ghbs_core::{FailureKind, Secret};
use ghbs_wire::{
    codes, ApiKey, ApiKeyList, ErrorBody, KeyCreate, KeyCreated, LoginRequest, LoginResponse, User,
};

use crate::audit::Action;
use crate::auth::{Caller, MAX_LIVE_KEYS_PER_USER};
use crate::crypto::{hash_api_key, new_api_key};
use crate::error::{ApiError, OrNotFound};
use crate::extract::{ApiJson, ApiPath};
use crate::security::ClientAddr;
use crate::state::AppState;

pub fn user_json(u: &ghbs_store::UserRow) -> User {
    User {
        id: u.id,
        github_id: u.github_id,
        login: u.login.clone(),
        created_at: u.created_at,
    }
}

/// Exchange a GitHub token for an API key. The token is checked with `GET /user`, sealed, and
/// stored; logging in again with a new token replaces it (and clears `needs-login`).
///
/// Failed logins (GitHub rejects the token, or the user may not register) are limited per
/// client address: past the limit the answer is 429 with `Retry-After`, before GitHub is asked.
#[utoipa::path(post, path = "/api/v1/login", request_body = LoginRequest,
    responses((status = 201, body = LoginResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn login(
    State(state): State<Arc<AppState>>,
    ClientAddr(addr): ClientAddr,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<(StatusCode, Json<LoginResponse>), ApiError> {
    let token = req.github_token.trim();
    if token.is_empty()
        || token.len() > 255
        || token.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ApiError::bad_request(
            codes::BAD_REQUEST,
            "github_token must be a GitHub personal access token (no spaces, at most 255 characters)",
        ));
    }
    validate_label(req.label.as_deref())?;
    let expires_at = expiry(&state, req.expires_in_seconds)?;
    state.auth_limiter.check(addr, state.clock.now())?;
    let failed = |e: ApiError| {
        if matches!(e.status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            state.auth_limiter.fail(addr, state.clock.now());
        }
        e
    };
    let token = Secret::new(token);
    let session = state.github.session(
        token.clone(),
        Arc::new(ghbs_github::MemoryCache::default()),
        Arc::new(ghbs_github::NoProgress),
    );
    let gh_user = session
        .user()
        .await
        .map_err(github_login_error)
        .map_err(failed)?;
    if let Some((users, orgs)) = state.cfg.registration_allow_list() {
        let allowed_user = users.iter().any(|u| u.eq_ignore_ascii_case(&gh_user.login));
        let allowed_org = !orgs.is_empty() && {
            let mine = session
                .get_json_pages("/user/orgs")
                .await
                .map_err(github_login_error)
                .map_err(failed)?;
            mine.value.iter().any(|o| {
                o.get("login")
                    .and_then(|l| l.as_str())
                    .is_some_and(|l| orgs.iter().any(|a| a.eq_ignore_ascii_case(l)))
            })
        };
        if !allowed_user && !allowed_org {
            return Err(failed(ApiError::new(
                StatusCode::FORBIDDEN,
                codes::REGISTRATION_CLOSED,
                format!(
                    "GitHub user {} is not allowed on this server; ask its operator to add you to --allow-users or one of your organizations to --allow-orgs",
                    gh_user.login
                ),
            )));
        }
    }
    let now = state.clock.now();
    let user = state
        .store
        .upsert_user(gh_user.id, &gh_user.login, &state.sealer.seal(&token), now)
        .await?;
    let (key, row) = create_key(&state, user.id, req.label.as_deref(), false, expires_at).await?;
    tracing::info!(user.id = user.id, user.login = %user.login, key.id = row.id, "login");
    crate::audit::record(
        &state,
        user.id,
        Some(row.id),
        addr,
        Action::Login,
        None,
        &expiry_detail(&row),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(LoginResponse {
            api_key: key.expose().to_string(),
            key_id: row.id,
            user: user_json(&user),
        }),
    ))
}

fn validate_label(label: Option<&str>) -> Result<(), ApiError> {
    if let Some(label) = label {
        if label.len() > 100 || label.chars().any(char::is_control) {
            return Err(ApiError::bad_request(
                codes::BAD_REQUEST,
                "label must be at most 100 printable characters",
            ));
        }
    }
    Ok(())
}

/// Longest lifetime a key may be given: ten years.
const MAX_KEY_LIFETIME_SECS: u64 = 10 * 366 * 86_400;

/// `expires_in_seconds` → the instant, refused outside 60 s … ten years.
fn expiry(
    state: &AppState,
    expires_in_seconds: Option<u64>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    let Some(secs) = expires_in_seconds else {
        return Ok(None);
    };
    if !(60..=MAX_KEY_LIFETIME_SECS).contains(&secs) {
        return Err(ApiError::bad_request(
            codes::BAD_REQUEST,
            format!(
                "expires_in_seconds must be between 60 (one minute) and {MAX_KEY_LIFETIME_SECS} (ten years), got {secs}"
            ),
        ));
    }
    Ok(Some(
        state.clock.now() + chrono::Duration::seconds(secs as i64),
    ))
}

/// A new random key stored by its hash, within the per-user cap.
async fn create_key(
    state: &AppState,
    user_id: i64,
    label: Option<&str>,
    read_only: bool,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<(Secret, ghbs_store::ApiKeyRow), ApiError> {
    let key = new_api_key();
    let row = state
        .store
        .create_scoped_api_key(ghbs_store::NewApiKey {
            user_id,
            key_hash: &hash_api_key(key.expose()),
            label,
            read_only,
            expires_at,
            now: state.clock.now(),
            max_live: MAX_LIVE_KEYS_PER_USER,
        })
        .await
        .map_err(|e| match e {
            // The only conflict: a 256-bit random key cannot collide with a stored hash.
            ghbs_store::StoreError::Conflict { .. } => ApiError::new(
                StatusCode::CONFLICT,
                codes::TOO_MANY_KEYS,
                format!(
                    "you already hold {MAX_LIVE_KEYS_PER_USER} live API keys, the most a user may: \
                     revoke unused ones (`github-backup-scheduler keys`, then `keys revoke ID`)"
                ),
            ),
            other => other.into(),
        })?;
    Ok((key, row))
}

fn expiry_detail(row: &ghbs_store::ApiKeyRow) -> Vec<(&'static str, String)> {
    let mut detail = vec![("key_id", row.id.to_string())];
    if row.read_only {
        detail.push(("scope", "read-only".into()));
    }
    if let Some(t) = row.expires_at {
        detail.push(("expires_at", t.to_rfc3339()));
    }
    detail
}

fn key_json(k: ghbs_store::ApiKeyRow, current_key: i64) -> ApiKey {
    ApiKey {
        current: k.id == current_key,
        id: k.id,
        label: k.label,
        created_at: k.created_at,
        last_used_at: k.last_used_at,
        read_only: k.read_only,
        expires_at: k.expires_at,
    }
}

/// Another API key for the caller, e.g. a read-only, expiring one for a monitoring script.
/// Shown once. A read-only key cannot make keys (403).
#[utoipa::path(post, path = "/api/v1/keys", request_body = KeyCreate,
    responses((status = 201, body = KeyCreated), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create_key_route(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(req): ApiJson<KeyCreate>,
) -> Result<(StatusCode, Json<KeyCreated>), ApiError> {
    validate_label(req.label.as_deref())?;
    let expires_at = expiry(&state, req.expires_in_seconds)?;
    let (key, row) = create_key(
        &state,
        caller.user.id,
        req.label.as_deref(),
        req.read_only,
        expires_at,
    )
    .await?;
    tracing::info!(
        user.id = caller.user.id,
        key.id = row.id,
        read_only = row.read_only,
        "API key created"
    );
    caller
        .audit(&state, Action::KeyCreate, None, &expiry_detail(&row))
        .await;
    Ok((
        StatusCode::CREATED,
        Json(KeyCreated {
            api_key: key.expose().to_string(),
            key: key_json(row, caller.key_id),
        }),
    ))
}

fn github_login_error(e: ghbs_github::GitHubError) -> ApiError {
    match e.kind {
        FailureKind::Unauthorized => ApiError::new(
            StatusCode::UNAUTHORIZED,
            codes::GITHUB_TOKEN_REJECTED,
            "GitHub rejected this token (mistyped, revoked or expired): create a new one at https://github.com/settings/tokens",
        ),
        _ => ApiError::new(
            StatusCode::BAD_GATEWAY,
            codes::GITHUB_UNAVAILABLE,
            format!("could not verify the token with GitHub: {}", e.message),
        ),
    }
}

/// Revoke the API key that made this request.
#[utoipa::path(post, path = "/api/v1/logout", responses((status = 204), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn logout(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    state
        .store
        .revoke_api_key(caller.user.id, caller.key_id)
        .await?;
    caller
        .audit(
            &state,
            Action::KeyRevoke,
            None,
            &[
                ("key_id", caller.key_id.to_string()),
                ("by", "logout".into()),
            ],
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/me", responses((status = 200, body = User), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn me(caller: Caller) -> Json<User> {
    Json(user_json(&caller.user))
}

#[utoipa::path(get, path = "/api/v1/keys", responses((status = 200, body = ApiKeyList), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_keys(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<ApiKeyList>, ApiError> {
    let keys = state.store.list_api_keys(caller.user.id).await?;
    Ok(Json(ApiKeyList {
        keys: keys
            .into_iter()
            .map(|k| key_json(k, caller.key_id))
            .collect(),
    }))
}

#[utoipa::path(delete, path = "/api/v1/keys/{id}", params(("id" = i64, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn revoke_key(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    state
        .store
        .revoke_api_key(caller.user.id, id)
        .await
        .or_not_found("API key")?;
    caller
        .audit(
            &state,
            Action::KeyRevoke,
            None,
            &[("key_id", id.to_string())],
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}
