//! The github-backup-scheduler server: HTTP API, scheduler and backup workers.
//!
//! [`launch`] starts on an injected listener and shutdown future (tests bind `127.0.0.1:0`
//! first and never sleep); [`run`] is what the `server` subcommand calls.

pub mod app;
pub mod auth;
pub mod backup;
pub mod config;
pub mod crypto;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod planning;
pub mod routes;
pub mod scheduler;
pub mod verify;

use std::sync::Arc;

pub use app::{launch, router, AppState};
pub use config::{ServerArgs, ServerConfig};

use ghbs_core::{Clock, SystemClock};

/// Run the server until SIGINT or SIGTERM: load the configuration, open the store, bind, print
/// `listening on http://ADDR` as the first line on stdout, serve, drain.
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let mut cfg = ServerConfig::load(&args, &|k| std::env::var(k).ok())?;
    // Testing hook, as GHBS_TEST_CLOCK_START: end-to-end tests fill the disk without a small
    // filesystem by creating the file this names.
    cfg.disk_full_flag = std::env::var_os("GHBS_TEST_DISK_FULL_FLAG").map(Into::into);
    let clock: Arc<dyn Clock> = match std::env::var("GHBS_TEST_CLOCK_START") {
        // Testing hook: end-to-end tests start the real binary with a clock shifted to a chosen
        // instant, so "time passed while the server was down" needs no sleeping.
        Ok(start) => Arc::new(shifted_clock(&start)?),
        Err(_) => Arc::new(SystemClock),
    };
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let state = AppState::new(cfg, clock).await?;
    println!("listening on http://{addr}");
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
