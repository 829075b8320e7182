//! Liveness, readiness and Prometheus metrics.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use ghbs_store::StoreError;
use ghbs_wire::Health;

use crate::state::AppState;

// Liveness only: the process answers. Never depends on the database or the disk.
#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: Some(env!("CARGO_PKG_VERSION").into()),
    })
}

/// The data folder counts as full below this much free space: a fetch or a snapshot would
/// fail part-way, so the node says it is not ready rather than accepting work it cannot do.
pub const MIN_FREE_BYTES: u64 = 8 << 20;

/// How long a write-probe result is reused: `/readyz` may be polled every second by several
/// load balancers, and a write per poll would be a write queue of its own.
const WRITE_PROBE_EVERY: Duration = Duration::from_secs(3);

async fn write_probe(state: &AppState) -> Result<(), String> {
    let mut last = state.readiness.last_write.lock().await;
    let fresh = last
        .as_ref()
        .is_some_and(|(at, _)| at.elapsed() < WRITE_PROBE_EVERY);
    if !fresh {
        let result = state
            .store
            .probe_write(&state.node_id, state.clock.now())
            .await;
        if let Err(e) = &result {
            tracing::warn!(error = %e, "readiness: the database cannot write");
        }
        *last = Some((Instant::now(), result));
    }
    match last.as_ref().map(|(_, r)| r) {
        Some(Err(StoreError::StorageFull(_))) => Err("disk full: the database cannot write".into()),
        Some(Err(_)) => Err("database cannot write".into()),
        _ => Ok(()),
    }
}

/// Why the node is not ready, or `None` when it is: shutting down, the database unreachable or
/// unable to write (probed at most every few seconds), the data folder missing or full.
pub async fn not_ready(state: &AppState) -> Option<String> {
    if state.draining.load(Ordering::Relaxed) {
        return Some("shutting down: finishing running backups".into());
    }
    if let Err(e) = state.store.ping().await {
        tracing::warn!(error = %e, "readiness: database");
        return Some("database unreachable".into());
    }
    if let Err(reason) = write_probe(state).await {
        return Some(reason);
    }
    if let Err(e) = state.engine.storage_ready().await {
        tracing::warn!(error = %e, "readiness: storage");
        return Some("backup storage unreachable".into());
    }
    match tokio::fs::metadata(&state.cfg.data_dir).await {
        Ok(m) if m.is_dir() => {}
        _ => return Some("data folder unavailable".into()),
    }
    match state.engine.free_space() {
        Ok(free) if free < MIN_FREE_BYTES => Some(state.engine.disk_full_message()),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "readiness: cannot read the data folder's free space");
            Some("data folder unavailable".into())
        }
    }
}

/// Ready when the database answers and can write, the backup storage answers, and the data
/// folder has room.
// In full: see `not_ready`; the reason is the body's `status`.
#[utoipa::path(get, path = "/readyz", responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, Json<Health>) {
    match not_ready(&state).await {
        None => (
            StatusCode::OK,
            Json(Health {
                status: "ready".into(),
                version: None,
            }),
        ),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: reason,
                version: None,
            }),
        ),
    }
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let jobs = state.store.count_jobs().await.unwrap_or(-1);
    let mut text = state.metrics.render(jobs);
    let now = state.clock.now();
    match state.store.queue_stats(now).await {
        Ok(stats) => crate::metrics::render_queue(&mut text, &stats, now),
        Err(e) => tracing::warn!(error = %e, "queue gauges unavailable for /metrics"),
    }
    // One read of every active job's last success; the same rule as `jobs`' STALE flag.
    match state.store.stale_candidates().await {
        Ok(jobs) => {
            let stale = jobs
                .iter()
                .filter(|f| crate::planning::is_stale(&f.job, f.last_success_at, now))
                .count();
            crate::metrics::render_stale(&mut text, stale);
        }
        Err(e) => tracing::warn!(error = %e, "stale gauge unavailable for /metrics"),
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
