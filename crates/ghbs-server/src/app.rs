//! Application state, the router, and `launch` on an injected listener and shutdown future.

use std::future::Future;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, MethodRouter};
use axum::Router;
use ghbs_core::Clock;
use ghbs_engine::{Engine, EngineConfig};
use ghbs_github::{ClientConfig, GitHub};
use ghbs_store::Store;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tower_http::trace::TraceLayer;

use crate::config::ServerConfig;
use crate::crypto::TokenSealer;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::routes::{self, audit, health, jobs, login, runs, snapshots, verify};
use crate::scheduler::{Executor, Scheduler};

/// Largest JSON body accepted. Requests here are small; anything bigger is a mistake or abuse.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Shared by every handler and the scheduler. Passed explicitly; no globals.
pub struct AppState {
    pub cfg: Arc<ServerConfig>,
    pub store: Arc<dyn Store>,
    pub sealer: TokenSealer,
    pub github: GitHub,
    pub engine: Engine,
    pub clock: Arc<dyn Clock>,
    pub metrics: Metrics,
    /// Wakes the scheduler when a run is requested, instead of waiting for the next poll.
    pub wake: Notify,
    /// This node's identity, persisted in the data folder (`DATA_DIR/node-id`) and used as the
    /// lease owner: a restarted process knows which leases its dead predecessor held.
    pub node_id: String,
    /// Readiness checks that are too costly for every probe (see `routes::health`).
    pub readiness: crate::routes::health::Readiness,
    /// Set on SIGTERM: running backups drain, reads keep working, writes answer 503.
    pub draining: std::sync::atomic::AtomicBool,
    /// Failed authentications per client address (`--auth-failures-per-minute`).
    pub auth_limiter: crate::security::AuthLimiter,
}

impl AppState {
    /// Build the state: open (and migrate) the store, load the sealing key, set up clients.
    pub async fn new(cfg: ServerConfig, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<AppState>> {
        ensure_private_dir(&cfg.data_dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create the data folder {}: {e}",
                cfg.data_dir.display()
            )
        })?;
        let store = ghbs_store::connect(&cfg.database_url)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the database: {e}"))?;
        let sealer = TokenSealer::load(cfg.master_key.as_ref(), &cfg.data_dir)?;
        let github = GitHub::new(
            ClientConfig {
                api_url: cfg.github_api_url.clone(),
                ca_cert: cfg.ca_cert.clone(),
                user_agent: format!("github-backup-scheduler/{}", env!("CARGO_PKG_VERSION")),
                retry_base: cfg.github_retry_base,
                ..ClientConfig::default()
            },
            clock.clone(),
        )
        .map_err(|e| anyhow::anyhow!("cannot set up the GitHub client: {}", e.message))?;
        let storage = match &cfg.storage_url {
            Some(url) => Some(
                // Config file and `*_FILE` settings first, the process environment after them:
                // later settings win, so the environment overrides the file.
                ghbs_engine::Storage::from_url_with(
                    url,
                    cfg.storage_settings
                        .iter()
                        .map(|(k, v)| (k.clone(), v.expose().to_owned()))
                        .chain(std::env::vars()),
                    None,
                )
                .map_err(|e| anyhow::anyhow!("cannot open the backup storage: {e}"))?,
            ),
            None => None,
        };
        let engine = Engine::new(EngineConfig {
            data_dir: cfg.data_dir.join("backups"),
            git_timeout: cfg.git_timeout,
            ca_cert: cfg.ca_cert.clone(),
            disk_full_flag: cfg.disk_full_flag.clone(),
            storage,
        })
        .map_err(|e| anyhow::anyhow!("cannot set up backup storage: {}", e.message))?;
        // Before the scheduler can start a run (none is committing a snapshot yet).
        crate::backup::settle_pending_snapshots(store.as_ref(), &engine).await;
        let node_id = node_identity(&cfg.data_dir)
            .map_err(|e| anyhow::anyhow!("cannot read or create the node identity: {e}"))?;
        settle_own_leases(store.as_ref(), &node_id).await;
        Ok(Arc::new(AppState {
            auth_limiter: crate::security::AuthLimiter::new(cfg.auth_failures_per_minute),
            cfg: Arc::new(cfg),
            store,
            sealer,
            github,
            engine,
            clock,
            metrics: Metrics::default(),
            wake: Notify::new(),
            node_id,
            readiness: Default::default(),
            draining: std::sync::atomic::AtomicBool::new(false),
        }))
    }
}

/// The node's identity: `DATA_DIR/node-id`, created once (host name plus a random suffix, so
/// two machines never share one) and read at every start. One server process per data folder.
fn node_identity(data_dir: &std::path::Path) -> std::io::Result<String> {
    let path = data_dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
                .take(40)
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    let id = format!(
        "{host}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let tmp = data_dir.join(format!(".node-id.{}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&tmp, format!("{id}\n"))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(id)
}

/// A process that starts holds no lease yet, so every lease under its node id belongs to a
/// previous process on this data folder that died (`kill -9`, a crash, a power cut) with runs
/// in flight. They are released at once, so those runs go back to `queued` and run again at the
/// first claim instead of showing `running` until their lease expires. Other nodes' leases (a
/// shared PostgreSQL) are never touched. On failure the leases simply expire as before.
async fn settle_own_leases(store: &dyn Store, node_id: &str) {
    match store.release_node(node_id).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            node = %node_id,
            runs = n,
            "requeued runs left running by this node's previous process (it stopped without finishing them)"
        ),
        Err(e) => {
            tracing::warn!(error = %e, "cannot release the previous process's leases; they expire on their own")
        }
    }
}

/// Create the data folder readable by its owner only (it holds mirrors of private repositories).
/// An existing folder is left as the operator set it up.
fn ensure_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

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
    if busy {
        tokio::time::sleep(DRAIN_LINGER).await;
    }
    tracing::info!("drain complete: closing the API");
    let _ = http_stop_tx.send(true);
    server_task.await??;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_new_data_folder_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("a/b");
        super::ensure_private_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        super::ensure_private_dir(&dir).unwrap();
    }
}
