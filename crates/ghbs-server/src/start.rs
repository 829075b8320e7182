//! Building the [`AppState`] at start: the private data folder, this node's identity, the store
//! (migrated), leases a dead predecessor left, snapshots left pending by a crash, the sealing key
//! and the clients. Above `state` and `backup` in the module order; nothing imports it but the
//! entry points (`app::launch`, `lib::run`, `storage_migrate`, tests).

use std::sync::Arc;

use ghbs_core::Clock;
use ghbs_engine::{Engine, EngineConfig};
use ghbs_github::{ClientConfig, GitHub};
use ghbs_store::Store;
use tokio::sync::Notify;

use crate::config::ServerConfig;
use crate::crypto::TokenSealer;
use crate::metrics::Metrics;
use crate::state::{AppState, RunContext};

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
            Some(url) => Some(open_storage(&cfg, url)?),
            None => None,
        };
        let engine = Engine::new(EngineConfig {
            data_dir: cfg.data_dir.join("backups"),
            git_timeout: cfg.git_timeout,
            ca_cert: cfg.ca_cert.clone(),
            disk_full_flag: cfg.disk_full_flag.clone(),
            storage,
            storage_gc_grace: cfg.storage_gc_grace,
        })
        .map_err(|e| anyhow::anyhow!("cannot set up backup storage: {}", e.message))?;
        // Before the scheduler can start a run (none is committing a snapshot yet).
        crate::backup::settle_pending_snapshots(store.as_ref(), &engine).await;
        let node_id = node_identity(&cfg.data_dir)
            .map_err(|e| anyhow::anyhow!("cannot read or create the node identity: {e}"))?;
        settle_own_leases(store.as_ref(), &node_id).await;
        Ok(Arc::new(AppState {
            auth_limiter: crate::limiter::AuthLimiter::new(cfg.auth_failures_per_minute),
            run: Arc::new(RunContext {
                cfg: Arc::new(cfg),
                store,
                sealer,
                github,
                engine,
                clock,
                metrics: Metrics::default(),
            }),
            wake: Notify::new(),
            node_id,
            readiness: Default::default(),
            draining: std::sync::atomic::AtomicBool::new(false),
        }))
    }
}

/// Opens the storage at `url` with the configuration's S3 settings (config file and `*_FILE`
/// first, the process environment after them: later settings win, so the environment overrides
/// the file).
pub fn open_storage(cfg: &ServerConfig, url: &str) -> anyhow::Result<ghbs_engine::Storage> {
    let retry = ghbs_engine::RetryConfig {
        retry_timeout: cfg.storage_retry,
        ..ghbs_engine::RetryConfig::default()
    };
    // Only `AWS_*` variables: object_store also reads unprefixed client keys (`TIMEOUT`,
    // `PROXY_URL`, …), which an unrelated variable of the same name must not set.
    ghbs_engine::Storage::from_url_with(
        url,
        cfg.storage_settings
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_owned()))
            .chain(std::env::vars().filter(|(k, _)| k.starts_with("AWS_"))),
        Some(retry),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the backup storage: {e}"))
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
