//! A job's backups as a whole: purge, and settling snapshots a crash left half-recorded.

use ghbs_engine::{Engine, Manifest};
use ghbs_store::{JobRow, Store};

use super::{mirror_key, wiki_mirror_key};
use crate::error::ApiError;
use crate::state::RunContext;

/// Deletes a job's snapshots and mirrors (explicit purge).
pub async fn purge_backups(state: &RunContext, job: &JobRow) -> Result<(), ApiError> {
    let snaps = state.store.job_snapshots(job.id).await?;
    let manifests: Vec<Manifest> = snaps
        .iter()
        .filter_map(|s| serde_json::from_value(s.manifest.clone()).ok())
        .collect();
    state
        .store
        .delete_snapshots(&snaps.iter().map(|s| s.id).collect::<Vec<_>>())
        .await?;
    state
        .engine
        .drop_snapshots(&manifests)
        .await
        .map_err(|e| ApiError::internal(e.message))?;
    for repo in state.store.list_job_repos(job.id).await? {
        for key in [mirror_key(repo.id), wiki_mirror_key(repo.id)] {
            state
                .engine
                .remove_mirror(&key)
                .await
                .map_err(|e| ApiError::internal(e.message))?;
        }
    }
    Ok(())
}

/// Settles the snapshots a crash left between `commit_snapshot` and their database row (see
/// `ghbs_engine`'s pending markers): one with a row was recorded, only its marker is left to
/// remove; one without a row was never visible and is forgotten, refs and all, so that it does
/// not keep objects alive forever. Only marked snapshots are ever considered, so a database that
/// is new or not the one these backups were recorded in cannot cause real backups to be deleted.
/// Anything uncertain (the database or the disk failing) keeps the marker for the next start.
pub async fn settle_pending_snapshots(store: &dyn Store, engine: &Engine) {
    let pending = match engine.pending_snapshots().await {
        Ok(keys) => keys,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list unconfirmed snapshots; they are checked at the next start");
            return;
        }
    };
    for key in pending {
        match store.snapshot_key_exists(&key).await {
            Ok(true) => {
                if let Err(e) = engine.confirm_snapshot(&key).await {
                    tracing::warn!(snapshot = %key, error = %e, "cannot confirm a recorded snapshot");
                }
            }
            Ok(false) => {
                tracing::info!(snapshot = %key, "forgetting a snapshot interrupted before it was recorded");
                if let Err(e) = engine.forget_pending(&key).await {
                    tracing::warn!(snapshot = %key, error = %e, "cannot forget an unrecorded snapshot; retried at the next start");
                }
            }
            Err(e) => {
                tracing::warn!(snapshot = %key, error = %e, "cannot check an unconfirmed snapshot; it is checked at the next start");
            }
        }
    }
}
