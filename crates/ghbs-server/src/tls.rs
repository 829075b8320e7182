//! HTTPS: the certificate and key (PEM) from `--tls-cert` / `--tls-key`, served with rustls
//! (ring provider) through `axum-server`, and reloaded when the files change so a renewal
//! (certbot, cert-manager, a cron job) needs no restart.
//!
//! The files' modification times and sizes are polled (every `tls_reload_interval`, 10 s by
//! default) rather than watched with inotify: it works the same on every filesystem, including
//! the symlink swaps that certbot and Kubernetes secrets do, at the cost of a `stat` per file
//! per interval. A reload that fails (a half-written renewal, a key that does not match) is
//! logged and retried at the next tick; the previous certificate keeps being served meanwhile.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use axum_server::tls_rustls::RustlsConfig;

/// Load the certificate chain and key; the error names the files and what is wrong.
pub async fn load(cert: &Path, key: &Path) -> anyhow::Result<RustlsConfig> {
    RustlsConfig::from_pem_file(cert, key).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot use the TLS certificate {} with the key {}: {e} (both must be PEM; the key \
             must be the certificate's)",
            cert.display(),
            key.display()
        )
    })
}

/// What identifies a version of the files: modification time and size of each.
type Stamp = Vec<Option<(SystemTime, u64)>>;

fn stamp(files: &[&Path]) -> Stamp {
    files
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
        })
        .collect()
}

/// Reload `config` whenever the files change, until `stop`.
pub async fn watch(
    config: RustlsConfig,
    cert: PathBuf,
    key: PathBuf,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut seen = stamp(&[&cert, &key]);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = stamp(&[&cert, &key]);
        if now == seen {
            continue;
        }
        match config.reload_from_pem_file(&cert, &key).await {
            Ok(()) => {
                seen = now;
                tracing::info!(cert = %cert.display(), "reloaded the TLS certificate");
            }
            Err(e) => tracing::warn!(
                cert = %cert.display(),
                error = %e,
                "the TLS files changed but cannot be loaded (yet); still serving the previous certificate"
            ),
        }
    }
}
