//! `storage migrate --to URL`: copies an installation that keeps its backups in the default
//! file storage (`DATA_DIR/backups`) into shared storage (a bucket), verifies every snapshot
//! there through an empty cache, and says what to change. An operator command, run with the
//! servers of the installation stopped, on the machine whose data folder holds the mirrors.
//!
//! The copy is the engine's own commit path ([`Engine::commit_snapshot`] of every recorded
//! manifest, oldest first, on an engine whose storage is the target and whose cache is the
//! existing data folder): packs, pack indexes, metadata objects and indexes, then the manifest,
//! in the same order and with the same write-once keys as a backup on shared storage. So a
//! rerun after an interruption uploads only what is missing, and nothing the file storage holds
//! is changed or removed (refs are rewritten to the values they already have).

use std::path::Path;

use ghbs_engine::{Engine, EngineConfig, Manifest, Storage, StorageLocation};

use crate::config::{ServerArgs, ServerConfig};
use crate::start::open_storage;

/// What a migration did. `problems` empty means every snapshot is in the target and verified.
#[derive(Debug, Default)]
pub struct MigrateReport {
    pub jobs: usize,
    pub snapshots: usize,
    /// Objects and bytes under the target's root after the copy.
    pub objects: u64,
    pub bytes: u64,
    pub problems: Vec<String>,
}

/// Runs the migration (see the module docs); `say` receives one line per job as it finishes.
/// Errors are setup failures (configuration, database, unreachable target); damage found in
/// single snapshots is reported in [`MigrateReport::problems`] and the other jobs still go on.
pub async fn migrate(
    args: &ServerArgs,
    to: &str,
    say: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<MigrateReport> {
    let cfg = ServerConfig::load(args, &|k| std::env::var(k).ok())?;
    StorageLocation::parse(to).map_err(|e| anyhow::anyhow!("--to: {e}"))?;
    let backups = cfg.data_dir.join("backups");
    if !backups.join("mirrors").is_dir() {
        anyhow::bail!(
            "no backups in {}: pass the installation's --data-dir (or --config) as given to `server`",
            cfg.data_dir.display()
        );
    }
    let source_storage = match &cfg.storage_url {
        Some(url) => Some(open_storage(&cfg, url)?),
        None => None,
    };
    let source = Engine::new(engine_config(&cfg, &backups, source_storage))
        .map_err(|e| anyhow::anyhow!("cannot open the backups folder: {}", e.message))?;
    if source.shares_storage() {
        anyhow::bail!(
            "this installation already keeps its backups in shared storage ({}); `storage migrate` \
             copies from the default file storage (DATA_DIR/backups)",
            cfg.storage_url.as_deref().unwrap_or_default()
        );
    }
    let target = Engine::new(engine_config(&cfg, &backups, Some(open_storage(&cfg, to)?)))
        .map_err(|e| anyhow::anyhow!("cannot set up the target storage: {}", e.message))?;
    if !target.shares_storage() {
        anyhow::bail!(
            "--to {to} is this installation's own backups folder: name a bucket \
             (s3://BUCKET[/PREFIX]) or another folder (file:///PATH)"
        );
    }
    target
        .storage_ready()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach {to}: {}", e.message))?;
    let store = ghbs_store::connect(&cfg.database_url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the database: {e}"))?;

    let mut report = MigrateReport::default();
    let check_dir = cfg.data_dir.join("storage-migrate-check");
    for job_id in store.snapshot_job_ids().await? {
        let mut rows = store.job_snapshots(job_id).await?;
        rows.reverse();
        let mut copied = Vec::with_capacity(rows.len());
        let mut copied_ids = Vec::with_capacity(rows.len());
        let before = report.problems.len();
        for row in &rows {
            let Ok(manifest) = serde_json::from_value::<Manifest>(row.manifest.clone()) else {
                report.problems.push(format!(
                    "job {job_id}, snapshot {}: its recorded manifest cannot be read",
                    row.id
                ));
                continue;
            };
            match copy_snapshot(&target, &manifest).await {
                Ok(()) => {
                    copied.push(manifest);
                    copied_ids.push(row.id);
                }
                Err(e) => report
                    .problems
                    .push(format!("job {job_id}, snapshot {}: {}", row.id, e.message)),
            }
        }
        // Verified through an empty cache, so that what is checked is the target's copy alone
        // (the packs come down from it, the refs from its manifests); one job at a time, so the
        // extra disk is at most the largest job's.
        let verified = verify_cold(&cfg, to, &check_dir, &copied, &copied_ids).await;
        match verified {
            Ok(problems) => report
                .problems
                .extend(problems.into_iter().map(|p| format!("job {job_id}, {p}"))),
            Err(e) => report.problems.push(format!(
                "job {job_id}: verifying in {to} could not run: {e}"
            )),
        }
        report.jobs += 1;
        report.snapshots += copied.len();
        let failed = report.problems.len() - before;
        say(&if failed == 0 {
            format!(
                "job {job_id}: {} snapshot(s) copied and verified from {to}",
                copied.len()
            )
        } else {
            format!("job {job_id}: {failed} problem(s), listed at the end")
        });
    }
    let (bytes, objects) = target
        .stored_size("")
        .await
        .map_err(|e| anyhow::anyhow!("cannot list {to}: {}", e.message))?;
    report.objects = objects;
    report.bytes = bytes;
    Ok(report)
}

/// One snapshot into the target, then its pending marker removed (the database row exists
/// already, so the marker a commit leaves has nothing left to settle).
async fn copy_snapshot(
    target: &Engine,
    manifest: &Manifest,
) -> Result<(), ghbs_engine::EngineError> {
    target.commit_snapshot(manifest).await?;
    target.confirm_snapshot(&manifest.snapshot_key).await
}

/// Verifies `manifests` with an engine whose cache is the empty folder `dir` (removed again
/// afterwards); one line per problem.
async fn verify_cold(
    cfg: &ServerConfig,
    to: &str,
    dir: &Path,
    manifests: &[Manifest],
    ids: &[i64],
) -> anyhow::Result<Vec<String>> {
    if manifests.is_empty() {
        return Ok(Vec::new());
    }
    remove_dir(dir)?;
    let cold = Engine::new(engine_config(cfg, dir, Some(open_storage(cfg, to)?)))
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let verdicts = cold.verify_snapshots(manifests).await;
    remove_dir(dir)?;
    let verdicts = verdicts.map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let mut lines = Vec::new();
    for (id, verdict) in ids.iter().zip(&verdicts) {
        for (repo, problem) in verdict.problems() {
            let what = repo.map_or("manifest".to_owned(), |r| r.full_name.clone());
            lines.push(format!("snapshot {id}: {what}: {}", problem.detail));
        }
    }
    Ok(lines)
}

fn remove_dir(dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(anyhow::anyhow!("cannot remove {}: {e}", dir.display())),
    }
}

fn engine_config(cfg: &ServerConfig, data_dir: &Path, storage: Option<Storage>) -> EngineConfig {
    EngineConfig {
        data_dir: data_dir.to_path_buf(),
        git_timeout: cfg.git_timeout,
        ca_cert: cfg.ca_cert.clone(),
        disk_full_flag: cfg.disk_full_flag.clone(),
        storage,
        storage_gc_grace: cfg.storage_gc_grace,
    }
}
