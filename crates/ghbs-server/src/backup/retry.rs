//! A retry of a partial account run: fetch again only the repositories that failed for a
//! passing reason, take every other one as the earlier attempt's snapshot holds it.
//!
//! The data-loss rules stay as they are: a repository taken over keeps its refs, metadata,
//! capture state and `captured_at` exactly as in that snapshot, and its manifest entry names the
//! snapshot whose run captured it (`carried`), so retention keeps that capture pinned until a
//! later run captures the repository itself. A repository that snapshot carried forward (failed
//! for a lasting reason, or gone upstream) stays carried forward with its original copy.

use ghbs_engine::{Carried, Manifest, RepoCapture};
use ghbs_github::GhRepo;
use ghbs_store::JobRepoRow;
use ghbs_wire::SnapshotRepo;

use super::{mirror_key, same_repo};
use crate::executor::RetryScope;
use crate::state::RunContext;

/// A repository this retry takes from the earlier attempt's snapshot instead of fetching it.
pub(super) struct Reused {
    pub capture: RepoCapture,
    pub summary: SnapshotRepo,
}

/// Splits the repositories GitHub lists into those to fetch and those taken over from
/// `scope.snapshot_id`. Anything that cannot be taken over whole (the snapshot is gone, its
/// manifest unreadable, the mirror lacks the objects, the metadata cannot be linked) is fetched,
/// as is every repository the earlier attempt did not hold.
pub(super) async fn split(
    state: &RunContext,
    job_id: i64,
    scope: &RetryScope,
    known: &[JobRepoRow],
    repos: Vec<GhRepo>,
    snapshot_key: &str,
) -> (Vec<GhRepo>, Vec<Reused>) {
    let earlier = match state.store.job_snapshots(job_id).await {
        Ok(rows) => rows.into_iter().find(|s| s.id == scope.snapshot_id),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the earlier attempt's snapshot; fetching everything");
            None
        }
    };
    let Some(earlier) = earlier else {
        return (repos, Vec::new());
    };
    let Ok(manifest) = serde_json::from_value::<Manifest>(earlier.manifest.clone()) else {
        return (repos, Vec::new());
    };
    let mut fetch = Vec::new();
    let mut reused = Vec::new();
    for gh in repos {
        let key = known
            .iter()
            .find(|row| same_repo(row, &gh))
            .map(|row| mirror_key(row.id));
        let taken = match key {
            Some(key) if !scope.repos.contains(&key) => {
                take_over(
                    state,
                    &manifest,
                    &earlier.repos,
                    earlier.created_at,
                    &key,
                    snapshot_key,
                )
                .await
            }
            _ => None,
        };
        match taken {
            Some(r) => reused.push(r),
            None => fetch.push(gh),
        }
    }
    tracing::info!(
        fetched = fetch.len(),
        taken_over = reused.len(),
        "retry of a partial run: fetching only what failed"
    );
    (fetch, reused)
}

async fn take_over(
    state: &RunContext,
    manifest: &Manifest,
    summaries: &[SnapshotRepo],
    created_at: chrono::DateTime<chrono::Utc>,
    key: &str,
    snapshot_key: &str,
) -> Option<Reused> {
    let capture = manifest.repos.iter().find(|r| r.key == key)?;
    let summary = summaries
        .iter()
        .find(|s| s.full_name == capture.full_name)?
        .clone();
    if !matches!(
        state.engine.has_objects(key, capture.refs.values()).await,
        Ok(true)
    ) {
        return None;
    }
    let metadata_dir = match capture.metadata_dir {
        Some(_) => match state
            .engine
            .carry_metadata(&manifest.snapshot_key, snapshot_key, key)
            .await
        {
            Ok(folder) => folder.map(|f| f.dir),
            Err(e) => {
                tracing::warn!(error = %e, "cannot link the earlier attempt's metadata; fetching again");
                return None;
            }
        },
        None => None,
    };
    let carried = capture.carried.clone().unwrap_or_else(|| Carried {
        captured_in: manifest.snapshot_key.clone(),
        captured_at: created_at,
    });
    Some(Reused {
        capture: RepoCapture {
            key: key.to_owned(),
            full_name: capture.full_name.clone(),
            default_branch: capture.default_branch.clone(),
            refs: capture.refs.clone(),
            metadata_dir,
            carried: Some(carried),
        },
        summary,
    })
}
