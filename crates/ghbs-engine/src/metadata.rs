//! Repository metadata (issues, pull requests, labels, milestones, releases as JSON; the wiki as a
//! git bundle) stored per snapshot without rewriting what did not change.
//!
//! Layout under `data_dir/metadata/`:
//! - `objects/{ab}/{sha256}.json|.bundle|.bin` — content-addressed files, each written once
//!   (temp, fsync, rename) and never modified. The name is the SHA-256 of the content (JSON, and
//!   `.bin` for opaque files such as release assets) or of the ref listing it holds (wiki bundle).
//! - `snap/{snapshot}/{repo key}/` — one folder per snapshot and repository: each file (for
//!   example `issues/12.json`) is a hard link to its object, so an item unchanged across thirty
//!   snapshots is stored once; `index.json` lists every file with its object, version and counts.
//!   When the file system refuses a link (too many links, no hard links) the file is copied.
//!
//! A folder appears complete or not at all: it is built in `tmp/` and renamed into place by
//! [`MetadataWriter::finish`]. An object is garbage once no folder links it (link count 1).
//! Writers take the shared side of one lock around each check-and-link; collection takes the
//! exclusive side. Because a writer links each object into its staging folder at once, an object
//! it relies on is never collectable in between.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{EngineError, Result};
use crate::fsutil::{self, blocking};
use crate::git::list_refs;
use crate::git::Git;
use crate::Engine;

#[cfg(test)]
mod tests;

/// The name of the index inside each snapshot's metadata folder.
pub const INDEX_FILE: &str = "index.json";

/// Key of the lock that orders metadata writers against collection; not a valid mirror key, so
/// it never collides with a mirror's locks.
const LOCK_KEY: &str = "#metadata";

/// One file of a repository's metadata in one snapshot.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct MetadataEntry {
    /// The object's file name: `{sha256}.json` or `{sha256}.bundle`.
    pub object: String,
    /// The caller's change marker (for example a hash of the issue as GitHub lists it): what lets
    /// the next run decide that an item is unchanged without fetching it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// What the file holds, per kind (`issues`, `comments`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counts: BTreeMap<String, u64>,
}

/// `index.json`: what a repository's metadata folder holds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct MetadataIndex {
    /// Layout version (1).
    pub format: u32,
    /// Sum of the entries' counts.
    pub counts: BTreeMap<String, u64>,
    /// Path inside the folder (`issues/12.json`) -> entry.
    pub files: BTreeMap<String, MetadataEntry>,
}

impl MetadataIndex {
    fn total_counts(files: &BTreeMap<String, MetadataEntry>) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for entry in files.values() {
            for (kind, n) in &entry.counts {
                *counts.entry(kind.clone()).or_insert(0) += n;
            }
        }
        counts
    }
}

/// What [`MetadataWriter::finish`] produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetadataFolder {
    /// Relative to `data_dir`; what goes into `RepoCapture::metadata_dir`.
    pub dir: String,
    /// Item counts per kind over the whole folder.
    pub counts: BTreeMap<String, u64>,
}

/// Builds one repository's metadata folder for one snapshot; see the module docs. Dropping it
/// without [`MetadataWriter::finish`] discards the folder (objects stay until collected).
pub struct MetadataWriter {
    engine: Engine,
    snapshot_key: String,
    repo_key: String,
    staging: PathBuf,
    files: BTreeMap<String, MetadataEntry>,
    finished: bool,
}

impl Engine {
    fn metadata_root(&self) -> PathBuf {
        self.data_dir().join("metadata")
    }

    fn objects_dir(&self) -> PathBuf {
        self.metadata_root().join("objects")
    }

    pub(crate) fn object_path(&self, object: &str) -> PathBuf {
        self.objects_dir().join(&object[..2]).join(object)
    }

    pub(crate) fn snapshot_metadata_dir(&self, snapshot_key: &str) -> PathBuf {
        self.metadata_root().join("snap").join(snapshot_key)
    }

    /// `metadata/snap/{snapshot}/{repo key}`, relative to `data_dir`.
    pub fn metadata_dir_name(snapshot_key: &str, repo_key: &str) -> String {
        format!("metadata/snap/{snapshot_key}/{repo_key}")
    }

    /// Starts the metadata folder of repository `repo_key` in snapshot `snapshot_key`.
    pub async fn metadata_writer(
        &self,
        snapshot_key: &str,
        repo_key: &str,
    ) -> Result<MetadataWriter, EngineError> {
        fsutil::validate_snapshot_key(snapshot_key)?;
        fsutil::validate_key(repo_key)?;
        let staging = self.scratch("meta");
        let dir = staging.clone();
        blocking(move || {
            std::fs::create_dir_all(&dir).map_err(|e| EngineError::io("create metadata folder", e))
        })
        .await?;
        Ok(MetadataWriter {
            engine: self.clone(),
            snapshot_key: snapshot_key.to_owned(),
            repo_key: repo_key.to_owned(),
            staging,
            files: BTreeMap::new(),
            finished: false,
        })
    }

    /// The index of a repository's metadata in a snapshot; `None` when that snapshot has none.
    pub async fn metadata_index(
        &self,
        snapshot_key: &str,
        repo_key: &str,
    ) -> Result<Option<MetadataIndex>, EngineError> {
        fsutil::validate_snapshot_key(snapshot_key)?;
        fsutil::validate_key(repo_key)?;
        let path = self
            .snapshot_metadata_dir(snapshot_key)
            .join(repo_key)
            .join(INDEX_FILE);
        match tokio::fs::read(&path).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                EngineError::permanent(format!("corrupt metadata index {}: {e}", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A cold cache: the shared storage holds every snapshot's index.
                self.shared_metadata_index(snapshot_key, repo_key).await
            }
            Err(e) => Err(EngineError::io("read metadata index", e)),
        }
    }

    /// Carries a repository's whole metadata folder from snapshot `from` into snapshot `to`
    /// (hard links, no copy): the last good copy of a repository whose run could not capture
    /// it. `None` when `from` holds no metadata for it. A file whose object is gone is left out
    /// (and logged): the rest is still worth keeping.
    pub async fn carry_metadata(
        &self,
        from: &str,
        to: &str,
        repo_key: &str,
    ) -> Result<Option<MetadataFolder>, EngineError> {
        let Some(index) = self.metadata_index(from, repo_key).await? else {
            return Ok(None);
        };
        let mut writer = self.metadata_writer(to, repo_key).await?;
        for (path, entry) in &index.files {
            if !writer.carry(path, entry).await? {
                tracing::warn!(
                    path,
                    repo_key,
                    "metadata object missing; not carried forward"
                );
            }
        }
        writer.finish().await.map(Some)
    }

    /// Removes the metadata folders of a snapshot, then every object they linked that no other
    /// folder links any more.
    pub(crate) async fn drop_metadata(&self, snapshot_key: &str) -> Result<()> {
        fsutil::validate_snapshot_key(snapshot_key)?;
        let dir = self.snapshot_metadata_dir(snapshot_key);
        if !tokio::fs::try_exists(&dir).await.unwrap_or(false) {
            return Ok(());
        }
        let lock = self.locks(LOCK_KEY);
        let _gc = lock.gc.write().await;
        let trash = self.tmp_dir();
        let engine = self.clone();
        blocking(move || {
            let mut objects = Vec::new();
            for repo in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let index = repo.path().join(INDEX_FILE);
                if let Ok(bytes) = std::fs::read(&index) {
                    if let Ok(index) = serde_json::from_slice::<MetadataIndex>(&bytes) {
                        objects.extend(index.files.into_values().map(|e| e.object));
                    }
                }
            }
            fsutil::remove_dir_atomic(&dir, &trash)?;
            for object in objects.iter().filter(|o| valid_object(o)) {
                let path = engine.object_path(object);
                if std::fs::metadata(&path).is_ok_and(|m| m.nlink() <= 1) {
                    std::fs::remove_file(&path)
                        .map_err(|e| EngineError::io("remove metadata object", e))?;
                }
            }
            Ok(())
        })
        .await
    }

    /// Removes every object no snapshot folder links (and temporary files a crash left), e.g.
    /// objects of runs that died before their folder was finished. Returns how many it removed.
    pub async fn gc_metadata(&self) -> Result<u64, EngineError> {
        let lock = self.locks(LOCK_KEY);
        let _gc = lock.gc.write().await;
        let objects = self.objects_dir();
        blocking(move || {
            let mut removed = 0;
            for shard in std::fs::read_dir(&objects).into_iter().flatten().flatten() {
                for entry in std::fs::read_dir(shard.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    let garbage = name.starts_with('.')
                        || entry
                            .metadata()
                            .is_ok_and(|m| m.is_file() && m.nlink() <= 1);
                    if garbage && std::fs::remove_file(entry.path()).is_ok() {
                        removed += 1;
                    }
                }
            }
            Ok(removed)
        })
        .await
    }
}

impl MetadataWriter {
    /// Stores `value` as pretty JSON under `path` (like `issues/12.json`), replacing what this
    /// writer had there.
    pub async fn put_json(
        &mut self,
        path: &str,
        value: &serde_json::Value,
        version: Option<String>,
        counts: BTreeMap<String, u64>,
    ) -> Result<(), EngineError> {
        validate_path(path, "json")?;
        let mut bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| EngineError::permanent(format!("serialise {path}: {e}")))?;
        bytes.push(b'\n');
        let object = format!("{}.json", sha256_hex(&bytes));
        let lock = self.engine.locks(LOCK_KEY);
        let _shared = lock.gc.read().await;
        let dest = self.staging.join(path);
        let object_path = self.engine.object_path(&object);
        blocking(move || {
            write_object(&object_path, &bytes)?;
            link_or_copy(&object_path, &dest)
        })
        .await?;
        self.files.insert(
            path.to_owned(),
            MetadataEntry {
                object,
                version,
                counts,
            },
        );
        Ok(())
    }

    /// Puts a file of an earlier snapshot into this one unchanged. Returns false when its object
    /// is gone (the caller should fetch the item again).
    pub async fn carry(&mut self, path: &str, entry: &MetadataEntry) -> Result<bool, EngineError> {
        validate_path(path, "")?;
        if !valid_object(&entry.object) {
            return Ok(false);
        }
        self.engine.fetch_shared_object(&entry.object).await?;
        let lock = self.engine.locks(LOCK_KEY);
        let _shared = lock.gc.read().await;
        let object_path = self.engine.object_path(&entry.object);
        let dest = self.staging.join(path);
        let linked = blocking(move || {
            if !object_path.is_file() {
                return Ok(false);
            }
            link_or_copy(&object_path, &dest).map(|()| true)
        })
        .await?;
        if linked {
            self.files.insert(path.to_owned(), entry.clone());
        }
        Ok(linked)
    }

    /// Stores the branches and tags of the mirror `wiki_key` as a git bundle under `path` (for
    /// example `wiki.bundle`); `clone` of the extracted file restores the wiki. The bundle object
    /// is named after the ref listing, so an unchanged wiki is not bundled again. Returns false
    /// when the mirror does not exist or holds no ref (an enabled but empty wiki).
    pub async fn put_wiki(&mut self, wiki_key: &str, path: &str) -> Result<bool, EngineError> {
        fsutil::validate_key(wiki_key)?;
        validate_path(path, "bundle")?;
        let engine = self.engine.clone();
        let mirror = engine.mirror_path(wiki_key);
        if !mirror.is_dir() {
            return Ok(false);
        }
        let mirror_locks = engine.locks(wiki_key);
        let _ops = mirror_locks.ops.lock().await;
        let refs = list_refs(engine.git(), &mirror, &["refs/heads/", "refs/tags/"]).await?;
        if refs.is_empty() {
            return Ok(false);
        }
        let listing: String = refs.iter().map(|(n, s)| format!("{s} {n}\n")).collect();
        let object = format!("{}.bundle", sha256_hex(listing.as_bytes()));
        let object_path = engine.object_path(&object);
        let lock = engine.locks(LOCK_KEY);
        let _shared = lock.gc.read().await;
        if !tokio::fs::try_exists(&object_path).await.unwrap_or(false) {
            let scratch = engine.scratch("wiki").with_extension("bundle");
            let built = async {
                Git::new(engine.git())
                    .dir(&mirror)
                    .args(["bundle", "create", "--quiet"])
                    .arg(&scratch)
                    .args(["--branches", "--tags"])
                    .run()
                    .await?;
                Git::new(engine.git())
                    .dir(&mirror)
                    .args(["bundle", "verify", "--quiet"])
                    .arg(&scratch)
                    .run()
                    .await?;
                let (from, to) = (scratch.clone(), object_path.clone());
                blocking(move || {
                    create_shard(&to)?;
                    fsutil::publish(&from, &to)
                })
                .await
            }
            .await;
            if built.is_err() {
                let _ = tokio::fs::remove_file(&scratch).await;
            }
            built?;
        }
        let dest = self.staging.join(path);
        blocking(move || link_or_copy(&object_path, &dest)).await?;
        self.files.insert(
            path.to_owned(),
            MetadataEntry {
                object,
                version: None,
                counts: BTreeMap::from([("wiki".to_owned(), 1)]),
            },
        );
        Ok(true)
    }

    /// A scratch path on the data folder's file system for a file [`MetadataWriter::put_file`]
    /// will take (so taking it is a rename, not a copy).
    pub fn scratch_file(&self, what: &str) -> PathBuf {
        self.engine.scratch(what)
    }

    /// Stores the finished file `source` (from [`MetadataWriter::scratch_file`]; a release asset)
    /// as a content-addressed `{sha256}.bin` object under `path`, like `assets/77`. `source` is
    /// consumed: renamed into the object store, or removed when the object is already there (an
    /// asset unchanged since another snapshot costs no second copy). Returns the file's size.
    pub async fn put_file(
        &mut self,
        path: &str,
        source: PathBuf,
        version: Option<String>,
        counts: BTreeMap<String, u64>,
    ) -> Result<u64, EngineError> {
        validate_path(path, "")?;
        if path.ends_with(".json") || path.ends_with(".bundle") {
            return Err(EngineError::permanent(format!(
                "{path}: put_file stores opaque files; JSON and bundles have their own writers"
            )));
        }
        let lock = self.engine.locks(LOCK_KEY);
        let _shared = lock.gc.read().await;
        let engine = self.engine.clone();
        let dest = self.staging.join(path);
        let (size, object) = blocking(move || {
            let (size, digest) = fsutil::sha256_file(&source)
                .map_err(|e| EngineError::io("hash a release asset", e))?;
            let object = format!("{}.bin", hex::encode(digest));
            let object_path = engine.object_path(&object);
            publish_object(&source, &object_path)?;
            link_or_copy(&object_path, &dest)?;
            Ok((size, object))
        })
        .await?;
        self.files.insert(
            path.to_owned(),
            MetadataEntry {
                object,
                version,
                counts,
            },
        );
        Ok(size)
    }

    /// Whether this writer already holds `path`.
    pub fn contains(&self, path: &str) -> bool {
        self.files.contains_key(path)
    }

    /// Writes the index, makes the folder durable and moves it into place.
    pub async fn finish(mut self) -> Result<MetadataFolder, EngineError> {
        let index = MetadataIndex {
            format: 1,
            counts: MetadataIndex::total_counts(&self.files),
            files: std::mem::take(&mut self.files),
        };
        let bytes = serde_json::to_vec_pretty(&index)
            .map_err(|e| EngineError::permanent(format!("serialise metadata index: {e}")))?;
        let staging = self.staging.clone();
        let parent = self.engine.snapshot_metadata_dir(&self.snapshot_key);
        let dest = parent.join(&self.repo_key);
        let trash = self.engine.tmp_dir();
        blocking(move || {
            fsutil::write_atomic(&staging.join(INDEX_FILE), &bytes)?;
            fsync_dirs(&staging)?;
            let created = !parent.exists();
            std::fs::create_dir_all(&parent)
                .map_err(|e| EngineError::io("create snapshot metadata folder", e))?;
            if created {
                fsutil::fsync_dir(parent.parent().expect("metadata/snap"))?;
            }
            // Committing the same snapshot twice replaces the earlier folder.
            fsutil::remove_dir_atomic(&dest, &trash)?;
            std::fs::rename(&staging, &dest)
                .map_err(|e| EngineError::io("move metadata folder into place", e))?;
            fsutil::fsync_dir(&parent)
        })
        .await?;
        self.finished = true;
        Ok(MetadataFolder {
            dir: Engine::metadata_dir_name(&self.snapshot_key, &self.repo_key),
            counts: index.counts,
        })
    }
}

impl Drop for MetadataWriter {
    /// An abandoned writer's staging folder is removed off the async threads (it can hold
    /// thousands of files); outside a runtime (tests, shutdown) it is removed in place.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let staging = std::mem::take(&mut self.staging);
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn_blocking(move || {
                    let _ = std::fs::remove_dir_all(&staging);
                });
            }
            Err(_) => {
                let _ = std::fs::remove_dir_all(&staging);
            }
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `{64 hex}.json` or `{64 hex}.bundle`: object names come from index files on disk, which are
/// checked before they are joined to a path.
pub(crate) fn valid_object(object: &str) -> bool {
    let Some((hash, ext)) = object.split_once('.') else {
        return false;
    };
    hash.len() == 64
        && hash
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        && matches!(ext, "json" | "bundle" | "bin")
}

/// Paths inside a metadata folder: one or two components of `[A-Za-z0-9._-]`, none starting with
/// a dot, never the index, ending with `.{ext}` when `ext` is given.
fn validate_path(path: &str, ext: &str) -> Result<()> {
    let parts: Vec<&str> = path.split('/').collect();
    let ok = (1..=2).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.len() <= 100
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
        && path != INDEX_FILE
        && (ext.is_empty() || path.ends_with(&format!(".{ext}")));
    if ok {
        Ok(())
    } else {
        Err(EngineError::permanent(format!(
            "invalid metadata file name {path:?}"
        )))
    }
}

/// Creates `objects/{ab}/` (durably) when missing.
fn create_shard(object_path: &Path) -> Result<()> {
    let shard = object_path.parent().expect("object shard");
    if !shard.exists() {
        std::fs::create_dir_all(shard)
            .map_err(|e| EngineError::io("create metadata objects", e))?;
        fsutil::fsync_dir(shard.parent().expect("objects dir"))?;
    }
    Ok(())
}

/// Moves the finished file `from` into place as the object at `path`, unless the object exists
/// (then `from` is removed).
pub(crate) fn publish_object(from: &Path, path: &Path) -> Result<()> {
    if path.is_file() {
        let _ = std::fs::remove_file(from);
        return Ok(());
    }
    create_shard(path)?;
    fsutil::publish(from, path)
}

/// Writes an object unless it exists (same name, same content).
pub(crate) fn write_object(path: &Path, bytes: &[u8]) -> Result<()> {
    if path.is_file() {
        return Ok(());
    }
    create_shard(path)?;
    fsutil::write_atomic(path, bytes)
}

/// Hard-links `object` at `dest` (creating `dest`'s folder), or copies it when the file system
/// refuses the link.
fn link_or_copy(object: &Path, dest: &Path) -> Result<()> {
    let dir = dest.parent().expect("staging file has a folder");
    std::fs::create_dir_all(dir).map_err(|e| EngineError::io("create metadata folder", e))?;
    match std::fs::remove_file(dest) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(EngineError::io("replace metadata file", e)),
    }
    if std::fs::hard_link(object, dest).is_ok() {
        return Ok(());
    }
    std::fs::copy(object, dest)
        .and_then(|_| std::fs::File::open(dest)?.sync_all())
        .map_err(|e| EngineError::io(format!("copy {} into a snapshot", object.display()), e))
}

/// fsyncs `root` and every folder under it (new directory entries: the links).
fn fsync_dirs(root: &Path) -> Result<()> {
    for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            fsync_dirs(&entry.path())?;
        }
    }
    fsutil::fsync_dir(root)
}
