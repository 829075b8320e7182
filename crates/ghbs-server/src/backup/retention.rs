//! Retention and `forget-repo`: the only two ways a repository's backed-up data leaves.
//!
//! Retention keeps what the job's policy selects, plus — whatever the policy says — each known
//! repository's newest snapshot that captured it itself (`ghbs_core::last_captures`), plus any
//! snapshot whose manifest cannot be read (never delete what cannot be reasoned about). So a
//! run of failures, or a repository gone upstream, cannot age the last good copy out.
//! `forget-repo` is how a user says a gone repository may go: its row is deleted, so nothing
//! pins or carries it any more, and its data leaves with the snapshots that hold it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use ghbs_core::{last_captures, select_kept, HeldRepos};
use ghbs_engine::Manifest;
use ghbs_store::JobRow;
use ghbs_wire::{codes, RepoForgotten};

use super::{mirror_key, wiki_key, RepoState};
use crate::error::ApiError;
use crate::state::RunContext;

/// Forgets the snapshots the job's retention no longer keeps: rows first (so they stop being
/// visible), then refs and unreferenced objects; then the mirrors of forgotten repositories
/// that no remaining snapshot holds.
pub async fn apply_retention(state: &RunContext, job: &JobRow) -> anyhow::Result<()> {
    let snaps = state.store.job_snapshots(job.id).await?;
    let known: BTreeSet<String> = state
        .store
        .list_job_repos(job.id)
        .await?
        .iter()
        .map(|r| mirror_key(r.id))
        .collect();
    let manifests: BTreeMap<i64, Manifest> = snaps
        .iter()
        .filter_map(|s| Some((s.id, serde_json::from_value(s.manifest.clone()).ok()?)))
        .collect();
    let tz = job.timezone;
    let list: Vec<(i64, DateTime<Utc>)> = snaps.iter().map(|s| (s.id, s.created_at)).collect();
    let mut kept = select_kept(&list, &job.retention, tz);
    let held: Vec<HeldRepos<'_>> = snaps
        .iter()
        .filter_map(|s| {
            let manifest = manifests.get(&s.id)?;
            Some(HeldRepos {
                id: s.id,
                created_at: s.created_at,
                repos: manifest
                    .repos
                    .iter()
                    .map(|r| (r.key.as_str(), r.carried.is_none()))
                    .collect(),
            })
        })
        .collect();
    let pinned = last_captures(&held, |key| known.contains(key));
    for id in pinned.difference(&kept) {
        tracing::info!(
            job.id = job.id,
            snapshot = id,
            "kept beyond retention: it holds a repository's last good copy"
        );
    }
    kept.extend(pinned);
    for s in &snaps {
        if !manifests.contains_key(&s.id) && kept.insert(s.id) {
            tracing::warn!(
                job.id = job.id,
                snapshot = s.id,
                "unreadable manifest: snapshot kept"
            );
        }
    }
    let dropped: Vec<i64> = snaps
        .iter()
        .map(|s| s.id)
        .filter(|id| !kept.contains(id))
        .collect();
    if dropped.is_empty() {
        return Ok(());
    }
    state.store.delete_snapshots(&dropped).await?;
    let dropped_manifests: Vec<Manifest> = dropped
        .iter()
        .filter_map(|id| manifests.get(id).cloned())
        .collect();
    state
        .engine
        .drop_snapshots(&dropped_manifests)
        .await
        .map_err(|e| anyhow::anyhow!(e.message))?;
    // Shared storage: objects only the dropped snapshots needed are collected by the daily
    // garbage collection ([`storage_gc_loop`]) once the grace period has passed.
    // A forgotten repository's mirror goes with the last snapshot that held it.
    let still_held: BTreeSet<&str> = kept
        .iter()
        .filter_map(|id| manifests.get(id))
        .flat_map(|m| m.repos.iter().map(|r| r.key.as_str()))
        .collect();
    // A kept snapshot whose manifest cannot be read may hold any repository: then no mirror is
    // removed (its objects are what that snapshot needs), only the dropped rows and refs go.
    let unreadable_kept = snaps.iter().any(|s| !manifests.contains_key(&s.id));
    let orphaned: BTreeSet<&str> = dropped_manifests
        .iter()
        .flat_map(|m| m.repos.iter().map(|r| r.key.as_str()))
        .filter(|key| !unreadable_kept && !still_held.contains(key) && !known.contains(*key))
        .collect();
    for key in orphaned {
        for mirror in [key.to_owned(), wiki_key(key)] {
            state
                .engine
                .remove_mirror(&mirror)
                .await
                .map_err(|e| anyhow::anyhow!(e.message))?;
        }
    }
    tracing::info!(
        job.id = job.id,
        dropped = dropped.len(),
        "retention applied"
    );
    Ok(())
}

/// How often a node asks whether the shared storage's daily collection is due.
const STORAGE_GC_TICK: std::time::Duration = std::time::Duration::from_secs(3600);
/// The collection runs once per this period across all nodes (the `maintenance` row decides
/// which node); a little under a day so that hourly ticks do not drift it later each day.
const STORAGE_GC_EVERY: chrono::Duration = chrono::Duration::hours(23);

/// The shared storage's garbage collection, once a day across the cluster, until `stop`: every
/// node ticks hourly and the one that claims the `storage-gc` maintenance row runs it. A no-op
/// loop without shared storage. Running it twice at once would be safe (it deletes only
/// unneeded objects past the grace period) but costs a full listing of the bucket.
pub async fn storage_gc_loop(
    state: std::sync::Arc<RunContext>,
    node: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    if !state.engine.shares_storage() {
        return;
    }
    loop {
        storage_gc_once(&state, &node).await;
        tokio::select! {
            _ = tokio::time::sleep(STORAGE_GC_TICK) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// One tick of [`storage_gc_loop`]: collects when this node claims the day's collection.
async fn storage_gc_once(state: &RunContext, node: &str) {
    let now = state.clock.now();
    match state
        .store
        .claim_maintenance("storage-gc", node, now, now - STORAGE_GC_EVERY)
        .await
    {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::warn!(error = %e, "cannot claim the storage garbage collection; next hour");
            return;
        }
    }
    // Best effort: what this pass could not remove, tomorrow's removes.
    if let Err(e) = state
        .engine
        .gc_storage(state.engine.storage_gc_grace())
        .await
    {
        tracing::warn!(error = %e.message, "storage garbage collection failed");
    }
}

/// `forget-repo`: stops keeping a repository that is gone upstream. Refused for one GitHub
/// still shows this job (it would come back at the next run) and while a run is in progress
/// (it may be carrying the repository forward at this moment).
pub async fn forget_repo(
    state: &RunContext,
    user_id: i64,
    job_id: i64,
    full_name: &str,
) -> Result<RepoForgotten, ApiError> {
    let job = state
        .store
        .get_job(user_id, job_id)
        .await
        .map_err(|e| match e {
            ghbs_store::StoreError::NotFound => ApiError::not_found("job"),
            other => other.into(),
        })?;
    let snaps = state.store.job_snapshots(job.id).await?;
    let rows = state.store.list_job_repos(job.id).await?;
    // The name a user sees is the one in the snapshots; the row may carry a newer or marked one.
    let names_in_snapshots: BTreeMap<String, BTreeSet<String>> = snaps
        .iter()
        .filter_map(|s| serde_json::from_value::<Manifest>(s.manifest.clone()).ok())
        .flat_map(|m| m.repos.into_iter().map(|r| (r.key, r.full_name)))
        .fold(BTreeMap::new(), |mut acc, (key, name)| {
            acc.entry(key)
                .or_default()
                .insert(name.to_ascii_lowercase());
            acc
        });
    let wanted = full_name.to_ascii_lowercase();
    let row = rows
        .iter()
        .find(|r| {
            r.full_name.eq_ignore_ascii_case(full_name)
                || names_in_snapshots
                    .get(&mirror_key(r.id))
                    .is_some_and(|names| names.contains(&wanted))
        })
        .ok_or_else(|| ApiError::not_found(&format!("repository {full_name} in job {job_id}")))?;
    let repo_state: RepoState = serde_json::from_value(row.state.clone()).unwrap_or_default();
    if repo_state.gone_since.is_none() {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            codes::CONFLICT,
            format!(
                "{full_name} is still on GitHub for this job, so the next run would back it up \
                 again; only a repository gone upstream can be forgotten (change the job's \
                 filters, or delete the job)"
            ),
        ));
    }
    if job.lease_owner.is_some() {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            codes::CONFLICT,
            format!("job {job_id} is running a backup; forget {full_name} when it has finished"),
        ));
    }
    let key = mirror_key(row.id);
    let name = row.full_name.clone();
    state.store.delete_job_repo(job.id, row.id).await?;
    apply_retention(state, &job)
        .await
        .map_err(ApiError::internal)?;
    let still_in = state
        .store
        .job_snapshots(job.id)
        .await?
        .iter()
        .filter_map(|s| serde_json::from_value::<Manifest>(s.manifest.clone()).ok())
        .filter(|m| m.repos.iter().any(|r| r.key == key))
        .count() as u64;
    tracing::info!(job.id = job.id, repo = %name, still_in, "repository forgotten");
    Ok(RepoForgotten {
        full_name: name,
        snapshots_holding: still_in,
    })
}
