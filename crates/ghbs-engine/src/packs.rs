//! Git objects in the shared storage: each mirror's pack files, content-addressed, plus one small
//! index per repository that says which packs hold everything its snapshots need.
//!
//! Keys (relative to the storage root or prefix; see docs/storage.md):
//! - `packs/{repo key}/pack-{hash}.pack` and `.idx` — git's own pack files, named by git after
//!   their content, so a key never changes meaning: written once with `put_if_absent`, never
//!   rewritten, removed only by the garbage collection ([`Engine::gc_storage`]).
//! - `repos/{repo key}/packs.json` — a [`PackIndex`]: the packs that together hold every object
//!   of the repository's retained snapshots, the snapshots that use the repository, its refs at
//!   the latest commit, and packs retired by a repack (with when, for the grace period). The
//!   only key in the bucket that is rewritten; its single writer is the node holding the job's
//!   lease (the scheduler's lease, as for every other write of a job).
//!
//! The idea is JGit's DFS storage (immutable packs in a blob store, the list of live packs kept
//! apart) and restic's repository (immutable content-addressed objects, an index, prune by mark
//! and sweep after a grace period). No code of either is used.
//!
//! **Shared or not.** With the default `file://DATA_DIR/backups` storage the mirrors already sit
//! in the storage's own folder: copying their packs next to them would double the disk for
//! nothing, so nothing in this module runs ([`Engine::shares_storage`] is false) and existing
//! installations see no change at all. Any other URL (`s3://…`, or a `file://` folder elsewhere,
//! such as a shared file system) makes the storage the source of truth and the local mirror a
//! cache that [`Engine::hydrate`] rebuilds.
//!
//! **Commit order** (see `snapshot.rs`): snapshot refs in the local mirror, then the packs and the
//! pack index (this module), then the metadata objects and index, then the manifest, then the
//! caller's database row. A crash before the manifest leaves packs that nothing lists (swept after
//! the grace period) or an index naming a snapshot without a manifest (hydration skips it).
//!
//! **Never losing objects.** A pack leaves the index only when the local mirror, which held it
//! when the index was last synchronised (the record `ghbs-bucket-packs.json` in the mirror), lost
//! it to a git repack or gc, which keep every object reachable from a ref; the mirror holds the
//! refs of every retained snapshot (hydration writes them). A pack the index lists but the mirror
//! never knew (another node wrote it) is never dropped: the commit fails instead, asking for a
//! hydration. A retired pack stays in the bucket for the grace period after its retirement.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::fsutil::{self, blocking};
use crate::git::Git;
use crate::storage::{StorageErrorKind, StorageLocation};
use crate::{snapshot_ref, Engine, RepoCapture};

/// The local record of the pack index last synchronised with a mirror (git ignores the file).
const RECORD_FILE: &str = "ghbs-bucket-packs.json";

/// `repos/{key}/packs.json`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct PackIndex {
    /// Layout version (1).
    pub format: u32,
    /// Pack names (`pack-{hash}`) that together hold every object the retained snapshots and
    /// the refs below need.
    pub packs: BTreeSet<String>,
    /// Packs a repack replaced, and when: the garbage collection removes them once the grace
    /// period has passed since then (a node may still be downloading one).
    #[serde(default)]
    pub retired: BTreeMap<String, DateTime<Utc>>,
    /// Snapshots whose manifest names this repository (a snapshot that never got its manifest
    /// may be listed: readers skip it).
    #[serde(default)]
    pub snapshots: BTreeSet<String>,
    /// The repository's refs as of its latest committed capture (what a hydrated mirror starts
    /// from before it fetches).
    #[serde(default)]
    pub refs: BTreeMap<String, String>,
    /// Only in a mirror's local record, never in the bucket: listed snapshots found without a
    /// manifest (a commit that failed or died after its pack index). A mirror whose record
    /// accounts for them stays in step at the price of one HEAD each, instead of rehydrating at
    /// every run; the next commit of the repository takes them out of the index.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub orphans: BTreeSet<String>,
}

/// What a hydration did (for logs and tests).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hydration {
    /// Packs downloaded.
    pub packs: usize,
    /// Bytes downloaded (packs and their indexes).
    pub bytes: u64,
    /// Snapshots whose refs were written into the mirror.
    pub snapshots: usize,
}

impl Engine {
    /// The configured garbage-collection grace period ([`crate::EngineConfig::storage_gc_grace`]).
    pub fn storage_gc_grace(&self) -> std::time::Duration {
        self.inner.cfg.storage_gc_grace
    }

    /// How recently an object must have been written for a commit to reference it without
    /// rewriting it: half the grace period, so a collection never sweeps what a commit in
    /// progress relies on unless that commit takes longer than the other half.
    pub(crate) fn reuse_fresh_for(&self) -> std::time::Duration {
        self.storage_gc_grace() / 2
    }

    /// Whether the storage is shared (anything but the engine's own data folder), so that git
    /// objects and metadata go there too and the local mirrors are only a cache.
    pub fn shares_storage(&self) -> bool {
        match self.storage().location() {
            StorageLocation::File(root) => {
                let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.clone());
                root != self.data_dir()
            }
            StorageLocation::S3 { .. } => true,
        }
    }

    pub(crate) fn pack_index_key(key: &str) -> String {
        format!("repos/{key}/packs.json")
    }

    fn pack_key(key: &str, pack: &str, ext: &str) -> String {
        format!("packs/{key}/{pack}.{ext}")
    }

    /// The repository's pack index in the storage; `None` when it has none.
    pub async fn pack_index(&self, key: &str) -> Result<Option<PackIndex>, EngineError> {
        fsutil::validate_key(key)?;
        match self.storage().get(&Engine::pack_index_key(key)).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| EngineError::permanent(format!("corrupt pack index of {key}: {e}"))),
            Err(e) if e.kind == StorageErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Brings the mirror `key` up to the storage (see [`Engine::hydrate_locked`]); takes the
    /// mirror's lock. A no-op without shared storage.
    pub async fn hydrate(&self, key: &str) -> Result<Hydration, EngineError> {
        fsutil::validate_key(key)?;
        if !self.shares_storage() {
            return Ok(Hydration::default());
        }
        let locks = self.locks(key);
        let _ops = locks.ops.lock().await;
        let mirror = self.mirror_path(key);
        self.hydrate_locked(key, &mirror).await
    }

    /// Rebuilds or completes the local mirror from the storage: creates it when missing,
    /// downloads the packs the index lists that it lacks, then writes the refs of every listed
    /// snapshot and the live refs of the latest capture. One GET (the index) when the mirror is
    /// already in step. Caller holds the mirror's `ops` lock.
    pub(crate) async fn hydrate_locked(&self, key: &str, mirror: &Path) -> Result<Hydration> {
        let mut done = Hydration::default();
        if !self.shares_storage() {
            return Ok(done);
        }
        let Some(index) = self.pack_index(key).await? else {
            return Ok(done);
        };
        let dir = mirror.to_path_buf();
        let (record, local) = blocking(move || Ok((read_record(&dir), local_packs(&dir)))).await?;
        if mirror.join("HEAD").is_file() {
            if let Some(record) = &record {
                if self.record_in_step(record, &index, &local).await? {
                    note_cache(true);
                    return Ok(done);
                }
            }
        }
        note_cache(false);
        if !mirror.join("HEAD").is_file() {
            self.init_mirror(mirror).await?;
        }
        let pack_dir = mirror.join("objects/pack");
        for pack in index.packs.iter().filter(|p| !local.contains(*p)) {
            valid_pack_name(pack)?;
            // The pack before its index: git ignores a pack without an `.idx`; temporary names
            // (`tmp_…`) are cleared by `recover` if we die half-way.
            for ext in ["pack", "idx"] {
                let dest = pack_dir.join(format!("{pack}.{ext}"));
                let tmp = pack_dir.join(format!("tmp_ghbs_{}", uuid::Uuid::new_v4().simple()));
                let got = self
                    .storage()
                    .get_to_file(&Engine::pack_key(key, pack, ext), &tmp)
                    .await;
                match got {
                    Ok(n) => done.bytes += n,
                    Err(e) => {
                        let _ = tokio::fs::remove_file(&tmp).await;
                        return Err(e.into());
                    }
                }
                blocking(move || fsutil::publish(&tmp, &dest)).await?;
            }
            done.packs += 1;
        }
        // Every retained snapshot's refs, so that a local gc keeps what they need; then the live
        // refs of the latest capture (the next fetch moves them on).
        let mut script = String::from("start\n");
        // The snapshots whose refs this mirror will hold. One listed without a manifest (being
        // committed on another node right now, or left by a node that died) is left out of the
        // mirror's record, so a later hydration writes its refs once its manifest is there.
        let mut held = BTreeSet::new();
        for snapshot in &index.snapshots {
            let manifest = match self.load_manifest_cached(snapshot).await {
                Ok(m) => m,
                Err(e) if e.kind == ghbs_core::FailureKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            held.insert(snapshot.clone());
            for repo in manifest.repos.iter().filter(|r| r.key == key) {
                for (name, sha) in &repo.refs {
                    if let Some(target) = snapshot_ref(snapshot, name) {
                        check_ref_line(name, sha)?;
                        script.push_str(&format!("update {target} {sha}\n"));
                    }
                }
            }
            done.snapshots += 1;
        }
        for (name, sha) in &index.refs {
            check_ref_line(name, sha)?;
            script.push_str(&format!("update {name} {sha}\n"));
        }
        script.push_str("prepare\ncommit\n");
        let forget = mirror.to_path_buf();
        blocking(move || crate::refs::forget_live_refs(&forget)).await?;
        Git::new(self.git())
            .dir(mirror)
            .args(["update-ref", "--stdin"])
            .stdin(script.into_bytes())
            .run()
            .await
            .map_err(|e| {
                EngineError::new(
                    e.kind,
                    format!("hydrating {key} from the storage: {}", e.message),
                )
            })?;
        let dir = mirror.to_path_buf();
        let orphans = index.snapshots.difference(&held).cloned().collect();
        let record = PackIndex {
            snapshots: held,
            orphans,
            ..index
        };
        blocking(move || write_record(&dir, &record)).await?;
        tracing::info!(
            key,
            packs = done.packs,
            bytes = done.bytes,
            snapshots = done.snapshots,
            "hydrated mirror from the storage"
        );
        Ok(done)
    }

    /// Uploads the mirror's packs the storage lacks and rewrites the repository's pack index:
    /// adds `add` to its snapshots (with `capture`'s refs as the latest), removes `dropped`.
    /// Takes the mirror's lock; a no-op without shared storage.
    pub(crate) async fn publish_packs(
        &self,
        key: &str,
        add: Option<(&str, &RepoCapture)>,
        dropped: &[&str],
    ) -> Result<()> {
        if !self.shares_storage() {
            return Ok(());
        }
        let locks = self.locks(key);
        let _ops = locks.ops.lock().await;
        let mirror = self.mirror_path(key);
        if !mirror.join("HEAD").is_file() {
            // Nothing local to publish (the repository never fetched here); only the bookkeeping.
            let Some(mut index) = self.pack_index(key).await? else {
                return Ok(());
            };
            for s in dropped {
                index.snapshots.remove(*s);
            }
            return self.put_pack_index(key, &index).await;
        }
        // Loose objects (rare: fetches keep packs) go into a pack first, so that packs alone
        // hold everything.
        let dir = mirror.clone();
        if blocking(move || Ok(has_loose_objects(&dir))).await? {
            Git::new(self.git())
                .dir(&mirror)
                .args(["repack", "-d", "-q"])
                .run()
                .await?;
        }
        let dir = mirror.clone();
        let (record, local) = blocking(move || Ok((read_record(&dir), local_packs(&dir)))).await?;
        let old = self.pack_index(key).await?.unwrap_or_default();
        let (known, mut held, orphans) = record
            .map(|r| (r.packs, r.snapshots, r.orphans))
            .unwrap_or_default();
        let foreign: Vec<&String> = old
            .packs
            .iter()
            .filter(|p| !local.contains(*p) && !known.contains(*p))
            .collect();
        if !foreign.is_empty() {
            return Err(EngineError::transient(format!(
                "the local copy of {key} is behind the shared storage ({} pack(s) it never held); \
                 it must be hydrated first, the next run does",
                foreign.len()
            )));
        }
        let pack_dir = mirror.join("objects/pack");
        for pack in local.iter().filter(|p| !old.packs.contains(*p)) {
            for ext in ["pack", "idx"] {
                let path = pack_dir.join(format!("{pack}.{ext}"));
                let object = Engine::pack_key(key, pack, ext);
                // Uploaded by this engine right after the fetch, recently: nothing to do.
                let uploaded = self.uploads().remove(&object);
                if uploaded.is_some_and(|at| at.elapsed() < self.reuse_fresh_for()) {
                    continue;
                }
                // Not listed yet: it may be an old orphan (a crashed run's upload, a pack
                // retired by a repack) that a collection is about to sweep; refreshed first.
                self.storage()
                    .put_file_refreshed(&object, &path, self.reuse_fresh_for())
                    .await?;
            }
        }
        let now = Utc::now();
        let mut index = PackIndex {
            format: 1,
            packs: local.clone(),
            retired: old.retired.clone(),
            snapshots: old.snapshots.clone(),
            refs: old.refs.clone(),
            orphans: BTreeSet::new(),
        };
        // A new commit of this repository runs under its job's lease, so an orphan noted
        // earlier that still has no manifest belongs to a run that is over: it leaves the index.
        if add.is_some() {
            let listed: Vec<&String> = orphans
                .iter()
                .filter(|o| index.snapshots.contains(*o))
                .collect();
            for orphan in listed {
                if !self.storage().exists(&Engine::manifest_key(orphan)).await? {
                    index.snapshots.remove(orphan);
                }
            }
        }
        for gone in old.packs.difference(&local) {
            index.retired.insert(gone.clone(), now);
        }
        index.retired.retain(|p, _| !local.contains(p));
        if let Some((snapshot, capture)) = add {
            index.snapshots.insert(snapshot.to_owned());
            if capture.carried.is_none() {
                index.refs = capture.refs.clone();
            }
        }
        for s in dropped {
            index.snapshots.remove(*s);
        }
        self.put_pack_index(key, &index).await?;
        // The mirror's record says which snapshots' refs it holds: those it held, the one added
        // now, less the dropped. Not the index's list: a mirror that never hydrated another
        // node's snapshot (a run that reused the mirror without fetching) must not pass for in
        // step, or its refs would never be written here and a local gc could drop its objects.
        if let Some((snapshot, _)) = add {
            held.insert(snapshot.to_owned());
        }
        for s in dropped {
            held.remove(*s);
        }
        // Orphans still listed (kept because this was no new commit) stay noted.
        let orphans = orphans
            .into_iter()
            .filter(|o| index.snapshots.contains(o) && !held.contains(o))
            .collect();
        let record = PackIndex {
            snapshots: held,
            orphans,
            ..index
        };
        let dir = mirror.clone();
        blocking(move || write_record(&dir, &record)).await
    }

    /// Shared storage: uploads the packs a fetch just added to the mirror (those its record
    /// does not know), so that the upload overlaps the other repositories' fetches instead of
    /// waiting for the commit. They stay unlisted until the commit's pack index; being young,
    /// no collection sweeps them meanwhile. Best effort: on a failure the commit uploads them.
    /// Caller holds the mirror's `ops` lock.
    pub(crate) async fn preupload_packs(&self, key: &str, mirror: &Path) {
        if !self.shares_storage() {
            return;
        }
        let dir = mirror.to_path_buf();
        let Ok((record, local)) =
            blocking(move || Ok((read_record(&dir), local_packs(&dir)))).await
        else {
            return;
        };
        let known = record.map(|r| r.packs).unwrap_or_default();
        let pack_dir = mirror.join("objects/pack");
        for pack in local.difference(&known) {
            for ext in ["pack", "idx"] {
                let object = Engine::pack_key(key, pack, ext);
                let path = pack_dir.join(format!("{pack}.{ext}"));
                match self.storage().put_file_if_absent(&object, &path).await {
                    // Only what this call wrote counts as fresh: an object already there may
                    // be an old orphan, which the commit refreshes.
                    Ok(true) => {
                        self.uploads().insert(object, std::time::Instant::now());
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(key, error = %e, "early pack upload failed; the commit retries it");
                        return;
                    }
                }
            }
        }
    }

    /// Whether a mirror's record says it holds what the index describes: the same snapshots
    /// (those it holds refs of, plus orphans it noted that still lack a manifest) and every
    /// listed pack.
    async fn record_in_step(
        &self,
        record: &PackIndex,
        index: &PackIndex,
        local: &BTreeSet<String>,
    ) -> Result<bool> {
        if !index.packs.iter().all(|p| local.contains(p)) {
            return Ok(false);
        }
        let orphans: BTreeSet<String> = record
            .orphans
            .intersection(&index.snapshots)
            .filter(|o| !record.snapshots.contains(*o))
            .cloned()
            .collect();
        let accounted: BTreeSet<String> = record.snapshots.union(&orphans).cloned().collect();
        if accounted != index.snapshots {
            return Ok(false);
        }
        for orphan in &orphans {
            // Its manifest appeared after all (a slow commit elsewhere): hydrate its refs.
            if self.storage().exists(&Engine::manifest_key(orphan)).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Notes in the mirror's record that `snapshot` is an orphan: listed, maybe, in the bucket's
    /// pack index, but never to get a manifest (its commit failed). Local only, so it works
    /// while the bucket does not.
    pub(crate) async fn note_orphan(&self, key: &str, snapshot: &str) -> Result<()> {
        let dir = self.mirror_path(key);
        let snapshot = snapshot.to_owned();
        blocking(move || {
            let Some(mut record) = read_record(&dir) else {
                return Ok(());
            };
            if !record.snapshots.remove(&snapshot) {
                return Ok(());
            }
            record.orphans.insert(snapshot);
            write_record(&dir, &record)
        })
        .await
    }

    async fn put_pack_index(&self, key: &str, index: &PackIndex) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(index)
            .map_err(|e| EngineError::permanent(format!("serialise pack index: {e}")))?;
        self.storage()
            .put(&Engine::pack_index_key(key), Bytes::from(bytes))
            .await?;
        Ok(())
    }

    /// Forgets a repository in the storage (job purge): its pack index goes now, its packs with
    /// the next garbage collection after the grace period.
    pub(crate) async fn forget_packs(&self, key: &str) -> Result<()> {
        if !self.shares_storage() {
            return Ok(());
        }
        self.storage().delete(&Engine::pack_index_key(key)).await?;
        Ok(())
    }
}

static CACHE_HITS: AtomicU64 = AtomicU64::new(0);
static CACHE_MISSES: AtomicU64 = AtomicU64::new(0);

fn note_cache(hit: bool) {
    let counter = if hit { &CACHE_HITS } else { &CACHE_MISSES };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// How often, in this process, a mirror was found in step with the shared storage (hit) or had
/// to be hydrated (miss); for `/metrics`.
pub fn cache_counts() -> (u64, u64) {
    (
        CACHE_HITS.load(Ordering::Relaxed),
        CACHE_MISSES.load(Ordering::Relaxed),
    )
}

/// `pack-{40 or 64 hex}`: names come from the bucket and are joined to paths.
fn valid_pack_name(pack: &str) -> Result<()> {
    let ok = pack.strip_prefix("pack-").is_some_and(|h| {
        (h.len() == 40 || h.len() == 64) && h.bytes().all(|b| b.is_ascii_hexdigit())
    });
    if ok {
        Ok(())
    } else {
        Err(EngineError::permanent(format!(
            "invalid pack name {pack:?} in the storage"
        )))
    }
}

/// Refuses what could smuggle a line into `update-ref --stdin`.
fn check_ref_line(name: &str, sha: &str) -> Result<()> {
    let ok = name.starts_with("refs/")
        && !name.contains(char::is_whitespace)
        && (sha.len() == 40 || sha.len() == 64)
        && sha.bytes().all(|b| b.is_ascii_hexdigit());
    if ok {
        Ok(())
    } else {
        Err(EngineError::permanent(format!(
            "bad ref {name:?} -> {sha:?} in the storage"
        )))
    }
}

/// Names (`pack-{hash}`) of the mirror's complete packs (a `.pack` with its `.idx`).
fn local_packs(mirror: &Path) -> BTreeSet<String> {
    let dir = mirror.join("objects/pack");
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".pack") {
            if stem.starts_with("pack-") && dir.join(format!("{stem}.idx")).is_file() {
                out.insert(stem.to_owned());
            }
        }
    }
    out
}

/// Whether any loose object sits in `objects/{xx}/`.
fn has_loose_objects(mirror: &Path) -> bool {
    let objects = mirror.join("objects");
    std::fs::read_dir(&objects)
        .into_iter()
        .flatten()
        .flatten()
        .any(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.len() == 2
                && name.bytes().all(|b| b.is_ascii_hexdigit())
                && std::fs::read_dir(entry.path()).is_ok_and(|mut d| d.next().is_some())
        })
}

fn record_path(mirror: &Path) -> PathBuf {
    mirror.join(RECORD_FILE)
}

fn read_record(mirror: &Path) -> Option<PackIndex> {
    let bytes = std::fs::read(record_path(mirror)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn write_record(mirror: &Path, index: &PackIndex) -> Result<()> {
    let bytes = serde_json::to_vec(index)
        .map_err(|e| EngineError::permanent(format!("serialise pack record: {e}")))?;
    fsutil::write_atomic(&record_path(mirror), &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_names_from_the_bucket_are_checked() {
        assert!(valid_pack_name(&format!("pack-{}", "a".repeat(40))).is_ok());
        assert!(valid_pack_name("pack-../../x").is_err());
        assert!(valid_pack_name("../pack").is_err());
        assert!(check_ref_line("refs/heads/main", &"0".repeat(40)).is_ok());
        assert!(check_ref_line("refs/heads/a\nupdate refs/x", &"0".repeat(40)).is_err());
        assert!(check_ref_line("HEAD", &"0".repeat(40)).is_err());
    }
}
