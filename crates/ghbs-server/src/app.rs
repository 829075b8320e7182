//! Application state, the router, and `launch` on an injected listener and shutdown future.

use std::future::Future;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use axum::Router;
use ghbs_core::Clock;
use ghbs_engine::{Engine, EngineConfig, Manifest};
use ghbs_github::{ClientConfig, GitHub};
use ghbs_store::{JobRow, Store};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tower_http::trace::TraceLayer;

use crate::config::ServerConfig;
use crate::crypto::TokenSealer;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::routes::{health, jobs, login, runs, snapshots};
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
        let sealer = TokenSealer::load(cfg.master_key.as_deref(), &cfg.data_dir)?;
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
                ghbs_engine::Storage::from_url(url)
                    .map_err(|e| anyhow::anyhow!("cannot open the backup storage: {e}"))?,
            ),
            None => None,
        };
        let engine = Engine::new(EngineConfig {
            data_dir: cfg.data_dir.join("backups"),
            git_timeout: std::time::Duration::from_secs(3600),
            ca_cert: cfg.ca_cert.clone(),
            storage,
        })
        .map_err(|e| anyhow::anyhow!("cannot set up backup storage: {}", e.message))?;
        // Before the scheduler can start a run (none is committing a snapshot yet).
        settle_pending_snapshots(store.as_ref(), &engine).await;
        Ok(Arc::new(AppState {
            cfg: Arc::new(cfg),
            store,
            sealer,
            github,
            engine,
            clock,
            metrics: Metrics::default(),
            wake: Notify::new(),
        }))
    }

    /// Delete a job's snapshots and mirrors (explicit purge).
    pub async fn purge_backups(&self, job: &JobRow) -> Result<(), ApiError> {
        let snaps = self.store.job_snapshots(job.id).await?;
        let manifests: Vec<Manifest> = snaps
            .iter()
            .filter_map(|s| serde_json::from_value(s.manifest.clone()).ok())
            .collect();
        self.store
            .delete_snapshots(&snaps.iter().map(|s| s.id).collect::<Vec<_>>())
            .await?;
        self.engine
            .drop_snapshots(&manifests)
            .await
            .map_err(|e| ApiError::internal(e.message))?;
        for repo in self.store.list_job_repos(job.id).await? {
            for key in [
                crate::backup::mirror_key(repo.id),
                crate::backup::wiki_mirror_key(repo.id),
            ] {
                self.engine
                    .remove_mirror(&key)
                    .await
                    .map_err(|e| ApiError::internal(e.message))?;
            }
        }
        Ok(())
    }
}

/// Settles the snapshots a crash left between `commit_snapshot` and their database row (see
/// `ghbs_engine`'s pending markers): one with a row was recorded, only its marker is left to
/// remove; one without a row was never visible and is forgotten, refs and all, so that it does
/// not keep objects alive forever. Only marked snapshots are ever considered, so a database that
/// is new or not the one these backups were recorded in cannot cause real backups to be deleted.
/// Anything uncertain (the database or the disk failing) keeps the marker for the next start.
async fn settle_pending_snapshots(store: &dyn Store, engine: &Engine) {
    let pending = match engine.pending_snapshots().await {
        Ok(keys) => keys,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list unconfirmed snapshots; they are checked at the next start");
            return;
        }
    };
    for key in pending {
        match store.snapshot_key_exists(&key).await {
            Ok(true) => {
                if let Err(e) = engine.confirm_snapshot(&key).await {
                    tracing::warn!(snapshot = %key, error = %e, "cannot confirm a recorded snapshot");
                }
            }
            Ok(false) => {
                tracing::info!(snapshot = %key, "forgetting a snapshot interrupted before it was recorded");
                if let Err(e) = engine.forget_pending(&key).await {
                    tracing::warn!(snapshot = %key, error = %e, "cannot forget an unrecorded snapshot; retried at the next start");
                }
            }
            Err(e) => {
                tracing::warn!(snapshot = %key, error = %e, "cannot check an unconfirmed snapshot; it is checked at the next start");
            }
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

pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/login", post(login::login))
        .route("/logout", post(login::logout))
        .route("/me", get(login::me))
        .route("/keys", get(login::list_keys))
        .route("/keys/{id}", delete(login::revoke_key))
        .route("/jobs", get(jobs::list).post(jobs::create))
        .route(
            "/jobs/{id}",
            get(jobs::show).patch(jobs::update).delete(jobs::delete),
        )
        .route("/jobs/{id}/pause", post(jobs::pause))
        .route("/jobs/{id}/resume", post(jobs::resume))
        .route("/jobs/{id}/forget-repo", post(jobs::forget_repo))
        .route("/jobs/{id}/runs", get(runs::list).post(runs::run_now))
        .route("/runs/{id}", get(runs::show))
        .route("/jobs/{id}/snapshots", get(snapshots::list))
        .route("/snapshots/{id}", get(snapshots::show))
        .route("/snapshots/{id}/download", get(snapshots::download))
        .route("/openapi.json", get(openapi_json))
        .fallback(not_found);
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn openapi_json() -> ([(axum::http::HeaderName, &'static str); 1], String) {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        crate::openapi::document(),
    )
}

async fn not_found() -> ApiError {
    ApiError::not_found("route")
}

/// Serve the API and run the scheduler on `listener` until `shutdown` resolves, then drain:
/// stop claiming, let running backups finish within the grace period, release the rest.
pub async fn launch(
    state: Arc<AppState>,
    executor: Arc<dyn Executor>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let scheduler = Scheduler::new(state.clone(), executor);
    let sched_task = tokio::spawn(scheduler.run(stop_rx.clone()));
    let mut http_stop = stop_rx;
    let server = axum::serve(listener, router(state.clone())).with_graceful_shutdown(async move {
        let _ = http_stop.wait_for(|s| *s).await;
    });
    let server_task = tokio::spawn(async move { server.await });
    shutdown.await;
    tracing::info!("shutting down: no new claims; draining running backups");
    let _ = stop_tx.send(true);
    sched_task.await?;
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
