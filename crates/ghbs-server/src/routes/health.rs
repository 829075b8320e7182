//! Liveness, readiness and Prometheus metrics.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use ghbs_wire::Health;

use crate::app::AppState;

#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: Some(env!("CARGO_PKG_VERSION").into()),
    })
}

/// Ready when the database answers and the data folder is writable.
#[utoipa::path(get, path = "/readyz", responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Health>) {
    let db = state.store.ping().await;
    let storage = tokio::fs::metadata(&state.cfg.data_dir).await;
    match (db, storage) {
        (Ok(()), Ok(m)) if m.is_dir() => (
            StatusCode::OK,
            Json(Health {
                status: "ready".into(),
                version: None,
            }),
        ),
        (Err(e), _) => {
            tracing::warn!(error = %e, "readiness: database");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(Health {
                    status: "database unreachable".into(),
                    version: None,
                }),
            )
        }
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "data folder unavailable".into(),
                version: None,
            }),
        ),
    }
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let jobs = state.store.count_jobs().await.unwrap_or(-1);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(jobs),
    )
}
