//! The S3 side of `ghbs-bench backup --storage s3|both`: a fresh bucket on the endpoint
//! `TEST_S3_ENDPOINT` names (moto in CI and here), the configuration that puts a node's backups
//! there, and what the bucket and a node's cache hold.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ghbs_core::Secret;
use ghbs_engine::Storage;
use ghbs_server::ServerConfig;
use ghbs_testkit::{GitHubStandIn, S3Bucket};

use crate::backup_bench::{Node, RunFigures};
use crate::plain_git::PlainGit;
use crate::report::{against, figure, secs};

/// Every node of the S3 part seals tokens with this key, as nodes of one installation share
/// `GHBS_MASTER_KEY`: the cold node's data folder is empty, so it has no `master.key` of its own.
/// (base64 of 32 bytes; it only ever seals the stand-in's token.)
const MASTER_KEY: &str = "Z2hicy1iZW5jaC1tYXN0ZXIta2V5LTAxMjM0NTY3ODk=";

/// The key prefix the nodes use in the bucket (`s3://BUCKET/PREFIX`).
const PREFIX: &str = "ghbs";

/// A fresh bucket and the storage URL the nodes use in it.
pub struct Bucket {
    bucket: S3Bucket,
    url: String,
}

/// Creates the bucket; `None` with the reason on stdout (beside the figures it replaces) when
/// `TEST_S3_ENDPOINT` is unset.
pub async fn bucket() -> Option<Bucket> {
    let Some(bucket) = S3Bucket::create("the S3 part of ghbs-bench backup").await else {
        println!(
            "S3 part skipped: TEST_S3_ENDPOINT is unset. Start an S3 endpoint (e.g. \
             `moto_server -H 127.0.0.1 -p 9556`) and set TEST_S3_ENDPOINT=http://127.0.0.1:9556 \
             to measure s3:// storage."
        );
        return None;
    };
    let url = format!("{}/{PREFIX}", bucket.url());
    println!("s3 storage: {url} on {}", bucket.endpoint);
    Some(Bucket { bucket, url })
}

impl Bucket {
    /// Puts a node's backups in the bucket. The `AWS_*` settings (endpoint included, which the
    /// process environment need not have) go in explicitly, as a config file's `[s3]` would;
    /// `AWS_*` variables of the environment still override them, as in the server.
    pub fn configure(&self, cfg: &mut ServerConfig) {
        cfg.storage_url = Some(self.url.clone());
        cfg.storage_settings = self
            .bucket
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), Secret::new(v.as_str())))
            .collect();
        cfg.master_key = Some(Secret::new(MASTER_KEY));
    }

    /// Objects and bytes under the nodes' prefix, by kind (`packs`, `repos`, `manifests`, ...).
    pub async fn usage(&self) -> anyhow::Result<String> {
        let storage = Storage::from_url_with(&self.url, self.bucket.vars.clone(), None)?;
        let mut parts = Vec::new();
        let mut total = 0;
        for prefix in ["packs", "repos", "manifests", "metadata"] {
            let objects = storage.list_objects(prefix).await?;
            if objects.is_empty() {
                continue;
            }
            let bytes: u64 = objects.iter().map(|o| o.size).sum();
            total += bytes;
            parts.push(format!("{prefix} {} ({})", objects.len(), mb(bytes)));
        }
        Ok(format!("{} in all: {}", mb(total), parts.join(", ")))
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_048_576.0)
}

/// Bytes of the regular files under `path` (0 when it is missing).
pub fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => dir_size(&entry.path()),
            Ok(t) if t.is_file() => entry.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// (2c) A cold node: an empty data folder `dir` on the warm node's database and bucket runs the
/// job once more (nothing changed upstream), so it hydrates every mirror from the bucket first;
/// then, for comparison, a fresh `git clone --mirror` of the same repositories (`fresh`:
/// URL and destination, `parallel` at a time). `first` is the warm node's first backup.
pub async fn cold_node(
    gh: &GitHubStandIn,
    warm: &Node,
    bucket: &Bucket,
    first: &RunFigures,
    dir: &Path,
    (plain, fresh, parallel): (&Arc<PlainGit>, &[(String, PathBuf)], usize),
) -> anyhow::Result<()> {
    let cold = warm.cold(dir).await?;
    let before = ghbs_engine::cache_counts();
    let (run, cpu) = cold.run_timed(gh).await?;
    let after = ghbs_engine::cache_counts();
    figure(
        "2c. cold node: unchanged run from the bucket",
        format!("{} ({cpu:.1} CPU-s) — {}", secs(run.wall), run.summary()),
    );
    let on_disk = dir_size(&cold.state.engine.data_dir().join("mirrors"));
    figure(
        "2c. hydrations (cache misses / hits)",
        format!(
            "{} / {}; the cold node's mirrors: {} on disk",
            after.1 - before.1,
            after.0 - before.0,
            mb(on_disk)
        ),
    );
    figure("    bucket after it", bucket.usage().await?);
    let base = first.row.bytes_fetched.max(1);
    against(
        "2c. bytes fetched from GitHub",
        format!(
            "{} B ({:.3} % of the first backup's), {} git requests",
            run.row.bytes_fetched,
            run.row.bytes_fetched as f64 * 100.0 / base as f64,
            run.git()
        ),
        "no clone (< 1 %)",
        run.row.bytes_fetched * 100 < base,
    );
    let clone = plain.clone_all(fresh, parallel).await?;
    figure(
        &format!("2c. fresh git clone --mirror, {parallel} at a time"),
        secs(clone),
    );
    figure(
        "2c. cold-node run / fresh clone",
        format!(
            "{:.2}×",
            run.wall.as_secs_f64() / clone.as_secs_f64().max(1e-9)
        ),
    );
    Ok(())
}
