//! The application state every handler, the scheduler and the workers share: configuration,
//! store, GitHub client, engine, clock, metrics. Built once at start by [`AppState::new`] (in
//! [`crate::start`]); this module imports only below itself (config, crypto, metrics, limiter).

use std::sync::Arc;

use ghbs_core::Clock;
use ghbs_engine::Engine;
use ghbs_github::GitHub;
use ghbs_store::Store;
use tokio::sync::Notify;

use crate::config::ServerConfig;
use crate::crypto::TokenSealer;
use crate::metrics::Metrics;

/// What a run needs and nothing more: configuration, store, token sealer, GitHub client,
/// engine, clock, metrics. Executors ([`crate::executor::Executor`]) receive this, not the
/// whole [`AppState`], so a backup or a verification cannot reach the HTTP side's parts
/// (readiness cache, drain flag, login limiter, the scheduler's wake-up).
pub struct RunContext {
    pub cfg: Arc<ServerConfig>,
    pub store: Arc<dyn Store>,
    pub sealer: TokenSealer,
    pub github: GitHub,
    pub engine: Engine,
    pub clock: Arc<dyn Clock>,
    pub metrics: Metrics,
}

/// Shared by every handler and the scheduler. Passed explicitly; no globals.
pub struct AppState {
    /// The parts a run uses, shared with every executor.
    pub run: Arc<RunContext>,
    /// Wakes the scheduler when a run is requested, instead of waiting for the next poll.
    pub wake: Notify,
    /// This node's identity, persisted in the data folder (`DATA_DIR/node-id`) and used as the
    /// lease owner: a restarted process knows which leases its dead predecessor held.
    pub node_id: String,
    /// Readiness checks that are too costly for every probe (see `routes::health`).
    pub readiness: Readiness,
    /// Set on SIGTERM: running backups drain, reads keep working, writes answer 503.
    pub draining: std::sync::atomic::AtomicBool,
    /// Failed authentications per client address (`--auth-failures-per-minute`).
    pub auth_limiter: crate::limiter::AuthLimiter,
}

/// Handlers and the scheduler read the run context's parts as the state's own
/// (`state.store`): the split narrows what executors see without rewriting every handler.
impl std::ops::Deref for AppState {
    type Target = RunContext;

    fn deref(&self) -> &RunContext {
        &self.run
    }
}

/// The cached result of the last database write probe of `/readyz` (see `routes::health`).
#[derive(Default)]
pub struct Readiness {
    pub(crate) last_write:
        tokio::sync::Mutex<Option<(std::time::Instant, Result<(), ghbs_store::StoreError>)>>,
}
