//! Login (GitHub token → API key), logout, whoami and API key management.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use ghbs_core::{FailureKind, Secret};
use ghbs_wire::{codes, ApiKey, ApiKeyList, ErrorBody, LoginRequest, LoginResponse, User};

use crate::app::AppState;
use crate::auth::Caller;
use crate::crypto::{hash_api_key, new_api_key};
use crate::error::{ApiError, OrNotFound};
use crate::extract::{ApiJson, ApiPath};

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
#[utoipa::path(post, path = "/api/v1/login", request_body = LoginRequest,
    responses((status = 201, body = LoginResponse), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn login(
    State(state): State<Arc<AppState>>,
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
    if let Some(label) = &req.label {
        if label.len() > 100 || label.chars().any(char::is_control) {
            return Err(ApiError::bad_request(
                codes::BAD_REQUEST,
                "label must be at most 100 printable characters",
            ));
        }
    }
    let token = Secret::new(token);
    let session = state.github.session(
        token.clone(),
        Arc::new(ghbs_github::MemoryCache::default()),
        Arc::new(ghbs_github::NoProgress),
    );
    let gh_user = session.user().await.map_err(github_login_error)?;
    if let Some((users, orgs)) = state.cfg.registration_allow_list() {
        let allowed_user = users.iter().any(|u| u.eq_ignore_ascii_case(&gh_user.login));
        let allowed_org = !orgs.is_empty() && {
            let mine = session
                .get_json_pages("/user/orgs")
                .await
                .map_err(github_login_error)?;
            mine.value.iter().any(|o| {
                o.get("login")
                    .and_then(|l| l.as_str())
                    .is_some_and(|l| orgs.iter().any(|a| a.eq_ignore_ascii_case(l)))
            })
        };
        if !allowed_user && !allowed_org {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                codes::REGISTRATION_CLOSED,
                format!(
                    "GitHub user {} is not allowed on this server; ask its operator to add you to --allow-users or one of your organizations to --allow-orgs",
                    gh_user.login
                ),
            ));
        }
    }
    let now = state.clock.now();
    let user = state
        .store
        .upsert_user(gh_user.id, &gh_user.login, &state.sealer.seal(&token), now)
        .await?;
    let key = new_api_key();
    let row = state
        .store
        .create_api_key(
            user.id,
            &hash_api_key(key.expose()),
            req.label.as_deref(),
            now,
        )
        .await?;
    tracing::info!(user.id = user.id, user.login = %user.login, key.id = row.id, "login");
    Ok((
        StatusCode::CREATED,
        Json(LoginResponse {
            api_key: key.expose().to_string(),
            key_id: row.id,
            user: user_json(&user),
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
            .map(|k| ApiKey {
                current: k.id == caller.key_id,
                id: k.id,
                label: k.label,
                created_at: k.created_at,
                last_used_at: k.last_used_at,
            })
            .collect(),
    }))
}

#[utoipa::path(delete, path = "/api/v1/keys/{id}", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("api_key" = [])))]
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
    Ok(StatusCode::NO_CONTENT)
}
