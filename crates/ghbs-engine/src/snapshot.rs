//! Snapshots: making one durable, forgetting some, removing mirrors, measuring disk.
//!
//! A snapshot is a set of refs `refs/ghbs/snap/{snapshot}/{heads,tags,pull}/…` in each mirror plus
//! the manifest file. The refs are what keeps a snapshot's objects alive whatever happens
//! upstream; the manifest (written last, atomically) and the lead's database row (inserted only
//! after [`Engine::commit_snapshot`] returns) are what make it visible. A pending marker written
//! before the refs covers a crash before that row exists (see the `pending` module).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use crate::error::{EngineError, Result};
use crate::fsutil::{self, blocking};
use crate::git::list_refs;
use crate::git::Git;
use crate::refs;
use crate::storage::StorageErrorKind;
use crate::{snapshot_ref, Engine, Manifest, RepoCapture};

/// Mirrors whose snapshot refs are recorded at the same time (each is a few file and directory
/// fsyncs, sometimes a short git process).
const COMMIT_CONCURRENCY: usize = 4;
// With shared storage each task also uploads; 8 at once was measured no faster than 4 on the
// backup benchmark against moto (the endpoint's CPU is the limit there) and slowed unchanged
// runs (docs/benchmarks.md), so the bound is the same.

/// Snapshots whose refs may stay loose in a mirror before they are packed (see `commit_repo`).
const PACK_REFS_AFTER: usize = 8;

impl Engine {
    /// Makes a snapshot durable: its refs written in each mirror as loose files (a few mirrors
    /// at a time: they are independent), directly or by `git update-ref --stdin` (see
    /// `commit_repo`), files and directories fsynced, then the manifest written atomically.
    /// Idempotent: committing the same manifest again is harmless. Before any ref is written,
    /// a durable pending marker records the snapshot; the caller removes it with
    /// [`Engine::confirm_snapshot`] once the snapshot is recorded on its side (see `pending`).
    pub async fn commit_snapshot(&self, manifest: &Manifest) -> Result<(), EngineError> {
        self.commit_snapshot_inner(manifest)
            .await
            .map_err(|e| self.explain(e))
    }

    async fn commit_snapshot_inner(&self, manifest: &Manifest) -> Result<(), EngineError> {
        validate_manifest(manifest)?;
        for repo in &manifest.repos {
            snapshot_targets(&manifest.snapshot_key, repo)?;
        }
        self.mark_pending(manifest).await?;
        // Tasks own what they use (no borrow of `manifest` crosses a spawn). Every mirror is
        // attempted and every task awaited (none is left half-way by a cancelled future); the
        // first failure decides, and the manifest is written only when all succeeded.
        let mut tasks = tokio::task::JoinSet::new();
        let mut first_error = None;
        let mut note = |joined: std::result::Result<Result<()>, tokio::task::JoinError>| {
            let failed = match joined {
                Ok(Ok(())) => return,
                Ok(Err(e)) => e,
                Err(e) => EngineError::permanent(format!("recording snapshot refs: {e}")),
            };
            first_error.get_or_insert(failed);
        };
        for repo in manifest.repos.clone() {
            if tasks.len() >= COMMIT_CONCURRENCY {
                if let Some(joined) = tasks.join_next().await {
                    note(joined);
                }
            }
            let engine = self.clone();
            let snapshot_key = manifest.snapshot_key.clone();
            tasks.spawn(async move {
                engine.commit_repo(&snapshot_key, &repo).await?;
                // Shared storage: the repository's packs and metadata before the manifest.
                engine
                    .publish_packs(&repo.key, Some((&snapshot_key, &repo)), &[])
                    .await?;
                engine.publish_metadata(&repo).await
            });
        }
        while let Some(joined) = tasks.join_next().await {
            note(joined);
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        let bytes = serde_json::to_vec_pretty(manifest)
            .map_err(|e| EngineError::permanent(format!("serialise manifest: {e}")))?;
        // One whole-object put: the manifest appears complete or not at all.
        self.storage()
            .put(
                &Engine::manifest_key(&manifest.snapshot_key),
                bytes::Bytes::from(bytes),
            )
            .await?;
        Ok(())
    }

    /// Records one repository's snapshot refs: without a git process when the engine's record of
    /// the mirror's live refs vouches for every sha and every name is simple (see `refs`);
    /// otherwise, or when writing them fails (the files it created are removed again), in one
    /// all-or-nothing `git update-ref` transaction.
    async fn commit_repo(&self, snapshot_key: &str, repo: &RepoCapture) -> Result<()> {
        let locks = self.locks(&repo.key);
        let _ops = locks.ops.lock().await;
        let mirror = self.mirror_path(&repo.key);
        if !mirror.exists() {
            return Err(EngineError::not_found(format!(
                "no mirror for {} ({})",
                repo.full_name, repo.key
            )));
        }
        self.recover(&mirror, SystemTime::now()).await?;
        let targets = snapshot_targets(snapshot_key, repo)?;
        if targets.is_empty() {
            return Ok(());
        }
        // Whether `refs/ghbs/snap` is already there (and so already durable in `refs/ghbs`
        // and `refs/`: the commit that created it fsynced those). Checked under the `ops` lock,
        // which every writer or remover of these refs holds.
        let snap_dir_existed = mirror.join("refs/ghbs/snap").is_dir();
        let dir = mirror.clone();
        let direct = targets.clone();
        let written = blocking(move || {
            if !direct_ok(&dir, &direct) {
                return Ok(false);
            }
            let batch = [refs::LooseRefs {
                mirror: dir,
                refs: direct,
            }];
            Ok(refs::write_loose_refs(&batch) == [true])
        })
        .await?;
        if !written {
            self.update_refs(&mirror, &repo.full_name, &targets).await?;
        }
        let dir = mirror.clone();
        let key = snapshot_key.to_owned();
        let loose_snapshots =
            blocking(move || flush_snapshot_dirs(&dir, &key, snap_dir_existed)).await?;
        // Loose refs cost a file each when git lists refs (every fetch advertises them as
        // "haves"): fold them into one packed-refs file once a few snapshots have accumulated.
        if loose_snapshots > PACK_REFS_AFTER {
            self.pack_refs(&mirror).await?;
        }
        Ok(())
    }

    /// Records `(target, sha)` pairs in one `git update-ref --stdin` transaction, which also
    /// checks that every object exists and every name is valid.
    async fn update_refs(
        &self,
        mirror: &Path,
        full_name: &str,
        targets: &[(String, String)],
    ) -> Result<()> {
        let mut script = String::from("start\n");
        for (target, sha) in targets {
            script.push_str(&format!("update {target} {sha}\n"));
        }
        script.push_str("prepare\ncommit\n");
        Git::new(self.git())
            .dir(mirror)
            .args(["update-ref", "--stdin"])
            .stdin(script.into_bytes())
            .run()
            .await
            .map_err(|e| {
                EngineError::new(
                    e.kind,
                    format!("recording snapshot refs of {full_name}: {}", e.message),
                )
            })?;
        Ok(())
    }

    /// `git pack-refs --all`, then the new packed-refs file and its rename made durable.
    async fn pack_refs(&self, mirror: &Path) -> Result<()> {
        Git::new(self.git())
            .dir(mirror)
            .args(["pack-refs", "--all"])
            .run()
            .await?;
        let mirror_dir = mirror.to_path_buf();
        blocking(move || {
            let packed = mirror_dir.join("packed-refs");
            if packed.exists() {
                // Git already fsynced it (reference component); this costs nothing then and
                // covers a git that does not know `core.fsync`.
                std::fs::File::open(&packed)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| EngineError::io("fsync packed-refs", e))?;
            }
            fsutil::fsync_dir(&mirror_dir)
        })
        .await
    }

    /// Forgets snapshots: deletes their refs, artifacts, manifest files and metadata folders, then
    /// lets git drop the objects that no remaining snapshot or live ref needs (and removes the
    /// metadata objects no remaining folder links). The (costly) garbage collection runs
    /// only when some dropped object is actually unreachable now, so pruning identical daily
    /// snapshots costs almost nothing.
    pub async fn drop_snapshots(&self, manifests: &[Manifest]) -> Result<(), EngineError> {
        for manifest in manifests {
            validate_manifest(manifest)?;
        }
        {
            let mut cache = self.manifest_cache();
            for manifest in manifests {
                cache.remove(&manifest.snapshot_key);
            }
        }
        let keys: BTreeSet<&str> = manifests
            .iter()
            .flat_map(|m| m.repos.iter().map(|r| r.key.as_str()))
            .collect();
        for key in keys {
            let snapshots: Vec<&str> = manifests
                .iter()
                .filter(|m| m.repos.iter().any(|r| r.key == key))
                .map(|m| m.snapshot_key.as_str())
                .collect();
            self.drop_in_mirror(key, &snapshots).await?;
            // Shared storage: the index forgets them; packs a local gc replaced are retired.
            self.publish_packs(key, None, &snapshots).await?;
        }
        for manifest in manifests {
            let artifacts = self.artifacts_dir(&manifest.snapshot_key);
            let trash = self.tmp_dir();
            blocking(move || fsutil::remove_dir_atomic(&artifacts, &trash)).await?;
            self.storage()
                .delete(&Engine::manifest_key(&manifest.snapshot_key))
                .await?;
            self.drop_metadata(&manifest.snapshot_key).await?;
            self.drop_shared_metadata(manifest).await?;
        }
        Ok(())
    }

    pub(crate) async fn drop_in_mirror(&self, key: &str, snapshots: &[&str]) -> Result<()> {
        let locks = self.locks(key);
        let _ops = locks.ops.lock().await;
        let mirror = self.mirror_path(key);
        if !mirror.exists() {
            return Ok(());
        }
        self.recover(&mirror, SystemTime::now()).await?;
        // One listing and one transaction for all the snapshots forgotten in this mirror.
        let prefixes: Vec<String> = snapshots
            .iter()
            .map(|snapshot| format!("refs/ghbs/snap/{snapshot}/"))
            .collect();
        let prefixes: Vec<&str> = prefixes.iter().map(String::as_str).collect();
        let refs = list_refs(self.git(), &mirror, &prefixes).await?;
        let names: Vec<String> = refs.keys().cloned().collect();
        self.delete_refs(&mirror, &names).await?;
        let dropped: BTreeSet<String> = refs.into_values().collect();
        if dropped.is_empty() || !self.any_unreachable(&mirror, &dropped).await? {
            return Ok(());
        }
        // Exports borrow this mirror's objects through alternates: wait for them.
        let _gc = locks.gc.write().await;
        Git::new(self.git())
            .dir(&mirror)
            .args(["reflog", "expire", "--expire=now", "--all"])
            .run()
            .await?;
        Git::new(self.git())
            .dir(&mirror)
            .args(["gc", "--prune=now", "--quiet"])
            .run()
            .await?;
        Ok(())
    }

    /// Whether any object reachable from `tips` is no longer reachable from a remaining ref.
    async fn any_unreachable(&self, mirror: &Path, tips: &BTreeSet<String>) -> Result<bool> {
        let input: String = tips.iter().map(|t| format!("{t}\n")).collect();
        let out = Git::new(self.git())
            .dir(mirror)
            .args(["rev-list", "--objects", "--stdin", "--not", "--all"])
            .stdin(input.into_bytes())
            .run()
            .await?;
        Ok(!out.stdout.iter().all(u8::is_ascii_whitespace))
    }

    /// Forgets a mirror entirely (job purge). Snapshot manifests and artifacts are dropped through
    /// [`Engine::drop_snapshots`].
    pub async fn remove_mirror(&self, key: &str) -> Result<(), EngineError> {
        fsutil::validate_key(key)?;
        let locks = self.locks(key);
        let _ops = locks.ops.lock().await;
        let _gc = locks.gc.write().await;
        let mirror = self.mirror_path(key);
        let trash = self.tmp_dir();
        blocking(move || fsutil::remove_dir_atomic(&mirror, &trash)).await?;
        self.forget_packs(key).await
    }

    /// Bytes on disk (apparent file sizes) of the given mirrors; missing mirrors count 0.
    pub async fn disk_usage(&self, keys: &[String]) -> Result<u64, EngineError> {
        let mut paths = Vec::with_capacity(keys.len());
        for key in keys {
            fsutil::validate_key(key)?;
            paths.push(self.mirror_path(key));
        }
        blocking(move || Ok(paths.iter().map(|p| fsutil::tree_size(p)).sum())).await
    }

    /// [`Engine::load_manifest`] through the engine's manifest cache (see `Inner::manifests`).
    pub(crate) async fn load_manifest_cached(&self, snapshot_key: &str) -> Result<Arc<Manifest>> {
        if let Some(m) = self.manifest_cache().get(snapshot_key) {
            return Ok(m.clone());
        }
        let manifest = Arc::new(self.load_manifest(snapshot_key).await?);
        let mut cache = self.manifest_cache();
        if cache.len() >= crate::MANIFEST_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(snapshot_key.to_owned(), manifest.clone());
        Ok(manifest)
    }

    /// Reads back a manifest written by [`Engine::commit_snapshot`].
    pub async fn load_manifest(&self, snapshot_key: &str) -> Result<Manifest, EngineError> {
        fsutil::validate_snapshot_key(snapshot_key)?;
        let bytes = self
            .storage()
            .get(&Engine::manifest_key(snapshot_key))
            .await
            .map_err(|e| match e.kind {
                StorageErrorKind::NotFound => {
                    EngineError::not_found(format!("no manifest for snapshot {snapshot_key}"))
                }
                _ => e.into(),
            })?;
        serde_json::from_slice(&bytes)
            .map_err(|e| EngineError::permanent(format!("corrupt manifest {snapshot_key}: {e}")))
    }
}

/// `(snapshot ref, sha)` for each of a repository's refs, refused when a ref is not under
/// `refs/` or a line of `update-ref --stdin` could be smuggled into it.
fn snapshot_targets(snapshot_key: &str, repo: &RepoCapture) -> Result<Vec<(String, String)>> {
    let mut targets = Vec::with_capacity(repo.refs.len());
    for (name, sha) in &repo.refs {
        let target = snapshot_ref(snapshot_key, name)
            .ok_or_else(|| EngineError::permanent(format!("ref {name:?} is not under refs/")))?;
        if !is_sha(sha) || name.contains(char::is_whitespace) {
            return Err(EngineError::permanent(format!(
                "bad ref {name:?} -> {sha:?} in manifest"
            )));
        }
        targets.push((target, sha.clone()));
    }
    Ok(targets)
}

/// Whether a mirror's snapshot refs can be written without git: the engine's record of its
/// live refs vouches for every sha (so each object exists) and every name is simple (see
/// `refs`), in a mirror whose refs are files.
fn direct_ok(mirror: &Path, targets: &[(String, String)]) -> bool {
    let Some(live) = refs::read_live_refs(mirror) else {
        return false;
    };
    let live_shas: BTreeSet<&String> = live.values().collect();
    refs::uses_files_backend(mirror)
        && targets
            .iter()
            .all(|(name, sha)| live_shas.contains(sha) && refs::is_simple_ref_name(name))
}

/// Durability without `pack-refs` at every commit: each new ref was written as a loose file and
/// fsynced before its rename into place (by `refs::write_loose_refs`, or by git: core.fsync
/// includes `reference`, see git.rs). Neither flushes directories, so the renames and the
/// directories this snapshot created (`refs/ghbs/snap/{snapshot}/…`, and `refs/ghbs/snap` the
/// first time) are flushed here, up to `refs/`. After that the refs survive a power cut, and the
/// manifest (the visible part) comes later. Returns how many snapshots have loose refs here.
/// Makes the new snapshot's directories durable: its own tree, and the parents whose entries
/// changed. When `snap_dir_existed`, only `refs/ghbs/snap` gained an entry; otherwise `snap`
/// itself is new and `refs/ghbs` and `refs/` are fsynced too.
fn flush_snapshot_dirs(mirror: &Path, snapshot_key: &str, snap_dir_existed: bool) -> Result<usize> {
    let refs_dir = mirror.join("refs");
    let snap_dir = refs_dir.join("ghbs/snap");
    let stop = if snap_dir_existed {
        &snap_dir
    } else {
        &refs_dir
    };
    fsutil::fsync_dirs_and_parents(&snap_dir.join(snapshot_key), stop)?;
    Ok(std::fs::read_dir(refs_dir.join("ghbs/snap"))
        .map(|entries| entries.count())
        .unwrap_or(0))
}

pub(crate) fn validate_manifest(manifest: &Manifest) -> Result<()> {
    fsutil::validate_snapshot_key(&manifest.snapshot_key)?;
    for repo in &manifest.repos {
        fsutil::validate_key(&repo.key)?;
    }
    Ok(())
}

fn is_sha(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}
