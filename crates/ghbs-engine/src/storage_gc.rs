//! Garbage collection of the shared storage: mark what some retained snapshot needs, sweep the
//! rest once it is older than the grace period (restic's prune, in spirit).
//!
//! Marked (kept): every pack a repository's pack index lists; packs it retired less than the
//! grace period ago (a node may still be downloading one); every metadata object a stored
//! metadata index names. Swept: unmarked packs and metadata objects last written more than the
//! grace period ago (uploads of a run that crashed before its manifest, packs a repack replaced,
//! objects only dropped snapshots used), and metadata indexes of snapshots without a manifest
//! (same age rule). Manifests are never touched here: retention deletes them. A young object is
//! always kept, so a run uploading right now (its index and manifest not written yet) is safe; a
//! run reusing an old object rewrites it before referencing it, and the sweep reads each
//! object's age again right before deleting it, so a reuse between listing and sweeping is seen.
//! The remaining window (a rewrite between that last read and the delete, milliseconds) is the
//! price of not locking the bucket; docs/storage.md.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;

use crate::error::{EngineError, Result};
use crate::{Engine, MetadataIndex, PackIndex};

/// What a collection did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StorageGc {
    /// Objects under `packs/` and `metadata/` kept.
    pub kept: u64,
    /// Objects removed.
    pub swept: u64,
    /// Bytes removed.
    pub swept_bytes: u64,
}

impl Engine {
    /// Collects the shared storage (see the module docs). A no-op without shared storage (the
    /// local mirrors and metadata folders collect themselves).
    /// `grace` is normally [`Engine::storage_gc_grace`]; tests pass shorter ones.
    pub async fn gc_storage(&self, grace: Duration) -> Result<StorageGc, EngineError> {
        let mut report = StorageGc::default();
        if !self.shares_storage() {
            return Ok(report);
        }
        let grace = chrono::Duration::from_std(grace)
            .map_err(|_| EngineError::permanent("storage GC grace period out of range"))?;
        let cutoff = Utc::now() - grace;
        let storage = self.storage();

        let mut marked: BTreeSet<String> = BTreeSet::new();
        for object in storage.list_objects("repos").await? {
            let Some(key) = object
                .key
                .strip_prefix("repos/")
                .and_then(|k| k.strip_suffix("/packs.json"))
            else {
                continue;
            };
            let bytes = storage.get(&object.key).await?;
            let index: PackIndex = serde_json::from_slice(&bytes).map_err(|e| {
                EngineError::permanent(format!("corrupt pack index of {key}: {e}; not collecting"))
            })?;
            let young_retired = index
                .retired
                .iter()
                .filter(|(_, since)| **since > cutoff)
                .map(|(p, _)| p);
            for pack in index.packs.iter().chain(young_retired) {
                for ext in ["pack", "idx"] {
                    marked.insert(format!("packs/{key}/{pack}.{ext}"));
                }
            }
        }
        let manifests: BTreeSet<String> = storage
            .list("manifests")
            .await?
            .into_iter()
            .filter_map(|k| {
                k.strip_prefix("manifests/")
                    .and_then(|k| k.strip_suffix(".json"))
                    .map(str::to_owned)
            })
            .collect();
        let mut sweep = Vec::new();
        for object in storage.list_objects("metadata/snap").await? {
            let snapshot = object
                .key
                .strip_prefix("metadata/snap/")
                .and_then(|k| k.split('/').next())
                .unwrap_or_default();
            if !manifests.contains(snapshot) {
                if object.modified < cutoff {
                    sweep.push(object);
                } else {
                    report.kept += 1;
                }
                continue;
            }
            report.kept += 1;
            let bytes = storage.get(&object.key).await?;
            let index: MetadataIndex = serde_json::from_slice(&bytes).map_err(|e| {
                EngineError::permanent(format!(
                    "corrupt metadata index {}: {e}; not collecting",
                    object.key
                ))
            })?;
            for entry in index.files.values() {
                if entry.object.len() > 2 {
                    marked.insert(format!(
                        "metadata/objects/{}/{}",
                        &entry.object[..2],
                        entry.object
                    ));
                }
            }
        }
        for prefix in ["packs", "metadata/objects"] {
            for object in storage.list_objects(prefix).await? {
                if marked.contains(&object.key) || object.modified >= cutoff {
                    report.kept += 1;
                } else {
                    sweep.push(object);
                }
            }
        }
        for object in sweep {
            // Read again just before deleting: a commit that reuses this object rewrites it
            // first (`Storage::put_file_refreshed`), and that may have happened since listing.
            match storage.modified(&object.key).await {
                Ok(written) if written < cutoff => {}
                Ok(_) => {
                    report.kept += 1;
                    continue;
                }
                Err(e) if e.kind == crate::StorageErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            }
            storage.delete(&object.key).await?;
            report.swept += 1;
            report.swept_bytes += object.size;
        }
        tracing::info!(
            kept = report.kept,
            swept = report.swept,
            swept_bytes = report.swept_bytes,
            "collected the shared storage"
        );
        Ok(report)
    }

    /// Bytes and objects in the storage under `prefix` (`""` for everything: measuring).
    pub async fn stored_size(&self, prefix: &str) -> Result<(u64, u64), EngineError> {
        let mut bytes = 0;
        let mut count = 0;
        let prefixes: Vec<&str> = if prefix.is_empty() {
            vec!["manifests", "packs", "repos", "metadata"]
        } else {
            vec![prefix]
        };
        for p in prefixes {
            for object in self.storage().list_objects(p).await? {
                bytes += object.size;
                count += 1;
            }
        }
        Ok((bytes, count))
    }
}
