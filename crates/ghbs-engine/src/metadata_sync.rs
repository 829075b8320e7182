//! Repository metadata in the shared storage (see `packs` for when the storage is shared).
//!
//! The local layout (`metadata/objects/{ab}/{object}` and `metadata/snap/{snapshot}/{repo}/`, see
//! the `metadata` module) maps onto the same keys in the storage, with one difference: a
//! snapshot's folder is stored as its `index.json` alone, because the index names the object of
//! every file. So:
//! - `metadata/objects/{ab}/{sha256}.json|.bundle` — content-addressed (`put_if_absent`), shared
//!   by every snapshot whose index names it; wiki bundles are objects like any other;
//! - `metadata/snap/{snapshot}/{repo}/index.json` — written once at commit, before the manifest.
//!
//! A node with a cold cache rebuilds a folder from those (objects downloaded, then linked by a
//! [`crate::MetadataWriter`] exactly as a run would: the same index, byte for byte).

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};

use crate::error::{EngineError, Result};
use crate::fsutil::blocking;
use crate::metadata::{publish_object, valid_object};
use crate::storage::StorageErrorKind;
use crate::{Engine, MetadataIndex, RepoCapture, INDEX_FILE};

/// Uploads (or checks) this many objects at a time.
const UPLOAD_CONCURRENCY: usize = 8;

impl Engine {
    /// `metadata/objects/{ab}/{object}`.
    fn shared_object_key(object: &str) -> String {
        format!("metadata/objects/{}/{object}", &object[..2])
    }

    /// `metadata/snap/{snapshot}/{repo}/index.json`.
    fn shared_index_key(snapshot_key: &str, repo_key: &str) -> String {
        format!(
            "{}/{INDEX_FILE}",
            Engine::metadata_dir_name(snapshot_key, repo_key)
        )
    }

    /// The (snapshot, repo) a capture's metadata folder belongs to, when it has one of the
    /// standard form `metadata/snap/{snapshot}/{repo}`.
    fn metadata_owner(repo: &RepoCapture) -> Option<(String, String)> {
        let dir = repo.metadata_dir.as_deref()?;
        let rest = dir.strip_prefix("metadata/snap/")?;
        let (snapshot, key) = rest.split_once('/')?;
        (crate::fsutil::validate_snapshot_key(snapshot).is_ok()
            && crate::fsutil::validate_key(key).is_ok())
        .then(|| (snapshot.to_owned(), key.to_owned()))
    }

    /// Copies a capture's metadata folder into the shared storage: every object it names that
    /// the storage lacks or holds only an old copy of (see
    /// [`crate::Storage::put_file_refreshed`]), then its index. A no-op without shared storage or metadata.
    pub(crate) async fn publish_metadata(&self, repo: &RepoCapture) -> Result<()> {
        if !self.shares_storage() {
            return Ok(());
        }
        let Some((snapshot, key)) = Engine::metadata_owner(repo) else {
            return Ok(());
        };
        let local = self
            .snapshot_metadata_dir(&snapshot)
            .join(&key)
            .join(INDEX_FILE);
        let index_bytes = match tokio::fs::read(&local).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(EngineError::io("read metadata index", e)),
        };
        let index: MetadataIndex = serde_json::from_slice(&index_bytes).map_err(|e| {
            EngineError::permanent(format!("corrupt metadata index {}: {e}", local.display()))
        })?;
        let mut objects: Vec<String> = index
            .files
            .values()
            .map(|e| e.object.clone())
            .filter(|o| valid_object(o))
            .collect();
        objects.sort();
        objects.dedup();
        futures_util::stream::iter(objects.into_iter().map(|object| {
            let engine = self.clone();
            async move {
                let path = engine.object_path(&object);
                engine
                    .storage()
                    .put_file_refreshed(
                        &Engine::shared_object_key(&object),
                        &path,
                        engine.reuse_fresh_for(),
                    )
                    .await?;
                Ok::<(), EngineError>(())
            }
        }))
        .buffer_unordered(UPLOAD_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
        self.storage()
            .put_if_absent(
                &Engine::shared_index_key(&snapshot, &key),
                Bytes::from(index_bytes),
            )
            .await?;
        Ok(())
    }

    /// A snapshot's metadata index from the shared storage (a cold cache); `None` without one.
    pub(crate) async fn shared_metadata_index(
        &self,
        snapshot_key: &str,
        repo_key: &str,
    ) -> Result<Option<MetadataIndex>> {
        if !self.shares_storage() {
            return Ok(None);
        }
        match self
            .storage()
            .get(&Engine::shared_index_key(snapshot_key, repo_key))
            .await
        {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                EngineError::permanent(format!(
                    "corrupt metadata index of {snapshot_key}/{repo_key} in the storage: {e}"
                ))
            }),
            Err(e) if e.kind == StorageErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Makes sure a metadata object is on local disk, downloading it from the shared storage
    /// when it is not. A no-op without shared storage; a missing object is left missing.
    pub(crate) async fn fetch_shared_object(&self, object: &str) -> Result<()> {
        if !self.shares_storage() || !valid_object(object) {
            return Ok(());
        }
        let path = self.object_path(object);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(());
        }
        // Streamed to a scratch file and renamed into place: an object may be a release asset
        // of gigabytes.
        let scratch = self.scratch("object");
        match self
            .storage()
            .get_to_file(&Engine::shared_object_key(object), &scratch)
            .await
        {
            Ok(_) => blocking(move || publish_object(&scratch, &path)).await,
            Err(e) => {
                let _ = tokio::fs::remove_file(&scratch).await;
                match e.kind {
                    StorageErrorKind::NotFound => Ok(()),
                    _ => Err(e.into()),
                }
            }
        }
    }

    /// Rebuilds a capture's metadata folder from the shared storage when the local cache lacks
    /// it (a node that never ran this job, or lost its cache).
    pub(crate) async fn hydrate_metadata(&self, repo: &RepoCapture) -> Result<()> {
        if !self.shares_storage() {
            return Ok(());
        }
        let Some((snapshot, key)) = Engine::metadata_owner(repo) else {
            return Ok(());
        };
        let local = self.snapshot_metadata_dir(&snapshot).join(&key);
        if tokio::fs::try_exists(local.join(INDEX_FILE))
            .await
            .unwrap_or(false)
        {
            return Ok(());
        }
        let Some(index) = self.shared_metadata_index(&snapshot, &key).await? else {
            return Ok(());
        };
        let mut writer = self.metadata_writer(&snapshot, &key).await?;
        for (path, entry) in &index.files {
            if !writer.carry(path, entry).await? {
                return Err(EngineError::permanent(format!(
                    "metadata object {} of {} is missing from the storage",
                    entry.object, repo.full_name
                )));
            }
        }
        writer.finish().await?;
        Ok(())
    }

    /// Removes a dropped snapshot's metadata indexes from the shared storage (their objects go
    /// with the garbage collection, when no retained index names them).
    pub(crate) async fn drop_shared_metadata(&self, manifest: &crate::Manifest) -> Result<()> {
        if !self.shares_storage() {
            return Ok(());
        }
        for repo in &manifest.repos {
            if let Some((snapshot, key)) = Engine::metadata_owner(repo) {
                if snapshot == manifest.snapshot_key {
                    self.storage()
                        .delete(&Engine::shared_index_key(&snapshot, &key))
                        .await?;
                }
            }
        }
        Ok(())
    }
}
