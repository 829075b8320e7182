//! The github-backup-scheduler server: HTTP API, scheduler and backup workers.
//!
//! [`launch`] starts on an injected listener and shutdown future (tests bind `127.0.0.1:0`
//! first and never sleep); [`run`] is what the `server` subcommand calls.

pub mod app;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod config;
pub mod crypto;
pub mod error;
pub mod executor;
pub mod extract;
pub mod limiter;
pub mod metrics;
pub mod notify;
pub mod openapi;
pub mod planning;
pub mod routes;
pub mod scheduler;
pub mod security;
pub mod start;
pub mod state;
pub mod storage_migrate;
pub mod tls;
pub mod verify;

use std::sync::Arc;

pub use app::{launch, router};
pub use config::{ServerArgs, ServerConfig};
pub use state::{AppState, RunContext};

/// Run the server until SIGINT or SIGTERM: load the configuration, open the store, bind, print
/// `listening on http://ADDR` as the first line on stdout, serve, drain.
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let mut cfg = ServerConfig::load(&args, &|k| std::env::var(k).ok())?;
    let clock = test_hooks::apply(&mut cfg)?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cfg.listen))?;
    let addr = listener.local_addr()?;
    if let Some((cert, key)) = &cfg.tls {
        tls::load(cert, key).await?;
    }
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    let state = AppState::new(cfg, clock).await?;
    println!("listening on {scheme}://{addr}");
    tracing::info!(%addr, data_dir = %state.cfg.data_dir.display(), "server ready");
    launch(
        state,
        Arc::new(backup::BackupExecutor),
        listener,
        shutdown_signal(),
    )
    .await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// Environment hooks that let end-to-end tests drive the real binary. They exist only with the
/// `test-hooks` feature: a release build has no code that reads these variables.
#[cfg(feature = "test-hooks")]
mod test_hooks {
    use std::sync::Arc;

    use ghbs_core::{Clock, SystemClock};

    use crate::ServerConfig;

    /// `GHBS_TEST_DISK_FULL_FLAG=FILE`: while FILE exists the engine behaves as on a full disk
    /// (tests fill the disk without a small file system). `GHBS_TEST_CLOCK_START=RFC3339`: the
    /// clock starts at that instant and advances with real time, so "time passed while the
    /// server was down" needs no sleeping.
    pub(crate) fn apply(cfg: &mut ServerConfig) -> anyhow::Result<Arc<dyn Clock>> {
        cfg.disk_full_flag = std::env::var_os("GHBS_TEST_DISK_FULL_FLAG").map(Into::into);
        Ok(match std::env::var("GHBS_TEST_CLOCK_START") {
            Ok(start) => Arc::new(shifted_clock(&start)?),
            Err(_) => Arc::new(SystemClock),
        })
    }

    /// A clock that starts at `start` (RFC 3339) and advances with real time.
    struct ShiftedClock {
        offset: chrono::Duration,
    }

    fn shifted_clock(start: &str) -> anyhow::Result<ShiftedClock> {
        let start = chrono::DateTime::parse_from_rfc3339(start)
            .map_err(|e| anyhow::anyhow!("GHBS_TEST_CLOCK_START is not RFC 3339: {e}"))?;
        Ok(ShiftedClock {
            offset: start.with_timezone(&chrono::Utc) - chrono::Utc::now(),
        })
    }

    impl Clock for ShiftedClock {
        fn now(&self) -> chrono::DateTime<chrono::Utc> {
            chrono::Utc::now() + self.offset
        }
    }
}

#[cfg(not(feature = "test-hooks"))]
mod test_hooks {
    use std::sync::Arc;

    use ghbs_core::{Clock, SystemClock};

    use crate::ServerConfig;

    pub(crate) fn apply(_cfg: &mut ServerConfig) -> anyhow::Result<Arc<dyn Clock>> {
        Ok(Arc::new(SystemClock))
    }
}
