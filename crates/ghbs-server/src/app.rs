//! The router (every route and its middleware) and `launch` on an injected listener and
//! shutdown future. The state it serves lives in [`crate::state`].

use std::future::Future;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, MethodRouter};
use axum::Router;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::executor::Executor;
use crate::extract::BODY_LIMIT;
use crate::routes::{self, audit, health, jobs, login, runs, snapshots, verify};
use crate::scheduler::Scheduler;
use crate::state::AppState;

/// Every route under `/api/v1`, as (path, methods). The router is built from this list and the
/// read-only-key test walks it, so a new route is covered by that test the day it is added.
pub fn api_routes() -> Vec<(&'static str, MethodRouter<Arc<AppState>>)> {
    vec![
        ("/login", post(login::login)),
        ("/logout", post(login::logout)),
        ("/me", get(login::me)),
        ("/keys", get(login::list_keys).post(login::create_key_route)),
        ("/keys/{id}", delete(login::revoke_key)),
        ("/jobs", get(jobs::list).post(jobs::create)),
        (
            "/jobs/{id}",
            get(jobs::show).patch(jobs::update).delete(jobs::delete),
        ),
        ("/jobs/{id}/pause", post(jobs::pause)),
        ("/jobs/{id}/resume", post(jobs::resume)),
        ("/jobs/{id}/forget-repo", post(jobs::forget_repo)),
        ("/jobs/{id}/runs", get(runs::list).post(runs::run_now)),
        ("/runs/{id}", get(runs::show)),
        ("/jobs/{id}/verify", post(verify::verify)),
        ("/jobs/{id}/snapshots", get(snapshots::list)),
        ("/snapshots/{id}", get(snapshots::show)),
        ("/snapshots/{id}/download", get(snapshots::download)),
        (
            "/notifications",
            get(routes::notify::list).post(routes::notify::create),
        ),
        (
            "/notifications/{id}",
            get(routes::notify::show).delete(routes::notify::delete),
        ),
        ("/notifications/{id}/test", post(routes::notify::test)),
        ("/audit", get(audit::list)),
        ("/openapi.json", get(openapi_json)),
    ]
}

pub fn router(state: Arc<AppState>) -> Router {
    let api = api_routes()
        .into_iter()
        .fold(Router::new(), |r, (path, methods)| r.route(path, methods))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found);
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            refuse_writes_while_draining,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::security::security_headers,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// During a shutdown drain the API keeps answering reads (`run --wait` follows its run to the
/// end) while anything that changes state or asks for work is refused with a 503.
async fn refuse_writes_while_draining(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let read = matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    );
    if !read && state.draining.load(std::sync::atomic::Ordering::Relaxed) {
        return ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            ghbs_wire::codes::UNAVAILABLE,
            "the server is shutting down (finishing running backups); try again once it is back",
        )
        .into_response();
    }
    next.run(req).await
}

/// After the drain the listener stays open this long, so that a client polling a run about
/// once a second (`run --wait`) sees the final status before the connection goes.
const DRAIN_LINGER: std::time::Duration = std::time::Duration::from_secs(2);

async fn openapi_json() -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        crate::openapi::document(),
    )
}

async fn not_found() -> ApiError {
    ApiError::not_found("route")
}

/// A known route asked with another method: 405 with the JSON error body like every error
/// (axum's own 405 has an empty body). axum still adds the `Allow` header.
async fn method_not_allowed(method: axum::http::Method) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        ghbs_wire::codes::METHOD_NOT_ALLOWED,
        format!("this route does not answer {method}"),
    )
}

/// Serve the API and run the scheduler on `listener` until `shutdown` resolves, then drain:
/// stop claiming, let running backups finish within the grace period, release the rest. While
/// draining, `/readyz` fails, reads keep working and writes are refused (503); the listener
/// closes once the drain is over (after [`DRAIN_LINGER`]).
pub async fn launch(
    state: Arc<AppState>,
    executor: Arc<dyn Executor>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (http_stop_tx, mut http_stop) = tokio::sync::watch::channel(false);
    let tls = match &state.cfg.tls {
        Some((cert, key)) => Some(crate::tls::load(cert, key).await?),
        None => None,
    };
    let scheduler = Scheduler::new(state.clone(), executor);
    // Notifications go out from their own task: a slow or dead sink never holds a worker.
    let notify_task =
        tokio::spawn(crate::notify::Deliverer::new(state.clone())?.run(stop_rx.clone()));
    let prune_task = tokio::spawn(crate::audit::prune_loop(state.clone(), stop_rx.clone()));
    let gc_task = tokio::spawn(crate::backup::storage_gc_loop(
        state.run.clone(),
        state.node_id.clone(),
        stop_rx.clone(),
    ));
    let sched_task = tokio::spawn(scheduler.run(stop_rx.clone()));
    // The peer address reaches handlers as `ConnectInfo` (rate limits, audit trail).
    let app = router(state.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>();
    let server_task = match tls {
        None => {
            let server = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = http_stop.wait_for(|s| *s).await;
            });
            tokio::spawn(async move { server.await })
        }
        Some(config) => {
            if let Some((cert, key)) = state.cfg.tls.clone() {
                tokio::spawn(crate::tls::watch(
                    config.clone(),
                    cert,
                    key,
                    state.cfg.tls_reload_interval,
                    stop_rx.clone(),
                ));
            }
            let handle = axum_server::Handle::new();
            let server = axum_server::from_tcp_rustls(listener.into_std()?, config)?
                .handle(handle.clone())
                .serve(app);
            tokio::spawn(async move {
                let _ = http_stop.wait_for(|s| *s).await;
                handle.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
            });
            tokio::spawn(server)
        }
    };
    shutdown.await;
    tracing::info!("shutting down: no new claims; draining running backups");
    state
        .draining
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let busy = state
        .metrics
        .runs_in_progress
        .load(std::sync::atomic::Ordering::Relaxed)
        > 0;
    let _ = stop_tx.send(true);
    sched_task.await?;
    notify_task.await?;
    let _ = prune_task.await;
    // A collection may take minutes on a big bucket; stopping it halfway is safe (each delete
    // stands alone, and the next one starts over).
    gc_task.abort();
    if busy {
        tokio::time::sleep(DRAIN_LINGER).await;
    }
    tracing::info!("drain complete: closing the API");
    let _ = http_stop_tx.send(true);
    server_task.await??;
    Ok(())
}
