//! Pending snapshots: a marker `pending/{snapshot}` is made durable before the first snapshot
//! ref is written and removed once the caller has recorded the snapshot (its database row).
//! A crash in between leaves the marker, and the caller decides at its next start, from its own
//! record, whether the snapshot was recorded ([`Engine::confirm_snapshot`]) or not
//! ([`Engine::forget_pending`]). Only a marked snapshot can ever be forgotten this way, so a
//! caller pointed at a new, empty database cannot wipe real backups.

use std::path::{Path, PathBuf};

use crate::error::{EngineError, Result};
use crate::fsutil::{self, blocking};
use crate::git::list_refs;
use crate::{Engine, Manifest};

impl Engine {
    pub(crate) fn pending_dir(&self) -> PathBuf {
        self.data_dir().join("pending")
    }

    fn pending_path(&self, snapshot_key: &str) -> PathBuf {
        self.pending_dir().join(snapshot_key)
    }

    /// Writes the marker (the manifest, for whoever inspects the folder), durably: the file, its
    /// rename and, the first time, the creation of `pending/` itself.
    pub(crate) async fn mark_pending(&self, manifest: &Manifest) -> Result<()> {
        fsutil::validate_snapshot_key(&manifest.snapshot_key)?;
        let bytes = serde_json::to_vec_pretty(manifest)
            .map_err(|e| EngineError::permanent(format!("serialise manifest: {e}")))?;
        let dir = self.pending_dir();
        let path = self.pending_path(&manifest.snapshot_key);
        let data_dir = self.data_dir().to_path_buf();
        blocking(move || {
            if !dir.is_dir() {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| EngineError::io("create pending folder", e))?;
                fsutil::fsync_dir(&data_dir)?;
            }
            fsutil::write_atomic(&path, &bytes)
        })
        .await
    }

    /// Declares a committed snapshot recorded by the caller: removes its pending marker (a
    /// missing marker is fine, confirming twice is harmless).
    pub async fn confirm_snapshot(&self, snapshot_key: &str) -> Result<(), EngineError> {
        fsutil::validate_snapshot_key(snapshot_key)?;
        let path = self.pending_path(snapshot_key);
        blocking(move || remove_marker(&path)).await
    }

    /// Snapshots committed (or being committed) but not confirmed, sorted.
    pub async fn pending_snapshots(&self) -> Result<Vec<String>, EngineError> {
        let dir = self.pending_dir();
        blocking(move || {
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(EngineError::io("list pending snapshots", e)),
            };
            let mut keys = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|e| EngineError::io("list pending snapshots", e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                // Skips the temporary files of an interrupted `write_atomic` (they start with '.').
                if fsutil::validate_snapshot_key(&name).is_ok() {
                    keys.push(name);
                }
            }
            keys.sort();
            Ok(keys)
        })
        .await
    }

    /// Forgets a pending snapshot the caller never recorded: its refs in every mirror (the
    /// manifest may not have been written, so every mirror is searched), then its manifest,
    /// artifacts and metadata folders, like [`Engine::drop_snapshots`], and unreachable
    /// objects; the marker goes last, so an interrupted call is simply repeated. Refuses a
    /// snapshot without a marker: a recorded snapshot is never forgotten through here.
    pub async fn forget_pending(&self, snapshot_key: &str) -> Result<(), EngineError> {
        fsutil::validate_snapshot_key(snapshot_key)?;
        let marker = self.pending_path(snapshot_key);
        if !tokio::fs::try_exists(&marker)
            .await
            .map_err(|e| EngineError::io("read pending marker", e))?
        {
            return Err(EngineError::not_found(format!(
                "snapshot {snapshot_key} is not pending"
            )));
        }
        let prefix = format!("refs/ghbs/snap/{snapshot_key}/");
        for key in self.mirror_keys().await? {
            // First, and local: should the bucket fail below, the next commit still knows to
            // take this snapshot out of the pack index.
            if self.shares_storage() {
                self.note_orphan(&key, snapshot_key).await?;
            }
            let refs = list_refs(self.git(), &self.mirror_path(&key), &[prefix.as_str()]).await?;
            if !refs.is_empty() {
                self.drop_in_mirror(&key, &[snapshot_key]).await?;
            }
        }
        let manifest = Manifest {
            snapshot_key: snapshot_key.to_owned(),
            repos: Vec::new(),
        };
        self.drop_snapshots(std::slice::from_ref(&manifest)).await?;
        blocking(move || remove_marker(&marker)).await
    }

    /// Keys of the mirrors under `mirrors/` (entries that are not valid mirror keys are skipped).
    pub(crate) async fn mirror_keys(&self) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut entries = tokio::fs::read_dir(self.data_dir().join("mirrors"))
            .await
            .map_err(|e| EngineError::io("list mirrors", e))?;
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| EngineError::io("list mirrors", e))?
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(key) = name.strip_suffix(".git") {
                if fsutil::validate_key(key).is_ok() {
                    keys.push(key.to_owned());
                }
            }
        }
        Ok(keys)
    }
}

/// Removes a marker and makes the removal durable; a missing marker is not an error.
fn remove_marker(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => fsutil::fsync_dir(path.parent().expect("pending folder")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(EngineError::io("remove pending marker", e)),
    }
}
